#!/usr/bin/python3
#   Network faults across hosts (make check-faults; needs root): a producer,
#   zqd and a consumer, each in a network namespace of its own, joined by
#   veth links on private addresses:
#
#       producer 10.77.0.1 ==veth== 10.77.0.2 zqd 10.77.0.5 ==veth== 10.77.0.6 consumer
#
#   zqd keeps queue "orders" in a local spool (fsync always); `zq put -`
#   gets a steady stream of numbered lines ({"n": N}, ZQ_FAULTS_RATE per
#   second) and prints each one's number once its confirm came; `zq get -n
#   all` prints each delivery and acks it. Every case breaks one thing
#   while the stream goes on, heals it, and checks that every confirmed
#   number was delivered (0 lost); duplicates are counted, and the time
#   from the healing to the first confirm and the first delivery after it
#   is reported, one line per case:
#
#       case=pd-drop-10 confirmed=1540 delivered=1540 lost=0 duplicates=0 resume_s=1.2 ...
#
#   Partitions: "drop" puts a blackhole qdisc on both ends of a link (every
#   packet either way vanishes, no side's kernel reports anything: a failed
#   switch or router between hosts); "down" sets both ends down (the hosts
#   see the link go away: no carrier, no route). Pauses: SIGSTOP, SIGCONT.
#
#   Then a 3-node JetStream cluster in three more namespaces has one node
#   cut off for 10 s and 30 s under load through zqd --jetstream (see
#   JS_CASES below), each case on a cluster of its own (fresh stores),
#   starting once every node says it is healthy.
#
#   Namespaces and links get names unique to this run and are always
#   deleted (also after a failure or an interrupt); every process is
#   stopped by its PID. Without root (or where namespaces cannot be made)
#   one line says why and the run fails, as check-faults' other parts do
#   when they cannot run.
#
#   Environment: ZQ_BUILDDIR (src/zqd, src/zq), ZQ_FAULTS_CASES (names, comma
#   separated; default all), ZQ_FAULTS_RATE (puts per second, default 100),
#   ZQ_FAULTS_RESUME_MAX_S (how soon zq must be back after a healing of the
#   local-spool cases, default 6),
#   ZQ_FAULTS_BREAK=memory (a deliberately broken device for checking this
#   test: zqd without a spool, killed and restarted at each healing; the run
#   must then report lost messages and fail).
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

BUILDDIR = os.environ.get("ZQ_BUILDDIR", os.getcwd())
ZQD = os.path.join(BUILDDIR, "src", "zqd")
ZQ = os.path.join(BUILDDIR, "src", "zq")
RATE = int(os.environ.get("ZQ_FAULTS_RATE", "100"))
BREAK = os.environ.get("ZQ_FAULTS_BREAK", "")
PORT = 7700
QUEUE = "orders"
#  Deadlines: to start, for the first confirms and deliveries, to resume
#  after a healing, to drain at the end.
START_S = 20.0
WARM_S = 20.0
RESUME_S = 60.0
DRAIN_S = 60.0
#  How soon after a healing zq must be back (a confirm and a delivery):
#  producers and consumers drop a connection silent for the heartbeat
#  timeout (3 s) and a connect that has not completed within it, and
#  connect again every reconnect_ms (100); the rest is room for a busy
#  machine.
RESUME_MAX_S = float(os.environ.get("ZQ_FAULTS_RESUME_MAX_S", "6"))
#  Confirms to see after the healing before the stream stops.
AFTER_HEAL = 50
NAME = "netns_faults"


class Failure(Exception):
    pass


def log(text):
    print("%s: %s" % (NAME, text), flush=True)


def run(*command):
    """Runs a short command (ip, tc); fails with its output unless it
    exits 0 within 20 s."""
    result = subprocess.run(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            timeout=20)
    if result.returncode != 0:
        raise Failure("%s: %s" % (" ".join(command), result.stdout.decode(errors="replace").strip()))


