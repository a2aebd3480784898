#!/usr/bin/python3
#   A disk that takes its time: zqd runs with a preload library
#   (tests/sync_hold.c) whose fdatasync waits while the test holds a file.
#   While the commit of a PUT batch, or of a lone PUT, waits on the disk,
#   zqd goes on serving its consumers: an ack read meanwhile frees the
#   consumer's credit and the next message is delivered. None of those PUTs
#   is confirmed before that fdatasync returns; then every one is, and is
#   delivered. A stretch of zqd's work that ends (4096 commands read)
#   while a commit waits on the disk does not wait for it: zqd goes on
#   reading, serving consumers and gathering the next PUTs, an admin DELETE
#   of that queue waits for the sync, and the PUTs are confirmed once it
#   returns. With no other input, a sync that waits does not hold zqd's
#   loop either: an admin request is answered meanwhile.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import os
import sys
import threading

import msgpack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
from hostile import check  # noqa: E402

SYNC_HOLD = os.path.join(hostile.BUILDDIR, "tests", ".libs", "sync_hold.so")
BATCH_TAG = 0x5A42
BATCH_COUNT = 12
#  More commands than one stretch of zqd's work reads (ZQI_RS_WORK_COMMANDS).
PINGS = 5000
PING_CHUNK = 250


def slow_zqd():
    """A zqd whose fdatasyncs wait while the file zqd.hold exists. (In a
    sanitizer build, AddressSanitizer must be told the preload comes
    first on purpose.)"""
    check(os.path.exists(SYNC_HOLD), "%s is not built" % SYNC_HOLD)
    asan = os.environ.get("ASAN_OPTIONS", "")
    zqd = hostile.Zqd()
    zqd.hold = os.path.join(zqd.dir, "hold")
    zqd.env = {"LD_PRELOAD": SYNC_HOLD, "ZQ_TEST_SYNC_HOLD": zqd.hold,
               "ASAN_OPTIONS": (asan + ":" if asan else "") +
               "quarantine_size_mb=1:verify_asan_link_order=0"}
    return zqd


def served_while_the_disk_syncs(count):
    """Puts count messages while the disk is held (one PUT, or a PUT batch
    of count), and checks zqd serves a consumer meanwhile."""
    zqd = slow_zqd().start()
    hold = zqd.hold
    try:
        producer = hostile.Client(zqd.endpoint)
        consumer = hostile.Client(zqd.endpoint)
        first, second = producer.put_confirmed("slow", [b"first", b"second"])
        consumer.consume("slow", 1)
        got = consumer.deliveries(1)
        check(got[0][0] == first, "the first delivery is not the first put")

        #  The disk stops; the PUTs arrive and their commit reaches the disk.
        open(hold, "w").close()
        made = [hostile.envelope("slow", b"b%d" % n) for n in range(count)]
        if count == 1:
            producer.put_frame(made[0][1])
        else:
            producer.put_frame(msgpack.packb([BATCH_TAG] + [frame for _, frame in made]))
        hostile.wait_until(lambda: os.path.exists(hold + ".held"),
                           "the PUTs' fdatasync to wait on the disk")

        #  The consumer is served meanwhile: its ack frees its credit.
        consumer.ack([first])
        got = consumer.deliveries(1)
        check(got[0][0] == second, "the delivery after the ack is not the second put")
        check(os.path.exists(hold + ".held"), "the disk let the fdatasync go early")
        #  (Looked for during a fifth of a second: an answer sent before
        #  the ack was read would have arrived by now.)
        check(producer.recv_command(timeout_s=0.2) is None,
              "zqd answered a PUT before its fdatasync returned")

        #  The disk goes on: every PUT is confirmed, then delivered.
        os.remove(hold)
        ids = [msg_id for msg_id, _ in made]
        answers = producer.answers(ids)
        check(all(a == ("confirm",) for a in answers.values()), "answers %r" % answers)
        consumer.ack([second])
        for msg_id in ids:
            got = consumer.deliveries(1)
            check(got[0][0] == msg_id, "the PUTs were delivered out of order")
            consumer.ack([msg_id])
        producer.close()
        consumer.close()
        zqd.stop()
    finally:
        if os.path.exists(hold):
            os.remove(hold)
        zqd.close()


def test_a_batch_syncs_while_consumers_are_served():
    served_while_the_disk_syncs(BATCH_COUNT)


def test_a_lone_put_syncs_while_consumers_are_served():
    """With a consumer subscribed, even a lone PUT commits in zqd's
    committer thread, not in the thread that serves consumers."""
    served_while_the_disk_syncs(1)


def held_batch(zqd, producer, queue):
    """Holds the disk under the commit of a PUT batch to queue; returns
    the batch's ids."""
    made = [hostile.envelope(queue, b"b%d" % n) for n in range(BATCH_COUNT)]
    open(zqd.hold, "w").close()
    producer.put_frame(msgpack.packb([BATCH_TAG] + [frame for _, frame in made]))
    hostile.wait_until(lambda: os.path.exists(zqd.hold + ".held"),
                       "the batch's fdatasync to wait on the disk")
    return [msg_id for msg_id, _ in made]


