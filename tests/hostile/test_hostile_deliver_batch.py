#!/usr/bin/python3
#   DELIVER batches (doc/PROTOCOL.md 19.7) from a real zqd: a consumer
#   that names the largest batch it takes in CONSUME (element 5) gets the
#   deliveries waiting together as batch frames, never larger than it
#   asked nor of more than 1024 elements, each element a delivery with its
#   own id and attempt; a lone delivery goes alone; a consumer without
#   element 5 (or with 0) gets single DELIVERs only, and one of another
#   type is ERROR 4; a batch that finds the consumer's pipe full is taken
#   back whole and sent again later, attempts unchanged. kill -9 of zqd, or of a zq
#   consumer process, in the middle of batches loses no confirmed message:
#   every one not acked comes again.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import os
import signal
import subprocess
import sys
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
from hostile import check  # noqa: E402

BATCH_TAG = 0x5A42
MAX_COUNT = 1024


def consume_batches(client, queue, prefetch, batch_bytes):
    """CONSUME with element 5 (the largest batch frame taken)."""
    client.command(hostile.CONSUME, queue, prefetch, batch_bytes)


def split(frame):
    """The envelopes of a DELIVER's envelope frame: [frame] for a plain
    envelope, the elements of a batch frame otherwise; and whether it
    was a batch."""
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(frame)
    try:
        count = unpacker.read_array_header()
        tag = unpacker.unpack()
    except Exception:
        return [frame], False
    if tag != BATCH_TAG:
        return [frame], False
    return [unpacker.unpack() for _ in range(count - 1)], True


def take(client, count, timeout_s=hostile.DEADLINE_S):
    """Receives DELIVERs until count deliveries came. Returns (deliveries
    [(id, attempt, body)], frames [(is_batch, elements, frame octets)])."""
    got = []
    frames = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count:
        answer = client.recv_command(max(0.0, deadline - time.monotonic()), skip=(hostile.PONG,
                                                                                 hostile.PING))
        if answer is None:
            raise hostile.Failure("%d of %d deliveries arrived" % (len(got), count))
        command, rest = answer
        if command[1] != hostile.DELIVER:
            continue
        check(len(rest) == 1, "DELIVER with %d envelope frames" % len(rest))
        envelopes, is_batch = split(rest[0])
        frames.append((is_batch, len(envelopes), len(rest[0])))
        for one in envelopes:
            header, body = hostile.parse_envelope(one)
            got.append((header[1], header[4], body))
    return got, frames


def quiet(client, timeout_s=0.3):
    """Fails if a DELIVER comes within timeout_s."""
    answer = client.recv_command(timeout_s, skip=(hostile.PONG, hostile.PING))
    check(answer is None or answer[0][1] != hostile.DELIVER, "an unexpected delivery")


def test_waiting_deliveries_go_as_batches():
    zqd = hostile.Zqd().start()
    try:
        producer = hostile.Client(zqd.endpoint)
        ids = producer.put_confirmed("work", [{"n": n} for n in range(300)])
        consumer = hostile.Client(zqd.endpoint)
        consume_batches(consumer, "work", 1000, 65536)
        got, frames = take(consumer, 300)
        quiet(consumer)
        check([g[0] for g in got] == ids, "deliveries out of order or doubled")
        check([g[2]["n"] for g in got] == list(range(300)), "bodies changed")
        check(all(g[1] == 0 for g in got), "a first delivery with attempt > 0")
        check(any(is_batch for is_batch, _, _ in frames), "no batch frame among %d DELIVERs"
              % len(frames))
        check(all(size <= 65536 for _, _, size in frames), "a batch over 65536 octets")
        check(all(is_batch == (count > 1) for is_batch, count, _ in frames),
              "a batch of one element, or a plain DELIVER of several")
        # Acked by id, element by element: nothing comes again.
        consumer.ack(ids)
        # A nack in the middle: it comes again with attempt 1.
        more = producer.put_confirmed("work", [{"n": n} for n in range(3)])
        again, _ = take(consumer, 3)
        consumer.nack([more[1]])
        back, _ = take(consumer, 1)
        check(back[0][0] == more[1] and back[0][1] == 1, "the nacked one came as %r" % (back,))
        consumer.ack([more[0], more[1], more[2]])
        # A lone message goes alone, at once.
        lone = producer.put_confirmed("work", [{"n": "lone"}])
        got, frames = take(consumer, 1, timeout_s=5)
        check(got[0][0] == lone[0] and frames == [(False, 1, frames[0][2])],
              "a lone delivery came as %r" % (frames,))
        consumer.close()
        producer.close()
    finally:
        zqd.close()


