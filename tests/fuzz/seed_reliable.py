#!/usr/bin/python3
# Writes seed inputs for the reliable protocol fuzzer into a directory, in
# the layout fuzz_reliable.c reads: frames, each a 2-byte big-endian word
# (bit 15: the frame ends a message; bit 14: it ends one and the server
# works until idle; bits 0-13: its length) and its bytes.
# Usage: seed_reliable.py DIR
import os
import struct
import sys

import msgpack

PUT, CONFIRM, REFUSE, CONSUME, CANCEL, DELIVER, ACK, NACK, TOUCH, PING, PONG, ERROR, LEAVE = range(1, 14)


def command(kind, *elements, version=1):
    return msgpack.packb([version, kind, *elements], use_bin_type=True)


def ident(number):
    return bytes([0x01, 0x9a, 0xb0, 0, 0, 0]) + number.to_bytes(10, "big")


def envelope(queue, number, body="hello", attempt=0, headers=None, created=1764100000000):
    header = msgpack.packb([1, ident(number), queue, created, attempt, headers or {}],
                           use_bin_type=True)
    return header + msgpack.packb(body, use_bin_type=True)


def message(*frames, pause=False, first_bits=0):
    """One message: its frames, the last one marked as ending it (and, with
    pause, as letting the server work before the next message); first_bits
    go into the first frame's word (a target's own bits, above the length)."""
    out = b""
    for index, frame in enumerate(frames):
        ends = 0x4000 if pause else 0x8000
        word = len(frame) | (ends if index == len(frames) - 1 else 0)
        if index == 0:
            word |= first_bits
        out += struct.pack(">H", word) + frame
    return out


def put(queue, number, pause=False, **fields):
    return message(command(PUT), envelope(queue, number, **fields), pause=pause)


def main(out):
    os.makedirs(out, exist_ok=True)
    env = envelope("orders", 1)
    head_size = len(msgpack.packb([1, ident(1), "orders", 1764100000000, 0, {}], use_bin_type=True))
    ids = b"".join(ident(n) for n in range(1, 4))
    seeds = {
        "ping": message(command(PING)),
        "put": put("orders", 1),
        "put_two_frames": message(command(PUT), env[:head_size], env[head_size:]),
        "put_batch": b"".join(put("orders", n, body={"n": n}) for n in range(1, 6)),
        "put_headers": put("orders", 7, headers={"zq-ttl-ms": "1", "zq-not-before-ms": "99"}),
        "put_ttl_huge": put("orders", 8, headers={"zq-ttl-ms": "9223372036854775807"},
                            created=2 ** 63 - 1),
        "put_attempt": put("orders", 9, attempt=9),
        "put_dead": put("orders.dead", 10),
        "put_bad_name": put("a/b", 11),
        "put_no_envelope": message(command(PUT)),
        "consume": message(command(CONSUME, "orders", 10), pause=True),
        "consume_zero": message(command(CONSUME, "orders", 0), pause=True),
        "cancel": message(command(CONSUME, "orders", 5), pause=True) + message(command(CANCEL, "orders")),
        "put_consume_ack": (b"".join(put("orders", n) for n in range(1, 4)) +
                            message(command(CONSUME, "orders", 100), pause=True) +
                            message(command(ACK, ids))),
        "put_consume_nack": (put("jobs", 1) + message(command(CONSUME, "jobs", 1), pause=True) +
                             message(command(NACK, ident(1), 0)) +
                             message(command(NACK, ident(1), -1))),
        "nack_huge": (put("jobs", 2) + message(command(CONSUME, "jobs", 1), pause=True) +
                      message(command(NACK, ident(2), 2 ** 62))),
        "touch": (put("jobs", 3) + message(command(CONSUME, "jobs", 1), pause=True) +
                  message(command(TOUCH, ident(3), 2 ** 63 - 1)) +
                  message(command(TOUCH, ident(3), 0))),
        "leave_unseen": (put("jobs", 4) + message(command(CONSUME, "jobs", 2), pause=True) +
                         message(command(LEAVE, ident(4)))),
        "leave_empty": message(command(LEAVE, b"")),
        "ack_unknown": message(command(ACK, b"\x00" * 16)),
        "ack_bad_length": message(command(ACK, b"\x00" * 15)),
        "version2": message(command(PING, version=2)),
        "unknown_kind": message(command(99)),
        "server_kinds": (message(command(CONFIRM, ids)) + message(command(DELIVER, 1000), env) +
                         message(command(PONG, b"12345678", 0)) + message(command(ERROR, 4, "x"))),
        "extension": message(command(CONSUME, "orders", 1, {"future": [1, 2]})),
        "not_array": message(b"\xc0") + message(b""),
        "deep": message(b"\x9f" + b"\x91" * 40 + b"\xc0"),
        "put_batch_frame": message(command(PUT), msgpack.packb(
            [0x5A42] + [envelope("orders", n, body={"n": n}) for n in range(20, 23)],
            use_bin_type=True)),
        "put_batch_bad": message(command(PUT), msgpack.packb(
            [0x5A42, envelope("orders", 24), b"\xc1", b"", envelope("a/b", 25),
             msgpack.packb([0x5A42, env], use_bin_type=True)], use_bin_type=True)),
        "put_batch_truncated": message(command(PUT), msgpack.packb(
            [0x5A42, envelope("orders", 26), envelope("orders", 27)], use_bin_type=True)[:-3]),
        "many_queues": b"".join(message(command(CONSUME, "q%d" % n, 1)) for n in range(20)),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, "seed_" + name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main(sys.argv[1])
