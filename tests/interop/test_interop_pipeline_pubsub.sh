#!/bin/sh
#   zq's pipeline and pubsub interop test: a Python peer written from
#   doc/PROTOCOL.md (pyzmq + msgpack-python) produces, consumes, publishes
#   and subscribes against tests/interop/pattern_peer (libzq), over tcp and
#   ipc. The Python side starts the C side and bounds every wait.
#
#   Run by `make check` with ZQ_SRCDIR, ZQ_BUILDDIR and ZQ_PYTHON set; also
#   by hand from a build directory. Exits 0 on pass, 1 on failure.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.

set -u

test_name=test_interop_pipeline_pubsub
. "$(dirname "$0")/interop_lib.sh"
run_over_transports patterns 300 "$srcdir/tests/interop/pubsub_peer.py" "$builddir/tests/interop/pattern_peer"