def test_batches_bounded_by_the_consumer_and_the_count():
    zqd = hostile.Zqd().start()
    try:
        producer = hostile.Client(zqd.endpoint)
        ids = producer.put_confirmed("small", [{"n": n} for n in range(40)])
        consumer = hostile.Client(zqd.endpoint)
        consume_batches(consumer, "small", 1000, 300)
        got, frames = take(consumer, 40)
        check([g[0] for g in got] == ids, "deliveries out of order")
        check(all(size <= 300 for is_batch, _, size in frames if is_batch),
              "a batch over the 300 octets asked for: %r" % (frames,))
        check(any(is_batch for is_batch, _, _ in frames), "no batch at all")
        consumer.ack(ids)
        consumer.close()
        # 1500 waiting, prefetch 2000, the largest batch asked: no batch
        # frame holds more than 1024 elements.
        ids = []
        for start in range(0, 1500, 500):
            ids += producer.put_confirmed("many", [{"n": n} for n in range(start, start + 500)])
        consumer = hostile.Client(zqd.endpoint)
        consume_batches(consumer, "many", 2000, 2 ** 64 - 1)
        got, frames = take(consumer, 1500)
        check([g[0] for g in got] == ids, "deliveries out of order")
        check(max(count for _, count, _ in frames) <= MAX_COUNT, "a batch of over 1024")
        check(len(frames) < 1500, "no batching")
        consumer.ack(ids)
        consumer.close()
        producer.close()
    finally:
        zqd.close()


def test_consumer_without_element_5_gets_single_delivers():
    zqd = hostile.Zqd().start()
    try:
        producer = hostile.Client(zqd.endpoint)
        ids = producer.put_confirmed("old", [{"n": n} for n in range(100)])
        consumer = hostile.Client(zqd.endpoint)
        consumer.consume("old", 1000)
        got, frames = take(consumer, 100)
        check([g[0] for g in got] == ids, "deliveries out of order")
        check(not any(is_batch for is_batch, _, _ in frames), "a batch to an old consumer")
        consumer.ack(ids)
        consumer.close()
        # Element 5 = 0 asks for none; another type is a malformed CONSUME.
        ids = producer.put_confirmed("old", [{"n": n} for n in range(100)])
        consumer = hostile.Client(zqd.endpoint)
        consume_batches(consumer, "old", 1000, 0)
        got, frames = take(consumer, 100)
        check(not any(is_batch for is_batch, _, _ in frames), "a batch after element 5 = 0")
        consumer.ack(ids)
        consume_batches(consumer, "old", 1000, "65536")
        answer = consumer.recv_command(skip=(hostile.PING, hostile.PONG))
        check(answer and answer[0][1] == hostile.ERROR and answer[0][2] == hostile.CODE_PROTOCOL,
              "a CONSUME with a str element 5 answered %r" % (answer and answer[0],))
        #  ... and zqd's log says so.
        line = "ERROR %d to a client: malformed command" % hostile.CODE_PROTOCOL
        hostile.wait_until(lambda: line in zqd.stderr(), "zqd's line for the malformed CONSUME")
        consumer.close()
        producer.close()
    finally:
        zqd.close()


