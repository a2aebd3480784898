/*  =========================================================================
    zq_bench_spool - zq bench spool: durable appends to a zq_spool with
    fsync=always, measured against the disk's own fdatasync in the same
    run and the same directory.

    Each round, in a new directory under --dir:
      - fsync: a process writes SIZE bytes at the end of a file and
        fdatasyncs it, one at a time (the floor any durable append pays);
      - confirm: a process appends one record at a time and waits for it
        to be durable (zq_spool_append_durable);
      - append: a process runs P producer threads, each appending batches
        of S_BATCH records (zq_spool_appendv) and waiting for the batch to
        be durable (zq_spool_wait), as a server storing what arrived does;
        concurrent waits share fdatasyncs (group commit).
    The record is one zq message in its one-frame wire form with a body of
    SIZE payload bytes (a msgpack bin), encoded once: the spool copies it.
    With --backlog N, one process appends N records (batches, each
    committed) and reports its peak RSS; another reopens the directory and
    reports how long zq_spool_new took and its own peak RSS.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_cli.h"
#include <pthread.h>
#include <sys/stat.h>

//  Records per appendv batch.
#define S_BATCH 1000
//  Most confirm-each and fsync samples per round.
#define S_LATENCY_MAX 10000
//  Untimed appends or syncs before the latency samples.
#define S_LATENCY_WARMUP 100

typedef struct {
    const char *dir;    //  the round's spool directory
    const void *record; //  the wire form appended
    size_t record_size;
    uint64_t count; //  records to append (all producers together)
    int producers;
    double p50_us, p99_us; //  fsync child: its percentiles
} s_spool_arg_t;

//  The record: a message with a body of size payload bytes, one frame.
static void *
s_make_record (size_t size, size_t *record_size_p)
{
    size_t body_size = 0;
    void *body = zq_bench_body (size, &body_size);
    zq_msg_t *msg = body ? zq_msg_new ("bench") : NULL;
    zmsg_t *frames = zmsg_new ();
    void *record = NULL;
    if (msg && frames && zq_msg_set_body (msg, body, body_size) == 0 &&
        zq_msg_encode (&msg, frames) == 0 && zmsg_size (frames) == 1) {
        zframe_t *frame = zmsg_first (frames);
        record = malloc (zframe_size (frame));
        if (record) {
            memcpy (record, zframe_data (frame), zframe_size (frame));
            *record_size_p = zframe_size (frame);
        }
    }
    zq_msg_destroy (&msg);
    zmsg_destroy (&frames);
    free (body);
    return record;
}

static zq_spool_t *
s_open (const char *dir)
{
    zq_spool_config_t config;
    zq_spool_config_init (&config);
    config.fsync = ZQ_SPOOL_FSYNC_ALWAYS;
    return zq_spool_new (dir, &config);
}

//  ---- append: P producer threads ----------------------------------------------

typedef struct {
    zq_spool_t *spool;
    const s_spool_arg_t *arg;
    uint64_t count;
    pthread_barrier_t *barrier;
    int errnum;
} s_producer_t;

static void *
s_producer (void *self_arg)
{
    s_producer_t *self = (s_producer_t *)self_arg;
    const void *data[S_BATCH];
    size_t sizes[S_BATCH];
    for (size_t i = 0; i < S_BATCH; i++) {
        data[i] = self->arg->record;
        sizes[i] = self->arg->record_size;
    }
    pthread_barrier_wait (self->barrier);
    for (uint64_t done = 0; done < self->count;) {
        size_t batch = self->count - done < S_BATCH ? (size_t)(self->count - done) : S_BATCH;
        uint64_t first = 0;
        if (zq_spool_appendv (self->spool, data, sizes, batch, &first) ||
            zq_spool_wait (self->spool, first + batch - 1)) {
            self->errnum = errno;
            break;
        }
        done += batch;
        if (zq_bench_now_ns () > zq_bench_deadline_ns ()) {
            self->errnum = ETIMEDOUT;
            break;
        }
    }
    return NULL;
}

static void
s_append_child (zq_cli_t *cli, void *arg_p, zq_bench_result_t *result)
{
    (void)cli;
    s_spool_arg_t *arg = (s_spool_arg_t *)arg_p;
    zq_spool_t *spool = s_open (arg->dir);
    if (!spool) {
        result->errnum = errno;
        return;
    }
    s_producer_t producers[64];
    pthread_t threads[64];
    pthread_barrier_t barrier;
    pthread_barrier_init (&barrier, NULL, (unsigned)arg->producers + 1);
    int started = 0;
    for (int i = 0; i < arg->producers; i++) {
        producers[i].spool = spool;
        producers[i].arg = arg;
        producers[i].count = arg->count / (uint64_t)arg->producers +
                             ((uint64_t)i < arg->count % (uint64_t)arg->producers ? 1 : 0);
        producers[i].barrier = &barrier;
        producers[i].errnum = 0;
        if (pthread_create (&threads[i], NULL, s_producer, &producers[i]))
            break;
        started++;
    }
    if (started < arg->producers) {
        //  The barrier can never open: nothing else to do but leave.
        result->errnum = EAGAIN;
        _exit (1);
    }
    zq_spool_stats_t before, after;
    zq_spool_stats (spool, &before);
    pthread_barrier_wait (&barrier);
    result->start_ns = zq_bench_now_ns ();
    for (int i = 0; i < started; i++) {
        pthread_join (threads[i], NULL);
        if (producers[i].errnum && !result->errnum)
            result->errnum = producers[i].errnum;
    }
    result->end_ns = zq_bench_now_ns ();
    zq_spool_stats (spool, &after);
    result->messages = after.appends - before.appends;
    result->fsyncs = after.fsyncs - before.fsyncs;
    pthread_barrier_destroy (&barrier);
    zq_spool_destroy (&spool);
}

//  ---- confirm: one record at a time ------------------------------------------

static void
s_confirm_child (zq_cli_t *cli, void *arg_p, zq_bench_result_t *result)
{
    (void)cli;
    s_spool_arg_t *arg = (s_spool_arg_t *)arg_p;
    int64_t *samples = (int64_t *)calloc (arg->count, sizeof (int64_t));
    zq_spool_t *spool = samples ? s_open (arg->dir) : NULL;
    if (!spool) {
        result->errnum = samples ? errno : ENOMEM;
        free (samples);
        return;
    }
    for (uint64_t i = 0; i < S_LATENCY_WARMUP + arg->count; i++) {
        int64_t start = zq_bench_now_ns ();
        if (zq_spool_append_durable (spool, arg->record, arg->record_size, NULL)) {
            result->errnum = errno;
            break;
        }
        if (i >= S_LATENCY_WARMUP)
            samples[i - S_LATENCY_WARMUP] = zq_bench_now_ns () - start;
        if (zq_bench_now_ns () > zq_bench_deadline_ns ()) {
            result->errnum = ETIMEDOUT;
            break;
        }
    }
    if (!result->errnum)
        zq_bench_percentiles (samples, arg->count, &result->p50_us, &result->p99_us);
    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    result->fsyncs = stats.fsyncs;
    result->messages = stats.appends;
    zq_spool_destroy (&spool);
    free (samples);
}

//  The disk's fdatasync, in a process of its own as the others.
static void
s_fsync_child (zq_cli_t *cli, void *arg_p, zq_bench_result_t *result)
{
    s_spool_arg_t *arg = (s_spool_arg_t *)arg_p;
    if (zq_bench_fsync_latency (arg->dir, cli->size, S_LATENCY_WARMUP, arg->count, &result->p50_us,
                                &result->p99_us))
        result->errnum = errno;
}

//  ---- backlog: memory and reopen ---------------------------------------------

static void
s_backlog_child (zq_cli_t *cli, void *arg_p, zq_bench_result_t *result)
{
    s_spool_arg_t *arg = (s_spool_arg_t *)arg_p;
    zq_spool_t *spool = s_open (arg->dir);
    if (!spool) {
        result->errnum = errno;
        return;
    }
    const void *data[S_BATCH];
    size_t sizes[S_BATCH];
    for (size_t i = 0; i < S_BATCH; i++) {
        data[i] = arg->record;
        sizes[i] = arg->record_size;
    }
    uint64_t step = arg->count / 10 > 100000 ? arg->count / 10 : arg->count, next_report = step;
    result->start_ns = zq_bench_now_ns ();
    for (uint64_t done = 0; done < arg->count;) {
        size_t batch = arg->count - done < S_BATCH ? (size_t)(arg->count - done) : S_BATCH;
        if (zq_spool_appendv (spool, data, sizes, batch, NULL) || zq_spool_commit (spool)) {
            result->errnum = errno;
            break;
        }
        done += batch;
        if (done >= next_report && done < arg->count) {
            zq_bench_progress (cli, "backlog: %llu of %llu appended, RSS peak %lld KiB",
                               (unsigned long long)done, (unsigned long long)arg->count,
                               (long long)zq_bench_max_rss_kib ());
            next_report += step;
        }
        if (zq_cli_interrupted || zq_bench_now_ns () > zq_bench_deadline_ns ()) {
            result->errnum = zq_cli_interrupted ? EINTR : ETIMEDOUT;
            break;
        }
    }
    result->end_ns = zq_bench_now_ns ();
    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    result->messages = stats.appends;
    result->fsyncs = stats.fsyncs;
    result->value = (double)stats.disk_bytes;
    zq_spool_destroy (&spool);
}

static void
s_reopen_child (zq_cli_t *cli, void *arg_p, zq_bench_result_t *result)
{
    (void)cli;
    s_spool_arg_t *arg = (s_spool_arg_t *)arg_p;
    result->start_ns = zq_bench_now_ns ();
    zq_spool_t *spool = s_open (arg->dir);
    result->end_ns = zq_bench_now_ns ();
    if (!spool) {
        result->errnum = errno;
        return;
    }
    //  The backlog is there and its first record reads back.
    zq_spool_stats_t stats;
    zq_spool_stats (spool, &stats);
    result->messages = stats.depth;
    zq_spool_record_t record;
    if (stats.depth != arg->count)
        result->errnum = ZQ_ECORRUPT;
    else if (zq_spool_next (spool, &record))
        result->errnum = errno;
    else if (record.size != arg->record_size || memcmp (record.data, arg->record, record.size))
        result->errnum = ZQ_ECORRUPT;
    zq_spool_destroy (&spool);
}

//  ---- The benchmark ----------------------------------------------------------

//  Runs fn in a child on a new directory under base; removes the directory
//  after. Returns 0, or an exit code after printing why.
static int
s_run (zq_cli_t *cli, const char *what, zq_bench_child_fn *fn, s_spool_arg_t *arg, const char *base,
       zq_bench_result_t *result)
{
    char dir[1024];
    if (zq_bench_mkdtemp (base, "zq-bench-spool", dir, sizeof dir)) {
        zq_cli_error (cli, "cannot make a directory in %s: %s", base, strerror (errno));
        return ZQ_EXIT_TRANSPORT;
    }
    arg->dir = dir;
    zq_bench_child_t child;
    int rc = zq_bench_spawn (&child, fn, cli, arg) ? -1 : 0;
    if (rc)
        result->errnum = errno;
    else
        rc = zq_bench_collect (&child, zq_bench_deadline_ns (), result);
    zq_bench_rmtree (dir, 1);
    if (rc == 0 && result->errnum)
        rc = -1;
    if (rc) {
        if (zq_cli_interrupted)
            return zq_cli_interrupt_exit ();
        zq_cli_error (cli, "%s in %s failed: %s", what, base, zq_strerror (result->errnum));
        return ZQ_EXIT_TRANSPORT;
    }
    return 0;
}

//  With --backlog: the backlog line.
static int
s_backlog (zq_cli_t *cli, s_spool_arg_t *arg, const char *base)
{
    char dir[1024];
    if (zq_bench_mkdtemp (base, "zq-bench-backlog", dir, sizeof dir)) {
        zq_cli_error (cli, "cannot make a directory in %s: %s", base, strerror (errno));
        return ZQ_EXIT_TRANSPORT;
    }
    arg->dir = dir;
    arg->count = cli->backlog;
    zq_bench_progress (cli, "backlog: appending %llu records of %zu bytes in %s",
                       (unsigned long long)cli->backlog, arg->record_size, dir);
    zq_bench_result_t append, reopen;
    memset (&reopen, 0, sizeof reopen);
    zq_bench_child_t child;
    int rc = zq_bench_spawn (&child, s_backlog_child, cli, arg);
    if (rc == 0)
        rc = zq_bench_collect (&child, zq_bench_deadline_ns (), &append);
    else
        append.errnum = errno;
    if (rc == 0 && !append.errnum) {
        zq_bench_progress (cli, "backlog: reopening");
        rc = zq_bench_spawn (&child, s_reopen_child, cli, arg);
        if (rc == 0)
            rc = zq_bench_collect (&child, zq_bench_deadline_ns (), &reopen);
        else
            reopen.errnum = errno;
    }
    zq_bench_rmtree (dir, 1);
    int errnum = append.errnum ? append.errnum : reopen.errnum;
    if (rc || errnum) {
        if (zq_cli_interrupted)
            return zq_cli_interrupt_exit ();
        zq_cli_error (cli, "backlog in %s failed: %s", base,
                      zq_strerror (errnum ? errnum : ETIMEDOUT));
        return ZQ_EXIT_TRANSPORT;
    }
    printf ("spool backlog size=%zu messages=%llu append_msgs_per_s=%.0f max_rss_kib=%lld "
            "reopen_ms=%.1f reopen_rss_kib=%lld disk_mib=%.0f\n",
            cli->size, (unsigned long long)cli->backlog,
            (double)append.messages * 1e9 / (double)(append.end_ns - append.start_ns),
            (long long)append.max_rss_kib, (double)(reopen.end_ns - reopen.start_ns) / 1e6,
            (long long)reopen.max_rss_kib, append.value / (1024.0 * 1024.0));
    fflush (stdout);
    return 0;
}

int
zq_bench_spool (zq_cli_t *cli)
{
    if (!cli->given[ZQ_OPT_COUNT] || cli->count == 0)
        cli->count = 1000000;
    if (!cli->given[ZQ_OPT_PRODUCERS])
        cli->producers = 4;
    const char *base = zq_bench_dir (cli);
    uint64_t latency_count = cli->count < S_LATENCY_MAX ? cli->count : S_LATENCY_MAX;
    int rounds = cli->rounds;
    s_spool_arg_t arg;
    memset (&arg, 0, sizeof arg);
    arg.record = s_make_record (cli->size, &arg.record_size);
    arg.producers = cli->producers;
    double *values = (double *)calloc ((size_t)rounds * 7, sizeof (double));
    if (!arg.record || !values) {
        zq_cli_error (cli, "cannot make the record: %s", zq_strerror (errno ? errno : ENOMEM));
        free ((void *)arg.record);
        free (values);
        return ZQ_EXIT_TRANSPORT;
    }
    double *rate = values, *fsync_rate = values + rounds, *per_fsync = values + 2 * rounds;
    double *confirm50 = values + 3 * rounds, *confirm99 = values + 4 * rounds;
    double *fsync50 = values + 5 * rounds, *fsync99 = values + 6 * rounds;
    zq_bench_progress (cli,
                       "size=%zu (records of %zu bytes) in %s: %d rounds of fsync, confirm "
                       "(%llu one at a time) and append (%llu by %d producers in batches of %d); "
                       "median reported",
                       cli->size, arg.record_size, base, rounds, (unsigned long long)latency_count,
                       (unsigned long long)cli->count, cli->producers, S_BATCH);
    int rc = 0;
    for (int round = 0; rc == 0 && round < rounds; round++) {
        zq_bench_result_t result;
        arg.count = latency_count;
        rc = s_run (cli, "fsync", s_fsync_child, &arg, base, &result);
        if (rc)
            break;
        fsync50[round] = result.p50_us;
        fsync99[round] = result.p99_us;
        rc = s_run (cli, "confirm", s_confirm_child, &arg, base, &result);
        if (rc)
            break;
        confirm50[round] = result.p50_us;
        confirm99[round] = result.p99_us;
        arg.count = cli->count;
        rc = s_run (cli, "append", s_append_child, &arg, base, &result);
        if (rc)
            break;
        double seconds = (double)(result.end_ns - result.start_ns) / 1e9;
        rate[round] = (double)result.messages / seconds;
        fsync_rate[round] = (double)result.fsyncs / seconds;
        per_fsync[round] = result.fsyncs ? (double)result.messages / (double)result.fsyncs : 0;
        zq_bench_progress (cli,
                           "round %d/%d: fsync p50 %.1f us p99 %.1f us; confirm p50 %.1f us "
                           "p99 %.1f us; append %.0f msgs/s, %.0f fsyncs/s, %.1f records/fsync",
                           round + 1, rounds, fsync50[round], fsync99[round], confirm50[round],
                           confirm99[round], rate[round], fsync_rate[round], per_fsync[round]);
    }
    if (rc == 0) {
        printf ("spool append size=%zu producers=%d fsync=always count=%llu msgs_per_s=%.0f "
                "fsyncs_per_s=%.0f records_per_fsync=%.1f\n",
                cli->size, cli->producers, (unsigned long long)cli->count,
                zq_bench_median (rate, rounds), zq_bench_median (fsync_rate, rounds),
                zq_bench_median (per_fsync, rounds));
        zq_bench_print_confirm ("spool confirm", cli->size, latency_count, confirm50, confirm99,
                                fsync50, fsync99, rounds);
        fflush (stdout);
    }
    if (rc == 0 && cli->backlog)
        rc = s_backlog (cli, &arg, base);
    free ((void *)arg.record);
    free (values);
    return rc;
}
