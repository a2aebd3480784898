/*  =========================================================================
    reliable_producer - the producer of the reliable pattern (ZQ_PRODUCER,
    DEALER): an outbox spool, a window of PUTs awaiting their confirm,
    resends, and the confirm reports of zq_queue_post.

    Every message goes into the outbox first: a zq_spool in outbox_dir
    (durable under the fsync option, so it survives the producer's
    crash), or else a memory outbox: each message's wire bytes beside its
    table entry, and a double-ended ring of the entries waiting to be
    sent. PUTs are sent from the outbox, at most max_in_flight awaiting a
    confirm; each is tracked by id with its deadline (and its outbox seq
    when durable). A CONFIRM drops the message from the outbox. No
    confirm by the deadline (confirm_timeout_ms), a refusal's backoff
    ending, or a sign that the server restarted or came back (its PONG),
    gives the message back to the outbox, which hands it out first again:
    it is sent again under the same id (the server's dedupe window keeps
    it from being stored twice). Records of the memory outbox waiting
    together go as one PUT batch (doc/PROTOCOL.md 19.5); a lone one goes
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

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable.h"
#include "zq_batch.h"

enum { S_SENT = 1, S_WAITING = 2, S_QUEUED = 3 };

//  A message of the memory outbox: the frame of its one-frame wire form,
//  written once; each send passes libzmq a reference to it (zmq_msg_copy
//  shares the bytes), never a copy. NULL: a free slot.
typedef struct {
    zmq_msg_t *frame;
} s_record_t;

static void
s_record_free (s_record_t *record)
{
    if (record->frame) {
        zmq_msg_close (record->frame);
        free (record->frame);
        record->frame = NULL;
    }
}

//  Sends the record's frame (a reference to it) with flags. Returns 0, or
//  -1 with errno of zmq_msg_send.
static int
s_record_send (s_record_t *record, void *handle, int flags)
{
    zmq_msg_t reference;
    zmq_msg_init (&reference);
    if (zmq_msg_copy (&reference, record->frame) ||
        zmq_msg_send (&reference, handle, flags) == -1) {
        int saved = errno;
        zmq_msg_close (&reference);
        errno = saved;
        return -1;
    }
    return 0;
}

//  A refused message is sent again after this long.
#define S_REFUSED_RETRY_MS 1000
//  Commands read per call before looking at timers.
#define S_BURST 4096

typedef struct {
    uint8_t id[ZQ_MSG_ID_SIZE];
    int errnum; //  0: confirmed
} s_report_t;

struct _zqi_r_producer_t {
    zqi_r_common_t common;
    zq_spool_t *outbox; //  durable outbox, or NULL
    bool durable;
    //  Memory outbox: records by table index, and a ring of the indexes
    //  waiting to be sent (S_QUEUED), oldest first.
    s_record_t *records;
    uint32_t records_capacity;
    uint32_t *ring;
    uint32_t ring_mask;
    uint32_t ring_head;
    uint32_t ring_count;
    uint32_t held; //  messages in the memory outbox
    size_t max_record_bytes;
    uint32_t window; //  max_in_flight
    int64_t confirm_timeout_ms;
    int64_t connect_check_ms; //  records wait for a server: look this often
    zqi_r_table_t table;      //  PUTs sent, awaiting an answer (owner: the server sent to)
    zqi_r_peers_t peers;      //  the servers
    uint32_t sent;            //  entries in state S_SENT
    uint32_t returned;        //  durable: entries given back to the outbox to go again
    //  The message zq_queue_send waits for.
    bool sync_active;
    uint8_t sync_id[ZQ_MSG_ID_SIZE];
    int sync_result; //  1 waiting, 0 confirmed, else the errno
    //  Reports for zq_queue_confirmed: a ring of window entries.
    s_report_t *reports;
    uint32_t report_head;
    uint32_t report_count;
    //  The server as its PONGs show it.
    uint8_t instance[ZQI_R_INSTANCE_SIZE];
    bool have_instance;
    int64_t last_ping;
    int64_t last_pong;
    bool server_lost; //  pings unanswered for 3 intervals
    //  When the socket was last read, whether that read emptied it, whether
    //  a post came since, and whether the last round skipped the read.
    int64_t input_ms;
    bool input_drained;
    bool posted;
    bool input_skipped;
    //  PUT batches (doc/PROTOCOL.md 19.5): largest batch frame (0: none;
    //  a server that answers one with ERROR 4, 5 or 6 turns them off for
    //  the queue's life), and whether one was sent.
    size_t batch_max_bytes;
    bool batch_sent;
    zqi_buf_t buf;
};

//  ---- Reports ------------------------------------------------------------

static void
s_report (zqi_r_producer_t *self, const uint8_t *id, int errnum)
{
    if (self->sync_active && memcmp (id, self->sync_id, ZQ_MSG_ID_SIZE) == 0) {
        self->sync_result = errnum;
        return;
    }
    if (self->report_count == self->window) {
        self->report_head = (self->report_head + 1) % self->window;
        self->report_count--;
        self->common.ctx->stats->dropped++;
    }
    s_report_t *report = &self->reports[(self->report_head + self->report_count) % self->window];
    memcpy (report->id, id, ZQ_MSG_ID_SIZE);
    report->errnum = errnum;
    self->report_count++;
}

//  ---- Outbox to wire -----------------------------------------------------

//  Unconfirmed messages in the outbox (sent or not).
static uint64_t
s_outbox_depth (zqi_r_producer_t *self)
{
    if (!self->durable)
        return self->held;
    zq_spool_stats_t stats;
    zq_spool_stats (self->outbox, &stats);
    return stats.depth;
}

//  Memory outbox, one server: sends the first of the records waiting (at
//  most count, 2 or more) as one PUT batch, as many as fit in batch_max_bytes; each
//  is tracked as a PUT of its own. Returns how many went (0: fewer than
//  two fit, nothing sent), or -1 with errno (EAGAIN: no room now).
static int
s_pump_batch (zqi_r_producer_t *self, uint32_t count, int64_t now)
{
    uint8_t put_frame[ZQI_R_BARE_SIZE];
    size_t put_frame_size = zqi_r_bare_command (put_frame, ZQI_R_PUT);
    zqi_batch_t batch;
    memset (&batch, 0, sizeof batch);
    for (uint32_t i = 0; i < count; i++) {
        s_record_t *record = &self->records[self->ring[(self->ring_head + i) & self->ring_mask]];
        size_t size = zmq_msg_size (record->frame);
        uint8_t *into = zqi_batch_reserve (&batch, size, self->batch_max_bytes);
        if (!into)
            break;
        memcpy (into, zmq_msg_data (record->frame), size);
        ZQI_COUNT (ZQI_COUNT_PRODUCER_COPIES);
    }
    uint32_t taken = batch.count;
    if (taken < 2) {
        zqi_batch_discard (&batch);
        return 0;
    }
    void *handle = self->common.handle;
    if (zmq_send (handle, put_frame, put_frame_size, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1 ||
        zqi_batch_send (&batch, handle, ZMQ_DONTWAIT)) {
        int saved = errno;
        zqi_batch_discard (&batch);
        return zqi_fail (saved);
    }
    self->batch_sent = true;
    for (uint32_t i = 0; i < taken; i++) {
        uint32_t index = self->ring[self->ring_head];
        self->ring_head = (self->ring_head + 1) & self->ring_mask;
        self->ring_count--;
        zqi_r_entry_t *entry = &self->table.entries[index];
        if (entry->attempt)
            self->common.ctx->stats->retries++;
        entry->attempt = 1;
        entry->owner = 0;
        entry->state = S_SENT;
        self->sent++;
        zqi_r_table_schedule (&self->table, index, now + self->confirm_timeout_ms);
    }
    return (int)taken;
}

static void s_peer_gone (zqi_r_producer_t *self, uint32_t peer);

//  Sends the routing frame of the server the next PUT goes to: the one
//  server, or of several the next in turn that is not lost and whose pipe
//  has room (one whose pipe libzmq dropped, EHOSTUNREACH, gives its PUTs
//  back first). Returns 0 with
//  *peer_p set, or -1 with errno EAGAIN (no server can take a PUT now) or
//  a socket error.
static int
s_address (zqi_r_producer_t *self, uint32_t *peer_p)
{
    zqi_r_peers_t *peers = &self->peers;
    *peer_p = 0;
    if (!peers->multi)
        return 0;
    for (uint32_t n = 0; n < peers->count; n++) {
        uint32_t index = (peers->next + n) % peers->count;
        zqi_r_peer_t *peer = &peers->peers[index];
        if (peer->lost)
            continue;
        bool was_connected = peer->connected;
        if (zqi_r_peers_address (peers, self->common.handle, index) == 0) {
            peers->next = (index + 1) % peers->count;
            *peer_p = index;
            return 0;
        }
        if (errno == EHOSTUNREACH) {
            if (was_connected)
                s_peer_gone (self, index);
        } else if (errno != EAGAIN)
            return -1;
    }
    return zqi_fail (EAGAIN);
}

//  Sends PUTs from the outbox while the window has room and a server can
//  take them. Several waiting (the window opened, or the socket had no
//  room) go as one PUT batch; a lone one goes alone. Returns 0, or -1 with errno for a socket
//  failure. The confirm timeout counts from a time read before the first PUT leaves, never after:
//  the server may have answered, or the clock moved, meanwhile.
static int
s_pump (zqi_r_producer_t *self)
{
    uint8_t put_frame[ZQI_R_BARE_SIZE];
    size_t put_frame_size = zqi_r_bare_command (put_frame, ZQI_R_PUT);
    void *handle = self->common.handle;
    int64_t now = 0;
    if (!self->durable) {
        while (self->sent < self->window && self->ring_count) {
            if (!now)
                now = zqi_r_now (&self->common);
            uint32_t room = self->window - self->sent;
            if (self->batch_max_bytes && !self->peers.multi && room > 1 && self->ring_count > 1) {
                int sent =
                    s_pump_batch (self, room < self->ring_count ? room : self->ring_count, now);
                if (sent > 0)
                    continue;
                if (sent == -1)
                    return errno == EAGAIN ? 0 : -1;
            }
            uint32_t peer;
            if (s_address (self, &peer))
                return errno == EAGAIN ? 0 : -1;
            //  (Read after s_address, which may give PUTs back.)
            uint32_t index = self->ring[self->ring_head];
            s_record_t *record = &self->records[index];
            if (zmq_send (handle, put_frame, put_frame_size, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1)
                return errno == EAGAIN ? 0 : -1;
            if (s_record_send (record, handle, ZMQ_DONTWAIT))
                return -1;
            self->ring_head = (self->ring_head + 1) & self->ring_mask;
            self->ring_count--;
            zqi_r_entry_t *entry = &self->table.entries[index];
            if (entry->attempt)
                self->common.ctx->stats->retries++;
            entry->attempt = 1; //  sent at least once
            entry->owner = peer;
            entry->state = S_SENT;
            self->sent++;
            zqi_r_table_schedule (&self->table, index, now + self->confirm_timeout_ms);
        }
        return 0;
    }
    while (self->sent < self->window) {
        zq_spool_record_t record;
        if (zq_spool_next (self->outbox, &record))
            return errno == EAGAIN ? 0 : -1;
        zqi_r_envelope_t envelope;
        if (zqi_r_envelope_parse ((const uint8_t *)record.data, record.size, NULL, 0, false,
                                  &envelope)) {
            zq_spool_ack (self->outbox, record.seq);
            continue;
        }
        uint32_t index = zqi_r_table_find (&self->table, envelope.id);
        if (index != ZQI_R_NONE && self->table.entries[index].seq != record.seq) {
            //  The same message posted twice: one copy is enough.
            zq_spool_ack (self->outbox, record.seq);
            continue;
        }
        if (!now)
            now = zqi_r_now (&self->common);
        uint32_t peer;
        if (s_address (self, &peer)) {
            int saved = errno;
            zq_spool_return (self->outbox, record.seq);
            errno = saved;
            return saved == EAGAIN ? 0 : -1;
        }
        if (zmq_send (handle, put_frame, put_frame_size, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1) {
            int saved = errno;
            zq_spool_return (self->outbox, record.seq);
            errno = saved;
            return saved == EAGAIN ? 0 : -1;
        }
        ZQI_COUNT (ZQI_COUNT_PRODUCER_COPIES); //  zmq_send copies
        if (zmq_send (handle, record.data, record.size, ZMQ_DONTWAIT) == -1) {
            int saved = errno;
            zq_spool_return (self->outbox, record.seq);
            errno = saved;
            return -1;
        }
        if (index == ZQI_R_NONE) {
            index = zqi_r_table_add (&self->table, envelope.id);
            if (index == ZQI_R_NONE)
                return -1; //  ENOMEM: the record stays in flight; a reopen resends
            self->table.entries[index].seq = record.seq;
        } else {
            if (self->returned) //  (always: a record given back)
                self->returned--;
            self->common.ctx->stats->retries++;
        }
        self->table.entries[index].owner = peer;
        self->table.entries[index].state = S_SENT;
        self->sent++;
        zqi_r_table_schedule (&self->table, index, now + self->confirm_timeout_ms);
    }
    return 0;
}

//  Gives a tracked record back to the outbox, to be sent again soon.
static void
s_resend (zqi_r_producer_t *self, uint32_t index)
{
    zqi_r_entry_t *entry = &self->table.entries[index];
    if (entry->state == S_SENT)
        self->sent--;
    zqi_r_table_unschedule (&self->table, index);
    if (!self->durable) {
        //  First in line again.
        entry->state = S_QUEUED;
        self->ring_head = (self->ring_head - 1) & self->ring_mask;
        self->ring[self->ring_head] = index;
        self->ring_count++;
        return;
    }
    entry->state = S_WAITING;
    self->returned++;
    zq_spool_return (self->outbox, entry->seq);
}

//  True if records wait to be sent: they found no server connected, or
//  were given back to the outbox.
static bool
s_unsent (zqi_r_producer_t *self)
{
    if (!self->durable)
        return self->ring_count > 0;
    return self->returned > 0 || s_outbox_depth (self) > self->table.count;
}

//  Drops a message from the outbox (confirmed, or never storable).
static void
s_drop (zqi_r_producer_t *self, uint32_t index)
{
    if (self->durable)
        zq_spool_ack (self->outbox, self->table.entries[index].seq);
    else {
        s_record_free (&self->records[index]);
        self->held--;
    }
    zqi_r_table_remove (&self->table, index);
}

//  Memory outbox: takes the message's wire form in, queued to be sent.
//  Returns 0, or -1 with errno ZQ_ETOOBIG or ENOMEM.
static int
s_hold_msg (zqi_r_producer_t *self, const zq_msg_t *msg)
{
    size_t size = zqi_msg_wire_size (msg);
    if (size > self->max_record_bytes)
        return zqi_fail (ZQ_ETOOBIG);
    if (zqi_r_table_find (&self->table, zq_msg_id (msg)) != ZQI_R_NONE)
        return 0; //  the same message posted twice: one copy is enough
    zmq_msg_t *frame = (zmq_msg_t *)malloc (sizeof (zmq_msg_t));
    if (!frame)
        return zqi_fail (ENOMEM);
    if (zmq_msg_init_size (frame, size)) {
        free (frame);
        return zqi_fail (ENOMEM);
    }
    s_record_t record = {frame};
    uint32_t index = zqi_r_table_add (&self->table, zq_msg_id (msg));
    if (index == ZQI_R_NONE) {
        s_record_free (&record);
        return zqi_fail (ENOMEM);
    }
    if (self->table.capacity > self->records_capacity) {
        s_record_t *records =
            (s_record_t *)realloc (self->records, self->table.capacity * sizeof (s_record_t));
        if (!records) {
            zqi_r_table_remove (&self->table, index);
            s_record_free (&record);
            return zqi_fail (ENOMEM);
        }
        memset (records + self->records_capacity, 0,
                (self->table.capacity - self->records_capacity) * sizeof (s_record_t));
        self->records = records;
        self->records_capacity = self->table.capacity;
    }
    zqi_msg_wire_write (msg, (uint8_t *)zmq_msg_data (frame));
    ZQI_COUNT (ZQI_COUNT_PRODUCER_COPIES);
    self->records[index] = record;
    self->table.entries[index].state = S_QUEUED;
    self->ring[(self->ring_head + self->ring_count) & self->ring_mask] = index;
    self->ring_count++;
    self->held++;
    return 0;
}

static void
s_resend_all (zqi_r_producer_t *self)
{
    for (uint32_t index = 0; index < self->table.capacity; index++)
        if (self->table.entries[index].in_use &&
            self->table.entries[index].heap_index != ZQI_R_NONE)
            s_resend (self, index);
}

//  A server of several stopped answering: every PUT it has not confirmed
//  goes back to the outbox, to be sent to another.
static void
s_peer_gone (zqi_r_producer_t *self, uint32_t peer)
{
    self->peers.peers[peer].unanswered = 0;
    for (uint32_t index = 0; index < self->table.capacity; index++) {
        zqi_r_entry_t *entry = &self->table.entries[index];
        if (entry->in_use && entry->state == S_SENT && entry->owner == peer) {
            s_resend (self, index);
            self->common.ctx->stats->moved++;
        }
    }
}

//  ---- Input --------------------------------------------------------------

static void
s_answer (zqi_r_producer_t *self, const zqi_r_command_t *command, uint32_t peer)
{
    int errnum = command->kind == ZQI_R_CONFIRM ? 0 : zqi_r_code_errno (command->code);
    for (size_t i = 0; i < command->id_count; i++) {
        const uint8_t *id = command->ids + i * ZQ_MSG_ID_SIZE;
        uint32_t index = zqi_r_table_find (&self->table, id);
        if (index == ZQI_R_NONE)
            continue; //  answered already (a resend's second answer)
        zqi_r_entry_t *entry = &self->table.entries[index];
        if (entry->state != S_SENT)
            continue; //  given back already: the resend will be answered
        if (errnum != 0 && entry->owner != peer)
            continue; //  a server it was moved from: the other one answers
        if (errnum == 0 || errnum == EINVAL || errnum == EEXIST || errnum == ZQ_ELIMIT ||
            errnum == EACCES) {
            //  Stored, or never storable (under this id, a new queue past
            //  the server's max_queues, or a queue this producer may not
            //  put to): out of the outbox.
            self->sent--;
            s_drop (self, index);
        } else {
            //  Refused for now: wait, then send again.
            self->sent--;
            entry->state = S_WAITING;
            zqi_r_table_schedule (&self->table, index,
                                  zqi_r_now (&self->common) + S_REFUSED_RETRY_MS);
            self->common.ctx->stats->refused++;
        }
        s_report (self, id, errnum);
    }
}

//  A PONG from server peer of several: it answers again; if it restarted,
//  what it had not confirmed goes again.
static void
s_pong (zqi_r_producer_t *self, uint32_t peer, const uint8_t *instance)
{
    zqi_r_peer_t *server = &self->peers.peers[peer];
    bool restarted =
        server->have_instance && memcmp (server->instance, instance, ZQI_R_INSTANCE_SIZE) != 0;
    memcpy (server->instance, instance, ZQI_R_INSTANCE_SIZE);
    server->have_instance = true;
    server->unanswered = 0;
    server->lost = false;
    if (restarted)
        s_peer_gone (self, peer);
}

//  Reads what the server sent. Returns 0, or -1 with errno for a socket
//  failure.
static int
s_input (zqi_r_producer_t *self)
{
    void *handle = self->common.handle;
    bool confirmed = false;
    self->input_drained = false;
    for (int n = 0; n < S_BURST; n++) {
        uint32_t peer;
        if (zqi_r_peers_recv_from (&self->peers, handle, &peer)) {
            if (errno == EAGAIN) {
                self->input_drained = true;
                break;
            }
            if (errno != ZQ_EPROTO)
                return -1;
            self->common.ctx->stats->errors++;
            continue;
        }
        zmq_msg_t frame;
        zmq_msg_init (&frame);
        if (zqi_r_recv_frame (handle, &frame)) {
            int saved = errno;
            zmq_msg_close (&frame);
            if (saved == EAGAIN) {
                self->input_drained = true;
                break;
            }
            errno = saved;
            return -1;
        }
        zqi_r_command_t command;
        bool more = zmq_msg_more (&frame);
        int rc = zqi_r_command_parse ((const uint8_t *)zmq_msg_data (&frame), zmq_msg_size (&frame),
                                      &command);
        if (more)
            zqi_drain (handle);
        if (rc || more)
            self->common.ctx->stats->errors++;
        else if (command.kind == ZQI_R_CONFIRM || command.kind == ZQI_R_REFUSE) {
            s_answer (self, &command, peer);
            confirmed = true;
        } else if (command.kind == ZQI_R_PONG && self->peers.multi)
            s_pong (self, peer, command.instance);
        else if (command.kind == ZQI_R_PONG) {
            bool restarted = self->have_instance &&
                             memcmp (self->instance, command.instance, ZQI_R_INSTANCE_SIZE) != 0;
            memcpy (self->instance, command.instance, ZQI_R_INSTANCE_SIZE);
            self->have_instance = true;
            self->last_pong = zqi_r_now (&self->common);
            if (restarted || self->server_lost)
                s_resend_all (self);
            self->server_lost = false;
        } else if (command.kind == ZQI_R_ERROR && self->batch_sent && self->batch_max_bytes &&
                   (command.code == ZQI_R_CODE_PROTOCOL || command.code == ZQI_R_CODE_VERSION ||
                    command.code == ZQI_R_CODE_UNKNOWN)) {
            //  A server that predates PUT batches (or takes none this
            //  size): every PUT goes alone from now on, and what awaits an
            //  answer goes again (its dedupe window keeps copies out).
            zqi_log (ZQ_LOG_WARNING,
                     "reliable producer: the server answered a PUT batch with error %u (%.*s): "
                     "PUTs go one by one",
                     (unsigned)command.code, (int)command.text_size, command.text);
            self->batch_max_bytes = 0;
            s_resend_all (self);
        } else if (command.kind != ZQI_R_PING)
            self->common.ctx->stats->errors++;
        zmq_msg_close (&frame);
    }
    (void)confirmed;
    return 0;
}

//  Pings each of several servers; one that leaves 3 pings unanswered, or
//  is found gone, gives back what it has not confirmed.
static void
s_ping_peers (zqi_r_producer_t *self, const void *ping, size_t size)
{
    for (uint32_t peer = 0; peer < self->peers.count; peer++) {
        zqi_r_peer_t *server = &self->peers.peers[peer];
        if (!server->lost && server->unanswered >= 3) {
            server->lost = true;
            s_peer_gone (self, peer);
        }
        bool was_connected = server->connected;
        if (zqi_r_peers_send (&self->peers, self->common.handle, peer, ping, size) == 0)
            server->unanswered++;
        else if (errno == EHOSTUNREACH && was_connected)
            s_peer_gone (self, peer);
    }
}

//  Runs due timers: deadlines of PUTs, ends of refusal backoffs, pings.
static void
s_timers (zqi_r_producer_t *self, int64_t now)
{
    uint32_t index;
    while ((index = zqi_r_table_first (&self->table)) != ZQI_R_NONE &&
           self->table.entries[index].due <= now) {
        zqi_r_entry_t *entry = &self->table.entries[index];
        if (self->peers.multi && entry->state == S_SENT) {
            //  Its server did not confirm in time: lost until it answers
            //  a ping, and all it holds unconfirmed goes elsewhere.
            self->peers.peers[entry->owner].lost = true;
            s_peer_gone (self, entry->owner);
        } else
            s_resend (self, index);
    }
    uint8_t ping_frame[ZQI_R_BARE_SIZE];
    size_t ping_frame_size = zqi_r_bare_command (ping_frame, ZQI_R_PING);
    if (self->peers.multi && (self->table.count || s_outbox_depth (self)) &&
        now - self->last_ping >= self->common.ping_ivl_ms) {
        s_ping_peers (self, ping_frame, ping_frame_size);
        self->last_ping = now;
    } else if ((self->table.count || s_outbox_depth (self)) &&
               now - self->last_ping >= self->common.ping_ivl_ms) {
        if (self->last_ping > self->last_pong &&
            now - self->last_pong > 3 * (int64_t)self->common.ping_ivl_ms)
            self->server_lost = true;
        //  (No server connected: the ping waits for the next interval.)
        zmq_send (self->common.handle, ping_frame, ping_frame_size, ZMQ_DONTWAIT);
        self->last_ping = now;
    }
}

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
//  emptied earlier in the same millisecond: a read that finds nothing
//  costs libzmq a system call or two, most of a PUT's cost at full speed.
//  Any other call reads, so a caller polling confirmed, or woken by
//  zloop or zpoller, or following the fd rule, never waits on an answer
//  already here.
static int
s_work (zqi_r_producer_t *self, bool lazy)
{
    int64_t now = zqi_r_now (&self->common);
    self->input_skipped =
        lazy && self->input_drained && now == self->input_ms && !s_timer_due (self, now);
    if (!self->input_skipped) {
        self->input_ms = now;
        if (s_input (self))
            return -1;
    }
    s_timers (self, now);
    return s_pump (self);
}

//  ---- Hooks --------------------------------------------------------------

zqi_r_producer_t *
zqi_r_producer_new (zq_pattern_ctx_t *ctx)
{
    zqi_r_producer_t *self = (zqi_r_producer_t *)calloc (1, sizeof (zqi_r_producer_t));
    if (!self) {
        errno = ENOMEM;
        return NULL;
    }
    zqi_r_table_init (&self->table);
    if (zqi_r_common_open (&self->common, ctx) || zqi_r_peers_open (&self->peers, ctx))
        goto failed;
    //  (Several servers: libzmq's ROUTER loses the routing ids chosen for
    //  its connections under ZMQ_IMMEDIATE, so each server's pipe stays,
    //  connected or not, and its PONGs tell whether it answers.)
    int on = 1;
    if (!self->peers.multi && zmq_setsockopt (self->common.handle, ZMQ_IMMEDIATE, &on, sizeof on))
        goto failed;
    self->window = (uint32_t)zqi_r_option (ctx->options, "max_in_flight");
    self->confirm_timeout_ms = zqi_r_option (ctx->options, "confirm_timeout_ms");
    self->connect_check_ms = zqi_r_option (ctx->options, "reconnect_ms");
    if (self->connect_check_ms <= 0)
        self->connect_check_ms = 100;
    self->reports = (s_report_t *)calloc (self->window, sizeof (s_report_t));
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
        if (!self->ring) {
            errno = ENOMEM;
            goto failed;
        }
        self->ring_mask = size - 1;
        self->max_record_bytes = ctx->max_message_bytes + 64 * 1024;
        size_t batch_max = (size_t)zqi_r_option (ctx->options, "batch_max_bytes");
        self->batch_max_bytes =
            batch_max < ctx->max_message_bytes ? batch_max : ctx->max_message_bytes;
    }
    //  What a previous run left unconfirmed goes out first.
    s_pump (self);
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
    //  A durable outbox keeps them for the next run; a memory one
    //  loses them.
    size_t unsent = self->durable ? 0 : self->held;
    if (self->peers.multi && self->common.handle && s_outbox_depth (self) == 0) {
        //  All confirmed: what still waits in a pipe (pings, PUTs to a
        //  server that stopped answering) need not hold the close.
        int zero = 0;
        zmq_setsockopt (self->common.handle, ZMQ_LINGER, &zero, sizeof zero);
    }
    zq_spool_destroy (&self->outbox);
    for (uint32_t index = 0; index < self->records_capacity; index++)
        s_record_free (&self->records[index]);
    free (self->records);
    free (self->ring);
    zqi_r_table_free (&self->table);
    free (self->reports);
    zqi_buf_free (&self->buf);
    free (self);
    *self_p = NULL;
    return unsent;
}

int
zqi_r_producer_post (zqi_r_producer_t *self, zq_msg_t **msg_p)
{
    if (s_work (self, true))
        return -1;
    self->posted = true;
    //  A memory outbox holds at most window messages; a durable one is
    //  bounded by its quota. Full after a round that skipped the read:
    //  the answers waiting may make room.
    if (!self->durable) {
        if (self->held >= self->window && self->input_skipped && s_work (self, false))
            return -1;
        if (self->held >= self->window)
            return zqi_fail (EAGAIN);
        if (s_hold_msg (self, *msg_p))
            return -1;
    } else {
        int rc = zq_spool_append_msg (self->outbox, *msg_p, NULL);
        if (rc && errno == ZQ_EFULL && self->input_skipped) {
            if (s_work (self, false))
                return -1;
            rc = zq_spool_append_msg (self->outbox, *msg_p, NULL);
        }
        if (rc)
            return zqi_fail (errno == ZQ_EFULL ? EAGAIN : errno);
        if (zq_spool_commit (self->outbox))
            return -1;
    }
    zq_msg_destroy (msg_p);
    //  Accepted: a socket failure here shows at the next call.
    s_pump (self);
    return 0;
}

int
zqi_r_producer_send (zqi_r_producer_t *self, zq_msg_t **msg_p)
{
    const uint8_t *id = zq_msg_id (*msg_p);
    if (!self->sync_active || memcmp (id, self->sync_id, ZQ_MSG_ID_SIZE) != 0) {
        //  A new send, unless this message is still in the outbox from an
        //  earlier send that gave up waiting.
        if (zqi_r_table_find (&self->table, id) == ZQI_R_NONE) {
            zq_msg_t *copy = zq_msg_dup (*msg_p);
            if (!copy)
                return zqi_fail (ENOMEM);
            if (zqi_r_producer_post (self, &copy)) {
                int saved = errno;
                zq_msg_destroy (&copy);
                return zqi_fail (saved);
            }
        }
        memcpy (self->sync_id, id, ZQ_MSG_ID_SIZE);
        self->sync_active = true;
        self->sync_result = 1;
    }
    if (s_work (self, false))
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
    s_report_t *report = &self->reports[self->report_head];
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
    if (self->durable || s_outbox_depth (self) < self->window)
        events |= ZMQ_POLLOUT;
    return events;
}

int
zqi_r_producer_wait (zqi_r_producer_t *self, short what, long timeout_ms)
{
    //  Answers come as input; records waiting in the outbox need a server
    //  to take them (ZMQ_IMMEDIATE: POLLOUT once one is connected).
    //  Several servers: a ROUTER shows POLLOUT while any server is
    //  connected, lost or not, so it waits for input and the timers.
    bool unsent = s_unsent (self);
    short events = ZMQ_POLLIN;
    if (unsent && self->sent < self->window && !self->peers.multi)
        events |= ZMQ_POLLOUT;
    return zqi_pattern_poll (self->common.ctx, self->common.handle, events, timeout_ms);
}

int64_t
zqi_r_producer_next_timer_ms (zqi_r_producer_t *self)
{
    //  Nothing unconfirmed: no timer.
    if (!self->table.count && s_outbox_depth (self) == 0)
        return -1;
    int64_t now = zqi_r_now (&self->common);
    int64_t due = self->last_ping + self->common.ping_ivl_ms;
    uint32_t index = zqi_r_table_first (&self->table);
    if (index != ZQI_R_NONE && self->table.entries[index].due < due)
        due = self->table.entries[index].due;
    //  Records that found no server connected: a new connection does not
    //  make the socket readable, so a loop watching only for input looks
    //  again at the reconnection pace.
    bool unsent = s_unsent (self);
    if (unsent && self->sent < self->window && now + self->connect_check_ms < due)
        due = now + self->connect_check_ms;
    return due > now ? due - now : 0;
}

int
zqi_r_producer_attaching (zqi_r_producer_t *self, const char *endpoint, bool bind)
{
    return zqi_r_peers_attaching (&self->peers, self->common.handle, endpoint, bind);
}
