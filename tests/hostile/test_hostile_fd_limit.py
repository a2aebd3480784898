#!/usr/bin/python3
#   zqd under a low limit on open files (RLIMIT_NOFILE 256): more queues
#   than file descriptors are confirmed (idle queues give their files
#   back), queues held busy by a consumer past the fd budget are refused
#   with REFUSE/ERROR code 10 ("busy") and a logged reason, zqd keeps
#   serving old queues and new connections, and a restart under the same
#   limit starts and serves every confirmed message with no segment
#   reported damaged. Idle connections that take every descriptor leave
#   the client zqd had served, a new queue refused with code 10, and zqd
#   taking clients again once they close. A consumer holding a message in
#   each of ~300 segments of one queue gets them all, zqd keeping few
#   descriptors open. More forwards than descriptors
#   stop zqd at start with a message (exit 3), not an abort. And
#   max_queues: reaching it is REFUSE/ERROR code 9 ("queue limit"), not
#   "storage full".
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import os
import resource
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
from hostile import check  # noqa: E402

FD_LIMIT = 256
IDLE_QUEUES = 120  # at 3-4 files per open queue, far more than 256 allow
BUSY_QUEUES = 80   # each held by a consumer: more than the budget allows
CODE_LIMIT = hostile.CODE_LIMIT
CODE_BUSY = hostile.CODE_BUSY


def limit_fds():
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def ping(client):
    """PING and wait for the PONG: everything client sent before is
    handled. Returns the commands that came before the PONG (PINGs aside)."""
    client.command(hostile.PING)
    passed = []
    while True:
        got = client.recv_command(skip=(hostile.PING,))
        check(got is not None, "no PONG")
        if got[0][1] == hostile.PONG:
            return passed
        passed.append(got)


def test_fd_budget():
    zqd = hostile.Zqd(preexec_fn=limit_fds).start()
    stored = {}  # queue name -> ids confirmed
    try:
        producer = hostile.Client(zqd.endpoint)

        # More queues than file descriptors, each left idle.
        sent = {}
        for i in range(IDLE_QUEUES):
            name = "idle-%03d" % i
            sent[producer.put(name, b"idle %d" % i)] = name
        answers = producer.answers(list(sent), timeout_s=60)
        bad = [(sent[i], a) for i, a in answers.items() if a[0] != "confirm"]
        check(not bad, "%d of %d idle queues not confirmed, first %r"
              % (len(bad), IDLE_QUEUES, bad[:2]))
        for msg_id, name in sent.items():
            stored.setdefault(name, []).append(msg_id)

        # Queues held busy by a consumer: confirmed up to the budget, then
        # a clear refusal, never silence.
        consumer = hostile.Client(zqd.endpoint)
        busy = ["busy-%03d" % i for i in range(BUSY_QUEUES)]
        for name in busy:
            consumer.consume(name, 1000)
        early = ping(consumer)
        sent = {}
        for name in busy:
            sent[producer.put(name, b"busy")] = name
        answers = producer.answers(list(sent), timeout_s=60)
        order = [answers[msg_id] for msg_id in sent]
        confirmed = 0
        while confirmed < len(order) and order[confirmed][0] == "confirm":
            confirmed += 1
        refused = order[confirmed:]
        check(confirmed >= 8, "only %d busy queues confirmed: %r" % (confirmed, order[:3]))
        check(refused, "all %d busy queues confirmed: no fd budget" % BUSY_QUEUES)
        check(all(a[0] == "refuse" and a[1] == CODE_BUSY for a in refused),
              "refused otherwise than REFUSE %d: %r" % (CODE_BUSY, refused[:3]))
        check("open" in refused[0][2], "refusal reason says nothing: %r" % refused[0][2])
        for msg_id in list(sent)[:confirmed]:
            stored.setdefault(sent[msg_id], []).append(msg_id)
        held = busy[:confirmed]

        # The consumer got a delivery per confirmed queue, and an ERROR
        # with code 10 for each CONSUME past the budget.
        delivered = []
        errors = [got[0] for got in early if got[0][1] == hostile.ERROR]
        deadline = time.monotonic() + hostile.DEADLINE_S
        while len(delivered) < confirmed or len(errors) < BUSY_QUEUES - confirmed:
            got = consumer.recv_command(max(0.0, deadline - time.monotonic()),
                                        skip=(hostile.PONG, hostile.PING))
            if got is None:
                break
            if got[0][1] == hostile.DELIVER:
                delivered.append(hostile.parse_envelope(got[1][0])[0][1])
            elif got[0][1] == hostile.ERROR:
                errors.append(got[0])
        check(len(delivered) == confirmed and len(errors) == BUSY_QUEUES - confirmed,
              "consumer got %d deliveries and %d errors, expected %d and %d"
              % (len(delivered), len(errors), confirmed, BUSY_QUEUES - confirmed))
        check(all(e[2] == CODE_BUSY for e in errors), "CONSUME errors: %r" % errors[:3])

        # Still serving: old queues, and a new connection.
        late = hostile.Client(zqd.endpoint)
        ping(late)
        stored["idle-000"] += late.put_confirmed("idle-000", [b"again"])

        # Once the consumer lets go, the budget is free again.
        consumer.ack(delivered)
        for name in held:
            consumer.command(hostile.CANCEL, name)
        ping(consumer)
        stored["busy-%03d" % (BUSY_QUEUES - 1)] = late.put_confirmed(
            "busy-%03d" % (BUSY_QUEUES - 1), [b"late"])
        for name in held:
            stored.pop(name)  # acked

        log = zqd.stderr()
        lines = [line for line in log.splitlines() if "file descriptor" in line]
        check(lines, "no log line tells why queues were refused: %s" % log[-2000:])
        check(len(lines) <= 3, "refusals logged %d times, not once per interval" % len(lines))
        consumer.close()
        late.close()
        producer.close()

        # A restart under the same limit starts and serves every message.
        zqd.restart()
        check("damaged" not in zqd.stderr(), "damage reported: %s" % zqd.stderr()[-2000:])
        reader = hostile.Client(zqd.endpoint)
        for name, ids in sorted(stored.items()):
            reader.consume(name, 10)
            got = reader.deliveries(len(ids))
            check(sorted(d[0] for d in got) == sorted(ids), "queue %s served other ids" % name)
            reader.ack([d[0] for d in got])
            reader.command(hostile.CANCEL, name)
        reader.close()
        check("damaged" not in zqd.stderr(), "damage reported: %s" % zqd.stderr()[-2000:])
        zqd.stop()
    finally:
        zqd.close()


