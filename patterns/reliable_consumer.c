/*  =========================================================================
    reliable_consumer - the consumer of the reliable pattern (ZQ_CONSUMER,
    DEALER): subscriptions with a prefetch window, deliveries, and the
    ACK / NACK / TOUCH commands.

    The server counts the consumer's unsettled deliveries against the
    prefetch the consumer announced in CONSUME, so the consumer keeps no
    table of its own. With max_deliveries, the window announced shrinks as
    deliveries are settled (a CONSUME with the smaller window goes before
    each ACK or NACK), so the server never delivers more than that in all.
    Closing sends LEAVE, naming the deliveries that arrived but were never
    returned by zq_queue_recv: the server takes back everything unsettled
    at once instead of waiting for a ping or the visibility timeout. It pings the server every
   ping_ivl_ms while it is called; a PONG saying the server holds no session for it (the server
    restarted, or dropped it as gone) makes it send its CONSUME commands
    again. The server's own pings (its liveness probes) are read and
    ignored.

    Opened on several endpoints (a ROUTER, reliable_peers.c), it takes from
    every server: CONSUME and pings go to each (a server not connected yet
    gets its CONSUME commands when it is), each server counts its own
    prefetch window, and deliveries come from any. Ids are a server's own,
    so each delivery's server is kept by id until it is settled, and its
    ACK, NACK or TOUCH goes to that server alone. LEAVE goes to each
    without ids: each takes back what it delivered and was not settled.

    DELIVER batches (doc/PROTOCOL.md 19.7): with batch_max_bytes above 0,
    CONSUME carries it as element 5, and a server that knows batches may
    send several deliveries as one DELIVER whose envelope frame is a batch
    frame. Its layout is checked whole before any delivery is returned;
    then one delivery comes per zq_queue_recv, each as if it had come
    alone (a bad element is counted and skipped). A server that predates
    batches ignores element 5 and delivers one at a time.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable.h"
#include "zq_batch.h"
#include <inttypes.h>

//  Commands other than deliveries read per call.
#define S_BURST 256
//  Most ids one LEAVE names (64 KiB of ids; the rest count as seen).
#define S_LEAVE_IDS 4096
//  A server's ERRORs are logged one line per this long at most (the
//  others are counted in the next line).
#define S_ERROR_LOG_MS 1000

struct _zqi_r_consumer_t {
    zqi_r_common_t common;
    uint32_t prefetch;
    uint64_t max_deliveries; //  0: no limit
    uint64_t settled;        //  ACKs and NACKs sent
    uint32_t window;         //  the prefetch last announced
    bool joined;             //  a CONSUME was sent: LEAVE at close
    zlistx_t *names;         //  queues subscribed, char *
    int64_t last_ping;
    int64_t last_pending; //  several servers: when pending ones were last tried
    bool refused;         //  a CONSUME got ERROR 8 (busy): subscribe again with the next ping
    zqi_buf_t buf;
    zqi_r_peers_t peers;       //  the servers
    zqi_r_table_t held;        //  several servers: unsettled deliveries, owner = their server
    size_t batch_max_bytes;    //  announced in CONSUME (0: asks for single deliveries)
    zqi_batch_reader_t reader; //  the DELIVER batch being split
    uint32_t reader_peer;      //  ... and the server it came from
    zqi_r_acks_t acks;         //  acks and nacks held to go together (reliable_acks.c)
    zqi_log_limit_t error_log; //  the server's ERRORs, as logged
};

//  Several servers: a server not connected yet is tried again this often.
#define S_PENDING_RETRY_MS 100

static void
s_free_name (void **item)
{
    free (*item);
    *item = NULL;
}

static uint32_t s_window (zqi_r_consumer_t *self);

//  Sends the command in buf (to every server). Returns 0 or -1 with errno.
//  Several servers: one not connected is marked pending, to have its
//  CONSUME commands sent once it is.
static int
s_send (zqi_r_consumer_t *self)
{
    //  What is held goes first: the server sees commands in their order.
    if (zqi_r_acks_flush (&self->acks) && errno == EAGAIN)
        return -1;
    if (!self->peers.multi)
        return zmq_send (self->common.handle, self->buf.data, self->buf.size, ZMQ_DONTWAIT) == -1
                   ? -1
                   : 0;
    int rc = 0;
    for (uint32_t peer = 0; peer < self->peers.count; peer++)
        if (zqi_r_peers_send (&self->peers, self->common.handle, peer, self->buf.data,
                              self->buf.size)) {
            if (errno == EHOSTUNREACH)
                self->peers.peers[peer].pending = true;
            else
                rc = -1;
        }
    return rc;
}

//  Writes CONSUME name with the current window into buf, and element 5,
//  the largest DELIVER batch it takes, when it takes batches.
static int
s_put_consume (zqi_r_consumer_t *self, const char *name)
{
    self->window = s_window (self);
    self->joined = true;
    bool batches = self->batch_max_bytes > 0;
    if (zqi_r_put_command (&self->buf, batches ? 5 : 4, ZQI_R_CONSUME) ||
        zqi_mp_put_str (&self->buf, name, strlen (name)) ||
        zqi_mp_put_uint (&self->buf, self->window) ||
        (batches && zqi_mp_put_uint (&self->buf, self->batch_max_bytes)))
        return -1;
    return 0;
}

//  Sends the CONSUME commands to server peer of several.
static void
s_resubscribe_peer (zqi_r_consumer_t *self, uint32_t peer)
{
    self->peers.peers[peer].pending = false;
    for (char *name = (char *)zlistx_first (self->names); name;
         name = (char *)zlistx_next (self->names)) {
        if (s_put_consume (self, name) || zqi_r_peers_send (&self->peers, self->common.handle, peer,
                                                            self->buf.data, self->buf.size)) {
            self->peers.peers[peer].pending = true;
            return;
        }
    }
}

//  The window to announce: prefetch, or less when max_deliveries leaves
//  fewer to take (0: none more).
static uint32_t
s_window (zqi_r_consumer_t *self)
{
    if (!self->max_deliveries)
        return self->prefetch;
    uint64_t left = self->settled < self->max_deliveries ? self->max_deliveries - self->settled : 0;
    return left < self->prefetch ? (uint32_t)left : self->prefetch;
}

static int
s_send_consume (zqi_r_consumer_t *self, const char *name, zqi_r_kind_t kind)
{
    if (kind == ZQI_R_CONSUME) {
        if (s_put_consume (self, name))
            return -1;
    } else if (zqi_r_put_command (&self->buf, 3, kind) ||
               zqi_mp_put_str (&self->buf, name, strlen (name)))
        return -1;
    return s_send (self);
}

static void
s_resubscribe (zqi_r_consumer_t *self)
{
    for (char *name = (char *)zlistx_first (self->names); name;
         name = (char *)zlistx_next (self->names))
        s_send_consume (self, name, ZQI_R_CONSUME);
}

//  Sends the ping when it is due. Returns true if it tried to.
static bool
s_timers (zqi_r_consumer_t *self)
{
    zqi_r_acks_due (&self->acks);
    if (!zlistx_size (self->names))
        return false;
    //  Pings and retries need no precision: the coarse clock, here and
    //  in zqi_r_consumer_next_timer_ms (a wait the same clock ends).
    int64_t now = zqi_clock_mono_coarse (self->common.ctx->clock);
    bool tried = false;
    for (uint32_t peer = 0; self->peers.multi && peer < self->peers.count; peer++)
        if (self->peers.peers[peer].pending && now - self->last_pending >= S_PENDING_RETRY_MS) {
            s_resubscribe_peer (self, peer);
            tried = true;
        }
    if (tried)
        self->last_pending = now;
    if (now - self->last_ping < self->common.ping_ivl_ms)
        return tried;
    uint8_t ping_frame[ZQI_R_BARE_SIZE];
    size_t ping_frame_size = zqi_r_bare_command (ping_frame, ZQI_R_PING);
    //  (No server connected: the ping waits for the next interval.)
    if (!self->peers.multi)
        zmq_send (self->common.handle, ping_frame, ping_frame_size, ZMQ_DONTWAIT);
    for (uint32_t peer = 0; self->peers.multi && peer < self->peers.count; peer++)
        zqi_r_peers_send (&self->peers, self->common.handle, peer, ping_frame, ping_frame_size);
    self->last_ping = now;
    if (self->refused) {
        //  Which queue was refused the ERROR does not say; a CONSUME again
        //  changes nothing for the others.
        self->refused = false;
        s_resubscribe (self);
    }
    return true;
}

zqi_r_consumer_t *
zqi_r_consumer_new (zq_pattern_ctx_t *ctx)
{
    zqi_r_consumer_t *self = (zqi_r_consumer_t *)calloc (1, sizeof (zqi_r_consumer_t));
    if (!self) {
        errno = ENOMEM;
        return NULL;
    }
    self->names = zlistx_new ();
    if (!self->names) {
        free (self);
        errno = ENOMEM;
        return NULL;
    }
    zlistx_set_destructor (self->names, s_free_name);
    zqi_r_table_init (&self->held);
    if (zqi_r_common_open (&self->common, ctx) || zqi_r_peers_open (&self->peers, ctx) ||
        zqi_r_acks_open (&self->acks, ctx, &self->peers)) {
        int saved = errno;
        zqi_r_consumer_destroy (&self);
        errno = saved;
        return NULL;
    }
    //  No receive high-water mark: the prefetch window bounds what the
    //  server sends. With one, libzmq stops reading the connection while
    //  the application is slow, heartbeats go unread, and the connection
    //  is closed as dead, giving back every delivery.
    int unlimited = 0;
    if (zmq_setsockopt (self->common.handle, ZMQ_RCVHWM, &unlimited, sizeof unlimited)) {
        int saved = errno;
        zqi_r_consumer_destroy (&self);
        errno = saved;
        return NULL;
    }
    self->prefetch = (uint32_t)zqi_r_option (ctx->options, "prefetch");
    self->max_deliveries = (uint64_t)zqi_r_option (ctx->options, "max_deliveries");
    self->batch_max_bytes = (size_t)zqi_r_option (ctx->options, "batch_max_bytes");
    if (self->batch_max_bytes > ctx->max_message_bytes)
        self->batch_max_bytes = ctx->max_message_bytes;
    self->window = s_window (self);
    return self;
}

//  Appends to unseen the ids of the elements reader has left (at most
//  room of them; those without a readable id are skipped), and closes it.
//  Returns how many it appended.
static size_t
s_unseen_ids (zqi_batch_reader_t *reader, zqi_buf_t *unseen, size_t room)
{
    size_t count = 0;
    const uint8_t *data;
    size_t size;
    while (count < room && zqi_batch_next (reader, &data, &size) == 0) {
        const uint8_t *id;
        if (zqi_envelope_id (data, size, &id) == 0 &&
            zqi_buf_append (unseen, id, ZQ_MSG_ID_SIZE) == 0)
            count++;
    }
    zqi_batch_close (reader);
    return count;
}

//  Tells the server the consumer is leaving: the deliveries already
//  waiting on the socket (never returned by zq_queue_recv) are named, so
//  they go back with their attempt unchanged; the server takes back the
//  rest with attempt one higher, and forgets the consumer.
static void
s_leave (zqi_r_consumer_t *self)
{
    void *handle = self->common.handle;
    if (self->peers.multi) {
        //  Each server takes back all it delivered that was not settled.
        if (zqi_r_put_command (&self->buf, 2, ZQI_R_LEAVE) == 0)
            s_send (self);
        return;
    }
    zqi_buf_t unseen = {NULL, 0, 0};
    size_t count = 0;
    size_t max_size = self->common.ctx->max_message_bytes;
    //  The rest of a batch being split, then what waits on the socket.
    count += s_unseen_ids (&self->reader, &unseen, S_LEAVE_IDS);
    for (int n = 0; n < 4 * S_LEAVE_IDS && count < S_LEAVE_IDS; n++) {
        zmq_msg_t frame;
        if (zqi_r_recv_frame (handle, &frame))
            break;
        zqi_r_command_t command;
        bool more = zmq_msg_more (&frame);
        int rc = zqi_r_command_parse ((const uint8_t *)zmq_msg_data (&frame), zmq_msg_size (&frame),
                                      &command);
        zmq_msg_close (&frame);
        if (rc == 0 && command.kind == ZQI_R_DELIVER && more) {
            zqi_envelope_t envelope;
            bool received = zqi_r_recv_frame (handle, &frame) == 0;
            more = received && zmq_msg_more (&frame);
            if (received && !more &&
                zqi_batch_is ((const uint8_t *)zmq_msg_data (&frame), zmq_msg_size (&frame))) {
                zqi_batch_reader_t waiting;
                memset (&waiting, 0, sizeof waiting);
                if (zqi_batch_open (&waiting, &frame, max_size) == 0)
                    count += s_unseen_ids (&waiting, &unseen, S_LEAVE_IDS - count);
            } else if (received &&
                       zqi_envelope_parse ((const uint8_t *)zmq_msg_data (&frame),
                                           zmq_msg_size (&frame), NULL, 0, false, &envelope) == 0 &&
                       zqi_buf_append (&unseen, envelope.id, ZQ_MSG_ID_SIZE) == 0)
                count++;
            zmq_msg_close (&frame);
        }
        if (more)
            zqi_drain (handle);
    }
    if (zqi_r_put_command (&self->buf, count ? 3 : 2, ZQI_R_LEAVE) == 0 &&
        (!count || zqi_mp_put_bin (&self->buf, unseen.data, unseen.size) == 0))
        s_send (self);
    zqi_buf_free (&unseen);
}

size_t
zqi_r_consumer_destroy (zqi_r_consumer_t **self_p)
{
    zqi_r_consumer_t *self = *self_p;
    if (!self)
        return 0;
    //  Before LEAVE: what is held is settled, not taken back.
    zqi_r_acks_close (&self->acks);
    if (self->joined && self->common.handle)
        s_leave (self);
    zqi_batch_close (&self->reader);
    zlistx_destroy (&self->names);
    zqi_r_table_free (&self->held);
    zqi_buf_free (&self->buf);
    free (self);
    *self_p = NULL;
    return 0;
}

//  Several servers: remembers that server peer delivered id (once per
//  server). Returns 0, or -1 with errno ENOMEM.
static int
s_hold (zqi_r_consumer_t *self, const uint8_t *id, uint32_t peer)
{
    uint32_t cursor = ZQI_R_NONE;
    uint32_t index;
    while ((index = zqi_r_table_find_from (&self->held, id, &cursor)) != ZQI_R_NONE)
        if (self->held.entries[index].owner == peer)
            return 0; //  delivered again by the same server
    index = zqi_r_table_add (&self->held, id);
    if (index == ZQI_R_NONE)
        return -1;
    self->held.entries[index].owner = peer;
    return 0;
}

//  The next delivery of the batch being split, or of the envelope that
//  follows a DELIVER on the socket (one envelope, or a batch frame, which
//  opens the reader), from server peer. Returns the message, or NULL with
//  errno (a malformed-input code for a bad batch or a bad element: the
//  core counts it, and the next call goes on with the next element).
static zq_msg_t *
s_delivery (zqi_r_consumer_t *self, uint32_t peer)
{
    if (!zqi_batch_left (&self->reader))
        self->reader_peer = peer;
    zq_msg_t *msg = zqi_batch_recv_msg (&self->reader, self->common.handle, ZMQ_DONTWAIT,
                                        self->common.ctx->max_message_bytes);
    if (msg && self->peers.multi && s_hold (self, zq_msg_id (msg), self->reader_peer)) {
        //  Its server could not be remembered: it is not returned, and its
        //  visibility timeout gives it back.
        zq_msg_destroy (&msg);
        errno = ENOMEM;
    }
    return msg;
}

//  Logs the server's ERROR, with its text, one line per S_ERROR_LOG_MS at
//  most: a server that sends a flood of them floods no log.
static void
s_log_error (zqi_r_consumer_t *self, const zqi_r_command_t *command)
{
    uint64_t skipped;
    if (zqi_log_limit_due (&self->error_log, zqi_clock_mono_coarse (self->common.ctx->clock),
                           S_ERROR_LOG_MS, &skipped))
        zqi_log (ZQ_LOG_WARNING,
                 "reliable consumer: the server reports error %u: %.*s; %" PRIu64
                 " more errors since the last line",
                 (unsigned)command->code, (int)command->text_size, command->text, skipped);
}

zq_msg_t *
zqi_r_consumer_recv (zqi_r_consumer_t *self)
{
    s_timers (self);
    if (zqi_batch_left (&self->reader))
        return s_delivery (self, self->reader_peer);
    void *handle = self->common.handle;
    for (int n = 0; n < S_BURST; n++) {
        uint32_t peer;
        if (zqi_r_peers_recv_from (&self->peers, handle, &peer))
            return NULL; //  EAGAIN, or not from a server (the core counts it)
        zmq_msg_t frame;
        if (zqi_r_recv_frame (handle, &frame))
            return NULL;
        zqi_r_command_t command;
        bool more = zmq_msg_more (&frame);
        int rc = zqi_r_command_parse ((const uint8_t *)zmq_msg_data (&frame), zmq_msg_size (&frame),
                                      &command);
        int saved = errno;
        zmq_msg_close (&frame);
        if (rc == 0 && command.kind == ZQI_R_DELIVER && more)
            return s_delivery (self, peer);
        if (more)
            zqi_drain (handle);
        if (rc) {
            errno = saved;
            return NULL; //  bad input: the core counts it
        }
        if (command.kind == ZQI_R_PONG) {
            if ((command.number & ZQI_R_PONG_NO_SESSION) && self->peers.multi)
                s_resubscribe_peer (self, peer);
            else if (command.number & ZQI_R_PONG_NO_SESSION)
                s_resubscribe (self);
        } else if (command.kind == ZQI_R_ERROR) {
            s_log_error (self, &command);
            if (command.code == ZQI_R_CODE_BUSY)
                self->refused = true;
            else if (command.code == ZQI_R_CODE_DENIED) {
                //  No wait makes it pass: the application hears of it.
                errno = EACCES;
                return NULL;
            }
        } else if (command.kind != ZQI_R_PING) {
            errno = ZQ_EPROTO;
            return NULL;
        }
    }
    errno = EAGAIN;
    return NULL;
}

int
zqi_r_consumer_events (zqi_r_consumer_t *self, int zmq_events)
{
    //  Nothing to read: the acks held go now.
    bool sent = s_timers (self);
    if (!(zmq_events & ZMQ_POLLIN) && self->acks.count) {
        zqi_r_acks_flush (&self->acks);
        sent = true;
    }
    //  The ping's or the acks' send may have taken the fd's signal of a
    //  delivery that came meanwhile: ask libzmq again after it.
    if (sent) {
        size_t size = sizeof zmq_events;
        if (zmq_getsockopt (self->common.handle, ZMQ_EVENTS, &zmq_events, &size))
            return -1;
    }
    if (zqi_batch_left (&self->reader))
        zmq_events |= ZMQ_POLLIN;
    return zmq_events & ZMQ_POLLIN;
}

int64_t
zqi_r_consumer_next_timer_ms (zqi_r_consumer_t *self)
{
    if (!zlistx_size (self->names))
        return zqi_r_acks_next_ms (&self->acks);
    int64_t now = zqi_clock_mono_coarse (self->common.ctx->clock);
    int64_t wait = self->last_ping + self->common.ping_ivl_ms - now;
    for (uint32_t peer = 0; self->peers.multi && peer < self->peers.count; peer++)
        if (self->peers.peers[peer].pending && self->last_pending + S_PENDING_RETRY_MS - now < wait)
            wait = self->last_pending + S_PENDING_RETRY_MS - now;
    int64_t acks = zqi_r_acks_next_ms (&self->acks);
    if (acks >= 0 && acks < wait)
        wait = acks;
    return wait > 0 ? wait : 0;
}

int
zqi_r_consumer_subscribe (zqi_r_consumer_t *self, const char *name)
{
    if (zq_queue_name_check (name) < 0)
        return -1;
    for (char *have = (char *)zlistx_first (self->names); have;
         have = (char *)zlistx_next (self->names))
        if (strcmp (have, name) == 0)
            return 0;
    char *copy = strdup (name);
    if (!copy || !zlistx_add_end (self->names, copy)) {
        free (copy);
        return zqi_fail (ENOMEM);
    }
    //  If it cannot go now, the next PONG brings it back.
    s_send_consume (self, name, ZQI_R_CONSUME);
    return 0;
}

int
zqi_r_consumer_unsubscribe (zqi_r_consumer_t *self, const char *name)
{
    for (char *have = (char *)zlistx_first (self->names); have;
         have = (char *)zlistx_next (self->names))
        if (strcmp (have, name) == 0) {
            zlistx_delete (self->names, zlistx_cursor (self->names));
            s_send_consume (self, name, ZQI_R_CANCEL);
            return 0;
        }
    return zqi_fail (ZQ_ENOTFOUND);
}

//  zqi_r_consumer_ack's sending: held with other acks, or sent now (to the
//  server at index of the held table with several servers).
static int
s_settle (zqi_r_consumer_t *self, const zq_msg_t *msg, zqi_r_kind_t kind, int64_t number,
          uint32_t index)
{
    //  ACKs and NACKs wait to go together (reliable_acks.c); a TOUCH goes
    //  at once, after them.
    if (kind != ZQI_R_TOUCH) {
        uint32_t peer = self->peers.multi ? self->held.entries[index].owner : 0;
        if (zqi_r_acks_hold (&self->acks, kind, zq_msg_id (msg), number, peer) == 0) {
            if (self->peers.multi)
                zqi_r_table_remove (&self->held, index);
            s_timers (self);
            return 0;
        }
        if (errno != ENOTSUP)
            return -1;
    }
    if (zqi_r_acks_flush (&self->acks) && errno == EAGAIN)
        return -1;
    if (zqi_r_put_command (&self->buf, kind == ZQI_R_ACK ? 3 : 4, kind) ||
        zqi_mp_put_bin (&self->buf, zq_msg_id (msg), ZQ_MSG_ID_SIZE) ||
        (kind != ZQI_R_ACK && zqi_mp_put_int (&self->buf, number)))
        return -1;
    int rc;
    if (self->peers.multi) {
        rc = zqi_r_peers_send (&self->peers, self->common.handle, self->held.entries[index].owner,
                               self->buf.data, self->buf.size);
        if (kind != ZQI_R_TOUCH)
            zqi_r_table_remove (&self->held, index);
    } else
        rc = s_send (self);
    s_timers (self);
    return rc;
}

int
zqi_r_consumer_ack (zqi_r_consumer_t *self, const zq_msg_t *msg, int how, int64_t number)
{
    zqi_r_kind_t kind = how == ZQI_SETTLE_ACK    ? ZQI_R_ACK
                        : how == ZQI_SETTLE_NACK ? ZQI_R_NACK
                                                 : ZQI_R_TOUCH;
    //  Several servers: to the one that delivered it.
    uint32_t index = ZQI_R_NONE;
    if (self->peers.multi) {
        index = zqi_r_table_find (&self->held, zq_msg_id (msg));
        if (index == ZQI_R_NONE)
            return zqi_fail (ZQ_ENOTFOUND);
    }
    //  max_deliveries counts the settles taken. The smaller window reaches
    //  the server before the settle frees a place in the old one; a settle
    //  that fails below is not counted.
    bool counted = kind != ZQI_R_TOUCH && self->max_deliveries;
    if (counted) {
        self->settled++;
        if (s_window (self) < self->window)
            s_resubscribe (self);
    }
    int rc = s_settle (self, msg, kind, number, index);
    if (rc && counted)
        self->settled--;
    return rc;
}

void
zqi_r_consumer_idle (zqi_r_consumer_t *self)
{
    zqi_r_acks_flush (&self->acks);
}

int
zqi_r_consumer_attaching (zqi_r_consumer_t *self, const char *endpoint, bool bind)
{
    return zqi_r_peers_attaching (&self->peers, self->common.handle, endpoint, bind);
}
