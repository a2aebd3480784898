#!/usr/bin/python3
#   What a consumer connection can make zqd hold in memory
#   (doc/PROTOCOL.md 18.3 and 18.7, max_unsettled_bytes and
#   max_unsettled_bytes_total). A raw DEALER that asks for a huge prefetch
#   and never reads used to make zqd copy the backlog into libzmq's pipe
#   for it, and again for the next connection after each visibility
#   timeout. zqd's resident memory (VmRSS) is the measure here.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import os
import sys
import time

import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
from hostile import check  # noqa: E402

MIB = 1024 * 1024
BODY = b"x" * 1000000          # about 1 MB per message
BACKLOG = 100                  # messages of BODY stored
NON_READERS = 3
VISIBILITY_MS = 1000
PREFETCH = 1000000


def rss_mib(zqd):
    return zqd.rss_kib() / 1024.0


def store_backlog(zqd, queue, count):
    producer = hostile.Client(zqd.endpoint)
    for start in range(0, count, 20):
        producer.put_confirmed(queue, [BODY] * min(20, count - start))
    producer.close()


def non_reader(endpoint, context):
    """A raw consumer that asks for everything and never reads."""
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.RCVHWM, 1)
    sock.setsockopt(zmq.RCVBUF, 4096)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def consume(sock, queue, prefetch):
    sock.send(hostile.msgpack.packb([1, hostile.CONSUME, queue, prefetch]))


def settle_time(zqd, seconds):
    """Lets zqd work for seconds (visibility timeouts fire, deliveries go
    out); returns the highest RSS seen meanwhile."""
    highest = rss_mib(zqd)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.1)
        highest = max(highest, rss_mib(zqd))
    return highest


def read_and_ack_all(zqd, queue, count, timeout_s=30.0):
    """A well-behaved consumer takes count messages, acking each; returns
    the ids it got."""
    consumer = hostile.Client(zqd.endpoint)
    consumer.consume(queue, PREFETCH)
    got = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count:
        left = deadline - time.monotonic()
        check(left > 0, "%d of %d messages delivered to a consumer that acks" % (len(got), count))
        (msg_id, _, _), = consumer.deliveries(1, timeout_s=left)
        if msg_id not in got:
            got.append(msg_id)
        consumer.ack([msg_id])
    consumer.close()
    return got


def test_non_readers_hold_a_bounded_amount():
    #   Default budgets: 16 MiB per connection. Before the bound each
    #   non-reader took the whole 100 MB backlog into its pipe, and took it
    #   again after each visibility timeout.
    zqd = hostile.Zqd(args=["-o", "visibility_timeout_ms=%d" % VISIBILITY_MS,
                            "-f", "none"]).start()
    context = zmq.Context()
    try:
        store_backlog(zqd, "big", BACKLOG)
        base = rss_mib(zqd)
        socks = []
        highest = base
        for _ in range(NON_READERS):
            sock = non_reader(zqd.endpoint, context)
            consume(sock, "big", PREFETCH)
            socks.append(sock)
            #   Two visibility timeouts: the deliveries time out and go
            #   back; the connection has not read them.
            highest = max(highest, settle_time(zqd, 2.5 * VISIBILITY_MS / 1000.0))
        grown = highest - base
        print("zqd RSS %.0f MiB with the backlog stored, at most %.0f MiB with %d non-reading "
              "consumers (+%.0f MiB)" % (base, highest, NON_READERS, grown))
        #   16 MiB and one message each, and room for allocator slack.
        bound = NON_READERS * 17 + 40
        check(grown < bound, "zqd grew %.0f MiB for %d consumers that never read (bound %d)"
              % (grown, NON_READERS, bound))
        check(zqd.alive(), "zqd died")
        #   A consumer that reads and acks still gets every message.
        got = read_and_ack_all(zqd, "big", BACKLOG)
        check(len(got) == BACKLOG, "a reading consumer got %d of %d" % (len(got), BACKLOG))
        for sock in socks:
            sock.close(0)
        zqd.stop()
    finally:
        context.destroy(0)
        zqd.close()


def test_total_budget_shared_by_connections():
    #   A total of 8 MiB over all connections, 16 MiB each: six non-readers
    #   together hold about 8 MiB (and one message each), and a consumer
    #   that holds nothing still gets its messages one at a time.
    zqd = hostile.Zqd(args=["-o", "visibility_timeout_ms=%d" % VISIBILITY_MS, "-f", "none",
                            "-o", "max_unsettled_bytes_total=%d" % (8 * MIB)]).start()
    context = zmq.Context()
    try:
        store_backlog(zqd, "big", BACKLOG)
        base = rss_mib(zqd)
        socks = []
        for _ in range(6):
            sock = non_reader(zqd.endpoint, context)
            consume(sock, "big", PREFETCH)
            socks.append(sock)
        highest = settle_time(zqd, 2.5 * VISIBILITY_MS / 1000.0)
        grown = highest - base
        print("six non-readers under an 8 MiB total: zqd +%.0f MiB" % grown)
        check(grown < 8 + 6 + 40, "zqd grew %.0f MiB under an 8 MiB total" % grown)
        got = read_and_ack_all(zqd, "big", BACKLOG)
        check(len(got) == BACKLOG, "a reading consumer got %d of %d" % (len(got), BACKLOG))
        for sock in socks:
            sock.close(0)
        zqd.stop()
    finally:
        context.destroy(0)
        zqd.close()


