#!/usr/bin/python3
#   zqd --http: GET /metrics is checked line by line by a strict parser of
#   the Prometheus text format (0.0.4) after known puts, deliveries, acks,
#   nacks and refusals; GET /api/queues tells the same in JSON; the status
#   page at / is loaded by headless Chromium and its rendered DOM shows the
#   queues with their depths (the page's own script put them there); bad
#   requests get 404, 405 or a bounded refusal; and a non-loopback address
#   is refused without --insecure.
#
#   The screenshots stay as test artifacts: tests/http-status-page.png
#   (1280x720) and tests/http-status-page-phone.png (390x844) in the build
#   directory, beside tests/http-status-page.html (the rendered DOM).
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import http.client
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
from hostile import check  # noqa: E402

ARTIFACTS = os.path.join(hostile.BUILDDIR, "tests")

# ---- A strict parser of the Prometheus text exposition format (0.0.4) ----

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
LABEL_VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
VALUE = r"(?:[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?Inf|NaN)"
SAMPLE = re.compile(r"^(%s)(?:\{((?:%s=%s)(?:,%s=%s)*)?\})? (%s)(?: (-?[0-9]+))?$" %
                    (NAME, LABEL, LABEL_VALUE, LABEL, LABEL_VALUE, VALUE))
PAIR = re.compile(r"(%s)=(%s)" % (LABEL, LABEL_VALUE))
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def unescape(quoted):
    out, i, text = [], 0, quoted[1:-1]
    while i < len(text):
        if text[i] == "\\":
            out.append({"\\": "\\", '"': '"', "n": "\n"}[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def family_of(name, types):
    """The family a sample name belongs to(histogram suffixes stripped)."""
    if name in types:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[:-len(suffix)]
        if name.endswith(suffix) and types.get(base) in ("histogram", "summary"):
            return base
    return None


def parse_metrics(text):
    """Parses text strictly; returns({(name, labels tuple): value}, {family: type}).
    Fails the test on any line the format does not allow, a sample with no
    TYPE before it, a family split in two, a repeated sample, a counter not
    named *_total, or a histogram whose buckets are not cumulative."""
    check(text.endswith("\n"), "the exposition does not end with a newline")
    samples, types, helps, seen_families = {}, {}, set(), []
    for number, line in enumerate(text[:-1].split("\n"), 1):
        where = "line %d %r" % (number, line)
        check(line != "", "%s: empty line" % where)
        if line.startswith("#"):
            match = re.match(r"^# (HELP|TYPE) (%s) (.*)$" % NAME, line)
            check(match is not None, "%s: a comment that is neither HELP nor TYPE" % where)
            kind, name, rest = match.groups()
            check(name not in (seen_families[:-1] if seen_families else []),
                  "%s: %s comes back after other families" % (where, name))
            if kind == "HELP":
                check(name not in helps, "%s: second HELP for %s" % (where, name))
                check(re.match(r"^(?:[^\\\n]|\\[\\n])*$", rest) is not None,
                      "%s: bad escape in HELP" % where)
                helps.add(name)
            else:
                check(name not in types, "%s: second TYPE for %s" % (where, name))
                check(rest in TYPES, "%s: unknown type %r" % (where, rest))
                check(not any(n == name for n in samples_names(samples)),
                      "%s: TYPE after samples of %s" % (where, name))
                types[name] = rest
                if rest == "counter":
                    check(name.endswith("_total"), "%s: counter not named *_total" % where)
            if not seen_families or seen_families[-1] != name:
                seen_families.append(name)
            continue
        match = SAMPLE.match(line)
        check(match is not None, "%s: not a sample line" % where)
        name, labels_text, value_text, _ = match.groups()
        family = family_of(name, types)
        check(family is not None, "%s: sample without a TYPE before it" % where)
        check(seen_families and seen_families[-1] == family,
              "%s: family %s split or without its comments just before" % (where, family))
        labels = []
        if labels_text:
            pairs = PAIR.findall(labels_text)
            rebuilt = ",".join("%s=%s" % pair for pair in pairs)
            check(rebuilt == labels_text, "%s: labels do not parse" % where)
            labels = [(key, unescape(value)) for key, value in pairs]
            check(len(set(k for k, _ in labels)) == len(labels), "%s: repeated label" % where)
        key = (name, tuple(sorted(labels)))
        check(key not in samples, "%s: repeated sample" % where)
        value = float(value_text.replace("Inf", "inf"))
        if types[family] == "counter":
            check(value >= 0, "%s: negative counter" % where)
        samples[key] = value
    check_histograms(samples, types)
    return samples, types


def samples_names(samples):
    return set(name for name, _ in samples)


def check_histograms(samples, types):
    for family, kind in types.items():
        if kind != "histogram":
            continue
        buckets = sorted(((float(dict(labels)["le"].replace("Inf", "inf")), value)
                          for (name, labels), value in samples.items()
                          if name == family + "_bucket"))
        check(buckets and math.isinf(buckets[-1][0]), "%s: no +Inf bucket" % family)
        check(all(buckets[i][1] <= buckets[i + 1][1] for i in range(len(buckets) - 1)),
              "%s: buckets not cumulative" % family)
        check(samples.get((family + "_count", ())) == buckets[-1][1],
              "%s: _count is not the +Inf bucket" % family)
        check((family + "_sum", ()) in samples, "%s: no _sum" % family)


def parser_rejects(text):
    try:
        parse_metrics(text)
    except hostile.Failure:
        return True
    return False


# ---- HTTP helpers ----

def get(address, path, method="GET", headers=None):
    """Returns(status, headers dict, body bytes)."""
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=hostile.DEADLINE_S)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def scrape(zqd):
    status, headers, body = get(zqd.http, "/metrics")
    check(status == 200, "GET /metrics: %d" % status)
    check(headers.get("Content-Type", "").startswith("text/plain; version=0.0.4"),
          "GET /metrics: content type %r" % headers.get("Content-Type"))
    return parse_metrics(body.decode("utf-8"))[0]


def queue_value(samples, name, queue, kind="queue"):
    return samples.get((name, (("kind", kind), ("queue", queue))))


def start_zqd(*args):
    zqd = hostile.Zqd(args=["--http", "127.0.0.1:0"] + list(args)).start()
    hostile.wait_until(lambda: zqd._listening() and zqd.http, "zqd's http line")
    return zqd


def wait_for_metrics(zqd, expected, what):
    """Scrapes until every (metric, queue) in expected has its value."""
    last = {}

    def matches():
        samples = scrape(zqd)
        for (name, queue), value in expected.items():
            got = queue_value(samples, name, queue) if queue else samples.get((name, ()))
            last[(name, queue)] = got
            if got != value:
                return None
        return samples
    try:
        return hostile.wait_until(matches, what)
    except hostile.Failure:
        raise hostile.Failure("%s: expected %r, last scrape %r" % (what, expected, last))


# ---- Tests ----

def test_parser_is_strict():
    good = ("# HELP a_total A.\n# TYPE a_total counter\na_total{q=\"x\\\"y\"} 1\n"
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
            "h_sum 0.5\nh_count 2\n")
    parse_metrics(good)
    for bad in ["a 1\n",                                          # no TYPE
                "# TYPE a gauge\na 1",                            # no final newline
                "# TYPE a gauge\na{q=\"x} 1\n",                   # broken label
                "# TYPE a gauge\na 1\na 2\n",                     # repeated sample
                "# TYPE a counter\na 1\n",                        # counter not *_total
                "# TYPE a gauge\na one\n",                        # not a number
                "# TYPE a gauge\n# TYPE b gauge\nb 1\na 1\n",     # split family
                "# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 2\n"
                "h_sum 1\nh_count 2\n",                           # not cumulative
                "# TYPE a gauge\n\na 1\n",                        # empty line
                "# a comment\n# TYPE a gauge\na 1\n"]:            # stray comment
        check(parser_rejects(bad), "the parser accepted %r" % bad)


def test_metrics_after_puts_gets_nacks():
    zqd = start_zqd()
    try:
        client = hostile.Client(zqd.endpoint)
        ids = client.put_confirmed("orders", [b"o%d" % i for i in range(5)])
        client.put_confirmed("emails", [b"e%d" % i for i in range(7)])
        client.consume("orders", 10)
        delivered = client.deliveries(5)
        check(sorted(d[0] for d in delivered) == sorted(ids), "deliveries differ from puts")
        client.ack(ids[:2])
        client.nack(ids[2:3])
        again = client.deliveries(1)
        check(again[0][0] == ids[2] and again[0][1][4] == 1, "the nacked one came back")
        # A PUT into a dead-letter queue is refused as never storable (code 2).
        _, frame = hostile.envelope("orders.dead", b"x")
        client.put_frame(frame)
        got = client.recv_command()
        check(got is not None and got[0][1] == hostile.REFUSE, "PUT to orders.dead: %r" % (got,))
        samples = wait_for_metrics(zqd, {
            ("zq_queue_depth", "orders"): 3,
            ("zq_queue_in_flight", "orders"): 3,
            ("zq_queue_in_total", "orders"): 5,
            ("zq_queue_acked_total", "orders"): 2,
            ("zq_queue_out_total", "orders"): 2,
            ("zq_queue_nacked_total", "orders"): 1,
            ("zq_queue_redelivered_total", "orders"): 1,
            ("zq_queue_delivered_total", "orders"): 6,
            ("zq_queue_consumers", "orders"): 1,
            ("zq_queue_depth", "emails"): 7,
            ("zq_queue_ready", "emails"): 7,
            ("zq_queue_consumers", "emails"): 0,
            ("zq_connections", None): 1,
            ("zq_server_errors_total", None): 1,
        }, "metrics after 12 puts, 6 deliveries, 2 acks, 1 nack, 1 refusal")
        check(samples[("zq_refusals_total", (("reason", "invalid"),))] == 1,
              "refusals{invalid}: %r" % samples.get(("zq_refusals_total", (("reason", "invalid"),))))
        check(samples[("zq_refusals_total", (("reason", "full"),))] == 0, "refusals{full}")
        check(queue_value(samples, "zq_queue_bytes", "emails") > 0, "emails holds no bytes")
        check(queue_value(samples, "zq_queue_spool_bytes", "emails") > 0, "emails: no spool bytes")
        check(queue_value(samples, "zq_queue_oldest_age_seconds", "emails") >= 0, "oldest age")
        check(samples[("zq_spool_free_bytes", ())] > 0, "no free disk reported")
        # Every PUT of an on-disk spool with fsync always waited for an fsync.
        check(samples[("zq_spool_fsync_duration_seconds_count", ())] >= 2, "fsyncs not counted")
        check(samples[("zq_spool_fsync_duration_seconds_sum", ())] > 0, "fsync time not summed")
        check(samples[("process_resident_memory_bytes", ())] > 1 << 20, "resident memory")
        check(samples[("process_open_fds", ())] > 3, "open fds")
        check(samples[("process_cpu_seconds_total", ())] > 0, "cpu seconds")
        started = samples[("process_start_time_seconds", ())]
        check(abs(started - time.time()) < 120, "start time %r is not about now" % started)
        client.close()
        wait_for_metrics(zqd, {("zq_connections", None): 0}, "the connection to go")
        zqd.stop()
    finally:
        zqd.close()


def test_dedupe_ids_forgotten_early_are_counted():
    # dedupe_max 1024: 1500 PUTs within the window forget the
    # 476 oldest ids early, and the counter and the log say so. A resend of
    # a forgotten id is stored again (and forgets one more); a resend of a
    # remembered one is a duplicate.
    zqd = hostile.Zqd(args=["--http", "127.0.0.1:0"],
                      config="queue\n    dedupe_max = 1024\n").start()
    try:
        hostile.wait_until(lambda: zqd._listening() and zqd.http, "zqd's http line")
        client = hostile.Client(zqd.endpoint)
        bodies = [b"d%d" % i for i in range(1500)]
        ids = client.put_confirmed("orders", bodies)
        wait_for_metrics(zqd, {
            ("zq_queue_in_total", "orders"): 1500,
            ("zq_server_dedupe_forgotten_total", None): 476,
        }, "476 ids forgotten early")
        for index in (0, -1):
            client.put_frame(hostile.envelope("orders", bodies[index], msg_id=ids[index])[1])
        answers = client.answers([ids[0], ids[-1]])
        check(all(answer == ("confirm",) for answer in answers.values()), "resends: %r" % answers)
        wait_for_metrics(zqd, {
            ("zq_queue_in_total", "orders"): 1501,
            ("zq_queue_duplicates_total", "orders"): 1,
            ("zq_server_dedupe_forgotten_total", None): 477,
        }, "the forgotten id stored again, the remembered one a duplicate")
        device = json.loads(get(zqd.http, "/api/queues")[2])["device"]
        check(device.get("dedupe_forgotten") == 477, "/api/queues device: %r" % device)
        # The log says it once (one line per 10 minutes at most), naming the limit.
        lines = [line for line in zqd.stderr().splitlines()
                 if "the dedupe window is full at dedupe_max (1024 ids)" in line]
        check(len(lines) == 1 and "not 60000 (dedupe_window_ms)" in lines[0]
              and "storing to queue orders" in lines[0], "the log: %r" % lines)
        client.close()
        zqd.stop()
    finally:
        zqd.close()


def test_stream_and_forward_rows():
    config = ("queues\n"
              "    s1\n        kind = stream\n"
              "        in = tcp://127.0.0.1:*\n        out = tcp://127.0.0.1:*\n"
              "    f1\n        kind = forward\n"
              "        in = tcp://127.0.0.1:*\n        out = tcp://127.0.0.1:*\n")
    zqd = hostile.Zqd(args=["--http", "127.0.0.1:0"], config=config).start()
    try:
        hostile.wait_until(lambda: zqd._listening() and zqd.http, "zqd's http line")
        def both():
            got = scrape(zqd)
            if queue_value(got, "zq_queue_depth", "f1", "forward") is not None:
                return got
            return None
        samples = hostile.wait_until(both, "the configured stream and forward")
        for name, kind in (("s1", "stream"), ("f1", "forward")):
            for metric in ("zq_queue_depth", "zq_queue_in_total", "zq_queue_out_total",
                           "zq_queue_dropped_total", "zq_queue_consumers"):
                check(queue_value(samples, metric, name, kind) == 0,
                      "%s{%s,%s}: %r" % (metric, name, kind, queue_value(samples, metric, name, kind)))
        # An empty stream holds only its spool's segment headers.
        check(queue_value(samples, "zq_queue_bytes", "s1", "stream") ==
              queue_value(samples, "zq_queue_spool_bytes", "s1", "stream"), "stream bytes")
        check(queue_value(samples, "zq_queue_bytes", "f1", "forward") == 0, "forward bytes")
        zqd.stop()
    finally:
        zqd.close()


def test_api_queues_json():
    zqd = start_zqd()
    try:
        client = hostile.Client(zqd.endpoint)
        client.put_confirmed("alpha", [b"a"] * 3)
        client.put_confirmed("beta", [b"b"] * 4)

        def listed():
            status, headers, body = get(zqd.http, "/api/queues?history=600")
            check(status == 200 and headers.get("Content-Type") == "application/json",
                  "GET /api/queues: %d %r" % (status, headers.get("Content-Type")))
            data = json.loads(body)
            queues = {q["name"]: q for q in data["queues"]}
            history = queues.get("alpha", {}).get("history", {})
            if ("alpha" in queues and "beta" in queues and queues["beta"]["depth"] == 4
                    and len(history.get("depth", [])) >= 2):
                return data, queues
            return None
        data, queues = hostile.wait_until(listed, "alpha and beta with two samples")
        check([q["name"] for q in data["queues"]] == ["alpha", "beta"], "not sorted by name")
        alpha = queues["alpha"]
        check(alpha["kind"] == "queue" and alpha["depth"] == 3 and alpha["in"] == 3 and
              alpha["acked"] == 0 and alpha["consumers"] == 0, "alpha: %r" % alpha)
        history = alpha["history"]
        check(len(history["time_ms"]) == len(history["depth"]) == len(history["in"]) ==
              len(history["out"]), "history arrays differ in length")
        check(history["depth"][-1] == 3 and history["in"][-1] == 3, "history: %r" % history)
        check(history["time_ms"] == sorted(history["time_ms"]), "history not oldest first")
        check(data["device"]["refusals"]["invalid"] == 0, "device: %r" % data["device"])
        # Without history the rows come alone; a bad history is a 400.
        status, _, body = get(zqd.http, "/api/queues")
        check(status == 200 and "history" not in json.loads(body)["queues"][0], "history given")
        for bad in ("601", "-1", "abc", ""):
            status, _, _ = get(zqd.http, "/api/queues?history=" + bad)
            check(status == 400, "history=%r: %d" % (bad, status))
        client.close()
        zqd.stop()
    finally:
        zqd.close()


def test_bad_requests():
    zqd = start_zqd()
    try:
        status, _, body = get(zqd.http, "/nothing-here")
        check(status == 404 and b"not found" in body, "unknown path: %d %r" % (status, body))
        status, headers, _ = get(zqd.http, "/metrics", method="POST")
        check(status == 405 and headers.get("Allow") == "GET, HEAD", "POST: %d %r" % (status, headers))
        status, _, _ = get(zqd.http, "/metrics", method="DELETE")
        check(status == 405, "DELETE: %d" % status)
        # Headers past the server's 32 KiB per connection: refused, never served.
        host, port = zqd.http.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=hostile.DEADLINE_S) as raw:
            raw.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            try:
                for _ in range(64):
                    raw.sendall(b"X-Filler: " + b"y" * 4096 + b"\r\n")
                raw.sendall(b"\r\n")
            except OSError:
                pass  # the server closed the connection: refused
            try:
                answer = raw.recv(4096)
            except OSError:
                answer = b""
        check(not answer.startswith(b"HTTP/1.1 200"), "huge headers served: %r" % answer[:80])
        check(answer == b"" or re.match(rb"HTTP/1\.[01] 4[0-9][0-9]", answer) is not None,
              "huge headers: %r" % answer[:80])
        # The server goes on.
        status, _, _ = get(zqd.http, "/metrics")
        check(status == 200, "after the bad requests: %d" % status)
        check(zqd.alive(), "zqd died")
        zqd.stop()
    finally:
        zqd.close()


