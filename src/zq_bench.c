/*  =========================================================================
    zq_bench - zq bench: measures zq against plain libzmq in the same run.

    Every benchmark runs the raw libzmq baseline and zq alternately
    (raw, zq, raw, zq, ...) for --rounds rounds, with the same socket
    types, high-water marks, payload size, transport and count, and
    reports the median of each side on ONE line of key=value pairs that
    ends with ratio=. Warm-up messages are sent before the clock starts
    and are not counted. Progress goes to stderr.

    Each run puts its two sides (receiver and sender, server and client)
    in processes of their own, as two services would be: over tcp and
    ipc each side is a forked process with its own ZeroMQ context (one
    I/O thread each); over inproc both share one forked process. This
    process never creates a ZeroMQ context, so forking stays safe, and it
    stops any side that overruns its deadline.

    This file holds the dispatch and what the benchmarks share;
    src/zq_bench_pipeline.c and src/zq_bench_rpc.c hold the benchmarks.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_cli.h"
#include <dirent.h>
#include <msgpack.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

//  A run that takes longer than this is stopped and reported as failed.
#define S_RUN_DEADLINE_MS (300 * 1000)

static char s_ipc_dir[256];
static unsigned s_endpoint_sequence;
static void *s_raw_context;
static pid_t s_bench_pid;

int64_t
zq_bench_now_ns (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

//  At exit: the bench process removes its ipc directory; each side
//  terminates its raw context (which waits for linger, as a service would).
static void
s_cleanup (void)
{
    if (s_raw_context) {
        zmq_ctx_term (s_raw_context);
        s_raw_context = NULL;
    }
    if (getpid () != s_bench_pid || !*s_ipc_dir)
        return;
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

//  Writes into buffer an endpoint to bind for one run over the transport.
static int
s_bind_endpoint (zq_cli_t *cli, char *buffer, size_t size)
{
    s_endpoint_sequence++;
    if (streq (cli->transport, "tcp"))
        snprintf (buffer, size, "tcp://127.0.0.1:*");
    else if (streq (cli->transport, "inproc"))
        snprintf (buffer, size, "inproc://zq-bench-%u", s_endpoint_sequence);
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

//  ---- Running the two sides -----------------------------------------------

void
zq_bench_bound (zq_bench_run_t *run, const char *endpoint)
{
    if (run->endpoint_fd >= 0) {
        char line[sizeof run->endpoint];
        size_t length = (size_t)snprintf (line, sizeof line, "%s\n", endpoint);
        if (write (run->endpoint_fd, line, length) != (ssize_t)length)
            return; //  the bench process sees no endpoint and reports it
    }
}

void
zq_bench_go (zq_bench_run_t *run)
{
    char go = 'g';
    while (write (run->go_write_fd, &go, 1) < 0 && errno == EINTR)
        ;
}

int
zq_bench_go_wait (zq_bench_run_t *run)
{
    char go;
    ssize_t got;
    while ((got = read (run->go_read_fd, &go, 1)) < 0 && errno == EINTR)
        ;
    return got == 1 ? 0 : -1;
}

typedef struct {
    zq_bench_run_t *run;
    zq_bench_side_fn *side;
    zq_bench_result_t result;
} s_thread_t;

static void *
s_side_thread (void *arg)
{
    s_thread_t *thread = (s_thread_t *)arg;
    thread->side (thread->run, &thread->result);
    return NULL;
}

static void
s_report (int fd, const zq_bench_result_t *result)
{
    if (write (fd, result, sizeof *result) != (ssize_t)sizeof *result)
        _exit (1);
}

//  Reads one result from fd before the deadline; -1 on timeout or EOF.
static int
s_read_result (int fd, int64_t deadline_ns, zq_bench_result_t *result)
{
    size_t have = 0;
    while (have < sizeof *result) {
        int64_t left_ms = (deadline_ns - zq_bench_now_ns ()) / 1000000;
        if (left_ms <= 0)
            return -1;
        struct pollfd item = {fd, POLLIN, 0};
        int rc = poll (&item, 1, (int)left_ms);
        if (rc < 0 && errno == EINTR) {
            if (zq_cli_interrupted)
                return -1;
            continue;
        }
        if (rc <= 0)
            return -1;
        ssize_t got = read (fd, (char *)result + have, sizeof *result - have);
        if (got <= 0)
            return -1;
        have += (size_t)got;
    }
    return 0;
}

//  Reads the endpoint line the binder reports; -1 if none comes in time.
static int
s_read_endpoint (int fd, int64_t deadline_ns, char *endpoint, size_t size)
{
    size_t have = 0;
    while (have + 1 < size) {
        int64_t left_ms = (deadline_ns - zq_bench_now_ns ()) / 1000000;
        struct pollfd item = {fd, POLLIN, 0};
        if (left_ms <= 0 || poll (&item, 1, (int)left_ms) <= 0)
            return -1;
        ssize_t got = read (fd, endpoint + have, 1);
        if (got <= 0)
            return -1;
        if (endpoint[have] == '\n') {
            endpoint[have] = '\0';
            return 0;
        }
        have++;
    }
    return -1;
}

int
zq_bench_run (zq_bench_run_t *run, zq_bench_side_fn *binder, zq_bench_side_fn *connector,
              zq_bench_result_t *binder_result, zq_bench_result_t *connector_result)
{
    zq_cli_t *cli = run->cli;
    if (s_bind_endpoint (cli, run->bind, sizeof run->bind))
        return ZQ_EXIT_TRANSPORT;
    bool inproc = streq (cli->transport, "inproc");
    int endpoint_pipe[2], go_pipe[2], binder_pipe[2], connector_pipe[2];
    if (pipe (endpoint_pipe) || pipe (go_pipe) || pipe (binder_pipe) || pipe (connector_pipe)) {
        zq_cli_error (cli, "pipe: %s", strerror (errno));
        return ZQ_EXIT_TRANSPORT;
    }
    run->go_read_fd = go_pipe[0];
    run->go_write_fd = go_pipe[1];
    fflush (stdout);
    fflush (stderr);
    pid_t children[2] = {-1, -1};
    children[0] = fork ();
    if (children[0] == 0) {
        //  The binder's process (and, over inproc, the connector's too).
        run->endpoint_fd = endpoint_pipe[1];
        if (inproc) {
            snprintf (run->endpoint, sizeof run->endpoint, "%s", run->bind);
            //  Both threads must share one context: make it before either runs.
            if (run->use_zq)
                zsys_init ();
            else
                zq_bench_raw_context ();
            s_thread_t thread = {run, binder, {0, 0, 0, 0, 0}};
            pthread_t binder_thread;
            if (pthread_create (&binder_thread, NULL, s_side_thread, &thread))
                _exit (1);
            zq_bench_result_t result = {0, 0, 0, 0, 0};
            connector (run, &result);
            pthread_join (binder_thread, NULL);
            s_report (connector_pipe[1], &result);
            s_report (binder_pipe[1], &thread.result);
        } else {
            zq_bench_result_t result = {0, 0, 0, 0, 0};
            binder (run, &result);
            s_report (binder_pipe[1], &result);
        }
        exit (0);
    }
    int64_t deadline_ns = zq_bench_now_ns () + (int64_t)S_RUN_DEADLINE_MS * 1000000;
    int rc = children[0] < 0 ? -1 : 0;
    if (rc == 0 &&
        s_read_endpoint (endpoint_pipe[0], deadline_ns, run->endpoint, sizeof run->endpoint))
        rc = -1;
    if (rc == 0 && !inproc) {
        children[1] = fork ();
        if (children[1] == 0) {
            run->endpoint_fd = -1;
            zq_bench_result_t result = {0, 0, 0, 0, 0};
            connector (run, &result);
            s_report (connector_pipe[1], &result);
            exit (0);
        }
        if (children[1] < 0)
            rc = -1;
    }
    if (rc == 0 && (s_read_result (binder_pipe[0], deadline_ns, binder_result) ||
                    s_read_result (connector_pipe[0], deadline_ns, connector_result)))
        rc = -1;
    for (int i = 0; i < 2; i++)
        if (children[i] > 0) {
            if (rc)
                kill (children[i], SIGKILL);
            while (waitpid (children[i], NULL, 0) < 0 && errno == EINTR)
                ;
        }
    int fds[] = {endpoint_pipe[0], endpoint_pipe[1], go_pipe[0],        go_pipe[1],
                 binder_pipe[0],   binder_pipe[1],   connector_pipe[0], connector_pipe[1]};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        close (fds[i]);
    if (rc) {
        if (zq_cli_interrupted)
            return zq_cli_interrupt_exit ();
        zq_cli_error (cli, "%s run on %s did not complete", run->use_zq ? "zq" : "raw", run->bind);
        return ZQ_EXIT_TRANSPORT;
    }
    if (binder_result->errnum || connector_result->errnum) {
        zq_cli_error (cli, "%s run on %s failed: binding side: %s; connecting side: %s",
                      run->use_zq ? "zq" : "raw", run->bind,
                      binder_result->errnum ? zq_strerror (binder_result->errnum) : "ok",
                      connector_result->errnum ? zq_strerror (connector_result->errnum) : "ok");
        return ZQ_EXIT_TRANSPORT;
    }
    return 0;
}

int
zq_cli_bench (zq_cli_t *cli)
{
    s_bench_pid = getpid ();
    atexit (s_cleanup);
    if (streq (cli->args[0], "pipeline"))
        return zq_bench_pipeline (cli);
    if (streq (cli->args[0], "rpc"))
        return zq_bench_rpc (cli);
    return zq_cli_usage_error (cli, "no benchmark '%s' (pipeline or rpc)", cli->args[0]);
}
