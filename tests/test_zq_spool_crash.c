/*  =========================================================================
    test_zq_spool_crash - the spool's crash mode, run many times: random
    appends, commits, deliveries, acks and returns until the spool
    "crashes" at its Nth sync, then a reopen must find every record that
    was reported durable, intact, must not serve an ack that was reported
    durable, and must never serve a record that is not exactly what was
    appended under that seq.

    What this proves, and what not: the crash is simulated inside the
    spool at its sync points (zqi_spool_set_crash): every byte written
    since the last sync is dropped, torn, garbled, or scrambled sector by
    sector (modes 1-4), as a power loss may leave a file; bytes already
    synced are left intact, and a segment's rename may be lost. It tests
    the log format and the recovery logic against those outcomes. It does
    not test that the disk keeps what fsync promised (the runs use a tmpfs
    when there is one, for speed), nor multi-threaded appends.

    ZQ_SPOOL_CRASH_RUNS sets the number of runs (default 100; make
    check-faults runs thousands), ZQ_SPOOL_CRASH_SEED the first seed.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "spool_testutil.h"
#include "../src/zq_spool_internal.h"

#define MAX_RECORDS 4096

typedef struct {
    uint64_t rng;
    uint64_t key;
    size_t max_size;
    uint64_t appended;              //  highest seq appended
    uint8_t confirmed[MAX_RECORDS]; //  reported durable
    uint8_t acked[MAX_RECORDS];     //  ack made (1) / ack reported durable (2)
} s_run_t;

static uint64_t
s_rand (s_run_t *run, uint64_t bound)
{
    run->rng = run->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (run->rng >> 33) % bound;
}

//  Checks that a served record is exactly what was appended under seq.
static void
s_check_record (s_run_t *run, const zq_spool_record_t *record)
{
    uint8_t expected[1024];
    assert_true (record->seq >= 1 && record->seq <= run->appended);
    size_t size = tu_payload (run->key, record->seq, tu_size (run->key, record->seq, run->max_size),
                              expected);
    assert_int_equal (record->size, size);
    assert_memory_equal (record->data, expected, size);
}

//  Records confirmed before a crash and served after it, over all runs.
static uint64_t s_confirmed_total;
static uint64_t s_served_total;

//  One run; returns true if the spool crashed in it.
static bool
s_run (uint64_t seed)
{
    s_run_t *run = calloc (1, sizeof (s_run_t));
    run->rng = seed * 0x9E3779B97F4A7C15ULL + 17;
    run->key = seed;
    run->max_size = 1 + (size_t)s_rand (run, 700);
    int mode = 1 + (int)(seed % ZQI_CRASH_MODES);
    bool interval = seed % 5 == 4;
    zq_spool_config_t config = tu_config (
        interval ? ZQ_SPOOL_FSYNC_INTERVAL : ZQ_SPOOL_FSYNC_ALWAYS, 4096u << s_rand (run, 3));
    config.batch_bytes = 512 + (uint32_t)s_rand (run, 4096);
    config.fsync_interval_ms = 1;
    char *dir = tu_mkdtemp ();
    zq_spool_t *spool = zq_spool_new (dir, &config);
    assert_non_null (spool);
    int crash_at = 1 + (int)s_rand (run, 150);
    zqi_spool_set_crash (spool, crash_at, mode, seed);

    bool crashed = false;
    uint8_t data[1024];
    for (int step = 0; step < 400 && !crashed && run->appended < MAX_RECORDS - 8; step++) {
        uint64_t op = s_rand (run, 10);
        if (op < 5) {
            uint64_t count = 1 + s_rand (run, 4);
            for (uint64_t i = 0; i < count && !crashed; i++) {
                uint64_t seq = run->appended + 1;
                size_t size =
                    tu_payload (run->key, seq, tu_size (run->key, seq, run->max_size), data);
                uint64_t got;
                if (zq_spool_append (spool, data, size, &got)) {
                    assert_int_equal (errno, EIO);
                    crashed = true;
                } else {
                    assert_int_equal (got, seq);
                    run->appended = seq;
                }
            }
            if (!crashed && s_rand (run, 2)) {
                int rc = interval ? zq_spool_wait (spool, run->appended) : zq_spool_commit (spool);
                if (rc == 0) {
                    for (uint64_t seq = 1; seq <= run->appended; seq++)
                        run->confirmed[seq] = 1;
                } else {
                    assert_int_equal (errno, EIO);
                    crashed = true;
                }
            }
        } else if (op < 8) {
            for (uint64_t i = s_rand (run, 4); i > 0 && !crashed; i--) {
                zq_spool_record_t record;
                if (zq_spool_next (spool, &record)) {
                    if (errno == EIO)
                        crashed = true;
                    else
                        assert_int_equal (errno, EAGAIN);
                    break;
                }
                s_check_record (run, &record);
                uint64_t choice = s_rand (run, 3);
                if (choice < 2) {
                    if (zq_spool_ack (spool, record.seq))
                        crashed = true;
                    else if (!run->acked[record.seq])
                        run->acked[record.seq] = 1;
                } else
                    assert_int_equal (zq_spool_return (spool, record.seq), 0);
            }
        } else if (op == 8) {
            if (zq_spool_commit (spool)) {
                assert_int_equal (errno, EIO);
                crashed = true;
            } else if (!interval) {
                //  Under ALWAYS a commit makes the acks made so far durable.
                for (uint64_t seq = 1; seq <= run->appended; seq++) {
                    if (run->acked[seq])
                        run->acked[seq] = 2;
                    run->confirmed[seq] = 1;
                }
            }
        } else
            zq_spool_return_all (spool);
    }
    if (!crashed) {
        //  The end of the run: make everything durable (this too may
        //  crash), so destroy has nothing left to write.
        int rc = interval ? (run->appended ? zq_spool_wait (spool, run->appended) : 0)
                          : zq_spool_commit (spool);
        if (rc == 0) {
            for (uint64_t seq = 1; seq <= run->appended; seq++) {
                if (run->acked[seq] && !interval)
                    run->acked[seq] = 2;
                run->confirmed[seq] = 1;
            }
        } else
            crashed = true;
    }
    zq_spool_destroy (&spool);

    //  Reopen: recovery must succeed and serve only intact records.
    spool = zq_spool_new (dir, &config);
    if (!spool)
        fail_msg ("seed %" PRIu64 ": reopen failed: %s (kept %s)", seed, zq_strerror (errno), dir);
    uint8_t *seen = calloc (MAX_RECORDS, 1);
    zq_spool_record_t record;
    while (zq_spool_next (spool, &record) == 0) {
        s_check_record (run, &record);
        if (seen[record.seq])
            fail_msg ("seed %" PRIu64 ": seq %" PRIu64 " served twice", seed, record.seq);
        if (run->acked[record.seq] == 2)
            fail_msg ("seed %" PRIu64 ": seq %" PRIu64 " served after a durable ack", seed,
                      record.seq);
        seen[record.seq] = 1;
        s_served_total++;
    }
    assert_int_equal (errno, EAGAIN);
    for (uint64_t seq = 1; seq <= run->appended; seq++)
        s_confirmed_total += run->confirmed[seq];
    for (uint64_t seq = 1; seq <= run->appended; seq++)
        if (run->confirmed[seq] && !run->acked[seq] && !seen[seq])
            fail_msg ("seed %" PRIu64 " (mode %d, crash at sync %d): durable seq %" PRIu64 " lost",
                      seed, mode, crash_at, seq);
    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    assert_int_equal (stats.corrupt_records, 0);

    //  The recovered log takes appends that survive another restart.
    uint64_t first = zq_spool_last_seq (spool) + 1;
    for (uint64_t seq = first; seq < first + 3; seq++) {
        size_t size = tu_payload (run->key, seq, tu_size (run->key, seq, run->max_size), data);
        assert_int_equal (zq_spool_append (spool, data, size, NULL), 0);
    }
    assert_int_equal (zq_spool_commit (spool), 0);
    zq_spool_destroy (&spool);
    if (run->appended < first + 2)
        run->appended = first + 2;
    spool = zq_spool_new (dir, &config);
    assert_non_null (spool);
    uint64_t tail = 0;
    while (zq_spool_next (spool, &record) == 0) {
        s_check_record (run, &record);
        tail = record.seq;
    }
    assert_int_equal (tail, first + 2);
    zq_spool_destroy (&spool);
    free (seen);
    free (run);
    tu_rmtree (&dir);
    return crashed;
}

static void
s_log (zq_log_level_t level, const char *line, void *arg)
{
    fprintf (stderr, "%s\n", line);
}

static void
test_crash_loop (void **state)
{
    if (getenv ("ZQ_TEST_LOG"))
        zq_set_log_handler (s_log, NULL, ZQ_LOG_DEBUG);
    const char *env = getenv ("ZQ_SPOOL_CRASH_RUNS");
    uint64_t runs = env ? strtoull (env, NULL, 10) : 100;
    env = getenv ("ZQ_SPOOL_CRASH_SEED");
    uint64_t first = env ? strtoull (env, NULL, 10) : 1;
    uint64_t crashes = 0;
    for (uint64_t seed = first; seed < first + runs; seed++)
        crashes += s_run (seed);
    printf ("spool crash loop: %" PRIu64 " runs, %" PRIu64 " crashed before the end; %" PRIu64
            " records confirmed before a crash, %" PRIu64 " served after\n",
            runs, crashes, s_confirmed_total, s_served_total);
    //  Most runs must actually crash, or the loop proves little.
    assert_true (crashes * 2 >= runs);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_crash_loop),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
