#!/usr/bin/python3
#   A consumer whose pipe fills up but that reads everything it is sent
#   (doc/PROTOCOL.md 18.3): deliveries resume as soon as it has read, not
#   when it next sends a command. A raw DEALER with a small receive
#   high-water mark and a small kernel buffer takes a large prefetch and
#   sends nothing until it holds every message; none of them may come to it
#   twice (a visibility timeout firing while they wait in the pipe would
#   send them again with attempt 1).
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

COUNT = 20000
PREFETCH = 1000000
RCVHWM = 100
RCVBUF = 4096
#   Before deliveries resumed on their own they went one pipeful per ping
#   interval: about 10 s for COUNT, against 0.3 s since.
DELIVERY_DEADLINE_S = 4.0
ACKS_PER_COMMAND = 1000


def slow_consumer(endpoint):
    """A raw consumer with a small pipe: RCVHWM messages in libzmq and a
    RCVBUF-octet kernel buffer."""
    return hostile.Client(endpoint, options=((zmq.RCVHWM, RCVHWM), (zmq.RCVBUF, RCVBUF)))


def settled_by_pong(client):
    """Sends PING and reads up to its PONG (the server answers a peer's
    commands in order); returns the ERRORs and DELIVERs that came first."""
    client.command(hostile.PING)
    before = []
    while True:
        got = client.recv_command(skip=(hostile.PING,))
        check(got is not None, "no PONG")
        command, rest = got
        if command[1] == hostile.PONG:
            return before
        before.append((command, rest))


def test_full_pipe_resumes_without_commands():
    zqd = hostile.Zqd().start()
    try:
        producer = hostile.Client(zqd.endpoint)
        ids = []
        for start in range(0, COUNT, 5000):
            ids += producer.put_confirmed("slow", [b"m%06d" % n
                                                   for n in range(start, min(COUNT, start + 5000))])
        consumer = slow_consumer(zqd.endpoint)
        started = time.monotonic()
        consumer.consume("slow", PREFETCH)
        #   Nothing sent from here until every delivery is in.
        got = []
        try:
            got = consumer.deliveries(COUNT, timeout_s=DELIVERY_DEADLINE_S)
        except hostile.Failure as failure:
            raise hostile.Failure("%s within %.0f s" % (failure, DELIVERY_DEADLINE_S))
        took_s = time.monotonic() - started
        print("%d deliveries through a %d-message pipe in %.2f s" % (COUNT, RCVHWM, took_s))
        attempts = [header[4] for _, header, _ in got]
        check(all(a == 0 for a in attempts),
              "%d deliveries with attempt > 0" % sum(1 for a in attempts if a))
        check(sorted(g[0] for g in got) == sorted(ids), "not the messages put, once each")
        #   Then it acks them all: each ack settles (no ERROR 7), and
        #   nothing more is delivered.
        for start in range(0, COUNT, ACKS_PER_COMMAND):
            consumer.ack([g[0] for g in got[start:start + ACKS_PER_COMMAND]])
        before = settled_by_pong(consumer)
        check(not before, "before the PONG: %r" % [c for c, _ in before][:3])
        marker = producer.put_confirmed("slow", [b"marker"])[0]
        (msg_id, header, _), = consumer.deliveries(1)
        check(msg_id == marker and header[4] == 0,
              "after the acks came %r attempt %d, not the marker" % (msg_id, header[4]))
        consumer.ack([marker])
        check(not settled_by_pong(consumer), "the marker's ack did not settle")
        producer.close()
        consumer.close()
        zqd.stop()
    finally:
        zqd.close()


hostile.main(globals())
