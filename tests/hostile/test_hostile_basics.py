#!/usr/bin/python3
#   The hostile-client harness itself, against a real zqd: a put is
#   confirmed and delivered, a garbage command gets an ERROR and the
#   connection keeps working, and a SIGTERM stops zqd cleanly.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
from hostile import check  # noqa: E402


def test_put_get_and_garbage():
    zqd = hostile.Zqd().start()
    try:
        client = hostile.Client(zqd.endpoint)
        client.send(b"\xc1 not msgpack")
        got = client.recv_command()
        check(got is not None and got[0][1] == hostile.ERROR, "garbage got %r" % (got,))
        ids = client.put_confirmed("basics", [b"one", b"two"])
        client.consume("basics", 10)
        delivered = client.deliveries(2)
        check([d[0] for d in delivered] == ids, "delivered out of order or other ids")
        check([d[2] for d in delivered] == [b"one", b"two"], "bodies differ")
        client.ack(ids)
        client.close()
        zqd.stop()
    finally:
        zqd.close()


hostile.main(globals())
