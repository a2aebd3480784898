#!/bin/sh
#   zq's rpc interop test: a Python peer written from doc/PROTOCOL.md
#   (pyzmq + msgpack-python) acts as client against a zq server and as
#   server against a zq client (tests/rpc_proc), over tcp and ipc. The
#   Python side starts the C side and bounds every wait.
#
#   Run by `make check` with ZQ_SRCDIR, ZQ_BUILDDIR and ZQ_PYTHON set; also
#   by hand from a build directory. Exits 0 on pass, 1 on failure.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.

set -u

test_name=test_interop_rpc
. "$(dirname "$0")/interop_lib.sh"
run_over_transports rpc 120 "$srcdir/tests/interop/rpc_peer.py" "$builddir/tests/rpc_proc"
