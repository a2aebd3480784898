#!/usr/bin/python3
#   What a stream with no consumer makes zqd hold (doc/DEVICE.md, "stream"
#   and the stream settings): its memory ring is bounded in bytes
#   (memory_bytes) as well as in messages, the rest spills to the spool,
#   and the spool has a byte quota past which messages are dropped,
#   counted in STAT's "dropped" and logged. zqd's resident memory (VmRSS)
#   is the measure.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import os
import sys
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
from hostile import check  # noqa: E402

BODY_BYTES = 1000000      # about 1 MB per message, under max_message_bytes
COUNT = 300               # messages pushed, about 300 MB
#   The default memory_bytes is 64 MiB; zqd itself, libzmq's buffers and
#   the spool's write batches take the rest. Before the byte bound the
#   ring kept all 300 messages (RSS above 300 MiB).
RSS_BOUND_MIB = 160
QUOTA_BYTES = 48 * 1024 * 1024
STREAM = """queues
    jobs
        kind = stream
        in = tcp://127.0.0.1:*
        out = tcp://127.0.0.1:*
"""


def start(config):
    """A zqd with the stream "jobs"; returns it and its (in, out)."""
    zqd = hostile.Zqd(config=config).start()

    def endpoints():
        with open(zqd.out_path) as out:
            for line in out:
                words = line.split()
                # zqd: stream NAME in ENDPOINT out ENDPOINT
                if len(words) == 7 and words[2] == "jobs" and words[3] == "in":
                    return words[4], words[6]
        return None

    return zqd, hostile.wait_until(endpoints, "zqd to print the stream's endpoints")


def rss_mib(zqd):
    return zqd.rss_kib() / 1024.0


def stat(zqd, name):
    """The STAT row of name (a dict)."""
    reply = hostile.admin_request(zqd.admin, "STAT", name)
    check(reply is not None, "STAT %s answered nothing" % name)
    check(reply[0] == b"OK", "STAT %s answered %r" % (name, reply))
    return msgpack.unpackb(reply[1], raw=False)


def push_all(zqd, endpoint):
    """Pushes COUNT messages of BODY_BYTES, numbered in the body's first
    8 bytes; waits until zqd has taken them all in; returns the highest
    RSS seen meanwhile."""
    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 10)
    sock.connect(endpoint)
    highest = rss_mib(zqd)
    deadline = time.monotonic() + 20.0
    for number in range(COUNT):
        body = number.to_bytes(8, "big") + b"x" * (BODY_BYTES - 8)
        _, frame = hostile.envelope("jobs", body)
        while not sock.poll(100, zmq.POLLOUT):
            check(time.monotonic() < deadline, "zqd took %d of %d messages" % (number, COUNT))
        sock.send(frame, zmq.DONTWAIT)
        if number % 20 == 0:
            highest = max(highest, rss_mib(zqd))

    def all_in():
        return stat(zqd, "jobs")["in"] >= COUNT

    hostile.wait_until(all_in, "zqd to take in %d messages" % COUNT, step_s=0.1)
    sock.close(0)
    return max(highest, rss_mib(zqd))


def stalled_consumer(endpoint):
    """A consumer that connects and does not read yet: its own queue holds
    one message and the kernel's buffer little."""
    sock = zmq.Context.instance().socket(zmq.PULL)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 1)
    sock.setsockopt(zmq.RCVBUF, 4096)
    sock.connect(endpoint)
    return sock


def pull(endpoint, count, timeout_s=60.0, sock=None):
    """Pulls count messages (on sock, or a new consumer); returns their
    numbers in arrival order."""
    if sock is None:
        sock = zmq.Context.instance().socket(zmq.PULL)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 10)
        sock.connect(endpoint)
    numbers = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(numbers) < count:
            left = deadline - time.monotonic()
            check(left > 0, "a consumer got %d of %d messages" % (len(numbers), count))
            if not sock.poll(int(left * 1000) + 1):
                continue
            frames = sock.recv_multipart()
            _, body = hostile.parse_envelope(b"".join(frames))
            numbers.append(int.from_bytes(body[:8], "big"))
        #   And nothing more than what was counted.
        check(not sock.poll(300), "a consumer got more than %d messages" % count)
    finally:
        sock.close(0)
    return numbers


