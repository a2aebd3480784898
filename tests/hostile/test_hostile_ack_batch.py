#!/usr/bin/python3
#   A zq consumer (tests/reliable_proc) that holds its acks to send them
#   in batches (ack_flush_us) is killed with SIGKILL while it works
#   through a backlog: what it acked and what the server redelivers make
#   up every message, none lost, and the deliveries whose acks died with
#   it come again with attempt 1. (tests/test_reliable_acks.c counts the
#   batches themselves.) One ACK naming deliveries of two queues in turn,
#   some twice, and ids never delivered settles each delivery once and
#   answers how many it did not hold.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import fcntl
import os
import signal
import subprocess
import time

import msgpack
import zmq

import hostile
from hostile import check

COUNT = 10000
KILL_AFTER = 150
PIPE_BYTES = 4096
RELIABLE_PROC = os.path.join(hostile.BUILDDIR, "tests", "reliable_proc")


def admin(zqd, *words):
    """One admin request; returns the reply frames, or None."""
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(zqd.admin)
        sock.send_multipart([word.encode() for word in words])
        if not sock.poll(int(hostile.DEADLINE_S * 1000)):
            return None
        return sock.recv_multipart()
    finally:
        sock.close(0)


def row(zqd, name):
    """The STAT row of name, or {} while the device does not know it."""
    reply = admin(zqd, "STAT", name)
    if reply is None or reply[0] != b"OK":
        return {}
    return msgpack.unpackb(reply[1], raw=False)


def test_consumer_killed_mid_batch_loses_nothing():
    zqd = hostile.Zqd().start()
    proc = None
    try:
        producer = hostile.Client(zqd.endpoint)
        producer.put_confirmed("killed", [{"n": n} for n in range(COUNT)])
        # A 1 s timer and a window of the whole backlog: acks wait while
        # deliveries keep coming (at most 1024 together), and the consumer
        # is killed while it works through them. It prints each delivery
        # before its ack and waits when the pipe to us is full: a pipe of
        # one page (a few hundred lines) stops it long before it holds
        # the 1024 acks (half its window, at most 1024) that go at once.
        reader, writer = os.pipe()
        fcntl.fcntl(writer, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        proc = subprocess.Popen([RELIABLE_PROC, "-o", "ack_flush_us=1000000", "-o",
                                 "prefetch=%d" % COUNT, "consume", zqd.endpoint, "killed",
                                 str(COUNT)], stdout=writer, stderr=subprocess.PIPE)
        os.close(writer)
        proc.stdout = os.fdopen(reader, "rb")
        got = []
        deadline = time.monotonic() + hostile.DEADLINE_S
        while len(got) < KILL_AFTER and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            words = line.split()
            if words[0] == b"got":
                got.append(int(words[1]))
        os.kill(proc.pid, signal.SIGKILL)
        #  Read through proc.stdout itself: readline may hold lines in its
        #  buffer, which communicate() (reading the pipes' descriptors)
        #  would pass over. The process is dead: both reads end.
        rest = proc.stdout.read()
        errors = proc.stderr.read()
        proc.wait()
        check(len(got) == KILL_AFTER, "the consumer printed %d deliveries: %r"
              % (len(got), errors))
        got += [int(line.split()[1]) for line in rest.splitlines() if line.startswith(b"got")]
        # zqd takes back what the dead connection held.
        hostile.wait_until(lambda: row(zqd, "killed").get("in_flight") == 0,
                           "zqd took back the killed consumer's deliveries")
        stat = row(zqd, "killed")
        acked = stat["acked"]
        print("consumer got %d, zqd recorded %d acks, depth %d"
              % (len(got), acked, stat["depth"]))
        check(acked + stat["depth"] == COUNT, "acked %d + depth %d != %d"
              % (acked, stat["depth"], COUNT))
        check(acked < len(got), "every ack of the killed consumer had reached zqd")
        consumer = hostile.Client(zqd.endpoint)
        consumer.consume("killed", COUNT)
        delivered = consumer.deliveries(stat["depth"])
        numbers = [body["n"] for _, _, body in delivered]
        check(len(set(numbers)) == len(numbers), "a message came twice")
        check(set(numbers) | set(got) == set(range(COUNT)), "lost: %r"
              % sorted(set(range(COUNT)) - set(numbers) - set(got)))
        again = [header[4] for (_, header, body) in delivered
                 if body["n"] in set(got)]
        check(len(again) == len(got) - acked, "%d redelivered of the %d unacked"
              % (len(again), len(got) - acked))
        check(all(attempt == 1 for attempt in again), "attempts %r" % sorted(set(again)))
        consumer.ack([msg_id for msg_id, _, _ in delivered])
        hostile.wait_until(lambda: row(zqd, "killed").get("depth") == 0, "the queue emptied")
        consumer.close()
        producer.close()
        zqd.stop()
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        zqd.close()


PER_QUEUE = 200  # deliveries of each queue one ACK names
REPEATED = 10  # of them named twice in a row (the second while the first waits
# for its spool)
RUN = 150  # of queue a's named one after another: more than the server
# gathers for a spool at once (128); then both queues in turn
UNKNOWN = 3  # ids never delivered


def test_one_ack_across_queues_with_repeats():
    zqd = hostile.Zqd().start()
    try:
        producer = hostile.Client(zqd.endpoint)
        producer.put_confirmed("mixed.a", [{"n": n} for n in range(PER_QUEUE)])
        producer.put_confirmed("mixed.b", [{"n": n} for n in range(PER_QUEUE)])
        consumer = hostile.Client(zqd.endpoint)
        consumer.consume("mixed.a", 2 * PER_QUEUE)
        consumer.consume("mixed.b", 2 * PER_QUEUE)
        got = consumer.deliveries(2 * PER_QUEUE)
        by_queue = {"mixed.a": [], "mixed.b": []}
        for msg_id, header, _ in got:
            by_queue[header[2]].append(msg_id)
        check(all(len(ids) == PER_QUEUE for ids in by_queue.values()),
              "deliveries per queue: %r" % {q: len(i) for q, i in by_queue.items()})
        a, b = by_queue["mixed.a"], by_queue["mixed.b"]
        ids = [i for i in a[:REPEATED] for _ in range(2)] + a[REPEATED:RUN]
        ids += [i for pair in zip(a[RUN:], b) for i in pair] + b[PER_QUEUE - RUN:]
        ids += [hostile.new_id() for _ in range(UNKNOWN)]
        consumer.ack(ids)
        got = consumer.recv_command(hostile.DEADLINE_S)
        check(got is not None, "no answer to an ACK naming ids not held")
        command, _ = got
        expected = "%d of %d ids not held by this consumer" % (REPEATED + UNKNOWN, len(ids))
        check(command[1] == hostile.ERROR and command[2] == hostile.CODE_NOT_HELD
              and command[3] == expected, "answered %r, not ERROR %d %r"
              % (command, hostile.CODE_NOT_HELD, expected))
        for name in by_queue:
            stat = row(zqd, name)
            check(stat.get("depth") == 0 and stat.get("acked") == PER_QUEUE,
                  "%s after the ACK: %r" % (name, stat))
    finally:
        zqd.close()


hostile.main(globals())
