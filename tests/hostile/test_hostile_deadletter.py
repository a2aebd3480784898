#!/usr/bin/python3
#   Dead letters and the limits around them, tried by a raw client:
#
#   - a queue's dead-letter queue always has a place: max_queues counts
#     NAME.dead with NAME when NAME is created, so a message past
#     max_attempts is dead-lettered even when every other place is taken
#     (it was retried every second forever, one log line each time), and
#     NAME.dead opens in the fd places kept for existing queues when new
#     queues are refused for want of descriptors;
#   - after a restart STAT and REDRIVE see a queue's dead letters;
#   - REDRIVE leaves alone a copy of the same id a consumer of NAME.dead
#     holds;
#   - CANCEL of an invalid name is answered ERROR 2 and counted;
#   - one connection consumes at most max_consumer_queues queues, so it
#     cannot pin every new-queue place of the fd budget.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import resource
import time

import msgpack

import hostile
from hostile import CODE_INVALID, CODE_LIMIT, CODE_NOT_HELD, ERROR, check


def admin(zqd, *words):
    """One admin request; returns the reply frames, or None."""
    return hostile.admin_request(zqd.admin, *words)


def stat(zqd, name):
    """The STAT row of name (a dict)."""
    reply = admin(zqd, "STAT", name)
    check(reply is not None and reply[0] == b"OK", "STAT %s answered %r" % (name, reply))
    return msgpack.unpackb(reply[1], raw=False)


def row(zqd, name):
    """The STAT row of name, or {} while the device does not know it (it
    learns a queue a client made within a second)."""
    reply = admin(zqd, "STAT", name)
    if reply is None or reply[0] != b"OK":
        return {}
    return msgpack.unpackb(reply[1], raw=False)


def redrive(zqd, name):
    """REDRIVE name; returns how many were redriven."""
    reply = admin(zqd, "REDRIVE", name)
    check(reply is not None and reply[0] == b"OK", "REDRIVE %s answered %r" % (name, reply))
    return msgpack.unpackb(reply[1], raw=False)


def errors_of(client, timeout_s):
    """The ERRORs (command lists) received within timeout_s."""
    out = []
    deadline = time.monotonic() + timeout_s
    while True:
        got = client.recv_command(max(0.0, deadline - time.monotonic()),
                                  skip=(hostile.PONG, hostile.PING))
        if got is None:
            return out
        if got[0][1] == ERROR:
            out.append(got[0])


def test_dead_letter_has_a_place_past_max_queues():
    zqd = hostile.Zqd(args=["-o", "max_queues=4", "-o", "max_attempts=1"]).start()
    try:
        client = hostile.Client(zqd.endpoint)
        client.put_confirmed("a", [b"v%d" % i for i in range(20)])
        # a and its a.dead take two places; b takes the other two; c has none.
        client.put_confirmed("b", [b"x"])
        answers = client.answers([client.put("c", b"y")])
        got = list(answers.values())[0]
        check(got[0] == "refuse" and got[1] == CODE_LIMIT,
              "c got %r: a queue was created without room for a's .dead" % (got,))
        client.consume("a", 100)
        delivered = client.deliveries(20)
        client.nack([d[0] for d in delivered], 0)
        dead = hostile.Client(zqd.endpoint)
        dead.consume("a.dead", 100)
        bodies = sorted(d[2] for d in dead.deliveries(20))
        check(bodies == sorted(b"v%d" % i for i in range(20)),
              "a.dead got %r" % bodies)
        log = zqd.stderr()
        check(log.count("cannot dead-letter") <= 1, "dead-lettering failed: %s" % log[-600:])
        zqd.stop()
    finally:
        zqd.close()


def test_dead_letter_opens_when_new_queues_are_refused_for_fds():
    # RLIMIT_NOFILE 96: 8 queues may be open, new queues 7. With 7 queues
    # subscribed (none idle) a new queue gets REFUSE 10, yet a's
    # dead-letter queue opens in the place kept for existing queues.
    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))
    zqd = hostile.Zqd(args=["-o", "max_attempts=1"], preexec_fn=low_limit).start()
    try:
        producer = hostile.Client(zqd.endpoint)
        producer.put_confirmed("a", [b"v%d" % i for i in range(20)])
        consumer = hostile.Client(zqd.endpoint)
        for i in range(6):
            consumer.command(hostile.CONSUME, "busy%d" % i, 0)
        consumer.consume("a", 100)
        delivered = consumer.deliveries(20)
        answers = producer.answers([producer.put("fresh", b"x")])
        got = list(answers.values())[0]
        check(got[0] == "refuse" and got[1] == hostile.CODE_BUSY,
              "a new queue got %r with the budget for new queues spent" % (got,))
        consumer.nack([d[0] for d in delivered], 0)
        hostile.wait_until(lambda: row(zqd, "a").get("dead") == 20, "20 dead letters", 5.0)
        log = zqd.stderr()
        check(log.count("cannot dead-letter") == 0, "dead-lettering failed: %s" % log[-600:])
        zqd.stop()
    finally:
        zqd.close()


