#!/usr/bin/python3
# Writes seed inputs for the client fuzzer into a directory, in the layout
# fuzz_client.c reads: frames, each a 2-byte big-endian word (bit 15: the
# frame ends a message; bit 14: it ends one and the clients work until
# idle; bit 13, on a message's first frame: to the consumer, else to the
# producer; bits 0-12: its length) and its bytes. The producer has posted
# messages with ids ident(1) to ident(4) (seed_reliable.py's ident).
# Usage: seed_client.py DIR
import os
import sys

import msgpack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import seed_reliable  # noqa: E402
from seed_reliable import (CONFIRM, DELIVER, ERROR, PING, PONG, REFUSE,  # noqa: E402
                           command, envelope, ident)

BATCH_TAG = 0x5A42


def message(*frames, consumer=False, pause=False):
    """One message to the producer (or, bit 13 of its first word, the
    consumer), as seed_reliable.message writes one."""
    assert all(len(frame) < 0x2000 for frame in frames)
    return seed_reliable.message(*frames, pause=pause, first_bits=0x2000 if consumer else 0)


def to_consumer(*frames, pause=True):
    return message(*frames, consumer=True, pause=pause)


def batch(*elements):
    return msgpack.packb([BATCH_TAG, *elements], use_bin_type=True)


def main(out):
    os.makedirs(out, exist_ok=True)
    known = b"".join(ident(n) for n in range(1, 5))
    env = envelope("q", 100)
    head_size = len(msgpack.packb([1, ident(100), "q", 1764100000000, 0, {}], use_bin_type=True))
    seeds = {
        "confirm": message(command(CONFIRM, known), pause=True),
        "confirm_some": message(command(CONFIRM, ident(2) + ident(9)), pause=True),
        "confirm_twice": (message(command(CONFIRM, ident(1))) +
                          message(command(CONFIRM, ident(1)), pause=True)),
        "refuse": message(command(REFUSE, ident(3), 1, "queue full"), pause=True),
        "refuse_limit": message(command(REFUSE, known, 9, "queue limit reached"), pause=True),
        "refuse_unknown_code": message(command(REFUSE, ident(4), 250, "?"), pause=True),
        "error_batches_off": message(command(ERROR, 4, "malformed"), pause=True),
        "error_version": message(command(ERROR, 2, "version"), pause=True),
        "pong": message(command(PONG, b"12345678", 1), pause=True),
        "pong_new_instance": (message(command(PONG, b"12345678", 1), pause=True) +
                              message(command(PONG, b"87654321", 0), pause=True)),
        "ping": message(command(PING), pause=True),
        "deliver": to_consumer(command(DELIVER, 30000), env),
        "deliver_two_frames": to_consumer(command(DELIVER, 30000), env[:head_size],
                                          env[head_size:]),
        "deliver_attempt": to_consumer(command(DELIVER, 1), envelope("q", 101, attempt=7)),
        "deliver_zero_visibility": to_consumer(command(DELIVER, 0), envelope("q", 102)),
        "deliver_other_subject": to_consumer(command(DELIVER, 30000), envelope("other", 103)),
        "deliver_batch": to_consumer(command(DELIVER, 30000), batch(
            *[envelope("q", n, body={"n": n}) for n in range(110, 115)])),
        "deliver_batch_bad": to_consumer(command(DELIVER, 30000), batch(
            envelope("q", 120), b"\xc1", b"", envelope("q", 121)[:-2], batch(env))),
        "deliver_batch_truncated": to_consumer(command(DELIVER, 30000), batch(
            envelope("q", 122), envelope("q", 123))[:-3]),
        "deliver_same_id": (to_consumer(command(DELIVER, 30000), envelope("q", 130), pause=False) +
                            to_consumer(command(DELIVER, 30000), envelope("q", 130))),
        "deliver_headers": to_consumer(command(DELIVER, 30000), envelope(
            "q", 131, headers={"zq-ttl-ms": "1", "zq-trace": "x" * 100})),
        "deliver_no_envelope": to_consumer(command(DELIVER, 30000)),
        "consumer_pong_error": (to_consumer(command(PONG, b"12345678", 1), pause=False) +
                                to_consumer(command(ERROR, 9, "queue limit reached"))),
        "consumer_confirm": to_consumer(command(CONFIRM, ident(1))),
        "version2": message(command(CONFIRM, ident(1), version=2), pause=True),
        "unknown_kind": message(command(99)) + to_consumer(command(99)),
        "not_array": message(b"\xc0") + to_consumer(b""),
        "deep": to_consumer(b"\x9f" + b"\x91" * 40 + b"\xc0"),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, "seed_" + name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main(sys.argv[1])