def wait_until(predicate, timeout_s, step_s=0.02):
    """Calls predicate until it returns a true value (returned) or
    timeout_s passed (returns the last value)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step_s)


class Net:
    """Three namespaces, producer (p), device (d) and consumer (c), and the
    links p-d and d-c. Every name carries this run's PID."""

    ADDRESSES = {"pd": (("p", "10.77.0.1/30"), ("d", "10.77.0.2/30")),
                 "dc": (("d", "10.77.0.5/30"), ("c", "10.77.0.6/30"))}
    DEVICE_ADDRESS = {"pd": "10.77.0.2", "dc": "10.77.0.5"}

    def __init__(self, extra=()):
        tag = "zqf%d" % os.getpid()
        self.ns = {role: "%s%s" % (tag, role) for role in ("p", "d", "c") + tuple(extra)}
        self.made = []
        self.links = {}

    def setup(self):
        for role, name in self.ns.items():
            run("ip", "netns", "add", name)
            self.made.append(name)
            run("ip", "-n", name, "link", "set", "lo", "up")
        for link, ends in self.ADDRESSES.items():
            self.add_link(link, ends)

    def add_link(self, link, ends):
        """A veth pair named after link, one end in each namespace of
        ends ((role, address/prefix), (role, address/prefix))."""
        (role_a, address_a), (role_b, address_b) = ends
        device_a, device_b = "v%s%s" % (link, role_a), "v%s%s" % (link, role_b)
        run("ip", "link", "add", "name", device_a, "netns", self.ns[role_a], "type", "veth",
            "peer", "name", device_b, "netns", self.ns[role_b])
        for role, device, address in ((role_a, device_a, address_a), (role_b, device_b, address_b)):
            run("ip", "-n", self.ns[role], "addr", "add", address, "dev", device)
            run("ip", "-n", self.ns[role], "link", "set", device, "up")
        self.links[link] = ((role_a, device_a), (role_b, device_b))

    def partition(self, link, mode):
        for role, device in self.links[link]:
            if mode == "drop":
                run("tc", "-n", self.ns[role], "qdisc", "add", "dev", device, "root", "blackhole")
            else:
                run("ip", "-n", self.ns[role], "link", "set", device, "down")

    def heal(self, link, mode):
        for role, device in self.links[link]:
            if mode == "drop":
                run("tc", "-n", self.ns[role], "qdisc", "del", "dev", device, "root")
            else:
                run("ip", "-n", self.ns[role], "link", "set", device, "up")

    def teardown(self):
        """Deletes every namespace made (their veth ends go with them).
        Returns the names it could not delete."""
        left = []
        for name in reversed(self.made):
            result = subprocess.run(["ip", "netns", "del", name], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, timeout=20)
            if result.returncode != 0:
                left.append(name)
        self.made = left
        return left


