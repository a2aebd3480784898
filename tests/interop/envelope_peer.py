#!/usr/bin/python3
#   The Python side of zq's envelope interop test: an implementation of
#   doc/PROTOCOL.md (ZQ/1) with pyzmq and msgpack-python only, driving
#   tests/interop/interop_peer (the C side, built on libzq).
#
#   envelope_peer.py cases              print how many messages `echo` sends
#   envelope_peer.py selftest           check this decoder against the cases
#   envelope_peer.py echo ENDPOINT      bind a PAIR socket, send every case to
#                                       `interop_peer echo`, check each reply
#   envelope_peer.py recv ENDPOINT      bind a PAIR socket, check the messages
#                                       `interop_peer send` writes
#
#   Exits 0 when every check passes, 1 otherwise (2 on bad usage).
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.

import base64
import json
import os
import struct
import sys
import time

try:
    import msgpack
    import zmq
except ImportError as error:
    sys.stderr.write("envelope_peer: %s; install python3-zmq and python3-msgpack\n" % error)
    sys.exit(1)

#  ---- ZQ/1 constants (doc/PROTOCOL.md) ------------------------------------
VERSION = 1
ID_SIZE = 16
MAX_SIZE = 1024 * 1024
MAX_DEPTH = 32
MAX_HEADERS = 64
MAX_STRING = 4096
ZEROCOPY_MIN = 8192
MIN_ELEMENTS = 6
MAX_ELEMENTS = 16

EPROTO = "ZQ_EPROTO"
ETOOBIG = "ZQ_ETOOBIG"
EVERSION = "ZQ_EVERSION"
EDEPTH = "ZQ_EDEPTH"

RECV_TIMEOUT_MS = 20000


class Reject(Exception):
    """A message a ZQ/1 receiver must reject, with the code it reports."""

    def __init__(self, code, why):
        Exception.__init__(self, "%s: %s" % (code, why))
        self.code = code
        self.why = why


class Map(list):
    """A decoded msgpack map: its (key, value) pairs in wire order."""


class Envelope(object):
    def __init__(self, msg_id, subject, created_ms, attempt, headers, body, body_bytes,
                 elements, frames):
        self.id = msg_id
        self.subject = subject
        self.created_ms = created_ms
        self.attempt = attempt
        self.headers = headers          # list of (name, value) in wire order
        self.body = body                # decoded, maps as Map
        self.body_bytes = body_bytes
        self.elements = elements        # N, the header array's element count
        self.frames = frames            # 1 or 2


#  ---- Decoding, strictly ---------------------------------------------------
def s_unpacker(data):
    unpacker = msgpack.Unpacker(raw=False, unicode_errors="surrogateescape",
                                strict_map_key=False, object_pairs_hook=Map,
                                max_buffer_size=max(1, len(data)))
    unpacker.feed(data)
    return unpacker


def s_depth_check(value):
    #  A scalar has depth 0; an array or map one more than its deepest value.
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Map):
            depth += 1
            children = [x for pair in item for x in pair]
        elif isinstance(item, list):
            depth += 1
            children = item
        else:
            continue
        if depth > MAX_DEPTH:
            raise Reject(EDEPTH, "nested deeper than %d" % MAX_DEPTH)
        stack.extend((child, depth) for child in children)


def s_object(unpacker, what):
    #  Reads one complete msgpack object within the depth limit.
    try:
        value = unpacker.unpack()
    except msgpack.exceptions.StackError:
        raise Reject(EDEPTH, "%s nested far too deep" % what)
    except Exception as error:
        raise Reject(EPROTO, "%s: malformed msgpack (%s)" % (what, type(error).__name__))
    s_depth_check(value)
    return value


def s_uint(value, limit, what):
    if type(value) is not int:
        raise Reject(EPROTO, "%s is %s, not an integer" % (what, type(value).__name__))
    if value < 0 or value > limit:
        raise Reject(EPROTO, "%s %d out of range" % (what, value))
    return value


def s_wire_len(text):
    return len(text.encode("utf-8", "surrogateescape"))


