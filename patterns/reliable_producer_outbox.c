/*  =========================================================================
    reliable_producer_outbox - the reliable producer's outbox (a durable
    zq_spool, or the memory outbox: records and a ring of those waiting)
    and the sending of PUTs from it to the servers, alone or in batches.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable_producer.h"
#include "zq_batch.h"

//  Unconfirmed messages in the outbox (sent or not).
uint64_t
zqi_rp_outbox_depth (zqi_r_producer_t *self)
{
    if (!self->durable)
        return self->held;
    zq_spool_stats_t stats;
    zq_spool_stats (self->outbox, &stats);
    return stats.depth;
}

//  The record's wire bytes.
static inline uint8_t *
s_record_data (const zqi_rp_record_t *record)
{
    return record->size <= ZQI_RP_SMALL_BYTES ? record->small
                                              : (uint8_t *)zmq_msg_data (record->frame);
}

//  Free blocks are chained through their first bytes.
_Static_assert(ZQI_RP_SMALL_STEP >= sizeof (uint8_t *) &&
                   ZQI_RP_SMALL_BYTES % ZQI_RP_SMALL_STEP == 0,
               "a free block holds the link to the next, and the sizes step evenly");

//  The size class of a small record's block, for size (> 0) wire octets.
static inline uint32_t
s_small_class (size_t size)
{
    return (uint32_t)((size - 1) / ZQI_RP_SMALL_STEP);
}

//  The size of a block of that class.
static inline size_t
s_small_block (uint32_t class_index)
{
    return (size_t)(class_index + 1) * ZQI_RP_SMALL_STEP;
}

void
zqi_rp_record_free (zqi_r_producer_t *self, zqi_rp_record_t *record)
{
    if (!record->size)
        return;
    if (record->size > ZQI_RP_SMALL_BYTES) {
        zmq_msg_close (record->frame);
        free (record->frame);
    } else {
        uint32_t class_index = s_small_class (record->size);
        size_t block = s_small_block (class_index);
        if (self->spare_bytes + block <= ZQI_RP_SMALL_SPARE) {
            memcpy (record->small, &self->spare[class_index], sizeof self->spare[0]);
            self->spare[class_index] = record->small;
            self->spare_bytes += block;
        } else
            free (record->small);
    }
    record->size = 0;
}

//  Frees the outbox's free small blocks.
void
zqi_rp_spare_free (zqi_r_producer_t *self)
{
    for (uint32_t class_index = 0; class_index < ZQI_RP_SMALL_CLASSES; class_index++) {
        while (self->spare[class_index]) {
            uint8_t *block = self->spare[class_index];
            memcpy (&self->spare[class_index], block, sizeof self->spare[0]);
            free (block);
        }
    }
    self->spare_bytes = 0;
}

//  Makes a record for size wire bytes (> 0) and returns where they go,
//  or NULL with errno ENOMEM.
static uint8_t *
s_record_make (zqi_r_producer_t *self, zqi_rp_record_t *record, size_t size)
{
    if (size <= ZQI_RP_SMALL_BYTES) {
        uint32_t class_index = s_small_class (size);
        uint8_t *block = self->spare[class_index];
        if (block) {
            memcpy (&self->spare[class_index], block, sizeof self->spare[0]);
            self->spare_bytes -= s_small_block (class_index);
        } else if (!(block = (uint8_t *)malloc (s_small_block (class_index)))) {
            errno = ENOMEM;
            return NULL;
        }
        record->small = block;
    } else {
        zmq_msg_t *frame = (zmq_msg_t *)malloc (sizeof (zmq_msg_t));
        if (!frame || zmq_msg_init_size (frame, size)) {
            free (frame);
            errno = ENOMEM;
            return NULL;
        }
        record->frame = frame;
    }
    record->size = (uint32_t)size;
    return s_record_data (record);
}

//  Sends the record's bytes with flags: a copy of a small one, a
//  reference to a frame. Returns 0, or -1 with errno of libzmq.
static int
s_record_send (const zqi_rp_record_t *record, void *handle, int flags)
{
    if (record->size <= ZQI_RP_SMALL_BYTES) {
        if (zmq_send (handle, record->small, record->size, flags) == -1)
            return -1;
        ZQI_COUNT (ZQI_COUNT_PRODUCER_COPIES); //  zmq_send copies
        return 0;
    }
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

//  Memory outbox: notes that the entry at index went out, in order.
static void
s_sent_in_order (zqi_r_producer_t *self, uint32_t index)
{
    self->table.entries[index].sent = self->sent_count;
    self->sent_order[self->sent_count & self->ring_mask] = index;
    self->sent_count++;
}

uint32_t
zqi_rp_answered (zqi_r_producer_t *self, const uint8_t *id)
{
    uint32_t index = ZQI_R_NONE;
    if (self->sent_order) {
        uint32_t guess = self->sent_order[self->answer_next & self->ring_mask];
        if (guess < self->table.capacity && self->table.entries[guess].in_use &&
            memcmp (self->table.entries[guess].id, id, ZQ_MSG_ID_SIZE) == 0)
            index = guess;
    }
    if (index == ZQI_R_NONE)
        index = zqi_r_table_find (&self->table, id);
    if (index != ZQI_R_NONE && self->sent_order)
        self->answer_next = self->table.entries[index].sent + 1;
    return index;
}

//  Memory outbox, one server: sends the first of the records waiting (at
//  most count, 2 or more) as one PUT batch, as many as fit in batch_max_bytes; each
//  is tracked as a PUT of its own. Returns how many went (0: fewer than
//  two fit, nothing sent), or -1 with errno (EAGAIN: no room now; after
//  a batch found none, also until ZMQ_EVENTS shows room, copying nothing).
static int
s_pump_batch (zqi_r_producer_t *self, uint32_t count, int64_t now)
{
    uint8_t put_frame[ZQI_R_BARE_SIZE];
    size_t put_frame_size = zqi_r_bare_command (put_frame, ZQI_R_PUT);
    void *handle = self->common.handle;
    if (self->batch_blocked) {
        //  The last batch found no room: ask before copying another.
        int events = 0;
        size_t events_size = sizeof events;
        if (zmq_getsockopt (handle, ZMQ_EVENTS, &events, &events_size))
            return -1;
        if (!(events & ZMQ_POLLOUT))
            return zqi_fail (EAGAIN);
        self->batch_blocked = false;
    }
    zqi_batch_t batch;
    memset (&batch, 0, sizeof batch);
    //  The block is made once, for the records that fit (their sizes are
    //  known), rather than grown by doubling as they are copied in; if
    //  that fails, zqi_batch_reserve grows it as before.
    size_t expected = 0;
    for (uint32_t i = 0; i < count && i < ZQI_BATCH_MAX_COUNT; i++) {
        size_t more = zqi_batch_element_size (
            self->records[self->ring[(self->ring_head + i) & self->ring_mask]].size);
        if (zqi_batch_frame_size (i + 1, expected + more) > self->batch_max_bytes)
            break;
        expected += more;
    }
    (void)zqi_batch_expect (&batch, expected);
    for (uint32_t i = 0; i < count; i++) {
        zqi_rp_record_t *record =
            &self->records[self->ring[(self->ring_head + i) & self->ring_mask]];
        uint8_t *into = zqi_batch_reserve (&batch, record->size, self->batch_max_bytes);
        if (!into)
            break;
        memcpy (into, s_record_data (record), record->size);
        ZQI_COUNT (ZQI_COUNT_PRODUCER_COPIES);
    }
    uint32_t taken = batch.count;
    if (taken < 2) {
        zqi_batch_discard (&batch);
        return 0;
    }
    if (zmq_send (handle, put_frame, put_frame_size, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1 ||
        zqi_batch_send (&batch, handle, ZMQ_DONTWAIT)) {
        int saved = errno;
        zqi_batch_discard (&batch);
        self->batch_blocked = saved == EAGAIN;
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
        entry->state = ZQI_RP_SENT;
        s_sent_in_order (self, index);
        self->sent++;
        zqi_r_table_schedule (&self->table, index, now + self->confirm_timeout_ms);
    }
    return (int)taken;
}

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
                zqi_rp_peer_gone (self, index);
        } else if (errno != EAGAIN)
            return -1;
    }
    return zqi_fail (EAGAIN);
}

bool
zqi_rp_holding (const zqi_r_producer_t *self)
{
    if (self->durable || !self->batch_max_bytes || self->peers.multi || self->hold_off ||
        self->sent <= ZQI_RP_HOLD || self->ring_count == 0 || self->ring_count >= ZQI_RP_HOLD ||
        self->answer_tick < self->tick - ZQI_RP_HOLD_FRESH_MS)
        return false;
    //  One that goes alone anyway (two do not fit a batch) is not held.
    size_t element = zqi_batch_element_size (self->records[self->ring[self->ring_head]].size);
    return zqi_batch_frame_size (2, 2 * element) <= self->batch_max_bytes;
}

//  Sends PUTs from the outbox while the window has room and a server can
//  take them. Several waiting (the window opened, or the socket had no
//  room) go as one PUT batch; a lone one goes alone. Returns 0, or -1 with errno for a socket
//  failure. The confirm timeout counts from a time read before the first PUT leaves, never after:
//  the server may have answered, or the clock moved, meanwhile.
int
zqi_rp_pump (zqi_r_producer_t *self)
{
    uint8_t put_frame[ZQI_R_BARE_SIZE];
    size_t put_frame_size = zqi_r_bare_command (put_frame, ZQI_R_PUT);
    void *handle = self->common.handle;
    int64_t now = 0;
    if (!self->durable) {
        if (zqi_rp_holding (self))
            return 0;
        while (self->sent < self->send_window && self->ring_count) {
            if (!now)
                now = zqi_r_now (&self->common);
            uint32_t room = self->send_window - self->sent;
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
            zqi_rp_record_t *record = &self->records[index];
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
            entry->state = ZQI_RP_SENT;
            s_sent_in_order (self, index);
            self->sent++;
            zqi_r_table_schedule (&self->table, index, now + self->confirm_timeout_ms);
        }
        return 0;
    }
    while (self->sent < self->send_window) {
        zq_spool_record_t record;
        if (zq_spool_next (self->outbox, &record))
            return errno == EAGAIN ? 0 : -1;
        zqi_envelope_t envelope;
        if (zqi_envelope_parse ((const uint8_t *)record.data, record.size, NULL, 0, false,
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
        self->table.entries[index].state = ZQI_RP_SENT;
        self->sent++;
        zqi_r_table_schedule (&self->table, index, now + self->confirm_timeout_ms);
    }
    return 0;
}

//  Gives a tracked record back to the outbox, to be sent again soon.
void
zqi_rp_resend (zqi_r_producer_t *self, uint32_t index)
{
    zqi_r_entry_t *entry = &self->table.entries[index];
    if (entry->state == ZQI_RP_SENT)
        self->sent--;
    zqi_r_table_unschedule (&self->table, index);
    if (!self->durable) {
        //  First in line again.
        entry->state = ZQI_RP_QUEUED;
        self->ring_head = (self->ring_head - 1) & self->ring_mask;
        self->ring[self->ring_head] = index;
        self->ring_count++;
        return;
    }
    entry->state = ZQI_RP_WAITING;
    self->returned++;
    zq_spool_return (self->outbox, entry->seq);
}

//  True if records wait to be sent: they found no server connected, or
//  were given back to the outbox.
bool
zqi_rp_unsent (zqi_r_producer_t *self)
{
    if (!self->durable)
        return self->ring_count > 0;
    return self->returned > 0 || zqi_rp_outbox_depth (self) > self->table.count;
}

bool
zqi_rp_sendable (zqi_r_producer_t *self)
{
    return zqi_rp_unsent (self) && !zqi_rp_holding (self);
}

//  Drops a message from the outbox (confirmed, or never storable).
void
zqi_rp_drop (zqi_r_producer_t *self, uint32_t index)
{
    if (self->durable)
        zq_spool_ack (self->outbox, self->table.entries[index].seq);
    else {
        self->held_bytes -= self->records[index].size;
        zqi_rp_record_free (self, &self->records[index]);
        self->held--;
    }
    zqi_r_table_remove (&self->table, index);
}

//  Memory outbox: takes the message's wire form in, queued to be sent.
//  Returns 0, or -1 with errno ZQ_ETOOBIG or ENOMEM.
int
zqi_rp_hold_msg (zqi_r_producer_t *self, const zq_msg_t *msg)
{
    size_t size = zqi_msg_wire_size (msg);
    if (size > self->max_record_bytes)
        return zqi_fail (ZQ_ETOOBIG);
    uint32_t index = zqi_r_table_add_new (&self->table, zq_msg_id (msg));
    if (index == ZQI_R_NONE)
        //  The same message posted twice: one copy is enough.
        return errno == EEXIST ? 0 : -1;
    zqi_rp_record_t record = {0, {NULL}};
    uint8_t *wire = s_record_make (self, &record, size);
    if (!wire) {
        zqi_r_table_remove (&self->table, index);
        return zqi_fail (ENOMEM);
    }
    if (self->table.capacity > self->records_capacity) {
        zqi_rp_record_t *records = (zqi_rp_record_t *)realloc (
            self->records, self->table.capacity * sizeof (zqi_rp_record_t));
        if (!records) {
            zqi_r_table_remove (&self->table, index);
            zqi_rp_record_free (self, &record);
            return zqi_fail (ENOMEM);
        }
        memset (records + self->records_capacity, 0,
                (self->table.capacity - self->records_capacity) * sizeof (zqi_rp_record_t));
        self->records = records;
        self->records_capacity = self->table.capacity;
    }
    zqi_msg_wire_write (msg, wire);
    ZQI_COUNT (ZQI_COUNT_PRODUCER_COPIES);
    self->records[index] = record;
    self->table.entries[index].state = ZQI_RP_QUEUED;
    self->ring[(self->ring_head + self->ring_count) & self->ring_mask] = index;
    self->ring_count++;
    self->held++;
    self->held_bytes += size;
    return 0;
}

bool
zqi_rp_memory_room (const zqi_r_producer_t *self, size_t size)
{
    return self->held < self->window &&
           (self->held == 0 || self->held_bytes + size <= self->memory_quota);
}

void
zqi_rp_resend_all (zqi_r_producer_t *self)
{
    for (uint32_t index = 0; index < self->table.capacity; index++)
        if (self->table.entries[index].in_use &&
            self->table.entries[index].heap_index != ZQI_R_NONE)
            zqi_rp_resend (self, index);
}

//  A server of several stopped answering: every PUT it has not confirmed
//  goes back to the outbox, to be sent to another.
void
zqi_rp_peer_gone (zqi_r_producer_t *self, uint32_t peer)
{
    self->peers.peers[peer].unanswered = 0;
    for (uint32_t index = 0; index < self->table.capacity; index++) {
        zqi_r_entry_t *entry = &self->table.entries[index];
        if (entry->in_use && entry->state == ZQI_RP_SENT && entry->owner == peer) {
            zqi_rp_resend (self, index);
            self->common.ctx->stats->moved++;
        }
    }
}
