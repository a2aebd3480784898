#!/bin/sh
# Replays the client fuzzer's corpus (frames a raw server sends to a zq producer and consumer).
exec ${SHELL:-/bin/sh} "$ZQ_SRCDIR/tests/fuzz/replay_corpus.sh" client 20
