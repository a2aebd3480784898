#!/bin/sh
#   The spool's long crash loop (make check-faults): thousands of runs of
#   tests/test_zq_spool_crash, each crashing the spool at a random sync
#   with a random crash mode, then checking what a reopen recovers.
#   ZQ_SPOOL_CRASH_RUNS overrides the number of runs (default 2000).
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
set -eu
builddir=${ZQ_BUILDDIR:-.}
runs=${ZQ_SPOOL_CRASH_RUNS:-2000}
# Seeds after those make check uses (1..100), so the two cover different runs.
ZQ_SPOOL_CRASH_RUNS=$runs ZQ_SPOOL_CRASH_SEED=${ZQ_SPOOL_CRASH_SEED:-1000} \
    exec "$builddir/tests/test_zq_spool_crash"
