#!/bin/sh
#   The zq command line as an operator uses it against a running zqd: stat
#   for all queues as JSON and in watch mode (rates and consumers), ping
#   and info, endpoints from ZQ_URL and ZQ_ADMIN, errors that say what to
#   fix (and their exit codes), "did you mean", the summaries of long
#   puts and gets, and the bash completion script.
#
#   Run by `make check` with ZQ_SRCDIR, ZQ_BUILDDIR and ZQ_PYTHON set.
#   Every command runs under timeout; zqd binds tcp://127.0.0.1:*.
#   Exits 0 on pass, 1 on failure.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.

set -u

srcdir=${ZQ_SRCDIR:-$(dirname "$0")/..}
limit=20
. "$srcdir/tests/test_lib.sh"
test_start test_cli_ops zq
unset ZQ_URL ZQ_ADMIN

zq () {
    timeout "$limit" "$zq_bin" "$@"
}

#  expect STATUS FRAGMENT ARGS...: zq ARGS exits STATUS with FRAGMENT on stderr.
expect () {
    want=$1
    fragment=$2
    shift 2
    zq "$@" > "$work/out" 2> "$work/err" < /dev/null
    got=$?
    [ "$got" -eq "$want" ] || fail "zq $*: exit $got, expected $want ($(cat "$work/err"))"
    grep -qF -- "$fragment" "$work/err" \
        || fail "zq $*: stderr lacks '$fragment': $(cat "$work/err")"
}

#  json EXPR: runs the Python expression EXPR on the JSON of $work/out (as j).
json () {
    "$python" -c "import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if ($1) else 1)" \
        "$work/out" || fail "stat JSON: not ($1): $(cat "$work/out")"
}

"$zqd_bin" --bind "tcp://127.0.0.1:*" --admin "tcp://127.0.0.1:*" \
    > "$work/zqd.out" 2> "$work/zqd.err" &
pid=$!
wait_listening zqd

#  ---- Rates right after activity ------------------------------------------
#  The queue is new: the first STAT after three puts must show them as a
#  rate, not 0.0 until the device's next samples.
zq put -n 3 "$endpoint" orders '{"n":1}' > /dev/null 2> "$work/err" || fail "put: $(cat "$work/err")"
zq stat "$admin" orders > "$work/out" 2> "$work/err" || fail "stat orders: $(cat "$work/err")"
json 'j["in"] == 3 and j["in_rate"] > 0'

#  ---- stat for all queues as JSON, with consumers ------------------------
zq put -n 2 "$endpoint" payments '{"n":2}' > /dev/null 2> "$work/err" || fail "put: $(cat "$work/err")"
zq stat --json "$admin" > "$work/out" 2> "$work/err" || fail "stat --json: $(cat "$work/err")"
json 'sorted(q["name"] for q in j) == ["orders", "payments"]'
json '[q["depth"] for q in j] == [3, 2] and all("consumers" in q for q in j)'

#  ---- Watch mode: -n samples, bounded, rates between samples ----------------
zq stat -w 0.2 -n 2 "$admin" > "$work/out" 2> "$work/err" || fail "stat -w: $(cat "$work/err")"
[ "$(grep -c '^QUEUE ' "$work/out")" -eq 2 ] || fail "stat -w -n 2: not two samples: $(cat "$work/out")"
grep -q 'CONSUMERS' "$work/out" || fail "stat -w: no CONSUMERS column: $(cat "$work/out")"
zq stat --json -w 0.2 -n 3 "$admin" > "$work/out" 2> "$work/err" || fail "stat --json -w"
[ "$(wc -l < "$work/out")" -eq 3 ] || fail "stat --json -w -n 3: not 3 lines: $(cat "$work/out")"
expect 1 "-w wants seconds" stat -w 0 "$admin"

#  ---- Endpoints from the environment ---------------------------------------
ZQ_ADMIN=$admin zq stat orders > "$work/out" 2> "$work/err" \
    || fail "ZQ_ADMIN stat: $(cat "$work/err")"
json 'j["name"] == "orders"'
ZQ_URL=$endpoint zq put orders '{"n":4}' > /dev/null 2> "$work/err" \
    || fail "ZQ_URL put: $(cat "$work/err")"
ZQ_URL=$endpoint zq get -t 5000 orders > "$work/out" 2> "$work/err" \
    || fail "ZQ_URL get: $(cat "$work/err")"
grep -q '"n":1' "$work/out" || fail "ZQ_URL get: $(cat "$work/out")"
expect 1 "or set ZQ_ADMIN" stat

#  ---- ping and info --------------------------------------------------------
zq ping "$admin" > "$work/out" 2> "$work/err" || fail "ping: $(cat "$work/err")"
grep -q "answered in" "$work/out" || fail "ping: $(cat "$work/out")"
zq info --json "$admin" > "$work/out" 2> "$work/err" || fail "info: $(cat "$work/err")"
json 'j["store"] == "memory" and j["queues"] >= 2 and j["max_message_bytes"] > 0 and j["version"]'
zq info "$admin" > "$work/out" 2> "$work/err" || fail "info: $(cat "$work/err")"
grep -q "^uptime " "$work/out" || fail "info: no uptime: $(cat "$work/out")"

