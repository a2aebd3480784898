/*  =========================================================================
    zq_idtable - finding things by message id in O(1), and their timers:
    the one id table of zq (rpc's requests and routes, reliable's tracked
    messages and dedupe window). Internal, never installed; included
    through zq_internal.h. It knows nothing of patterns.

        zqi_idhash_t   an open-addressing hash (linear probing,
                       backward-shift removal) over an array of records
                       whose first key_size bytes are their key. Its XXH3
                       seed is secret and random per hash, so a peer cannot
                       choose ids that pile up in one run of slots.
        zqi_idtable_t  a slab of entries (caller-defined structs that start
                       with a 16-byte id) with such a hash, a free list and
                       their timers: a lane (a list in due order) for
                       those set no earlier than the lane's last, taken
                       from anywhere in O(1), and a 4-ary min-heap for the
                       others (each heap slot holds its due time beside
                       the entry's index, so sifting reads no entry).
                       Indexes stay valid across adds; pointers do not.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_IDTABLE_H_INCLUDED
#define ZQ_IDTABLE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  No entry, no slot, not scheduled.
#define ZQI_ID_NONE UINT32_MAX

//  ---- The hash -------------------------------------------------------------

//  Removal by shifting back in linear probing (this hash, and the spool's
//  table of records handed out): a record at slot next, whose home slot
//  is home, stays where it is when the hole left at slot hole would put
//  it before its home, that is when home lies cyclically in (hole, next].
static inline bool
zqi_probe_stays (uint32_t hole, uint32_t next, uint32_t home)
{
    return hole <= next ? (home > hole && home <= next) : (home > hole || home <= next);
}

//  Each slot is two words: record index + 1 (0 when free) and 32 bits of
//  the key's hash, whose low bits are its home slot (zq_idtable.c owns
//  the layout). Several records may share a key.
typedef struct {
    uint32_t *slots; //  2 words per slot
    uint32_t mask;   //  slot count - 1 (a power of two), 0 before the first reset
    uint32_t key_size;
    uint64_t seed; //  secret, random: chosen keys cannot pile up
} zqi_idhash_t;

//  A fresh secret seed: from getrandom, or, before the kernel has entropy
//  (early boot), a mix of the clock, a process-wide counter and salt (an
//  address that differs between callers). Never the same twice in a process.
uint64_t zqi_idhash_seed (const void *salt);

//  Makes an empty hash for keys of key_size bytes with a seed of its own.
void zqi_idhash_init (zqi_idhash_t *hash, uint32_t key_size);
//  Frees the slots; the hash is empty and keeps its seed.
void zqi_idhash_free (zqi_idhash_t *hash);
//  The 64-bit keyed hash of size bytes under the hash's seed (also for
//  callers that need a keyed hash of something else, e.g. a body).
uint64_t zqi_idhash_bytes (const zqi_idhash_t *hash, const void *data, size_t size);
//  Replaces the slots with slot_count empty ones (a power of two, larger
//  than the records to hold); the caller inserts the live records again.
//  Returns 0, or -1 with errno ENOMEM (the hash is then unchanged).
int zqi_idhash_reset (zqi_idhash_t *hash, uint32_t slot_count);
//  Replaces the slots with slot_count empty ones (a power of two, more
//  than the slots now and more than 1) holding the same records, each
//  under its index plus shift when it lies in [from, to) (records moved
//  as their array grew), else under the same index. It reads the old
//  slots in order, so the new ones are written in a few ascending runs,
//  not at random, and reads no record. Returns 0, or -1 with errno ENOMEM
//  (the hash is then unchanged).
int zqi_idhash_grow (zqi_idhash_t *hash, uint32_t slot_count, uint32_t from, uint32_t to,
                     uint32_t shift);
//  Records live in an array at base, stride bytes apart, key first.
//  Returns the record with key after probe position *cursor (ZQI_ID_NONE:
//  from the key's home slot), moving *cursor past it; ZQI_ID_NONE when
//  there are no more. An insert or remove ends the walk.
uint32_t zqi_idhash_find_from (const zqi_idhash_t *hash, const void *base, size_t stride,
                               const uint8_t *key, uint32_t *cursor);
//  The first record with key, or ZQI_ID_NONE.
uint32_t zqi_idhash_find (const zqi_idhash_t *hash, const void *base, size_t stride,
                          const uint8_t *key);
//  Adds record index (its key in place). There must be a free slot.
void zqi_idhash_insert (zqi_idhash_t *hash, const void *base, size_t stride, uint32_t index);
//  Removes record index, which is in the hash.
void zqi_idhash_remove (zqi_idhash_t *hash, const void *base, size_t stride, uint32_t index);
//  The same, for a caller that keeps each record's key hash beside it
//  (zqi_idhash_key_hash of its key) and so never hashes a key twice:
//  the 32-bit hash of key; the first record with key, or ZQI_ID_NONE;
//  adding and removing record index; and a hint to the processor to load
//  the slot where a probe for key_hash starts (a lookup or removal that
//  follows soon finds it in cache).
uint32_t zqi_idhash_key_hash (const zqi_idhash_t *hash, const uint8_t *key);
uint32_t zqi_idhash_find_hashed (const zqi_idhash_t *hash, const void *base, size_t stride,
                                 const uint8_t *key, uint32_t key_hash);
void zqi_idhash_insert_hashed (zqi_idhash_t *hash, uint32_t index, uint32_t key_hash);
void zqi_idhash_remove_hashed (zqi_idhash_t *hash, uint32_t index, uint32_t key_hash);
void zqi_idhash_prefetch (const zqi_idhash_t *hash, uint32_t key_hash);

//  ---- The table ------------------------------------------------------------

//  Where the table's own fields are in the caller's entry struct: the id
//  is its first ZQ_MSG_ID_SIZE bytes; due (int64_t), heap_index, link and
//  key_hash (uint32_t: the id's hash, kept so that a removal need not
//  hash it again) and in_use (bool) are members named by their offsets. link
//  chains the free list while an entry is free; the caller may use it
//  for its own lists while the entry is in use.
typedef struct {
    size_t entry_size;
    size_t due_offset;
    size_t heap_index_offset;
    size_t link_offset;
    size_t in_use_offset;
    size_t key_hash_offset;
} zqi_idtable_layout_t;

#define ZQI_IDTABLE_LAYOUT(type, due, heap_index, link, in_use, key_hash)                          \
    {                                                                                              \
        sizeof (type), offsetof (type, due), offsetof (type, heap_index), offsetof (type, link),   \
            offsetof (type, in_use), offsetof (type, key_hash)                                     \
    }

//  A heap slot: the entry's due time, copied, and its index.
typedef struct {
    int64_t due;
    uint32_t index;
} zqi_idtable_timer_t;

//  An entry's links in the lane of timers (by entry index).
typedef struct {
    uint32_t prev;
    uint32_t next;
} zqi_idtable_lane_t;

//  An entry's heap_index while its timer is in the lane.
#define ZQI_IDTABLE_IN_LANE (UINT32_MAX - 1)

//  entries, capacity and count come first, in this order, so that a user
//  may overlay them with a typed pointer (a union with an anonymous struct
//  of the same three members) and read its entries as an array.
typedef struct {
    void *entries;     //  capacity entries of layout.entry_size bytes
    uint32_t capacity; //  entries allocated
    uint32_t count;    //  entries in use
    uint32_t max_entries;
    uint32_t free_head;
    zqi_idtable_layout_t layout;
    zqi_idhash_t hash;
    //  Timers: those set no earlier than the latest one in the lane (the
    //  usual case: now + a fixed timeout) join the lane's tail, a list in
    //  due order that is taken from anywhere at no cost; the others go to
    //  the heap. The first timer is the earlier of the two heads.
    zqi_idtable_timer_t *heap; //  a 4-ary min-heap on due
    uint32_t heap_size;
    zqi_idtable_lane_t *lane; //  capacity links, by entry index
    uint32_t lane_head;       //  ZQI_ID_NONE when the lane is empty
    uint32_t lane_tail;
    uint32_t lane_size;
    int64_t lane_head_due;
} zqi_idtable_t;

//  Makes an empty table for entries of layout, with a seed of its own. It
//  grows by doubling from 64 entries up to max_entries (0, or more than
//  2^30: 2^30), with twice as many hash slots.
void zqi_idtable_init (zqi_idtable_t *table, const zqi_idtable_layout_t *layout,
                       uint32_t max_entries);
//  Frees everything; the table is empty (init again to use it).
void zqi_idtable_free (zqi_idtable_t *table);
//  Returns the index of an entry with id, or ZQI_ID_NONE.
uint32_t zqi_idtable_find (const zqi_idtable_t *table, const uint8_t *id);
//  Returns the entries with id one by one: *cursor starts at ZQI_ID_NONE
//  and moves past each entry returned; ZQI_ID_NONE when there are no more.
//  An add or remove ends the walk.
uint32_t zqi_idtable_find_from (const zqi_idtable_t *table, const uint8_t *id, uint32_t *cursor);
//  Adds an entry for id (another with the same id may exist): zeroed but
//  for id, in_use (true), heap_index and link (ZQI_ID_NONE). Returns its
//  index, or ZQI_ID_NONE with errno ENOBUFS (max_entries in use) or ENOMEM.
uint32_t zqi_idtable_add (zqi_idtable_t *table, const uint8_t *id);
//  The same, unless an entry has id already: then ZQI_ID_NONE with errno
//  EEXIST. The id is hashed once for the lookup and the add.
uint32_t zqi_idtable_add_new (zqi_idtable_t *table, const uint8_t *id);
//  Removes the entry (and its timer); its index goes to the free list.
void zqi_idtable_remove (zqi_idtable_t *table, uint32_t index);
//  Sets or moves the entry's timer to due.
void zqi_idtable_schedule (zqi_idtable_t *table, uint32_t index, int64_t due);
//  Takes the entry's timer away, if it has one.
void zqi_idtable_unschedule (zqi_idtable_t *table, uint32_t index);
//  The index of the entry with the earliest timer, or ZQI_ID_NONE.
static inline uint32_t
zqi_idtable_first (const zqi_idtable_t *table)
{
    if (!table->heap_size)
        return table->lane_head;
    if (table->lane_head != ZQI_ID_NONE && table->lane_head_due < table->heap[0].due)
        return table->lane_head;
    return table->heap[0].index;
}
//  The number of entries with a timer.
static inline uint32_t
zqi_idtable_scheduled (const zqi_idtable_t *table)
{
    return table->heap_size + table->lane_size;
}
//  The entry at index, as a pointer into the slab (valid until an add).
static inline void *
zqi_idtable_at (const zqi_idtable_t *table, uint32_t index)
{
    return (uint8_t *)table->entries + (size_t)index * table->layout.entry_size;
}

#endif
