#!/usr/bin/python3
# Writes seed inputs for the admin protocol fuzzer into a directory, in the
# layout fuzz_admin.c reads: a direction/verb byte, then frames, each a
# 2-byte big-endian length and its bytes.
#   byte 0 = 0x00: a request to the device's admin socket
#   byte 0 = 0x80 | verb: a reply to zq stat (0), stat NAME (1), ls (2),
#                         peek (3), purge (4), redrive (5)
# Usage: seed_admin.py DIR
import os
import struct
import sys

import msgpack

STAT, STAT_NAME, LS, PEEK, PURGE, REDRIVE = range(6)


def frames(*items):
    out = b""
    for item in items:
        if isinstance(item, str):
            item = item.encode()
        out += struct.pack(">H", len(item)) + item
    return out


def request(*items):
    return bytes([0x00]) + frames(*items)


def reply(verb, *items):
    return bytes([0x80 | verb]) + frames(*items)


def envelope(queue, number):
    header = [1, bytes([1, 0x9a, 0xb0, 0, 0, 0]) + number.to_bytes(10, "big"), queue,
              1764100000000, 0, {"trace": "x"}]
    return msgpack.packb(header, use_bin_type=True) + msgpack.packb({"n": number},
                                                                     use_bin_type=True)


def row(**fields):
    return msgpack.packb(fields, use_bin_type=True)


def main(out):
    os.makedirs(out, exist_ok=True)
    full_row = row(name="orders", kind="queue", depth=3, ready=2, in_flight=1, delayed=0,
                   oldest_age_ms=90061000, **{"in": 5, "out": 2}, delivered=3, redelivered=1,
                   acked=2, nacked=0, timeouts=0, dead=1, dead_lettered=1, expired=0,
                   duplicates=0, refused=0, dropped=0, consumers=1, in_rate=1.5, out_rate=0.25)
    seeds = {
        "req_ping": request("PING"),
        "req_ls": request("LS"),
        "req_stat": request("STAT"),
        "req_stat_orders": request("STAT", "orders"),
        "req_stat_missing": request("STAT", "nosuch"),
        "req_peek_orders": request("PEEK", "orders", "3"),
        "req_peek_default": request("PEEK", "orders"),
        "req_peek_stream": request("PEEK", "metrics", "1000"),
        "req_peek_forward": request("PEEK", "news"),
        "req_peek_bad_count": request("PEEK", "orders", "-1"),
        "req_peek_huge_count": request("PEEK", "orders", "18446744073709551617"),
        "req_purge_stream": request("PURGE", "metrics"),
        "req_purge_forward": request("PURGE", "news"),
        "req_purge_dead": request("PURGE", "jobs.dead"),
        "req_redrive_jobs": request("REDRIVE", "jobs"),
        "req_redrive_stream": request("REDRIVE", "metrics"),
        "req_peek_dead": request("PEEK", "jobs.dead", "5"),
        "req_no_name": request("PEEK"),
        "req_endpoint": request("ENDPOINT", "bind"),
        "req_queue": request("QUEUE", "x", "queue"),
        "req_term": request("$TERM"),
        "req_unknown": request("X" * 300),
        "req_nul": request("STAT\x00orders"),
        "req_empty_frames": request("", "", "PING"),
        "req_binary_name": request("STAT", b"\xff\xfe/../\x01"),
        "rep_stat": reply(STAT, "OK", full_row, row(name="metrics", kind="stream", depth=7)),
        "rep_stat_empty": reply(STAT, "OK"),
        "rep_stat_name": reply(STAT_NAME, "OK", full_row),
        "rep_stat_name_float": reply(STAT_NAME, "OK", msgpack.packb({"a": [1.5, None, True]})),
        "rep_stat_not_map": reply(STAT, "OK", msgpack.packb([1, 2, 3]), b"\xc1"),
        "rep_stat_wrong_types": reply(STAT, "OK", row(name=5, kind=b"queue", depth="many",
                                                      in_rate="fast", oldest_age_ms=2 ** 64 - 1)),
        "rep_ls": reply(LS, "OK", row(name="jobs", kind="queue"), row(name="jobs.dead", kind="queue")),
        "rep_peek": reply(PEEK, "OK", envelope("orders", 1), envelope("orders", 2)),
        "rep_peek_garbage": reply(PEEK, "OK", b"\x96\x01", b""),
        "rep_purge": reply(PURGE, "OK", row(purged=3)),
        "rep_purge_one": reply(PURGE, "OK", row(purged=1)),
        "rep_redrive": reply(REDRIVE, "OK", row(redriven=2 ** 63)),
        "rep_error": reply(STAT, "ERROR", "STAT nosuch: no queue 'nosuch'"),
        "rep_error_bare": reply(PURGE, "ERROR"),
        "rep_nothing": reply(LS),
        "rep_deep": reply(STAT_NAME, "OK", b"\x91" * 100 + b"\xc0"),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, "seed_" + name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main(sys.argv[1])