def s_str(value, low, what):
    if type(value) is not str:
        raise Reject(EPROTO, "%s is %s, not a str" % (what, type(value).__name__))
    size = s_wire_len(value)
    if size < low:
        raise Reject(EPROTO, "%s is empty" % what)
    if size > MAX_STRING:
        raise Reject(EPROTO, "%s is %d bytes" % (what, size))
    return value


def s_header(e1):
    #  Returns (version-1 header fields, element count, bytes used).
    unpacker = s_unpacker(e1)
    try:
        count = unpacker.read_array_header()
    except Exception:
        raise Reject(EPROTO, "E1 does not start with an array")
    if count == 0:
        raise Reject(EPROTO, "header array is empty")
    version = s_object(unpacker, "version")
    if type(version) is not int or version < 0:
        raise Reject(EPROTO, "version is not a non-negative integer")
    if version != VERSION:
        raise Reject(EVERSION, "version %d" % version)
    if count < MIN_ELEMENTS or count > MAX_ELEMENTS:
        raise Reject(EPROTO, "header has %d elements" % count)

    msg_id = s_object(unpacker, "id")
    if type(msg_id) is not bytes or len(msg_id) != ID_SIZE:
        raise Reject(EPROTO, "id is not a bin of 16 bytes")
    subject = s_str(s_object(unpacker, "subject"), 0, "subject")
    created_ms = s_uint(s_object(unpacker, "created_ms"), 2 ** 63 - 1, "created_ms")
    attempt = s_uint(s_object(unpacker, "attempt"), 2 ** 32 - 1, "attempt")

    try:
        pairs = unpacker.read_map_header()
    except Exception:
        raise Reject(EPROTO, "headers is not a map")
    if pairs * 2 > len(e1) - unpacker.tell():
        raise Reject(EPROTO, "headers declares %d pairs, more than the frame holds" % pairs)
    if pairs > MAX_HEADERS:
        raise Reject(EPROTO, "%d headers" % pairs)
    headers = []
    seen = set()
    for _ in range(pairs):
        name = s_str(s_object(unpacker, "header name"), 1, "header name")
        value = s_str(s_object(unpacker, "header value"), 0, "header value")
        if name in seen:
            raise Reject(EPROTO, "duplicate header %r" % name)
        seen.add(name)
        headers.append((name, value))

    for index in range(MIN_ELEMENTS, count):
        s_object(unpacker, "extension element %d" % index)
    return (msg_id, subject, created_ms, attempt, headers), count, unpacker.tell()


def s_body(data):
    if not data:
        raise Reject(EPROTO, "no body")
    unpacker = s_unpacker(data)
    body = s_object(unpacker, "body")
    if unpacker.tell() != len(data):
        raise Reject(EPROTO, "%d bytes after the body" % (len(data) - unpacker.tell()))
    return body


def decode(frames, max_size=MAX_SIZE):
    """Decodes the envelope frames of one message or raises Reject."""
    total = sum(len(frame) for frame in frames)
    if total > max_size:
        raise Reject(ETOOBIG, "%d bytes over max_size %d" % (total, max_size))
    if len(frames) not in (1, 2):
        raise Reject(EPROTO, "%d envelope frames" % len(frames))
    e1 = frames[0]
    fields, count, used = s_header(e1)
    if len(frames) == 1:
        if used == len(e1):
            raise Reject(EPROTO, "one-frame form without a body")
        body_bytes = e1[used:]
    else:
        if used != len(e1):
            raise Reject(EPROTO, "%d bytes after the header in E1" % (len(e1) - used))
        body_bytes = frames[1]
    body = s_body(body_bytes)
    return Envelope(*fields, body=body, body_bytes=body_bytes, elements=count,
                    frames=len(frames))


#  ---- Encoding -----------------------------------------------------------
def plain(value):
    """Turns a decoded value back into plain Python (maps into dicts)."""
    if isinstance(value, Map):
        return dict((plain(k), plain(v)) for k, v in value)
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def pack(value):
    return msgpack.packb(value, use_bin_type=True)


