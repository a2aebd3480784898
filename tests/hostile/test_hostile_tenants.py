#!/usr/bin/python3
#   One tenant against another on a shared zqd (doc/DEVICE.md, "Access"
#   and "Queues clients make"): a tenant that names queue after queue
#   spends only its own share of the queues clients may make, so the other
#   tenant can still make its first; an operator whose admin right covers
#   one tenant learns from INFO only how many of that tenant's queues
#   exist, not the other's; an access section whose identities hold keys
#   is refused without device/curve, where no client has a key and every
#   client would have every right; a key listed twice is called that;
#   a PUT refused under the disk watermark makes no queue.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import os
import subprocess
import sys

import msgpack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
from hostile import check  # noqa: E402

#   max_auto_queues_per_identity's default (doc/DEVICE.md).
SHARE = 64


keypair = hostile.curve_keypair


class Tenants:
    """A CURVE zqd (queues in memory) with tenants A and B and an operator
    whose admin right covers tenantA.* only."""

    def __init__(self, args=()):
        self.server = keypair()
        self.a = keypair()
        self.b = keypair()
        self.ops = keypair()
        self.zqd = hostile.Zqd(args=list(args), spool=False)
        cert = os.path.join(self.zqd.dir, "server.cert")
        hostile.write_cert(cert, *self.server)
        self.zqd.config = """device
    admin = tcp://127.0.0.1:*
    curve
        secret_cert = "%s"
access
    tenant_a
        keys = "%s"
        put = "tenantA.*"
        consume = "tenantA.*"
    tenant_b
        keys = "%s"
        put = "tenantB.*"
        consume = "tenantB.*"
    ops
        keys = "%s"
        admin = "tenantA.*"
""" % (cert, self.a[0], self.b[0], self.ops[0])
        self.zqd.start()
        self.admin = hostile.wait_until(lambda: self.zqd.admin, "the admin endpoint line")

    def options(self, pair):
        return hostile.curve_options(self.server[0], pair)

    def client(self, pair):
        return hostile.Client(self.zqd.endpoint, options=self.options(pair))

    def admin_request(self, pair, *command):
        reply = hostile.admin_request(self.admin, *command, options=self.options(pair))
        check(reply is not None, "no admin reply to %r" % (command,))
        return reply

    def close(self):
        self.zqd.close()


def put_each(client, names):
    """One PUT to each name; returns the answers in the order of names."""
    ids = [client.put(name, b"x") for name in names]
    answers = client.answers(ids)
    return [answers[msg_id] for msg_id in ids]


def test_one_tenant_cannot_spend_every_auto_queue():
    tenants = Tenants(args=["-o", "max_attempts=0"])
    try:
        a = tenants.client(tenants.a)
        # Tenant A names more queues than max_auto_queues (256) allows.
        answers = put_each(a, ["tenantA.q%d" % i for i in range(300)])
        made = sum(1 for answer in answers if answer == ("confirm",))
        refused = [answer for answer in answers if answer[0] == "refuse"]
        print("tenant A: %d queues made, %d refused" % (made, len(refused)))
        # Tenant B still makes its queues, and A's first ones still work.
        b = tenants.client(tenants.b)
        got = put_each(b, ["tenantB.first", "tenantB.second"])
        print("tenant B after A's flood: %r" % (got,))
        check(got == [("confirm",), ("confirm",)], "tenant B was refused: %r" % (got,))
        check(made == SHARE, "tenant A made %d queues, not its share of %d" % (made, SHARE))
        check(all(answer[1] == hostile.CODE_LIMIT for answer in refused),
              "tenant A's refusals: %r" % (refused[:3],))
        check(put_each(a, ["tenantA.q0"]) == [("confirm",)], "tenant A's own queue refused")
        # A CONSUME makes queues too: past the share it is refused alike.
        a.consume("tenantA.consumed", 1)
        got = a.recv_command(skip=(hostile.PONG, hostile.PING))
        check(got is not None and got[0][1] == hostile.ERROR and got[0][2] == hostile.CODE_LIMIT,
              "tenant A's CONSUME of a new name past its share got %r" % (got,))
        hostile.wait_until(lambda: "tenant_a" in tenants.zqd.stderr() and
                           "max_auto_queues_per_identity" in tenants.zqd.stderr(),
                           "the share's log line naming tenant_a")
        # A DELETE gives tenant A a place back.
        reply = tenants.admin_request(tenants.ops, "DELETE", "tenantA.q1", "FORCE")
        check(reply[0] == b"OK", "ops' DELETE: %r" % (reply,))
        check(put_each(a, ["tenantA.new"]) == [("confirm",)], "the freed place was not A's")
        check(put_each(a, ["tenantA.newer"])[0][0] == "refuse", "tenant A passed its share")
        a.close()
        b.close()
        tenants.zqd.stop()
    finally:
        tenants.close()