class Proc:
    """A process in a namespace whose stdout lines are kept with the
    monotonic time each arrived."""

    def __init__(self, ns, command, work, name, stdin=False, parse=None):
        self.name = name
        self.err_path = os.path.join(work, name + ".err")
        self.lines = []
        self.lock = threading.Lock()
        self.parse = parse or (lambda line: line)
        with open(self.err_path, "w") as err:
            #  ip netns exec execs the command: the PID is the command's.
            self.process = subprocess.Popen(["ip", "netns", "exec", ns] + command,
                                            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                            stdout=subprocess.PIPE, stderr=err)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.process.stdout:
            value = self.parse(raw.decode(errors="replace").strip())
            with self.lock:
                self.lines.append((time.monotonic(), value))

    def values(self):
        with self.lock:
            return [value for _, value in self.lines]

    def count(self):
        with self.lock:
            return len(self.lines)

    def first_after(self, moment, keep=lambda value: True):
        """Seconds from moment to the first line after it (of those keep
        is true for), or None."""
        with self.lock:
            for when, value in self.lines:
                if when > moment and keep(value):
                    return when - moment
        return None

    def times(self, keep=lambda value: True):
        with self.lock:
            return [when for when, value in self.lines if keep(value)]

    def signal(self, signum):
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def stop(self, timeout_s=10.0):
        """SIGCONT (in case it is stopped), SIGTERM, then SIGKILL after
        timeout_s. Returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout_s)
        self.reader.join(timeout_s)
        return self.process.returncode

    def stderr(self):
        with open(self.err_path) as err:
            return err.read()


def no_steady_stream(within_s, producer, consumer, device=None):
    """The failure of a warm-up that did not get going, with what the
    device (if given), zq put and zq get said last."""
    said = [("zqd", device)] if device else []
    said += [("zq put", producer), ("zq get", consumer)]
    return Failure("no steady stream within %.0f s: %d confirmed, %d delivered; %s" %
                   (within_s, producer.count(), consumer.count(),
                    "; ".join("%s: %s" % (name, proc.stderr()[-800:]) for name, proc in said)))


def body_number(line):
    try:
        return int(json.loads(line)["n"])
    except (ValueError, KeyError, TypeError):
        return None


class Feeder:
    """Writes {"n": N} lines, N = 1, 2, ..., into a process's stdin at a
    steady rate until stopped; closes the stdin then."""

    def __init__(self, proc, rate):
        self.proc = proc
        self.interval = 1.0 / rate
        self.stopping = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        pipe = self.proc.process.stdin
        next_at = time.monotonic()
        try:
            while not self.stopping.is_set():
                pipe.write(b'{"n": %d}\n' % (self.sent + 1))
                pipe.flush()
                self.sent += 1
                next_at += self.interval
                self.stopping.wait(max(0.0, next_at - time.monotonic()))
        except (BrokenPipeError, ValueError):
            pass
        finally:
            try:
                pipe.close()
            except BrokenPipeError:
                pass

    def stop(self):
        self.stopping.set()
        self.thread.join(10.0)


class Device:
    """zqd in the device namespace on PORT, spool in work (none when
    BREAK is "memory")."""

    def __init__(self, net, work):
        self.net = net
        self.work = work
        self.proc = None
        self.starts = 0

    def start(self):
        self.starts += 1
        #  --insecure: no CURVE on links only these namespaces reach.
        command = [ZQD, "--bind", "tcp://0.0.0.0:%d" % PORT, "--admin", "", "--insecure"]
        if BREAK != "memory":
            command += ["--spool", os.path.join(self.work, "spool"), "--fsync", "always"]
        self.proc = Proc(self.net.ns["d"], command, self.work, "zqd.%d" % self.starts)
        if not wait_until(lambda: any(v.startswith("zqd: listening on ") for v in self.proc.values())
                          or self.proc.process.poll() is not None, START_S):
            raise Failure("zqd did not start within %.0f s" % START_S)
        if self.proc.process.poll() is not None:
            raise Failure("zqd exited %d: %s" % (self.proc.process.returncode, self.proc.stderr()))

    def crash(self):
        """kill -9 and a start again (ZQ_FAULTS_BREAK only)."""
        self.proc.process.kill()
        self.proc.process.wait(10.0)
        self.start()


#  name: (what, link or pause target, mode, seconds)
CASES = [
    ("pd-drop-10", "link", "pd", "drop", 10),
    ("pd-drop-30", "link", "pd", "drop", 30),
    ("dc-drop-10", "link", "dc", "drop", 10),
    ("dc-drop-30", "link", "dc", "drop", 30),
    ("pd-down-10", "link", "pd", "down", 10),
    ("dc-down-10", "link", "dc", "down", 10),
    ("zqd-stop-10", "pause", "zqd", None, 10),
    ("consumer-stop-10", "pause", "consumer", None, 10),
]


def drain_and_count(feeder, producer, consumer, problems):
    """Ends a case's stream: stops feeding, waits (DRAIN_S) for zq put to
    exit, which it does once every line it read was confirmed, and for zq
    get to have every confirmed value; stops both. Appends to problems
    what went wrong. Returns (confirmed, delivered, lost, duplicates): the
    set of values confirmed, the list delivered, the confirmed ones never
    delivered (sorted) and how many deliveries repeated a value."""
    feeder.stop()
    if wait_until(lambda: producer.process.poll() is not None, DRAIN_S) is False:
        problems.append("the producer did not finish within %.0f s" % DRAIN_S)
    status = producer.stop()
    if status != 0:
        problems.append("zq put exited %s: %s" % (status, producer.stderr().strip()[-400:]))
    confirmed = set(producer.values())
    wait_until(lambda: confirmed <= set(consumer.values()), DRAIN_S)
    consumer.stop()
    delivered = consumer.values()
    lost = sorted(confirmed - set(delivered))
    duplicates = len(delivered) - len(set(delivered))
    return confirmed, delivered, lost, duplicates


def check_nothing_lost(feeder, confirmed, lost, problems):
    """Appends to problems a confirmed value never delivered and a line
    fed that was never confirmed."""
    if lost:
        problems.append("%d confirmed messages were never delivered, first: %s" %
                        (len(lost), lost[:5]))
    if feeder.sent > len(confirmed):
        problems.append("%d of %d lines fed were not confirmed" %
                        (feeder.sent - len(confirmed), feeder.sent))


def run_each(cases, run):
    """Runs run(case, index) for each case, which returns (result line,
    failure text or None) or raises Failure; logs the line and each
    failure. Returns how many cases failed."""
    failed = 0
    for index, case in enumerate(cases):
        try:
            line, problem = run(case, index)
            log(line)
        except Failure as error:
            problem = str(error)
        if problem:
            failed += 1
            log("FAIL %s: %s" % (case[0], problem))
    return failed


def run_case(net, case):
    """Runs one case; returns (result line, failure text or None)."""
    name, kind, target, mode, seconds = case
    work = tempfile.mkdtemp(prefix="zq-netns-faults.")
    device = Device(net, work)
    producer = consumer = feeder = None
    problems = []
    try:
        device.start()
        consumer = Proc(net.ns["c"], [ZQ, "get", "tcp://%s:%d" % (Net.DEVICE_ADDRESS["dc"], PORT),
                                      QUEUE, "-n", "all", "--timeout", "600000"],
                        work, "consumer", parse=body_number)
        producer = Proc(net.ns["p"], [ZQ, "put", "tcp://%s:%d" % (Net.DEVICE_ADDRESS["pd"], PORT),
                                      QUEUE, "-", "--timeout", "120000"],
                        work, "producer", stdin=True, parse=int)
        feeder = Feeder(producer, RATE)
        if not wait_until(lambda: producer.count() >= 50 and consumer.count() >= 50, WARM_S):
            raise no_steady_stream(WARM_S, producer, consumer)
        before = (producer.count(), consumer.count())
        if kind == "link":
            net.partition(target, mode)
        else:
            (device.proc if target == "zqd" else consumer).signal(signal.SIGSTOP)
        #  The fault lasts `seconds` (the case's definition), the stream
        #  going on meanwhile.
        time.sleep(seconds)
        during = (producer.count() - before[0], consumer.count() - before[1])
        if kind == "link":
            net.heal(target, mode)
        else:
            (device.proc if target == "zqd" else consumer).signal(signal.SIGCONT)
        healed = time.monotonic()
        if BREAK == "memory":
            device.crash()
        #  Resumed once a confirm and a delivery came after the healing.
        resumed = wait_until(lambda: producer.first_after(healed) is not None and
                             consumer.first_after(healed) is not None, RESUME_S)
        confirm_s = producer.first_after(healed)
        deliver_s = consumer.first_after(healed)
        if not resumed:
            problems.append("no %s within %.0f s of the healing" %
                            ("confirm" if confirm_s is None else "delivery", RESUME_S))
        else:
            if max(confirm_s, deliver_s) > RESUME_MAX_S:
                problems.append("back %.2f s after the healing, more than %.0f s" %
                                (max(confirm_s, deliver_s), RESUME_MAX_S))
            target_count = producer.count() + AFTER_HEAL
            if not wait_until(lambda: producer.count() >= target_count, RESUME_S):
                problems.append("the stream did not go on after the healing")
        confirmed, delivered, lost, duplicates = drain_and_count(feeder, producer, consumer,
                                                                 problems)
        line = ("case=%s confirmed=%d delivered=%d lost=%d duplicates=%d resume_s=%s "
                "confirm_resume_s=%s deliver_resume_s=%s during=%d/%d" %
                (name, len(confirmed), len(set(delivered)), len(lost), duplicates,
                 "%.2f" % max(confirm_s, deliver_s) if resumed else "none",
                 "%.2f" % confirm_s if confirm_s is not None else "none",
                 "%.2f" % deliver_s if deliver_s is not None else "none",
                 during[0], during[1]))
        check_nothing_lost(feeder, confirmed, lost, problems)
        return line, "; ".join(problems) or None
    finally:
        if feeder:
            feeder.stop()
        for proc in (producer, consumer, device.proc):
            if proc:
                proc.stop()
        if kind == "link":
            try:
                net.heal(target, mode)
            except Failure:
                pass  # healed already
        if problems and device.proc:
            sys.stderr.write(device.proc.stderr()[-2000:])
        shutil.rmtree(work, ignore_errors=True)


#  ---- JetStream: 3 nats-server nodes, a partition of one of them --------
#  Nodes n1, n2, n3 (10.77.1.1-3) and the gateway namespace g
#  (10.77.1.254), where zqd --jetstream serves the queue, `zq put -` puts
#  and `zq get` takes through it, all joined by a bridge in g.
#  The node cut off is the one the gateway is connected to: cut off from
#  the gateway and from both other nodes.
JS_WEDGED_AFTER_HEAL_S = 30  # a JetStream case fails past this
#  Each case starts on a healthy cluster: every node's /healthz (monitoring
#  port JS_MONITOR_PORT) says ok, which nats-server says once it is in
#  contact with the meta leader and each stream and consumer it holds a
#  copy of is current. After a partition of 10 s that took 0.06 to 20 s
#  here; a case does not start until it did, and fails past this.
JS_HEALTHY_S = 120
JS_MONITOR_PORT = 8222

JS_CASES = [
    ("js-node-drop-10", "drop", 10),
    ("js-node-drop-30", "drop", 30),
]
JS_BUILT = os.environ.get("ZQ_FAULTS_JETSTREAM") == "yes"
NATS_SERVER = os.environ.get("NATS_SERVER") or shutil.which("nats-server") or ""
JS_NODES = 3


class JsNet(Net):
    ADDRESSES = {}

    def __init__(self):
        Net.__init__(self)
        self.ns = {role: self.ns["p"][:-1] + role for role in ("g", "n1", "n2", "n3")}

    def setup(self):
        for role, name in self.ns.items():
            run("ip", "netns", "add", name)
            self.made.append(name)
            run("ip", "-n", name, "link", "set", "lo", "up")
        g = self.ns["g"]
        run("ip", "-n", g, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", g, "addr", "add", "10.77.1.254/24", "dev", "br0")
        run("ip", "-n", g, "link", "set", "br0", "up")
        for index in range(1, JS_NODES + 1):
            link = "n%d" % index
            self.add_link(link, ((link, "10.77.1.%d/24" % index), ("g", None)))

    def add_link(self, link, ends):
        (role_a, address_a), (role_b, _) = ends
        device_a, device_b = "v%s" % link, "vbr%s" % link
        run("ip", "link", "add", "name", device_a, "netns", self.ns[role_a], "type", "veth",
            "peer", "name", device_b, "netns", self.ns[role_b])
        run("ip", "-n", self.ns[role_a], "addr", "add", address_a, "dev", device_a)
        run("ip", "-n", self.ns[role_a], "link", "set", device_a, "up")
        run("ip", "-n", self.ns[role_b], "link", "set", device_b, "master", "br0")
        run("ip", "-n", self.ns[role_b], "link", "set", device_b, "up")
        self.links[link] = ((role_a, device_a), (role_b, device_b))


def js_cluster_start(net, work):
    """Starts the 3 nodes (routes to each other, stores under work);
    returns their Procs once each said it is ready."""
    nodes = []

    def ready():
        for node in nodes:
            if node.process.poll() is not None:
                raise Failure("nats-server exited %d: %s" %
                              (node.process.returncode, node.stderr()[-1000:]))
        return all("Server is ready" in node.stderr() for node in nodes)

    try:
        for index in range(1, JS_NODES + 1):
            routes = ",".join("nats://10.77.1.%d:6222" % other
                              for other in range(1, JS_NODES + 1) if other != index)
            store = os.path.join(work, "n%d" % index)
            os.mkdir(store)
            nodes.append(Proc(net.ns["n%d" % index],
                              [NATS_SERVER, "-js", "-a", "10.77.1.%d" % index, "-p", "4222",
                               "-sd", store, "-n", "n%d" % index, "--cluster_name", "zqfaults",
                               "--cluster", "nats://10.77.1.%d:6222" % index, "--routes",
                               routes, "-m", str(JS_MONITOR_PORT)],
                              work, "nats%d" % index))
        if not wait_until(ready, START_S, 0.1):
            raise Failure("the nats-server nodes were not ready within %.0f s" % START_S)
    except BaseException:
        #  (Any way out: a node that exited, a failed start, an interrupt.)
        for node in nodes:
            node.stop()
        raise
    return nodes


#  Run in the gateway namespace: prints what each node given on the
#  command line answers on /healthz, one line each (no proxy: the nodes
#  are reached directly).
JS_HEALTH_SCRIPT = r"""
import sys, urllib.error, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
for address in sys.argv[1:]:
    try:
        body = opener.open(address, timeout=2).read()
    except urllib.error.HTTPError as error:
        body = error.read()
    except OSError as error:
        body = str(error).encode()
    print(body.decode(errors="replace").replace("\n", " ").strip())
