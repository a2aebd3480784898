#!/usr/bin/python3
#   Soak: two producers put as fast as zqd confirms while a consumer acks
#   at a tenth of their rate (their confirmed rate over the first
#   RATE_WINDOW_S seconds, before any refusal), for ZQ_SOAK_S seconds (30
#   in make check, 600 in make check-faults). The queue's quota (16 MiB
#   here) is reached within seconds, so producers then meet refusals
#   (code 1) and put again later, as a zq producer does, and go on at the
#   consumer's pace as its acks free space. Checked all along: zqd's RSS
#   stays under RSS_BOUND_KIB; every PUT is answered (confirm or refusal)
#   within ANSWER_BOUND_S, never silence. At the end the consumer speeds
#   up and drains the queue: every confirmed id is delivered (duplicates
#   allowed, none missing).
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import os
import sys
import time

import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
from hostile import check  # noqa: E402

SOAK_S = float(os.environ.get("ZQ_SOAK_S", "30"))
QUEUE = "soak"
BODY = b"s" * 2000
WINDOW = 64            # PUTs a producer keeps unanswered
RETRY_S = 0.1          # a refused PUT is sent again after this
PREFETCH = 100
QUOTA_BYTES = 16 * 1024 * 1024
SEGMENT_BYTES = 1024 * 1024
RATE_WINDOW_S = 3.0
# zqd at rest is about 8 MiB; what the consumer holds unsettled is at most
# 16 MiB (max_unsettled_bytes), the dedupe window at most 262144 ids
# (20 MiB with its hash: 80 bytes an id), the backlog lives on disk: about 45 MiB at
# worst. 96 MiB leaves room for allocator and sanitizer slack, never for
# the backlog (16 MiB here, 1 GiB at the default quota).
RSS_BOUND_KIB = 96 * 1024
ANSWER_BOUND_S = 10.0
DRAIN_S = 120.0


class Producer:
    def __init__(self, endpoint, number):
        self.client = hostile.Client(endpoint)
        self.number = number
        self.sent = {}        # id -> time sent (unanswered)
        self.retry = []       # (due, id) refused, to send again
        self.confirmed = set()
        self.refused = 0
        self.worst_s = 0.0
        self.count = 0
        self.paused_until = 0.0  # after a refusal, nothing is sent for RETRY_S

    def fill(self, now, stopping):
        # At the end, refused messages are given up (never confirmed:
        # nothing was promised for them); only answers are waited for.
        if now < self.paused_until:
            return
        while not stopping and self.retry and self.retry[0][0] <= now and \
                len(self.sent) < WINDOW:
            _, msg_id = self.retry.pop(0)
            self.send(msg_id, now)
        while not stopping and len(self.sent) < WINDOW:
            self.count += 1
            self.send(None, now)

    def send(self, msg_id, now):
        msg_id, frame = hostile.envelope(QUEUE, BODY, msg_id=msg_id)
        self.client.put_frame(frame)
        self.sent[msg_id] = now

    def read(self, now):
        while self.client.sock.poll(0):
            frames = self.client.sock.recv_multipart()
            command = hostile.msgpack.unpackb(frames[0], raw=False)
            if command[1] not in (hostile.CONFIRM, hostile.REFUSE):
                continue
            for msg_id in hostile.split_ids(command[2]):
                started = self.sent.pop(msg_id, None)
                if started is None:
                    continue
                self.worst_s = max(self.worst_s, now - started)
                if command[1] == hostile.CONFIRM:
                    self.confirmed.add(msg_id)
                else:
                    check(command[3] in (hostile.CODE_FULL, 12),
                          "refusal %r: not a passing one" % (command[3:],))
                    self.refused += 1
                    self.retry.append((now + RETRY_S, msg_id))
                    self.paused_until = now + RETRY_S

    def oldest_unanswered_s(self, now):
        return max((now - t for t in self.sent.values()), default=0.0)


