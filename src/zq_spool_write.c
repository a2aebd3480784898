/*  =========================================================================
    zq_spool_write - the spool's write side: group commit (the flush,
    the sync thread) and appending records, waiting for them to be durable.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_spool_internal.h"
#include <fcntl.h>
#include <inttypes.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

//  Bytes kept free under the quota for seals, checkpoints and acks.
#define S_QUOTA_SLACK 4096

//  ---- Group commit ---------------------------------------------------------

zqi_segment_t *
zqi_spool_tail (zq_spool_t *self)
{
    return self->segments[self->segment_count - 1];
}

void
zqi_spool_account (zq_spool_t *self)
{
    uint64_t bytes = 0;
    for (size_t i = 0; i < self->segment_count; i++)
        bytes += self->segments[i]->end;
    self->disk_bytes = bytes;
}

//  What readers may read of segment after a write: under fsync "always",
//  what is synced (a batch written because it filled during an append is
//  handed out once the commit after it synced it, never before its PUT
//  can be confirmed); else all that is written.
static uint64_t
s_visible (zq_spool_t *self, const zqi_segment_t *segment)
{
    return self->config.fsync == ZQ_SPOOL_FSYNC_ALWAYS && !segment->memory ? segment->synced
                                                                           : segment->end;
}

//  Writes what was appended (and the acks made) as one batch, and syncs if
//  sync is true (or something is written but not yet synced). Called and
//  returns with lock held; the I/O runs without it, while appenders fill
//  the next batch. Only one thread leads at a time; others wait for it
//  first. Returns 0, or -1 with errno (the batch was refused; or the
//  spool failed).
int
zqi_spool_flush (zq_spool_t *self, bool sync)
{
    while (self->writing)
        pthread_cond_wait (&self->cond, &self->lock);
    if (self->failed)
        return zqi_fail (self->failed);
    zqi_segment_t *tail = zqi_spool_tail (self);
    bool have_records = self->fill.size > 0 || self->pending_acks.count > 0;
    if (!have_records && (!sync || tail->synced == tail->end)) {
        if (sync || self->config.fsync == ZQ_SPOOL_FSYNC_NONE) {
            //  Everything written is synced already.
            self->durable_seq = self->written_seq;
            self->acks_durable = self->acks_written;
        }
        return 0;
    }
    //  Room for a new segment in the list, so nothing can fail after I/O.
    if (self->segment_count == self->segment_capacity) {
        size_t capacity = self->segment_capacity * 2;
        zqi_segment_t **bigger = realloc (self->segments, capacity * sizeof (zqi_segment_t *));
        if (!bigger)
            return zqi_fail (ENOMEM);
        self->segments = bigger;
        self->segment_capacity = capacity;
    }
    uint64_t ack_epoch = self->ack_epoch;
    if (self->pending_acks.count) {
        //  As many ack records as the reader's bound takes; a crash may
        //  keep some of them and lose the others (those acks are lost:
        //  their records are delivered again).
        size_t before = self->fill.size;
        if (zqi_ack_records_put (self, &self->fill, &self->ack_payload, self->pending_acks.items,
                                 self->pending_acks.count, self->next_seq - 1, self->durable_lsn)) {
            self->fill.size = before;
            return -1;
        }
        zqi_rangeset_t swap = self->flight_acks;
        self->flight_acks = self->pending_acks;
        self->pending_acks = swap;
        self->pending_acks.count = 0;
    }
    self->writing = true;
    zqi_buf_t swap = self->flight;
    self->flight = self->fill;
    self->fill = swap;
    self->fill.size = 0;
    uint64_t first = self->written_seq + 1;
    uint64_t last = self->fill_last_seq ? self->fill_last_seq : self->written_seq;
    self->fill_last_seq = 0;

    uint64_t body = tail->end > tail->body_start ? tail->end - tail->body_start : 0;
    bool rotate =
        tail->sealed ||
        (self->flight.size && tail->records > 0 &&
         body + self->flight.size > self->config.segment_bytes) ||
        (tail->memory && tail->end + self->flight.size + ZQI_SEAL_SIZE > tail->memory_capacity);
    zqi_rangeset_t snapshot = {NULL, 0, 0};
    uint64_t snapshot_floor = self->ack_floor;
    int rc = 0;
    if (rotate && self->acked.count) {
        snapshot.items = malloc (self->acked.count * sizeof (zqi_range_t));
        if (snapshot.items) {
            memcpy (snapshot.items, self->acked.items, self->acked.count * sizeof (zqi_range_t));
            snapshot.count = snapshot.capacity = self->acked.count;
        } else
            rc = zqi_fail (ENOMEM);
    }
    pthread_mutex_unlock (&self->lock);

    zqi_segment_t *target = tail, *created = NULL;
    bool synced = false;
    if (rc == 0 && rotate) {
        if (!tail->sealed && zqi_segment_seal (self, tail))
            rc = -1;
        if (rc == 0) {
            uint64_t base_lsn = tail->base_lsn + tail->end - ZQI_SEG_HEADER_SIZE;
            created = zqi_segment_create (self, first, base_lsn, &snapshot, snapshot_floor,
                                          first - 1, self->flight.size);
            if (created)
                target = created;
            else
                rc = -1;
        }
    }
    if (rc == 0 && self->flight.size) {
        uint64_t before = target->end;
        if (zqi_segment_write (self, target, self->flight.data, self->flight.size)) {
            rc = -1;
            int saved = errno;
            //  Cut the partial batch so the log stays valid.
            if (!self->failed && zqi_segment_truncate (self, target, before))
                self->failed = errno;
            errno = saved;
        } else {
            target->records++;
            if (self->flight.size <= ZQI_PREPARE_AFTER_MAX)
                zqi_segment_prepare (self, target);
        }
    }
    uint64_t written_at = target->end - (rc == 0 ? self->flight.size : 0);
    int errnum = rc ? errno : 0;
    if (!self->failed && (sync || rc) && target->synced < target->end) {
        //  On a refused batch, what was written before it still gets its
        //  sync, so waiters on those records are answered.
        if (zqi_segment_sync (self, target)) {
            //  After a failed fsync the kernel may have dropped the dirty
            //  pages: nothing unsynced can be trusted. Cut back to what was
            //  synced and fail the spool; reopening recovers the truth.
            int saved = errno;
            if (!self->failed) {
                if (ftruncate (target->wfd, (off_t)target->synced)) {
                }
                target->end = target->prepared = target->synced;
                self->failed = saved;
            }
            zqi_log (ZQ_LOG_ERROR, "zq_spool: fsync failed: %s", strerror (saved));
            if (!rc) {
                rc = -1;
                errnum = saved;
            }
        } else
            synced = true;
    } else if (!self->failed && target->synced == target->end)
        synced = true;
    zqi_rangeset_free (&snapshot);

    pthread_mutex_lock (&self->lock);
    if (created) {
        self->segments[self->segment_count++] = created;
        created->visible = s_visible (self, created);
    }
    tail->visible = s_visible (self, tail);
    if (target != tail)
        target->visible = s_visible (self, target);
    if (self->flight.size)
        self->stats.writes++;
    if (rc == 0 && last >= first && !target->memory && !(self->recent_held && self->retired_held)) {
        //  A batch with messages, kept for the cursor (a memory segment is
        //  read in place); a record handed out from the one it replaces
        //  stays where it is, retired.
        if (self->recent_held) {
            zqi_buf_t free_buffer = self->retired;
            self->retired = self->recent;
            self->recent = free_buffer;
            self->recent.size = 0;
            self->recent_held = false;
            self->retired_held = true;
        }
        zqi_buf_t previous = self->recent;
        self->recent = self->flight;
        self->flight = previous;
        self->recent_segment = target->id;
        self->recent_offset = written_at;
    }
    if (rc == 0) {
        if (last >= first)
            target->last_seq = last;
        self->written_seq = last;
        self->acks_written = ack_epoch;
        self->flight_acks.count = 0;
    } else {
        int refusal = errnum == ENOSPC || errnum == EDQUOT ? ZQ_EFULL : errnum;
        if (self->failed)
            refusal = self->failed;
        zqi_spool_refuse (self, first, last + 1, refusal);
        self->written_seq = last;
        for (size_t i = 0; i < self->flight_acks.count; i++)
            zqi_rangeset_add (&self->pending_acks, self->flight_acks.items[i].start,
                              self->flight_acks.items[i].end);
        self->flight_acks.count = 0;
        if (refusal == ZQ_EFULL)
            zqi_log (ZQ_LOG_WARNING, "zq_spool: disk full: %" PRIu64 " records refused",
                     last + 1 - first);
        errnum = refusal;
    }
    if (synced) {
        //  Everything written is on stable storage (a refused batch was
        //  cut away before the sync).
        self->durable_seq = self->written_seq;
        if (rc == 0)
            self->acks_durable = ack_epoch;
        self->durable_lsn = target->base_lsn + target->synced - ZQI_SEG_HEADER_SIZE;
        self->last_sync_ms = zclock_mono ();
    }
    if (self->config.fsync == ZQ_SPOOL_FSYNC_NONE && !self->failed)
        self->durable_seq = self->written_seq;
    if (self->failed && rc == 0) {
        rc = -1;
        errnum = self->failed;
    }
    self->flight.size = 0;
    zqi_spool_account (self);
    self->writing = false;
    pthread_cond_broadcast (&self->cond);
    if (rc)
        errno = errnum;
    return rc;
}

void *
zqi_spool_sync_thread (void *arg)
{
    zq_spool_t *self = (zq_spool_t *)arg;
    pthread_mutex_lock (&self->lock);
    while (!self->stopping) {
        int64_t now = zclock_mono ();
        int64_t due = self->last_sync_ms + self->config.fsync_interval_ms;
        if ((now >= due || self->sync_wanted) && !self->writing && !self->failed) {
            self->sync_wanted = false;
            zqi_spool_flush (self, true);
            self->last_sync_ms = zclock_mono ();
            continue;
        }
        if (now < due && !self->sync_wanted) {
            struct timespec deadline;
            clock_gettime (CLOCK_MONOTONIC, &deadline);
            int64_t wait_ms = due - now;
            deadline.tv_sec += wait_ms / 1000;
            deadline.tv_nsec += (wait_ms % 1000) * 1000000;
            if (deadline.tv_nsec >= 1000000000) {
                deadline.tv_sec++;
                deadline.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait (&self->cond, &self->lock, &deadline);
        } else
            pthread_cond_wait (&self->cond, &self->lock);
    }
    pthread_mutex_unlock (&self->lock);
    return NULL;
}

//  ---- Appending ----------------------------------------------------------------

//  Bytes kept free under the quota: a seal, the next checkpoint with the
//  whole ack state, and the acks not yet logged. Lock held.
static uint64_t
s_quota_slack (zq_spool_t *self)
{
    return S_QUOTA_SLACK + zqi_ranges_disk_bytes (self, self->acked.count) +
           zqi_ranges_disk_bytes (self, self->pending_acks.count);
}

//  Appends one record, its payload gathered from count parts (size bytes
//  in all), to the fill buffer. Lock held.
static int
s_append_parts (zq_spool_t *self, const void *const *parts, const size_t *sizes, size_t count,
                size_t size)
{
    if (self->failed)
        return zqi_fail (self->failed);
    if (size > self->config.max_record_bytes)
        return zqi_fail (ZQ_ETOOBIG);
    size_t record = ZQI_REC_HEADER_SIZE + size;
    //  A full batch is written first (by this thread, or the leader).
    while (self->fill.size && self->fill.size + record > self->config.batch_bytes) {
        if (self->writing)
            pthread_cond_wait (&self->cond, &self->lock);
        else if (zqi_spool_flush (self, false))
            return -1;
    }
    if (self->failed)
        return zqi_fail (self->failed);
    if (self->config.quota_bytes) {
        uint64_t slack = s_quota_slack (self);
        uint64_t need = self->disk_bytes + self->flight.size + self->fill.size + record + slack;
        if (need > self->config.quota_bytes) {
            self->stats.refused++;
            return zqi_fail (ZQ_EFULL);
        }
    }
    if (zqi_record_put_parts (&self->fill, self->salt, ZQI_REC_MESSAGE, self->next_seq,
                              self->durable_lsn, parts, sizes, count))
        return -1;
    ZQI_COUNT (ZQI_COUNT_SPOOL_COPIES);
    self->fill_last_seq = self->next_seq++;
    self->stats.appends++;
    self->stats.append_bytes += size;
    return 0;
}

//  Appends one record to the fill buffer. Lock held.
static int
s_append (zq_spool_t *self, const void *data, size_t size)
{
    return s_append_parts (self, &data, &size, 1, size);
}

int
zq_spool_append (zq_spool_t *self, const void *data, size_t size, uint64_t *seq_p)
{
    if (!self || (!data && size))
        return zqi_fail (EINVAL);
    pthread_mutex_lock (&self->lock);
    int rc = s_append (self, data, size);
    if (rc == 0 && seq_p)
        *seq_p = self->fill_last_seq;
    pthread_mutex_unlock (&self->lock);
    return rc;
}

int
zqi_spool_append_parts (zq_spool_t *self, const void *const *parts, const size_t *sizes,
                        size_t count, uint64_t *seq_p)
{
    if (!self || (count && (!parts || !sizes)))
        return zqi_fail (EINVAL);
    size_t size = 0;
    for (size_t i = 0; i < count; i++) {
        if (!parts[i] && sizes[i])
            return zqi_fail (EINVAL);
        if (sizes[i] > SIZE_MAX - size)
            return zqi_fail (ZQ_ETOOBIG);
        size += sizes[i];
    }
    pthread_mutex_lock (&self->lock);
    int rc = s_append_parts (self, parts, sizes, count, size);
    if (rc == 0 && seq_p)
        *seq_p = self->fill_last_seq;
    pthread_mutex_unlock (&self->lock);
    return rc;
}

int
zq_spool_appendv (zq_spool_t *self, const void *const *data, const size_t *sizes, size_t count,
                  uint64_t *first_seq_p)
{
    if (!self || (count && (!data || !sizes)))
        return zqi_fail (EINVAL);
    size_t total = 0;
    for (size_t i = 0; i < count; i++) {
        if (sizes[i] > self->config.max_record_bytes)
            return zqi_fail (ZQ_ETOOBIG);
        if (!data[i] && sizes[i])
            return zqi_fail (EINVAL);
        total += ZQI_REC_HEADER_SIZE + sizes[i];
    }
    pthread_mutex_lock (&self->lock);
    int rc = 0;
    if (self->failed)
        rc = zqi_fail (self->failed);
    else if (self->config.quota_bytes) {
        uint64_t slack = s_quota_slack (self);
        if (self->disk_bytes + self->flight.size + self->fill.size + total + slack >
            self->config.quota_bytes) {
            self->stats.refused += count;
            rc = zqi_fail (ZQ_EFULL);
        }
    }
    uint64_t first = self->next_seq;
    //  All or none: appends of one call are never split by a refusal
    //  here, because the quota was checked for all of them at once; a
    //  later write failure refuses whole batches.
    for (size_t i = 0; rc == 0 && i < count; i++) {
        uint64_t expected = self->next_seq;
        rc = s_append (self, data[i], sizes[i]);
        if (rc == 0 && self->fill_last_seq != expected)
            rc = zqi_fail (EIO);
    }
    if (rc == 0 && first_seq_p)
        *first_seq_p = first;
    pthread_mutex_unlock (&self->lock);
    return rc;
}

int
zq_spool_append_msg (zq_spool_t *self, const zq_msg_t *msg, uint64_t *seq_p)
{
    if (!self || !msg)
        return zqi_fail (EINVAL);
    //  The one-frame wire form, written once: on the stack when it is small.
    uint8_t small[512];
    size_t size = zqi_msg_wire_size (msg);
    uint8_t *record = size <= sizeof small ? small : (uint8_t *)malloc (size);
    if (!record)
        return zqi_fail (ENOMEM);
    zqi_msg_wire_write (msg, record);
    ZQI_COUNT (ZQI_COUNT_SPOOL_COPIES);
    int rc = zq_spool_append (self, record, size, seq_p);
    if (record != small) {
        int saved = errno;
        free (record);
        errno = saved;
    }
    return rc;
}

//  Waits until seq is durable under the policy. Lock held.
static int
s_wait (zq_spool_t *self, uint64_t seq)
{
    while (true) {
        int refusal = zqi_spool_refused_errno (self, seq);
        if (refusal)
            return zqi_fail (refusal);
        if (seq <= self->durable_seq)
            return 0;
        if (self->failed)
            return zqi_fail (self->failed);
        if (self->writing) {
            pthread_cond_wait (&self->cond, &self->lock);
            continue;
        }
        if (self->config.fsync == ZQ_SPOOL_FSYNC_ALWAYS)
            zqi_spool_flush (self, true); //  errors show up as refusals or failure
        else if (seq > self->written_seq || self->config.fsync == ZQ_SPOOL_FSYNC_NONE)
            zqi_spool_flush (self, false);
        else {
            self->sync_wanted = true;
            pthread_cond_broadcast (&self->cond);
            pthread_cond_wait (&self->cond, &self->lock);
        }
    }
}

int
zq_spool_wait (zq_spool_t *self, uint64_t seq)
{
    if (!self)
        return zqi_fail (EINVAL);
    pthread_mutex_lock (&self->lock);
    int rc = seq == 0 || seq >= self->next_seq ? zqi_fail (EINVAL) : s_wait (self, seq);
    pthread_mutex_unlock (&self->lock);
    return rc;
}

int
zq_spool_append_durable (zq_spool_t *self, const void *data, size_t size, uint64_t *seq_p)
{
    if (!self || (!data && size))
        return zqi_fail (EINVAL);
    pthread_mutex_lock (&self->lock);
    int rc = s_append (self, data, size);
    if (rc == 0) {
        uint64_t seq = self->fill_last_seq;
        if (seq_p)
            *seq_p = seq;
        rc = s_wait (self, seq);
    }
    pthread_mutex_unlock (&self->lock);
    return rc;
}

int
zq_spool_commit (zq_spool_t *self)
{
    if (!self)
        return zqi_fail (EINVAL);
    pthread_mutex_lock (&self->lock);
    uint64_t target = self->next_seq - 1;
    uint64_t entry_durable = self->durable_seq;
    uint64_t ack_target = self->ack_epoch;
    bool sync = self->config.fsync == ZQ_SPOOL_FSYNC_ALWAYS;
    int rc = 0;
    while (true) {
        bool done = sync ? self->durable_seq >= target && self->acks_durable >= ack_target
                         : self->written_seq >= target && self->acks_written >= ack_target;
        if (done)
            break;
        if (self->failed) {
            rc = zqi_fail (self->failed);
            break;
        }
        if (self->writing) {
            pthread_cond_wait (&self->cond, &self->lock);
            continue;
        }
        if (zqi_spool_flush (self, sync)) {
            rc = -1;
            break;
        }
    }
    if (rc == 0) {
        int refusal = zqi_spool_refused_between (self, entry_durable + 1, target);
        if (refusal)
            rc = zqi_fail (refusal);
    }
    pthread_mutex_unlock (&self->lock);
    return rc;
}

int
zq_spool_refusal (zq_spool_t *self, uint64_t first, uint64_t last)
{
    if (!self || first == 0 || first > last)
        return EINVAL;
    pthread_mutex_lock (&self->lock);
    int refusal = zqi_spool_refused_between (self, first, last);
    pthread_mutex_unlock (&self->lock);
    return refusal;
}

uint64_t
zq_spool_durable_seq (zq_spool_t *self)
{
    pthread_mutex_lock (&self->lock);
    uint64_t seq = self->durable_seq;
    pthread_mutex_unlock (&self->lock);
    return seq;
}

uint64_t
zq_spool_last_seq (zq_spool_t *self)
{
    pthread_mutex_lock (&self->lock);
    uint64_t seq = self->next_seq - 1;
    pthread_mutex_unlock (&self->lock);
    return seq;
}
