/*  =========================================================================
    zq_spool_flight - the table of the records a spool has handed out, by
    seq (src/zq_spool_internal.h).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_spool_internal.h"

#define S_FIRST_SLOTS 64

//  Fibonacci hashing: seqs in a row land far apart.
static inline uint32_t
s_home (const zqi_flight_t *self, uint64_t seq)
{
    return (uint32_t)((seq * 0x9E3779B97F4A7C15ull) >> 32) & self->mask;
}

void
zqi_flight_free (zqi_flight_t *self)
{
    free (self->slots);
    memset (self, 0, sizeof *self);
}

zqi_location_t *
zqi_flight_find (const zqi_flight_t *self, uint64_t seq)
{
    if (!self->slots || seq == 0)
        return NULL;
    for (uint32_t slot = s_home (self, seq);; slot = (slot + 1) & self->mask) {
        zqi_location_t *at = &self->slots[slot];
        if (at->seq == seq)
            return at;
        if (at->seq == 0)
            return NULL;
    }
}

//  Puts location in the first free slot of its run (it is not there).
static void
s_insert (zqi_flight_t *self, const zqi_location_t *location)
{
    uint32_t slot = s_home (self, location->seq);
    while (self->slots[slot].seq)
        slot = (slot + 1) & self->mask;
    self->slots[slot] = *location;
    self->count++;
}

//  Doubles the slots (at least S_FIRST_SLOTS) and puts everything back.
static int
s_grow (zqi_flight_t *self)
{
    uint32_t old_count = self->slots ? self->mask + 1 : 0;
    uint32_t slot_count = old_count ? old_count * 2 : S_FIRST_SLOTS;
    if (slot_count <= old_count)
        return zqi_fail (ENOMEM);
    zqi_location_t *slots = (zqi_location_t *)calloc (slot_count, sizeof (zqi_location_t));
    if (!slots)
        return zqi_fail (ENOMEM);
    zqi_location_t *old = self->slots;
    self->slots = slots;
    self->mask = slot_count - 1;
    self->count = 0;
    for (uint32_t slot = 0; slot < old_count; slot++)
        if (old[slot].seq)
            s_insert (self, &old[slot]);
    free (old);
    return 0;
}

int
zqi_flight_put (zqi_flight_t *self, const zqi_location_t *location)
{
    ZQ_ASSERT (location->seq != 0);
    zqi_location_t *at = zqi_flight_find (self, location->seq);
    if (at) {
        *at = *location;
        return 0;
    }
    //  At most half the slots in use: runs stay short.
    if ((!self->slots || 2 * (self->count + 1) > self->mask + 1) && s_grow (self))
        return -1;
    s_insert (self, location);
    return 0;
}

bool
zqi_flight_remove (zqi_flight_t *self, uint64_t seq)
{
    zqi_location_t *at = zqi_flight_find (self, seq);
    if (!at)
        return false;
    uint32_t hole = (uint32_t)(at - self->slots);
    for (uint32_t next = (hole + 1) & self->mask; self->slots[next].seq;
         next = (next + 1) & self->mask) {
        uint32_t home = s_home (self, self->slots[next].seq);
        if (!zqi_probe_stays (hole, next, home)) {
            self->slots[hole] = self->slots[next];
            hole = next;
        }
    }
    self->slots[hole].seq = 0;
    self->count--;
    return true;
}

zqi_location_t *
zqi_flight_next (const zqi_flight_t *self, uint32_t *cursor)
{
    if (!self->slots)
        return NULL;
    while (*cursor <= self->mask) {
        zqi_location_t *at = &self->slots[(*cursor)++];
        if (at->seq)
            return at;
    }
    return NULL;
}

void
zqi_flight_clear (zqi_flight_t *self)
{
    if (self->slots)
        memset (self->slots, 0, ((size_t)self->mask + 1) * sizeof (zqi_location_t));
    self->count = 0;
}
