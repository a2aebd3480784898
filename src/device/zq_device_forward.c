/*  =========================================================================
    zq_device_forward - the "forward" kind: a pub/sub forwarder. Publishers
    connect to its XSUB socket (in), subscribers to its XPUB socket (out);
    subscriptions travel upstream, messages downstream, frames untouched.

    What ZeroMQ would drop in silence is counted: the XPUB socket refuses
    a message when a matching subscriber's queue is full (ZMQ_XPUB_NODROP),
    and the device then drops it for every subscriber and counts it in
    "dropped" (each subscriber sees the gap in its sequence numbers). The
    device also reads each message's sequence frame (doc/PROTOCOL.md,
    "pubsub") and counts in "gaps" the messages lost before they reached
    it. Messages that are not pubsub messages (fewer than three frames, a
    bad sequence frame) are counted in "errors" and not forwarded.

    Subscriptions are bounded (doc/DEVICE.md, "Bounds on what clients
    send") by the rule every XPUB of zq's follows, src/zq_subscriptions.h:
    a topic prefix of at most 256 bytes, at most 1024 subscriptions per
    connection, what they cost within max_subscription_bytes for all
    connections and an eighth of it for one, a connection that breaks them
    closed. The device passes each subscription applied, and each one ended
    (withdrawn, or its connection gone), upstream; refusals count in
    "refused" and are logged, as are closes (one line of each kind), at
    most once per S_LOG_INTERVAL_MS.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_device_internal.h"
#include "zq_sequence.h"
#include "zq_subscriptions.h"

#define S_BURST 1024
//  Most (publisher, subject) pairs remembered; past it, all are forgotten
//  (a pair seen afresh is never a gap).
#define S_MAX_PAIRS 65536

//  The high-water mark of the direction a socket never uses (libzmq's
//  default).
#define S_HWM_UNUSED      1000
#define S_LOG_INTERVAL_MS 10000

typedef struct {
    zhashx_t *last_seq;        //  "publisher hex:subject" -> uint64_t *
    zqi_subs_t *subscriptions; //  of dq->out, bounded per connection
    uint64_t refused_unlogged;
    int64_t logged_ms;
    //  By event, from ZQI_SUBS_CLOSED_LONG to ZQI_SUBS_CLOSED_FULL.
    zqi_log_limit_t close_log[ZQI_SUBS_CLOSED_FULL - ZQI_SUBS_CLOSED_LONG + 1];
    const zqi_clock_t *clock; //  the device's (NULL: the system's)
} s_forward_t;

int
zqi_forward_open (zqi_dqueue_t *dq, zqi_device_env_t *env, char *error, size_t error_size)
{
    s_forward_t *self = (s_forward_t *)calloc (1, sizeof *self);
    if (!self)
        return zqi_fail (ENOMEM);
    dq->kind_state = self;
    self->clock = env->clock;
    self->last_seq = zhashx_new ();
    int64_t max_bytes = ZQ_MSG_MAX_SIZE_DEFAULT;
    zq_options_get_int (env->config->queue_options, "max_message_bytes", &max_bytes);
    //  Every subscription the device holds (bounded above) goes to each
    //  publisher that connects, all at once: none may be dropped (in's
    //  sndhwm 0). dq->out's largest frame is zqi_subs_new's.
    if (self->last_seq) {
        dq->in = zqi_device_socket_new (env, ZMQ_XSUB, 0, (int)dq->config->rcvhwm, max_bytes + 8192,
                                        true, error, error_size);
        dq->out = dq->in
                      ? zqi_device_socket_new (env, ZMQ_XPUB, (int)dq->config->sndhwm, S_HWM_UNUSED,
                                               ZQI_SUBS_MAX_FRAME, true, error, error_size)
                      : NULL;
    }
    if (!self->last_seq || !dq->in || !dq->out) {
        int saved = !self->last_seq ? ENOMEM : errno;
        zqi_forward_close (dq);
        snprintf (error, error_size, "forward %s: %s", dq->name,
                  saved == ENOMEM ? "out of memory" : zq_strerror (saved));
        return zqi_fail (saved);
    }
    zhashx_set_destructor (self->last_seq, (zhashx_destructor_fn *)zstr_free);
    zsock_set_xpub_nodrop (dq->out, 1);
    self->subscriptions = zqi_subs_new (dq->out, (size_t)dq->config->max_subscription_bytes);
    if (!self->subscriptions) {
        snprintf (error, error_size, "forward %s: cannot watch its connections: %s", dq->name,
                  zq_strerror (errno));
        int saved = errno ? errno : ENOMEM;
        zqi_forward_close (dq);
        return zqi_fail (saved);
    }
    zqi_device_guard (env, dq->in, ZQI_ACCESS_PUT, dq->name);
    zqi_device_guard (env, dq->out, ZQI_ACCESS_CONSUME, dq->name);
    if (zqi_device_bind (dq->in, dq->config->in, &dq->in_endpoint, error, error_size) ||
        zqi_device_bind (dq->out, dq->config->out, &dq->out_endpoint, error, error_size)) {
        int saved = errno;
        zqi_forward_close (dq);
        return zqi_fail (saved);
    }
    return 0;
}

void
zqi_forward_close (zqi_dqueue_t *dq)
{
    s_forward_t *self = (s_forward_t *)dq->kind_state;
    if (self)
        zqi_subs_destroy (&self->subscriptions);
    zsock_destroy (&dq->in);
    zsock_destroy (&dq->out);
    if (self) {
        zhashx_destroy (&self->last_seq);
        free (self);
        dq->kind_state = NULL;
    }
}

//  Counts the gap this message shows. Returns 0 if it is a pubsub message,
//  -1 if not.
static int
s_track (zqi_dqueue_t *dq, zmsg_t *msg)
{
    s_forward_t *self = (s_forward_t *)dq->kind_state;
    if (zmsg_size (msg) < 3)
        return -1;
    zframe_t *topic = zmsg_first (msg);
    zframe_t *sequence = zmsg_next (msg);
    const uint8_t *bytes;
    uint64_t seq;
    if (zframe_size (topic) > ZQ_MSG_MAX_STRING ||
        zqi_sequence_read (zframe_data (sequence), zframe_size (sequence), &bytes, &seq))
        return -1;
    char key[2 * 8 + 1 + ZQ_MSG_MAX_STRING + 1];
    for (int index = 0; index < 8; index++)
        snprintf (key + 2 * index, 3, "%02x", bytes[index]);
    key[16] = ':';
    memcpy (key + 17, zframe_data (topic), zframe_size (topic));
    key[17 + zframe_size (topic)] = '\0';
    if (strlen (key) != 17 + zframe_size (topic))
        return -1; //  a NUL inside the topic
    uint64_t *last = (uint64_t *)zhashx_lookup (self->last_seq, key);
    if (last) {
        dq->counters.gaps += zqi_sequence_gap (true, *last, seq);
        *last = seq;
        return 0;
    }
    if (zhashx_size (self->last_seq) >= S_MAX_PAIRS)
        zhashx_purge (self->last_seq);
    last = (uint64_t *)malloc (sizeof *last);
    if (last) {
        *last = seq;
        if (zhashx_insert (self->last_seq, key, last))
            free (last);
    }
    return 0;
}

void
zqi_forward_input (zqi_dqueue_t *dq)
{
    void *out = zsock_resolve (dq->out);
    for (int burst = 0; burst < S_BURST; burst++) {
        zmsg_t *msg = zqi_device_recv_nowait (dq->in);
        if (!msg)
            break;
        dq->counters.in++;
        if (s_track (dq, msg)) {
            dq->counters.errors++;
            zmsg_destroy (&msg);
            continue;
        }
        //  The first frame decides: XPUB_NODROP refuses it when a matching
        //  subscriber is full; the rest of a message always follows.
        bool sent = true;
        size_t left = zmsg_size (msg);
        zframe_t *frame;
        while ((frame = zmsg_pop (msg))) {
            left--;
            int flags = ZFRAME_DONTWAIT | (left ? ZFRAME_MORE : 0);
            if (sent && zframe_send (&frame, out, flags))
                sent = false;
            zframe_destroy (&frame);
        }
        if (sent)
            dq->counters.out++;
        else
            dq->counters.dropped++;
        zmsg_destroy (&msg);
    }
}

//  Sends a subscription (flag 1) or its withdrawal (flag 0) upstream.
static void
s_upstream (zqi_dqueue_t *dq, uint8_t flag, const uint8_t *topic, size_t size)
{
    uint8_t frame[1 + ZQI_SUBS_MAX_TOPIC];
    frame[0] = flag;
    memcpy (frame + 1, topic, size);
    //  dq->in has no high-water mark for what it sends.
    if (zmq_send (zsock_resolve (dq->in), frame, 1 + size, ZMQ_DONTWAIT) == -1)
        dq->counters.errors++;
}

//  Counts a refused subscription and logs at most once per interval.
static void
s_refused (zqi_dqueue_t *dq)
{
    s_forward_t *self = (s_forward_t *)dq->kind_state;
    dq->counters.refused++;
    self->refused_unlogged++;
    int64_t now = zqi_clock_mono (self->clock);
    if (!self->logged_ms || now - self->logged_ms >= S_LOG_INTERVAL_MS) {
        zqi_log (ZQ_LOG_WARNING,
                 "zq_device: forward %s: %llu subscriptions refused (a connection holds at most "
                 "%d)",
                 dq->name, (unsigned long long)self->refused_unlogged, ZQI_SUBS_MAX_PER_CONNECTION);
        self->refused_unlogged = 0;
        self->logged_ms = now;
    }
}

//  Logs that dq->out closed a connection (event: a ZQI_SUBS_CLOSED_ one),
//  one line of each kind per S_LOG_INTERVAL_MS at most.
static void
s_closed (zqi_dqueue_t *dq, zqi_subs_event_t event)
{
    s_forward_t *self = (s_forward_t *)dq->kind_state;
    uint64_t skipped;
    if (zqi_log_limit_due (&self->close_log[event - ZQI_SUBS_CLOSED_LONG],
                           zqi_clock_mono (self->clock), S_LOG_INTERVAL_MS, &skipped))
        zqi_log (ZQ_LOG_WARNING, "zq_device: forward %s: %s; %llu more since the last line",
                 dq->name, zqi_subs_event_text (event), (unsigned long long)skipped);
}

//  What dq->out's subscriptions do (zqi_subs_take's events).
static void
s_subscription (void *arg, zqi_subs_event_t event, const uint8_t *topic, size_t size)
{
    zqi_dqueue_t *dq = (zqi_dqueue_t *)arg;
    switch (event) {
        case ZQI_SUBS_APPLIED:
            s_upstream (dq, 1, topic, size);
            break;
        case ZQI_SUBS_WITHDRAWN:
            s_upstream (dq, 0, topic, size);
            break;
        case ZQI_SUBS_REFUSED:
            s_refused (dq);
            break;
        case ZQI_SUBS_CLOSED_LONG:
        case ZQI_SUBS_CLOSED_FULL:
            dq->counters.refused++; //  the subscription the close refused
            s_closed (dq, event);
            break;
        case ZQI_SUBS_CLOSED_FLOODS:
            s_closed (dq, event);
            break;
        case ZQI_SUBS_MALFORMED:
            dq->counters.errors++;
            break;
    }
}

void
zqi_forward_output (zqi_dqueue_t *dq)
{
    s_forward_t *self = (s_forward_t *)dq->kind_state;
    zqi_subs_take (self->subscriptions, S_BURST, s_subscription, dq);
    if (self->refused_unlogged &&
        zqi_clock_mono (self->clock) - self->logged_ms >= S_LOG_INTERVAL_MS) {
        zqi_log (ZQ_LOG_WARNING, "zq_device: forward %s: %llu subscriptions refused", dq->name,
                 (unsigned long long)self->refused_unlogged);
        self->refused_unlogged = 0;
        self->logged_ms = zqi_clock_mono (self->clock);
    }
}

zsock_t *
zqi_forward_monitor (zqi_dqueue_t *dq)
{
    return zqi_subs_monitor (((s_forward_t *)dq->kind_state)->subscriptions);
}

void
zqi_forward_row (zqi_dqueue_t *dq, zqi_row_t *row)
{
    *row = dq->counters;
}

//  ---- The kind's operations -------------------------------------------------

static int
s_kind_open (zqi_device_t *device, zqi_dqueue_t *dq, char *error, size_t error_size)
{
    if (zqi_device_fds_free (dq->name, error, error_size))
        return -1;
    return zqi_forward_open (dq, &device->env, error, error_size);
}

//  Publishers' messages come in on in; subscriptions, and the connections
//  the monitor reports, on out.
static size_t
s_kind_poll_items (zqi_dqueue_t *dq, zmq_pollitem_t *items)
{
    items[0] = (zmq_pollitem_t){zsock_resolve (dq->in), 0, ZMQ_POLLIN, 0};
    items[1] = (zmq_pollitem_t){zsock_resolve (dq->out), 0, ZMQ_POLLIN, 0};
    items[2] = (zmq_pollitem_t){zsock_resolve (zqi_forward_monitor (dq)), 0, ZMQ_POLLIN, 0};
    return 3;
}

static void
s_kind_handle (zqi_dqueue_t *dq, size_t which)
{
    if (which == 0)
        zqi_forward_input (dq);
    else
        zqi_forward_output (dq);
}

static void
s_kind_row (zqi_device_t *device, zqi_dqueue_t *dq, zqi_row_t *row)
{
    zqi_forward_row (dq, row);
}

//  A forward keeps no messages: PURGE drops none, PEEK and REDRIVE are
//  refused.
static int
s_kind_purge (zqi_device_t *device, zqi_dqueue_t *dq, uint64_t *count_p)
{
    *count_p = 0;
    return 0;
}

const zqi_kind_ops_t zqi_kind_forward = {
    .kind = ZQI_KIND_FORWARD,
    .name = "forward",
    .has_endpoints = true,
    .open = s_kind_open,
    .close = zqi_forward_close,
    .poll_items = s_kind_poll_items,
    .handle = s_kind_handle,
    .row = s_kind_row,
    .purge = s_kind_purge,
};
