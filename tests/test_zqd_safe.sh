#!/bin/sh
#   zqd is safe by default: without CURVE it refuses to bind beyond
#   loopback (exit 2, one line naming the endpoint and the remedy) unless
#   started with --insecure or device/insecure = true; a tcp admin endpoint
#   beyond loopback is refused even then; with CURVE it binds anywhere; a
#   secret-key file open to group or others is refused naming the file and
#   its mode; a libzmq older than 4.3.3 (zmq_old_version.so preloaded) is
#   refused; the spool's directories are 0700 and its files and the ipc
#   sockets (admin and device/bind) 0600 even under umask 022.
#
#   Binding beyond loopback happens only for a moment (tcp://0.0.0.0:*,
#   stopped as soon as zqd says it listens); no traffic leaves the machine.
#   Run by `make check` with ZQ_BUILDDIR and ZQ_PYTHON set. Every wait is
#   bounded. Exits 0 on pass, 1 on failure.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.

set -u
#  Z85 keys may hold glob characters (*, ?, [): expand no patterns.
set -f

limit=20
#  A zqd that should refuse at once but serves instead is stopped after this.
refuse_limit=5

. "$(dirname "$0")/test_lib.sh"
test_start test_zqd_safe zqd
require_curve_keys

#  refused NAME TEXT ARGS...: zqd ARGS must exit 2 at once with TEXT (a
#  fixed string) in its one-line message on stderr.
refused () {
    name=$1
    text=$2
    shift 2
    timeout "$refuse_limit" "$zqd_bin" "$@" > "$work/$name.out" 2> "$work/$name.err"
    status=$?
    [ $status -eq 2 ] || fail "$name: zqd $* exited $status, not 2 (124: it served)"
    grep -qF -- "$text" "$work/$name.err" \
        || fail "$name: no '$text' in: $(cat "$work/$name.err")"
    [ "$(wc -l < "$work/$name.err")" -eq 1 ] \
        || fail "$name: more than one line: $(cat "$work/$name.err")"
    echo "$name: $(cat "$work/$name.err")"
    rm -f "$work/$name.err" "$work/$name.out"
}

#  starts NAME ARGS...: zqd ARGS serves; stopped at once with SIGTERM.
starts () {
    name=$1
    shift
    "$zqd_bin" "$@" > "$work/$name.out" 2> "$work/$name.err" &
    pid=$!
    wait_listening "$name"
    stop
    pid=""
    rm -f "$work/$name.err" "$work/$name.out"
}

#  checks_ok BIND: zqd --check accepts BIND as device/bind.
checks_ok () {
    timeout "$limit" "$zqd_bin" --check --bind "$1" > /dev/null 2> "$work/check.err" \
        || fail "--check refused local endpoint $1: $(cat "$work/check.err")"
}

#  checks_refused BIND: zqd --check refuses BIND (exit 2) naming it.
checks_refused () {
    timeout "$limit" "$zqd_bin" --check --bind "$1" > /dev/null 2> "$work/check.err"
    status=$?
    [ $status -eq 2 ] || fail "--check accepted $1 without CURVE (exit $status)"
    grep -qF -- "'$1'" "$work/check.err" || fail "--check of $1: $(cat "$work/check.err")"
}

#  Which endpoints count as local (no binding: --check opens nothing).
for bind in 'tcp://127.0.0.1:5670' 'tcp://127.1.2.3:5670' 'tcp://localhost:5670' \
    'tcp://[::1]:5670' "ipc://$work/queues" 'inproc://queues' \
    'tcp://127.0.0.1:5670,ipc://@zq-safe'; do
    checks_ok "$bind"
done
for bind in 'tcp://0.0.0.0:5670' 'tcp://*:5670' 'tcp://[::]:5670' 'tcp://10.1.2.3:5670' \
    'tcp://eth0:5670' 'tcp://[::ffff:10.0.0.1]:5670' 'ws://127.0.0.1:5670'; do
    checks_refused "$bind"
done
checks_refused 'tcp://192.168.1.1:5670'
timeout "$limit" "$zqd_bin" --check --bind 'tcp://127.0.0.1:5670,tcp://0.0.0.0:5671' \
    > /dev/null 2> "$work/check.err"
[ $? -eq 2 ] || fail "--check accepted a list with one wildcard endpoint"
rm -f "$work/check.err"

#  Refused without CURVE: the queue endpoint, a stream's in, a wildcard.
refused bind "refusing to bind 'tcp://0.0.0.0:*' without CURVE" --bind 'tcp://0.0.0.0:*'
grep -q "insecure" "$work/bind.out" 2> /dev/null && fail "message on stdout"
refused wildcard "device/bind: refusing to bind 'tcp://*:*'" --bind 'tcp://*:*'
cat > "$work/stream.cfg" <<EOF
device
    bind = tcp://127.0.0.1:*
queues
    feed
        kind = stream
        in = tcp://0.0.0.0:*
        out = tcp://127.0.0.1:*
EOF
refused stream "queues/feed/in: refusing to bind 'tcp://0.0.0.0:*'" --config "$work/stream.cfg"
timeout "$limit" "$zqd_bin" --bind 'tcp://0.0.0.0:*' > /dev/null 2> "$work/remedy.err"
grep -q -- "--insecure" "$work/remedy.err" || fail "no remedy named: $(cat "$work/remedy.err")"
grep -q "device/curve" "$work/remedy.err" || fail "CURVE not named: $(cat "$work/remedy.err")"
rm -f "$work/remedy.err"

#  The allowed paths: loopback, --insecure, device/insecure = true.
starts loopback --bind 'tcp://127.0.0.1:*'
starts insecure --insecure --bind 'tcp://0.0.0.0:*'
cat > "$work/insecure.cfg" <<EOF
device
    bind = tcp://0.0.0.0:*
    insecure = true