"""


def js_ask_nodes(net, script, path, timeout_s):
    """Runs script (Python) in the gateway namespace with each node's
    monitoring URL for path as its arguments; returns the finished
    process (stdout and stderr as bytes), or None past timeout_s."""
    addresses = ["http://10.77.1.%d:%d%s" % (node, JS_MONITOR_PORT, path)
                 for node in range(1, JS_NODES + 1)]
    try:
        return subprocess.run(["ip", "netns", "exec", net.ns["g"], sys.executable, "-c",
                               script] + addresses, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None


def js_cluster_unhealthy(net):
    """What the nodes whose /healthz does not say ok said (empty when all
    three are healthy)."""
    result = js_ask_nodes(net, JS_HEALTH_SCRIPT, "/healthz", 20)
    if result is None:
        return ["the health check took over 20 s"]
    said = result.stdout.decode(errors="replace").splitlines()
    if result.returncode != 0 or len(said) != JS_NODES:
        return ["the health check failed: %s %s" %
                (" ".join(said), result.stderr.decode(errors="replace").strip())]
    return ["n%d: %s" % (index + 1, line) for index, line in enumerate(said)
            if json_status(line) != "ok"]


#  Run in the gateway namespace: prints, for each node's /jsz given on the
#  command line, one line per stream it holds a copy of (messages, last
#  sequence, leader) and per consumer (delivered, pending, unsettled,
#  leader), as that node sees them.
JS_VIEW_SCRIPT = r"""
import json, sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
for address in sys.argv[1:]:
    node = address.split("/")[2]
    try:
        view = json.loads(opener.open(address, timeout=2).read())
    except (OSError, ValueError) as error:
        print("%s: %s" % (node, error))
        continue
    for account in view.get("account_details") or []:
        for stream in account.get("stream_detail") or []:
            state = stream.get("state") or {}
            print("%s: stream %s messages=%s last_seq=%s leader=%s" %
                  (node, stream.get("name"), state.get("messages"), state.get("last_seq"),
                   (stream.get("cluster") or {}).get("leader")))
            for consumer in stream.get("consumer_detail") or []:
                print("%s:   consumer %s delivered=%s ack_floor=%s pending=%s unsettled=%s "
                      "waiting=%s leader=%s" %
                      (node, consumer.get("name"),
                       (consumer.get("delivered") or {}).get("stream_seq"),
                       (consumer.get("ack_floor") or {}).get("stream_seq"),
                       consumer.get("num_pending"), consumer.get("num_ack_pending"),
                       consumer.get("num_waiting"),
                       (consumer.get("cluster") or {}).get("leader")))
