#!/usr/bin/python3
#   zq rpc interop peer, written from doc/PROTOCOL.md (sections 8, 11 and 17)
#   with pyzmq and msgpack-python only.
#
#   rpc_peer.py RPC_PROC TRANSPORT      (TRANSPORT: tcp or ipc)
#
#   1. A Python client (DEALER) against a zq server (RPC_PROC server):
#      many requests in flight, one large enough for the two-frame form,
#      and malformed ones the server must skip; every reply must name its
#      request and echo its body.
#   2. A zq client (RPC_PROC client) against a Python server (ROUTER): the
#      server checks each request's frames, answers them in reverse order,
#      and also sends a duplicate reply and a reply to an unknown id, which
#      the client must drop.
#   3. A zq client against two Python servers, one of which closes its
#      socket holding requests it never answered: the client must send
#      them again to the other at once, as further attempts of the same
#      ids, well before their request timeout (2 s), section 17.3 and 17.5.
#   4. The compact form (section 17.7): the Python client sends compact
#      requests, good and malformed, once the zq server's classic replies
#      said it takes them, and gets compact replies (classic for a large
#      body); a zq client sending one request at a time sends compact
#      requests to a Python server whose replies say it takes them, and
#      only classic ones to one whose replies do not.
#   Every wait has a deadline. Exits 0 on pass, 1 on failure.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.

import os
import select
import subprocess
import sys
import tempfile
import time

import msgpack
import zmq

from peer_checks import Failure, check, decode_envelope

DEADLINE_S = 60
COUNT = 50


#  ---- Envelope (sections 6, 8, 11) ------------------------------------------

_sequence = 0
_random = os.urandom(8)


def new_id():
    """16 octets: 48-bit ms time, 16-bit sequence, 64 random bits (11.1)."""
    global _sequence
    _sequence = (_sequence + 1) & 0xFFFF
    now_ms = int(time.time() * 1000)
    return now_ms.to_bytes(6, "big") + _sequence.to_bytes(2, "big") + _random


def encode(msg_id, subject, attempt, headers, body_obj):
    header = msgpack.packb([1, msg_id, subject, int(time.time() * 1000), attempt, headers])
    body = msgpack.packb(body_obj)
    if len(body) >= 8192:
        return [header, body]
    return [header + body]


def decode(frames):
    """Returns (header list, body object) of an envelope, checked strictly."""
    return decode_envelope(frames)


def split_compact(frame):
    """Returns (rpc frame list, envelope frames) of a compact frame (17.7)."""
    unpacker = msgpack.Unpacker()
    unpacker.feed(frame)
    rpc = unpacker.unpack()
    return rpc, [frame[unpacker.tell():]]


#  ---- Starting the zq side ----------------------------------------------------


def start(argv):
    """Starts the zq side; make memcheck runs it under valgrind."""
    wrapper = os.environ.get("ZQ_VALGRIND", "").split()
    return subprocess.Popen(wrapper + argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def read_line(proc, deadline):
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        check(left > 0, "no line from rpc_proc in time")
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 1)
            check(chunk, "rpc_proc ended early (exit %r)" % (proc.poll(),))
            line += chunk
    return line.decode().strip()


