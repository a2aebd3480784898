#!/usr/bin/python3
# Writes seed inputs for the envelope decoder fuzzer into a directory, in
# the layout fuzz_msg_decode.c reads: a count/limit byte, then frames.
# Usage: seed_msg_decode.py DIR
import os
import struct
import sys

import msgpack


def header(version=1, ident=bytes(range(16)), subject="orders", created=1764100000000,
           attempt=0, headers=None, extra=()):
    return msgpack.packb([version, ident, subject, created, attempt, headers or {}, *extra],
                         use_bin_type=True)


def one_frame(head, body):
    return bytes([1]) + head + body


def two_frames(head, body):
    return bytes([2]) + struct.pack(">H", len(head)) + head + body


def main(out):
    os.makedirs(out, exist_ok=True)
    body = msgpack.packb({"order": "A-17", "cents": 1299, "tags": ["x", "y"]}, use_bin_type=True)
    seeds = {
        "plain": one_frame(header(), body),
        "nil_body": one_frame(header(), b"\xc0"),
        "headers": one_frame(header(headers={"trace": "abc", "reply-to": "q2"}), body),
        "unicode": one_frame(header(subject="zürich.東京"), msgpack.packb("ünï", use_bin_type=True)),
        "binary": one_frame(header(), msgpack.packb(bytes(range(256)), use_bin_type=True)),
        "two_frames": two_frames(header(), msgpack.packb(b"x" * 9000, use_bin_type=True)),
        "extension": one_frame(header(extra=(7, "future")), body),
        "version2": one_frame(header(version=2), body),
        "deep": one_frame(header(), b"\x91" * 40 + b"\xc0"),
        "limit": bytes([0x81]) + header() + msgpack.packb("x" * 100, use_bin_type=True),
        "three": bytes([3]) + struct.pack(">H", 2) + b"\x90\xc0" + struct.pack(">H", 1) + b"\xc0" + b"\xc0",
        "hostile_array": one_frame(b"\xdd\xff\xff\xff\xff", b""),
        "hostile_str": one_frame(header()[:-1], b"\xdb\xff\xff\xff\xff"),
        "float_ext": one_frame(header(), msgpack.packb([1.5, msgpack.ExtType(5, b"ab")], use_bin_type=True)),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, "seed_" + name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main(sys.argv[1])
