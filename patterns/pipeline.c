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

    Batching (doc/PROTOCOL.md section 19): a message that finds room goes
    at once, alone. Once messages flow, one that finds no room (libzmq's
    queue to the consumers is full) is not waited for: it is gathered,
    with the ones after it, into one batch frame (batch_max_bytes, at
    most 1024 messages), which goes as soon as libzmq has room: at the
    next send, zq_queue_events, zq_queue_flush or close (which waits up
    to linger_ms). A batch that is full makes send wait for room, as a
    full queue did. libzmq's high-water mark counts frames, a batch as
    one, so a batching producer's queue is sndhwm / 8 frames deep (at
    least 16, or sndhwm when that is less): it fills sooner in a burst,
    which is when batches form, and holds at most that many frames of
    at most batch_max_bytes each.
    Consumers split batch frames, one message per recv.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_batch.h"
#include "zq_pattern.h"

//  A batching producer's libzmq queue holds sndhwm / S_HWM_DIVISOR frames,
//  but at least S_HWM_FULL_DEPTH (and sndhwm itself up to that).
#define S_HWM_DIVISOR    8
#define S_HWM_FULL_DEPTH 16

typedef struct {
    void *handle;
    size_t max_message_bytes;
    //  Producer: the largest batch frame (0 = never gather).
    size_t batch_max_bytes;
    int linger_ms;
    //  Producer: libzmq took the last message or batch it was offered
    //  (false until one went, so a producer that never had a consumer
    //  keeps reporting no room at once).
    bool flowing;
    zqi_batch_t batch;         //  producer: messages that found no room
    zqi_batch_reader_t reader; //  consumer: the batch frame being split
} s_pipeline_t;

static int
s_open (void *state, zq_pattern_ctx_t *ctx)
{
    s_pipeline_t *self = (s_pipeline_t *)state;
    self->handle = ctx->handle;
    self->max_message_bytes = ctx->max_message_bytes;
    self->linger_ms = zqi_option_int (ctx->options, "linger_ms");
    if (ctx->role == ZQ_PRODUCER) {
        size_t batch_max = (size_t)zqi_option_int (ctx->options, "batch_max_bytes");
        self->batch_max_bytes =
            batch_max < self->max_message_bytes ? batch_max : self->max_message_bytes;
        int immediate = 1;
        if (zmq_setsockopt (self->handle, ZMQ_IMMEDIATE, &immediate, sizeof immediate))
            return -1;
        //  libzmq counts frames, and a batch is one: a shallower queue
        //  fills sooner in a burst, so batches form and carry it.
        int sndhwm = zqi_option_int (ctx->options, "sndhwm");
        if (self->batch_max_bytes && sndhwm > S_HWM_FULL_DEPTH) {
            int frames = sndhwm / S_HWM_DIVISOR;
            if (frames < S_HWM_FULL_DEPTH)
                frames = S_HWM_FULL_DEPTH;
            if (zmq_setsockopt (self->handle, ZMQ_SNDHWM, &frames, sizeof frames))
                return -1;
        }
    }
    return 0;
}

//  Sends what the batch holds, the first try with flags. Returns 0 (sent,
//  or nothing held), or -1 with errno (EAGAIN: no room; it stays held).
static int
s_flush (s_pipeline_t *self, int flags)
{
    if (self->batch.count == 0)
        return 0;
    if (zqi_batch_send (&self->batch, self->handle, flags))
        return -1;
    self->flowing = true;
    return 0;
}

//  One attempt to send *msg_p: behind any batch held, the first try with
//  flags (0 waits in libzmq up to ZMQ_SNDTIMEO). A message that finds no
//  room while messages flow joins the batch. Returns 0 (message taken) or
//  -1 with errno, the caller keeping it.
static int
s_send_with (s_pipeline_t *self, zq_msg_t **msg_p, int flags)
{
    if (self->batch.count) {
        if (s_flush (self, flags) == 0)
            flags = ZMQ_DONTWAIT; //  the message itself is only tried
        else if (errno != EAGAIN)
            return -1;
        else if (zqi_batch_add_msg (&self->batch, *msg_p, self->batch_max_bytes) == 0) {
            zq_msg_destroy (msg_p);
            return 0;
        } else
            return zqi_fail (errno == ENOMEM ? ENOMEM : EAGAIN);
    }
    if (zqi_msg_send_to (msg_p, self->handle, flags) == 0) {
        self->flowing = true;
        return 0;
    }
    if (errno != EAGAIN || !self->flowing || self->batch_max_bytes == 0)
        return -1;
    if (zqi_batch_add_msg (&self->batch, *msg_p, self->batch_max_bytes) == 0) {
        zq_msg_destroy (msg_p);
        return 0;
    }
    return zqi_fail (errno == ENOMEM ? ENOMEM : EAGAIN);
}

