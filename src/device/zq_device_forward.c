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
    send"). The XPUB socket's ZMQ_MAXMSGSIZE (S_MAX_FRAME) makes libzmq
    close a connection that sends a longer frame before the frame is
    stored; one whose subscription is longer than S_MAX_TOPIC is closed
    when the device reads it. The socket runs in ZMQ_XPUB_MANUAL mode: the
    device reads each subscription, with the connection it came on (its
    file descriptor, ZMQ_SRCFD), and applies it only while that connection
    holds fewer than S_MAX_SUBSCRIPTIONS; the rest are refused (counted in
    "refused", logged at most once per S_LOG_INTERVAL_MS). A connection
    whose refused subscriptions pass S_MAX_SUBSCRIPTIONS is closed, since
    libzmq keeps a record of every subscription a connection sent. A socket
    monitor tells the device when a connection comes and goes; when one
    goes, the subscriptions it held are withdrawn upstream.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_device_internal.h"
#include "zq_sequence.h"
#include <sys/socket.h>

#define S_BURST 1024
//  Most (publisher, subject) pairs remembered; past it, all are forgotten
//  (a pair seen afresh is never a gap).
#define S_MAX_PAIRS 65536

//  Longest subscription (topic prefix) a subscriber may send, in bytes.
#define S_MAX_TOPIC 256
//  Longest frame read on the XPUB socket: a subscription, or a command of
//  the CURVE handshake with its metadata.
#define S_MAX_FRAME 4096
//  The high-water mark of the direction a socket never uses (libzmq's
//  default).
#define S_HWM_UNUSED 1000
//  Most subscriptions one connection holds at once.
#define S_MAX_SUBSCRIPTIONS 1024
#define S_LOG_INTERVAL_MS   10000

//  One connection of the XPUB socket, or all in-process ones (fd -1).
typedef struct {
    int fd;
    zhashx_t *topics; //  hex of each subscription it holds -> itself
    uint64_t refused; //  subscriptions refused since it connected
    bool closing;     //  the device closed it for too many refusals
} s_peer_t;

typedef struct {
    zhashx_t *last_seq; //  "publisher hex:subject" -> uint64_t *
    zsock_t *monitor;   //  events of dq->out: connections come and go
    zhashx_t *peers;    //  "fd" -> s_peer_t *, one per open connection
    s_peer_t *local;    //  in-process connections (no fd): not capped
    uint64_t refused_unlogged;
    int64_t logged_ms;
    const zqi_clock_t *clock; //  the device's (NULL: the system's)
} s_forward_t;

static void
s_peer_destroy (s_peer_t **self_p)
{
    if (*self_p) {
        zhashx_destroy (&(*self_p)->topics);
        free (*self_p);
        *self_p = NULL;
    }
}

static s_peer_t *
s_peer_new (int fd)
{
    s_peer_t *self = (s_peer_t *)calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->fd = fd;
    self->topics = zhashx_new ();
    if (!self->topics)
        s_peer_destroy (&self);
    return self;
}

//  Starts a monitor of dq->out's connections. Returns 0 or -1.
static int
s_monitor_open (zqi_dqueue_t *dq)
{
    s_forward_t *self = (s_forward_t *)dq->kind_state;
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "inproc://zq-forward-monitor-%p", (void *)dq);
    if (zmq_socket_monitor (zsock_resolve (dq->out), endpoint,
                            ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED))
        return -1;
    self->monitor = zsock_new (ZMQ_PAIR);
    if (!self->monitor)
        return -1;
    //  libzmq waits for room to report an event: never make it wait.
    zsock_set_rcvhwm (self->monitor, 0);
    return zsock_connect (self->monitor, "%s", endpoint);
}

