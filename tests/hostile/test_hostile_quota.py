#!/usr/bin/python3
#   zqd's bounds on what clients make it keep on disk: a queue's byte
#   quota (REFUSE code 1, cleared when acks free space; 1 GiB by default),
#   the free-space watermark device/min_free_bytes (REFUSE code 12,
#   cleared by itself when space returns; stream spills dropped and
#   counted meanwhile), the cap on queues clients create by using them
#   (max_auto_queues: code 9, a DELETE frees a place; configured queues do
#   not count; a NAME.dead named before NAME counts), idle client-made queues removed after auto_queue_idle_ms
#   (after a restart too), and DELETE's refusals (a queue holding messages
#   without FORCE, a configured queue, an unknown name) and what a
#   consumer of a deleted queue is told.
#
#   The watermark and the default quota run zqd's spool on a tmpfs of its
#   own (mounted here: make check runs as root), so the free space they
#   see is the test's alone.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import os
import subprocess
import sys
import tempfile
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
from hostile import check, wait_until  # noqa: E402

CODE_NO_SPACE = 12
CODE_DELETED = 13
MIB = 1024 * 1024


def admin(zqd, *words):
    """One admin request; returns (status, [decoded frames])."""
    frames = hostile.admin_request(zqd.admin, *words)
    check(frames is not None, "no answer to %r" % (words,))
    status = frames[0].decode()
    rest = [msgpack.unpackb(frame, raw=False) if status == "OK" else frame.decode()
            for frame in frames[1:]]
    return status, rest


def zq_cli(*args):
    """Runs the zq program (bounded); returns the CompletedProcess."""
    return subprocess.run([os.path.join(hostile.BUILDDIR, "src", "zq")] + list(args),
                          capture_output=True, text=True, timeout=hostile.DEADLINE_S)


def names(zqd):
    status, rows = admin(zqd, "LS")
    check(status == "OK", "LS failed: %r" % rows)
    return {row["name"] for row in rows}


def put_one(client, queue, body):
    """One PUT; returns its answer ("confirm",) or ("refuse", code, reason)."""
    msg_id = client.put(queue, body)
    return client.answers([msg_id])[msg_id]


class Tmpfs:
    """A tmpfs of size bytes mounted on a fresh directory."""

    def __init__(self, size):
        self.path = tempfile.mkdtemp(prefix="zq-quota-fs.")
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d,mode=0700" % size,
                                 "tmpfs", self.path], capture_output=True, text=True)
        check(result.returncode == 0,
              "cannot mount a tmpfs (the test needs root): %s" % result.stderr.strip())

    def free(self):
        info = os.statvfs(self.path)
        return info.f_bavail * info.f_frsize

    def close(self):
        subprocess.run(["umount", "-l", self.path], capture_output=True)
        os.rmdir(self.path)


def test_quota_reached_then_freed():
    # 2 MiB per queue, 256 KiB segments: the quota refuses with code 1,
    # acks give the space back and PUTs are confirmed again.
    zqd = hostile.Zqd(args=["-o", "quota_bytes=2097152", "-o", "segment_bytes=262144"]).start()
    try:
        producer = hostile.Client(zqd.endpoint)
        body = b"q" * 50000
        confirmed = []
        refusal = None
        for _ in range(100):
            msg_id = producer.put("orders", body)
            answer = producer.answers([msg_id])[msg_id]
            if answer[0] != "confirm":
                refusal = answer
                break
            confirmed.append(msg_id)
        check(refusal is not None, "100 puts of 50 kB passed a 2 MiB quota")
        check(refusal[1] == hostile.CODE_FULL, "quota refusal was %r, not code 1" % (refusal,))
        check(20 <= len(confirmed) <= 42, "%d puts of 50 kB confirmed under 2 MiB"
              % len(confirmed))
        consumer = hostile.Client(zqd.endpoint)
        consumer.consume("orders", 1000)
        got = consumer.deliveries(len(confirmed))
        check(sorted(d[0] for d in got) == sorted(confirmed), "not the confirmed messages")
        consumer.ack([d[0] for d in got])
        answer = wait_until(lambda: (lambda a: a if a[0] == "confirm" else None)(
            put_one(producer, "orders", body)), "a PUT confirmed after the acks", step_s=0.1)
        check(answer == ("confirm",), "after the acks: %r" % (answer,))
    finally:
        zqd.close()


