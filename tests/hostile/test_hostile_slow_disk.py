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
import contextlib
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


@contextlib.contextmanager
def running_slow_zqd():
    """A started slow zqd, its disk let go and the zqd closed at the end
    whatever the outcome."""
    zqd = slow_zqd().start()
    try:
        yield zqd
    finally:
        if os.path.exists(zqd.hold):
            os.remove(zqd.hold)
        zqd.close()


def consumer_of_two(zqd):
    """A producer that put two messages to queue "slow" and a consumer
    (prefetch 1) that holds the first: (producer, consumer, first, second)."""
    producer = hostile.Client(zqd.endpoint)
    consumer = hostile.Client(zqd.endpoint)
    first, second = producer.put_confirmed("slow", [b"first", b"second"])
    consumer.consume("slow", 1)
    got = consumer.deliveries(1)
    check(got[0][0] == first, "the first delivery is not the first put")
    return producer, consumer, first, second


def served_while_held(zqd, producer, consumer, first, second):
    """The consumer is served while the disk holds a sync: its ack frees
    its credit and the second message comes; no PUT is answered."""
    consumer.ack([first])
    got = consumer.deliveries(1)
    check(got[0][0] == second, "the delivery after the ack is not the second put")
    check(os.path.exists(zqd.hold + ".held"), "the disk let the fdatasync go early")
    #  (Looked for during a fifth of a second: an answer sent before the
    #  ack was read would have arrived by now.)
    check(producer.recv_command(timeout_s=0.2) is None,
          "zqd answered a PUT before its fdatasync returned")


def released(zqd, producer, ids):
    """Lets the disk go on: every PUT of ids is confirmed."""
    os.remove(zqd.hold)
    answers = producer.answers(ids)
    check(all(a == ("confirm",) for a in answers.values()), "answers %r" % answers)


def delivered_in_order(consumer, second, ids):
    """Once the second message is acked, ids are delivered in order."""
    consumer.ack([second])
    for msg_id in ids:
        got = consumer.deliveries(1)
        check(got[0][0] == msg_id, "the PUTs were delivered out of order")
        consumer.ack([msg_id])


def held_batch(zqd, producer, queue, count=BATCH_COUNT):
    """Holds the disk under the commit of count PUTs to queue (one PUT, or
    a PUT batch); returns their ids."""
    made = [hostile.envelope(queue, b"b%d" % n) for n in range(count)]
    open(zqd.hold, "w").close()
    if count == 1:
        producer.put_frame(made[0][1])
    else:
        producer.put_frame(msgpack.packb([BATCH_TAG] + [frame for _, frame in made]))
    hostile.wait_until(lambda: os.path.exists(zqd.hold + ".held"),
                       "the PUTs' fdatasync to wait on the disk")
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


def served_while_the_disk_syncs(count):
    """Puts count messages while the disk is held (one PUT, or a PUT batch
    of count), and checks zqd serves a consumer meanwhile."""
    with running_slow_zqd() as zqd:
        producer, consumer, first, second = consumer_of_two(zqd)
        ids = held_batch(zqd, producer, "slow", count)
        served_while_held(zqd, producer, consumer, first, second)
        released(zqd, producer, ids)
        delivered_in_order(consumer, second, ids)
        producer.close()
        consumer.close()
        zqd.stop()


def test_a_batch_syncs_while_consumers_are_served():
    served_while_the_disk_syncs(BATCH_COUNT)


def test_a_lone_put_syncs_while_consumers_are_served():
    """With a consumer subscribed, even a lone PUT commits in zqd's
    committer thread, not in the thread that serves consumers."""
    served_while_the_disk_syncs(1)


def test_a_stretch_of_work_ends_without_waiting_for_the_disk():
    """Past the stretch's end, a PUT gathers for the next commit and the
    consumer is served; no PUT is confirmed before the sync returns, then
    every one is, and they are delivered in the order they were put."""
    with running_slow_zqd() as zqd:
        producer, consumer, first, second = consumer_of_two(zqd)
        ids, pinger = held_past_a_stretch(zqd, producer, "slow")
        ids.append(producer.put("slow", b"late"))
        served_while_held(zqd, producer, consumer, first, second)
        released(zqd, producer, ids)
        delivered_in_order(consumer, second, ids)
        for client in (producer, consumer, pinger):
            client.close()
        zqd.stop()


def test_admin_is_served_while_a_commit_waits_on_the_disk():
    """With nothing else coming in, zqd's loop is not held by a sync that
    waits on the disk: an admin request is answered meanwhile."""
    with running_slow_zqd() as zqd:
        producer = hostile.Client(zqd.endpoint)
        producer.put_confirmed("slow", [b"before"])
        ids = held_batch(zqd, producer, "slow")
        reply = hostile.admin_request(zqd.admin, "STAT", "slow", timeout_s=5)
        check(reply is not None and reply[0] == b"OK",
              "STAT answered %r while a commit waited on the disk" % (reply,))
        check(os.path.exists(zqd.hold + ".held"), "the disk let the fdatasync go early")
        released(zqd, producer, ids)
        producer.close()
        zqd.stop()


def test_a_queue_deleted_while_its_commit_waits_on_the_disk():
    """An admin DELETE (FORCE) of a queue whose commit a past stretch left
    waiting on the disk waits for the sync: the PUTs are confirmed (stored,
    then deleted with their queue), DELETE counts them, and zqd goes on."""
    with running_slow_zqd() as zqd:
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
        released(zqd, producer, ids)
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


hostile.main(globals())
