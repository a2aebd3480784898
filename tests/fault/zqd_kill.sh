#!/bin/sh
#   kill -9 of zqd under load, ZQ_KILL_CYCLES times (default 50; make
#   check-faults runs 200): a producer puts numbered messages, each waiting
#   for its confirm and resent (same id) across restarts; zqd is killed
#   with SIGKILL once a few more were confirmed, and restarted on the same
#   port and spool. At the end a consumer drains the queue: every confirmed
#   number must be there (0 lost); duplicates are counted and reported.
#   Then a flood: `zq put -` posts with a window of unconfirmed messages,
#   so zqd's reads keep finding more PUTs waiting and each batch's commit
#   runs behind the next read (zqd's committer thread); zqd is killed mid-
#   flood ZQ_FLOOD_KILLS times (default 3), and every line confirmed must
#   be delivered. Then a consumer killed before it acks: its message is
#   delivered again.
#
#   Needs ZQ_BUILDDIR (src/zqd, tests/zqd_client). Every wait is bounded.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.

set -u

builddir=${ZQ_BUILDDIR:-$(pwd)}
cycles=${ZQ_KILL_CYCLES:-50}
zqd_bin="$builddir/src/zqd"
zq_bin="$builddir/src/zq"
flood_count=${ZQ_FLOOD_COUNT:-200000}
flood_kills=${ZQ_FLOOD_KILLS:-3}
client="$builddir/tests/zqd_client"
#  Confirms to wait for between two kills.
per_cycle=3