def held_past_a_stretch(zqd, producer, queue):
    """Holds the disk under the commit of a PUT batch to queue, then sends
    more commands than one stretch of zqd's work reads: each is answered
    while the disk still holds the sync, so zqd ended that stretch without
    waiting for it. Returns the batch's ids and the client that pinged."""
    ids = held_batch(zqd, producer, queue)
    pinger = hostile.Client(zqd.endpoint)
    for sent in range(0, PINGS, PING_CHUNK):
        #  (A chunk at a time: zqd drops answers past its send queue.)
        for _ in range(PING_CHUNK):
            pinger.command(hostile.PING)
        for pongs in range(sent, sent + PING_CHUNK):
            answer = pinger.recv_command(skip=())
            check(answer is not None, "%d of %d PINGs answered while the disk holds a sync"
                  % (pongs, PINGS))
            check(answer[0][1] == hostile.PONG, "a PING answered %r" % (answer[0],))
    check(os.path.exists(zqd.hold + ".held"), "the disk let the fdatasync go early")
    return ids, pinger


def test_a_stretch_of_work_ends_without_waiting_for_the_disk():
    """Past the stretch's end, a PUT gathers for the next commit and the
    consumer is served; no PUT is confirmed before the sync returns, then
    every one is, and they are delivered in the order they were put."""
    zqd = slow_zqd().start()
    try:
        producer = hostile.Client(zqd.endpoint)
        consumer = hostile.Client(zqd.endpoint)
        first, second = producer.put_confirmed("slow", [b"first", b"second"])
        consumer.consume("slow", 1)
        got = consumer.deliveries(1)
        check(got[0][0] == first, "the first delivery is not the first put")
        ids, pinger = held_past_a_stretch(zqd, producer, "slow")

        late = producer.put("slow", b"late")
        consumer.ack([first])
        got = consumer.deliveries(1)
        check(got[0][0] == second, "the delivery after the ack is not the second put")
        check(os.path.exists(zqd.hold + ".held"), "the disk let the fdatasync go early")
        check(producer.recv_command(timeout_s=0.2) is None,
              "zqd answered a PUT before its fdatasync returned")

        os.remove(zqd.hold)
        ids.append(late)
        answers = producer.answers(ids)
        check(all(a == ("confirm",) for a in answers.values()), "answers %r" % answers)
        consumer.ack([second])
        for msg_id in ids:
            got = consumer.deliveries(1)
            check(got[0][0] == msg_id, "the PUTs were delivered out of order")
            consumer.ack([msg_id])
        for client in (producer, consumer, pinger):
            client.close()
        zqd.stop()
    finally:
        if os.path.exists(zqd.hold):
            os.remove(zqd.hold)
        zqd.close()


def test_admin_is_served_while_a_commit_waits_on_the_disk():
    """With nothing else coming in, zqd's loop is not held by a sync that
    waits on the disk: an admin request is answered meanwhile."""
    zqd = slow_zqd().start()
    try:
        producer = hostile.Client(zqd.endpoint)
        producer.put_confirmed("slow", [b"before"])
        ids = held_batch(zqd, producer, "slow")
        reply = hostile.admin_request(zqd.admin, "STAT", "slow", timeout_s=5)
        check(reply is not None and reply[0] == b"OK",
              "STAT answered %r while a commit waited on the disk" % (reply,))
        check(os.path.exists(zqd.hold + ".held"), "the disk let the fdatasync go early")
        check(producer.recv_command(timeout_s=0.2) is None,
              "zqd answered a PUT before its fdatasync returned")
        os.remove(zqd.hold)
        answers = producer.answers(ids)
        check(all(a == ("confirm",) for a in answers.values()), "answers %r" % answers)
        producer.close()
        zqd.stop()
    finally:
        if os.path.exists(zqd.hold):
            os.remove(zqd.hold)
        zqd.close()


def test_a_queue_deleted_while_its_commit_waits_on_the_disk():
    """An admin DELETE (FORCE) of a queue whose commit a past stretch left
    waiting on the disk waits for the sync: the PUTs are confirmed (stored,
    then deleted with their queue), DELETE counts them, and zqd goes on."""
    zqd = slow_zqd().start()
    try:
        producer = hostile.Client(zqd.endpoint)
        producer.put_confirmed("doomed", [b"before"])
        ids, pinger = held_past_a_stretch(zqd, producer, "doomed")
        deleted = {}

        def delete():
            deleted["reply"] = hostile.admin_request(zqd.admin, "DELETE", "doomed", "FORCE")

        deleter = threading.Thread(target=delete)
        deleter.start()
        deleter.join(0.3)
        check(deleter.is_alive(), "DELETE answered while its queue's commit waited on the "
              "disk: %r" % (deleted.get("reply"),))

        os.remove(zqd.hold)
        answers = producer.answers(ids)
        check(all(a == ("confirm",) for a in answers.values()), "answers %r" % answers)
        deleter.join(hostile.DEADLINE_S)
        reply = deleted.get("reply")
        check(reply is not None and reply[0] == b"OK", "DELETE answered %r" % (reply,))
        counted = msgpack.unpackb(reply[1], raw=False)["deleted"]
        check(counted == BATCH_COUNT + 1, "DELETE dropped %r messages, not the %d put"
              % (counted, BATCH_COUNT + 1))
        again = producer.put_confirmed("doomed", [b"after"])
        check(len(again) == 1, "a put after the DELETE was not confirmed")
        check(zqd.alive(), "zqd is gone")
        producer.close()
        pinger.close()
        zqd.stop()
    finally:
        if os.path.exists(zqd.hold):
            os.remove(zqd.hold)
        zqd.close()


hostile.main(globals())
