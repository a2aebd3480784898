/*  =========================================================================
    zmq_old_version - a preload library for test_zqd_safe.sh: its
    zmq_version reports libzmq 4.3.2, older than the 4.3.3 zqd requires,
    so that the test sees zqd check the libzmq it loaded at run time.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
void zmq_version (int *major, int *minor, int *patch);

void
zmq_version (int *major, int *minor, int *patch)
{
    *major = 4;
    *minor = 3;
    *patch = 2;
}
