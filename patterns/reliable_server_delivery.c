/*  =========================================================================
    reliable_server_delivery - the reliable server's entries and
    deliveries: the DELIVERED, HELD and RETURNED states and their
    timers, acks, sending command frames, reading ready records (TTL,
    delay, dedupe, dead letters) and delivering them to remote consumers
    with credit or to local consumption.

    patterns/reliable_server.h holds what the server's files share.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable_server.h"

//  ---- Entries ------------------------------------------------------------

static void
s_owner_link (zqi_r_server_t *self, uint32_t index, uint32_t owner)
{
    zqi_r_entry_t *entry = &self->table.entries[index];
    zqi_rs_consumer_t *consumer = &self->consumers[owner];
    entry->owner = owner;
    entry->holder = consumer->session;
    entry->prev = ZQI_R_NONE;
    entry->next = consumer->head;
    if (consumer->head != ZQI_R_NONE)
        self->table.entries[consumer->head].prev = index;
    consumer->head = index;
    consumer->in_flight++;
    consumer->delivered_bytes += entry->bytes;
    self->unsettled_bytes += entry->bytes;
}

static void
s_owner_unlink (zqi_r_server_t *self, uint32_t index)
{
    zqi_r_entry_t *entry = &self->table.entries[index];
    zqi_rs_consumer_t *consumer = &self->consumers[entry->owner];
    if (entry->prev != ZQI_R_NONE)
        self->table.entries[entry->prev].next = entry->next;
    else
        consumer->head = entry->next;
    if (entry->next != ZQI_R_NONE)
        self->table.entries[entry->next].prev = entry->prev;
    consumer->in_flight--;
    consumer->delivered_bytes -= entry->bytes;
    self->unsettled_bytes -= entry->bytes;
    entry->owner = entry->prev = entry->next = ZQI_R_NONE;
}

//  True if delivery number a was sent at or after b (numbers wrap).
static bool
s_sent_since (uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) >= 0;
}

//  The DELIVERED entry's visibility ran out: its bytes stay the
//  consumer's, as expired, until it shows it read past them.
void
zqi_rs_owner_expire (zqi_r_server_t *self, uint32_t index)
{
    zqi_r_entry_t *entry = &self->table.entries[index];
    zqi_rs_consumer_t *consumer = &self->consumers[entry->owner];
    if (!entry->bytes)
        return;
    if (!consumer->expired_bytes || s_sent_since (entry->sent, consumer->expired_sent)) {
        consumer->expired_sent = entry->sent;
        memcpy (consumer->expired_id, entry->id, ZQ_MSG_ID_SIZE);
    }
    consumer->expired_bytes += entry->bytes;
    self->unsettled_bytes += entry->bytes;
}

//  The consumer settled id, entry the delivery of it that it held (NULL
//  if none): naming the last expired delivery's id, or settling one sent
//  at or after it, shows it read its pipe that far, so its expired
//  deliveries are out of the pipe.
void
zqi_rs_read_through (zqi_r_server_t *self, zqi_rs_consumer_t *consumer, const zqi_r_entry_t *entry,
                     const uint8_t *id)
{
    if (consumer->expired_bytes && ((entry && s_sent_since (entry->sent, consumer->expired_sent)) ||
                                    memcmp (id, consumer->expired_id, ZQ_MSG_ID_SIZE) == 0)) {
        self->unsettled_bytes -= consumer->expired_bytes;
        consumer->expired_bytes = 0;
    }
}

//  True if the remote consumer may be sent another delivery: what it holds
//  unsettled is under max_unsettled_bytes and the server's total under
//  max_unsettled_bytes_total, or it holds nothing (one message always
//  goes, however big).
static bool
s_has_room (zqi_r_server_t *self, const zqi_rs_consumer_t *consumer)
{
    uint64_t held = consumer->delivered_bytes + consumer->expired_bytes;
    return held == 0 || (held < self->max_unsettled_bytes &&
                         self->unsettled_bytes < self->max_unsettled_bytes_total);
}

//  Takes the entry out of its state (levels, owner, timer).
void
zqi_rs_entry_leave (zqi_r_server_t *self, uint32_t index)
{
    zqi_r_entry_t *entry = &self->table.entries[index];
    zqi_rs_queue_t *queue = self->queues[entry->queue];
    if (entry->state == ZQI_RS_DELIVERED) {
        s_owner_unlink (self, index);
        queue->in_flight--;
    } else if (entry->state == ZQI_RS_HELD) {
        queue->held--;
        self->held_total--;
    }
    zqi_r_table_unschedule (&self->table, index);
    entry->state = 0;
}

//  True if queue may hold one more message until a later time (its
//  not-before, a NACK's delay): below max_delayed_messages, and below the
//  total or among the queue's first ZQI_RS_DELAY_FLOOR, so that other
//  queues filling the total cannot stop one that holds few.
static bool
s_delay_room (const zqi_r_server_t *self, const zqi_rs_queue_t *queue)
{
    return queue->held < self->max_delayed &&
           (self->held_total < self->max_delayed_total || queue->held < ZQI_RS_DELAY_FLOOR);
}

bool
zqi_rs_delay_blocked (const zqi_r_server_t *self, const zqi_rs_queue_t *queue)
{
    return queue->delay_full && !s_delay_room (self, queue);
}

//  Holds the entry's record out of delivery until due (zqi_r_now).
static void
s_hold (zqi_r_server_t *self, uint32_t index, int64_t due)
{
    zqi_rs_entry_leave (self, index);
    zqi_r_entry_t *entry = &self->table.entries[index];
    entry->state = ZQI_RS_HELD;
    self->queues[entry->queue]->held++;
    self->held_total++;
    zqi_r_table_schedule (&self->table, index, due);
}

//  Gives the entry's record back to its spool for delivery.
void
zqi_rs_return (zqi_r_server_t *self, uint32_t index)
{
    zqi_rs_entry_leave (self, index);
    zqi_r_entry_t *entry = &self->table.entries[index];
    entry->state = ZQI_RS_RETURNED;
    zq_spool_return (self->queues[entry->queue]->spool, entry->seq);
}

//  A delivery failed (nack, visibility timeout, consumer gone): the next
//  one carries attempt + 1, after delay_ms if the queue has room to hold
//  it that long (s_delay_room), else at once.
void
zqi_rs_fail_delivery (zqi_r_server_t *self, uint32_t index, int64_t delay_ms)
{
    zqi_r_entry_t *entry = &self->table.entries[index];
    if (entry->attempt < UINT32_MAX)
        entry->attempt++;
    if (delay_ms > 0 && s_delay_room (self, self->queues[entry->queue]))
        s_hold (self, index, zqi_r_now (&self->common) + delay_ms);
    else
        zqi_rs_return (self, index);
}

//  The consumer is gone: its deliveries go back to their queues.
void
zqi_rs_consumer_drop (zqi_r_server_t *self, uint32_t index)
{
    zqi_rs_consumer_t *consumer = &self->consumers[index];
    if (!consumer->in_use)
        return;
    if (index != ZQI_RS_LOCAL)
        zqi_rs_event (self, ZQI_RS_EVENT_CONSUMER, "consumer %u left", consumer->session);
    zqi_rs_store_consumer_gone (self, index);
    while (consumer->head != ZQI_R_NONE)
        zqi_rs_fail_delivery (self, consumer->head, 0);
    while (consumer->queue_count)
        zqi_rs_unsubscribe (self, index, self->queues[consumer->queues[0]]);
    self->unsettled_bytes -= consumer->expired_bytes;
    zqi_batch_discard (&consumer->batch);
    free (consumer->queues);
    if (index != ZQI_RS_LOCAL) {
        char key[512];
        zqi_rs_route_key (consumer->route, consumer->route_size, key);
        zhashx_delete (self->consumer_by_route, key);
    }
    memset (consumer, 0, sizeof *consumer);
    consumer->head = ZQI_R_NONE;
}

//  ---- Sending ------------------------------------------------------------

//  Sends route then the frame in buf (and more frames if more). Returns
//  0, or -1 with errno (EHOSTUNREACH: peer gone; EAGAIN: its pipe full).
int
zqi_rs_send_command (zqi_r_server_t *self, const uint8_t *route, size_t route_size, bool more)
{
    void *handle = self->common.handle;
    if (zmq_send (handle, route, route_size, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1)
        return -1;
    return zmq_send (handle, self->buf.data, self->buf.size,
                     (more ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) == -1
               ? -1
               : 0;
}

void
zqi_rs_send_error (zqi_r_server_t *self, const uint8_t *route, size_t route_size, zqi_r_code_t code,
                   const char *reason)
{
    if ((size_t)code < ZQI_R_CODE_COUNT)
        self->refusals[code]++;
    uint64_t skipped;
    if (zqi_log_limit_due (&self->error_log, zqi_r_now (&self->common), ZQI_RS_LOG_IVL_MS,
                           &skipped))
        zqi_log (ZQ_LOG_WARNING,
                 "reliable: ERROR %d to a client: %s; %" PRIu64 " more since the last line",
                 (int)code, reason, skipped);
    if (zqi_r_put_command (&self->buf, 4, ZQI_R_ERROR) == 0 &&
        zqi_mp_put_uint (&self->buf, code) == 0 &&
        zqi_mp_put_str (&self->buf, reason, strlen (reason)) == 0)
        zqi_rs_send_command (self, route, route_size, false);
}

void
zqi_rs_turn_down (zqi_r_server_t *self, const uint8_t *route, size_t route_size, zqi_r_code_t code,
                  const char *reason)
{
    self->common.ctx->stats->errors++;
    zqi_rs_send_error (self, route, route_size, code, reason);
}

//  Counts a PUT the server turned down and logs it, one line per
//  ZQI_RS_LOG_IVL_MS at most (the lines left out are counted in the next).
static void
s_turned_down (zqi_r_server_t *self, const char *what, size_t size)
{
    self->common.ctx->stats->errors++;
    uint64_t skipped;
    if (zqi_log_limit_due (&self->refusal_log, zqi_r_now (&self->common), ZQI_RS_LOG_IVL_MS,
                           &skipped))
        zqi_log (ZQ_LOG_WARNING, "reliable: %s (%zu bytes); %" PRIu64 " more since the last line",
                 what, size, skipped);
}

//  Refuses one PUT at once (REFUSE code 2: never storable), counted and
//  logged.
void
zqi_rs_refuse_put (zqi_r_server_t *self, const zqi_rs_peer_t *from, const uint8_t *id,
                   const char *reason, size_t size)
{
    s_turned_down (self, reason, size);
    self->refusals[ZQI_R_CODE_INVALID]++;
    if (zqi_r_put_command (&self->buf, 5, ZQI_R_REFUSE) == 0 &&
        zqi_mp_put_bin (&self->buf, id, ZQ_MSG_ID_SIZE) == 0 &&
        zqi_mp_put_uint (&self->buf, ZQI_R_CODE_INVALID) == 0 &&
        zqi_mp_put_str (&self->buf, reason, strlen (reason)) == 0)
        zqi_rs_send_command (self, from->route, from->route_size, false);
}

//  ---- Reading records ----------------------------------------------------

//  Writes the record with its attempt replaced into self->bytes.
int
zqi_rs_rewrite_attempt (zqi_r_server_t *self, const zq_spool_record_t *record,
                        const zqi_envelope_t *envelope, uint32_t attempt)
{
    const uint8_t *data = (const uint8_t *)record->data;
    zqi_buf_reset (&self->bytes);
    size_t tail = envelope->attempt_offset + envelope->attempt_size;
    if (zqi_buf_append (&self->bytes, data, envelope->attempt_offset) ||
        zqi_mp_put_uint (&self->bytes, attempt) ||
        zqi_buf_append (&self->bytes, data + tail, record->size - tail))
        return -1;
    ZQI_COUNT (ZQI_COUNT_SERVER_COPIES);
    return 0;
}

//  Counts a message that could not be dead-lettered now (errnum) and
//  logs it, one line per ZQI_RS_LOG_IVL_MS at most.
static void
s_dead_letter_failed (zqi_r_server_t *self, const zqi_rs_queue_t *queue, int errnum)
{
    self->common.ctx->stats->errors++;
    uint64_t skipped;
    if (zqi_log_limit_due (&self->dead_failure_log, zqi_r_now (&self->common), ZQI_RS_LOG_IVL_MS,
                           &skipped))
        zqi_log (ZQ_LOG_WARNING,
                 "reliable: cannot dead-letter a message of %s: %s; it is held and tried again in "
                 "%d ms (%" PRIu64 " more such failures since the last line)",
                 queue->name, zq_strerror (errnum), ZQI_RS_RETRY_MS, skipped);
}

//  Moves a record to the dead-letter queue. Returns 0, or -1 (the record
//  is held and tried again later; counted and logged).
static int
s_dead_letter (zqi_r_server_t *self, zqi_rs_queue_t *queue, uint32_t index,
               const zq_spool_record_t *record, const zqi_envelope_t *envelope)
{
    zqi_r_entry_t *entry = &self->table.entries[index];
    zqi_rs_queue_t *dead = zqi_rs_dead_queue (self, queue);
    if (!dead || zqi_rs_rewrite_attempt (self, record, envelope, entry->attempt) ||
        zq_spool_append (dead->spool, self->bytes.data, self->bytes.size, NULL) ||
        zq_spool_commit (dead->spool)) {
        s_dead_letter_failed (self, queue, errno);
        s_hold (self, index, zqi_r_now (&self->common) + ZQI_RS_RETRY_MS);
        return -1;
    }
    dead->counters.put++;
    queue->counters.dead_lettered++;
    zqi_rs_event (self, ZQI_RS_EVENT_DEAD, "queue %s: a message moved to %s after %u attempts",
                  queue->name, dead->name, entry->attempt);
    if (zqi_rs_entry_ack (self, index)) {
        //  The copy is stored but the original stays: it is tried again
        //  (the dead-letter queue may then hold it twice, never none).
        s_hold (self, index, zqi_r_now (&self->common) + ZQI_RS_RETRY_MS);
        return -1;
    }
    return 0;
}

//  Returns the index of the entry with id in queue, or ZQI_R_NONE. (Each
//  queue is an id space of its own: other queues may track the same id.)
uint32_t
zqi_rs_entry_in (zqi_r_server_t *self, const uint8_t *id, uint32_t queue)
{
    uint32_t cursor = ZQI_R_NONE;
    uint32_t index;
    while ((index = zqi_r_table_find_from (&self->table, id, &cursor)) != ZQI_R_NONE)
        if (self->table.entries[index].queue == queue)
            break;
    return index;
}

//  Returns the index of the entry with id that consumer holds delivered,
//  else of the first with id, or ZQI_R_NONE.
uint32_t
zqi_rs_entry_for (zqi_r_server_t *self, const uint8_t *id, uint32_t consumer)
{
    uint32_t cursor = ZQI_R_NONE;
    uint32_t first = ZQI_R_NONE;
    uint32_t index;
    while ((index = zqi_r_table_find_from (&self->table, id, &cursor)) != ZQI_R_NONE) {
        const zqi_r_entry_t *entry = &self->table.entries[index];
        if (entry->state & ZQI_RS_ACKING)
            continue; //  gathered for an ack: as good as gone
        if (entry->state == ZQI_RS_DELIVERED && entry->owner == consumer)
            return index;
        if (first == ZQI_R_NONE)
            first = index;
    }
    return first;
}

void
zqi_rs_parsed_forget (zqi_r_server_t *self, uint32_t queue)
{
    for (uint32_t slot = 0; slot < ZQI_RS_PARSED; slot++)
        if (self->parsed[slot].queue == queue)
            self->parsed[slot].seq = 0;
}

//  Fills envelope (all but its headers) and the TTL and not-before
//  times for the record from what its PUT's parse learned, if that is
//  still kept (and fits the record: its size and id). Returns 0, or -1
//  (the record is to be parsed).
static int
s_parsed_recall (zqi_r_server_t *self, const zqi_rs_queue_t *queue, const zq_spool_record_t *record,
                 zqi_envelope_t *envelope, int64_t *ttl_ms, int64_t *not_before_ms)
{
    const zqi_rs_parsed_t *slot = &self->parsed[zqi_rs_parsed_slot (queue->index, record->seq)];
    const uint8_t *data = (const uint8_t *)record->data;
    if (slot->seq != record->seq || slot->queue != queue->index || slot->size != record->size ||
        memcmp (data + slot->id_offset, slot->id, ZQ_MSG_ID_SIZE) != 0)
        return -1;
    envelope->id = data + slot->id_offset;
    envelope->subject = (const char *)data + slot->subject_offset;
    envelope->subject_size = slot->subject_size;
    envelope->created_ms = slot->created_ms;
    envelope->attempt = 0;
    envelope->attempt_offset = slot->attempt_offset;
    envelope->attempt_size = slot->attempt_size;
    envelope->header_count = 0;
    envelope->header_size = slot->body_offset;
    *ttl_ms = slot->ttl_ms;
    *not_before_ms = slot->not_before_ms;
    envelope->body = data + slot->body_offset;
    envelope->body_size = slot->body_size;
    return 0;
}

//  True if queue may hold one more message until its not-before time;
//  else notes and logs (one line per ZQI_RS_LIMIT_LOG_MS at most) that it
//  waits.
static bool
s_room_to_delay (zqi_r_server_t *self, zqi_rs_queue_t *queue)
{
    queue->delay_full = !s_delay_room (self, queue);
    if (!queue->delay_full)
        return true;
    uint64_t skipped;
    if (zqi_log_limit_due (&self->delayed_log, zqi_r_now (&self->common), ZQI_RS_LIMIT_LOG_MS,
                           &skipped))
        zqi_log (ZQ_LOG_WARNING,
                 "reliable: queue %s holds %" PRIu64 " messages until their not-before time (all "
                 "queues %" PRIu64 "; max_delayed_messages %" PRIu64 ", total %" PRIu64
                 "): it delivers nothing more until the earliest falls due; %" PRIu64
                 " more since the last line",
                 queue->name, queue->held, self->held_total, self->max_delayed,
                 self->max_delayed_total, skipped);
    return false;
}

//  What to do with a record read from a queue's spool.
typedef enum { S_SKIP = 0, S_SEND = 1, S_STOP = 2 } s_verdict_t;

//  Reads the queue's next ready record and decides its fate: expired,
//  delayed, dead-lettered or a duplicate (S_SKIP, done), or to deliver
//  (S_SEND: *index_p its entry, *record and *envelope filled). S_STOP:
//  nothing ready (or the spool cannot be read).
static s_verdict_t
s_take (zqi_r_server_t *self, zqi_rs_queue_t *queue, zq_spool_record_t *record,
        zqi_envelope_t *envelope, uint32_t *index_p)
{
    if (zq_spool_next (queue->spool, record)) {
        if (errno != EAGAIN && !queue->complained) {
            zqi_log (ZQ_LOG_ERROR, "reliable: queue %s cannot be read: %s", queue->name,
                     zq_strerror (errno));
            queue->complained = true;
        }
        return S_STOP;
    }
    int64_t ttl_ms, not_before_ms;
    bool recalled = s_parsed_recall (self, queue, record, envelope, &ttl_ms, &not_before_ms) == 0;
    if (!recalled)
        ZQI_COUNT (ZQI_COUNT_SERVER_PARSES);
    if (!recalled && zqi_envelope_parse ((const uint8_t *)record->data, record->size, NULL, 0,
                                         false, envelope)) {
        zqi_log (ZQ_LOG_ERROR, "reliable: queue %s: record %" PRIu64 " is not a message; dropped",
                 queue->name, record->seq);
        if (zqi_rs_record_ack (self, queue, record->seq))
            return S_STOP;
        queue->counters.dropped++;
        return S_SKIP;
    }
    uint32_t index = zqi_rs_entry_in (self, envelope->id, queue->index);
    if (index != ZQI_R_NONE) {
        zqi_r_entry_t *entry = &self->table.entries[index];
        if (entry->seq != record->seq) {
            //  Another record of the same message is tracked in this queue:
            //  this copy is a duplicate (a resend stored outside the dedupe
            //  window). The same id in another queue is another message.
            if (zqi_rs_record_ack (self, queue, record->seq))
                return S_STOP;
            queue->counters.dropped++;
            return S_SKIP;
        }
        zqi_rs_entry_leave (self, index);
        if (envelope->attempt > entry->attempt)
            entry->attempt = (uint32_t)envelope->attempt;
    } else {
        index = zqi_r_table_add (&self->table, envelope->id);
        if (index == ZQI_R_NONE) {
            zq_spool_return (queue->spool, record->seq);
            return S_STOP;
        }
        zqi_r_entry_t *entry = &self->table.entries[index];
        entry->queue = queue->index;
        entry->seq = record->seq;
        entry->attempt = (uint32_t)envelope->attempt;
    }
    zqi_r_entry_t *entry = &self->table.entries[index];
    if (!recalled)
        zqi_r_envelope_times (envelope, &ttl_ms, &not_before_ms);
    int64_t wall =
        (ttl_ms >= 0 || not_before_ms >= 0) ? zqi_clock_wall (self->common.ctx->clock) : 0;
    if (ttl_ms >= 0 && zqi_r_add_ms ((int64_t)envelope->created_ms, ttl_ms) <= wall) {
        if (zqi_rs_entry_ack (self, index))
            s_hold (self, index, zqi_r_now (&self->common) + ZQI_RS_RETRY_MS);
        else
            queue->counters.expired++;
        return S_SKIP;
    }
    if (not_before_ms > wall) {
        //  No room: the record goes back first in line, and waits.
        if (!s_room_to_delay (self, queue)) {
            zqi_rs_return (self, index);
            return S_STOP;
        }
        s_hold (self, index, zqi_r_add_ms (zqi_r_now (&self->common), not_before_ms - wall));
        return S_SKIP;
    }
    if (self->max_attempts && !queue->is_dead && entry->attempt >= self->max_attempts) {
        s_dead_letter (self, queue, index, record, envelope);
        return S_SKIP;
    }
    queue->delay_full = false;
    *index_p = index;
    return S_SEND;
}

//  Marks the entry delivered to consumer owner.
static void
s_delivered (zqi_r_server_t *self, zqi_rs_queue_t *queue, uint32_t index, uint32_t owner,
             size_t bytes)
{
    zqi_r_entry_t *entry = &self->table.entries[index];
    entry->state = ZQI_RS_DELIVERED;
    entry->bytes = (uint32_t)bytes;
    entry->sent = ++self->consumers[owner].sent;
    s_owner_link (self, index, owner);
    queue->in_flight++;
    queue->counters.delivered++;
    if (entry->attempt > 0)
        queue->counters.redelivered++;
    zqi_r_table_schedule (&self->table, index, self->now + self->visibility_ms);
}

//  The attempt to deliver the record with, as msgpack: as stored if
//  unchanged, else encoded (a uint of at most 5 octets, via the command
//  buffer, which its caller writes again). Returns 0 (*size_p octets in
//  encoded), or -1 with errno ENOMEM.
static int
s_attempt_encode (zqi_r_server_t *self, const zq_spool_record_t *record,
                  const zqi_envelope_t *envelope, uint32_t attempt, uint8_t encoded[9],
                  size_t *size_p)
{
    if (attempt == envelope->attempt) {
        memcpy (encoded, (const uint8_t *)record->data + envelope->attempt_offset,
                envelope->attempt_size);
        *size_p = envelope->attempt_size;
        return 0;
    }
    zqi_buf_reset (&self->buf);
    if (zqi_mp_put_uint (&self->buf, attempt))
        return -1;
    memcpy (encoded, self->buf.data, self->buf.size);
    *size_p = self->buf.size;
    return 0;
}

//  Writes the record's envelope into into with its attempt as encoded:
//  the one copy of its bytes on the way to the consumer.
static void
s_record_write (uint8_t *into, const zq_spool_record_t *record, const zqi_envelope_t *envelope,
                const uint8_t *encoded, size_t encoded_size)
{
    const uint8_t *data = (const uint8_t *)record->data;
    size_t head = envelope->attempt_offset;
    size_t tail = envelope->attempt_offset + envelope->attempt_size;
    memcpy (into, data, head);
    memcpy (into + head, encoded, encoded_size);
    memcpy (into + head + encoded_size, data + tail, record->size - tail);
    ZQI_COUNT (ZQI_COUNT_SERVER_COPIES);
}

//  Sends a DELIVER to a remote consumer. Returns 0 or -1 with errno.
//  The envelope frame is built once, straight from the record: the
//  attempt written as it goes, the body copied once.
static int
s_send_deliver (zqi_r_server_t *self, zqi_rs_consumer_t *consumer, const zq_spool_record_t *record,
                const zqi_envelope_t *envelope, uint32_t attempt)
{
    uint8_t encoded[9];
    size_t encoded_size;
    if (s_attempt_encode (self, record, envelope, attempt, encoded, &encoded_size))
        return -1;
    zmq_msg_t frame;
    if (zmq_msg_init_size (&frame, record->size - envelope->attempt_size + encoded_size))
        return -1;
    s_record_write ((uint8_t *)zmq_msg_data (&frame), record, envelope, encoded, encoded_size);
    if (zqi_r_put_command (&self->buf, 3, ZQI_R_DELIVER) ||
        zqi_mp_put_uint (&self->buf, (uint64_t)self->visibility_ms) ||
        zqi_rs_send_command (self, consumer->route, consumer->route_size, true)) {
        int saved = errno;
        zmq_msg_close (&frame);
        errno = saved;
        return -1;
    }
    //  Past the first frame the rest cannot meet the high-water mark.
    if (zmq_msg_send (&frame, self->common.handle, ZMQ_DONTWAIT) == -1) {
        int saved = errno;
        zmq_msg_close (&frame);
        errno = saved;
        return -1;
    }
    return 0;
}

//  ---- DELIVER batches (doc/PROTOCOL.md 19.7) -----------------------------

//  Takes back the deliveries gathered in the consumer's batch that did
//  not go: they are its most recent entries; each is ready again with
//  its attempt unchanged, as if never sent.
static void
s_batch_undo (zqi_r_server_t *self, zqi_rs_consumer_t *consumer)
{
    for (uint32_t left = consumer->batch.count; left && consumer->head != ZQI_R_NONE; left--) {
        uint32_t index = consumer->head;
        zqi_r_entry_t *entry = &self->table.entries[index];
        zqi_rs_queue_t *queue = self->queues[entry->queue];
        queue->counters.delivered--;
        if (entry->attempt > 0)
            queue->counters.redelivered--;
        zqi_rs_return (self, index);
    }
    zqi_batch_discard (&consumer->batch);
}

//  Sends what the consumer's batch holds: one element as a plain DELIVER,
//  more as one DELIVER batch. Returns 0, or -1 with errno (the batch's
//  deliveries are taken back; EHOSTUNREACH: the consumer is dropped too).
static int
s_batch_flush (zqi_r_server_t *self, uint32_t owner)
{
    zqi_rs_consumer_t *consumer = &self->consumers[owner];
    if (!consumer->batch.count)
        return 0;
    if (zqi_r_put_command (&self->buf, 3, ZQI_R_DELIVER) == 0 &&
        zqi_mp_put_uint (&self->buf, (uint64_t)self->visibility_ms) == 0 &&
        zqi_rs_send_command (self, consumer->route, consumer->route_size, true) == 0 &&
        zqi_batch_send (&consumer->batch, self->common.handle, ZMQ_DONTWAIT) == 0)
        return 0;
    int failure = errno;
    s_batch_undo (self, consumer);
    if (failure == EAGAIN)
        consumer->stalled = true;
    else if (failure == EHOSTUNREACH)
        zqi_rs_consumer_drop (self, owner);
    errno = failure;
    return -1;
}

//  Adds the record (its attempt set) to the consumer's batch, sending the
//  batch first if the record does not fit beside what it holds. Returns
//  0 (added), 1 (too big for any batch: to be sent alone), or -1 with
//  errno (nothing added; the batch went, or was taken back as
//  s_batch_flush says).
static int
s_batch_add (zqi_r_server_t *self, uint32_t owner, const zq_spool_record_t *record,
             const zqi_envelope_t *envelope, uint32_t attempt)
{
    zqi_rs_consumer_t *consumer = &self->consumers[owner];
    uint8_t encoded[9];
    size_t encoded_size;
    if (s_attempt_encode (self, record, envelope, attempt, encoded, &encoded_size))
        return -1;
    size_t size = record->size - envelope->attempt_size + encoded_size;
    uint8_t *into = zqi_batch_reserve (&consumer->batch, size, consumer->batch_max_bytes);
    if (!into && errno == EAGAIN && consumer->batch.count) {
        if (s_batch_flush (self, owner))
            return -1;
        into = zqi_batch_reserve (&consumer->batch, size, consumer->batch_max_bytes);
    }
    if (!into)
        return errno == EAGAIN ? 1 : -1;
    s_record_write (into, record, envelope, encoded, encoded_size);
    return 0;
}

//  Sends the batches gathered for the queue's consumers this round.
static void
s_batch_flush_queue (zqi_r_server_t *self, zqi_rs_queue_t *queue, uint64_t *sent_p)
{
    for (uint32_t position = 0; position < queue->consumer_count; position++) {
        uint32_t owner = queue->consumers[position];
        uint32_t count = self->consumers[owner].batch.count;
        if (count && s_batch_flush (self, owner) == 0)
            *sent_p += count;
        else if (count && self->consumers[owner].in_use == false)
            position--; //  dropped: it left the queue's list
    }
}

//  Delivers what the queue has ready to its remote consumers with credit;
//  adds the deliveries sent to *sent_p. A consumer that takes batches has
//  its deliveries of the round gathered, sent by s_deliver_queue.
static void
s_deliver_ready (zqi_r_server_t *self, zqi_rs_queue_t *queue, uint64_t *sent_p)
{
    uint32_t skips = 0;
    while (queue->consumer_count) {
        //  The next remote consumer with credit, round-robin.
        uint32_t chosen = ZQI_R_NONE;
        for (uint32_t tried = 0; tried < queue->consumer_count; tried++) {
            uint32_t position = (queue->rr + tried) % queue->consumer_count;
            uint32_t index = queue->consumers[position];
            zqi_rs_consumer_t *consumer = &self->consumers[index];
            if (index != ZQI_RS_LOCAL && !consumer->stalled &&
                consumer->in_flight < consumer->prefetch && s_has_room (self, consumer)) {
                chosen = index;
                queue->rr = (position + 1) % queue->consumer_count;
                break;
            }
        }
        if (chosen == ZQI_R_NONE)
            return;
        zq_spool_record_t record;
        zqi_envelope_t envelope;
        uint32_t index;
        s_verdict_t verdict = s_take (self, queue, &record, &envelope, &index);
        if (verdict == S_STOP)
            return;
        if (verdict == S_SKIP) {
            if (++skips < ZQI_RS_SKIPS)
                continue;
            self->skipped_more = true;
            return;
        }
        zqi_rs_consumer_t *consumer = &self->consumers[chosen];
        uint32_t attempt = self->table.entries[index].attempt;
        int added =
            consumer->batch_max_bytes ? s_batch_add (self, chosen, &record, &envelope, attempt) : 1;
        if (added == 0) {
            s_delivered (self, queue, index, chosen, record.size);
            continue;
        }
        if (added == 1 && s_send_deliver (self, consumer, &record, &envelope, attempt) == 0) {
            s_delivered (self, queue, index, chosen, record.size);
            (*sent_p)++;
            continue;
        }
        int failure = errno;
        self->table.entries[index].state = ZQI_RS_RETURNED;
        zq_spool_return (queue->spool, record.seq);
        if (failure == EAGAIN)
            consumer->stalled = true;
        else if (failure == EHOSTUNREACH)
            zqi_rs_consumer_drop (self, chosen);
        else
            return;
    }
}

//  Delivers what the queue has ready, then sends the batches gathered.
static void
s_deliver_queue (zqi_r_server_t *self, zqi_rs_queue_t *queue, uint64_t *sent_p)
{
    s_deliver_ready (self, queue, sent_p);
    s_batch_flush_queue (self, queue, sent_p);
}

//  Delivers to every remote consumer with credit. A consumer whose pipe
//  is full (EAGAIN) is stalled for the round; libzmq tells no one when
//  that pipe has room again (a ROUTER has no POLLOUT per peer), so while
//  any is stalled a retry is due after resume_ms: ZQI_RS_RESUME_MIN_MS after a
//  round that sent something, doubled up to ZQI_RS_RESUME_MAX_MS after one
//  that sent nothing (a consumer that has stopped reading costs a round
//  per ZQI_RS_RESUME_MAX_MS, no more).
void
zqi_rs_deliver_all (zqi_r_server_t *self)
{
    for (uint32_t index = 1; index < self->consumer_capacity; index++)
        self->consumers[index].stalled = false;
    self->skipped_more = false;
    uint64_t sent = 0;
    for (uint32_t index = 0; index < self->queue_count; index++)
        if (self->queues[index]->consumer_count)
            s_deliver_queue (self, self->queues[index], &sent);
    bool stalled = false;
    for (uint32_t index = 1; index < self->consumer_capacity && !stalled; index++)
        stalled = self->consumers[index].in_use && self->consumers[index].stalled;
    if (!stalled) {
        self->resume_due = 0;
        self->resume_ms = ZQI_RS_RESUME_MIN_MS;
        return;
    }
    if (sent || self->resume_ms < ZQI_RS_RESUME_MIN_MS)
        self->resume_ms = ZQI_RS_RESUME_MIN_MS;
    else if (self->resume_due && self->now >= self->resume_due)
        self->resume_ms =
            self->resume_ms * 2 > ZQI_RS_RESUME_MAX_MS ? ZQI_RS_RESUME_MAX_MS : self->resume_ms * 2;
    self->resume_due = zqi_r_now (&self->common) + self->resume_ms;
}

//  ---- Local consumption --------------------------------------------------

zq_msg_t *
zqi_rs_local_recv (zqi_r_server_t *self)
{
    self->now = zqi_r_now (&self->common);
    zqi_rs_consumer_t *local = &self->consumers[ZQI_RS_LOCAL];
    if (!local->in_use || !local->queue_count || local->in_flight >= local->prefetch) {
        errno = EAGAIN;
        return NULL;
    }
    uint32_t skips = 0;
    for (uint32_t tried = 0; tried < local->queue_count;) {
        uint32_t position = local->rr % local->queue_count;
        zqi_rs_queue_t *queue = self->queues[local->queues[position]];
        zq_spool_record_t record;
        zqi_envelope_t envelope;
        uint32_t index;
        s_verdict_t verdict = s_take (self, queue, &record, &envelope, &index);
        if (verdict == S_SKIP) {
            if (++skips < ZQI_RS_SKIPS)
                continue;
            //  The caller's wait ends at once (zqi_rs_next_due) and it
            //  comes back for the rest.
            self->skipped_more = true;
            break;
        }
        if (verdict == S_STOP) {
            local->rr = position + 1;
            tried++;
            continue;
        }
        const void *frames[1] = {record.data};
        size_t sizes[1] = {record.size};
        zq_msg_t *msg = zq_msg_decode_buffers (frames, sizes, 1, 0);
        ZQI_COUNT (ZQI_COUNT_SERVER_COPIES);
        if (!msg) {
            self->table.entries[index].state = ZQI_RS_RETURNED;
            zq_spool_return (queue->spool, record.seq);
            errno = ENOMEM;
            return NULL;
        }
        zq_msg_set_attempt (msg, self->table.entries[index].attempt);
        s_delivered (self, queue, index, ZQI_RS_LOCAL, 0);
        local->rr = position + 1;
        return msg;
    }
    errno = EAGAIN;
    return NULL;
}
