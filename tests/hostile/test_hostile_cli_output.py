#!/usr/bin/python3
#   What a hostile peer can make the zq program print: the text a device
#   answers an admin command with (an ERROR's reason, the queue names and
#   kinds of ls and stat, the facts of info) and an rpc server's error
#   reply reach a person's terminal. A terminal escape (ESC, or a C1
#   control such as CSI in UTF-8 or as a lone byte) or a newline that
#   forges a line must arrive as \xHH, and zq's output must stay UTF-8;
#   in a message zq prints as JSON (peek, as get, pull, sub and req do)
#   each is a \uXXXX escape.
#   Here the peers are pyzmq sockets this test drives.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import json
import os
import subprocess
import sys
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
from hostile import check  # noqa: E402

ZQ = os.path.join(hostile.BUILDDIR, "src", "zq")
#   Clears the screen and sets the window title; then CSI as a UTF-8 C1
#   control and as a lone byte; then a forged line.
HOSTILE = (b"a\x1b[2J\x1b]0;owned\x07b\xc2\x9b31mc\x9bd\x7fe"
           b"\nzq: all queues empty")
SHOWN = "a\\x1b[2J\\x1b]0;owned\\x07b\\xc2\\x9b31mc\\x9bd\\x7fe\\x0azq: all queues empty"


def shown_safely(output, what):
    """Fails unless output (bytes) is UTF-8 without control characters
    other than newlines, and shows HOSTILE escaped."""
    try:
        text = output.decode("utf-8")
    except UnicodeDecodeError as error:
        raise hostile.Failure("%s: not UTF-8 (%s): %r" % (what, error, output))
    bad = [char for char in text
           if char != "\n" and (ord(char) < 0x20 or 0x7f <= ord(char) <= 0x9f)]
    check(not bad, "%s: control characters %r reached the terminal: %r" % (what, bad, output))
    check(SHOWN in text, "%s: the peer's text is not shown escaped: %r" % (what, output))
    check("\nzq: all queues empty" not in text, "%s: the peer forged a line" % what)


def run_against(argv, serve, what):
    """Runs zq with argv (the endpoint of a ROUTER this test binds comes
    first where argv says ENDPOINT), answers its one request with serve
    (frames -> reply frames), and returns zq's (exit status, stdout,
    stderr)."""
    context = zmq.Context.instance()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    endpoint = "tcp://127.0.0.1:%d" % port
    command = [ZQ] + [endpoint if word == "ENDPOINT" else word for word in argv]
    zq = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        check(router.poll(int(hostile.DEADLINE_S * 1000)), "%s: no request came" % what)
        frames = router.recv_multipart()
        router.send_multipart(serve(frames))
        stdout, stderr = zq.communicate(timeout=hostile.DEADLINE_S)
    finally:
        if zq.poll() is None:
            zq.kill()
            zq.wait()
        router.close(0)
    return zq.returncode, stdout, stderr


def text_map(fields):
    """A msgpack map whose bytes values are str (msgpack's raw type), as
    a peer may send them whether UTF-8 or not."""
    return msgpack.packb(fields, use_bin_type=False)


def admin_reply(*frames):
    """A device's reply to a REQ: the route and delimiter, then frames."""
    return lambda request: request[:2] + list(frames)


def test_admin_error_reason():
    status, _, stderr = run_against(["purge", "ENDPOINT", "q"],
                                    admin_reply(b"ERROR", HOSTILE), "purge")
    check(status == 5, "purge of a refusing device exited %d" % status)
    shown_safely(stderr, "an admin ERROR")


def test_ls_names_and_kinds():
    row = text_map({"name": HOSTILE, "kind": b"k\x1b[5m"})
    status, stdout, _ = run_against(["ls", "ENDPOINT"], admin_reply(b"OK", row), "ls")
    check(status == 0, "ls exited %d" % status)
    shown_safely(stdout, "ls")
    check(b"k\\x1b[5m" in stdout, "ls: the kind is not escaped: %r" % stdout)


def test_stat_table():
    row = text_map({"name": HOSTILE, "kind": b"queue", "depth": 3})
    status, stdout, _ = run_against(["stat", "ENDPOINT"], admin_reply(b"OK", row), "stat")
    check(status == 0, "stat exited %d" % status)
    shown_safely(stdout, "stat")


def test_info_texts():
    info = text_map({"version": b"1\x1b[8m", "store": HOSTILE, "fsync": b"none",
                          "bind": HOSTILE, "uptime_ms": 1})
    status, stdout, _ = run_against(["info", "ENDPOINT"], admin_reply(b"OK", info), "info")
    check(status == 0, "info exited %d" % status)
    shown_safely(stdout, "info")
    check(b"1\\x1b[8m" in stdout, "info: the version is not escaped: %r" % stdout)


def test_peek_json():
    """A peeked message whose subject, header and body hold control
    characters prints as JSON with each one escaped."""
    text = "q\x1b[2J\u009b31m\x7f"
    header = msgpack.packb([1, bytes(16), text, 1, 0, {text: text}])
    status, stdout, _ = run_against(["peek", "-e", "ENDPOINT", "q"],
                                    admin_reply(b"OK", header + msgpack.packb(text)), "peek")
    check(status == 0, "peek exited %d" % status)
    bad = [char for char in stdout.decode("utf-8").rstrip("\n")
           if ord(char) < 0x20 or 0x7f <= ord(char) <= 0x9f]
    check(not bad, "peek: control characters %r reached the terminal: %r" % (bad, stdout))
    printed = json.loads(stdout)
    check(printed["subject"] == text and printed["headers"] == {text: text}
          and printed["body"] == text, "peek printed %r" % printed)


def rpc_error_reply(request):
    """An rpc server's reply (doc/PROTOCOL.md 17.1) to the request in
    frames, with HOSTILE as its error header."""
    cut = request.index(b"")
    unpacker = msgpack.Unpacker(raw=True)
    unpacker.feed(request[cut + 2])
    request_id = next(unpacker)[1]
    packer = msgpack.Packer()
    header = (packer.pack_array_header(6) + packer.pack(1) + packer.pack(request_id)
              + packer.pack("") + packer.pack(int(time.time() * 1000)) + packer.pack(0)
              + text_map({b"error": HOSTILE}))
    return request[:cut + 1] + [msgpack.packb([1, 1, request_id]), header + msgpack.packb(None)]


def test_rpc_error_reply():
    status, _, stderr = run_against(["req", "ENDPOINT", "{}"], rpc_error_reply, "req")
    check(status == 5, "req answered with an error reply exited %d" % status)
    shown_safely(stderr, "an rpc error reply")


hostile.main(globals())
