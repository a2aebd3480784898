/*  =========================================================================
    test_zq_spool_ranges - acks out of order (one at a time, or many in
    one call: zq_spool_ack_many): a consumer that acks every other record
    leaves one acked range per gap. The ack records and the
    checkpoints that carry those ranges must stay within the size the
    reader accepts however many ranges there are, so that the spool keeps
    serving, reopens, and serves exactly the records not acked; also
    after a crash in the middle of writing them.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "spool_testutil.h"
#include "../src/zq_spool_internal.h"

#define KEY 7

//  Appends count records of 1 .. max bytes, continuing the numbering.
static void
s_fill (zq_spool_t *spool, uint64_t count, size_t max)
{
    tu_fill (spool, KEY, count, max);
}

//  Checks that a record is exactly what was appended under its seq.
static void
s_check (const zq_spool_record_t *record, size_t max)
{
    tu_check (KEY, record, max);
}

//  Takes every record from 1 to last and acks the odd ones: one acked
//  range per odd seq, since the even ones stay in flight.
static void
s_ack_odd (zq_spool_t *spool, uint64_t last, size_t max)
{
    for (uint64_t seq = 1; seq <= last; seq++) {
        zq_spool_record_t record;
        assert_int_equal (zq_spool_next (spool, &record), 0);
        assert_int_equal (record.seq, seq);
        s_check (&record, max);
        if (seq % 2)
            assert_int_equal (zq_spool_ack (spool, seq), 0);
    }
}

//  Serves everything ready and checks it is every even seq up to ranged
//  (appended with sizes up to ranged_max) then every seq in (ranged,
//  last] (sizes up to max), each once, intact, nothing else.
static void
s_expect_unacked (zq_spool_t *spool, uint64_t ranged, size_t ranged_max, uint64_t last, size_t max)
{
    uint64_t expected = 2;
    zq_spool_record_t record;
    while (zq_spool_next (spool, &record) == 0) {
        if (record.seq != expected)
            fail_msg ("served seq %" PRIu64 ", expected %" PRIu64, record.seq, expected);
        s_check (&record, record.seq <= ranged ? ranged_max : max);
        expected += expected < ranged ? 2 : 1;
    }
    if (errno != EAGAIN)
        fail_msg ("spool stopped at seq %" PRIu64 ": %s", expected, zq_strerror (errno));
    if (expected != last + 1)
        fail_msg ("served up to %" PRIu64 " of %" PRIu64, expected - 1, last);
    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    assert_int_equal (stats.corrupt_records, 0);
}

static void
s_expect_clean_open (zq_spool_t *spool)
{
    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    assert_int_equal (stats.corrupt_records, 0);
    assert_int_equal (stats.tail_cut_bytes, 0);
}

//  The case reported against zqd, at the default record bound: 75,000
//  disjoint ranges (every other of 150,000 records acked) make an ack
//  record and then checkpoints larger than max_record_bytes + 64.
static void
test_default_bound (void **state)
{
    char *dir = tu_mkdtemp ();
    zq_spool_config_t config;
    zq_spool_config_init (&config);
    config.fsync = ZQ_SPOOL_FSYNC_NONE;
    config.segment_bytes = 1024 * 1024;
    zq_spool_t *spool = zq_spool_new (dir, &config);
    assert_non_null (spool);
    const uint64_t ranged = 150000;
    s_fill (spool, ranged, 1);
    assert_int_equal (zq_spool_commit (spool), 0);
    s_ack_odd (spool, ranged, 1);
    assert_int_equal (zq_spool_commit (spool), 0);
    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    uint64_t segments = stats.segments;
    //  Records written after the acks: new segments begin with the whole
    //  ack state as their checkpoint.
    s_fill (spool, 3000, 1000);
    assert_int_equal (zq_spool_commit (spool), 0);
    zq_spool_stats (spool, &stats);
    assert_true (stats.segments > segments);
    //  The cursor goes on past the ack record to the new records.
    for (uint64_t seq = ranged + 1; seq <= ranged + 3000; seq++) {
        zq_spool_record_t record;
        if (zq_spool_next (spool, &record))
            fail_msg ("seq %" PRIu64 " not served: %s", seq, zq_strerror (errno));
        assert_int_equal (record.seq, seq);
    }
    zq_spool_stats (spool, &stats);
    assert_int_equal (stats.corrupt_records, 0);
    zq_spool_destroy (&spool);

    //  Reopened, it serves exactly the records not acked, twice over.
    for (int round = 0; round < 2; round++) {
        spool = zq_spool_new (dir, &config);
        if (!spool)
            fail_msg ("reopen failed: %s", zq_strerror (errno));
        s_expect_clean_open (spool);
        zq_spool_stats (spool, &stats);
        assert_int_equal (stats.depth, ranged / 2 + 3000);
        s_expect_unacked (spool, ranged, 1, ranged + 3000, 1000);
        zq_spool_destroy (&spool);
    }
    tu_rmtree (&dir);
}

//  A small record bound reaches the limit with fewer ranges; segment
//  changes carry them in checkpoints, on disk and in memory; each reopen
//  (on disk) rebuilds them from the newest segment alone.
static void
test_small_bound (void **state)
{
    for (int on_disk = 0; on_disk < 2; on_disk++) {
        char *dir = on_disk ? tu_mkdtemp () : NULL;
        zq_spool_config_t config = tu_config (ZQ_SPOOL_FSYNC_ALWAYS, 4096);
        config.max_record_bytes = 256; //  a control record of 320 bytes at most
        zq_spool_t *spool = zq_spool_new (dir, &config);
        assert_non_null (spool);
        const uint64_t ranged = 4000;
        s_fill (spool, ranged, 16);
        assert_int_equal (zq_spool_commit (spool), 0);
        s_ack_odd (spool, ranged, 16);
        uint64_t last = ranged;
        for (int round = 0; round < 4; round++) {
            //  Several segment changes, each with the 2,000 ranges.
            s_fill (spool, 200, 200);
            assert_int_equal (zq_spool_commit (spool), 0);
            last += 200;
            if (on_disk) {
                zq_spool_destroy (&spool);
                spool = zq_spool_new (dir, &config);
                if (!spool)
                    fail_msg ("reopen %d failed: %s", round, zq_strerror (errno));
                s_expect_clean_open (spool);
                zq_spool_stats_t stats;
                zq_spool_stats (spool, &stats);
                assert_int_equal (stats.depth, ranged / 2 + last - ranged);
            }
        }
        if (on_disk) {
            s_expect_unacked (spool, ranged, 16, last, 200);
        } else {
            //  In memory the even ones are still in flight: the cursor
            //  must get past every control record to the new ones.
            for (uint64_t seq = ranged + 1; seq <= last; seq++) {
                zq_spool_record_t record;
                if (zq_spool_next (spool, &record))
                    fail_msg ("seq %" PRIu64 " not served: %s", seq, zq_strerror (errno));
                assert_int_equal (record.seq, seq);
                s_check (&record, 200);
            }
            assert_int_equal (zq_spool_return_all (spool), ranged / 2 + last - ranged);
            s_expect_unacked (spool, ranged, 16, last, 200);
        }
        zq_spool_destroy (&spool);
        tu_rmtree (&dir);
    }
}

//  A crash while many ranges are being written, in an ack batch or in a
//  new segment's checkpoint, at each sync and in each crash mode: the
//  spool reopens, serves every record not acked, and nothing whose ack
//  was durable before.
static void
test_crash_while_writing_ranges (void **state)
{
#ifndef ZQ_CRASH_INJECTION
    print_message ("the spool's crash mode is not built (./configure --enable-crash-injection): "
                   "skipped\n");
    skip ();
#else
    const uint64_t ranged = 2000;
    int runs = 0;
    for (int mode = 1; mode <= ZQI_CRASH_MODES; mode++) {
        for (int at_sync = 1; at_sync <= 5; at_sync++) {
            for (int ack_durable = 0; ack_durable < 2; ack_durable++) {
                char *dir = tu_mkdtemp ();
                zq_spool_config_t config = tu_config (ZQ_SPOOL_FSYNC_ALWAYS, 8192);
                config.max_record_bytes = 256;
                zq_spool_t *spool = zq_spool_new (dir, &config);
                assert_non_null (spool);
                s_fill (spool, ranged, 16);
                assert_int_equal (zq_spool_commit (spool), 0);
                s_ack_odd (spool, ranged, 16);
                if (ack_durable)
                    assert_int_equal (zq_spool_commit (spool), 0);
                zqi_spool_set_crash (spool, at_sync, mode, (uint64_t)(mode * 100 + at_sync));
                //  Enough for a segment change or two; the acks (if not
                //  yet durable) go with the first batch.
                uint64_t last = ranged;
                bool crashed = false;
                for (int batch = 0; batch < 6 && !crashed; batch++) {
                    uint8_t data[4096];
                    for (int i = 0; i < 10 && !crashed; i++) {
                        uint64_t seq = last + 1;
                        size_t size = tu_payload (KEY, seq, tu_size (KEY, seq, 200), data);
                        if (zq_spool_append (spool, data, size, NULL))
                            crashed = true;
                        else
                            last = seq;
                    }
                    if (!crashed && zq_spool_commit (spool))
                        crashed = true;
                }
                assert_true (crashed);
                zq_spool_destroy (&spool);

                spool = zq_spool_new (dir, &config);
                if (!spool)
                    fail_msg ("mode %d, crash at sync %d: reopen failed: %s", mode, at_sync,
                              zq_strerror (errno));
                zq_spool_stats_t stats;
                zq_spool_stats (spool, &stats);
                assert_int_equal (stats.corrupt_records, 0);
                uint8_t *seen = calloc (last + 1, 1);
                zq_spool_record_t record;
                while (zq_spool_next (spool, &record) == 0) {
                    assert_true (record.seq >= 1 && record.seq <= last);
                    assert_false (seen[record.seq]);
                    seen[record.seq] = 1;
                    s_check (&record, record.seq <= ranged ? 16 : 200);
                    if (ack_durable && record.seq <= ranged && record.seq % 2)
                        fail_msg ("mode %d, crash at sync %d: seq %" PRIu64
                                  " served after a durable ack",
                                  mode, at_sync, record.seq);
                }
                assert_int_equal (errno, EAGAIN);
                for (uint64_t seq = 2; seq <= ranged; seq += 2)
                    if (!seen[seq])
                        fail_msg ("mode %d, crash at sync %d: unacked seq %" PRIu64 " lost", mode,
                                  at_sync, seq);
                free (seen);
                zq_spool_stats (spool, &stats);
                assert_int_equal (stats.corrupt_records, 0);
                zq_spool_destroy (&spool);
                tu_rmtree (&dir);
                runs++;
            }
        }
    }
    assert_int_equal (runs, ZQI_CRASH_MODES * 5 * 2);
#endif
}

//  Gaps filled, last first: ranges merge until none is left, and the
//  segments go; a reopen serves nothing and numbering goes on.
static void
test_gaps_filled (void **state)
{
    char *dir = tu_mkdtemp ();
    zq_spool_config_t config = tu_config (ZQ_SPOOL_FSYNC_NONE, 65536);
    zq_spool_t *spool = zq_spool_new (dir, &config);
    assert_non_null (spool);
    const uint64_t ranged = 40000;
    s_fill (spool, ranged, 16);
    assert_int_equal (zq_spool_commit (spool), 0);
    s_ack_odd (spool, ranged, 16);
    s_fill (spool, 100, 16);
    assert_int_equal (zq_spool_commit (spool), 0);
    for (uint64_t seq = ranged; seq >= 2; seq -= 2)
        assert_int_equal (zq_spool_ack (spool, seq), 0);
    for (uint64_t seq = ranged + 1; seq <= ranged + 100; seq++)
        assert_int_equal (zq_spool_ack (spool, seq), 0);
    assert_int_equal (zq_spool_commit (spool), 0);
    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    assert_int_equal (stats.depth, 0);
    zq_spool_destroy (&spool);

    spool = zq_spool_new (dir, &config);
    assert_non_null (spool);
    s_expect_clean_open (spool);
    zq_spool_stats (spool, &stats);
    assert_int_equal (stats.depth, 0);
    assert_int_equal (stats.segments, 1); //  every other one was emptied
    zq_spool_record_t record;
    assert_int_equal (zq_spool_next (spool, &record), -1);
    assert_int_equal (errno, EAGAIN);
    assert_int_equal (zq_spool_last_seq (spool), ranged + 100);
    zq_spool_destroy (&spool);
    tu_rmtree (&dir);
}

//  zq_spool_ack_many acks in order under one hold and stops at the first
//  that fails (a seq never assigned): the ones before it are acked, it
//  and the ones after are not, and *acked_p says where it stopped. Acking
//  a seq twice in one call acks it once. What was acked stays acked after
//  a reopen; the rest is served again.
static void
test_ack_many_stops_at_a_failure (void **state)
{
    char *dir = tu_mkdtemp ();
    zq_spool_config_t config = tu_config (ZQ_SPOOL_FSYNC_NONE, 65536);
    zq_spool_t *spool = zq_spool_new (dir, &config);
    assert_non_null (spool);
    s_fill (spool, 10, 16);
    assert_int_equal (zq_spool_commit (spool), 0);
    for (uint64_t seq = 1; seq <= 10; seq++) {
        zq_spool_record_t record;
        assert_int_equal (zq_spool_next (spool, &record), 0);
        assert_int_equal (record.seq, seq);
    }
    const uint64_t seqs[] = {2, 4, 4, 99, 6, 8};
    size_t acked = 7;
    assert_int_equal (zq_spool_ack_many (spool, seqs, 6, &acked), -1);
    assert_int_equal (errno, ZQ_ENOTFOUND);
    assert_int_equal (acked, 3);
    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    assert_int_equal (stats.acked, 2);
    assert_int_equal (stats.in_flight, 8);
    assert_int_equal (zq_spool_ack_many (spool, seqs + 4, 2, &acked), 0);
    assert_int_equal (acked, 2);
    zq_spool_stats (spool, &stats);
    assert_int_equal (stats.in_flight, 6);
    assert_int_equal (zq_spool_ack_many (spool, seqs, 0, &acked), 0);
    assert_int_equal (acked, 0);
    assert_int_equal (zq_spool_ack_many (spool, seqs, 1, NULL), -1);
    assert_int_equal (errno, EINVAL);
    assert_int_equal (zq_spool_commit (spool), 0);
    zq_spool_destroy (&spool);

    spool = zq_spool_new (dir, &config);
    assert_non_null (spool);
    const uint64_t left[] = {1, 3, 5, 7, 9, 10};
    for (size_t i = 0; i < sizeof left / sizeof left[0]; i++) {
        zq_spool_record_t record;
        assert_int_equal (zq_spool_next (spool, &record), 0);
        assert_int_equal (record.seq, left[i]);
        s_check (&record, 16);
    }
    zq_spool_record_t record;
    assert_int_equal (zq_spool_next (spool, &record), -1);
    assert_int_equal (errno, EAGAIN);
    zq_spool_destroy (&spool);
    tu_rmtree (&dir);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_default_bound),
        cmocka_unit_test (test_small_bound),
        cmocka_unit_test (test_crash_while_writing_ranges),
        cmocka_unit_test (test_gaps_filled),
        cmocka_unit_test (test_ack_many_stops_at_a_failure),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
