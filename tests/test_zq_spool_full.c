/*  =========================================================================
    test_zq_spool_full - a real full disk: a 1 MiB tmpfs mounted for the
    test. Appends are refused with ZQ_EFULL (never confirmed), the log
    stays valid and reopens, and appends resume once space frees (by
    acks that reclaim segments, or by removing another file). Mounting
    needs root (CI runs as root); without it the test fails and says why.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "spool_testutil.h"
#include <sys/mount.h>

#define KEY         99
#define RECORD_SIZE 1000
#define MAX_SEQ     10000

typedef struct {
    char *mount_dir;
    char spool_dir[512];
} s_fixture_t;

static int
s_setup (void **state)
{
    s_fixture_t *fixture = calloc (1, sizeof (s_fixture_t));
    char path[] = "/tmp/zq-full-XXXXXX";
    if (!mkdtemp (path))
        fail_msg ("mkdtemp: %s", strerror (errno));
    if (mount ("tmpfs", path, "tmpfs", 0, "size=1m")) {
        int saved = errno;
        rmdir (path);
        fail_msg ("cannot mount a 1 MiB tmpfs on %s: %s. This test needs root (or "
                  "CAP_SYS_ADMIN) to make a small filesystem it can fill; CI runs as root.",
                  path, strerror (saved));
    }
    fixture->mount_dir = strdup (path);
    snprintf (fixture->spool_dir, sizeof fixture->spool_dir, "%s/spool", path);
    *state = fixture;
    return 0;
}

static int
s_teardown (void **state)
{
    s_fixture_t *fixture = (s_fixture_t *)*state;
    if (fixture) {
        umount2 (fixture->mount_dir, MNT_DETACH);
        rmdir (fixture->mount_dir);
        free (fixture->mount_dir);
        free (fixture);
    }
    return 0;
}

static zq_spool_config_t
s_config (void)
{
    zq_spool_config_t config = tu_config (ZQ_SPOOL_FSYNC_ALWAYS, 64 * 1024);
    config.batch_bytes = 8192;
    return config;
}

//  Appends with append_durable until refused; marks stored seqs.
static uint64_t
s_fill_until_full (zq_spool_t *spool, uint8_t *stored)
{
    uint8_t data[RECORD_SIZE];
    uint64_t count = 0;
    for (int i = 0; i < MAX_SEQ; i++) {
        uint64_t seq = 0;
        uint64_t next = zq_spool_last_seq (spool) + 1;
        tu_payload (KEY, next, RECORD_SIZE, data);
        if (zq_spool_append_durable (spool, data, RECORD_SIZE, &seq)) {
            assert_int_equal (errno, ZQ_EFULL);
            return count;
        }
        assert_int_equal (seq, next);
        assert_true (seq < MAX_SEQ);
        stored[seq] = 1;
        count++;
    }
    fail_msg ("the disk never filled");
    return count;
}

//  Reopens and checks that exactly the stored seqs are served, intact.
static zq_spool_t *
s_reopen_and_check (const char *dir, const uint8_t *stored, bool ack)
{
    zq_spool_config_t config = s_config ();
    zq_spool_t *spool = zq_spool_new (dir, &config);
    assert_non_null (spool);
    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    assert_int_equal (stats.corrupt_records, 0);
    uint8_t *seen = calloc (MAX_SEQ, 1);
    uint8_t data[RECORD_SIZE];
    zq_spool_record_t record;
    while (zq_spool_next (spool, &record) == 0) {
        assert_true (record.seq < MAX_SEQ);
        if (!stored[record.seq])
            fail_msg ("seq %" PRIu64 " was refused but is served", record.seq);
        assert_int_equal (record.size, RECORD_SIZE);
        tu_payload (KEY, record.seq, RECORD_SIZE, data);
        assert_memory_equal (record.data, data, RECORD_SIZE);
        seen[record.seq] = 1;
        if (ack)
            assert_int_equal (zq_spool_ack (spool, record.seq), 0);
    }
    assert_int_equal (errno, EAGAIN);
    for (uint64_t seq = 1; seq < MAX_SEQ; seq++)
        if (stored[seq] && !seen[seq])
            fail_msg ("stored seq %" PRIu64 " lost", seq);
    free (seen);
    return spool;
}

static void
test_full_then_acks_free_space (void **state)
{
    s_fixture_t *fixture = (s_fixture_t *)*state;
    zq_spool_config_t config = s_config ();
    zq_spool_t *spool = zq_spool_new (fixture->spool_dir, &config);
    assert_non_null (spool);
    uint8_t *stored = calloc (MAX_SEQ, 1);
    uint64_t count = s_fill_until_full (spool, stored);
    assert_true (count > 300);
    //  Still refused, still usable: no failure state.
    uint8_t data[RECORD_SIZE] = {0};
    assert_int_equal (zq_spool_append_durable (spool, data, RECORD_SIZE, NULL), -1);
    assert_int_equal (errno, ZQ_EFULL);
    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    assert_true (stats.refused >= 2);
    assert_int_equal (stats.durable_seq, zq_spool_last_seq (spool));
    zq_spool_destroy (&spool);

    //  The full log reopens; acks reclaim segments and commit.
    spool = s_reopen_and_check (fixture->spool_dir, stored, true);
    assert_int_equal (zq_spool_commit (spool), 0);
    memset (stored, 0, MAX_SEQ);
    //  Appends resume.
    for (int i = 0; i < 100; i++) {
        uint64_t seq = zq_spool_last_seq (spool) + 1;
        tu_payload (KEY, seq, RECORD_SIZE, data);
        assert_int_equal (zq_spool_append_durable (spool, data, RECORD_SIZE, &seq), 0);
        stored[seq] = 1;
    }
    zq_spool_destroy (&spool);
    spool = s_reopen_and_check (fixture->spool_dir, stored, false);
    zq_spool_destroy (&spool);
    free (stored);
}

static void
test_full_then_other_file_removed (void **state)
{
    s_fixture_t *fixture = (s_fixture_t *)*state;
    zq_spool_config_t config = s_config ();
    zq_spool_t *spool = zq_spool_new (fixture->spool_dir, &config);
    assert_non_null (spool);
    uint8_t *stored = calloc (MAX_SEQ, 1);
    uint8_t data[RECORD_SIZE];
    for (int i = 0; i < 100; i++) {
        uint64_t seq = zq_spool_last_seq (spool) + 1;
        tu_payload (KEY, seq, RECORD_SIZE, data);
        assert_int_equal (zq_spool_append_durable (spool, data, RECORD_SIZE, &seq), 0);
        stored[seq] = 1;
    }
    //  Another file takes the rest of the disk.
    char filler[600];
    snprintf (filler, sizeof filler, "%s/filler", fixture->mount_dir);
    int fd = open (filler, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true (fd >= 0);
    uint8_t block[4096] = {0};
    for (int i = 0; i < 1024; i++)
        if (write (fd, block, sizeof block) < (ssize_t)sizeof block)
            break;
    close (fd);

    //  Commits of several records in one batch are refused as a whole,
    //  and the seqs refused are never served.
    uint64_t first = 0;
    const void *parts[4] = {data, data, data, data};
    size_t sizes[4] = {RECORD_SIZE, RECORD_SIZE, RECORD_SIZE, RECORD_SIZE};
    int refusals = 0;
    for (int i = 0; i < 50; i++) {
        assert_int_equal (zq_spool_appendv (spool, parts, sizes, 4, &first), 0);
        if (zq_spool_commit (spool)) {
            assert_int_equal (errno, ZQ_EFULL);
            refusals++;
            for (uint64_t seq = first; seq < first + 4; seq++) {
                assert_int_equal (zq_spool_wait (spool, seq), -1);
                assert_int_equal (errno, ZQ_EFULL);
            }
        } else {
            //  The payloads were all the same here: not checked on reopen.
            for (uint64_t seq = first; seq < first + 4; seq++)
                stored[seq] = 2;
        }
    }
    assert_true (refusals > 0);

    //  Space frees: appends resume without a reopen.
    assert_int_equal (unlink (filler), 0);
    for (int i = 0; i < 50; i++) {
        uint64_t seq = zq_spool_last_seq (spool) + 1;
        tu_payload (KEY, seq, RECORD_SIZE, data);
        assert_int_equal (zq_spool_append_durable (spool, data, RECORD_SIZE, &seq), 0);
        stored[seq] = 1;
    }
    zq_spool_destroy (&spool);

    spool = zq_spool_new (fixture->spool_dir, &config);
    assert_non_null (spool);
    zq_spool_record_t record;
    uint8_t *seen = calloc (MAX_SEQ, 1);
    while (zq_spool_next (spool, &record) == 0) {
        assert_true (record.seq < MAX_SEQ);
        if (!stored[record.seq])
            fail_msg ("seq %" PRIu64 " was refused but is served", record.seq);
        if (stored[record.seq] == 1) {
            tu_payload (KEY, record.seq, RECORD_SIZE, data);
            assert_memory_equal (record.data, data, RECORD_SIZE);
        }
        seen[record.seq] = 1;
    }
    for (uint64_t seq = 1; seq < MAX_SEQ; seq++)
        if (stored[seq] && !seen[seq])
            fail_msg ("stored seq %" PRIu64 " lost", seq);
    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    assert_int_equal (stats.corrupt_records, 0);
    zq_spool_destroy (&spool);
    free (seen);
    free (stored);
}

//  A full batch written during an append is refused: the append that
//  wrote it fails, and so are the records appended before it in that
//  batch, which no call reported. The commit after space came back says
//  0 (its own writes worked); zq_spool_refusal over the records appended
//  finds the refusal, zq_spool_wait tells which, and a reopen agrees.
static void
test_a_refusal_before_the_commit_is_found (void **state)
{
    s_fixture_t *fixture = (s_fixture_t *)*state;
    zq_spool_config_t config = s_config ();
    zq_spool_t *spool = zq_spool_new (fixture->spool_dir, &config);
    assert_non_null (spool);
    char filler[600];
    snprintf (filler, sizeof filler, "%s/filler", fixture->mount_dir);
    int fd = open (filler, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true (fd >= 0);
    uint8_t block[4096] = {0};
    for (int i = 0; i < 160; i++)
        assert_int_equal (write (fd, block, sizeof block), (ssize_t)sizeof block);
    close (fd);

    uint8_t data[RECORD_SIZE];
    uint64_t first = 0, last = 0;
    for (int i = 0; i < MAX_SEQ; i++) {
        uint64_t seq = zq_spool_last_seq (spool) + 1;
        tu_payload (KEY, seq, RECORD_SIZE, data);
        if (zq_spool_append (spool, data, RECORD_SIZE, &seq)) {
            assert_int_equal (errno, ZQ_EFULL);
            break;
        }
        first = first ? first : seq;
        last = seq;
    }
    assert_true (last > first);
    assert_int_equal (unlink (filler), 0);
    assert_int_equal (zq_spool_commit (spool), 0);
    assert_int_equal (zq_spool_refusal (spool, first, last), ZQ_EFULL);
    uint8_t *stored = calloc (MAX_SEQ, 1);
    uint64_t refused = 0;
    for (uint64_t seq = first; seq <= last; seq++) {
        if (zq_spool_wait (spool, seq) == 0)
            stored[seq] = 1;
        else {
            assert_int_equal (errno, ZQ_EFULL);
            refused++;
        }
    }
    assert_true (refused > 0 && refused < last - first + 1);
    //  A range of stored records only is clear.
    uint64_t clear = first;
    while (!stored[clear])
        clear++;
    assert_int_equal (zq_spool_refusal (spool, clear, clear), 0);
    assert_int_equal (zq_spool_refusal (spool, 2, 1), EINVAL);
    zq_spool_destroy (&spool);
    spool = s_reopen_and_check (fixture->spool_dir, stored, false);
    zq_spool_destroy (&spool);
    free (stored);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (test_full_then_acks_free_space, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_full_then_other_file_removed, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_a_refusal_before_the_commit_is_found, s_setup,
                                         s_teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
