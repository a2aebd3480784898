#!/bin/sh
# Replays the spool recovery fuzzer's corpus (damaged spool directories).
exec ${SHELL:-/bin/sh} "$ZQ_SRCDIR/tests/fuzz/replay_corpus.sh" spool 20