"""


def js_cluster_view(net):
    """What each node says of the streams and consumers it holds (for a
    failure's report)."""
    result = js_ask_nodes(net, JS_VIEW_SCRIPT, "/jsz?accounts=true&streams=true&consumers=true",
                          30)
    if result is None:
        return "the cluster's view took over 30 s"
    return (result.stdout + result.stderr).decode(errors="replace").strip()


def json_status(line):
    try:
        return json.loads(line).get("status")
    except (ValueError, AttributeError):
        return None


def js_wait_healthy(net):
    """Waits until every node says it is healthy; returns how long that
    took, or fails with what the nodes said last."""
    start = time.monotonic()
    said = []

    def healthy():
        said[:] = js_cluster_unhealthy(net)
        return not said

    if not wait_until(healthy, JS_HEALTHY_S, 0.2):
        raise Failure("the JetStream cluster was not healthy within %d s (before the case): %s" %
                      (JS_HEALTHY_S, "; ".join(said)))
    return time.monotonic() - start


def js_gateway_node(net):
    """The node the gateway's connection goes to (the one whose partition
    the gateway feels), from the gateway namespace's TCP connections;
    n1 when there is none."""
    result = subprocess.run(["ip", "netns", "exec", net.ns["g"], "ss", "-Htn", "state",
                             "established"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, timeout=20)
    for line in result.stdout.decode(errors="replace").splitlines():
        for field in line.split():
            if field.startswith("10.77.1.") and field.endswith(":4222"):
                return "n" + field[len("10.77.1."):-len(":4222")]
    return "n1"


class JsGateway:
    """zqd --jetstream in the gateway namespace, serving on its loopback."""

    def __init__(self, net, work, servers, index):
        command = [ZQD, "--bind", "tcp://127.0.0.1:%d" % PORT, "--admin", "",
                   "--spool", os.path.join(work, "gateway-spool-%d" % index),
                   "--jetstream", servers, "-o", "jetstream_prefix=F%d" % os.getpid()]
        self.proc = Proc(net.ns["g"], command, work, "zqd-gateway.%d" % index)
        if not wait_until(lambda: any(v.startswith("zqd: listening on ")
                                      for v in self.proc.values())
                          or self.proc.process.poll() is not None, START_S):
            self.proc.stop()
            raise Failure("zqd --jetstream did not start within %.0f s: %s" %
                          (START_S, self.proc.stderr()[-1000:]))
        if self.proc.process.poll() is not None:
            raise Failure("zqd --jetstream exited %d: %s" %
                          (self.proc.process.returncode, self.proc.stderr()[-1000:]))


def js_complaints(nodes):
    """The last warnings and errors each node logged (for a failure's
    report)."""
    said = []
    for index, node in enumerate(nodes):
        lines = [line for line in node.stderr().splitlines()
                 if "[WRN]" in line or "[ERR]" in line]
        said += ["n%d: %s" % (index + 1, line) for line in lines[-5:]]
    return "\n".join(said) or "none"


def run_js_case(net, case, index):
    """One partition of the node the gateway is connected to, under the
    load of `zq put -` and `zq get` through zqd --jetstream, on a cluster
    of its own; returns (result line, failure text or None).
    A cluster that had a node cut off is not used again: after a 10 s
    partition, nats-server 2.9.10's /healthz said ok on every node while
    the healed node, leader of the next case's new stream, answered none of
    its puts (that stream's last sequence stayed 0 for 40 s), or while the
    next case's new consumer delivered nothing."""
    work = os.path.join(net.js_work, "case%d" % index)
    os.mkdir(work)
    nodes = js_cluster_start(net, work)
    try:
        return js_partition(net, nodes, work, case, index)
    finally:
        for node in nodes:
            node.stop()


def js_partition(net, nodes, work, case, index):
    """run_js_case's work on its started cluster (nodes, under work)."""
    name, mode, seconds = case
    healthy_s = js_wait_healthy(net)
    servers = ",".join("nats://10.77.1.%d:4222" % node for node in range(1, JS_NODES + 1))
    queue = "f%d" % index
    gateway = JsGateway(net, work, servers, index)
    endpoint = "tcp://127.0.0.1:%d" % PORT
    consumer = Proc(net.ns["g"], [ZQ, "get", endpoint, queue, "-n", "all", "--timeout", "600000"],
                    work, "js-consumer.%d" % index, parse=body_number)
    producer = Proc(net.ns["g"], [ZQ, "put", endpoint, queue, "-", "--timeout", "120000"],
                    work, "js-producer.%d" % index, stdin=True, parse=int)
    feeder = Feeder(producer, RATE)
    problems = []
    partitioned = False
    node = "n1"
    try:
        if not wait_until(lambda: producer.count() >= 50 and consumer.count() >= 50,
                          WARM_S + START_S):
            failure = no_steady_stream(WARM_S + START_S, producer, consumer, gateway.proc)
            raise Failure("%s\nthe cluster's view:\n%s\nthe nodes' last warnings:\n%s" %
                          (failure, js_cluster_view(net), js_complaints(nodes)))
        node = js_gateway_node(net)
        cut = time.monotonic()
        net.partition(node, mode)
        partitioned = True
        time.sleep(seconds)  # the partition lasts `seconds`, the load going on
        net.heal(node, mode)
        partitioned = False
        healed = time.monotonic()
        wait_until(lambda: gateway.proc.process.poll() is not None or
                   (producer.first_after(healed) is not None and
                    consumer.first_after(healed) is not None), RESUME_S)
        confirm_s = producer.first_after(healed)
        deliver_s = consumer.first_after(healed)
        if gateway.proc.process.poll() is not None:
            problems.append("zqd --jetstream died (status %d) during the case" %
                            gateway.proc.process.returncode)
        elif confirm_s is None or deliver_s is None:
            problems.append("no %s within %.0f s of the healing" %
                            ("confirm" if confirm_s is None else "delivery", RESUME_S))
        else:
            target_count = producer.count() + AFTER_HEAL
            if not wait_until(lambda: producer.count() >= target_count, RESUME_S):
                problems.append("the load did not go on after the healing")
        #  The longest time without a confirm from the cut on.
        times = [cut] + [when for when in producer.times() if when > cut]
        stall = max(b - a for a, b in zip(times, times[1:])) if len(times) > 1 else None
        #  The store leaves a silent node within its write deadline and
        #  pings (about 3 s) and the two other nodes elect the leaders
        #  within seconds: the puts go on during the partition.
        #  The case fails when the puts are wedged: no confirm for the
        #  partition and 30 s more. A stall as long as the partition is
        #  reported, not failed: it was seen once in 14 runs of the store,
        #  unexplained (doc/DEVICE.md).
        if stall is None or stall >= seconds + JS_WEDGED_AFTER_HEAL_S:
            problems.append("no confirm for %s s, the %d s partition and %d s more" %
                            ("%.2f" % stall if stall is not None else "ever", seconds,
                             JS_WEDGED_AFTER_HEAL_S))
        elif stall >= seconds:
            print("netns_faults: %s: no confirm for %.2f s, as long as the partition"
                  % (name, stall), flush=True)
        confirmed, delivered, lost, duplicates = drain_and_count(feeder, producer, consumer,
                                                                 problems)
        line = ("case=%s confirmed=%d delivered=%d lost=%d duplicates=%d resume_s=%s "
                "confirm_resume_s=%s deliver_resume_s=%s longest_stall_s=%s node=%s healthy_s=%.2f" %
                (name, len(confirmed), len(set(delivered)), len(lost), duplicates,
                 "%.2f" % max(confirm_s, deliver_s) if confirm_s is not None and
                 deliver_s is not None else "none",
                 "%.2f" % confirm_s if confirm_s is not None else "none",
                 "%.2f" % deliver_s if deliver_s is not None else "none",
                 "%.2f" % stall if stall is not None else "none", node, healthy_s))
        check_nothing_lost(feeder, confirmed, lost, problems)
        return line, "; ".join(problems) or None
    finally:
        feeder.stop()
        for proc in (producer, consumer, gateway.proc):
            proc.stop()
        if partitioned:
            try:
                net.heal(node, mode)
            except Failure:
                pass
        if problems:
            sys.stderr.write(gateway.proc.stderr()[-2000:])


def run_js(cases):
    """The JetStream cases; returns how many failed."""
    if not JS_BUILT or not NATS_SERVER:
        log("FAIL js: cannot run: %s" %
            ("no nats-server" if not NATS_SERVER else
             "zqd was built without libnats (configure found none)"))
        return len(cases)
    net = JsNet()
    net.js_work = tempfile.mkdtemp(prefix="zq-netns-js.")
    failed = 0
    try:
        net.setup()
        failed += run_each(cases, lambda case, index: run_js_case(net, case, index))
    except Failure as error:
        failed += 1
        log("FAIL js: %s" % error)
    finally:
        left = net.teardown()
        if left:
            failed += 1
            log("FAIL: namespaces not deleted: %s" % " ".join(left))
        shutil.rmtree(net.js_work, ignore_errors=True)
    return failed


def can_run():
    """None if namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "not root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    if not shutil.which("ip") or not shutil.which("tc"):
        return "no ip or tc command (iproute2)"
    probe = "zqf%dprobe" % os.getpid()
    result = subprocess.run(["ip", "netns", "add", probe], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, timeout=20)
    if result.returncode != 0:
        return "ip netns add failed: %s" % result.stdout.decode(errors="replace").strip()
    subprocess.run(["ip", "netns", "del", probe], timeout=20)
    return None


def main():
    why = can_run()
    if why:
        print("%s: cannot run: %s" % (NAME, why), file=sys.stderr, flush=True)
        return 1
    for path in (ZQD, ZQ):
        if not os.access(path, os.X_OK):
            print("%s: no %s (ZQ_BUILDDIR)" % (NAME, path), file=sys.stderr)
            return 1
    wanted = os.environ.get("ZQ_FAULTS_CASES")
    cases = [c for c in CASES if not wanted or c[0] in wanted.split(",")]
    js_cases = [c for c in JS_CASES if not wanted or c[0] in wanted.split(",")]
    #  SIGTERM and SIGINT tear down as a failure does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    net = Net()
    failed = 0
    started = time.monotonic()
    try:
        if cases:
            net.setup()
        failed += run_each(cases, lambda case, index: run_case(net, case))
    except Failure as error:
        failed += 1
        log("FAIL: %s" % error)
    finally:
        left = net.teardown()
        if left:
            failed += 1
            log("FAIL: namespaces not deleted: %s" % " ".join(left))
    if js_cases:
        failed += run_js(js_cases)
    log("%d cases, %d failed, %.0f s" % (len(cases) + len(js_cases), failed,
                                         time.monotonic() - started))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