def test_default_queue_quota():
    # No quota configured: a queue still stops at 1 GiB (code 1), whatever
    # the room on disk. The spool is a 1.25 GiB tmpfs; the watermark is
    # off so that only the quota speaks.
    fs = Tmpfs(1280 * MIB)
    zqd = hostile.Zqd(config="device\n    min_free_bytes = 0\n")
    zqd.spool = os.path.join(fs.path, "spool")
    try:
        zqd.start()
        producer = hostile.Client(zqd.endpoint)
        body = b"d" * (1000 * 1000)
        stored = 0
        refusal = None
        for _ in range(1200):
            ids = [producer.put("bulk", body) for _ in range(8)]
            answers = producer.answers(ids, timeout_s=60)
            refused = [a for a in answers.values() if a[0] != "confirm"]
            stored += len(ids) - len(refused)
            if refused:
                refusal = refused[0]
                break
        check(refusal is not None, "%d MB stored in one queue, no quota" % stored)
        check(refusal[1] == hostile.CODE_FULL, "refusal %r, not code 1" % (refusal,))
        check(1000 <= stored <= 1080, "%d messages of 1 MB stored under a 1 GiB quota" % stored)
    finally:
        zqd.close()
        fs.close()


def test_disk_watermark_then_clear():
    # min_free_bytes is set 6 MiB under the free space of a 48 MiB tmpfs:
    # about 6 MiB of PUTs go in, then REFUSE 12, not confirmed; a stream
    # drops its spills meanwhile (counted); a purge frees the space and
    # PUTs are confirmed again without anyone telling zqd.
    fs = Tmpfs(48 * MIB)
    spool = os.path.join(fs.path, "spool")
    os.mkdir(spool, 0o700)
    min_free = fs.free() - 6 * MIB
    config = ("device\n    min_free_bytes = %d\nqueue\n    segment_bytes = 1048576\n"
              "queues\n    feed\n        kind = stream\n        in = \"tcp://127.0.0.1:*\"\n"
              "        out = \"tcp://127.0.0.1:*\"\n        memory_messages = 1\n" % min_free)
    zqd = hostile.Zqd(config=config)
    zqd.spool = spool
    try:
        zqd.start()
        producer = hostile.Client(zqd.endpoint)
        body = b"w" * 100000
        confirmed = 0
        refusal = None
        deadline = time.monotonic() + 30
        while refusal is None and time.monotonic() < deadline and confirmed < 400:
            answer = put_one(producer, "big", body)
            if answer[0] == "confirm":
                confirmed += 1
            else:
                refusal = answer
        check(refusal is not None, "%d puts of 100 kB passed the watermark" % confirmed)
        check(refusal[1] == CODE_NO_SPACE, "refusal %r, not code 12" % (refusal,))
        check("space" in refusal[2], "reason %r" % (refusal[2],))
        # Bounded overshoot: statvfs is asked every second or 16 MiB.
        check(confirmed <= 250, "%d puts of 100 kB confirmed past 6 MiB of room" % confirmed)
        check(fs.free() < min_free, "refused with %d bytes free over %d" % (fs.free(), min_free))
        # Refused again on a second try: the state holds.
        check(put_one(producer, "big", body)[1] == CODE_NO_SPACE, "second PUT not refused")
        check("min_free_bytes" in zqd.stderr(), "no log line names min_free_bytes: %s"
              % zqd.stderr()[-600:])
        # A stream past its memory drops what would spill, and counts it.
        status, rows = admin(zqd, "STAT", "feed")
        stream_in = zmq.Context.instance().socket(zmq.PUSH)
        stream_in.setsockopt(zmq.LINGER, 0)
        stream_in.connect(endpoint_of(zqd, "feed"))
        for _ in range(20):
            stream_in.send_multipart([hostile.envelope("feed", b"s" * 1000)[1]])
        wait_until(lambda: admin(zqd, "STAT", "feed")[1][0]["dropped"] >= 15,
                   "the stream's spills dropped under the watermark")
        stream_in.close(0)
        # Space returns: purge the queue; PUTs are confirmed again.
        status, rows = admin(zqd, "PURGE", "big")
        check(status == "OK" and rows[0]["purged"] == confirmed, "purge: %r" % rows)
        answer = wait_until(lambda: (lambda a: a if a[0] == "confirm" else None)(
            put_one(producer, "big", body)), "a PUT confirmed once space returned",
            step_s=0.2)
        check(answer == ("confirm",), "after the purge: %r" % (answer,))
    finally:
        zqd.close()
        fs.close()


def endpoint_of(zqd, name):
    """The in endpoint of stream name, from zqd's "zqd: stream NAME in ..."
    line."""
    with open(zqd.out_path) as out:
        for line in out:
            words = line.split()
            if words[:3] == ["zqd:", "stream", name] and len(words) >= 5:
                return words[4]
    raise hostile.Failure("no endpoint line for %s in zqd's output" % name)


def test_watermark_is_the_device_setting():
    # One knob: queue/min_free_bytes (or zqd -o) is refused with a pointer
    # to device/min_free_bytes, which covers streams too.
    result = subprocess.run([hostile.ZQD, "--check", "-o", "min_free_bytes=5"],
                            capture_output=True, text=True, timeout=hostile.DEADLINE_S)
    check(result.returncode == 2 and "device/min_free_bytes" in result.stderr,
          "zqd -o min_free_bytes: %r" % (result,))


