#!/usr/bin/python3
#   Messages put with zq-not-before-ms wait in zqd's memory until their
#   time (doc/PROTOCOL.md 18.4): at most max_delayed_messages of one queue
#   and max_delayed_messages_total of all. A producer that puts a million
#   messages for the far future no longer grows zqd by ~180 bytes each: the
#   queue holds that many, says so in the log, and delivers nothing more
#   until the earliest falls due; then it goes on.
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
        soon = {"zq-not-before-ms": str(int(time.time() * 1000) + 1500)}
        ids = put_all(producer, "soon", 150, soon) + put_all(producer, "soon", 1)
        consumer = hostile.Client(zqd.endpoint)
        consumer.consume("soon", 200)
        got = consumer.deliveries(len(ids))
        check(sorted(d[0] for d in got) == sorted(ids), "not every message was delivered")
        consumer.close()
        producer.close()
        zqd.stop()
    finally:
        zqd.close()


def test_all_queues_hold_at_most_max_delayed_messages_total():
    zqd = hostile.Zqd(args=["-o", "max_delayed_messages=100",
                            "-o", "max_delayed_messages_total=150"]).start()
    try:
        producer = hostile.Client(zqd.endpoint)
        put_all(producer, "one", 120, FAR)
        put_all(producer, "two", 120, FAR)
        consumer = hostile.Client(zqd.endpoint)
        consumer.consume("one", 10)
        wait_until(lambda: stat(zqd, "one")["delayed"] == 100, "100 delayed in one")
        consumer.consume("two", 10)
        wait_until(lambda: stat(zqd, "two")["delayed"] == 50, "50 delayed in two")
        wait_until(lambda: "total 150" in zqd.stderr(), "the wait logged")
        check(stat(zqd, "one")["delayed"] + stat(zqd, "two")["delayed"] == 150,
              "more than 150 delayed in all")
        consumer.close()
        producer.close()
        zqd.stop()
    finally:
        zqd.close()


hostile.main(globals())