def test_foreign_host_name_refused():
    # DNS rebinding: a web page of evil.example whose name now resolves to
    # 127.0.0.1 asks the operator's browser for its own origin; the
    # request reaches zqd with "Host: evil.example:PORT" and must not get
    # every tenant's queue names.
    zqd = start_zqd()
    try:
        port = zqd.http.rsplit(":", 1)[1]
        answers = {}
        for host in ("evil.example:" + port, "evil.example", "127.0.0.1.evil.example:" + port,
                     "localhost.evil.example"):
            for path in ("/api/queues", "/metrics", "/"):
                status, _, body = get(zqd.http, path, headers={"Host": host})
                answers[(host, path)] = status
                check(status == 421 and b"queue" not in body.lower().replace(b"/api/queues", b""),
                      "Host %s, GET %s: %d %r" % (host, path, status, body[:120]))
        print("foreign Host headers: %r" % (sorted(set(answers.values())),))
        # Loopback names, with and without the port, are served.
        for host in ("127.0.0.1:" + port, "127.0.0.1", "localhost:" + port, "LOCALHOST",
                     "127.1.2.3:" + port, "[::1]:" + port):
            status, _, _ = get(zqd.http, "/metrics", headers={"Host": host})
            check(status == 200, "Host %s: %d" % (host, status))
        zqd.stop()
    finally:
        zqd.close()


