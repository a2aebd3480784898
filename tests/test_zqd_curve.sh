#!/bin/sh
#   zqd with CURVE, driven by the zq command line: a configuration with
#   device/curve and device/bind is accepted; CURVE clients (zq push / pull
#   with -o curve_server_key=... -o curve_cert=...) go through a stream and,
#   where zq has put/get, through the queue kind; a plaintext client and a
#   client missing from the allowed directory get nothing through; a
#   certificate without a secret key is refused at start.
#
#   Run by `make check` with ZQ_BUILDDIR and ZQ_PYTHON set. Every wait is
#   bounded; endpoints are ephemeral tcp ports. Exits 0 on pass, 1 on
#   failure (also when Python's zmq cannot make key pairs).
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.

set -u
#  Z85 keys may hold glob characters (*, ?, [): expand no patterns.
set -f

limit=20

. "$(dirname "$0")/test_lib.sh"
test_start test_zqd_curve zqd
require_curve_keys

zq () {
    timeout "$limit" "$zq_bin" "$@"
}

server_key=$(make_cert server) || fail "cannot make the server certificate"
make_cert client > /dev/null || fail "cannot make the client certificate"
make_cert stranger > /dev/null || fail "cannot make the stranger certificate"
mkdir "$work/clients" && cp "$work/client.cert" "$work/clients/" || fail "clients directory"

cat > "$work/zqd.cfg" <<EOF
device
    bind = tcp://127.0.0.1:*

    curve
        secret_cert = "$work/server.cert"
        clients = "$work/clients"
queues
    feed
        kind = stream
        in = tcp://127.0.0.1:*
        out = tcp://127.0.0.1:*
EOF

#  A public certificate cannot serve.
sed "s|$work/server.cert|$work/clients/client.cert|" "$work/zqd.cfg" > "$work/public.cfg"
timeout "$limit" "$zqd_bin" --config "$work/public.cfg" > /dev/null 2> "$work/public.err"
[ $? -ne 0 ] || fail "zqd started with a public certificate"
grep -q "device/curve/secret_cert" "$work/public.err" || fail "unclear refusal: $(cat "$work/public.err")"
rm -f "$work/public.err"
timeout "$limit" "$zqd_bin" --check --config "$work/zqd.cfg" > "$work/check" 2>&1 \
    || fail "--check of a CURVE configuration: $(cat "$work/check")"

"$zqd_bin" --config "$work/zqd.cfg" > "$work/curve.out" 2> "$work/curve.err" &
pid=$!
wait_listening curve
#  The stream's endpoints, as the device bound them.
in=$(sed -n 's/^zqd: stream feed in \([^ ]*\) out .*/\1/p' "$work/curve.out")
out=$(sed -n 's/^zqd: stream feed in [^ ]* out \(.*\)/\1/p' "$work/curve.out")

curve="-o curve_server_key=$server_key -o curve_cert=$work/client.cert"
stranger="-o curve_server_key=$server_key -o curve_cert=$work/stranger.cert"

if [ -n "$in" ] && [ -n "$out" ]; then
    #  Refused pushes: nothing connects, each send times out (exit 2).
    zq push --timeout 300 ">$in" feed '{"plain":1}' 2> /dev/null
    [ $? -eq 2 ] || fail "a plaintext push to the stream went through"
    zq push --timeout 300 $stranger ">$in" feed '{"stranger":1}' 2> /dev/null
    [ $? -eq 2 ] || fail "a push from a client not allowed went through"
    zq push $curve ">$in" feed '{"n":1}' 2> "$work/push.err" || fail "CURVE push: $(cat "$work/push.err")"
    zq pull $curve -n 1 --timeout 10000 ">$out" > "$work/pulled" 2> "$work/pull.err" \
        || fail "CURVE pull: $(cat "$work/pull.err")"
    [ "$(cat "$work/pulled")" = '{"n":1}' ] || fail "pulled $(cat "$work/pulled")"
    rm -f "$work/push.err" "$work/pull.err"
else
    fail "zqd printed no endpoints for stream feed: $(cat "$work/curve.out")"
fi

#  put and get over CURVE; plaintext and unknown clients are refused.
zq put --timeout 300 "$endpoint" orders '{"plain":1}' 2> /dev/null \
    && fail "a plaintext put was confirmed"
zq put --timeout 300 $stranger "$endpoint" orders '{"stranger":1}' 2> /dev/null \
    && fail "a put from a client not allowed was confirmed"
zq put $curve "$endpoint" orders '{"order":1}' 2> "$work/put.err" \
    || fail "CURVE put: $(cat "$work/put.err")"
zq get $curve -n 1 --timeout 10000 "$endpoint" orders > "$work/got" 2> "$work/get.err" \
    || fail "CURVE get: $(cat "$work/get.err")"
[ "$(cat "$work/got")" = '{"order":1}' ] || fail "got $(cat "$work/got")"
zq get --timeout 300 "$endpoint" orders > "$work/plain-got" 2> /dev/null
[ -s "$work/plain-got" ] && fail "a plaintext get received $(cat "$work/plain-got")"
rm -f "$work/put.err" "$work/get.err"

stop
pid=""
exit 0
