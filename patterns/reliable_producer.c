/*  =========================================================================
    reliable_producer - the producer of the reliable pattern (ZQ_PRODUCER,
    DEALER): an outbox spool, a window of PUTs awaiting their confirm,
    resends, and the confirm reports of zq_queue_post.

    Every message goes into the outbox first: a zq_spool in outbox_dir
    (durable under the fsync option, so it survives the producer's
    crash), or else a memory outbox: each message's wire bytes beside its
    table entry, and a double-ended ring of the entries waiting to be
    sent. PUTs are sent from the outbox, at most max_in_flight awaiting a
    confirm (a memory outbox: half of it, so that while they wait the
    posts after them gather to go as PUT batches); each is tracked by id with its deadline (and its
   outbox seq when durable). A CONFIRM drops the message from the outbox. No confirm by the deadline
   (confirm_timeout_ms), a refusal's backoff ending, or a sign that the server restarted or came
   back (its PONG), gives the message back to the outbox, which hands it out first again: it is sent
   again under the same id (the server's dedupe window keeps it from being stored twice). Records of
   the memory outbox waiting together go as one PUT batch (doc/PROTOCOL.md 19.5); a lone one goes
    alone. ZMQ_IMMEDIATE is on, so records wait in the
    outbox while no server is connected.

    Opened on several endpoints (a ROUTER, reliable_peers.c), it sends
    each PUT to the next server in turn that is not lost and whose pipe
    has room, and remembers which (the entry's owner). A server that
    leaves 3 pings unanswered, or lets a PUT pass its confirm deadline, is
    lost: every PUT it has not confirmed goes back to the outbox and on to
    another server under the same id (stats.moved); its next PONG makes
    it usable again. A server's dedupe window does not reach the others,
    so a moved PUT the lost server had stored is stored twice.

    This file: a round of work and the pattern's hooks. The outbox and
    sending from it are in reliable_producer_outbox.c; reading answers,
    reports and timers in reliable_producer_input.c; reliable_producer.h
    holds the producer's state.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable_producer.h"

//  True when a deadline or the ping is due: timers act on fresh input.
static bool
s_timer_due (zqi_r_producer_t *self, int64_t now)
{
    uint32_t index = zqi_r_table_first (&self->table);
    return (index != ZQI_R_NONE && self->table.entries[index].due <= now) ||
           now - self->last_ping >= self->common.ping_ivl_ms;
}

//  One round: input, timers, output. A lazy round (a post, or the first
//  zq_queue_confirmed after a post) skips reading the socket if it was
//  emptied earlier in the same tick of the coarse clock (a millisecond or
//  a few): a read that finds nothing costs libzmq a system call or two,
//  most of a PUT's cost at full speed, and the coarse clock is read at a
//  fifth of the cost of the precise one, which such a round never reads.
//  Timers wait for a round that reads (one due by the coarse clock makes
//  the round read). Any other call reads, so a caller polling confirmed,
//  or woken by zloop or zpoller, or following the fd rule, never waits
//  on an answer already here.
static int
s_work (zqi_r_producer_t *self, bool lazy)
{
    int64_t tick = zqi_clock_mono_coarse (self->common.ctx->clock);
    self->tick = tick;
    self->input_skipped =
        lazy && self->input_drained && tick == self->input_tick && !s_timer_due (self, tick);
    if (!self->input_skipped) {
        self->input_tick = tick;
        if (zqi_rp_input (self))
            return -1;
        zqi_rp_timers (self, zqi_r_now (&self->common));
    }
    return zqi_rp_pump (self);
}

zqi_r_producer_t *
zqi_r_producer_new (zq_pattern_ctx_t *ctx)
{
    zqi_r_producer_t *self = (zqi_r_producer_t *)calloc (1, sizeof (zqi_r_producer_t));
    if (!self) {
        errno = ENOMEM;
        return NULL;
    }
    zqi_r_table_init (&self->table);
    self->answer_tick = INT64_MIN;
    if (zqi_r_common_open (&self->common, ctx) || zqi_r_peers_open (&self->peers, ctx))
        goto failed;
    //  (Several servers: libzmq's ROUTER loses the routing ids chosen for
    //  its connections under ZMQ_IMMEDIATE, so each server's pipe stays,
    //  connected or not, and its PONGs tell whether it answers.)
    //  (With one server, ZMQ_IMMEDIATE makes a new pipe for each connection:
    //  s_connect_check in src/zq_socket.c.)
    int on = 1;
    if (!self->peers.multi && zmq_setsockopt (self->common.handle, ZMQ_IMMEDIATE, &on, sizeof on))
        goto failed;
    if (self->peers.multi && zqi_pattern_rcvhwm_for_pings (ctx))
        goto failed;
    self->window = zq_options_is_set (ctx->options, "max_in_flight")
                       ? (uint32_t)zqi_r_option (ctx->options, "max_in_flight")
                       : ZQ_PRODUCER_WINDOW_DEFAULT;
    self->confirm_timeout_ms = zqi_r_option (ctx->options, "confirm_timeout_ms");
    self->connect_check_ms = zqi_r_option (ctx->options, "reconnect_ms");
    if (self->connect_check_ms <= 0)
        self->connect_check_ms = 100;
    self->reports = (zqi_rp_report_t *)calloc (self->window, sizeof (zqi_rp_report_t));
    if (!self->reports) {
        errno = ENOMEM;
        goto failed;
    }
    const char *dir = zq_options_get_str (ctx->options, "outbox_dir");
    self->durable = dir && *dir;
    if (self->durable) {
        self->outbox = zqi_r_spool_open (ctx->options, dir);
        if (!self->outbox)
            goto failed;
    } else {
        //  The ring holds at most window indexes.
        uint32_t size = 1;
        while (size < self->window)
            size *= 2;
        self->ring = (uint32_t *)malloc (size * sizeof (uint32_t));
        self->sent_order = (uint32_t *)calloc (size, sizeof (uint32_t));
        if (!self->ring || !self->sent_order) {
            errno = ENOMEM;
            goto failed;
        }
        self->ring_mask = size - 1;
        self->max_record_bytes = ctx->max_message_bytes + 64 * 1024;
        self->memory_quota = (uint64_t)zqi_r_option (ctx->options, "quota_bytes");
        if (self->memory_quota == 0)
            self->memory_quota = ZQI_RP_MEMORY_QUOTA_DEFAULT;
        size_t batch_max = (size_t)zqi_r_option (ctx->options, "batch_max_bytes");
        self->batch_max_bytes =
            batch_max < ctx->max_message_bytes ? batch_max : ctx->max_message_bytes;
    }
    self->send_window = self->durable || self->window < 2 ? self->window : self->window / 2;
    //  What a previous run left unconfirmed goes out first.
    zqi_rp_pump (self);
    return self;
failed:;
    int saved = errno;
    zqi_r_producer_destroy (&self);
    errno = saved;
    return NULL;
}

size_t
zqi_r_producer_destroy (zqi_r_producer_t **self_p)
{
    zqi_r_producer_t *self = *self_p;
    if (!self)
        return 0;
    //  What the hold kept back goes now, as it would have without it
    //  (libzmq's linger may still deliver it).
    if (self->common.handle && zqi_rp_holding (self))
        zqi_r_producer_flush (self);
    //  A durable outbox keeps them for the next run; a memory one
    //  loses them.
    size_t unsent = self->durable ? 0 : self->held;
    if (self->peers.multi && self->common.handle && zqi_rp_outbox_depth (self) == 0) {
        //  All confirmed: what still waits in a pipe (pings, PUTs to a
        //  server that stopped answering) need not hold the close.
        int zero = 0;
        zmq_setsockopt (self->common.handle, ZMQ_LINGER, &zero, sizeof zero);
    }
    zq_spool_destroy (&self->outbox);
    for (uint32_t index = 0; index < self->records_capacity; index++)
        zqi_rp_record_free (self, &self->records[index]);
    free (self->records);
    zqi_rp_spare_free (self);
    free (self->ring);
    free (self->sent_order);
    zqi_r_table_free (&self->table);
    free (self->reports);
    zqi_buf_free (&self->buf);
    free (self);
    *self_p = NULL;
    return unsent;
}

//  Puts msg (not taken) into the outbox and sends what the window allows.
//  Returns 0, or -1 with errno (EAGAIN: the outbox is full).
static int
s_accept (zqi_r_producer_t *self, const zq_msg_t *msg)
{
    if (s_work (self, true))
        return -1;
    self->posted = true;
    //  A memory outbox holds at most window messages and its quota of
    //  bytes; a durable one is bounded by its spool's quota. Full after a
    //  round that skipped the read: the answers waiting may make room.
    if (!self->durable) {
        size_t size = zqi_msg_wire_size (msg);
        if (!zqi_rp_memory_room (self, size) && self->input_skipped && s_work (self, false))
            return -1;
        if (!zqi_rp_memory_room (self, size))
            return zqi_fail (EAGAIN);
        if (zqi_rp_hold_msg (self, msg))
            return -1;
    } else {
        int rc = zq_spool_append_msg (self->outbox, msg, NULL);
        if (rc && errno == ZQ_EFULL && self->input_skipped) {
            if (s_work (self, false))
                return -1;
            rc = zq_spool_append_msg (self->outbox, msg, NULL);
        }
        if (rc)
            return zqi_fail (errno == ZQ_EFULL ? EAGAIN : errno);
        if (zq_spool_commit (self->outbox))
            return -1;
    }
    //  Accepted: a socket failure here shows at the next call.
    zqi_rp_pump (self);
    return 0;
}

int
zqi_r_producer_post (zqi_r_producer_t *self, zq_msg_t **msg_p)
{
    if (s_accept (self, *msg_p))
        return -1;
    zq_msg_destroy (msg_p);
    return 0;
}

int
zqi_r_producer_send (zqi_r_producer_t *self, zq_msg_t **msg_p)
{
    const uint8_t *id = zq_msg_id (*msg_p);
    bool posted = false;
    if (!self->sync_active || memcmp (id, self->sync_id, ZQ_MSG_ID_SIZE) != 0) {
        //  A new send, unless this message is still in the outbox from an
        //  earlier send that gave up waiting.
        if (zqi_r_table_find (&self->table, id) == ZQI_R_NONE) {
            //  The outbox keeps its own form; the caller keeps the message
            //  until it is confirmed.
            if (s_accept (self, *msg_p))
                return -1;
            posted = true;
        }
        memcpy (self->sync_id, id, ZQ_MSG_ID_SIZE);
        self->sync_active = true;
        self->sync_result = 1;
    }
    //  Just posted: the post's round has looked at the socket and sent,
    //  and the wait that follows reads the socket's events before it
    //  sleeps, so this round may skip the read (lazy).
    if (s_work (self, posted))
        return -1;
    if (self->sync_result == 1)
        return zqi_fail (EAGAIN);
    int result = self->sync_result;
    self->sync_active = false;
    if (result)
        return zqi_fail (result);
    zq_msg_destroy (msg_p);
    return 0;
}

int
zqi_r_producer_confirmed (zqi_r_producer_t *self, uint8_t *id)
{
    //  Reports already in: no round. None: a round, lazy only once after
    //  a post, so a caller taking reports in a loop of its own (a poller
    //  woke it) reads the socket before it hears EAGAIN.
    if (!self->report_count) {
        bool lazy = self->posted;
        self->posted = false;
        if (s_work (self, lazy))
            return -1;
    }
    if (!self->report_count)
        return zqi_fail (EAGAIN);
    zqi_rp_report_t *report = &self->reports[self->report_head];
    self->report_head = (self->report_head + 1) % self->window;
    self->report_count--;
    memcpy (id, report->id, ZQ_MSG_ID_SIZE);
    return report->errnum ? zqi_fail (report->errnum) : 0;
}

zq_msg_t *
zqi_r_producer_recv (zqi_r_producer_t *self)
{
    errno = ENOTSUP;
    return NULL;
}

int
zqi_r_producer_events (zqi_r_producer_t *self, int zmq_events)
{
    //  The round's own sends (pings, resends) may take the fd's signal
    //  of an answer that came meanwhile: read again while libzmq shows
    //  input (bounded; the next call goes on).
    for (int round = 0; round < 4; round++) {
        if (s_work (self, false))
            return -1;
        if (self->report_count)
            break;
        int pending = 0;
        size_t size = sizeof pending;
        if (zmq_getsockopt (self->common.handle, ZMQ_EVENTS, &pending, &size))
            return -1;
        if (!(pending & ZMQ_POLLIN))
            break;
    }
    int events = 0;
    if (self->report_count)
        events |= ZMQ_POLLIN;
    if (self->durable || zqi_rp_memory_room (self, 1)) //  room for a message at least
        events |= ZMQ_POLLOUT;
    return events;
}

int
zqi_r_producer_flush (zqi_r_producer_t *self)
{
    //  A whole round (answers read, timers run), the hold off.
    self->hold_off = true;
    int rc = s_work (self, false);
    self->hold_off = false;
    return rc;
}

int
zqi_r_producer_wait (zqi_r_producer_t *self, short what, long timeout_ms)
{
    //  Answers come as input; records waiting in the outbox need a server
    //  to take them (ZMQ_IMMEDIATE: POLLOUT once one is connected), unless
    //  held back for the answers (ZQI_RP_HOLD). Several servers: a ROUTER
    //  shows POLLOUT while any server is connected, lost or not, so it
    //  waits for input and the timers.
    bool sendable = zqi_rp_sendable (self);
    short events = ZMQ_POLLIN;
    if (sendable && self->sent < self->send_window && !self->peers.multi)
        events |= ZMQ_POLLOUT;
    return zqi_pattern_poll (self->common.ctx, self->common.handle, events, timeout_ms);
}

int64_t
zqi_r_producer_next_timer_ms (zqi_r_producer_t *self)
{
    //  Nothing unconfirmed: no timer.
    if (!self->table.count && zqi_rp_outbox_depth (self) == 0)
        return -1;
    int64_t now = zqi_r_now (&self->common);
    int64_t due = self->last_ping + self->common.ping_ivl_ms;
    uint32_t index = zqi_r_table_first (&self->table);
    if (index != ZQI_R_NONE && self->table.entries[index].due < due)
        due = self->table.entries[index].due;
    //  Records that found no server connected: a new connection does not
    //  make the socket readable, so a loop watching only for input looks
    //  again at the reconnection pace.
    bool sendable = zqi_rp_sendable (self);
    if (sendable && self->sent < self->send_window && now + self->connect_check_ms < due)
        due = now + self->connect_check_ms;
    //  PUTs held back go once the last answer is ZQI_RP_HOLD_FRESH_MS old
    //  (the round that finds it so sends them).
    if (zqi_rp_holding (self)) {
        int64_t release = now + (self->answer_tick + ZQI_RP_HOLD_FRESH_MS + 1 - self->tick);
        if (release < due)
            due = release;
    }
    return due > now ? due - now : 0;
}

int
zqi_r_producer_attaching (zqi_r_producer_t *self, const char *endpoint, bool bind)
{
    return zqi_r_peers_attaching (&self->peers, self->common.handle, endpoint, bind);
}
