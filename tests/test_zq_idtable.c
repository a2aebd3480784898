/*  =========================================================================
    test_zq_idtable - the seeded id hash and the entry table with its timer
    heap and lane (src/zq_idtable.c), compiled into this program:
    collisions, removal with backward shift, timer order, growth bounds,
    seeds.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "../src/zq_internal.h"
#include "compiled_in.h"
#include <xxhash.h>

//  An entry as a user of the table lays it out: the id first, the table's
//  fields among the user's own.
typedef struct {
    uint8_t id[ZQ_MSG_ID_SIZE];
    uint64_t payload;
    int64_t due;
    uint32_t heap_index;
    uint32_t next;
    uint32_t key_hash;
    bool in_use;
} s_entry_t;

static const zqi_idtable_layout_t s_layout =
    ZQI_IDTABLE_LAYOUT (s_entry_t, due, heap_index, next, in_use, key_hash);

static s_entry_t *
s_at (zqi_idtable_t *table, uint32_t index)
{
    return (s_entry_t *)zqi_idtable_at (table, index);
}

static void
s_id (uint8_t *id, uint64_t number)
{
    memset (id, 0, ZQ_MSG_ID_SIZE);
    memcpy (id, &number, sizeof number);
    id[15] = 0x5a;
}

//  The home slot of id in the table's hash as it is now.
static uint32_t
s_home (const zqi_idtable_t *table, const uint8_t *id)
{
    return (uint32_t)(zqi_idhash_bytes (&table->hash, id, ZQ_MSG_ID_SIZE) >> 32) & table->hash.mask;
}

//  Ids that all share one home slot run into each other: every one is
//  found, removals from the middle of the run keep the others reachable
//  (backward shift), and their slots are used again.
static void
test_collisions_and_removal (void **state)
{
    (void)state;
    zqi_idtable_t table;
    zqi_idtable_init (&table, &s_layout, 0);
    uint8_t first[ZQ_MSG_ID_SIZE];
    s_id (first, 0);
    assert_int_equal (zqi_idtable_add (&table, first), 0);
    //  64 entries, 128 slots: find 40 more ids with the first one's home.
    enum { S_SAME = 40 };
    uint8_t same[S_SAME][ZQ_MSG_ID_SIZE];
    uint32_t home = s_home (&table, first);
    memcpy (same[0], first, ZQ_MSG_ID_SIZE);
    size_t found = 1;
    for (uint64_t number = 1; found < S_SAME && number < 10000000; number++) {
        uint8_t id[ZQ_MSG_ID_SIZE];
        s_id (id, number);
        if (s_home (&table, id) == home)
            memcpy (same[found++], id, ZQ_MSG_ID_SIZE);
    }
    assert_int_equal (found, S_SAME);
    uint32_t index[S_SAME] = {0};
    for (size_t i = 1; i < S_SAME; i++) {
        index[i] = zqi_idtable_add (&table, same[i]);
        assert_int_not_equal (index[i], ZQI_ID_NONE);
        s_at (&table, index[i])->payload = i;
    }
    assert_int_equal (table.count, S_SAME);
    assert_int_equal (table.capacity, 64); //  no growth: the run is in one table
    for (size_t i = 0; i < S_SAME; i++)
        assert_int_equal (zqi_idtable_find (&table, same[i]), index[i]);
    //  Remove every third, from the head of the run to its tail.
    for (size_t i = 0; i < S_SAME; i += 3)
        zqi_idtable_remove (&table, index[i]);
    for (size_t i = 0; i < S_SAME; i++) {
        uint32_t at = zqi_idtable_find (&table, same[i]);
        if (i % 3 == 0)
            assert_int_equal (at, ZQI_ID_NONE);
        else {
            assert_int_equal (at, index[i]);
            assert_int_equal (s_at (&table, at)->payload, i);
            assert_true (s_at (&table, at)->in_use);
        }
    }
    assert_int_equal (table.count, S_SAME - (S_SAME + 2) / 3);
    //  The freed indexes come back (the last freed first), and the ids too.
    uint32_t again = zqi_idtable_add (&table, same[0]);
    assert_int_equal (again, index[39]);
    assert_int_equal (zqi_idtable_find (&table, same[0]), again);
    assert_int_equal (s_at (&table, again)->payload, 0); //  zeroed
    assert_int_equal (s_at (&table, again)->heap_index, ZQI_ID_NONE);
    zqi_idtable_free (&table);
}

//  A caller keeping each record's key hash (the dedupe ring) gets the
//  same hash as a caller that does not: records added through one form
//  are found and removed through the other (48 records in 64 slots: long
//  runs), and a removed record is found by neither.
static void
test_hashed_forms_agree (void **state)
{
    (void)state;
    enum { S_RECORDS = 48 };
    s_entry_t records[S_RECORDS];
    uint32_t key_hash[S_RECORDS];
    memset (records, 0, sizeof records);
    zqi_idhash_t hash;
    zqi_idhash_init (&hash, ZQ_MSG_ID_SIZE);
    assert_int_equal (zqi_idhash_reset (&hash, 64), 0);
    for (uint32_t i = 0; i < S_RECORDS; i++) {
        s_id (records[i].id, i);
        key_hash[i] = zqi_idhash_key_hash (&hash, records[i].id);
        assert_int_equal (
            key_hash[i], (uint32_t)(zqi_idhash_bytes (&hash, records[i].id, ZQ_MSG_ID_SIZE) >> 32));
        zqi_idhash_prefetch (&hash, key_hash[i]);
        if (i % 2)
            zqi_idhash_insert_hashed (&hash, i, key_hash[i]);
        else
            zqi_idhash_insert (&hash, records, sizeof (s_entry_t), i);
    }
    for (uint32_t i = 0; i < S_RECORDS; i++) {
        assert_int_equal (zqi_idhash_find (&hash, records, sizeof (s_entry_t), records[i].id), i);
        assert_int_equal (
            zqi_idhash_find_hashed (&hash, records, sizeof (s_entry_t), records[i].id, key_hash[i]),
            i);
    }
    for (uint32_t i = 0; i < S_RECORDS; i += 3) {
        if (i % 2)
            zqi_idhash_remove (&hash, records, sizeof (s_entry_t), i);
        else
            zqi_idhash_remove_hashed (&hash, i, key_hash[i]);
    }
    for (uint32_t i = 0; i < S_RECORDS; i++) {
        uint32_t expected = i % 3 ? i : ZQI_ID_NONE;
        assert_int_equal (zqi_idhash_find (&hash, records, sizeof (s_entry_t), records[i].id),
                          expected);
        assert_int_equal (
            zqi_idhash_find_hashed (&hash, records, sizeof (s_entry_t), records[i].id, key_hash[i]),
            expected);
    }
    zqi_idhash_free (&hash);
}

//  Several entries may carry the same id: find_from returns each once.
static void
test_same_id_walk (void **state)
{
    (void)state;
    zqi_idtable_t table;
    zqi_idtable_init (&table, &s_layout, 0);
    uint8_t id[ZQ_MSG_ID_SIZE], other[ZQ_MSG_ID_SIZE];
    s_id (id, 7);
    s_id (other, 8);
    uint32_t a = zqi_idtable_add (&table, id);
    uint32_t b = zqi_idtable_add (&table, other);
    uint32_t c = zqi_idtable_add (&table, id);
    uint32_t cursor = ZQI_ID_NONE;
    uint32_t seen_a = 0, seen_c = 0, walked = 0;
    for (uint32_t at; (at = zqi_idtable_find_from (&table, id, &cursor)) != ZQI_ID_NONE;) {
        assert_int_not_equal (at, b);
        seen_a += at == a;
        seen_c += at == c;
        assert_true (++walked <= 2);
    }
    assert_int_equal (seen_a, 1);
    assert_int_equal (seen_c, 1);
    zqi_idtable_remove (&table, a);
    assert_int_equal (zqi_idtable_find (&table, id), c);
    zqi_idtable_free (&table);
}

//  add_new adds an id once: a second add of it finds the first (EEXIST)
//  and changes nothing; once removed, the id may be added again.
static void
test_add_new_refuses_a_present_id (void **state)
{
    (void)state;
    zqi_idtable_t table;
    zqi_idtable_init (&table, &s_layout, 0);
    uint8_t id[ZQ_MSG_ID_SIZE];
    for (uint64_t n = 0; n < 200; n++) {
        s_id (id, n);
        assert_int_not_equal (zqi_idtable_add_new (&table, id), ZQI_ID_NONE);
    }
    s_id (id, 77);
    uint32_t first = zqi_idtable_find (&table, id);
    errno = 0;
    assert_int_equal (zqi_idtable_add_new (&table, id), ZQI_ID_NONE);
    assert_int_equal (errno, EEXIST);
    assert_int_equal (table.count, 200);
    zqi_idtable_remove (&table, first);
    uint32_t again = zqi_idtable_add_new (&table, id);
    assert_int_not_equal (again, ZQI_ID_NONE);
    assert_int_equal (zqi_idtable_find (&table, id), again);
    assert_int_equal (table.count, 200);
    zqi_idtable_free (&table);
}

//  Takes every timer away, earliest first, and checks the order and that
//  expected timers were left. Returns the index of the last one.
static uint32_t
s_take_in_order (zqi_idtable_t *table, uint32_t expected)
{
    uint32_t taken = ZQI_ID_NONE;
    assert_int_equal (zqi_idtable_scheduled (table), expected);
    int64_t last = INT64_MIN;
    uint32_t popped = 0;
    for (uint32_t first; (first = zqi_idtable_first (table)) != ZQI_ID_NONE;) {
        assert_true (s_at (table, first)->due >= last);
        last = s_at (table, first)->due;
        zqi_idtable_unschedule (table, first);
        assert_int_equal (s_at (table, first)->heap_index, ZQI_ID_NONE);
        assert_true (++popped <= expected);
        taken = first;
    }
    assert_int_equal (popped, expected);
    assert_int_equal (zqi_idtable_scheduled (table), 0);
    return taken;
}

//  Adds count entries, the timer of entry i at due (i, rng), into index.
static void
s_add_scheduled (zqi_idtable_t *table, uint32_t *index, uint32_t count,
                 int64_t (*due) (uint32_t i, uint64_t *rng))
{
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    for (uint32_t i = 0; i < count; i++) {
        uint8_t id[ZQ_MSG_ID_SIZE];
        s_id (id, i);
        index[i] = zqi_idtable_add (table, id);
        assert_int_not_equal (index[i], ZQI_ID_NONE);
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        zqi_idtable_schedule (table, index[i], due (i, &rng));
    }
}

//  Moves every fifth timer earlier or later, takes every seventh away
//  (twice: nothing more), removes every eleventh entry (its timer goes
//  with it). Returns the timers left of count.
static uint32_t
s_move_and_take (zqi_idtable_t *table, const uint32_t *index, uint32_t count)
{
    for (uint32_t i = 0; i < count; i += 5)
        zqi_idtable_schedule (table, index[i],
                              s_at (table, index[i])->due + (i % 2 ? -5000 : 5000));
    uint32_t left = count;
    for (uint32_t i = 0; i < count; i++) {
        if (i % 7 == 0) {
            zqi_idtable_unschedule (table, index[i]);
            zqi_idtable_unschedule (table, index[i]);
            assert_int_equal (s_at (table, index[i])->heap_index, ZQI_ID_NONE);
            left--;
        } else if (i % 11 == 0) {
            zqi_idtable_remove (table, index[i]);
            left--;
        }
    }
    return left;
}

static int64_t
s_random_due (uint32_t i, uint64_t *rng)
{
    (void)i;
    return (int64_t)(*rng >> 40) - 1000;
}

//  Timers come out earliest first, whatever order they were set, moved
//  or taken away in.
static void
test_timer_order (void **state)
{
    (void)state;
    zqi_idtable_t table;
    zqi_idtable_init (&table, &s_layout, 0);
    enum { S_COUNT = 1000 };
    uint32_t index[S_COUNT];
    s_add_scheduled (&table, index, S_COUNT, s_random_due);
    (void)s_take_in_order (&table, s_move_and_take (&table, index, S_COUNT));
    zqi_idtable_free (&table);
}

//  Mostly increasing, as a fixed timeout from now sets them, with one in
//  sixteen earlier: 100 a tick, or 0 to 99 ticks back.
static int64_t
s_mostly_increasing_due (uint32_t i, uint64_t *rng)
{
    int64_t due = (int64_t)i / 100;
    return (*rng >> 60) == 0 ? due - (int64_t)((*rng >> 20) % 100) : due;
}

//  Timers set in due order (they go to the lane) and the others (the
//  heap) come out earliest first together, when moved, taken from the
//  middle, or taken first and set again after all the others (a resend's
//  new deadline).
static void
test_timer_lane_order (void **state)
{
    (void)state;
    zqi_idtable_t table;
    zqi_idtable_init (&table, &s_layout, 0);
    enum { S_COUNT = 3000 };
    uint32_t index[S_COUNT];
    s_add_scheduled (&table, index, S_COUNT, s_mostly_increasing_due);
    assert_true (table.lane_size > S_COUNT / 2 && table.heap_size > 0);
    uint32_t left = s_move_and_take (&table, index, S_COUNT);
    //  Take the first ten, then set each again after all the others (a
    //  resend's new deadline), and check the order of all.
    uint32_t taken[10];
    for (uint32_t i = 0; i < 10; i++) {
        taken[i] = zqi_idtable_first (&table);
        assert_int_not_equal (taken[i], ZQI_ID_NONE);
        zqi_idtable_unschedule (&table, taken[i]);
    }
    for (uint32_t i = 0; i < 10; i++)
        zqi_idtable_schedule (&table, taken[i], S_COUNT / 100 + 10000 + i);
    assert_int_equal (s_take_in_order (&table, left), taken[9]);
    zqi_idtable_free (&table);
}

static void
test_growth_bound (void **state)
{
    (void)state;
    zqi_idtable_t table;
    zqi_idtable_init (&table, &s_layout, 100);
    for (uint64_t i = 0; i < 100; i++) {
        uint8_t id[ZQ_MSG_ID_SIZE];
        s_id (id, i);
        uint32_t index = zqi_idtable_add (&table, id);
        assert_int_not_equal (index, ZQI_ID_NONE);
        zqi_idtable_schedule (&table, index, 1000 - (int64_t)i);
    }
    assert_int_equal (table.capacity, 100);
    uint8_t extra[ZQ_MSG_ID_SIZE];
    s_id (extra, 100);
    errno = 0;
    assert_int_equal (zqi_idtable_add (&table, extra), ZQI_ID_NONE);
    assert_int_equal (errno, ENOBUFS);
    assert_int_equal (table.count, 100);
    for (uint64_t i = 0; i < 100; i++) {
        uint8_t id[ZQ_MSG_ID_SIZE];
        s_id (id, i);
        uint32_t index = zqi_idtable_find (&table, id);
        assert_int_not_equal (index, ZQI_ID_NONE);
        assert_int_equal (s_at (&table, index)->due, 1000 - (int64_t)i);
    }
    assert_int_equal (s_at (&table, zqi_idtable_first (&table))->due, 901);
    uint8_t gone[ZQ_MSG_ID_SIZE];
    s_id (gone, 99);
    zqi_idtable_remove (&table, zqi_idtable_find (&table, gone));
    assert_int_not_equal (zqi_idtable_add (&table, extra), ZQI_ID_NONE);
    assert_int_equal (table.capacity, 100);
    zqi_idtable_free (&table);
}

//  Ids a peer crafts to share one slot under an unseeded hash (the 64
//  first whose XXH3 with seed 0 has the same home bits) spread out in
//  each table, and each table hashes them differently.
static void
test_seeded_per_table (void **state)
{
    (void)state;
    enum { S_IDS = 64, S_MASK = 4095 };
    uint8_t ids[S_IDS][ZQ_MSG_ID_SIZE];
    size_t found = 0;
    for (uint64_t counter = 0; found < S_IDS && counter < 100000000; counter++) {
        uint8_t id[ZQ_MSG_ID_SIZE];
        s_id (id, counter);
        if (((XXH3_64bits (id, ZQ_MSG_ID_SIZE) >> 32) & S_MASK) == 7)
            memcpy (ids[found++], id, ZQ_MSG_ID_SIZE);
    }
    assert_int_equal (found, S_IDS);
    zqi_idtable_t tables[2];
    for (size_t t = 0; t < 2; t++) {
        zqi_idtable_init (&tables[t], &s_layout, 0);
        uint8_t taken[(S_MASK + 1) / 8] = {0};
        size_t distinct = 0;
        for (size_t i = 0; i < S_IDS; i++) {
            uint64_t slot =
                (zqi_idhash_bytes (&tables[t].hash, ids[i], ZQ_MSG_ID_SIZE) >> 32) & S_MASK;
            if (!(taken[slot / 8] & (1 << (slot % 8)))) {
                taken[slot / 8] |= (uint8_t)(1 << (slot % 8));
                distinct++;
            }
        }
        //  Random placement of 64 ids in 4096 slots: about 63.5 distinct.
        print_message ("table %zu: %zu distinct slots for %d crafted ids\n", t, distinct, S_IDS);
        assert_true (distinct >= S_IDS - 8);
    }
    assert_true (tables[0].hash.seed != tables[1].hash.seed);
    size_t same = 0;
    for (size_t i = 0; i < S_IDS; i++)
        same += zqi_idhash_bytes (&tables[0].hash, ids[i], ZQ_MSG_ID_SIZE) ==
                zqi_idhash_bytes (&tables[1].hash, ids[i], ZQ_MSG_ID_SIZE);
    assert_int_equal (same, 0);
    //  Seeds never repeat, even without entropy (the salt and a counter).
    assert_true (zqi_idhash_seed (&same) != zqi_idhash_seed (&same));
    zqi_idtable_free (&tables[0]);
    zqi_idtable_free (&tables[1]);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_collisions_and_removal),
        cmocka_unit_test (test_hashed_forms_agree),
        cmocka_unit_test (test_same_id_walk),
        cmocka_unit_test (test_add_new_refuses_a_present_id),
        cmocka_unit_test (test_timer_order),
        cmocka_unit_test (test_timer_lane_order),
        cmocka_unit_test (test_growth_bound),
        cmocka_unit_test (test_seeded_per_table),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
