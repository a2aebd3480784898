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

    Where a round trip goes. With a SIZE of S_STAMPS bytes or more, the
    last S_STAMPS bytes of each body (inside zq's bin) carry two readings
    of CLOCK_MONOTONIC, which every thread of the machine shares: the
    client's before its send, then the server's before its reply (the raw
    echo writes it into the frame it sends back, zq's into a copy of the
    run's payload, which its reply carries: the same work on both sides).
    A second line gives the medians of three legs for each side:
    to_server (from the client's clock to the server's after its receive:
    the client's send, the I/O threads, over tcp and ipc the wire, the
    wake-up and the server's receive), server (from there to the reply's
    stamp: for zq, the reply's zq_msg_new) and to_client (from the stamp
    to the client's clock after its receive: making and sending the
    reply, the way back and the client's receive).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_cli.h"
#include <pthread.h>

//  ---- The clocks a body carries ---------------------------------------------

#define S_STAMPS 16 //  the client's clock, then the server's (int64 ns each)
enum { S_SENT, S_REPLIED };

//  The legs, as the second line names them.
enum { S_LEG_TO_SERVER, S_LEG_SERVER, S_LEG_TO_CLIENT, S_LEGS };
static const char *s_leg_names[S_LEGS] = {"to_server", "server", "to_client"};

//  Whether bodies of --size bytes carry the clocks.
static bool
s_stamped (size_t size)
{
    return size >= S_STAMPS;
}

//  Where stamp which (S_SENT, S_REPLIED) sits in a body of size bytes,
//  at least S_STAMPS.
static size_t
s_stamp_at (size_t size, int which)
{
    return size - S_STAMPS + (size_t)which * sizeof (int64_t);
}

//  Writes stamp which into body (size bytes, at least S_STAMPS).
static void
s_stamp (void *body, size_t size, int which, int64_t clock_ns)
{
    memcpy ((uint8_t *)body + s_stamp_at (size, which), &clock_ns, sizeof clock_ns);
}

//  Reads stamp which from body (size bytes, at least S_STAMPS).
static int64_t
s_stamp_read (const void *body, size_t size, int which)
{
    int64_t clock_ns;
    memcpy (&clock_ns, (const uint8_t *)body + s_stamp_at (size, which), sizeof clock_ns);
    return clock_ns;
}

//  ---- The servers' process --------------------------------------------------

//  One side's legs as its server sees them, in ns: to_server and server
//  of each request past the warm-up, when the bodies carry the clocks.
typedef struct {
    bool stamped;      //  the bodies carry the clocks
    size_t body_size;  //  each request body's size
    uint64_t warmup;   //  the first requests, not noted
    uint64_t capacity; //  of each array: the run's count
    uint64_t noted;
    int64_t *to_server_ns;
    int64_t *server_ns;
} s_server_legs_t;

//  For requests of body_size bytes. Returns 0, or ENOMEM.
static int
s_server_legs_init (s_server_legs_t *legs, zq_bench_run_t *run, size_t body_size)
{
    memset (legs, 0, sizeof *legs);
    legs->stamped = s_stamped (run->cli->size);
    legs->body_size = body_size;
    legs->warmup = run->warmup;
    if (!legs->stamped)
        return 0;
    legs->capacity = run->count;
    legs->to_server_ns = (int64_t *)calloc (run->count ? run->count : 1, sizeof (int64_t));
    legs->server_ns = (int64_t *)calloc (run->count ? run->count : 1, sizeof (int64_t));
    return legs->to_server_ns && legs->server_ns ? 0 : ENOMEM;
}

//  Notes request i (numbered from 0, warm-up included), received at
//  received_ns and answered from replying_ns, with body (size bytes) as
//  the client stamped it. Returns 0, or EPROTO for a body of another size
//  or a request past the run's.
static int
s_server_legs_note (s_server_legs_t *legs, uint64_t i, const void *body, size_t size,
                    int64_t received_ns, int64_t replying_ns)
{
    if (size != legs->body_size || i >= legs->warmup + legs->capacity)
        return EPROTO;
    if (i >= legs->warmup) {
        legs->to_server_ns[legs->noted] = received_ns - s_stamp_read (body, size, S_SENT);
        legs->server_ns[legs->noted] = replying_ns - received_ns;
        legs->noted++;
    }
    return 0;
}

//  Stores the medians in result's slots of side (0 raw, 1 zq) and frees.
static void
s_server_legs_report (s_server_legs_t *legs, int side, zq_bench_result_t *result)
{
    double p99_us;
    zq_bench_percentiles (legs->to_server_ns, legs->noted, &result->to_server_us[side], &p99_us);
    zq_bench_percentiles (legs->server_ns, legs->noted, &result->server_us[side], &p99_us);
    free (legs->to_server_ns);
    free (legs->server_ns);
}

//  Answers requests on queue (zq's echo). With the clocks, each reply's
//  body is reply_body (the run's payload, as the raw echo sends back the
//  client's frame) with the server's stamp. Returns 0, or an errno.
static int
s_zq_echo (zq_queue_t *queue, uint64_t requests, s_server_legs_t *legs, uint8_t *reply_body)
{
    for (uint64_t i = 0; i < requests; i++) {
        zq_msg_t *request = zq_queue_recv (queue, ZQ_BENCH_STALL_MS);
        if (!request)
            return errno;
        int64_t received_ns = legs->stamped ? zq_bench_now_ns () : 0;
        size_t size = 0;
        const void *body = zq_msg_body (request, &size);
        zq_msg_t *reply = zq_msg_new (zq_msg_subject (request));
        if (reply && legs->stamped) {
            int64_t replying_ns = zq_bench_now_ns ();
            int errnum = s_server_legs_note (legs, i, body, size, received_ns, replying_ns);
            if (errnum) {
                zq_msg_destroy (&reply);
                zq_msg_destroy (&request);
                return errnum;
            }
            s_stamp (reply_body, size, S_REPLIED, replying_ns);
            body = reply_body;
        }
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

//  The raw echo's thread: its socket, the requests to answer, its legs,
//  its outcome.
typedef struct {
    void *socket;
    uint64_t requests;
    s_server_legs_t legs;
    int errnum;
} s_raw_echo_t;

static void *
s_raw_echo (void *arg)
{
    s_raw_echo_t *echo = (s_raw_echo_t *)arg;
    zmq_msg_t routing_id, body;
    zmq_msg_init (&routing_id);
    zmq_msg_init (&body);
    for (uint64_t i = 0; i < echo->requests && !echo->errnum; i++) {
        if (zmq_msg_recv (&routing_id, echo->socket, 0) < 0 ||
            zmq_msg_recv (&body, echo->socket, 0) < 0) {
            echo->errnum = errno;
            break;
        }
        if (echo->legs.stamped) {
            //  The frame is this thread's alone (ROUTER sends it to one
            //  pipe, never copied): its bytes may change before it goes.
            int64_t received_ns = zq_bench_now_ns ();
            int64_t replying_ns = zq_bench_now_ns ();
            size_t size = zmq_msg_size (&body);
            echo->errnum = s_server_legs_note (&echo->legs, i, zmq_msg_data (&body), size,
                                               received_ns, replying_ns);
            if (!echo->errnum)
                s_stamp (zmq_msg_data (&body), size, S_REPLIED, replying_ns);
        }
        if (!echo->errnum && (zmq_msg_send (&routing_id, echo->socket, ZMQ_SNDMORE) < 0 ||
                              zmq_msg_send (&body, echo->socket, 0) < 0))
            echo->errnum = errno;
    }
    zmq_msg_close (&routing_id);
    zmq_msg_close (&body);
    return NULL;
}

static void
s_servers (zq_bench_run_t *run, zq_bench_result_t *result)
{
    uint64_t requests = run->warmup + run->count;
    s_raw_echo_t raw = {NULL, requests, {0}, 0};
    s_server_legs_t legs;
    result->errnum = s_server_legs_init (&legs, run, run->payload_size);
    if (!result->errnum)
        result->errnum = s_server_legs_init (&raw.legs, run, run->raw_payload_size);
    uint8_t *reply_body = (uint8_t *)malloc (run->payload_size ? run->payload_size : 1);
    if (reply_body)
        memcpy (reply_body, run->payload, run->payload_size);
    else if (!result->errnum)
        result->errnum = ENOMEM;
    zq_queue_t *queue = result->errnum ? NULL : zq_bench_queue_bind (run, "rpc", ZQ_SERVER, result);
    void *socket = queue ? zq_bench_raw_bind (run, ZMQ_ROUTER, ZQ_BENCH_STALL_MS, result) : NULL;
    raw.socket = socket;
    pthread_t thread;
    int rc = socket ? pthread_create (&thread, NULL, s_raw_echo, &raw) : 0;
    if (rc) {
        result->errnum = rc;
        zmq_close (socket);
        socket = NULL;
    }
    if (socket) {
        result->errnum = s_zq_echo (queue, requests, &legs, reply_body);
        pthread_join (thread, NULL);
        if (!result->errnum)
            result->errnum = raw.errnum;
        if (!result->errnum)
            zq_bench_go_wait (run); //  the client has every reply: close now
        zmq_close (socket);
    }
    zq_queue_destroy (&queue);
    s_server_legs_report (&raw.legs, 0, result);
    s_server_legs_report (&legs, 1, result);
    free (reply_body);
}

//  ---- The client's process --------------------------------------------------

//  A side's request body: a copy of its payload, stamped with the clock
//  before each send when bodies carry the clocks, and the stamp of the
//  last reply.
typedef struct {
    uint8_t *data;
    size_t size;
    bool stamped;
    int64_t replied_ns;
} s_request_body_t;

//  Returns 0, or ENOMEM.
static int
s_request_body_init (s_request_body_t *body, const void *payload, size_t size, bool stamped)
{
    body->data = (uint8_t *)malloc (size ? size : 1);
    if (!body->data)
        return ENOMEM;
    memcpy (body->data, payload, size);
    body->size = size;
    body->stamped = stamped;
    body->replied_ns = 0;
    return 0;
}

static void
s_request_body_sending (s_request_body_t *body, int64_t clock_ns)
{
    if (body->stamped)
        s_stamp (body->data, body->size, S_SENT, clock_ns);
}

//  Reads the server's stamp from reply (size bytes). Returns 0, or -1
//  with errno EPROTO for a reply of another size than the request's.
static int
s_request_body_replied (s_request_body_t *body, const void *reply, size_t size)
{
    if (!body->stamped)
        return 0;
    if (size != body->size) {
        errno = EPROTO;
        return -1;
    }
    body->replied_ns = s_stamp_read (reply, size, S_REPLIED);
    return 0;
}

//  One round trip of each: 0, or -1 with errno.
static int
s_zq_round_trip (zq_queue_t *queue, s_request_body_t *body)
{
    zq_msg_t *request = zq_msg_new ("bench");
    if (!request || zq_msg_set_body (request, body->data, body->size) ||
        zq_queue_send (queue, &request, ZQ_BENCH_STALL_MS)) {
        int saved = errno;
        zq_msg_destroy (&request);
        errno = saved;
        return -1;
    }
    zq_msg_t *reply = zq_queue_recv (queue, ZQ_BENCH_STALL_MS);
    if (!reply)
        return -1;
    size_t size;
    const void *reply_body = zq_msg_body (reply, &size);
    int rc = s_request_body_replied (body, reply_body, size);
    zq_msg_destroy (&reply);
    return rc;
}

static int
s_raw_round_trip (void *socket, zmq_msg_t *frame, s_request_body_t *body)
{
    if (zmq_send (socket, body->data, body->size, 0) < 0 || zmq_msg_recv (frame, socket, 0) < 0)
        return -1;
    return s_request_body_replied (body, zmq_msg_data (frame), zmq_msg_size (frame));
}

static void
s_client (zq_bench_run_t *run, zq_bench_result_t *result)
{
    //  Each side's latencies and to_client legs: raw's first, then zq's.
    size_t slots = run->count ? run->count : 1;
    int64_t *latency_ns = (int64_t *)calloc (2 * slots, sizeof (int64_t));
    int64_t *to_client_ns = (int64_t *)calloc (2 * slots, sizeof (int64_t));
    bool stamped = s_stamped (run->cli->size);
    s_request_body_t bodies[2] = {{NULL, 0, false, 0}, {NULL, 0, false, 0}};
    if (!latency_ns || !to_client_ns ||
        s_request_body_init (&bodies[0], run->raw_payload, run->raw_payload_size, stamped) ||
        s_request_body_init (&bodies[1], run->payload, run->payload_size, stamped))
        result->errnum = ENOMEM;
    zq_queue_t *queue =
        result->errnum ? NULL : zq_bench_queue_connect (run, "rpc", ZQ_CLIENT, result);
    void *socket = queue ? zq_bench_raw_dealer (run->cli, run->endpoint_raw, false) : NULL;
    if (queue && !socket)
        result->errnum = errno;
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    for (uint64_t i = 0; i < run->warmup && !result->errnum; i++)
        if (s_raw_round_trip (socket, &frame, &bodies[0]) || s_zq_round_trip (queue, &bodies[1]))
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
            int64_t *to_client = to_client_ns + (size_t)side * run->count;
            for (uint64_t i = done; i < end; i++) {
                int64_t start = zq_bench_now_ns ();
                s_request_body_sending (&bodies[side], start);
                if (side == 0 ? s_raw_round_trip (socket, &frame, &bodies[0])
                              : s_zq_round_trip (queue, &bodies[1])) {
                    result->errnum = errno;
                    break;
                }
                int64_t now = zq_bench_now_ns ();
                samples[i] = now - start;
                to_client[i] = now - bodies[side].replied_ns;
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
        double p99_us;
        for (int side = 0; stamped && side < 2; side++)
            zq_bench_percentiles (to_client_ns + (size_t)side * run->count, run->count,
                                  &result->to_client_us[side], &p99_us);
    }
    free (latency_ns);
    free (to_client_ns);
    free (bodies[0].data);
    free (bodies[1].data);
}

int
zq_bench_rpc (zq_cli_t *cli)
{
    void *body, *frame;
    size_t body_size;
    uint64_t warmup = zq_bench_payloads (cli, 20000, 10000, &body, &body_size, &frame);
    int rounds = cli->rounds;
    //  Per round: the four percentiles, then the legs (S_LEG_* of each side).
    double *values = (double *)calloc ((size_t)rounds * (4 + 2 * S_LEGS), sizeof (double));
    int rc = (body && frame && values) ? 0 : ZQ_EXIT_TRANSPORT;
    if (rc)
        zq_cli_error (cli, "%s", strerror (ENOMEM));
    double *raw_p50 = values, *raw_p99 = values + rounds;
    double *zq_p50 = values + 2 * rounds, *zq_p99 = values + 3 * rounds;
    double *legs[2][S_LEGS]; //  [side][leg]: rounds values each
    for (int side = 0; side < 2; side++)
        for (int leg = 0; leg < S_LEGS; leg++)
            legs[side][leg] = values + (size_t)(4 + side * S_LEGS + leg) * (size_t)rounds;
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
            for (int side = 0; side < 2; side++) {
                legs[side][S_LEG_TO_SERVER][round] = servers.to_server_us[side];
                legs[side][S_LEG_SERVER][round] = servers.server_us[side];
                legs[side][S_LEG_TO_CLIENT][round] = client.to_client_us[side];
            }
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
        if (s_stamped (cli->size)) {
            printf ("rpc legs %s size=%zu count=%llu", cli->transport, cli->size,
                    (unsigned long long)cli->count);
            const char *sides[2] = {"raw", "zq"};
            for (int side = 1; side >= 0; side--)
                for (int leg = 0; leg < S_LEGS; leg++)
                    printf (" %s_%s_us=%.1f", sides[side], s_leg_names[leg],
                            zq_bench_median (legs[side][leg], rounds));
            printf ("\n");
        }
    }
    free (body);
    free (frame);
    free (values);
    return rc;
}
