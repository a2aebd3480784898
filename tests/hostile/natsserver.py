#   nats-server processes for the tests of zqd's JetStream store: each on
#   127.0.0.1 with free ports and a store directory of its own, started and
#   stopped by PID; several joined by cluster routes. Every wait has a
#   deadline.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import hostile

START_S = 30.0  # longest wait for the nodes to listen and JetStream to be ready


def nats_server():
    """The nats-server program: $ZQ_NATS_SERVER, else on PATH or /usr/sbin."""
    found = os.environ.get("ZQ_NATS_SERVER") or shutil.which("nats-server")
    if not found and os.access("/usr/sbin/nats-server", os.X_OK):
        found = "/usr/sbin/nats-server"
    if not found:
        raise hostile.Failure("nats-server not found (configure found it for this test)")
    return found


class Nats:
    """count nats-server nodes with JetStream (a cluster when count > 1)."""

    def __init__(self, count=1):
        self.count = count
        self.dir = tempfile.mkdtemp(prefix="zq-nats.")
        self.nodes = []
        for i in range(count):
            self.nodes.append({
                "name": "n%d" % (i + 1),
                "port": hostile.restartable_port(),
                "cluster_port": hostile.restartable_port() if count > 1 else 0,
                "monitor_port": hostile.restartable_port(),
                "dir": os.path.join(self.dir, "n%d" % (i + 1)),
                "process": None,
            })

    def url(self, i):
        return "nats://127.0.0.1:%d" % self.nodes[i]["port"]

    def urls(self):
        return ",".join(self.url(i) for i in range(self.count))

    def _launch(self, node):
        command = [nats_server(), "-js", "-a", "127.0.0.1", "-p", str(node["port"]),
                   "-m", str(node["monitor_port"]), "-sd", node["dir"], "-n", node["name"]]
        if self.count > 1:
            routes = ",".join("nats://127.0.0.1:%d" % other["cluster_port"]
                              for other in self.nodes if other is not node)
            command += ["--cluster_name", "zqtest", "--cluster",
                        "nats://127.0.0.1:%d" % node["cluster_port"], "--routes", routes]
        log = open(os.path.join(self.dir, node["name"] + ".log"), "a")
        node["process"] = subprocess.Popen(command, stdout=log, stderr=log)
        log.close()

    def _ready(self, node):
        """True once node answers /jsz with JetStream on (and, in a cluster,
        a meta leader elected)."""
        if node["process"].poll() is not None:
            with open(os.path.join(self.dir, node["name"] + ".log")) as log:
                said = log.read()[-2000:]
            raise hostile.Failure("nats-server %s exited %d: %s" %
                                  (node["name"], node["process"].returncode, said))
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/jsz" % node["monitor_port"],
                                        timeout=1) as answer:
                state = json.load(answer)
        except (OSError, ValueError):
            return False
        if self.count == 1:
            return "config" in state or "memory" in state
        return bool(state.get("meta_cluster", {}).get("leader"))

    def start(self):
        for node in self.nodes:
            os.makedirs(node["dir"], exist_ok=True)
            self._launch(node)
        for node in self.nodes:
            hostile.wait_until(lambda: self._ready(node), "nats-server %s" % node["name"],
                               timeout_s=START_S, step_s=0.1)
        return self

    def request(self, subject, payload, timeout_s=hostile.DEADLINE_S):
        """One request to node 0 over the NATS protocol (a JetStream API call
        behind the gateways' back); returns the reply's payload. Fails
        (hostile.Failure) on -ERR, no responder, a closed connection or no
        reply within timeout_s."""
        inbox = "_INBOX.zqtest%d" % os.getpid()
        deadline = time.monotonic() + timeout_s
        try:
            with socket.create_connection(("127.0.0.1", self.nodes[0]["port"]),
                                          timeout=timeout_s) as sock, \
                    sock.makefile("rb") as reader:
                if not reader.readline().startswith(b"INFO "):
                    raise hostile.Failure("nats-server n1 did not greet with INFO")
                sock.sendall(b"CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true}"
                             b"\r\nSUB %s 1\r\nPUB %s %s %d\r\n%s\r\n"
                             % (inbox.encode(), subject.encode(), inbox.encode(), len(payload),
                                payload))
                while time.monotonic() < deadline:
                    sock.settimeout(max(deadline - time.monotonic(), 0.01))
                    line = reader.readline()
                    if line.startswith(b"PING"):
                        sock.sendall(b"PONG\r\n")
                    elif line.startswith(b"-ERR"):
                        raise hostile.Failure("nats-server n1: %r" % line)
                    elif line.startswith(b"HMSG "):
                        #  Headers alone: no responder for the subject.
                        raise hostile.Failure("nothing answers %s on nats-server n1" % subject)
                    elif line.startswith(b"MSG "):
                        size = int(line.split()[-1])
                        reply = reader.read(size + 2)
                        if len(reply) != size + 2:
                            break
                        return reply[:size]
                    elif not line:
                        break
        except socket.timeout:
            pass
        raise hostile.Failure("no reply to %s from nats-server n1 within %.0f s" %
                              (subject, timeout_s))

    def kill(self, i):
        """kill -9 node i, as a crash would."""
        process = self.nodes[i]["process"]
        if process and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(hostile.DEADLINE_S)

    def stop(self):
        for node in self.nodes:
            process = node["process"]
            if process and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(hostile.DEADLINE_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(hostile.DEADLINE_S)
        shutil.rmtree(self.dir, ignore_errors=True)
