#!/usr/bin/python3
#   Who may do what (doc/DEVICE.md, "Access"): a zqd with CURVE and an
#   access section of two tenants and an operator. A key no identity holds
#   and a client without CURVE fail the handshake and store nothing; a
#   tenant's PUT to the other tenant's queue gets REFUSE 11 with its id,
#   its CONSUME ERROR 11 (tenant A never reads tenantB.payroll); the admin
#   socket is CURVE too and admits only identities with an admin right,
#   each seeing and touching only its queues; a stream's and a forward's
#   sockets admit only keys with the right for that side. Each refusal is
#   logged with the identity.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import os
import subprocess
import sys
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
from hostile import check  # noqa: E402

CODE_DENIED = 11
ZQ = os.path.join(hostile.BUILDDIR, "src", "zq")


keypair = hostile.curve_keypair
write_cert = hostile.write_cert


class Setup:
    """Keys for the server, tenant A, tenant B, the operator (admin on
    tenantA.* only) and a stranger no identity holds; a running zqd."""

    def __init__(self):
        self.server = keypair()
        self.a = keypair()
        self.b = keypair()
        self.ops = keypair()
        self.stranger = keypair()
        self.zqd = hostile.Zqd(spool=True)
        os.makedirs(os.path.join(self.zqd.dir, "b-certs"))
        write_cert(os.path.join(self.zqd.dir, "server.cert"), *self.server)
        # Tenant B's key comes from a directory of certificates, A's inline.
        write_cert(os.path.join(self.zqd.dir, "b-certs", "b.cert"), *self.b)
        os.remove(os.path.join(self.zqd.dir, "b-certs", "b.cert_secret"))
        self.zqd.config = """device
    admin = tcp://127.0.0.1:*
    curve
        secret_cert = "%(dir)s/server.cert"
queues
    tenantA.events
        kind = stream
        in = tcp://127.0.0.1:*
        out = tcp://127.0.0.1:*
    tenantB.news
        kind = forward
        in = tcp://127.0.0.1:*
        out = tcp://127.0.0.1:*
access
    tenant_a
        keys = "%(a)s"
        put = "tenantA.*"
        consume = "tenantA.*"
    tenant_b
        certs = "%(dir)s/b-certs"
        put = "tenantB.*,shared"
        consume = "tenantB.*"
    ops
        keys = "%(ops)s"
        admin = "tenantA.*"
""" % {"dir": self.zqd.dir, "a": self.a[0], "ops": self.ops[0]}
        self.zqd.start()
        wait_for = hostile.wait_until(lambda: self.zqd.admin, "the admin endpoint line")
        self.admin = wait_for

    def options(self, pair):
        return hostile.curve_options(self.server[0], pair)

    def client(self, pair):
        return hostile.Client(self.zqd.endpoint, options=self.options(pair))

    def close(self):
        self.zqd.close()


def handshake(sock, endpoint, timeout_s=hostile.DEADLINE_S):
    """Connects sock to endpoint and returns "ok", "auth" (ZAP refused the
    client) or "protocol" (no common mechanism), whichever libzmq reports
    first."""
    monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED |
                                      zmq.EVENT_HANDSHAKE_FAILED_AUTH |
                                      zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                      zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
    try:
        sock.connect(endpoint)
        check(monitor.poll(int(timeout_s * 1000)), "no handshake event")
        event = monitor.recv_multipart()
        kind = int.from_bytes(event[0][:2], "little")
        return {zmq.EVENT_HANDSHAKE_SUCCEEDED: "ok",
                zmq.EVENT_HANDSHAKE_FAILED_AUTH: "auth"}.get(kind, "protocol")
    finally:
        sock.disable_monitor()
        monitor.close(0)


def raw_socket(setup, kind, pair):
    sock = zmq.Context.instance().socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    if pair is not None:
        for option, value in setup.options(pair):
            sock.setsockopt(option, value)
    return sock


def admin_request(setup, pair, *command):
    """One admin request over CURVE; returns the reply's frames."""
    def connect(sock, endpoint):
        check(handshake(sock, endpoint) == "ok", "admin handshake of an admin refused")

    reply = hostile.admin_request(setup.admin, *command, options=setup.options(pair),
                                  connect=connect)
    check(reply is not None, "no admin reply to %r" % (command,))
    return reply


def names_in(reply):
    return sorted(msgpack.unpackb(frame, raw=False)["name"] for frame in reply[1:])


