#!/usr/bin/python3
#   PUT batches (doc/PROTOCOL.md 19.5) against a real zqd: a good batch is
#   stored and confirmed element by element; a batch whose layout breaks
#   a limit (truncated, too many elements, over max_message_bytes,
#   octets after the last element) stores nothing and gets ERROR 4; a bad
#   element is refused alone (with its id when it has one) while the
#   others are stored in order; a batch at exactly the limits is taken.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import os
import sys

import json
import subprocess

import msgpack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
from hostile import check  # noqa: E402

ZQ = os.path.join(hostile.BUILDDIR, "src", "zq")
BATCH_TAG = 0x5A42
MAX_COUNT = 1024
MAX_BYTES = 1024 * 1024  # zqd's default max_message_bytes


def batch(elements):
    """A batch frame of the given element octets."""
    return msgpack.packb([BATCH_TAG] + list(elements))


def first_delivery_is(client, queue, marker_id):
    """Consumes queue; checks the first delivery is the marker put last
    (so nothing of a rejected batch was stored before it)."""
    client.consume(queue, 1)
    got = client.deliveries(1)
    check(got[0][0] == marker_id,
          "queue %s delivered %r before the marker" % (queue, got[0][2]))
    client.ack([marker_id])


def expect_error(client, code, what):
    got = client.recv_command()
    check(got is not None and got[0][1] == hostile.ERROR and got[0][2] == code,
          "%s: expected ERROR %d, got %r" % (what, code, got and got[0]))


def test_batch_stored_in_order():
    zqd = hostile.Zqd().start()
    try:
        client = hostile.Client(zqd.endpoint)
        made = [hostile.envelope("pb", b"n%d" % n) for n in range(5)]
        client.put_frame(batch(frame for _, frame in made))
        ids = [msg_id for msg_id, _ in made]
        answers = client.answers(ids)
        check(all(a == ("confirm",) for a in answers.values()), "answers %r" % answers)
        client.consume("pb", 10)
        got = client.deliveries(5)
        check([d[0] for d in got] == ids, "delivered out of order or other ids")
        check([d[2] for d in got] == [b"n%d" % n for n in range(5)], "bodies differ")
        client.ack(ids)
        client.close()
        zqd.stop()
    finally:
        zqd.close()


def test_copies_in_batches_stored_once():
    """A batch that repeats an element, a later batch that repeats earlier
    ones beside a new one and a forgery (an earlier id, another body), and
    a PUT alone repeating a batch's element: each message is stored once,
    the forgery refused with code 8. (A batch's dedupe lookups start
    ahead of its elements; a PUT alone looks up on its own.)"""
    zqd = hostile.Zqd().start()
    try:
        client = hostile.Client(zqd.endpoint)
        made = [hostile.envelope("rb", b"n%d" % n) for n in range(4)]
        ids = [msg_id for msg_id, _ in made]
        client.put_frame(batch([frame for _, frame in made] + [made[1][1]]))
        answers = client.answers(ids)
        check(all(a == ("confirm",) for a in answers.values()), "first batch: %r" % answers)
        new_id, new_frame = hostile.envelope("rb", b"n4")
        _, forged = hostile.envelope("rb", b"other", msg_id=ids[2])
        client.put_frame(batch([made[0][1], new_frame, made[3][1], forged]))
        answers = client.answers([ids[0], new_id, ids[3], ids[2]])
        check(answers[ids[2]][:2] == ("refuse", hostile.CODE_CONFLICT),
              "the forgery got %r" % (answers[ids[2]],))
        check(all(answers[i] == ("confirm",) for i in (ids[0], new_id, ids[3])),
              "second batch: %r" % answers)
        client.put_frame(made[3][1])
        check(client.answers([ids[3]])[ids[3]] == ("confirm",), "the copy alone")
        marker = client.put("rb", "marker")
        check(client.answers([marker])[marker] == ("confirm",), "the marker")
        client.consume("rb", 10)
        got = client.deliveries(6)
        check([d[0] for d in got] == ids + [new_id, marker],
              "delivered %r" % [d[2] for d in got])
        client.ack(ids + [new_id, marker])
        #  The dedupe window found the 4 copies (a copy stored again would
        #  only be dropped at delivery, counted as dropped).
        run = subprocess.run([ZQ, "stat", zqd.admin, "rb"], capture_output=True, text=True,
                             timeout=hostile.DEADLINE_S)
        check(run.returncode == 0, "zq stat: %d %r" % (run.returncode, run.stderr))
        counters = json.loads(run.stdout)
        check(counters["in"] == 6 and counters["duplicates"] == 4 and counters["dropped"] == 0,
              "counters %r" % counters)
        client.close()
        zqd.stop()
    finally:
        zqd.close()