def header_bytes(msg_id, subject, created_ms, attempt, headers):
    return pack([VERSION, msg_id, subject, created_ms, attempt, dict(headers)])


def encode(msg_id, subject, created_ms, attempt, headers, body_bytes, form=None):
    """Returns the envelope frames; form 1 or 2, or None to choose as zq does."""
    header = header_bytes(msg_id, subject, created_ms, attempt, headers)
    if form is None:
        form = 2 if len(body_bytes) >= ZEROCOPY_MIN else 1
    if form == 1:
        return [header + body_bytes]
    return [header, body_bytes]


def make_id(sequence):
    now_ms = int(time.time() * 1000)
    return now_ms.to_bytes(6, "big") + sequence.to_bytes(2, "big") + os.urandom(8)


#  Hand-written encodings that a shortest-form encoder never produces.
def raw_uint64(value):
    return b"\xcf" + struct.pack(">Q", value)


def raw_int64(value):
    return b"\xd3" + struct.pack(">q", value)


def raw_uint32(value):
    return b"\xce" + struct.pack(">I", value)


def raw_bin32(data):
    return b"\xc6" + struct.pack(">I", len(data)) + data


def raw_str16(text):
    data = text.encode("utf-8")
    return b"\xda" + struct.pack(">H", len(data)) + data


def raw_array16(count):
    return b"\xdc" + struct.pack(">H", count)


def raw_map32(count):
    return b"\xdf" + struct.pack(">I", count)


def nested(depth):
    value = 0
    for _ in range(depth):
        value = [value]
    return value


#  ---- The JSON view zq gives of a body (include/zq_msg.h) ----------------
def b64(data):
    return base64.b64encode(data).decode("ascii")


def s_key_view(key):
    #  Keys with no JSON form (zq reports ZQ_EJSON) still need comparing.
    view = json_view(key)
    return repr(view) if isinstance(view, (list, dict)) else view


def json_view(value):
    if isinstance(value, Map):
        return dict((s_key_view(k), json_view(v)) for k, v in value)
    if isinstance(value, dict):
        return dict((json_view(k), json_view(v)) for k, v in value.items())
    if isinstance(value, list):
        return [json_view(item) for item in value]
    if isinstance(value, bytes):
        return {"$bin": b64(value)}
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return {"$bin": b64(value.encode("utf-8", "surrogateescape"))}
    if isinstance(value, msgpack.ExtType):
        return {"$ext": [value.code, b64(value.data)]}
    return value


#  ---- The cases sent to `interop_peer echo` -------------------------------
class Case(object):
    """One message for the C side: frames, and either the fields the C side
    must report or the error it must reject the message with."""

    def __init__(self, name, frames, expect=None, error=None, json_error=None):
        self.name = name
        self.frames = frames
        self.expect = expect        # (id, subject, created_ms, attempt, headers, body)
        self.error = error
        self.json_error = json_error    # the body has no JSON form in zq


