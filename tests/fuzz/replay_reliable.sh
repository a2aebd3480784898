#!/bin/sh
# Replays the reliable protocol fuzzer's corpus (command frames sent to a real server).
exec ${SHELL:-/bin/sh} "$ZQ_SRCDIR/tests/fuzz/replay_corpus.sh" reliable 20