def test_connections_past_the_limit():
    """Idle TCP connections until zqd has no descriptor left: it keeps
    serving the client it had, answers every PUT, and takes new clients
    again once the connections close."""
    zqd = hostile.Zqd(preexec_fn=limit_fds).start()
    flood = []
    try:
        kept = hostile.Client(zqd.endpoint)
        ids = kept.put_confirmed("kept", [b"before"])
        host, port = zqd.endpoint[len("tcp://"):].rsplit(":", 1)
        fd_dir = "/proc/%d/fd" % zqd.process.pid
        while len(flood) < 2 * FD_LIMIT and len(os.listdir(fd_dir)) < FD_LIMIT:
            flood.append(socket.create_connection((host, int(port)), timeout=5))
            if len(flood) % 16 == 0:
                hostile.wait_until(lambda: len(os.listdir(fd_dir)) >= FD_LIMIT - 8
                                   or len(os.listdir(fd_dir)) > len(flood), "accepts", 5)
        # a few more wait in the listen backlog, unaccepted
        flood += [socket.create_connection((host, int(port)), timeout=5) for _ in range(8)]
        # (Under valgrind the process holds a few of the limit's numbers
        # itself: then more connections than it can hold say it is out.)
        check(len(os.listdir(fd_dir)) >= FD_LIMIT - 4 or len(flood) > FD_LIMIT,
              "zqd holds only %d descriptors" % len(os.listdir(fd_dir)))

        ids += kept.put_confirmed("kept", [b"during"])
        fresh = kept.put("fresh", b"x")
        answer = kept.answers([fresh])[fresh]
        check(answer[0] == "confirm" or answer[1] == CODE_BUSY,
              "a new queue with no descriptor left got %r" % (answer,))
        check(zqd.alive(), "zqd died: %s" % zqd.stderr()[-2000:])

        for sock in flood:
            sock.close()
        flood = []
        late = hostile.Client(zqd.endpoint)
        ping(late)
        late.put_confirmed("fresh", [b"after"])
        late.consume("kept", 10)
        got = late.deliveries(len(ids))
        check([d[0] for d in got] == ids, "queue kept served other ids")
        late.close()
        kept.close()
        zqd.stop()
    finally:
        for sock in flood:
            sock.close()
        zqd.close()