def build_cases():
    cases = []
    sequence = [0]

    def valid(name, subject, headers, body, attempt=0, form=None, raw_body=False,
              body_bytes=None, json_error=None):
        sequence[0] += 1
        msg_id = make_id(sequence[0])
        created_ms = int(time.time() * 1000)
        if raw_body:
            headers = list(headers) + [("x-interop-body", "raw")]
        if body_bytes is None:
            body_bytes = pack(body)
        else:
            body = s_body(body_bytes)
        frames = encode(msg_id, subject, created_ms, attempt, headers, body_bytes, form)
        cases.append(Case(name, frames,
                          expect=(msg_id, subject, created_ms, attempt, headers, body),
                          json_error=json_error))

    def invalid(name, frames, error):
        cases.append(Case(name, frames, error=error))
        #  The socket must stay usable: a valid message follows each rejection.
        valid("after " + name, "ping", [], {"after": name})

    def fields(msg_id=None, subject="bad", created_ms=1700000000000, attempt=0, headers=()):
        return (msg_id if msg_id is not None else make_id(0), subject, created_ms, attempt,
                list(headers))

    def with_header(parts, body=None):
        #  parts: the header's elements as already-encoded msgpack bytes.
        data = (bytes([0x90 + len(parts)]) if len(parts) < 16 else raw_array16(len(parts)))
        data += b"".join(parts)
        return data + (pack(None) if body is None else body)

    def good_parts(**changes):
        msg_id, subject, created_ms, attempt, headers = fields()
        parts = [pack(1), pack(msg_id), pack(subject), pack(created_ms), pack(attempt),
                 pack(dict(headers))]
        for index, data in changes.items():
            parts[int(index[1:])] = data
        return parts

    #  -- Valid messages, both forms --------------------------------------
    valid("basic", "orders", [("trace", "t-1"), ("tenant", "acme")],
          {"order": "A-17", "cents": 1299, "paid": True, "note": None, "ratio": 0.25,
           "items": [1, 2, 3]})
    valid("non-ascii", "café/注文/заказ", [("note", "naïve ✓"), ("ключ", "значение")],
          {"text": "héllo wörld ✓ 日本", "emoji": "\U0001f600"})
    valid("binary body", "bin", [], {"blob": bytes(range(256)), "empty": b""})
    valid("nil body", "empty", [], None)
    valid("scalar body", "scalar", [], "just a string")
    valid("integer edges", "ints", [],
          [0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 63 - 1,
           -1, -32, -33, -128, -129, -32768, -32769, -2 ** 31, -2 ** 31 - 1, -2 ** 63])
    valid("floats", "floats", [], [0.5, -1.25, 1e300, 2.0, 3.141592653589793])
    large = bytes((i * 7) % 251 for i in range(300000))
    valid("large body, two frames", "large", [("size", "300000")], {"blob": large, "n": 42})
    valid("large body in one frame", "large", [], {"blob": large[:20000]}, form=1)
    valid("small body in two frames", "small", [], {"k": "v"}, form=2)
    valid("attempt at its maximum", "retry", [], 1, attempt=2 ** 32 - 1)
    valid("limits reached", "s" * MAX_STRING,
          [("h%02d" % i, "v%d" % i) for i in range(MAX_HEADERS - 1)]
          + [("k" * MAX_STRING, "v" * MAX_STRING)], True)
    valid("depth 32", "deep", [], nested(MAX_DEPTH))
    valid("raw body: ext, float32, non-UTF-8 str", "raw", [], None, raw_body=True,
          body_bytes=(b"\x84" + pack("ext") + b"\xd4\x05\x01" + pack("f32")
                      + b"\xca\x3f\xc0\x00\x00" + pack("bad") + b"\xa2\xff\xfe"
                      + pack("k") + pack({"inner": [1]})))
    valid("non-str map keys", "keys", [], None, raw_body=True, json_error="ZQ_EJSON",
          body_bytes=b"\x83\x01\xa1a\x91\x02\xa1b\xc0\xa1c")

    #  Extension elements and non-shortest encodings are accepted.
    msg_id, subject, created_ms, attempt, headers = fields(subject="ext",
                                                           headers=[("a", "b")])
    body = {"with": "extensions"}
    e1 = (bytes([0x98]) + pack(1) + pack(msg_id) + pack(subject) + pack(created_ms)
          + pack(attempt) + pack(dict(headers)) + pack({"future": [1, 2, {"x": None}]})
          + pack(nested(MAX_DEPTH)) + pack(body))
    cases.append(Case("extension elements", [e1],
                      expect=(msg_id, subject, created_ms, attempt, headers, body)))
    msg_id, subject, created_ms, attempt, headers = fields(subject="long forms", attempt=3,
                                                           headers=[("x", "1"), ("y", "2")])
    body = ["long", "forms"]
    e1 = (raw_array16(6) + raw_uint64(1) + raw_bin32(msg_id) + raw_str16(subject)
          + raw_int64(created_ms) + raw_uint32(attempt) + raw_map32(2)
          + raw_str16("x") + raw_str16("1") + pack("y") + pack("2"))
    cases.append(Case("non-shortest encodings", [e1, pack(body)],
                      expect=(msg_id, subject, created_ms, attempt, headers, body)))

    #  Exactly max_size is within the limit.
    msg_id, subject, created_ms, attempt, headers = fields(subject="max")
    header = header_bytes(msg_id, subject, created_ms, attempt, headers)
    blob = b"\x00" * (MAX_SIZE - len(header) - 5)
    body_bytes = b"\xc6" + struct.pack(">I", len(blob)) + blob
    assert len(header) + len(body_bytes) == MAX_SIZE
    cases.append(Case("exactly max_size", [header, body_bytes],
                      expect=(msg_id, subject, created_ms, attempt, headers, blob)))

    #  -- Invalid messages ------------------------------------------------
    good = encode(*fields(), pack({"a": 1}), form=1)[0]
    invalid("version 2", [pack([2, "anything", "may", "follow"]) + b"\xc1\xc1"], EVERSION)
    invalid("version 2 alone", [b"\x91\x02"], EVERSION)
    invalid("version 2^64-1", [with_header(good_parts(e0=raw_uint64(2 ** 64 - 1)))], EVERSION)
    invalid("version 0", [with_header(good_parts(e0=pack(0)))], EVERSION)
    invalid("version -1", [with_header(good_parts(e0=pack(-1)))], EPROTO)
    invalid("version as str", [with_header(good_parts(e0=pack("1")))], EPROTO)
    invalid("version as bool", [with_header(good_parts(e0=pack(True)))], EPROTO)
    invalid("not an array", [pack({"version": 1}) + pack(None)], EPROTO)
    invalid("empty frame", [b""], EPROTO)
    invalid("empty array", [b"\x90\xc0"], EPROTO)
    invalid("5 elements", [with_header(good_parts()[:5])], EPROTO)
    invalid("17 elements", [with_header(good_parts() + [pack(None)] * 11)], EPROTO)
    invalid("truncated header", [good[:20]], EPROTO)
    invalid("truncated body", [good[:-1]], EPROTO)
    invalid("no body", [header_bytes(*fields())], EPROTO)
    invalid("byte after the body", [good + b"\xc0"], EPROTO)
    invalid("three frames", [header_bytes(*fields()), pack(1), pack(2)], EPROTO)
    invalid("two frames, bytes after the header",
            [header_bytes(*fields()) + pack(1), pack(2)], EPROTO)
    invalid("two frames, empty body frame", [header_bytes(*fields()), b""], EPROTO)
    invalid("two frames, bytes after the body", [header_bytes(*fields()), pack(1) + pack(2)],
            EPROTO)
    invalid("id of 15 bytes", [with_header(good_parts(e1=pack(b"x" * 15)))], EPROTO)
    invalid("id of 17 bytes", [with_header(good_parts(e1=pack(b"x" * 17)))], EPROTO)
    invalid("id as str", [with_header(good_parts(e1=pack("x" * 16)))], EPROTO)
    invalid("subject as bin", [with_header(good_parts(e2=pack(b"orders")))], EPROTO)
    invalid("subject of 4097 bytes", [with_header(good_parts(e2=pack("s" * 4097)))], EPROTO)
    invalid("created_ms negative", [with_header(good_parts(e3=pack(-1)))], EPROTO)
    invalid("created_ms as float", [with_header(good_parts(e3=pack(1.5)))], EPROTO)
    invalid("attempt 2^32", [with_header(good_parts(e4=pack(2 ** 32)))], EPROTO)
    invalid("attempt negative", [with_header(good_parts(e4=pack(-1)))], EPROTO)
    invalid("headers as array", [with_header(good_parts(e5=pack(["a", "b"])))], EPROTO)
    invalid("header value int", [with_header(good_parts(e5=pack({"a": 1})))], EPROTO)
    invalid("header name bin", [with_header(good_parts(e5=pack({b"a": "b"})))], EPROTO)
    invalid("header name empty", [with_header(good_parts(e5=pack({"": "b"})))], EPROTO)
    invalid("duplicate header",
            [with_header(good_parts(e5=b"\x82" + pack("a") + pack("1") + pack("a")
                                    + pack("2")))], EPROTO)
    invalid("65 headers",
            [with_header(good_parts(e5=pack(dict(("h%d" % i, "v") for i in range(65)))))],
            EPROTO)
    invalid("header name of 4097 bytes",
            [with_header(good_parts(e5=pack({"k" * 4097: "v"})))], EPROTO)
    invalid("header value of 4097 bytes",
            [with_header(good_parts(e5=pack({"k": "v" * 4097})))], EPROTO)
    invalid("body depth 33", [with_header(good_parts(), pack(nested(MAX_DEPTH + 1)))],
            EDEPTH)
    invalid("body depth 100000", [with_header(good_parts(), b"\x91" * 100000 + b"\xc0")],
            EDEPTH)
    invalid("extension depth 33",
            [with_header(good_parts() + [pack(nested(MAX_DEPTH + 1))], pack(1))], EDEPTH)
    invalid("byte 0xc1 in the body", [with_header(good_parts(), b"\xc1")], EPROTO)
    invalid("byte 0xc1 in an extension", [with_header(good_parts() + [b"\xc1"])], EPROTO)
    invalid("str declaring 2^32-1 bytes", [with_header(good_parts(), b"\xdb\xff\xff\xff\xff")],
            EPROTO)
    invalid("array declaring 2^32-1 elements",
            [with_header(good_parts(), b"\xdd\xff\xff\xff\xff")], EPROTO)
    invalid("map declaring 2^32-1 pairs", [with_header(good_parts(), b"\xdf\xff\xff\xff\xff")],
            EPROTO)
    invalid("headers declaring 2^32-1 pairs",
            [with_header(good_parts(e5=b"\xdf\xff\xff\xff\xff"))], EPROTO)
    invalid("bin id declaring 2^32-1 bytes",
            [with_header(good_parts(e1=b"\xc6\xff\xff\xff\xff"))], EPROTO)
    over = encode(*fields(), pack(b"\x00" * MAX_SIZE), form=1)
    invalid("one frame over max_size", over, ETOOBIG)
    header = header_bytes(*fields())
    invalid("two frames over max_size", [header, pack(b"\x00" * (MAX_SIZE - len(header) - 4))],
            ETOOBIG)
    return cases


