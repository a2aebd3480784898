#!/bin/sh
#   zq put and zq get against a reliable server (tests/reliable_proc):
#   confirms and exit codes, line numbers of stdin puts, acks after
#   printing, --no-ack redelivery, -n all, refusals, no server.
#   Run by make check with ZQ_BUILDDIR set. Every wait is bounded.
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
set -u
builddir=${ZQ_BUILDDIR:-.}
zq="$builddir/src/zq"
proc="$builddir/tests/reliable_proc"
[ -x "$zq" ] && [ -x "$proc" ] || { echo "test_cli_reliable: build src/zq and tests/reliable_proc" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/zq-cli-reliable.XXXXXX") || exit 1
server_pid=
cleanup () {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM
fail () {
    echo "test_cli_reliable: FAIL: $*" >&2
    exit 1
}
#   expect STATUS COMMAND...: runs it (60 s at most), checks the exit status.
expect () {
    want=$1
    shift
    timeout 60 "$@" > "$work/out" 2> "$work/err"
    got=$?
    [ "$got" -eq "$want" ] || fail "$* exited $got, not $want: $(cat "$work/err")"
}

mkfifo "$work/server.in"
"$proc" -o ping_ivl_ms=100 server "@ipc://$work/server" < "$work/server.in" \
    > "$work/server.out" 2>&1 &
server_pid=$!
exec 9> "$work/server.in"
tries=0
until grep -q '^ready' "$work/server.out" 2>/dev/null; do
    tries=$((tries + 1))
    [ $tries -gt 200 ] && fail "server did not start"
    sleep 0.05
done
at=">ipc://$work/server"

#   One BODY: 0 once stored; get prints it and acks it.
expect 0 "$zq" put "$at" orders '{"sku":"A-17","qty":2}'
expect 0 "$zq" get "$at" orders
[ "$(cat "$work/out")" = '{"sku":"A-17","qty":2}' ] || fail "get printed $(cat "$work/out")"
expect 2 "$zq" get --timeout 200 "$at" orders

#   stdin: each confirmed line's number; blank lines skipped.
printf '{"n":1}\n\n{"n":2}\n{"n":3}\n' > "$work/lines"
expect 0 sh -c "\"$zq\" put \"$at\" lines - < \"$work/lines\""
[ "$(sort -n "$work/out" | tr '\n' ' ')" = "1 3 4 " ] || fail "put - printed $(cat "$work/out")"
#   Bad JSON on a line: what came before is still confirmed, then exit 3.
printf '{"n":4}\nnot json\n' > "$work/bad"
expect 3 sh -c "\"$zq\" put \"$at\" lines - < \"$work/bad\""
[ "$(cat "$work/out")" = "1" ] || fail "put - before bad input printed $(cat "$work/out")"

#   --no-ack: the message stays and comes again, attempt 1.
expect 0 "$zq" get --no-ack "$at" lines
[ "$(cat "$work/out")" = '{"n":1}' ] || fail "get --no-ack printed $(cat "$work/out")"
#   (It comes back once the server sees that get gone; -n all waits for
#   a quiet second, far above the server's 100 ms probes.)
expect 0 "$zq" get -n all --envelope "$at" lines
grep '"body":{"n":1}' "$work/out" | grep -q '"attempt":1' \
    || fail "not delivered again after --no-ack: $(cat "$work/out")"
[ "$(grep -o '"body":{"n":[0-9]}' "$work/out" | sort | tr '\n' ' ')" = \
    '"body":{"n":1} "body":{"n":2} "body":{"n":3} "body":{"n":4} ' ] \
    || fail "get -n all printed $(cat "$work/out")"
expect 2 "$zq" get -n all --timeout 200 "$at" lines
#   -n COUNT: fewer in time is 2.
expect 0 "$zq" put -n 2 "$at" twice '"x"'
expect 2 "$zq" get -n 3 --timeout 500 "$at" twice
[ "$(wc -l < "$work/out")" -eq 2 ] || fail "get -n 3 printed $(cat "$work/out")"

#   Refused (invalid queue name): 5. No server: 2. Bad BODY: 3.
expect 5 "$zq" put "$at" 'a/b' 1
expect 2 "$zq" put --timeout 300 ">ipc://$work/nobody" orders 1
expect 3 "$zq" put "$at" orders '{bad'
exit 0
