#!/bin/sh
#   The zq command line, as a script uses it: JSON in and out, stdin mode,
#   -n, --timeout, exit codes, push/pull, pub/sub with prefixes, req/rep
#   with echo and --exec, help and version.
#
#   Run by `make check` with ZQ_SRCDIR, ZQ_BUILDDIR and ZQ_PYTHON set
#   (ZQ_VALGRIND under make memcheck); also by hand from a build directory.
#   Every wait is bounded; endpoints are ipc:// under a private directory
#   or tcp://127.0.0.1:* with --print-endpoint. Exits 0 on pass, 1 on failure.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.

set -u

builddir=${ZQ_BUILDDIR:-$(pwd)}
zq_bin="$builddir/src/zq"
#  Seconds any one command may take before the test calls it hung.
limit=20
if [ -n "${ZQ_VALGRIND:-}" ]; then
    limit=120
fi

fail () {
    echo "test_cli: FAIL: $*" >&2
    exit 1
}

[ -x "$zq_bin" ] || fail "$zq_bin is not built"

work=$(mktemp -d "${TMPDIR:-/tmp}/zq-cli.XXXXXX") || fail "mktemp -d failed"
cleanup () {
    #  Background commands all run under timeout; stop any left over.
    for pid in $(jobs -p); do
        kill "$pid" 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT

#  zq ARGS...: runs the command line (under valgrind for make memcheck).
zq () {
    if [ -n "${ZQ_VALGRIND:-}" ]; then
        timeout "$limit" "$builddir/libtool" --mode=execute $ZQ_VALGRIND "$zq_bin" "$@"
    else
        timeout "$limit" "$zq_bin" "$@"
    fi
}

#  expect_status WANT GOT WHAT
expect_status () {
    [ "$2" -eq "$1" ] || fail "$3: exit status $2, expected $1 (stderr: $(cat "$work/err" 2>/dev/null))"
}

#  expect_output FILE EXPECTED-TEXT WHAT
expect_output () {
    printf '%s\n' "$2" > "$work/expected"
    cmp -s "$1" "$work/expected" || {
        echo "--- expected"; cat "$work/expected"; echo "--- got"; cat "$1"
        fail "$3: output differs"
    }
}

#  first_line FILE: waits (bounded) until FILE has a first line, prints it.
first_line () {
    tries=0
    while [ $tries -lt $((limit * 20)) ]; do
        line=$(head -n 1 "$1" 2>/dev/null)
        if [ -n "$line" ]; then
            printf '%s\n' "$line"
            return 0
        fi
        tries=$((tries + 1))
        sleep 0.05
    done
    return 1
}

ep="ipc://$work"

#  ---- help, version, usage errors ---------------------------------------
zq --version > "$work/out" 2> "$work/err"
expect_status 0 $? "--version"
grep -q '^zq [0-9]' "$work/out" || fail "--version prints no version"
zq --help > "$work/help" 2> "$work/err"
expect_status 0 $? "--help"
for command in push pull pub sub req rep bench; do
    grep -q "^  $command " "$work/help" || fail "--help does not list $command"
    zq $command --help > "$work/out" 2> "$work/err"
    expect_status 0 $? "$command --help"
    grep -q "^Usage: zq $command" "$work/out" || fail "$command --help has no usage line"
    grep -q "^Exit status:" "$work/out" || fail "$command --help lists no exit status"
done
zq help pull > "$work/out" 2> "$work/err"
expect_status 0 $? "help pull"
zq frobnicate > "$work/out" 2> "$work/err"
expect_status 1 $? "unknown command"
grep -q "no such command 'frobnicate'" "$work/err" || fail "unknown command: no clear message"
[ -s "$work/out" ] && fail "unknown command wrote to stdout"
zq > "$work/out" 2> "$work/err"
expect_status 1 $? "no command"
zq pull --bogus "@$ep/x" > "$work/out" 2> "$work/err"
expect_status 1 $? "unknown option"
zq push "@$ep/x" > "$work/out" 2> "$work/err"
expect_status 1 $? "missing BODY"
zq pull "@$ep/x" -n 0 > "$work/out" 2> "$work/err"
expect_status 1 $? "-n 0"
zq pull "@$ep/x" -o nosuchoption=1 > "$work/out" 2> "$work/err"
expect_status 1 $? "-o unknown option"
zq pull "@$ep/x" -o sndhwm=-5 > "$work/out" 2> "$work/err"
expect_status 1 $? "-o out of range"

#  ---- transport errors --------------------------------------------------
zq pull "@ipc://$work/no/such/dir/socket" -t 100 > "$work/out" 2> "$work/err"
expect_status 4 $? "bind in a missing directory"
grep -q "cannot open" "$work/err" || fail "bind failure: no clear message"
zq push "@tcp://127.0.0.1:notaport" '{}' > "$work/out" 2> "$work/err"
expect_status 4 $? "malformed endpoint"

#  ---- push/pull: JSON round trip, non-ASCII, subject, headers -------------
zq pull "@$ep/p1" -n 3 > "$work/pull.out" 2> "$work/pull.err" &
pull=$!
zq push ">$ep/p1" orders '{"order":1,"item":"café ☕","tags":["ü","日本"],"n":-1.5}' \
    2> "$work/err"
expect_status 0 $? "push literal"
printf '%s\n' '{"order":2}' '' '   ' '[true,null,"ñ"]' | zq push ">$ep/p1" - 2> "$work/err"
expect_status 0 $? "push from stdin"
wait $pull
expect_status 0 $? "pull -n 3"
expect_output "$work/pull.out" '{"order":1,"item":"café ☕","tags":["ü","日本"],"n":-1.5}
{"order":2}
[true,null,"ñ"]' "push/pull round trip"

#  tcp with a port chosen by the system, --print-endpoint, --envelope, -H.
zq pull "@tcp://127.0.0.1:*" -p -n 1 -e > "$work/tcp.out" 2> "$work/pull.err" &
pull=$!
endpoint=$(first_line "$work/tcp.out") || fail "pull printed no endpoint"
case "$endpoint" in
    tcp://127.0.0.1:[0-9]*) ;;
    *) fail "--print-endpoint printed '$endpoint'" ;;
