#!/usr/bin/python3
#   What zqd -v says about notable events, against a real zqd: every
#   stderr line has a UTC timestamp and a level; a queue created, a
#   consumer joining and leaving, a redelivery after a visibility timeout
#   and a dead letter each get a line; a flood of events is rate-limited;
#   a queue whose oldest message passes device/backlog_warning_ms gets a
#   warning (and a line when it has caught up).
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import re

import hostile
from hostile import check

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z zqd: (error|warning|notice|debug): ")


def test_every_line_has_a_timestamp_and_a_level():
    zqd = hostile.Zqd(args=["-v"]).start()
    try:
        client = hostile.Client(zqd.endpoint)
        client.put_confirmed("stamped", [b"x"])
        hostile.wait_until(lambda: "stamped" in zqd.stderr(), "a line naming the queue", 5.0)
        zqd.stop()
        lines = zqd.stderr().splitlines()
        check(lines, "zqd -v wrote nothing")
        for line in lines:
            check(LINE.match(line), "line without timestamp or level: %r" % line)
    finally:
        zqd.close()


def test_events_at_verbose():
    zqd = hostile.Zqd(args=["-v", "-o", "visibility_timeout_ms=200", "-o", "max_attempts=2"])
    zqd.start()
    try:
        producer = hostile.Client(zqd.endpoint)
        producer.put_confirmed("jobs", [b"job"])
        hostile.wait_until(lambda: "queue jobs created" in zqd.stderr(), "'queue jobs created'",
                           5.0)
        consumer = hostile.Client(zqd.endpoint)
        consumer.consume("jobs", 1)
        consumer.deliveries(1)
        hostile.wait_until(lambda: re.search(r"consumer \d+ joined", zqd.stderr()),
                           "'consumer N joined'", 5.0)
        # No ack: the visibility timeout sends it back, the second attempt
        # runs out too and the message is dead-lettered.
        hostile.wait_until(lambda: "passed its visibility timeout" in zqd.stderr(),
                           "a redelivery line", 10.0)
        hostile.wait_until(lambda: "a message moved to jobs.dead after" in zqd.stderr(),
                           "a dead-letter line", 10.0)
        consumer.command(hostile.LEAVE)
        consumer.close()
        hostile.wait_until(lambda: re.search(r"consumer \d+ left", zqd.stderr()),
                           "'consumer N left'", 10.0)
        zqd.stop()
    finally:
        zqd.close()


def test_a_flood_of_events_is_rate_limited():
    zqd = hostile.Zqd(args=["-v"]).start()
    try:
        client = hostile.Client(zqd.endpoint)
        # Fewer than max_auto_queues (256), so every PUT makes its queue.
        names = ["flood%d" % i for i in range(200)]
        ids = [client.put(name, b"x") for name in names]
        answers = client.answers(ids)
        check(all(a[0] == "confirm" for a in answers.values()), "not all confirmed")
        hostile.wait_until(lambda: "queue flood" in zqd.stderr(), "a created line", 5.0)
        zqd.stop()
        created = [l for l in zqd.stderr().splitlines() if re.search(r"queue flood\d+ created", l)]
        # One line per 100 ms at most: 200 creations within a few seconds
        # leave far fewer lines, the rest counted.
        check(0 < len(created) < 100, "%d creation lines for 200 queues" % len(created))
        check(any("more like it not shown" in l for l in zqd.stderr().splitlines()),
              "the left-out events are not counted")
    finally:
        zqd.close()


def test_backlog_warning():
    config = "device\n    backlog_warning_ms = 300\n"
    zqd = hostile.Zqd(config=config).start()
    try:
        client = hostile.Client(zqd.endpoint)
        client.put_confirmed("slow", [b"a", b"b"])
        hostile.wait_until(lambda: "queue slow is backing up" in zqd.stderr(),
                           "a backlog warning", 10.0)
        check(zqd.stderr().count("is backing up") == 1, "warned more than once")
        check("backlog_warning_ms 300" in zqd.stderr(), "the warning names no option")
        client.consume("slow", 10)
        client.ack([d[0] for d in client.deliveries(2)])
        hostile.wait_until(lambda: "queue slow caught up" in zqd.stderr(), "a caught-up line",
                           10.0)
        zqd.stop()
    finally:
        zqd.close()


def test_backlog_warning_bad_value_is_refused():
    zqd = hostile.Zqd(config="device\n    backlog_warning_ms = soon\n")
    try:
        zqd.start(expect_listening=False)
        status = zqd.process.wait(hostile.DEADLINE_S)
        check(status == 2, "zqd exited %d, expected 2" % status)
        check("device/backlog_warning_ms" in zqd.stderr(), "no clear error: %s" % zqd.stderr())
    finally:
        zqd.close()


hostile.main(globals())
