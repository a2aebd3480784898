/*  =========================================================================
    test_zq_spool_flight - the table of a spool's records handed out, by
    seq (src/zq_spool_flight.c), compiled into this program: puts that
    replace, removal by shifting back inside runs that wrap, growth, the
    walk and clearing, and long random runs checked against a plain array.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "../src/zq_spool_internal.h"
#include "compiled_in.h"

static zqi_location_t
s_location (uint64_t seq, uint64_t offset)
{
    zqi_location_t location = {seq, seq / 100, offset, (uint32_t)(seq * 3)};
    return location;
}

static void
test_put_find_replace_remove (void **state)
{
    zqi_flight_t flight = {0};
    assert_null (zqi_flight_find (&flight, 1));
    assert_false (zqi_flight_remove (&flight, 1));
    zqi_location_t one = s_location (1, 40);
    assert_int_equal (zqi_flight_put (&flight, &one), 0);
    assert_int_equal (flight.count, 1);
    assert_int_equal (zqi_flight_find (&flight, 1)->offset, 40);
    //  The same seq again replaces it.
    zqi_location_t moved = s_location (1, 80);
    assert_int_equal (zqi_flight_put (&flight, &moved), 0);
    assert_int_equal (flight.count, 1);
    assert_int_equal (zqi_flight_find (&flight, 1)->offset, 80);
    assert_null (zqi_flight_find (&flight, 0));
    assert_true (zqi_flight_remove (&flight, 1));
    assert_false (zqi_flight_remove (&flight, 1));
    assert_null (zqi_flight_find (&flight, 1));
    assert_int_equal (flight.count, 0);
    zqi_flight_free (&flight);
}

//  Seqs that share a home slot form a run; removing from its middle
//  shifts the rest back, across the end of the slots too, and every one
//  stays findable.
static void
test_removal_inside_runs (void **state)
{
    zqi_flight_t flight = {0};
    zqi_location_t first = s_location (1, 0);
    assert_int_equal (zqi_flight_put (&flight, &first), 0);
    //  Collect seqs whose home is the last slot, so their run wraps.
    uint32_t slots = flight.mask + 1;
    uint64_t same[6];
    int found = 0;
    for (uint64_t seq = 2; found < 6; seq++)
        if ((uint32_t)((seq * 0x9E3779B97F4A7C15ull) >> 32) % slots == slots - 1)
            same[found++] = seq;
    for (int i = 0; i < 6; i++) {
        zqi_location_t location = s_location (same[i], same[i] * 7);
        assert_int_equal (zqi_flight_put (&flight, &location), 0);
    }
    assert_int_equal (flight.mask + 1, slots); //  no growth in between
    for (int gone = 0; gone < 6; gone += 2) {
        assert_true (zqi_flight_remove (&flight, same[gone]));
        for (int i = 0; i < 6; i++) {
            zqi_location_t *at = zqi_flight_find (&flight, same[i]);
            if (i <= gone && i % 2 == 0)
                assert_null (at);
            else {
                assert_non_null (at);
                assert_int_equal (at->offset, same[i] * 7);
            }
        }
    }
    assert_non_null (zqi_flight_find (&flight, 1));
    assert_int_equal (flight.count, 4);
    zqi_flight_free (&flight);
}

//  Growth keeps every location; the walk gives each once; clear empties.
static void
test_growth_walk_and_clear (void **state)
{
    zqi_flight_t flight = {0};
    for (uint64_t seq = 1; seq <= 5000; seq++) {
        zqi_location_t location = s_location (seq, seq + 9);
        assert_int_equal (zqi_flight_put (&flight, &location), 0);
        assert_true (2 * flight.count <= flight.mask + 1);
    }
    assert_int_equal (flight.count, 5000);
    static bool seen[5001];
    uint32_t cursor = 0, walked = 0;
    zqi_location_t *at;
    while ((at = zqi_flight_next (&flight, &cursor))) {
        assert_in_range (at->seq, 1, 5000);
        assert_false (seen[at->seq]);
        assert_int_equal (at->offset, at->seq + 9);
        seen[at->seq] = true;
        walked++;
    }
    assert_int_equal (walked, 5000);
    zqi_flight_clear (&flight);
    assert_int_equal (flight.count, 0);
    assert_null (zqi_flight_find (&flight, 77));
    cursor = 0;
    assert_null (zqi_flight_next (&flight, &cursor));
    zqi_location_t again = s_location (77, 1);
    assert_int_equal (zqi_flight_put (&flight, &again), 0);
    assert_int_equal (zqi_flight_find (&flight, 77)->offset, 1);
    zqi_flight_free (&flight);
}

//  Random puts and removes over a sliding range of seqs, as a spool hands
//  records out and has them acked, checked against a plain array.
static void
test_random_against_an_array (void **state)
{
    enum { RANGE = 3000, STEPS = 200000 };
    static uint64_t offsets[RANGE + 1]; //  0: not in the table
    zqi_flight_t flight = {0};
    uint64_t x = 88172645463325252ull;
    uint32_t count = 0;
    for (int step = 0; step < STEPS; step++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t seq = 1 + x % RANGE;
        if ((x >> 32) % 3) {
            zqi_location_t location = s_location (seq, (x >> 40) + 1);
            assert_int_equal (zqi_flight_put (&flight, &location), 0);
            if (!offsets[seq])
                count++;
            offsets[seq] = location.offset;
        } else {
            assert_int_equal (zqi_flight_remove (&flight, seq), offsets[seq] != 0);
            if (offsets[seq])
                count--;
            offsets[seq] = 0;
        }
        assert_int_equal (flight.count, count);
        if (step % 997 == 0)
            for (uint64_t check = 1; check <= RANGE; check++) {
                zqi_location_t *at = zqi_flight_find (&flight, check);
                if (offsets[check]) {
                    assert_non_null (at);
                    assert_int_equal (at->offset, offsets[check]);
                } else
                    assert_null (at);
            }
    }
    zqi_flight_free (&flight);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_put_find_replace_remove),
        cmocka_unit_test (test_removal_inside_runs),
        cmocka_unit_test (test_growth_walk_and_clear),
        cmocka_unit_test (test_random_against_an_array),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
