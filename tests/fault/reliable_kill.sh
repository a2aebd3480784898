#!/bin/sh
#   Kill -9 cycles of the reliable pattern's clients (tests/reliable_proc):
#
#   1. A producer with a durable outbox is killed mid-stream, again and
#      again, and restarted on the same outbox; a last run sends what the
#      outbox still holds. Every number a producer reported posted (in its
#      outbox) must reach the consumer: 0 lost; duplicates are counted.
#   2. A consumer holding deliveries without acking them is killed; the
#      server sees it gone and another consumer gets them: 0 lost.
#
#   ZQ_RELIABLE_KILL_CYCLES producer kills (default 50; make check runs 3
#   through tests/test_reliable_kill.sh). Every wait has a deadline.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
set -u
builddir=${ZQ_BUILDDIR:-.}
proc="$builddir/tests/reliable_proc"
cycles=${ZQ_RELIABLE_KILL_CYCLES:-50}
[ -x "$proc" ] || { echo "reliable_kill: $proc is not built" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/zq-reliable-kill.XXXXXX") || exit 1
server_pid=
cleanup () {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
    for pid in $(jobs -p); do kill -9 "$pid" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

fail () {
    echo "reliable_kill: FAIL: $*" >&2
    exit 1
}

#   Waits (up to 30 s) until file has at least count lines matching pattern.
#   (A file the background job has not created yet counts as 0 lines.)
wait_lines () {
    wl_file=$1 wl_pattern=$2 wl_count=$3 wl_tries=0
    while true; do
        wl_have=$(grep -c "$wl_pattern" "$wl_file" 2>/dev/null)
        [ "${wl_have:-0}" -ge "$wl_count" ] && return 0
        wl_tries=$((wl_tries + 1))
        [ $wl_tries -gt 600 ] && return 1
        sleep 0.05
    done
}

#   The server: durable spool, quick liveness probes.
mkfifo "$work/server.in"
"$proc" -o spool_dir="$work/spool" -o ping_ivl_ms=100 server "@ipc://$work/server" \
    < "$work/server.in" > "$work/server.out" 2> "$work/server.err" &
server_pid=$!
exec 9> "$work/server.in"
wait_lines "$work/server.out" '^ready' 1 || fail "server did not start: $(cat "$work/server.err")"
endpoint=">ipc://$work/server"
client="-o ping_ivl_ms=100 -o confirm_timeout_ms=500"

#   ---- 1. Producer killed mid-stream, restarted on its outbox -------------
next=0
cycle=0
while [ $cycle -lt "$cycles" ]; do
    cycle=$((cycle + 1))
    log="$work/produce.$cycle"
    # shellcheck disable=SC2086
    "$proc" $client -o outbox_dir="$work/outbox" -o fsync=none produce "$endpoint" kill \
        $next 100000000 > "$log" 2> "$log.err" &
    pid=$!
    #   Kill it at a varying point of its stream.
    want=$((20 + (cycle * 37) % 200))
    wait_lines "$log" '^posted' $want || fail "producer $cycle posted too little: $(cat "$log.err")"
    kill -9 $pid
    wait $pid 2>/dev/null
    last=$(grep '^posted' "$log" | tail -n 1 | cut -d' ' -f2)
    [ -n "$last" ] || fail "producer $cycle: no posted line before the kill"
    next=$((last + 1))
done
#   A last run: nothing new, only what the outbox holds, until confirmed.
# shellcheck disable=SC2086
timeout 120 "$proc" $client -o outbox_dir="$work/outbox" -o fsync=none produce "$endpoint" kill \
    $next $next > "$work/produce.last" 2> "$work/produce.last.err" \
    || fail "last producer run: $(cat "$work/produce.last.err")"
grep -q '^done' "$work/produce.last" || fail "last producer run did not finish"
# shellcheck disable=SC2086
timeout 120 "$proc" $client consume "$endpoint" kill $next > "$work/consume.1" \
    2> "$work/consume.1.err" || fail "consumer: $(cat "$work/consume.1.err")"
#   Every posted number came; duplicates are counted.
cat "$work"/produce.[0-9]* | grep '^posted' | cut -d' ' -f2 | LC_ALL=C sort -u > "$work/posted"
grep '^got' "$work/consume.1" | cut -d' ' -f2 | LC_ALL=C sort > "$work/got.all"
LC_ALL=C sort -u "$work/got.all" > "$work/got"
#   comm needs both lists in the same (byte-wise) order.
lost=$(LC_ALL=C comm -23 "$work/posted" "$work/got" | wc -l)
duplicates=$(( $(wc -l < "$work/got.all") - $(wc -l < "$work/got") ))
posted=$(wc -l < "$work/posted")
echo "reliable_kill: producer: $cycles kills, $posted posted, $lost lost, $duplicates duplicates"
[ "$lost" -eq 0 ] || fail "$lost posted messages lost"

#   ---- 2. Consumer killed before it acks ----------------------------------
count=50
# shellcheck disable=SC2086
timeout 60 "$proc" $client produce "$endpoint" held 0 $count > "$work/produce.held" \
    2> "$work/produce.held.err" || fail "producer: $(cat "$work/produce.held.err")"
# shellcheck disable=SC2086
"$proc" $client -o prefetch=10 consume "$endpoint" held $count hold > "$work/hold" \
    2> "$work/hold.err" &
pid=$!
wait_lines "$work/hold" '^got' 10 || fail "holding consumer got nothing"
kill -9 $pid
wait $pid 2>/dev/null
held=$(grep -c '^got' "$work/hold")
# shellcheck disable=SC2086
timeout 60 "$proc" $client consume "$endpoint" held $count > "$work/consume.2" \
    2> "$work/consume.2.err" || fail "second consumer: $(cat "$work/consume.2.err")"
distinct=$(grep '^got' "$work/consume.2" | cut -d' ' -f2 | sort -u | wc -l)
again=$(grep '^got' "$work/consume.2" | awk '$3 > 0' | wc -l)
echo "reliable_kill: consumer: $held held at the kill, $distinct of $count delivered after, $again with attempt > 0"
[ "$distinct" -eq $count ] || fail "$((count - distinct)) messages lost with the killed consumer"
[ "$again" -ge "$held" ] || fail "the killed consumer's messages came back with attempt 0"
exit 0
