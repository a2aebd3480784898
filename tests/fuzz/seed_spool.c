/*  =========================================================================
    seed_spool - writes seed inputs for fuzz_spool: real spools made by
    zq_spool (messages, out-of-order acks, returns, several segments with
    their checkpoints and seals, reclaimed segments, a torn tail, a
    leftover .tmp), each packed in the layout fuzz_spool.c reads.
    Usage: seed_spool DIR

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq.h"
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

//  The packed seed being built.
typedef struct {
    uint8_t data[8 * 65536 + 64];
    size_t size;
    int files;
} s_seed_t;

//  Adds one file: its name byte (segment id - 1, suffix in bits 5-6),
//  2-byte length and bytes (at most 65535 of them).
static void
s_add_file (s_seed_t *seed, uint8_t name, const uint8_t *bytes, size_t size)
{
    if (seed->files == 8)
        return;
    if (size > 65535)
        size = 65535;
    seed->data[seed->size++] = name;
    seed->data[seed->size++] = (uint8_t)(size >> 8);
    seed->data[seed->size++] = (uint8_t)size;
    memcpy (seed->data + seed->size, bytes, size);
    seed->size += size;
    seed->files++;
}

//  Packs the newest 8 segment files of dir into seed (ids above 32 are
//  skipped); cut_tail bytes are cut from the newest segment.
static void
s_pack_dir (s_seed_t *seed, const char *dir, size_t cut_tail)
{
    uint64_t newest = 0;
    DIR *handle = opendir (dir);
    struct dirent *entry;
    while (handle && (entry = readdir (handle))) {
        unsigned long long id;
        if (sscanf (entry->d_name, "%16llx.zqs", &id) == 1 && id > newest)
            newest = id;
    }
    for (uint64_t id = newest > 8 ? newest - 7 : 1; id <= newest && id <= 32; id++) {
        char *path = zsys_sprintf ("%s/%016llx.zqs", dir, (unsigned long long)id);
        FILE *file = path ? fopen (path, "rb") : NULL;
        zstr_free (&path);
        if (!file)
            continue;
        static uint8_t bytes[65536];
        size_t size = fread (bytes, 1, sizeof bytes, file);
        fclose (file);
        if (id == newest && cut_tail < size)
            size -= cut_tail;
        s_add_file (seed, (uint8_t)(id - 1), bytes, size);
    }
    if (handle)
        closedir (handle);
}

static void
s_write_seed (const char *out, const char *name, s_seed_t *seed)
{
    char *path = zsys_sprintf ("%s/seed_%s", out, name);
    FILE *file = path ? fopen (path, "wb") : NULL;
    if (!file || fwrite (seed->data, 1, seed->size, file) != seed->size) {
        fprintf (stderr, "seed_spool: cannot write %s\n", path ? path : name);
        exit (1);
    }
    fclose (file);
    zstr_free (&path);
}

static void
s_rmtree (const char *dir)
{
    DIR *handle = opendir (dir);
    struct dirent *entry;
    while (handle && (entry = readdir (handle))) {
        if (streq (entry->d_name, ".") || streq (entry->d_name, ".."))
            continue;
        char *path = zsys_sprintf ("%s/%s", dir, entry->d_name);
        if (path)
            unlink (path);
        zstr_free (&path);
    }
    if (handle)
        closedir (handle);
    rmdir (dir);
}

//  One scenario: count records of size bytes into a spool of small
//  segments; then acks by stride (every stride-th from first), returns
//  and, if reopen, a second session appending more.
typedef struct {
    const char *name;
    int count;
    size_t size;
    int ack_first;
    int ack_stride;
    bool reopen;
    size_t cut_tail;
    bool leftover_tmp;
} s_scenario_t;

static void
s_make (const char *out, const s_scenario_t *scenario, uint8_t flags)
{
    char dir[] = "/tmp/zq-seed-spool-XXXXXX";
    if (!mkdtemp (dir))
        exit (1);
    zq_spool_config_t config;
    zq_spool_config_init (&config);
    config.fsync = ZQ_SPOOL_FSYNC_NONE;
    config.segment_bytes = 4096;
    for (int session = 0; session < (scenario->reopen ? 2 : 1); session++) {
        zq_spool_t *spool = zq_spool_new (dir, &config);
        if (!spool) {
            fprintf (stderr, "seed_spool: %s: %s\n", scenario->name, zq_strerror (errno));
            exit (1);
        }
        uint8_t payload[2048];
        for (int index = 0; index < scenario->count; index++) {
            size_t size = scenario->size ? scenario->size : (size_t)(index * 37 % 300);
            memset (payload, 'a' + index % 26, size);
            zq_spool_append (spool, payload, size, NULL);
            if (index % 7 == 6)
                zq_spool_commit (spool);
        }
        zq_spool_commit (spool);
        zq_spool_record_t record;
        for (int index = 0; zq_spool_next (spool, &record) == 0; index++) {
            if (scenario->ack_stride && index >= scenario->ack_first &&
                (index - scenario->ack_first) % scenario->ack_stride == 0)
                zq_spool_ack (spool, record.seq);
            else if (index % 5 == 3)
                zq_spool_return (spool, record.seq);
        }
        zq_spool_commit (spool);
        zq_spool_destroy (&spool);
    }
    s_seed_t *seed = calloc (1, sizeof (s_seed_t));
    if (!seed)
        exit (1);
    seed->data[seed->size++] = flags;
    s_pack_dir (seed, dir, scenario->cut_tail);
    if (scenario->leftover_tmp)
        s_add_file (seed, 7 | 1 << 5, seed->data + 4, 100);
    char *name = zsys_sprintf ("%s_%02x", scenario->name, flags);
    s_write_seed (out, name, seed);
    zstr_free (&name);
    free (seed);
    s_rmtree (dir);
}

int
main (int argc, char *argv[])
{
    if (argc != 2) {
        fprintf (stderr, "usage: seed_spool DIR\n");
        return 1;
    }
    static const s_scenario_t scenarios[] = {
        {"empty", 0, 0, 0, 0, false, 0, false},
        {"few", 5, 20, 0, 0, false, 0, false},
        {"acks", 40, 0, 0, 2, false, 0, false},
        {"acks_late", 60, 0, 10, 3, true, 0, false},
        {"segments", 80, 200, 1, 2, false, 0, false},
        {"reclaimed", 120, 100, 0, 1, true, 0, false},
        {"torn_tail", 30, 50, 0, 4, false, 17, false},
        {"big_record", 3, 2000, 0, 0, false, 0, false},
        {"tmp_left", 10, 30, 0, 3, false, 0, true},
    };
    for (size_t index = 0; index < sizeof scenarios / sizeof scenarios[0]; index++) {
        s_make (argv[1], &scenarios[index], 0x02);
        s_make (argv[1], &scenarios[index], 0x00);
    }
    s_make (argv[1], &scenarios[4], 0x03);
    return 0;
}