def test_auto_queue_cap_then_delete():
    # Three queues clients may make; the configured one does not count.
    config = "queues\n    configured\n        kind = queue\n"
    zqd = hostile.Zqd(args=["-o", "max_auto_queues=3", "-o", "max_attempts=0"], config=config)
    try:
        zqd.start()
        producer = hostile.Client(zqd.endpoint)
        for name in ("a1", "a2", "a3", "configured"):
            check(put_one(producer, name, b"x") == ("confirm",), "PUT to %s refused" % name)
        refusal = put_one(producer, "a4", b"x")
        check(refusal[0] == "refuse" and refusal[1] == hostile.CODE_LIMIT,
              "the 4th client-made queue got %r, not code 9" % (refusal,))
        check("max_auto_queues" in refusal[2], "reason %r" % (refusal[2],))
        consumer = hostile.Client(zqd.endpoint)
        consumer.consume("a5", 10)
        got = consumer.recv_command(skip=(hostile.PONG, hostile.PING))
        check(got is not None and got[0][1] == hostile.ERROR and got[0][2] == hostile.CODE_LIMIT,
              "CONSUME of a 4th client-made queue got %r" % (got,))
        check("max_auto_queues" in zqd.stderr(), "the refusal is not logged")
        # DELETE refuses a queue holding a message, then FORCE drops it
        # and the place is free again.
        status, rows = admin(zqd, "DELETE", "a1")
        check(status == "ERROR" and "FORCE" in rows[0], "DELETE of a non-empty queue: %r"
              % ((status, rows),))
        check("a1" in names(zqd), "a refused DELETE removed the queue")
        status, rows = admin(zqd, "DELETE", "a1", "FORCE")
        check(status == "OK" and rows[0]["deleted"] == 1, "DELETE FORCE: %r" % ((status, rows),))
        check("a1" not in names(zqd), "a1 still listed after DELETE")
        check(put_one(producer, "a4", b"x") == ("confirm",), "the freed place was not given")
        # The deleted name starts empty.
        check(put_one(producer, "a1", b"y") == ("refuse", hostile.CODE_LIMIT,
                                               "queue limit reached (max_queues or "
                                               "max_auto_queues)"),
              "a 4th client-made queue was taken")
    finally:
        zqd.close()


def test_delete_refusals_and_consumers():
    config = "queues\n    configured\n        kind = queue\n"
    zqd = hostile.Zqd(config=config)
    try:
        zqd.start()
        status, rows = admin(zqd, "DELETE", "configured")
        check(status == "ERROR" and "configuration" in rows[0], "configured: %r" % rows)
        status, rows = admin(zqd, "DELETE", "nosuch")
        check(status == "ERROR" and "no queue" in rows[0], "unknown: %r" % rows)
        status, rows = admin(zqd, "DELETE", "configured", "NOW")
        check(status == "ERROR", "a bad argument was taken: %r" % rows)
        # A consumer of a queue deleted (empty, so without FORCE) is told.
        consumer = hostile.Client(zqd.endpoint)
        consumer.consume("work", 10)
        wait_until(lambda: "work" in names(zqd), "the consumed queue to be listed")
        deleted = zq_cli("delete", zqd.admin, "work")
        check(deleted.returncode == 0 and deleted.stdout == "deleted 0 messages\n",
              "zq delete of an empty queue: %r" % (deleted,))
        got = consumer.recv_command(skip=(hostile.PONG, hostile.PING))
        check(got is not None and got[0][1] == hostile.ERROR and got[0][2] == CODE_DELETED,
              "the consumer of a deleted queue got %r" % (got,))
        check(not os.path.exists(os.path.join(zqd.spool, "queue", "work")),
              "the deleted queue's spool directory is still there")
        # With a delivery in flight, FORCE drops it; settling it is refused.
        producer = hostile.Client(zqd.endpoint)
        producer.put_confirmed("busy", [b"1", b"2"])
        consumer.consume("busy", 1)
        delivered = consumer.deliveries(1)
        refused = zq_cli("delete", zqd.admin, "busy")
        check(refused.returncode == 5 and "--force" in refused.stderr,
              "zq delete with a delivery in flight: %r" % (refused,))
        forced = zq_cli("delete", "--force", zqd.admin, "busy")
        check(forced.returncode == 0 and forced.stdout == "deleted 2 messages\n",
              "zq delete --force: %r" % (forced,))
        consumer.ack([delivered[0][0]])
        errors = []
        while True:
            got = consumer.recv_command(timeout_s=5, skip=(hostile.PONG, hostile.PING))
            check(got is not None, "no answer to the ack of a deleted delivery: %r" % errors)
            errors.append(got[0])
            if got[0][2] == hostile.CODE_NOT_HELD:
                break
        # The name is free: a new PUT makes it again, empty.
        producer.put_confirmed("busy", [b"3"])
        status, rows = admin(zqd, "STAT", "busy")
        check(rows[0]["depth"] == 1, "the new busy holds %r" % rows[0]["depth"])
    finally:
        zqd.close()


