#!/bin/sh
# Replays one fuzz target's corpus (tests/fuzz/corpus/NAME) through the
# target built as a plain program (replay_NAME): every input must be
# handled without a crash or a failed check, and the corpus must hold at
# least MIN inputs. Usage: replay_corpus.sh NAME MIN
set -e
name=$1
min=$2
corpus="$ZQ_SRCDIR/tests/fuzz/corpus/$name"
count=$(find "$corpus" -type f | wc -l)
if [ "$count" -lt "$min" ]; then
    echo "corpus $corpus has only $count inputs (at least $min expected)" >&2
    exit 1
fi
exec ${ZQ_VALGRIND:-} "$ZQ_BUILDDIR/tests/fuzz/replay_$name" "$corpus"
