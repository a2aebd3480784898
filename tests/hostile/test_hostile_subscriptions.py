#!/usr/bin/python3
#   Subscriptions and frames that clients send to the sockets of a forward
#   and a stream (doc/DEVICE.md, "Bounds on what clients send"): a 400 KB
#   subscription must not crash zqd or swell it, one connection holds at
#   most 1024 subscriptions (more are refused, and a connection that keeps
#   sending refused ones is closed), what subscriptions cost stays within
#   max_subscription_bytes for all connections and an eighth of it for one
#   (one past it closes its connection, so many connections cannot keep
#   zqd swollen), and a stream's PUSH side closes a connection that
#   announces a huge frame instead of waiting for it.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
from hostile import check  # noqa: E402
import zmq  # noqa: E402
import zmq.utils.monitor  # noqa: E402

MAX_SUBSCRIPTIONS = 1024  # per connection, doc/DEVICE.md
CONFIG = """queues
    news
        kind = forward
        in = tcp://127.0.0.1:*
        out = tcp://127.0.0.1:*
    jobs
        kind = stream
        in = tcp://127.0.0.1:*
        out = tcp://127.0.0.1:*
"""


def start(config=CONFIG):
    """A zqd with the forward "news" and the stream "jobs" (as config has
    them); returns it and {name: (in, out)} as zqd printed them."""
    zqd = hostile.Zqd(config=config).start()

    def endpoints():
        found = {}
        with open(zqd.out_path) as out:
            for line in out:
                words = line.split()
                # zqd: KIND NAME in ENDPOINT out ENDPOINT
                if len(words) == 7 and words[3] == "in" and words[5] == "out":
                    found[words[2]] = (words[4], words[6])
        return found if len(found) == 2 else None

    return zqd, hostile.wait_until(endpoints, "zqd to print its forward and stream")


def publisher(endpoint):
    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def publish(sock, topic, seq, body):
    """A pubsub message as doc/PROTOCOL.md lays it out: topic, sequence
    (8 bytes of publisher, 8 of number), body."""
    sock.send_multipart([topic, b"hostile!" + struct.pack(">Q", seq), body])


def subscriber(endpoint, topics):
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    #   Else libzmq itself drops subscriptions past the high-water mark.
    sock.setsockopt(zmq.SNDHWM, 0)
    for topic in topics:
        sock.setsockopt(zmq.SUBSCRIBE, topic)
    sock.connect(endpoint)
    return sock


def flows(zqd, pub, sub, topic, before=()):
    """Publishes, until sub receives one on topic (bounded), first one
    message on each topic of before then one on topic. Returns the topics
    sub received, in order, up to and including topic."""
    received = []
    deadline = time.monotonic() + hostile.DEADLINE_S
    seq = 0
    while time.monotonic() < deadline:
        for other in before:
            seq += 1
            publish(pub, other, seq, b"x")
        seq += 1
        publish(pub, topic, seq, b"x")
        while sub.poll(50):
            frames = sub.recv_multipart()
            received.append(frames[0])
            if frames[0] == topic:
                return received
    state = "running" if zqd.alive() else "exited %s" % zqd.process.returncode
    raise hostile.Failure("nothing on %r reached the subscriber (zqd %s)" % (topic, state))


def test_long_subscription():
    zqd, endpoints = start()
    try:
        news_in, news_out = endpoints["news"]
        before_kb = zqd.rss_kib()
        #   Sent over raw ZMTP: a libzmq SUB of this process would hold the
        #   same subscription in its own trie.
        raw = zmtp_connect(news_out, b"SUB")
        topic = b"A" * (400 * 1024)
        raw_subscribe(raw, [topic])
        raw.close()
        pub = publisher(news_in)
        good = subscriber(news_out, [b"news.a"])
        flows(zqd, pub, good, b"news.a")
        check(zqd.alive(), "zqd died: %s" % zqd.stderr())
        after_kb = zqd.rss_kib()
        print("RSS before %d kB, after %d kB" % (before_kb, after_kb))
        check(after_kb < before_kb + 64 * 1024, "zqd grew from %d to %d kB" % (before_kb, after_kb))
        for sock in (good, pub):
            sock.close(0)
        zqd.stop()
    finally:
        zqd.close()


def test_subscription_over_256_bytes_closes_its_connection():
    zqd, endpoints = start()
    try:
        #   Over 512 bytes the frame is refused before it is read whole;
        #   over 256 zqd reads it and closes the connection (logged).
        for size in (1000, 300):
            raw = zmtp_connect(endpoints["news"][1], b"SUB")
            topic = b"B" * size
            raw_subscribe(raw, [topic])
            check(closed_by_peer(raw, 5.0),
                  "zqd kept a connection with a %d-byte subscription" % size)
            raw.close()
        hostile.wait_until(lambda: "a subscription over 256 bytes" in zqd.stderr(),
                           "zqd to log the closed connection")
        check(zqd.alive(), "zqd died: %s" % zqd.stderr())
        zqd.stop()
    finally:
        zqd.close()