def test_dead_letter_queue_without_its_queue_is_client_made():
    # NAME.dead named while NAME does not exist counts as a queue the
    # client made (max_auto_queues) and goes when idle; once NAME is made,
    # NAME.dead is NAME's dead-letter queue, in the place NAME keeps for it.
    zqd = hostile.Zqd(args=["-o", "max_auto_queues=3", "-o", "auto_queue_idle_ms=1500"])
    try:
        zqd.start()
        consumer = hostile.Client(zqd.endpoint)
        producer = hostile.Client(zqd.endpoint)
        consumer.consume("x.dead", 10)
        consumer.consume("y.dead", 10)
        wait_until(lambda: {"x.dead", "y.dead"} <= names(zqd), "the two dead-letter queues")
        # x made: x.dead is its own now, and frees a client's place.
        check(put_one(producer, "x", b"kept") == ("confirm",), "PUT to x refused")
        consumer.consume("w.dead", 10)
        consumer.consume("v.dead", 10)
        got = consumer.recv_command(skip=(hostile.PONG, hostile.PING))
        check(got is not None and got[0][1] == hostile.ERROR and got[0][2] == hostile.CODE_LIMIT,
              "a 4th client-made queue (v.dead) got %r, not code 9" % (got,))
        check(names(zqd) == {"x", "x.dead", "y.dead", "w.dead"}, "queues %r" % names(zqd))
        check("new queue v.dead refused" in zqd.stderr() and "max_auto_queues" in zqd.stderr(),
              "the refusal is not logged")
        # Unconsumed, the client's dead-letter queues go; x holds a
        # message, and x.dead goes only with x.
        for name in ("x.dead", "y.dead", "w.dead"):
            consumer.command(hostile.CANCEL, name)
        wait_until(lambda: names(zqd) == {"x", "x.dead"}, "the idle queues' removal",
                   timeout_s=15)
        check(put_one(producer, "fresh", b"y") == ("confirm",), "the freed places were not given")
        consumer.close()
        producer.close()
        zqd.stop()
    finally:
        zqd.close()


def test_idle_auto_queue_removed():
    # Queues clients made go after 1.5 s empty and unconsumed; a consumed
    # one, one holding a message and a configured one stay; after a
    # restart, a client-made queue found on disk ages from the start.
    config = "queues\n    kept\n        kind = queue\n"
    zqd = hostile.Zqd(args=["-o", "auto_queue_idle_ms=1500"], config=config)
    try:
        zqd.start()
        producer = hostile.Client(zqd.endpoint)
        consumer = hostile.Client(zqd.endpoint)
        producer.put_confirmed("full", [b"stays"])
        consumer.consume("watched", 10)
        consumer.consume("drained", 10)
        producer.put_confirmed("drained", [b"taken"])
        got = consumer.deliveries(1)
        consumer.ack([got[0][0]])
        # Its idle time counts from the CANCEL: timed from before it, so
        # that the admin round trips below take nothing from the margin.
        started = time.monotonic()
        consumer.command(hostile.CANCEL, "drained")
        wait_until(lambda: {"full", "watched", "drained", "kept"} <= names(zqd), "the queues")
        wait_until(lambda: "drained" not in names(zqd), "the idle queue's removal",
                   timeout_s=15)
        check(time.monotonic() - started >= 1.0, "removed before it was idle 1.5 s")
        check({"full", "watched", "kept"} <= names(zqd), "a queue in use was removed: %r"
              % names(zqd))
        check(not os.path.exists(os.path.join(zqd.spool, "queue", "drained")),
              "its spool directory is still there")
        check("auto_queue_idle_ms" in zqd.stderr(), "the removal is not logged")
        # After a restart: "empty" was made before and is found on disk.
        producer.put_confirmed("empty", [b"e"])
        status, rows = admin(zqd, "PURGE", "empty")
        consumer.close()
        producer.close()
        zqd.restart()
        check("empty" in names(zqd), "the client-made queue was not found at start")
        started = time.monotonic()
        wait_until(lambda: "empty" not in names(zqd), "the removal after a restart",
                   timeout_s=15)
        check(time.monotonic() - started >= 0.5, "removed at once after the restart")
        check({"full", "kept"} <= names(zqd), "queues lost over the restart: %r" % names(zqd))
        check(not {"watched"} <= names(zqd), "an unconsumed empty queue stayed after restart")
    finally:
        zqd.close()


hostile.main(globals())
