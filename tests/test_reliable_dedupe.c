/*  =========================================================================
    test_reliable_dedupe - the reliable server's dedupe window
    (patterns/reliable_table.c), compiled into this program: at most max
    records, the oldest forgotten first, across the ring's wrap and its
    growth (fourfold, never past max rounded up to a power of two, so its
    memory follows what the window holds); records older than the window
    forgotten; a record forgotten by key, or by queue, leaves the others
    found; a window of 0 remembers nothing and takes no memory; without
    memory to grow, the newest ids take the oldest ones' places; each id
    forgotten within the window, or not remembered, counted once.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "../patterns/reliable.h"
#include "compiled_in.h"

//  The window's code is linked with malloc, calloc and realloc wrapped
//  (Makefile.am: -Wl,--wrap): while s_memory_out is set they fail, and
//  while s_calloc_out is set calloc does (the hash's slots, not the ring).
static bool s_memory_out, s_calloc_out;
void *__real_malloc (size_t size);
void *__real_calloc (size_t count, size_t size);
void *__real_realloc (void *block, size_t size);
void *__wrap_malloc (size_t size);
void *__wrap_calloc (size_t count, size_t size);
void *__wrap_realloc (void *block, size_t size);

//  Teardown: memory is back, even after a failed assertion left it out.
static int
s_memory_back (void **state)
{
    (void)state;
    s_memory_out = s_calloc_out = false;
    return 0;
}

void *
__wrap_malloc (size_t size)
{
    return s_memory_out ? NULL : __real_malloc (size);
}

void *
__wrap_calloc (size_t count, size_t size)
{
    return s_memory_out || s_calloc_out ? NULL : __real_calloc (count, size);
}

void *
__wrap_realloc (void *block, size_t size)
{
    return s_memory_out ? NULL : __real_realloc (block, size);
}

//  The key of the number-th id, put by no producer to queue 7, or to
//  queue 8 from number S_OTHER_QUEUE on.
#define S_OTHER_QUEUE 1000000

static zqi_r_seen_t
s_key (const zqi_r_dedupe_t *dedupe, uint32_t number)
{
    uint8_t id[ZQ_MSG_ID_SIZE] = {0};
    memcpy (id + 4, &number, sizeof number);
    zqi_r_seen_t key;
    zqi_r_dedupe_key (dedupe, &key, id, number < S_OTHER_QUEUE ? 7 : 8, NULL);
    return key;
}

//  Adds ids first to last - 1, the number-th stored at now with seq
//  number and content number * 3.
static void
s_add_range (zqi_r_dedupe_t *dedupe, uint32_t first, uint32_t last, int64_t now)
{
    for (uint32_t number = first; number < last; number++) {
        zqi_r_seen_t key = s_key (dedupe, number);
        assert_null (zqi_r_dedupe_find (dedupe, &key, now));
        assert_int_equal (zqi_r_dedupe_add (dedupe, &key, (uint64_t)number * 3, now, number), 0);
    }
}

//  Asserts that ids first to last - 1 are found at now, each with its
//  own seq and content, or that none is.
static void
s_assert_range (zqi_r_dedupe_t *dedupe, uint32_t first, uint32_t last, int64_t now, bool found)
{
    for (uint32_t number = first; number < last; number++) {
        zqi_r_seen_t key = s_key (dedupe, number);
        zqi_r_seen_t *seen = zqi_r_dedupe_find (dedupe, &key, now);
        if (!found) {
            if (seen)
                fail_msg ("id %u found, expected forgotten", number);
            continue;
        }
        if (!seen)
            fail_msg ("id %u forgotten, expected found", number);
        assert_int_equal (seen->seq, number);
        assert_int_equal (seen->content, (uint64_t)number * 3);
    }
}

//  max of 1500: the ring grows from 1024 to 2048 (not past max rounded
//  up), then 5000 ids leave the last 1500 found and the others
//  forgotten, the ring having wrapped.
static void
test_forgets_the_oldest_past_max (void **state)
{
    zqi_r_dedupe_t dedupe;
    zqi_r_dedupe_init (&dedupe, 60000, 1500);
    s_add_range (&dedupe, 0, 1024, 10);
    assert_int_equal (dedupe.capacity, 1024);
    s_add_range (&dedupe, 1024, 5000, 10);
    assert_int_equal (dedupe.capacity, 2048);
    assert_int_equal (dedupe.count, 1500);
    s_assert_range (&dedupe, 0, 3500, 10, false);
    s_assert_range (&dedupe, 3500, 5000, 10, true);
    //  All 3500 went within the window: each is counted.
    assert_int_equal (dedupe.forgotten, 3500);
    zqi_r_dedupe_free (&dedupe);
}

//  The ring follows what the window holds: it grows fourfold as ids
//  come (1024, 4096, 16384, 65536), and to max rounded up (131072) at
//  the last, never further; every id stays found across each growth.
static void
test_grows_with_the_window (void **state)
{
    zqi_r_dedupe_t dedupe;
    zqi_r_dedupe_init (&dedupe, 60000, 100000);
    assert_int_equal (dedupe.capacity, 0);
    uint32_t sizes[] = {1024, 4096, 16384, 65536, 131072};
    uint32_t added = 0;
    for (size_t step = 0; step < sizeof sizes / sizeof sizes[0]; step++) {
        uint32_t full = sizes[step] < 100000 ? sizes[step] : 100000;
        s_add_range (&dedupe, added, full, 10);
        added = full;
        assert_int_equal (dedupe.capacity, sizes[step]);
        s_assert_range (&dedupe, 0, added, 10, true);
    }
    s_add_range (&dedupe, added, 120000, 10);
    assert_int_equal (dedupe.capacity, 131072);
    s_assert_range (&dedupe, 0, 20000, 10, false);
    s_assert_range (&dedupe, 20000, 120000, 10, true);
    zqi_r_dedupe_free (&dedupe);
}

//  max of 1: only the last id is remembered.
static void
test_max_one (void **state)
{
    zqi_r_dedupe_t dedupe;
    zqi_r_dedupe_init (&dedupe, 60000, 1);
    s_add_range (&dedupe, 0, 10, 10);
    assert_int_equal (dedupe.count, 1);
    s_assert_range (&dedupe, 0, 9, 10, false);
    s_assert_range (&dedupe, 9, 10, 10, true);
    assert_int_equal (dedupe.forgotten, 9);
    //  The store time of the last one forgotten early is kept.
    s_add_range (&dedupe, 10, 11, 30);
    s_add_range (&dedupe, 11, 12, 50);
    assert_int_equal (dedupe.forgotten, 11);
    assert_int_equal (dedupe.forgotten_stored_ms, 30);
    zqi_r_dedupe_free (&dedupe);
}

//  A window of 0 ms: nothing is remembered, and nothing allocated.
static void
test_window_off (void **state)
{
    zqi_r_dedupe_t dedupe;
    zqi_r_dedupe_init (&dedupe, 0, 1500);
    for (uint32_t number = 0; number < 100; number++) {
        zqi_r_seen_t key = s_key (&dedupe, number);
        assert_int_equal (zqi_r_dedupe_add (&dedupe, &key, 0, 10, number), 0);
        assert_null (zqi_r_dedupe_find (&dedupe, &key, 10));
    }
    assert_int_equal (dedupe.count, 0);
    assert_null (dedupe.ring);
    assert_int_equal (dedupe.forgotten, 0);
    zqi_r_dedupe_free (&dedupe);
}

//  A record is found until window_ms after it was stored, then
//  forgotten with every record stored before it.
static void
test_forgets_past_the_window (void **state)
{
    zqi_r_dedupe_t dedupe;
    zqi_r_dedupe_init (&dedupe, 1000, 1500);
    s_add_range (&dedupe, 0, 100, 5000);
    s_add_range (&dedupe, 100, 200, 5500);
    s_assert_range (&dedupe, 0, 200, 5999, true);
    s_assert_range (&dedupe, 0, 100, 6000, false);
    s_assert_range (&dedupe, 100, 200, 6000, true);
    assert_int_equal (dedupe.count, 100);
    s_assert_range (&dedupe, 100, 200, 6500, false);
    assert_int_equal (dedupe.count, 0);
    //  Past the window is not early.
    assert_int_equal (dedupe.forgotten, 0);
    zqi_r_dedupe_free (&dedupe);
}

//  A record forgotten by key (its store refused) is not found; the
//  others are, and the window still counts from the oldest.
static void
test_forget_one (void **state)
{
    zqi_r_dedupe_t dedupe;
    zqi_r_dedupe_init (&dedupe, 60000, 1500);
    s_add_range (&dedupe, 0, 1500, 10);
    for (uint32_t number = 0; number < 1500; number += 7) {
        zqi_r_seen_t key = s_key (&dedupe, number);
        zqi_r_dedupe_forget (&dedupe, &key);
        assert_null (zqi_r_dedupe_find (&dedupe, &key, 10));
    }
    for (uint32_t number = 0; number < 1500; number++)
        s_assert_range (&dedupe, number, number + 1, 10, number % 7 != 0);
    //  The forgotten still count toward max until they are the oldest:
    //  100 more drop the oldest live ones, about 115 ids' worth.
    assert_int_equal (dedupe.forgotten, 0);
    s_add_range (&dedupe, 1500, 1600, 10);
    s_assert_range (&dedupe, 0, 100, 10, false);
    for (uint32_t number = 200; number < 1500; number++)
        s_assert_range (&dedupe, number, number + 1, 10, number % 7 != 0);
    s_assert_range (&dedupe, 1500, 1600, 10, true);
    //  Counted: the live ids that went, not those forgotten by key.
    uint64_t live_gone = 0;
    for (uint32_t number = 0; number < 200; number++) {
        zqi_r_seen_t key = s_key (&dedupe, number);
        if (number % 7 != 0 && !zqi_r_dedupe_find (&dedupe, &key, 10))
            live_gone++;
    }
    assert_true (live_gone >= 85);
    assert_int_equal (dedupe.forgotten, live_gone);
    zqi_r_dedupe_free (&dedupe);
}

//  A queue forgotten (deleted) takes its records along; another queue's
//  stay found, and new ones are remembered.
static void
test_forget_queue (void **state)
{
    zqi_r_dedupe_t dedupe;
    zqi_r_dedupe_init (&dedupe, 60000, 1500);
    for (uint32_t number = 0; number < 600; number++) {
        s_add_range (&dedupe, number, number + 1, 10);
        s_add_range (&dedupe, S_OTHER_QUEUE + number, S_OTHER_QUEUE + number + 1, 10);
    }
    zqi_r_dedupe_forget_queue (&dedupe, 7);
    s_assert_range (&dedupe, 0, 600, 10, false);
    s_assert_range (&dedupe, S_OTHER_QUEUE, S_OTHER_QUEUE + 600, 10, true);
    s_add_range (&dedupe, 600, 800, 10);
    s_assert_range (&dedupe, 600, 800, 10, true);
    s_assert_range (&dedupe, S_OTHER_QUEUE, S_OTHER_QUEUE + 600, 10, true);
    zqi_r_dedupe_free (&dedupe);
}

//  Forgets the number-th id (a record left in the ring, out of the hash).
static void
s_forget (zqi_r_dedupe_t *dedupe, uint32_t number)
{
    zqi_r_seen_t key = s_key (dedupe, number);
    zqi_r_dedupe_forget (dedupe, &key);
}

//  A full ring that has dropped its oldest ids (expired) grows with its
//  records on both sides of the wrap: the newest 300 (of 1024) move, the
//  newest 512 at a tie, or the oldest 224; fourfold (max 100000) and
//  twofold (max 2000). An id forgotten on each side stays forgotten,
//  every other stays found, and later the rest leave in the order they
//  came: first those stored at 50, then those at 120.
static void
test_grows_across_the_wrap (void **state)
{
    uint32_t dropped[] = {300, 512, 800};
    uint32_t maxes[] = {100000, 2000}, grown[] = {4096, 2048};
    for (size_t size = 0; size < 2; size++)
        for (size_t turn = 0; turn < 3; turn++) {
            uint32_t early = dropped[turn];
            zqi_r_dedupe_t dedupe;
            zqi_r_dedupe_init (&dedupe, 100, maxes[size]);
            s_add_range (&dedupe, 0, early, 0);
            s_add_range (&dedupe, early, 1024, 50);
            //  At 120 those stored at 0 have expired: the ring fills
            //  again past its wrap, then grows.
            s_add_range (&dedupe, 1024, 1024 + early, 120);
            assert_int_equal (dedupe.capacity, 1024);
            assert_int_equal (dedupe.count, 1024);
            assert_int_equal (dedupe.head, early);
            s_forget (&dedupe, early + 5);
            s_forget (&dedupe, 1024 + 3);
            s_add_range (&dedupe, 1024 + early, 1500 + early, 120);
            assert_int_equal (dedupe.capacity, grown[size]);
            assert_int_equal (dedupe.count, 1500);
            s_assert_range (&dedupe, 0, early, 120, false);
            s_assert_range (&dedupe, early, early + 5, 120, true);
            s_assert_range (&dedupe, early + 5, early + 6, 120, false);
            s_assert_range (&dedupe, early + 6, 1024 + 3, 120, true);
            s_assert_range (&dedupe, 1024 + 3, 1024 + 4, 120, false);
            s_assert_range (&dedupe, 1024 + 4, 1500 + early, 120, true);
            //  At 160, those stored at 50 have expired, not those at 120.
            s_assert_range (&dedupe, early, 1024, 160, false);
            assert_int_equal (dedupe.count, 1500 + early - 1024);
            s_assert_range (&dedupe, 1024, 1024 + 3, 160, true);
            s_assert_range (&dedupe, 1024 + 4, 1500 + early, 160, true);
            //  The ring keeps working around its new size.
            s_add_range (&dedupe, 5000, 6900, 230);
            assert_int_equal (dedupe.count, 1900);
            assert_int_equal (dedupe.capacity, grown[size]);
            s_assert_range (&dedupe, 5000, 6900, 230, true);
            assert_int_equal (dedupe.forgotten, 0);
            zqi_r_dedupe_free (&dedupe);
        }
}

//  Adds ids first to last - 1 as s_add_range does, each to a full ring
//  that cannot grow: it takes the oldest one's place (add returns 1).
static void
s_add_in_place (zqi_r_dedupe_t *dedupe, uint32_t first, uint32_t last, int64_t now)
{
    for (uint32_t number = first; number < last; number++) {
        zqi_r_seen_t key = s_key (dedupe, number);
        assert_int_equal (zqi_r_dedupe_add (dedupe, &key, (uint64_t)number * 3, now, number), 1);
    }
}

//  Without memory to grow, a full ring takes each new id in its oldest
//  one's place (add returns 1), so the newest ids stay found; once
//  memory is back it grows again, keeping them. A first ring that could
//  not be had, or had without its hash, remembers nothing (add returns -1
//  with ENOMEM).
static void
test_no_memory_to_grow (void **state)
{
    zqi_r_dedupe_t dedupe;
    zqi_r_dedupe_init (&dedupe, 60000, 100000);
    s_add_range (&dedupe, 0, 1024, 10);
    s_memory_out = true;
    s_add_in_place (&dedupe, 1024, 1524, 10);
    s_memory_out = false;
    assert_int_equal (dedupe.capacity, 1024);
    assert_int_equal (dedupe.count, 1024);
    assert_int_equal (dedupe.forgotten, 500);
    s_assert_range (&dedupe, 0, 500, 10, false);
    s_assert_range (&dedupe, 500, 1524, 10, true);
    s_add_range (&dedupe, 1524, 2000, 10);
    assert_int_equal (dedupe.capacity, 4096);
    s_assert_range (&dedupe, 500, 2000, 10, true);
    //  The ring's larger block but no hash to go with it: as before, the
    //  full ring takes each new id in its oldest one's place.
    s_add_range (&dedupe, 2000, 4596, 10);
    s_calloc_out = true;
    s_add_in_place (&dedupe, 4596, 4600, 10);
    s_calloc_out = false;
    assert_int_equal (dedupe.capacity, 4096);
    s_assert_range (&dedupe, 500, 504, 10, false);
    s_assert_range (&dedupe, 504, 4600, 10, true);
    s_add_range (&dedupe, 4600, 5000, 10);
    assert_int_equal (dedupe.capacity, 16384);
    s_assert_range (&dedupe, 504, 5000, 10, true);
    zqi_r_dedupe_free (&dedupe);

    //  No first ring at all, or a ring but no hash for it.
    bool *outs[] = {&s_memory_out, &s_calloc_out};
    for (size_t out = 0; out < 2; out++) {
        zqi_r_dedupe_init (&dedupe, 60000, 100000);
        zqi_r_seen_t key = s_key (&dedupe, 1);
        *outs[out] = true;
        errno = 0;
        assert_int_equal (zqi_r_dedupe_add (&dedupe, &key, 3, 10, 1), -1);
        assert_int_equal (errno, ENOMEM);
        *outs[out] = false;
        assert_int_equal (dedupe.forgotten, 1);
        assert_null (zqi_r_dedupe_find (&dedupe, &key, 10));
        assert_int_equal (dedupe.count, 0);
        s_add_range (&dedupe, 1, 2, 10);
        s_assert_range (&dedupe, 1, 2, 10, true);
        zqi_r_dedupe_free (&dedupe);
    }
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_forgets_the_oldest_past_max),
        cmocka_unit_test (test_grows_with_the_window),
        cmocka_unit_test (test_grows_across_the_wrap),
        cmocka_unit_test (test_max_one),
        cmocka_unit_test (test_window_off),
        cmocka_unit_test (test_forgets_past_the_window),
        cmocka_unit_test (test_forget_one),
        cmocka_unit_test (test_forget_queue),
        cmocka_unit_test_teardown (test_no_memory_to_grow, s_memory_back),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
