#!/bin/sh
# The quick-start demo: services exchanging messages through zq on loopback.
# Run it through `./quickstart demo`, which builds everything first.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin="${ZQ_BUILDDIR:-$here/..}/examples"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== seed story: a producer sends three orders to a consumer on loopback"
"$bin/seed_story" consumer "@tcp://127.0.0.1:*" > "$work/consumer.out" &
consumer=$!
# Wait (up to 10 s) for the consumer to say where it listens.
endpoint=""
tries=0
while [ -z "$endpoint" ] && [ $tries -lt 100 ]; do
    # (The background job may not have created its output yet.)
    endpoint=$(sed -n 's/^consumer: listening on //p' "$work/consumer.out" 2>/dev/null || true)
    [ -n "$endpoint" ] || { tries=$((tries + 1)); sleep 0.1; }
done
[ -n "$endpoint" ] || { echo "consumer did not start" >&2; kill $consumer; exit 1; }
"$bin/seed_story" producer ">$endpoint"
wait $consumer
cat "$work/consumer.out"
echo "== done: every order arrived"

echo
echo "== the device: zqd keeps the orders while the payment service is down"
top="${ZQ_BUILDDIR:-$here/..}"
"$top/src/zqd" --bind "tcp://127.0.0.1:*" --admin "tcp://127.0.0.1:*" --spool "$work/spool" \
    > "$work/zqd.out" 2> "$work/zqd.err" &
zqd=$!
endpoint=""
tries=0
while [ -z "$endpoint" ] && [ $tries -lt 100 ]; do
    endpoint=$(sed -n 's/^zqd: listening on //p' "$work/zqd.out" 2>/dev/null || true)
    [ -n "$endpoint" ] || { tries=$((tries + 1)); sleep 0.1; }
done
[ -n "$endpoint" ] || { echo "zqd did not start" >&2; cat "$work/zqd.err" >&2; kill $zqd; exit 1; }
admin=$(sed -n 's/^zqd: admin on //p' "$work/zqd.out")
echo "zqd: listening on $endpoint"
"$bin/orders" "$endpoint" 5
echo "== zq stat: five orders wait in the payments queue"
"$top/src/zq" stat "$admin"
echo "== the payment service starts, takes every order and acks it"
"$bin/payments" "$endpoint" 5
echo "== zq stat: the queue is drained"
# The last ack may still be on its way to zqd when payments exits: the
# queue's counters (zq stat ADMIN QUEUE: one JSON object, doc/DEVICE.md)
# are asked for again (every 0.1 s, up to 10 s) until its depth is 0.
tries=0
while [ $tries -lt 100 ] \
    && ! "$top/src/zq" stat "$admin" payments | grep -q '"depth":0,'; do
    tries=$((tries + 1))
    sleep 0.1
done
"$top/src/zq" stat "$admin"
kill -TERM $zqd
wait $zqd
echo "== done: every order was paid, none lost"
