/*  =========================================================================
    test_zq_spool - the spool's API: appends, commits under each fsync
    policy, the delivery cursor, acks and returns, reclaim, quotas, the
    memory mode, concurrent durable appends and damage on disk while the
    spool is open.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "spool_testutil.h"
#include <pthread.h>
#include <sched.h>

#define KEY 42

//  Appends seqs 1..count with payloads from tu_payload (sizes up to max).
static void
s_fill (zq_spool_t *spool, uint64_t count, size_t max)
{
    tu_fill (spool, KEY, count, max);
}

//  Takes the next record and checks it is seq with its payload.
static void
s_expect (zq_spool_t *spool, uint64_t seq, size_t max)
{
    zq_spool_record_t record;
    assert_int_equal (zq_spool_next (spool, &record), 0);
    assert_int_equal (record.seq, seq);
    tu_check (KEY, &record, max);
}

//  Opens the spool in dir with config (NULL: the defaults).
static zq_spool_t *
s_open (const char *dir, const zq_spool_config_t *config)
{
    zq_spool_t *spool = zq_spool_new (dir, config);
    assert_non_null (spool);
    return spool;
}

//  Appends batches batches of count records (sizes up to max), each
//  committed.
static void
s_fill_batches (zq_spool_t *spool, int batches, uint64_t count, size_t max)
{
    for (int batch = 0; batch < batches; batch++) {
        s_fill (spool, count, max);
        assert_int_equal (zq_spool_commit (spool), 0);
    }
}

static void
s_expect_empty (zq_spool_t *spool)
{
    zq_spool_record_t record;
    assert_int_equal (zq_spool_next (spool, &record), -1);
    assert_int_equal (errno, EAGAIN);
}

static void
test_memory_fifo (void **state)
{
    zq_spool_t *spool = zq_spool_new (NULL, NULL);
    assert_non_null (spool);
    s_expect_empty (spool);
    s_fill (spool, 100, 300);
    //  Nothing is handed out before it is written.
    s_expect_empty (spool);
    assert_int_equal (zq_spool_commit (spool), 0);
    assert_int_equal (zq_spool_durable_seq (spool), 100);
    for (uint64_t seq = 1; seq <= 100; seq++)
        s_expect (spool, seq, 300);
    s_expect_empty (spool);

    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    assert_int_equal (stats.appends, 100);
    assert_int_equal (stats.depth, 100);
    assert_int_equal (stats.in_flight, 100);
    assert_int_equal (stats.delivered, 100);
    for (uint64_t seq = 1; seq <= 100; seq++)
        assert_int_equal (zq_spool_ack (spool, seq), 0);
    //  Acks are idempotent; unknown seqs are refused.
    assert_int_equal (zq_spool_ack (spool, 5), 0);
    assert_int_equal (zq_spool_ack (spool, 101), -1);
    assert_int_equal (errno, ZQ_ENOTFOUND);
    assert_int_equal (zq_spool_ack (spool, 0), -1);
    zq_spool_stats (spool, &stats);
    assert_int_equal (stats.depth, 0);
    assert_int_equal (stats.in_flight, 0);
    assert_int_equal (stats.acked, 100);
    zq_spool_destroy (&spool);
    assert_null (spool);
    zq_spool_destroy (&spool);
}

static void
test_return_order (void **state)
{
    zq_spool_t *spool = zq_spool_new (NULL, NULL);
    assert_non_null (spool);
    s_fill (spool, 10, 50);
    assert_int_equal (zq_spool_commit (spool), 0);
    for (uint64_t seq = 1; seq <= 5; seq++)
        s_expect (spool, seq, 50);
    //  Returned records come back lowest seq first, before newer ones.
    assert_int_equal (zq_spool_return (spool, 4), 0);
    assert_int_equal (zq_spool_return (spool, 2), 0);
    assert_int_equal (zq_spool_return (spool, 2), -1);
    assert_int_equal (errno, ZQ_ENOTFOUND);
    assert_int_equal (zq_spool_ack (spool, 3), 0);
    assert_int_equal (zq_spool_return (spool, 3), -1);
    s_expect (spool, 2, 50);
    s_expect (spool, 4, 50);
    s_expect (spool, 6, 50);
    //  A returned record that is acked meanwhile is not handed out.
    assert_int_equal (zq_spool_return (spool, 6), 0);
    assert_int_equal (zq_spool_ack (spool, 6), 0);
    s_expect (spool, 7, 50);
    assert_int_equal (zq_spool_return_all (spool), 5); //  1 2 4 5 7
    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    assert_int_equal (stats.in_flight, 0);
    s_expect (spool, 1, 50);
    s_expect (spool, 2, 50);
    s_expect (spool, 4, 50);
    s_expect (spool, 5, 50);
    s_expect (spool, 7, 50);
    s_expect (spool, 8, 50);
    zq_spool_destroy (&spool);
}

static void
test_reopen_keeps_unacked (void **state)
{
    char *dir = tu_mkdtemp ();
    zq_spool_config_t config = tu_config (ZQ_SPOOL_FSYNC_ALWAYS, 8192);
    zq_spool_t *spool = zq_spool_new (dir, &config);
    assert_non_null (spool);
    s_fill (spool, 300, 200);
    assert_int_equal (zq_spool_commit (spool), 0);
    assert_int_equal (zq_spool_durable_seq (spool), 300);
    //  Deliver all, ack the odd ones; the even ones stay in flight.
    for (uint64_t seq = 1; seq <= 300; seq++) {
        s_expect (spool, seq, 200);
        if (seq % 2)
            assert_int_equal (zq_spool_ack (spool, seq), 0);
    }
    assert_int_equal (zq_spool_commit (spool), 0);
    zq_spool_destroy (&spool);

    //  After a restart the unacked records are ready again, in order, and
    //  the acked ones are gone.
    spool = zq_spool_new (dir, &config);
    assert_non_null (spool);
    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    assert_int_equal (stats.last_seq, 300);
    assert_int_equal (stats.depth, 150);
    assert_int_equal (stats.corrupt_records, 0);
    for (uint64_t seq = 2; seq <= 300; seq += 2)
        s_expect (spool, seq, 200);
    s_expect_empty (spool);
    //  New records continue the numbering.
    s_fill (spool, 1, 200);
    assert_int_equal (zq_spool_last_seq (spool), 301);
    assert_int_equal (zq_spool_commit (spool), 0);
    s_expect (spool, 301, 200);
    zq_spool_destroy (&spool);
    tu_rmtree (&dir);
}

static void
test_reclaim (void **state)
{
    char *dir = tu_mkdtemp ();
    zq_spool_config_t config = tu_config (ZQ_SPOOL_FSYNC_ALWAYS, 4096);
    zq_spool_t *spool = s_open (dir, &config);
    s_fill_batches (spool, 20, 20, 400);
    char *names[1000];
    size_t count = tu_segments (dir, names, 1000);
    for (size_t i = 0; i < count; i++)
        free (names[i]);
    assert_true (count > 5);
    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    assert_int_equal (stats.segments, count);

    //  Acking everything deletes every segment but the newest.
    for (uint64_t seq = 1; seq <= 400; seq++) {
        s_expect (spool, seq, 400);
        assert_int_equal (zq_spool_ack (spool, seq), 0);
    }
    assert_int_equal (zq_spool_commit (spool), 0);
    count = tu_segments (dir, names, 1000);
    for (size_t i = 0; i < count; i++)
        free (names[i]);
    assert_int_equal (count, 1);
    zq_spool_stats (spool, &stats);
    assert_int_equal (stats.segments, 1);
    assert_true (stats.segments_reclaimed > 4);
    assert_int_equal (stats.depth, 0);
    zq_spool_destroy (&spool);

    //  A restart finds nothing to deliver, and numbering goes on.
    spool = zq_spool_new (dir, &config);
    assert_non_null (spool);
    s_expect_empty (spool);
    assert_int_equal (zq_spool_last_seq (spool), 400);
    zq_spool_destroy (&spool);
    tu_rmtree (&dir);
}

static void
test_quota (void **state)
{
    char *dir = tu_mkdtemp ();
    zq_spool_config_t config = tu_config (ZQ_SPOOL_FSYNC_ALWAYS, 8192);
    config.quota_bytes = 64 * 1024;
    zq_spool_t *spool = zq_spool_new (dir, &config);
    assert_non_null (spool);
    uint8_t data[1000];
    memset (data, 'q', sizeof data);
    uint64_t stored = 0;
    int rc = 0;
    for (int i = 0; i < 1000 && rc == 0; i++) {
        uint64_t seq;
        rc = zq_spool_append_durable (spool, data, sizeof data, &seq);
        if (rc == 0)
            stored = seq;
    }
    assert_int_equal (rc, -1);
    assert_int_equal (errno, ZQ_EFULL);
    assert_true (stored > 30);
    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    assert_true (stats.disk_bytes <= config.quota_bytes);
    assert_true (stats.refused >= 1);
    //  Refusals assign no seq: the log holds exactly what was stored.
    assert_int_equal (zq_spool_last_seq (spool), stored);
    zq_spool_destroy (&spool);

    spool = zq_spool_new (dir, &config);
    assert_non_null (spool);
    assert_int_equal (zq_spool_append (spool, data, sizeof data, NULL), -1);
    assert_int_equal (errno, ZQ_EFULL);
    //  Acks free whole segments; then appends resume.
    zq_spool_record_t record;
    for (uint64_t seq = 1; seq <= stored; seq++) {
        assert_int_equal (zq_spool_next (spool, &record), 0);
        assert_int_equal (record.seq, seq);
        assert_int_equal (record.size, sizeof data);
        assert_int_equal (zq_spool_ack (spool, seq), 0);
    }
    assert_int_equal (zq_spool_commit (spool), 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal (zq_spool_append_durable (spool, data, sizeof data, NULL), 0);
    zq_spool_destroy (&spool);
    tu_rmtree (&dir);
}

static void
test_memory_quota (void **state)
{
    zq_spool_config_t config;
    zq_spool_config_init (&config);
    config.quota_bytes = 100 * 1024;
    config.segment_bytes = 16 * 1024;
    config.batch_bytes = 4096;
    zq_spool_t *spool = zq_spool_new (NULL, &config);
    assert_non_null (spool);
    uint8_t data[1000] = {0};
    uint64_t stored = 0;
    while (zq_spool_append (spool, data, sizeof data, NULL) == 0)
        stored++;
    assert_int_equal (errno, ZQ_EFULL);
    assert_true (stored > 50 && stored < 100);
    assert_int_equal (zq_spool_commit (spool), 0);
    zq_spool_record_t record;
    for (uint64_t seq = 1; seq <= stored; seq++) {
        assert_int_equal (zq_spool_next (spool, &record), 0);
        assert_int_equal (zq_spool_ack (spool, record.seq), 0);
    }
    assert_int_equal (zq_spool_append (spool, data, sizeof data, NULL), 0);
    zq_spool_destroy (&spool);
}

static void
test_messages (void **state)
{
    char *dir = tu_mkdtemp ();
    zq_spool_t *spool = zq_spool_new (dir, NULL);
    assert_non_null (spool);
    zq_msg_t *msg = zq_msg_new ("orders");
    assert_non_null (msg);
    assert_int_equal (zq_msg_set_header (msg, "tenant", "acme"), 0);
    assert_int_equal (zq_msg_pack (msg, "{sssu}", "order", "A-17", "cents", (uint64_t)1299), 0);
    zq_msg_t *big = zq_msg_new ("orders");
    char text[20000];
    memset (text, 'x', sizeof text - 1);
    text[sizeof text - 1] = 0;
    assert_int_equal (zq_msg_pack (big, "s", text), 0);
    uint64_t seq1, seq2;
    assert_int_equal (zq_spool_append_msg (spool, msg, &seq1), 0);
    assert_int_equal (zq_spool_append_msg (spool, big, &seq2), 0);
    assert_int_equal (zq_spool_commit (spool), 0);
    zq_spool_destroy (&spool);

    spool = zq_spool_new (dir, NULL);
    assert_non_null (spool);
    uint64_t seq;
    zq_msg_t *copy = zq_spool_next_msg (spool, 0, &seq);
    assert_non_null (copy);
    assert_int_equal (seq, seq1);
    assert_memory_equal (zq_msg_id (copy), zq_msg_id (msg), ZQ_MSG_ID_SIZE);
    assert_string_equal (zq_msg_subject (copy), "orders");
    assert_string_equal (zq_msg_header (copy, "tenant"), "acme");
    char *order = zq_msg_get_str (copy, "order");
    assert_string_equal (order, "A-17");
    free (order);
    zq_msg_destroy (&copy);
    copy = zq_spool_next_msg (spool, 0, &seq);
    assert_non_null (copy);
    assert_int_equal (seq, seq2);
    size_t size_a, size_b;
    const void *body_a = zq_msg_body (copy, &size_a);
    const void *body_b = zq_msg_body (big, &size_b);
    assert_int_equal (size_a, size_b);
    assert_memory_equal (body_a, body_b, size_a);
    zq_msg_destroy (&copy);
    zq_msg_destroy (&msg);
    zq_msg_destroy (&big);
    zq_spool_destroy (&spool);
    tu_rmtree (&dir);
}

static void
test_policies (void **state)
{
    zq_spool_fsync_t policies[] = {ZQ_SPOOL_FSYNC_INTERVAL, ZQ_SPOOL_FSYNC_NONE};
    for (int i = 0; i < 2; i++) {
        char *dir = tu_mkdtemp ();
        zq_spool_config_t config = tu_config (policies[i], 8192);
        config.fsync_interval_ms = 5;
        zq_spool_t *spool = zq_spool_new (dir, &config);
        assert_non_null (spool);
        s_fill (spool, 50, 300);
        assert_int_equal (zq_spool_commit (spool), 0);
        //  After commit the records are written, so they can be read.
        for (uint64_t seq = 1; seq <= 50; seq++)
            s_expect (spool, seq, 300);
        assert_int_equal (zq_spool_wait (spool, 50), 0);
        assert_true (zq_spool_durable_seq (spool) >= 50);
        s_fill (spool, 1, 300);
        //  wait writes (and under interval, waits for the thread's sync).
        assert_int_equal (zq_spool_wait (spool, 51), 0);
        assert_int_equal (zq_spool_wait (spool, 52), -1);
        assert_int_equal (errno, EINVAL);
        zq_spool_destroy (&spool);
        spool = zq_spool_new (dir, &config);
        assert_non_null (spool);
        assert_int_equal (zq_spool_last_seq (spool), 51);
        zq_spool_destroy (&spool);
        tu_rmtree (&dir);
    }
}

//  Under always, a batch written because it filled during appends is not
//  handed out until a commit synced it (nothing is delivered before it is
//  durable); under none it is handed out once written.
static void
test_written_but_unsynced_not_handed_out (void **state)
{
    zq_spool_fsync_t policies[] = {ZQ_SPOOL_FSYNC_ALWAYS, ZQ_SPOOL_FSYNC_NONE};
    for (int i = 0; i < 2; i++) {
        char *dir = tu_mkdtemp ();
        zq_spool_config_t config = tu_config (policies[i], 64 * 1024);
        config.batch_bytes = 4096;
        zq_spool_t *spool = zq_spool_new (dir, &config);
        assert_non_null (spool);
        s_fill (spool, 200, 300); //  about 30 KiB: batches written as they fill
        zq_spool_stats_t stats;
        zq_spool_stats (spool, &stats);
        assert_true (stats.writes >= 3);
        zq_spool_record_t record;
        if (policies[i] == ZQ_SPOOL_FSYNC_ALWAYS) {
            assert_int_equal (zq_spool_next (spool, &record), -1);
            assert_int_equal (errno, EAGAIN);
            assert_int_equal (zq_spool_commit (spool), 0);
        }
        for (uint64_t seq = 1; seq <= 3; seq++)
            s_expect (spool, seq, 300);
        zq_spool_destroy (&spool);
        tu_rmtree (&dir);
    }
}

static void
test_arguments (void **state)
{
    zq_spool_fsync_t policy;
    assert_int_equal (zq_spool_fsync_parse ("interval", &policy), 0);
    assert_int_equal (policy, ZQ_SPOOL_FSYNC_INTERVAL);
    assert_string_equal (zq_spool_fsync_name (policy), "interval");
    assert_int_equal (zq_spool_fsync_parse ("sometimes", &policy), -1);
    assert_int_equal (errno, EINVAL);

    zq_spool_config_t config;
    zq_spool_config_init (&config);
    config.segment_bytes = 100;
    assert_null (zq_spool_new (NULL, &config));
    assert_int_equal (errno, EINVAL);
    zq_spool_config_init (&config);
    config.quota_bytes = 8192;
    assert_null (zq_spool_new (NULL, &config));
    assert_int_equal (errno, EINVAL);

    zq_spool_config_init (&config);
    config.max_record_bytes = 1000;
    zq_spool_t *spool = zq_spool_new (NULL, &config);
    assert_non_null (spool);
    uint8_t data[1001] = {0};
    assert_int_equal (zq_spool_append (spool, data, 1001, NULL), -1);
    assert_int_equal (errno, ZQ_ETOOBIG);
    assert_int_equal (zq_spool_append (spool, data, 0, NULL), 0);
    const void *parts[3] = {data, data, data};
    size_t sizes[3] = {10, 20, 30};
    uint64_t first;
    assert_int_equal (zq_spool_appendv (spool, parts, sizes, 3, &first), 0);
    assert_int_equal (first, 2);
    sizes[1] = 1001;
    assert_int_equal (zq_spool_appendv (spool, parts, sizes, 3, &first), -1);
    assert_int_equal (errno, ZQ_ETOOBIG);
    assert_int_equal (zq_spool_last_seq (spool), 4);
    assert_int_equal (zq_spool_commit (spool), 0);
    zq_spool_record_t record;
    assert_int_equal (zq_spool_next (spool, &record), 0);
    assert_int_equal (record.size, 0);
    assert_int_equal (zq_spool_next (spool, &record), 0);
    assert_int_equal (record.size, 10);
    zq_spool_destroy (&spool);

    //  One process at a time per directory.
    char *dir = tu_mkdtemp ();
    spool = zq_spool_new (dir, NULL);
    assert_non_null (spool);
    assert_null (zq_spool_new (dir, NULL));
    assert_int_equal (errno, EBUSY);
    zq_spool_destroy (&spool);
    tu_rmtree (&dir);
}

//  Concurrent producers, each appending and waiting until durable.
typedef struct {
    zq_spool_t *spool;
    int id;
    int count;
    uint64_t *seqs;
} s_producer_t;

static void *
s_producer (void *arg)
{
    s_producer_t *producer = (s_producer_t *)arg;
    uint8_t data[100];
    for (int i = 0; i < producer->count; i++) {
        memset (data, 0, sizeof data);
        data[0] = (uint8_t)producer->id;
        memcpy (data + 1, &i, sizeof i);
        if (zq_spool_append_durable (producer->spool, data, sizeof data, &producer->seqs[i]))
            producer->seqs[i] = 0;
    }
    return NULL;
}

static void
test_concurrent_durable (void **state)
{
    char *dir = tu_mkdtemp ();
    zq_spool_config_t config = tu_config (ZQ_SPOOL_FSYNC_ALWAYS, 64 * 1024);
    zq_spool_t *spool = zq_spool_new (dir, &config);
    assert_non_null (spool);
    enum { PRODUCERS = 4, COUNT = 500 };
    s_producer_t producers[PRODUCERS];
    pthread_t threads[PRODUCERS];
    for (int p = 0; p < PRODUCERS; p++) {
        producers[p] = (s_producer_t){spool, p, COUNT, calloc (COUNT, sizeof (uint64_t))};
        assert_int_equal (pthread_create (&threads[p], NULL, s_producer, &producers[p]), 0);
    }
    for (int p = 0; p < PRODUCERS; p++)
        pthread_join (threads[p], NULL);
    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    assert_int_equal (stats.appends, PRODUCERS * COUNT);
    assert_int_equal (stats.durable_seq, PRODUCERS * COUNT);
    //  Never more fsyncs than durable appends (plus segment creations).
    assert_true (stats.fsyncs <= stats.appends + 2 * stats.segments_reclaimed + 2 * stats.segments);
    zq_spool_destroy (&spool);

    //  Every durable append is there, under the seq it was given.
    spool = zq_spool_new (dir, &config);
    assert_non_null (spool);
    uint8_t *seen = calloc (PRODUCERS * COUNT + 1, 1);
    zq_spool_record_t record;
    while (zq_spool_next (spool, &record) == 0) {
        assert_int_equal (record.size, 100);
        int producer = ((const uint8_t *)record.data)[0];
        int index;
        memcpy (&index, (const uint8_t *)record.data + 1, sizeof index);
        assert_true (producer < PRODUCERS && index < COUNT);
        assert_int_equal (producers[producer].seqs[index], record.seq);
        assert_false (seen[record.seq]);
        seen[record.seq] = 1;
    }
    for (uint64_t seq = 1; seq <= PRODUCERS * COUNT; seq++)
        assert_true (seen[seq]);
    free (seen);
    for (int p = 0; p < PRODUCERS; p++)
        free (producers[p].seqs);
    zq_spool_destroy (&spool);
    tu_rmtree (&dir);
}

//  Producers append while a consumer takes and acks, with segments
//  rolling over and being reclaimed under them.
typedef struct {
    zq_spool_t *spool;
    uint64_t expected;
    uint64_t acked;
    bool failed;
} s_consumer_t;

static void *
s_consumer (void *arg)
{
    s_consumer_t *consumer = (s_consumer_t *)arg;
    int64_t deadline = zclock_mono () + 60000;
    zq_spool_record_t record;
    while (consumer->acked < consumer->expected && zclock_mono () < deadline) {
        if (zq_spool_next (consumer->spool, &record)) {
            if (errno != EAGAIN) {
                consumer->failed = true;
                break;
            }
            sched_yield ();
            continue;
        }
        if (record.size != 100 || zq_spool_ack (consumer->spool, record.seq)) {
            consumer->failed = true;
            break;
        }
        consumer->acked++;
    }
    return NULL;
}

static void
test_concurrent_consume (void **state)
{
    char *dir = tu_mkdtemp ();
    zq_spool_config_t config = tu_config (ZQ_SPOOL_FSYNC_ALWAYS, 8192);
    zq_spool_t *spool = zq_spool_new (dir, &config);
    assert_non_null (spool);
    enum { PRODUCERS = 3, COUNT = 1000 };
    s_consumer_t consumer = {spool, PRODUCERS * COUNT, 0, false};
    pthread_t consumer_thread;
    assert_int_equal (pthread_create (&consumer_thread, NULL, s_consumer, &consumer), 0);
    s_producer_t producers[PRODUCERS];
    pthread_t threads[PRODUCERS];
    for (int p = 0; p < PRODUCERS; p++) {
        producers[p] = (s_producer_t){spool, p, COUNT, calloc (COUNT, sizeof (uint64_t))};
        assert_int_equal (pthread_create (&threads[p], NULL, s_producer, &producers[p]), 0);
    }
    for (int p = 0; p < PRODUCERS; p++) {
        pthread_join (threads[p], NULL);
        for (int i = 0; i < COUNT; i++)
            assert_true (producers[p].seqs[i] > 0);
        free (producers[p].seqs);
    }
    pthread_join (consumer_thread, NULL);
    assert_false (consumer.failed);
    assert_int_equal (consumer.acked, PRODUCERS * COUNT);
    assert_int_equal (zq_spool_commit (spool), 0);
    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    assert_int_equal (stats.depth, 0);
    assert_true (stats.segments_reclaimed > 10);
    zq_spool_destroy (&spool);
    spool = zq_spool_new (dir, &config);
    assert_non_null (spool);
    zq_spool_record_t record;
    assert_int_equal (zq_spool_next (spool, &record), -1);
    assert_int_equal (errno, EAGAIN);
    zq_spool_destroy (&spool);
    tu_rmtree (&dir);
}

//  A record handed out from the batch just written (kept in memory, not
//  read back) stays as appended until the next reading call, however many
//  batches are appended and committed meanwhile; the records after it
//  come out whole, and so does a returned one.
static void
test_handed_out_from_last_batch (void **state)
{
    (void)state;
    char *dir = tu_mkdtemp ();
    zq_spool_t *spool = s_open (dir, NULL);
    uint8_t first[300], other[300];
    memset (first, 'a', sizeof first);
    assert_int_equal (zq_spool_append (spool, first, sizeof first, NULL), 0);
    assert_int_equal (zq_spool_commit (spool), 0);
    zq_spool_record_t record;
    assert_int_equal (zq_spool_next (spool, &record), 0);
    assert_int_equal (record.seq, 1);
    for (int n = 0; n < 8; n++) {
        memset (other, 'b' + n, sizeof other);
        assert_int_equal (zq_spool_append (spool, other, sizeof other, NULL), 0);
        assert_int_equal (zq_spool_commit (spool), 0);
    }
    assert_int_equal (record.size, sizeof first);
    assert_memory_equal (record.data, first, sizeof first);
    for (uint64_t seq = 2; seq <= 9; seq++) {
        assert_int_equal (zq_spool_next (spool, &record), 0);
        assert_int_equal (record.seq, seq);
        memset (other, 'b' + (int)seq - 2, sizeof other);
        assert_int_equal (record.size, sizeof other);
        assert_memory_equal (record.data, other, sizeof other);
    }
    assert_int_equal (zq_spool_return (spool, 9), 0);
    assert_int_equal (zq_spool_ack (spool, 1), 0);
    assert_int_equal (zq_spool_next (spool, &record), 0);
    assert_int_equal (record.seq, 9);
    assert_memory_equal (record.data, other, sizeof other);
    s_expect_empty (spool);
    zq_spool_destroy (&spool);
    tu_rmtree (&dir);
}

//  A record acked before it was handed out is skipped by the cursor,
//  whether the last batch written still holds it or it is read back.
static void
test_acked_before_handed_out (void **state)
{
    (void)state;
    char *dir = tu_mkdtemp ();
    zq_spool_t *spool = s_open (dir, NULL);
    //  1..4 in one batch, the last written: 2 and 4 acked first.
    s_fill (spool, 4, 200);
    assert_int_equal (zq_spool_commit (spool), 0);
    assert_int_equal (zq_spool_ack (spool, 2), 0);
    assert_int_equal (zq_spool_ack (spool, 4), 0);
    s_expect (spool, 1, 200);
    s_expect (spool, 3, 200);
    s_expect_empty (spool);
    //  5..12 a batch each: 6 and 7 are read back, 12 is in the last
    //  batch; 6, 7 and 12 acked first.
    s_fill_batches (spool, 8, 1, 200);
    assert_int_equal (zq_spool_ack (spool, 6), 0);
    assert_int_equal (zq_spool_ack (spool, 7), 0);
    assert_int_equal (zq_spool_ack (spool, 12), 0);
    for (uint64_t seq = 5; seq <= 11; seq++)
        if (seq != 6 && seq != 7)
            s_expect (spool, seq, 200);
    s_expect_empty (spool);
    zq_spool_destroy (&spool);
    tu_rmtree (&dir);
}

//  A cursor whose segment was reclaimed before it read anything there
//  goes on at the first record of the next segment left.
static void
test_cursor_segment_reclaimed (void **state)
{
    (void)state;
    char *dir = tu_mkdtemp ();
    zq_spool_config_t config = tu_config (ZQ_SPOOL_FSYNC_ALWAYS, 4096);
    zq_spool_t *spool = s_open (dir, &config);
    s_fill_batches (spool, 20, 20, 400);
    for (uint64_t seq = 1; seq <= 300; seq++)
        assert_int_equal (zq_spool_ack (spool, seq), 0);
    assert_int_equal (zq_spool_commit (spool), 0);
    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    assert_true (stats.segments_reclaimed > 2);
    for (uint64_t seq = 301; seq <= 400; seq++)
        s_expect (spool, seq, 400);
    s_expect_empty (spool);
    zq_spool_destroy (&spool);
    tu_rmtree (&dir);
}

//  Appends payload (a string) as one record and commits it: a batch of
//  its own. Returns its seq.
static uint64_t
s_append_batch (zq_spool_t *spool, const char *payload)
{
    uint64_t seq = 0;
    assert_int_equal (zq_spool_append (spool, payload, strlen (payload), &seq), 0);
    assert_int_equal (zq_spool_commit (spool), 0);
    return seq;
}

//  Takes the next record and checks it is seq holding payload.
static void
s_expect_payload (zq_spool_t *spool, uint64_t seq, const char *payload)
{
    zq_spool_record_t record;
    assert_int_equal (zq_spool_next (spool, &record), 0);
    assert_int_equal (record.seq, seq);
    assert_int_equal (record.size, strlen (payload));
    assert_memory_equal (record.data, payload, record.size);
}

//  Flips the first octet of payload's copy in the spool's one segment
//  file, checking that the file holds it exactly once.
static void
s_damage_on_disk (const char *dir, const char *payload)
{
    char *names[2];
    assert_int_equal (tu_segments (dir, names, 2), 1);
    size_t size;
    uint8_t *bytes = tu_read_file (names[0], &size);
    size_t length = strlen (payload), found = 0, at = 0;
    for (size_t i = 0; i + length <= size; i++)
        if (memcmp (bytes + i, payload, length) == 0) {
            at = i;
            found++;
        }
    assert_int_equal (found, 1);
    uint8_t flipped = bytes[at] ^ 0xff;
    int fd = open (names[0], O_RDWR);
    assert_true (fd >= 0);
    assert_int_equal (pwrite (fd, &flipped, 1, (off_t)at), 1);
    close (fd);
    free (bytes);
    free (names[0]);
}

//  A record of the batch just written is handed out from memory (the
//  writer's buffer), whatever became of the file since; one read back
//  from the file is checked, and damaged, it is not served.
static void
test_damage_on_disk_after_write (void **state)
{
    (void)state;
    char *dir = tu_mkdtemp ();
    zq_spool_t *spool = s_open (dir, NULL);
    const char *first = "first record, a batch of its own";
    const char *second = "second record, the batch just written";
    const char *third = "third record, read back from the file";
    const char *fourth = "fourth record, read back and damaged";
    const char *fifth = "fifth record, the batch just written";
    uint64_t seq = s_append_batch (spool, first);
    assert_int_equal (s_append_batch (spool, second), seq + 1);
    //  Damaged before the cursor reads the file: its read buffer takes in
    //  the second record with the first, damaged.
    s_damage_on_disk (dir, second);
    s_expect_payload (spool, seq, first);
    s_expect_payload (spool, seq + 1, second);
    //  The fifth pushes the third and fourth out of the batch kept; they
    //  lie past what the read buffer took in, so they are read from the
    //  file again: the third intact, the fourth damaged.
    assert_int_equal (s_append_batch (spool, third), seq + 2);
    assert_int_equal (s_append_batch (spool, fourth), seq + 3);
    assert_int_equal (s_append_batch (spool, fifth), seq + 4);
    s_damage_on_disk (dir, fourth);
    s_expect_payload (spool, seq + 2, third);
    tu_expect_damaged (spool, 1);
    zq_spool_destroy (&spool);
    tu_rmtree (&dir);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_memory_fifo),
        cmocka_unit_test (test_return_order),
        cmocka_unit_test (test_reopen_keeps_unacked),
        cmocka_unit_test (test_reclaim),
        cmocka_unit_test (test_quota),
        cmocka_unit_test (test_memory_quota),
        cmocka_unit_test (test_messages),
        cmocka_unit_test (test_policies),
        cmocka_unit_test (test_written_but_unsynced_not_handed_out),
        cmocka_unit_test (test_arguments),
        cmocka_unit_test (test_concurrent_durable),
        cmocka_unit_test (test_concurrent_consume),
        cmocka_unit_test (test_handed_out_from_last_batch),
        cmocka_unit_test (test_acked_before_handed_out),
        cmocka_unit_test (test_cursor_segment_reclaimed),
        cmocka_unit_test (test_damage_on_disk_after_write),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