def test_subscriptions_past_the_cap_are_refused():
    zqd, endpoints = start()
    try:
        news_in, news_out = endpoints["news"]
        topics = [b"t%05d." % index for index in range(MAX_SUBSCRIPTIONS + 100)]
        sub = subscriber(news_out, topics)
        pub = publisher(news_in)
        #   One message on a topic past the cap, then one on the last
        #   topic within it: the first must never arrive.
        inside, past = topics[MAX_SUBSCRIPTIONS - 1], topics[MAX_SUBSCRIPTIONS + 50]
        received = flows(zqd, pub, sub, inside, before=[past])
        check(past not in received, "a subscription past the cap was served")
        hostile.wait_until(lambda: "subscriptions refused" in zqd.stderr(),
                           "zqd to log the refusals")
        check(zqd.alive(), "zqd died: %s" % zqd.stderr())
        #   Another connection has a cap of its own.
        other = subscriber(news_out, [past])
        flows(zqd, pub, other, past)
        for sock in (sub, pub, other):
            sock.close(0)
        zqd.stop()
    finally:
        zqd.close()


def test_publisher_joining_late_gets_every_subscription():
    zqd, endpoints = start()
    try:
        news_in, news_out = endpoints["news"]
        #   3 x 900 subscriptions, each connection within its cap, held
        #   before any publisher connects: zqd passes them all upstream.
        subs = []
        for which in range(3):
            topics = [b"late%d.%05d." % (which, index) for index in range(900)]
            subs.append((subscriber(news_out, topics), topics[-1]))
        #   A publisher that is there once every subscription is in.
        for sub, last in subs:
            probe = publisher(news_in)
            flows(zqd, probe, sub, last)
            probe.close(0)
        pub = publisher(news_in)
        for sub, last in subs:
            flows(zqd, pub, sub, last)
            sub.close(0)
        pub.close(0)
        zqd.stop()
    finally:
        zqd.close()


def test_connection_that_keeps_sending_refused_subscriptions_is_closed():
    zqd, endpoints = start()
    try:
        news_in, news_out = endpoints["news"]
        sub = zmq.Context.instance().socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SNDHWM, 0)
        monitor = sub.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        sub.connect(news_out)
        for index in range(3 * MAX_SUBSCRIPTIONS):
            sub.setsockopt(zmq.SUBSCRIBE, b"flood.%d" % index)
        check(monitor.poll(int(hostile.DEADLINE_S * 1000)),
              "zqd kept a connection that sent %d subscriptions" % (3 * MAX_SUBSCRIPTIONS))
        event = zmq.utils.monitor.recv_monitor_message(monitor)
        check(event["event"] == zmq.EVENT_DISCONNECTED, "monitor said %r" % (event,))
        sub.disable_monitor()
        sub.close(0)
        monitor.close(0)
        #   zqd still forwards for others.
        pub = publisher(news_in)
        good = subscriber(news_out, [b"news.b"])
        flows(zqd, pub, good, b"news.b")
        for sock in (pub, good):
            sock.close(0)
        zqd.stop()
    finally:
        zqd.close()


def zmtp_connect(endpoint, socket_type):
    """A raw ZMTP 3.0 NULL connection to a tcp endpoint, as a peer of
    socket_type(bytes), past the handshake. Returns the socket."""
    host, port = endpoint[len("tcp://"):].rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=hostile.DEADLINE_S)
    greeting = b"\xff" + b"\0" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\0")
    greeting += b"\0" + b"\0" * 31
    raw.sendall(greeting)
    property_name = b"Socket-Type"
    body = b"\x05READY" + bytes([len(property_name)]) + property_name
    body += struct.pack(">I", len(socket_type)) + socket_type
    raw.sendall(b"\x04" + bytes([len(body)]) + body)
    #   The server's greeting(64 bytes) and its READY command.
    got = b""
    while len(got) < 64 + 2:
        chunk = raw.recv(4096)
        check(chunk, "the server closed during the handshake")
        got += chunk
    ready_size = got[65]
    while len(got) < 64 + 2 + ready_size:
        chunk = raw.recv(4096)
        check(chunk, "the server closed during the handshake")
        got += chunk
    return raw


