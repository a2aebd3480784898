/*  =========================================================================
    zq_bench_pipeline - zq bench pipeline: PUSH/PULL throughput, zq's
    pipeline producer and consumer against raw libzmq in the same run.

    The receiver binds and takes the warm-up messages, then tells the
    sender to go; the sender reads the clock and sends count messages; the
    receiver reads the clock after the last one. The raw sender sends one
    SIZE-byte frame per message (zmq_send, ZMQ_IMMEDIATE as zq's producer
    sets); the zq sender makes a message per send as a zq user would
    (zq_msg_new, zq_msg_set_body with SIZE bytes as a msgpack bin,
    zq_queue_send, and zq_queue_flush before it waits for the go); the zq
    receiver takes each with zq_queue_recv and destroys it, the raw one
    with zmq_msg_recv.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_cli.h"

static void
s_receiver (zq_bench_run_t *run, zq_bench_result_t *result)
{
    zq_queue_t *queue = NULL;
    void *socket = NULL;
    if (run->use_zq)
        queue = zq_bench_queue_bind (run, "pipeline", ZQ_CONSUMER, result);
    else
        socket = zq_bench_raw_bind (run, ZMQ_PULL, ZQ_BENCH_STALL_MS, result);
    if (!queue && !socket)
        return;
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    bool went = false;
    for (uint64_t i = 0; i < run->warmup + run->count; i++) {
        if (i == run->warmup) {
            zq_bench_go (run);
            went = true;
        }
        if (run->use_zq) {
            zq_msg_t *msg = zq_queue_recv (queue, ZQ_BENCH_STALL_MS);
            if (!msg) {
                result->errnum = errno;
                break;
            }
            zq_msg_destroy (&msg);
        } else if (zmq_msg_recv (&frame, socket, 0) < 0) {
            result->errnum = errno;
            break;
        }
    }
    result->end_ns = zq_bench_now_ns ();
    if (!went)
        zq_bench_go (run); //  never leave the sender waiting
    zmq_msg_close (&frame);
    zq_queue_destroy (&queue);
    if (socket)
        zmq_close (socket);
}

static void
s_sender (zq_bench_run_t *run, zq_bench_result_t *result)
{
    zq_queue_t *queue = NULL;
    void *socket = NULL;
    if (run->use_zq) {
        queue = zq_bench_queue_connect (run, "pipeline", ZQ_PRODUCER, result);
        if (!queue)
            return;
    } else {
        socket = zmq_socket (zq_bench_raw_context (), ZMQ_PUSH);
        int immediate = 1;
        int timeout = ZQ_BENCH_STALL_MS;
        if (!socket || zq_bench_raw_options (run->cli, socket) ||
            zmq_setsockopt (socket, ZMQ_IMMEDIATE, &immediate, sizeof immediate) ||
            zmq_setsockopt (socket, ZMQ_SNDTIMEO, &timeout, sizeof timeout) ||
            zmq_connect (socket, run->endpoint)) {
            result->errnum = errno;
            if (socket)
                zmq_close (socket);
            return;
        }
    }
    for (uint64_t i = 0; i < run->warmup + run->count; i++) {
        if (i == run->warmup) {
            //  The receiver waits for the whole warm-up: send what the
            //  producer gathered before waiting for it.
            if (queue && zq_queue_flush (queue, ZQ_BENCH_STALL_MS)) {
                result->errnum = errno;
                break;
            }
            if (zq_bench_go_wait (run)) {
                result->errnum = EPIPE;
                break;
            }
            result->start_ns = zq_bench_now_ns ();
        }
        if (run->use_zq) {
            zq_msg_t *msg = zq_msg_new ("bench");
            if (!msg || zq_msg_set_body (msg, run->payload, run->payload_size) ||
                zq_queue_send (queue, &msg, ZQ_BENCH_STALL_MS)) {
                result->errnum = errno;
                zq_msg_destroy (&msg);
                break;
            }
        } else if (zmq_send (socket, run->payload, run->payload_size, 0) < 0) {
            result->errnum = errno;
            break;
        }
    }
    zq_queue_destroy (&queue);
    if (socket)
        zmq_close (socket);
}

int
zq_bench_pipeline (zq_cli_t *cli)
{
    void *body, *frame;
    size_t body_size;
    uint64_t warmup = zq_bench_payloads (cli, 1000000, 100000, &body, &body_size, &frame);
    double *raw = (double *)calloc ((size_t)cli->rounds, sizeof (double));
    double *zq = (double *)calloc ((size_t)cli->rounds, sizeof (double));
    int rc = (body && frame && raw && zq) ? 0 : ZQ_EXIT_TRANSPORT;
    zq_bench_progress (cli,
                       "%s size=%zu count=%llu: %d rounds of raw then zq, sender and receiver in "
                       "separate %s, %llu warm-up messages per run (not timed); median reported",
                       cli->transport, cli->size, (unsigned long long)cli->count, cli->rounds,
                       streq (cli->transport, "inproc") ? "threads" : "processes",
                       (unsigned long long)warmup);
    for (int round = 0; rc == 0 && round < cli->rounds; round++) {
        for (int side = 0; rc == 0 && side < 2; side++) {
            zq_bench_run_t run;
            zq_bench_run_init (&run, cli, side == 1, warmup, body, body_size, frame);
            zq_bench_result_t receiver, sender;
            rc = zq_bench_run (&run, s_receiver, s_sender, &receiver, &sender);
            if (rc == 0)
                (run.use_zq ? zq : raw)[round] =
                    (double)cli->count * 1e9 / (double)(receiver.end_ns - sender.start_ns);
        }
        if (rc == 0)
            zq_bench_progress (cli, "round %d/%d: raw %.0f msgs/s, zq %.0f msgs/s", round + 1,
                               cli->rounds, raw[round], zq[round]);
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