esac
zq push ">$endpoint" shop.orders -H trace=abc '"hello"' 2> "$work/err"
expect_status 0 $? "push over tcp"
wait $pull
expect_status 0 $? "pull over tcp"
[ "$(wc -l < "$work/tcp.out")" -eq 2 ] || fail "pull -p -n 1: $(cat "$work/tcp.out")"
tail -n 1 "$work/tcp.out" | grep -q '"subject":"shop.orders","created_ms":[0-9]*,"attempt":0,"headers":{"trace":"abc"},"body":"hello"}$' \
    || fail "--envelope line: $(tail -n 1 "$work/tcp.out")"
tail -n 1 "$work/tcp.out" | grep -q '^{"id":"[0-9a-f]\{32\}"' || fail "--envelope has no id"

#  -n on the sending side: a literal BODY COUNT times; stdin lines up to COUNT.
zq pull "@$ep/p2" -n 5 > "$work/pull.out" 2> "$work/pull.err" &
pull=$!
zq push ">$ep/p2" -n 3 '{"again":true}' 2> "$work/err"
expect_status 0 $? "push -n 3"
printf '1\n2\n3\n4\n' | zq push ">$ep/p2" -n 2 - 2> "$work/err"
expect_status 0 $? "push -n 2 from stdin"
wait $pull
expect_status 0 $? "pull -n 5"
expect_output "$work/pull.out" '{"again":true}
{"again":true}
{"again":true}
1
2' "push -n"

