/*  =========================================================================
    zq_spool_store - the spool's storage: the record and segment formats
    (doc/SPOOL.md), segment I/O on files or memory, the crash mode for
    tests, and recovery of a spool directory at open.

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
#include <unistd.h>
#include <xxhash.h>

//  ---- Little helpers -------------------------------------------------------

uint64_t
zqi_load_le (const uint8_t *p, int width)
{
    uint64_t value = 0;
    for (int i = width - 1; i >= 0; i--)
        value = (value << 8) | p[i];
    return value;
}

void
zqi_store_le (uint8_t *p, uint64_t value, int width)
{
    for (int i = 0; i < width; i++) {
        p[i] = (uint8_t)value;
        value >>= 8;
    }
}

//  Adds [start, end) to the set; returns how many seqs were new in
//  *added_p. Returns 0 or -1 with ENOMEM.
static int
s_rangeset_add (zqi_rangeset_t *set, uint64_t start, uint64_t end, uint64_t *added_p)
{
    uint64_t added = 0;
    if (start >= end)
        goto done;
    //  First range whose end >= start (it may touch or overlap).
    size_t low = 0, high = set->count;
    while (low < high) {
        size_t mid = (low + high) / 2;
        if (set->items[mid].end < start)
            low = mid + 1;
        else
            high = mid;
    }
    size_t first = low;
    size_t last = first; //  one past the last range merged
    uint64_t new_start = start, new_end = end;
    uint64_t covered = 0;
    while (last < set->count && set->items[last].start <= end) {
        zqi_range_t *range = &set->items[last];
        uint64_t overlap_start = range->start > start ? range->start : start;
        uint64_t overlap_end = range->end < end ? range->end : end;
        if (overlap_end > overlap_start)
            covered += overlap_end - overlap_start;
        if (range->start < new_start)
            new_start = range->start;
        if (range->end > new_end)
            new_end = range->end;
        last++;
    }
    added = (end - start) - covered;
    if (last == first) {
        if (set->count == set->capacity) {
            size_t capacity = set->capacity ? set->capacity * 2 : 16;
            zqi_range_t *items = realloc (set->items, capacity * sizeof (zqi_range_t));
            if (!items)
                return zqi_fail (ENOMEM);
            set->items = items;
            set->capacity = capacity;
        }
        memmove (set->items + first + 1, set->items + first,
                 (set->count - first) * sizeof (zqi_range_t));
        set->count++;
    } else if (last > first + 1) {
        memmove (set->items + first + 1, set->items + last,
                 (set->count - last) * sizeof (zqi_range_t));
        set->count -= last - first - 1;
    }
    set->items[first].start = new_start;
    set->items[first].end = new_end;
done:
    if (added_p)
        *added_p = added;
    return 0;
}

int
zqi_rangeset_reserve (zqi_rangeset_t *set, size_t extra)
{
    if (set->capacity - set->count >= extra)
        return 0;
    size_t capacity = set->capacity ? set->capacity : 16;
    while (capacity - set->count < extra)
        capacity *= 2;
    zqi_range_t *items = realloc (set->items, capacity * sizeof (zqi_range_t));
    if (!items)
        return zqi_fail (ENOMEM);
    set->items = items;
    set->capacity = capacity;
    return 0;
}

int
zqi_rangeset_add (zqi_rangeset_t *set, uint64_t start, uint64_t end)
{
    return s_rangeset_add (set, start, end, NULL);
}

bool
zqi_rangeset_has (const zqi_rangeset_t *set, uint64_t seq)
{
    size_t low = 0, high = set->count;
    while (low < high) {
        size_t mid = (low + high) / 2;
        if (set->items[mid].end <= seq)
            low = mid + 1;
        else
            high = mid;
    }
    return low < set->count && set->items[low].start <= seq;
}

void
zqi_rangeset_free (zqi_rangeset_t *set)
{
    free (set->items);
    set->items = NULL;
    set->count = set->capacity = 0;
}

int
zqi_spool_ack_range (zq_spool_t *self, uint64_t start, uint64_t end)
{
    if (start < self->ack_floor)
        start = self->ack_floor;
    if (start >= end)
        return 0;
    uint64_t added;
    if (s_rangeset_add (&self->acked, start, end, &added))
        return -1;
    self->acked_above += added;
    //  Fold ranges that reach the floor into it.
    size_t folded = 0;
    while (folded < self->acked.count && self->acked.items[folded].start <= self->ack_floor) {
        zqi_range_t *range = &self->acked.items[folded];
        self->acked_above -= range->end - range->start;
        if (range->end > self->ack_floor)
            self->ack_floor = range->end;
        folded++;
    }
    if (folded) {
        memmove (self->acked.items, self->acked.items + folded,
                 (self->acked.count - folded) * sizeof (zqi_range_t));
        self->acked.count -= folded;
    }
    //  Gaps filled give their memory back: a set that grew to millions of
    //  ranges does not keep its peak once the consumer catches up.
    if (self->acked.capacity > 1024 && self->acked.count < self->acked.capacity / 4) {
        size_t capacity = self->acked.capacity / 2;
        zqi_range_t *items = realloc (self->acked.items, capacity * sizeof (zqi_range_t));
        if (items) {
            self->acked.items = items;
            self->acked.capacity = capacity;
        }
    }
    return 0;
}

//  ---- Records ---------------------------------------------------------------
//  A record: checksum (8) | 'z' 'r' | type (1) | flags (1) | length (4) |
//  seq (8) | claim (8) | payload (length). The checksum is XXH3-64 seeded
//  with the spool's salt over everything after it.

int
zqi_record_put (zqi_buf_t *buf, uint64_t salt, zqi_rec_type_t type, uint64_t seq, uint64_t claim,
                const void *payload, size_t size)
{
    if (zqi_buf_reserve (buf, ZQI_REC_HEADER_SIZE + size))
        return -1;
    uint8_t *p = buf->data + buf->size;
    p[8] = ZQI_REC_MAGIC0;
    p[9] = ZQI_REC_MAGIC1;
    p[10] = (uint8_t)type;
    p[11] = 0;
    zqi_store_le (p + 12, size, 4);
    zqi_store_le (p + 16, seq, 8);
    zqi_store_le (p + 24, claim, 8);
    if (size)
        memcpy (p + ZQI_REC_HEADER_SIZE, payload, size);
    zqi_store_le (p, XXH3_64bits_withSeed (p + 8, ZQI_REC_HEADER_SIZE - 8 + size, salt), 8);
    buf->size += ZQI_REC_HEADER_SIZE + size;
    return 0;
}

int
zqi_record_parse (const uint8_t *data, size_t avail, uint64_t salt, uint32_t max_length,
                  zqi_rec_t *rec, size_t *need_p)
{
    if (avail < ZQI_REC_HEADER_SIZE) {
        *need_p = ZQI_REC_HEADER_SIZE;
        return 0;
    }
    if (data[8] != ZQI_REC_MAGIC0 || data[9] != ZQI_REC_MAGIC1 || data[11] != 0)
        return -1;
    rec->type = data[10];
    if (rec->type < ZQI_REC_MESSAGE || rec->type > ZQI_REC_SEAL)
        return -1;
    rec->length = (uint32_t)zqi_load_le (data + 12, 4);
    //  Control records are never larger than a message may be plus their
    //  own fixed part (writers split them to stay within it); anything
    //  larger is damage, not a reason to allocate.
    if (rec->length > (uint64_t)max_length + ZQI_CONTROL_EXTRA)
        return -1;
    if (avail < ZQI_REC_HEADER_SIZE + (size_t)rec->length) {
        *need_p = ZQI_REC_HEADER_SIZE + (size_t)rec->length;
        return 0;
    }
    rec->checksum = zqi_load_le (data, 8);
    rec->seq = zqi_load_le (data + 16, 8);
    rec->claim = zqi_load_le (data + 24, 8);
    if (XXH3_64bits_withSeed (data + 8, ZQI_REC_HEADER_SIZE - 8 + rec->length, salt) !=
        rec->checksum)
        return -1;
    return 1;
}

//  ---- Segment I/O -----------------------------------------------------------

static char *
s_segment_path (zq_spool_t *self, uint64_t id, const char *suffix)
{
    char *path = malloc (strlen (self->dir) + 40);
    if (path)
        sprintf (path, "%s/%016" PRIx64 ".zqs%s", self->dir, id, suffix);
    return path;
}

static int
s_write_all (int fd, const void *data, size_t size, uint64_t offset)
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

static uint64_t
s_random (uint64_t *state)
{
    //  xorshift64*: only for the crash mode's choices.
    uint64_t x = *state ? *state : 0x9E3779B97F4A7C15ULL;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

//  Applies the crash mode to one file whose bytes [synced, end) were not
//  synced.
static void
s_crash_file (zq_spool_t *self, int fd, uint64_t synced, uint64_t end)
{
    if (fd < 0 || end <= synced)
        return;
    uint64_t unsynced = end - synced;
    uint8_t garbage[512];
    switch (self->crash_mode) {
        case ZQI_CRASH_DROP:
            if (ftruncate (fd, (off_t)synced)) {
            }
            break;
        case ZQI_CRASH_TEAR: {
            uint64_t keep = s_random (&self->crash_rng) % (unsynced + 1);
            if (ftruncate (fd, (off_t)(synced + keep))) {
            }
            break;
        }
        case ZQI_CRASH_GARBLE: {
            uint64_t keep = s_random (&self->crash_rng) % (unsynced + 1);
            uint64_t length = s_random (&self->crash_rng) % (unsynced - keep + 600);
            uint64_t offset = synced + keep;
            if (ftruncate (fd, (off_t)offset)) {
            }
            while (length) {
                size_t chunk = length < sizeof garbage ? (size_t)length : sizeof garbage;
                for (size_t i = 0; i < chunk; i++)
                    garbage[i] = (uint8_t)s_random (&self->crash_rng);
                if (s_write_all (fd, garbage, chunk, offset))
                    break;
                offset += chunk;
                length -= chunk;
            }
            break;
        }
        case ZQI_CRASH_SECTORS: {
            //  Sectors reach the disk in any order: each is kept, zeroed
            //  or garbled, and the file may end anywhere after synced.
            uint64_t offset = synced;
            while (offset < end) {
                uint64_t next = (offset / 512 + 1) * 512;
                if (next > end)
                    next = end;
                size_t chunk = (size_t)(next - offset);
                int choice = (int)(s_random (&self->crash_rng) % 3);
                if (choice > 0) {
                    for (size_t i = 0; i < chunk; i++)
                        garbage[i] = choice == 1 ? 0 : (uint8_t)s_random (&self->crash_rng);
                    if (s_write_all (fd, garbage, chunk, offset))
                        break;
                }
                offset = next;
            }
            if (s_random (&self->crash_rng) % 2) {
                uint64_t keep = s_random (&self->crash_rng) % (unsynced + 1);
                if (ftruncate (fd, (off_t)(synced + keep))) {
                }
            }
            break;
        }
        default:
            break;
    }
}

//  The crash: the unsynced bytes of the segment being written meet the
//  crash mode (the other segments were synced when sealed), and the
//  spool fails from now on.
static void
s_crash_now (zq_spool_t *self, zqi_segment_t *segment)
{
    if (segment && !segment->memory) {
        s_crash_file (self, segment->wfd, segment->synced, segment->end);
        segment->end = segment->synced;
    }
    self->failed = EIO;
    zqi_log (ZQ_LOG_DEBUG, "zq_spool: crash mode: crashed at sync %d (mode %d)", self->sync_count,
             self->crash_mode);
}

void
zqi_spool_set_crash (zq_spool_t *self, int at_sync, int mode, uint64_t seed)
{
    pthread_mutex_lock (&self->lock);
    self->crash_at_sync = at_sync;
    self->crash_mode = mode;
    self->crash_rng = seed * 0x9E3779B97F4A7C15ULL + 1;
    self->sync_count = 0;
    pthread_mutex_unlock (&self->lock);
}

int
zqi_spool_crash_point (zq_spool_t *self, zqi_segment_t *segment)
{
    if (self->failed)
        return 1;
    if (!self->crash_at_sync)
        return 0;
    if (++self->sync_count < self->crash_at_sync)
        return 0;
    s_crash_now (self, segment);
    return 1;
}

int
zqi_segment_write (zq_spool_t *self, zqi_segment_t *segment, const void *data, size_t size)
{
    if (segment->memory) {
        if (segment->end + size > segment->memory_capacity)
            return zqi_fail (ENOSPC);
        memcpy (segment->memory + segment->end, data, size);
    } else if (s_write_all (segment->wfd, data, size, segment->end))
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
    if (fdatasync (segment->wfd))
        return -1;
    __atomic_add_fetch (&self->stats.fsyncs, 1, __ATOMIC_RELAXED);
    segment->synced = segment->end;
    return 0;
}

int
zqi_segment_truncate (zq_spool_t *self, zqi_segment_t *segment, uint64_t size)
{
    if (!segment->memory && ftruncate (segment->wfd, (off_t)size))
        return -1;
    segment->end = size;
    if (segment->synced > size)
        segment->synced = size;
    return 0;
}

static int
s_segment_rfd (zq_spool_t *self, zqi_segment_t *segment)
{
    if (segment->rfd < 0) {
        char *path = s_segment_path (self, segment->id, "");
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
        char *path = s_segment_path (self, segment->id, "");
        if (path && unlink (path) && errno != ENOENT)
            zqi_log (ZQ_LOG_WARNING, "zq_spool: cannot delete %s: %s", path, strerror (errno));
        free (path);
    }
    if (self->window.segment == segment)
        self->window.segment = NULL;
    free (segment);
}

static zqi_segment_t *
s_segment_alloc (uint64_t id)
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
    memcpy (p, ZQI_SEG_MAGIC, 8);
    zqi_store_le (p + 8, ZQ_SPOOL_FORMAT_VERSION, 4);
    zqi_store_le (p + 12, ZQI_SEG_HEADER_SIZE, 4);
    zqi_store_le (p + 16, id, 8);
    zqi_store_le (p + 24, first_seq, 8);
    zqi_store_le (p + 32, base_lsn, 8);
    zqi_store_le (p + 40, salt, 8);
    zqi_store_le (p + 48, (uint64_t)zclock_time (), 8);
    zqi_store_le (p + 56, XXH3_64bits (p, 56), 8);
}

//  Checks a segment header; returns 0, or -1 with errno ZQ_ECORRUPT (or
//  ZQ_EVERSION for another format version).
static int
s_header_parse (const uint8_t *p, uint64_t *id_p, uint64_t *first_seq_p, uint64_t *base_lsn_p,
                uint64_t *salt_p)
{
    if (memcmp (p, ZQI_SEG_MAGIC, 8) || zqi_load_le (p + 56, 8) != XXH3_64bits (p, 56))
        return zqi_fail (ZQ_ECORRUPT);
    if (zqi_load_le (p + 8, 4) != ZQ_SPOOL_FORMAT_VERSION ||
        zqi_load_le (p + 12, 4) != ZQI_SEG_HEADER_SIZE)
        return zqi_fail (ZQ_EVERSION);
    *id_p = zqi_load_le (p + 16, 8);
    *first_seq_p = zqi_load_le (p + 24, 8);
    *base_lsn_p = zqi_load_le (p + 32, 8);
    *salt_p = zqi_load_le (p + 40, 8);
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
static int
s_ranges_apply (zq_spool_t *self, const uint8_t *p, size_t size)
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
    zqi_segment_t *segment = s_segment_alloc (self->next_segment_id);
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
    if (zqi_buf_reserve (&payload, 16))
        goto fail;
    zqi_store_le (payload.data, ack_floor, 8);
    zqi_store_le (payload.data + 8, last_seq, 8);
    payload.size = 16;
    size_t first = zqi_ranges_per_record (self) - 1;
    if (first > acked->count)
        first = acked->count;
    if (zqi_ranges_put (&payload, acked->items, first) ||
        zqi_record_put (&buf, self->salt, ZQI_REC_CHECKPOINT, last_seq, base_lsn, payload.data,
                        payload.size) ||
        zqi_ack_records_put (self, &buf, &payload, acked->items + first, acked->count - first,
                             last_seq, base_lsn))
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
        path = s_segment_path (self, segment->id, "");
        temp = s_segment_path (self, segment->id, ".tmp");
        if (!path || !temp)
            goto fail;
        segment->wfd = open (temp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (segment->wfd < 0)
            goto fail;
        if (s_write_all (segment->wfd, buf.data, buf.size, 0)) {
            int saved = errno;
            unlink (temp);
            errno = saved;
            goto fail;
        }
        segment->end = buf.size;
        if (zqi_spool_crash_point (self, NULL)) {
            s_crash_file (self, segment->wfd, 0, segment->end);
            errno = EIO;
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
    zqi_store_le (payload, segment->first_seq, 8);
    zqi_store_le (payload + 8, segment->last_seq, 8);
    zqi_store_le (payload + 16, segment->last_seq + 1 - segment->first_seq, 8);
    zqi_store_le (payload + 24, segment->end, 8);
    uint8_t record[ZQI_SEAL_SIZE];
    zqi_buf_t buf = {record, 0, sizeof record};
    //  Its claim is what was synced before it: the seal and the records
    //  before it are synced together.
    zqi_record_put (&buf, self->salt, ZQI_REC_SEAL, segment->last_seq,
                    segment->base_lsn + segment->synced - ZQI_SEG_HEADER_SIZE, payload,
                    sizeof payload);
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

//  ---- Recovery --------------------------------------------------------------

static int
s_id_compare (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

//  Lists segment ids in the directory, oldest first, and deletes
//  leftover temporary files. Returns 0 or -1 with errno.
static int
s_list_segments (zq_spool_t *self, uint64_t **ids_p, size_t *count_p)
{
    DIR *dir = opendir (self->dir);
    if (!dir)
        return -1;
    uint64_t *ids = NULL;
    size_t count = 0, capacity = 0;
    struct dirent *entry;
    int rc = 0;
    while ((entry = readdir (dir))) {
        const char *name = entry->d_name;
        if (strlen (name) < 20 || strspn (name, "0123456789abcdef") != 16 ||
            strncmp (name + 16, ".zqs", 4))
            continue;
        if (strcmp (name + 20, ".tmp") == 0) {
            if (unlinkat (self->dir_fd, name, 0) == 0)
                zqi_log (ZQ_LOG_NOTICE, "zq_spool: %s: removed an unfinished segment", name);
            continue;
        }
        if (name[20])
            continue; //  .corrupt and anything else: not ours to read
        if (count == capacity) {
            capacity = capacity ? capacity * 2 : 64;
            uint64_t *bigger = realloc (ids, capacity * sizeof (uint64_t));
            if (!bigger) {
                rc = zqi_fail (ENOMEM);
                break;
            }
            ids = bigger;
        }
        ids[count++] = strtoull (name, NULL, 16);
    }
    closedir (dir);
    if (rc) {
        free (ids);
        return -1;
    }
    if (count)
        qsort (ids, count, sizeof (uint64_t), s_id_compare);
    *ids_p = ids;
    *count_p = count;
    return 0;
}

static int
s_segments_push (zq_spool_t *self, zqi_segment_t *segment)
{
    if (self->segment_count == self->segment_capacity) {
        size_t capacity = self->segment_capacity ? self->segment_capacity * 2 : 16;
        zqi_segment_t **bigger = realloc (self->segments, capacity * sizeof (zqi_segment_t *));
        if (!bigger)
            return zqi_fail (ENOMEM);
        self->segments = bigger;
        self->segment_capacity = capacity;
    }
    self->segments[self->segment_count++] = segment;
    return 0;
}

//  Opens a segment file and reads its header. Returns 0, or -1 with errno
//  (ZQ_ECORRUPT for a bad header).
static int
s_segment_open (zq_spool_t *self, zqi_segment_t *segment, bool writable)
{
    char *path = s_segment_path (self, segment->id, "");
    if (!path)
        return -1;
    int fd = open (path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    free (path);
    if (fd < 0)
        return -1;
    if (writable)
        segment->wfd = fd;
    else
        segment->rfd = fd;
    struct stat st;
    if (fstat (fd, &st))
        return -1;
    segment->end = segment->synced = (uint64_t)st.st_size;
    uint8_t header[ZQI_SEG_HEADER_SIZE];
    if (pread (fd, header, sizeof header, 0) != (ssize_t)sizeof header)
        return zqi_fail (ZQ_ECORRUPT);
    uint64_t id, salt;
    if (s_header_parse (header, &id, &segment->first_seq, &segment->base_lsn, &salt))
        return -1;
    if (id != segment->id || (self->salt && salt != self->salt) || segment->first_seq == 0)
        return zqi_fail (ZQ_ECORRUPT);
    self->salt = salt;
    segment->last_seq = segment->first_seq - 1;
    return 0;
}

//  Checks a seal's payload against the segment it ends (first seq, the
//  seal's own offset); stores the last seq it names in *last_seq_p.
//  Returns 0, or -1 with ZQ_ECORRUPT.
static int
s_seal_parse (const uint8_t *p, const zqi_segment_t *segment, uint64_t offset, uint64_t *last_seq_p)
{
    uint64_t first_seq = zqi_load_le (p, 8), last_seq = zqi_load_le (p + 8, 8);
    if (first_seq != segment->first_seq || last_seq + 1 < first_seq ||
        zqi_load_le (p + 16, 8) != last_seq + 1 - first_seq || zqi_load_le (p + 24, 8) != offset)
        return zqi_fail (ZQ_ECORRUPT);
    *last_seq_p = last_seq;
    return 0;
}

//  A sealed segment is trusted by its seal, the last 64 bytes of the file;
//  its records are checked when they are read.
static int
s_segment_check_seal (zq_spool_t *self, zqi_segment_t *segment)
{
    if (segment->end < ZQI_SEG_HEADER_SIZE + ZQI_SEAL_SIZE)
        return zqi_fail (ZQ_ECORRUPT);
    uint8_t record[ZQI_SEAL_SIZE];
    uint64_t offset = segment->end - ZQI_SEAL_SIZE;
    if (pread (segment->rfd, record, sizeof record, (off_t)offset) != (ssize_t)sizeof record)
        return zqi_fail (ZQ_ECORRUPT);
    zqi_rec_t rec;
    size_t need;
    if (zqi_record_parse (record, sizeof record, self->salt, self->config.max_record_bytes, &rec,
                          &need) != 1 ||
        rec.type != ZQI_REC_SEAL || rec.length != ZQI_SEAL_PAYLOAD)
        return zqi_fail (ZQ_ECORRUPT);
    uint64_t last_seq;
    if (s_seal_parse (record + ZQI_REC_HEADER_SIZE, segment, offset, &last_seq))
        return -1;
    segment->last_seq = last_seq;
    segment->sealed = true;
    //  Readers open it again when they get there.
    close (segment->rfd);
    segment->rfd = -1;
    return 0;
}

//  Copies a damaged file aside as NAME.corrupt for the operator.
static void
s_keep_copy (zq_spool_t *self, zqi_segment_t *segment)
{
    char *path = s_segment_path (self, segment->id, ".corrupt");
    int fd = path ? open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
    if (fd >= 0) {
        uint8_t chunk[65536];
        uint64_t offset = 0;
        int source = segment->wfd >= 0 ? segment->wfd : segment->rfd;
        ssize_t got;
        while ((got = pread (source, chunk, sizeof chunk, (off_t)offset)) > 0) {
            if (s_write_all (fd, chunk, (size_t)got, offset))
                break;
            offset += (uint64_t)got;
        }
        if (fsync (fd)) {
        }
        close (fd);
    }
    free (path);
}

//  Is there, after offset bad, a valid record whose claim says the log
//  was synced past bad when it was appended? If so, the bad record was
//  durable: the log is damaged in the middle, not torn at its end.
static bool
s_damage_is_durable (zq_spool_t *self, zqi_window_t *window, zqi_segment_t *segment, uint64_t bad)
{
    uint64_t bad_lsn = segment->base_lsn + bad - ZQI_SEG_HEADER_SIZE;
    for (uint64_t offset = bad + 1; offset + ZQI_REC_HEADER_SIZE <= segment->end; offset++) {
        const uint8_t *p =
            zqi_window_get (self, window, segment, offset, ZQI_REC_HEADER_SIZE, segment->end);
        if (!p)
            return false;
        if (p[8] != ZQI_REC_MAGIC0 || p[9] != ZQI_REC_MAGIC1)
            continue;
        uint64_t claim = zqi_load_le (p + 24, 8);
        if (claim <= bad_lsn)
            continue;
        uint32_t length = (uint32_t)zqi_load_le (p + 12, 4);
        if (offset + ZQI_REC_HEADER_SIZE + length > segment->end)
            continue;
        p = zqi_window_get (self, window, segment, offset, ZQI_REC_HEADER_SIZE + length,
                            segment->end);
        zqi_rec_t rec;
        size_t need;
        if (p && zqi_record_parse (p, ZQI_REC_HEADER_SIZE + length, self->salt,
                                   self->config.max_record_bytes, &rec, &need) == 1)
            return true;
    }
    return false;
}

//  Reads every record of the newest segment: rebuilds the ack state from
//  its checkpoint and ack records, finds its last message, and cuts a
//  torn tail. Returns 0, or -1 with errno ZQ_ECORRUPT (damage before
//  records that were synced after it) or an I/O errno.
static int
s_scan_tail (zq_spool_t *self, zqi_segment_t *segment)
{
    zqi_window_t window = {NULL, 0, {NULL, 0, 0}};
    uint64_t offset = ZQI_SEG_HEADER_SIZE;
    bool have_checkpoint = false;
    bool in_checkpoint = false; //  ack records right after the checkpoint complete it
    int rc = 0;
    segment->body_start = segment->end;
    while (offset < segment->end) {
        zqi_rec_t rec;
        size_t need = ZQI_REC_HEADER_SIZE;
        int valid = 0;
        for (int attempt = 0; attempt < 2 && valid == 0; attempt++) {
            const uint8_t *p = zqi_window_get (self, &window, segment, offset, need, segment->end);
            if (!p) {
                if (errno != ENODATA) {
                    rc = -1;
                    goto done;
                }
                valid = -1;
                break;
            }
            valid =
                zqi_record_parse (p, need, self->salt, self->config.max_record_bytes, &rec, &need);
        }
        const uint8_t *payload = NULL;
        if (valid == 1) {
            payload = window.buf.data + (offset - window.offset) + ZQI_REC_HEADER_SIZE;
            //  The first record is the checkpoint, and only the first.
            if ((rec.type == ZQI_REC_CHECKPOINT) != !have_checkpoint)
                valid = -1;
            else if (rec.type == ZQI_REC_MESSAGE && rec.seq <= segment->last_seq)
                valid = -1;
            else if (rec.type == ZQI_REC_MESSAGE && segment->last_seq < segment->first_seq &&
                     rec.seq < segment->first_seq)
                valid = -1;
            //  A seal must say what the reopen will check once this
            //  segment is no longer the newest.
            else if (rec.type == ZQI_REC_SEAL) {
                uint64_t sealed_last;
                if (rec.length != ZQI_SEAL_PAYLOAD ||
                    s_seal_parse (payload, segment, offset, &sealed_last) ||
                    sealed_last != segment->last_seq)
                    valid = -1;
            }
        }
        if (valid != 1) {
            if (!have_checkpoint) {
                rc = zqi_fail (ZQ_ECORRUPT);
                goto done;
            }
            if (s_damage_is_durable (self, &window, segment, offset)) {
                char *path = s_segment_path (self, segment->id, "");
                zqi_log (ZQ_LOG_ERROR,
                         "zq_spool: %s: damaged record at offset %" PRIu64
                         " before records synced after it",
                         path ? path : "segment", offset);
                free (path);
                if (!self->config.quarantine) {
                    rc = zqi_fail (ZQ_ECORRUPT);
                    goto done;
                }
                self->stats.corrupt_records++;
                s_keep_copy (self, segment);
                zqi_log (ZQ_LOG_ERROR,
                         "zq_spool: quarantine: segment %016" PRIx64
                         " copied to .corrupt; records after seq %" PRIu64 " in it are lost",
                         segment->id, segment->last_seq);
            } else
                zqi_log (ZQ_LOG_NOTICE,
                         "zq_spool: segment %016" PRIx64 ": cut %" PRIu64
                         " bytes of torn tail at offset %" PRIu64,
                         segment->id, segment->end - offset, offset);
            self->stats.tail_cut_bytes += segment->end - offset;
            if (zqi_segment_truncate (self, segment, offset) || zqi_segment_sync (self, segment)) {
                rc = -1;
                goto done;
            }
            break;
        }
        uint64_t size = ZQI_REC_HEADER_SIZE + rec.length;
        //  Every record carries the last seq assigned when it was made:
        //  seqs refused at the end of the log are never assigned again.
        if (rec.seq > self->seq_hint)
            self->seq_hint = rec.seq;
        switch (rec.type) {
            case ZQI_REC_CHECKPOINT: {
                if (rec.length < 16) {
                    rc = zqi_fail (ZQ_ECORRUPT);
                    goto done;
                }
                uint64_t floor = zqi_load_le (payload, 8);
                if (floor > self->ack_floor)
                    zqi_spool_ack_range (self, self->ack_floor, floor);
                if (s_ranges_apply (self, payload + 16, rec.length - 16)) {
                    rc = -1;
                    goto done;
                }
                have_checkpoint = true;
                in_checkpoint = true;
                break;
            }
            case ZQI_REC_ACK:
                if (s_ranges_apply (self, payload, rec.length)) {
                    rc = -1;
                    goto done;
                }
                if (!in_checkpoint)
                    segment->records++;
                break;
            case ZQI_REC_MESSAGE: {
                //  Seqs skipped between messages were refused when written:
                //  they do not exist, so they count as acked.
                uint64_t expected = segment->last_seq + 1;
                if (rec.seq > expected && zqi_spool_ack_range (self, expected, rec.seq)) {
                    rc = -1;
                    goto done;
                }
                segment->last_seq = rec.seq;
                segment->records++;
                break;
            }
            case ZQI_REC_SEAL:
                segment->sealed = true;
                break;
        }
        if (in_checkpoint && rec.type != ZQI_REC_CHECKPOINT && rec.type != ZQI_REC_ACK) {
            in_checkpoint = false;
            segment->body_start = offset;
        }
        offset += size;
        if (in_checkpoint)
            segment->body_start = offset;
        if (rec.type == ZQI_REC_SEAL && offset < segment->end) {
            zqi_log (ZQ_LOG_NOTICE, "zq_spool: segment %016" PRIx64 ": cut bytes after its seal",
                     segment->id);
            self->stats.tail_cut_bytes += segment->end - offset;
            if (zqi_segment_truncate (self, segment, offset) || zqi_segment_sync (self, segment)) {
                rc = -1;
                goto done;
            }
        }
    }
    //  Every segment begins with its checkpoint, synced before the file
    //  got its name: without it the segment is damaged.
    if (!have_checkpoint)
        rc = zqi_fail (ZQ_ECORRUPT);
done:
    zqi_buf_free (&window.buf);
    return rc;
}

//  The errno a segment that could not be opened or read at recovery
//  stands for: a lack of the process's (descriptors, memory, permission)
//  is that errno, and the spool fails to open without calling anything
//  damaged; any other failure is damage.
static int
s_recovery_errno (int errnum, bool tail)
{
    switch (errnum) {
        case EMFILE:
        case ENFILE:
        case ENOMEM:
        case EACCES:
        case EPERM:
        case ZQ_EVERSION:
        case ZQ_ECORRUPT:
            return errnum;
        case EIO:
            return tail ? EIO : ZQ_ECORRUPT;
        default:
            return ZQ_ECORRUPT;
    }
}

//  Moves a damaged segment aside (quarantine) or fails.
static int
s_damaged (zq_spool_t *self, uint64_t id, int errnum)
{
    self->stats.corrupt_records++;
    zqi_log (ZQ_LOG_ERROR, "zq_spool: %s/%016" PRIx64 ".zqs: %s", self->dir, id,
             errnum == ZQ_ECORRUPT ? "damaged (header, seal or a record synced before others)"
                                   : zq_strerror (errnum));
    if (!self->config.quarantine || errnum != ZQ_ECORRUPT)
        return zqi_fail (errnum);
    char *path = s_segment_path (self, id, "");
    char *aside = s_segment_path (self, id, ".corrupt");
    int rc = path && aside ? rename (path, aside) : zqi_fail (ENOMEM);
    if (rc == 0)
        zqi_log (ZQ_LOG_ERROR, "zq_spool: quarantine: %s moved to %s; its records are lost", path,
                 aside);
    free (path);
    free (aside);
    return rc;
}

int
zqi_spool_recover (zq_spool_t *self)
{
    uint64_t *ids = NULL;
    size_t count = 0;
    if (s_list_segments (self, &ids, &count))
        return -1;
    int rc = 0;
    zqi_segment_t *segment = NULL;

    //  Every segment but the newest: header and seal.
    for (size_t index = 0; count && index < count - 1; index++) {
        segment = s_segment_alloc (ids[index]);
        if (!segment) {
            rc = -1;
            goto done;
        }
        if (s_segment_open (self, segment, false) || s_segment_check_seal (self, segment) ||
            (self->segment_count &&
             segment->first_seq <= self->segments[self->segment_count - 1]->last_seq)) {
            int errnum = s_recovery_errno (errno, false);
            zqi_segment_remove (self, segment, false);
            segment = NULL;
            if (errnum != ZQ_ECORRUPT && errnum != ZQ_EVERSION) {
                rc = zqi_fail (errnum);
                goto done;
            }
            if (s_damaged (self, ids[index], errnum)) {
                rc = -1;
                goto done;
            }
            continue;
        }
        if (s_segments_push (self, segment)) {
            rc = -1;
            goto done;
        }
        segment = NULL;
    }
    //  The newest: read all of it. If it is quarantined, the one before
    //  it (sealed) is read in full instead, for its ack state.
    uint64_t tail_id = count ? ids[count - 1] : 0;
    while (tail_id) {
        segment = s_segment_alloc (tail_id);
        if (!segment) {
            rc = -1;
            goto done;
        }
        uint64_t floor = self->ack_floor;
        if (s_segment_open (self, segment, true) ||
            (self->segment_count &&
             segment->first_seq <= self->segments[self->segment_count - 1]->last_seq) ||
            s_scan_tail (self, segment)) {
            int errnum = s_recovery_errno (errno, true);
            zqi_segment_remove (self, segment, false);
            segment = NULL;
            if (errnum != ZQ_ECORRUPT && errnum != ZQ_EVERSION) {
                rc = zqi_fail (errnum);
                goto done;
            }
            if (s_damaged (self, tail_id, errnum)) {
                rc = -1;
                goto done;
            }
            //  Forget what the damaged segment said about acks.
            zqi_rangeset_free (&self->acked);
            self->acked_above = 0;
            self->ack_floor = floor;
            tail_id = 0;
            if (self->segment_count) {
                segment = self->segments[--self->segment_count];
                tail_id = segment->id;
                zqi_segment_close (segment);
                free (segment);
                segment = NULL;
            }
            continue;
        }
        if (s_segments_push (self, segment)) {
            rc = -1;
            goto done;
        }
        segment = NULL;
        break;
    }
    self->disk_bytes = 0;
    for (size_t i = 0; i < self->segment_count; i++) {
        zqi_segment_t *each = self->segments[i];
        zqi_segment_close_reader (each); //  the reader opens it when it gets there
        each->visible = each->end;
        self->disk_bytes += each->end;
        if (each->id >= self->next_segment_id)
            self->next_segment_id = each->id + 1;
    }
    if (!self->next_segment_id)
        self->next_segment_id = 1;

done:
    if (segment)
        zqi_segment_remove (self, segment, false);
    free (ids);
    return rc;
}
