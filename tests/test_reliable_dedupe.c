/*  =========================================================================
    test_reliable_dedupe - the reliable server's dedupe window
    (patterns/reliable_table.c), compiled into this program: at most max
    records, the oldest forgotten first, across the ring's wrap and its
    growth; records older than the window forgotten; a record forgotten
    by key leaves the others found.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "../patterns/reliable.h"
#include "compiled_in.h"

//  The key of the number-th id, put to queue 7 by no producer.
static zqi_r_seen_t
s_key (const zqi_r_dedupe_t *dedupe, uint32_t number)
{
    uint8_t id[ZQ_MSG_ID_SIZE] = {0};
    memcpy (id + 4, &number, sizeof number);
    zqi_r_seen_t key;
    zqi_r_dedupe_key (dedupe, &key, id, 7, NULL);
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

//  max of 1500 (the ring rounds it up to 2048): 5000 ids leave the last
//  1500 found and the others forgotten, the ring having wrapped twice.
static void
test_forgets_the_oldest_past_max (void **state)
{
    zqi_r_dedupe_t dedupe;
    zqi_r_dedupe_init (&dedupe, 60000, 1500);
    s_add_range (&dedupe, 0, 5000, 10);
    assert_int_equal (dedupe.count, 1500);
    s_assert_range (&dedupe, 0, 3500, 10, false);
    s_assert_range (&dedupe, 3500, 5000, 10, true);
    zqi_r_dedupe_free (&dedupe);
}

//  The first ring holds a window of up to 262144 records whole: it is
//  not moved or rehashed on the way to max.
static void
test_first_ring_holds_the_window (void **state)
{
    zqi_r_dedupe_t dedupe;
    zqi_r_dedupe_init (&dedupe, 60000, 100000);
    s_add_range (&dedupe, 0, 1, 10);
    const zqi_r_seen_t *first_ring = dedupe.ring;
    assert_int_equal (dedupe.capacity, 131072);
    s_add_range (&dedupe, 1, 120000, 10);
    assert_ptr_equal (dedupe.ring, first_ring);
    assert_int_equal (dedupe.capacity, 131072);
    s_assert_range (&dedupe, 0, 20000, 10, false);
    s_assert_range (&dedupe, 20000, 120000, 10, true);
    zqi_r_dedupe_free (&dedupe);
}

//  A window larger than the first ring grows it (doubling, the records
//  rehashed) and still forgets exactly the oldest past max.
static void
test_grows_past_the_first_ring (void **state)
{
    uint32_t max = (UINT32_C (1) << 18) + 5000;
    zqi_r_dedupe_t dedupe;
    zqi_r_dedupe_init (&dedupe, 60000, max);
    s_add_range (&dedupe, 0, 1, 10);
    assert_int_equal (dedupe.capacity, UINT32_C (1) << 18);
    s_add_range (&dedupe, 1, max + 3000, 10);
    assert_int_equal (dedupe.capacity, UINT32_C (1) << 19);
    assert_int_equal (dedupe.count, max);
    s_assert_range (&dedupe, 0, 3000, 10, false);
    s_assert_range (&dedupe, 3000, max + 3000, 10, true);
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
        if (number % 7)
            s_assert_range (&dedupe, number, number + 1, 10, true);
    s_add_range (&dedupe, 1500, 1600, 10);
    s_assert_range (&dedupe, 0, 100, 10, false);
    s_assert_range (&dedupe, 1500, 1600, 10, true);
    zqi_r_dedupe_free (&dedupe);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_forgets_the_oldest_past_max),
        cmocka_unit_test (test_first_ring_holds_the_window),
        cmocka_unit_test (test_grows_past_the_first_ring),
        cmocka_unit_test (test_forgets_past_the_window),
        cmocka_unit_test (test_forget_one),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