#  ---- timeouts ----------------------------------------------------------
zq pull "@$ep/quiet" -t 200 > "$work/out" 2> "$work/err"
expect_status 2 $? "pull --timeout with nothing sent"
[ -s "$work/out" ] && fail "pull --timeout wrote to stdout"
zq push ">$ep/nobody" -t 200 '{}' > "$work/out" 2> "$work/err"
expect_status 2 $? "push --timeout with no consumer"
#  Fewer than -n before the timeout is a timeout too, after printing them.
zq pull "@$ep/p3" -n 3 -t 1500 > "$work/pull.out" 2> "$work/pull.err" &
pull=$!
zq push ">$ep/p3" '{"only":1}' 2> "$work/err"
expect_status 0 $? "push one"
wait $pull
expect_status 2 $? "pull -n 3 receiving one"
expect_output "$work/pull.out" '{"only":1}' "pull -n 3 prints what came"

#  ---- invalid JSON --------------------------------------------------------
zq push ">$ep/p4" '{"open":' > "$work/out" 2> "$work/err"
expect_status 3 $? "invalid JSON BODY"
grep -q "BODY" "$work/err" || fail "invalid BODY: no clear message"
zq pull "@$ep/p4" -n 2 > "$work/pull.out" 2> "$work/pull.err" &
pull=$!
printf '%s\n' '{"a":1}' '{"b":2}' '{"c":' '{"d":4}' | zq push ">$ep/p4" - > "$work/out" 2> "$work/err"
expect_status 3 $? "invalid JSON on stdin line 3"
grep -q "line 3" "$work/err" || fail "invalid stdin line: message does not name line 3: $(cat "$work/err")"
grep -q "2 messages before it were sent" "$work/err" || fail "invalid stdin line: sent count not reported"
wait $pull
expect_status 0 $? "pull of the lines before the bad one"
expect_output "$work/pull.out" '{"a":1}
{"b":2}' "lines before the bad one"

#  ---- pub/sub with prefixes ---------------------------------------------
#  Each subscriber binds; publishers connect to both and wait until the
#  subscriptions are in force (-w), so nothing is missed by joining late.
zq sub "@$ep/s1" news. -n 2 > "$work/s1.out" 2> "$work/s1.err" &
sub1=$!
zq sub "@$ep/s2" weather -n 1 -e > "$work/s2.out" 2> "$work/s2.err" &
sub2=$!
subs=">$ep/s1,>$ep/s2"
zq pub "$subs" -w 2 -t 10000 news.sport '{"goal":"ñ"}' 2> "$work/err"
expect_status 0 $? "pub news.sport"
zq pub "$subs" -w 2 -t 10000 weather.rain '{"mm":3}' 2> "$work/err"
expect_status 0 $? "pub weather.rain"
wait $sub2
expect_status 0 $? "sub weather"
zq pub "$subs" -w 1 -t 10000 news.tech '{"chip":1}' 2> "$work/err"
expect_status 0 $? "pub news.tech"
wait $sub1
expect_status 0 $? "sub news."
expect_output "$work/s1.out" '{"goal":"ñ"}
{"chip":1}' "sub news. prefix"
grep -q '"subject":"weather.rain".*"body":{"mm":3}}$' "$work/s2.out" \
    || fail "sub weather: $(cat "$work/s2.out")"
zq pub "@$ep/lonely" -w 1 -t 200 x '{}' > "$work/out" 2> "$work/err"
expect_status 2 $? "pub --wait-subscribers timing out"

#  ---- req/rep: echo -------------------------------------------------------
#  Each server serves one request more than the replies checked: the last
#  request only ends it (-n), as a client may lose the reply a server sends
#  right before it exits (the rpc client's ZMQ_IMMEDIATE drops unread
#  input when the connection closes).
last_request () {
    zq req ">$1" -t 5000 '"last"' > /dev/null 2>&1
}
zq rep "@$ep/r1" -n 4 > "$work/rep.out" 2> "$work/rep.err" &
rep=$!
zq req ">$ep/r1" '{"ping":"é"}' > "$work/out" 2> "$work/err"
expect_status 0 $? "req echo"
expect_output "$work/out" '{"ping":"é"}' "req echo reply"
printf '1\n[2]\n' | zq req ">$ep/r1" - > "$work/out" 2> "$work/err"
expect_status 0 $? "req from stdin"
expect_output "$work/out" '1
[2]' "req stdin replies"
last_request "$ep/r1"
wait $rep
expect_status 0 $? "rep -n 4"
zq req ">$ep/nobody" -t 300 '{}' > "$work/out" 2> "$work/err"
expect_status 2 $? "req with no server"

