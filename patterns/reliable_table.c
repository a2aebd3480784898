/*  =========================================================================
    reliable_table - O(1) lookups by message id for the reliable pattern:
    an open-addressing hash (linear probing, backward-shift deletion,
    seeded XXH3 so chosen ids cannot pile up), a slab of tracked entries
    with a min-heap of their timers, and the dedupe window (a ring of the
    ids stored recently, oldest first, with a hash).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable.h"
#include <sys/random.h>
//  Ids are 16 bytes: inlined, XXH3 hashes them in a few instructions
//  rather than a call through the library's generic entry point.
#define XXH_INLINE_ALL
#include <xxhash.h>

//  ---- The hash -----------------------------------------------------------
//  Records live in an array at base with stride bytes each, their key
//  (hash->key_size bytes: an id, or an id with its scope) first. Each slot
//  is a pair of words: record index + 1 (0 when free) and 32 bits of the
//  key's hash, whose low bits are its home slot. A probe reads the record
//  only when the hashes agree, and a removal shifts slots back without
//  hashing their keys again. Several records may share a key: a search
//  can go on past a match, and a removal looks for the record's index.

typedef struct {
    uint32_t record;
    uint32_t hash;
} s_slot_t;

static inline const uint8_t *
s_key (const void *base, size_t stride, uint32_t index)
{
    return (const uint8_t *)base + (size_t)index * stride;
}

static inline s_slot_t *
s_slots (const zqi_r_hash_t *hash)
{
    return (s_slot_t *)hash->slots;
}

static inline uint32_t
s_hash_of (const zqi_r_hash_t *hash, const uint8_t *key)
{
    return (uint32_t)(XXH3_64bits_withSeed (key, hash->key_size, hash->seed) >> 32);
}

//  The record with key found after probe position *cursor (ZQI_R_NONE: from
//  the key's home slot), moving *cursor past it; ZQI_R_NONE when no more.
static uint32_t
s_hash_find_from (const zqi_r_hash_t *hash, const void *base, size_t stride, const uint8_t *key,
                  uint32_t *cursor)
{
    if (!hash->slots)
        return ZQI_R_NONE;
    const s_slot_t *slots = s_slots (hash);
    uint32_t key_hash = s_hash_of (hash, key);
    uint32_t slot = *cursor == ZQI_R_NONE ? key_hash & hash->mask : *cursor;
    //  A free slot ends the run of slots the key may be in.
    for (uint32_t probed = 0; probed <= hash->mask; probed++) {
        const s_slot_t *at = &slots[slot];
        if (!at->record)
            break;
        slot = (slot + 1) & hash->mask;
        if (at->hash == key_hash &&
            memcmp (s_key (base, stride, at->record - 1), key, hash->key_size) == 0) {
            *cursor = slot;
            return at->record - 1;
        }
    }
    *cursor = ZQI_R_NONE;
    return ZQI_R_NONE;
}

static uint32_t
s_hash_find (const zqi_r_hash_t *hash, const void *base, size_t stride, const uint8_t *key)
{
    uint32_t cursor = ZQI_R_NONE;
    return s_hash_find_from (hash, base, stride, key, &cursor);
}

static void
s_hash_insert (zqi_r_hash_t *hash, const void *base, size_t stride, uint32_t index)
{
    s_slot_t *slots = s_slots (hash);
    uint32_t key_hash = s_hash_of (hash, s_key (base, stride, index));
    uint32_t slot = key_hash & hash->mask;
    while (slots[slot].record)
        slot = (slot + 1) & hash->mask;
    slots[slot].record = index + 1;
    slots[slot].hash = key_hash;
}

static void
s_hash_remove (zqi_r_hash_t *hash, const void *base, size_t stride, uint32_t index)
{
    s_slot_t *slots = s_slots (hash);
    uint32_t hole = s_hash_of (hash, s_key (base, stride, index)) & hash->mask;
    while (slots[hole].record != index + 1) {
        ZQ_ASSERT (slots[hole].record);
        hole = (hole + 1) & hash->mask;
    }
    uint32_t next = hole;
    while (true) {
        next = (next + 1) & hash->mask;
        if (!slots[next].record)
            break;
        uint32_t home = slots[next].hash & hash->mask;
        bool stays = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next);
        if (!stays) {
            slots[hole] = slots[next];
            hole = next;
        }
    }
    slots[hole].record = 0;
}

//  Draws the hash's secret seed, once.
static void
s_hash_seed (zqi_r_hash_t *hash)
{
    if (!hash->seed &&
        getrandom (&hash->seed, sizeof hash->seed, GRND_NONBLOCK) != (ssize_t)sizeof hash->seed)
        hash->seed = (uint64_t)zclock_usecs () ^ ((uint64_t)(uintptr_t)hash << 16);
}

//  Replaces the slots with slot_count empty ones (a power of two); the
//  caller inserts the live records again.
static int
s_hash_reset (zqi_r_hash_t *hash, uint32_t slot_count)
{
    s_slot_t *slots = (s_slot_t *)calloc (slot_count, sizeof (s_slot_t));
    if (!slots)
        return zqi_fail (ENOMEM);
    free (hash->slots);
    hash->slots = (uint32_t *)slots;
    hash->mask = slot_count - 1;
    s_hash_seed (hash);
    return 0;
}

//  ---- Entries with timers ------------------------------------------------

#define S_STRIDE sizeof (zqi_r_entry_t)

void
zqi_r_table_init (zqi_r_table_t *table)
{
    memset (table, 0, sizeof *table);
    table->free_head = ZQI_R_NONE;
    table->hash.key_size = ZQ_MSG_ID_SIZE;
}

void
zqi_r_table_free (zqi_r_table_t *table)
{
    free (table->entries);
    free (table->hash.slots);
    free (table->heap);
    zqi_r_table_init (table);
}

uint32_t
zqi_r_table_find (const zqi_r_table_t *table, const uint8_t *id)
{
    return s_hash_find (&table->hash, table->entries, S_STRIDE, id);
}

uint32_t
zqi_r_table_find_from (const zqi_r_table_t *table, const uint8_t *id, uint32_t *cursor)
{
    return s_hash_find_from (&table->hash, table->entries, S_STRIDE, id, cursor);
}

static int
s_grow (zqi_r_table_t *table)
{
    uint32_t capacity = table->capacity ? table->capacity * 2 : 64;
    if (capacity <= table->capacity)
        return zqi_fail (ENOMEM);
    zqi_r_entry_t *entries =
        (zqi_r_entry_t *)realloc (table->entries, (size_t)capacity * sizeof (zqi_r_entry_t));
    if (!entries)
        return zqi_fail (ENOMEM);
    table->entries = entries;
    uint32_t *heap = (uint32_t *)realloc (table->heap, (size_t)capacity * sizeof (uint32_t));
    if (!heap)
        return zqi_fail (ENOMEM);
    table->heap = heap;
    if (s_hash_reset (&table->hash, capacity * 2))
        return -1;
    for (uint32_t index = 0; index < table->capacity; index++)
        if (entries[index].in_use)
            s_hash_insert (&table->hash, entries, S_STRIDE, index);
    for (uint32_t index = capacity; index-- > table->capacity;) {
        memset (&entries[index], 0, sizeof (zqi_r_entry_t));
        entries[index].next = table->free_head;
        table->free_head = index;
    }
    table->capacity = capacity;
    return 0;
}

uint32_t
zqi_r_table_add (zqi_r_table_t *table, const uint8_t *id)
{
    if (table->free_head == ZQI_R_NONE && s_grow (table))
        return ZQI_R_NONE;
    uint32_t index = table->free_head;
    zqi_r_entry_t *entry = &table->entries[index];
    table->free_head = entry->next;
    memset (entry, 0, sizeof *entry);
    memcpy (entry->id, id, ZQ_MSG_ID_SIZE);
    entry->heap_index = entry->owner = entry->prev = entry->next = ZQI_R_NONE;
    entry->in_use = true;
    s_hash_insert (&table->hash, table->entries, S_STRIDE, index);
    table->count++;
    return index;
}

//  The heap moves a hole rather than swapping: each step copies one entry
//  index into the hole and notes its new position.
static inline int64_t
s_due_at (const zqi_r_table_t *table, uint32_t position)
{
    return table->entries[table->heap[position]].due;
}

static inline void
s_heap_put (zqi_r_table_t *table, uint32_t position, uint32_t index)
{
    table->heap[position] = index;
    table->entries[index].heap_index = position;
}

//  Puts index in the hole at position, or above it if it is due earlier.
static void
s_heap_up (zqi_r_table_t *table, uint32_t position, uint32_t index)
{
    int64_t due = table->entries[index].due;
    while (position > 0) {
        uint32_t parent = (position - 1) / 2;
        if (!(due < s_due_at (table, parent)))
            break;
        s_heap_put (table, position, table->heap[parent]);
        position = parent;
    }
    s_heap_put (table, position, index);
}

//  Puts index in the hole at position, or below it if it is due later.
static void
s_heap_down (zqi_r_table_t *table, uint32_t position, uint32_t index)
{
    int64_t due = table->entries[index].due;
    while (true) {
        uint32_t child = 2 * position + 1;
        if (child >= table->heap_size)
            break;
        if (child + 1 < table->heap_size && s_due_at (table, child + 1) < s_due_at (table, child))
            child++;
        if (!(s_due_at (table, child) < due))
            break;
        s_heap_put (table, position, table->heap[child]);
        position = child;
    }
    s_heap_put (table, position, index);
}

void
zqi_r_table_unschedule (zqi_r_table_t *table, uint32_t index)
{
    uint32_t position = table->entries[index].heap_index;
    if (position == ZQI_R_NONE)
        return;
    ZQ_ASSERT (position < table->heap_size && table->heap[position] == index);
    table->entries[index].heap_index = ZQI_R_NONE;
    uint32_t last = --table->heap_size;
    if (position == last)
        return;
    //  The last entry is usually due late (timers are mostly set in
    //  increasing order): move the hole down to a leaf along the earlier
    //  children, one comparison a level, then let the last entry rise
    //  from there. Entries raised on the way stay above their children
    //  and below their parents, so it may rise past position.
    uint32_t moved = table->heap[last];
    while (true) {
        uint32_t child = 2 * position + 1;
        if (child >= table->heap_size)
            break;
        if (child + 1 < table->heap_size && s_due_at (table, child + 1) < s_due_at (table, child))
            child++;
        s_heap_put (table, position, table->heap[child]);
        position = child;
    }
    s_heap_up (table, position, moved);
}

void
zqi_r_table_schedule (zqi_r_table_t *table, uint32_t index, int64_t due)
{
    zqi_r_entry_t *entry = &table->entries[index];
    entry->due = due;
    if (entry->heap_index == ZQI_R_NONE) {
        s_heap_up (table, table->heap_size++, index);
    } else {
        uint32_t position = entry->heap_index;
        if (position > 0 && due < s_due_at (table, (position - 1) / 2))
            s_heap_up (table, position, index);
        else
            s_heap_down (table, position, index);
    }
}

void
zqi_r_table_remove (zqi_r_table_t *table, uint32_t index)
{
    zqi_r_entry_t *entry = &table->entries[index];
    ZQ_ASSERT (entry->in_use);
    zqi_r_table_unschedule (table, index);
    s_hash_remove (&table->hash, table->entries, S_STRIDE, index);
    entry->in_use = false;
    entry->next = table->free_head;
    table->free_head = index;
    table->count--;
}

//  ---- Dedupe window ------------------------------------------------------

#define S_SEEN     sizeof (zqi_r_seen_t)
#define S_SEEN_KEY offsetof (zqi_r_seen_t, content)

void
zqi_r_dedupe_init (zqi_r_dedupe_t *dedupe, int64_t window_ms, uint32_t max)
{
    memset (dedupe, 0, sizeof *dedupe);
    dedupe->window_ms = window_ms;
    dedupe->max = max ? max : 1;
    dedupe->hash.key_size = S_SEEN_KEY;
    s_hash_seed (&dedupe->hash);
}

void
zqi_r_dedupe_free (zqi_r_dedupe_t *dedupe)
{
    free (dedupe->ring);
    free (dedupe->hash.slots);
    memset (dedupe, 0, sizeof *dedupe);
}

void
zqi_r_dedupe_key (const zqi_r_dedupe_t *dedupe, zqi_r_seen_t *key, const uint8_t *id,
                  uint32_t queue, const char *producer)
{
    memset (key, 0, sizeof *key);
    memcpy (key->id, id, ZQ_MSG_ID_SIZE);
    key->queue = queue;
    if (producer && *producer) {
        //  Keyed by the secret seed: no producer can choose a name that
        //  lands in another's scope. Never 0, which stands for none.
        key->producer = XXH3_64bits_withSeed (producer, strlen (producer), dedupe->hash.seed);
        key->producer |= key->producer == 0;
    }
}

uint64_t
zqi_r_dedupe_content (const zqi_r_dedupe_t *dedupe, const void *body, size_t size)
{
    return XXH3_64bits_withSeed (body, size, ~dedupe->hash.seed);
}

//  Drops the oldest record.
static void
s_pop (zqi_r_dedupe_t *dedupe)
{
    zqi_r_seen_t *oldest = &dedupe->ring[dedupe->head];
    if (oldest->stored_ms != INT64_MIN)
        s_hash_remove (&dedupe->hash, dedupe->ring, S_SEEN, dedupe->head);
    dedupe->head = (dedupe->head + 1) & (dedupe->capacity - 1);
    dedupe->count--;
}

static void
s_expire (zqi_r_dedupe_t *dedupe, int64_t now)
{
    while (dedupe->count) {
        zqi_r_seen_t *oldest = &dedupe->ring[dedupe->head];
        if (oldest->stored_ms != INT64_MIN && oldest->stored_ms > now - dedupe->window_ms)
            break;
        s_pop (dedupe);
    }
}

zqi_r_seen_t *
zqi_r_dedupe_find (zqi_r_dedupe_t *dedupe, const zqi_r_seen_t *key, int64_t now)
{
    if (dedupe->window_ms <= 0 || !dedupe->count)
        return NULL;
    s_expire (dedupe, now);
    uint32_t index = s_hash_find (&dedupe->hash, dedupe->ring, S_SEEN, (const uint8_t *)key);
    return index == ZQI_R_NONE ? NULL : &dedupe->ring[index];
}

//  Doubles the ring (unwrapping it) and rebuilds the hash.
static int
s_ring_grow (zqi_r_dedupe_t *dedupe)
{
    uint32_t capacity = dedupe->capacity ? dedupe->capacity * 2 : 1024;
    zqi_r_seen_t *ring = (zqi_r_seen_t *)malloc ((size_t)capacity * S_SEEN);
    if (!ring)
        return zqi_fail (ENOMEM);
    for (uint32_t i = 0; i < dedupe->count; i++)
        ring[i] = dedupe->ring[(dedupe->head + i) & (dedupe->capacity - 1)];
    zqi_r_hash_t hash = dedupe->hash;
    hash.slots = NULL;
    if (s_hash_reset (&hash, capacity * 2)) {
        free (ring);
        return -1;
    }
    free (dedupe->hash.slots);
    dedupe->hash = hash;
    free (dedupe->ring);
    dedupe->ring = ring;
    dedupe->capacity = capacity;
    dedupe->head = 0;
    for (uint32_t i = 0; i < dedupe->count; i++)
        if (ring[i].stored_ms != INT64_MIN)
            s_hash_insert (&dedupe->hash, ring, S_SEEN, i);
    return 0;
}

int
zqi_r_dedupe_add (zqi_r_dedupe_t *dedupe, const zqi_r_seen_t *key, uint64_t content, int64_t now,
                  uint64_t seq)
{
    if (dedupe->window_ms <= 0)
        return 0;
    s_expire (dedupe, now);
    if (dedupe->count >= dedupe->max)
        s_pop (dedupe);
    if (dedupe->count == dedupe->capacity && s_ring_grow (dedupe))
        return -1;
    uint32_t index = (dedupe->head + dedupe->count) & (dedupe->capacity - 1);
    zqi_r_seen_t *seen = &dedupe->ring[index];
    *seen = *key;
    seen->content = content;
    seen->stored_ms = now;
    seen->seq = seq;
    dedupe->count++;
    s_hash_insert (&dedupe->hash, dedupe->ring, S_SEEN, index);
    return 0;
}

void
zqi_r_dedupe_forget (zqi_r_dedupe_t *dedupe, const zqi_r_seen_t *key)
{
    if (!dedupe->count)
        return;
    uint32_t index = s_hash_find (&dedupe->hash, dedupe->ring, S_SEEN, (const uint8_t *)key);
    if (index == ZQI_R_NONE)
        return;
    s_hash_remove (&dedupe->hash, dedupe->ring, S_SEEN, index);
    dedupe->ring[index].stored_ms = INT64_MIN;
}

void
zqi_r_dedupe_forget_queue (zqi_r_dedupe_t *dedupe, uint32_t queue)
{
    for (uint32_t i = 0; i < dedupe->count; i++) {
        uint32_t index = (dedupe->head + i) & (dedupe->capacity - 1);
        zqi_r_seen_t *seen = &dedupe->ring[index];
        if (seen->stored_ms != INT64_MIN && seen->queue == queue) {
            s_hash_remove (&dedupe->hash, dedupe->ring, S_SEEN, index);
            seen->stored_ms = INT64_MIN;
        }
    }
}
