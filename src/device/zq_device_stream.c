/*  =========================================================================
    zq_device_stream - the "stream" kind: messages come in on a PULL
    socket, wait in a memory ring, and go out on a PUSH socket to whichever
    consumer has room. When the ring is full (consumers lag or are away),
    messages spill to a spool; while the spool holds any, new messages go
    there too, and the ring refills from it, so order is kept. The ring is
    full at memory_messages messages or memory_bytes bytes, whichever comes
    first; the spool is bounded by its quota, past which new messages are
    dropped (counted, and logged at most once per S_LOG_INTERVAL_MS).

    Delivery is at most once, like the pipeline pattern it joins: a message
    leaves the device when libzmq takes it. Spilled messages are acked when
    sent, so those not yet sent survive a restart (and a crash may send a
    few twice); messages in the ring are lost if the device stops.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_batch.h"
#include "zq_device_internal.h"

//  Most messages taken in or sent out per wake-up, so one busy stream
//  cannot starve the device's other sockets.
#define S_BURST 1024
//  The ring starts this small and doubles up to memory_messages.
#define S_RING_INITIAL 256
//  Longest frame a consumer may send to the out socket (doc/DEVICE.md):
//  room for ZMTP's commands, the CURVE handshake's with their metadata.
#define S_OUT_MAX_FRAME 4096
//  The high-water mark of the direction a socket never uses (libzmq's
//  default).
#define S_HWM_UNUSED 1000
//  Drops past the spool's quota are logged at most this often.
#define S_LOG_INTERVAL_MS 10000

//  Errors that mean a message was malformed (counted, skipped).
static bool
s_bad_input (int errnum)
{
    return errnum == ZQ_EPROTO || errnum == ZQ_ETOOBIG || errnum == ZQ_EVERSION ||
           errnum == ZQ_EDEPTH;
}

typedef struct {
    zq_msg_t *msg;
    uint64_t seq; //  its spool record, 0 if it never spilled
} s_entry_t;

typedef struct {
    s_entry_t *ring;
    size_t capacity; //  allocated entries
    size_t limit;    //  memory_messages
    size_t head;
    size_t count;
    uint64_t bytes;       //  wire size of the messages in the ring
    uint64_t bytes_limit; //  memory_bytes
    zq_spool_t *spool;
    //  Spool records not yet taken back into the ring.
    uint64_t spool_waiting;
    size_t max_message_bytes;
    uint64_t quota_bytes; //  the spool's quota, 0 if none
    uint64_t dropped_unlogged;
    int64_t logged_ms;
    uint64_t spilled_unlogged;
    int64_t spill_logged_ms;
    //  The batch frame being split (its elements are input not yet taken).
    zqi_batch_reader_t batch;
    char *spool_dir;            //  NULL: the spool is in memory
    zqi_disk_watch_t disk;      //  device/min_free_bytes on its filesystem
    uint64_t no_space_unlogged; //  of the drops, those for want of free space
    const zqi_clock_t *clock;   //  the device's (NULL: the system's)
} s_stream_t;

static s_entry_t *
s_at (s_stream_t *self, size_t index)
{
    return &self->ring[(self->head + index) % self->capacity];
}

static int
s_grow (s_stream_t *self)
{
    size_t capacity = self->capacity ? self->capacity * 2 : S_RING_INITIAL;
    if (capacity > self->limit)
        capacity = self->limit;
    s_entry_t *ring = (s_entry_t *)malloc (capacity * sizeof *ring);
    if (!ring)
        return zqi_fail (ENOMEM);
    for (size_t index = 0; index < self->count; index++)
        ring[index] = *s_at (self, index);
    free (self->ring);
    self->ring = ring;
    self->capacity = capacity;
    self->head = 0;
    return 0;
}

//  Full at memory_messages or at memory_bytes: the ring holds at most
//  memory_bytes plus the one message that crossed it.
static bool
s_ring_full (s_stream_t *self)
{
    return self->count >= self->limit || self->bytes >= self->bytes_limit;
}

//  Takes the ring's first message off; returns it.
static zq_msg_t *
s_pop (s_stream_t *self)
{
    s_entry_t *entry = s_at (self, 0);
    zq_msg_t *msg = entry->msg;
    entry->msg = NULL;
    size_t size = msg ? zqi_msg_wire_size (msg) : 0;
    self->bytes = self->bytes > size ? self->bytes - size : 0;
    self->head = (self->head + 1) % self->capacity;
    self->count--;
    return msg;
}

//  Logs the spills and drops not yet logged, each at most once per
//  S_LOG_INTERVAL_MS.
static void
s_log_drops (zqi_dqueue_t *dq)
{
    s_stream_t *self = (s_stream_t *)dq->kind_state;
    int64_t now = zqi_clock_mono (self->clock);
    if (self->spilled_unlogged &&
        (!self->spill_logged_ms || now - self->spill_logged_ms >= S_LOG_INTERVAL_MS)) {
        zqi_log (ZQ_LOG_NOTICE,
                 "zq_device: stream %s: %llu messages spilled, its memory is full (%zu messages, "
                 "%llu bytes)",
                 dq->name, (unsigned long long)self->spilled_unlogged, self->count,
                 (unsigned long long)self->bytes);
        self->spilled_unlogged = 0;
        self->spill_logged_ms = now;
    }
    if (self->dropped_unlogged &&
        (!self->logged_ms || now - self->logged_ms >= S_LOG_INTERVAL_MS)) {
        if (self->no_space_unlogged)
            zqi_log (ZQ_LOG_WARNING,
                     "zq_device: stream %s: %llu messages dropped, %llu of them because its "
                     "spool's filesystem has less than min_free_bytes (%llu) free",
                     dq->name, (unsigned long long)self->dropped_unlogged,
                     (unsigned long long)self->no_space_unlogged,
                     (unsigned long long)self->disk.min_free_bytes);
        else if (self->quota_bytes)
            zqi_log (ZQ_LOG_WARNING,
                     "zq_device: stream %s: %llu messages dropped, its spool is full "
                     "(quota_bytes %llu)",
                     dq->name, (unsigned long long)self->dropped_unlogged,
                     (unsigned long long)self->quota_bytes);
        else
            zqi_log (ZQ_LOG_WARNING,
                     "zq_device: stream %s: %llu messages dropped, its spool is full", dq->name,
                     (unsigned long long)self->dropped_unlogged);
        self->dropped_unlogged = 0;
        self->no_space_unlogged = 0;
        self->logged_ms = now;
    }
}

//  Adds to the ring's tail; the ring must not be full.
static int
s_push (s_stream_t *self, zq_msg_t *msg, uint64_t seq)
{
    if (self->count == self->capacity && s_grow (self))
        return -1;
    s_entry_t *entry = s_at (self, self->count);
    entry->msg = msg;
    entry->seq = seq;
    self->count++;
    self->bytes += zqi_msg_wire_size (msg);
    return 0;
}

//  Brings spilled messages back into the ring while it has room.
static void
s_refill (zqi_dqueue_t *dq)
{
    s_stream_t *self = (s_stream_t *)dq->kind_state;
    bool acked = false;
    while (self->spool_waiting && !s_ring_full (self)) {
        uint64_t seq = 0;
        zq_msg_t *msg = zq_spool_next_msg (self->spool, self->max_message_bytes, &seq);
        if (!msg) {
            if (seq && s_bad_input (errno)) {
                //  A record the device wrote that no longer decodes.
                dq->counters.errors++;
                zq_spool_ack (self->spool, seq);
                self->spool_waiting--;
                acked = true;
                continue;
            }
            if (errno != EAGAIN)
                zqi_log (ZQ_LOG_ERROR, "zq_device: stream %s: reading its spool: %s", dq->name,
                         zq_strerror (errno));
            break;
        }
        if (s_push (self, msg, seq)) {
            zq_spool_return (self->spool, seq);
            zq_msg_destroy (&msg);
            break;
        }
        self->spool_waiting--;
    }
    if (acked)
        zq_spool_commit (self->spool);
}

//  The high-water mark of the in socket (rcvhwm) or of each consumer's
//  pipe on out (sndhwm): libzmq's queues hold messages outside the ring, so
//  each holds no more of the largest messages than fit in a quarter of
//  memory_bytes (at least one).
static int
s_hwm (s_stream_t *self, int64_t hwm)
{
    uint64_t largest = self->max_message_bytes ? self->max_message_bytes : 1;
    uint64_t fit = self->bytes_limit / 4 / largest;
    if (fit < 1)
        fit = 1;
    return (uint64_t)hwm > fit ? (int)fit : (int)hwm;
}

int
zqi_stream_open (zqi_dqueue_t *dq, zqi_device_env_t *env, const char *spool_dir, char *error,
                 size_t error_size)
{
    s_stream_t *self = (s_stream_t *)calloc (1, sizeof *self);
    if (!self)
        return zqi_fail (ENOMEM);
    dq->kind_state = self;
    self->clock = env->clock;
    self->limit = (size_t)dq->config->memory_messages;
    self->bytes_limit = (uint64_t)dq->config->memory_bytes;
    int64_t max_bytes = ZQ_MSG_MAX_SIZE_DEFAULT;
    zq_options_get_int (env->config->queue_options, "max_message_bytes", &max_bytes);
    self->max_message_bytes = (size_t)max_bytes;

    zq_spool_config_t spool_config;
    zq_spool_config_init (&spool_config);
    //  A stream promises at most once: its spill needs no fsync of its own.
    spool_config.fsync = ZQ_SPOOL_FSYNC_NONE;
    //  Unset, the quota is the default on disk; a spool in memory keeps
    //  zq_spool's own bound.
    if (dq->config->quota_bytes >= 0)
        spool_config.quota_bytes = (uint64_t)dq->config->quota_bytes;
    else if (spool_dir)
        spool_config.quota_bytes = ZQI_STREAM_QUOTA_BYTES_DEFAULT;
    if (spool_config.quota_bytes &&
        spool_config.quota_bytes < 2 * spool_config.segment_bytes + spool_config.batch_bytes) {
        //  Small quotas take small segments.
        spool_config.segment_bytes = spool_config.quota_bytes / 4;
        if (spool_config.segment_bytes < 4096)
            spool_config.segment_bytes = 4096;
        spool_config.batch_bytes = (uint32_t)spool_config.segment_bytes;
    }
    self->spool = zq_spool_new (spool_dir, &spool_config);
    if (!self->spool) {
        int saved = errno;
        snprintf (error, error_size, "stream %s: cannot open its spool%s%s: %s", dq->name,
                  spool_dir ? " in " : "", spool_dir ? spool_dir : "", zq_strerror (saved));
        zqi_stream_close (dq);
        return zqi_fail (saved);
    }
    self->quota_bytes = spool_config.quota_bytes;
    if (spool_dir && !(self->spool_dir = strdup (spool_dir))) {
        zqi_stream_close (dq);
        snprintf (error, error_size, "out of memory");
        return zqi_fail (ENOMEM);
    }
    zqi_disk_watch_init (&self->disk, self->spool_dir, (uint64_t)env->config->min_free_bytes);
    zq_spool_stats_t stats;
    zq_spool_stats (self->spool, &stats);
    self->spool_waiting = stats.depth;

    //  Consumers send nothing on a PUSH socket but ZMTP's own commands: a
    //  connection that sends a longer frame than S_OUT_MAX_FRAME is closed
    //  before it is read.
    dq->in = zqi_device_socket_new (env, ZMQ_PULL, S_HWM_UNUSED, s_hwm (self, dq->config->rcvhwm),
                                    (int64_t)self->max_message_bytes, true, error, error_size);
    dq->out = dq->in
                  ? zqi_device_socket_new (env, ZMQ_PUSH, s_hwm (self, dq->config->sndhwm),
                                           S_HWM_UNUSED, S_OUT_MAX_FRAME, true, error, error_size)
                  : NULL;
    if (!dq->in || !dq->out) {
        int saved = errno;
        zqi_stream_close (dq);
        char reason[256];
        snprintf (reason, sizeof reason, "%s", error);
        snprintf (error, error_size, "stream %s: %s", dq->name, reason);
        return zqi_fail (saved);
    }
    //  Only consumers that are connected take messages.
    zsock_set_immediate (dq->out, 1);
    zqi_device_guard (env, dq->in, ZQI_ACCESS_PUT, dq->name);
    zqi_device_guard (env, dq->out, ZQI_ACCESS_CONSUME, dq->name);
    if (zqi_device_bind (dq->in, dq->config->in, &dq->in_endpoint, error, error_size) ||
        zqi_device_bind (dq->out, dq->config->out, &dq->out_endpoint, error, error_size)) {
        int saved = errno;
        zqi_stream_close (dq);
        return zqi_fail (saved);
    }
    s_refill (dq);
    return 0;
}

void
zqi_stream_close (zqi_dqueue_t *dq)
{
    s_stream_t *self = (s_stream_t *)dq->kind_state;
    zsock_destroy (&dq->in);
    zsock_destroy (&dq->out);
    if (self) {
        for (size_t index = 0; index < self->count; index++) {
            s_entry_t *entry = s_at (self, index);
            //  Spilled messages not sent stay in the spool for next time.
            if (entry->seq)
                zq_spool_return (self->spool, entry->seq);
            zq_msg_destroy (&entry->msg);
        }
        free (self->ring);
        zqi_batch_close (&self->batch);
        zq_spool_destroy (&self->spool);
        free (self->spool_dir);
        free (self);
        dq->kind_state = NULL;
    }
}

void
zqi_stream_input (zqi_dqueue_t *dq)
{
    s_stream_t *self = (s_stream_t *)dq->kind_state;
    bool appended = false;
    //  A batch frame begun is taken whole: its elements wake no poller.
    for (int burst = 0; burst < S_BURST || zqi_batch_left (&self->batch); burst++) {
        //  Producers may send batch frames (doc/PROTOCOL.md section 19).
        zq_msg_t *msg = zqi_batch_recv_msg (&self->batch, zsock_resolve (dq->in), ZMQ_DONTWAIT,
                                            self->max_message_bytes);
        if (!msg) {
            if (s_bad_input (errno)) {
                dq->counters.errors++;
                continue;
            }
            break;
        }
        dq->counters.in++;
        if (self->spool_waiting == 0 && !s_ring_full (self) && s_push (self, msg, 0) == 0)
            continue;
        if (zqi_disk_low (&self->disk, zqi_clock_mono (self->clock), zqi_msg_wire_size (msg))) {
            //  Under the watermark nothing spills: dropped, as past the quota.
            dq->counters.dropped++;
            self->dropped_unlogged++;
            self->no_space_unlogged++;
        } else if (zq_spool_append_msg (self->spool, msg, NULL) == 0) {
            self->spool_waiting++;
            dq->counters.spilled++;
            self->spilled_unlogged++;
            appended = true;
        } else {
            dq->counters.dropped++;
            self->dropped_unlogged++;
        }
        zq_msg_destroy (&msg);
    }
    if (appended && zq_spool_commit (self->spool)) {
        //  Refused records are never handed out; recount what waits.
        zq_spool_stats_t stats;
        zq_spool_stats (self->spool, &stats);
        uint64_t waiting = stats.depth - stats.in_flight;
        if (waiting < self->spool_waiting) {
            dq->counters.dropped += self->spool_waiting - waiting;
            self->dropped_unlogged += self->spool_waiting - waiting;
            self->spool_waiting = waiting;
        }
    }
    s_log_drops (dq);
}

void
zqi_stream_output (zqi_dqueue_t *dq)
{
    s_stream_t *self = (s_stream_t *)dq->kind_state;
    bool acked = false;
    for (int burst = 0; burst < S_BURST && self->count; burst++) {
        s_entry_t *entry = s_at (self, 0);
        //  Its size leaves the ring's count before the send takes it.
        size_t size = zqi_msg_wire_size (entry->msg);
        if (zq_msg_send (&entry->msg, zsock_resolve (dq->out), ZMQ_DONTWAIT))
            break;
        if (entry->seq) {
            zq_spool_ack (self->spool, entry->seq);
            acked = true;
        }
        dq->counters.out++;
        self->bytes = self->bytes > size ? self->bytes - size : 0;
        self->head = (self->head + 1) % self->capacity;
        self->count--;
        if (self->count == 0)
            s_refill (dq);
    }
    s_refill (dq);
    if (acked)
        zq_spool_commit (self->spool);
}

bool
zqi_stream_pending (zqi_dqueue_t *dq)
{
    s_stream_t *self = (s_stream_t *)dq->kind_state;
    return self->count > 0;
}

void
zqi_stream_row (zqi_dqueue_t *dq, zqi_row_t *row)
{
    s_stream_t *self = (s_stream_t *)dq->kind_state;
    *row = dq->counters;
    if (self->spool) {
        zq_spool_stats_t stats;
        zq_spool_stats (self->spool, &stats);
        row->spool_bytes = stats.disk_bytes;
    }
    row->bytes = self->bytes + row->spool_bytes;
    row->depth = self->count + self->spool_waiting;
    row->ready = row->depth;
    if (self->count) {
        int64_t age = zqi_clock_wall (self->clock) - zq_msg_created_ms (s_at (self, 0)->msg);
        row->oldest_age_ms = age > 0 ? (uint64_t)age : 0;
    }
}

void
zqi_stream_peek (zqi_dqueue_t *dq, size_t count, zmsg_t *reply)
{
    s_stream_t *self = (s_stream_t *)dq->kind_state;
    size_t taken = 0, bytes = 0;
    for (size_t index = 0; index < self->count && taken < count; index++, taken++) {
        zframe_t *frame = zqi_device_one_frame (s_at (self, index)->msg);
        if (frame && taken && bytes + zframe_size (frame) > ZQ_QUEUE_PEEK_MAX_BYTES) {
            zframe_destroy (&frame);
            return;
        }
        if (frame) {
            bytes += zframe_size (frame);
            zmsg_append (reply, &frame);
        }
    }
    //  Past the ring, look into the spool: take records and return them,
    //  which puts them back first in line, in order.
    uint64_t seqs[256];
    size_t seq_count = 0;
    while (taken < count && seq_count < 256 && seq_count < self->spool_waiting) {
        zq_spool_record_t record;
        if (zq_spool_next (self->spool, &record))
            break;
        seqs[seq_count++] = record.seq;
        if (taken && bytes + record.size > ZQ_QUEUE_PEEK_MAX_BYTES)
            break;
        bytes += record.size;
        zframe_t *frame = zframe_new (record.data, record.size);
        if (frame)
            zmsg_append (reply, &frame);
        taken++;
    }
    for (size_t index = 0; index < seq_count; index++)
        zq_spool_return (self->spool, seqs[index]);
}

uint64_t
zqi_stream_purge (zqi_dqueue_t *dq)
{
    s_stream_t *self = (s_stream_t *)dq->kind_state;
    uint64_t purged = 0;
    while (self->count) {
        s_entry_t *entry = s_at (self, 0);
        if (entry->seq)
            zq_spool_ack (self->spool, entry->seq);
        zq_msg_t *msg = s_pop (self);
        zq_msg_destroy (&msg);
        purged++;
    }
    //  Bounded by what waits; a damaged record stops the loop.
    uint64_t waiting = self->spool_waiting;
    for (uint64_t index = 0; index < waiting; index++) {
        zq_spool_record_t record;
        if (zq_spool_next (self->spool, &record))
            break;
        zq_spool_ack (self->spool, record.seq);
        self->spool_waiting--;
        purged++;
    }
    zq_spool_commit (self->spool);
    return purged;
}

//  ---- The kind's operations -------------------------------------------------

static int
s_kind_open (zqi_device_t *device, zqi_dqueue_t *dq, char *error, size_t error_size)
{
    if (zqi_device_fds_free (dq->name, error, error_size))
        return -1;
    const char *spool = device->config->spool;
    char *dir = NULL;
    if (*spool) {
        dir = zsys_sprintf ("%s/stream/%s", spool, dq->name);
        if (!dir || zsys_dir_create ("%s", dir)) {
            int saved = dir ? errno : ENOMEM;
            snprintf (error, error_size, "stream %s: cannot create %s/stream/%s: %s", dq->name,
                      spool, dq->name, strerror (saved));
            zstr_free (&dir);
            return zqi_fail (saved);
        }
    }
    int rc = zqi_stream_open (dq, &device->env, dir, error, error_size);
    zstr_free (&dir);
    return rc;
}

static size_t
s_kind_poll_items (zqi_dqueue_t *dq, zmq_pollitem_t *items)
{
    items[0] = (zmq_pollitem_t){zsock_resolve (dq->in), 0, ZMQ_POLLIN, 0};
    if (!zqi_stream_pending (dq))
        return 1;
    items[1] = (zmq_pollitem_t){zsock_resolve (dq->out), 0, ZMQ_POLLOUT, 0};
    return 2;
}

static void
s_kind_handle (zqi_dqueue_t *dq, size_t which)
{
    if (which == 0)
        zqi_stream_input (dq);
    else
        zqi_stream_output (dq);
}

//  Streams that took input may send at once.
static void
s_kind_after_poll (zqi_dqueue_t *dq)
{
    if (zqi_stream_pending (dq))
        zqi_stream_output (dq);
}

static void
s_kind_row (zqi_device_t *device, zqi_dqueue_t *dq, zqi_row_t *row)
{
    zqi_stream_row (dq, row);
}

static int
s_kind_peek (zqi_device_t *device, zqi_dqueue_t *dq, size_t count, zmsg_t *reply)
{
    zqi_stream_peek (dq, count, reply);
    return 0;
}

static int
s_kind_purge (zqi_device_t *device, zqi_dqueue_t *dq, uint64_t *count_p)
{
    *count_p = zqi_stream_purge (dq);
    return 0;
}

const zqi_kind_ops_t zqi_kind_stream = {
    .kind = ZQI_KIND_STREAM,
    .name = "stream",
    .has_endpoints = true,
    .open = s_kind_open,
    .close = zqi_stream_close,
    .poll_items = s_kind_poll_items,
    .handle = s_kind_handle,
    .after_poll = s_kind_after_poll,
    .row = s_kind_row,
    .peek = s_kind_peek,
    .purge = s_kind_purge,
};