int
zqi_forward_open (zqi_dqueue_t *dq, zqi_device_env_t *env, char *error, size_t error_size)
{
    s_forward_t *self = (s_forward_t *)calloc (1, sizeof *self);
    if (!self)
        return zqi_fail (ENOMEM);
    dq->kind_state = self;
    self->clock = env->clock;
    self->last_seq = zhashx_new ();
    self->peers = zhashx_new ();
    self->local = s_peer_new (-1);
    int64_t max_bytes = ZQ_MSG_MAX_SIZE_DEFAULT;
    zq_options_get_int (env->config->queue_options, "max_message_bytes", &max_bytes);
    //  Every subscription the device holds (bounded above) goes to each
    //  publisher that connects, all at once: none may be dropped (in's
    //  sndhwm 0). Frames past S_MAX_FRAME close a subscriber's connection
    //  before libzmq keeps them; a longer topic within it closes it once
    //  read.
    if (self->last_seq && self->peers && self->local) {
        dq->in = zqi_device_socket_new (env, ZMQ_XSUB, 0, (int)dq->config->rcvhwm, max_bytes + 8192,
                                        true, error, error_size);
        dq->out = dq->in
                      ? zqi_device_socket_new (env, ZMQ_XPUB, (int)dq->config->sndhwm, S_HWM_UNUSED,
                                               S_MAX_FRAME, true, error, error_size)
                      : NULL;
    }
    if (!self->last_seq || !self->peers || !self->local || !dq->in || !dq->out) {
        int saved = !self->last_seq || !self->peers || !self->local ? ENOMEM : errno;
        zqi_forward_close (dq);
        snprintf (error, error_size, "forward %s: %s", dq->name,
                  saved == ENOMEM ? "out of memory" : zq_strerror (saved));
        return zqi_fail (saved);
    }
    zhashx_set_destructor (self->last_seq, (zhashx_destructor_fn *)zstr_free);
    zhashx_set_destructor (self->peers, (zhashx_destructor_fn *)s_peer_destroy);
    zsock_set_xpub_nodrop (dq->out, 1);
    zsock_set_xpub_manual (dq->out, 1);
    if (s_monitor_open (dq)) {
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
    if (self && self->monitor && dq->out)
        zmq_socket_monitor (zsock_resolve (dq->out), NULL, 0);
    zsock_destroy (&dq->in);
    zsock_destroy (&dq->out);
    if (self) {
        zsock_destroy (&self->monitor);
        zhashx_destroy (&self->peers);
        s_peer_destroy (&self->local);
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

//  Writes the hex of topic into key (2 * size + 1 bytes).
static void
s_topic_key (const uint8_t *topic, size_t size, char *key)
{
    for (size_t index = 0; index < size; index++)
        snprintf (key + 2 * index, 3, "%02x", topic[index]);
    key[2 * size] = '\0';
}

//  Sends a subscription (flag 1) or its withdrawal (flag 0) upstream.
static void
s_upstream (zqi_dqueue_t *dq, uint8_t flag, const uint8_t *topic, size_t size)
{
    uint8_t frame[1 + S_MAX_TOPIC];
    frame[0] = flag;
    memcpy (frame + 1, topic, size);
    //  dq->in has no high-water mark for what it sends.
    if (zmq_send (zsock_resolve (dq->in), frame, 1 + size, ZMQ_DONTWAIT) == -1)
        dq->counters.errors++;
}

//  A connection has gone: withdraws upstream what it held.
static void
s_peer_gone (zqi_dqueue_t *dq, int fd)
{
    s_forward_t *self = (s_forward_t *)dq->kind_state;
    char name[16];
    snprintf (name, sizeof name, "%d", fd);
    s_peer_t *peer = (s_peer_t *)zhashx_lookup (self->peers, name);
    if (!peer)
        return;
    for (void *item = zhashx_first (peer->topics); item; item = zhashx_next (peer->topics)) {
        const char *key = (const char *)zhashx_cursor (peer->topics);
        uint8_t topic[S_MAX_TOPIC];
        size_t size = strlen (key) / 2;
        for (size_t index = 0; index < size; index++) {
            unsigned int byte = 0;
            sscanf (key + 2 * index, "%2x", &byte);
            topic[index] = (uint8_t)byte;
        }
        s_upstream (dq, 0, topic, size);
    }
    zhashx_delete (self->peers, name);
}

//  Takes in the monitor's events: a record per open connection.
static void
s_monitor_drain (zqi_dqueue_t *dq)
{
    s_forward_t *self = (s_forward_t *)dq->kind_state;
    zmsg_t *event;
    while ((event = zqi_device_recv_nowait (self->monitor))) {
        zframe_t *head = zmsg_first (event);
        if (head && zframe_size (head) == 6) {
            uint16_t kind;
            uint32_t value;
            memcpy (&kind, zframe_data (head), 2);
            memcpy (&value, zframe_data (head) + 2, 4);
            int fd = (int)value;
            if (kind == ZMQ_EVENT_DISCONNECTED || kind == ZMQ_EVENT_ACCEPTED)
                s_peer_gone (dq, fd); //  an fd number used again
            if (kind == ZMQ_EVENT_ACCEPTED) {
                char name[16];
                snprintf (name, sizeof name, "%d", fd);
                s_peer_t *peer = s_peer_new (fd);
                if (!peer || zhashx_insert (self->peers, name, peer))
                    s_peer_destroy (&peer);
            }
        }
        zmsg_destroy (&event);
    }
}

//  Counts a refused subscription, logs at most once per interval, and
//  closes the connection if close_now or it keeps sending them.
static void
s_refuse (zqi_dqueue_t *dq, s_peer_t *peer, bool close_now)
{
    s_forward_t *self = (s_forward_t *)dq->kind_state;
    dq->counters.refused++;
    self->refused_unlogged++;
    peer->refused++;
    int64_t now = zqi_clock_mono (self->clock);
    if (!self->logged_ms || now - self->logged_ms >= S_LOG_INTERVAL_MS) {
        zqi_log (ZQ_LOG_WARNING,
                 "zq_device: forward %s: %llu subscriptions refused (a connection holds at most "
                 "%d)",
                 dq->name, (unsigned long long)self->refused_unlogged, S_MAX_SUBSCRIPTIONS);
        self->refused_unlogged = 0;
        self->logged_ms = now;
    }
    if ((close_now || peer->refused > S_MAX_SUBSCRIPTIONS) && !peer->closing && peer->fd >= 0) {
        //  The fd is this socket's open connection: the monitor reported
        //  it accepted and not yet gone. libzmq sees the connection end.
        peer->closing = true;
        shutdown (peer->fd, SHUT_RDWR);
        if (close_now)
            zqi_log (ZQ_LOG_WARNING,
                     "zq_device: forward %s: closed a connection that sent a subscription over "
                     "%d bytes",
                     dq->name, S_MAX_TOPIC);
        else
            zqi_log (ZQ_LOG_WARNING,
                     "zq_device: forward %s: closed a connection that sent over %d refused "
                     "subscriptions",
                     dq->name, S_MAX_SUBSCRIPTIONS);
    }
}

//  Applies or refuses one subscription (flag 1) or withdrawal (flag 0)
//  just received on dq->out.
static void
s_subscription (zqi_dqueue_t *dq, zmq_msg_t *msg)
{
    s_forward_t *self = (s_forward_t *)dq->kind_state;
    const uint8_t *data = (const uint8_t *)zmq_msg_data (msg);
    const uint8_t *topic = data + 1;
    size_t size = zmq_msg_size (msg) - 1;
    bool subscribe = data[0] == 1;
    int fd = zmq_msg_get (msg, ZMQ_SRCFD);
    s_peer_t *peer = self->local;
    if (fd >= 0) {
        char name[16];
        snprintf (name, sizeof name, "%d", fd);
        peer = (s_peer_t *)zhashx_lookup (self->peers, name);
        if (!peer || peer->closing)
            return; //  from a connection gone or being closed
    }
    if (size > S_MAX_TOPIC) {
        s_refuse (dq, peer, true);
        return;
    }
    char key[2 * S_MAX_TOPIC + 1];
    s_topic_key (topic, size, key);
    void *out = zsock_resolve (dq->out);
    if (!subscribe) {
        //  Withdrawals without a connection that holds the topic are the
        //  ones libzmq makes when a connection ends: the monitor's event
        //  for that connection has withdrawn what it held.
        if (zhashx_lookup (peer->topics, key)) {
            zhashx_delete (peer->topics, key);
            zmq_setsockopt (out, ZMQ_UNSUBSCRIBE, topic, size);
            s_upstream (dq, 0, topic, size);
        }
        return;
    }
    if (zhashx_lookup (peer->topics, key))
        return; //  held already
    if (peer != self->local && zhashx_size (peer->topics) >= S_MAX_SUBSCRIPTIONS) {
        s_refuse (dq, peer, false);
        return;
    }
    if (zhashx_insert (peer->topics, key, peer)) {
        dq->counters.errors++;
        return;
    }
    //  Applies to the connection this subscription came on.
    zmq_setsockopt (out, ZMQ_SUBSCRIBE, topic, size);
    s_upstream (dq, 1, topic, size);
}

void
zqi_forward_output (zqi_dqueue_t *dq)
{
    s_forward_t *self = (s_forward_t *)dq->kind_state;
    void *out = zsock_resolve (dq->out);
    for (int burst = 0; burst < S_BURST; burst++) {
        //  A connection's events come before what it sends.
        s_monitor_drain (dq);
        zmq_msg_t msg;
        zmq_msg_init (&msg);
        if (zmq_msg_recv (&msg, out, ZMQ_DONTWAIT) == -1) {
            zmq_msg_close (&msg);
            break;
        }
        //  Subscriptions and withdrawals are one frame, first byte 1 or 0.
        const uint8_t *data = (const uint8_t *)zmq_msg_data (&msg);
        if (!zmq_msg_more (&msg) && zmq_msg_size (&msg) >= 1 && (data[0] == 0 || data[0] == 1))
            s_subscription (dq, &msg);
        else {
            dq->counters.errors++;
            while (zmq_msg_more (&msg) && zmq_msg_recv (&msg, out, ZMQ_DONTWAIT) >= 0)
                ;
        }
        zmq_msg_close (&msg);
    }
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
    return ((s_forward_t *)dq->kind_state)->monitor;
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
