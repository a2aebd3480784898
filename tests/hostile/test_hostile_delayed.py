#!/usr/bin/python3
#   Messages put with zq-not-before-ms, or NACKed with a delay, wait in
#   zqd's memory until their time (doc/PROTOCOL.md 18.4): at most
#   max_delayed_messages of one queue and max_delayed_messages_total of all
#   (each queue keeping room for 64). A producer that puts a million
#   messages for the far future no longer grows zqd by a few hundred bytes
#   each: the queue holds its bound, says so in the log, and delivers
#   nothing more until the earliest falls due; then it goes on. A NACK past
#   the bound comes back at once. And a long run of records that are not
#   delivered (expired here) is read in steps, each pass yielding.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import os
import sys
import time

import msgpack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
from hostile import check, wait_until  # noqa: E402

FAR = {"zq-not-before-ms": str(10 ** 17)}


def stat(zqd, name):
    frames = hostile.admin_request(zqd.admin, "STAT", name)
    check(frames is not None and frames[0] == b"OK", "STAT %s: %r" % (name, frames))
    return msgpack.unpackb(frames[1], raw=False)


def put_all(client, queue, count, headers=None):
    ids = [client.put(queue, b"d", headers=headers) for _ in range(count)]
    answers = client.answers(ids)
    check(all(a == ("confirm",) for a in answers.values()), "a PUT to %s refused" % queue)
    return ids


def test_a_queue_holds_at_most_max_delayed_messages():
    zqd = hostile.Zqd(args=["-o", "max_delayed_messages=100",
                            "-o", "max_delayed_messages_total=1000"]).start()
    try:
        producer = hostile.Client(zqd.endpoint)
        put_all(producer, "later", 300, FAR)
        put_all(producer, "later", 1)
        consumer = hostile.Client(zqd.endpoint)
        consumer.consume("later", 10)
        wait_until(lambda: stat(zqd, "later")["delayed"] == 100, "100 messages delayed")
        wait_until(lambda: "max_delayed_messages 100" in zqd.stderr(), "the wait logged")
        check(stat(zqd, "later")["depth"] == 301, "depth %r" % stat(zqd, "later")["depth"])
        check(stat(zqd, "later")["delayed"] == 100, "more than 100 delayed")
        check(zqd.alive(), "zqd died")
        consumer.close()
        producer.close()
        zqd.stop()
    finally:
        zqd.close()


def test_a_full_queue_goes_on_when_the_earliest_fall_due():
    zqd = hostile.Zqd(args=["-o", "max_delayed_messages=100"]).start()
    try:
        producer = hostile.Client(zqd.endpoint)
        soon = {"zq-not-before-ms": str(int(time.time() * 1000) + 3000)}
        ids = put_all(producer, "soon", 150, soon) + put_all(producer, "soon", 1)
        consumer = hostile.Client(zqd.endpoint)
        consumer.consume("soon", 200)
        wait_until(lambda: stat(zqd, "soon")["delayed"] == 100, "100 messages delayed")
        got = consumer.recv_command(0.2, skip=(hostile.PING, hostile.PONG))
        check(got is None, "a delivery before the delayed ones fell due: %r" % (got,))
        got = consumer.deliveries(len(ids))
        check(sorted(d[0] for d in got) == sorted(ids), "not every message was delivered")
        consumer.close()
        producer.close()
        zqd.stop()
    finally:
        zqd.close()


def test_queues_share_the_total_each_keeping_a_few():
    # The total stops the queues that hold more than 64 (ZQI_RS_DELAY_FLOOR)
    # for later; one that holds fewer still takes its delayed messages, and
    # delivers those behind them.
    zqd = hostile.Zqd(args=["-o", "max_delayed_messages=100",
                            "-o", "max_delayed_messages_total=150"]).start()
    try:
        producer = hostile.Client(zqd.endpoint)
        put_all(producer, "one", 120, FAR)
        put_all(producer, "two", 120, FAR)
        put_all(producer, "victim", 1, FAR)
        plain = put_all(producer, "victim", 1)
        consumer = hostile.Client(zqd.endpoint)
        consumer.consume("one", 10)
        wait_until(lambda: stat(zqd, "one")["delayed"] == 100, "100 delayed in one")
        consumer.consume("two", 10)
        wait_until(lambda: stat(zqd, "two")["delayed"] == 64, "64 delayed in two")
        wait_until(lambda: "total 150" in zqd.stderr(), "the wait logged")
        consumer.consume("victim", 10)
        got = consumer.deliveries(1)
        check(got[0][0] == plain[0], "victim delivered %r" % (got,))
        check(stat(zqd, "one")["delayed"] + stat(zqd, "two")["delayed"] == 164,
              "one and two hold more than their share")
        consumer.close()
        producer.close()
        zqd.stop()
    finally:
        zqd.close()


def test_nack_delays_are_bounded_too():
    # NACKs with a delay hold at most the queue's bound; past it the
    # message comes back at once (its attempt counted).
    zqd = hostile.Zqd(args=["-o", "max_delayed_messages=20", "-o", "max_attempts=0"]).start()
    try:
        producer = hostile.Client(zqd.endpoint)
        ids = put_all(producer, "nacked", 30)
        consumer = hostile.Client(zqd.endpoint)
        consumer.consume("nacked", 30)
        first = consumer.deliveries(30)
        consumer.nack([d[0] for d in first], delay_ms=600000)
        again = consumer.deliveries(10)
        check(len({d[0] for d in again} & set(ids)) == 10, "redelivered %r" % (again,))
        check(all(d[1][4] == 1 for d in again), "attempts %r" % [d[1][4] for d in again])
        check(stat(zqd, "nacked")["delayed"] == 20, "delayed %r" % stat(zqd, "nacked"))
        consumer.close()
        producer.close()
        zqd.stop()
    finally:
        zqd.close()


def zqd_cpu_s(zqd):
    """zqd's processor time so far (user + system), in seconds."""
    with open("/proc/%d/stat" % zqd.process.pid) as stat_file:
        fields = stat_file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_long_run_of_expired_messages_is_read_in_steps():
    # 10000 expired records before a live one: delivery passes yield every
    # 4096 records and go on at once; the live one arrives, and zqd is idle
    # afterwards (no pass left due).
    zqd = hostile.Zqd().start()
    try:
        producer = hostile.Client(zqd.endpoint)
        old = int(time.time() * 1000) - 60000
        for _ in range(10):
            ids = [producer.put("runs", b"e", created_ms=old, headers={"zq-ttl-ms": "1"})
                   for _ in range(1000)]
            producer.answers(ids)
        live = put_all(producer, "runs", 1)
        consumer = hostile.Client(zqd.endpoint)
        consumer.consume("runs", 10)
        got = consumer.deliveries(1)
        check(got[0][0] == live[0], "delivered %r" % (got,))
        wait_until(lambda: stat(zqd, "runs")["expired"] == 10000, "the expired counted")
        before, started = zqd_cpu_s(zqd), time.monotonic()
        got = consumer.recv_command(1.0, skip=(hostile.PING, hostile.PONG))
        check(got is None, "more came: %r" % (got,))
        spent = zqd_cpu_s(zqd) - before
        check(spent < 0.5 * (time.monotonic() - started),
              "zqd used %.2f s of processor time idle" % spent)
        consumer.close()
        producer.close()
        zqd.stop()
    finally:
        zqd.close()


hostile.main(globals())
