/*  =========================================================================
    zq_bench_reliable - zq bench reliable: at-least-once delivery through
    the reliable pattern with fsync=always, measured against the disk's own
    fdatasync in the same run and the same directory.

    Three processes per run over tcp and ipc: the server (ZQ_SERVER with
    spool_dir in a new directory under --dir, driven by zq_queue_recv), a
    producer and a consumer, as three services would be. Over inproc the
    three are threads of one forked process, as in an embedded deployment
    with no broker.
      - e2e: the consumer subscribes and takes the warm-up messages, then
        tells the producer to go; the producer reads the clock and posts
        count messages (zq_queue_post, at most max_in_flight unconfirmed,
        taking reports with zq_queue_confirmed), and reads the clock when
        the last is confirmed (put_msgs_per_s); the consumer acks each
        message and reads the clock after the last (e2e_msgs_per_s, from
        the producer's first post).
      - raw: before each e2e run, its raw libzmq baseline
        (src/tools/zq/bench/zq_bench_relay.c): the same parts over the same transport,
        one producer -> a relay of plain ROUTER sockets in the server's
        place -> one consumer, with no storage, no confirms, no acks;
        timed the same way as e2e_msgs_per_s (raw_msgs_per_s, and ratio =
        e2e_msgs_per_s / raw_msgs_per_s).
      - confirm: no consumer; the producer sends one message at a time
        with zq_queue_send, which returns once the server confirmed it
        (stored and fdatasync'ed), and records each call's time. Beside
        each confirm, in an order that turns with each message, the
        producer takes one sample of each of the two costs a confirm
        cannot avoid, so that all three see the same load on the disk and
        the processors:
      - fsync: the disk's write + fdatasync, in the run's directory, of
        as many bytes as the server writes for one message (its frames
        and the spool's 32-byte record header) at the end of a file.
      - rtt: a raw libzmq round trip (DEALER -> ROUTER echo of SIZE bytes,
        as bench rpc's raw side) between the same two processes over the
        same transport: the server's process runs the echo on a thread of
        its own. raw_rtt_p50_us, so that confirm p50 can be read against
        fsync p50 + raw_rtt p50.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_cli.h"
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

//  Most confirm-each and fsync samples per round.
#define S_LATENCY_MAX 10000
//  Untimed messages first.
#define S_WARMUP 1000

typedef struct {
    char dir[1024];      //  the run's directory: the server's spools
    char bind[1100];     //  what the server binds
    char endpoint[1100]; //  what it bound (resolved), for the others
    char echo[1100];     //  confirm runs: the raw echo in the server's process
    const void *body;    //  the msgpack body of every message
    size_t body_size;
    uint64_t warmup;
    uint64_t count;
    bool confirm_each;    //  the producer sends one at a time
    bool embedded;        //  inproc: the three are threads of one process
    int endpoint_pipe[2]; //  server -> bench: its endpoint
    int stop_pipe[2];     //  bench -> server: stop (closed)
    int go_pipe[2];       //  consumer -> producer: warm-up done
} s_reliable_arg_t;

static bool
s_readable (int fd)
{
    struct pollfd item = {fd, POLLIN, 0};
    return poll (&item, 1, 0) > 0;
}

//  The raw echo in the server's process: a ROUTER on the bench's raw
//  context, on a thread of its own, sending each frame back as bench
//  rpc's raw server does, until stop is set.
typedef struct {
    void *socket;
    int stop;
    int errnum;
    pthread_t thread;
} s_echo_t;

static void *
s_echo_main (void *echo_p)
{
    s_echo_t *echo = (s_echo_t *)echo_p;
    zmq_msg_t routing_id, body;
    zmq_msg_init (&routing_id);
    zmq_msg_init (&body);
    while (!__atomic_load_n (&echo->stop, __ATOMIC_ACQUIRE)) {
        //  The receive timeout bounds each wait, so stop is seen.
        if (zmq_msg_recv (&routing_id, echo->socket, 0) < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            echo->errnum = errno;
            break;
        }
        if (zmq_msg_recv (&body, echo->socket, 0) < 0 ||
            zmq_msg_send (&routing_id, echo->socket, ZMQ_SNDMORE) < 0 ||
            zmq_msg_send (&body, echo->socket, 0) < 0) {
            echo->errnum = errno;
            break;
        }
    }
    zmq_msg_close (&routing_id);
    zmq_msg_close (&body);
    return NULL;
}

//  Binds the echo over the run's transport and starts its thread; its
//  endpoint goes into endpoint. Returns 0, or -1 with errno.
static int
s_echo_start (zq_cli_t *cli, s_reliable_arg_t *arg, s_echo_t *echo, char *endpoint, size_t size)
{
    char bind[1100];
    if (arg->embedded)
        snprintf (bind, sizeof bind, "inproc://zq-bench-reliable-echo");
    else if (streq (cli->transport, "ipc"))
        snprintf (bind, sizeof bind, "ipc://%s/echo", arg->dir);
    else
        snprintf (bind, sizeof bind, "tcp://127.0.0.1:*");
    int timeout_ms = 50;
    echo->socket = zmq_socket (zq_bench_raw_context (), ZMQ_ROUTER);
    if (!echo->socket || zq_bench_raw_options (cli, echo->socket) ||
        zmq_setsockopt (echo->socket, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms) ||
        zmq_bind (echo->socket, bind) ||
        zmq_getsockopt (echo->socket, ZMQ_LAST_ENDPOINT, endpoint, &size))
        goto failed;
    if (pthread_create (&echo->thread, NULL, s_echo_main, echo)) {
        errno = EAGAIN;
        goto failed;
    }
    return 0;
failed:;
    int saved = errno;
    if (echo->socket)
        zmq_close (echo->socket);
    echo->socket = NULL;
    errno = saved;
    return -1;
}

//  Stops the echo; its failure, if any, becomes the server's.
static void
s_echo_stop (s_echo_t *echo, zq_bench_result_t *result)
{
    if (!echo->socket)
        return;
    __atomic_store_n (&echo->stop, 1, __ATOMIC_RELEASE);
    pthread_join (echo->thread, NULL);
    zmq_close (echo->socket);
    echo->socket = NULL;
    if (echo->errnum && !result->errnum)
        result->errnum = echo->errnum;
}

static void
s_server (zq_cli_t *cli, void *arg_p, zq_bench_result_t *result)
{
    s_reliable_arg_t *arg = (s_reliable_arg_t *)arg_p;
    if (!arg->embedded) {
        close (arg->endpoint_pipe[0]);
        close (arg->stop_pipe[1]);
        close (arg->go_pipe[0]);
        close (arg->go_pipe[1]);
    }
    zq_options_t *options = zq_options_dup (cli->options);
    zq_queue_t *queue = NULL;
    if (options && zq_options_set (options, "spool_dir", arg->dir) == 0 &&
        zq_options_set (options, "fsync", "always") == 0)
        queue = zq_queue_new ("reliable", ZQ_SERVER, arg->bind, options);
    zq_options_destroy (&options);
    s_echo_t echo;
    memset (&echo, 0, sizeof echo);
    char echo_endpoint[1100] = "";
    if (!queue || zq_queue_declare (queue, ZQ_BENCH_QUEUE) ||
        (arg->confirm_each &&
         s_echo_start (cli, arg, &echo, echo_endpoint, sizeof echo_endpoint))) {
        result->errnum = errno;
        zq_queue_destroy (&queue);
        return;
    }
    //  Its endpoint, and in a confirm run the echo's, one line each.
    char line[2400];
    size_t length = (size_t)snprintf (line, sizeof line, "%s\n%s%s", zq_queue_endpoint (queue),
                                      echo_endpoint, arg->confirm_each ? "\n" : "");
    if (write (arg->endpoint_pipe[1], line, length) != (ssize_t)length) {
        result->errnum = EPIPE;
        s_echo_stop (&echo, result);
        zq_queue_destroy (&queue);
        return;
    }
    //  Serve until the bench closes the stop pipe (or goes away).
    while (!s_readable (arg->stop_pipe[0])) {
        zq_msg_t *msg = zq_queue_recv (queue, 50);
        zq_msg_destroy (&msg);
        if (zq_bench_now_ns () > zq_bench_deadline_ns ()) {
            result->errnum = ETIMEDOUT;
            break;
        }
    }
    s_echo_stop (&echo, result);
    zq_queue_info_t info;
    if (zq_queue_info (queue, ZQ_BENCH_QUEUE, &info) == 0)
        result->messages = info.put;
    zq_queue_destroy (&queue);
}

//  What the confirm producer samples beside its confirms.
typedef struct {
    void *socket; //  raw DEALER to the echo in the server's process
    void *frame;  //  SIZE bytes, as bench rpc's raw side sends
    size_t frame_size;
    int fd; //  the file it writes and fdatasyncs
    char path[1200];
    void *record; //  as many bytes as the server writes per message
    size_t record_size;
    int64_t *fsync_ns; //  count samples each
    int64_t *rtt_ns;
    int64_t *sum_ns; //  fsync + round trip beside the same confirm
} s_baseline_t;

//  The bytes the server's spool writes for one of the bench's messages:
//  its frames behind the 32-byte record header (doc/SPOOL.md). 0 on
//  ENOMEM.
static size_t
s_record_size (const void *body, size_t body_size)
{
    zq_msg_t *msg = zq_msg_new (ZQ_BENCH_QUEUE);
    zmsg_t *frames = zmsg_new ();
    size_t size = 0;
    if (msg && frames && zq_msg_set_body (msg, body, body_size) == 0 &&
        zq_msg_encode (&msg, frames) == 0)
        size = 32 + zmsg_content_size (frames);
    zq_msg_destroy (&msg);
    zmsg_destroy (&frames);
    return size;
}

static void
s_baseline_close (s_baseline_t *baseline)
{
    if (baseline->socket)
        zmq_close (baseline->socket);
    if (baseline->fd >= 0) {
        close (baseline->fd);
        unlink (baseline->path);
    }
    free (baseline->frame);
    free (baseline->record);
    free (baseline->fsync_ns);
    free (baseline->rtt_ns);
    free (baseline->sum_ns);
    memset (baseline, 0, sizeof *baseline);
    baseline->fd = -1;
}

//  Opens the echo's socket and the file. Returns 0, or -1 with errno.
static int
s_baseline_open (zq_cli_t *cli, s_reliable_arg_t *arg, s_baseline_t *baseline)
{
    memset (baseline, 0, sizeof *baseline);
    baseline->fd = -1;
    size_t count = arg->count ? arg->count : 1;
    baseline->frame_size = cli->size;
    baseline->frame = malloc (cli->size ? cli->size : 1);
    baseline->record_size = s_record_size (arg->body, arg->body_size);
    baseline->record = malloc (baseline->record_size ? baseline->record_size : 1);
    baseline->fsync_ns = (int64_t *)calloc (count, sizeof (int64_t));
    baseline->rtt_ns = (int64_t *)calloc (count, sizeof (int64_t));
    baseline->sum_ns = (int64_t *)calloc (count, sizeof (int64_t));
    if (!baseline->frame || !baseline->record_size || !baseline->record || !baseline->fsync_ns ||
        !baseline->rtt_ns || !baseline->sum_ns) {
        s_baseline_close (baseline);
        errno = ENOMEM;
        return -1;
    }
    memset (baseline->frame, 'a', cli->size);
    memset (baseline->record, 'f', baseline->record_size);
    snprintf (baseline->path, sizeof baseline->path, "%s/fsync-XXXXXX", arg->dir);
    baseline->fd = mkstemp (baseline->path);
    baseline->socket = baseline->fd < 0 ? NULL : zq_bench_raw_dealer (cli, arg->echo, false);
    if (!baseline->socket) {
        int saved = errno;
        s_baseline_close (baseline);
        errno = saved;
        return -1;
    }
    return 0;
}

//  One write + fdatasync, or one raw round trip (step 0 or 1): its time
//  in *took_ns. Returns 0, or -1 with errno.
static int
s_baseline_sample (s_baseline_t *baseline, int step, int64_t *took_ns)
{
    int64_t start = zq_bench_now_ns ();
    if (step == 0) {
        ssize_t size = (ssize_t)baseline->record_size;
        if (write (baseline->fd, baseline->record, baseline->record_size) != size ||
            fdatasync (baseline->fd)) {
            if (errno == 0)
                errno = EIO;
            return -1;
        }
    } else {
        zmq_msg_t frame;
        zmq_msg_init (&frame);
        int rc = zmq_send (baseline->socket, baseline->frame, baseline->frame_size, 0) < 0 ||
                         zmq_msg_recv (&frame, baseline->socket, 0) < 0
                     ? -1
                     : 0;
        int saved = errno;
        zmq_msg_close (&frame);
        if (rc) {
            errno = saved;
            return -1;
        }
    }
    *took_ns = zq_bench_now_ns () - start;
    return 0;
}

static void
s_producer (zq_cli_t *cli, void *arg_p, zq_bench_result_t *result)
{
    s_reliable_arg_t *arg = (s_reliable_arg_t *)arg_p;
    if (!arg->embedded)
        close (arg->go_pipe[1]);
    int64_t *samples = NULL;
    s_baseline_t baseline;
    memset (&baseline, 0, sizeof baseline);
    baseline.fd = -1;
    if (arg->confirm_each) {
        samples = (int64_t *)calloc (arg->count ? arg->count : 1, sizeof (int64_t));
        if (!samples || s_baseline_open (cli, arg, &baseline)) {
            result->errnum = samples ? errno : ENOMEM;
            free (samples);
            return;
        }
    }
    char connect[1200];
    snprintf (connect, sizeof connect, ">%s", arg->endpoint);
    zq_queue_t *queue = zq_queue_new ("reliable", ZQ_PRODUCER, connect, cli->options);
    if (!queue) {
        result->errnum = errno;
        free (samples);
        s_baseline_close (&baseline);
        return;
    }
    uint64_t confirmed = 0;
    for (uint64_t i = 0; i < arg->warmup + arg->count && !result->errnum; i++) {
        if (i == arg->warmup && !arg->confirm_each) {
            //  Every warm-up message confirmed and delivered: go.
            char go;
            struct pollfd item = {arg->go_pipe[0], POLLIN, 0};
            errno = 0;
            if (zq_bench_drain_confirms (queue, &confirmed) ||
                poll (&item, 1, ZQ_BENCH_STALL_MS) != 1 || read (arg->go_pipe[0], &go, 1) != 1) {
                result->errnum = errno ? errno : EPIPE;
                break;
            }
            result->start_ns = zq_bench_now_ns ();
        }
        //  Confirm runs: the fsync and the raw round trip beside this
        //  confirm, before or after it as i turns the order.
        int64_t took_ns[2] = {0, 0};
        int first_step = arg->confirm_each ? (int)(i % 3) : 2;
        for (int step = first_step; step < 2; step++)
            if (s_baseline_sample (&baseline, step, &took_ns[step]))
                result->errnum = errno;
        if (result->errnum)
            break;
        int64_t start = zq_bench_now_ns ();
        zq_msg_t *msg = zq_msg_new (ZQ_BENCH_QUEUE);
        if (!msg || zq_msg_set_body (msg, arg->body, arg->body_size)) {
            result->errnum = errno;
            zq_msg_destroy (&msg);
            break;
        }
        int rc = arg->confirm_each ? zq_queue_send (queue, &msg, ZQ_BENCH_STALL_MS)
                                   : zq_queue_post (queue, &msg, ZQ_BENCH_STALL_MS);
        if (rc) {
            result->errnum = errno;
            zq_msg_destroy (&msg);
            break;
        }
        if (arg->confirm_each) {
            int64_t confirm_ns = zq_bench_now_ns () - start;
            for (int step = 0; step < first_step && step < 2; step++)
                if (s_baseline_sample (&baseline, step, &took_ns[step]))
                    result->errnum = errno;
            if (i >= arg->warmup) {
                samples[i - arg->warmup] = confirm_ns;
                baseline.fsync_ns[i - arg->warmup] = took_ns[0];
                baseline.rtt_ns[i - arg->warmup] = took_ns[1];
            }
        } else {
            uint8_t id[ZQ_MSG_ID_SIZE];
            while (zq_queue_confirmed (queue, id) == 0)
                confirmed++;
        }
        if (zq_bench_now_ns () > zq_bench_deadline_ns ())
            result->errnum = ETIMEDOUT;
    }
    if (!result->errnum && !arg->confirm_each && zq_bench_drain_confirms (queue, &confirmed))
        result->errnum = errno;
    result->end_ns = zq_bench_now_ns ();
    result->messages = confirmed;
    if (!result->errnum && arg->confirm_each) {
        //  Each confirm's own fsync + round trip, before the sorts below.
        for (uint64_t i = 0; i < arg->count; i++)
            baseline.sum_ns[i] = baseline.fsync_ns[i] + baseline.rtt_ns[i];
        double sum_p99_us;
        zq_bench_percentiles (baseline.sum_ns, arg->count, &result->sum_p50_us, &sum_p99_us);
        zq_bench_percentiles (samples, arg->count, &result->p50_us, &result->p99_us);
        zq_bench_percentiles (baseline.fsync_ns, arg->count, &result->fsync_p50_us,
                              &result->fsync_p99_us);
        double rtt_p99_us;
        zq_bench_percentiles (baseline.rtt_ns, arg->count, &result->rtt_p50_us, &rtt_p99_us);
        result->value = (double)baseline.record_size;
    }
    zq_queue_destroy (&queue);
    s_baseline_close (&baseline);
    free (samples);
}

static void
s_consumer (zq_cli_t *cli, void *arg_p, zq_bench_result_t *result)
{
    s_reliable_arg_t *arg = (s_reliable_arg_t *)arg_p;
    if (!arg->embedded)
        close (arg->go_pipe[0]);
    zq_queue_t *queue = zq_bench_consumer_open (cli, arg->endpoint, result);
    if (!queue)
        return;
    for (uint64_t i = 0; i < arg->warmup + arg->count; i++) {
        if (i == arg->warmup) {
            char go = 'g';
            if (write (arg->go_pipe[1], &go, 1) != 1) {
                result->errnum = EPIPE;
                break;
            }
        }
        if (zq_bench_take_one (queue, result))
            break;
    }
    result->end_ns = zq_bench_now_ns ();
    zq_queue_destroy (&queue); //  lingers until the acks are out
}

//  Reads the server's endpoint, and in a confirm run its echo's. Returns
//  0, or -1 if they did not come in time.
static int
s_read_endpoints (s_reliable_arg_t *arg)
{
    int64_t deadline_ns = zq_bench_now_ns () + (int64_t)ZQ_BENCH_STALL_MS * 1000000;
    if (zq_bench_read_line (arg->endpoint_pipe[0], deadline_ns, arg->endpoint,
                            sizeof arg->endpoint))
        return -1;
    if (arg->confirm_each &&
        zq_bench_read_line (arg->endpoint_pipe[0], deadline_ns, arg->echo, sizeof arg->echo))
        return -1;
    return 0;
}

typedef struct {
    zq_cli_t *cli;
    s_reliable_arg_t *arg;
    zq_bench_child_fn *fn;
    zq_bench_result_t result;
} s_thread_t;

static void *
s_thread_main (void *thread_p)
{
    s_thread_t *thread = (s_thread_t *)thread_p;
    thread->fn (thread->cli, thread->arg, &thread->result);
    return NULL;
}

//  Over inproc: server and consumer threads beside the producer, in this
//  forked process. Reports the producer's result, and as value the
//  consumer's end minus the producer's start (ns); errnum is the first
//  failure of the three.
static void
s_embedded (zq_cli_t *cli, void *arg_p, zq_bench_result_t *result)
{
    s_reliable_arg_t *arg = (s_reliable_arg_t *)arg_p;
    //  The threads share one context: make it before any runs.
    zsys_init ();
    s_thread_t server = {cli, arg, s_server, {0}}, consumer = {cli, arg, s_consumer, {0}};
    pthread_t server_thread, consumer_thread;
    if (pthread_create (&server_thread, NULL, s_thread_main, &server)) {
        result->errnum = EAGAIN;
        return;
    }
    bool consuming = false;
    if (s_read_endpoints (arg))
        result->errnum = EPIPE;
    else if (!arg->confirm_each) {
        if (pthread_create (&consumer_thread, NULL, s_thread_main, &consumer))
            result->errnum = EAGAIN;
        else
            consuming = true;
    }
    if (!result->errnum)
        s_producer (cli, arg, result);
    if (consuming)
        pthread_join (consumer_thread, NULL);
    //  Stop the server: a byte makes the stop pipe readable.
    char stop = 's';
    if (write (arg->stop_pipe[1], &stop, 1) != 1 && !result->errnum)
        result->errnum = EPIPE;
    pthread_join (server_thread, NULL);
    if (!result->errnum)
        result->errnum = consumer.result.errnum ? consumer.result.errnum : server.result.errnum;
    if (consuming)
        result->value = (double)(consumer.result.end_ns - result->start_ns);
}

//  One run: server, producer, and (e2e) consumer. Returns 0 or an exit code.
static int
s_run (zq_cli_t *cli, s_reliable_arg_t *arg, zq_bench_result_t *producer_result,
       zq_bench_result_t *consumer_result)
{
    const char *base = zq_bench_dir (cli);
    if (zq_bench_mkdtemp (base, "zq-bench-reliable", arg->dir, sizeof arg->dir)) {
        zq_cli_error (cli, "cannot make a directory in %s: %s", base, strerror (errno));
        return ZQ_EXIT_TRANSPORT;
    }
    arg->embedded = streq (cli->transport, "inproc");
    if (arg->embedded)
        snprintf (arg->bind, sizeof arg->bind, "@inproc://zq-bench-reliable");
    else if (streq (cli->transport, "ipc"))
        snprintf (arg->bind, sizeof arg->bind, "@ipc://%s/socket", arg->dir);
    else
        snprintf (arg->bind, sizeof arg->bind, "@tcp://127.0.0.1:*");
    zq_bench_child_t server = {-1, -1}, producer = {-1, -1}, consumer = {-1, -1};
    zq_bench_result_t server_result;
    memset (&server_result, 0, sizeof server_result);
    memset (consumer_result, 0, sizeof *consumer_result);
    memset (producer_result, 0, sizeof *producer_result);
    int errnum = 0;
    if (pipe (arg->endpoint_pipe) || pipe (arg->stop_pipe) || pipe (arg->go_pipe) ||
        zq_bench_spawn (&server, arg->embedded ? s_embedded : s_server, cli, arg))
        errnum = errno;
    if (arg->embedded) {
        //  One process: its result is the producer's (see s_embedded).
        if (!errnum && zq_bench_collect (&server, zq_bench_deadline_ns (), producer_result))
            errnum = producer_result->errnum;
        if (!errnum && producer_result->errnum)
            errnum = producer_result->errnum;
        consumer_result->end_ns = producer_result->start_ns + (int64_t)producer_result->value;
    }
    if (!errnum && !arg->embedded) {
        close (arg->endpoint_pipe[1]);
        arg->endpoint_pipe[1] = -1;
        if (s_read_endpoints (arg))
            errnum = EPIPE;
    }
    if (!errnum && !arg->embedded && !arg->confirm_each &&
        zq_bench_spawn (&consumer, s_consumer, cli, arg))
        errnum = errno;
    if (!errnum && !arg->embedded && zq_bench_spawn (&producer, s_producer, cli, arg))
        errnum = errno;
    //  Both ends of the go pipe are in the children now.
    close (arg->go_pipe[0]);
    close (arg->go_pipe[1]);
    if (!errnum && !arg->embedded &&
        zq_bench_collect (&producer, zq_bench_deadline_ns (), producer_result))
        errnum = producer_result->errnum;
    if (!errnum && producer_result->errnum)
        errnum = producer_result->errnum;
    if (!errnum && !arg->embedded && !arg->confirm_each &&
        zq_bench_collect (&consumer, zq_bench_deadline_ns (), consumer_result))
        errnum = consumer_result->errnum;
    if (!errnum && consumer_result->errnum)
        errnum = consumer_result->errnum;
    zq_bench_kill (&producer);
    zq_bench_kill (&consumer);
    //  Stop the server: it syncs and closes its spools.
    close (arg->stop_pipe[1]);
    if (server.pid > 0 &&
        zq_bench_collect (&server, zq_bench_now_ns () + (int64_t)ZQ_BENCH_STALL_MS * 1000000,
                          &server_result) &&
        !errnum)
        errnum = server_result.errnum;
    close (arg->stop_pipe[0]);
    if (arg->endpoint_pipe[1] >= 0)
        close (arg->endpoint_pipe[1]);
    close (arg->endpoint_pipe[0]);
    zq_bench_rmtree (arg->dir, 2);
    if (errnum) {
        if (zq_cli_interrupted)
            return zq_cli_interrupt_exit ();
        zq_cli_error (cli, "%s run failed: %s", arg->confirm_each ? "confirm" : "e2e",
                      zq_strerror (errnum));
        return ZQ_EXIT_TRANSPORT;
    }
    return 0;
}

int
zq_bench_reliable (zq_cli_t *cli)
{
    if (!cli->given[ZQ_OPT_COUNT] || cli->count == 0)
        cli->count = 200000;
    uint64_t latency_count = cli->count < S_LATENCY_MAX ? cli->count : S_LATENCY_MAX;
    int64_t window;
    if (zq_options_is_set (cli->options, "max_in_flight"))
        zq_options_get_int (cli->options, "max_in_flight", &window);
    else
        window = ZQ_PRODUCER_WINDOW_DEFAULT;
    int rounds = cli->rounds;
    s_reliable_arg_t arg;
    memset (&arg, 0, sizeof arg);
    void *body = zq_bench_body (cli->size, &arg.body_size);
    arg.body = body;
    double *values = (double *)calloc ((size_t)rounds * 7, sizeof (double));
    if (!body || !values) {
        zq_cli_error (cli, "%s", strerror (ENOMEM));
        free (body);
        free (values);
        return ZQ_EXIT_TRANSPORT;
    }
    double *put_rate = values, *e2e_rate = values + rounds;
    double *confirm50 = values + 2 * rounds, *confirm99 = values + 3 * rounds;
    double *fsync50 = values + 4 * rounds, *fsync99 = values + 5 * rounds;
    double *raw_rate = values + 6 * rounds;
    double *rtt50 = (double *)calloc ((size_t)rounds * 2, sizeof (double));
    double *paired50 = rtt50 + rounds;
    if (!rtt50) {
        zq_cli_error (cli, "%s", strerror (ENOMEM));
        free (body);
        free (values);
        return ZQ_EXIT_TRANSPORT;
    }
    const char *base = zq_bench_dir (cli);
    zq_bench_progress (cli,
                       "%s size=%zu in %s: %d rounds of confirm (%llu sends one at a time, "
                       "each beside one write + fdatasync and one raw round trip to the "
                       "server's process, in turn), then raw (a libzmq relay in the server's "
                       "place) and zq e2e (%llu "
                       "posts, window %lld, %d warm-up messages); server, producer and consumer "
                       "%s; median reported",
                       cli->transport, cli->size, base, rounds, (unsigned long long)latency_count,
                       (unsigned long long)cli->count, (long long)window, S_WARMUP,
                       streq (cli->transport, "inproc") ? "threads of one process"
                                                        : "in separate processes");
    int rc = 0;
    size_t record_size = 0;
    for (int round = 0; rc == 0 && round < rounds; round++) {
        zq_bench_result_t producer, consumer;
        arg.confirm_each = true;
        arg.warmup = 100;
        arg.count = latency_count;
        rc = s_run (cli, &arg, &producer, &consumer);
        if (rc)
            break;
        confirm50[round] = producer.p50_us;
        confirm99[round] = producer.p99_us;
        fsync50[round] = producer.fsync_p50_us;
        fsync99[round] = producer.fsync_p99_us;
        rtt50[round] = producer.rtt_p50_us;
        paired50[round] = producer.sum_p50_us;
        record_size = (size_t)producer.value;
        rc = zq_bench_relay (cli, ZQ_BENCH_RELAY_E2E, 1, S_WARMUP, cli->count, &raw_rate[round],
                             NULL);
        if (rc)
            break;
        arg.confirm_each = false;
        arg.warmup = S_WARMUP;
        arg.count = cli->count;
        rc = s_run (cli, &arg, &producer, &consumer);
        if (rc)
            break;
        put_rate[round] = (double)cli->count * 1e9 / (double)(producer.end_ns - producer.start_ns);
        e2e_rate[round] = (double)cli->count * 1e9 / (double)(consumer.end_ns - producer.start_ns);
        zq_bench_progress (cli,
                           "round %d/%d: fsync (%zu bytes) p50 %.1f us p99 %.1f us; confirm p50 "
                           "%.1f us p99 %.1f us; raw round trip p50 %.1f us; put %.0f msgs/s, "
                           "e2e %.0f msgs/s, raw %.0f msgs/s",
                           round + 1, rounds, record_size, fsync50[round], fsync99[round],
                           confirm50[round], confirm99[round], rtt50[round], put_rate[round],
                           e2e_rate[round], raw_rate[round]);
    }
    if (rc == 0) {
        double e2e = zq_bench_median (e2e_rate, rounds), raw = zq_bench_median (raw_rate, rounds);
        printf ("reliable e2e %s size=%zu count=%llu fsync=always window=%lld put_msgs_per_s=%.0f "
                "e2e_msgs_per_s=%.0f raw_msgs_per_s=%.0f ratio=%.3f\n",
                cli->transport, cli->size, (unsigned long long)cli->count, (long long)window,
                zq_bench_median (put_rate, rounds), e2e, raw, e2e / raw);
        char label[64];
        snprintf (label, sizeof label, "reliable confirm %s", cli->transport);
        zq_bench_print_confirm (label, cli->size, latency_count, confirm50, confirm99, fsync50,
                                fsync99, rounds);
        double confirm = zq_bench_median (confirm50, rounds);
        double paired = zq_bench_median (paired50, rounds);
        printf ("reliable rtt %s size=%zu raw_rtt_p50_us=%.1f fsync_p50_us=%.1f "
                "confirm_p50_us=%.1f over_fsync_and_rtt_us=%.1f fsync_plus_rtt_p50_us=%.1f "
                "over_paired_us=%.1f\n",
                cli->transport, cli->size, zq_bench_median (rtt50, rounds),
                zq_bench_median (fsync50, rounds), confirm,
                confirm - zq_bench_median (fsync50, rounds) - zq_bench_median (rtt50, rounds),
                paired, confirm - paired);
    }
    free (body);
    free (values);
    free (rtt50);
    return rc;
}
