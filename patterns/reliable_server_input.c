/*  =========================================================================
    reliable_server_input - the reliable server's input: reading commands
    from the socket, PUTs appended to their spools (committed and answered
    by reliable_server_commit.c), settles (ACK, NACK, TOUCH), CONSUME and
    CANCEL.

    patterns/reliable_server.h holds what the server's files share.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable_server.h"

//  PUT batch elements read (and their dedupe lookups started) before the
//  first is handled.
#define S_LOOKAHEAD 8

//  ---- Input --------------------------------------------------------------

//  Returns the round's index of the peer at route, adding it; ZQI_R_NONE
//  when the round has ZQI_RS_BATCH_PEERS peers already.
static uint32_t
s_peer_index (zqi_r_server_t *self, const uint8_t *route, size_t size)
{
    for (uint32_t index = self->puts.peer_count; index-- > 0;)
        if (self->puts.peers[index].route_size == size &&
            memcmp (self->puts.peers[index].route, route, size) == 0)
            return index;
    if (self->puts.peer_count == ZQI_RS_BATCH_PEERS)
        return ZQI_R_NONE;
    zqi_rs_peer_t *peer = &self->puts.peers[self->puts.peer_count];
    peer->route_size = (uint8_t)size;
    memcpy (peer->route, route, size);
    return self->puts.peer_count++;
}

static zqi_rs_pending_t *
s_pending_add (zqi_r_server_t *self, uint32_t peer, const uint8_t *id)
{
    zqi_rs_pending_t *pending = &self->puts.pending[self->puts.pending_count++];
    memcpy (pending->id, id, ZQ_MSG_ID_SIZE);
    pending->peer = peer;
    pending->queue = ZQI_R_NONE;
    pending->seq = 0;
    pending->code = 0;
    pending->appended = false;
    return pending;
}

//  Notes that the round's answers hang on record seq of queue (appended
//  by the round, or found by the dedupe window): the queue is committed
//  with the round, and a refusal anywhere in the seqs noted is found.
static void
s_round_holds (zqi_r_server_t *self, zqi_rs_queue_t *queue, uint64_t seq)
{
    if (!queue->appended) {
        queue->appended = true;
        queue->first_seq = queue->last_seq = seq;
        self->puts.touched[self->puts.touched_count++] = queue->index;
    } else if (seq < queue->first_seq)
        queue->first_seq = seq;
    else if (seq > queue->last_seq)
        queue->last_seq = seq;
}

//  Counts a PUT refused because its id was stored in queue with another
//  body, and logs it (the first, then at each power of two: a client
//  cannot flood the log).
static void
s_conflict (zqi_r_server_t *self, zqi_rs_queue_t *queue, const uint8_t *id)
{
    queue->counters.refused++;
    self->conflicts++;
    if (self->conflicts & (self->conflicts - 1))
        return;
    char hex[ZQ_MSG_ID_SIZE * 2 + 1];
    for (int i = 0; i < ZQ_MSG_ID_SIZE; i++)
        snprintf (hex + 2 * i, 3, "%02x", id[i]);
    zqi_log (ZQ_LOG_WARNING,
             "reliable: queue %s: a PUT reused id %s with other content: refused "
             "(%" PRIu64 " such PUTs so far)",
             queue->name, hex, self->conflicts);
}

//  The REFUSE or ERROR code for a queue that zqi_rs_queue_get could not give.
static zqi_r_code_t
s_queue_code (int errnum)
{
    return errnum == EINVAL      ? ZQI_R_CODE_INVALID
           : errnum == ZQ_ELIMIT ? ZQI_R_CODE_LIMIT
           : errnum == EMFILE    ? ZQI_R_CODE_BUSY
                                 : ZQI_R_CODE_FAILED;
}

const char *
zqi_rs_code_reason (zqi_r_code_t code)
{
    switch (code) {
        case ZQI_R_CODE_FULL:
            return "storage full";
        case ZQI_R_CODE_INVALID:
            return "never storable: an invalid queue name, or too large for the store";
        case ZQI_R_CODE_LIMIT:
            return "queue limit reached (max_queues or max_auto_queues)";
        case ZQI_R_CODE_CONFLICT:
            return "id stored with other content";
        case ZQI_R_CODE_BUSY:
            return "no file descriptor to open the queue (too many open queues or "
                   "connections): retry later";
        case ZQI_R_CODE_DENIED:
            return "denied: this identity lacks the right for this queue";
        case ZQI_R_CODE_NO_SPACE:
            return "no space: the spool's filesystem is under min_free_bytes: retry later";
        case ZQI_R_CODE_DELETED:
            return "queue deleted";
        default:
            return "storage failed";
    }
}

//  True if the authoriser (if any) lets user_id do operation on the queue
//  named by name and size, a valid name (an invalid one is refused later
//  as such).
static bool
s_authorized (zqi_r_server_t *self, const char *user_id, int operation, const char *name,
              size_t size)
{
    if (!self->authorize || zqi_queue_name_check (name, size) < 0)
        return true;
    char key[ZQ_QUEUE_NAME_MAX + sizeof ZQ_QUEUE_DEAD_SUFFIX];
    memcpy (key, name, size);
    key[size] = '\0';
    return self->authorize (self->authorize_arg, user_id, operation, key);
}

//  Remembers what the parse learned of the record stored at seq in queue:
//  the PUT's envelope (first frame data of size octets, then body_size
//  octets of a second frame, if any) stored with its attempt written in
//  attempt_size octets.
static void
s_parsed_keep (zqi_r_server_t *self, uint32_t queue, uint64_t seq, const uint8_t *data, size_t size,
               size_t body_size, const zqi_envelope_t *envelope, size_t attempt_size)
{
    //  Octets after the attempt move by the change of its size; a body
    //  in a second frame follows the first.
    size_t tail = envelope->attempt_offset + envelope->attempt_size;
    size_t first = size - envelope->attempt_size + attempt_size;
    size_t body_offset =
        (envelope->body >= data && envelope->body <= data + size)
            ? (size_t)(envelope->body - data) - tail + envelope->attempt_offset + attempt_size
            : first;
    if (first + body_size > UINT32_MAX)
        return;
    zqi_rs_parsed_t *slot = &self->parsed[zqi_rs_parsed_slot (queue, seq)];
    slot->seq = seq;
    slot->queue = queue;
    slot->size = (uint32_t)(first + body_size);
    slot->id_offset = (uint32_t)(envelope->id - data);
    slot->subject_offset = (uint32_t)((const uint8_t *)envelope->subject - data);
    slot->subject_size = envelope->subject_size;
    slot->attempt_offset = (uint32_t)envelope->attempt_offset;
    slot->attempt_size = (uint8_t)attempt_size;
    slot->body_offset = (uint32_t)body_offset;
    slot->body_size = (uint32_t)envelope->body_size;
    slot->created_ms = envelope->created_ms;
    zqi_r_envelope_times (envelope, &slot->ttl_ms, &slot->not_before_ms);
    memcpy (slot->id, envelope->id, ZQ_MSG_ID_SIZE);
}

//  Points *data_p and *size_p at the PUT's one-frame form with attempt 0
//  (the attempt counts the server's deliveries, whatever the producer
//  wrote): the frame itself, or a copy in self->bytes. 0, or -1.
static int
s_stored_form (zqi_r_server_t *self, const zqi_envelope_t *envelope, const uint8_t **data_p,
               size_t *size_p, const uint8_t *body, size_t body_size)
{
    if (!body && !envelope->attempt)
        return 0;
    const uint8_t *data = *data_p;
    size_t size = *size_p;
    size_t tail = envelope->attempt_offset + envelope->attempt_size;
    zqi_buf_reset (&self->bytes);
    if (zqi_buf_append (&self->bytes, data, envelope->attempt_offset) ||
        zqi_mp_put_uint (&self->bytes, 0) ||
        zqi_buf_append (&self->bytes, data + tail, size - tail) ||
        zqi_buf_append (&self->bytes, body, body_size))
        return -1;
    *data_p = self->bytes.data;
    *size_p = self->bytes.size;
    return 0;
}

//  A PUT for the store (pending its entry in the round): refused now, or
//  answered when the store's result comes (then out of the round).
static void
s_store_put (zqi_r_server_t *self, uint32_t peer, zqi_rs_pending_t *pending,
             const zqi_envelope_t *envelope, const uint8_t *data, size_t size, const uint8_t *body,
             size_t body_size)
{
    char name[ZQ_QUEUE_NAME_MAX + sizeof ZQ_QUEUE_DEAD_SUFFIX];
    if (zqi_queue_name_check (envelope->subject, envelope->subject_size) != 0) {
        pending->code = ZQI_R_CODE_INVALID;
        return;
    }
    memcpy (name, envelope->subject, envelope->subject_size);
    name[envelope->subject_size] = '\0';
    if (s_stored_form (self, envelope, &data, &size, body, body_size)) {
        pending->code = ZQI_R_CODE_FAILED;
        return;
    }
    pending->code = zqi_rs_store_put (self, peer, name, envelope->id, data, size);
    if (pending->code == ZQI_R_CODE_LIMIT || pending->code == ZQI_R_CODE_BUSY)
        self->common.ctx->stats->refused++;
    if (pending->code == 0 && pending == &self->puts.pending[self->puts.pending_count - 1])
        self->puts.pending_count--;
}

//  The queue a PUT of size octets names, made if needed; NULL with
//  pending's code set when it cannot be had.
static zqi_rs_queue_t *
s_put_queue (zqi_r_server_t *self, zqi_rs_pending_t *pending, const zqi_envelope_t *envelope,
             size_t size, const char *user_id)
{
    //  Under the free-space watermark no queue is made for a PUT that
    //  would be refused later (one that exists may hold a duplicate).
    char name[ZQ_QUEUE_NAME_MAX + sizeof ZQ_QUEUE_DEAD_SUFFIX];
    if (zqi_queue_name_check (envelope->subject, envelope->subject_size) == 0) {
        memcpy (name, envelope->subject, envelope->subject_size);
        name[envelope->subject_size] = '\0';
        if (!zqi_rs_queue_find (self, name) && zqi_disk_low (&self->disk, self->now, size)) {
            pending->code = ZQI_R_CODE_NO_SPACE;
            self->no_space++;
            self->common.ctx->stats->refused++;
            zqi_rs_limit_log (self, ZQI_RS_LIMIT_NO_SPACE, name);
            return NULL;
        }
    }
    self->naming_user_id = user_id;
    zqi_rs_queue_t *queue =
        zqi_rs_queue_get (self, envelope->subject, envelope->subject_size, true);
    self->naming_user_id = NULL;
    if (!queue) {
        pending->code = s_queue_code (errno);
        if (pending->code == ZQI_R_CODE_LIMIT || pending->code == ZQI_R_CODE_BUSY)
            self->common.ctx->stats->refused++;
    }
    return queue;
}

//  What a PUT batch's reader learnt of an element ahead of handling it:
//  where its id is, and its producer's and dedupe key's hashes.
typedef struct {
    const uint8_t *id;
    uint64_t producer;
    uint32_t key_hash;
} s_put_hint_t;

//  Logs (one line per ZQI_RS_LOG_IVL_MS at most) that the dedupe window
//  (one for every queue) had no memory to grow when a PUT to queue was
//  stored: remembered 1, the window's oldest id was forgotten early to
//  make room; -1, the PUT's id is not remembered. Either way a resend of
//  a forgotten id is stored again.
static void
s_dedupe_short (zqi_r_server_t *self, const zqi_rs_queue_t *queue, int remembered)
{
    uint64_t skipped;
    if (!zqi_log_limit_due (&self->dedupe_log, self->now, ZQI_RS_LOG_IVL_MS, &skipped))
        return;
    if (remembered > 0)
        zqi_log (ZQ_LOG_WARNING,
                 "reliable: no memory to grow the dedupe window past %u ids: its oldest id "
                 "forgotten early (storing to queue %s); %" PRIu64 " more since the last line",
                 self->dedupe.capacity, queue->name, skipped);
    else
        zqi_log (ZQ_LOG_WARNING,
                 "reliable: no memory for the dedupe window: a PUT's id to queue %s not "
                 "remembered; %" PRIu64 " more since the last line",
                 queue->name, skipped);
}

//  Logs (one line per ZQI_RS_FULL_LOG_MS at most) that a PUT to queue,
//  stored, made the dedupe window forget its oldest id at dedupe_max,
//  before dedupe_window_ms: ids are remembered only as long as that one
//  was.
static void
s_dedupe_full (zqi_r_server_t *self, const zqi_rs_queue_t *queue)
{
    uint64_t skipped;
    if (!zqi_log_limit_due (&self->dedupe_full_log, self->now, ZQI_RS_FULL_LOG_MS, &skipped))
        return;
    const zqi_r_dedupe_t *dedupe = &self->dedupe;
    int64_t span_ms = self->now - dedupe->forgotten_stored_ms;
    zqi_log (ZQ_LOG_WARNING,
             "reliable: the dedupe window is full at dedupe_max (%u ids): ids are forgotten "
             "%" PRId64 " ms after their store, not %" PRId64 " (dedupe_window_ms), so a resend "
             "after that is stored again (storing to queue %s; %" PRIu64
             " more since the last line)",
             dedupe->max, span_ms, dedupe->window_ms, queue->name, skipped);
}

//  Handles one PUT envelope: data (size octets), and body for the
//  two-frame form (else NULL), from peer whose ZAP User-Id is user_id;
//  hint, if not NULL, from the batch reader.
static void
s_put (zqi_r_server_t *self, uint32_t peer, const uint8_t *data, size_t size, const uint8_t *body,
       size_t body_size, const char *user_id, const s_put_hint_t *hint)
{
    bool second = body != NULL;
    zqi_rs_peer_t *from = &self->puts.peers[peer];
    zqi_envelope_t envelope;
    //  A PUT that can never be stored is refused with its id when the id
    //  can be read (so a producer stops sending it), else answered ERROR.
    const uint8_t *id = NULL;
    if (size + body_size > self->max_message_bytes) {
        if (zqi_envelope_id (data, size, &id) == 0)
            zqi_rs_refuse_put (self, from, id, "message too big", size + body_size);
        else {
            zqi_rs_turn_down (self, from->route, from->route_size, ZQI_R_CODE_PROTOCOL,
                              "message too big");
        }
        return;
    }
    ZQI_COUNT (ZQI_COUNT_SERVER_PARSES);
    if (zqi_envelope_parse (data, size, body, body_size, true, &envelope)) {
        int failure = errno;
        if (failure != ZQ_EVERSION && zqi_envelope_id (data, size, &id) == 0)
            zqi_rs_refuse_put (self, from, id, "malformed envelope", size + body_size);
        else {
            zqi_rs_turn_down (self, from->route, from->route_size,
                              failure == ZQ_EVERSION ? ZQI_R_CODE_VERSION : ZQI_R_CODE_PROTOCOL,
                              failure == ZQ_EVERSION ? "unknown envelope version"
                                                     : "malformed envelope");
        }
        return;
    }
    if (zqi_queue_name_is_dead (envelope.subject, envelope.subject_size)) {
        zqi_rs_refuse_put (self, from, envelope.id, "a dead-letter queue is not put to",
                           size + body_size);
        return;
    }
    zqi_rs_pending_t *pending = s_pending_add (self, peer, envelope.id);
    if (!s_authorized (self, user_id, ZQ_ACCESS_PUT, envelope.subject, envelope.subject_size)) {
        pending->code = ZQI_R_CODE_DENIED;
        self->common.ctx->stats->refused++;
        return;
    }
    if (self->store) {
        s_store_put (self, peer, pending, &envelope, data, size, second ? body : NULL, body_size);
        return;
    }
    zqi_rs_queue_t *queue = zqi_rs_queue_last (self, envelope.subject, envelope.subject_size);
    if (!queue) {
        queue = s_put_queue (self, pending, &envelope, size + body_size, user_id);
        if (!queue)
            return;
    }
    //  A duplicate is the same id, queue and producer identity (the
    //  User-Id ZAP gave the connection, if any), with the same body.
    int64_t now = self->now;
    zqi_r_seen_t *key = &pending->seen;
    if (hint && hint->id == envelope.id)
        zqi_r_dedupe_key_hashed (key, envelope.id, queue->index, hint->producer, hint->key_hash);
    else
        zqi_r_dedupe_key (&self->dedupe, key, envelope.id, queue->index, user_id);
    uint64_t content = zqi_r_dedupe_content (&self->dedupe, envelope.body, envelope.body_size);
    zqi_r_seen_t *seen = zqi_r_dedupe_find (&self->dedupe, key, now);
    if (seen && seen->content != content) {
        s_conflict (self, queue, envelope.id);
        pending->code = ZQI_R_CODE_CONFLICT;
        return;
    }
    if (seen) {
        //  Answered with the record's own outcome: a commit that refused
        //  it (one behind this round, say) refuses this PUT too.
        pending->queue = seen->queue;
        pending->seq = seen->seq;
        queue->counters.duplicates++;
        s_round_holds (self, queue, seen->seq);
        return;
    }
    //  Under the free-space watermark nothing new is stored (a duplicate
    //  above was confirmed: it takes no space).
    if (zqi_disk_low (&self->disk, now, size + body_size)) {
        pending->code = ZQI_R_CODE_NO_SPACE;
        queue->counters.refused++;
        self->no_space++;
        self->common.ctx->stats->refused++;
        zqi_rs_limit_log (self, ZQI_RS_LIMIT_NO_SPACE, queue->name);
        return;
    }
    //  Stored in the one-frame form, with attempt 0 (the attempt counts the
    //  server's deliveries, whatever the producer wrote): as received, or
    //  joined by the spool as it copies the parts from the received frames.
    static const uint8_t attempt_zero = 0x00;
    size_t tail = envelope.attempt_offset + envelope.attempt_size;
    const void *parts[4] = {data, &attempt_zero, data + tail, body};
    size_t sizes[4] = {envelope.attempt_offset, 1, size - tail, body_size};
    size_t attempt_size = 1;
    size_t count = second ? 4 : 3;
    if (!second && envelope.attempt == 0) {
        sizes[0] = size;
        count = 1;
        attempt_size = envelope.attempt_size;
    }
    uint64_t seq;
    if (zqi_spool_append_parts (queue->spool, parts, sizes, count, &seq)) {
        pending->code = errno == ZQ_ETOOBIG ? ZQI_R_CODE_INVALID : zqi_rs_store_code (errno);
        queue->counters.refused++;
        return;
    }
    s_parsed_keep (self, queue->index, seq, data, size, body_size, &envelope, attempt_size);
    pending->queue = queue->index;
    pending->seq = seq;
    pending->appended = true;
    queue->counters.put++;
    uint64_t forgotten = self->dedupe.forgotten;
    int remembered = zqi_r_dedupe_add (&self->dedupe, key, content, now, seq);
    if (self->dedupe.forgotten != forgotten) {
        self->common.ctx->stats->forgotten = self->dedupe.forgotten;
        if (remembered)
            s_dedupe_short (self, queue, remembered);
        else
            s_dedupe_full (self, queue);
    }
    s_round_holds (self, queue, seq);
}

//  Handles a PUT whose envelope frames are first (and second): one
//  envelope, or a PUT batch (doc/PROTOCOL.md 19.5), whose layout is
//  checked whole before any element is taken; then each element is a PUT
//  of its own, refused alone if it is bad.
static void
s_put_frames (zqi_r_server_t *self, uint32_t peer, zmq_msg_t *first, zmq_msg_t *second)
{
    const uint8_t *data = (const uint8_t *)zmq_msg_data (first);
    size_t size = zmq_msg_size (first);
    const char *user_id = zmq_msg_gets (first, "User-Id");
    if (second || !zqi_batch_is (data, size)) {
        s_put (self, peer, data, size, second ? (const uint8_t *)zmq_msg_data (second) : NULL,
               second ? zmq_msg_size (second) : 0, user_id, NULL);
        return;
    }
    //  The User-Id stays with the frame the reader takes.
    zqi_batch_reader_t reader;
    memset (&reader, 0, sizeof reader);
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    zmq_msg_copy (&frame, first);
    if (zqi_batch_open (&reader, &frame, self->max_message_bytes)) {
        int failure = errno;
        zmq_msg_close (&frame);
        zqi_rs_turn_down (self, self->puts.peers[peer].route, self->puts.peers[peer].route_size,
                          ZQI_R_CODE_PROTOCOL,
                          failure == ZQ_ETOOBIG ? "PUT batch too big" : "malformed PUT batch");
        return;
    }
    zmq_msg_close (&frame);
    //  Each element's dedupe lookup is started S_LOOKAHEAD elements before
    //  it is handled: the lookups of a batch wait for memory together,
    //  not one after the other. The reader is asked for exactly as many
    //  elements as it holds, so it stays open (their octets valid) until
    //  it is closed here.
    uint64_t producer = zqi_r_dedupe_producer (&self->dedupe, user_id);
    const uint8_t *ahead[S_LOOKAHEAD];
    size_t ahead_size[S_LOOKAHEAD];
    s_put_hint_t hints[S_LOOKAHEAD];
    uint32_t total = zqi_batch_left (&reader);
    for (uint32_t index = 0; index < total + S_LOOKAHEAD; index++) {
        uint32_t slot = index % S_LOOKAHEAD;
        if (index >= S_LOOKAHEAD) //  the element read S_LOOKAHEAD ago, its slot freed
            s_put (self, peer, ahead[slot], ahead_size[slot], NULL, 0, user_id,
                   hints[slot].id ? &hints[slot] : NULL);
        if (index < total) {
            int rc = zqi_batch_next (&reader, &ahead[slot], &ahead_size[slot]);
            ZQ_ASSERT (rc == 0);
            s_put_hint_t *hint = &hints[slot];
            hint->id = NULL;
            if (zqi_envelope_id (ahead[slot], ahead_size[slot], &hint->id) == 0) {
                hint->producer = producer;
                hint->key_hash = zqi_r_dedupe_key_hash (&self->dedupe, hint->id, producer);
                zqi_r_dedupe_prefetch (&self->dedupe, hint->key_hash, S_LOOKAHEAD - 1);
            } else
                hint->id = NULL;
        }
    }
    zqi_batch_close (&reader);
}

int64_t
zqi_rs_nack_delay (const zqi_r_server_t *self, int64_t asked_ms, uint32_t doublings)
{
    int64_t delay = asked_ms;
    if (delay < 0) {
        delay = self->backoff_ms;
        for (uint32_t step = 0; step < doublings && delay < self->backoff_max_ms; step++)
            delay *= 2;
        if (delay > self->backoff_max_ms)
            delay = self->backoff_max_ms;
    }
    return delay > self->max_delay_ms ? self->max_delay_ms : delay;
}

//  ACK, NACK or TOUCH of ids from the consumer at index (ZQI_R_NONE if
//  the peer is not a known consumer). Only the consumer holding a
//  delivery settles it; an ACK also settles a delivery the same consumer
//  held last and that was taken back (timed out, nacked) but not yet
//  delivered again. Returns how many ids were not the sender's to settle
//  (unknown, held by another consumer or by none).
size_t
zqi_rs_settle_ids (zqi_r_server_t *self, uint32_t consumer, const zqi_r_command_t *command,
                   size_t *failed_p, int *errnum_p)
{
    size_t not_held = 0;
    uint32_t session = consumer == ZQI_R_NONE ? 0 : self->consumers[consumer].session;
    zqi_rs_acks_t acks;
    acks.count = 0;
    for (size_t i = 0; i < command->id_count; i++) {
        const uint8_t *id = command->ids + i * ZQ_MSG_ID_SIZE;
        uint32_t index = zqi_rs_entry_for (self, id, consumer);
        if (index == ZQI_R_NONE) {
            if (session)
                zqi_rs_read_through (self, &self->consumers[consumer], NULL, id);
            not_held++;
            continue;
        }
        zqi_r_entry_t *entry = &self->table.entries[index];
        bool owned = session && entry->state == ZQI_RS_DELIVERED && entry->owner == consumer;
        bool held_last = session && entry->holder == session &&
                         (entry->state == ZQI_RS_RETURNED || entry->state == ZQI_RS_HELD);
        if (session)
            zqi_rs_read_through (self, &self->consumers[consumer],
                                 owned || held_last ? entry : NULL, id);
        if (command->kind == ZQI_R_ACK && (owned || held_last))
            zqi_rs_acks_add (self, &acks, index, failed_p, errnum_p);
        else if (!owned)
            not_held++;
        else if (command->kind == ZQI_R_NACK) {
            self->queues[entry->queue]->counters.nacked++;
            zqi_rs_fail_delivery (self, index,
                                  zqi_rs_nack_delay (self, command->number, entry->attempt));
        } else {
            int64_t extend = command->number > 0 ? command->number : self->visibility_ms;
            if (extend > self->max_delay_ms)
                extend = self->max_delay_ms;
            zqi_r_table_schedule (&self->table, index, zqi_r_now (&self->common) + extend);
        }
    }
    zqi_rs_acks_flush (self, &acks, failed_p, errnum_p);
    return not_held;
}

//  The consumer closed: the deliveries it names never reached its
//  application and go back as they were; the others go back with attempt
//  one higher (they may have been worked on), and the consumer is
//  forgotten.
static void
s_consumer_leave (zqi_r_server_t *self, uint32_t consumer, const zqi_r_command_t *command)
{
    for (size_t i = 0; i < command->id_count; i++) {
        uint32_t index = zqi_rs_entry_for (self, command->ids + i * ZQ_MSG_ID_SIZE, consumer);
        if (index != ZQI_R_NONE && self->table.entries[index].state == ZQI_RS_DELIVERED &&
            self->table.entries[index].owner == consumer)
            zqi_rs_return (self, index);
    }
    zqi_rs_consumer_drop (self, consumer);
}

//  Handles a command other than PUT from route.
static void
s_command (zqi_r_server_t *self, const uint8_t *route, size_t route_size,
           const zqi_r_command_t *command, const char *user_id)
{
    uint32_t consumer = zqi_rs_consumer_find (self, route, route_size);
    switch (command->kind) {
        case ZQI_R_CONSUME:
        case ZQI_R_CANCEL: {
            if (zqi_queue_name_check (command->text, command->text_size) < 0) {
                zqi_rs_turn_down (self, route, route_size, ZQI_R_CODE_INVALID,
                                  command->kind == ZQI_R_CONSUME ? "invalid queue name in CONSUME"
                                                                 : "invalid queue name in CANCEL");
                return;
            }
            char key[ZQ_QUEUE_NAME_MAX + sizeof ZQ_QUEUE_DEAD_SUFFIX];
            memcpy (key, command->text, command->text_size);
            key[command->text_size] = '\0';
            if (command->kind == ZQI_R_CANCEL && self->store) {
                zqi_rs_store_cancel (self, consumer, key);
                return;
            }
            if (command->kind == ZQI_R_CANCEL) {
                //  Found, not opened. A queue not consumed (or unknown) has
                //  nothing to cancel: not an error, no answer.
                zqi_rs_queue_t *queue = zqi_rs_queue_find (self, key);
                if (queue && consumer != ZQI_R_NONE)
                    zqi_rs_unsubscribe (self, consumer, queue);
                return;
            }
            if (!s_authorized (self, user_id, ZQ_ACCESS_CONSUME, key, command->text_size)) {
                self->common.ctx->stats->refused++;
                zqi_rs_send_error (self, route, route_size, ZQI_R_CODE_DENIED,
                                   zqi_rs_code_reason (ZQI_R_CODE_DENIED));
                return;
            }
            if (self->store) {
                if (zqi_rs_store_consume (self, &consumer, route, route_size, key,
                                          (uint32_t)command->number)) {
                    bool limit = errno == ZQ_ELIMIT;
                    if (limit)
                        self->common.ctx->stats->refused++;
                    zqi_rs_send_error (self, route, route_size,
                                       limit ? ZQI_R_CODE_LIMIT : ZQI_R_CODE_FAILED,
                                       limit ? "subscription limit reached (max_consumer_queues "
                                               "or max_queues)"
                                             : "out of memory");
                }
                return;
            }
            if (consumer != ZQI_R_NONE &&
                self->consumers[consumer].queue_count >= self->max_consumer_queues) {
                //  A connection past max_consumer_queues may renew what it
                //  consumes (its prefetch), not add a queue.
                zqi_rs_queue_t *known = zqi_rs_queue_find (self, key);
                zqi_rs_consumer_t *holder = &self->consumers[consumer];
                bool renewal = false;
                for (uint32_t i = 0; known && i < holder->queue_count; i++)
                    renewal |= holder->queues[i] == known->index;
                if (!renewal) {
                    self->common.ctx->stats->refused++;
                    zqi_rs_limit_log (self, ZQI_RS_LIMIT_CONSUMER, key);
                    zqi_rs_send_error (self, route, route_size, ZQI_R_CODE_LIMIT,
                                       "subscription limit reached (max_consumer_queues)");
                    return;
                }
            }
            self->naming_user_id = user_id;
            zqi_rs_queue_t *queue =
                zqi_rs_queue_get (self, command->text, command->text_size, true);
            self->naming_user_id = NULL;
            if (!queue) {
                zqi_r_code_t code = s_queue_code (errno);
                zqi_rs_send_error (self, route, route_size, code, zqi_rs_code_reason (code));
                return;
            }
            if (consumer == ZQI_R_NONE)
                consumer = zqi_rs_consumer_new (self, route, route_size);
            if (consumer == ZQI_R_NONE || zqi_rs_subscribe (self, consumer, queue)) {
                zqi_rs_send_error (self, route, route_size, ZQI_R_CODE_FAILED, "out of memory");
                return;
            }
            self->consumers[consumer].prefetch = (uint32_t)command->number;
            self->consumers[consumer].batch_max_bytes =
                command->batch_bytes < self->max_message_bytes ? (size_t)command->batch_bytes
                                                               : self->max_message_bytes;
            return;
        }
        case ZQI_R_ACK:
        case ZQI_R_NACK:
        case ZQI_R_TOUCH: {
            size_t failed = 0;
            int errnum = 0;
            size_t not_held = self->store
                                  ? zqi_rs_store_settle (self, consumer, command, &failed, &errnum)
                                  : zqi_rs_settle_ids (self, consumer, command, &failed, &errnum);
            if (failed) {
                //  Nothing was removed: the deliveries stay the consumer's
                //  (ack them again) until their visibility time.
                char reason[160];
                snprintf (reason, sizeof reason, "%zu of %zu acks not recorded: %s", failed,
                          command->id_count, zq_strerror (errnum));
                zqi_rs_send_error (self, route, route_size, ZQI_R_CODE_FAILED, reason);
            }
            if (not_held) {
                char reason[96];
                snprintf (reason, sizeof reason, "%zu of %zu ids not held by this consumer",
                          not_held, command->id_count);
                zqi_rs_turn_down (self, route, route_size, ZQI_R_CODE_NOT_HELD, reason);
            }
            return;
        }
        case ZQI_R_LEAVE:
            if (consumer != ZQI_R_NONE && self->store)
                zqi_rs_store_leave (self, consumer);
            else if (consumer != ZQI_R_NONE)
                s_consumer_leave (self, consumer, command);
            return;
        case ZQI_R_PING:
            if (zqi_r_put_command (&self->buf, 4, ZQI_R_PONG) == 0 &&
                zqi_mp_put_bin (&self->buf, self->instance, ZQI_R_INSTANCE_SIZE) == 0 &&
                zqi_mp_put_uint (&self->buf, consumer == ZQI_R_NONE ? ZQI_R_PONG_NO_SESSION : 0) ==
                    0)
                zqi_rs_send_command (self, route, route_size, false);
            return;
        case ZQI_R_PUT:
        case ZQI_R_CONFIRM:
        case ZQI_R_REFUSE:
        case ZQI_R_DELIVER:
        case ZQI_R_PONG:
        case ZQI_R_ERROR:
            //  Commands a server sends, not receives: counted, not answered
            //  (so two confused servers cannot ping-pong errors).
            self->common.ctx->stats->errors++;
            return;
        default:
            self->common.ctx->stats->errors++;
            zqi_rs_send_error (self, route, route_size, ZQI_R_CODE_UNKNOWN, "unknown command");
    }
}

int
zqi_rs_read_one (zqi_r_server_t *self)
{
    void *handle = self->common.handle;
    zmq_msg_t frames[4];
    for (int i = 0; i < 4; i++)
        zmq_msg_init (&frames[i]);
    int count = 0;
    int rc = 0;
    //  Routing id, command, and up to two envelope frames.
    while (count < 4) {
        if (zqi_r_recv_frame (handle, &frames[count])) {
            rc = count ? 0 : -1;
            break;
        }
        count++;
        if (!zmq_msg_more (&frames[count - 1]))
            break;
    }
    if (rc == -1) {
        int saved = errno;
        zmq_msg_close (&frames[0]);
        errno = saved;
        return -1;
    }
    bool too_many = count == 4 && zmq_msg_more (&frames[3]);
    if (too_many)
        zqi_drain (handle);
    const uint8_t *route = (const uint8_t *)zmq_msg_data (&frames[0]);
    size_t route_size = zmq_msg_size (&frames[0]);
    zqi_r_command_t command;
    if (count < 2 || route_size == 0 || route_size > 255) {
        self->common.ctx->stats->errors++;
        goto done;
    }
    if (zqi_r_command_parse ((const uint8_t *)zmq_msg_data (&frames[1]), zmq_msg_size (&frames[1]),
                             &command)) {
        self->common.ctx->stats->errors++;
        zqi_rs_send_error (self, route, route_size,
                           errno == ZQ_EVERSION ? ZQI_R_CODE_VERSION : ZQI_R_CODE_PROTOCOL,
                           "malformed command");
        goto done;
    }
    if (command.kind == ZQI_R_PUT) {
        if (count < 3 || too_many) {
            self->common.ctx->stats->errors++;
            zqi_rs_send_error (self, route, route_size, ZQI_R_CODE_PROTOCOL,
                               "PUT needs 1 or 2 envelope frames");
            goto done;
        }
        uint32_t peer = s_peer_index (self, route, route_size);
        ZQ_ASSERT (peer != ZQI_R_NONE); //  the round ends before the peers run out
        s_put_frames (self, peer, &frames[2], count == 4 ? &frames[3] : NULL);
    } else if (count != 2) {
        self->common.ctx->stats->errors++;
        zqi_rs_send_error (self, route, route_size, ZQI_R_CODE_PROTOCOL, "unexpected frames");
    } else
        s_command (self, route, route_size, &command, zmq_msg_gets (&frames[1], "User-Id"));
done:
    for (int i = 0; i < count; i++)
        zmq_msg_close (&frames[i]);
    return 0;
}