EOF
starts insecure_key --config "$work/insecure.cfg"
sed 's/insecure = true/insecure = yes/' "$work/insecure.cfg" > "$work/yes.cfg"
refused insecure_value "device/insecure: 'yes' is not true or false" --config "$work/yes.cfg"

#  The admin socket has no authentication: loopback or ipc only, even
#  with --insecure.
refused admin "device/admin: refusing to bind 'tcp://0.0.0.0:*'" --insecure \
    --bind 'tcp://127.0.0.1:*' --admin 'tcp://0.0.0.0:*'
refused admin_star "device/admin: refusing to bind 'tcp://*:*'" \
    --bind 'tcp://127.0.0.1:*' --admin 'tcp://*:*'
starts admin_loopback --bind 'tcp://127.0.0.1:*' --admin 'tcp://127.0.0.1:*'

#  With CURVE: binds beyond loopback; a secret key open to others is refused.
make_cert server > /dev/null || fail "cannot make the server certificate"
mkdir "$work/clients" || fail "clients directory"
cat > "$work/curve.cfg" <<EOF
device
    bind = tcp://0.0.0.0:*
    curve
        secret_cert = "$work/server.cert"
        clients = "$work/clients"
EOF
chmod 640 "$work/server.cert_secret"
refused key_mode "$work/server.cert_secret has mode 0640" --config "$work/curve.cfg"
chmod 604 "$work/server.cert_secret"
refused key_mode_others "$work/server.cert_secret has mode 0604" --config "$work/curve.cfg"
chmod 600 "$work/server.cert_secret"
starts curve --config "$work/curve.cfg"
chmod 400 "$work/server.cert_secret"
starts curve_readonly --config "$work/curve.cfg"
chmod 600 "$work/server.cert_secret"

#  With CURVE the admin socket is a CURVE server: it may bind anywhere.
starts admin_curve --config "$work/curve.cfg" --admin 'tcp://0.0.0.0:*'

#  The worked two-tenant example of doc/ (its certificate and spool here,
#  its fixed ports ephemeral) is accepted and serves.
sed -e "s|/etc/zqd/zqd.cert|$work/server.cert|" -e "s|/var/lib/zqd|$work/tenants|" \
    -e 's|\(tcp://0.0.0.0:\)[0-9]*|\1*|' "$ZQ_SRCDIR/doc/zqd-two-tenants.cfg" > "$work/tenants.cfg"
starts two_tenants --config "$work/tenants.cfg"
#  An access section names the clients itself; its patterns are exact.
printf 'access\n    ops\n        admin = "*"\n' | cat "$work/curve.cfg" - > "$work/access_clients.cfg"
refused access_clients "device/curve/clients: not with an access section" \
    --config "$work/access_clients.cfg"
sed -e 's|admin = "\*"|put = "ten*ant"|' -e '/clients = /d' "$work/access_clients.cfg" \
    > "$work/access_pattern.cfg"
refused access_pattern "access/ops/put: 'ten*ant' is not a pattern" \
    --config "$work/access_pattern.cfg"

#  The libzmq loaded, not only the one built against: 4.3.2 is refused.
#  (In a sanitizer build the preloaded stand-in comes before ASan's
#  runtime, which ASan refuses unless told the order is intended.)
old_zmq="$builddir/tests/.libs/zmq_old_version.so"
[ -f "$old_zmq" ] || fail "$old_zmq is not built"
LD_PRELOAD="$old_zmq" ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
    timeout "$refuse_limit" "$zqd_bin" --bind 'tcp://127.0.0.1:*' \
    > /dev/null 2> "$work/old.err"
status=$?
[ $status -eq 3 ] || fail "zqd on libzmq 4.3.2 exited $status, not 3 (124: it served)"
grep -qF "libzmq 4.3.2 is older than 4.3.3" "$work/old.err" || fail "old libzmq: $(cat "$work/old.err")"
echo "old_zmq: $(cat "$work/old.err")"

#  Modes: under umask 022, what zqd makes is still the owner's only.
umask 022
"$zqd_bin" --bind "tcp://127.0.0.1:*,ipc://$work/queues.sock" --spool "$work/spool" \
    > "$work/modes.out" 2> "$work/modes.err" &
pid=$!
wait_listening modes
timeout "$limit" "$zq_bin" put "ipc://$work/queues.sock" orders '{"n":1}' 2> "$work/put.err" \
    || fail "put: $(cat "$work/put.err")"
mode=$(stat -c %a "$work/queues.sock")
[ "$mode" = 600 ] || fail "device/bind ipc socket mode $mode, not 600"
[ "$admin" = "ipc://$work/spool/admin" ] || fail "admin endpoint is $admin"
socket="$work/spool/admin"
[ -S "$socket" ] || fail "no admin socket at $socket"
mode=$(stat -c %a "$socket")
[ "$mode" = 600 ] || fail "admin socket mode $mode, not 600"
dirs=0
files=0
for path in $(find "$work/spool"); do
    mode=$(stat -c %a "$path")
    if [ -d "$path" ]; then
        dirs=$((dirs + 1))
        [ "$mode" = 700 ] || fail "directory $path has mode $mode, not 700"
    elif [ "$path" != "$socket" ]; then
        files=$((files + 1))
        [ "$mode" = 600 ] || fail "file $path has mode $mode, not 600"
    fi
done
[ $dirs -ge 2 ] && [ $files -ge 2 ] || fail "only $dirs directories and $files files in the spool"
echo "modes: $dirs directories 0700, $files files and the admin socket 0600"
stop
pid=""
exit 0
