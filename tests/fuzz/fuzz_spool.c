/*  =========================================================================
    fuzz_spool - libFuzzer target for spool recovery from a damaged
    directory (doc/SPOOL.md, "Recovery").

    Input layout: byte 0 holds flags (bit 0: open with quarantine; bit 1:
    make every checksum right first, so damage past the checksums is
    reached); then up to 8 files, each a name byte (bits 0-4: segment id
    1 to 32; bits 5-6: suffix ".zqs", ".zqs.tmp", ".zqs.corrupt" or none),
    a 2-byte big-endian length (cut to what remains) and the bytes.
    The files go into a fresh directory; the spool opens it, or must fail
    with a clean error. Once open, it reads everything (acking every other
    record, returning some), appends, closes and opens again: that must
    succeed, no acked record may come back and every appended one must,
    unless the reading stopped at damage.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define S_MAX_FILES       8
#define S_MAX_READS       4096
#define S_APPENDS         3
#define S_FLAG_QUARANTINE 0x01
#define S_FLAG_CHECKSUMS  0x02

//  ---- Checksums, as doc/SPOOL.md lays them out --------------------------

static uint64_t
s_load_le (const uint8_t *p, int size)
{
    uint64_t value = 0;
    for (int index = size - 1; index >= 0; index--)
        value = value << 8 | p[index];
    return value;
}

static void
s_store_le (uint8_t *p, uint64_t value, int size)
{
    for (int index = 0; index < size; index++, value >>= 8)
        p[index] = (uint8_t)value;
}

//  Rewrites the header checksum and every record checksum of a segment
//  file held in bytes, seeded with the salt its header names.
static void
s_fix_checksums (uint8_t *bytes, size_t size)
{
    if (size < 64)
        return;
    s_store_le (bytes + 56, XXH3_64bits (bytes, 56), 8);
    uint64_t salt = s_load_le (bytes + 40, 8);
    size_t offset = 64;
    while (offset + 32 <= size) {
        uint64_t length = s_load_le (bytes + offset + 12, 4);
        if (length > size - offset - 32)
            break;
        s_store_le (bytes + offset, XXH3_64bits_withSeed (bytes + offset + 8, 24 + length, salt),
                    8);
        offset += 32 + length;
    }
}

//  ---- The directory -------------------------------------------------------

static char *
s_mkdtemp (void)
{
    struct stat info;
    const char *base =
        stat ("/dev/shm", &info) == 0 && S_ISDIR (info.st_mode) ? "/dev/shm" : "/tmp";
    char *path = zsys_sprintf ("%s/zq-fuzz-spool-XXXXXX", base);
    if (!path || !mkdtemp (path))
        abort ();
    return path;
}

static void
s_rmtree (char **path_p)
{
    DIR *dir = opendir (*path_p);
    if (dir) {
        struct dirent *entry;
        while ((entry = readdir (dir))) {
            if (streq (entry->d_name, ".") || streq (entry->d_name, ".."))
                continue;
            char *file = zsys_sprintf ("%s/%s", *path_p, entry->d_name);
            if (file)
                unlink (file);
            zstr_free (&file);
        }
        closedir (dir);
    }
    rmdir (*path_p);
    zstr_free (path_p);
}

static void
s_write_file (const char *dir, uint8_t name, const uint8_t *bytes, size_t size, bool fix)
{
    static const char *suffixes[] = {".zqs", ".zqs.tmp", ".zqs.corrupt", ""};
    char *path = zsys_sprintf ("%s/%016x%s", dir, (name & 31) + 1, suffixes[(name >> 5) & 3]);
    int fd = path ? open (path, O_WRONLY | O_CREAT | O_TRUNC, 0644) : -1;
    zstr_free (&path);
    if (fd < 0)
        abort ();
    uint8_t *copy = malloc (size ? size : 1);
    if (!copy)
        abort ();
    memcpy (copy, bytes, size);
    if (fix)
        s_fix_checksums (copy, size);
    if (size && write (fd, copy, size) != (ssize_t)size)
        abort ();
    free (copy);
    close (fd);
}

//  ---- Using the spool -----------------------------------------------------

typedef struct {
    uint64_t acked[S_MAX_READS];
    size_t acked_count;
    uint64_t appended[S_APPENDS];
    size_t appended_count;
} s_seen_t;

static bool
s_clean_error (int errnum)
{
    //  What zq_spool_new may say about a directory it cannot use.
    return errnum == ZQ_ECORRUPT || errnum == ZQ_EVERSION || errnum == EINVAL || errnum == ENOMEM ||
           errnum == EIO || errnum == ENOENT || errnum == EEXIST || errnum == ENOTDIR ||
           errnum == EISDIR || errnum == ZQ_ETOOBIG || errnum == ZQ_EFULL;
}

//  Reads every record it can, acking every other one and returning every
//  fifth to ready; returns true if the reading stopped at damage.
static bool
s_read_all (zq_spool_t *spool, s_seen_t *seen)
{
    for (size_t reads = 0; reads < S_MAX_READS; reads++) {
        zq_spool_record_t record;
        if (zq_spool_next (spool, &record) != 0)
            return errno != EAGAIN;
        if (reads % 2 == 0 && zq_spool_ack (spool, record.seq) == 0 &&
            seen->acked_count < S_MAX_READS)
            seen->acked[seen->acked_count++] = record.seq;
        else if (reads % 5 == 1)
            zq_spool_return (spool, record.seq);
    }
    return true; //  not read to the end
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    data++;
    size--;
    char *dir = s_mkdtemp ();
    for (size_t files = 0; files < S_MAX_FILES && size >= 3; files++) {
        uint8_t name = data[0];
        size_t length = (size_t)data[1] << 8 | data[2];
        data += 3;
        size -= 3;
        if (length > size)
            length = size;
        s_write_file (dir, name, data, length, (flags & S_FLAG_CHECKSUMS) != 0);
        data += length;
        size -= length;
    }

    zq_spool_config_t config;
    zq_spool_config_init (&config);
    config.fsync = ZQ_SPOOL_FSYNC_NONE;
    config.segment_bytes = 4096;
    config.quarantine = (flags & S_FLAG_QUARANTINE) != 0;
    zq_spool_t *spool = zq_spool_new (dir, &config);
    if (!spool) {
        if (!s_clean_error (errno)) {
            fprintf (stderr, "fuzz_spool: open failed with %s\n", zq_strerror (errno));
            abort ();
        }
        s_rmtree (&dir);
        return 0;
    }
    s_seen_t *seen = calloc (1, sizeof (s_seen_t));
    if (!seen)
        abort ();
    bool damaged = s_read_all (spool, seen);
    for (int append = 0; append < S_APPENDS; append++) {
        char payload[32];
        int length = snprintf (payload, sizeof payload, "appended %d", append);
        uint64_t seq;
        if (zq_spool_append (spool, payload, (size_t)length, &seq) == 0)
            seen->appended[seen->appended_count++] = seq;
    }
    if (zq_spool_commit (spool) != 0)
        seen->appended_count = 0; //  the appends may have been refused
    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    zq_spool_destroy (&spool);

    //  What the spool wrote it must read back.
    spool = zq_spool_new (dir, &config);
    if (!spool) {
        fprintf (stderr, "fuzz_spool: a spool that opened does not open again: %s\n",
                 zq_strerror (errno));
        abort ();
    }
    bool found[S_APPENDS] = {false};
    bool stopped = true; //  until the reading reaches the end
    for (size_t reads = 0; reads < 2 * S_MAX_READS; reads++) {
        zq_spool_record_t record;
        if (zq_spool_next (spool, &record) != 0) {
            stopped = errno != EAGAIN;
            break;
        }
        for (size_t index = 0; index < seen->acked_count; index++)
            if (seen->acked[index] == record.seq) {
                fprintf (stderr, "fuzz_spool: acked record %llu came back\n",
                         (unsigned long long)record.seq);
                abort ();
            }
        for (size_t index = 0; index < seen->appended_count; index++)
            if (seen->appended[index] == record.seq)
                found[index] = true;
    }
    if (!damaged && !stopped)
        for (size_t index = 0; index < seen->appended_count; index++)
            if (!found[index]) {
                fprintf (stderr, "fuzz_spool: appended record %llu was lost\n",
                         (unsigned long long)seen->appended[index]);
                abort ();
            }
    zq_spool_destroy (&spool);
    free (seen);
    s_rmtree (&dir);
    return 0;
}
