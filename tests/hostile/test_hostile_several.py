#!/usr/bin/python3
#   Producers and consumers on two devices at once (zq put EP1,EP2 and
#   zq get EP1,EP2): puts spread over both, a device that stops answering
#   and is killed loses none of what was confirmed (the producer moves its
#   unconfirmed puts to the other), and a consumer takes from both and
#   acks each delivery to the device that made it.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
from hostile import check  # noqa: E402

ZQ = os.path.join(hostile.BUILDDIR, "src", "zq")


def gather(client, bodies, timeout_s):
    """Adds the bodies of the DELIVERs client receives within timeout_s
    (or until nothing came for the rest of it) to the dict bodies
    (body -> count); acks nothing."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = client.recv_command(max(0.0, deadline - time.monotonic()), skip=(hostile.PONG,
                                                                              hostile.PING))
        if got is None:
            return
        command, rest = got
        if command[1] == hostile.DELIVER:
            body = hostile.parse_envelope(rest[0])[1]
            if isinstance(body, bytes):
                body = body.decode()
            bodies[body] = bodies.get(body, 0) + 1


def gather_until(clients, want, got=None, timeout_s=hostile.DEADLINE_S):
    """Gathers from every client until the bodies in want all came, into
    got (a {body: count} per client, new ones if None); returns got;
    fails at the deadline."""
    got = got or [dict() for _ in clients]
    deadline = time.monotonic() + timeout_s
    while True:
        seen = set()
        for bodies in got:
            seen.update(bodies)
        if want <= seen:
            return got
        if time.monotonic() > deadline:
            raise hostile.Failure("%d of %d bodies delivered, missing e.g. %r" %
                                  (len(want & seen), len(want), sorted(want - seen)[:3]))
        for client, bodies in zip(clients, got):
            gather(client, bodies, 0.05)


def device():
    """A zqd on a port of its own (hostile.restartable_port), so that no
    other test's zqd takes it while this one is down (the producer would
    reach that one instead)."""
    port = hostile.restartable_port()
    return hostile.Zqd(args=["--bind", "tcp://127.0.0.1:%d" % port]).start()


def stopped(pid):
    """True once process pid is stopped (SIGSTOP took effect)."""
    with open("/proc/%d/stat" % pid) as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "T"


def test_put_spreads_and_moves_on_when_a_device_dies():
    a = device()
    b = device()
    put = None
    try:
        watch_a = hostile.Client(a.endpoint)
        watch_b = hostile.Client(b.endpoint)
        watch_a.consume("several", 1000)
        watch_b.consume("several", 1000)
        #  A confirm timeout far past the deadline: only noticing that the
        #  device stopped answering (its pings) can move its puts in time.
        put = subprocess.Popen([ZQ, "put", "-o", "ping_ivl_ms=200", "-o",
                                "confirm_timeout_ms=120000", a.endpoint + "," + b.endpoint,
                                "several", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        lines = ["m%04d" % n for n in range(300)]
        #  Each device stores some. The producer puts to the devices it is
        #  connected to, and b's handshake may end after a's: the lines go
        #  one at a time until both stored some, then the rest of 100.
        first = [dict(), dict()]
        sent = 0
        while sent < 100 and not (first[0] and first[1]):
            put.stdin.write(json.dumps(lines[sent]) + "\n")
            put.stdin.flush()
            sent += 1
            for client, bodies in zip([watch_a, watch_b], first):
                gather(client, bodies, 0.05)
        put.stdin.write("".join(json.dumps(line) + "\n" for line in lines[sent:100]))
        put.stdin.flush()
        print("  %d line(s) sent one at a time before both devices stored some" % sent)
        gather_until([watch_a, watch_b], set(lines[:100]), first)
        check(first[0] and first[1],
              "puts not spread: %d on one, %d on the other" % (len(first[0]), len(first[1])))
        #  Device a stops answering (its puts go unconfirmed), then dies.
        os.kill(a.process.pid, signal.SIGSTOP)
        hostile.wait_until(lambda: stopped(a.process.pid), "zqd to stop")
        put.stdin.write("".join(json.dumps(line) + "\n" for line in lines[100:200]))
        put.stdin.flush()
        a.kill()
        started = time.monotonic()
        try:
            out, err = put.communicate("".join(json.dumps(line) + "\n" for line in lines[200:]),
                                       timeout=20)
        except subprocess.TimeoutExpired:
            put.kill()
            out, err = put.communicate()
            raise hostile.Failure("zq put still waiting 20 s after the device died: %s" % err)
        print("  zq put finished %.1f s after the kill" % (time.monotonic() - started))
        check(put.returncode == 0, "zq put exited %d: %s" % (put.returncode, err))
        confirmed = {lines[int(number) - 1] for number in out.split()}
        check(len(confirmed) == 300, "%d of 300 lines confirmed" % len(confirmed))
        #  Every confirmed line is stored: on b, or on a once it is back
        #  (on its port).
        a.start()
        back_a = hostile.Client(a.endpoint)
        back_a.consume("several", 1000)
        #  (b's deliveries so far stay with watch_b.)
        got = [dict(), first[1]]
        try:
            gather_until([back_a, watch_b], confirmed, got)
        except hostile.Failure as failure:
            raise hostile.Failure("%s (%d on a, %d on b; a after its restart: %s; zq put: %s)" %
                                  (failure, len(got[0]), len(got[1]), a.stderr(), err))
        twice = sum(1 for line in confirmed if got[0].get(line, 0) + got[1].get(line, 0) > 1)
        print("  after the restart: %d on a, %d on b, %d stored twice" %
              (len(got[0]), len(got[1]), twice))
        for client in (watch_a, watch_b, back_a):
            client.close()
    finally:
        if put and put.poll() is None:
            put.kill()
            put.wait()
        a.close()
        b.close()


def test_get_takes_from_both_and_acks_to_each():
    a = hostile.Zqd().start()
    b = hostile.Zqd().start()
    try:
        client_a = hostile.Client(a.endpoint)
        client_b = hostile.Client(b.endpoint)
        client_a.put_confirmed("several", ["a%02d" % n for n in range(10)])
        client_b.put_confirmed("several", ["b%02d" % n for n in range(10)])
        get = subprocess.run([ZQ, "get", "-n", "20", "-t", "10000", a.endpoint + "," + b.endpoint,
                              "several"], capture_output=True, text=True, timeout=30)
        check(get.returncode == 0, "zq get exited %d: %s" % (get.returncode, get.stderr))
        bodies = sorted(json.loads(line) for line in get.stdout.splitlines())
        want = sorted(["a%02d" % n for n in range(10)] + ["b%02d" % n for n in range(10)])
        check(bodies == want, "zq get printed %r" % bodies)
        #  Every ack reached the device that delivered: a consumer of each
        #  finds nothing before a marker put after the get.
        for client in (client_a, client_b):
            client.put_confirmed("several", ["marker"])
            client.consume("several", 10)
            delivered = client.deliveries(1)
            check(delivered[0][2] == "marker", "left unacked: %r" % (delivered[0][2],))
            client.close()
    finally:
        a.close()
        b.close()


hostile.main(globals())
