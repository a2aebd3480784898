#!/bin/sh
# Replays the admin protocol fuzzer's corpus (requests to a device, replies to zq's admin commands).
exec ${SHELL:-/bin/sh} "$ZQ_SRCDIR/tests/fuzz/replay_corpus.sh" admin 20
