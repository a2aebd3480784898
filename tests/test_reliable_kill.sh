#!/bin/sh
#   make check's short run of the reliable kill -9 cycles (the long one is
#   make check-faults): see tests/fault/reliable_kill.sh.
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
srcdir=${ZQ_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
ZQ_RELIABLE_KILL_CYCLES=${ZQ_RELIABLE_KILL_CYCLES:-3} exec sh "$srcdir/tests/fault/reliable_kill.sh"