def test_http_beyond_loopback_refused():
    for address, reason in (("0.0.0.0:0", "loopback"), ("[::]:0", "loopback"),
                            ("127.0.0.1:70000", "0 to 65535"), ("nohost", "HOST:PORT")):
        zqd = hostile.Zqd(args=["--http", address]).start(expect_listening=False)
        try:
            status = zqd.process.wait(hostile.DEADLINE_S)
            check(status != 0, "--http %s: zqd started" % address)
            check("device/http" in zqd.stderr() and reason in zqd.stderr(),
                  "--http %s: %r" % (address, zqd.stderr()))
        finally:
            zqd.close()


def chromium(args, timeout_s=90):
    """Runs headless Chromium with a private profile; returns its stdout."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    check(binary is not None, "no chromium: install Debian's chromium package (./quickstart)")
    profile = tempfile.mkdtemp(prefix="zq-chromium.")
    try:
        command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                   "--disable-dev-shm-usage", "--hide-scrollbars", "--user-data-dir=" + profile,
                   "--virtual-time-budget=5000"] + args
        result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                timeout=timeout_s)
        check(result.returncode == 0, "chromium exited %d: %s" %
              (result.returncode, result.stderr.decode(errors="replace")[-2000:]))
        return result.stdout.decode("utf-8", errors="replace")
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def test_status_page_in_chromium():
    zqd = start_zqd()
    try:
        client = hostile.Client(zqd.endpoint)
        client.put_confirmed("orders", [b"o"] * 3)
        client.put_confirmed("emails", [b"e"] * 7)
        client.consume("emails", 2)
        client.deliveries(2)

        def ready():
            data = json.loads(get(zqd.http, "/api/queues")[2])
            depths = {q["name"]: (q["depth"], q["consumers"]) for q in data["queues"]}
            return depths == {"orders": (3, 0), "emails": (7, 1)}
        hostile.wait_until(ready, "the snapshot to show both queues")
        status, headers, page = get(zqd.http, "/")
        check(status == 200 and headers["Content-Type"].startswith("text/html"), "GET /")
        # Self-contained: nothing loaded from elsewhere.
        check(re.search(rb"(src|href)=\"(https?:)?//", page) is None, "the page loads assets")
        url = "http://%s/" % zqd.http
        dom = chromium(["--dump-dom", url])
        os.makedirs(ARTIFACTS, exist_ok=True)
        with open(os.path.join(ARTIFACTS, "http-status-page.html"), "w") as file:
            file.write(dom)
        check('data-state="ready"' in dom, "the page's script never rendered: %s" % dom[-1500:])
        for name, depth, consumers in (("orders", 3, 0), ("emails", 7, 1)):
            row = re.search(r'<tr data-queue="%s">(.*?)</tr>' % name, dom, re.S)
            check(row is not None, "no row for %s in the rendered page" % name)
            cells = dict(re.findall(r'<td class="([a-z-]+)[^"]*"[^>]*>([^<]*)', row.group(1)))
            check(cells.get("depth") == str(depth), "%s: depth cell %r" % (name, cells))
            check(cells.get("consumers") == str(consumers), "%s: consumers %r" % (name, cells))
            check(row.group(1).count("<svg") == 2, "%s: no depth and rate charts" % name)
        check(dom.index('data-queue="emails"') < dom.index('data-queue="orders"'), "row order")
        for file_name, size in (("http-status-page.png", "1280,720"),
                                ("http-status-page-phone.png", "390,844")):
            path = os.path.join(ARTIFACTS, file_name)
            if os.path.exists(path):
                os.unlink(path)
            chromium(["--window-size=" + size, "--screenshot=" + path, url])
            with open(path, "rb") as file:
                check(file.read(8) == b"\x89PNG\r\n\x1a\n", "%s is not a PNG" % path)
            print("screenshot: %s" % path)
        client.close()
        zqd.stop()
    finally:
        zqd.close()


hostile.main(globals())
