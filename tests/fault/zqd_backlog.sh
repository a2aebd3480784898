#!/bin/sh
#   zqd with a large backlog (make check-faults): ZQ_BACKLOG messages of
#   100 bytes (default 1000000) are put into a zqd with fsync always;
#   zqd is stopped and started again, then killed with SIGKILL and started
#   again, and one consumer drains the backlog (zq bench device --backlog).
#   Checks zqd's bounds with a backlog (stated for 10 M messages): resident
#   memory at most 64 MiB at the backlog, after each restart and through
#   the drain; each restart answers an admin STAT, counting every message,
#   within 3 s; the producers' and the consumer's peak resident memory at
#   most 64 MiB (it follows their windows, not the backlog). The whole run
#   is bounded by the bench's own limits (a stalled side gives up after
#   10 s, 30 minutes in all).
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.

builddir=${ZQ_BUILDDIR:-.}
backlog=${ZQ_BACKLOG:-1000000}
max_kib=65536
max_restart_s=3

work=$(mktemp -d "${TMPDIR:-/tmp}/zq-backlog-XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT

ZQ_ZQD="$builddir/src/zqd" "$builddir/src/zq" bench device -n 2000 --rounds 1 \
    --backlog "$backlog" --dir "$work" > "$work/out" 2> "$work/err"
status=$?
if [ "$status" -ne 0 ]; then
    cat "$work/err" >&2
    echo "zqd_backlog: FAIL: zq bench device exited $status" >&2
    exit 1
fi
line=$(grep '^device restart ' "$work/out")
if [ -z "$line" ]; then
    cat "$work/out" "$work/err" >&2
    echo "zqd_backlog: FAIL: no 'device restart' line" >&2
    exit 1
fi
echo "$line"

#  The value of key= in the line.
value () {
    printf '%s\n' "$line" | tr ' ' '\n' | sed -n "s/^$1=//p"
}

failed=0
for key in rss_kib restart_rss_kib kill_restart_rss_kib drain_hwm_kib \
    producer_max_rss_kib consumer_max_rss_kib; do
    v=$(value "$key")
    if [ -z "$v" ] || [ "$v" -le 0 ] || [ "$v" -gt "$max_kib" ]; then
        echo "zqd_backlog: FAIL: $key=$v, bound $max_kib KiB" >&2
        failed=1
    fi
done
for key in restart_s kill_restart_s; do
    v=$(value "$key")
    if [ -z "$v" ] || ! awk -v v="$v" -v max="$max_restart_s" 'BEGIN { exit !(v > 0 && v <= max) }'; then
        echo "zqd_backlog: FAIL: $key=$v, bound $max_restart_s s" >&2
        failed=1
    fi
done
[ "$failed" -eq 0 ] || exit 1
echo "zqd_backlog: PASS ($backlog messages)"
