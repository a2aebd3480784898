/*  =========================================================================
    reliable - at-least-once delivery through named queues: producers
    (DEALER) put messages and get confirms once they are stored, a server
    (ROUTER) holds the queues in spools, consumers (DEALER) take
    deliveries within a prefetch window and ack, nack or touch them.

    This file holds the pattern table and sends each hook to its role:
        reliable_server.c    the holder (ZQ_SERVER)
        reliable_producer.c  the outbox and confirms (ZQ_PRODUCER)
        reliable_consumer.c  deliveries and settling (ZQ_CONSUMER)
    with reliable_wire.c (frames) and reliable_table.c (id tables).
    Frames: doc/PROTOCOL.md, "reliable".

    Heartbeats: unless the options set heartbeat_ivl_ms, every role turns
    on ZMTP heartbeats (a ping every S_HEARTBEAT_IVL_MS, a connection
    silent for S_HEARTBEAT_TIMEOUT_MS is closed), so a peer whose host
    vanished is noticed. The server pings every ping_ivl_ms instead and
    closes a connection silent for ZQI_R_SILENT_PINGS of them: that is
    when it counts a consumer gone. The protocol's own PING/PONG
    (ping_ivl_ms) tells producers and consumers that a server restarted.
    Producers and consumers also drop a connection whose ZMTP handshake
    has not finished within heartbeat_timeout_ms, by default
    S_HEARTBEAT_TIMEOUT_MS (libzmq alone waits 30 s), and connect again:
    after a server restart, a connection that reached something else on
    the port (a peer that accepts and never answers) would otherwise hold
    them off the new server that long, heartbeats starting only after the
    handshake.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable.h"

#define S_HEARTBEAT_IVL_MS     1000
#define S_HEARTBEAT_TIMEOUT_MS 3000

typedef struct {
    zq_role_t role;
    void *handle;
    zq_pattern_ctx_t *ctx;
    zqi_r_server_t *server;
    zqi_r_producer_t *producer;
    zqi_r_consumer_t *consumer;
} s_reliable_t;

int64_t
zqi_r_option (const zq_options_t *options, const char *name)
{
    int64_t value = 0;
    int rc = zq_options_get_int (options, name, &value);
    ZQ_ASSERT (rc == 0);
    return value;
}

zq_spool_t *
zqi_r_spool_open (const zq_options_t *options, const char *dir)
{
    zq_spool_config_t config;
    zq_spool_config_init (&config);
    if (zq_spool_fsync_parse (zq_options_get_str (options, "fsync"), &config.fsync))
        return NULL;
    config.fsync_interval_ms = (uint32_t)zqi_r_option (options, "fsync_interval_ms");
    config.quota_bytes = (uint64_t)zqi_r_option (options, "quota_bytes");
    config.segment_bytes = (uint64_t)zqi_r_option (options, "segment_bytes");
    //  A record is one message in its one-frame form: the envelope limit
    //  plus room for the two-frame form's joining.
    uint64_t max_record = (uint64_t)zqi_r_option (options, "max_message_bytes") + 64 * 1024;
    if (max_record > config.max_record_bytes)
        config.max_record_bytes = max_record > UINT32_MAX ? UINT32_MAX : (uint32_t)max_record;
    return zq_spool_new (dir, &config);
}

int
zqi_r_common_open (zqi_r_common_t *common, zq_pattern_ctx_t *ctx)
{
    common->ctx = ctx;
    common->handle = ctx->handle;
    common->ping_ivl_ms = (int)zqi_r_option (ctx->options, "ping_ivl_ms");
    if (!zq_options_is_set (ctx->options, "heartbeat_ivl_ms")) {
        int ivl = S_HEARTBEAT_IVL_MS;
        int timeout = zq_options_is_set (ctx->options, "heartbeat_timeout_ms")
                          ? (int)zqi_r_option (ctx->options, "heartbeat_timeout_ms")
                          : S_HEARTBEAT_TIMEOUT_MS;
        if (ctx->role == ZQ_SERVER) {
            //  A consumer is gone when nothing has come on its connection
            //  for ZQI_R_SILENT_PINGS ping intervals: libzmq closes the
            //  connection then, and the next probe finds it gone.
            ivl = common->ping_ivl_ms;
            if (!zq_options_is_set (ctx->options, "heartbeat_timeout_ms"))
                timeout = common->ping_ivl_ms > INT_MAX / ZQI_R_SILENT_PINGS
                              ? INT_MAX
                              : ZQI_R_SILENT_PINGS * common->ping_ivl_ms;
        }
        if (zmq_setsockopt (common->handle, ZMQ_HEARTBEAT_IVL, &ivl, sizeof ivl) ||
            (timeout > 0 &&
             zmq_setsockopt (common->handle, ZMQ_HEARTBEAT_TIMEOUT, &timeout, sizeof timeout)))
            return -1;
    }
    if (ctx->role != ZQ_SERVER) {
        int handshake = zq_options_is_set (ctx->options, "heartbeat_timeout_ms")
                            ? (int)zqi_r_option (ctx->options, "heartbeat_timeout_ms")
                            : S_HEARTBEAT_TIMEOUT_MS;
        if (handshake > 0 &&
            zmq_setsockopt (common->handle, ZMQ_HANDSHAKE_IVL, &handshake, sizeof handshake))
            return -1;
    }
    return 0;
}

static int
s_open (void *state, zq_pattern_ctx_t *ctx)
{
    s_reliable_t *self = (s_reliable_t *)state;
    self->role = ctx->role;
    self->handle = ctx->handle;
    self->ctx = ctx;
    const char *fsync = zq_options_get_str (ctx->options, "fsync");
    zq_spool_fsync_t policy;
    if (!fsync || zq_spool_fsync_parse (fsync, &policy))
        return zqi_fail (EINVAL);
    if (ctx->role == ZQ_SERVER)
        self->server = zqi_r_server_new (ctx);
    else if (ctx->role == ZQ_PRODUCER)
        self->producer = zqi_r_producer_new (ctx);
    else
        self->consumer = zqi_r_consumer_new (ctx);
    return self->server || self->producer || self->consumer ? 0 : -1;
}

static size_t
s_close (void *state)
{
    s_reliable_t *self = (s_reliable_t *)state;
    return zqi_r_server_destroy (&self->server) + zqi_r_producer_destroy (&self->producer) +
           zqi_r_consumer_destroy (&self->consumer);
}

static int
s_send (void *state, zq_msg_t **msg_p)
{
    s_reliable_t *self = (s_reliable_t *)state;
    return self->producer ? zqi_r_producer_send (self->producer, msg_p) : zqi_fail (ENOTSUP);
}

static int
s_post (void *state, zq_msg_t **msg_p)
{
    s_reliable_t *self = (s_reliable_t *)state;
    return self->producer ? zqi_r_producer_post (self->producer, msg_p) : zqi_fail (ENOTSUP);
}

static int
s_confirmed (void *state, uint8_t *id)
{
    s_reliable_t *self = (s_reliable_t *)state;
    return self->producer ? zqi_r_producer_confirmed (self->producer, id) : zqi_fail (ENOTSUP);
}

static zq_msg_t *
s_recv (void *state)
{
    s_reliable_t *self = (s_reliable_t *)state;
    if (self->server)
        return zqi_r_server_recv (self->server);
    if (self->consumer)
        return zqi_r_consumer_recv (self->consumer);
    errno = ENOTSUP;
    return NULL;
}

static int
s_events (void *state, int zmq_events)
{
    s_reliable_t *self = (s_reliable_t *)state;
    if (self->server)
        return zqi_r_server_events (self->server, zmq_events);
    if (self->producer)
        return zqi_r_producer_events (self->producer, zmq_events);
    return zqi_r_consumer_events (self->consumer, zmq_events);
}

static int
s_wait (void *state, short what, long timeout_ms)
{
    s_reliable_t *self = (s_reliable_t *)state;
    if (self->producer)
        return zqi_r_producer_wait (self->producer, what, timeout_ms);
    //  Servers and consumers only wait for input (and their timers).
    return zqi_pattern_poll (self->ctx, self->handle, ZMQ_POLLIN, timeout_ms);
}

static int64_t
s_next_timer_ms (void *state)
{
    s_reliable_t *self = (s_reliable_t *)state;
    if (self->server)
        return zqi_r_server_next_timer_ms (self->server);
    if (self->producer)
        return zqi_r_producer_next_timer_ms (self->producer);
    return zqi_r_consumer_next_timer_ms (self->consumer);
}

static int
s_send_wait (void *state)
{
    //  A producer waits for confirms (input) or for a server (output);
    //  its wait hook polls for both.
    return ZMQ_POLLIN;
}

static int
s_subscribe (void *state, const char *name)
{
    s_reliable_t *self = (s_reliable_t *)state;
    if (self->server)
        return zqi_r_server_subscribe (self->server, name);
    if (self->consumer)
        return zqi_r_consumer_subscribe (self->consumer, name);
    return zqi_fail (ENOTSUP);
}

static int
s_unsubscribe (void *state, const char *name)
{
    s_reliable_t *self = (s_reliable_t *)state;
    if (self->server)
        return zqi_r_server_unsubscribe (self->server, name);
    if (self->consumer)
        return zqi_r_consumer_unsubscribe (self->consumer, name);
    return zqi_fail (ENOTSUP);
}

static int
s_settle (void *state, const zq_msg_t *msg, int how, int64_t number)
{
    s_reliable_t *self = (s_reliable_t *)state;
    if (self->server)
        return zqi_r_server_ack (self->server, msg, how, number);
    if (self->consumer)
        return zqi_r_consumer_ack (self->consumer, msg, how, number);
    return zqi_fail (ENOTSUP);
}

static int
s_declare (void *state, const char *name)
{
    s_reliable_t *self = (s_reliable_t *)state;
    return self->server ? zqi_r_server_declare (self->server, name) : zqi_fail (ENOTSUP);
}

static zlistx_t *
s_names (void *state)
{
    s_reliable_t *self = (s_reliable_t *)state;
    if (!self->server) {
        errno = ENOTSUP;
        return NULL;
    }
    return zqi_r_server_names (self->server);
}

static int
s_info (void *state, const char *name, zq_queue_info_t *info)
{
    s_reliable_t *self = (s_reliable_t *)state;
    return self->server ? zqi_r_server_info (self->server, name, info) : zqi_fail (ENOTSUP);
}

static int
s_peek (void *state, const char *name, zq_msg_t **msgs, size_t max, size_t *count_p)
{
    s_reliable_t *self = (s_reliable_t *)state;
    *count_p = 0;
    return self->server ? zqi_r_server_peek (self->server, name, msgs, max, count_p)
                        : zqi_fail (ENOTSUP);
}

static int
s_purge (void *state, const char *name, uint64_t *count_p)
{
    s_reliable_t *self = (s_reliable_t *)state;
    return self->server ? zqi_r_server_purge (self->server, name, count_p) : zqi_fail (ENOTSUP);
}

static int
s_refusals (void *state, uint64_t *counts, size_t count)
{
    s_reliable_t *self = (s_reliable_t *)state;
    if (!self->server)
        return zqi_fail (ENOTSUP);
    zqi_r_server_refusals (self->server, counts, count);
    return 0;
}

static int
s_redrive (void *state, const char *name, uint64_t *count_p)
{
    s_reliable_t *self = (s_reliable_t *)state;
    return self->server ? zqi_r_server_redrive (self->server, name, count_p) : zqi_fail (ENOTSUP);
}

static int
s_authorizer (void *state, zq_queue_authorize_fn *fn, void *arg)
{
    s_reliable_t *self = (s_reliable_t *)state;
    return self->server ? zqi_r_server_authorizer (self->server, fn, arg) : zqi_fail (ENOTSUP);
}

static int
s_delete (void *state, const char *name, int flags, uint64_t *count_p)
{
    s_reliable_t *self = (s_reliable_t *)state;
    return self->server ? zqi_r_server_delete (self->server, name, flags, count_p)
                        : zqi_fail (ENOTSUP);
}

const zq_pattern_t zqi_pattern_reliable = {
    .name = "reliable",
    .state_size = sizeof (s_reliable_t),
    .roles =
        {
            [ZQ_PRODUCER] = {ZMQ_DEALER, false},
            [ZQ_CONSUMER] = {ZMQ_DEALER, false},
            [ZQ_SERVER] = {ZMQ_ROUTER, true},
        },
    .open = s_open,
    .close = s_close,
    .send = s_send,
    .recv = s_recv,
    .events = s_events,
    .wait = s_wait,
    .next_timer_ms = s_next_timer_ms,
    .subscribe = s_subscribe,
    .unsubscribe = s_unsubscribe,
    .send_wait = s_send_wait,
    .post = s_post,
    .confirmed = s_confirmed,
    .settle = s_settle,
    .declare = s_declare,
    .names = s_names,
    .info = s_info,
    .peek = s_peek,
    .purge = s_purge,
    .redrive = s_redrive,
    .authorizer = s_authorizer,
    .delete_queue = s_delete,
    .refusals = s_refusals,
};
