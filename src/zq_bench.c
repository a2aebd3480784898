/*  =========================================================================
    zq_bench - zq bench: measures zq against plain libzmq in the same run.

    Every benchmark runs the raw libzmq baseline and zq alternately
    (raw, zq, raw, zq, ...) for --rounds rounds, with the same socket
    types, high-water marks, payload size, transport and count, and
    reports the median of each side on ONE line of key=value pairs that
    ends with ratio=. Warm-up messages are sent before the clock starts
    and are not counted. Progress goes to stderr.

    This file holds the dispatch, what the benchmarks share, and
    `zq bench pipeline`; src/zq_bench_rpc.c holds `zq bench rpc`.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_cli.h"
#include <msgpack.h>
#include <pthread.h>
#include <dirent.h>
#include <stdarg.h>
#include <time.h>
#include <unistd.h>

//  ---- Shared --------------------------------------------------------------

int64_t
zq_bench_now_ns (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

static char s_ipc_dir[256];
static unsigned s_endpoint_sequence;
static void *s_raw_context;

static void
s_cleanup (void)
{
    if (*s_ipc_dir) {
        //  Only socket files of ours are left; remove them and the directory.
        DIR *dir = opendir (s_ipc_dir);
        if (dir) {
            struct dirent *entry;
            while ((entry = readdir (dir)))
                if (entry->d_name[0] != '.') {
                    char path[600];
                    snprintf (path, sizeof path, "%s/%s", s_ipc_dir, entry->d_name);
                    unlink (path);
                }
            closedir (dir);
        }
        rmdir (s_ipc_dir);
        *s_ipc_dir = '\0';
    }
    if (s_raw_context) {
        zmq_ctx_term (s_raw_context);
        s_raw_context = NULL;
    }
}

int
zq_bench_bind_endpoint (zq_cli_t *cli, char *buffer, size_t size)
{
    s_endpoint_sequence++;
    if (streq (cli->transport, "tcp"))
        snprintf (buffer, size, "tcp://127.0.0.1:*");
    else if (streq (cli->transport, "inproc"))
        snprintf (buffer, size, "inproc://zq-bench-%d-%u", (int)getpid (), s_endpoint_sequence);
    else {
        if (!*s_ipc_dir) {
            const char *tmp = getenv ("TMPDIR");
            snprintf (s_ipc_dir, sizeof s_ipc_dir, "%s/zq-bench-XXXXXX",
                      tmp && *tmp ? tmp : "/tmp");
            if (!mkdtemp (s_ipc_dir)) {
                zq_cli_error (cli, "mkdtemp %s: %s", s_ipc_dir, strerror (errno));
                *s_ipc_dir = '\0';
                return -1;
            }
        }
        snprintf (buffer, size, "ipc://%s/%u", s_ipc_dir, s_endpoint_sequence);
    }
    return 0;
}

static int
s_compare_double (const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

double
zq_bench_median (double *values, int count)
{
    qsort (values, (size_t)count, sizeof (double), s_compare_double);
    if (count % 2)
        return values[count / 2];
    return (values[count / 2 - 1] + values[count / 2]) / 2;
}

void *
zq_bench_raw_context (void)
{
    if (!s_raw_context)
        s_raw_context = zmq_ctx_new ();
    return s_raw_context;
}

int
zq_bench_raw_options (zq_cli_t *cli, void *socket)
{
    const char *names[] = {"sndhwm", "rcvhwm", "linger_ms"};
    const int options[] = {ZMQ_SNDHWM, ZMQ_RCVHWM, ZMQ_LINGER};
    for (size_t i = 0; i < 3; i++) {
        int64_t value = 0;
        zq_options_get_int (cli->options, names[i], &value);
        int value_int = (int)value;
        if (zmq_setsockopt (socket, options[i], &value_int, sizeof value_int))
            return -1;
    }
    return 0;
}

void *
zq_bench_body (size_t size, size_t *body_size_p)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    msgpack_pack_bin (&packer, size);
    uint8_t *payload = (uint8_t *)malloc (size ? size : 1);
    if (!payload) {
        msgpack_sbuffer_destroy (&buffer);
        return NULL;
    }
    for (size_t i = 0; i < size; i++)
        payload[i] = (uint8_t)('a' + i % 26);
    msgpack_pack_bin_body (&packer, payload, size);
    free (payload);
    *body_size_p = buffer.size;
    return msgpack_sbuffer_release (&buffer);
}

void
zq_bench_progress (zq_cli_t *cli, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    fprintf (stderr, "zq bench %s: ", cli->args[0]);
    vfprintf (stderr, format, args);
    fputc ('\n', stderr);
    va_end (args);
}

int
zq_cli_bench (zq_cli_t *cli)
{
    atexit (s_cleanup);
    int rc;
    if (streq (cli->args[0], "pipeline"))
        rc = zq_bench_pipeline (cli);
    else if (streq (cli->args[0], "rpc"))
        rc = zq_bench_rpc (cli);
    else
        return zq_cli_usage_error (cli, "no benchmark '%s' (pipeline or rpc)", cli->args[0]);
    return rc;
}

//  ---- zq bench pipeline -------------------------------------------------------
//  The receiver (this thread) binds PULL; a sender thread connects PUSH,
//  sends the warm-up messages, meets the receiver at a barrier once the
//  receiver has taken every one of them, reads the clock and sends count
//  messages; the receiver reads the clock after the last one.

typedef struct {
    zq_cli_t *cli;
    bool use_zq;
    char endpoint[512]; //  where the receiver bound
    uint64_t warmup;
    uint64_t count;
    const void *payload; //  raw: the frame; zq: the msgpack body
    size_t payload_size;
    pthread_barrier_t barrier;
    int64_t start_ns; //  written by the sender before its first timed send
    int sender_errno; //  0 if the sender finished
} s_pipeline_run_t;

//  Receive timeout that turns a stuck run into an error instead of a hang.
#define S_STALL_MS 10000

static void *
s_pipeline_sender (void *arg)
{
    s_pipeline_run_t *run = (s_pipeline_run_t *)arg;
    zq_queue_t *queue = NULL;
    void *socket = NULL;
    int errnum = 0;
    if (run->use_zq) {
        char connect[520];
        snprintf (connect, sizeof connect, ">%s", run->endpoint);
        queue = zq_queue_new ("pipeline", ZQ_PRODUCER, connect, run->cli->options);
        if (!queue)
            errnum = errno;
    } else {
        socket = zmq_socket (zq_bench_raw_context (), ZMQ_PUSH);
        int immediate = 1; //  as zq's producer does
        if (!socket || zq_bench_raw_options (run->cli, socket) ||
            zmq_setsockopt (socket, ZMQ_IMMEDIATE, &immediate, sizeof immediate) ||
            zmq_connect (socket, run->endpoint))
            errnum = errno;
    }
    bool timed = false;
    for (uint64_t i = 0; errnum == 0 && i < run->warmup + run->count; i++) {
        if (i == run->warmup) {
            pthread_barrier_wait (&run->barrier);
            timed = true;
            run->start_ns = zq_bench_now_ns ();
        }
        if (run->use_zq) {
            zq_msg_t *msg = zq_msg_new ("bench");
            if (!msg || zq_msg_set_body (msg, run->payload, run->payload_size) ||
                zq_queue_send (queue, &msg, S_STALL_MS)) {
                errnum = errno;
                zq_msg_destroy (&msg);
            }
        } else if (zmq_send (socket, run->payload, run->payload_size, 0) < 0)
            errnum = errno;
    }
    if (!timed)
        pthread_barrier_wait (&run->barrier); //  never leave the receiver waiting
    zq_queue_destroy (&queue);
    if (socket)
        zmq_close (socket);
    run->sender_errno = errnum;
    return NULL;
}

//  One run; stores messages per second in *rate_p. Returns 0 or an exit code.
static int
s_pipeline_run (zq_cli_t *cli, bool use_zq, const void *payload, size_t payload_size,
                uint64_t warmup, double *rate_p)
{
    s_pipeline_run_t run;
    memset (&run, 0, sizeof run);
    run.cli = cli;
    run.use_zq = use_zq;
    run.warmup = warmup;
    run.count = cli->count;
    run.payload = payload;
    run.payload_size = payload_size;
    char bind[512];
    if (zq_bench_bind_endpoint (cli, bind, sizeof bind))
        return ZQ_EXIT_TRANSPORT;

    zq_queue_t *queue = NULL;
    void *socket = NULL;
    if (use_zq) {
        char at[520];
        snprintf (at, sizeof at, "@%s", bind);
        queue = zq_queue_new ("pipeline", ZQ_CONSUMER, at, cli->options);
        if (!queue) {
            zq_cli_error (cli, "zq consumer on %s: %s", bind, zq_strerror (errno));
            return ZQ_EXIT_TRANSPORT;
        }
        snprintf (run.endpoint, sizeof run.endpoint, "%s", zq_queue_endpoint (queue));
    } else {
        socket = zmq_socket (zq_bench_raw_context (), ZMQ_PULL);
        size_t length = sizeof run.endpoint;
        if (!socket || zq_bench_raw_options (cli, socket) || zmq_bind (socket, bind) ||
            zmq_getsockopt (socket, ZMQ_LAST_ENDPOINT, run.endpoint, &length)) {
            zq_cli_error (cli, "raw PULL on %s: %s", bind, zmq_strerror (errno));
            if (socket)
                zmq_close (socket);
            return ZQ_EXIT_TRANSPORT;
        }
        int timeout = S_STALL_MS;
        zmq_setsockopt (socket, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    }
    pthread_barrier_init (&run.barrier, NULL, 2);
    pthread_t sender;
    if (pthread_create (&sender, NULL, s_pipeline_sender, &run)) {
        zq_cli_error (cli, "cannot start the sender thread");
        zq_queue_destroy (&queue);
        if (socket)
            zmq_close (socket);
        pthread_barrier_destroy (&run.barrier);
        return ZQ_EXIT_TRANSPORT;
    }
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    int errnum = 0;
    bool timed = false;
    for (uint64_t i = 0; i < run.warmup + run.count; i++) {
        if (i == run.warmup) {
            pthread_barrier_wait (&run.barrier);
            timed = true;
        }
        if (use_zq) {
            zq_msg_t *msg = zq_queue_recv (queue, S_STALL_MS);
            if (!msg) {
                errnum = errno;
                break;
            }
            size_t size;
            zq_msg_body (msg, &size);
            zq_msg_destroy (&msg);
        } else if (zmq_msg_recv (&frame, socket, 0) < 0) {
            errnum = errno;
            break;
        }
    }
    int64_t end_ns = zq_bench_now_ns ();
    if (!timed)
        pthread_barrier_wait (&run.barrier); //  never leave the sender waiting
    zmq_msg_close (&frame);
    pthread_join (sender, NULL);
    zq_queue_destroy (&queue);
    if (socket)
        zmq_close (socket);
    pthread_barrier_destroy (&run.barrier);
    if (errnum || run.sender_errno) {
        zq_cli_error (cli, "%s run failed: %s", use_zq ? "zq" : "raw",
                      zq_strerror (errnum ? errnum : run.sender_errno));
        return ZQ_EXIT_TRANSPORT;
    }
    *rate_p = (double)run.count * 1e9 / (double)(end_ns - run.start_ns);
    return 0;
}

int
zq_bench_pipeline (zq_cli_t *cli)
{
    if (!cli->given[ZQ_OPT_COUNT] || cli->count == 0)
        cli->count = 1000000;
    uint64_t warmup = cli->count / 10;
    warmup = warmup < 1000 ? 1000 : warmup > 100000 ? 100000 : warmup;
    size_t body_size = 0;
    void *body = zq_bench_body (cli->size, &body_size);
    void *frame = calloc (1, cli->size ? cli->size : 1);
    double *raw = (double *)calloc ((size_t)cli->rounds, sizeof (double));
    double *zq = (double *)calloc ((size_t)cli->rounds, sizeof (double));
    int rc = (body && frame && raw && zq) ? 0 : ZQ_EXIT_TRANSPORT;
    if (frame)
        memset (frame, 'a', cli->size);
    zq_bench_progress (cli,
                       "%s size=%zu count=%llu: %d rounds of raw then zq, %llu warm-up messages "
                       "per run (not timed); median reported",
                       cli->transport, cli->size, (unsigned long long)cli->count, cli->rounds,
                       (unsigned long long)warmup);
    for (int round = 0; rc == 0 && round < cli->rounds; round++) {
        rc = s_pipeline_run (cli, false, frame, cli->size, warmup, &raw[round]);
        if (rc == 0)
            rc = s_pipeline_run (cli, true, body, body_size, warmup, &zq[round]);
        if (rc == 0)
            zq_bench_progress (cli, "round %d/%d: raw %.0f msgs/s, zq %.0f msgs/s", round + 1,
                               cli->rounds, raw[round], zq[round]);
        if (zq_cli_interrupted)
            rc = zq_cli_interrupt_exit ();
    }
    if (rc == 0) {
        double raw_rate = zq_bench_median (raw, cli->rounds);
        double zq_rate = zq_bench_median (zq, cli->rounds);
        printf ("pipeline %s size=%zu count=%llu zq_msgs_per_s=%.0f raw_msgs_per_s=%.0f "
                "ratio=%.3f\n",
                cli->transport, cli->size, (unsigned long long)cli->count, zq_rate, raw_rate,
                zq_rate / raw_rate);
    }
    free (body);
    free (frame);
    free (raw);
    free (zq);
    return rc;
}
