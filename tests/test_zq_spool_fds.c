/*  =========================================================================
    test_zq_spool_fds - a spool and file descriptors: opened with too few
    left it fails with EMFILE and calls nothing damaged (with quarantine
    on, nothing is moved aside and every record is there once descriptors
    are back); its reader keeps one segment open however many segments it
    reads through, and reading returned records from old segments again
    opens none for good.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "spool_testutil.h"
#include <sys/resource.h>

#define RECORDS 300 //  of 1000 bytes, three per 4 KiB segment: ~100 segments

//  Descriptors this process has open.
static int
s_open_fds (void)
{
    DIR *dir = opendir ("/proc/self/fd");
    assert_non_null (dir);
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir (dir)))
        if (entry->d_name[0] != '.')
            count++;
    closedir (dir);
    return count - 1; //  the listing's own
}

//  How many more files could be opened now (at most max).
static int
s_free_fds (int max)
{
    int fds[64];
    int count = 0;
    while (count < max && (fds[count] = open ("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
        count++;
    for (int i = 0; i < count; i++)
        close (fds[i]);
    return count;
}

//  Lowers the soft RLIMIT_NOFILE until exactly wanted more files can be
//  opened (the limit bounds descriptor numbers, so it is found by trying).
static void
s_leave_free_fds (int wanted, const struct rlimit *saved)
{
    for (rlim_t soft = 0; soft <= saved->rlim_cur; soft++) {
        struct rlimit limit = {soft, saved->rlim_max};
        assert_int_equal (setrlimit (RLIMIT_NOFILE, &limit), 0);
        if (s_free_fds (wanted + 1) == wanted)
            return;
    }
    fail_msg ("no soft limit leaves %d descriptors free", wanted);
}

static void
s_append_committed (zq_spool_t *spool, int first, int count)
{
    char data[1000];
    for (int n = first; n < first + count; n++) {
        memset (data, 'a' + n % 26, sizeof data);
        snprintf (data, sizeof data, "%04d", n);
        assert_int_equal (zq_spool_append (spool, data, sizeof data, NULL), 0);
    }
    assert_int_equal (zq_spool_commit (spool), 0);
}

static bool
s_has_corrupt_file (const char *path)
{
    DIR *dir = opendir (path);
    assert_non_null (dir);
    bool found = false;
    struct dirent *entry;
    while ((entry = readdir (dir)))
        if (strstr (entry->d_name, ".corrupt"))
            found = true;
    closedir (dir);
    return found;
}

static void
test_open_short_of_descriptors (void **state)
{
    char *dir = tu_mkdtemp ();
    zq_spool_config_t config;
    zq_spool_config_init (&config);
    config.segment_bytes = 4096;
    config.quarantine = true; //  damage would be moved aside: none must be seen
    zq_spool_t *spool = zq_spool_new (dir, &config);
    assert_non_null (spool);
    for (int first = 0; first < 9; first += 3)
        s_append_committed (spool, first, 3);
    zq_spool_destroy (&spool);

    struct rlimit saved;
    assert_int_equal (getrlimit (RLIMIT_NOFILE, &saved), 0);
    for (int free_fds = 0; free_fds < 8; free_fds++) {
        s_leave_free_fds (free_fds, &saved);
        spool = zq_spool_new (dir, &config);
        int errnum = errno;
        assert_int_equal (setrlimit (RLIMIT_NOFILE, &saved), 0);
        if (!spool) {
            if (errnum != EMFILE)
                fail_msg ("open with %d descriptors free: %s, not EMFILE", free_fds,
                          zq_strerror (errnum));
        } else
            zq_spool_destroy (&spool);
        assert_false (s_has_corrupt_file (dir));
    }
    //  Every record is there.
    spool = zq_spool_new (dir, &config);
    assert_non_null (spool);
    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    assert_int_equal (stats.corrupt_records, 0);
    for (int n = 0; n < 9; n++) {
        zq_spool_record_t record;
        assert_int_equal (zq_spool_next (spool, &record), 0);
        char expected[5];
        snprintf (expected, sizeof expected, "%04d", n);
        assert_memory_equal (record.data, expected, 4);
    }
    zq_spool_destroy (&spool);
    tu_rmtree (&dir);
}

//  Reads count records (none acked), then reads every other one again
//  after returning it, checking that the spool never holds more than 4
//  descriptors (directory, lock, the segment written, the one read).
static void
s_read_through (zq_spool_t *spool, int outside, int count)
{
    uint64_t seqs[RECORDS];
    for (int n = 0; n < count; n++) {
        zq_spool_record_t record;
        assert_int_equal (zq_spool_next (spool, &record), 0);
        seqs[n] = record.seq;
        if (s_open_fds () - outside > 4)
            fail_msg ("the spool holds %d descriptors after %d records", s_open_fds () - outside,
                      n + 1);
    }
    for (int n = 0; n < count; n += 2)
        assert_int_equal (zq_spool_return (spool, seqs[n]), 0);
    for (int n = 0; n < count; n += 2) {
        zq_spool_record_t record;
        assert_int_equal (zq_spool_next (spool, &record), 0);
        assert_int_equal (record.seq, seqs[n]);
    }
    if (s_open_fds () - outside > 4)
        fail_msg ("the spool holds %d descriptors after returns", s_open_fds () - outside);
}

static void
test_reader_keeps_one_segment (void **state)
{
    char *dir = tu_mkdtemp ();
    zq_spool_config_t config;
    zq_spool_config_init (&config);
    config.segment_bytes = 4096;
    int outside = s_open_fds ();
    zq_spool_t *spool = zq_spool_new (dir, &config);
    assert_non_null (spool);
    for (int first = 0; first < RECORDS; first += 3)
        s_append_committed (spool, first, 3);
    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    assert_true (stats.segments > 50);
    //  Nothing acked: every segment stays.
    s_read_through (spool, outside, RECORDS);
    zq_spool_destroy (&spool);
    assert_int_equal (s_open_fds (), outside);
    //  And after a restart, which reads the newest segment through.
    spool = zq_spool_new (dir, &config);
    assert_non_null (spool);
    s_read_through (spool, outside, RECORDS);
    zq_spool_destroy (&spool);
    tu_rmtree (&dir);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_open_short_of_descriptors),
        cmocka_unit_test (test_reader_keeps_one_segment),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