def test_stranger_and_plain_clients_fail_the_handshake():
    setup = Setup()
    try:
        stranger = raw_socket(setup, zmq.DEALER, setup.stranger)
        check(handshake(stranger, setup.zqd.endpoint) == "auth",
              "a key no identity holds passed the handshake")
        try:
            # libzmq keeps no pipe for a refused peer: the PUT has nowhere
            # to go; if it ever had, the LS below would show its queue.
            stranger.send_multipart([msgpack.packb([1, hostile.PUT]),
                                     hostile.envelope("tenantA.jobs", b"x")[1]], zmq.NOBLOCK)
        except zmq.Again:
            pass
        stranger.close(0)
        plain = raw_socket(setup, zmq.DEALER, None)
        check(handshake(plain, setup.zqd.endpoint) != "ok", "a client without CURVE got in")
        plain.close(0)
        # Nothing was stored: the operator sees no tenantA.jobs.
        reply = admin_request(setup, setup.ops, "LS")
        check(reply[0] == b"OK" and "tenantA.jobs" not in names_in(reply),
              "a refused client's put left a queue: %r" % reply)
        hostile.wait_until(lambda: "refused a CURVE key no identity holds" in setup.zqd.stderr(),
                           "the stranger's log line")
        setup.zqd.stop()
    finally:
        setup.close()


def test_tenant_refused_on_the_other_tenants_queue():
    setup = Setup()
    try:
        b = setup.client(setup.b)
        b.put_confirmed("tenantB.payroll", [b"salary"])
        a = setup.client(setup.a)
        # The case: tenant A asks for tenant B's payroll.
        a.consume("tenantB.payroll", 10)
        got = a.recv_command()
        check(got is not None and got[0][1] == hostile.ERROR and got[0][2] == CODE_DENIED,
              "tenant A's CONSUME of tenantB.payroll got %r" % (got,))
        msg_id = a.put("tenantB.payroll", b"forged")
        answers = a.answers([msg_id])
        check(answers[msg_id][0] == "refuse" and answers[msg_id][1] == CODE_DENIED,
              "tenant A's PUT to tenantB.payroll got %r" % (answers,))
        # A's own queue works, and B's message is still B's alone.
        ids = a.put_confirmed("tenantA.jobs", [b"job"])
        a.consume("tenantA.jobs", 10)
        delivered = a.deliveries(1)
        check([d[0] for d in delivered] == ids and delivered[0][2] == b"job",
              "tenant A got %r" % (delivered,))
        a.ack(ids)
        # zq get with tenant A's key fails at once, saying why.
        cert = os.path.join(setup.zqd.dir, "a.cert")
        write_cert(cert, *setup.a)
        run = subprocess.run([ZQ, "get", "--timeout", "15000",
                              "-o", "curve_server_key=" + setup.server[0],
                              "-o", "curve_cert=" + cert, setup.zqd.endpoint, "tenantB.payroll"],
                             capture_output=True, text=True, timeout=hostile.DEADLINE_S)
        check(run.returncode not in (0, 2) and "Permission denied" in run.stderr
              and not run.stdout,
              "zq get of tenantB.payroll with A's key: %d %r %r" % (run.returncode, run.stdout,
                                                                    run.stderr))
        b.consume("tenantB.payroll", 10)
        check(b.deliveries(1)[0][2] == b"salary", "tenant B lost its payroll")
        hostile.wait_until(lambda: "tenant_a may not consume tenantB.payroll" in
                           setup.zqd.stderr(), "the refusal's log line")
        a.close()
        b.close()
        setup.zqd.stop()
    finally:
        setup.close()


def test_admin_socket_needs_an_admin_right():
    setup = Setup()
    try:
        a = setup.client(setup.a)
        a.put_confirmed("tenantA.jobs", [b"1"])
        b = setup.client(setup.b)
        b.put_confirmed("tenantB.payroll", [b"2"])
        # No admin right: the admin handshake fails; no key: no CURVE.
        sock = raw_socket(setup, zmq.REQ, setup.a)
        check(handshake(sock, setup.admin) == "auth", "tenant A passed the admin handshake")
        sock.close(0)
        sock = raw_socket(setup, zmq.REQ, None)
        check(handshake(sock, setup.admin) != "ok", "a client without CURVE reached admin")
        sock.close(0)
        # The operator sees and touches tenantA.* only.
        reply = admin_request(setup, setup.ops, "LS")
        check(reply[0] == b"OK" and names_in(reply) == ["tenantA.events", "tenantA.jobs"],
              "ops' LS: %r" % reply)
        reply = admin_request(setup, setup.ops, "PURGE", "tenantB.payroll")
        check(reply[0] == b"ERROR" and b"denied" in reply[1], "ops' PURGE of B: %r" % reply)
        reply = admin_request(setup, setup.ops, "PEEK", "tenantB.payroll")
        check(reply[0] == b"ERROR" and b"denied" in reply[1], "ops' PEEK of B: %r" % reply)
        # The command line, with zq put's key options.
        cert = os.path.join(setup.zqd.dir, "ops.cert")
        write_cert(cert, *setup.ops)
        run = subprocess.run([ZQ, "purge", setup.admin, "tenantA.jobs",
                              "-o", "curve_server_key=" + setup.server[0],
                              "-o", "curve_cert=" + cert],
                             capture_output=True, text=True, timeout=hostile.DEADLINE_S)
        check(run.returncode == 0 and "purged 1" in run.stdout,
              "zq purge with the operator's key: %d %r %r" % (run.returncode, run.stdout,
                                                              run.stderr))
        run = subprocess.run([ZQ, "stat", setup.admin, "tenantB.payroll", "--timeout", "3000",
                              "-o", "curve_server_key=" + setup.server[0],
                              "-o", "curve_cert=" + cert],
                             capture_output=True, text=True, timeout=hostile.DEADLINE_S)
        check(run.returncode == 5 and "denied" in run.stderr,
              "zq stat of B with the operator's key: %d %r" % (run.returncode, run.stderr))
        hostile.wait_until(lambda: "ops may not admin tenantB.payroll" in setup.zqd.stderr(),
                           "the admin refusal's log line")
        a.close()
        b.close()
        setup.zqd.stop()
    finally:
        setup.close()


