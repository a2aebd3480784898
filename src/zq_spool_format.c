/*  =========================================================================
    zq_spool_format - the spool's range sets and acked ranges, and its
    record format (doc/SPOOL.md); its little-endian numbers are inline in
    zq_spool_internal.h.

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

//  ---- Range sets -----------------------------------------------------------

//  Adds [start, end) to the set; returns how many seqs were new in
//  *added_p. Returns 0 or -1 with ENOMEM.
static int
s_rangeset_add (zqi_rangeset_t *set, uint64_t start, uint64_t end, uint64_t *added_p)
{
    uint64_t added = 0;
    if (start >= end)
        goto done;
    //  The usual add, in order: the last range grows.
    if (set->count && set->items[set->count - 1].end == start) {
        set->items[set->count - 1].end = end;
        added = end - start;
        goto done;
    }
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
        if (zqi_rangeset_reserve (set, 1))
            return -1;
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
    if (extra > SIZE_MAX - set->count)
        return zqi_fail (ENOMEM);
    void *items = set->items;
    if (zqi_array_reserve (&items, &set->capacity, set->count + extra, sizeof (zqi_range_t), 16))
        return -1;
    set->items = (zqi_range_t *)items;
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
    if (start == self->ack_floor)
        //  The usual ack, in order: the floor moves, no range is made (the
        //  set's ranges all start above the floor; those it now reaches
        //  are folded in below).
        self->ack_floor = end;
    else {
        uint64_t added;
        if (s_rangeset_add (&self->acked, start, end, &added))
            return -1;
        self->acked_above += added;
    }
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
    return zqi_record_put_parts (buf, salt, type, seq, claim, &payload, &size, 1);
}

int
zqi_record_put_parts (zqi_buf_t *buf, uint64_t salt, zqi_rec_type_t type, uint64_t seq,
                      uint64_t claim, const void *const *parts, const size_t *sizes, size_t count)
{
    size_t size = 0;
    for (size_t i = 0; i < count; i++)
        size += sizes[i];
    if (zqi_buf_reserve (buf, ZQI_REC_HEADER_SIZE + size))
        return -1;
    uint8_t *p = buf->data + buf->size;
    p[ZQI_REC_AT_MAGIC] = ZQI_REC_MAGIC0;
    p[ZQI_REC_AT_MAGIC + 1] = ZQI_REC_MAGIC1;
    p[ZQI_REC_AT_TYPE] = (uint8_t)type;
    p[ZQI_REC_AT_FLAGS] = 0;
    zqi_store_le (p + ZQI_REC_AT_LENGTH, size, 4);
    zqi_store_le (p + ZQI_REC_AT_SEQ, seq, 8);
    zqi_store_le (p + ZQI_REC_AT_CLAIM, claim, 8);
    uint8_t *into = p + ZQI_REC_HEADER_SIZE;
    for (size_t i = 0; i < count; i++)
        if (sizes[i]) {
            memcpy (into, parts[i], sizes[i]);
            into += sizes[i];
        }
    zqi_store_le (p + ZQI_REC_AT_CHECK,
                  XXH3_64bits_withSeed (p + ZQI_REC_AT_MAGIC,
                                        ZQI_REC_HEADER_SIZE - ZQI_REC_AT_MAGIC + size, salt),
                  8);
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
    if (data[ZQI_REC_AT_MAGIC] != ZQI_REC_MAGIC0 || data[ZQI_REC_AT_MAGIC + 1] != ZQI_REC_MAGIC1 ||
        data[ZQI_REC_AT_FLAGS] != 0)
        return -1;
    rec->type = data[ZQI_REC_AT_TYPE];
    if (rec->type < ZQI_REC_MESSAGE || rec->type > ZQI_REC_SEAL)
        return -1;
    rec->length = (uint32_t)zqi_load_le (data + ZQI_REC_AT_LENGTH, 4);
    //  Control records are never larger than a message may be plus their
    //  own fixed part (writers split them to stay within it); anything
    //  larger is damage, not a reason to allocate.
    if (rec->length > (uint64_t)max_length + ZQI_CONTROL_EXTRA)
        return -1;
    if (avail < ZQI_REC_HEADER_SIZE + (size_t)rec->length) {
        *need_p = ZQI_REC_HEADER_SIZE + (size_t)rec->length;
        return 0;
    }
    rec->checksum = zqi_load_le (data + ZQI_REC_AT_CHECK, 8);
    rec->seq = zqi_load_le (data + ZQI_REC_AT_SEQ, 8);
    rec->claim = zqi_load_le (data + ZQI_REC_AT_CLAIM, 8);
    if (XXH3_64bits_withSeed (data + ZQI_REC_AT_MAGIC,
                              ZQI_REC_HEADER_SIZE - ZQI_REC_AT_MAGIC + rec->length,
                              salt) != rec->checksum)
        return -1;
    return 1;
}
