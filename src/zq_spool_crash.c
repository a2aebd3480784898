/*  =========================================================================
    zq_spool_crash - the spool's crash mode, for tests only: at a
    chosen sync point the unsynced bytes of the segment being written are
    kept, cut or garbled as a power cut could leave them, and the spool
    fails from then on.

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

//  Loses the bytes from at to end: the file is cut at at or, when zeros
//  were prepared past end (size > end), those bytes read as the zeros
//  that were there before them and the file keeps its size (chosen at
//  random: the prepared zeros may or may not have reached the disk).
static void
s_lose (zq_spool_t *self, int fd, uint64_t at, uint64_t end, uint64_t size)
{
    if (size > end && s_random (&self->crash_rng) % 2) {
        for (uint64_t offset = at; offset < end;) {
            size_t chunk =
                end - offset < ZQI_ZEROS_BYTES ? (size_t)(end - offset) : ZQI_ZEROS_BYTES;
            if (zqi_spool_write_all (fd, zqi_spool_zeros, chunk, offset))
                return;
            offset += chunk;
        }
    } else if (ftruncate (fd, (off_t)at)) {
    }
}

void
zqi_spool_crash_file (zq_spool_t *self, int fd, uint64_t synced, uint64_t end, uint64_t size)
{
    if (fd < 0 || end <= synced)
        return;
    uint64_t unsynced = end - synced;
    uint8_t garbage[512];
    switch (self->crash_mode) {
        case ZQI_CRASH_DROP:
            s_lose (self, fd, synced, end, size);
            break;
        case ZQI_CRASH_TEAR: {
            uint64_t keep = s_random (&self->crash_rng) % (unsynced + 1);
            s_lose (self, fd, synced + keep, end, size);
            break;
        }
        case ZQI_CRASH_GARBLE: {
            uint64_t keep = s_random (&self->crash_rng) % (unsynced + 1);
            uint64_t length = s_random (&self->crash_rng) % (unsynced - keep + 600);
            uint64_t offset = synced + keep;
            s_lose (self, fd, offset, end, size);
            while (length) {
                size_t chunk = length < sizeof garbage ? (size_t)length : sizeof garbage;
                for (size_t i = 0; i < chunk; i++)
                    garbage[i] = (uint8_t)s_random (&self->crash_rng);
                if (zqi_spool_write_all (fd, garbage, chunk, offset))
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
                    if (zqi_spool_write_all (fd, garbage, chunk, offset))
                        break;
                }
                offset = next;
            }
            if (s_random (&self->crash_rng) % 2) {
                uint64_t keep = s_random (&self->crash_rng) % (unsynced + 1);
                s_lose (self, fd, synced + keep, end, size);
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
        zqi_spool_crash_file (self, segment->wfd, segment->synced, segment->end,
                              zqi_segment_file_size (segment));
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
