#!/bin/sh
# Runs the quick-start demo from the build tree and checks its story: three
# orders sent, three received in order, then the stop.
set -eu
out=$(timeout 60 "$ZQ_SRCDIR/examples/demo.sh" 2>&1) || { echo "$out"; echo "demo failed" >&2; exit 1; }
echo "$out"
for number in 1 2 3; do
    echo "$out" | grep -q "consumer: received orders {\"order\":$number," \
        || { echo "order $number was not received" >&2; exit 1; }
done
echo "$out" | grep -q "consumer: stop after 3 orders" || { echo "no clean stop" >&2; exit 1; }
