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
    handshake. A TCP connect not done within that time is given up and
    made again too, so a client is back within about that time once a
    partition between hosts heals (tests/fault/netns_faults.py).

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
        //  A TCP connect whose SYNs vanish (a partition between hosts)
        //  is given up after as long, and made again: left to the
        //  kernel's SYN retries, the next attempt after the network
        //  healed could come many seconds later.
        if (handshake > 0 &&
            (zmq_setsockopt (common->handle, ZMQ_HANDSHAKE_IVL, &handshake, sizeof handshake) ||
             zmq_setsockopt (common->handle, ZMQ_CONNECT_TIMEOUT, &handshake, sizeof handshake)))
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

static int
s_attaching (void *state, const char *endpoint, bool bind)
{
    s_reliable_t *self = (s_reliable_t *)state;
    if (self->producer)
        return zqi_r_producer_attaching (self->producer, endpoint, bind);
    if (self->consumer)
        return zqi_r_consumer_attaching (self->consumer, endpoint, bind);
    return 0;
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
    if (self->consumer) {
        zq_msg_t *msg = zqi_r_consumer_recv (self->consumer);
        if (!msg && errno == EAGAIN) {
            //  Nothing waits: the acks held go now.
            zqi_r_consumer_idle (self->consumer);
            errno = EAGAIN;
        }
        return msg;
    }
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
    //  Servers and consumers wait for input (and their timers); a server
    //  also for its store's results, or for the end of a commit its last
    //  call left in flight.
    int store_fd = self->server ? zqi_r_server_store_fd (self->server) : -1;
    return zqi_pattern_poll_also (self->ctx, self->handle, ZMQ_POLLIN, store_fd, timeout_ms);
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
s_flush (void *state)
{
    s_reliable_t *self = (s_reliable_t *)state;
    return self->producer ? zqi_r_producer_flush (self->producer) : 0;
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

//  The pattern's own settings (zq_options.h describes them). A producer's
//  memory outbox holds up to max_in_flight messages, a setting rpc
//  declares.
static const zq_option_info_t s_options[] = {
    {"spool_dir", ZQ_OPTION_STR, 0, "", 0, 4000,
     "reliable server: directory of the queue spools (empty = in memory)", NULL},
    {"outbox_dir", ZQ_OPTION_STR, 0, "", 0, 4000,
     "reliable producer: directory of a durable outbox spool (empty = in memory)", NULL},
    {"fsync", ZQ_OPTION_STR, 0, "always", 4, 8,
     "reliable: when spool records are made durable before a confirm", "always|interval|none"},
    {"fsync_interval_ms", ZQ_OPTION_INT, 100, NULL, 1, 3600000,
     "reliable: sync period of fsync \"interval\"", NULL},
    {"quota_bytes", ZQ_OPTION_INT, 0, NULL, 0, INT64_MAX,
     "reliable: bytes one spool (queue or outbox) may take (0 = no quota on disk)", NULL},
    {"segment_bytes", ZQ_OPTION_INT, 64 * 1024 * 1024, NULL, 4096, INT64_MAX,
     "reliable: size at which a spool starts a new segment file", NULL},
    {"visibility_timeout_ms", ZQ_OPTION_INT, 30000, NULL, 1, INT_MAX,
     "reliable server: time a consumer has to ack a delivery before it is delivered again", NULL},
    {"max_attempts", ZQ_OPTION_INT, 10, NULL, 0, INT_MAX,
     "reliable server: deliveries of a message before it is dead-lettered (0 = no limit)", NULL},
    {"prefetch", ZQ_OPTION_INT, 256, NULL, 1, 1000000,
     "reliable consumer: deliveries it holds at once without acking them", NULL},
    {"ack_flush_us", ZQ_OPTION_INT, 1000, NULL, 0, 1000000,
     "reliable consumer: longest time an ack or nack waits to go with others when the"
     " application makes no call (0 = each goes at once)",
     NULL},
    {"max_deliveries", ZQ_OPTION_INT, 0, NULL, 0, INT64_MAX,
     "reliable consumer: deliveries it takes in all, its window shrinking as it settles"
     " (0 = no limit)",
     NULL},
    {"dedupe_window_ms", ZQ_OPTION_INT, 60000, NULL, 0, INT_MAX,
     "reliable server: a PUT of an id stored this recently in the same queue, by the same "
     "producer, with the same body, is not stored again (0 = off)",
     NULL},
    {"dedupe_max", ZQ_OPTION_INT, 262144, NULL, 1, 1 << 30,
     "reliable server: most ids the dedupe window remembers (the oldest go first)", NULL},
    {"nack_backoff_ms", ZQ_OPTION_INT, 100, NULL, 0, INT_MAX,
     "reliable server: first delay of a nack with ZQ_NACK_BACKOFF, doubled per attempt", NULL},
    {"nack_backoff_max_ms", ZQ_OPTION_INT, 30000, NULL, 0, INT_MAX,
     "reliable server: longest nack backoff", NULL},
    {"max_delay_ms", ZQ_OPTION_INT, 43200000, NULL, 1, INT_MAX,
     "reliable server: longest NACK delay and TOUCH extension a consumer gets (longer ones are"
     " cut to this)",
     NULL},
    {"max_unsettled_bytes", ZQ_OPTION_INT, 16 * 1024 * 1024, NULL, 1, INT64_MAX,
     "reliable server: bytes of deliveries one consumer connection holds unsettled before it"
     " gets more (one message always goes)",
     NULL},
    {"max_unsettled_bytes_total", ZQ_OPTION_INT, 256 * 1024 * 1024, NULL, 1, INT64_MAX,
     "reliable server: bytes of deliveries all consumer connections hold unsettled before"
     " only those holding none get more (one message each)",
     NULL},
    {"max_delayed_messages", ZQ_OPTION_INT, 16384, NULL, 1, INT64_MAX,
     "reliable server: messages one queue keeps in memory until their zq-not-before-ms; past"
     " it the queue delivers nothing more until the earliest falls due",
     NULL},
    {"max_delayed_messages_total", ZQ_OPTION_INT, 65536, NULL, 1, INT64_MAX,
     "reliable server: the same, for all queues together", NULL},
    {"confirm_timeout_ms", ZQ_OPTION_INT, 5000, NULL, 1, INT_MAX,
     "reliable producer: a message unconfirmed this long is sent again", NULL},
    {"ping_ivl_ms", ZQ_OPTION_INT, 1000, NULL, 10, INT_MAX,
     "reliable: interval of protocol pings (consumer session, server restarts)", NULL},
    {"max_queues", ZQ_OPTION_INT, 1024, NULL, 1, 1000000,
     "reliable server: most named queues it holds (dead-letter queues included: with"
     " max_attempts set, a new queue needs a place for its NAME.dead too)",
     NULL},
    {"max_consumer_queues", ZQ_OPTION_INT, 64, NULL, 1, 1000000,
     "reliable server: most queues one remote consumer (one connection) consumes at once", NULL},
    {"max_auto_queues", ZQ_OPTION_INT, 256, NULL, 0, 1000000,
     "reliable server: most queues clients create by a first PUT or CONSUME (declared queues"
     " and dead-letter queues do not count)",
     NULL},
    {"max_auto_queues_per_identity", ZQ_OPTION_INT, 64, NULL, 0, 1000000,
     "reliable server: most of max_auto_queues one client identity (ZAP User-Id) makes"
     " (0 = no share; clients without a User-Id share max_auto_queues only)",
     NULL},
    {"auto_queue_idle_ms", ZQ_OPTION_INT, 3600000, NULL, 0, INT_MAX,
     "reliable server: a queue a client created that is empty, unconsumed and unnamed this"
     " long is deleted (0 = never)",
     NULL},
    {"min_free_bytes", ZQ_OPTION_INT, 0, NULL, 0, INT64_MAX,
     "reliable server: PUTs are refused while the spool's filesystem has less free space"
     " (0 = no watermark)",
     NULL},
    {"jetstream_servers", ZQ_OPTION_STR, 0, "", 0, 4000,
     "reliable server: NATS URL[,URL...]: keep every queue in that JetStream cluster instead"
     " of spools (empty = spools; needs a libzq built with libnats)",
     NULL},
    {"jetstream_credentials", ZQ_OPTION_STR, 0, "", 0, 4000,
     "reliable server: a NATS .creds file for jetstream_servers (empty = none)", NULL},
    {"jetstream_tls_ca", ZQ_OPTION_STR, 0, "", 0, 4000,
     "reliable server: CA file the JetStream servers' certificates must chain to (empty = no"
     " TLS)",
     NULL},
    {"jetstream_tls_cert", ZQ_OPTION_STR, 0, "", 0, 4000,
     "reliable server: client certificate chain for the JetStream servers", NULL},
    {"jetstream_tls_key", ZQ_OPTION_STR, 0, "", 0, 4000,
     "reliable server: private key of jetstream_tls_cert", NULL},
    {"jetstream_replicas", ZQ_OPTION_INT, 0, NULL, 0, 5,
     "reliable server: replicas of each queue's stream (0 = 3 when jetstream_servers names"
     " three or more servers, else 1)",
     NULL},
    {"jetstream_prefix", ZQ_OPTION_STR, 0, "ZQ", 1, 32,
     "reliable server: stream name prefix ([A-Za-z0-9-]): gateways sharing queues share it", NULL},
    {NULL, ZQ_OPTION_INT, 0, NULL, 0, 0, NULL, NULL},
};

const zq_pattern_t zqi_pattern_reliable = {
    .name = "reliable",
    .state_size = sizeof (s_reliable_t),
    .roles =
        {
            [ZQ_PRODUCER] = {.socket_type = ZMQ_DEALER,
                             .binds_by_default = false,
                             .several_socket_type = ZMQ_ROUTER},
            [ZQ_CONSUMER] = {.socket_type = ZMQ_DEALER,
                             .binds_by_default = false,
                             .several_socket_type = ZMQ_ROUTER},
            [ZQ_SERVER] = {.socket_type = ZMQ_ROUTER, .binds_by_default = true},
        },
    .open = s_open,
    .attaching = s_attaching,
    .close = s_close,
    .send = s_send,
    .recv = s_recv,
    .events = s_events,
    .wait = s_wait,
    .next_timer_ms = s_next_timer_ms,
    .subscribe = s_subscribe,
    .unsubscribe = s_unsubscribe,
    .send_wait = s_send_wait,
    .flush = s_flush,
    .options = s_options,
};

//  ---- The pattern's own verbs (include/zq_reliable.h) -----------------------

//  What each verb checks first, in this order: queue and the arguments
//  (EINVAL), an open socket (ENOTSOCK), a reliable queue (ENOTSUP).
//  Returns the state, or NULL with errno.
static s_reliable_t *
s_state (zq_queue_t *queue, bool arguments_ok)
{
    if (!queue || !arguments_ok) {
        errno = EINVAL;
        return NULL;
    }
    if (!zqi_queue_is_open (queue)) {
        errno = ENOTSOCK;
        return NULL;
    }
    return (s_reliable_t *)zqi_queue_pattern_state (queue, &zqi_pattern_reliable);
}

//  zq_queue_post's attempt, in the shape zqi_queue_send_with takes.
static int
s_post_attempt (void *state, const zq_msg_t *request, zq_msg_t **msg_p)
{
    return s_post (state, msg_p);
}

int
zq_queue_post (zq_queue_t *queue, zq_msg_t **msg_p, int timeout_ms)
{
    if (!s_state (queue, msg_p && *msg_p))
        return -1;
    return zqi_queue_send_with (queue, s_post_attempt, NULL, msg_p, timeout_ms);
}

int
zq_queue_confirmed (zq_queue_t *queue, uint8_t *id)
{
    s_reliable_t *self = s_state (queue, id != NULL);
    return self ? s_confirmed (self, id) : -1;
}

//  s_settle under the queue's lock, as every call of the core holds it
//  (a consumer's flush thread, reliable_acks.c).
static int
s_settle_locked (s_reliable_t *self, const zq_msg_t *msg, int how, int64_t number)
{
    pthread_mutex_t *lock = self->ctx->lock;
    if (!lock)
        return s_settle (self, msg, how, number);
    pthread_mutex_lock (lock);
    int rc = s_settle (self, msg, how, number);
    int saved = errno;
    pthread_mutex_unlock (lock);
    errno = saved;
    return rc;
}

int
zq_queue_ack (zq_queue_t *queue, const zq_msg_t *msg)
{
    s_reliable_t *self = s_state (queue, msg != NULL);
    return self ? s_settle_locked (self, msg, ZQI_SETTLE_ACK, 0) : -1;
}

int
zq_queue_nack (zq_queue_t *queue, const zq_msg_t *msg, int64_t delay_ms)
{
    if (delay_ms < ZQ_NACK_BACKOFF)
        return zqi_fail (EINVAL);
    s_reliable_t *self = s_state (queue, msg != NULL);
    return self ? s_settle_locked (self, msg, ZQI_SETTLE_NACK, delay_ms) : -1;
}

int
zq_queue_touch (zq_queue_t *queue, const zq_msg_t *msg, int64_t extend_ms)
{
    if (extend_ms < 0)
        return zqi_fail (EINVAL);
    s_reliable_t *self = s_state (queue, msg != NULL);
    return self ? s_settle_locked (self, msg, ZQI_SETTLE_TOUCH, extend_ms) : -1;
}

//  What every admin call checks: s_state's checks, then a queue name.
static s_reliable_t *
s_admin_state (zq_queue_t *queue, const char *name)
{
    s_reliable_t *self = s_state (queue, true);
    if (self && !name) {
        errno = EINVAL;
        return NULL;
    }
    return self;
}

int
zq_queue_declare (zq_queue_t *queue, const char *name)
{
    s_reliable_t *self = s_admin_state (queue, name);
    return self ? s_declare (self, name) : -1;
}

zlistx_t *
zq_queue_names (zq_queue_t *queue)
{
    s_reliable_t *self = s_admin_state (queue, "");
    return self ? s_names (self) : NULL;
}

int
zq_queue_store_fd (zq_queue_t *queue)
{
    s_reliable_t *self = s_state (queue, true);
    if (!self)
        return -1;
    if (!self->server)
        return zqi_fail (ENOTSUP);
    int fd = zqi_r_server_store_fd (self->server);
    return fd >= 0 ? fd : zqi_fail (ENOENT);
}

int
zq_queue_info (zq_queue_t *queue, const char *name, zq_queue_info_t *info)
{
    s_reliable_t *self = s_admin_state (queue, name);
    if (!self)
        return -1;
    if (!info)
        return zqi_fail (EINVAL);
    return s_info (self, name, info);
}

int
zq_queue_peek (zq_queue_t *queue, const char *name, zq_msg_t **msgs, size_t max, size_t *count_p)
{
    s_reliable_t *self = s_admin_state (queue, name);
    if (!self)
        return -1;
    if ((!msgs && max) || !count_p)
        return zqi_fail (EINVAL);
    return s_peek (self, name, msgs, max, count_p);
}

int
zq_queue_purge (zq_queue_t *queue, const char *name, uint64_t *count_p)
{
    s_reliable_t *self = s_admin_state (queue, name);
    if (!self)
        return -1;
    uint64_t count = 0;
    int rc = s_purge (self, name, &count);
    if (count_p)
        *count_p = count;
    return rc;
}

int
zq_queue_set_authorizer (zq_queue_t *queue, zq_queue_authorize_fn *fn, void *arg)
{
    s_reliable_t *self = s_admin_state (queue, "");
    return self ? s_authorizer (self, fn, arg) : -1;
}

int
zq_queue_refusals (zq_queue_t *queue, uint64_t *counts, size_t count)
{
    s_reliable_t *self = s_admin_state (queue, "");
    if (!self)
        return -1;
    if (!counts && count)
        return zqi_fail (EINVAL);
    return s_refusals (self, counts, count);
}

int
zq_queue_delete (zq_queue_t *queue, const char *name, int flags, uint64_t *count_p)
{
    s_reliable_t *self = s_admin_state (queue, name);
    if (!self)
        return -1;
    if (flags & ~ZQ_DELETE_FORCE)
        return zqi_fail (EINVAL);
    uint64_t count = 0;
    int rc = s_delete (self, name, flags, &count);
    if (count_p)
        *count_p = count;
    return rc;
}

int
zq_queue_redrive (zq_queue_t *queue, const char *name, uint64_t *count_p)
{
    s_reliable_t *self = s_admin_state (queue, name);
    if (!self)
        return -1;
    uint64_t count = 0;
    int rc = s_redrive (self, name, &count);
    if (count_p)
        *count_p = count;
    return rc;
}
