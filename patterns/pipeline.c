/*  =========================================================================
    pipeline - producers push, consumers pull (ZeroMQ PUSH/PULL).

    Each message goes to exactly one consumer: a producer deals messages
    round-robin over the consumers connected to it, a consumer takes them
    fairly from every producer connected to it. On the wire a message is
    just its envelope (doc/PROTOCOL.md, "pipeline").

    Producers set ZMQ_IMMEDIATE: a message is only queued on a connection
    that is up, so a producer with no consumer has no room (send waits, then
    EAGAIN) instead of parking messages on a pipe that may never connect,
    and a consumer that disconnects only takes with it what its own pipe
    held. Delivery is at most once.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_pattern.h"

typedef struct {
    void *handle;
    size_t max_message_bytes;
} s_pipeline_t;

static int
s_open (void *state, zq_pattern_ctx_t *ctx)
{
    s_pipeline_t *self = (s_pipeline_t *)state;
    self->handle = ctx->handle;
    self->max_message_bytes = ctx->max_message_bytes;
    if (ctx->role == ZQ_PRODUCER) {
        int immediate = 1;
        if (zmq_setsockopt (self->handle, ZMQ_IMMEDIATE, &immediate, sizeof immediate))
            return -1;
    }
    return 0;
}

static int
s_send (void *state, zq_msg_t **msg_p)
{
    s_pipeline_t *self = (s_pipeline_t *)state;
    //  A PULL socket refuses to send with ENOTSUP itself.
    return zqi_msg_send_to (msg_p, self->handle, ZMQ_DONTWAIT);
}

static zq_msg_t *
s_recv (void *state)
{
    s_pipeline_t *self = (s_pipeline_t *)state;
    //  A PUSH socket refuses to receive with ENOTSUP itself.
    return zqi_msg_recv_from (self->handle, ZMQ_DONTWAIT, self->max_message_bytes);
}

//  The same, letting libzmq wait (up to ZMQ_SNDTIMEO / ZMQ_RCVTIMEO).
static int
s_send_blocking (void *state, zq_msg_t **msg_p)
{
    s_pipeline_t *self = (s_pipeline_t *)state;
    return zqi_msg_send_to (msg_p, self->handle, 0);
}

static zq_msg_t *
s_recv_blocking (void *state)
{
    s_pipeline_t *self = (s_pipeline_t *)state;
    return zqi_msg_recv_from (self->handle, 0, self->max_message_bytes);
}

const zq_pattern_t zqi_pattern_pipeline = {
    .name = "pipeline",
    .state_size = sizeof (s_pipeline_t),
    .roles =
        {
            [ZQ_PRODUCER] = {ZMQ_PUSH, false},
            [ZQ_CONSUMER] = {ZMQ_PULL, true},
        },
    .open = s_open,
    .send = s_send,
    .recv = s_recv,
    .send_blocking = s_send_blocking,
    .recv_blocking = s_recv_blocking,
};
