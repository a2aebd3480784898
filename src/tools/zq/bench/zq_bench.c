/*  =========================================================================
    zq_bench - zq bench: measures zq against plain libzmq in the same run.

    Every benchmark runs the raw libzmq baseline and zq for --rounds
    rounds, with the same socket types, high-water marks, payload size,
    transport and count, and reports the median of each side on ONE line
    of key=value pairs that ends with ratio=: alternately (raw, zq, raw,
    zq, ...), but rpc, which runs both side by side in every round (a
    run's `both`). Warm-up messages are sent before the clock starts and
    are not counted. Progress goes to stderr.

    Each run puts its two sides (receiver and sender, server and client)
    in processes of their own, as two services would be: over tcp and
    ipc each side is a forked process with its own ZeroMQ context (one
    I/O thread each; two with both, the raw side's and zq's); over inproc
    both share one forked process. This
    process never creates a ZeroMQ context, so forking stays safe, and it
    stops any side that overruns its deadline.

    The durability benchmarks (spool, reliable, device) run each part in
    a forked process of its own too (zq_bench_spawn). Their latencies are
    set beside the disk's own fdatasync, measured in the same run; their
    throughputs (reliable e2e, device) beside a raw libzmq relay standing
    where the server stands, with the same processes and no storage
    (src/tools/zq/bench/zq_bench_relay.c). The spool's append rate has no raw side: it
    prints the fsyncs it needed instead.

    This file holds the dispatch and what the benchmarks share;
    zq_bench_pipeline.c, zq_bench_rpc.c, zq_bench_spool.c,
    zq_bench_reliable.c and zq_bench_device.c (all in src/tools/zq/bench/)
    hold the benchmarks.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#define _GNU_SOURCE //  sched_getaffinity, sched_setaffinity (--pin)
#include "zq_cli.h"
#include <dirent.h>
#include <msgpack.h>
#include <poll.h>
#include <pthread.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

//  A run that takes longer than this is stopped and reported as failed.
#define S_RUN_DEADLINE_MS (300 * 1000)
//  A whole durability benchmark must be done within this.
#define S_BENCH_DEADLINE_MS (1800 * 1000)

static char s_ipc_dir[256];
static unsigned s_endpoint_sequence;
static void *s_raw_context;
static pid_t s_bench_pid;
static int64_t s_bench_deadline_ns;

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
    //  As zq_queue applies them (kernel buffers only when set).
    const char *names[] = {"sndhwm", "rcvhwm", "linger_ms", "sndbuf_bytes", "rcvbuf_bytes"};
    const int options[] = {ZMQ_SNDHWM, ZMQ_RCVHWM, ZMQ_LINGER, ZMQ_SNDBUF, ZMQ_RCVBUF};
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++) {
        int64_t value = 0;
        zq_options_get_int (cli->options, names[i], &value);
        int value_int = (int)value;
        if (i >= 3 && value_int <= 0)
            continue;
        if (zmq_setsockopt (socket, options[i], &value_int, sizeof value_int))
            return -1;
    }
    return 0;
}

void
zq_bench_run_init (zq_bench_run_t *run, zq_cli_t *cli, bool use_zq, uint64_t warmup,
                   const void *body, size_t body_size, const void *frame)
{
    memset (run, 0, sizeof *run);
    run->cli = cli;
    run->use_zq = use_zq;
    run->warmup = warmup;
    run->count = cli->count;
    run->payload = use_zq ? body : frame;
    run->payload_size = use_zq ? body_size : cli->size;
    run->raw_payload = frame;
    run->raw_payload_size = cli->size;
}

uint64_t
zq_bench_payloads (zq_cli_t *cli, uint64_t default_count, uint64_t warmup_max, void **body_p,
                   size_t *body_size_p, void **frame_p)
{
    if (!cli->given[ZQ_OPT_COUNT] || cli->count == 0)
        cli->count = default_count;
    uint64_t warmup = cli->count / 10;
    warmup = warmup < 1000 ? 1000 : warmup > warmup_max ? warmup_max : warmup;
    *body_size_p = 0;
    *body_p = zq_bench_body (cli->size, body_size_p);
    *frame_p = malloc (cli->size ? cli->size : 1);
    if (*frame_p)
        memset (*frame_p, 'a', cli->size);
    return warmup;
}

//  Opens the zq side's queue at prefix ('@' binds, '>' connects) and
//  address; NULL with result->errnum set if it cannot.
static zq_queue_t *
s_queue_open (zq_bench_run_t *run, const char *pattern, zq_role_t role, char prefix,
              const char *address, zq_bench_result_t *result)
{
    char endpoints[520];
    snprintf (endpoints, sizeof endpoints, "%c%s", prefix, address);
    zq_queue_t *queue = zq_queue_new (pattern, role, endpoints, run->cli->options);
    if (!queue)
        result->errnum = errno;
    return queue;
}

zq_queue_t *
zq_bench_queue_bind (zq_bench_run_t *run, const char *pattern, zq_role_t role,
                     zq_bench_result_t *result)
{
    zq_queue_t *queue = s_queue_open (run, pattern, role, '@', run->bind, result);
    if (queue)
        zq_bench_bound (run, zq_queue_endpoint (queue));
    return queue;
}

zq_queue_t *
zq_bench_queue_connect (zq_bench_run_t *run, const char *pattern, zq_role_t role,
                        zq_bench_result_t *result)
{
    return s_queue_open (run, pattern, role, '>', run->endpoint, result);
}

void *
zq_bench_raw_bind (zq_bench_run_t *run, int type, int timeout_ms, zq_bench_result_t *result)
{
    void *socket = zmq_socket (zq_bench_raw_context (), type);
    char endpoint[512];
    size_t length = sizeof endpoint;
    if (!socket || zq_bench_raw_options (run->cli, socket) ||
        zmq_setsockopt (socket, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms) ||
        zmq_bind (socket, run->both ? run->bind_raw : run->bind) ||
        zmq_getsockopt (socket, ZMQ_LAST_ENDPOINT, endpoint, &length)) {
        result->errnum = errno;
        if (socket)
            zmq_close (socket);
        return NULL;
    }
    zq_bench_bound (run, endpoint);
    return socket;
}

void *
zq_bench_raw_dealer (zq_cli_t *cli, const char *endpoint, bool immediate)
{
    void *socket = zmq_socket (zq_bench_raw_context (), ZMQ_DEALER);
    int timeout = ZQ_BENCH_STALL_MS, on = 1;
    if (!socket || zq_bench_raw_options (cli, socket) ||
        zmq_setsockopt (socket, ZMQ_RCVTIMEO, &timeout, sizeof timeout) ||
        zmq_setsockopt (socket, ZMQ_SNDTIMEO, &timeout, sizeof timeout) ||
        (immediate && zmq_setsockopt (socket, ZMQ_IMMEDIATE, &on, sizeof on)) ||
        zmq_connect (socket, endpoint)) {
        int saved = errno;
        if (socket)
            zmq_close (socket);
        errno = saved;
        return NULL;
    }
    return socket;
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

int
zq_bench_read_line (int fd, int64_t deadline_ns, char *line, size_t size)
{
    size_t have = 0;
    while (have + 1 < size) {
        int64_t left_ms = (deadline_ns - zq_bench_now_ns ()) / 1000000;
        struct pollfd item = {fd, POLLIN, 0};
        if (left_ms <= 0 || poll (&item, 1, (int)left_ms) <= 0 || read (fd, line + have, 1) != 1)
            return -1;
        if (line[have] == '\n') {
            line[have] = '\0';
            return 0;
        }
        have++;
    }
    return -1;
}

//  --pin: the first two CPUs this process may run on, the binder's and
//  the connector's, said on stderr. Returns 0, or a usage error's exit
//  code (inproc: one process; fewer than two CPUs).
static int
s_pin_cpus (zq_cli_t *cli, bool inproc, int *cpus)
{
    if (inproc)
        return zq_cli_usage_error (cli, "--pin wants tcp or ipc: over inproc both sides share one"
                                        " process");
    cpu_set_t allowed;
    CPU_ZERO (&allowed);
    int found = 0;
    if (sched_getaffinity (0, sizeof allowed, &allowed) == 0)
        for (int cpu = 0; cpu < CPU_SETSIZE && found < 2; cpu++)
            if (CPU_ISSET (cpu, &allowed))
                cpus[found++] = cpu;
    if (found < 2)
        return zq_cli_usage_error (cli, "--pin needs two CPUs, and this process may use %d",
                                   CPU_COUNT (&allowed));
    fprintf (stderr, "zq bench: --pin: the binder's process on CPU %d, the connector's on CPU %d\n",
             cpus[0], cpus[1]);
    return 0;
}

//  In a child just forked, before it makes a thread: runs it on cpu (-1:
//  anywhere). A failure leaves it unpinned and says so.
static void
s_pin_to (int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t one;
    CPU_ZERO (&one);
    CPU_SET (cpu, &one);
    if (sched_setaffinity (0, sizeof one, &one))
        fprintf (stderr, "zq bench: --pin: CPU %d: %s\n", cpu, strerror (errno));
}

//  What a run measures, for its error messages.
static const char *
s_sides (const zq_bench_run_t *run)
{
    return run->both ? "zq and raw" : run->use_zq ? "zq" : "raw";
}

int
zq_bench_run (zq_bench_run_t *run, zq_bench_side_fn *binder, zq_bench_side_fn *connector,
              zq_bench_result_t *binder_result, zq_bench_result_t *connector_result)
{
    zq_cli_t *cli = run->cli;
    if (s_bind_endpoint (cli, run->bind, sizeof run->bind) ||
        (run->both && s_bind_endpoint (cli, run->bind_raw, sizeof run->bind_raw)))
        return ZQ_EXIT_TRANSPORT;
    bool inproc = streq (cli->transport, "inproc");
    int cpus[2] = {-1, -1};
    if (cli->given[ZQ_OPT_PIN]) {
        int usage = s_pin_cpus (cli, inproc, cpus);
        if (usage)
            return usage;
    }
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
        s_pin_to (cpus[0]);
        run->endpoint_fd = endpoint_pipe[1];
        if (inproc) {
            snprintf (run->endpoint, sizeof run->endpoint, "%s", run->bind);
            snprintf (run->endpoint_raw, sizeof run->endpoint_raw, "%s", run->bind_raw);
            //  Both threads must share one context: make it before either runs.
            if (run->use_zq || run->both)
                zsys_init ();
            if (!run->use_zq || run->both)
                zq_bench_raw_context ();
            s_thread_t thread;
            memset (&thread, 0, sizeof thread);
            thread.run = run;
            thread.side = binder;
            pthread_t binder_thread;
            if (pthread_create (&binder_thread, NULL, s_side_thread, &thread))
                _exit (1);
            zq_bench_result_t result;
            memset (&result, 0, sizeof result);
            connector (run, &result);
            pthread_join (binder_thread, NULL);
            s_report (connector_pipe[1], &result);
            s_report (binder_pipe[1], &thread.result);
        } else {
            zq_bench_result_t result;
            memset (&result, 0, sizeof result);
            binder (run, &result);
            s_report (binder_pipe[1], &result);
        }
        exit (0);
    }
    //  Only the binder writes endpoints: once it exits, a read finds the end.
    close (endpoint_pipe[1]);
    endpoint_pipe[1] = -1;
    int64_t deadline_ns = zq_bench_now_ns () + (int64_t)S_RUN_DEADLINE_MS * 1000000;
    int rc = children[0] < 0 ? -1 : 0;
    bool bind_failed = false;
    if (rc == 0 &&
        (zq_bench_read_line (endpoint_pipe[0], deadline_ns, run->endpoint, sizeof run->endpoint) ||
         (run->both && zq_bench_read_line (endpoint_pipe[0], deadline_ns, run->endpoint_raw,
                                           sizeof run->endpoint_raw)))) {
        rc = -1;
        //  A binder that could not bind reports why before it exits.
        bind_failed =
            s_read_result (binder_pipe[0], zq_bench_now_ns () + 1000000000, binder_result) == 0 &&
            binder_result->errnum;
    }
    if (rc == 0 && !inproc) {
        children[1] = fork ();
        if (children[1] == 0) {
            s_pin_to (cpus[1]);
            run->endpoint_fd = -1;
            zq_bench_result_t result;
            memset (&result, 0, sizeof result);
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
        if (fds[i] >= 0)
            close (fds[i]);
    if (zq_cli_interrupted && rc)
        return zq_cli_interrupt_exit ();
    if (!rc && !binder_result->errnum && !connector_result->errnum)
        return 0;
    //  "raw-zq run on ENDPOINT[ and ENDPOINT]" begins every failure.
    char where[1100];
    snprintf (where, sizeof where, "%s run on %s%s%s", s_sides (run), run->bind,
              run->both ? " and " : "", run->both ? run->bind_raw : "");
    if (rc && bind_failed)
        zq_cli_error (cli, "%s failed: binding side: %s", where,
                      zq_strerror (binder_result->errnum));
    else if (rc)
        zq_cli_error (cli, "%s did not complete", where);
    else
        zq_cli_error (cli, "%s failed: binding side: %s; connecting side: %s", where,
                      binder_result->errnum ? zq_strerror (binder_result->errnum) : "ok",
                      connector_result->errnum ? zq_strerror (connector_result->errnum) : "ok");
    return ZQ_EXIT_TRANSPORT;
}

//  ---- Processes of the durability benchmarks -------------------------------

int
zq_bench_spawn (zq_bench_child_t *child, zq_bench_child_fn *fn, zq_cli_t *cli, void *arg)
{
    child->pid = -1;
    child->result_fd = -1;
    int result_pipe[2];
    if (pipe (result_pipe))
        return -1;
    fflush (stdout);
    fflush (stderr);
    pid_t pid = fork ();
    if (pid < 0) {
        int saved = errno;
        close (result_pipe[0]);
        close (result_pipe[1]);
        errno = saved;
        return -1;
    }
    if (pid == 0) {
        close (result_pipe[0]);
        zq_bench_result_t result;
        memset (&result, 0, sizeof result);
        fn (cli, arg, &result);
        result.max_rss_kib = zq_bench_max_rss_kib ();
        s_report (result_pipe[1], &result);
        exit (0);
    }
    close (result_pipe[1]);
    child->pid = pid;
    child->result_fd = result_pipe[0];
    return 0;
}

void
zq_bench_kill (zq_bench_child_t *child)
{
    if (child->pid > 0) {
        kill (child->pid, SIGKILL);
        while (waitpid (child->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    child->pid = -1;
    if (child->result_fd >= 0)
        close (child->result_fd);
    child->result_fd = -1;
}

//  Waits until the other end of fd closes, before deadline_ns. Returns 0,
//  or -1 if it is still open then.
static int
s_wait_eof (int fd, int64_t deadline_ns)
{
    char byte;
    while (true) {
        int64_t left_ms = (deadline_ns - zq_bench_now_ns ()) / 1000000;
        struct pollfd item = {fd, POLLIN, 0};
        if (left_ms <= 0 || poll (&item, 1, (int)left_ms) < 0)
            return -1;
        if (item.revents && read (fd, &byte, 1) <= 0)
            return 0;
    }
}

int
zq_bench_collect (zq_bench_child_t *child, int64_t deadline_ns, zq_bench_result_t *result)
{
    memset (result, 0, sizeof *result);
    if (child->pid <= 0 || child->result_fd < 0) {
        result->errnum = EINVAL;
        return -1;
    }
    if (deadline_ns > zq_bench_deadline_ns ())
        deadline_ns = zq_bench_deadline_ns ();
    int rc = s_read_result (child->result_fd, deadline_ns, result);
    if (rc) {
        //  Timed out, interrupted, or the child died without a report.
        bool timed_out = zq_bench_now_ns () >= deadline_ns;
        zq_bench_kill (child);
        memset (result, 0, sizeof *result);
        result->errnum = timed_out ? ETIMEDOUT : zq_cli_interrupted ? EINTR : EPIPE;
        return -1;
    }
    //  Reported; its end of the pipe closes when it exits (after its
    //  context's linger): a child still there at the deadline is killed.
    result->cpu_ns = -1;
    if (s_wait_eof (child->result_fd, deadline_ns)) {
        zq_bench_kill (child);
        return 0;
    }
    struct rusage usage;
    pid_t reaped;
    while ((reaped = wait4 (child->pid, NULL, 0, &usage)) < 0 && errno == EINTR)
        ;
    if (reaped == child->pid)
        result->cpu_ns =
            ((int64_t)usage.ru_utime.tv_sec + (int64_t)usage.ru_stime.tv_sec) * 1000000000 +
            ((int64_t)usage.ru_utime.tv_usec + (int64_t)usage.ru_stime.tv_usec) * 1000;
    child->pid = -1;
    close (child->result_fd);
    child->result_fd = -1;
    return 0;
}

int64_t
zq_bench_deadline_ns (void)
{
    if (!s_bench_deadline_ns)
        s_bench_deadline_ns = zq_bench_now_ns () + (int64_t)S_BENCH_DEADLINE_MS * 1000000;
    return s_bench_deadline_ns;
}

static int
s_compare_int64 (const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

void
zq_bench_percentiles (int64_t *samples_ns, size_t count, double *p50_us, double *p99_us)
{
    *p50_us = *p99_us = 0;
    if (count == 0)
        return;
    qsort (samples_ns, count, sizeof (int64_t), s_compare_int64);
    size_t p99_index = (size_t)((double)count * 0.99);
    if (p99_index >= count)
        p99_index = count - 1;
    *p50_us = (double)samples_ns[count / 2] / 1000.0;
    *p99_us = (double)samples_ns[p99_index] / 1000.0;
}

void
zq_bench_print_confirm (const char *label, size_t size, uint64_t count, double *confirm50,
                        double *confirm99, double *fsync50, double *fsync99, int rounds)
{
    double f50 = zq_bench_median (fsync50, rounds), f99 = zq_bench_median (fsync99, rounds);
    double c50 = zq_bench_median (confirm50, rounds), c99 = zq_bench_median (confirm99, rounds);
    printf ("%s size=%zu count=%llu p50_us=%.1f p99_us=%.1f fsync_p50_us=%.1f "
            "fsync_p99_us=%.1f over_fsync_us=%.1f ratio=%.3f\n",
            label, size, (unsigned long long)count, c50, c99, f50, f99, c50 - f50,
            f50 > 0 ? c50 / f50 : 0);
}

int
zq_bench_fsync_latency (const char *dir, size_t size, uint64_t warmup, uint64_t count,
                        double *p50_us, double *p99_us)
{
    char path[1024];
    snprintf (path, sizeof path, "%s/zq-bench-fsync-XXXXXX", dir);
    int fd = mkstemp (path);
    if (fd < 0)
        return -1;
    int64_t *samples = (int64_t *)calloc (count ? count : 1, sizeof (int64_t));
    char *data = (char *)malloc (size ? size : 1);
    int rc = samples && data ? 0 : -1;
    if (rc)
        errno = ENOMEM;
    else
        memset (data, 'f', size);
    for (uint64_t i = 0; rc == 0 && i < warmup + count; i++) {
        int64_t start = zq_bench_now_ns ();
        if (write (fd, data, size) != (ssize_t)size || fdatasync (fd)) {
            if (errno == 0)
                errno = EIO;
            rc = -1;
            break;
        }
        if (i >= warmup)
            samples[i - warmup] = zq_bench_now_ns () - start;
        if (zq_cli_interrupted || zq_bench_now_ns () > zq_bench_deadline_ns ()) {
            errno = zq_cli_interrupted ? EINTR : ETIMEDOUT;
            rc = -1;
        }
    }
    int saved = errno;
    if (rc == 0)
        zq_bench_percentiles (samples, count, p50_us, p99_us);
    close (fd);
    unlink (path);
    free (samples);
    free (data);
    errno = saved;
    return rc;
}

int
zq_bench_mkdtemp (const char *parent, const char *prefix, char *path, size_t size)
{
    if ((size_t)snprintf (path, size, "%s/%s-XXXXXX", parent, prefix) >= size) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return mkdtemp (path) ? 0 : -1;
}

void
zq_bench_rmtree (const char *dir, int depth)
{
    DIR *handle = opendir (dir);
    if (handle) {
        struct dirent *entry;
        while ((entry = readdir (handle))) {
            if (streq (entry->d_name, ".") || streq (entry->d_name, ".."))
                continue;
            char path[1024];
            snprintf (path, sizeof path, "%s/%s", dir, entry->d_name);
            struct stat info;
            if (lstat (path, &info) == 0 && S_ISDIR (info.st_mode)) {
                if (depth > 0)
                    zq_bench_rmtree (path, depth - 1);
            } else
                unlink (path);
        }
        closedir (handle);
    }
    rmdir (dir);
}

const char *
zq_bench_dir (zq_cli_t *cli)
{
    if (cli->dir)
        return cli->dir;
    const char *tmp = getenv ("TMPDIR");
    return tmp && *tmp ? tmp : "/var/tmp";
}

int64_t
zq_bench_cpu_ns (pid_t pid)
{
    clockid_t clock;
    struct timespec used;
    if (clock_getcpuclockid (pid, &clock) || clock_gettime (clock, &used))
        return -1;
    return (int64_t)used.tv_sec * 1000000000 + used.tv_nsec;
}

int64_t
zq_bench_max_rss_kib (void)
{
    struct rusage usage;
    if (getrusage (RUSAGE_SELF, &usage))
        return -1;
    return (int64_t)usage.ru_maxrss;
}

int
zq_cli_bench (zq_cli_t *cli)
{
    s_bench_pid = getpid ();
    atexit (s_cleanup);
    zq_bench_deadline_ns ();
    //  A run counts every message its sender sent, so a sender that closes
    //  must give libzmq time to pass them all on (a 1 s linger lost the
    //  tail of a run on a loaded machine); zq and raw sockets alike, and
    //  bounded, so a sender whose peer died still ends.
    if (!zq_options_is_set (cli->options, "linger_ms")) {
        char stall[32];
        snprintf (stall, sizeof stall, "%d", ZQ_BENCH_STALL_MS);
        if (zq_options_set (cli->options, "linger_ms", stall))
            return zq_cli_failure (cli, "bench", errno);
    }
    if (cli->given[ZQ_OPT_PIN] && !streq (cli->args[0], "pipeline") && !streq (cli->args[0], "rpc"))
        return zq_cli_usage_error (cli, "--pin is for bench pipeline and rpc");
    if (streq (cli->args[0], "pipeline"))
        return zq_bench_pipeline (cli);
    if (streq (cli->args[0], "rpc"))
        return zq_bench_rpc (cli);
    if (streq (cli->args[0], "spool"))
        return zq_bench_spool (cli);
    if (streq (cli->args[0], "reliable"))
        return zq_bench_reliable (cli);
    if (streq (cli->args[0], "device"))
        return zq_bench_device (cli);
    if (streq (cli->args[0], "jetstream"))
        return zq_bench_jetstream (cli);
    return zq_cli_usage_error (cli,
                               "no benchmark '%s' (pipeline, rpc, spool, reliable, device or "
                               "jetstream)",
                               cli->args[0]);
}

zq_queue_t *
zq_bench_consumer_open (zq_cli_t *cli, const char *endpoint, zq_bench_result_t *result)
{
    char connect[1200];
    snprintf (connect, sizeof connect, ">%s", endpoint);
    zq_queue_t *queue = zq_queue_new ("reliable", ZQ_CONSUMER, connect, cli->options);
    if (!queue || zq_queue_subscribe (queue, ZQ_BENCH_QUEUE)) {
        result->errnum = errno;
        zq_queue_destroy (&queue);
    }
    return queue;
}

int
zq_bench_take_one (zq_queue_t *queue, zq_bench_result_t *result)
{
    zq_msg_t *msg = zq_queue_recv (queue, ZQ_BENCH_STALL_MS);
    if (!msg || zq_queue_ack (queue, msg)) {
        result->errnum = errno;
        zq_msg_destroy (&msg);
        return -1;
    }
    zq_msg_destroy (&msg);
    result->messages++;
    return 0;
}

int
zq_bench_drain_confirms (zq_queue_t *queue, uint64_t *confirmed_p)
{
    int64_t stall = zq_bench_now_ns () + (int64_t)ZQ_BENCH_STALL_MS * 1000000;
    uint8_t id[ZQ_MSG_ID_SIZE];
    while (true) {
        while (zq_queue_confirmed (queue, id) == 0) {
            if (confirmed_p)
                (*confirmed_p)++;
            stall = zq_bench_now_ns () + (int64_t)ZQ_BENCH_STALL_MS * 1000000;
        }
        if (errno != EAGAIN)
            return -1;
        if (zq_queue_next_timer_ms (queue) < 0)
            return 0;
        if (zq_bench_now_ns () > stall) {
            errno = ETIMEDOUT;
            return -1;
        }
        //  The fd rule: ask the queue before sleeping on its fd.
        int events = zq_queue_events (queue);
        if (events < 0)
            return -1;
        if (events & ZQ_POLLIN)
            continue;
        struct pollfd item = {zq_queue_fd (queue), POLLIN, 0};
        poll (&item, 1, 10);
    }
}