def test_slow_consumer_soak():
    zqd = hostile.Zqd(args=["-o", "quota_bytes=%d" % QUOTA_BYTES,
                            "-o", "segment_bytes=%d" % SEGMENT_BYTES]).start()
    try:
        producers = [Producer(zqd.endpoint, n) for n in range(2)]
        consumer = hostile.Client(zqd.endpoint)
        consumer.consume(QUEUE, PREFETCH)
        held = []              # delivered ids not acked yet
        delivered = set()
        acked = 0
        ack_rate = None
        peak_kib = 0
        next_sample = 0.0
        started = time.monotonic()
        stop_at = started + SOAK_S
        poller = zmq.Poller()
        for p in producers:
            poller.register(p.client.sock, zmq.POLLIN)
        poller.register(consumer.sock, zmq.POLLIN)
        while True:
            now = time.monotonic()
            stopping = now >= stop_at
            for p in producers:
                p.fill(now, stopping)
            poller.poll(20)
            now = time.monotonic()
            for p in producers:
                p.read(now)
                check(p.oldest_unanswered_s(now) < ANSWER_BOUND_S,
                      "producer %d: a PUT unanswered for %.1f s (silence)"
                      % (p.number, p.oldest_unanswered_s(now)))
            while consumer.sock.poll(0):
                frames = consumer.sock.recv_multipart()
                command = hostile.msgpack.unpackb(frames[0], raw=False)
                if command[1] == hostile.DELIVER:
                    header, _ = hostile.parse_envelope(frames[1])
                    held.append(header[1])
                    delivered.add(header[1])
            # The consumer acks at a tenth of the producers' rate: their
            # confirms per second over the first RATE_WINDOW_S seconds.
            confirmed = sum(len(p.confirmed) for p in producers)
            if ack_rate is None and now - started >= RATE_WINDOW_S:
                ack_rate = confirmed / (now - started) / 10
            budget = (int(ack_rate * (now - started)) if ack_rate is not None
                      else confirmed // 10) - acked
            if budget > 0 and held:
                take = held[:budget]
                del held[:len(take)]
                consumer.ack(take)
                acked += len(take)
            if now >= next_sample:
                next_sample = now + 1.0
                rss = zqd.rss_kib()
                peak_kib = max(peak_kib, rss)
                check(rss < RSS_BOUND_KIB, "zqd's RSS %d KiB over %d KiB after %.0f s"
                      % (rss, RSS_BOUND_KIB, now - started))
            if stopping and not any(p.sent for p in producers):
                break
            check(now < stop_at + 30, "producers still waiting 30 s after the end")
        confirmed_ids = set().union(*(p.confirmed for p in producers))
        refused = sum(p.refused for p in producers)
        worst = max(p.worst_s for p in producers)
        check(refused > 0 or worst > 0.05,
              "producers met neither refusals nor a slow confirm: no backpressure seen")
        # Drain: the consumer now acks all it gets.
        acked_slowly = acked
        if held:
            consumer.ack(held)
            acked += len(held)
        deadline = time.monotonic() + DRAIN_S
        while not confirmed_ids <= delivered:
            check(time.monotonic() < deadline, "%d confirmed ids not delivered after the drain"
                  % len(confirmed_ids - delivered))
            if not consumer.sock.poll(1000):
                continue
            batch = []
            while consumer.sock.poll(0) and len(batch) < 1000:
                frames = consumer.sock.recv_multipart()
                command = hostile.msgpack.unpackb(frames[0], raw=False)
                if command[1] == hostile.DELIVER:
                    header, _ = hostile.parse_envelope(frames[1])
                    batch.append(header[1])
                    delivered.add(header[1])
            if batch:
                consumer.ack(batch)
                acked += len(batch)
            peak_kib = max(peak_kib, zqd.rss_kib())
        check(peak_kib < RSS_BOUND_KIB, "zqd's RSS reached %d KiB" % peak_kib)
        print("soak %.0f s: %d confirmed, %d acked at %.0f/s before the drain, %d refusals "
              "(put again), slowest answer %.2f s, zqd RSS peak %d KiB (bound %d)"
              % (SOAK_S, len(confirmed_ids), acked_slowly, ack_rate or 0, refused, worst,
                 peak_kib, RSS_BOUND_KIB), flush=True)
    finally:
        zqd.close()


hostile.main(globals())
