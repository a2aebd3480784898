#!/bin/sh
# Replays the decoder fuzzer's corpus (tests/fuzz/corpus/msg_decode) through
# the fuzz target built as a plain program: every input must be handled
# without a crash, and the corpus must not be empty.
set -e
corpus="$ZQ_SRCDIR/tests/fuzz/corpus/msg_decode"
count=$(find "$corpus" -type f | wc -l)
if [ "$count" -lt 50 ]; then
    echo "corpus $corpus has only $count inputs" >&2
    exit 1
fi
exec ${ZQ_VALGRIND:-} "$ZQ_BUILDDIR/tests/fuzz/replay_msg_decode" "$corpus"