def test_default_memory_is_bounded_in_bytes():
    zqd, (inp, out) = start(STREAM)
    try:
        rss_before = rss_mib(zqd)
        highest = push_all(zqd, inp)
        row = stat(zqd, "jobs")
        print("RSS %.0f MiB before, at most %.0f MiB while %d x %d bytes came in; "
              "spilled %d, dropped %d, depth %d"
              % (rss_before, highest, COUNT, BODY_BYTES, row["spilled"], row["dropped"],
                 row["depth"]))
        check(highest < RSS_BOUND_MIB,
              "zqd's RSS reached %.0f MiB (bound %d MiB) holding a stream with no consumer"
              % (highest, RSS_BOUND_MIB))
        check(row["spilled"] > 0, "nothing spilled to the spool: %r" % row)
        hostile.wait_until(lambda: "spilled, its memory is full" in zqd.stderr(),
                           "zqd to log the spill")
        check(row["dropped"] == 0 and row["depth"] == COUNT,
              "the default quota should hold 300 MB: %r" % row)
        numbers = pull(out, COUNT)
        check(numbers == list(range(COUNT)), "the consumer got them out of order or with gaps")
        zqd.stop()
    finally:
        zqd.close()


def test_stalled_consumer_costs_bounded_memory():
    """A consumer that stops reading takes what libzmq queues for it, a few
    messages of the largest size, not the backlog."""
    zqd, (inp, out) = start(STREAM)
    try:
        stalled = stalled_consumer(out)
        highest = push_all(zqd, inp)
        row = stat(zqd, "jobs")
        print("one stalled consumer: RSS at most %.0f MiB; out %d, spilled %d, depth %d"
              % (highest, row["out"], row["spilled"], row["depth"]))
        check(row["out"] > 0, "nothing went to the stalled consumer: %r" % row)
        check(highest < RSS_BOUND_MIB,
              "zqd's RSS reached %.0f MiB (bound %d MiB) with one stalled consumer"
              % (highest, RSS_BOUND_MIB))
        #   Once it reads, it gets every message, in order.
        numbers = pull(out, COUNT, sock=stalled)
        check(numbers == list(range(COUNT)), "the consumer got them out of order or with gaps")
        zqd.stop()
    finally:
        zqd.close()


def test_spool_quota_drops_newest_counted_and_logged():
    config = STREAM + "        quota_bytes = %d\n" % QUOTA_BYTES
    zqd, (inp, out) = start(config)
    try:
        highest = push_all(zqd, inp)
        row = stat(zqd, "jobs")
        print("quota %d: RSS at most %.0f MiB; spilled %d, dropped %d, depth %d"
              % (QUOTA_BYTES, highest, row["spilled"], row["dropped"], row["depth"]))
        check(highest < RSS_BOUND_MIB, "zqd's RSS reached %.0f MiB" % highest)
        check(row["dropped"] > 0, "nothing dropped past the quota: %r" % row)
        check(row["depth"] + row["dropped"] == COUNT, "depth and dropped miss some: %r" % row)
        #   Memory (64 MiB) and the spool's quota hold at most this many.
        check(row["depth"] <= (64 * 1024 * 1024 + QUOTA_BYTES) // BODY_BYTES + 1,
              "more held than the bounds allow: %r" % row)
        hostile.wait_until(lambda: "dropped" in zqd.stderr(), "zqd to log the drops")
        print("log: %s" % [line for line in zqd.stderr().splitlines() if "dropped" in line])
        #   What was kept is the oldest, in order: the newest were dropped.
        numbers = pull(out, row["depth"])
        check(numbers == list(range(row["depth"])),
              "the consumer got %r..." % numbers[:10])
        zqd.stop()
    finally:
        zqd.close()


hostile.main(globals())