def test_budget_comes_back_on_settle():
    #   A 64 KiB budget and 20000 small messages: every ACK, NACK and
    #   visibility timeout must give its bytes back, or deliveries stop.
    zqd = hostile.Zqd(args=["-o", "max_unsettled_bytes=65536", "-f", "none",
                            "-o", "visibility_timeout_ms=300"]).start()
    try:
        producer = hostile.Client(zqd.endpoint)
        count = 20000
        for start in range(0, count, 5000):
            producer.put_confirmed("small", [b"s%07d" % n for n in range(start, start + 5000)])
        consumer = hostile.Client(zqd.endpoint)
        consumer.consume("small", PREFETCH)
        #   Settling nothing, it gets about 64 KiB of them (records of 40
        #   octets or so), not all: they time out and still count, since it
        #   has not settled any. Then it acks them late.
        first = []
        while True:
            got = consumer.recv_command(timeout_s=1.0, skip=(hostile.PING, hostile.PONG))
            if got is None:
                break
            command, rest = got
            if command[1] == hostile.DELIVER:
                first.append(hostile.parse_envelope(rest[0])[0][1])
            check(len(first) <= count, "%d deliveries of %d messages to a consumer settling nothing"
                  % (len(first), count))
        print("%d deliveries before the first settle" % len(first))
        check(0 < len(first) <= 65536 // 30 + 1,
              "%d deliveries to a consumer with a 64 KiB budget settling nothing" % len(first))
        consumer.ack(first)
        seen = set(first)
        nacked = set()
        late = None
        deadline = time.monotonic() + 40.0
        while len(seen) < count:
            check(time.monotonic() < deadline, "%d of %d delivered" % (len(seen), count))
            got = consumer.recv_command(timeout_s=max(0.1, deadline - time.monotonic()))
            check(got is not None, "deliveries stopped at %d of %d" % (len(seen), count))
            command, rest = got
            if command[1] != hostile.DELIVER:
                continue
            header, _ = hostile.parse_envelope(rest[0])
            msg_id = header[1]
            if late is None and len(seen) == 100:
                #   One delivery left to time out (its bytes come back
                #   when it is settled late or a later one is settled).
                late = msg_id
                continue
            if msg_id not in nacked and len(nacked) < 500 and len(seen) % 7 == 3:
                nacked.add(msg_id)
                consumer.nack([msg_id])
                continue
            seen.add(msg_id)
            consumer.ack([msg_id])
        print("%d deliveries through a 64 KiB budget (%d nacked once, one timed out)"
              % (count, len(nacked)))
        producer.close()
        consumer.close()
        zqd.stop()
    finally:
        zqd.close()


def test_slow_reader_resumes_after_timeouts():
    #   A consumer that reads its deliveries but settles them only after
    #   their visibility timeout: their bytes stay counted (they may still
    #   sit in its pipe) until it settles them; then deliveries go on.
    zqd = hostile.Zqd(args=["-o", "max_unsettled_bytes=3000000", "-f", "none",
                            "-o", "visibility_timeout_ms=500"]).start()
    try:
        store_backlog(zqd, "slow", 10)
        consumer = hostile.Client(zqd.endpoint)
        consumer.consume("slow", PREFETCH)
        first = consumer.deliveries(3)
        #   The budget is spent: nothing more comes before the timeouts,
        #   nor after them (the connection has not shown it read them).
        check(consumer.recv_command(timeout_s=1.5, skip=(hostile.PING, hostile.PONG)) is None,
              "a fourth delivery came past a 3 MB budget")
        consumer.ack([msg_id for msg_id, _, _ in first])
        rest = []
        deadline = time.monotonic() + 20.0
        while len(rest) < 7:
            check(time.monotonic() < deadline, "%d of 7 after the late acks" % len(rest))
            (msg_id, _, _), = consumer.deliveries(1, timeout_s=deadline - time.monotonic())
            consumer.ack([msg_id])
            if msg_id not in rest:
                rest.append(msg_id)
        consumer.close()
        zqd.stop()
    finally:
        zqd.close()


hostile.main(globals())
