#!/bin/sh
#   Stands in for tests/test_zq_spool_crash when the spool's crash mode is
#   not built: says so and reports the test as skipped (exit 77).
echo "test_zq_spool_crash: skipped: the spool's crash mode is not built" \
    "(./configure --enable-crash-injection; ./quickstart and .ci/run do)"
exit 77