#  ---- req: SIGINT and SIGTERM end it at once ------------------------------
#  Whatever it waits for: a reply that cannot come (its request still held
#  for a server that never connects), or the next line of stdin.
now_ms () {
    date +%s%3N
}
#  running PID: true while PID has not ended (a zombie has).
running () {
    state=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)
    [ -n "$state" ] && [ "$state" != Z ]
}
#  signal_stops SIGNAL STATUS WHAT STDIN-TEXT: starts zq req with that text
#  on a stdin it keeps open, waits until its queue is open (libzmq's
#  threads exist), sends SIGNAL and checks it ends in time with STATUS.
signal_stops () {
    rm -f "$work/stdin"
    mkfifo "$work/stdin" || fail "mkfifo"
    "$zq_bin" req ">$ep/nobody" - < "$work/stdin" > "$work/out" 2> "$work/err" &
    pid=$!
    exec 3> "$work/stdin"
    printf '%s' "$4" >&3
    deadline=$(($(now_ms) + limit * 1000))
    while [ "$(ls "/proc/$pid/task" 2>/dev/null | wc -l)" -lt 3 ]; do
        [ "$(now_ms)" -lt "$deadline" ] || fail "$3: zq req did not start"
        sleep 0.01
    done
    start=$(now_ms)
    kill "-$1" "$pid"
    while running "$pid"; do
        [ "$(now_ms)" -lt "$deadline" ] || fail "$3: still running"
        sleep 0.005
    done
    took=$(($(now_ms) - start))
    wait "$pid"
    status=$?
    exec 3>&-
    expect_status "$2" "$status" "$3"
    bound=500
    [ -z "${ZQ_VALGRIND:-}" ] || bound=5000
    [ "$took" -le "$bound" ] || fail "$3: ended $took ms after SIG$1 (at most $bound)"
    echo "test_cli: $3: ended $took ms after SIG$1"
}
signal_stops INT 130 "req waiting for a reply" '{}
'
signal_stops TERM 143 "req waiting on stdin" ''

#  ---- req/rep: --exec -----------------------------------------------------
cat > "$work/service.sh" <<'EOF'
read request
case "$request" in
    *fail*) echo "failing on purpose" >&2; exit 3 ;;
    *junk*) echo "not json" ;;
    *) printf '{"subject":"%s","request":%s}\n' "$ZQ_SUBJECT" "$request" ;;
esac
EOF
zq rep "@$ep/r2" -n 4 -x "sh $work/service.sh" > "$work/rep.out" 2> "$work/rep.err" &
rep=$!
zq req ">$ep/r2" calc '{"x":1}' > "$work/out" 2> "$work/err"
expect_status 0 $? "req to --exec"
expect_output "$work/out" '{"subject":"calc","request":{"x":1}}' "--exec reply"
zq req ">$ep/r2" '"fail"' > "$work/out" 2> "$work/err"
expect_status 5 $? "req answered by a failing command"
grep -q '"error":"command failed with exit status 3"' "$work/out" \
    || fail "failing command: error reply body: $(cat "$work/out")"
grep -q "error reply" "$work/err" || fail "failing command: nothing on stderr"
#  The server goes on after a failing command.
zq req ">$ep/r2" '"junk"' > "$work/out" 2> "$work/err"
expect_status 5 $? "req answered by a command printing no JSON"
last_request "$ep/r2"
wait $rep
expect_status 0 $? "rep --exec survives failing commands"

#  ---- bench: one line of key=value pairs ending with ratio= --------------
zq bench pipeline --transport ipc -n 20000 --rounds 1 > "$work/out" 2> "$work/err"
expect_status 0 $? "bench pipeline"
grep -qx 'pipeline ipc size=100 count=20000 zq_msgs_per_s=[0-9]* raw_msgs_per_s=[0-9]* ratio=[0-9.]*' \
    "$work/out" || fail "bench pipeline line: $(cat "$work/out")"
