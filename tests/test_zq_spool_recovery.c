/*  =========================================================================
    test_zq_spool_recovery - what a spool directory recovers to after
    damage: a cut at every byte of the last records keeps exactly the
    complete records before it; a flipped bit anywhere in a record is
    reported (middle of the log) or cut (its last batch), never served;
    damaged sealed segments are reported, or quarantined when asked, and
    so are segments whose seqs overlap; a read that fails while recovery
    looks past damage cuts nothing.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "spool_testutil.h"

#include <dlfcn.h>
#include <xxhash.h>

#define KEY      7
#define MAX_SIZE 300

typedef struct {
    uint8_t *data;
    size_t size;
} s_file_t;

static s_file_t
s_read_file (const char *path)
{
    s_file_t file;
    file.data = tu_read_file (path, &file.size);
    return file;
}

static void
s_write_file (const char *path, const uint8_t *data, size_t size)
{
    FILE *handle = fopen (path, "wb");
    assert_non_null (handle);
    assert_int_equal (fwrite (data, 1, size, handle), size);
    fclose (handle);
}

//  Record boundaries of a segment (doc/SPOOL.md): the 64-byte header,
//  then records of 32 bytes + length (at byte 12). Stores the end offset
//  of each record and returns how many.
static size_t
s_record_ends (const s_file_t *file, size_t *ends, size_t max)
{
    size_t count = 0, offset = 64;
    while (offset + 32 <= file->size && count < max) {
        uint32_t length =
            (uint32_t)file->data[offset + 12] | (uint32_t)file->data[offset + 13] << 8 |
            (uint32_t)file->data[offset + 14] << 16 | (uint32_t)file->data[offset + 15] << 24;
        offset += 32 + length;
        assert_true (offset <= file->size);
        ends[count++] = offset;
    }
    return count;
}

//  Appends records count records, committing after each one (so each
//  is its own write batch).
static void
s_build (const char *dir, zq_spool_config_t *config, uint64_t count, uint64_t commit_every)
{
    zq_spool_t *spool = zq_spool_new (dir, config);
    assert_non_null (spool);
    uint8_t data[MAX_SIZE];
    for (uint64_t seq = 1; seq <= count; seq++) {
        size_t size = tu_payload (KEY, seq, tu_size (KEY, seq, MAX_SIZE), data);
        uint64_t got;
        assert_int_equal (zq_spool_append (spool, data, size, &got), 0);
        assert_int_equal (got, seq);
        if (seq % commit_every == 0)
            assert_int_equal (zq_spool_commit (spool), 0);
    }
    assert_int_equal (zq_spool_commit (spool), 0);
    zq_spool_destroy (&spool);
}

//  Reads everything: expects exactly seqs first..last but lost_first..
//  lost_last, intact and in order, then EAGAIN.
static void
s_expect_records_but (zq_spool_t *spool, uint64_t first, uint64_t last, uint64_t lost_first,
                      uint64_t lost_last)
{
    uint8_t data[MAX_SIZE];
    zq_spool_record_t record;
    for (uint64_t seq = first; seq <= last; seq++) {
        if (seq >= lost_first && seq <= lost_last)
            continue;
        assert_int_equal (zq_spool_next (spool, &record), 0);
        assert_int_equal (record.seq, seq);
        size_t size = tu_payload (KEY, seq, tu_size (KEY, seq, MAX_SIZE), data);
        assert_int_equal (record.size, size);
        assert_memory_equal (record.data, data, size);
    }
    assert_int_equal (zq_spool_next (spool, &record), -1);
    assert_int_equal (errno, EAGAIN);
}

//  Reads everything: expects exactly seqs first..last, intact, then
//  EAGAIN.
static void
s_expect_records (zq_spool_t *spool, uint64_t first, uint64_t last)
{
    s_expect_records_but (spool, first, last, 1, 0);
}

//  Builds a spool of records messages in dir, one write batch each, all in
//  one segment file: *path_p gets that file's name (the caller frees it),
//  *file its bytes, ends (room for 64) the end of its checkpoint, then of
//  each record (one per seq).
static void
s_build_one_segment (const char *dir, zq_spool_config_t *config, uint64_t records, char **path_p,
                     s_file_t *file, size_t *ends)
{
    s_build (dir, config, records, 1);
    char *names[4];
    assert_int_equal (tu_segments (dir, names, 4), 1);
    *path_p = names[0];
    *file = s_read_file (names[0]);
    assert_int_equal (s_record_ends (file, ends, 64), records + 1);
}

static void
test_truncate_every_byte (void **state)
{
    char *dir = tu_mkdtemp ();
    zq_spool_config_t config = tu_config (ZQ_SPOOL_FSYNC_ALWAYS, 1024 * 1024);
    enum { RECORDS = 12, LAST = 4 };
    char *path;
    s_file_t file;
    size_t ends[64];
    s_build_one_segment (dir, &config, RECORDS, &path, &file, ends);
    assert_int_equal (ends[RECORDS], file.size);

    for (size_t cut = ends[RECORDS - LAST]; cut <= file.size; cut++) {
        s_write_file (path, file.data, cut);
        uint64_t complete = 0;
        while (complete < RECORDS && ends[complete + 1] <= cut)
            complete++;
        zq_spool_t *spool = zq_spool_new (dir, &config);
        assert_non_null (spool);
        zq_spool_stats_t stats;
        zq_spool_stats (spool, &stats);
        assert_int_equal (stats.last_seq, complete);
        //  What is left of a torn record is cut, unless it is all zeros
        //  (its checksum's first bytes may be): those read as space
        //  prepared ahead, which the writer goes on over.
        size_t torn = cut - ends[complete];
        bool zeros = true;
        for (size_t at = ends[complete]; at < cut; at++)
            zeros = zeros && file.data[at] == 0;
        assert_int_equal (stats.tail_cut_bytes, zeros ? 0 : torn);
        assert_int_equal (stats.corrupt_records, 0);
        s_expect_records (spool, 1, complete);
        //  The log stays valid: an append after the cut survives a restart.
        if (cut % 7 == 0) {
            uint8_t data[MAX_SIZE];
            size_t size =
                tu_payload (KEY, complete + 1, tu_size (KEY, complete + 1, MAX_SIZE), data);
            assert_int_equal (zq_spool_append_durable (spool, data, size, NULL), 0);
            zq_spool_destroy (&spool);
            spool = zq_spool_new (dir, &config);
            assert_non_null (spool);
            s_expect_records (spool, 1, complete + 1);
        }
        zq_spool_destroy (&spool);
    }
    //  A cut inside the header or the checkpoint (synced before the file
    //  got its name) is damage, not a torn tail.
    size_t header_cuts[] = {0, 10, 63, 64, 70, ends[0] - 1};
    for (size_t i = 0; i < sizeof header_cuts / sizeof header_cuts[0]; i++) {
        s_write_file (path, file.data, header_cuts[i]);
        assert_null (zq_spool_new (dir, &config));
        assert_int_equal (errno, ZQ_ECORRUPT);
    }
    free (file.data);
    free (path);
    tu_rmtree (&dir);
}

//  Flips one bit and reopens: returns the spool or NULL (errno set).
static zq_spool_t *
s_flip_and_open (const char *dir, const char *path, const s_file_t *file, size_t bit,
                 zq_spool_config_t *config)
{
    file->data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    s_write_file (path, file->data, file->size);
    file->data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    return zq_spool_new (dir, config);
}

static void
test_bit_flips_in_tail (void **state)
{
    char *dir = tu_mkdtemp ();
    zq_spool_config_t config = tu_config (ZQ_SPOOL_FSYNC_ALWAYS, 1024 * 1024);
    enum { RECORDS = 10 };
    char *path;
    s_file_t file;
    size_t ends[64];
    s_build_one_segment (dir, &config, RECORDS, &path, &file, ends);
    uint64_t rng = 12345;

    for (uint64_t seq = 1; seq <= RECORDS; seq++) {
        size_t start = ends[seq - 1], end = ends[seq];
        //  Every bit of the record header, and a sample of payload bits.
        size_t bits[32 * 8 + 24];
        size_t count = 0;
        for (size_t bit = start * 8; bit < (start + 32) * 8; bit++)
            bits[count++] = bit;
        for (int i = 0; i < 24; i++) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            bits[count++] = (start + 32) * 8 + (size_t)((rng >> 33) % ((end - start - 32) * 8));
        }
        for (size_t i = 0; i < count; i++) {
            zq_spool_t *spool = s_flip_and_open (dir, path, &file, bits[i], &config);
            if (seq < RECORDS) {
                //  Later records were synced after this one: reported.
                assert_null (spool);
                assert_int_equal (errno, ZQ_ECORRUPT);
            } else {
                //  The last batch: indistinguishable from a torn write, cut.
                assert_non_null (spool);
                zq_spool_stats_t stats;
                zq_spool_stats (spool, &stats);
                assert_int_equal (stats.tail_cut_bytes, end - start);
                s_expect_records (spool, 1, RECORDS - 1);
                zq_spool_destroy (&spool);
            }
        }
    }
    //  The checkpoint and the segment header are synced before use.
    for (size_t bit = 0; bit < ends[0] * 8; bit += 5) {
        zq_spool_t *spool = s_flip_and_open (dir, path, &file, bit, &config);
        assert_null (spool);
        assert_true (errno == ZQ_ECORRUPT || errno == ZQ_EVERSION);
    }

    //  Quarantine: the damaged segment is copied aside, the records before
    //  the damage are kept, none after it is served.
    config.quarantine = true;
    size_t bit = (ends[4] + 40) * 8 + 3; //  in record 5's payload
    zq_spool_t *spool = s_flip_and_open (dir, path, &file, bit, &config);
    assert_non_null (spool);
    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    assert_int_equal (stats.corrupt_records, 1);
    s_expect_records (spool, 1, 4);
    zq_spool_destroy (&spool);
    char corrupt[1024];
    snprintf (corrupt, sizeof corrupt, "%s.corrupt", path);
    assert_int_equal (tu_file_size (corrupt), (off_t)file.size);
    unlink (corrupt);

    free (file.data);
    free (path);
    tu_rmtree (&dir);
}

//  The records of the sealed-segment tests: SEALED_RECORDS, 5 to a commit,
//  in segments of 4096 bytes (at least 4 of them). Writes the segments'
//  paths to names (64 at most) and returns how many.
enum { SEALED_RECORDS = 120 };

static size_t
s_build_sealed (const char *dir, zq_spool_config_t *config, char **names)
{
    s_build (dir, config, SEALED_RECORDS, 5);
    size_t segments = tu_segments (dir, names, 64);
    assert_true (segments >= 4);
    return segments;
}

static void
test_sealed_segment_damage (void **state)
{
    char *dir = tu_mkdtemp ();
    zq_spool_config_t config = tu_config (ZQ_SPOOL_FSYNC_ALWAYS, 4096);
    char *names[64];
    size_t segments = s_build_sealed (dir, &config, names);
    s_file_t file = s_read_file (names[1]);
    size_t ends[256];
    size_t records = s_record_ends (&file, ends, 256);
    assert_true (records >= 4);
    //  Seqs in segment 1 come after those of segment 0.
    zq_spool_t *spool = zq_spool_new (dir, &config);
    assert_non_null (spool);
    zq_spool_record_t record;
    uint64_t first_in_1 = 0;
    {
        s_file_t first = s_read_file (names[0]);
        size_t first_ends[256];
        //  checkpoint + messages + seal
        first_in_1 = s_record_ends (&first, first_ends, 256) - 2 + 1;
        free (first.data);
    }
    zq_spool_destroy (&spool);

    //  A bit flipped in a message of a sealed segment: open succeeds (a
    //  sealed segment is trusted by its seal), the record is reported
    //  when reached, and never served or skipped.
    size_t bit = (ends[1] + 33) * 8 + 1; //  payload of its second message
    spool = s_flip_and_open (dir, names[1], &file, bit, &config);
    assert_non_null (spool);
    for (uint64_t seq = 1; seq <= first_in_1; seq++) {
        assert_int_equal (zq_spool_next (spool, &record), 0);
        assert_int_equal (record.seq, seq);
    }
    //  Refused at each try, each refusal counted.
    for (uint64_t tries = 1; tries <= 3; tries++)
        tu_expect_damaged (spool, tries);
    zq_spool_destroy (&spool);

    //  A damaged seal or header: open reports it...
    size_t seal_bit = (file.size - 20) * 8 + 6;
    spool = s_flip_and_open (dir, names[1], &file, seal_bit, &config);
    assert_null (spool);
    assert_int_equal (errno, ZQ_ECORRUPT);
    spool = s_flip_and_open (dir, names[1], &file, 17 * 8, &config);
    assert_null (spool);
    assert_int_equal (errno, ZQ_ECORRUPT);
    //  ... or, with quarantine, moves the segment aside and goes on.
    config.quarantine = true;
    spool = s_flip_and_open (dir, names[1], &file, seal_bit, &config);
    assert_non_null (spool);
    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    assert_int_equal (stats.corrupt_records, 1);
    assert_int_equal (stats.segments, segments - 1);
    s_expect_records_but (spool, 1, SEALED_RECORDS, first_in_1, first_in_1 + records - 3);
    zq_spool_destroy (&spool);

    free (file.data);
    for (size_t i = 0; i < segments; i++)
        free (names[i]);
    tu_rmtree (&dir);
}

static void
test_acks_across_segments (void **state)
{
    char *dir = tu_mkdtemp ();
    zq_spool_config_t config = tu_config (ZQ_SPOOL_FSYNC_ALWAYS, 4096);
    enum { RECORDS = 300 };
    s_build (dir, &config, RECORDS, 10);
    for (int round = 0; round < 3; round++) {
        zq_spool_t *spool = zq_spool_new (dir, &config);
        assert_non_null (spool);
        zq_spool_record_t record;
        //  Round 0 acks seqs not divisible by 3; round 1 those divisible
        //  by 3 but not 9; round 2 checks what is left.
        uint64_t served = 0;
        while (zq_spool_next (spool, &record) == 0) {
            served++;
            if (round == 1)
                assert_int_equal (record.seq % 3, 0);
            else if (round == 2)
                assert_int_equal (record.seq % 9, 0);
            bool ack = round == 0 ? record.seq % 3 != 0 : round == 1 ? record.seq % 9 != 0 : false;
            if (ack)
                assert_int_equal (zq_spool_ack (spool, record.seq), 0);
            //  Acks are logged in several batches.
            if (round == 0 && served % 50 == 0)
                assert_int_equal (zq_spool_commit (spool), 0);
        }
        assert_int_equal (errno, EAGAIN);
        assert_int_equal (served, round == 0 ? RECORDS : round == 1 ? RECORDS / 3 : RECORDS / 9);
        assert_int_equal (zq_spool_commit (spool), 0);
        zq_spool_destroy (&spool);
    }
    tu_rmtree (&dir);
}

static void
test_leftovers (void **state)
{
    char *dir = tu_mkdtemp ();
    zq_spool_config_t config = tu_config (ZQ_SPOOL_FSYNC_ALWAYS, 4096);
    s_build (dir, &config, 50, 5);
    //  An unfinished segment (never renamed) is removed at open.
    char temp[1024];
    snprintf (temp, sizeof temp, "%s/00000000000000ff.zqs.tmp", dir);
    s_write_file (temp, (const uint8_t *)"ZQSPOOL", 7);
    zq_spool_t *spool = zq_spool_new (dir, &config);
    assert_non_null (spool);
    assert_int_equal (access (temp, F_OK), -1);
    s_expect_records (spool, 1, 50);
    zq_spool_destroy (&spool);
    tu_rmtree (&dir);
}

//  Records s_open_filled appends.
#define FILLED 20

//  Opens a spool in dir under fsync (*config gets its configuration) and
//  appends FILLED records, a commit after each (one small batch each),
//  all in one segment file: *name gets that file's name (the caller
//  frees it), *file its bytes while the spool is open. Returns the open
//  spool.
static zq_spool_t *
s_open_filled (const char *dir, zq_spool_fsync_t fsync, zq_spool_config_t *config, char **name,
               s_file_t *file)
{
    *config = tu_config (fsync, 8 * 1024 * 1024);
    zq_spool_t *spool = zq_spool_new (dir, config);
    assert_non_null (spool);
    for (int i = 0; i < FILLED; i++) {
        tu_fill (spool, KEY, 1, MAX_SIZE);
        assert_int_equal (zq_spool_commit (spool), 0);
    }
    char *found[2];
    assert_int_equal (tu_segments (dir, found, 2), 1);
    *name = found[0];
    *file = s_read_file (found[0]);
    return spool;
}

//  True when the bytes of file from offset on are all zero.
static bool
s_zeros_from (const s_file_t *file, size_t offset)
{
    for (size_t at = offset; at < file->size; at++)
        if (file->data[at])
            return false;
    return true;
}

//  The newest file of an open spool runs past its records, in zeros
//  written ahead for the next ones (so that a commit's fdatasync need
//  not write the inode). A copy of the files as a crash leaves them
//  opens with every record and no torn tail cut, and goes on over the
//  zeros; a clean close cuts them, leaving the file as long as its
//  records.
static void
test_prepared_zeros_are_the_end (void **state)
{
    (void)state;
    char *dir = tu_mkdtemp ();
    char *copy = tu_mkdtemp ();
    zq_spool_config_t config;
    char *name;
    s_file_t open_file;
    zq_spool_t *spool = s_open_filled (dir, ZQ_SPOOL_FSYNC_ALWAYS, &config, &name, &open_file);
    char copy_path[512];
    snprintf (copy_path, sizeof copy_path, "%s/%s", copy, strrchr (name, '/') + 1);
    s_write_file (copy_path, open_file.data, open_file.size);
    zq_spool_destroy (&spool);

    //  Closed: the records alone; open, the same bytes and then zeros.
    s_file_t closed_file = s_read_file (name);
    size_t ends[64];
    assert_int_equal (s_record_ends (&closed_file, ends, 64), FILLED + 1);
    assert_int_equal (ends[FILLED], closed_file.size);
    assert_true (open_file.size > closed_file.size);
    assert_memory_equal (open_file.data, closed_file.data, closed_file.size);
    assert_true (s_zeros_from (&open_file, closed_file.size));

    for (int round = 0; round < 2; round++) {
        spool = zq_spool_new (copy, &config);
        assert_non_null (spool);
        zq_spool_stats_t stats;
        zq_spool_stats (spool, &stats);
        assert_int_equal (stats.last_seq, FILLED + round);
        assert_int_equal (stats.tail_cut_bytes, 0);
        assert_int_equal (stats.corrupt_records, 0);
        s_expect_records (spool, 1, FILLED + round);
        if (round == 0) {
            tu_fill (spool, KEY, 1, MAX_SIZE);
            assert_int_equal (zq_spool_commit (spool), 0);
        }
        zq_spool_destroy (&spool);
    }
    s_file_t copy_file = s_read_file (copy_path);
    assert_int_equal (s_record_ends (&copy_file, ends, 64), FILLED + 2);
    assert_int_equal (ends[FILLED + 1], copy_file.size);
    free (open_file.data);
    free (closed_file.data);
    free (copy_file.data);
    free (name);
    tu_rmtree (&dir);
    tu_rmtree (&copy);
}

//  Under fsync none nothing is prepared: there is no fdatasync whose
//  inode write zeros could spare. The open spool's file ends with its
//  last record.
static void
test_no_zeros_without_fsync (void **state)
{
    (void)state;
    char *dir = tu_mkdtemp ();
    zq_spool_config_t config;
    char *name;
    s_file_t file;
    zq_spool_t *spool = s_open_filled (dir, ZQ_SPOOL_FSYNC_NONE, &config, &name, &file);
    size_t ends[64];
    assert_int_equal (s_record_ends (&file, ends, 64), FILLED + 1);
    assert_int_equal (ends[FILLED], file.size);
    zq_spool_destroy (&spool);
    free (file.data);
    free (name);
    tu_rmtree (&dir);
}

//  While s_unreadable is not negative, every pread of this program (the
//  library's included) whose range covers that offset reads as Linux does
//  over a sector it cannot read: the bytes before it (a short count), or
//  EIO if the read starts there.
static off_t s_unreadable = -1;

ssize_t
pread (int fd, void *data, size_t size, off_t offset)
{
    typedef ssize_t (*pread_fn) (int, void *, size_t, off_t);
    static pread_fn next;
    if (!next)
        next = (pread_fn)dlsym (RTLD_NEXT, "pread");
    if (s_unreadable >= 0 && offset <= s_unreadable && s_unreadable < offset + (off_t)size) {
        if (offset < s_unreadable)
            return next (fd, data, (size_t)(s_unreadable - offset), offset);
        errno = EIO;
        return -1;
    }
    return next (fd, data, size, offset);
}

//  The log lines of an open, as s_log_line keeps them: errors that say a
//  read past a bad record failed, errors that say recovery failed on a
//  segment (the open's failure), and lines that say a file was cut or
//  moved aside.
static char s_unread_line[1024];
static int s_unread_lines;
static char s_failed_line[1024]; //  the open's failure, naming the segment
static int s_failed_lines;
static int s_cut_lines;
static char s_overlap_line[1024]; //  two segments' seqs overlap
static int s_overlap_lines;
static char s_quarantine_line[1024]; //  the last that says where a segment went

static char s_no_id_line[512]; //  the last "no segment id left" line

static void
s_log_line (zq_log_level_t level, const char *line, void *arg)
{
    (void)arg;
    if (strstr (line, "quarantine: "))
        snprintf (s_quarantine_line, sizeof s_quarantine_line, "%s", line);
    if (level == ZQ_LOG_ERROR && strstr (line, ") overlap those of ")) {
        snprintf (s_overlap_line, sizeof s_overlap_line, "%s", line);
        s_overlap_lines++;
    }
    if (level == ZQ_LOG_ERROR && strstr (line, "cannot read past the bad record")) {
        snprintf (s_unread_line, sizeof s_unread_line, "%s", line);
        s_unread_lines++;
    }
    if (level == ZQ_LOG_ERROR && strstr (line, ".zqs: recovery failed (")) {
        snprintf (s_failed_line, sizeof s_failed_line, "%s", line);
        s_failed_lines++;
    }
    if (level == ZQ_LOG_ERROR && strstr (line, ": no segment id left after "))
        snprintf (s_no_id_line, sizeof s_no_id_line, "%s", line);
    if (strstr (line, " cut ") || strstr (line, "quarantine"))
        s_cut_lines++;
}

//  Writes file with bytes from..to set to value, then opens the spool
//  twice: while the byte at unreadable cannot be read (the open fails with
//  EIO, logs one error naming the file, the offset and the errno, and one
//  that recovery failed, and cuts nothing), and again once it can; returns
//  that spool.
static zq_spool_t *
s_open_past_unreadable (const char *dir, zq_spool_config_t *config, const char *path,
                        s_file_t *file, size_t from, size_t to, int value, off_t unreadable)
{
    memset (file->data + from, value, to - from);
    s_write_file (path, file->data, file->size);
    s_unread_lines = s_failed_lines = s_cut_lines = 0;
    zq_set_log_handler (s_log_line, NULL, ZQ_LOG_NOTICE);
    s_unreadable = unreadable;
    zq_spool_t *spool = zq_spool_new (dir, config);
    s_unreadable = -1;
    zq_set_log_handler (NULL, NULL, ZQ_LOG_ERROR);
    assert_null (spool);
    assert_int_equal (errno, EIO);
    assert_int_equal (tu_file_size (path), (off_t)file->size);
    assert_int_equal (s_unread_lines, 1);
    assert_int_equal (s_failed_lines, 1);
    assert_int_equal (s_cut_lines, 0);
    char offset[32];
    snprintf (offset, sizeof offset, "offset %zu ", from);
    assert_non_null (strstr (s_unread_line, path));
    assert_non_null (strstr (s_unread_line, offset));
    assert_non_null (strstr (s_unread_line, zq_strerror (EIO)));
    return zq_spool_new (dir, config);
}

//  A read that fails while recovery looks past a bad record in the newest
//  segment fails the open with EIO and cuts nothing: a cut would drop
//  the records synced after the bad one, and prepared zeros cannot be
//  told from them unread. Once the disk reads again, each opens as before.
static void
test_read_error_past_damage (void **state)
{
    (void)state;
    char *dir = tu_mkdtemp ();
    zq_spool_config_t config = tu_config (ZQ_SPOOL_FSYNC_ALWAYS, 4 * 1024 * 1024);
    enum { RECORDS = 4000, BAD = RECORDS / 16, DAMAGE = 320 * 1024 };
    s_build (dir, &config, RECORDS, 1);
    char *names[4];
    assert_int_equal (tu_segments (dir, names, 4), 1);
    s_file_t file = s_read_file (names[0]);
    static size_t ends[RECORDS + 1];
    assert_int_equal (s_record_ends (&file, ends, RECORDS + 1), RECORDS + 1);
    //  Recovery reads 256 KiB at a time from the checkpoint on
    //  (zqi_window_get): the unreadable byte lies past the first read and
    //  inside the damage, so only a look past the bad record reaches it.
    size_t bad = ends[BAD];
    off_t unreadable = (off_t)(bad + DAMAGE - 4096);
    assert_true (unreadable > 64 + 256 * 1024);
    assert_true (bad + DAMAGE < ends[RECORDS - 10]);

    //  Damage with synced records after it: once readable, reported.
    zq_spool_t *spool =
        s_open_past_unreadable (dir, &config, names[0], &file, bad, bad + DAMAGE, 0xA5, unreadable);
    assert_null (spool);
    assert_int_equal (errno, ZQ_ECORRUPT);
    assert_int_equal (tu_file_size (names[0]), (off_t)file.size);

    //  Zeros to the end: once readable, the log's end (prepared space).
    spool = s_open_past_unreadable (dir, &config, names[0], &file, bad, file.size, 0, unreadable);
    assert_non_null (spool);
    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    assert_int_equal (stats.tail_cut_bytes, 0);
    s_expect_records (spool, 1, BAD);
    zq_spool_destroy (&spool);

    free (file.data);
    free (names[0]);
    tu_rmtree (&dir);
}

//  A read that fails on a sealed segment's header or seal fails the open
//  with EIO, even with quarantine: nothing is moved aside or cut, and the
//  error names the file. A bad sector is not damage the spool may drop a
//  segment for; once the disk reads again, every record is there.
static void
test_read_error_in_sealed_segment (void **state)
{
    (void)state;
    char *dir = tu_mkdtemp ();
    zq_spool_config_t config = tu_config (ZQ_SPOOL_FSYNC_ALWAYS, 4096);
    config.quarantine = true;
    char *names[64];
    size_t segments = s_build_sealed (dir, &config, names);
    off_t size = tu_file_size (names[1]);
    //  Inside segment 1's seal, then inside every segment's header.
    off_t unreadable[] = {size - 64 + 8, 17};
    for (int round = 0; round < 2; round++) {
        s_unread_lines = s_failed_lines = s_cut_lines = 0;
        zq_set_log_handler (s_log_line, NULL, ZQ_LOG_NOTICE);
        s_unreadable = unreadable[round];
        zq_spool_t *spool = zq_spool_new (dir, &config);
        s_unreadable = -1;
        zq_set_log_handler (NULL, NULL, ZQ_LOG_ERROR);
        assert_null (spool);
        assert_int_equal (errno, EIO);
        assert_int_equal (s_failed_lines, 1);
        assert_int_equal (s_unread_lines + s_cut_lines, 0);
        //  It names a segment whose seal or header covers that byte.
        bool named = false;
        for (size_t i = 0; i < segments; i++)
            if (strstr (s_failed_line, names[i]) && (round == 1 || tu_file_size (names[i]) == size))
                named = true;
        assert_true (named);
        assert_non_null (strstr (s_failed_line, zq_strerror (EIO)));
        char *after[64];
        assert_int_equal (tu_segments (dir, after, 64), segments);
        for (size_t i = 0; i < segments; i++) {
            char corrupt[1100];
            snprintf (corrupt, sizeof corrupt, "%s.corrupt", after[i]);
            assert_int_equal (access (corrupt, F_OK), -1);
            free (after[i]);
        }
    }
    zq_spool_t *spool = zq_spool_new (dir, &config);
    assert_non_null (spool);
    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    assert_int_equal (stats.corrupt_records, 0);
    assert_int_equal (stats.segments, segments);
    s_expect_records (spool, 1, SEALED_RECORDS);
    zq_spool_destroy (&spool);
    for (size_t i = 0; i < segments; i++)
        free (names[i]);
    tu_rmtree (&dir);
}

//  Writes the segment file at from to the path to, as the segment of
//  to's name (its header's id and checksum rewritten): a sound segment
//  whose seqs are from's.
static void
s_copy_segment_as (const char *from, const char *to)
{
    s_file_t file = s_read_file (from);
    const char *name = strrchr (to, '/') + 1;
    uint64_t id = strtoull (name, NULL, 16);
    for (int i = 0; i < 8; i++)
        file.data[16 + i] = (uint8_t)(id >> (8 * i));
    uint64_t check = XXH3_64bits (file.data, 56);
    for (int i = 0; i < 8; i++)
        file.data[56 + i] = (uint8_t)(check >> (8 * i));
    s_write_file (to, file.data, file.size);
    free (file.data);
}

//  The first seq a segment file's header gives.
static uint64_t
s_first_seq (const char *path)
{
    s_file_t file = s_read_file (path);
    uint64_t seq = 0;
    for (int i = 7; i >= 0; i--)
        seq = seq << 8 | file.data[24 + i];
    free (file.data);
    return seq;
}

//  Asserts that the overlap line names the file at later, whose seqs go
//  from first, and the file at earlier, whose go to last.
static void
s_assert_overlap_line (const char *later, uint64_t first, const char *earlier, uint64_t last)
{
    assert_int_equal (s_overlap_lines, 1);
    char seqs[64];
    snprintf (seqs, sizeof seqs, "(from %" PRIu64 ")", first);
    assert_non_null (strstr (s_overlap_line, seqs));
    snprintf (seqs, sizeof seqs, "(to %" PRIu64 ")", last);
    assert_non_null (strstr (s_overlap_line, seqs));
    assert_non_null (strstr (s_overlap_line, strrchr (later, '/') + 1));
    assert_non_null (strstr (s_overlap_line, strrchr (earlier, '/') + 1));
}

//  Opens dir with quarantine as asked, capturing the overlap lines.
static zq_spool_t *
s_open_logged (const char *dir, zq_spool_config_t *config, bool quarantine)
{
    s_overlap_lines = 0;
    config->quarantine = quarantine;
    zq_set_log_handler (s_log_line, NULL, ZQ_LOG_NOTICE);
    zq_spool_t *spool = zq_spool_new (dir, config);
    int saved = errno;
    zq_set_log_handler (NULL, NULL, ZQ_LOG_ERROR);
    errno = saved;
    return spool;
}

//  A segment whose seqs overlap those of the segment before it (a copy
//  of another under a later name, as a restore or a misplaced file
//  makes) fails the open with ZQ_ECORRUPT and a line naming both files;
//  with quarantine it is moved aside and no message is served twice.
//  Sealed or newest alike.
static void
test_overlapping_segments (void **state)
{
    (void)state;
    char *dir = tu_mkdtemp ();
    zq_spool_config_t config = tu_config (ZQ_SPOOL_FSYNC_ALWAYS, 4096);
    char *names[64];
    size_t segments = s_build_sealed (dir, &config, names);
    assert_true (segments >= 5);
    uint64_t first_in_1 = s_first_seq (names[1]);
    uint64_t first_in_3 = s_first_seq (names[3]);
    uint64_t first_in_4 = s_first_seq (names[4]);

    //  A sealed one: segment 1's records again, as segment 3 (whose own
    //  records are lost with it).
    s_file_t third = s_read_file (names[3]);
    s_copy_segment_as (names[1], names[3]);
    zq_spool_t *spool = s_open_logged (dir, &config, false);
    assert_null (spool);
    assert_int_equal (errno, ZQ_ECORRUPT);
    s_assert_overlap_line (names[3], first_in_1, names[2], first_in_3 - 1);
    spool = s_open_logged (dir, &config, true);
    assert_non_null (spool);
    assert_int_equal (s_overlap_lines, 1);
    char corrupt[1100];
    snprintf (corrupt, sizeof corrupt, "%s.corrupt", names[3]);
    assert_int_equal (access (corrupt, F_OK), 0);
    s_expect_records_but (spool, 1, SEALED_RECORDS, first_in_3, first_in_4 - 1);
    zq_spool_destroy (&spool);
    unlink (corrupt);
    s_write_file (names[3], third.data, third.size);
    free (third.data);

    //  The newest (not sealed): segment 1's records again in its place.
    const char *newest = names[segments - 1];
    uint64_t first_in_newest = s_first_seq (newest);
    s_copy_segment_as (names[1], newest);
    spool = s_open_logged (dir, &config, false);
    assert_null (spool);
    assert_int_equal (errno, ZQ_ECORRUPT);
    s_assert_overlap_line (newest, first_in_1, names[segments - 2], first_in_newest - 1);
    spool = s_open_logged (dir, &config, true);
    assert_non_null (spool);
    assert_int_equal (s_overlap_lines, 1);
    snprintf (corrupt, sizeof corrupt, "%s.corrupt", newest);
    assert_int_equal (access (corrupt, F_OK), 0);
    s_expect_records_but (spool, 1, SEALED_RECORDS, first_in_newest, SEALED_RECORDS);
    zq_spool_destroy (&spool);

    for (size_t i = 0; i < segments; i++)
        free (names[i]);
    tu_rmtree (&dir);
}

//  Writes "earlier" at path + suffix, as a copy set aside before would
//  be.
static void
s_earlier_copy (const char *path, const char *suffix)
{
    char aside[1100];
    snprintf (aside, sizeof aside, "%s%s", path, suffix);
    s_write_file (aside, (const uint8_t *)"earlier", 7);
}

//  Asserts that path + ".corrupt" still holds "earlier", that path +
//  suffix holds size bytes, and that the line saying where the segment
//  went names it.
static void
s_assert_aside (const char *path, const char *suffix, size_t size)
{
    char aside[1100];
    snprintf (aside, sizeof aside, "%s.corrupt", path);
    s_file_t earlier = s_read_file (aside);
    assert_int_equal (earlier.size, 7);
    assert_memory_equal (earlier.data, "earlier", 7);
    free (earlier.data);
    snprintf (aside, sizeof aside, "%s%s", path, suffix);
    assert_int_equal (tu_file_size (aside), (off_t)size);
    assert_non_null (strstr (s_quarantine_line, aside));
}

//  Builds a spool in dir of one segment, 400 records each synced, and
//  damages records 101 to 110 (synced records follow). Writes the
//  segment's path to names[0] and its damaged bytes to *file; returns
//  the offset of the damage.
static size_t
s_build_damaged_newest (const char *dir, zq_spool_config_t *config, char **names, s_file_t *file)
{
    enum { RECORDS = 400 };
    s_build (dir, config, RECORDS, 1);
    assert_int_equal (tu_segments (dir, names, 64), 1);
    *file = s_read_file (names[0]);
    size_t ends[RECORDS + 1];
    assert_int_equal (s_record_ends (file, ends, RECORDS + 1), RECORDS + 1);
    memset (file->data + ends[100], 0xA5, ends[110] - ends[100]);
    s_write_file (names[0], file->data, file->size);
    return ends[100];
}

//  Builds sealed segments in dir (s_build_sealed: their paths in names,
//  their count returned) and gives in *file the bytes of the second with
//  a bit of its seal flipped, for the caller to write over it.
static size_t
s_build_bad_seal (const char *dir, zq_spool_config_t *config, char **names, s_file_t *file)
{
    size_t segments = s_build_sealed (dir, config, names);
    *file = s_read_file (names[1]);
    size_t seal_bit = (file->size - 20) * 8 + 6;
    file->data[seal_bit / 8] ^= (uint8_t)(1u << (seal_bit % 8));
    return segments;
}

//  Quarantine never replaces a copy set aside before (one put back under
//  its name, say): a sealed segment moved aside whole,
//  twice, goes to NAME.corrupt.1 then NAME.corrupt.2; the newest, copied
//  aside before its cut, to NAME.corrupt.1; NAME.corrupt stays as it was.
static void
test_quarantine_keeps_earlier_copies (void **state)
{
    (void)state;
    char *dir = tu_mkdtemp ();
    zq_spool_config_t config = tu_config (ZQ_SPOOL_FSYNC_ALWAYS, 4096);
    char *names[64];
    s_file_t file;
    size_t segments = s_build_bad_seal (dir, &config, names, &file);
    s_earlier_copy (names[1], ".corrupt");
    for (int round = 1; round <= 2; round++) {
        s_write_file (names[1], file.data, file.size);
        zq_spool_t *spool = s_open_logged (dir, &config, true);
        assert_non_null (spool);
        zq_spool_destroy (&spool);
        assert_int_equal (access (names[1], F_OK), -1);
        s_assert_aside (names[1], round == 1 ? ".corrupt.1" : ".corrupt.2", file.size);
    }
    free (file.data);
    for (size_t i = 0; i < segments; i++)
        free (names[i]);
    tu_rmtree (&dir);

    //  The newest, damaged in the middle of its records.
    dir = tu_mkdtemp ();
    config = tu_config (ZQ_SPOOL_FSYNC_ALWAYS, 4 * 1024 * 1024);
    s_build_damaged_newest (dir, &config, names, &file);
    s_earlier_copy (names[0], ".corrupt");
    zq_spool_t *spool = s_open_logged (dir, &config, true);
    assert_non_null (spool);
    zq_spool_destroy (&spool);
    s_assert_aside (names[0], ".corrupt.1", file.size);
    free (file.data);
    free (names[0]);
    tu_rmtree (&dir);
}

//  Takes every name a copy of path may be set aside under: NAME.corrupt
//  and NAME.corrupt.1 to .999.
static void
s_take_aside_names (const char *path)
{
    s_earlier_copy (path, ".corrupt");
    for (int copy = 1; copy <= 999; copy++) {
        char suffix[24];
        snprintf (suffix, sizeof suffix, ".corrupt.%d", copy);
        s_earlier_copy (path, suffix);
    }
}

//  With every aside name taken, quarantine replaces none: a sealed
//  segment that cannot be moved aside fails the open (EEXIST) and stays
//  where it is; the newest, whose copy cannot be made, is still cut. The
//  line says so each time.
static void
test_quarantine_names_all_taken (void **state)
{
    (void)state;
    char *dir = tu_mkdtemp ();
    zq_spool_config_t config = tu_config (ZQ_SPOOL_FSYNC_ALWAYS, 4096);
    char *names[64];
    s_file_t file;
    size_t segments = s_build_bad_seal (dir, &config, names, &file);
    s_write_file (names[1], file.data, file.size);
    s_take_aside_names (names[1]);
    zq_spool_t *spool = s_open_logged (dir, &config, true);
    assert_null (spool);
    assert_int_equal (errno, EEXIST);
    assert_int_equal (tu_file_size (names[1]), (off_t)file.size);
    assert_non_null (strstr (s_quarantine_line, strrchr (names[1], '/') + 1));
    char said[128];
    snprintf (said, sizeof said, "could not be moved aside (%s)", zq_strerror (EEXIST));
    assert_non_null (strstr (s_quarantine_line, said));
    free (file.data);
    for (size_t i = 0; i < segments; i++)
        free (names[i]);
    tu_rmtree (&dir);

    //  The newest, damaged in the middle of its records.
    dir = tu_mkdtemp ();
    config = tu_config (ZQ_SPOOL_FSYNC_ALWAYS, 4 * 1024 * 1024);
    size_t damage = s_build_damaged_newest (dir, &config, names, &file);
    s_take_aside_names (names[0]);
    spool = s_open_logged (dir, &config, true);
    assert_non_null (spool);
    zq_spool_destroy (&spool);
    assert_true (tu_file_size (names[0]) <= (off_t)damage);
    snprintf (said, sizeof said, "could not be copied aside (%s)", zq_strerror (EEXIST));
    assert_non_null (strstr (s_quarantine_line, said));
    free (file.data);
    free (names[0]);
    tu_rmtree (&dir);
}

//  After quarantine, no segment id comes again: with the newest segment
//  (a bad magic) moved aside whole, the next segment is made under the
//  id past it, in the open that moved it or in a later one (which counts
//  the ids of the copies set aside), and the copy stays as it was.
static void
test_quarantined_id_not_reused (void **state)
{
    (void)state;
    for (int reopen = 0; reopen <= 1; reopen++) {
        char *dir = tu_mkdtemp ();
        zq_spool_config_t config = tu_config (ZQ_SPOOL_FSYNC_ALWAYS, 4096);
        char *names[64];
        size_t segments = s_build_sealed (dir, &config, names);
        char *newest = names[segments - 1];
        s_file_t file = s_read_file (newest);
        file.data[0] ^= 0x01;
        s_write_file (newest, file.data, file.size);
        zq_spool_t *spool = s_open_logged (dir, &config, true);
        assert_non_null (spool);
        if (reopen) {
            zq_spool_destroy (&spool);
            spool = zq_spool_new (dir, &config);
            assert_non_null (spool);
        }
        tu_fill (spool, KEY, 30, MAX_SIZE);
        assert_int_equal (zq_spool_commit (spool), 0);
        zq_spool_destroy (&spool);
        assert_int_equal (access (newest, F_OK), -1);
        char aside[1100], next[1100];
        snprintf (aside, sizeof aside, "%s.corrupt", newest);
        assert_int_equal (tu_file_size (aside), (off_t)file.size);
        uint64_t newest_id = strtoull (strrchr (newest, '/') + 1, NULL, 16);
        snprintf (next, sizeof next, "%s/%016" PRIx64 ".zqs", dir, newest_id + 1);
        assert_int_equal (access (next, F_OK), 0);
        free (file.data);
        for (size_t i = 0; i < segments; i++)
            free (names[i]);
        tu_rmtree (&dir);
    }
}

//  Segment ids do not wrap: with a copy set aside under the last id
//  (ffffffffffffffff.zqs.corrupt), the spool opens and reads, but the
//  commit that needs a new segment fails with EOVERFLOW and an error line
//  naming the directory, and no segment (id 1 first) is written over.
static void
test_segment_ids_do_not_wrap (void **state)
{
    (void)state;
    char *dir = tu_mkdtemp ();
    zq_spool_config_t config = tu_config (ZQ_SPOOL_FSYNC_ALWAYS, 4096);
    char *names[64];
    size_t segments = s_build_sealed (dir, &config, names);
    s_file_t before[64];
    for (size_t i = 0; i < segments - 1; i++)
        before[i] = s_read_file (names[i]);
    char last[1100];
    snprintf (last, sizeof last, "%s/ffffffffffffffff.zqs.corrupt", dir);
    s_write_file (last, (const uint8_t *)"earlier", 7);
    zq_spool_t *spool = zq_spool_new (dir, &config);
    assert_non_null (spool);
    s_expect_records (spool, 1, SEALED_RECORDS);
    int rc = 0;
    s_no_id_line[0] = '\0';
    zq_set_log_handler (s_log_line, NULL, ZQ_LOG_NOTICE);
    for (int record = 0; record < 1000 && rc == 0; record++) {
        uint8_t data[MAX_SIZE];
        uint64_t seq = zq_spool_last_seq (spool) + 1;
        size_t size = tu_payload (KEY, seq, tu_size (KEY, seq, MAX_SIZE), data);
        rc = zq_spool_append (spool, data, size, NULL);
        if (rc == 0)
            rc = zq_spool_commit (spool);
    }
    int saved = errno;
    zq_set_log_handler (NULL, NULL, ZQ_LOG_ERROR);
    assert_int_equal (rc, -1);
    assert_int_equal (saved, EOVERFLOW);
    assert_non_null (strstr (s_no_id_line, dir));
    assert_non_null (strstr (s_no_id_line, "no segment id left after ffffffffffffffff.zqs"));
    zq_spool_destroy (&spool);
    for (size_t i = 0; i < segments - 1; i++) {
        s_file_t after = s_read_file (names[i]);
        assert_int_equal (after.size, before[i].size);
        assert_memory_equal (after.data, before[i].data, after.size);
        free (after.data);
        free (before[i].data);
    }
    for (size_t i = 0; i < segments; i++)
        free (names[i]);
    tu_rmtree (&dir);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_truncate_every_byte),
        cmocka_unit_test (test_bit_flips_in_tail),
        cmocka_unit_test (test_sealed_segment_damage),
        cmocka_unit_test (test_acks_across_segments),
        cmocka_unit_test (test_leftovers),
        cmocka_unit_test (test_prepared_zeros_are_the_end),
        cmocka_unit_test (test_no_zeros_without_fsync),
        cmocka_unit_test (test_read_error_past_damage),
        cmocka_unit_test (test_read_error_in_sealed_segment),
        cmocka_unit_test (test_overlapping_segments),
        cmocka_unit_test (test_quarantine_keeps_earlier_copies),
        cmocka_unit_test (test_quarantine_names_all_taken),
        cmocka_unit_test (test_quarantined_id_not_reused),
        cmocka_unit_test (test_segment_ids_do_not_wrap),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
