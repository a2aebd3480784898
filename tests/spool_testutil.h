/*  =========================================================================
    spool_testutil - helpers shared by the spool tests: temporary
    directories, deterministic payloads, reading a spool back.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef SPOOL_TESTUTIL_H_INCLUDED
#define SPOOL_TESTUTIL_H_INCLUDED

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "zq.h"

//  A fresh directory under base (a tmpfs such as /dev/shm when present,
//  so that loops of thousands of fsyncs stay quick); the caller frees it.
static inline char *
tu_mkdtemp (void)
{
    const char *base = getenv ("ZQ_TEST_TMPDIR");
    struct stat st;
    if (!base)
        base = stat ("/dev/shm", &st) == 0 && S_ISDIR (st.st_mode) ? "/dev/shm" : "/tmp";
    char *path = malloc (strlen (base) + 32);
    assert_non_null (path);
    sprintf (path, "%s/zq-spool-XXXXXX", base);
    assert_non_null (mkdtemp (path));
    return path;
}

//  Removes a directory and the files in it (one level).
static inline void
tu_rmtree (char **path_p)
{
    char *path = *path_p;
    if (!path)
        return;
    DIR *dir = opendir (path);
    if (dir) {
        struct dirent *entry;
        while ((entry = readdir (dir))) {
            if (strcmp (entry->d_name, ".") == 0 || strcmp (entry->d_name, "..") == 0)
                continue;
            char file[1024];
            snprintf (file, sizeof file, "%s/%s", path, entry->d_name);
            unlink (file);
        }
        closedir (dir);
    }
    rmdir (path);
    free (path);
    *path_p = NULL;
}

//  The payload of record seq under a given key: size bytes derived from
//  both, so that a record served under the wrong seq is caught.
static inline size_t
tu_payload (uint64_t key, uint64_t seq, size_t size, uint8_t *out)
{
    uint64_t x = key * 0x9E3779B97F4A7C15ULL ^ seq * 0xC2B2AE3D27D4EB4FULL;
    for (size_t i = 0; i < size; i++) {
        x ^= x >> 13;
        x *= 0xff51afd7ed558ccdULL;
        out[i] = (uint8_t)(x >> 32);
    }
    return size;
}

//  The size of record seq in a run where sizes vary (1 .. max).
static inline size_t
tu_size (uint64_t key, uint64_t seq, size_t max)
{
    uint64_t x = (key + 7) * 0x9E3779B97F4A7C15ULL ^ seq;
    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 32;
    return 1 + (size_t)(x % max);
}

//  Checks that record holds what tu_fill appended under its seq.
static inline void
tu_check (uint64_t key, const zq_spool_record_t *record, size_t max)
{
    uint8_t data[65536];
    size_t size = tu_payload (key, record->seq, tu_size (key, record->seq, max), data);
    assert_int_equal (record->size, size);
    assert_memory_equal (record->data, data, size);
}

//  Appends count records (sizes 1 .. max, at most 65536) continuing the
//  spool's numbering, with payloads from tu_payload under key.
static inline void
tu_fill (zq_spool_t *spool, uint64_t key, uint64_t count, size_t max)
{
    uint8_t data[65536];
    for (uint64_t i = 0; i < count; i++) {
        uint64_t seq = zq_spool_last_seq (spool) + 1;
        size_t size = tu_payload (key, seq, tu_size (key, seq, max), data);
        uint64_t got = 0;
        assert_int_equal (zq_spool_append (spool, data, size, &got), 0);
        assert_int_equal (got, seq);
    }
}

//  Names of the segment files in dir, sorted; returns how many (at most
//  max), each a new string.
static inline int
tu_name_compare (const void *a, const void *b)
{
    return strcmp (*(char *const *)a, *(char *const *)b);
}

static inline size_t
tu_segments (const char *dir, char **names, size_t max)
{
    DIR *handle = opendir (dir);
    assert_non_null (handle);
    size_t count = 0;
    struct dirent *entry;
    while ((entry = readdir (handle)) && count < max) {
        size_t length = strlen (entry->d_name);
        if (length == 20 && strcmp (entry->d_name + 16, ".zqs") == 0) {
            names[count] = malloc (strlen (dir) + length + 2);
            sprintf (names[count], "%s/%s", dir, entry->d_name);
            count++;
        }
    }
    closedir (handle);
    qsort (names, count, sizeof (char *), tu_name_compare);
    return count;
}

static inline off_t
tu_file_size (const char *path)
{
    struct stat st;
    assert_int_equal (stat (path, &st), 0);
    return st.st_size;
}

//  The whole of the file at path, in a buffer of its own (free it), its
//  size in *size_p.
static inline uint8_t *
tu_read_file (const char *path, size_t *size_p)
{
    *size_p = (size_t)tu_file_size (path);
    uint8_t *data = (uint8_t *)malloc (*size_p ? *size_p : 1);
    assert_non_null (data);
    FILE *handle = fopen (path, "rb");
    assert_non_null (handle);
    assert_int_equal (fread (data, 1, *size_p, handle), *size_p);
    fclose (handle);
    return data;
}

//  Checks that the next record is refused as damaged (ZQ_ECORRUPT), and
//  that stats.corrupt_records is now counted (each refusal counts once).
static inline void
tu_expect_damaged (zq_spool_t *spool, uint64_t counted)
{
    zq_spool_record_t record;
    assert_int_equal (zq_spool_next (spool, &record), -1);
    assert_int_equal (errno, ZQ_ECORRUPT);
    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    assert_int_equal (stats.corrupt_records, counted);
}

//  A config for tests: small segments and batches so files roll often.
static inline zq_spool_config_t
tu_config (zq_spool_fsync_t fsync, uint64_t segment_bytes)
{
    zq_spool_config_t config;
    zq_spool_config_init (&config);
    config.fsync = fsync;
    config.segment_bytes = segment_bytes;
    config.batch_bytes = 4096;
    config.max_record_bytes = 65536;
    return config;
}

#endif
