/*  =========================================================================
    zq - message queues for C services, on ZeroMQ and msgpack.
    The one header users include.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_H_INCLUDED
#define ZQ_H_INCLUDED

#include "zq_library.h"
#include "zq_msg.h"
#include "zq_options.h"
#include "zq_queue.h"
#include "zq_pubsub.h"
#include "zq_rpc.h"
#include "zq_reliable.h"
#include "zq_spool.h"
#include "zq_device.h"

#endif
