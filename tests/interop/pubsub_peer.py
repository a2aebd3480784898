#!/usr/bin/python3
#   The Python side of zq's pipeline and pubsub interop test: producers,
#   consumers, publishers and subscribers written from doc/PROTOCOL.md
#   (sections 8, 15 and 16) with pyzmq and msgpack-python only, talking to
#   tests/interop/pattern_peer (libzq), which this script starts.
#
#   pubsub_peer.py PATTERN_PEER [TRANSPORT]    TRANSPORT: tcp (default) or
#                                              ipc (then a directory: IPC_DIR)
#
#   Exits 0 when every check passes, 1 otherwise.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.

import json
import os
import select
import struct
import subprocess
import sys
import time

try:
    import msgpack
    import zmq
except ImportError as error:
    sys.stderr.write("pubsub_peer: %s; install python3-zmq and python3-msgpack\n" % error)
    sys.exit(1)

from peer_checks import Failure, check, decode_envelope

WAIT_S = 20
ZEROCOPY_MIN = 8192


#  ---- The envelope (PROTOCOL.md section 8), minimal and strict enough ----

_sequence = 0


def encode(subject, body, headers=None):
    """Returns the envelope frames of a message on subject with body."""
    global _sequence
    _sequence += 1
    now_ms = int(time.time() * 1000)
    msg_id = struct.pack(">Q", now_ms)[2:] + struct.pack(">H", _sequence & 0xFFFF) + os.urandom(8)
    header = msgpack.packb([1, msg_id, subject, now_ms, 0, headers or {}], use_bin_type=True)
    body_bytes = msgpack.packb(body, use_bin_type=True)
    if len(body_bytes) >= ZEROCOPY_MIN:
        return [header, body_bytes]
    return [header + body_bytes]


def decode(frames):
    """Returns (subject, headers, body) of envelope frames, or raises."""
    header, body = decode_envelope(frames)
    return header[2], header[5], body


#  ---- Batch frames (PROTOCOL.md section 19) -------------------------------

BATCH_TAG = 0x5A42
BATCH_MAX_COUNT = 1024


def encode_batch(envelopes):
    """Returns one batch frame holding one-frame envelopes (each a bytes)."""
    return msgpack.packb([BATCH_TAG] + list(envelopes), use_bin_type=True)


def split(frames):
    """Returns the list of envelopes (each a list of frames) that a pipeline
    message carries: one, or each element of a batch frame."""
    if len(frames) == 1 and frames[0][:1] and 0x90 <= frames[0][0] <= 0x9F or \
            len(frames) == 1 and frames[0][:1] in (b"\xdc", b"\xdd"):
        unpacker = msgpack.Unpacker(raw=False)
        unpacker.feed(frames[0])
        count = unpacker.read_array_header()
        first = unpacker.unpack()
        if first == BATCH_TAG:
            check(2 <= count <= BATCH_MAX_COUNT + 1, "batch of %d elements" % (count - 1))
            elements = [unpacker.unpack() for _ in range(count - 1)]
            check(unpacker.tell() == len(frames[0]), "bytes after the last element")
            check(all(isinstance(e, bytes) for e in elements), "an element is not a bin")
            return [[e] for e in elements]
    return [frames]


#  ---- The C peer -----------------------------------------------------------