def finish(proc, deadline):
    try:
        return proc.wait(max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise Failure("rpc_proc did not exit in time")


def serve_client(client, router, deadline, serve):
    """Runs serve() as the server of the zq client process, then waits for
    the client to exit; kills it and closes router whatever happens.
    Returns the client's exit status and its output."""
    try:
        serve()
        status = finish(client, deadline)
        return status, client.stdout.read().decode().strip()
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        router.close()


def recv_multipart(sock, deadline):
    left_ms = int((deadline - time.monotonic()) * 1000)
    check(left_ms > 0 and sock.poll(left_ms), "nothing received in time")
    return sock.recv_multipart()


#  ---- 1. Python client, zq server --------------------------------------------


def python_client(context, rpc_proc, bind, deadline):
    server = start([rpc_proc, "server", bind])
    try:
        line = read_line(server, deadline)
        check(line.startswith("ready "), "server said %r" % line)
        endpoint = line[len("ready "):]
        dealer = context.socket(zmq.DEALER)
        dealer.linger = 0
        dealer.connect(endpoint)

        #  Malformed requests first: the server must skip each of them.
        good = encode(new_id(), "x", 0, {}, None)
        dealer.send_multipart([b"no delimiter"])
        dealer.send_multipart([b"", msgpack.packb([2, 0])] + good)  # rpc version 2
        dealer.send_multipart([b"", msgpack.packb([1, 1, new_id()])] + good)  # a reply
        dealer.send_multipart([b"", msgpack.packb([1, 0])])  # no envelope
        dealer.send_multipart([b"", msgpack.packb([1, 0]), b"\x96\x01"])  # broken envelope

        sent = {}
        for n in range(COUNT):
            msg_id = new_id()
            body = {"n": n, "pad": "x" * (10000 if n == 7 else 10)}
            frames = encode(msg_id, "py.req.%d" % n, 0, {"trace": "t-%d" % n}, body)
            #  Extension elements in the rpc frame are skipped (17.1).
            rpc = [1, 0] if n % 2 else [1, 0, "ext", {"k": [1, 2]}]
            dealer.send_multipart([b"", msgpack.packb(rpc)] + frames)
            sent[msg_id] = (n, body)
        check(len(sent) == COUNT, "ids not unique")

        answered = set()
        while len(answered) < COUNT:
            frames = recv_multipart(dealer, deadline)
            check(len(frames) >= 3, "reply of %d frames" % len(frames))
            check(frames[0] == b"", "reply without an empty delimiter first")
            rpc = msgpack.unpackb(frames[1])
            check(isinstance(rpc, list) and len(rpc) >= 3, "reply frame %r" % (rpc,))
            check(rpc[0] == 1 and rpc[1] == 1, "reply frame version/kind %r" % (rpc[:2],))
            request_id = rpc[2]
            check(request_id in sent, "reply to an id never sent")
            check(request_id not in answered, "two replies to one request")
            answered.add(request_id)
            check(len(rpc) == 4 and rpc[3] == 1, "classic reply without takes-compact %r" % (rpc,))
            header, body = decode(frames[2:])
            n, request_body = sent[request_id]
            check(header[1] != request_id, "reply reuses the request's envelope id")
            check(header[2] == "py.req.%d" % n, "reply subject %r" % header[2])
            check(header[5].get("pid") == str(server.pid), "reply headers %r" % header[5])
            check(body == request_body, "reply body differs from the echoed request")
            if n == 7:
                check(len(frames) == 4, "large reply not in the two-frame form")
        #  A reply to any malformed request, sent before the good ones on
        #  the same connection, would have come first and failed the checks.
        compact_client(dealer, server.pid, deadline)
        dealer.close()
    finally:
        server.stdin.close()
    status = finish(server, deadline)
    check(status == 0, "zq server exited %d" % status)
    print("python client -> zq server: %d requests answered" % COUNT)


def compact_client(dealer, server_pid, deadline):
    """4. Compact requests to a zq server that said it takes them."""
    good = encode(new_id(), "x", 0, {}, None)[0]
    dealer.send(msgpack.packb([1, 0]))  # no envelope
    dealer.send(msgpack.packb([2, 0]) + good)  # rpc version 2
    dealer.send(msgpack.packb([1, 1, new_id()]) + good)  # a reply
    dealer.send(msgpack.packb([1, 0]) + b"\x96\x01")  # broken envelope
    dealer.send(msgpack.packb([1, 0]) + good + b"\xc0")  # trailing octet
    dealer.send_multipart([b"r"] * 8 + [msgpack.packb([1, 0]) + good])  # 9 routing frames
    sent = {}
    for n in range(COUNT):
        msg_id = new_id()
        body = {"n": n, "pad": "x" * (10000 if n == 9 else 10)}
        frames = [b"r"] * (n % 8) + [msgpack.packb([1, 0]) + b"".join(
            [msgpack.packb([1, msg_id, "py.c.%d" % n, 0, 0, {}]), msgpack.packb(body)])]
        dealer.send_multipart(frames)  # 0 to 7 routing frames of our own
        sent[msg_id] = (n, body)
    answered = set()
    while len(answered) < COUNT:
        frames = recv_multipart(dealer, deadline)
        hops = 0
        while frames[hops] == b"r":
            hops += 1
        frames = frames[hops:]
        if frames[0] == b"":
            rpc, envelope = msgpack.unpackb(frames[1]), frames[2:]
            check(len(rpc) == 4 and rpc[3] == 1, "classic reply %r" % (rpc,))
        else:
            check(len(frames) == 1, "compact reply of %d frames" % len(frames))
            rpc, envelope = split_compact(frames[0])
            check(len(rpc) == 3, "compact reply frame %r" % (rpc,))
        check(rpc[0] == 1 and rpc[1] == 1, "reply frame version/kind %r" % (rpc[:2],))
        request_id = rpc[2]
        check(request_id in sent and request_id not in answered, "reply to %r" % request_id)
        answered.add(request_id)
        n, request_body = sent[request_id]
        check(hops == n % 8, "reply to %d with %d routing frames" % (n, hops))
        header, body = decode(envelope)
        check(body == request_body and header[5].get("pid") == str(server_pid),
              "compact reply %d: %r %r" % (n, header, body))
        large = n == 9
        check((frames[0] == b"") == large, "reply %d in the %s form" % (
            n, "compact" if frames[0] != b"" else "classic"))
        if large:
            check(len(envelope) == 2, "large reply not in the two-frame form")
    print("python client -> zq server: %d compact requests answered" % COUNT)


#  ---- 2. zq client, Python server --------------------------------------------


def python_server(context, rpc_proc, endpoint, deadline):
    router = context.socket(zmq.ROUTER)
    router.linger = 0
    if endpoint.startswith("tcp://"):
        port = router.bind_to_random_port("tcp://127.0.0.1")
        endpoint = "tcp://127.0.0.1:%d" % port
    else:
        router.bind(endpoint)
    client = start([rpc_proc, "client", ">" + endpoint, str(COUNT)])

    def serve():
        requests = []
        seen = set()
        while len(requests) < COUNT:
            frames = recv_multipart(router, deadline)
            check(len(frames) in (4, 5), "request of %d frames" % len(frames))
            cut = frames.index(b"")
            check(cut == 1, "%d routing frames" % cut)
            route = frames[:cut]
            check(msgpack.unpackb(frames[cut + 1]) == [1, 0], "request frame")
            header, body = decode(frames[cut + 2:])
            check(header[4] == 0, "first attempt with attempt %r" % header[4])
            check(header[1] not in seen, "one request id twice")
            seen.add(header[1])
            check(isinstance(body, dict) and body.get("n") == len(requests), "body %r" % body)
            requests.append((route, header, body))

        def reply(route, request_id, subject, body):
            frames = encode(new_id(), subject, 0, {"server": "python"}, body)
            router.send_multipart(route + [b"", msgpack.packb([1, 1, request_id])] + frames)

        for index, (route, header, body) in enumerate(reversed(requests)):
            reply(route, header[1], header[2], body)
            if index == 0:
                reply(route, header[1], header[2], body)  # a duplicate
                reply(route, b"\xab" * 16, "stray", body)  # an id never sent

    status, output = serve_client(client, router, deadline, serve)
    check(status == 0, "zq client exited %d" % status)
    fields = output.split()
    check(len(fields) == 4 and fields[0] == "ok" and fields[1] == str(COUNT),
          "zq client said %r" % output)
    check(fields[3] == "2", "zq client dropped %s replies, not 2" % fields[3])
    print("zq client -> python server: %d requests answered, 2 replies dropped" % COUNT)


def python_server_serial(context, rpc_proc, endpoint, deadline, takes):
    """4. A zq client sending one request at a time to a Python server that
    says in its classic replies that it takes compact requests (takes) or
    does not: counts the requests in each form."""
    router = context.socket(zmq.ROUTER)
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")
    client = start([rpc_proc, "serial", ">tcp://127.0.0.1:%d" % port, str(COUNT)])
    forms = []

    def serve():
        for n in range(COUNT):
            frames = recv_multipart(router, deadline)
            route = frames[:1]
            if frames[1] == b"":
                check(len(frames) == 4 and msgpack.unpackb(frames[2]) == [1, 0],
                      "classic request %d" % n)
                forms.append("classic")
                header, body = decode(frames[3:])
            else:
                check(len(frames) == 2, "compact request of %d frames" % len(frames))
                rpc, envelope = split_compact(frames[1])
                check(rpc == [1, 0], "compact request frame %r" % (rpc,))
                forms.append("compact")
                header, body = decode(envelope)
            check(body == {"n": n}, "request %d: body %r" % (n, body))
            reply = encode(new_id(), header[2], 0, {}, body)[0]
            if forms[-1] == "compact":
                router.send_multipart(route + [msgpack.packb([1, 1, header[1]]) + reply])
            else:
                rpc = [1, 1, header[1]] + ([1] if takes else [])
                router.send_multipart(route + [b"", msgpack.packb(rpc), reply])

    status, output = serve_client(client, router, deadline, serve)
    check(status == 0, "zq client exited %d" % status)
    check(output.startswith("ok %d " % COUNT), "zq client said %r" % output)
    expected = ["classic"] + ["compact" if takes else "classic"] * (COUNT - 1)
    check(forms == expected, "request forms %r" % forms)
    print("zq client -> python server %s compact: %d classic, %d compact" % (
        "taking" if takes else "not taking", forms.count("classic"), forms.count("compact")))


#  ---- 3. zq client, two Python servers, one lost -------------------------------

#  The client's request timeout (rpc_proc client) is 2 s: its failover must
#  come well before.
FAILOVER_BOUND_S = 1.0


def python_servers_one_lost(context, rpc_proc, transport, workdir, deadline):
    routers, endpoints = [], []
    for index in range(2):
        router = context.socket(zmq.ROUTER)
        router.linger = 0
        if transport == "tcp":
            port = router.bind_to_random_port("tcp://127.0.0.1")
            endpoints.append("tcp://127.0.0.1:%d" % port)
        else:
            endpoints.append("ipc://%s/server%d.ipc" % (workdir, index))
            router.bind(endpoints[-1])
        routers.append(router)
    lost, survivor = routers
    client = start([rpc_proc, "client", ",".join(">" + e for e in endpoints), str(COUNT)])
    held, resent, closed_at = set(), set(), None
    try:
        poller = zmq.Poller()
        poller.register(lost, zmq.POLLIN)
        poller.register(survivor, zmq.POLLIN)
        while client.poll() is None:
            check(time.monotonic() < deadline, "zq client did not finish in time")
            events = dict(poller.poll(20))
            if closed_at is None and lost in events:
                frames = lost.recv_multipart()
                header, _ = decode(frames[3:])
                held.add(header[1])
                #  The first request it gets, it keeps unanswered, and dies.
                poller.unregister(lost)
                lost.close()
                closed_at = time.monotonic()
            if survivor in events:
                frames = survivor.recv_multipart()
                cut = frames.index(b"")
                route = frames[:cut]
                header, body = decode(frames[cut + 2:])
                if header[1] in held:
                    check(header[4] >= 1, "a request sent again with attempt %r" % header[4])
                    resent.add(header[1])
                reply = encode(new_id(), header[2], 0, {}, body)
                survivor.send_multipart(route + [b"", msgpack.packb([1, 1, header[1]])] + reply)
        finished_at = time.monotonic()
        status = client.wait()
        output = client.stdout.read().decode().strip()
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        for router in routers:
            router.close()
    check(status == 0, "zq client exited %d" % status)
    check(closed_at is not None, "the lost server got no request")
    check(resent == held, "requests the lost server held were not sent again")
    took = finished_at - closed_at
    check(took < FAILOVER_BOUND_S,
          "the zq client took %.2f s after the server was lost (bound %.1f s)"
          % (took, FAILOVER_BOUND_S))
    print("zq client -> two python servers, one lost: all answered %.0f ms after the loss (%s)"
          % (took * 1000, output))


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in ("tcp", "ipc"):
        print("usage: rpc_peer.py RPC_PROC tcp|ipc", file=sys.stderr)
        return 2
    rpc_proc, transport = sys.argv[1], sys.argv[2]
    deadline = time.monotonic() + DEADLINE_S
    context = zmq.Context()
    workdir = None
    try:
        if transport == "tcp":
            bind, endpoint = "@tcp://127.0.0.1:*", "tcp://127.0.0.1:0"
        else:
            workdir = tempfile.mkdtemp(prefix="zq-rpc-", dir=os.environ.get("IPC_DIR"))
            bind = "@ipc://%s/server.ipc" % workdir
            endpoint = "ipc://%s/python.ipc" % workdir
        python_client(context, rpc_proc, bind, deadline)
        python_server(context, rpc_proc, endpoint, deadline)
        if workdir is None:
            workdir = tempfile.mkdtemp(prefix="zq-rpc-", dir=os.environ.get("IPC_DIR"))
        python_servers_one_lost(context, rpc_proc, transport, workdir, deadline)
        if transport == "tcp":
            python_server_serial(context, rpc_proc, endpoint, deadline, True)
            python_server_serial(context, rpc_proc, endpoint, deadline, False)
    except Failure as failure:
        print("rpc_peer (%s): FAIL: %s" % (transport, failure), file=sys.stderr)
        return 1
    finally:
        context.term()
        if workdir:
            for name in os.listdir(workdir):
                os.unlink(os.path.join(workdir, name))
            os.rmdir(workdir)
    print("rpc_peer (%s): PASS" % transport)
    return 0


if __name__ == "__main__":
    sys.exit(main())