zq bench rpc --transport inproc --size 10 -n 1000 --rounds 1 > "$work/out" 2> "$work/err"
expect_status 0 $? "bench rpc"
grep -qx 'rpc inproc size=10 count=1000 zq_p50_us=[0-9.]* zq_p99_us=[0-9.]* raw_p50_us=[0-9.]* raw_p99_us=[0-9.]* ratio=[0-9.]*' \
    "$work/out" || fail "bench rpc line: $(cat "$work/out")"
grep -q "round 1/1" "$work/err" || fail "bench shows no progress on stderr"
grep -q '^rpc legs' "$work/out" && fail "bench rpc: legs of bodies too small to carry the clocks"
#  From 16 bytes, bodies carry the clocks: a second line gives each side's
#  legs. Each request's legs add up to its round trip and none is ever the
#  whole of it, so each leg's median lies below the side's p50. Over tcp:
#  clients and servers in separate processes, frames past libzmq's small
#  size.
zq bench rpc --size 100 -n 1000 --rounds 1 > "$work/out" 2> "$work/err"
expect_status 0 $? "bench rpc with legs"
legs='zq_to_server_us=[0-9.]* zq_server_us=[0-9.]* zq_to_client_us=[0-9.]*'
legs="$legs raw_to_server_us=[0-9.]* raw_server_us=[0-9.]* raw_to_client_us=[0-9.]*"
grep -qx "rpc legs tcp size=100 count=1000 $legs" "$work/out" \
    || fail "bench rpc legs line: $(cat "$work/out")"
tr ' ' '\n' < "$work/out" | awk -F= '
    NF == 2 { value[$1] = $2 }
    END {
        split("zq raw", sides, " ")
        for (s = 1; s <= 2; s++) {
            p50 = value[sides[s] "_p50_us"]
            if (value[sides[s] "_to_server_us"] <= 0 || value[sides[s] "_to_client_us"] <= 0 ||
                value[sides[s] "_server_us"] < 0)
                exit 1
            if (value[sides[s] "_to_server_us"] >= p50 || value[sides[s] "_server_us"] >= p50 ||
                value[sides[s] "_to_client_us"] >= p50)
                exit 1
        }
    }' || fail "bench rpc legs out of their round trips: $(cat "$work/out")"
#  A side that cannot bind (no such certificate) ends the run at once with
#  its error, naming both endpoints; it used to wait out the run's deadline.
started=$(date +%s)
zq bench rpc -n 200 --rounds 1 -o curve_cert="$work/no-such-cert" > "$work/out" 2> "$work/err"
expect_status 4 $? "bench rpc whose server cannot bind"
grep -q "zq and raw run on tcp://127.0.0.1:\* and tcp://127.0.0.1:\* failed: binding side: " \
    "$work/err" || fail "bench rpc bind failure: $(cat "$work/err")"
[ $(($(date +%s) - started)) -lt 60 ] || fail "bench rpc bind failure took $(($(date +%s) - started)) s"
zq bench frob > "$work/out" 2> "$work/err"
expect_status 1 $? "unknown benchmark"

#  ---- bench --pin: each side's process on a CPU of its own ----------------
zq bench rpc --pin --transport inproc -n 100 --rounds 1 > "$work/out" 2> "$work/err"
expect_status 1 $? "bench rpc --pin over inproc"
grep -q -- "--pin wants tcp or ipc" "$work/err" || fail "bench --pin inproc: $(cat "$work/err")"
zq bench spool --pin > "$work/out" 2> "$work/err"
expect_status 1 $? "bench spool --pin"
grep -q -- "--pin is for bench pipeline and rpc" "$work/err" || fail "bench spool --pin: $(cat "$work/err")"
taskset -c 0 "$zq_bin" bench rpc --pin -n 100 --rounds 1 > "$work/out" 2> "$work/err"
expect_status 1 $? "bench rpc --pin on one CPU"
grep -q -- "--pin needs two CPUs, and this process may use 1" "$work/err" \
    || fail "bench --pin on one CPU: $(cat "$work/err")"
