/*  =========================================================================
    zq_bench_rpc - zq bench rpc: request/reply round trips, one at a time,
    zq's rpc client and server against raw DEALER/ROUTER in the same run.

    The echo server binds and serves exactly the requests of the run
    (warm-up included). The client reads the clock before each send and
    after each reply; the warm-up round trips are not recorded. The raw
    side does what a raw libzmq user would: the DEALER sends one SIZE-byte
    frame, the ROUTER sends the routing id and the same frame back. The zq
    side makes a message per request and per reply, as a zq user would
    (zq_msg_new, zq_msg_set_body, zq_queue_send / zq_queue_recv /
    zq_queue_reply).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_cli.h"

static void
s_server (zq_bench_run_t *run, zq_bench_result_t *result)
{
    uint64_t requests = run->warmup + run->count;
    if (run->use_zq) {
        zq_queue_t *queue = zq_bench_queue_bind (run, "rpc", ZQ_SERVER, result);
        if (!queue)
            return;
        for (uint64_t i = 0; i < requests; i++) {
            zq_msg_t *request = zq_queue_recv (queue, ZQ_BENCH_STALL_MS);
            if (!request) {
                result->errnum = errno;
                break;
            }
            size_t size = 0;
            const void *body = zq_msg_body (request, &size);
            zq_msg_t *reply = zq_msg_new (zq_msg_subject (request));
            if (!reply || zq_msg_set_body (reply, body, size) ||
                zq_queue_reply (queue, request, &reply, ZQ_BENCH_STALL_MS)) {
                result->errnum = errno;
                zq_msg_destroy (&reply);
                zq_msg_destroy (&request);
                break;
            }
            zq_msg_destroy (&request);
        }
        //  Stay connected until the client has every reply, as the raw
        //  side does.
        if (!result->errnum)
            zq_bench_go_wait (run);
        zq_queue_destroy (&queue);
        return;
    }
    void *socket = zq_bench_raw_bind (run, ZMQ_ROUTER, ZQ_BENCH_STALL_MS, result);
    if (!socket)
        return;
    zmq_msg_t routing_id, body;
    zmq_msg_init (&routing_id);
    zmq_msg_init (&body);
    for (uint64_t i = 0; i < requests; i++)
        if (zmq_msg_recv (&routing_id, socket, 0) < 0 || zmq_msg_recv (&body, socket, 0) < 0 ||
            zmq_msg_send (&routing_id, socket, ZMQ_SNDMORE) < 0 ||
            zmq_msg_send (&body, socket, 0) < 0) {
            result->errnum = errno;
            break;
        }
    zmq_msg_close (&routing_id);
    zmq_msg_close (&body);
    if (!result->errnum)
        zq_bench_go_wait (run); //  as the zq server does
    zmq_close (socket);
}

static void
s_client (zq_bench_run_t *run, zq_bench_result_t *result)
{
    int64_t *latency_ns = (int64_t *)calloc (run->count, sizeof (int64_t));
    if (!latency_ns) {
        result->errnum = ENOMEM;
        return;
    }
    zq_queue_t *queue = NULL;
    void *socket = NULL;
    if (run->use_zq)
        queue = zq_bench_queue_connect (run, "rpc", ZQ_CLIENT, result);
    else {
        socket = zmq_socket (zq_bench_raw_context (), ZMQ_DEALER);
        int timeout = ZQ_BENCH_STALL_MS;
        if (!socket || zq_bench_raw_options (run->cli, socket) ||
            zmq_setsockopt (socket, ZMQ_RCVTIMEO, &timeout, sizeof timeout) ||
            zmq_connect (socket, run->endpoint))
            result->errnum = errno;
    }
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    for (uint64_t i = 0; i < run->warmup + run->count && !result->errnum; i++) {
        int64_t start = zq_bench_now_ns ();
        if (run->use_zq) {
            zq_msg_t *request = zq_msg_new ("bench");
            if (!request || zq_msg_set_body (request, run->payload, run->payload_size) ||
                zq_queue_send (queue, &request, ZQ_BENCH_STALL_MS)) {
                result->errnum = errno;
                zq_msg_destroy (&request);
                break;
            }
            zq_msg_t *reply = zq_queue_recv (queue, ZQ_BENCH_STALL_MS);
            if (!reply) {
                result->errnum = errno;
                break;
            }
            zq_msg_destroy (&reply);
        } else if (zmq_send (socket, run->payload, run->payload_size, 0) < 0 ||
                   zmq_msg_recv (&frame, socket, 0) < 0) {
            result->errnum = errno;
            break;
        }
        int64_t end = zq_bench_now_ns ();
        if (i >= run->warmup)
            latency_ns[i - run->warmup] = end - start;
    }
    zmq_msg_close (&frame);
    zq_bench_go (run); //  the server may close now
    zq_queue_destroy (&queue);
    if (socket)
        zmq_close (socket);
    if (!result->errnum && run->count)
        zq_bench_percentiles (latency_ns, run->count, &result->p50_us, &result->p99_us);
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
                       "%s size=%zu count=%llu: %d rounds of raw then zq, one request at a time, "
                       "client and server in separate %s, %llu warm-up round trips per run (not "
                       "timed); median reported",
                       cli->transport, cli->size, (unsigned long long)cli->count, rounds,
                       streq (cli->transport, "inproc") ? "threads" : "processes",
                       (unsigned long long)warmup);
    for (int round = 0; rc == 0 && round < rounds; round++) {
        for (int side = 0; rc == 0 && side < 2; side++) {
            zq_bench_run_t run;
            zq_bench_run_init (&run, cli, side == 1, warmup, body, body_size, frame);
            zq_bench_result_t server, client;
            rc = zq_bench_run (&run, s_server, s_client, &server, &client);
            if (rc == 0) {
                (run.use_zq ? zq_p50 : raw_p50)[round] = client.p50_us;
                (run.use_zq ? zq_p99 : raw_p99)[round] = client.p99_us;
            }
        }
        if (rc == 0)
            zq_bench_progress (cli,
                               "round %d/%d: raw p50 %.1f us p99 %.1f us, zq p50 %.1f us p99 "
                               "%.1f us",
                               round + 1, rounds, raw_p50[round], raw_p99[round], zq_p50[round],
                               zq_p99[round]);
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
