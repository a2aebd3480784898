#   Failure and check, shared by zq's Python interop peers (pubsub_peer.py,
#   rpc_peer.py): a peer raises Failure through check, and its main reports
#   the message and exits 1.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.


class Failure(Exception):
    pass


def check(condition, what):
    """Raises Failure(what) unless condition holds."""
    if not condition:
        raise Failure(what)