#  ---- Errors that say what to fix ------------------------------------------
expect 1 "did you mean 'stat'" stats "$admin"
expect 1 "did you mean '--timeout'" stat --timout 5 "$admin"
expect 4 "write tcp://HOST:PORT" put localhost:5670 orders '{}'
expect 4 "port 70000 is outside 1-65535" put tcp://127.0.0.1:70000 orders '{}'
#  A connect that could make libzmq 4.3 abort the process is refused, saying why.
expect 4 "with rcvhwm 1000 can make libzmq abort the process (its issue #3937)" \
    sub -o heartbeat_ivl_ms=1000 tcp://127.0.0.1:9 ""
#  A heartbeat TTL libzmq would read wrong (over ZQ_HEARTBEAT_TTL_MAX_MS) is refused.
expect 1 "-o heartbeat_ttl_ms=65501: value out of range or malformed" \
    req -o heartbeat_ttl_ms=65501 tcp://127.0.0.1:9 x
expect 4 "port 0 is outside 1-65535" stat tcp://127.0.0.1:0
expect 4 "cannot resolve host 'no-such-host.invalid'" put tcp://no-such-host.invalid:5670 q '{}'
#  A port where nothing answers: the error names it and the likely cause.
expect 2 "no confirm from tcp://127.0.0.1:9 within 300 ms: is zqd" put -t 300 tcp://127.0.0.1:9 q '{}'
echo '{}' > "$work/one"
zq put -t 300 tcp://127.0.0.1:9 q - < "$work/one" > "$work/out" 2> "$work/err"
[ $? -eq 2 ] || fail "put - to nobody: $(cat "$work/err")"
grep -qF "from tcp://127.0.0.1:9 within 300 ms: is zqd" "$work/err" || fail "put -: $(cat "$work/err")"
expect 2 "no answer from tcp://127.0.0.1:9 within 300 ms: is zqd running there" \
    stat -t 300 tcp://127.0.0.1:9

#  Invalid JSON names where and why.
expect 3 "line 1, column 6" push "ipc://$work/none" '{"a":}'
printf '{"a":1}\n{"b":2,}\n' > "$work/lines"
zq put "$endpoint" junk - < "$work/lines" > "$work/out" 2> "$work/err"
[ $? -ne 0 ] || fail "push of a bad line succeeded"
grep -qF "stdin line 2: invalid JSON at line 1, column 8" "$work/err" \
    || fail "bad stdin line: $(cat "$work/err")"
#  Over the size limit: refused before sending, naming limit and option.
"$python" -c 'print("\"" + "a" * 1100000 + "\"")' > "$work/big"
zq put "$endpoint" orders - < "$work/big" > "$work/out" 2> "$work/err"
got=$?
[ $got -eq 3 ] || fail "oversized put: exit $got, expected 3: $(cat "$work/err")"
grep -qF "over the limit of 1048576 bytes" "$work/err" || fail "oversized: $(cat "$work/err")"
grep -qF -- "-o max_message_bytes=BYTES" "$work/err" || fail "oversized: $(cat "$work/err")"

#  ---- Summaries of long jobs -------------------------------------------------
"$python" -c 'for i in range(500): print("{\"i\":%d}" % i)' > "$work/many"
zq put "$endpoint" bulk - < "$work/many" > "$work/out" 2> "$work/err" \
    || fail "put -: $(cat "$work/err")"
[ "$(wc -l < "$work/out")" -eq 500 ] || fail "put -: not 500 confirms"
grep -Eq "^zq put: 500 stored in [0-9.]+ s, [0-9.]+ ?[kM]?/s$" "$work/err" \
    || fail "put - summary: $(cat "$work/err")"
zq get -n all -t 1000 "$endpoint" bulk > "$work/out" 2> "$work/err" \
    || fail "get -n all: $(cat "$work/err")"
[ "$(wc -l < "$work/out")" -eq 500 ] || fail "get -n all: not 500 messages"
grep -Eq "^zq get: 500 received in [0-9.]+ s, [0-9.]+ ?[kM]?/s$" "$work/err" \
    || fail "get -n all summary: $(cat "$work/err")"

#  ---- zq req says when it retries, and -e prints the reply's envelope ------
zq req -o request_timeout_ms=200 -o retries=1 "ipc://$work/nobody" '{}' \
    > "$work/out" 2> "$work/err"
[ $? -eq 2 ] || fail "req without a server: $(cat "$work/err")"
grep -qF "retrying (attempt 2 of 2)" "$work/err" || fail "req retry: $(cat "$work/err")"
zq rep -n 1 "@ipc://$work/rep" > /dev/null 2> "$work/rep.err" &
zq req -e "ipc://$work/rep" '{"q":1}' > "$work/out" 2> "$work/err" || fail "req -e: $(cat "$work/err")"
json 'j["body"] == {"q": 1} and len(j["id"]) == 32'

#  ---- bash completion ------------------------------------------------------
completion="$srcdir/dist/bash-completion/zq"
bash -n "$completion" || fail "the completion script has a syntax error"
#  complete WORDS...: what the script offers for the last word.
complete_words () {
    PATH="$builddir/src:$PATH" bash -c '. "$1"; shift; COMP_WORDS=("$@");
        COMP_CWORD=$(($# - 1)); _zq; echo "${COMPREPLY[*]}"' complete "$completion" "$@"
}
[ "$(complete_words zq sta)" = "stat" ] || fail "completion of 'zq sta': '$(complete_words zq sta)'"
complete_words zq stat --js | grep -qx -- "--json" || fail "completion of 'zq stat --js'"
complete_words zq get -o max_deliv | grep -q "max_deliveries=" || fail "completion of -o"

echo "$test_name: ok"
