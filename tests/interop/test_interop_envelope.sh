#!/bin/sh
#   zq's envelope interop test: a Python peer written from doc/PROTOCOL.md
#   (pyzmq + msgpack-python) and tests/interop/interop_peer (libzq) exchange
#   ZQ/1 messages both ways over ipc:// sockets.
#
#   Run by `make check` with ZQ_SRCDIR, ZQ_BUILDDIR and ZQ_PYTHON set; also
#   by hand from a build directory. Exits 0 on pass, 1 on failure.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.

set -u

test_name=test_interop_envelope
. "$(dirname "$0")/interop_lib.sh"
peer_py="$srcdir/tests/interop/envelope_peer.py"
peer_c="$builddir/tests/interop/interop_peer"
#  make memcheck runs the C side under valgrind.
valgrind=${ZQ_VALGRIND:-}
deadline=60

check_peers "$peer_c" "$peer_py"

workdir=$(mktemp -d "${TMPDIR:-/tmp}/zq-interop.XXXXXX") || fail "mktemp -d failed"
c_pid=
cleanup () {
    if [ -n "$c_pid" ]; then
        kill "$c_pid" 2>/dev/null
        wait "$c_pid" 2>/dev/null
    fi
    rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

status=0

#  run_pair NAME C-ARGS... -- PY-ARGS...: starts the C peer in the
#  background, runs the Python peer, waits for both, and reports.
run_pair () {
    name=$1
    shift
    c_args=
    while [ "$1" != "--" ]; do
        c_args="$c_args $1"
        shift
    done
    shift
    # shellcheck disable=SC2086
    timeout "$deadline" $valgrind "$peer_c" $c_args >"$workdir/$name.c.out" \
        2>"$workdir/$name.c.err" &
    c_pid=$!
    timeout "$deadline" "$python" "$peer_py" "$@" >"$workdir/$name.py.out" 2>&1
    py_status=$?
    wait "$c_pid"
    c_status=$?
    c_pid=
    cat "$workdir/$name.py.out"
    if [ $py_status -ne 0 ] || [ $c_status -ne 0 ]; then
        echo "--- $name: python peer exited $py_status, C peer exited $c_status" \
             "(124 means the $deadline s deadline passed)"
        echo "--- C peer stderr:"
        cat "$workdir/$name.c.err"
        echo "--- C peer stdout (last lines):"
        tail -n 20 "$workdir/$name.c.out"
        status=1
    else
        echo "$name: ok ($(wc -l <"$workdir/$name.c.out") messages handled by the C peer)"
    fi
}

count=$("$python" "$peer_py" cases) || fail "cannot count the echo cases"

#  Python -> C -> Python: valid and invalid envelopes, re-encoded by zq.
run_pair echo echo "ipc://$workdir/echo.ipc" "$count" -- echo "ipc://$workdir/echo.ipc"
#  C -> Python: messages built with the zq_msg API, decoded strictly.
run_pair send send "ipc://$workdir/send.ipc" -- recv "ipc://$workdir/send.ipc"

[ $status -eq 0 ] || fail "see above"
echo "test_interop_envelope: PASS"
exit 0