#  ---- Checks -------------------------------------------------------------
class Checker(object):
    def __init__(self):
        self.failures = 0
        self.passes = 0

    def check(self, condition, what):
        if condition:
            self.passes += 1
        else:
            self.failures += 1
            print("FAIL: %s" % what)
        return condition


def s_headers_json(headers):
    return [[name, value] for name, value in headers]


def selftest(checker):
    """This decoder must give every case the verdict the case expects."""
    for case in build_cases():
        try:
            envelope = decode(case.frames)
            verdict = None
        except Reject as reject:
            verdict = reject.code
            envelope = None
        checker.check(verdict == case.error,
                      "selftest %s: decoder says %s, expected %s" % (case.name, verdict,
                                                                   case.error))
        if envelope is not None and case.expect is not None:
            msg_id, subject, created_ms, attempt, headers, body = case.expect
            checker.check((envelope.id, envelope.subject, envelope.created_ms,
                           envelope.attempt, envelope.headers)
                          == (msg_id, subject, created_ms, attempt, list(headers)),
                          "selftest %s: fields" % case.name)
            checker.check(json_view(envelope.body) == json_view(body),
                          "selftest %s: body" % case.name)


def s_socket(context, endpoint):
    socket = context.socket(zmq.PAIR)
    socket.setsockopt(zmq.LINGER, 5000)
    socket.setsockopt(zmq.RCVTIMEO, RECV_TIMEOUT_MS)
    socket.setsockopt(zmq.SNDTIMEO, RECV_TIMEOUT_MS)
    socket.bind(endpoint)
    return socket


