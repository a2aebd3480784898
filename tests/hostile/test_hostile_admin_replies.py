#!/usr/bin/python3
#   What an admin client can make zqd hold in memory with its replies: a
#   PEEK reply stops at ZQ_QUEUE_PEEK_MAX_BYTES (16 MiB, the first message
#   whatever its size), and a client that sends requests without reading
#   the replies costs at most the few zqd keeps for it
#   (ZQI_DEVICE_ADMIN_REPLIES_KEPT); the rest are dropped. zqd's resident
#   memory (VmRSS) is the measure.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import os
import sys

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
from hostile import check, wait_until  # noqa: E402

MIB = 1024 * 1024
PEEK_MAX_BYTES = 16 * MIB
BODY = b"b" * (MIB - 200)      # under max_message_bytes with its envelope
STORED = 40                    # messages of BODY in queue "big"
UNREAD_PEEKS = 20


def depth(zqd, name):
    frames = hostile.admin_request(zqd.admin, "STAT", name)
    check(frames is not None and frames[0] == b"OK", "STAT %s: %r" % (name, frames))
    return msgpack.unpackb(frames[1], raw=False)["depth"]


def stored_zqd():
    zqd = hostile.Zqd(args=["-f", "none"]).start()
    producer = hostile.Client(zqd.endpoint)
    for _ in range(STORED // 10):
        producer.put_confirmed("big", [BODY] * 10)
    producer.put_confirmed("marker", [b"m"])
    producer.close()
    return zqd


def test_peek_reply_is_bounded_in_bytes():
    zqd = stored_zqd()
    try:
        frames = hostile.admin_request(zqd.admin, "PEEK", "big", "1000")
        check(frames is not None and frames[0] == b"OK", "PEEK big 1000: %r" % (frames,)[:200])
        sizes = [len(frame) for frame in frames[1:]]
        check(1 <= len(sizes) < STORED, "PEEK 1000 of %d messages of 1 MiB gave %d"
              % (STORED, len(sizes)))
        check(sum(sizes) <= PEEK_MAX_BYTES < sum(sizes) + sizes[0],
              "PEEK gave %d bytes in %d messages: not the most that fit in %d"
              % (sum(sizes), len(sizes), PEEK_MAX_BYTES))
        frames = hostile.admin_request(zqd.admin, "PEEK", "big", "3")
        check(len(frames) == 4, "PEEK big 3 gave %d messages" % (len(frames) - 1))
        check(depth(zqd, "big") == STORED, "PEEK took messages")
        zqd.stop()
    finally:
        zqd.close()


def test_unread_replies_are_bounded():
    zqd = stored_zqd()
    context = zmq.Context()
    try:
        base = zqd.rss_kib()
        unread = context.socket(zmq.DEALER)
        unread.setsockopt(zmq.LINGER, 0)
        unread.setsockopt(zmq.RCVHWM, 1)
        unread.setsockopt(zmq.RCVBUF, 4096)
        unread.connect(zqd.admin)
        for _ in range(UNREAD_PEEKS):
            unread.send_multipart([b"", b"PEEK", b"big", b"1000"])
        # zqd takes one client's requests in order: once "marker" is
        # purged, every PEEK before it was answered.
        unread.send_multipart([b"", b"PURGE", b"marker"])
        wait_until(lambda: depth(zqd, "marker") == 0, "the unread client's requests handled")
        grown = zqd.rss_kib() - base
        check(grown < 160 * 1024, "%d unread PEEK replies grew zqd by %d MiB"
              % (UNREAD_PEEKS, grown // 1024))
        check(hostile.admin_request(zqd.admin, "PING") == [b"OK", b"PONG"],
              "another admin client is not answered")
        unread.close(0)
        zqd.stop()
    finally:
        context.destroy(0)
        zqd.close()


hostile.main(globals())
