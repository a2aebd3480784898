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
    endpoint=$(sed -n 's/^consumer: listening on //p' "$work/consumer.out")
    [ -n "$endpoint" ] || { tries=$((tries + 1)); sleep 0.1; }
done
[ -n "$endpoint" ] || { echo "consumer did not start" >&2; kill $consumer; exit 1; }
"$bin/seed_story" producer ">$endpoint"
wait $consumer
cat "$work/consumer.out"
echo "== done: every order arrived"