def s_check_reencode(checker, name, envelope, frames, body_bytes=None):
    """Our encoder, given the fields the C side wrote and the body (by
    default re-encoded from its decoded value), must write its bytes."""
    if body_bytes is None:
        body_bytes = pack(plain(envelope.body))
    expected = encode(envelope.id, envelope.subject, envelope.created_ms, envelope.attempt,
                      envelope.headers, body_bytes)
    checker.check(len(frames) == len(expected),
                  "%s: C wrote %d envelope frames for a %d-byte body, expected %d"
                  % (name, len(frames), len(envelope.body_bytes), len(expected)))
    for index, (ours, theirs) in enumerate(zip(expected, frames)):
        if not checker.check(ours == theirs, "%s: frame %d differs from our encoding"
                             % (name, index)):
            print("   ours:   %s" % ours[:96].hex())
            print("   theirs: %s" % theirs[:96].hex())


def run_echo(checker, endpoint):
    context = zmq.Context()
    socket = s_socket(context, endpoint)
    try:
        for case in build_cases():
            socket.send_multipart(case.frames)
            try:
                reply = socket.recv_multipart()
            except zmq.Again:
                checker.check(False, "%s: no reply from the C side within %d ms"
                              % (case.name, RECV_TIMEOUT_MS))
                return
            report = json.loads(reply[0].decode("utf-8"))
            if case.error is not None:
                checker.check(report.get("error") == case.error and len(reply) == 1,
                              "%s: C side says %s, expected %s"
                              % (case.name, report.get("error", "ok"), case.error))
                continue
            if not checker.check(report.get("error") is None,
                                 "%s: C side rejected a valid message: %s"
                                 % (case.name, report.get("error"))):
                continue
            msg_id, subject, created_ms, attempt, headers, body = case.expect
            #  What the C side decoded.
            checker.check(report["id"] == msg_id.hex(), "%s: id" % case.name)
            checker.check(report["subject"] == subject, "%s: subject" % case.name)
            checker.check(report["created_ms"] == created_ms, "%s: created_ms" % case.name)
            checker.check(report["attempt"] == attempt, "%s: attempt" % case.name)
            checker.check(report["headers"] == s_headers_json(headers),
                          "%s: headers %r" % (case.name, report["headers"][:4]))
            if case.json_error:
                checker.check(report.get("body_error") == case.json_error,
                              "%s: body_json gave %s, expected %s"
                              % (case.name, report.get("body_error", "JSON"), case.json_error))
            else:
                checker.check(report.get("body") == json_view(body),
                              "%s: body as JSON %s" % (case.name,
                                                       json.dumps(report.get("body"))[:200]))
            #  What the C side re-sent: a message it built from those fields.
            try:
                envelope = decode(reply[1:])
            except Reject as reject:
                checker.check(False, "%s: the C side's message is invalid: %s"
                              % (case.name, reject))
                continue
            checker.check(envelope.elements == MIN_ELEMENTS, "%s: C wrote %d header elements"
                          % (case.name, envelope.elements))
            checker.check((envelope.id, envelope.subject, envelope.attempt, envelope.headers)
                          == (msg_id, subject, attempt, list(headers)),
                          "%s: fields of the re-sent message" % case.name)
            checker.check(abs(envelope.created_ms - time.time() * 1000) < 60000,
                          "%s: re-sent created_ms %d is not now" % (case.name,
                                                                     envelope.created_ms))
            checker.check(json_view(envelope.body) == json_view(body),
                          "%s: re-sent body" % case.name)
            #  The body we sent was in shortest form; the C side, whether it
            #  went through JSON or copied the bytes, must write the same.
            s_check_reencode(checker, case.name, envelope, reply[1:],
                             decode(case.frames).body_bytes)
    finally:
        socket.close()
        context.term()


