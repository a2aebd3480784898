/*  =========================================================================
    zq_idtable - the seeded id hash and the entry slab with its timers, in
    a lane and a heap (src/zq_idtable.h).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_internal.h"
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
//  Ids are 16 bytes: inlined, XXH3 hashes them in a few instructions
//  rather than a call through the library's generic entry point.
#define XXH_INLINE_ALL
#include <xxhash.h>

//  ---- The hash -------------------------------------------------------------
//  A probe reads a record only when the 32-bit hashes agree, and a removal
//  shifts slots back without hashing their keys again.

typedef struct {
    uint32_t record;
    uint32_t hash;
} s_slot_t;

uint64_t
zqi_idhash_seed (const void *salt)
{
    uint64_t seed = 0;
    if (getrandom (&seed, sizeof seed, GRND_NONBLOCK) == (ssize_t)sizeof seed)
        return seed;
    //  No entropy yet (early boot): what differs between calls and callers.
    static atomic_uint_fast64_t calls = 0;
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    uint64_t mix[3] = {(uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec,
                       (uint64_t)(uintptr_t)salt, (uint64_t)atomic_fetch_add (&calls, 1) + 1};
    return XXH3_64bits_withSeed (mix, sizeof mix, 0x9E3779B97F4A7C15ull);
}

static inline const uint8_t *
s_key (const void *base, size_t stride, uint32_t index)
{
    return (const uint8_t *)base + (size_t)index * stride;
}

static inline s_slot_t *
s_slots (const zqi_idhash_t *hash)
{
    return (s_slot_t *)hash->slots;
}

static inline uint32_t
s_hash_of (const zqi_idhash_t *hash, const uint8_t *key)
{
    return (uint32_t)(XXH3_64bits_withSeed (key, hash->key_size, hash->seed) >> 32);
}

void
zqi_idhash_init (zqi_idhash_t *hash, uint32_t key_size)
{
    memset (hash, 0, sizeof *hash);
    hash->key_size = key_size;
    hash->seed = zqi_idhash_seed (hash);
}

void
zqi_idhash_free (zqi_idhash_t *hash)
{
    free (hash->slots);
    hash->slots = NULL;
    hash->mask = 0;
}

uint64_t
zqi_idhash_bytes (const zqi_idhash_t *hash, const void *data, size_t size)
{
    return XXH3_64bits_withSeed (data, size, hash->seed);
}

//  Slots at least this large are made present at once: the records
//  spread over all their pages within a few inserts anyway, and one call
//  maps them for less than the page faults a rebuild takes one by one
//  (the dedupe window's growth to 262144 ids: 1.7 ms rather than 2.8).
#define S_POPULATE_BYTES (256 * 1024)

//  Returns slot_count free slots, or NULL with errno ENOMEM.
static s_slot_t *
s_slots_new (uint32_t slot_count)
{
    size_t size = (size_t)slot_count * sizeof (s_slot_t);
    s_slot_t *slots = (s_slot_t *)calloc (slot_count, sizeof (s_slot_t));
    if (!slots) {
        errno = ENOMEM;
        return NULL;
    }
#ifdef MADV_POPULATE_WRITE
    if (size >= S_POPULATE_BYTES) {
        //  Only whole pages; a kernel without it (before Linux 5.14) says
        //  EINVAL, and the pages come as they are touched.
        int saved = errno;
        uintptr_t page = (uintptr_t)sysconf (_SC_PAGESIZE);
        uintptr_t start = ((uintptr_t)slots + page - 1) & ~(page - 1);
        uintptr_t end = ((uintptr_t)slots + size) & ~(page - 1);
        if (end > start)
            (void)madvise ((void *)start, end - start, MADV_POPULATE_WRITE);
        errno = saved;
    }
#endif
    return slots;
}

int
zqi_idhash_reset (zqi_idhash_t *hash, uint32_t slot_count)
{
    ZQ_ASSERT (slot_count && (slot_count & (slot_count - 1)) == 0);
    s_slot_t *slots = s_slots_new (slot_count);
    if (!slots)
        return -1;
    free (hash->slots);
    hash->slots = (uint32_t *)slots;
    hash->mask = slot_count - 1;
    return 0;
}

int
zqi_idhash_grow (zqi_idhash_t *hash, uint32_t slot_count, uint32_t from, uint32_t to,
                 uint32_t shift)
{
    ZQ_ASSERT (slot_count > hash->mask + 1 && (slot_count & (slot_count - 1)) == 0);
    s_slot_t *slots = s_slots_new (slot_count);
    if (!slots)
        return -1;
    uint32_t mask = slot_count - 1;
    const s_slot_t *old = s_slots (hash);
    for (uint32_t at = 0; old && at <= hash->mask; at++) {
        if (!old[at].record)
            continue;
        uint32_t index = old[at].record - 1;
        if (index >= from && index < to)
            index += shift;
        uint32_t slot = old[at].hash & mask;
        while (slots[slot].record)
            slot = (slot + 1) & mask;
        slots[slot].record = index + 1;
        slots[slot].hash = old[at].hash;
    }
    free (hash->slots);
    hash->slots = (uint32_t *)slots;
    hash->mask = mask;
    return 0;
}

uint32_t
zqi_idhash_key_hash (const zqi_idhash_t *hash, const uint8_t *key)
{
    return s_hash_of (hash, key);
}

void
zqi_idhash_prefetch (const zqi_idhash_t *hash, uint32_t key_hash)
{
    if (hash->slots)
        __builtin_prefetch (&s_slots (hash)[key_hash & hash->mask]);
}

static uint32_t
s_find_from (const zqi_idhash_t *hash, const void *base, size_t stride, const uint8_t *key,
             uint32_t key_hash, uint32_t *cursor)
{
    if (!hash->slots)
        return ZQI_ID_NONE;
    const s_slot_t *slots = s_slots (hash);
    uint32_t slot = *cursor == ZQI_ID_NONE ? key_hash & hash->mask : *cursor;
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
    *cursor = ZQI_ID_NONE;
    return ZQI_ID_NONE;
}

uint32_t
zqi_idhash_find_from (const zqi_idhash_t *hash, const void *base, size_t stride, const uint8_t *key,
                      uint32_t *cursor)
{
    if (!hash->slots)
        return ZQI_ID_NONE;
    return s_find_from (hash, base, stride, key, s_hash_of (hash, key), cursor);
}

uint32_t
zqi_idhash_find_hashed (const zqi_idhash_t *hash, const void *base, size_t stride,
                        const uint8_t *key, uint32_t key_hash)
{
    uint32_t cursor = ZQI_ID_NONE;
    return s_find_from (hash, base, stride, key, key_hash, &cursor);
}

uint32_t
zqi_idhash_find (const zqi_idhash_t *hash, const void *base, size_t stride, const uint8_t *key)
{
    uint32_t cursor = ZQI_ID_NONE;
    return zqi_idhash_find_from (hash, base, stride, key, &cursor);
}

void
zqi_idhash_insert (zqi_idhash_t *hash, const void *base, size_t stride, uint32_t index)
{
    zqi_idhash_insert_hashed (hash, index, s_hash_of (hash, s_key (base, stride, index)));
}

void
zqi_idhash_insert_hashed (zqi_idhash_t *hash, uint32_t index, uint32_t key_hash)
{
    s_slot_t *slots = s_slots (hash);
    uint32_t slot = key_hash & hash->mask;
    while (slots[slot].record)
        slot = (slot + 1) & hash->mask;
    slots[slot].record = index + 1;
    slots[slot].hash = key_hash;
}

void
zqi_idhash_remove (zqi_idhash_t *hash, const void *base, size_t stride, uint32_t index)
{
    zqi_idhash_remove_hashed (hash, index, s_hash_of (hash, s_key (base, stride, index)));
}

void
zqi_idhash_remove_hashed (zqi_idhash_t *hash, uint32_t index, uint32_t key_hash)
{
    s_slot_t *slots = s_slots (hash);
    uint32_t hole = key_hash & hash->mask;
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
        if (!zqi_probe_stays (hole, next, home)) {
            slots[hole] = slots[next];
            hole = next;
        }
    }
    slots[hole].record = 0;
}

//  ---- The table ------------------------------------------------------------

#define S_FIRST_CAPACITY 64
//  Slot counts (twice the entries, a power of two) stay below 2^32.
#define S_MAX_CAPACITY (UINT32_C (1) << 30)

static inline uint8_t *
s_entry (const zqi_idtable_t *table, uint32_t index)
{
    return (uint8_t *)table->entries + (size_t)index * table->layout.entry_size;
}

//  The table's own fields in the entry at index, by their offsets.
#define S_FIELD(table, index, type, field)                                                         \
    ((type *)(s_entry (table, index) + (table)->layout.field##_offset))
#define s_due(table, index)        S_FIELD (table, index, int64_t, due)
#define s_heap_index(table, index) S_FIELD (table, index, uint32_t, heap_index)
#define s_link(table, index)       S_FIELD (table, index, uint32_t, link)
#define s_in_use(table, index)     S_FIELD (table, index, bool, in_use)
#define s_key_hash(table, index)   S_FIELD (table, index, uint32_t, key_hash)

void
zqi_idtable_init (zqi_idtable_t *table, const zqi_idtable_layout_t *layout, uint32_t max_entries)
{
    memset (table, 0, sizeof *table);
    table->layout = *layout;
    table->max_entries =
        max_entries == 0 || max_entries > S_MAX_CAPACITY ? S_MAX_CAPACITY : max_entries;
    table->free_head = ZQI_ID_NONE;
    table->lane_head = table->lane_tail = ZQI_ID_NONE;
    zqi_idhash_init (&table->hash, ZQ_MSG_ID_SIZE);
}

void
zqi_idtable_free (zqi_idtable_t *table)
{
    free (table->entries);
    free (table->heap);
    free (table->lane);
    zqi_idhash_free (&table->hash);
    table->entries = NULL;
    table->heap = NULL;
    table->lane = NULL;
    table->capacity = table->count = table->heap_size = table->lane_size = 0;
    table->free_head = table->lane_head = table->lane_tail = ZQI_ID_NONE;
}

uint32_t
zqi_idtable_find (const zqi_idtable_t *table, const uint8_t *id)
{
    return zqi_idhash_find (&table->hash, table->entries, table->layout.entry_size, id);
}

uint32_t
zqi_idtable_find_from (const zqi_idtable_t *table, const uint8_t *id, uint32_t *cursor)
{
    return zqi_idhash_find_from (&table->hash, table->entries, table->layout.entry_size, id,
                                 cursor);
}

//  Doubles the slab (up to max_entries) and rebuilds the hash.
static int
s_grow (zqi_idtable_t *table)
{
    if (table->capacity >= table->max_entries)
        return zqi_fail (ENOBUFS);
    uint32_t capacity = table->capacity ? table->capacity * 2 : S_FIRST_CAPACITY;
    if (capacity > table->max_entries)
        capacity = table->max_entries;
    size_t entry_size = table->layout.entry_size;
    void *entries = realloc (table->entries, (size_t)capacity * entry_size);
    if (!entries)
        return zqi_fail (ENOMEM);
    table->entries = entries;
    zqi_idtable_timer_t *heap = (zqi_idtable_timer_t *)realloc (
        table->heap, (size_t)capacity * sizeof (zqi_idtable_timer_t));
    if (!heap)
        return zqi_fail (ENOMEM);
    table->heap = heap;
    zqi_idtable_lane_t *lane =
        (zqi_idtable_lane_t *)realloc (table->lane, (size_t)capacity * sizeof (zqi_idtable_lane_t));
    if (!lane)
        return zqi_fail (ENOMEM);
    table->lane = lane;
    uint32_t slot_count = 1;
    while (slot_count < capacity * 2)
        slot_count *= 2;
    //  The entries keep their indexes.
    if (zqi_idhash_grow (&table->hash, slot_count, 0, 0, 0))
        return -1;
    //  The new entries join the free list, lowest index first.
    for (uint32_t index = capacity; index-- > table->capacity;) {
        memset (s_entry (table, index), 0, entry_size);
        *s_link (table, index) = table->free_head;
        table->free_head = index;
    }
    table->capacity = capacity;
    return 0;
}

static uint32_t
s_add (zqi_idtable_t *table, const uint8_t *id, uint32_t key_hash)
{
    if (table->free_head == ZQI_ID_NONE && s_grow (table))
        return ZQI_ID_NONE;
    uint32_t index = table->free_head;
    table->free_head = *s_link (table, index);
    memset (s_entry (table, index), 0, table->layout.entry_size);
    memcpy (s_entry (table, index), id, ZQ_MSG_ID_SIZE);
    *s_heap_index (table, index) = ZQI_ID_NONE;
    *s_link (table, index) = ZQI_ID_NONE;
    *s_in_use (table, index) = true;
    *s_key_hash (table, index) = key_hash;
    zqi_idhash_insert_hashed (&table->hash, index, key_hash);
    table->count++;
    return index;
}

uint32_t
zqi_idtable_add (zqi_idtable_t *table, const uint8_t *id)
{
    return s_add (table, id, zqi_idhash_key_hash (&table->hash, id));
}

uint32_t
zqi_idtable_add_new (zqi_idtable_t *table, const uint8_t *id)
{
    uint32_t key_hash = zqi_idhash_key_hash (&table->hash, id);
    if (zqi_idhash_find_hashed (&table->hash, table->entries, table->layout.entry_size, id,
                                key_hash) != ZQI_ID_NONE) {
        errno = EEXIST;
        return ZQI_ID_NONE;
    }
    return s_add (table, id, key_hash);
}

//  Children per heap node: four halves the levels a removal walks down
//  (each level moves one slot and notes its entry's new position), and
//  four slots of 16 bytes are one cache line to compare.
#define S_ARITY 4

//  The heap moves a hole rather than swapping: each step copies one slot
//  into the hole and notes its entry's new position. Slots carry their
//  due time, so a comparison reads the heap alone.
static inline int64_t
s_due_at (const zqi_idtable_t *table, uint32_t position)
{
    return table->heap[position].due;
}

static inline void
s_heap_put (zqi_idtable_t *table, uint32_t position, zqi_idtable_timer_t timer)
{
    table->heap[position] = timer;
    *s_heap_index (table, timer.index) = position;
}

//  Puts timer in the hole at position, or above it if it is due earlier.
static void
s_heap_up (zqi_idtable_t *table, uint32_t position, zqi_idtable_timer_t timer)
{
    while (position > 0) {
        uint32_t parent = (position - 1) / S_ARITY;
        if (!(timer.due < s_due_at (table, parent)))
            break;
        s_heap_put (table, position, table->heap[parent]);
        position = parent;
    }
    s_heap_put (table, position, timer);
}

//  The child of position that is due first, or ZQI_ID_NONE at a leaf.
static inline uint32_t
s_earlier_child (const zqi_idtable_t *table, uint32_t position)
{
    uint32_t first = S_ARITY * position + 1;
    if (first >= table->heap_size)
        return ZQI_ID_NONE;
    uint32_t last =
        first + S_ARITY - 1 < table->heap_size ? first + S_ARITY - 1 : table->heap_size - 1;
    uint32_t child = first;
    for (uint32_t other = first + 1; other <= last; other++)
        if (s_due_at (table, other) < s_due_at (table, child))
            child = other;
    return child;
}

//  Puts timer in the hole at position, or below it if it is due later.
static void
s_heap_down (zqi_idtable_t *table, uint32_t position, zqi_idtable_timer_t timer)
{
    while (true) {
        uint32_t child = s_earlier_child (table, position);
        if (child == ZQI_ID_NONE || !(s_due_at (table, child) < timer.due))
            break;
        s_heap_put (table, position, table->heap[child]);
        position = child;
    }
    s_heap_put (table, position, timer);
}

//  ---- The lane: timers set in due order -----------------------------------

static void
s_lane_append (zqi_idtable_t *table, uint32_t index)
{
    table->lane[index].prev = table->lane_tail;
    table->lane[index].next = ZQI_ID_NONE;
    if (table->lane_tail == ZQI_ID_NONE) {
        table->lane_head = index;
        table->lane_head_due = *s_due (table, index);
    } else
        table->lane[table->lane_tail].next = index;
    table->lane_tail = index;
    table->lane_size++;
    *s_heap_index (table, index) = ZQI_IDTABLE_IN_LANE;
}

static void
s_lane_unlink (zqi_idtable_t *table, uint32_t index)
{
    zqi_idtable_lane_t links = table->lane[index];
    if (links.prev == ZQI_ID_NONE) {
        table->lane_head = links.next;
        if (links.next != ZQI_ID_NONE)
            table->lane_head_due = *s_due (table, links.next);
    } else
        table->lane[links.prev].next = links.next;
    if (links.next == ZQI_ID_NONE)
        table->lane_tail = links.prev;
    else
        table->lane[links.next].prev = links.prev;
    table->lane_size--;
    *s_heap_index (table, index) = ZQI_ID_NONE;
}

void
zqi_idtable_unschedule (zqi_idtable_t *table, uint32_t index)
{
    uint32_t position = *s_heap_index (table, index);
    if (position == ZQI_ID_NONE)
        return;
    if (position == ZQI_IDTABLE_IN_LANE) {
        s_lane_unlink (table, index);
        return;
    }
    ZQ_ASSERT (position < table->heap_size && table->heap[position].index == index);
    *s_heap_index (table, index) = ZQI_ID_NONE;
    uint32_t last = --table->heap_size;
    if (position == last)
        return;
    //  The last slot is usually due late (timers are mostly set in
    //  increasing order): move the hole down to a leaf along the earlier
    //  children, one comparison a level, then let the last slot rise
    //  from there. Slots raised on the way stay above their children
    //  and below their parents, so it may rise past position.
    zqi_idtable_timer_t moved = table->heap[last];
    for (uint32_t child; (child = s_earlier_child (table, position)) != ZQI_ID_NONE;) {
        s_heap_put (table, position, table->heap[child]);
        position = child;
    }
    s_heap_up (table, position, moved);
}

void
zqi_idtable_schedule (zqi_idtable_t *table, uint32_t index, int64_t due)
{
    if (*s_heap_index (table, index) == ZQI_IDTABLE_IN_LANE)
        s_lane_unlink (table, index);
    uint32_t position = *s_heap_index (table, index);
    bool in_order = table->lane_tail == ZQI_ID_NONE || due >= *s_due (table, table->lane_tail);
    *s_due (table, index) = due;
    if (position == ZQI_ID_NONE && in_order) {
        s_lane_append (table, index);
        return;
    }
    zqi_idtable_timer_t timer = {due, index};
    if (position == ZQI_ID_NONE)
        s_heap_up (table, table->heap_size++, timer);
    else if (position > 0 && due < s_due_at (table, (position - 1) / S_ARITY))
        s_heap_up (table, position, timer);
    else
        s_heap_down (table, position, timer);
}

void
zqi_idtable_remove (zqi_idtable_t *table, uint32_t index)
{
    ZQ_ASSERT (index < table->capacity && *s_in_use (table, index));
    zqi_idtable_unschedule (table, index);
    zqi_idhash_remove_hashed (&table->hash, index, *s_key_hash (table, index));
    *s_in_use (table, index) = false;
    *s_link (table, index) = table->free_head;
    table->free_head = index;
    table->count--;
}
