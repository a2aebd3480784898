#   Shell functions shared by zq's zqd tests (`. "$(dirname "$0")/test_lib.sh"`,
#   then `test_start NAME PROGRAM...`). They use what the test sets: limit
#   (seconds any one wait may take) and pid (the zqd it started); and what
#   test_start sets: test_name (for messages), builddir, zqd_bin, zq_bin,
#   python (for CURVE keys) and work (its private directory).
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.

#  test_start NAME PROGRAM...: the start every zqd test shares. Sets
#  test_name, builddir (ZQ_BUILDDIR, else here), zqd_bin, zq_bin and
#  python (ZQ_PYTHON, else /usr/bin/python3); exits 1 unless each PROGRAM
#  (zqd, zq) is built; makes $work, removed at exit after every background
#  job still running (a zqd the test started with &) is killed.
test_start () {
    test_name=$1
    shift
    builddir=${ZQ_BUILDDIR:-$(pwd)}
    zqd_bin="$builddir/src/zqd"
    zq_bin="$builddir/src/zq"
    python=${ZQ_PYTHON:-/usr/bin/python3}
    for program in "$@"; do
        [ -x "$builddir/src/$program" ] \
            || { echo "$test_name: $builddir/src/$program is not built" >&2; exit 1; }
    done
    work=$(mktemp -d "${TMPDIR:-/tmp}/zq-$test_name.XXXXXX") || exit 1
    trap test_cleanup EXIT
}

#  test_cleanup: the exit trap of test_start.
test_cleanup () {
    for job in $(jobs -p); do
        kill -9 "$job" 2> /dev/null
    done
    rm -rf "$work"
}

#  fail TEXT...: prints TEXT and the tail of every $work/*.err, exits 1.
fail () {
    echo "$test_name: FAIL: $*" >&2
    for log in "$work"/*.err; do
        [ -f "$log" ] && { echo "--- $log"; tail -n 20 "$log"; } >&2
    done
    exit 1
}

#  wait_listening NAME: waits (bounded) until the zqd started as $pid,
#  writing to $work/NAME.out and NAME.err, prints its "listening" line.
#  Sets endpoint and admin (empty if zqd has no admin endpoint).
wait_listening () {
    tries=0
    endpoint=""
    while [ $tries -lt $((limit * 20)) ]; do
        endpoint=$(sed -n 's/^zqd: listening on //p' "$work/$1.out" 2>/dev/null)
        [ -n "$endpoint" ] && break
        kill -0 "$pid" 2>/dev/null || fail "zqd $1 exited: $(cat "$work/$1.err")"
        tries=$((tries + 1))
        sleep 0.05
    done
    [ -n "$endpoint" ] || fail "zqd $1 did not start"
    admin=$(sed -n 's/^zqd: admin on //p' "$work/$1.out")
}

#  signal_and_reap SIGNAL: sends SIGNAL to the zqd $pid and waits (within
#  the limit) until it exits; sets status to its exit status.
signal_and_reap () {
    kill -"$1" "$pid"
    tries=0
    while kill -0 "$pid" 2>/dev/null && [ $tries -lt $((limit * 20)) ]; do
        tries=$((tries + 1))
        sleep 0.05
    done
    kill -0 "$pid" 2>/dev/null && fail "zqd did not exit on SIG$1"
    wait "$pid"
    status=$?
}

#  stop: SIGTERM to the zqd $pid, then its exit status must be 0 within
#  the limit.
stop () {
    signal_and_reap TERM
    [ "$status" -eq 0 ] || fail "zqd exited $status after SIGTERM"
}

#  require_curve_keys: fails the test unless $python can make CURVE keys.
require_curve_keys () {
    "$python" -c 'import zmq; assert zmq.has("curve")' 2> /dev/null \
        || { echo "$test_name: FAIL: no CURVE key maker: install python3-zmq" >&2; exit 1; }
}

#  make_cert NAME: writes $work/NAME.cert (public) and NAME.cert_secret
#  (0600), as zmakecert does; prints the public key.
make_cert () {
    "$python" - "$work/$1.cert" <<'EOF'
import os, sys, zmq
public, secret = (key.decode() for key in zmq.curve_keypair())
path = sys.argv[1]
with open(path, "w") as out:
    out.write('curve\n    public-key = "%s"\n' % public)
with open(path + "_secret", "w") as out:
    out.write('curve\n    public-key = "%s"\n    secret-key = "%s"\n' % (public, secret))
os.chmod(path + "_secret", 0o600)
print(public)
EOF
}