def test_info_counts_only_the_operators_queues():
    tenants = Tenants()
    try:
        put_each(tenants.client(tenants.a), ["tenantA.jobs"])
        put_each(tenants.client(tenants.b), ["tenantB.payroll", "tenantB.audit"])
        reply = tenants.admin_request(tenants.ops, "INFO")
        check(reply[0] == b"OK", "INFO: %r" % (reply,))
        info = msgpack.unpackb(reply[1], raw=False)
        print("INFO queues seen by an operator of tenantA.*: %r" % (info["queues"],))
        check(info["queues"] == 1, "INFO told ops of %r queues, it may see 1" % (info["queues"],))
        tenants.zqd.stop()
    finally:
        tenants.close()


def test_keys_without_curve_are_refused():
    # The operator wrote tenants' keys and rights but forgot device/curve:
    # no client would have a key, so each would be "anonymous" with every
    # right. zqd must not start on it.
    config = os.path.join(hostile.BUILDDIR, "tests", "tenants-no-curve.cfg")
    with open(config, "w") as out:
        out.write("""device
    bind = tcp://127.0.0.1:*
access
    tenant_a
        keys = "%s"
        put = "tenantA.*"
""" % keypair()[0])
    try:
        run = subprocess.run([hostile.ZQD, "--check", "-c", config], capture_output=True,
                             text=True, timeout=hostile.DEADLINE_S)
        print("zqd --check: exit %d %r" % (run.returncode, run.stdout + run.stderr))
        check(run.returncode == 2 and "device/curve" in run.stderr and "tenant_a" in run.stderr,
              "an access section with keys and no CURVE was taken")
    finally:
        os.remove(config)


def test_no_queue_made_under_the_watermark():
    # device/min_free_bytes above any disk's free space: every PUT of a new
    # message is refused with code 12. A PUT to a name that does not exist
    # must not make the queue either (a directory and files on a full
    # disk, and a place of the identity's share).
    zqd = hostile.Zqd(config="device\n    min_free_bytes = %d\n" % (1 << 62), spool=True)
    try:
        zqd.start()
        client = hostile.Client(zqd.endpoint)
        got = put_each(client, ["fresh.q%d" % i for i in range(3)])
        check(all(answer[0] == "refuse" and answer[1] == 12 for answer in got),
              "PUTs under the watermark: %r" % (got,))
        reply = hostile.admin_request(
            hostile.wait_until(lambda: zqd.admin, "the admin endpoint line"), "LS")
        check(reply is not None, "no answer to LS")
        listed = sorted(msgpack.unpackb(frame, raw=False)["name"] for frame in reply[1:])
        made = sorted(name for _, dirs, _ in os.walk(zqd.spool) for name in dirs
                      if "fresh." in name)
        print("under the watermark: listed %r, directories %r" % (listed, made))
        check(reply[0] == b"OK" and listed == [] and made == [],
              "refused PUTs made queues: %r %r" % (listed, made))
        client.close()
        zqd.stop()
    finally:
        zqd.close()


def check_config(text):
    """zqd --check on text; returns (exit status, stderr)."""
    config = os.path.join(hostile.BUILDDIR, "tests", "tenants-check.cfg")
    with open(config, "w") as out:
        out.write(text)
    try:
        run = subprocess.run([hostile.ZQD, "--check", "-c", config], capture_output=True,
                             text=True, timeout=hostile.DEADLINE_S)
        return run.returncode, run.stderr
    finally:
        os.remove(config)


def test_a_key_listed_twice_says_so():
    # The same key twice in one identity, then in two identities: the
    # operator is told which mistake it is.
    key = keypair()[0]
    head = """device
    bind = tcp://127.0.0.1:*
    curve
        secret_cert = "%s"
access
""" % os.path.join(hostile.BUILDDIR, "tests", "no-such.cert")
    status, text = check_config(head + """    tenant_a
        keys = "%s,%s"
""" % (key, key))
    print("one identity: exit %d %r" % (status, text))
    check(status == 2 and "tenant_a" in text and "twice" in text,
          "a key twice in one identity: %d %r" % (status, text))
    status, text = check_config(head + """    tenant_a
        keys = "%s"
    tenant_b
        keys = "%s"
""" % (key, key))
    print("two identities: exit %d %r" % (status, text))
    check(status == 2 and "tenant_a" in text and "tenant_b" in text,
          "a key in two identities: %d %r" % (status, text))


hostile.main(globals())