class CPeer(object):
    def __init__(self, program, *args):
        self.process = subprocess.Popen(
            (os.environ.get("ZQ_VALGRIND", "").split() or []) + [program] + list(args),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        self.pending = b""
        self.deadline = time.monotonic() + WAIT_S * 3

    def line(self):
        """Returns the peer's next line of output, within the deadline."""
        fd = self.process.stdout.fileno()
        while b"\n" not in self.pending:
            remaining = self.deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(remaining, 0))
            check(ready, "the C peer said nothing in time")
            data = os.read(fd, 65536)
            if not data:
                raise Failure("the C peer ended early: %s" % self.process.stderr.read())
            self.pending += data
        text, self.pending = self.pending.split(b"\n", 1)
        return text.decode()

    def finish(self):
        try:
            status = self.process.wait(max(self.deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise Failure("the C peer did not finish in time")
        error = self.process.stderr.read().decode(errors="replace")
        self.process.stdout.close()
        self.process.stderr.close()
        check(status == 0, "the C peer exited %d: %s" % (status, error))


def endpoint_for(transport, name):
    if transport == "ipc":
        return "ipc://%s/%s" % (os.environ["IPC_DIR"], name)
    return "tcp://127.0.0.1:*"


def s_socket(context, kind):
    socket = context.socket(kind)
    socket.linger = 5000
    socket.rcvtimeo = WAIT_S * 1000
    socket.sndtimeo = WAIT_S * 1000
    return socket


#  ---- Scenarios ------------------------------------------------------------


def python_producer_to_zq_consumer(context, program, transport):
    count = 100
    peer = CPeer(program, "consume", endpoint_for(transport, "consume"), str(count))
    words = peer.line().split()
    check(words[0] == "ready", "consumer not ready: %r" % words)
    push = s_socket(context, zmq.PUSH)
    push.connect(words[1])
    for n in range(count):
        #  Some bodies take the two-frame form.
        push.send_multipart(encode("work", {"n": n, "pad": "x" * (n * 100)}, {"from": "py"}))
    for n in range(count):
        got = json.loads(peer.line())
        check(got["subject"] == "work", "subject %r" % got["subject"])
        check(got["headers"] == {"from": "py"}, "headers %r" % got["headers"])
        check(got["body"] == {"n": n, "pad": "x" * (n * 100)}, "body of message %d" % n)
    check(peer.line() == "received=%d errors=0" % count, "consumer stats")
    peer.finish()
    push.close(linger=0)


def zq_producer_to_python_consumer(context, program, transport):
    count = 100
    pull = s_socket(context, zmq.PULL)
    pull.bind(endpoint_for(transport, "produce"))
    endpoint = pull.getsockopt_string(zmq.LAST_ENDPOINT)
    peer = CPeer(program, "produce", endpoint, str(count))
    received = []
    while len(received) < count:
        received += split(pull.recv_multipart())
    for n, frames in enumerate(received):
        subject, headers, body = decode(frames)
        check(subject == "work", "subject %r" % subject)
        check(headers == {"from": "zq"}, "headers %r" % headers)
        check(body["n"] == n, "message %d out of order" % n)
        check(body["pad"] == bytes([ord("a") + n % 26]) * (n * 100), "pad of message %d" % n)
    peer.finish()
    pull.close(linger=0)


def python_batch_to_zq_consumer(context, program, transport):
    count = 30
    peer = CPeer(program, "consume", endpoint_for(transport, "consume-batch"), str(count))
    words = peer.line().split()
    check(words[0] == "ready", "consumer not ready: %r" % words)
    push = s_socket(context, zmq.PUSH)
    push.connect(words[1])
    #  Plain, then a batch of 20, then plain again: one stream, in order.
    for n in range(5):
        push.send_multipart(encode("work", {"n": n}))
    push.send(encode_batch(encode("work", {"n": n})[0] for n in range(5, 25)))
    for n in range(25, count):
        push.send_multipart(encode("work", {"n": n}))
    for n in range(count):
        got = json.loads(peer.line())
        check(got["body"] == {"n": n}, "message %d: %r" % (n, got["body"]))
    check(peer.line() == "received=%d errors=0" % count, "consumer stats")
    peer.finish()
    push.close(linger=0)


def zq_burst_to_python_consumer(context, program, transport):
    count = 1000
    pull = s_socket(context, zmq.PULL)
    pull.rcvhwm = 4
    pull.bind(endpoint_for(transport, "produce-burst"))
    endpoint = pull.getsockopt_string(zmq.LAST_ENDPOINT)
    peer = CPeer(program, "produce-burst", endpoint, str(count))
    #  Read nothing until the producer has sent all: what found no room
    #  went into batches.
    check(peer.line() == "sent", "producer did not finish its sends")
    n = 0
    batches = 0
    while n < count:
        envelopes = split(pull.recv_multipart())
        batches += len(envelopes) > 1
        for frames in envelopes:
            subject, _, body = decode(frames)
            check(subject == "burst", "subject %r" % subject)
            check(body == {"n": n}, "message %d: %r" % (n, body))
            n += 1
    check(batches > 0, "no batch frame in a burst of %d" % count)
    check(peer.line() == "flushed", "producer did not flush")
    peer.process.stdin.write(b"done\n")
    peer.finish()
    pull.close(linger=0)


def zq_publisher_to_python_subscriber(context, program, transport):
    count = 60
    peer = CPeer(program, "publish", endpoint_for(transport, "publish"), str(count))
    words = peer.line().split()
    check(words[0] == "ready", "publisher not ready: %r" % words)
    sub = s_socket(context, zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"a.")
    sub.connect(words[1])
    last = {}
    publisher_id = None
    received = 0
    while True:
        frames = sub.recv_multipart()
        check(len(frames) >= 3, "pubsub message of %d frames" % len(frames))
        topic, sequence_frame = frames[0], frames[1]
        subject, _, body = decode(frames[2:])
        check(topic == subject.encode(), "topic %r is not the subject %r" % (topic, subject))
        check(subject.startswith("a."), "unsubscribed subject %r" % subject)
        check(len(sequence_frame) == 16, "sequence frame of %d octets" % len(sequence_frame))
        this_id = sequence_frame[:8]
        (sequence,) = struct.unpack(">Q", sequence_frame[8:])
        check(publisher_id in (None, this_id), "publisher id changed")
        publisher_id = this_id
        #  Per-subject numbering from 1, no gaps.
        check(sequence == last.get(subject, 0) + 1,
              "subject %s: sequence %d after %d" % (subject, sequence, last.get(subject, 0)))
        last[subject] = sequence
        if subject == "a.end":
            break
        check(body["n"] % 3 != 1, "message %d is on b.two" % body["n"])
        received += 1
    check(received == 40, "received %d of 40" % received)
    peer.finish()
    sub.close(linger=0)


def python_publisher_to_zq_subscriber(context, program, transport):
    xpub = s_socket(context, zmq.XPUB)
    xpub.bind(endpoint_for(transport, "subscribe"))
    endpoint = xpub.getsockopt_string(zmq.LAST_ENDPOINT)
    peer = CPeer(program, "subscribe", endpoint, "t.")
    check(peer.line() == "ready", "subscriber not ready")
    check(xpub.recv() == b"\x01t.", "no subscription")
    me = os.urandom(8)

    def publish(subject, sequence, n, publisher=me):
        frames = [subject.encode(), publisher + struct.pack(">Q", sequence)]
        xpub.send_multipart(frames + encode(subject, {"n": n}))

    publish("t.a", 1, 0)
    publish("t.a", 2, 1)
    publish("t.a", 5, 2)            # 3 and 4 lost: 2 gaps
    publish("t.b", 9, 3)            # a subject seen first at 9: no gap
    publish("u.x", 1, 99)           # not subscribed
    publish("t.a", 6, 4)
    xpub.send_multipart([b"t.a", b"short"] + encode("t.a", {"n": 99}))   # malformed
    publish("t.b", 10, 5, os.urandom(8))  # another publisher, first seen: no gap
    publish("t.b", 11, 6)           # 10 lost: 1 gap
    publish("t.end", 1, 7)
    numbers = []
    while True:
        line = peer.line()
        if line.startswith("received="):
            break
        numbers.append(json.loads(line)["body"]["n"])
    check(numbers == list(range(8)), "received %r" % numbers)
    check(line == "received=8 gaps=3 errors=1", "subscriber stats: %s" % line)
    peer.finish()
    xpub.close(linger=0)


def main(argv):
    if len(argv) not in (2, 3):
        sys.stderr.write("usage: pubsub_peer.py PATTERN_PEER [tcp|ipc]\n")
        return 2
    program = argv[1]
    transport = argv[2] if len(argv) == 3 else "tcp"
    context = zmq.Context()
    failed = 0
    for scenario in (python_producer_to_zq_consumer, zq_producer_to_python_consumer,
                     python_batch_to_zq_consumer, zq_burst_to_python_consumer,
                     zq_publisher_to_python_subscriber, python_publisher_to_zq_subscriber):
        try:
            scenario(context, program, transport)
            print("%s %s: ok" % (scenario.__name__, transport))
        except (Failure, zmq.ZMQError) as error:
            print("%s %s: FAIL: %s" % (scenario.__name__, transport, error))
            failed += 1
    context.destroy(linger=0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