def stream_endpoint(setup, name, side):
    """The bound endpoint of a stream's or forward's side, from zqd's line
    "zqd: KIND NAME in ENDPOINT out ENDPOINT"."""
    with open(setup.zqd.out_path) as out:
        for line in out:
            words = line.split()
            if len(words) == 7 and words[2] == name:
                return words[4] if side == "in" else words[6]
    return None


def test_stream_and_forward_admit_by_right():
    setup = Setup()
    try:
        events_in = hostile.wait_until(lambda: stream_endpoint(setup, "tenantA.events", "in"),
                                       "tenantA.events/in's line")
        events_out = stream_endpoint(setup, "tenantA.events", "out")
        news_out = stream_endpoint(setup, "tenantB.news", "out")
        # Tenant B may neither push into nor pull from tenant A's stream.
        push = raw_socket(setup, zmq.PUSH, setup.b)
        check(handshake(push, events_in) == "auth", "tenant B pushed into tenantA.events")
        push.close(0)
        pull = raw_socket(setup, zmq.PULL, setup.b)
        check(handshake(pull, events_out) == "auth", "tenant B pulled from tenantA.events")
        pull.close(0)
        # Tenant A may not subscribe to tenant B's forward.
        sub = raw_socket(setup, zmq.SUB, setup.a)
        check(handshake(sub, news_out) == "auth", "tenant A subscribed to tenantB.news")
        sub.close(0)
        # Tenant A's own stream carries its message.
        pull = raw_socket(setup, zmq.PULL, setup.a)
        check(handshake(pull, events_out) == "ok", "tenant A refused on its own stream's out")
        push = raw_socket(setup, zmq.PUSH, setup.a)
        check(handshake(push, events_in) == "ok", "tenant A refused on its own stream's in")
        _, frame = hostile.envelope("tenantA.events", b"event")
        push.send(frame)
        check(pull.poll(int(hostile.DEADLINE_S * 1000)), "tenant A's event never came out")
        check(hostile.parse_envelope(pull.recv_multipart()[0])[1] == b"event",
              "another event came out")
        push.close(0)
        pull.close(0)
        sub = raw_socket(setup, zmq.SUB, setup.b)
        check(handshake(sub, news_out) == "ok", "tenant B refused on its own forward")
        sub.close(0)
        hostile.wait_until(lambda: "tenant_b may not put tenantA.events" in setup.zqd.stderr(),
                           "the stream refusal's log line")
        setup.zqd.stop()
    finally:
        setup.close()


def test_anonymous_rights_without_curve():
    """Without CURVE, clients are the identity "anonymous": when the access
    section gives it rights, those are all it has."""
    zqd = hostile.Zqd(config="""device
    admin = tcp://127.0.0.1:*
access
    anonymous
        put = "public.*"
        consume = "public.*"
""")
    zqd.start()
    try:
        # No admin right: the admin handshake (NULL mechanism, ZAP) fails.
        admin = hostile.wait_until(lambda: zqd.admin, "the admin endpoint line")
        sock = zmq.Context.instance().socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        check(handshake(sock, admin) == "auth", "anonymous passed the admin handshake")
        sock.close(0)
        client = hostile.Client(zqd.endpoint)
        ids = client.put_confirmed("public.news", [b"hello"])
        msg_id = client.put("private.notes", b"secret")
        answers = client.answers([msg_id])
        check(answers[msg_id][0] == "refuse" and answers[msg_id][1] == CODE_DENIED,
              "anonymous PUT to private.notes got %r" % (answers,))
        client.consume("private.notes", 1)
        got = client.recv_command()
        check(got is not None and got[0][1] == hostile.ERROR and got[0][2] == CODE_DENIED,
              "anonymous CONSUME of private.notes got %r" % (got,))
        client.consume("public.news", 1)
        check([d[0] for d in client.deliveries(1)] == ids, "public.news not delivered")
        client.ack(ids)
        # Each right's refusals have their own log line: the admin
        # refusal logged first does not hide the PUT's within the interval.
        for line in ("anonymous may not admin", "anonymous may not put private.notes",
                     "anonymous may not consume private.notes"):
            try:
                hostile.wait_until(lambda: line in zqd.stderr(), "the log line '%s'" % line)
            except hostile.Failure as failure:
                raise hostile.Failure("%s; zqd said: %s" % (failure, zqd.stderr()[-3000:]))
        client.close()
        zqd.stop()
    finally:
        zqd.close()


hostile.main(globals())
