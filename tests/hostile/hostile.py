#   What zq's hostile-client tests share: a zqd they start and stop, and a
#   raw client that speaks the reliable protocol from doc/PROTOCOL.md with
#   pyzmq and msgpack-python only, so it can send what zq's own library
#   never would. Every wait has a deadline.
#
#   A test file imports this module, defines functions named test_*, and
#   ends with `hostile.main(globals())`, which runs each in order and
#   exits 0 only if all passed. ZQ_BUILDDIR(set by make check) locates
#   src/zqd.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

import msgpack
import zmq

DEADLINE_S = 20.0
(PUT, CONFIRM, REFUSE, CONSUME, CANCEL, DELIVER, ACK, NACK, TOUCH, PING, PONG, ERROR,
 LEAVE) = range(1, 14)
(CODE_FULL, CODE_INVALID, CODE_FAILED, CODE_PROTOCOL, CODE_VERSION, CODE_UNKNOWN, CODE_NOT_HELD,
 CODE_CONFLICT, CODE_LIMIT, CODE_BUSY) = range(1, 11)

BUILDDIR = os.environ.get("ZQ_BUILDDIR", os.getcwd())
ZQD = os.path.join(BUILDDIR, "src", "zqd")


class Failure(Exception):
    pass


def check(condition, text):
    """Fails the running test with text unless condition holds."""
    if not condition:
        raise Failure(text)


_PORTS_HANDED_OUT = set()


def restartable_port():
    """A free tcp port on 127.0.0.1 below the kernel's ephemeral range
    (ip_local_port_range) and below 49152, where a "*" bind never looks
    (zq hands those out at random from 49152 up, CZMQ from 49152 up): no
    outgoing connection and no other test's "*" bind takes it between this
    probe and the server's bind, or while that server is down. A port is
    handed out once per process: servers started together (a cluster's
    client, route and monitor ports) never get the same one."""
    low = 32768
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            low = int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    top = min(low, 49152)
    for _ in range(100):
        port = random.randrange(10000, top)
        if port in _PORTS_HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _PORTS_HANDED_OUT.add(port)
        return port
    raise Failure("no free port between 10000 and %d in 100 tries" % top)


