#!/usr/bin/python3
#   When a reliable consumer is gone (doc/PROTOCOL.md, "When a consumer is
#   gone"): not while it is connected and has been silent for less than 5
#   ping intervals, even with its pipe full; once 5 intervals pass with
#   nothing from it; and at once when its connection closes. Its
#   deliveries then go to another consumer with attempt 1.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
from hostile import check  # noqa: E402

PING_IVL_S = 1.6
SILENT_PINGS = 5
COUNT = 20


def redeliveries(other, count, timeout_s):
    """Collects up to count DELIVERs on other within timeout_s; returns
    [(id, attempt, seconds since the call)]."""
    started = time.monotonic()
    found = []
    while len(found) < count:
        left = timeout_s - (time.monotonic() - started)
        got = other.recv_command(max(0.0, left), skip=(hostile.PONG, hostile.PING))
        if got is None:
            break
        command, rest = got
        if command[1] == hostile.DELIVER:
            header, _ = hostile.parse_envelope(rest[0])
            found.append((header[1], header[4], time.monotonic() - started))
    return found


def stalled_consumer(zqd, queue):
    """A producer's COUNT messages delivered to a raw consumer that reads
    none of them(its pipe holds one): it neither reads nor answers ZMTP
    heartbeats. Returns (producer, consumer, ids)."""
    producer = hostile.Client(zqd.endpoint)
    ids = producer.put_confirmed(queue, [b"x" * 1024] * COUNT)
    stalled = hostile.Client(zqd.endpoint, hwm=1)
    stalled.consume(queue, 1000)
    check(stalled.sock.poll(int(hostile.DEADLINE_S * 1000)), "no delivery reached the consumer")
    return producer, stalled, ids


def test_silent_for_less_than_five_pings_is_not_gone():
    zqd = hostile.Zqd(args=["-o", "ping_ivl_ms=%d" % (PING_IVL_S * 1000)]).start()
    try:
        producer, stalled, ids = stalled_consumer(zqd, "quiet")
        other = hostile.Client(zqd.endpoint)
        other.consume("quiet", 1000)
        #   A PING, then 6 s of silence(under 5 intervals): its
        #   deliveries stay with it, its pipe full all along.
        stalled.command(hostile.PING)
        early = redeliveries(other, 1, 6.0)
        check(not early, "redelivered during 6 s of silence: %r" % (early,))
        #   A PING: it is there. Then silence for good: gone after 5
        #   intervals without a byte from it, not sooner.
        stalled.command(hostile.PING)
        found = redeliveries(other, COUNT, 30.0)
        check(sorted(f[0] for f in found) == sorted(ids),
              "%d of %d came back" % (len(found), COUNT))
        check(all(f[1] == 1 for f in found), "attempts %r" % [f[1] for f in found])
        first_s = found[0][2]
        print("redelivered %.1f s after its last PING" % first_s)
        check(first_s >= SILENT_PINGS * PING_IVL_S - 1.5,
              "gone %.1f s after its last PING, before %d intervals" % (first_s, SILENT_PINGS))
        other.ack(ids)
        for client in (producer, stalled, other):
            client.close()
        zqd.stop()
    finally:
        zqd.close()


def test_closed_connection_is_gone():
    zqd = hostile.Zqd(args=["-o", "ping_ivl_ms=%d" % (PING_IVL_S * 1000)]).start()
    try:
        producer, stalled, ids = stalled_consumer(zqd, "closed")
        other = hostile.Client(zqd.endpoint)
        other.consume("closed", 1000)
        stalled.close()
        found = redeliveries(other, COUNT, hostile.DEADLINE_S)
        check(sorted(f[0] for f in found) == sorted(ids),
              "%d of %d came back" % (len(found), COUNT))
        print("redelivered %.1f s after the close" % found[0][2])
        #   Found by the next probe, well within the silence window.
        check(found[0][2] < SILENT_PINGS * PING_IVL_S,
              "taken back %.1f s after the close" % found[0][2])
        other.ack(ids)
        producer.close()
        other.close()
        zqd.stop()
    finally:
        zqd.close()


hostile.main(globals())