if [ "$(nproc)" -ge 2 ]; then
    #  While it runs, its two children must each be allowed one CPU: the
    #  two it named.
    zq bench rpc --pin -n 20000 --rounds 1 > "$work/out" 2> "$work/err" &
    bench=$!
    pinned=""
    deadline=$(($(date +%s) + 30))
    while [ -z "$pinned" ] && [ "$(date +%s)" -lt "$deadline" ] && kill -0 "$bench" 2> /dev/null; do
        lists=""
        for pid in $(pgrep -f "bench rpc --pin -n 20000"); do
            lists="$lists $(awk '/^Cpus_allowed_list/ {print $2}' "/proc/$pid/status" 2> /dev/null)"
        done
        named=$(sed -n "s/.*binder's process on CPU \([0-9]*\), the connector's on CPU \([0-9]*\)/\1 \2/p" \
            "$work/err")
        if [ -n "$named" ]; then
            set -- $named
            case " $lists " in *" $1 "*) case " $lists " in *" $2 "*) pinned="$lists" ;; esac ;; esac
        fi
    done
    wait "$bench"
    expect_status 0 $? "bench rpc --pin"
    [ -n "$pinned" ] || fail "bench rpc --pin: no child pinned as named ($(cat "$work/err"); lists:$lists)"
    grep -q "^rpc tcp size=100 count=20000 .*ratio=[0-9.]*$" "$work/out" \
        || fail "bench rpc --pin line: $(cat "$work/out")"
fi

#  ---- durability benches: tiny counts, one round, spools under $work ------
#  bench_line NAME REGEX: the output has a line matching REGEX whose numeric
#  values are all positive (over_fsync_us may be negative).
bench_line () {
    line=$(grep -x "$2" "$work/out") || fail "bench $1: no line matching '$2' in: $(cat "$work/out")"
    for pair in $line; do
        case $pair in
            over_fsync_us=*|over_fsync_and_rtt_us=*|over_paired_us=*) ;;   # may be negative in noise
            *=[0-9]*)
                value=${pair#*=}
                awk -v v="$value" 'BEGIN { exit !(v + 0 > 0) }' \
                    || fail "bench $1: $pair is not a positive number in: $line" ;;
        esac
    done
}
zq bench spool -n 200 --producers 2 --rounds 1 --backlog 5000 --dir "$work" \
    > "$work/out" 2> "$work/err"
expect_status 0 $? "bench spool"
bench_line spool 'spool append size=100 producers=2 fsync=always count=200 msgs_per_s=[0-9]* fsyncs_per_s=[0-9]* records_per_fsync=[0-9.]*'
bench_line spool 'spool confirm size=100 count=200 p50_us=[0-9.]* p99_us=[0-9.]* fsync_p50_us=[0-9.]* fsync_p99_us=[0-9.]* over_fsync_us=-*[0-9.]* ratio=[0-9.]*'
bench_line spool 'spool backlog size=100 messages=5000 append_msgs_per_s=[0-9]* max_rss_kib=[0-9]* reopen_ms=[0-9.]* reopen_rss_kib=[0-9]* disk_mib=[0-9]*'
grep -q "round 1/1" "$work/err" || fail "bench spool shows no progress on stderr"
zq bench reliable -n 300 --rounds 1 --dir "$work" > "$work/out" 2> "$work/err"
expect_status 0 $? "bench reliable"
bench_line reliable 'reliable e2e tcp size=100 count=300 fsync=always window=8192 put_msgs_per_s=[0-9]* e2e_msgs_per_s=[0-9]* raw_msgs_per_s=[0-9]* ratio=[0-9.]*'
grep -q "round 1/1: .* raw [0-9]* msgs/s" "$work/err" || fail "bench reliable shows no raw figure on stderr"
bench_line reliable 'reliable confirm tcp size=100 count=300 p50_us=[0-9.]* p99_us=[0-9.]* fsync_p50_us=[0-9.]* fsync_p99_us=[0-9.]* over_fsync_us=-*[0-9.]* ratio=[0-9.]*'
bench_line reliable 'reliable rtt tcp size=100 raw_rtt_p50_us=[0-9.]* fsync_p50_us=[0-9.]* confirm_p50_us=[0-9.]* over_fsync_and_rtt_us=-*[0-9.]* fsync_plus_rtt_p50_us=[0-9.]* over_paired_us=-*[0-9.]*'
grep -q "round 1/1: fsync ([0-9]* bytes) .* raw round trip p50 [0-9.]* us" "$work/err" \
    || fail "bench reliable shows no fsync size or raw round trip on stderr"
