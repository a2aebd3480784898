/*  =========================================================================
    zq_bench_rpc - zq bench rpc: request/reply round trips, one at a time,
    zq's rpc client and server against raw DEALER/ROUTER in the same run.

    Both pairs run side by side in every run, so that both meet the same
    state of the machine (on a virtual machine a round trip's time moves
    by a tenth and more within seconds): the servers' process holds the
    zq rpc server (its main thread) and the raw ROUTER echo (a thread of
    its own), the client's process the zq rpc client and the raw DEALER,
    each pair in its own ZeroMQ context (its own I/O thread), over its own
    endpoint. The client warms both up, one round trip of each in turn,
    then times blocks of round trips, a raw block and a zq block in turn
    (raw first, then zq first, and so on), until each has count: a block
    is a fortieth of the count (at most 500, at least 1), so a change of
    the machine's state within the run weighs on both. Each echo server
    serves exactly the requests of the run (warm-up included). The client
    reads the clock before each send and after each reply. The raw side
    does what a raw libzmq user would: the DEALER sends one SIZE-byte
    frame, the ROUTER sends the routing id and the same frame back. The
    zq side makes a message per request and per reply, as a zq user
    would (zq_msg_new, zq_msg_set_body, zq_queue_send / zq_queue_recv /
    zq_queue_reply).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_cli.h"
#include <pthread.h>

//  ---- The servers' process --------------------------------------------------

//  Answers requests on queue (zq's echo). Returns 0, or an errno.
static int
s_zq_echo (zq_queue_t *queue, uint64_t requests)
{
    for (uint64_t i = 0; i < requests; i++) {
        zq_msg_t *request = zq_queue_recv (queue, ZQ_BENCH_STALL_MS);
        if (!request)
            return errno;
        size_t size = 0;
        const void *body = zq_msg_body (request, &size);
        zq_msg_t *reply = zq_msg_new (zq_msg_subject (request));
        if (!reply || zq_msg_set_body (reply, body, size) ||
            zq_queue_reply (queue, request, &reply, ZQ_BENCH_STALL_MS)) {
            int errnum = errno;
            zq_msg_destroy (&reply);
            zq_msg_destroy (&request);
            return errnum;
        }
        zq_msg_destroy (&request);
    }
    return 0;
}

//  The raw echo's thread: its socket, the requests to answer, its outcome.
typedef struct {
    void *socket;
    uint64_t requests;
    int errnum;
} s_raw_echo_t;

static void *
s_raw_echo (void *arg)
{
    s_raw_echo_t *echo = (s_raw_echo_t *)arg;
    zmq_msg_t routing_id, body;
    zmq_msg_init (&routing_id);
    zmq_msg_init (&body);
    for (uint64_t i = 0; i < echo->requests; i++)
        if (zmq_msg_recv (&routing_id, echo->socket, 0) < 0 ||
            zmq_msg_recv (&body, echo->socket, 0) < 0 ||
            zmq_msg_send (&routing_id, echo->socket, ZMQ_SNDMORE) < 0 ||
            zmq_msg_send (&body, echo->socket, 0) < 0) {
            echo->errnum = errno;
            break;
        }
    zmq_msg_close (&routing_id);
    zmq_msg_close (&body);
    return NULL;
}

static void
s_servers (zq_bench_run_t *run, zq_bench_result_t *result)
{
    uint64_t requests = run->warmup + run->count;
    zq_queue_t *queue = zq_bench_queue_bind (run, "rpc", ZQ_SERVER, result);
    void *socket = queue ? zq_bench_raw_bind (run, ZMQ_ROUTER, ZQ_BENCH_STALL_MS, result) : NULL;
    s_raw_echo_t raw = {socket, requests, 0};
    pthread_t thread;
    int rc = socket ? pthread_create (&thread, NULL, s_raw_echo, &raw) : 0;
    if (rc) {
        result->errnum = rc;
        zmq_close (socket);
        socket = NULL;
    }
    if (socket) {
        result->errnum = s_zq_echo (queue, requests);
        pthread_join (thread, NULL);
        if (!result->errnum)
            result->errnum = raw.errnum;
        if (!result->errnum)
            zq_bench_go_wait (run); //  the client has every reply: close now
        zmq_close (socket);
    }
    zq_queue_destroy (&queue);
}

//  ---- The client's process --------------------------------------------------

//  One round trip of each: 0, or -1 with errno.
static int
s_zq_round_trip (zq_bench_run_t *run, zq_queue_t *queue)
{
    zq_msg_t *request = zq_msg_new ("bench");
    if (!request || zq_msg_set_body (request, run->payload, run->payload_size) ||
        zq_queue_send (queue, &request, ZQ_BENCH_STALL_MS)) {
        int saved = errno;
        zq_msg_destroy (&request);
        errno = saved;
        return -1;
    }
    zq_msg_t *reply = zq_queue_recv (queue, ZQ_BENCH_STALL_MS);
    if (!reply)
        return -1;
    zq_msg_destroy (&reply);
    return 0;
}

static int
s_raw_round_trip (zq_bench_run_t *run, void *socket, zmq_msg_t *frame)
{
    if (zmq_send (socket, run->raw_payload, run->raw_payload_size, 0) < 0 ||
        zmq_msg_recv (frame, socket, 0) < 0)
        return -1;
    return 0;
}

static void
s_client (zq_bench_run_t *run, zq_bench_result_t *result)
{
    //  Each side's latencies: raw's first, then zq's.
    int64_t *latency_ns = (int64_t *)calloc (2 * (run->count ? run->count : 1), sizeof (int64_t));
    zq_queue_t *queue = latency_ns ? zq_bench_queue_connect (run, "rpc", ZQ_CLIENT, result) : NULL;
    void *socket = queue ? zq_bench_raw_dealer (run->cli, run->endpoint_raw, false) : NULL;
    if (!latency_ns || (queue && !socket))
        result->errnum = errno;
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    for (uint64_t i = 0; i < run->warmup && !result->errnum; i++)
        if (s_raw_round_trip (run, socket, &frame) || s_zq_round_trip (run, queue))
            result->errnum = errno;
    uint64_t block = run->count / 40;
    block = block < 1 ? 1 : block > 500 ? 500 : block;
    for (uint64_t done = 0; done < run->count && !result->errnum; done += block) {
        uint64_t end = done + block < run->count ? done + block : run->count;
        //  Raw first in even blocks, zq first in odd ones.
        int first = (int)((done / block) & 1);
        for (int turn = 0; turn < 2 && !result->errnum; turn++) {
            int side = first ^ turn; //  0 raw, 1 zq
            int64_t *samples = latency_ns + (size_t)side * run->count;
            for (uint64_t i = done; i < end; i++) {
                int64_t start = zq_bench_now_ns ();
                if (side == 0 ? s_raw_round_trip (run, socket, &frame)
                              : s_zq_round_trip (run, queue)) {
                    result->errnum = errno;
                    break;
                }
                samples[i] = zq_bench_now_ns () - start;
            }
        }
    }
    zmq_msg_close (&frame);
    zq_bench_go (run); //  the servers may close now
    zq_queue_destroy (&queue);
    if (socket)
        zmq_close (socket);
    if (!result->errnum && run->count) {
        zq_bench_percentiles (latency_ns, run->count, &result->raw_p50_us, &result->raw_p99_us);
        zq_bench_percentiles (latency_ns + run->count, run->count, &result->p50_us,
                              &result->p99_us);
    }
    free (latency_ns);
}

int
zq_bench_rpc (zq_cli_t *cli)
{
    void *body, *frame;
    size_t body_size;
    uint64_t warmup = zq_bench_payloads (cli, 20000, 10000, &body, &body_size, &frame);
    int rounds = cli->rounds;
    double *values = (double *)calloc ((size_t)rounds * 4, sizeof (double));
    int rc = (body && frame && values) ? 0 : ZQ_EXIT_TRANSPORT;
    if (rc)
        zq_cli_error (cli, "%s", strerror (ENOMEM));
    double *raw_p50 = values, *raw_p99 = values + rounds;
    double *zq_p50 = values + 2 * rounds, *zq_p99 = values + 3 * rounds;
    zq_bench_progress (cli,
                       "%s size=%zu count=%llu: %d rounds of raw and zq side by side, one "
                       "request at a time, clients and servers in separate %s, %llu warm-up "
                       "round trips of each per round (not timed), then blocks of raw and zq "
                       "round trips in turn; median reported",
                       cli->transport, cli->size, (unsigned long long)cli->count, rounds,
                       streq (cli->transport, "inproc") ? "threads" : "processes",
                       (unsigned long long)warmup);
    for (int round = 0; rc == 0 && round < rounds; round++) {
        zq_bench_run_t run;
        zq_bench_run_init (&run, cli, true, warmup, body, body_size, frame);
        run.both = true;
        zq_bench_result_t servers, client;
        rc = zq_bench_run (&run, s_servers, s_client, &servers, &client);
        if (rc == 0) {
            raw_p50[round] = client.raw_p50_us;
            raw_p99[round] = client.raw_p99_us;
            zq_p50[round] = client.p50_us;
            zq_p99[round] = client.p99_us;
            zq_bench_progress (cli,
                               "round %d/%d: raw p50 %.1f us p99 %.1f us, zq p50 %.1f us p99 "
                               "%.1f us",
                               round + 1, rounds, raw_p50[round], raw_p99[round], zq_p50[round],
                               zq_p99[round]);
        }
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
    free (values);
    return rc;
}
