#!/usr/bin/python3
#   zqd gateways on a 3-node JetStream cluster (R3 streams) lose nothing
#   they confirmed when one nats-server node and one zqd are killed -9
#   while producers put: every confirmed id is delivered, and producers
#   and consumers go on through the survivors. Prints the longest pause
#   of confirms after the kills (the recovery time). Then a second node
#   is killed: without quorum a put is refused (retry later) and the
#   gateway's log says JetStream did not store it. Then the whole cluster
#   stops: the gateway logs the lost connection, naming the server
#   it was on, and exits 0.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import atexit
import os
import re
import sys
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hostile
import natsserver
from hostile import CONFIRM, DELIVER, REFUSE, check

VISIBILITY_MS = 3000
PRODUCE_S = 12.0       # producers put this long
KILL_AT_S = 4.0        # ... and the kills come this far in
WINDOW = 40            # puts a producer has unanswered at once
RESEND_S = 3.0         # an unanswered put goes again (through a gateway alive) after this
REFUSED_RETRY_S = 0.3  # a refused put goes again after this
DRAIN_S = 45.0         # longest wait for the last confirms and deliveries


class Gateway:
    """A raw producer and a raw consumer on one zqd."""

    def __init__(self, zqd, queue):
        self.zqd = zqd
        self.alive = True
        self.producer = hostile.Client(zqd.endpoint)
        self.consumer = hostile.Client(zqd.endpoint)
        self.consumer.consume(queue, 100)

    def close(self):
        self.producer.close()
        self.consumer.close()


