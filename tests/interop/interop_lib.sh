#   Shell functions shared by zq's interop tests
#   (`. "$(dirname "$0")/interop_lib.sh"`, after setting test_name). Sets
#   srcdir, builddir and python from the environment `make check` gives.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.

srcdir=${ZQ_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${ZQ_BUILDDIR:-$(pwd)}
python=${ZQ_PYTHON:-/usr/bin/python3}

fail () {
    echo "$test_name: FAIL: $*" >&2
    exit 1
}

#  check_peers PEER_C PEER_PY: the C side is built, the Python side is
#  there, and Python has zmq and msgpack.
check_peers () {
    [ -x "$1" ] || fail "$1 is not built"
    [ -r "$2" ] || fail "$2 not found"
    "$python" -c 'import zmq, msgpack' 2>/dev/null \
        || fail "$python cannot import zmq and msgpack; install python3-zmq and python3-msgpack"
}

#  run_over_transports NAME TIMEOUT_S PEER_PY PEER_C: runs the Python peer,
#  which starts PEER_C, over tcp then ipc (IPC_DIR: a private directory
#  named after NAME), each run within TIMEOUT_S; then exits 0 after
#  printing PASS, or fails.
run_over_transports () {
    check_peers "$4" "$3"
    IPC_DIR=$(mktemp -d "${TMPDIR:-/tmp}/zq-interop-$1.XXXXXX") || fail "mktemp -d failed"
    export IPC_DIR
    trap 'rm -rf "$IPC_DIR"' EXIT
    trap 'exit 1' HUP INT TERM

    status=0
    for transport in tcp ipc; do
        timeout "$2" "$python" "$3" "$4" "$transport" || status=1
    done
    [ $status -eq 0 ] || fail "see above"
    echo "$test_name: PASS"
    exit 0
}