static int
s_send (void *state, zq_msg_t **msg_p)
{
    //  A PULL socket refuses to send with ENOTSUP itself.
    return s_send_with ((s_pipeline_t *)state, msg_p, ZMQ_DONTWAIT);
}

static zq_msg_t *
s_recv_with (s_pipeline_t *self, int flags)
{
    //  A PUSH socket refuses to receive with ENOTSUP itself.
    return zqi_batch_recv_msg (&self->reader, self->handle, flags, self->max_message_bytes);
}

static zq_msg_t *
s_recv (void *state)
{
    return s_recv_with ((s_pipeline_t *)state, ZMQ_DONTWAIT);
}

//  The same, letting libzmq wait (up to ZMQ_SNDTIMEO / ZMQ_RCVTIMEO).
static int
s_send_blocking (void *state, zq_msg_t **msg_p)
{
    return s_send_with ((s_pipeline_t *)state, msg_p, 0);
}

static zq_msg_t *
s_recv_blocking (void *state)
{
    return s_recv_with ((s_pipeline_t *)state, 0);
}

static int
s_flush_hook (void *state)
{
    return s_flush ((s_pipeline_t *)state, ZMQ_DONTWAIT);
}

//  A held batch goes when libzmq has room; messages left in a batch frame
//  being split are input.
static int
s_events (void *state, int events)
{
    s_pipeline_t *self = (s_pipeline_t *)state;
    if (zqi_batch_left (&self->reader))
        events |= ZMQ_POLLIN;
    if (self->batch.count && (events & ZMQ_POLLOUT) && s_flush (self, ZMQ_DONTWAIT)) {
        if (errno != EAGAIN)
            return -1;
        events &= ~ZMQ_POLLOUT;
    }
    return events;
}

//  Sends a held batch, waiting up to linger_ms for room; returns how many
//  messages could not go.
static size_t
s_close (void *state)
{
    s_pipeline_t *self = (s_pipeline_t *)state;
    zqi_batch_close (&self->reader);
    if (self->batch.count == 0)
        return 0;
    if (s_flush (self, ZMQ_DONTWAIT) && errno == EAGAIN && self->linger_ms != 0) {
        int timeout = self->linger_ms;
        if (zmq_setsockopt (self->handle, ZMQ_SNDTIMEO, &timeout, sizeof timeout) == 0)
            s_flush (self, 0);
    }
    return zqi_batch_discard (&self->batch);
}

//  The pattern's own settings (zq_options.h describes them).
static const zq_option_info_t s_options[] = {
    {"batch_max_bytes", ZQ_OPTION_INT, 65536, NULL, 0, 1048576,
     "pipeline producer: largest batch frame made of messages that found no room;"
     " reliable producer: largest PUT batch of messages waiting together; reliable consumer:"
     " largest DELIVER batch it asks for (0 = every message alone)",
     NULL},
    {NULL, ZQ_OPTION_INT, 0, NULL, 0, 0, NULL, NULL},
};

const zq_pattern_t zqi_pattern_pipeline = {
    .name = "pipeline",
    .state_size = sizeof (s_pipeline_t),
    .roles =
        {
            [ZQ_PRODUCER] = {.socket_type = ZMQ_PUSH, .binds_by_default = false},
            [ZQ_CONSUMER] = {.socket_type = ZMQ_PULL, .binds_by_default = true},
        },
    .open = s_open,
    .close = s_close,
    .send = s_send,
    .recv = s_recv,
    .send_blocking = s_send_blocking,
    .recv_blocking = s_recv_blocking,
    .events = s_events,
    .flush = s_flush_hook,
    .options = s_options,
};