def test_kill_a_node_and_a_gateway_while_putting():
    nats = natsserver.Nats(3)
    atexit.register(nats.stop)
    nats.start()
    zqds = []
    for _ in range(2):
        zqd = hostile.Zqd(args=["--jetstream", nats.urls(),
                                "-o", "visibility_timeout_ms=%d" % VISIBILITY_MS,
                                "-o", "jetstream_prefix=C%d" % os.getpid(), "-v"])
        atexit.register(zqd.close)
        zqds.append(zqd.start())
    queue = "orders"
    #  The R3 stream is made by the first put (its answer may take a
    #  moment while the cluster places it).
    first = hostile.Client(zqds[0].endpoint)
    hostile.wait_until(lambda: all(a == ("confirm",) for a in first.answers(
        [first.put(queue, "warm-up")], timeout_s=10).values()), "the first put", timeout_s=30)
    first.close()

    gateways = [Gateway(zqd, queue) for zqd in zqds]
    poller = zmq.Poller()
    for gateway in gateways:
        poller.register(gateway.producer.sock, zmq.POLLIN)
        poller.register(gateway.consumer.sock, zmq.POLLIN)
    frames = {}       # id -> envelope frame
    sent = {}         # id -> (time, gateway index) of the last send, while unanswered
    retry = {}        # id -> time a refused put goes again
    confirmed = {}    # id -> time of its first confirm
    delivered = set()
    waiting = set()   # confirmed, not delivered yet
    delivered_after_kill = 0
    last_delivery = None
    started = time.monotonic()
    killed_at = None
    turn = 0

    def live():
        return [i for i, g in enumerate(gateways) if g.alive]

    def send(msg_id, avoid=None):
        nonlocal turn
        choices = [i for i in live() if i != avoid] or live()
        index = choices[turn % len(choices)]
        turn += 1
        gateways[index].producer.put_frame(frames[msg_id])
        sent[msg_id] = (time.monotonic(), index)

    deadline = started + PRODUCE_S + DRAIN_S
    serial = 0
    while True:
        now = time.monotonic()
        producing = now - started < PRODUCE_S
        if killed_at is None and now - started >= KILL_AT_S:
            nats.kill(1)
            zqds[1].kill()
            gateways[1].alive = False
            killed_at = time.monotonic()
        if producing:
            while len(sent) + len(retry) < WINDOW:
                serial += 1
                msg_id, frame = hostile.envelope(queue, "order %d" % serial)
                frames[msg_id] = frame
                send(msg_id)
        for msg_id, (when, index) in list(sent.items()):
            if now - when > RESEND_S:
                send(msg_id, avoid=index)
        for msg_id, when in list(retry.items()):
            if now >= when:
                del retry[msg_id]
                send(msg_id)
        #  Kept cheap per turn (no pass over all ids, zqd's log read only on
        #  failure): a slow turn would slow the drain it measures.
        if not producing and not sent and not retry and not waiting:
            break
        if now >= deadline:
            check(False, "%d unanswered, %d of %d confirmed not delivered after %.0f s "
                  "(%d delivered, the last %.1f s ago); the surviving zqd said: %s" % (
                      len(sent) + len(retry), len(waiting), len(confirmed), DRAIN_S,
                      len(delivered), now - last_delivery if last_delivery else -1,
                      zqds[0].stderr()[-2000:]))
        for sock, _ in poller.poll(50):
            gateway = next(g for g in gateways
                           if sock in (g.producer.sock, g.consumer.sock))
            #  All this socket has now, not one command a turn.
            while sock.poll(0, zmq.POLLIN):
                frames_in = sock.recv_multipart()
                if not gateway.alive:
                    continue
                command = msgpack.unpackb(frames_in[0], raw=False)
                if command[1] == CONFIRM:
                    for msg_id in hostile.split_ids(command[2]):
                        sent.pop(msg_id, None)
                        retry.pop(msg_id, None)
                        if msg_id not in confirmed:
                            confirmed[msg_id] = time.monotonic()
                            if msg_id not in delivered:
                                waiting.add(msg_id)
                elif command[1] == REFUSE:
                    for msg_id in hostile.split_ids(command[2]):
                        if msg_id in sent and msg_id not in confirmed:
                            del sent[msg_id]
                            retry[msg_id] = time.monotonic() + REFUSED_RETRY_S
                elif command[1] == DELIVER:
                    header, _ = hostile.parse_envelope(frames_in[1])
                    msg_id = header[1]
                    if msg_id in frames:
                        delivered.add(msg_id)
                        waiting.discard(msg_id)
                        last_delivery = time.monotonic()
                        if killed_at is not None:
                            delivered_after_kill += 1
                    gateway.consumer.ack([msg_id])
    for gateway in gateways:
        gateway.close()

    lost = set(confirmed) - delivered
    check(not lost, "%d confirmed ids never delivered" % len(lost))
    after = sorted(t for t in confirmed.values() if t >= killed_at)
    check(after, "no put was confirmed after the kills")
    check(delivered_after_kill > 0, "nothing was delivered after the kills")
    times = [killed_at] + after
    pause = max(b - a for a, b in zip(times, times[1:]))
    print("cluster: %d confirmed (%d after the kills), all delivered; longest pause of "
          "confirms after the kills %.2f s" % (len(confirmed), len(after), pause), flush=True)
    #  With two of the three nodes gone the stream has no quorum: a put is
    #  refused (code 3: storage failed, retry later) and the gateway's log
    #  says which queue JetStream did not store a put to (one line per 10 s
    #  at most, so puts go until a new one comes).
    nats.kill(0)
    failed_line = "reliable: JetStream did not store a put to queue orders: "
    failed_before = zqds[0].stderr().count(failed_line)
    late = hostile.Client(zqds[0].endpoint)
    refusals = []

    def refused_and_logged():
        try:
            answer = late.answers([late.put(queue, "no quorum")], timeout_s=20)
        except hostile.Failure:
            answer = {}  # unanswered for 20 s: the wait goes on (its deadline holds)
        refusals.extend(a for a in answer.values() if a[0] == "refuse")
        return refusals and zqds[0].stderr().count(failed_line) > failed_before

    hostile.wait_until(refused_and_logged, "a put refused without quorum, and its line",
                       timeout_s=60, step_s=0.5)
    late.close()
    check(all(a[1] == 3 for a in refusals),
          "refusals without quorum: %r" % refusals)
    print("cluster: without quorum, refused %r; zqd said: %s" % (
        refusals[0], [line for line in zqds[0].stderr().splitlines()
                      if failed_line in line][-1]), flush=True)
    #  With the whole cluster gone, the gateway says so, and still stops
    #  cleanly (exit 0, and nothing leaked in a sanitizer build).
    lost_line = "JetStream connection lost"
    lost_before = zqds[0].stderr().count(lost_line)
    nats.stop()
    hostile.wait_until(lambda: zqds[0].stderr().count(lost_line) > lost_before,
                       "zqd to log the lost JetStream connection", timeout_s=20)
    #  Each loss names the server the line before it said the connection
    #  was on ("connected" at the start, then "back"): one of the cluster's.
    urls = nats.urls().split(",")
    on = None
    for what, url in re.findall(r"JetStream (connected|connection lost|connection back) "
                                r"\(([^)]*)\)", zqds[0].stderr()):
        if what == "connection lost":
            check(url == on, "zqd logged the loss of %s while on %s" % (url, on))
            print("cluster: zqd lost %s" % url, flush=True)
        else:
            check(url in urls, "zqd logged a connection to %s, not one of %s" % (url, urls))
            on = url
    check(on is not None, "zqd logged no JetStream connected line")
    zqds[0].stop()


hostile.main(globals())