def closed_by_peer(raw, timeout_s):
    """True if the peer closes raw within timeout_s(what it sends is read
    and dropped)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        raw.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not raw.recv(65536):
                return True
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
    return False


def raw_subscribe(raw, topics):
    """Sends each topic's subscription on the raw connection; returns False
    once zqd has closed it."""
    try:
        raw.sendall(b"".join(b"\x02" + struct.pack(">Q", 1 + len(topic)) + b"\x01" + topic
                             for topic in topics))
        return True
    except (BrokenPipeError, ConnectionResetError):
        return False


def test_subscription_bytes_of_a_connection_are_capped():
    #   A connection's share is 2400 / 8 = 300: two 100-byte prefixes (each
    #   costs its bytes and 8), not three.
    zqd, endpoints = start(CONFIG.replace("kind = forward\n",
                                          "kind = forward\n        max_subscription_bytes = 2400\n"))
    try:
        news_in, news_out = endpoints["news"]
        first = zmtp_connect(news_out, b"SUB")
        check(raw_subscribe(first, [b"a%d" % index + b"a" * 98 for index in range(2)]),
              "zqd closed a connection within the bound")
        second = zmtp_connect(news_out, b"SUB")
        raw_subscribe(second, [b"b%d" % index + b"b" * 98 for index in range(3)])
        check(closed_by_peer(second, 5.0), "zqd kept a connection past its share")
        second.close()
        check(not closed_by_peer(first, 0.2), "zqd closed a connection within its share")
        hostile.wait_until(lambda: "would cost more than max_subscription_bytes" in zqd.stderr(),
                           "zqd to log the closed connection")
        #   A subscriber within what is left is served.
        pub = publisher(news_in)
        good = subscriber(news_out, [b"news.c"])
        flows(zqd, pub, good, b"news.c")
        check(zqd.alive(), "zqd died: %s" % zqd.stderr())
        for sock in (pub, good):
            sock.close(0)
        first.close()
        zqd.stop()
    finally:
        zqd.close()


def test_many_connections_are_closed_past_the_bound():
    zqd, endpoints = start()
    try:
        news_in, news_out = endpoints["news"]
        before_kb = zqd.rss_kib()
        #   40 connections of 150 distinct 256-byte prefixes each: libzmq
        #   keeps about 10 KB of each, 1.5 MB a connection, without the
        #   bound (a connection's share, 32 KiB of the 256 KiB, fits 124).
        raws = []
        for which in range(40):
            raw = zmtp_connect(news_out, b"SUB")
            raw_subscribe(raw, [os.urandom(128).hex().encode() for _ in range(150)])
            raws.append(raw)
        #   Each passes its share and is closed. (zqd takes in 6,000
        #   256-byte prefixes and libzmq withdraws those of each connection
        #   closed: about 2 s in a plain build, over 20 s in a sanitizer
        #   build, whose allocator pays for each node of libzmq's topic tree,
        #   one per byte. Hence a longer deadline than the others.)
        deadline = time.monotonic() + 3 * hostile.DEADLINE_S
        open_raws = list(raws)
        while open_raws and time.monotonic() < deadline:
            open_raws = [raw for raw in open_raws if not closed_by_peer(raw, 0.01)]
        closed = len(raws) - len(open_raws)
        for raw in raws:
            raw.close()
        pub = publisher(news_in)
        good = subscriber(news_out, [b"news.d"])
        flows(zqd, pub, good, b"news.d")
        #   (zqd's size keeps the peak of what libzmq took in before the
        #   connections were closed: printed, not checked; test_pubsub checks
        #   what stays held.)
        print("RSS before %d kB, after %d kB; %d connections closed"
              % (before_kb, zqd.rss_kib(), closed))
        check(closed == 40, "only %d of 40 connections closed" % closed)
        hostile.wait_until(lambda: "would cost more than max_subscription_bytes" in zqd.stderr(),
                           "zqd to log the closed connections")
        check(zqd.alive(), "zqd died: %s" % zqd.stderr())
        for sock in (pub, good):
            sock.close(0)
        zqd.stop()
    finally:
        zqd.close()


def test_stream_out_closes_a_huge_frame():
    zqd, endpoints = start()
    try:
        raw = zmtp_connect(endpoints["jobs"][1], b"PULL")
        #   A frame header announcing 1 GiB, and its first bytes.
        raw.sendall(b"\x02" + struct.pack(">Q", 1 << 30) + b"\0" * 65536)
        check(closed_by_peer(raw, 5.0), "the stream's out kept a connection sending 1 GiB")
        raw.close()
        raw = zmtp_connect(endpoints["news"][1], b"SUB")
        raw.sendall(b"\x02" + struct.pack(">Q", 1 << 30) + b"\x01" + b"\0" * 65536)
        check(closed_by_peer(raw, 5.0), "the forward's out kept a connection sending 1 GiB")
        raw.close()
        check(zqd.alive(), "zqd died: %s" % zqd.stderr())
        zqd.stop()
    finally:
        zqd.close()


hostile.main(globals())
