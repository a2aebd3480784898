#!/usr/bin/python3
#   zq's reliable interop peer, written from doc/PROTOCOL.md ("reliable")
#   with pyzmq and msgpack-python only. Against a zq server started from
#   tests/reliable_proc it: puts messages and checks their confirms; puts
#   one again under the same id (confirmed, not stored twice); consumes
#   with a prefetch window, acks, nacks (delivered again with attempt 1),
#   touches; sends garbage and checks the ERROR answers; puts a PUT batch
#   (each element confirmed and delivered in order); and checks that
#   zq's own producer and consumer (reliable_proc) exchange messages with
#   it both ways.
#
#   usage: reliable_peer.py RELIABLE_PROC tcp|ipc
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import os
import subprocess
import sys
import time

import msgpack
import zmq

DEADLINE_S = 10.0
PUT, CONFIRM, REFUSE, CONSUME, CANCEL, DELIVER, ACK, NACK, TOUCH, PING, PONG, ERROR = range(1, 13)


def fail(text):
    print("reliable_peer: FAIL: %s" % text, file=sys.stderr)
    sys.exit(1)


def new_id(counter=[0]):
    counter[0] += 1
    now_ms = int(time.time() * 1000)
    return now_ms.to_bytes(6, "big") + (counter[0] & 0xFFFF).to_bytes(2, "big") + os.urandom(8)


def envelope(queue, body, msg_id=None, headers=None):
    msg_id = msg_id or new_id()
    header = [1, msg_id, queue, int(time.time() * 1000), 0, headers or {}]
    return msg_id, msgpack.packb(header) + msgpack.packb(body)


def recv(sock, timeout_s=DEADLINE_S):
    if not sock.poll(int(timeout_s * 1000)):
        return None
    return sock.recv_multipart()


def parse_envelope(frame):
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(frame)
    header = unpacker.unpack()
    body = unpacker.unpack()
    return header, body


def await_confirms(producer, waiting, what):
    """Reads CONFIRMs on producer until every id of the set waiting (which
    empties) is confirmed; each CONFIRM must carry whole 16-octet ids.
    what names the messages when they are not all confirmed in time."""
    deadline = time.time() + DEADLINE_S
    while waiting:
        frames = recv(producer, max(0.0, deadline - time.time()))
        if frames is None:
            fail("%d %s not confirmed" % (len(waiting), what))
        command = msgpack.unpackb(frames[0])
        if command[1] != CONFIRM:
            fail("expected CONFIRM for %s, got %r" % (what, command))
        blob = command[2]
        if len(blob) == 0 or len(blob) % 16:
            fail("CONFIRM ids of %d octets" % len(blob))
        for i in range(0, len(blob), 16):
            waiting.discard(blob[i:i + 16])


def put_all(producer, queue, bodies):
    """Puts each body, returns the ids once every one is confirmed."""
    ids = []
    for body in bodies:
        msg_id, e1 = envelope(queue, body)
        producer.send_multipart([msgpack.packb([1, PUT]), e1])
        ids.append(msg_id)
    await_confirms(producer, set(ids), "PUTs")
    return ids


def put_batch(producer, queue, bodies):
    """Puts the bodies as one PUT batch (section 19.5): [0x5A42, bin...];
    returns the ids once every one is confirmed."""
    made = [envelope(queue, body) for body in bodies]
    frame = msgpack.packb([0x5A42] + [e1 for _, e1 in made])
    producer.send_multipart([msgpack.packb([1, PUT]), frame])
    await_confirms(producer, set(msg_id for msg_id, _ in made), "PUTs of a batch")
    return [msg_id for msg_id, _ in made]


BATCH_TAG = 0x5A42  # section 19.1


def envelopes_of(frame):
    """The envelopes a DELIVER carries (section 19.7): the frame itself, or
    the elements of a batch frame; and whether it was a batch."""
    unpacker = msgpack.Unpacker()
    unpacker.feed(frame)
    count = unpacker.read_array_header()
    if count < 2 or unpacker.unpack() != BATCH_TAG:
        return [frame], False
    return [unpacker.unpack() for _ in range(count - 1)], True


