/*  =========================================================================
    zq_spool - a durable FIFO of records: appending with group commit,
    the delivery cursor, acks and reclaim. The storage itself (formats,
    files, recovery) is in zq_spool_store.c; doc/SPOOL.md specifies both.

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

//  Most refusal ranges remembered for zq_spool_wait.
#define S_REFUSED_MAX 1024
//  Bytes kept free under the quota for seals, checkpoints and acks.
#define S_QUOTA_SLACK 4096
//  Segments in memory are never larger than this (plus one batch).
#define S_MEMORY_SEGMENT_MAX (4 * 1024 * 1024)
//  Seqs a spool may assign are below this (doc/SPOOL.md, "Recovery").
#define S_SEQ_LIMIT (UINT64_C (1) << 63)

void
zq_spool_config_init (zq_spool_config_t *config)
{
    memset (config, 0, sizeof *config);
    config->fsync = ZQ_SPOOL_FSYNC_ALWAYS;
    config->fsync_interval_ms = 100;
    config->quota_bytes = 0;
    config->segment_bytes = 64 * 1024 * 1024;
    config->batch_bytes = 1024 * 1024;
    config->max_record_bytes = ZQ_MSG_MAX_SIZE_DEFAULT + 64 * 1024;
    config->quarantine = false;
}

int
zq_spool_fsync_parse (const char *name, zq_spool_fsync_t *policy_p)
{
    if (name && streq (name, "always"))
        *policy_p = ZQ_SPOOL_FSYNC_ALWAYS;
    else if (name && streq (name, "interval"))
        *policy_p = ZQ_SPOOL_FSYNC_INTERVAL;
    else if (name && streq (name, "none"))
        *policy_p = ZQ_SPOOL_FSYNC_NONE;
    else
        return zqi_fail (EINVAL);
    return 0;
}

const char *
zq_spool_fsync_name (zq_spool_fsync_t policy)
{
    switch (policy) {
        case ZQ_SPOOL_FSYNC_ALWAYS:
            return "always";
        case ZQ_SPOOL_FSYNC_INTERVAL:
            return "interval";
        case ZQ_SPOOL_FSYNC_NONE:
            return "none";
    }
    return "?";
}

//  ---- In-flight table: seq -> location ---------------------------------------

static size_t
s_seq_hash (const void *key)
{
    uint64_t x = (uint64_t)(uintptr_t)key;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

static int
s_seq_compare (const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y ? -1 : x > y;
}

static void
s_location_free (void **item_p)
{
    free (*item_p);
    *item_p = NULL;
}

//  ---- Ready heap: returned records, lowest seq first -------------------------

static int
s_ready_push (zq_spool_t *self, const zqi_location_t *location)
{
    if (self->ready_count == self->ready_capacity) {
        size_t capacity = self->ready_capacity ? self->ready_capacity * 2 : 64;
        zqi_location_t *items = realloc (self->ready, capacity * sizeof (zqi_location_t));
        if (!items)
            return zqi_fail (ENOMEM);
        self->ready = items;
        self->ready_capacity = capacity;
    }
    size_t at = self->ready_count++;
    while (at > 0) {
        size_t parent = (at - 1) / 2;
        if (self->ready[parent].seq <= location->seq)
            break;
        self->ready[at] = self->ready[parent];
        at = parent;
    }
    self->ready[at] = *location;
    return 0;
}

static void
s_ready_pop (zq_spool_t *self)
{
    zqi_location_t last = self->ready[--self->ready_count];
    size_t at = 0;
    while (true) {
        size_t child = 2 * at + 1;
        if (child >= self->ready_count)
            break;
        if (child + 1 < self->ready_count && self->ready[child + 1].seq < self->ready[child].seq)
            child++;
        if (last.seq <= self->ready[child].seq)
            break;
        self->ready[at] = self->ready[child];
        at = child;
    }
    if (self->ready_count)
        self->ready[at] = last;
}

//  ---- Refusals -----------------------------------------------------------------

//  Remembers that seqs [start, end) were lost to a failed write (errno
//  errnum); they count as acked, and the ack is logged so the hole is
//  known after a restart.
static void
s_refuse (zq_spool_t *self, uint64_t start, uint64_t end, int errnum)
{
    if (start >= end)
        return;
    self->stats.refused += end - start;
    zqi_spool_ack_range (self, start, end);
    zqi_rangeset_add (&self->pending_acks, start, end);
    self->ack_epoch++;
    if (self->refused_count && self->refused[self->refused_count - 1].end == start &&
        self->refused_errno[self->refused_count - 1] == errnum) {
        self->refused[self->refused_count - 1].end = end;
        return;
    }
    if (self->refused_count == S_REFUSED_MAX) {
        memmove (self->refused, self->refused + 1, (S_REFUSED_MAX - 1) * sizeof (zqi_range_t));
        memmove (self->refused_errno, self->refused_errno + 1, (S_REFUSED_MAX - 1) * sizeof (int));
        self->refused_count--;
    }
    self->refused[self->refused_count].start = start;
    self->refused[self->refused_count].end = end;
    self->refused_errno[self->refused_count] = errnum;
    self->refused_count++;
}

//  Returns the errno that refused seq, or 0.
static int
s_refused_errno (zq_spool_t *self, uint64_t seq)
{
    for (size_t i = self->refused_count; i > 0; i--)
        if (seq >= self->refused[i - 1].start && seq < self->refused[i - 1].end)
            return self->refused_errno[i - 1];
    return 0;
}

//  First refusal errno for a seq in [start, end], or 0.
static int
s_refused_between (zq_spool_t *self, uint64_t start, uint64_t end)
{
    for (size_t i = 0; i < self->refused_count; i++)
        if (self->refused[i].start <= end && self->refused[i].end > start)
            return self->refused_errno[i];
    return 0;
}

//  ---- Group commit ---------------------------------------------------------

static zqi_segment_t *
s_tail (zq_spool_t *self)
{
    return self->segments[self->segment_count - 1];
}

static void
s_account (zq_spool_t *self)
{
    uint64_t bytes = 0;
    for (size_t i = 0; i < self->segment_count; i++)
        bytes += self->segments[i]->end;
    self->disk_bytes = bytes;
}

//  Writes what was appended (and the acks made) as one batch, and syncs if
//  sync is true (or something is written but not yet synced). Called and
//  returns with lock held; the I/O runs without it, while appenders fill
//  the next batch. Only one thread leads at a time; others wait for it
//  first. Returns 0, or -1 with errno (the batch was refused; or the
//  spool failed).
static int
s_flush (zq_spool_t *self, bool sync)
{
    while (self->writing)
        pthread_cond_wait (&self->cond, &self->lock);
    if (self->failed)
        return zqi_fail (self->failed);
    zqi_segment_t *tail = s_tail (self);
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
        } else
            target->records++;
    }
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
                target->end = target->synced;
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
        created->visible = created->end;
    }
    tail->visible = tail->end;
    if (target != tail)
        target->visible = target->end;
    if (self->flight.size)
        self->stats.writes++;
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
        s_refuse (self, first, last + 1, refusal);
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
    s_account (self);
    self->writing = false;
    pthread_cond_broadcast (&self->cond);
    if (rc)
        errno = errnum;
    return rc;
}

static void *
s_sync_thread (void *arg)
{
    zq_spool_t *self = (zq_spool_t *)arg;
    pthread_mutex_lock (&self->lock);
    while (!self->stopping) {
        int64_t now = zclock_mono ();
        int64_t due = self->last_sync_ms + self->config.fsync_interval_ms;
        if ((now >= due || self->sync_wanted) && !self->writing && !self->failed) {
            self->sync_wanted = false;
            s_flush (self, true);
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

//  ---- Open and close ----------------------------------------------------------

static uint64_t
s_new_salt (void)
{
    uint64_t salt = 0;
    if (getrandom (&salt, sizeof salt, 0) != (ssize_t)sizeof salt)
        salt = (uint64_t)zclock_time () ^ ((uint64_t)getpid () << 32) ^ (uintptr_t)&salt;
    return salt ? salt : 1;
}

static int
s_open_dir (zq_spool_t *self)
{
    if (mkdir (self->dir, 0700) && errno != EEXIST)
        return -1;
    self->dir_fd = open (self->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (self->dir_fd < 0)
        return -1;
    self->lock_fd = openat (self->dir_fd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (self->lock_fd < 0)
        return -1;
    if (flock (self->lock_fd, LOCK_EX | LOCK_NB))
        return zqi_fail (errno == EWOULDBLOCK ? EBUSY : errno);
    return 0;
}

//  Deletes the oldest segments whose messages are all acked (never the
//  newest). Both locks held.
static void
s_reclaim (zq_spool_t *self)
{
    size_t removed = 0;
    while (self->segment_count - removed > 1) {
        zqi_segment_t *segment = self->segments[removed];
        if (segment->last_seq >= self->ack_floor)
            break;
        self->disk_bytes -= segment->end;
        zqi_segment_remove (self, segment, true);
        self->stats.segments_reclaimed++;
        removed++;
    }
    if (removed) {
        memmove (self->segments, self->segments + removed,
                 (self->segment_count - removed) * sizeof (zqi_segment_t *));
        self->segment_count -= removed;
    }
}

zq_spool_t *
zq_spool_new (const char *dir, const zq_spool_config_t *config)
{
    zq_spool_config_t effective;
    if (config)
        effective = *config;
    else
        zq_spool_config_init (&effective);
    if (!dir) {
        if (effective.quota_bytes == 0)
            effective.quota_bytes = 256 * 1024 * 1024;
        if (effective.segment_bytes > S_MEMORY_SEGMENT_MAX)
            effective.segment_bytes = S_MEMORY_SEGMENT_MAX;
    }
    config = &effective;
    if (config->fsync > ZQ_SPOOL_FSYNC_NONE || config->segment_bytes < 4096 ||
        config->batch_bytes < 256 || config->max_record_bytes == 0 ||
        (config->fsync == ZQ_SPOOL_FSYNC_INTERVAL && config->fsync_interval_ms == 0) ||
        (config->quota_bytes &&
         config->quota_bytes < 2 * config->segment_bytes + config->batch_bytes)) {
        errno = EINVAL;
        return NULL;
    }
    zq_spool_t *self = calloc (1, sizeof (zq_spool_t));
    if (!self) {
        errno = ENOMEM;
        return NULL;
    }
    self->config = *config;
    self->dir_fd = self->lock_fd = -1;
    self->ack_floor = 1;
    pthread_mutex_init (&self->lock, NULL);
    pthread_mutex_init (&self->read_lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (&self->cond, &attr);
    pthread_condattr_destroy (&attr);

    self->in_flight = zhashx_new ();
    self->refused = malloc (S_REFUSED_MAX * sizeof (zqi_range_t));
    self->refused_errno = malloc (S_REFUSED_MAX * sizeof (int));
    self->segments = malloc (16 * sizeof (zqi_segment_t *));
    self->segment_capacity = 16;
    if (!self->in_flight || !self->refused || !self->refused_errno || !self->segments ||
        zqi_buf_reserve (&self->fill, self->config.batch_bytes) ||
        zqi_buf_reserve (&self->flight, self->config.batch_bytes)) {
        errno = ENOMEM;
        goto fail;
    }
    zhashx_set_key_hasher (self->in_flight, s_seq_hash);
    zhashx_set_key_comparator (self->in_flight, s_seq_compare);
    zhashx_set_key_duplicator (self->in_flight, NULL);
    zhashx_set_key_destructor (self->in_flight, NULL);
    zhashx_set_destructor (self->in_flight, s_location_free);

    if (dir) {
        self->dir = strdup (dir);
        if (!self->dir) {
            errno = ENOMEM;
            goto fail;
        }
        if (s_open_dir (self) || zqi_spool_recover (self))
            goto fail;
    } else
        self->next_segment_id = 1;
    if (!self->salt)
        self->salt = s_new_salt ();
    if (self->segment_count == 0) {
        zqi_segment_t *segment = zqi_segment_create (self, 1, 0, &self->acked, 1, 0, 0);
        if (!segment)
            goto fail;
        self->segments[self->segment_count++] = segment;
        s_account (self);
    }
    zqi_segment_t *tail = s_tail (self);
    //  What a previous process wrote may still be only in the page cache.
    if (!tail->sealed && tail->synced < tail->end && zqi_segment_sync (self, tail))
        goto fail;
    tail->synced = tail->end;
    //  Never reuse a seq the log mentions (refused seqs are acked).
    uint64_t last_seq = tail->last_seq;
    if (self->seq_hint > last_seq)
        last_seq = self->seq_hint;
    if (self->ack_floor - 1 > last_seq)
        last_seq = self->ack_floor - 1;
    if (self->acked.count && self->acked.items[self->acked.count - 1].end - 1 > last_seq)
        last_seq = self->acked.items[self->acked.count - 1].end - 1;
    //  No spool assigns 2^63 seqs: a log naming one that high is damaged,
    //  and counting on from it would wrap to seqs already in use.
    if (last_seq >= S_SEQ_LIMIT) {
        zqi_log (ZQ_LOG_ERROR, "zq_spool: %s: the log names seq %" PRIu64 ", past any assigned",
                 self->dir, last_seq);
        zqi_fail (ZQ_ECORRUPT);
        goto fail;
    }
    self->next_seq = last_seq + 1;
    self->written_seq = self->durable_seq = last_seq;
    self->durable_lsn = tail->base_lsn + tail->end - ZQI_SEG_HEADER_SIZE;
    if (self->ack_floor < self->segments[0]->first_seq)
        zqi_spool_ack_range (self, self->ack_floor, self->segments[0]->first_seq);
    s_reclaim (self);
    self->cursor_segment = self->segments[0]->id;
    self->cursor_offset = ZQI_SEG_HEADER_SIZE;
    self->last_sync_ms = zclock_mono ();

    if (self->config.fsync == ZQ_SPOOL_FSYNC_INTERVAL) {
        if (pthread_create (&self->thread, NULL, s_sync_thread, self)) {
            errno = EAGAIN;
            goto fail;
        }
        self->thread_started = true;
    }
    return self;

fail : {
    int saved = errno;
    self->failed = saved ? saved : EIO;
    zq_spool_destroy (&self);
    errno = saved;
    return NULL;
}
}

void
zq_spool_destroy (zq_spool_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zq_spool_t *self = *self_p;
    if (self->thread_started) {
        pthread_mutex_lock (&self->lock);
        self->stopping = true;
        pthread_cond_broadcast (&self->cond);
        pthread_mutex_unlock (&self->lock);
        pthread_join (self->thread, NULL);
    }
    if (!self->failed && self->segment_count) {
        pthread_mutex_lock (&self->lock);
        if (s_flush (self, true))
            zqi_log (ZQ_LOG_ERROR, "zq_spool: final write failed: %s", zq_strerror (errno));
        pthread_mutex_unlock (&self->lock);
    }
    for (size_t i = 0; i < self->segment_count; i++)
        zqi_segment_remove (self, self->segments[i], false);
    free (self->segments);
    zqi_buf_free (&self->fill);
    zqi_buf_free (&self->flight);
    zqi_buf_free (&self->ack_payload);
    zqi_buf_free (&self->window.buf);
    zqi_rangeset_free (&self->pending_acks);
    zqi_rangeset_free (&self->flight_acks);
    zqi_rangeset_free (&self->acked);
    zhashx_destroy (&self->in_flight);
    free (self->ready);
    free (self->record_copy);
    free (self->refused);
    free (self->refused_errno);
    if (self->lock_fd >= 0)
        close (self->lock_fd);
    if (self->dir_fd >= 0)
        close (self->dir_fd);
    free (self->dir);
    pthread_cond_destroy (&self->cond);
    pthread_mutex_destroy (&self->lock);
    pthread_mutex_destroy (&self->read_lock);
    free (self);
    *self_p = NULL;
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

//  Appends one record to the fill buffer. Lock held.
static int
s_append (zq_spool_t *self, const void *data, size_t size)
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
        else if (s_flush (self, false))
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
    if (zqi_record_put (&self->fill, self->salt, ZQI_REC_MESSAGE, self->next_seq, self->durable_lsn,
                        data, size))
        return -1;
    self->fill_last_seq = self->next_seq++;
    self->stats.appends++;
    self->stats.append_bytes += size;
    return 0;
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
        int refusal = s_refused_errno (self, seq);
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
            s_flush (self, true); //  errors show up as refusals or failure
        else if (seq > self->written_seq || self->config.fsync == ZQ_SPOOL_FSYNC_NONE)
            s_flush (self, false);
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
        if (s_flush (self, sync)) {
            rc = -1;
            break;
        }
    }
    if (rc == 0) {
        int refusal = s_refused_between (self, entry_durable + 1, target);
        if (refusal)
            rc = zqi_fail (refusal);
    }
    pthread_mutex_unlock (&self->lock);
    return rc;
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

//  ---- Reading -------------------------------------------------------------------

static bool
s_is_acked (zq_spool_t *self, uint64_t seq)
{
    return seq < self->ack_floor || zqi_rangeset_has (&self->acked, seq);
}

//  The segment with id, or the first after it; NULL if none. Lock held.
static zqi_segment_t *
s_segment_at (zq_spool_t *self, uint64_t id)
{
    size_t low = 0, high = self->segment_count;
    while (low < high) {
        size_t mid = (low + high) / 2;
        if (self->segments[mid]->id < id)
            low = mid + 1;
        else
            high = mid;
    }
    return low < self->segment_count ? self->segments[low] : NULL;
}

static int
s_damaged_record (zq_spool_t *self, zqi_segment_t *segment, uint64_t offset)
{
    pthread_mutex_lock (&self->lock);
    self->stats.corrupt_records++;
    pthread_mutex_unlock (&self->lock);
    zqi_log (ZQ_LOG_ERROR,
             "zq_spool: %s segment %016" PRIx64 ": damaged record at offset %" PRIu64 " not served",
             self->dir ? self->dir : "(memory)", segment->id, offset);
    return zqi_fail (ZQ_ECORRUPT);
}

static int
s_mark_in_flight (zq_spool_t *self, const zqi_location_t *location)
{
    zqi_location_t *copy = malloc (sizeof *copy);
    if (!copy)
        return zqi_fail (ENOMEM);
    *copy = *location;
    void *key = (void *)(uintptr_t)location->seq;
    zhashx_delete (self->in_flight, key);
    if (zhashx_insert (self->in_flight, key, copy)) {
        free (copy);
        return zqi_fail (ENOMEM);
    }
    return 0;
}

//  Hands out the lowest returned record, if any. Returns 1 with record
//  filled, 0 if none, -1 on error. read_lock held.
static int
s_next_returned (zq_spool_t *self, zq_spool_record_t *record)
{
    while (self->ready_count) {
        zqi_location_t location = self->ready[0];
        pthread_mutex_lock (&self->lock);
        zqi_segment_t *segment = s_segment_at (self, location.segment_id);
        bool gone =
            s_is_acked (self, location.seq) || !segment || segment->id != location.segment_id;
        pthread_mutex_unlock (&self->lock);
        if (gone || zhashx_lookup (self->in_flight, (void *)(uintptr_t)location.seq)) {
            s_ready_pop (self);
            continue;
        }
        size_t size = ZQI_REC_HEADER_SIZE + location.size;
        if (size > self->record_copy_size) {
            uint8_t *bigger = realloc (self->record_copy, size);
            if (!bigger)
                return zqi_fail (ENOMEM);
            self->record_copy = bigger;
            self->record_copy_size = size;
        }
        ssize_t got = zqi_segment_read (self, segment, location.offset, self->record_copy, size);
        if (segment->id != self->cursor_segment)
            zqi_segment_close_reader (segment);
        if (got < 0)
            return -1;
        zqi_rec_t rec;
        size_t need;
        s_ready_pop (self);
        if ((size_t)got != size ||
            zqi_record_parse (self->record_copy, size, self->salt, self->config.max_record_bytes,
                              &rec, &need) != 1 ||
            rec.type != ZQI_REC_MESSAGE || rec.seq != location.seq)
            return s_damaged_record (self, segment, location.offset);
        if (s_mark_in_flight (self, &location))
            return -1;
        record->seq = location.seq;
        record->data = self->record_copy + ZQI_REC_HEADER_SIZE;
        record->size = location.size;
        return 1;
    }
    return 0;
}

static int
s_next (zq_spool_t *self, zq_spool_record_t *record)
{
    int found = s_next_returned (self, record);
    if (found)
        return found > 0 ? 0 : -1;
    while (true) {
        pthread_mutex_lock (&self->lock);
        zqi_segment_t *segment = s_segment_at (self, self->cursor_segment);
        bool newest = segment && segment == s_tail (self);
        uint64_t visible = segment ? segment->visible : 0;
        pthread_mutex_unlock (&self->lock);
        if (!segment)
            return zqi_fail (EAGAIN);
        if (segment->id != self->cursor_segment) {
            self->cursor_segment = segment->id;
            self->cursor_offset = ZQI_SEG_HEADER_SIZE;
        }
        if (self->cursor_offset >= visible) {
            if (newest)
                return zqi_fail (EAGAIN);
            zqi_segment_close_reader (segment);
            self->cursor_segment++;
            self->cursor_offset = ZQI_SEG_HEADER_SIZE;
            continue;
        }
        uint64_t offset = self->cursor_offset;
        zqi_window_t *window = &self->window;
        const uint8_t *p =
            zqi_window_get (self, window, segment, offset, ZQI_REC_HEADER_SIZE, visible);
        zqi_rec_t rec;
        size_t need = ZQI_REC_HEADER_SIZE;
        int valid =
            p ? zqi_record_parse (p, need, self->salt, self->config.max_record_bytes, &rec, &need)
              : -1;
        if (valid == 0) {
            p = zqi_window_get (self, window, segment, offset, need, visible);
            valid = p ? zqi_record_parse (p, need, self->salt, self->config.max_record_bytes, &rec,
                                          &need)
                      : -1;
        }
        if (!p && errno != ENODATA)
            return -1;
        if (valid != 1)
            return s_damaged_record (self, segment, offset);
        self->cursor_offset += ZQI_REC_HEADER_SIZE + rec.length;
        if (rec.type == ZQI_REC_SEAL) {
            zqi_segment_close_reader (segment);
            self->cursor_segment++;
            self->cursor_offset = ZQI_SEG_HEADER_SIZE;
            continue;
        }
        if (rec.type != ZQI_REC_MESSAGE)
            continue;
        pthread_mutex_lock (&self->lock);
        bool acked = s_is_acked (self, rec.seq);
        pthread_mutex_unlock (&self->lock);
        if (acked || zhashx_lookup (self->in_flight, (void *)(uintptr_t)rec.seq))
            continue;
        zqi_location_t location = {rec.seq, segment->id, offset, rec.length};
        if (s_mark_in_flight (self, &location))
            return -1;
        record->seq = rec.seq;
        record->data = p + ZQI_REC_HEADER_SIZE;
        record->size = rec.length;
        return 0;
    }
}

int
zq_spool_next (zq_spool_t *self, zq_spool_record_t *record)
{
    if (!self || !record)
        return zqi_fail (EINVAL);
    pthread_mutex_lock (&self->read_lock);
    pthread_mutex_lock (&self->lock);
    int failed = self->failed;
    pthread_mutex_unlock (&self->lock);
    int rc = failed ? zqi_fail (failed) : s_next (self, record);
    if (rc == 0)
        self->stats.delivered++;
    pthread_mutex_unlock (&self->read_lock);
    return rc;
}

zq_msg_t *
zq_spool_next_msg (zq_spool_t *self, size_t max_size, uint64_t *seq_p)
{
    zq_spool_record_t record;
    if (zq_spool_next (self, &record))
        return NULL;
    if (seq_p)
        *seq_p = record.seq;
    const void *frames[1] = {record.data};
    size_t sizes[1] = {record.size};
    return zq_msg_decode_buffers (frames, sizes, 1, max_size);
}

int
zq_spool_ack (zq_spool_t *self, uint64_t seq)
{
    if (!self)
        return zqi_fail (EINVAL);
    pthread_mutex_lock (&self->read_lock);
    pthread_mutex_lock (&self->lock);
    int rc = 0;
    if (self->failed)
        rc = zqi_fail (self->failed);
    else if (seq == 0 || seq >= self->next_seq)
        rc = zqi_fail (ZQ_ENOTFOUND);
    else if (!s_is_acked (self, seq)) {
        //  Room in both sets first: an ack is taken whole or not at all
        //  (acked in memory but never logged, a retry would find it acked).
        if (zqi_rangeset_reserve (&self->acked, 1) ||
            zqi_rangeset_reserve (&self->pending_acks, 1) ||
            zqi_spool_ack_range (self, seq, seq + 1) ||
            zqi_rangeset_add (&self->pending_acks, seq, seq + 1))
            rc = -1;
        else {
            self->ack_epoch++;
            self->stats.acked++;
            s_reclaim (self);
        }
    }
    pthread_mutex_unlock (&self->lock);
    if (rc == 0)
        zhashx_delete (self->in_flight, (void *)(uintptr_t)seq);
    pthread_mutex_unlock (&self->read_lock);
    return rc;
}

int
zq_spool_return (zq_spool_t *self, uint64_t seq)
{
    if (!self)
        return zqi_fail (EINVAL);
    pthread_mutex_lock (&self->read_lock);
    int rc = 0;
    void *key = (void *)(uintptr_t)seq;
    zqi_location_t *location = (zqi_location_t *)zhashx_lookup (self->in_flight, key);
    if (!location)
        rc = zqi_fail (ZQ_ENOTFOUND);
    else if ((rc = s_ready_push (self, location)) == 0) {
        zhashx_delete (self->in_flight, key);
        self->stats.returned++;
    }
    pthread_mutex_unlock (&self->read_lock);
    return rc;
}

size_t
zq_spool_return_all (zq_spool_t *self)
{
    if (!self)
        return 0;
    pthread_mutex_lock (&self->read_lock);
    size_t count = 0;
    zqi_location_t *location = (zqi_location_t *)zhashx_first (self->in_flight);
    while (location) {
        if (s_ready_push (self, location) == 0)
            count++;
        location = (zqi_location_t *)zhashx_next (self->in_flight);
    }
    zhashx_purge (self->in_flight);
    self->stats.returned += count;
    pthread_mutex_unlock (&self->read_lock);
    return count;
}

void
zq_spool_stats (zq_spool_t *self, zq_spool_stats_t *stats)
{
    pthread_mutex_lock (&self->read_lock);
    pthread_mutex_lock (&self->lock);
    *stats = self->stats;
    stats->fsyncs = __atomic_load_n (&self->stats.fsyncs, __ATOMIC_RELAXED);
    stats->last_seq = self->next_seq - 1;
    stats->durable_seq = self->durable_seq;
    stats->depth = self->next_seq - self->ack_floor - self->acked_above;
    stats->in_flight = zhashx_size (self->in_flight);
    stats->segments = self->segment_count;
    stats->disk_bytes = self->disk_bytes;
    pthread_mutex_unlock (&self->lock);
    pthread_mutex_unlock (&self->read_lock);
}
