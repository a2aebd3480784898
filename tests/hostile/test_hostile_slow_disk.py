#!/usr/bin/python3
#   A disk that takes its time: zqd runs with a preload library
#   (tests/sync_hold.c) whose fdatasync waits while the test holds a file.
#   While the commit of a PUT batch, or of a lone PUT, waits on the disk,
#   zqd goes on serving its consumers: an ack read meanwhile frees the
#   consumer's credit and the next message is delivered. None of those PUTs
#   is confirmed before that fdatasync returns; then every one is, and is
#   delivered.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import os
import sys

import msgpack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
from hostile import check  # noqa: E402

SYNC_HOLD = os.path.join(hostile.BUILDDIR, "tests", ".libs", "sync_hold.so")
BATCH_TAG = 0x5A42
BATCH_COUNT = 12


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


hostile.main(globals())
