/*  =========================================================================
    zq_spool_store - the spool's segment I/O on files or memory:
    writing, syncing, reading and truncating segments, the read window,
    segment headers, ack-range records, creating and sealing segments.
    Formats and helpers are in zq_spool_format.c, recovery in
    zq_spool_recovery.c, the crash mode for tests in zq_spool_crash.c.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_spool_internal.h"
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

//  ---- Segment I/O -----------------------------------------------------------

char *
zqi_spool_segment_path (zq_spool_t *self, uint64_t id, const char *suffix)
{
    char *path = malloc (strlen (self->dir) + 40);
    if (path)
        sprintf (path, "%s/" ZQI_SEG_NAME "%s", self->dir, id, suffix);
    return path;
}

int
zqi_spool_write_all (int fd, const void *data, size_t size, uint64_t offset)
{
    const uint8_t *p = data;
    while (size) {
        ssize_t rc = pwrite (fd, p, size, (off_t)offset);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (rc == 0)
            return zqi_fail (ENOSPC);
        p += rc;
        size -= (size_t)rc;
        offset += (uint64_t)rc;
    }
    return 0;
}

int
zqi_segment_write (zq_spool_t *self, zqi_segment_t *segment, const void *data, size_t size)
{
    if (segment->memory) {
        if (segment->end + size > segment->memory_capacity)
            return zqi_fail (ENOSPC);
        memcpy (segment->memory + segment->end, data, size);
    } else if (zqi_spool_write_all (segment->wfd, data, size, segment->end))
        return -1;
    segment->end += size;
    return 0;
}

int
zqi_segment_sync (zq_spool_t *self, zqi_segment_t *segment)
{
    if (segment->memory) {
        segment->synced = segment->end;
        return 0;
    }
    if (zqi_spool_crash_point (self, segment))
        return zqi_fail (EIO);
    struct timespec before, after;
    clock_gettime (CLOCK_MONOTONIC, &before);
    if (fdatasync (segment->wfd))
        return -1;
    clock_gettime (CLOCK_MONOTONIC, &after);
    int64_t took_ns =
        (int64_t)(after.tv_sec - before.tv_sec) * 1000000000 + (after.tv_nsec - before.tv_nsec);
    zqi_spool_fsync_observe (took_ns > 0 ? (uint64_t)took_ns : 0);
    __atomic_add_fetch (&self->stats.fsyncs, 1, __ATOMIC_RELAXED);
    segment->synced = segment->end;
    return 0;
}

//  The process's fsync latency histogram (zq_internal.h): counters only,
//  shared by every spool, updated with atomic adds.
const double zqi_fsync_bounds_s[ZQI_FSYNC_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
static uint64_t s_fsync_counts[ZQI_FSYNC_BUCKETS + 1];
static uint64_t s_fsync_sum_ns;

void
zqi_spool_fsync_observe (uint64_t duration_ns)
{
    size_t bucket = 0;
    while (bucket < ZQI_FSYNC_BUCKETS && (double)duration_ns > zqi_fsync_bounds_s[bucket] * 1e9)
        bucket++;
    __atomic_add_fetch (&s_fsync_counts[bucket], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch (&s_fsync_sum_ns, duration_ns, __ATOMIC_RELAXED);
}

void
zqi_spool_fsync_histogram (uint64_t counts[ZQI_FSYNC_BUCKETS + 1], uint64_t *sum_ns_p)
{
    for (size_t bucket = 0; bucket <= ZQI_FSYNC_BUCKETS; bucket++)
        counts[bucket] = __atomic_load_n (&s_fsync_counts[bucket], __ATOMIC_RELAXED);
    *sum_ns_p = __atomic_load_n (&s_fsync_sum_ns, __ATOMIC_RELAXED);
}

int
zqi_segment_truncate (zq_spool_t *self, zqi_segment_t *segment, uint64_t size)
{
    if (!segment->memory && ftruncate (segment->wfd, (off_t)size))
        return -1;
    segment->end = size;
    if (segment->synced > size)
        segment->synced = size;
    if (segment->prepared > size)
        segment->prepared = size;
    return 0;
}

const uint8_t zqi_spool_zeros[ZQI_ZEROS_BYTES];

void
zqi_segment_prepare (zq_spool_t *self, zqi_segment_t *segment)
{
    //  Without fsyncs there is no inode write to spare.
    if (segment->memory || segment->wfd < 0 || segment->sealed ||
        self->config.fsync == ZQ_SPOOL_FSYNC_NONE)
        return;
    uint64_t from = zqi_segment_file_size (segment);
    uint64_t limit = segment->body_start + self->config.segment_bytes + ZQI_SEAL_SIZE;
    if (from - segment->end >= ZQI_PREPARE_BYTES / 2 || from >= limit)
        return;
    //  One block of zeros, given to the kernel as often as it takes: the
    //  process touches ZQI_ZEROS_BYTES, not ZQI_PREPARE_BYTES.
    struct iovec parts[ZQI_PREPARE_BYTES / ZQI_ZEROS_BYTES];
    uint64_t size = limit - from < ZQI_PREPARE_BYTES ? limit - from : ZQI_PREPARE_BYTES;
    int count = 0;
    for (uint64_t left = size; left; count++) {
        parts[count].iov_base = (void *)zqi_spool_zeros;
        parts[count].iov_len = left < ZQI_ZEROS_BYTES ? (size_t)left : ZQI_ZEROS_BYTES;
        left -= parts[count].iov_len;
    }
    ssize_t written = pwritev (segment->wfd, parts, count, (off_t)from);
    if (written > 0)
        segment->prepared = from + (uint64_t)written;
}

int
zqi_segment_trim (zq_spool_t *self, zqi_segment_t *segment)
{
    if (segment->memory || segment->wfd < 0 || segment->prepared <= segment->end)
        return 0;
    return zqi_segment_truncate (self, segment, segment->end);
}

static int
s_segment_rfd (zq_spool_t *self, zqi_segment_t *segment)
{
    if (segment->rfd < 0) {
        char *path = zqi_spool_segment_path (self, segment->id, "");
        if (!path)
            return -1;
        segment->rfd = open (path, O_RDONLY | O_CLOEXEC);
        free (path);
    }
    return segment->rfd;
}

ssize_t
zqi_segment_read (zq_spool_t *self, zqi_segment_t *segment, uint64_t offset, void *data,
                  size_t size)
{
    if (segment->memory) {
        if (offset >= segment->memory_capacity)
            return 0;
        if (offset + size > segment->memory_capacity)
            size = (size_t)(segment->memory_capacity - offset);
        memcpy (data, segment->memory + offset, size);
        return (ssize_t)size;
    }
    int fd = s_segment_rfd (self, segment);
    if (fd < 0)
        return -1;
    size_t done = 0;
    while (done < size) {
        ssize_t rc = pread (fd, (uint8_t *)data + done, size - done, (off_t)(offset + done));
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (rc == 0)
            break;
        done += (size_t)rc;
    }
    return (ssize_t)done;
}

const uint8_t *
zqi_window_get (zq_spool_t *self, zqi_window_t *window, zqi_segment_t *segment, uint64_t offset,
                size_t size, uint64_t end)
{
    if (offset + size > end) {
        errno = ENODATA;
        return NULL;
    }
    if (window->segment == segment && offset >= window->offset &&
        offset + size <= window->offset + window->buf.size)
        return window->buf.data + (offset - window->offset);
    size_t want = size > 256 * 1024 ? size : 256 * 1024;
    if (offset + want > end)
        want = (size_t)(end - offset);
    window->segment = NULL;
    window->buf.size = 0;
    if (zqi_buf_reserve (&window->buf, want))
        return NULL;
    ssize_t got = zqi_segment_read (self, segment, offset, window->buf.data, want);
    if (got < 0)
        return NULL;
    window->segment = segment;
    window->offset = offset;
    window->buf.size = (size_t)got;
    if ((size_t)got < size) {
        errno = ENODATA;
        return NULL;
    }
    return window->buf.data;
}

void
zqi_segment_close (zqi_segment_t *segment)
{
    if (segment->wfd >= 0)
        close (segment->wfd);
    if (segment->rfd >= 0)
        close (segment->rfd);
    segment->wfd = segment->rfd = -1;
}

void
zqi_segment_close_reader (zqi_segment_t *segment)
{
    if (segment->rfd >= 0) {
        close (segment->rfd);
        segment->rfd = -1;
    }
}

void
zqi_segment_remove (zq_spool_t *self, zqi_segment_t *segment, bool unlink_file)
{
    zqi_segment_close (segment);
    if (segment->memory)
        free (segment->memory);
    else if (unlink_file) {
        char *path = zqi_spool_segment_path (self, segment->id, "");
        if (path && unlink (path) && errno != ENOENT)
            zqi_log (ZQ_LOG_WARNING, "zq_spool: cannot delete %s: %s", path, strerror (errno));
        free (path);
    }
    if (self->window.segment == segment)
        self->window.segment = NULL;
    free (segment);
}

zqi_segment_t *
zqi_spool_segment_alloc (uint64_t id)
{
    zqi_segment_t *segment = calloc (1, sizeof (zqi_segment_t));
    if (segment) {
        segment->id = id;
        segment->wfd = segment->rfd = -1;
    }
    return segment;
}

static void
s_header_put (uint8_t *p, uint64_t id, uint64_t first_seq, uint64_t base_lsn, uint64_t salt)
{
    memset (p, 0, ZQI_SEG_HEADER_SIZE);
    memcpy (p + ZQI_SEG_AT_MAGIC, ZQI_SEG_MAGIC, 8);
    zqi_store_le (p + ZQI_SEG_AT_VERSION, ZQ_SPOOL_FORMAT_VERSION, 4);
    zqi_store_le (p + ZQI_SEG_AT_HEADER_SIZE, ZQI_SEG_HEADER_SIZE, 4);
    zqi_store_le (p + ZQI_SEG_AT_ID, id, 8);
    zqi_store_le (p + ZQI_SEG_AT_FIRST_SEQ, first_seq, 8);
    zqi_store_le (p + ZQI_SEG_AT_BASE_LSN, base_lsn, 8);
    zqi_store_le (p + ZQI_SEG_AT_SALT, salt, 8);
    zqi_store_le (p + ZQI_SEG_AT_CREATED, (uint64_t)zclock_time (), 8);
    zqi_store_le (p + ZQI_SEG_AT_CHECK, XXH3_64bits (p, ZQI_SEG_AT_CHECK), 8);
}

//  Checks a segment header; returns 0, or -1 with errno ZQ_ECORRUPT (or
//  ZQ_EVERSION for another format version).
int
zqi_spool_header_parse (const uint8_t *p, uint64_t *id_p, uint64_t *first_seq_p,
                        uint64_t *base_lsn_p, uint64_t *salt_p)
{
    if (memcmp (p + ZQI_SEG_AT_MAGIC, ZQI_SEG_MAGIC, 8) ||
        zqi_load_le (p + ZQI_SEG_AT_CHECK, 8) != XXH3_64bits (p, ZQI_SEG_AT_CHECK))
        return zqi_fail (ZQ_ECORRUPT);
    if (zqi_load_le (p + ZQI_SEG_AT_VERSION, 4) != ZQ_SPOOL_FORMAT_VERSION ||
        zqi_load_le (p + ZQI_SEG_AT_HEADER_SIZE, 4) != ZQI_SEG_HEADER_SIZE)
        return zqi_fail (ZQ_EVERSION);
    *id_p = zqi_load_le (p + ZQI_SEG_AT_ID, 8);
    *first_seq_p = zqi_load_le (p + ZQI_SEG_AT_FIRST_SEQ, 8);
    *base_lsn_p = zqi_load_le (p + ZQI_SEG_AT_BASE_LSN, 8);
    *salt_p = zqi_load_le (p + ZQI_SEG_AT_SALT, 8);
    return 0;
}

//  Encodes a list of ranges as count (4) + reserved (4) + pairs.
int
zqi_ranges_put (zqi_buf_t *buf, const zqi_range_t *items, size_t count)
{
    if (zqi_buf_reserve (buf, 8 + count * 16))
        return -1;
    uint8_t *p = buf->data + buf->size;
    zqi_store_le (p, count, 4);
    zqi_store_le (p + 4, 0, 4);
    p += 8;
    for (size_t i = 0; i < count; i++, p += 16) {
        zqi_store_le (p, items[i].start, 8);
        zqi_store_le (p + 8, items[i].end, 8);
    }
    buf->size += 8 + count * 16;
    return 0;
}

size_t
zqi_ranges_per_record (const zq_spool_t *self)
{
    //  An ack payload is count (4) | 0 (4) | 16 per range; a checkpoint
    //  has floor (8) | last seq (8) before that.
    uint64_t bound = (uint64_t)self->config.max_record_bytes + ZQI_CONTROL_EXTRA;
    uint64_t ranges = (bound - 8) / 16;
    return ranges > ZQI_RANGES_PER_RECORD_MAX ? ZQI_RANGES_PER_RECORD_MAX : (size_t)ranges;
}

uint64_t
zqi_ranges_disk_bytes (const zq_spool_t *self, size_t count)
{
    size_t per_record = zqi_ranges_per_record (self) - 1;
    uint64_t records = count / per_record + 1;
    return (uint64_t)count * 16 + records * (ZQI_REC_HEADER_SIZE + 24);
}

int
zqi_ack_records_put (const zq_spool_t *self, zqi_buf_t *buf, zqi_buf_t *scratch,
                     const zqi_range_t *items, size_t count, uint64_t seq, uint64_t claim)
{
    size_t per_record = zqi_ranges_per_record (self);
    while (count) {
        size_t chunk = count < per_record ? count : per_record;
        scratch->size = 0;
        if (zqi_ranges_put (scratch, items, chunk) ||
            zqi_record_put (buf, self->salt, ZQI_REC_ACK, seq, claim, scratch->data, scratch->size))
            return -1;
        items += chunk;
        count -= chunk;
    }
    return 0;
}

//  Reads ranges written by s_ranges_put and acks them. Returns 0 or -1
//  (ZQ_ECORRUPT if the payload does not hold what it says).
int
zqi_spool_ranges_apply (zq_spool_t *self, const uint8_t *p, size_t size)
{
    if (size < 8)
        return zqi_fail (ZQ_ECORRUPT);
    uint64_t count = zqi_load_le (p, 4);
    if (count != (size - 8) / 16 || (size - 8) % 16)
        return zqi_fail (ZQ_ECORRUPT);
    p += 8;
    for (uint64_t i = 0; i < count; i++, p += 16) {
        uint64_t start = zqi_load_le (p, 8), end = zqi_load_le (p + 8, 8);
        if (start > end || zqi_spool_ack_range (self, start, end))
            return -1;
    }
    return 0;
}

static int
s_dir_sync (zq_spool_t *self)
{
    if (zqi_spool_crash_point (self, NULL))
        return zqi_fail (EIO);
    return fsync (self->dir_fd);
}

zqi_segment_t *
zqi_segment_create (zq_spool_t *self, uint64_t first_seq, uint64_t base_lsn,
                    const zqi_rangeset_t *acked, uint64_t ack_floor, uint64_t last_seq, size_t room)
{
    if (!self->next_segment_id) {
        //  Ids do not wrap: id 1 may still be in use, or set aside.
        zqi_log (ZQ_LOG_ERROR, "zq_spool: %s: no segment id left after " ZQI_SEG_NAME,
                 self->dir ? self->dir : "(memory)", UINT64_MAX);
        errno = EOVERFLOW;
        return NULL;
    }
    zqi_segment_t *segment = zqi_spool_segment_alloc (self->next_segment_id);
    zqi_buf_t buf = {NULL, 0, 0};
    zqi_buf_t payload = {NULL, 0, 0};
    char *path = NULL, *temp = NULL;
    if (!segment || zqi_buf_reserve (&buf, ZQI_SEG_HEADER_SIZE))
        goto fail;
    segment->first_seq = first_seq;
    segment->last_seq = first_seq - 1;
    segment->base_lsn = base_lsn;
    s_header_put (buf.data, segment->id, first_seq, base_lsn, self->salt);
    buf.size = ZQI_SEG_HEADER_SIZE;
    //  The checkpoint: the ack state as it was when the segment began, so
    //  that recovery needs only the newest segment to rebuild it. It holds
    //  as many ranges as one record may; ack records right after it hold
    //  the rest. They are all synced before the file gets its name, so
    //  they are found together or not at all.
    if (zqi_buf_reserve (&payload, ZQI_CHECKPOINT_HEAD))
        goto fail;
    zqi_store_le (payload.data + ZQI_CHECKPOINT_AT_FLOOR, ack_floor, 8);
    zqi_store_le (payload.data + ZQI_CHECKPOINT_AT_LAST_SEQ, last_seq, 8);
    payload.size = ZQI_CHECKPOINT_HEAD;
    size_t first = zqi_ranges_per_record (self) - 1;
    if (first > acked->count)
        first = acked->count;
    //  (No ranges yet, as in a new spool: items is NULL, and NULL + 0 is
    //  undefined in C.)
    const zqi_range_t *rest = first < acked->count ? acked->items + first : NULL;
    if (zqi_ranges_put (&payload, acked->items, first) ||
        zqi_record_put (&buf, self->salt, ZQI_REC_CHECKPOINT, last_seq, base_lsn, payload.data,
                        payload.size) ||
        zqi_ack_records_put (self, &buf, &payload, rest, acked->count - first, last_seq, base_lsn))
        goto fail;
    segment->body_start = buf.size;

    if (!self->dir) {
        size_t capacity = buf.size + self->config.segment_bytes;
        if (capacity < buf.size + room + self->config.batch_bytes + ZQI_SEAL_SIZE)
            capacity = buf.size + room + self->config.batch_bytes + ZQI_SEAL_SIZE;
        segment->memory = malloc (capacity);
        if (!segment->memory)
            goto fail;
        segment->memory_capacity = capacity;
        memcpy (segment->memory, buf.data, buf.size);
        segment->end = segment->synced = buf.size;
    } else {
        //  Written under a temporary name and renamed once synced: a
        //  segment file under its real name always has a good header.
        path = zqi_spool_segment_path (self, segment->id, "");
        temp = zqi_spool_segment_path (self, segment->id, ".tmp");
        if (!path || !temp)
            goto fail;
        segment->wfd = open (temp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (segment->wfd < 0)
            goto fail;
        if (zqi_spool_write_all (segment->wfd, buf.data, buf.size, 0)) {
            int saved = errno;
            unlink (temp);
            errno = saved;
            goto fail;
        }
        segment->end = buf.size;
        zqi_segment_prepare (self, segment);
        if (zqi_spool_crash_point (self, NULL)) {
            zqi_spool_crash_file (self, segment->wfd, 0, segment->end,
                                  zqi_segment_file_size (segment));
            errno = EIO;
            goto fail;
        }
        //  Never over a file of that name (the id is past every one
        //  recovery listed, and the directory is locked: a guard).
        struct stat existing;
        if (lstat (path, &existing) == 0) {
            unlink (temp);
            errno = EEXIST;
            goto fail;
        }
        if (fdatasync (segment->wfd) || rename (temp, path)) {
            int saved = errno;
            unlink (temp);
            errno = saved;
            goto fail;
        }
        __atomic_add_fetch (&self->stats.fsyncs, 1, __ATOMIC_RELAXED);
        segment->synced = segment->end;
        if (s_dir_sync (self)) {
            int saved = errno;
            //  In the crash mode a lost rename is one possible outcome.
            if (self->failed && self->crash_mode == ZQI_CRASH_DROP) {
                if (rename (path, temp)) {
                }
            } else if (!self->failed)
                unlink (path);
            errno = saved;
            goto fail;
        }
    }
    self->next_segment_id++;
    segment->visible = segment->end;
    zqi_buf_free (&buf);
    zqi_buf_free (&payload);
    free (path);
    free (temp);
    return segment;

fail : {
    int saved = errno;
    if (segment) {
        zqi_segment_close (segment);
        free (segment->memory);
        free (segment);
    }
    zqi_buf_free (&buf);
    zqi_buf_free (&payload);
    free (path);
    free (temp);
    errno = saved;
    return NULL;
}
}

int
zqi_segment_seal (zq_spool_t *self, zqi_segment_t *segment)
{
    uint8_t payload[ZQI_SEAL_PAYLOAD];
    zqi_store_le (payload + ZQI_SEAL_AT_FIRST_SEQ, segment->first_seq, 8);
    zqi_store_le (payload + ZQI_SEAL_AT_LAST_SEQ, segment->last_seq, 8);
    zqi_store_le (payload + ZQI_SEAL_AT_COUNT, segment->last_seq + 1 - segment->first_seq, 8);
    zqi_store_le (payload + ZQI_SEAL_AT_OFFSET, segment->end, 8);
    uint8_t record[ZQI_SEAL_SIZE];
    zqi_buf_t buf = {record, 0, sizeof record};
    //  Its claim is what was synced before it: the seal and the records
    //  before it are synced together.
    zqi_record_put (&buf, self->salt, ZQI_REC_SEAL, segment->last_seq,
                    segment->base_lsn + segment->synced - ZQI_SEG_HEADER_SIZE, payload,
                    sizeof payload);
    //  The seal is the file's last 64 bytes (recovery finds it there):
    //  the zeros prepared past the records go first, so that no crash
    //  leaves zeros after a seal.
    if (zqi_segment_trim (self, segment))
        return -1;
    uint64_t before = segment->end;
    if (zqi_segment_write (self, segment, record, sizeof record)) {
        int saved = errno;
        if (!self->failed && zqi_segment_truncate (self, segment, before))
            self->failed = errno;
        errno = saved;
        return -1;
    }
    if (zqi_segment_sync (self, segment))
        return -1;
    segment->sealed = true;
    if (segment->wfd >= 0) {
        close (segment->wfd);
        segment->wfd = -1;
    }
    return 0;
}