def wait_until(predicate, what, timeout_s=DEADLINE_S, step_s=0.02):
    """Calls predicate until it returns a true value(returned), or fails
    with what after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failure("timed out waiting for %s" % what)
        time.sleep(step_s)


def zqd_environment():
    """The environment zqd runs in. Tests measure zqd's resident memory; in
    a sanitizer build, AddressSanitizer keeps freed blocks in a quarantine
    (256 MiB by default) that would count as zqd's, so it is kept small.
    Without ASan the variable is ignored."""
    env = dict(os.environ)
    options = env.get("ASAN_OPTIONS", "")
    env["ASAN_OPTIONS"] = (options + ":" if options else "") + "quarantine_size_mb=1"
    return env


class Zqd:
    """A zqd process in a private directory. args: extra command-line
    arguments; config: the text of a config file(ZPL) or None;
    spool: True for a spool directory inside the private one; env: more
    environment variables for zqd (a dict), or None."""

    def __init__(self, args=(), config=None, spool=True, preexec_fn=None, env=None):
        self.dir = tempfile.mkdtemp(prefix="zq-hostile.")
        self.args = list(args)
        self.env = dict(env or {})
        self.config = config
        self.spool = os.path.join(self.dir, "spool") if spool else None
        self.preexec_fn = preexec_fn
        self.process = None
        self.endpoint = None
        self.admin = None
        self.http = None  # HOST:PORT of the HTTP server(zqd --http), if any
        self.starts = 0

    def command(self):
        command = [ZQD, "--bind", "tcp://127.0.0.1:*"]
        if self.spool:
            command += ["--spool", self.spool]
        if self.config is not None:
            path = os.path.join(self.dir, "zqd.cfg")
            with open(path, "w") as file:
                file.write(self.config)
            command += ["--config", path]
        return command + self.args

    def start(self, expect_listening=True):
        """Starts zqd; waits for its "listening" line(or, when
        expect_listening is False, only launches it). Returns self."""
        self.starts += 1
        self.out_path = os.path.join(self.dir, "zqd.%d.out" % self.starts)
        self.err_path = os.path.join(self.dir, "zqd.%d.err" % self.starts)
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            env = zqd_environment()
            env.update(self.env)
            self.process = subprocess.Popen(self.command(), stdout=out, stderr=err,
                                            preexec_fn=self.preexec_fn, env=env)
        if expect_listening:
            self.endpoint = wait_until(self._listening, "zqd to listen")
        return self

    def _listening(self):
        if self.process.poll() is not None:
            raise Failure("zqd exited %d: %s" % (self.process.returncode, self.stderr()))
        endpoint = None
        with open(self.out_path) as out:
            for line in out:
                if line.startswith("zqd: listening on "):
                    endpoint = line.split("zqd: listening on ", 1)[1].strip()
                elif line.startswith("zqd: admin on "):
                    self.admin = line.split("zqd: admin on ", 1)[1].strip()
                elif line.startswith("zqd: http on "):
                    self.http = line.split("zqd: http on ", 1)[1].strip()
        return endpoint

    def stderr(self):
        """All zqd has written to stderr in its current run."""
        with open(self.err_path) as err:
            return err.read()

    def rss_kib(self):
        """zqd's resident memory now (VmRSS), in KiB."""
        with open("/proc/%d/status" % self.process.pid) as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise Failure("no VmRSS for zqd")

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def stop(self, expect_status=0):
        """SIGTERM, then waits(bounded) for the exit; checks its status."""
        if not self.alive():
            status = self.process.returncode
        else:
            self.process.send_signal(signal.SIGTERM)
            try:
                status = self.process.wait(DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                raise Failure("zqd did not stop on SIGTERM")
        check(status == expect_status,
               "zqd exited %s, expected %s: %s" % (status, expect_status, self.stderr()))
        return status

    def kill(self):
        """kill -9, as a crash would."""
        if self.alive():
            self.process.kill()
            self.process.wait(DEADLINE_S)

    def restart(self):
        self.stop()
        return self.start()

    def close(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def new_id():
    """A fresh 16-byte id in zq's layout(6 bytes of ms time, 10 random)."""
    return int(time.time() * 1000).to_bytes(6, "big") + os.urandom(10)


def envelope(queue, body, msg_id=None, created_ms=None, attempt=0, headers=None):
    """The two halves of a PUT's envelope frame: header array and body."""
    msg_id = msg_id or new_id()
    created_ms = int(time.time() * 1000) if created_ms is None else created_ms
    header = [1, msg_id, queue, created_ms, attempt, headers or {}]
    return msg_id, msgpack.packb(header) + msgpack.packb(body)


def split_ids(blob):
    """The ids of an "ids" element: 16-octet ids end to end."""
    return [bytes(blob[i:i + 16]) for i in range(0, len(blob), 16)]


def join_ids(ids):
    """The "ids" element for a list of ids."""
    return b"".join(ids)


def parse_envelope(frame):
    """Returns(header list, body) of an envelope frame."""
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(frame)
    return unpacker.unpack(), unpacker.unpack()


class Client:
    """A raw DEALER speaking the reliable protocol to one endpoint.
    options: (zmq option, value) pairs set after hwm, before connecting."""

    def __init__(self, endpoint, context=None, hwm=0, options=()):
        self.context = context or zmq.Context.instance()
        self.sock = self.context.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, hwm)
        self.sock.setsockopt(zmq.RCVHWM, hwm)
        for option, value in options:
            self.sock.setsockopt(option, value)
        self.sock.connect(endpoint)

    def close(self):
        self.sock.close(0)

    def send(self, *frames):
        self.sock.send_multipart(list(frames))

    def command(self, kind, *elements):
        """Sends a one-frame command [1, kind, elements...]."""
        self.send(msgpack.packb([1, kind] + list(elements)))

    def put_frame(self, frame):
        self.send(msgpack.packb([1, PUT]), frame)

    def put(self, queue, body, **fields):
        """Sends a PUT; returns the id."""
        msg_id, frame = envelope(queue, body, **fields)
        self.put_frame(frame)
        return msg_id

    def recv(self, timeout_s=DEADLINE_S):
        """The next message(a list of frames), or None after timeout_s."""
        if not self.sock.poll(int(timeout_s * 1000)):
            return None
        return self.sock.recv_multipart()

    def recv_command(self, timeout_s=DEADLINE_S, skip=(PONG,)):
        """The next command as (decoded command list, further frames), or
        None after timeout_s. Kinds in skip are passed over."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            frames = self.recv(left)
            if frames is None:
                return None
            command = msgpack.unpackb(frames[0], raw=False)
            if command[1] not in skip:
                return command, frames[1:]

    def answers(self, ids, timeout_s=DEADLINE_S):
        """Waits until every id in ids got a CONFIRM or REFUSE. Returns
        {id: ("confirm",) | ("refuse", code, reason)}; fails on a deadline.
        ERRORs are collected in self.errors."""
        waiting = set(ids)
        result = {}
        self.errors = getattr(self, "errors", [])
        deadline = time.monotonic() + timeout_s
        while waiting:
            got = self.recv_command(max(0.0, deadline - time.monotonic()))
            if got is None:
                raise Failure("%d of %d puts unanswered" % (len(waiting), len(ids)))
            command, _ = got
            if command[1] == CONFIRM:
                for msg_id in split_ids(command[2]):
                    result[msg_id] = ("confirm",)
                    waiting.discard(msg_id)
            elif command[1] == REFUSE:
                for msg_id in split_ids(command[2]):
                    result[msg_id] = ("refuse", command[3], command[4])
                    waiting.discard(msg_id)
            elif command[1] == ERROR:
                self.errors.append(command)
        return result

    def put_confirmed(self, queue, bodies):
        """Puts each body; fails unless every one is confirmed. Returns the
        ids in order."""
        ids = [self.put(queue, body) for body in bodies]
        answers = self.answers(ids)
        refused = [a for a in answers.values() if a[0] != "confirm"]
        check(not refused, "puts refused: %r" % refused[:3])
        return ids

    def consume(self, queue, prefetch):
        self.command(CONSUME, queue, prefetch)

    def deliveries(self, count, timeout_s=DEADLINE_S):
        """Receives count DELIVERs; returns [(id, header, body)]."""
        out = []
        deadline = time.monotonic() + timeout_s
        while len(out) < count:
            got = self.recv_command(max(0.0, deadline - time.monotonic()))
            if got is None:
                raise Failure("%d of %d deliveries arrived" % (len(out), count))
            command, rest = got
            if command[1] != DELIVER:
                continue
            header, body = parse_envelope(rest[0])
            out.append((header[1], header, body))
        return out

    def ack(self, ids):
        self.command(ACK, join_ids(ids))

    def nack(self, ids, delay_ms=0):
        self.command(NACK, join_ids(ids), delay_ms)

    def touch(self, ids, extend_ms):
        self.command(TOUCH, join_ids(ids), extend_ms)


def curve_keypair():
    """A new CURVE key pair as (public, secret) Z85 text."""
    public, secret = zmq.curve_keypair()
    return public.decode(), secret.decode()


def write_cert(path, public, secret):
    """A zmakecert-style pair: PATH (public) and PATH_secret (0600)."""
    with open(path, "w") as out:
        out.write('curve\n    public-key = "%s"\n' % public)
    with open(path + "_secret", "w") as out:
        out.write('curve\n    public-key = "%s"\n    secret-key = "%s"\n' % (public, secret))
    os.chmod(path + "_secret", 0o600)


def curve_options(server_public, pair):
    """The socket options of a CURVE client holding pair (public, secret)
    that talks to the server whose public key is server_public."""
    return [(zmq.CURVE_SERVERKEY, server_public.encode()),
            (zmq.CURVE_PUBLICKEY, pair[0].encode()),
            (zmq.CURVE_SECRETKEY, pair[1].encode())]


def admin_request(endpoint, *words, options=(), connect=None, timeout_s=DEADLINE_S):
    """One request on zqd's admin socket (REQ) at endpoint: words are str
    or bytes frames; options are (zmq option, value) pairs set before
    connecting (CURVE keys); connect(sock, endpoint), if given, connects in
    the caller's way (to check the handshake). Returns the reply's frames,
    or None when none came within timeout_s."""
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        for option, value in options:
            sock.setsockopt(option, value)
        if connect:
            connect(sock, endpoint)
        else:
            sock.connect(endpoint)
        sock.send_multipart([word if isinstance(word, bytes) else word.encode() for word in words])
        if not sock.poll(int(timeout_s * 1000)):
            return None
        return sock.recv_multipart()
    finally:
        sock.close(0)


def main(namespace):
    """Runs every test_* function of namespace in definition order; prints
    PASS/FAIL per test and exits 0 only if all passed."""
    tests = [(name, value) for name, value in namespace.items()
             if name.startswith("test_") and callable(value)]
    name_of_file = os.path.basename(sys.argv[0])
    failed = 0
    for name, test in tests:
        started = time.monotonic()
        try:
            test()
            print("PASS %s (%.1f s)" % (name, time.monotonic() - started), flush=True)
        except Exception:
            failed += 1
            print("FAIL %s" % name, flush=True)
            traceback.print_exc()
    print("%s: %d passed, %d failed" % (name_of_file, len(tests) - failed, failed))
    sys.exit(1 if failed else 0)