def take(consumer, count, ack=False, batches=None):
    """Receives count deliveries: (id, attempt, body) each; acks each at
    once if ack. Each DELIVER's kind (batch or not) is appended to
    batches, if given."""
    got = []
    deadline = time.time() + DEADLINE_S
    while len(got) < count:
        frames = recv(consumer, max(0.0, deadline - time.time()))
        if frames is None:
            fail("%d of %d deliveries" % (len(got), count))
        command = msgpack.unpackb(frames[0])
        if command[1] in (PING, PONG):
            continue
        if command[1] != DELIVER or len(frames) != 2:
            fail("expected DELIVER + envelope, got %r" % (command,))
        if command[2] <= 0:
            fail("visibility_ms %r" % command[2])
        envelopes, is_batch = envelopes_of(frames[1])
        if batches is not None:
            batches.append(is_batch)
        for one in envelopes:
            header, body = parse_envelope(one)
            got.append((header[1], header[4], body))
            if ack:
                consumer.send(msgpack.packb([1, ACK, header[1]]))
    return got


def main():
    proc, transport = sys.argv[1], sys.argv[2]
    if transport == "tcp":
        bind = "@tcp://127.0.0.1:*"
    else:
        bind = "@ipc://%s/reliable-server" % os.environ.get("IPC_DIR", "/tmp")
    server = subprocess.Popen([proc, "-o", "ping_ivl_ms=100", "-o", "nack_backoff_ms=50",
                               "server", bind],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline().split()
        if len(line) != 2 or line[0] != "ready":
            fail("server did not start")
        endpoint = line[1]
        run(proc, endpoint)
    finally:
        server.stdin.close()
        try:
            server.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            server.kill()
    print("reliable_peer: %s ok" % transport)


def run(proc, endpoint):
    ctx = zmq.Context.instance()
    producer = ctx.socket(zmq.DEALER)
    producer.linger = 0
    producer.connect(endpoint)
    consumer = ctx.socket(zmq.DEALER)
    consumer.linger = 0
    consumer.connect(endpoint)

    # Put 20, one of them twice under its id: confirmed, stored once.
    ids = put_all(producer, "py", [{"n": n} for n in range(20)])
    again_id, again = envelope("py", {"n": 0}, msg_id=ids[0])
    producer.send_multipart([msgpack.packb([1, PUT]), again])
    frames = recv(producer)
    if frames is None or msgpack.unpackb(frames[0])[:3] != [1, CONFIRM, ids[0]]:
        fail("a PUT again under its id was not confirmed")

    # Consume with prefetch 5 (and no batches): exactly 5 come before any
    # is settled, each alone.
    consumer.send(msgpack.packb([1, CONSUME, "py", 5]))
    kinds = []
    first = take(consumer, 5, batches=kinds)
    if any(kinds):
        fail("a batch to a consumer that asked for none")
    quiet_until = time.time() + 0.3
    frames = recv(consumer, 0.3)
    while frames is not None and msgpack.unpackb(frames[0])[1] == PING:
        frames = recv(consumer, max(0.0, quiet_until - time.time()))
    if frames is not None:
        fail("a delivery beyond the prefetch window: %r" % (frames,))
    if [body["n"] for _, _, body in first] != list(range(5)):
        fail("deliveries out of order: %r" % (first,))
    if any(attempt != 0 for _, attempt, _ in first):
        fail("first deliveries with attempt > 0")
    # Nack the first at once: it comes back with attempt 1. Touch one,
    # ack the rest, in one ACK of several ids.
    consumer.send(msgpack.packb([1, NACK, first[0][0], 0]))
    consumer.send(msgpack.packb([1, TOUCH, first[1][0], 60000]))
    consumer.send(msgpack.packb([1, ACK, b"".join(i for i, _, _ in first[1:])]))
    rest = take(consumer, 16, ack=True)
    again = [d for d in rest if d[0] == first[0][0]]
    if len(again) != 1 or again[0][1] != 1:
        fail("the nacked message did not come back once with attempt 1: %r" % (again,))
    numbers = sorted(body["n"] for _, _, body in first[1:] + rest)
    if numbers != list(range(20)):
        fail("messages lost or doubled: %r" % (numbers,))
    consumer.send(msgpack.packb([1, CANCEL, "py"]))

    # Garbage: every malformed command gets an ERROR, the service goes on.
    for junk in [[b"not msgpack \xc1"], [msgpack.packb([2, PUT])], [msgpack.packb([1, 99])],
                 [msgpack.packb([1, PUT])], [msgpack.packb([1, PUT]), b"\x96\x01"]]:
        producer.send_multipart(junk)
        frames = recv(producer)
        if frames is None:
            fail("no answer to %r" % (junk,))
        command = msgpack.unpackb(frames[0])
        if command[1] != ERROR or command[2] not in (4, 5, 6):
            fail("answer to %r: %r" % (junk, command))
    # PING gets PONG with an 8-octet instance; no session for a producer.
    producer.send(msgpack.packb([1, PING]))
    frames = recv(producer)
    command = msgpack.unpackb(frames[0]) if frames else None
    if not command or command[1] != PONG or len(command[2]) != 8 or not command[3] & 1:
        fail("PING answered with %r" % (command,))

    # zq's own consumer takes what Python put ...
    put_all(producer, "to-c", [{"n": n} for n in range(10)])
    out = subprocess.run([proc, "consume", ">" + endpoint, "to-c", "10"], capture_output=True,
                         text=True, timeout=60)
    got = sorted(int(line.split()[1]) for line in out.stdout.splitlines() if line.startswith("got"))
    if out.returncode != 0 or got != list(range(10)):
        fail("zq consumer got %r (%s)" % (got, out.stderr))
    # ... and Python takes what zq's own producer put.
    out = subprocess.run([proc, "produce", ">" + endpoint, "from-c", "0", "10"],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0 or "done" not in out.stdout:
        fail("zq producer: %s" % out.stderr)
    consumer.send(msgpack.packb([1, CONSUME, "from-c", 100]))
    got = take(consumer, 10)
    if sorted(body["n"] for _, _, body in got) != list(range(10)):
        fail("from zq's producer: %r" % (got,))
    consumer.send(msgpack.packb([1, ACK, b"".join(i for i, _, _ in got)]))

    # A PUT batch: each element confirmed and delivered in order.
    ids = put_batch(producer, "py-batch", [{"n": n} for n in range(3)])
    consumer.send(msgpack.packb([1, CONSUME, "py-batch", 10]))
    got = take(consumer, 3, ack=True)
    if [i for i, _, _ in got] != ids:
        fail("a PUT batch delivered as %r" % (got,))

    # DELIVER batches (19.7): a consumer that names the largest batch it
    # takes (CONSUME element 5) gets messages waiting together as batch
    # frames; each element is a delivery, acked by its id.
    ids = put_all(producer, "py-deliver", [{"n": n} for n in range(30)])
    batching = zmq.Context.instance().socket(zmq.DEALER)
    batching.linger = 0
    batching.connect(endpoint)
    batching.send(msgpack.packb([1, CONSUME, "py-deliver", 100, 65536]))
    kinds = []
    got = take(batching, 30, ack=True, batches=kinds)
    if [i for i, _, _ in got] != ids or any(a for _, a, _ in got):
        fail("DELIVER batches gave %r" % ([(b["n"], a) for _, a, b in got],))
    if not any(kinds):
        fail("30 messages waiting came as %d single DELIVERs" % len(kinds))
    batching.close()
    producer.close()
    consumer.close()


if __name__ == "__main__":
    main()