def test_batch_layout_over_limits_stores_nothing():
    zqd = hostile.Zqd().start()
    try:
        client = hostile.Client(zqd.endpoint)
        _, good = hostile.envelope("pl", b"x")
        too_many = batch([good] * (MAX_COUNT + 1))
        tag_alone = msgpack.packb([BATCH_TAG])
        whole = batch([good, good])
        # The last bin declares 2 more octets than the frame holds.
        truncated = whole[:-2]
        trailing = whole + b"\xc0"
        not_bin = msgpack.packb([BATCH_TAG, good, "text"])
        _, big = hostile.envelope("pl", b"b" * (MAX_BYTES // 2))
        too_big = batch([big, big, good])
        cases = [("1025 elements", too_many), ("the tag alone", tag_alone),
                 ("truncated", truncated), ("octets after the last", trailing),
                 ("an element not a bin", not_bin), ("over max_message_bytes", too_big)]
        for what, frame in cases:
            client.put_frame(frame)
            expect_error(client, hostile.CODE_PROTOCOL, what)
        # zqd says so too (one line per interval, the rest counted).
        hostile.wait_until(lambda: "malformed PUT batch" in zqd.stderr(),
                           "a log line for the malformed batch", hostile.DEADLINE_S)
        # A batch followed by a second envelope frame is not a batch: its
        # E1 has an unknown version.
        client.send(msgpack.packb([1, hostile.PUT]), whole, msgpack.packb(b"body"))
        expect_error(client, hostile.CODE_VERSION, "a batch and a second frame")
        marker = client.put_confirmed("pl", [b"marker"])[0]
        first_delivery_is(client, "pl", marker)
        client.close()
        zqd.stop()
    finally:
        zqd.close()


def test_bad_elements_refused_alone():
    zqd = hostile.Zqd().start()
    try:
        client = hostile.Client(zqd.endpoint)
        good1, frame1 = hostile.envelope("pm", b"one")
        bad_name, frame_bad_name = hostile.envelope("../escape", b"bad")
        deep = 1
        for _ in range(40):
            deep = [deep]
        deep_id, frame_deep = hostile.envelope("pm", deep)
        good2, frame2 = hostile.envelope("pm", b"two")
        nested = batch([frame1])
        elements = [frame1, frame_bad_name, b"\xc1garbage", frame_deep, b"", nested, frame2]
        client.put_frame(batch(elements))
        answers = client.answers([good1, bad_name, deep_id, good2])
        check(answers[good1] == ("confirm",) and answers[good2] == ("confirm",),
              "good elements: %r" % ((answers[good1], answers[good2]),))
        check(answers[bad_name][:2] == ("refuse", hostile.CODE_INVALID),
              "bad queue name: %r" % (answers[bad_name],))
        check(answers[deep_id][:2] == ("refuse", hostile.CODE_INVALID),
              "body too deep: %r" % (answers[deep_id],))
        # The three without a readable id: one ERROR each (garbage and
        # empty: 4; a batch inside a batch: an unknown version, 5).
        errors = list(client.errors)
        while len(errors) < 3:
            got = client.recv_command()
            check(got is not None and got[0][1] == hostile.ERROR, "expected ERRORs, got %r" % (got,))
            errors.append(got[0])
        codes = sorted(e[2] for e in errors)
        check(codes == [hostile.CODE_PROTOCOL, hostile.CODE_PROTOCOL, hostile.CODE_VERSION],
              "error codes %r" % codes)
        client.consume("pm", 10)
        got = client.deliveries(2)
        check([d[0] for d in got] == [good1, good2], "the good elements in order")
        client.ack([good1, good2])
        client.close()
        zqd.stop()
    finally:
        zqd.close()


def test_batch_exactly_at_limits():
    zqd = hostile.Zqd().start()
    try:
        client = hostile.Client(zqd.endpoint)
        made = [hostile.envelope("pe", n) for n in range(MAX_COUNT)]
        client.put_frame(batch(frame for _, frame in made))
        ids = [msg_id for msg_id, _ in made]
        answers = client.answers(ids)
        check(all(a == ("confirm",) for a in answers.values()), "1024 elements not all confirmed")
        # One batch of exactly max_message_bytes octets: the last body
        # padded to the size.
        first_id, first = hostile.envelope("px", b"a" * 1000)
        pad = MAX_BYTES // 2
        last_id = hostile.new_id()
        for _ in range(8):
            _, last = hostile.envelope("px", b"z" * pad, msg_id=last_id)
            pad += MAX_BYTES - len(batch([first, last]))
        frame = batch([first, last])
        check(len(frame) == MAX_BYTES, "built %d octets" % len(frame))
        client.put_frame(frame)
        answers = client.answers([first_id, last_id])
        check(all(a == ("confirm",) for a in answers.values()), "batch at max_size: %r" % answers)
        client.close()
        zqd.stop()
    finally:
        zqd.close()


def confirmed_ids(client, confirmed, timeout_s):
    """Adds the ids of every CONFIRM that arrives within timeout_s of the
    last one to confirmed."""
    while True:
        got = client.recv_command(timeout_s=timeout_s)
        if got is None:
            return
        if got[0][1] == hostile.CONFIRM:
            confirmed.update(hostile.split_ids(got[0][2]))


def test_kill9_mid_batches_loses_nothing_confirmed():
    """zqd is killed (-9) while PUT batches stream in: after a restart,
    every id it confirmed is delivered (0 confirmed lost)."""
    zqd = hostile.Zqd().start()
    try:
        client = hostile.Client(zqd.endpoint)
        confirmed = set()
        for round_number in range(40):
            made = [hostile.envelope("pk", b"%d-%d" % (round_number, n)) for n in range(25)]
            client.put_frame(batch(frame for _, frame in made))
            if round_number == 19:
                # Mid-stream: some confirmed, 20 more batches on the way.
                got = client.recv_command()
                check(got is not None and got[0][1] == hostile.CONFIRM, "no confirm: %r" % (got,))
                confirmed.update(hostile.split_ids(got[0][2]))
        zqd.kill()
        confirmed_ids(client, confirmed, 0.2)
        client.close()
        check(confirmed, "nothing confirmed before the kill")
        zqd.start()
        consumer = hostile.Client(zqd.endpoint)
        consumer.consume("pk", 1000)
        seen = set()
        while not confirmed <= seen:
            got = consumer.recv_command(skip=(hostile.PONG, hostile.PING))
            check(got is not None, "%d confirmed ids never delivered after the restart"
                  % len(confirmed - seen))
            if got[0][1] == hostile.DELIVER:
                header, _ = hostile.parse_envelope(got[1][0])
                seen.add(header[1])
                consumer.ack([header[1]])
        print("kill -9: %d confirmed before the kill, all delivered after (%d delivered)"
              % (len(confirmed), len(seen)))
        consumer.close()
        zqd.stop()
    finally:
        zqd.close()


hostile.main(globals())
