/*  =========================================================================
    zq_bench_device - zq bench device: zqd, started by the benchmark on
    loopback with a spool in a new directory under --dir and fsync=always,
    between producer and consumer processes of the reliable pattern.

    Each round starts a zqd of its own, then:
      - put: P producer processes (--producers) each post their share of
        count messages to queue "bench" while no consumer runs (a window of
        max_in_flight unconfirmed posts each, after a confirmed warm-up);
        all start together; timed from the first start to the last confirm;
      - drain: one consumer takes and acks that whole backlog; timed from
        its start to its last ack. Its prefetch window is its rcvhwm (1000
        by default), the receive queue the raw consumer has, unless -o
        prefetch gives another;
      - e2e: a consumer subscribes and takes the producers' warm-up
        messages, then the producers put count messages while it takes and
        acks them; timed from the first producer's start to the last ack.
    Before each zq round, the raw libzmq baseline runs the same three
    (src/tools/zq/bench/zq_bench_relay.c): the same producer and consumer processes and
    message sizes, with a relay process of plain ROUTER sockets standing
    where zqd stands, and no storage, no confirms, no acks. Each line
    reports the median of both sides and ratio = zq / raw, then the CPU
    time per message moved (warm-up included) of each side's processes:
    zqd's during the phase, the clients' and the relay's from start to exit
    (so raw's also holds its relay's start and end, a fixed cost that
    weighs at small counts only).
    With --backlog N, a last zqd gets N messages put into it; then zqd gets
    SIGTERM (stop_s: until it exited) and is started again on the same
    spool; restart_s runs from starting it until it answers an admin STAT
    (which must show the N messages). Then it is killed with SIGKILL and
    started again (kill_restart_s, timed the same way: the spool was not
    closed), and one consumer drains the whole backlog. zqd's memory
    comes from /proc/PID/status (VmRSS, VmHWM) at that backlog, before the
    stop, after each restart and after the drain; the producers' and the
    consumer's from their peak resident set.

    zqd is the one beside this zq (or ZQ_ZQD names it).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_cli.h"
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

//  zqd must start (and stop) within this.
#define S_ZQD_MS 60000
//  Untimed messages each producer puts first.
#define S_WARMUP 1000

typedef struct {
    pid_t pid;
    char dir[1024];      //  the run's directory (spool, log)
    char endpoint[1100]; //  device/bind, resolved
    char admin[1100];    //  device/admin, resolved
} s_zqd_t;

typedef struct {
    char endpoint[1100];
    char admin[1100];
    const void *body;
    size_t body_size;
    int index; //  producer's number, from 0
    int producers;
    uint64_t warmup;     //  producer: its untimed messages; consumer: all of them
    uint64_t count;      //  producer: its timed messages; consumer: what it takes
    bool progress;       //  producer 0 reports progress on stderr
    bool wait_empty;     //  prober: until depth is 0, not just an answer
    uint64_t want_depth; //  prober: the depth it must see (restart)
    pid_t zqd;           //  the zqd of the round (its CPU counts)
    int ready_pipe[2];   //  producers -> bench: warm-up confirmed
    int go_pipe[2];      //  bench or consumer -> producers: go
    //  Out: the peak resident set of the last s_put's producers (the
    //  largest) and of the last s_put's or s_drain's consumer.
    int64_t producer_rss_kib;
    int64_t consumer_rss_kib;
} s_device_arg_t;

//  ---- zqd --------------------------------------------------------------------

//  Finds zqd: $ZQ_ZQD, else beside this program (in a libtool build tree
//  the program runs from .libs/, zqd's wrapper is one level up), else PATH.
static void
s_zqd_path (char *path, size_t size)
{
    const char *given = getenv ("ZQ_ZQD");
    if (given && *given) {
        snprintf (path, size, "%s", given);
        return;
    }
    char self[PATH_MAX];
    ssize_t length = readlink ("/proc/self/exe", self, sizeof self - 1);
    if (length > 0) {
        self[length] = '\0';
        char *slash = strrchr (self, '/');
        if (slash) {
            *slash = '\0';
            size_t dir_length = strlen (self);
            if (dir_length >= 6 && streq (self + dir_length - 6, "/.libs")) {
                self[dir_length - 6] = '\0';
                snprintf (path, size, "%s/zqd", self);
                if (access (path, X_OK) == 0)
                    return;
                self[dir_length - 6] = '/';
            }
            snprintf (path, size, "%s/zqd", self);
            if (access (path, X_OK) == 0)
                return;
        }
    }
    snprintf (path, size, "zqd");
}

//  Starts zqd on the spool in zqd->dir, with admin on admin_bind; fills
//  the endpoints it prints. Returns 0, or -1 after printing why.
static int
s_zqd_start (zq_cli_t *cli, s_zqd_t *zqd, const char *admin_bind)
{
    char zqd_path[PATH_MAX + 8], spool[1100], log[1100];
    s_zqd_path (zqd_path, sizeof zqd_path);
    snprintf (spool, sizeof spool, "%s/spool", zqd->dir);
    snprintf (log, sizeof log, "%s/zqd.log", zqd->dir);
    //  The server's sockets get the same high-water marks and buffers as
    //  the clients and the raw relay.
    const char *names[] = {"sndhwm", "rcvhwm", "sndbuf_bytes", "rcvbuf_bytes"};
    char settings[4][64];
    //  No disk quota (1 GiB by default): a --backlog of 10 M messages
    //  takes more.
    const char *argv[32] = {zqd_path,       "--bind", "tcp://127.0.0.1:*", "--admin", admin_bind,
                            "--spool",      spool,    "--fsync",           "always",  "-o",
                            "quota_bytes=0"};
    int argc = 11;
    for (int i = 0; i < 4; i++) {
        int64_t value = 0;
        zq_options_get_int (cli->options, names[i], &value);
        snprintf (settings[i], sizeof settings[i], "%s=%lld", names[i], (long long)value);
        argv[argc++] = "-o";
        argv[argc++] = settings[i];
    }
    argv[argc] = NULL;
    int out[2];
    if (pipe (out)) {
        zq_cli_error (cli, "pipe: %s", strerror (errno));
        return -1;
    }
    fflush (stdout);
    fflush (stderr);
    zqd->pid = fork ();
    if (zqd->pid == 0) {
        //  zqd goes with the benchmark if the benchmark dies.
        prctl (PR_SET_PDEATHSIG, SIGKILL);
        int log_fd = open (log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (dup2 (out[1], STDOUT_FILENO) < 0 || log_fd < 0 || dup2 (log_fd, STDERR_FILENO) < 0)
            _exit (127);
        close (out[0]);
        close (out[1]);
        close (log_fd);
        execvp (zqd_path, (char *const *)argv);
        _exit (127);
    }
    close (out[1]);
    if (zqd->pid < 0) {
        zq_cli_error (cli, "fork: %s", strerror (errno));
        close (out[0]);
        return -1;
    }
    //  zqd prints "zqd: listening on ..." and "zqd: admin on ..." once
    //  its spools are recovered and its endpoints bound.
    *zqd->endpoint = *zqd->admin = '\0';
    char line[1024];
    size_t have = 0;
    int64_t deadline = zq_bench_now_ns () + (int64_t)S_ZQD_MS * 1000000;
    while ((!*zqd->endpoint || !*zqd->admin) && have + 1 < sizeof line) {
        int left_ms = (int)((deadline - zq_bench_now_ns ()) / 1000000);
        struct pollfd item = {out[0], POLLIN, 0};
        if (left_ms <= 0 || poll (&item, 1, left_ms) <= 0 || read (out[0], line + have, 1) != 1)
            break;
        if (line[have] != '\n') {
            have++;
            continue;
        }
        line[have] = '\0';
        have = 0;
        const char *listening = "zqd: listening on ", *admin = "zqd: admin on ";
        if (strncmp (line, listening, strlen (listening)) == 0)
            snprintf (zqd->endpoint, sizeof zqd->endpoint, "%s", line + strlen (listening));
        else if (strncmp (line, admin, strlen (admin)) == 0)
            snprintf (zqd->admin, sizeof zqd->admin, "%s", line + strlen (admin));
    }
    close (out[0]); //  zqd prints nothing more on stdout
    if (!*zqd->endpoint || !*zqd->admin) {
        zq_cli_error (cli, "%s did not start (see %s)", zqd_path, log);
        kill (zqd->pid, SIGKILL);
        while (waitpid (zqd->pid, NULL, 0) < 0 && errno == EINTR)
            ;
        zqd->pid = -1;
        return -1;
    }
    return 0;
}

//  Stops zqd with SIGTERM and waits for it (SIGKILL past S_ZQD_MS).
//  Returns 0 if it stopped cleanly, else -1.
static int
s_zqd_stop (s_zqd_t *zqd)
{
    if (zqd->pid <= 0)
        return 0;
    kill (zqd->pid, SIGTERM);
    int status = 0, rc = -1;
    int64_t deadline = zq_bench_now_ns () + (int64_t)S_ZQD_MS * 1000000;
    while (zq_bench_now_ns () < deadline) {
        pid_t done = waitpid (zqd->pid, &status, WNOHANG);
        if (done == zqd->pid) {
            rc = WIFEXITED (status) && WEXITSTATUS (status) == 0 ? 0 : -1;
            break;
        }
        struct pollfd none = {-1, 0, 0};
        poll (&none, 0, 5);
    }
    if (rc && waitpid (zqd->pid, &status, WNOHANG) == 0) {
        kill (zqd->pid, SIGKILL);
        waitpid (zqd->pid, NULL, 0);
    }
    zqd->pid = -1;
    return rc;
}

//  Reads a "Name:   N kB" line of /proc/PID/status; -1 if none.
static int64_t
s_proc_kib (pid_t pid, const char *name)
{
    char path[64], line[256];
    snprintf (path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *file = fopen (path, "r");
    int64_t value = -1;
    size_t length = strlen (name);
    while (file && fgets (line, sizeof line, file))
        if (strncmp (line, name, length) == 0 && line[length] == ':') {
            value = strtoll (line + length + 1, NULL, 10);
            break;
        }
    if (file)
        fclose (file);
    return value;
}

//  ---- Producers, consumers, the admin prober ---------------------------------

static int
s_post (zq_queue_t *queue, s_device_arg_t *arg)
{
    zq_msg_t *msg = zq_msg_new (ZQ_BENCH_QUEUE);
    if (!msg || zq_msg_set_body (msg, arg->body, arg->body_size) ||
        zq_queue_post (queue, &msg, ZQ_BENCH_STALL_MS)) {
        int saved = errno;
        zq_msg_destroy (&msg);
        errno = saved;
        return -1;
    }
    uint8_t id[ZQ_MSG_ID_SIZE];
    while (zq_queue_confirmed (queue, id) == 0)
        ;
    return errno == EAGAIN ? 0 : -1;
}

static void
s_producer (zq_cli_t *cli, void *arg_p, zq_bench_result_t *result)
{
    s_device_arg_t *arg = (s_device_arg_t *)arg_p;
    close (arg->ready_pipe[0]);
    close (arg->go_pipe[1]);
    char connect[1200];
    snprintf (connect, sizeof connect, ">%s", arg->endpoint);
    zq_queue_t *queue = zq_queue_new ("reliable", ZQ_PRODUCER, connect, cli->options);
    if (!queue) {
        result->errnum = errno;
        return;
    }
    for (uint64_t i = 0; i < arg->warmup; i++)
        if (s_post (queue, arg)) {
            result->errnum = errno;
            break;
        }
    char byte = 'r';
    struct pollfd item = {arg->go_pipe[0], POLLIN, 0};
    if (!result->errnum &&
        (zq_bench_drain_confirms (queue, NULL) || write (arg->ready_pipe[1], &byte, 1) != 1 ||
         poll (&item, 1, ZQ_BENCH_STALL_MS * 6) != 1 || read (arg->go_pipe[0], &byte, 1) != 1))
        result->errnum = errno ? errno : EPIPE;
    result->start_ns = zq_bench_now_ns ();
    uint64_t step = arg->count / 10 > 100000 ? arg->count / 10 : arg->count, next_report = step;
    for (uint64_t i = 0; i < arg->count && !result->errnum; i++) {
        if (s_post (queue, arg))
            result->errnum = errno;
        else if (zq_cli_interrupted)
            result->errnum = EINTR;
        if (arg->progress && i + 1 == next_report && i + 1 < arg->count) {
            zq_bench_progress (cli, "producer 1: %llu of %llu posted", (unsigned long long)(i + 1),
                               (unsigned long long)arg->count);
            next_report += step;
        }
        if ((i & 1023) == 0 && zq_bench_now_ns () > zq_bench_deadline_ns ())
            result->errnum = ETIMEDOUT;
    }
    if (!result->errnum && zq_bench_drain_confirms (queue, NULL))
        result->errnum = errno;
    result->end_ns = zq_bench_now_ns ();
    result->messages = arg->count;
    zq_queue_destroy (&queue);
}

static void
s_consumer (zq_cli_t *cli, void *arg_p, zq_bench_result_t *result)
{
    s_device_arg_t *arg = (s_device_arg_t *)arg_p;
    close (arg->go_pipe[0]);
    close (arg->ready_pipe[1]);
    result->start_ns = zq_bench_now_ns ();
    zq_queue_t *queue = zq_bench_consumer_open (cli, arg->endpoint, result);
    if (!queue)
        return;
    for (uint64_t i = 0; i < arg->warmup + arg->count; i++) {
        if (i == arg->warmup && arg->warmup) {
            //  Every producer's warm-up arrived: they may go.
            for (int p = 0; p < arg->producers; p++)
                if (write (arg->go_pipe[1], "g", 1) != 1)
                    result->errnum = EPIPE;
        }
        if (zq_bench_take_one (queue, result))
            break;
    }
    result->end_ns = zq_bench_now_ns ();
    zq_queue_destroy (&queue); //  lingers until the acks are out
}

//  Asks the admin socket STAT ZQ_BENCH_QUEUE until it answers (and, with
//  wait_empty, until the depth is 0); end_ns: when it answered; messages:
//  the depth.
static void
s_prober (zq_cli_t *cli, void *arg_p, zq_bench_result_t *result)
{
    (void)cli;
    s_device_arg_t *arg = (s_device_arg_t *)arg_p;
    result->start_ns = zq_bench_now_ns ();
    int64_t deadline = result->start_ns + (int64_t)S_ZQD_MS * 1000000;
    zsock_t *sock = zsock_new (ZMQ_REQ);
    if (!sock) {
        result->errnum = errno;
        return;
    }
    zsock_set_reconnect_ivl (sock, 5);
    zsock_set_req_relaxed (sock, 1);
    zsock_set_linger (sock, 0);
    if (zsock_connect (sock, "%s", arg->admin)) {
        result->errnum = errno ? errno : EINVAL;
        zsock_destroy (&sock);
        return;
    }
    result->errnum = ETIMEDOUT;
    while (zq_bench_now_ns () < deadline && !zq_cli_interrupted) {
        if (zstr_sendx (sock, "STAT", ZQ_BENCH_QUEUE, NULL)) {
            result->errnum = errno;
            break;
        }
        zpoller_t *poller = zpoller_new (sock, NULL);
        void *ready = poller ? zpoller_wait (poller, 1000) : NULL;
        zpoller_destroy (&poller);
        if (!ready)
            continue; //  (req_relaxed: the next send replaces the request)
        zmsg_t *reply = zmsg_recv (sock);
        char *status = reply ? zmsg_popstr (reply) : NULL;
        zframe_t *row = reply ? zmsg_pop (reply) : NULL;
        zq_msg_t *scratch = zq_msg_new (NULL);
        uint64_t depth = UINT64_MAX;
        if (status && streq (status, "OK") && row && scratch &&
            zq_msg_set_body (scratch, zframe_data (row), zframe_size (row)) == 0)
            zq_msg_get_uint (scratch, "depth", &depth);
        zq_msg_destroy (&scratch);
        zframe_destroy (&row);
        zstr_free (&status);
        zmsg_destroy (&reply);
        if (depth == UINT64_MAX) {
            result->errnum = ZQ_EPROTO;
            break;
        }
        result->end_ns = zq_bench_now_ns ();
        result->messages = depth;
        if (!arg->wait_empty || depth == 0) {
            result->errnum = 0;
            break;
        }
        struct pollfd none = {-1, 0, 0};
        poll (&none, 0, 20);
    }
    zsock_destroy (&sock);
}

//  ---- Running them -----------------------------------------------------------

//  What one phase measured.
typedef struct {
    double rate; //  timed messages per second
    //  CPU time per message moved (warm-up included) of every process of
    //  the phase: zqd (from the phase's start to its end), producers and
    //  consumer (from start to exit); for raw, the relay's processes.
    double cpu;
} s_phase_t;

//  A round's phases, zq's then the raw relay's.
enum { S_PUT, S_DRAIN, S_E2E, S_RAW_PUT, S_RAW_DRAIN, S_RAW_E2E, S_PHASES };
typedef struct {
    s_phase_t phase[S_PHASES];
} s_round_t;

//  Once errnum is set, kills child (which may not have started) and
//  returns errnum; else collects its result and returns its error (0 if it
//  reported success). result is zeroed when the child is killed.
static int
s_settle (zq_bench_child_t *child, int errnum, zq_bench_result_t *result)
{
    if (errnum) {
        zq_bench_kill (child);
        memset (result, 0, sizeof *result);
        return errnum;
    }
    zq_bench_collect (child, zq_bench_deadline_ns (), result);
    return result->errnum;
}

//  Ends s_put and s_drain: -1 with errno = errnum if set, else 0 with the
//  rate of count messages over start_ns to end_ns, and the CPU time
//  cpu_ns (the phase's processes', -1 if unknown) and zqd's since
//  zqd_cpu_ns (arg->zqd's at the start) over the moved messages (-1 if
//  either is unknown).
static int
s_rate (int errnum, const s_device_arg_t *arg, uint64_t count, int64_t start_ns, int64_t end_ns,
        int64_t zqd_cpu_ns, int64_t cpu_ns, uint64_t moved, s_phase_t *phase)
{
    if (errnum) {
        errno = errnum;
        return -1;
    }
    phase->rate = (double)count * 1e9 / (double)(end_ns - start_ns);
    int64_t zqd_now_ns = zq_bench_cpu_ns (arg->zqd);
    phase->cpu = zqd_now_ns < 0 || zqd_cpu_ns < 0 || cpu_ns < 0
                     ? -1
                     : (double)(cpu_ns + zqd_now_ns - zqd_cpu_ns) / (double)moved;
    return 0;
}

//  Runs P producers (put their share of count after warmup each); with
//  with_consumer, a consumer takes everything and lets them go, else this
//  process lets them go once all are ready. Stores the rate (count over
//  first start to last confirm, or to the consumer's last ack) and the
//  CPU time per message moved.
static int
s_put (zq_cli_t *cli, s_device_arg_t *arg, uint64_t count, bool with_consumer, bool progress,
       s_phase_t *phase)
{
    zq_bench_child_t children[65];
    int spawned = 0, errnum = 0;
    if (pipe (arg->ready_pipe) || pipe (arg->go_pipe))
        return -1;
    int64_t zqd_cpu_ns = zq_bench_cpu_ns (arg->zqd), cpu_ns = 0;
    zq_bench_child_t consumer = {-1, -1};
    if (with_consumer) {
        arg->warmup = (uint64_t)S_WARMUP * (uint64_t)cli->producers;
        arg->count = count;
        arg->producers = cli->producers;
        if (zq_bench_spawn (&consumer, s_consumer, cli, arg))
            errnum = errno;
    }
    for (int i = 0; !errnum && i < cli->producers; i++) {
        arg->index = i;
        arg->warmup = S_WARMUP;
        arg->count = count / (uint64_t)cli->producers +
                     ((uint64_t)i < count % (uint64_t)cli->producers ? 1 : 0);
        arg->progress = progress && i == 0;
        if (zq_bench_spawn (&children[i], s_producer, cli, arg)) {
            errnum = errno;
            break;
        }
        spawned++;
    }
    close (arg->ready_pipe[1]);
    close (arg->go_pipe[0]);
    if (!errnum && !with_consumer) {
        //  Every producer's warm-up confirmed: go, all at once.
        for (int i = 0; !errnum && i < spawned; i++) {
            char byte;
            struct pollfd item = {arg->ready_pipe[0], POLLIN, 0};
            if (poll (&item, 1, ZQ_BENCH_STALL_MS * 6) != 1 ||
                read (arg->ready_pipe[0], &byte, 1) != 1)
                errnum = EPIPE;
        }
        for (int i = 0; !errnum && i < spawned; i++)
            if (write (arg->go_pipe[1], "g", 1) != 1)
                errnum = EPIPE;
    }
    close (arg->go_pipe[1]);
    int64_t first_start = INT64_MAX, last_end = 0;
    arg->producer_rss_kib = 0;
    for (int i = 0; i < spawned; i++) {
        zq_bench_result_t result;
        errnum = s_settle (&children[i], errnum, &result);
        cpu_ns = cpu_ns < 0 || result.cpu_ns < 0 ? -1 : cpu_ns + result.cpu_ns;
        if (!errnum) {
            first_start = result.start_ns < first_start ? result.start_ns : first_start;
            last_end = result.end_ns > last_end ? result.end_ns : last_end;
            if (result.max_rss_kib > arg->producer_rss_kib)
                arg->producer_rss_kib = result.max_rss_kib;
        }
    }
    if (with_consumer) {
        zq_bench_result_t result;
        errnum = s_settle (&consumer, errnum, &result);
        cpu_ns = cpu_ns < 0 || result.cpu_ns < 0 ? -1 : cpu_ns + result.cpu_ns;
        if (!errnum) {
            last_end = result.end_ns;
            arg->consumer_rss_kib = result.max_rss_kib;
        }
    }
    close (arg->ready_pipe[0]);
    uint64_t moved = count + (uint64_t)S_WARMUP * (uint64_t)spawned;
    return s_rate (errnum, arg, count, first_start, last_end, zqd_cpu_ns, cpu_ns, moved, phase);
}

//  One consumer takes count messages; stores its rate and the CPU time per
//  message.
static int
s_drain (zq_cli_t *cli, s_device_arg_t *arg, uint64_t count, s_phase_t *phase)
{
    if (pipe (arg->ready_pipe) || pipe (arg->go_pipe))
        return -1;
    int64_t zqd_cpu_ns = zq_bench_cpu_ns (arg->zqd);
    arg->warmup = 0;
    arg->count = count;
    arg->producers = 0;
    zq_bench_child_t consumer;
    zq_bench_result_t result;
    int errnum = zq_bench_spawn (&consumer, s_consumer, cli, arg) ? errno : 0;
    for (int i = 0; i < 2; i++) {
        close (arg->ready_pipe[i]);
        close (arg->go_pipe[i]);
    }
    errnum = s_settle (&consumer, errnum, &result);
    arg->consumer_rss_kib = errnum ? 0 : result.max_rss_kib;
    return s_rate (errnum, arg, count, result.start_ns, result.end_ns, zqd_cpu_ns, result.cpu_ns,
                   count, phase);
}

//  Asks the admin socket (waiting until the queue is empty if wait_empty).
static int
s_probe (zq_cli_t *cli, s_device_arg_t *arg, bool wait_empty, zq_bench_result_t *result)
{
    arg->wait_empty = wait_empty;
    zq_bench_child_t prober;
    if (zq_bench_spawn (&prober, s_prober, cli, arg))
        return -1;
    if (zq_bench_collect (&prober, zq_bench_deadline_ns (), result) || result->errnum) {
        errno = result->errnum;
        return -1;
    }
    return 0;
}

//  Stops zqd, shows the end of its log, removes its directory.
static int
s_fail (zq_cli_t *cli, s_zqd_t *zqd, const char *what)
{
    int saved = errno;
    s_zqd_stop (zqd);
    if (what)
        zq_cli_error (cli, "%s failed: %s", what, zq_strerror (saved ? saved : EIO));
    char path[1100];
    snprintf (path, sizeof path, "%s/zqd.log", zqd->dir);
    FILE *log = fopen (path, "r");
    if (log) {
        char tail[2048];
        if (fseek (log, -(long)(sizeof tail - 1), SEEK_END))
            rewind (log);
        size_t got = fread (tail, 1, sizeof tail - 1, log);
        tail[got] = '\0';
        if (got)
            fprintf (stderr, "zqd's log ends:\n%s", tail);
        fclose (log);
    }
    zq_bench_rmtree (zqd->dir, 4);
    if (zq_cli_interrupted)
        return zq_cli_interrupt_exit ();
    return ZQ_EXIT_TRANSPORT;
}

//  A zqd not started yet, with a new directory of its own under
//  zq_bench_dir. Returns 0, or -1 after printing why.
static int
s_zqd_prepare (zq_cli_t *cli, s_zqd_t *zqd)
{
    memset (zqd, 0, sizeof *zqd);
    zqd->pid = -1;
    const char *base = zq_bench_dir (cli);
    if (zq_bench_mkdtemp (base, "zq-bench-device", zqd->dir, sizeof zqd->dir)) {
        zq_cli_error (cli, "cannot make a directory in %s: %s", base, strerror (errno));
        return -1;
    }
    return 0;
}

static int
s_round (zq_cli_t *cli, s_device_arg_t *arg, s_round_t *round)
{
    s_zqd_t zqd;
    if (s_zqd_prepare (cli, &zqd))
        return ZQ_EXIT_TRANSPORT;
    int rc = 0;
    if (s_zqd_start (cli, &zqd, "tcp://127.0.0.1:*"))
        rc = s_fail (cli, &zqd, NULL);
    else {
        snprintf (arg->endpoint, sizeof arg->endpoint, "%s", zqd.endpoint);
        snprintf (arg->admin, sizeof arg->admin, "%s", zqd.admin);
        arg->zqd = zqd.pid;
        zq_bench_result_t probe;
        if (s_put (cli, arg, cli->count, false, false, &round->phase[S_PUT]))
            rc = s_fail (cli, &zqd, "put");
        else if (s_drain (cli, arg, cli->count + (uint64_t)S_WARMUP * (uint64_t)cli->producers,
                          &round->phase[S_DRAIN]))
            rc = s_fail (cli, &zqd, "drain");
        else if (s_probe (cli, arg, true, &probe))
            rc = s_fail (cli, &zqd, "waiting for the drained queue to be empty");
        else if (s_put (cli, arg, cli->count, true, false, &round->phase[S_E2E]))
            rc = s_fail (cli, &zqd, "e2e");
        else if (s_zqd_stop (&zqd)) {
            errno = 0;
            rc = s_fail (cli, &zqd, "stopping zqd cleanly");
        }
    }
    if (rc == 0)
        zq_bench_rmtree (zqd.dir, 4);
    return rc;
}

//  The raw baseline of one round: put, drain and e2e through a relay.
static int
s_raw_round (zq_cli_t *cli, s_round_t *round)
{
    uint64_t warmup = (uint64_t)S_WARMUP * (uint64_t)cli->producers;
    int rc = zq_bench_relay (cli, ZQ_BENCH_RELAY_PUT, cli->producers, S_WARMUP, cli->count,
                             &round->phase[S_RAW_PUT].rate, &round->phase[S_RAW_PUT].cpu);
    if (rc == 0)
        rc = zq_bench_relay (cli, ZQ_BENCH_RELAY_DRAIN, cli->producers, 0, cli->count + warmup,
                             &round->phase[S_RAW_DRAIN].rate, &round->phase[S_RAW_DRAIN].cpu);
    if (rc == 0)
        rc = zq_bench_relay (cli, ZQ_BENCH_RELAY_E2E, cli->producers, S_WARMUP, cli->count,
                             &round->phase[S_RAW_E2E].rate, &round->phase[S_RAW_E2E].cpu);
    return rc;
}

//  Starts zqd again on its spool, with admin on the endpoint it had
//  (queues on a new tcp port, stored in arg->endpoint), while a prober
//  asks for the queue's STAT until it answers; stores the time from the
//  start to that answer, and zqd's memory then. The answer must count
//  total messages. Returns 0, or an exit code after printing why (zqd
//  stopped, its directory removed).
static int
s_restart_timed (zq_cli_t *cli, s_device_arg_t *arg, s_zqd_t *zqd, const char *admin,
                 uint64_t total, double *restart_s_p, int64_t *rss_kib_p, int64_t *hwm_kib_p)
{
    int64_t restart_start = zq_bench_now_ns ();
    zq_bench_child_t prober;
    arg->wait_empty = false;
    if (zq_bench_spawn (&prober, s_prober, cli, arg))
        return s_fail (cli, zqd, "prober");
    if (s_zqd_start (cli, zqd, admin)) {
        zq_bench_kill (&prober);
        return s_fail (cli, zqd, NULL);
    }
    snprintf (arg->endpoint, sizeof arg->endpoint, "%s", zqd->endpoint);
    arg->zqd = zqd->pid;
    zq_bench_result_t probe;
    if (zq_bench_collect (&prober, zq_bench_deadline_ns (), &probe) || probe.errnum) {
        errno = probe.errnum;
        return s_fail (cli, zqd, "STAT after the restart");
    }
    *restart_s_p = (double)(probe.end_ns - restart_start) / 1e9;
    *rss_kib_p = s_proc_kib (zqd->pid, "VmRSS");
    *hwm_kib_p = s_proc_kib (zqd->pid, "VmHWM");
    if (probe.messages != total) {
        zq_cli_error (cli, "after the restart zqd holds %llu messages, not %llu",
                      (unsigned long long)probe.messages, (unsigned long long)total);
        return s_fail (cli, zqd, NULL);
    }
    return 0;
}

//  --backlog: restart time and memory at that backlog: after a clean stop,
//  then after kill -9; then one consumer drains it all.
static int
s_restart (zq_cli_t *cli, s_device_arg_t *arg)
{
    s_zqd_t zqd;
    if (s_zqd_prepare (cli, &zqd))
        return ZQ_EXIT_TRANSPORT;
    //  zqd binds its admin endpoint again at each restart. Over ipc, in
    //  the run's own directory, a port taken meanwhile by another program's
    //  outgoing connection cannot refuse the bind; tcp when the path would
    //  not fit an ipc address.
    char admin[1100];
    if (strlen (zqd.dir) + sizeof "ipc:///admin" <= 100)
        snprintf (admin, sizeof admin, "ipc://%s/admin", zqd.dir);
    else
        snprintf (admin, sizeof admin, "tcp://127.0.0.1:*");
    if (s_zqd_start (cli, &zqd, admin))
        return s_fail (cli, &zqd, NULL);
    snprintf (arg->endpoint, sizeof arg->endpoint, "%s", zqd.endpoint);
    snprintf (arg->admin, sizeof arg->admin, "%s", zqd.admin);
    arg->zqd = zqd.pid;
    snprintf (admin, sizeof admin, "%s", zqd.admin);
    zq_bench_progress (cli, "backlog: %d producers put %llu messages into zqd (spool %s/spool)",
                       cli->producers, (unsigned long long)cli->backlog, zqd.dir);
    s_phase_t put = {0, 0};
    uint64_t total = cli->backlog + (uint64_t)S_WARMUP * (uint64_t)cli->producers;
    if (s_put (cli, arg, cli->backlog, false, true, &put))
        return s_fail (cli, &zqd, "backlog put");
    int64_t rss_kib = s_proc_kib (zqd.pid, "VmRSS"), hwm_kib = s_proc_kib (zqd.pid, "VmHWM");
    zq_bench_progress (cli, "backlog: put %.0f msgs/s; zqd VmRSS %lld KiB, VmHWM %lld KiB; SIGTERM",
                       put.rate, (long long)rss_kib, (long long)hwm_kib);
    int64_t stop_start = zq_bench_now_ns ();
    if (s_zqd_stop (&zqd)) {
        errno = 0;
        return s_fail (cli, &zqd, "stopping zqd cleanly");
    }
    double stop_s = (double)(zq_bench_now_ns () - stop_start) / 1e9;
    //  Again on the same spool and the same admin endpoint; the prober
    //  starts at once and asks until zqd answers.
    double restart_s = 0, kill_restart_s = 0;
    int64_t restart_rss = 0, restart_hwm = 0, kill_rss = 0, kill_hwm = 0;
    int rc = s_restart_timed (cli, arg, &zqd, admin, total, &restart_s, &restart_rss, &restart_hwm);
    if (rc)
        return rc;
    //  kill -9: the spool was not closed; the restart recovers it.
    zq_bench_progress (cli, "backlog: restarted in %.3f s; kill -9", restart_s);
    kill (zqd.pid, SIGKILL);
    while (waitpid (zqd.pid, NULL, 0) < 0 && errno == EINTR)
        ;
    zqd.pid = -1;
    rc = s_restart_timed (cli, arg, &zqd, admin, total, &kill_restart_s, &kill_rss, &kill_hwm);
    if (rc)
        return rc;
    //  Then one consumer takes it all: the memory of zqd and of a consumer
    //  with a backlog far larger than its window.
    zq_bench_progress (cli, "backlog: restarted after kill -9 in %.3f s; draining %llu",
                       kill_restart_s, (unsigned long long)total);
    s_phase_t drain = {0, 0};
    if (s_drain (cli, arg, total, &drain))
        return s_fail (cli, &zqd, "backlog drain");
    int64_t drain_hwm = s_proc_kib (zqd.pid, "VmHWM");
    s_zqd_stop (&zqd);
    zq_bench_rmtree (zqd.dir, 4);
    printf ("device restart size=%zu backlog=%llu put_msgs_per_s=%.0f stop_s=%.3f restart_s=%.3f "
            "rss_kib=%lld hwm_kib=%lld restart_rss_kib=%lld restart_hwm_kib=%lld "
            "kill_restart_s=%.3f kill_restart_rss_kib=%lld drain_msgs_per_s=%.0f "
            "drain_hwm_kib=%lld producer_max_rss_kib=%lld consumer_max_rss_kib=%lld\n",
            cli->size, (unsigned long long)total, put.rate, stop_s, restart_s, (long long)rss_kib,
            (long long)hwm_kib, (long long)restart_rss, (long long)restart_hwm, kill_restart_s,
            (long long)kill_rss, drain.rate, (long long)drain_hwm, (long long)arg->producer_rss_kib,
            (long long)arg->consumer_rss_kib);
    return 0;
}

int
zq_bench_device (zq_cli_t *cli)
{
    if (!streq (cli->transport, "tcp"))
        return zq_cli_usage_error (cli, "bench device runs zqd over tcp on loopback");
    if (!cli->given[ZQ_OPT_COUNT] || cli->count == 0)
        cli->count = 200000;
    if (!cli->given[ZQ_OPT_PRODUCERS])
        cli->producers = 2;
    int64_t window = 0, prefetch = 0;
    if (zq_options_is_set (cli->options, "max_in_flight"))
        zq_options_get_int (cli->options, "max_in_flight", &window);
    else
        window = ZQ_PRODUCER_WINDOW_DEFAULT;
    if (!zq_options_is_set (cli->options, "prefetch")) {
        //  As many deliveries in hand as the raw consumer's receive queue.
        int64_t rcvhwm = 0;
        zq_options_get_int (cli->options, "rcvhwm", &rcvhwm);
        if (rcvhwm > 0)
            zq_options_set_int (cli->options, "prefetch", rcvhwm);
    }
    zq_options_get_int (cli->options, "prefetch", &prefetch);
    int rounds = cli->rounds;
    s_device_arg_t arg;
    memset (&arg, 0, sizeof arg);
    void *body = zq_bench_body (cli->size, &arg.body_size);
    arg.body = body;
    s_round_t *results = (s_round_t *)calloc ((size_t)rounds, sizeof (s_round_t));
    double *values = (double *)calloc ((size_t)rounds * 2 * S_PHASES, sizeof (double));
    if (!body || !results || !values) {
        zq_cli_error (cli, "%s", strerror (ENOMEM));
        free (body);
        free (results);
        free (values);
        return ZQ_EXIT_TRANSPORT;
    }
    char zqd_path[PATH_MAX + 8];
    s_zqd_path (zqd_path, sizeof zqd_path);
    zq_bench_progress (cli,
                       "size=%zu count=%llu in %s: %d rounds of put (%d producer processes, "
                       "window %lld each, no consumer), drain (one consumer, prefetch %lld) "
                       "and e2e, raw (a libzmq relay in zqd's place) then zq; zqd is %s with "
                       "fsync always; median reported",
                       cli->size, (unsigned long long)cli->count, zq_bench_dir (cli), rounds,
                       cli->producers, (long long)window, (long long)prefetch, zqd_path);
    int rc = 0;
    for (int round = 0; rc == 0 && round < rounds; round++) {
        rc = s_raw_round (cli, &results[round]);
        if (rc == 0)
            rc = s_round (cli, &arg, &results[round]);
        if (rc == 0) {
            s_round_t *r = &results[round];
            zq_bench_progress (cli,
                               "round %d/%d: put raw %.0f zq %.0f msgs/s, drain raw %.0f zq %.0f "
                               "msgs/s, e2e raw %.0f zq %.0f msgs/s; CPU ns per message: put "
                               "raw %.0f zq %.0f, drain raw %.0f zq %.0f, e2e raw %.0f zq %.0f",
                               round + 1, rounds, r->phase[S_RAW_PUT].rate, r->phase[S_PUT].rate,
                               r->phase[S_RAW_DRAIN].rate, r->phase[S_DRAIN].rate,
                               r->phase[S_RAW_E2E].rate, r->phase[S_E2E].rate,
                               r->phase[S_RAW_PUT].cpu, r->phase[S_PUT].cpu,
                               r->phase[S_RAW_DRAIN].cpu, r->phase[S_DRAIN].cpu,
                               r->phase[S_RAW_E2E].cpu, r->phase[S_E2E].cpu);
        }
    }
    if (rc == 0) {
        //  Each phase's medians: rate, then CPU per message.
        double median[S_PHASES][2];
        for (int i = 0; i < S_PHASES; i++) {
            for (int round = 0; round < rounds; round++) {
                values[2 * i * rounds + round] = results[round].phase[i].rate;
                values[(2 * i + 1) * rounds + round] = results[round].phase[i].cpu;
            }
            median[i][0] = zq_bench_median (values + 2 * i * rounds, rounds);
            //  Unknown in one round (-1, the lowest): unknown.
            median[i][1] = zq_bench_median (values + (2 * i + 1) * rounds, rounds);
            for (int round = 0; round < rounds; round++)
                if (results[round].phase[i].cpu < 0)
                    median[i][1] = -1;
        }
        const double *put = median[S_PUT], *drain = median[S_DRAIN], *e2e = median[S_E2E];
        const double *raw_put = median[S_RAW_PUT], *raw_drain = median[S_RAW_DRAIN],
                     *raw_e2e = median[S_RAW_E2E];
        printf ("device put tcp size=%zu producers=%d count=%llu fsync=always msgs_per_s=%.0f "
                "raw_msgs_per_s=%.0f ratio=%.3f cpu_ns_per_msg=%.0f raw_cpu_ns_per_msg=%.0f\n",
                cli->size, cli->producers, (unsigned long long)cli->count, put[0], raw_put[0],
                put[0] / raw_put[0], put[1], raw_put[1]);
        printf ("device drain tcp size=%zu count=%llu prefetch=%lld msgs_per_s=%.0f "
                "raw_msgs_per_s=%.0f ratio=%.3f cpu_ns_per_msg=%.0f raw_cpu_ns_per_msg=%.0f\n",
                cli->size,
                (unsigned long long)(cli->count + (uint64_t)S_WARMUP * (uint64_t)cli->producers),
                (long long)prefetch, drain[0], raw_drain[0], drain[0] / raw_drain[0], drain[1],
                raw_drain[1]);
        printf ("device e2e tcp size=%zu producers=%d count=%llu prefetch=%lld msgs_per_s=%.0f "
                "raw_msgs_per_s=%.0f ratio=%.3f cpu_ns_per_msg=%.0f raw_cpu_ns_per_msg=%.0f\n",
                cli->size, cli->producers, (unsigned long long)cli->count, (long long)prefetch,
                e2e[0], raw_e2e[0], e2e[0] / raw_e2e[0], e2e[1], raw_e2e[1]);
        fflush (stdout);
    }
    if (rc == 0 && cli->backlog)
        rc = s_restart (cli, &arg);
    free (body);
    free (results);
    free (values);
    return rc;
}
