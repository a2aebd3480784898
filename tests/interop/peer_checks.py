#   Failure, check and a strict envelope decoder, shared by zq's Python
#   interop peers (pubsub_peer.py, rpc_peer.py): a peer raises Failure
#   through check, and its main reports the message and exits 1.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.

import msgpack


class Failure(Exception):
    pass


def check(condition, what):
    """Raises Failure(what) unless condition holds."""
    if not condition:
        raise Failure(what)


def decode_envelope(frames):
    """Returns (header list, body object) of a message's envelope frames
    (PROTOCOL.md section 8: one frame, or the header and the body), each
    field checked strictly; raises Failure on anything else."""
    check(1 <= len(frames) <= 2, "envelope of %d frames" % len(frames))
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(frames[0])
    header = unpacker.unpack()
    check(isinstance(header, list) and 6 <= len(header) <= 16, "header is not an array of 6-16")
    check(header[0] == 1, "envelope version %r" % (header[0],))
    check(isinstance(header[1], bytes) and len(header[1]) == 16, "id is not 16 octets")
    check(isinstance(header[2], str), "subject is not a str")
    check(isinstance(header[3], int) and header[3] >= 0, "created_ms")
    check(isinstance(header[4], int) and 0 <= header[4] < 2**32, "attempt")
    check(isinstance(header[5], dict), "headers is not a map")
    if len(frames) == 1:
        body_bytes = frames[0][unpacker.tell():]
    else:
        check(unpacker.tell() == len(frames[0]), "octets after the header")
        body_bytes = frames[1]
    check(len(body_bytes) > 0, "no body")
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(body_bytes)
    body = unpacker.unpack()
    check(unpacker.tell() == len(body_bytes), "octets after the body")
    return header, body
