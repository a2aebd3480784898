/*  =========================================================================
    reliable_table - O(1) lookups by message id for the reliable pattern:
    its tracked entries in zq_idtable's slab with their timers, and the
    dedupe window (a ring of the ids stored recently, oldest first, with a
    zq_idtable hash).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable.h"

//  ---- Entries with timers ------------------------------------------------

static const zqi_idtable_layout_t s_layout =
    ZQI_IDTABLE_LAYOUT (zqi_r_entry_t, due, heap_index, next, in_use, key_hash);

void
zqi_r_table_init (zqi_r_table_t *table)
{
    zqi_idtable_init (&table->core, &s_layout, 0);
}

void
zqi_r_table_free (zqi_r_table_t *table)
{
    zqi_idtable_free (&table->core);
    zqi_r_table_init (table);
}

uint32_t
zqi_r_table_add (zqi_r_table_t *table, const uint8_t *id)
{
    uint32_t index = zqi_idtable_add (&table->core, id);
    if (index == ZQI_R_NONE) {
        errno = ENOMEM;
        return ZQI_R_NONE;
    }
    zqi_r_entry_t *entry = &table->entries[index];
    entry->owner = entry->prev = ZQI_R_NONE;
    return index;
}

uint32_t
zqi_r_table_add_new (zqi_r_table_t *table, const uint8_t *id)
{
    uint32_t index = zqi_idtable_add_new (&table->core, id);
    if (index == ZQI_R_NONE) {
        if (errno != EEXIST)
            errno = ENOMEM;
        return ZQI_R_NONE;
    }
    zqi_r_entry_t *entry = &table->entries[index];
    entry->owner = entry->prev = ZQI_R_NONE;
    return index;
}

//  ---- Dedupe window ------------------------------------------------------

#define S_SEEN     sizeof (zqi_r_seen_t)
#define S_SEEN_KEY offsetof (zqi_r_seen_t, content)
//  The ring's first size, and the most ids it holds.
#define S_RING_FIRST 1024
#define S_MAX        (UINT32_C (1) << 30)

void
zqi_r_dedupe_init (zqi_r_dedupe_t *dedupe, int64_t window_ms, uint32_t max)
{
    memset (dedupe, 0, sizeof *dedupe);
    dedupe->window_ms = window_ms;
    //  (A ring of at most 2^30 records has a hash of at most 2^31 slots.)
    dedupe->max = max == 0 ? 1 : max > S_MAX ? S_MAX : max;
    zqi_idhash_init (&dedupe->hash, S_SEEN_KEY);
}

void
zqi_r_dedupe_free (zqi_r_dedupe_t *dedupe)
{
    free (dedupe->ring);
    zqi_idhash_free (&dedupe->hash);
    memset (dedupe, 0, sizeof *dedupe);
}

uint64_t
zqi_r_dedupe_producer (const zqi_r_dedupe_t *dedupe, const char *producer)
{
    if (!producer || !*producer)
        return 0;
    //  Keyed by the secret seed: no producer can choose a name that lands
    //  in another's scope. Never 0, which stands for none.
    uint64_t hash = zqi_idhash_bytes (&dedupe->hash, producer, strlen (producer));
    return hash | (hash == 0);
}

_Static_assert(offsetof (zqi_r_seen_t, producer) == ZQ_MSG_ID_SIZE &&
                   offsetof (zqi_r_seen_t, queue) == ZQ_MSG_ID_SIZE + sizeof (uint64_t),
               "a key starts with its id, then its producer");

//  The hash of a key covers its id and producer, not its queue (compared
//  whole all the same), so that it is known before the queue is: a PUT
//  batch's lookups can be started ahead (zqi_r_dedupe_prefetch).
uint32_t
zqi_r_dedupe_key_hash (const zqi_r_dedupe_t *dedupe, const uint8_t *id, uint64_t producer)
{
    uint8_t bytes[ZQ_MSG_ID_SIZE + sizeof producer];
    memcpy (bytes, id, ZQ_MSG_ID_SIZE);
    memcpy (bytes + ZQ_MSG_ID_SIZE, &producer, sizeof producer);
    return (uint32_t)(zqi_idhash_bytes (&dedupe->hash, bytes, sizeof bytes) >> 32);
}

void
zqi_r_dedupe_key_hashed (zqi_r_seen_t *key, const uint8_t *id, uint32_t queue, uint64_t producer,
                         uint32_t key_hash)
{
    memset (key, 0, sizeof *key);
    memcpy (key->id, id, ZQ_MSG_ID_SIZE);
    key->producer = producer;
    key->queue = queue;
    key->key_hash = key_hash;
}

void
zqi_r_dedupe_key (const zqi_r_dedupe_t *dedupe, zqi_r_seen_t *key, const uint8_t *id,
                  uint32_t queue, const char *producer)
{
    uint64_t hashed = zqi_r_dedupe_producer (dedupe, producer);
    zqi_r_dedupe_key_hashed (key, id, queue, hashed, zqi_r_dedupe_key_hash (dedupe, id, hashed));
}

void
zqi_r_dedupe_prefetch (const zqi_r_dedupe_t *dedupe, uint32_t key_hash, uint32_t ahead)
{
    if (dedupe->window_ms <= 0 || !dedupe->count)
        return;
    zqi_idhash_prefetch (&dedupe->hash, key_hash);
    //  Full: the add after ahead others drops the record ahead places
    //  after the oldest (unless some expire first).
    if (dedupe->count >= dedupe->max && ahead < dedupe->count) {
        const zqi_r_seen_t *dropped =
            &dedupe->ring[(dedupe->head + ahead) & (dedupe->capacity - 1)];
        if (dropped->stored_ms != INT64_MIN)
            zqi_idhash_prefetch (&dedupe->hash, dropped->key_hash);
    }
}

uint64_t
zqi_r_dedupe_content (const zqi_r_dedupe_t *dedupe, const void *body, size_t size)
{
    zqi_idhash_t content_hash = dedupe->hash;
    content_hash.seed = ~dedupe->hash.seed;
    return zqi_idhash_bytes (&content_hash, body, size);
}

//  Drops the oldest record.
static void
s_pop (zqi_r_dedupe_t *dedupe)
{
    zqi_r_seen_t *oldest = &dedupe->ring[dedupe->head];
    if (oldest->stored_ms != INT64_MIN)
        zqi_idhash_remove_hashed (&dedupe->hash, dedupe->head, oldest->key_hash);
    dedupe->head = (dedupe->head + 1) & (dedupe->capacity - 1);
    dedupe->count--;
}

//  Drops the oldest record, live and within the window (s_expire ran):
//  forgotten early.
static void
s_forget_early (zqi_r_dedupe_t *dedupe)
{
    dedupe->forgotten++;
    dedupe->forgotten_stored_ms = dedupe->ring[dedupe->head].stored_ms;
    s_pop (dedupe);
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
    //  Full: the add after this lookup drops the oldest record. Both probes
    //  land anywhere in the slots; loading that one now overlaps the two.
    if (dedupe->count >= dedupe->max && dedupe->ring[dedupe->head].stored_ms != INT64_MIN)
        zqi_idhash_prefetch (&dedupe->hash, dedupe->ring[dedupe->head].key_hash);
    uint32_t index = zqi_idhash_find_hashed (&dedupe->hash, dedupe->ring, S_SEEN,
                                             (const uint8_t *)key, key->key_hash);
    return index == ZQI_R_NONE ? NULL : &dedupe->ring[index];
}

//  Grows the full ring fourfold, or twofold when that reaches max (it
//  never passes max rounded up to a power of two). It runs on the thread
//  that reads PUTs, so it keeps its pause short (from 65536 ids to 262144:
//  1.7 ms, where unwrapping into a new ring and rehashing took 4.3). The
//  ring is reallocated (with glibc a large block is remapped, not
//  copied), and only the shorter part on one side of its wrap moves: the
//  newest to just past the old end, or the oldest to the end of the
//  larger ring (none while the ring has never dropped a record). The hash
//  is rebuilt from its own slots, in order, the moved records under their
//  new indexes, reading no record. The ring never shrinks: at a growth it
//  is at most four times what it holds.
static int
s_ring_grow (zqi_r_dedupe_t *dedupe)
{
    uint32_t old_capacity = dedupe->capacity, capacity = S_RING_FIRST;
    if (old_capacity) {
        capacity = old_capacity * 2;
        if (capacity < dedupe->max)
            capacity *= 2;
    }
    //  Full: the oldest records are [head, old_capacity), the newest
    //  [0, head). The shorter part moves (newest first on a tie): the
    //  newest to just past the old end, or the oldest to the new end.
    //  (The first ring, from none, moves nothing.)
    uint32_t head = dedupe->head, from = 0, to = head, shift = old_capacity;
    bool oldest_move = head > old_capacity - head;
    if (oldest_move) {
        from = head;
        to = old_capacity;
        shift = capacity - old_capacity;
    }
    zqi_r_seen_t *ring = (zqi_r_seen_t *)realloc (dedupe->ring, (size_t)capacity * S_SEEN);
    if (!ring)
        return zqi_fail (ENOMEM);
    dedupe->ring = ring;
    //  (Without memory for the hash the ring is larger than it needs, and
    //  unchanged.)
    if (zqi_idhash_grow (&dedupe->hash, capacity * 2, from, to, shift))
        return -1;
    memcpy (ring + from + shift, ring + from, (size_t)(to - from) * S_SEEN);
    if (oldest_move)
        dedupe->head = head + shift;
    dedupe->capacity = capacity;
    return 0;
}

int
zqi_r_dedupe_add (zqi_r_dedupe_t *dedupe, const zqi_r_seen_t *key, uint64_t content, int64_t now,
                  uint64_t seq)
{
    if (dedupe->window_ms <= 0)
        return 0;
    //  Once expired ones are gone, the oldest is within the window: one
    //  dropped now is forgotten early.
    s_expire (dedupe, now);
    if (dedupe->count >= dedupe->max)
        s_forget_early (dedupe);
    int result = 0;
    if (dedupe->count == dedupe->capacity && s_ring_grow (dedupe)) {
        //  No memory for a larger ring: the newest id, whose resend is
        //  the likeliest, takes the oldest one's place.
        if (!dedupe->count) {
            dedupe->forgotten++;
            return -1;
        }
        s_forget_early (dedupe);
        result = 1;
    }
    uint32_t index = (dedupe->head + dedupe->count) & (dedupe->capacity - 1);
    zqi_r_seen_t *seen = &dedupe->ring[index];
    *seen = *key;
    seen->content = content;
    seen->stored_ms = now;
    seen->seq = seq;
    dedupe->count++;
    zqi_idhash_insert_hashed (&dedupe->hash, index, seen->key_hash);
    return result;
}

void
zqi_r_dedupe_forget (zqi_r_dedupe_t *dedupe, const zqi_r_seen_t *key)
{
    if (!dedupe->count)
        return;
    uint32_t index = zqi_idhash_find_hashed (&dedupe->hash, dedupe->ring, S_SEEN,
                                             (const uint8_t *)key, key->key_hash);
    if (index == ZQI_R_NONE)
        return;
    zqi_idhash_remove_hashed (&dedupe->hash, index, key->key_hash);
    dedupe->ring[index].stored_ms = INT64_MIN;
}

void
zqi_r_dedupe_forget_queue (zqi_r_dedupe_t *dedupe, uint32_t queue)
{
    for (uint32_t i = 0; i < dedupe->count; i++) {
        uint32_t index = (dedupe->head + i) & (dedupe->capacity - 1);
        zqi_r_seen_t *seen = &dedupe->ring[index];
        if (seen->stored_ms != INT64_MIN && seen->queue == queue) {
            zqi_idhash_remove_hashed (&dedupe->hash, index, seen->key_hash);
            seen->stored_ms = INT64_MIN;
        }
    }
}