def test_stat_and_redrive_see_dead_letters_after_restart():
    zqd = hostile.Zqd(args=["-o", "max_attempts=1"]).start()
    try:
        client = hostile.Client(zqd.endpoint)
        client.put_confirmed("a", [b"m1", b"m2"])
        client.consume("a", 10)
        client.nack([d[0] for d in client.deliveries(2)], 0)
        hostile.wait_until(lambda: row(zqd, "a").get("dead") == 2, "two dead letters")
        client.close()
        zqd.restart()
        before = stat(zqd, "a")
        check(before["dead"] == 2, "after a restart STAT a shows %r" % before)
        redriven = redrive(zqd, "a")
        check(redriven == {"redriven": 2},
              "after a restart REDRIVE a answered %r" % (redriven,))
        check(stat(zqd, "a.dead")["depth"] == 0, "a.dead still holds its letters")
        consumer = hostile.Client(zqd.endpoint)
        consumer.consume("a", 10)
        check(sorted(d[2] for d in consumer.deliveries(2)) == [b"m1", b"m2"],
              "redriven messages not delivered")
        zqd.stop()
    finally:
        zqd.close()


def test_redrive_keeps_a_held_copy_of_the_same_id():
    # The same id dead-lettered twice (put again after the dedupe window):
    # a.dead holds two copies. A consumer of a.dead holds one; REDRIVE
    # takes the other and must leave the held delivery alone.
    zqd = hostile.Zqd(args=["-o", "max_attempts=1", "-o", "dedupe_window_ms=1"]).start()
    try:
        producer = hostile.Client(zqd.endpoint)
        consumer = hostile.Client(zqd.endpoint)
        msg_id = hostile.new_id()
        consumer.consume("a", 10)
        for round_ in (1, 2):
            time.sleep(0.01)  # past the 1 ms dedupe window, not a wait for zqd
            answers = producer.answers([producer.put("a", b"same", msg_id=msg_id)])
            check(answers[msg_id] == ("confirm",), "put %d got %r" % (round_, answers))
            delivered = consumer.deliveries(1)
            consumer.nack([delivered[0][0]], 0)
            hostile.wait_until(lambda: row(zqd, "a.dead").get("depth") == round_,
                               "dead letter %d" % round_)
        holder = hostile.Client(zqd.endpoint)
        holder.consume("a.dead", 1)
        held = holder.deliveries(1)
        check(held[0][0] == msg_id, "a.dead delivered another id")
        redrive(zqd, "a")
        holder.ack([msg_id])
        errors = errors_of(holder, 1.0)
        check(not errors, "the holder's ack of its delivery was refused: %r" % errors)
        hostile.wait_until(lambda: row(zqd, "a.dead").get("depth") == 0,
                           "a.dead to be empty after the ack")
        zqd.stop()
    finally:
        zqd.close()


def test_cancel_of_an_invalid_name_is_answered():
    zqd = hostile.Zqd().start()
    try:
        client = hostile.Client(zqd.endpoint)
        client.command(hostile.CANCEL, "../x")
        got = client.recv_command(2.0)
        check(got is not None and got[0][1] == ERROR and got[0][2] == CODE_INVALID,
              "CANCEL of an invalid name got %r" % (got,))
        # A valid name not consumed: nothing to cancel, no answer.
        client.command(hostile.CANCEL, "nosuch")
        client.command(hostile.PING)
        got = client.recv_command(2.0, skip=())
        check(got is not None and got[0][1] == hostile.PONG,
              "CANCEL of a queue not consumed got %r" % (got,))
        check("invalid queue name in CANCEL" in zqd.stderr(), "not logged")
        zqd.stop()
    finally:
        zqd.close()


def test_one_connection_cannot_pin_the_new_queue_budget():
    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
    zqd = hostile.Zqd(preexec_fn=low_limit).start()
    try:
        producer = hostile.Client(zqd.endpoint)
        producer.put_confirmed("orders", [b"o1"])
        pinner = hostile.Client(zqd.endpoint)
        for i in range(200):
            pinner.command(hostile.CONSUME, "pin%03d" % i, 0)
        errors = errors_of(pinner, 3.0)
        codes = [e[2] for e in errors]
        check(codes and set(codes) == {CODE_LIMIT},
              "200 CONSUMEs from one connection got errors %r" % sorted(set(codes)))
        answers = producer.answers([producer.put("fresh", b"x")])
        check(list(answers.values()) == [("confirm",)],
              "a PUT to a new queue got %r while one connection consumes 200"
              % list(answers.values()))
        check("max_consumer_queues" in zqd.stderr(), "the limit was not logged")
        zqd.stop()
    finally:
        zqd.close()


hostile.main(globals())