#  The messages `interop_peer send` writes, in order; keep in step with
#  s_send in interop_peer.c. Each: (subject, attempt, headers, body, fixed id).
FIXED_ID = bytes(range(16))


def send_expectations():
    expected = [
        ("orders", 0, [("trace", "t-1"), ("tenant", "acme")],
         {"order": "A-17", "cents": 1299, "paid": True, "note": None}, None),
        ("café/注文/заказ", 0, [("note", "naïve ✓")],
         {"text": "héllo wörld ✓ 日本", "list": [1, -2, 3.5, None, True, False, "x"],
          "nested": {"a": {"b": [[]]}}}, None),
        ("bin", 0, [], bytes(range(256)), None),
        ("empty", 0, [], None, None),
        ("large", 0, [], {"blob": bytes((i * 7) % 251 for i in range(100000)), "n": 42}, None),
        ("attempt", 7, [("reason", "redelivery")], "same id", FIXED_ID),
        ("ints", 0, [],
         [0, -1, -32, -33, -128, -129, -32768, -32769, -2 ** 31 - 1, -2 ** 63,
          127, 128, 255, 256, 65535, 65536, 2 ** 32, 2 ** 64 - 1], None),
        ("s" * MAX_STRING, 0, [("h%02d" % i, "v%d" % i) for i in range(MAX_HEADERS)], [],
         None),
    ]
    for index in range(10):
        expected.append(("seq", 0, [("n", str(index))], index, None))
    return expected