def test_full_pipe_takes_a_batch_back():
    # Batches of 2 (110 octets) to a consumer with a small pipe fill zqd's
    # send queue to the peer: a batch that finds no room is taken back
    # whole and goes later, so each message still comes once, attempt 0.
    count = 6000
    zqd = hostile.Zqd().start()
    try:
        producer = hostile.Client(zqd.endpoint)
        ids = []
        for start in range(0, count, 3000):
            ids += producer.put_confirmed("pipe", [{"n": n} for n in range(start, start + 3000)])
        consumer = hostile.Client(zqd.endpoint, options=((zmq.RCVHWM, 10), (zmq.RCVBUF, 4096)))
        consume_batches(consumer, "pipe", 1000000, 110)
        got, frames = take(consumer, count)
        check(all(is_batch == (n > 1) for is_batch, n, _ in frames), "a batch of one")
        check(max(n for _, n, _ in frames) == 2, "batches of %r" % max(n for _, n, _ in frames))
        check(sorted(g[0] for g in got) == sorted(ids), "not the messages put, once each")
        check(all(g[1] == 0 for g in got), "a delivery came again")
        consumer.ack(ids[:3000])
        consumer.ack(ids[3000:])
        consumer.close()
        producer.close()
    finally:
        zqd.close()


def test_kill9_zqd_mid_batch():
    zqd = hostile.Zqd().start()
    try:
        producer = hostile.Client(zqd.endpoint)
        ids = producer.put_confirmed("jobs", [{"n": n} for n in range(400)])
        producer.close()
        consumer = hostile.Client(zqd.endpoint)
        consume_batches(consumer, "jobs", 200, 65536)
        got, frames = take(consumer, 200)
        check(any(is_batch for is_batch, _, _ in frames), "no batch before the kill")
        # Ack half of what came, then kill -9 with the rest unsettled.
        acked = [g[0] for g in got[:100]]
        consumer.ack(acked)
        consumer.close()
        zqd.kill()
        zqd.start()
        consumer = hostile.Client(zqd.endpoint)
        consume_batches(consumer, "jobs", 1000, 65536)
        # Every id not acked comes again (an acked one may too: its ack
        # may not have been stored before the kill).
        wanted = set(ids) - set(acked)
        after = set()
        deadline = time.monotonic() + hostile.DEADLINE_S
        while not wanted <= after:
            left = deadline - time.monotonic()
            check(left > 0, "lost after the restart: %d of %d" % (len(wanted - after),
                                                                   len(wanted)))
            got, _ = take(consumer, 1, timeout_s=left)
            after.update(g[0] for g in got)
            consumer.ack([g[0] for g in got])
        check(after <= set(ids), "unknown ids delivered")
        consumer.close()
    finally:
        zqd.close()


def test_kill9_consumer_mid_batch():
    zqd = hostile.Zqd().start()
    try:
        producer = hostile.Client(zqd.endpoint)
        ids = producer.put_confirmed("tasks", [{"n": n} for n in range(300)])
        producer.close()
        proc = os.path.join(hostile.BUILDDIR, "tests", "reliable_proc")
        # It holds what it gets (no acks): its window of 100, delivered in
        # batches; kill -9 once 50 came.
        child = subprocess.Popen([proc, "-o", "prefetch=100", "consume", ">" + zqd.endpoint,
                                  "tasks", "1000", "hold"], stdout=subprocess.PIPE, text=True)
        seen = set()
        try:
            while len(seen) < 50:
                line = child.stdout.readline()
                check(line, "the consumer stopped early")
                if line.startswith("got "):
                    seen.add(int(line.split()[1]))
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait(hostile.DEADLINE_S)
        acked = set()
        consumer = hostile.Client(zqd.endpoint)
        consume_batches(consumer, "tasks", 1000, 65536)
        # Every message comes: those it held with attempt 1.
        attempts = {}
        numbers = set()
        deadline = time.monotonic() + hostile.DEADLINE_S
        while not set(range(300)) - acked <= numbers:
            left = deadline - time.monotonic()
            check(left > 0, "lost: %r" % sorted(set(range(300)) - acked - numbers)[:10])
            got, _ = take(consumer, 1, timeout_s=left)
            numbers.update(g[2]["n"] for g in got)
            attempts.update((g[2]["n"], g[1]) for g in got)
            consumer.ack([g[0] for g in got])
        check(len(ids) == 300, "puts")
        check(all(attempts[n] == 1 for n in seen), "a held one came back with attempt 0")
        consumer.close()
    finally:
        zqd.close()


hostile.main(globals())
