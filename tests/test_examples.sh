#!/bin/sh
#   Runs every example and checks the story each one tells: the seed story
#   (through the quick-start demo), orders -> payments over rpc, the pub/sub
#   fan-out, and the epoll and zloop event loops.
#
#   Run by `make check` with ZQ_SRCDIR and ZQ_BUILDDIR set. Every wait is
#   bounded; endpoints are ephemeral. Exits 0 on pass, 1 on failure.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
set -u
srcdir=${ZQ_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
bin="${ZQ_BUILDDIR:-$(pwd)}/examples"
work=$(mktemp -d "${TMPDIR:-/tmp}/zq-examples.XXXXXX") || exit 1
server=
cleanup () {
    [ -n "$server" ] && kill "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

fail () {
    echo "test_examples: FAIL: $*" >&2
    exit 1
}

#  expect FILE TEXT...: each TEXT must be a whole line of FILE.
expect () {
    file=$1
    shift
    for line in "$@"; do
        grep -qxF "$line" "$file" || { cat "$file"; fail "missing line: $line"; }
    done
}

#  ---- The quick-start demo: the seed story, then the device story --------
out=$(timeout 60 "$srcdir/examples/demo.sh" 2>&1) || { echo "$out"; fail "demo failed"; }
echo "$out"
for number in 1 2 3; do
    echo "$out" | grep -q "consumer: received orders {\"order\":$number," \
        || fail "order $number was not received"
done
echo "$out" | grep -q "consumer: stop after 3 orders" || fail "no clean stop"
for number in 1 2 3 4 5; do
    echo "$out" | grep -q "orders: order $number .* stored by the device" \
        || fail "order $number was not stored"
    echo "$out" | grep -q "payments: charged order $number " \
        || fail "order $number was not paid"
done
#  zq stat before the payment service: 5 waiting; after: drained.
echo "$out" | grep -Eq "^payments +queue +5 +5 " || fail "no backlog of 5 in zq stat"
echo "$out" | grep -Eq "^payments +queue +0 +0 +0 " || fail "queue not drained"
echo "$out" | grep -q "== done: every order was paid" || fail "the device story did not end"

#  ---- Orders -> payments over rpc -----------------------------------------
timeout 60 "$bin/orders_payments" payments "@tcp://127.0.0.1:*" > "$work/payments.out" \
    2> "$work/payments.err" &
server=$!
endpoint=""
tries=0
while [ -z "$endpoint" ] && [ $tries -lt 200 ]; do
    endpoint=$(sed -n 's/^payments: listening on //p' "$work/payments.out")
    [ -n "$endpoint" ] || { tries=$((tries + 1)); sleep 0.05; }
done
[ -n "$endpoint" ] || fail "the payment service did not start"
timeout 60 "$bin/orders_payments" orders ">$endpoint" > "$work/orders.out" 2>&1 \
    || { cat "$work/orders.out"; fail "the order service failed"; }
wait $server || fail "the payment service failed: $(cat "$work/payments.err")"
server=
cat "$work/orders.out" "$work/payments.out"
expect "$work/orders.out" "orders: order 1 paid" "orders: order 2 declined" \
    "orders: order 3 paid" "orders: 3 orders answered"
expect "$work/payments.out" "payments: order 1 for 250 cents: charged" \
    "payments: order 2 for 1299 cents: declined" "payments: stopped"

#  ---- Notifications over pub/sub -----------------------------------------
timeout 60 "$bin/notifications" > "$work/notifications.out" 2>&1 \
    || { cat "$work/notifications.out"; fail "notifications failed"; }
cat "$work/notifications.out"
expect "$work/notifications.out" "publisher: 6 subscriptions in force" \
    'audit: payments.received {"order":1,"cents":250}' \
    'billing: orders.created {"order":2,"item":"bagel"}' \
    'shipping: orders.shipped {"order":1,"carrier":"bike"}' \
    "audit: 4 notifications, 0 lost" "billing: 3 notifications, 0 lost" \
    "shipping: 1 notifications, 0 lost" "publisher: sent 5, dropped 0"
grep -q "^shipping: orders.created" "$work/notifications.out" \
    && fail "shipping heard a subject outside its prefix"
grep -q "^billing: payments" "$work/notifications.out" \
    && fail "billing heard a subject outside its prefix"

#  ---- Event loops: epoll (edge-triggered) and zloop ----------------------
timeout 60 "$bin/epoll_loop" 100000 > "$work/epoll.out" 2>&1 \
    || { cat "$work/epoll.out"; fail "epoll_loop failed"; }
cat "$work/epoll.out"
grep -q "^epoll: sent 100000, received 100000 in order" "$work/epoll.out" \
    || fail "epoll_loop did not move every message"
timeout 60 "$bin/zloop_worker" 20 > "$work/zloop.out" 2>&1 \
    || { cat "$work/zloop.out"; fail "zloop_worker failed"; }
tail -n 1 "$work/zloop.out"
expect "$work/zloop.out" "zloop: job 1 done" "zloop: job 20 done" "zloop: 20 of 20 jobs done"

echo "test_examples: PASS"