work=$(mktemp -d "${TMPDIR:-/tmp}/zq-zqd-kill.XXXXXX") || exit 1
zqd_pid=""
producer=""
flooder=""
cleanup () {
    [ -n "$zqd_pid" ] && kill -9 "$zqd_pid" 2>/dev/null
    [ -n "$producer" ] && kill -9 "$producer" 2>/dev/null
    [ -n "$flooder" ] && kill -9 "$flooder" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

fail () {
    echo "zqd_kill: FAIL: $*" >&2
    [ -f "$work/zqd.err" ] && tail -n 20 "$work/zqd.err" >&2
    exit 1
}

#  start_zqd BIND: starts zqd, waits up to 10 s for its listening line
#  (a restart may retry while the port is still held), sets port.
start_zqd () {
    attempt=0
    while [ $attempt -lt 20 ]; do
        "$zqd_bin" --bind "$1" --admin "" --spool "$work/spool" \
            > "$work/zqd.out" 2> "$work/zqd.err" &
        zqd_pid=$!
        tries=0
        while [ $tries -lt 200 ]; do
            line=$(sed -n 's/^zqd: listening on //p' "$work/zqd.out" 2>/dev/null)
            if [ -n "$line" ]; then
                port=${line##*:}
                return 0
            fi
            kill -0 "$zqd_pid" 2>/dev/null || break
            tries=$((tries + 1))
            sleep 0.05
        done
        wait "$zqd_pid" 2>/dev/null
        zqd_pid=""
        attempt=$((attempt + 1))
        sleep 0.1
    done
    fail "zqd did not start on $1"
}

#  kill -9 of zqd, then zqd again on the same endpoint and spool.
kill_and_restart_zqd () {
    kill -9 "$zqd_pid"
    wait "$zqd_pid" 2>/dev/null
    zqd_pid=""
    start_zqd "$endpoint"
}

confirmed_count () {
    wc -l < "$work/confirmed" | tr -d ' '
}

#  zqd restarts on the same port each cycle, so the port must not be one
#  that other tests' "tcp://127.0.0.1:*" binds take in the meantime: zq and
#  CZMQ hand out 49152 and up, the kernel 32768-60999, so pick a free port
#  below both.
python=${ZQ_PYTHON:-/usr/bin/python3}
fixed_port=$("$python" - <<'EOF_PY'
import random, socket
for _ in range(200):
    port = random.randrange(20000, 32000)
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        probe.close()
    print(port)
    break
EOF_PY
)
[ -n "$fixed_port" ] || fail "no free port found below 32000"
start_zqd "tcp://127.0.0.1:$fixed_port"
endpoint="tcp://127.0.0.1:$port"
: > "$work/confirmed"
"$client" produce "$endpoint" orders 1 100000000 >> "$work/confirmed" 2> "$work/producer.err" &
producer=$!

cycle=0
while [ $cycle -lt "$cycles" ]; do
    target=$(($(confirmed_count) + per_cycle))
    tries=0
    while [ "$(confirmed_count)" -lt $target ]; do
        tries=$((tries + 1))
        [ $tries -lt 400 ] || fail "cycle $cycle: no confirms within 20 s ($(confirmed_count))"
        kill -0 "$producer" 2>/dev/null || fail "producer died: $(cat "$work/producer.err")"
        sleep 0.05
    done
    kill_and_restart_zqd
    cycle=$((cycle + 1))
done
#  A few more after the last restart, then stop the producer.
target=$(($(confirmed_count) + per_cycle))
tries=0
while [ "$(confirmed_count)" -lt $target ] && [ $tries -lt 400 ]; do
    tries=$((tries + 1))
    sleep 0.05
done
kill -TERM "$producer"
wait "$producer"
producer=""
confirmed=$(confirmed_count)

#  Drain: every message stored, until the queue is quiet for 3 s.
"$client" consume "$endpoint" orders 100000000 3000 > "$work/got" 2> "$work/consumer.err"
cut -d' ' -f1 "$work/got" | LC_ALL=C sort > "$work/got_numbers"
LC_ALL=C sort -u "$work/got_numbers" > "$work/got_unique"
LC_ALL=C sort "$work/confirmed" > "$work/confirmed_sorted"
#   comm needs both lists in the same (byte-wise) order.
lost=$(LC_ALL=C comm -23 "$work/confirmed_sorted" "$work/got_unique" | wc -l | tr -d ' ')
duplicates=$(($(wc -l < "$work/got_numbers") - $(wc -l < "$work/got_unique")))
echo "zqd_kill: cycles=$cycles confirmed=$confirmed received=$(wc -l < "$work/got_numbers" | tr -d ' ') lost=$lost duplicates=$duplicates"
[ "$lost" -eq 0 ] || fail "$lost confirmed messages lost: $(LC_ALL=C comm -23 "$work/confirmed_sorted" "$work/got_unique" | head -5 | tr '\n' ' ')"
[ "$confirmed" -ge $((cycles * per_cycle)) ] || fail "only $confirmed confirms"

#  The flood: line N is {"n": N}; zq put prints N once it is confirmed,
#  and resends what was not across zqd's restarts.
awk -v count="$flood_count" 'BEGIN { for (n = 1; n <= count; n++) printf "{\"n\": %d}\n", n }' \
    > "$work/flood.in"
: > "$work/flood.confirmed"
"$zq_bin" put "$endpoint" flood - --timeout 60000 < "$work/flood.in" > "$work/flood.confirmed" \
    2> "$work/flood.err" &
flooder=$!
kills=0
while [ $kills -lt "$flood_kills" ]; do
    target=$(($(wc -l < "$work/flood.confirmed") + flood_count / (2 * flood_kills)))
    deadline=$(($(date +%s) + 30))
    while [ "$(wc -l < "$work/flood.confirmed")" -lt $target ] && kill -0 "$flooder" 2>/dev/null; do
        [ "$(date +%s)" -lt $deadline ] || fail "flood: fewer than $target confirms within 30 s"
        sleep 0.01
    done
    kill -0 "$flooder" 2>/dev/null || break
    kill_and_restart_zqd
    kills=$((kills + 1))
done
#  zq put exits once every line is confirmed, or fails after 60 s without one.
wait "$flooder" || fail "zq put: $(tail -n 3 "$work/flood.err")"
flooder=""
"$client" consume "$endpoint" flood 100000000 3000 > "$work/flood.got" 2> "$work/consumer.err"
cut -d' ' -f1 "$work/flood.got" | LC_ALL=C sort -u > "$work/flood.got_unique"
LC_ALL=C sort "$work/flood.confirmed" > "$work/flood.confirmed_sorted"
flood_confirmed=$(wc -l < "$work/flood.confirmed" | tr -d ' ')
flood_lost=$(LC_ALL=C comm -23 "$work/flood.confirmed_sorted" "$work/flood.got_unique" | wc -l | tr -d ' ')
flood_received=$(wc -l < "$work/flood.got" | tr -d ' ')
echo "zqd_kill: flood kills=$kills confirmed=$flood_confirmed received=$flood_received lost=$flood_lost duplicates=$((flood_received - $(wc -l < "$work/flood.got_unique")))"
[ "$flood_lost" -eq 0 ] || fail "flood: $flood_lost confirmed messages lost: $(LC_ALL=C comm -23 "$work/flood.confirmed_sorted" "$work/flood.got_unique" | head -5 | tr '\n' ' ')"
[ "$flood_confirmed" -eq "$flood_count" ] || fail "flood: $flood_confirmed of $flood_count confirmed"
[ "$kills" -ge 1 ] || fail "flood: zqd was never killed mid-flood"

#  A consumer killed before it acks: the message is delivered again.
"$client" produce "$endpoint" payments 1 1 > /dev/null || fail "put to payments"
"$client" consume "$endpoint" payments 1 5000 kill > "$work/first" 2>/dev/null
grep -q "^1 0$" "$work/first" || fail "the first delivery: $(cat "$work/first")"
"$client" consume "$endpoint" payments 1 10000 > "$work/second" 2> "$work/consumer.err" \
    || fail "no redelivery after the consumer died"
grep -q "^1 1$" "$work/second" || fail "redelivery with attempt 1: $(cat "$work/second")"
echo "zqd_kill: PASS"