def run_recv(checker, endpoint):
    context = zmq.Context()
    socket = s_socket(context, endpoint)
    started_ms = time.time() * 1000
    ids = []
    try:
        for index, (subject, attempt, headers, body, fixed_id) in \
                enumerate(send_expectations()):
            name = "send #%d (%s)" % (index, subject[:20])
            try:
                frames = socket.recv_multipart()
            except zmq.Again:
                checker.check(False, "%s: nothing from the C side within %d ms"
                              % (name, RECV_TIMEOUT_MS))
                return
            try:
                envelope = decode(frames)
            except Reject as reject:
                checker.check(False, "%s: invalid: %s" % (name, reject))
                continue
            checker.check(envelope.elements == MIN_ELEMENTS, "%s: %d header elements"
                          % (name, envelope.elements))
            checker.check(envelope.subject == subject, "%s: subject %r" % (name,
                                                                           envelope.subject))
            checker.check(envelope.attempt == attempt, "%s: attempt" % name)
            checker.check(envelope.headers == headers, "%s: headers" % name)
            checker.check(json_view(envelope.body) == json_view(body),
                          "%s: body %s" % (name, json.dumps(json_view(envelope.body))[:200]))
            checker.check(started_ms - 60000 < envelope.created_ms < time.time() * 1000 + 1000,
                          "%s: created_ms %d is not now" % (name, envelope.created_ms))
            if fixed_id is not None:
                checker.check(envelope.id == fixed_id, "%s: id set by zq_msg_set_id" % name)
            else:
                id_ms = int.from_bytes(envelope.id[:6], "big")
                checker.check(0 <= id_ms - envelope.created_ms < 1000,
                              "%s: id time %d vs created_ms %d" % (name, id_ms,
                                                                  envelope.created_ms))
                ids.append(envelope.id)
            s_check_reencode(checker, name, envelope, frames)
        checker.check(all(a < b for a, b in zip(ids, ids[1:])),
                      "ids from one C thread are not strictly increasing: %s"
                      % [i.hex() for i in ids])
        checker.check(len(set(i[8:] for i in ids)) == len(ids),
                      "ids from one C thread repeat random octets (each id draws its own)")
        socket.send(b"done")
    finally:
        socket.close()
        context.term()


def main(argv):
    if len(argv) == 2 and argv[1] == "cases":
        print(len(build_cases()))
        return 0
    checker = Checker()
    if len(argv) == 2 and argv[1] == "selftest":
        selftest(checker)
    elif len(argv) == 3 and argv[1] == "echo":
        selftest(checker)
        run_echo(checker, argv[2])
    elif len(argv) == 3 and argv[1] == "recv":
        run_recv(checker, argv[2])
    else:
        sys.stderr.write("usage: envelope_peer.py cases | selftest | echo ENDPOINT"
                         " | recv ENDPOINT\n")
        return 2
    print("%s: %d checks passed, %d failed" % (argv[1], checker.passes, checker.failures))
    return 1 if checker.failures or not checker.passes else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
