/*  =========================================================================
    zq_spool - a durable FIFO of records: configuration, the in-flight
    table and ready heap, refusals, open and close, reclaim and stats.
    The write side (group commit, appending) is in zq_spool_write.c, the
    delivery cursor and acks in zq_spool_read.c; the storage itself
    (formats, segment files, recovery) in zq_spool_format.c,
    zq_spool_store.c and zq_spool_recovery.c. doc/SPOOL.md specifies them.

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

//  ---- Ready heap: returned records, lowest seq first -------------------------

int
zqi_spool_ready_push (zq_spool_t *self, const zqi_location_t *location)
{
    void *items = self->ready;
    if (zqi_array_reserve (&items, &self->ready_capacity, self->ready_count + 1,
                           sizeof (zqi_location_t), 64))
        return -1;
    self->ready = (zqi_location_t *)items;
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

void
zqi_spool_ready_pop (zq_spool_t *self)
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
void
zqi_spool_refuse (zq_spool_t *self, uint64_t start, uint64_t end, int errnum)
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
int
zqi_spool_refused_errno (zq_spool_t *self, uint64_t seq)
{
    for (size_t i = self->refused_count; i > 0; i--)
        if (seq >= self->refused[i - 1].start && seq < self->refused[i - 1].end)
            return self->refused_errno[i - 1];
    return 0;
}

//  First refusal errno for a seq in [start, end], or 0.
int
zqi_spool_refused_between (zq_spool_t *self, uint64_t start, uint64_t end)
{
    for (size_t i = 0; i < self->refused_count; i++)
        if (self->refused[i].start <= end && self->refused[i].end > start)
            return self->refused_errno[i];
    return 0;
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
void
zqi_spool_reclaim (zq_spool_t *self)
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

    self->refused = malloc (S_REFUSED_MAX * sizeof (zqi_range_t));
    self->refused_errno = malloc (S_REFUSED_MAX * sizeof (int));
    self->segments = malloc (16 * sizeof (zqi_segment_t *));
    self->segment_capacity = 16;
    if (!self->refused || !self->refused_errno || !self->segments ||
        zqi_buf_reserve (&self->fill, self->config.batch_bytes) ||
        zqi_buf_reserve (&self->flight, self->config.batch_bytes)) {
        errno = ENOMEM;
        goto fail;
    }

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
        zqi_spool_account (self);
    }
    zqi_segment_t *tail = zqi_spool_tail (self);
    //  What a previous process wrote may still be only in the page cache
    //  (recovery took the file as it found it: synced is its end).
    if (!tail->sealed && zqi_segment_sync (self, tail))
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
    zqi_spool_reclaim (self);
    self->cursor_segment = self->segments[0]->id;
    self->cursor_offset = ZQI_SEG_HEADER_SIZE;
    self->last_sync_ms = zclock_mono ();

    if (self->config.fsync == ZQ_SPOOL_FSYNC_INTERVAL) {
        if (pthread_create (&self->thread, NULL, zqi_spool_sync_thread, self)) {
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
        if (zqi_spool_flush (self, true))
            zqi_log (ZQ_LOG_ERROR, "zq_spool: final write failed: %s", zq_strerror (errno));
        //  A clean close leaves the newest file as long as its records
        //  (not synced: zeros a crash leaves are taken for the log's end).
        else if (zqi_segment_trim (self, zqi_spool_tail (self)))
            zqi_log (ZQ_LOG_ERROR, "zq_spool: cutting the space prepared for records failed: %s",
                     zq_strerror (errno));
        pthread_mutex_unlock (&self->lock);
    }
    for (size_t i = 0; i < self->segment_count; i++)
        zqi_segment_remove (self, self->segments[i], false);
    free (self->segments);
    zqi_buf_free (&self->fill);
    zqi_buf_free (&self->flight);
    zqi_buf_free (&self->recent);
    zqi_buf_free (&self->retired);
    zqi_buf_free (&self->ack_payload);
    zqi_buf_free (&self->window.buf);
    zqi_rangeset_free (&self->pending_acks);
    zqi_rangeset_free (&self->flight_acks);
    zqi_rangeset_free (&self->acked);
    zqi_flight_free (&self->in_flight);
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
    stats->in_flight = self->in_flight.count;
    stats->segments = self->segment_count;
    stats->disk_bytes = self->disk_bytes;
    pthread_mutex_unlock (&self->lock);
    pthread_mutex_unlock (&self->read_lock);
}
