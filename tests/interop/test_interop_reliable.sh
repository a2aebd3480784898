#!/bin/sh
#   zq's reliable interop test: a Python peer written from doc/PROTOCOL.md
#   (pyzmq + msgpack-python) puts and gets through a zq server
#   (tests/reliable_proc), over tcp and ipc, and trades messages with zq's
#   own producer and consumer. The Python side bounds every wait.
#
#   Run by `make check` with ZQ_SRCDIR, ZQ_BUILDDIR and ZQ_PYTHON set; also
#   by hand from a build directory. Exits 0 on pass, 1 on failure.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.

set -u

srcdir=${ZQ_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${ZQ_BUILDDIR:-$(pwd)}
python=${ZQ_PYTHON:-/usr/bin/python3}
peer_py="$srcdir/tests/interop/reliable_peer.py"
peer_c="$builddir/tests/reliable_proc"

fail () {
    echo "test_interop_reliable: FAIL: $*" >&2
    exit 1
}

[ -x "$peer_c" ] || fail "$peer_c is not built"
[ -r "$peer_py" ] || fail "$peer_py not found"
"$python" -c 'import zmq, msgpack' 2>/dev/null \
    || fail "$python cannot import zmq and msgpack; install python3-zmq and python3-msgpack"

IPC_DIR=$(mktemp -d "${TMPDIR:-/tmp}/zq-interop-reliable.XXXXXX") || fail "mktemp -d failed"
export IPC_DIR
trap 'rm -rf "$IPC_DIR"' EXIT
trap 'exit 1' HUP INT TERM

status=0
for transport in tcp ipc; do
    timeout 120 "$python" "$peer_py" "$peer_c" "$transport" || status=1
done
exit $status
