#!/bin/sh
#   The manual pages as make install installs them (man/, written by the
#   build from doc/): groff reads each without a warning, `man -l` renders
#   it, no @name@ is left unsubstituted, the pages that document a header
#   (zq_msg, zq_spool, zq_device) list in their SYNOPSIS exactly the
#   functions the header exports, zq_queue(3) shows the reliable calls in
#   an EXAMPLE, and the pages point at the installed Markdown references.
#
#   Run by `make check` with ZQ_SRCDIR and ZQ_BUILDDIR set. Exits 0 on
#   pass, 1 on failure.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.

set -u
srcdir=${ZQ_SRCDIR:-$(dirname "$0")/..}
builddir=${ZQ_BUILDDIR:-$(pwd)}
status=0

fail () {
    echo "test_man: FAIL: $*" >&2
    status=1
}

command -v groff > /dev/null || { echo "test_man: FAIL: groff is not installed" >&2; exit 1; }
pages=$(ls "$srcdir"/doc/*.[1-8])
[ -n "$pages" ] || { echo "test_man: FAIL: no pages in $srcdir/doc" >&2; exit 1; }
for source in $pages; do
    name=$(basename "$source")
    page="$builddir/man/$name"
    [ -f "$page" ] || { fail "$name: not built as $page"; continue; }
    warnings=$(groff -man -ww -z "$page" 2>&1)
    [ -z "$warnings" ] || fail "$name: groff warns: $warnings"
    left=$(grep -n '@[A-Za-z_]*@' "$page")
    [ -z "$left" ] || fail "$name: unsubstituted: $left"
    if command -v man > /dev/null; then
        MANWIDTH=80 man -l "$page" > /dev/null 2> "$builddir/man/$name.err" \
            || fail "$name: man -l failed: $(cat "$builddir/man/$name.err")"
        rm -f "$builddir/man/$name.err"
    fi
done

#  Functions a header exports, and those a page's SYNOPSIS names.
exported () {
    sed -n 's/^ZQ_EXPORT[^(]*[ *]\([a-z_0-9]*\) (.*/\1/p' "$srcdir/include/$1.h" | sort -u
}
synopsis () {
    sed -n '/^\.SH SYNOPSIS/,/^\.SH /p' "$builddir/man/$1" |
        sed -n 's/^\.BI* "[^(]*[ *]\([a-z_0-9]*\) (.*/\1/p' | sort -u
}
for pair in zq_msg:zq_msg.3 zq_spool:zq_spool.3 zq_device:zq_device.3; do
    header=${pair%%:*}
    page=${pair#*:}
    exported "$header" > "$builddir/man/exported"
    synopsis "$page" > "$builddir/man/synopsis"
    [ -s "$builddir/man/exported" ] || fail "$header.h: no exported function found"
    missing=$(comm -23 "$builddir/man/exported" "$builddir/man/synopsis" | tr '\n' ' ')
    extra=$(comm -13 "$builddir/man/exported" "$builddir/man/synopsis" | tr '\n' ' ')
    [ -z "$missing" ] || fail "$page: SYNOPSIS lacks $missing"
    [ -z "$extra" ] || fail "$page: SYNOPSIS names what $header.h does not export: $extra"
    rm -f "$builddir/man/exported" "$builddir/man/synopsis"
done

#  zq_queue(3): the reliable calls, with an example.
sed -n '/^\.SH EXAMPLE/,/^\.SH /p' "$builddir/man/zq_queue.3" > "$builddir/man/example"
for call in zq_queue_subscribe zq_queue_send zq_queue_post zq_queue_confirmed zq_queue_ack \
    zq_queue_endpoint; do
    grep -q "$call" "$builddir/man/example" || fail "zq_queue.3: EXAMPLE lacks $call"
done
rm -f "$builddir/man/example"

#  The systemd unit, generated the same way.
if [ -f "$builddir/dist/zqd.service" ]; then
    left=$(grep -n '@[A-Za-z_]*@' "$builddir/dist/zqd.service")
    [ -z "$left" ] || fail "zqd.service: unsubstituted: $left"
    grep -q '^StateDirectory=zqd$' "$builddir/dist/zqd.service" \
        && ! grep -q '/var/lib/zqd' "$builddir/dist/zqd.service" \
        && fail "zqd.service: its comments do not say where StateDirectory is"
fi

#  The pages name the installed references, not the source tree.
grep -l 'doc/[A-Z]*\.md' "$builddir"/man/*.[1-8] > /dev/null 2>&1 \
    && fail "pages name doc/*.md of the source tree: $(grep -n 'doc/[A-Z]*\.md' "$builddir"/man/*.[1-8])"

[ $status -eq 0 ] && echo "test_man: ok"
exit $status