zq bench reliable -n 100 --rounds 1 --transport ipc --dir "$work" > "$work/out" 2> "$work/err"
expect_status 0 $? "bench reliable over ipc"
bench_line reliable 'reliable e2e ipc size=100 count=100 fsync=always window=8192 put_msgs_per_s=[0-9]* e2e_msgs_per_s=[0-9]* raw_msgs_per_s=[0-9]* ratio=[0-9.]*'
zq bench reliable -n 100 --rounds 1 --transport inproc --dir "$work" > "$work/out" 2> "$work/err"
expect_status 0 $? "bench reliable over inproc"
bench_line reliable 'reliable e2e inproc size=100 count=100 fsync=always window=8192 put_msgs_per_s=[0-9]* e2e_msgs_per_s=[0-9]* raw_msgs_per_s=[0-9]* ratio=[0-9.]*'
bench_line reliable 'reliable confirm inproc size=100 count=100 p50_us=[0-9.]* p99_us=[0-9.]* fsync_p50_us=[0-9.]* fsync_p99_us=[0-9.]* over_fsync_us=-*[0-9.]* ratio=[0-9.]*'
bench_line reliable 'reliable rtt inproc size=100 raw_rtt_p50_us=[0-9.]* fsync_p50_us=[0-9.]* confirm_p50_us=[0-9.]* over_fsync_and_rtt_us=-*[0-9.]* fsync_plus_rtt_p50_us=[0-9.]* over_paired_us=-*[0-9.]*'
ZQ_ZQD="$builddir/src/zqd" zq bench device -n 2000 --rounds 1 --backlog 3000 --dir "$work" \
    > "$work/out" 2> "$work/err"
expect_status 0 $? "bench device"
bench_line device 'device put tcp size=100 producers=2 count=2000 fsync=always msgs_per_s=[0-9]* raw_msgs_per_s=[0-9]* ratio=[0-9.]* cpu_ns_per_msg=[1-9][0-9]* raw_cpu_ns_per_msg=[1-9][0-9]*'
bench_line device 'device drain tcp size=100 count=4000 prefetch=1000 msgs_per_s=[0-9]* raw_msgs_per_s=[0-9]* ratio=[0-9.]* cpu_ns_per_msg=[1-9][0-9]* raw_cpu_ns_per_msg=[1-9][0-9]*'
bench_line device 'device e2e tcp size=100 producers=2 count=2000 prefetch=1000 msgs_per_s=[0-9]* raw_msgs_per_s=[0-9]* ratio=[0-9.]* cpu_ns_per_msg=[1-9][0-9]* raw_cpu_ns_per_msg=[1-9][0-9]*'
grep -q "round 1/1: put raw [0-9]* zq [0-9]* msgs/s" "$work/err" || fail "bench device shows no raw figures on stderr"
bench_line device 'device restart size=100 backlog=5000 put_msgs_per_s=[0-9]* stop_s=[0-9.]* restart_s=[0-9.]* rss_kib=[0-9]* hwm_kib=[0-9]* restart_rss_kib=[0-9]* restart_hwm_kib=[0-9]* kill_restart_s=[0-9.]* kill_restart_rss_kib=[0-9]* drain_msgs_per_s=[0-9]* drain_hwm_kib=[0-9]* producer_max_rss_kib=[0-9]* consumer_max_rss_kib=[0-9]*'
#  Every spool and file a bench made is gone.
leftover=$(find "$work" -name 'zq-bench-*' | head -n 1)
[ -z "$leftover" ] || fail "bench left $leftover behind"

echo "test_cli: PASS"
exit 0
