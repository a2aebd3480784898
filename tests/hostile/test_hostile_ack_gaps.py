#!/usr/bin/python3
#   Acks out of order against a real zqd: a consumer with a large prefetch
#   acks every other delivery, leaving one acked range per gap (75,000 of
#   them, past what one spool record may hold at the default bound). The
#   queue must go on delivering across segment changes, zqd must start
#   again with the queue declared in its config, and it must then serve
#   exactly the messages that were not acked, without reporting damage.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
from hostile import check  # noqa: E402

QUEUE = "gaps"
SMALL = 150000  # every other one acked: 75,000 ranges
BIG = 4         # messages of 400 KB: segment changes (1 MiB segments)
CONFIG = "queues\n    %s\n        kind = queue\n" % QUEUE


def check_no_damage(zqd):
    text = zqd.stderr()
    check("damaged" not in text and "corrupt" not in text,
          "zqd reported damage: %s" % text[-2000:])


def put_all(client, bodies, chunk=10000):
    """Puts bodies in chunks, each confirmed before the next; returns ids."""
    ids = []
    for start in range(0, len(bodies), chunk):
        ids += client.put_confirmed(QUEUE, bodies[start:start + chunk])
    return ids


def take(client, limit, settle, marker=None, timeout_s=180):
    """Receives deliveries, up to limit or through marker; after every 500,
    and at the end, calls settle(ids of those) (acks: they also let the
    server go on delivering past its pipe to us). Returns the ids."""
    ids = []
    deadline = hostile.time.monotonic() + timeout_s
    settled = 0
    while len(ids) < limit and (marker is None or not ids or ids[-1] != marker):
        got = client.recv_command(max(0.0, deadline - hostile.time.monotonic()))
        check(got is not None, "%d deliveries, then nothing" % len(ids))
        command, rest = got
        if command[1] != hostile.DELIVER:
            continue
        ids.append(hostile.parse_envelope(rest[0])[0][1])
        if len(ids) - settled == 500:
            settle(ids[settled:])
            settled = len(ids)
    if len(ids) > settled:
        settle(ids[settled:])
    return ids


def test_every_other_ack_survives_segment_changes_and_restart():
    zqd = hostile.Zqd(args=["-o", "segment_bytes=1048576", "-o", "visibility_timeout_ms=600000",
                            "--fsync", "none"],
                      config=CONFIG).start()
    try:
        client = hostile.Client(zqd.endpoint)
        small_ids = put_all(client, [i for i in range(SMALL)])
        client.consume(QUEUE, SMALL + BIG + 10)
        # Every other delivery acked as they come; the others stay in
        # flight (a visibility timeout longer than the test).
        delivered = take(client, SMALL, lambda ids: client.ack(ids[0::2]))
        check(delivered == small_ids, "first deliveries out of order")
        unacked = small_ids[1::2]
        # Commands of one connection are handled in order: these puts come
        # after every ack, and start new segments whose checkpoints carry
        # all the ranges.
        big_ids = [client.put(QUEUE, bytes(400 * 1024)) for _ in range(BIG)]
        confirmed, got = set(), []
        deadline = hostile.time.monotonic() + 30
        while len(confirmed) < BIG or len(got) < BIG:
            answer = client.recv_command(max(0.0, deadline - hostile.time.monotonic()))
            check(answer is not None, "big messages: %d confirmed, %d delivered; zqd: %s"
                  % (len(confirmed), len(got), zqd.stderr()[-300:]))
            command, rest = answer
            if command[1] == hostile.CONFIRM:
                confirmed |= set(hostile.split_ids(command[2]))
            elif command[1] == hostile.DELIVER:
                got.append(hostile.parse_envelope(rest[0])[0][1])
            elif command[1] != hostile.PING:  # the server's liveness pings
                check(False, "unexpected answer %r" % (command,))
        check(confirmed == set(big_ids), "other ids confirmed")
        check(got == big_ids, "after the acks: %d of %d big messages delivered, and %d"
              " messages already delivered (%d of them acked)"
              % (len(set(got) & set(big_ids)), BIG, len(set(got) - set(big_ids)),
                 len(set(got) & set(small_ids[0::2]))))
        check_no_damage(zqd)
        client.close()

        zqd.restart()
        check_no_damage(zqd)
        client = hostile.Client(zqd.endpoint)
        marker = client.put_confirmed(QUEUE, [b"marker"])[0]
        client.consume(QUEUE, SMALL + BIG + 10)
        served = take(client, len(unacked) + BIG + 1, client.ack, marker=marker)
        check(served[-1] == marker, "the marker never came")
        before_marker = served[:-1]
        check(len(before_marker) == len(set(before_marker)), "a message served twice")
        expected = set(unacked) | set(big_ids)
        missing = expected - set(before_marker)
        extra = set(before_marker) - expected
        check(not missing, "%d unacked messages not served after restart" % len(missing))
        check(not extra, "%d acked messages served again" % len(extra))
        check(before_marker == unacked + big_ids, "served out of order")
        check_no_damage(zqd)
        client.close()
        zqd.stop()
    finally:
        zqd.close()


hostile.main(globals())
