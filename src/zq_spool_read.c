/*  =========================================================================
    zq_spool_read - the spool's delivery cursor: the next record
    (returned ones first), acks, returns and the in-flight marks.

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

//  The record at offset of segment, if the last batch written holds it
//  whole and it is valid: returns a pointer to it (header first), kept
//  until the next reading call (next, ack, return), with *rec decoded;
//  else NULL. read_lock and lock held.
static const uint8_t *
s_recent_locked (zq_spool_t *self, uint64_t segment_id, uint64_t offset, zqi_rec_t *rec)
{
    if (!self->recent.size || segment_id != self->recent_segment || offset < self->recent_offset ||
        offset - self->recent_offset >= self->recent.size)
        return NULL;
    size_t at = (size_t)(offset - self->recent_offset);
    size_t need;
    if (zqi_record_parse (self->recent.data + at, self->recent.size - at, self->salt,
                          self->config.max_record_bytes, rec, &need) != 1)
        return NULL;
    self->recent_held = true;
    return self->recent.data + at;
}

//  The same, taking the lock. read_lock held.
static const uint8_t *
s_recent_record (zq_spool_t *self, uint64_t segment_id, uint64_t offset, zqi_rec_t *rec)
{
    pthread_mutex_lock (&self->lock);
    const uint8_t *p = s_recent_locked (self, segment_id, offset, rec);
    pthread_mutex_unlock (&self->lock);
    return p;
}

//  What the cursor's next read needs from the state the lock guards,
//  looked up under one hold of it (a record delivered from the last
//  batch written takes no other).
typedef struct {
    zqi_segment_t *segment;     //  the cursor's segment; NULL if none is left
    bool newest;                //  segment is the one being written
    uint64_t visible;           //  its octets readers may see
    const uint8_t *kept_record; //  the record at the cursor in the last batch written, or NULL
    zqi_rec_t rec;              //  kept_record's header
    bool acked;                 //  kept_record is a message acked already
} s_look_t;

//  Looks up the cursor's segment: if the cursor's is gone (reclaimed),
//  the cursor moves to the first record of the next one. Then, if the
//  record at the cursor is in the last batch written, takes it from
//  there, as s_recent_locked does (recent_held set: it stays valid until
//  the next reading call), with whether it is acked. read_lock and lock
//  held.
static void
s_look (zq_spool_t *self, s_look_t *look)
{
    look->segment = s_segment_at (self, self->cursor_segment);
    look->newest = look->segment && look->segment == zqi_spool_tail (self);
    look->visible = look->segment ? look->segment->visible : 0;
    look->kept_record = NULL;
    look->acked = false;
    if (!look->segment)
        return;
    if (look->segment->id != self->cursor_segment) {
        self->cursor_segment = look->segment->id;
        self->cursor_offset = ZQI_SEG_HEADER_SIZE;
    }
    if (self->cursor_offset < look->visible) {
        look->kept_record =
            s_recent_locked (self, self->cursor_segment, self->cursor_offset, &look->rec);
        look->acked = look->kept_record && look->rec.type == ZQI_REC_MESSAGE &&
                      s_is_acked (self, look->rec.seq);
    }
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
        if (gone || zqi_flight_find (&self->in_flight, location.seq)) {
            zqi_spool_ready_pop (self);
            continue;
        }
        zqi_rec_t rec;
        const uint8_t *kept = s_recent_record (self, location.segment_id, location.offset, &rec);
        if (kept && rec.type == ZQI_REC_MESSAGE && rec.seq == location.seq &&
            rec.length == location.size) {
            zqi_spool_ready_pop (self);
            if (zqi_flight_put (&self->in_flight, &location))
                return -1;
            record->seq = location.seq;
            record->data = kept + ZQI_REC_HEADER_SIZE;
            record->size = location.size;
            return 1;
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
        size_t need;
        zqi_spool_ready_pop (self);
        if ((size_t)got != size ||
            zqi_record_parse (self->record_copy, size, self->salt, self->config.max_record_bytes,
                              &rec, &need) != 1 ||
            rec.type != ZQI_REC_MESSAGE || rec.seq != location.seq)
            return s_damaged_record (self, segment, location.offset);
        if (zqi_flight_put (&self->in_flight, &location))
            return -1;
        ZQI_COUNT (ZQI_COUNT_SPOOL_READS);
        record->seq = location.seq;
        record->data = self->record_copy + ZQI_REC_HEADER_SIZE;
        record->size = location.size;
        return 1;
    }
    return 0;
}

//  Hands out the next record: a returned one, else the next at the
//  cursor. looked_up, if not NULL, is s_look's result for the cursor,
//  taken with no record returned. Returns 0 with record filled, or -1
//  with errno (EAGAIN: none to hand out yet; ZQ_ECORRUPT: a damaged
//  record, counted; ENOMEM; a read's errno). read_lock held.
static int
s_next (zq_spool_t *self, zq_spool_record_t *record, const s_look_t *looked_up)
{
    int found = looked_up ? 0 : s_next_returned (self, record);
    if (found)
        return found > 0 ? 0 : -1;
    while (true) {
        s_look_t fresh;
        const s_look_t *look = looked_up;
        looked_up = NULL;
        if (!look) {
            pthread_mutex_lock (&self->lock);
            s_look (self, &fresh);
            pthread_mutex_unlock (&self->lock);
            look = &fresh;
        }
        zqi_segment_t *segment = look->segment;
        uint64_t visible = look->visible;
        if (!segment)
            return zqi_fail (EAGAIN);
        if (self->cursor_offset >= visible) {
            if (look->newest)
                return zqi_fail (EAGAIN);
            zqi_segment_close_reader (segment);
            self->cursor_segment++;
            self->cursor_offset = ZQI_SEG_HEADER_SIZE;
            continue;
        }
        uint64_t offset = self->cursor_offset;
        zqi_window_t *window = &self->window;
        const uint8_t *p = look->kept_record;
        bool kept = p != NULL;
        zqi_rec_t rec;
        if (kept)
            rec = look->rec;
        if (!p)
            p = zqi_window_get (self, window, segment, offset, ZQI_REC_HEADER_SIZE, visible);
        size_t need = ZQI_REC_HEADER_SIZE;
        int valid =
            kept ? 1
            : p ? zqi_record_parse (p, need, self->salt, self->config.max_record_bytes, &rec, &need)
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
        bool acked = look->acked;
        if (!kept) {
            pthread_mutex_lock (&self->lock);
            acked = s_is_acked (self, rec.seq);
            pthread_mutex_unlock (&self->lock);
        }
        if (acked || zqi_flight_find (&self->in_flight, rec.seq))
            continue;
        zqi_location_t location = {rec.seq, segment->id, offset, rec.length};
        if (zqi_flight_put (&self->in_flight, &location))
            return -1;
        if (!kept)
            ZQI_COUNT (ZQI_COUNT_SPOOL_READS);
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
    //  The record handed out last is let go: a leader may replace the
    //  batch it was kept in.
    self->recent_held = self->retired_held = false;
    //  With none returned, the cursor is looked up in the same hold.
    s_look_t look;
    bool have_look = !failed && !self->ready_count;
    if (have_look)
        s_look (self, &look);
    pthread_mutex_unlock (&self->lock);
    int rc = failed ? zqi_fail (failed) : s_next (self, record, have_look ? &look : NULL);
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

//  zq_spool_ack's work for one seq. read_lock and lock held.
static int
s_ack_locked (zq_spool_t *self, uint64_t seq)
{
    if (self->failed)
        return zqi_fail (self->failed);
    if (seq == 0 || seq >= self->next_seq)
        return zqi_fail (ZQ_ENOTFOUND);
    if (!s_is_acked (self, seq)) {
        //  Room in both sets first: an ack is taken whole or not at all
        //  (acked in memory but never logged, a retry would find it acked).
        if (zqi_rangeset_reserve (&self->acked, 1) ||
            zqi_rangeset_reserve (&self->pending_acks, 1) ||
            zqi_spool_ack_range (self, seq, seq + 1) ||
            zqi_rangeset_add (&self->pending_acks, seq, seq + 1))
            return -1;
        self->ack_epoch++;
        self->stats.acked++;
        zqi_spool_reclaim (self);
    }
    zqi_flight_remove (&self->in_flight, seq);
    return 0;
}

int
zq_spool_ack (zq_spool_t *self, uint64_t seq)
{
    size_t acked;
    return zq_spool_ack_many (self, &seq, 1, &acked);
}

int
zq_spool_ack_many (zq_spool_t *self, const uint64_t *seqs, size_t count, size_t *acked_p)
{
    if (acked_p)
        *acked_p = 0;
    if (!self || !acked_p || (count && !seqs))
        return zqi_fail (EINVAL);
    pthread_mutex_lock (&self->read_lock);
    pthread_mutex_lock (&self->lock);
    //  A reading call: the record handed out is let go.
    self->recent_held = self->retired_held = false;
    int rc = 0;
    size_t acked = 0;
    while (acked < count && (rc = s_ack_locked (self, seqs[acked])) == 0)
        acked++;
    int saved_errno = errno;
    pthread_mutex_unlock (&self->lock);
    pthread_mutex_unlock (&self->read_lock);
    *acked_p = acked;
    errno = saved_errno;
    return rc;
}

int
zq_spool_return (zq_spool_t *self, uint64_t seq)
{
    if (!self)
        return zqi_fail (EINVAL);
    pthread_mutex_lock (&self->read_lock);
    pthread_mutex_lock (&self->lock);
    //  A reading call: the record handed out is let go.
    self->recent_held = self->retired_held = false;
    pthread_mutex_unlock (&self->lock);
    int rc = 0;
    zqi_location_t *location = zqi_flight_find (&self->in_flight, seq);
    if (!location)
        rc = zqi_fail (ZQ_ENOTFOUND);
    else if ((rc = zqi_spool_ready_push (self, location)) == 0) {
        zqi_flight_remove (&self->in_flight, seq);
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
    uint32_t cursor = 0;
    zqi_location_t *location;
    while ((location = zqi_flight_next (&self->in_flight, &cursor)))
        if (zqi_spool_ready_push (self, location) == 0)
            count++;
    zqi_flight_clear (&self->in_flight);
    self->stats.returned += count;
    pthread_mutex_unlock (&self->read_lock);
    return count;
}