def test_reader_across_segments():
    """A consumer holding one message in each of more segments than the
    limit has descriptors for: every message is delivered, and zqd's
    descriptors stay few (the reader keeps one segment open)."""
    count = 900  # about 3 per 4 KiB segment: ~300 segments
    zqd = hostile.Zqd(args=["-o", "segment_bytes=4096"], preexec_fn=limit_fds).start()
    try:
        producer = hostile.Client(zqd.endpoint)
        ids = []
        for first in range(0, count, 3):  # a batch is written whole: keep them small
            ids += producer.put_confirmed(
                "long", [b"%04d" % i + b"." * 1000 for i in range(first, first + 3)])
        segments = [name for name in os.listdir(os.path.join(zqd.spool, "queue", "long"))
                    if name.endswith(".zqs")]
        check(len(segments) > FD_LIMIT, "only %d segments" % len(segments))
        consumer = hostile.Client(zqd.endpoint)
        consumer.consume("long", count)
        got = consumer.deliveries(count, timeout_s=30)
        check([d[0] for d in got] == ids, "delivered other ids or out of order")
        fds = len(os.listdir("/proc/%d/fd" % zqd.process.pid))
        check(fds < 64, "zqd holds %d descriptors for one queue" % fds)
        consumer.ack(ids)
        ping(consumer)
        consumer.close()
        producer.close()
        zqd.stop()
    finally:
        zqd.close()


def test_kinds_past_the_limit():
    """More forwards than the limit has descriptors for: zqd refuses to
    start with a message (exit 3), never an abort."""
    config = "queues\n" + "".join(
        "    f%02d\n        kind = forward\n        in = tcp://127.0.0.1:*\n"
        "        out = tcp://127.0.0.1:*\n" % i for i in range(40))
    zqd = hostile.Zqd(config=config, preexec_fn=lambda: resource.setrlimit(
        resource.RLIMIT_NOFILE, (64, 64)))
    try:
        zqd.start(expect_listening=False)
        try:
            status = zqd.process.wait(hostile.DEADLINE_S)
        except hostile.subprocess.TimeoutExpired:
            raise hostile.Failure("zqd started 40 forwards under 64 descriptors")
        check(status == 3, "zqd exited %d: %s" % (status, zqd.stderr()[-1000:]))
        check("file descriptors" in zqd.stderr(), "no reason given: %s" % zqd.stderr())
    finally:
        zqd.close()


def test_max_queues():
    # Each queue takes two places: one is kept for its NAME.dead.
    zqd = hostile.Zqd(args=["-o", "max_queues=6"]).start()
    try:
        producer = hostile.Client(zqd.endpoint)
        ids = [producer.put(name, b"x") for name in ("one", "two", "three", "four")]
        answers = producer.answers(ids)
        check([answers[i][0] for i in ids[:3]] == ["confirm"] * 3,
              "first three refused: %r" % answers)
        fourth = answers[ids[3]]
        check(fourth[0] == "refuse" and fourth[1] == CODE_LIMIT and "limit" in fourth[2],
              "a fourth queue got %r, not REFUSE %d" % (fourth, CODE_LIMIT))
        consumer = hostile.Client(zqd.endpoint)
        consumer.consume("five", 1)
        got = consumer.recv_command()
        check(got is not None and got[0][1] == hostile.ERROR and got[0][2] == CODE_LIMIT,
              "CONSUME of a new queue past max_queues got %r" % (got,))
        producer.put_confirmed("two", [b"y"])
        consumer.consume("two", 5)
        check([d[2] for d in consumer.deliveries(2)] == [b"x", b"y"], "queue two not served")
        consumer.close()
        producer.close()
        zqd.stop()
    finally:
        zqd.close()


hostile.main(globals())
