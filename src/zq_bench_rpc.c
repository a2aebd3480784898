/*  =========================================================================
    zq_bench_rpc - zq bench rpc: request/reply round trips, one at a time,
    zq's rpc client and server against raw DEALER/ROUTER in the same run.

    An echo server runs in its own thread and serves exactly the requests
    of the run (warm-up included). The client (this thread) reads the clock
    before each send and after each reply; the warm-up round trips are not
    recorded. The raw side does what a raw libzmq user would: the DEALER
    sends one SIZE-byte frame, the ROUTER sends the identity and the same
    frame back. The zq side builds a message per request and per reply,
    as a zq user would (zq_msg_new, zq_msg_set_body, zq_queue_send /
    zq_queue_recv / zq_queue_reply).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_cli.h"
#include <pthread.h>

//  A stuck run becomes an error after this long without a reply.
#define S_STALL_MS 10000

typedef struct {
    zq_cli_t *cli;
    bool use_zq;
    uint64_t requests; //  warm-up + timed: the server serves exactly these
    zq_queue_t *queue; //  zq server, opened by the main thread
    void *socket;      //  raw ROUTER, opened by the main thread
    int server_errno;
} s_rpc_run_t;

static void *
s_server (void *arg)
{
    s_rpc_run_t *run = (s_rpc_run_t *)arg;
    int errnum = 0;
    if (run->use_zq) {
        for (uint64_t i = 0; i < run->requests && !errnum; i++) {
            zq_msg_t *request = zq_queue_recv (run->queue, S_STALL_MS);
            if (!request) {
                errnum = errno;
                break;
            }
            size_t size = 0;
            const void *body = zq_msg_body (request, &size);
            zq_msg_t *reply = zq_msg_new (zq_msg_subject (request));
            if (!reply || zq_msg_set_body (reply, body, size) ||
                zq_queue_reply (run->queue, request, &reply, S_STALL_MS))
                errnum = errno;
            zq_msg_destroy (&reply);
            zq_msg_destroy (&request);
        }
    } else {
        zmq_msg_t identity, body;
        zmq_msg_init (&identity);
        zmq_msg_init (&body);
        for (uint64_t i = 0; i < run->requests && !errnum; i++) {
            if (zmq_msg_recv (&identity, run->socket, 0) < 0 ||
                zmq_msg_recv (&body, run->socket, 0) < 0 ||
                zmq_msg_send (&identity, run->socket, ZMQ_SNDMORE) < 0 ||
                zmq_msg_send (&body, run->socket, 0) < 0)
                errnum = errno;
        }
        zmq_msg_close (&identity);
        zmq_msg_close (&body);
    }
    run->server_errno = errnum;
    return NULL;
}

static int
s_compare_int64 (const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

//  One run; stores the p50 and p99 round trip in microseconds. Returns 0
//  or an exit code.
static int
s_rpc_run (zq_cli_t *cli, bool use_zq, const void *payload, size_t payload_size, uint64_t warmup,
           int64_t *latency_ns, double *p50_p, double *p99_p)
{
    s_rpc_run_t run;
    memset (&run, 0, sizeof run);
    run.cli = cli;
    run.use_zq = use_zq;
    run.requests = warmup + cli->count;
    char bind[512], endpoint[512];
    if (zq_bench_bind_endpoint (cli, bind, sizeof bind))
        return ZQ_EXIT_TRANSPORT;

    zq_queue_t *client = NULL;
    void *dealer = NULL;
    char at[520];
    if (use_zq) {
        snprintf (at, sizeof at, "@%s", bind);
        run.queue = zq_queue_new ("rpc", ZQ_SERVER, at, cli->options);
        if (run.queue) {
            snprintf (at, sizeof at, ">%s", zq_queue_endpoint (run.queue));
            client = zq_queue_new ("rpc", ZQ_CLIENT, at, cli->options);
        }
        if (!client) {
            zq_cli_error (cli, "zq rpc on %s: %s", bind, zq_strerror (errno));
            zq_queue_destroy (&run.queue);
            return ZQ_EXIT_TRANSPORT;
        }
    } else {
        void *context = zq_bench_raw_context ();
        run.socket = zmq_socket (context, ZMQ_ROUTER);
        dealer = zmq_socket (context, ZMQ_DEALER);
        size_t length = sizeof endpoint;
        int timeout = S_STALL_MS;
        if (!run.socket || !dealer || zq_bench_raw_options (cli, run.socket) ||
            zq_bench_raw_options (cli, dealer) || zmq_bind (run.socket, bind) ||
            zmq_getsockopt (run.socket, ZMQ_LAST_ENDPOINT, endpoint, &length) ||
            zmq_setsockopt (dealer, ZMQ_RCVTIMEO, &timeout, sizeof timeout) ||
            zmq_setsockopt (run.socket, ZMQ_RCVTIMEO, &timeout, sizeof timeout) ||
            zmq_connect (dealer, endpoint)) {
            zq_cli_error (cli, "raw DEALER/ROUTER on %s: %s", bind, zmq_strerror (errno));
            if (run.socket)
                zmq_close (run.socket);
            if (dealer)
                zmq_close (dealer);
            return ZQ_EXIT_TRANSPORT;
        }
    }
    pthread_t server;
    if (pthread_create (&server, NULL, s_server, &run)) {
        zq_cli_error (cli, "cannot start the server thread");
        zq_queue_destroy (&client);
        zq_queue_destroy (&run.queue);
        if (run.socket)
            zmq_close (run.socket);
        if (dealer)
            zmq_close (dealer);
        return ZQ_EXIT_TRANSPORT;
    }
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    int errnum = 0;
    for (uint64_t i = 0; i < run.requests; i++) {
        int64_t start = zq_bench_now_ns ();
        if (use_zq) {
            zq_msg_t *request = zq_msg_new ("bench");
            if (!request || zq_msg_set_body (request, payload, payload_size) ||
                zq_queue_send (client, &request, S_STALL_MS)) {
                errnum = errno;
                zq_msg_destroy (&request);
                break;
            }
            zq_msg_t *reply = zq_queue_recv (client, S_STALL_MS);
            if (!reply) {
                errnum = errno;
                break;
            }
            size_t size;
            zq_msg_body (reply, &size);
            zq_msg_destroy (&reply);
        } else if (zmq_send (dealer, payload, payload_size, 0) < 0 ||
                   zmq_msg_recv (&frame, dealer, 0) < 0) {
            errnum = errno;
            break;
        }
        int64_t end = zq_bench_now_ns ();
        if (i >= warmup)
            latency_ns[i - warmup] = end - start;
    }
    zmq_msg_close (&frame);
    //  After a failure the server thread ends by its own receive timeout.
    pthread_join (server, NULL);
    zq_queue_destroy (&client);
    zq_queue_destroy (&run.queue);
    if (run.socket)
        zmq_close (run.socket);
    if (dealer)
        zmq_close (dealer);
    if (errnum || run.server_errno) {
        zq_cli_error (cli, "%s run failed: %s", use_zq ? "zq" : "raw",
                      zq_strerror (errnum ? errnum : run.server_errno));
        return ZQ_EXIT_TRANSPORT;
    }
    qsort (latency_ns, cli->count, sizeof (int64_t), s_compare_int64);
    size_t p99_index = (size_t)((double)cli->count * 0.99);
    if (p99_index >= cli->count)
        p99_index = cli->count - 1;
    *p50_p = (double)latency_ns[cli->count / 2] / 1000.0;
    *p99_p = (double)latency_ns[p99_index] / 1000.0;
    return 0;
}

int
zq_bench_rpc (zq_cli_t *cli)
{
    if (!cli->given[ZQ_OPT_COUNT] || cli->count == 0)
        cli->count = 20000;
    uint64_t warmup = cli->count / 10;
    warmup = warmup < 1000 ? 1000 : warmup > 10000 ? 10000 : warmup;
    size_t body_size = 0;
    void *body = zq_bench_body (cli->size, &body_size);
    void *frame = calloc (1, cli->size ? cli->size : 1);
    int64_t *latency_ns = (int64_t *)calloc (cli->count, sizeof (int64_t));
    int rounds = cli->rounds;
    double *values = (double *)calloc ((size_t)rounds * 4, sizeof (double));
    double *raw_p50 = values, *raw_p99 = values + rounds;
    double *zq_p50 = values + 2 * rounds, *zq_p99 = values + 3 * rounds;
    int rc = (body && frame && latency_ns && values) ? 0 : ZQ_EXIT_TRANSPORT;
    if (frame)
        memset (frame, 'a', cli->size);
    zq_bench_progress (cli,
                       "%s size=%zu count=%llu: %d rounds of raw then zq, one request at a "
                       "time, %llu warm-up round trips per run (not timed); median reported",
                       cli->transport, cli->size, (unsigned long long)cli->count, rounds,
                       (unsigned long long)warmup);
    for (int round = 0; rc == 0 && round < rounds; round++) {
        rc = s_rpc_run (cli, false, frame, cli->size, warmup, latency_ns, &raw_p50[round],
                        &raw_p99[round]);
        if (rc == 0)
            rc = s_rpc_run (cli, true, body, body_size, warmup, latency_ns, &zq_p50[round],
                            &zq_p99[round]);
        if (rc == 0)
            zq_bench_progress (cli,
                               "round %d/%d: raw p50 %.1f us p99 %.1f us, zq p50 %.1f us "
                               "p99 %.1f us",
                               round + 1, rounds, raw_p50[round], raw_p99[round], zq_p50[round],
                               zq_p99[round]);
        if (zq_cli_interrupted)
            rc = zq_cli_interrupt_exit ();
    }
    if (rc == 0) {
        double raw50 = zq_bench_median (raw_p50, rounds);
        double raw99 = zq_bench_median (raw_p99, rounds);
        double zq50 = zq_bench_median (zq_p50, rounds);
        double zq99 = zq_bench_median (zq_p99, rounds);
        printf ("rpc %s size=%zu count=%llu zq_p50_us=%.1f zq_p99_us=%.1f raw_p50_us=%.1f "
                "raw_p99_us=%.1f ratio=%.3f\n",
                cli->transport, cli->size, (unsigned long long)cli->count, zq50, zq99, raw50, raw99,
                zq50 / raw50);
    }
    free (body);
    free (frame);
    free (latency_ns);
    free (values);
    return rc;
}
