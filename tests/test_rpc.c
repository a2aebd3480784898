/*  =========================================================================
    test_rpc - the rpc pattern: request/reply over inproc, ipc and tcp,
    many requests in flight answered out of order, deadlines and retries,
    late and duplicate replies, a reply to a client that reads none, a
    client flooded while it reads nothing,
    failover when a server process is killed or stopped (sequential and
    event-loop clients: no request waits for its timeout) and reuse of a
    server restarted, unroutable replies, malformed input from raw sockets,
    the compact form: only where a raw server says it takes it, per server,
    withdrawn for good by a reply that does not say so or a deadline and
    forgotten with the connection, counted when malformed, and at exactly
    max_message_bytes both ways.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#define _GNU_SOURCE //  pipe2
#include "queue_helpers.h"
#include "../src/zq_pattern.h" //  zqi_queue_new_clocked, the fake clock
#define XXH_INLINE_ALL
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

//  ---- Helpers ---------------------------------------------------------------

static zq_options_t *
rpc_options (int request_timeout_ms, int retries, int max_in_flight)
{
    zq_options_t *options = zq_options_new ();
    assert_non_null (options);
    assert_int_equal (zq_options_set_int (options, "request_timeout_ms", request_timeout_ms), 0);
    assert_int_equal (zq_options_set_int (options, "retries", retries), 0);
    assert_int_equal (zq_options_set_int (options, "max_in_flight", max_in_flight), 0);
    return options;
}

//  A server bound on transport and a client connected to it.
static void
open_pair (const char *transport, const zq_options_t *options, zq_queue_t **server_p,
           zq_queue_t **client_p)
{
    *server_p = new_bound ("rpc", ZQ_SERVER, transport, options);
    *client_p = new_connected ("rpc", ZQ_CLIENT, *server_p, options);
}

//  As open_pair, the client's timers on clock.
static void
open_pair_clocked (const char *transport, const zq_options_t *options, zqi_clock_t *clock,
                   zq_queue_t **server_p, zq_queue_t **client_p)
{
    *server_p = new_bound ("rpc", ZQ_SERVER, transport, options);
    char spec[300];
    connect_spec (*server_p, spec, sizeof spec);
    *client_p = zqi_queue_new_clocked ("rpc", ZQ_CLIENT, spec, options, clock);
    assert_non_null (*client_p);
}

//  Sends {"n": n}; stores the request id in id.
static void
send_request (zq_queue_t *client, int64_t n, uint8_t *id)
{
    zq_msg_t *request = numbered ("rpc.test", n);
    memcpy (id, zq_msg_id (request), ZQ_MSG_ID_SIZE);
    assert_int_equal (zq_queue_send (client, &request, DEADLINE_MS), 0);
    assert_null (request);
}

//  Answers request with {"n": n * 10}.
static void
answer (zq_queue_t *server, const zq_msg_t *request)
{
    zq_msg_t *reply = numbered ("rpc.reply", number_of (request) * 10);
    assert_int_equal (zq_queue_reply (server, request, &reply, DEADLINE_MS), 0);
    assert_null (reply);
}

static zq_msg_t *
recv_ok (zq_queue_t *queue)
{
    zq_msg_t *msg = zq_queue_recv (queue, DEADLINE_MS);
    if (!msg)
        fail_msg ("recv: %s", zq_strerror (errno));
    return msg;
}

static zq_queue_stats_t
stats_of (zq_queue_t *queue)
{
    zq_queue_stats_t stats;
    zq_queue_stats (queue, &stats);
    return stats;
}

//  The envelope frame of {"n": n} under subject, as a raw peer sends it.
static zframe_t *
envelope_frame (const char *subject, int64_t n)
{
    zq_msg_t *msg = numbered (subject, n);
    zmsg_t *scratch = zmsg_new ();
    assert_int_equal (zq_msg_encode (&msg, scratch), 0);
    zframe_t *envelope = zmsg_pop (scratch);
    zmsg_destroy (&scratch);
    return envelope;
}

//  ---- Request and reply over each transport ----------------------------

static void
s_roundtrip (const char *transport)
{
    zq_queue_t *server, *client;
    open_pair (transport, NULL, &server, &client);
    for (int64_t n = 1; n <= 3; n++) {
        uint8_t id[ZQ_MSG_ID_SIZE];
        send_request (client, n, id);
        zq_msg_t *request = recv_ok (server);
        assert_memory_equal (zq_msg_id (request), id, ZQ_MSG_ID_SIZE);
        assert_string_equal (zq_msg_subject (request), "rpc.test");
        assert_int_equal (zq_msg_attempt (request), 0);
        answer (server, request);
        zq_msg_destroy (&request);
        zq_msg_t *reply = recv_ok (client);
        assert_memory_equal (zq_msg_id (reply), id, ZQ_MSG_ID_SIZE);
        assert_string_equal (zq_msg_subject (reply), "rpc.reply");
        assert_int_equal (number_of (reply), n * 10);
        zq_msg_destroy (&reply);
    }
    //  Nothing else comes.
    assert_null (zq_queue_recv (client, 0));
    assert_int_equal (errno, EAGAIN);
    zq_queue_stats_t stats = stats_of (client);
    assert_int_equal (stats.sent, 3);
    assert_int_equal (stats.received, 3);
    assert_int_equal (stats.retries + stats.timeouts + stats.dropped + stats.errors, 0);
    stats = stats_of (server);
    assert_int_equal (stats.sent, 3);
    assert_int_equal (stats.received, 3);
    assert_int_equal (stats.errors + stats.dropped, 0);
    zq_queue_destroy (&client);
    zq_queue_destroy (&server);
}

static void
test_roundtrip_inproc (void **state)
{
    (void)state;
    s_roundtrip ("inproc");
}

static void
test_roundtrip_ipc (void **state)
{
    (void)state;
    s_roundtrip ("ipc");
}

static void
test_roundtrip_tcp (void **state)
{
    (void)state;
    s_roundtrip ("tcp");
}

//  A large body (two-frame form) and headers make the trip intact.
static void
test_large_body_and_headers (void **state)
{
    (void)state;
    zq_queue_t *server, *client;
    open_pair ("tcp", NULL, &server, &client);
    size_t size = 100000;
    char *blob = malloc (size);
    assert_non_null (blob);
    for (size_t i = 0; i < size; i++)
        blob[i] = (char)(i * 7);
    zq_msg_t *request = zq_msg_new ("big");
    assert_int_equal (zq_msg_pack (request, "B", blob, size), 0);
    assert_int_equal (zq_msg_set_header (request, "trace", "t-1"), 0);
    uint8_t id[ZQ_MSG_ID_SIZE];
    memcpy (id, zq_msg_id (request), ZQ_MSG_ID_SIZE);
    assert_int_equal (zq_queue_send (client, &request, DEADLINE_MS), 0);
    request = recv_ok (server);
    assert_string_equal (zq_msg_header (request, "trace"), "t-1");
    size_t body_size;
    const void *body = zq_msg_body (request, &body_size);
    zq_msg_t *reply = zq_msg_new ("big.reply");
    assert_int_equal (zq_msg_set_body (reply, body, body_size), 0);
    assert_int_equal (zq_queue_reply (server, request, &reply, DEADLINE_MS), 0);
    zq_msg_destroy (&request);
    reply = recv_ok (client);
    assert_memory_equal (zq_msg_id (reply), id, ZQ_MSG_ID_SIZE);
    const void *data;
    size_t data_size;
    assert_int_equal (zq_msg_unpack (reply, "B", &data, &data_size), 0);
    assert_int_equal (data_size, size);
    assert_memory_equal (data, blob, size);
    zq_msg_destroy (&reply);
    free (blob);
    zq_queue_destroy (&client);
    zq_queue_destroy (&server);
}

//  ---- A reply whose server closes right after sending it ------------------

//  The server answers and closes at once, before the client has read the
//  reply: the client still gets it (its connection's pipe keeps what
//  arrived). Repeated, as losing it depends on timing.
static void
s_reply_then_close (const char *transport)
{
    enum { ROUNDS = 50 };
    for (int round = 0; round < ROUNDS; round++) {
        zq_queue_t *server, *client;
        open_pair (transport, NULL, &server, &client);
        uint8_t id[ZQ_MSG_ID_SIZE];
        send_request (client, round, id);
        zq_msg_t *request = recv_ok (server);
        answer (server, request);
        zq_msg_destroy (&request);
        zq_queue_destroy (&server);
        zq_msg_t *reply = zq_queue_recv (client, DEADLINE_MS);
        if (!reply)
            fail_msg ("round %d: reply lost: %s", round, zq_strerror (errno));
        assert_memory_equal (zq_msg_id (reply), id, ZQ_MSG_ID_SIZE);
        assert_int_equal (number_of (reply), round * 10);
        zq_msg_destroy (&reply);
        zq_queue_destroy (&client);
    }
}

static void
test_reply_then_close_ipc (void **state)
{
    (void)state;
    s_reply_then_close ("ipc");
}

static void
test_reply_then_close_tcp (void **state)
{
    (void)state;
    s_reply_then_close ("tcp");
}

//  ---- Many in flight, answered out of order ------------------------------

static void
test_many_in_flight_out_of_order (void **state)
{
    (void)state;
    enum { COUNT = 200 };
    zq_options_t *options = rpc_options (DEADLINE_MS, 0, COUNT);
    zq_queue_t *server, *client;
    open_pair ("ipc", options, &server, &client);
    zq_options_destroy (&options);
    static uint8_t ids[COUNT][ZQ_MSG_ID_SIZE];
    for (int n = 0; n < COUNT; n++)
        send_request (client, n, ids[n]);
    //  The server takes every request before answering any, then answers
    //  from the last to the first.
    static zq_msg_t *requests[COUNT];
    for (int n = 0; n < COUNT; n++) {
        requests[n] = recv_ok (server);
        assert_int_equal (number_of (requests[n]), n);
    }
    for (int n = COUNT - 1; n >= 0; n--) {
        answer (server, requests[n]);
        zq_msg_destroy (&requests[n]);
    }
    static bool seen[COUNT];
    memset (seen, 0, sizeof seen);
    for (int received = 0; received < COUNT; received++) {
        zq_msg_t *reply = recv_ok (client);
        int64_t n = number_of (reply) / 10;
        assert_true (n >= 0 && n < COUNT);
        assert_false (seen[n]);
        seen[n] = true;
        assert_memory_equal (zq_msg_id (reply), ids[n], ZQ_MSG_ID_SIZE);
        //  Out of order indeed: the last request is answered first.
        if (received == 0)
            assert_int_equal (n, COUNT - 1);
        zq_msg_destroy (&reply);
    }
    assert_null (zq_queue_recv (client, 0));
    assert_int_equal (errno, EAGAIN);
    assert_int_equal (stats_of (client).dropped, 0);
    zq_queue_destroy (&client);
    zq_queue_destroy (&server);
}

//  ---- The window ---------------------------------------------------------

static void
test_window_full (void **state)
{
    (void)state;
    zq_options_t *options = rpc_options (DEADLINE_MS, 0, 4);
    zq_queue_t *server, *client;
    open_pair ("inproc", options, &server, &client);
    zq_options_destroy (&options);
    //  A request whose id is awaiting its result is refused.
    zq_msg_t *first = numbered ("rpc.test", 0);
    zq_msg_t *same = zq_msg_dup (first);
    assert_int_equal (zq_queue_send (client, &first, DEADLINE_MS), 0);
    assert_int_equal (zq_queue_send (client, &same, 0), -1);
    assert_int_equal (errno, EALREADY);
    zq_msg_destroy (&same);
    uint8_t ids[4][ZQ_MSG_ID_SIZE];
    for (int n = 1; n < 4; n++)
        send_request (client, n, ids[n]);
    assert_int_equal (zq_queue_events (client) & ZQ_POLLOUT, 0);
    //  Full: EAGAIN at once, whatever the timeout.
    zq_msg_t *extra = numbered ("rpc.test", 4);
    int64_t start = now_ms ();
    assert_int_equal (zq_queue_send (client, &extra, 5000), -1);
    assert_int_equal (errno, EAGAIN);
    assert_true (now_ms () - start < 1000);
    assert_non_null (extra);
    //  One result frees one place.
    zq_msg_t *request = recv_ok (server);
    answer (server, request);
    zq_msg_destroy (&request);
    zq_msg_t *reply = recv_ok (client);
    zq_msg_destroy (&reply);
    assert_true (zq_queue_events (client) & ZQ_POLLOUT);
    assert_int_equal (zq_queue_send (client, &extra, DEADLINE_MS), 0);
    //  Closing counts the four requests still awaiting a result.
    size_t unsent = 99;
    assert_int_equal (zq_queue_close (client, &unsent), 0);
    assert_int_equal (unsent, 4);
    zq_queue_destroy (&client);
    zq_queue_destroy (&server);
}

//  ---- Roles --------------------------------------------------------------

static void
test_roles (void **state)
{
    (void)state;
    zq_queue_t *server, *client;
    open_pair ("inproc", NULL, &server, &client);
    zq_msg_t *msg = numbered ("x", 1);
    assert_int_equal (zq_queue_send (server, &msg, 0), -1);
    assert_int_equal (errno, ENOTSUP);
    assert_int_equal (zq_queue_reply (client, msg, &msg, 0), -1);
    assert_int_equal (errno, ENOTSUP);
    assert_null (zq_queue_failed (client));
    assert_int_equal (errno, ZQ_ENOTFOUND);
    assert_null (zq_queue_failed (server));
    assert_int_equal (errno, ENOTSUP);
    assert_int_equal (zq_queue_next_timer_ms (client), -1);
    assert_int_equal (zq_queue_next_timer_ms (server), -1);
    //  A reply to a request the server never received.
    zq_msg_t *reply = numbered ("x", 2);
    assert_int_equal (zq_queue_reply (server, msg, &reply, 0), -1);
    assert_int_equal (errno, ZQ_ENOTFOUND);
    assert_non_null (reply);
    //  A reply twice: the second finds no route.
    uint8_t id[ZQ_MSG_ID_SIZE];
    send_request (client, 7, id);
    zq_msg_t *request = recv_ok (server);
    answer (server, request);
    assert_int_equal (zq_queue_reply (server, request, &reply, 0), -1);
    assert_int_equal (errno, ZQ_ENOTFOUND);
    zq_msg_destroy (&reply);
    zq_msg_destroy (&request);
    reply = recv_ok (client);
    assert_int_equal (number_of (reply), 70);
    zq_msg_destroy (&reply);
    zq_msg_destroy (&msg);
    zq_queue_destroy (&client);
    zq_queue_destroy (&server);
}

//  ---- Deadlines and retries ----------------------------------------------

//  The server ignores the first attempt; the retry gets the reply.
static void
test_retry_after_ignored_attempt (void **state)
{
    (void)state;
    zq_options_t *options = rpc_options (200, 3, 100);
    zqi_clock_t *clock = zqi_clock_fake_new ();
    zq_queue_t *server, *client;
    open_pair_clocked ("tcp", options, clock, &server, &client);
    zq_options_destroy (&options);
    uint8_t id[ZQ_MSG_ID_SIZE];
    send_request (client, 5, id);
    int64_t timer = zq_queue_next_timer_ms (client);
    assert_true (timer >= 0 && timer <= 200);
    zq_msg_t *first = recv_ok (server);
    assert_int_equal (zq_msg_attempt (first), 0);
    //  1 ms before the request timeout: no retry.
    zqi_clock_advance (clock, 199);
    assert_null (zq_queue_recv (client, 0));
    assert_int_equal (errno, EAGAIN);
    assert_int_equal (stats_of (client).retries, 0);
    //  At the timeout the client, driven by a receive, tries again.
    zqi_clock_advance (clock, 1);
    assert_null (zq_queue_recv (client, 0));
    assert_int_equal (errno, EAGAIN);
    assert_int_equal (stats_of (client).retries, 1);
    zq_msg_t *second = recv_ok (server);
    assert_memory_equal (zq_msg_id (second), id, ZQ_MSG_ID_SIZE);
    assert_int_equal (zq_msg_attempt (second), 1);
    answer (server, second);
    zq_msg_t *reply = recv_ok (client);
    assert_memory_equal (zq_msg_id (reply), id, ZQ_MSG_ID_SIZE);
    assert_int_equal (number_of (reply), 50);
    zq_msg_destroy (&reply);
    //  The ignored attempt's route was replaced by the answered one.
    reply = numbered ("late", 0);
    assert_int_equal (zq_queue_reply (server, first, &reply, 0), -1);
    assert_int_equal (errno, ZQ_ENOTFOUND);
    zq_msg_destroy (&reply);
    zq_msg_destroy (&first);
    zq_msg_destroy (&second);
    assert_int_equal (stats_of (client).retries, 1);
    assert_int_equal (stats_of (client).timeouts, 0);
    zq_queue_destroy (&client);
    zq_queue_destroy (&server);
    zqi_clock_destroy (&clock);
}

//  Nobody answers: after 1 + retries attempts the request fails, once.
static void
test_final_timeout (void **state)
{
    (void)state;
    zq_options_t *options = rpc_options (100, 2, 100);
    zqi_clock_t *clock = zqi_clock_fake_new ();
    zq_queue_t *server, *client;
    open_pair_clocked ("inproc", options, clock, &server, &client);
    zq_options_destroy (&options);
    uint8_t id[ZQ_MSG_ID_SIZE];
    send_request (client, 9, id);
    //  Attempts at 0, 100 and 200 ms; at 299 the request still waits.
    for (int attempt = 1; attempt <= 2; attempt++) {
        zqi_clock_advance (clock, 100);
        assert_null (zq_queue_recv (client, 0));
        assert_int_equal (errno, EAGAIN);
        assert_int_equal (stats_of (client).retries, attempt);
    }
    zqi_clock_advance (clock, 99);
    assert_null (zq_queue_recv (client, 0));
    assert_int_equal (errno, EAGAIN);
    assert_int_equal (stats_of (client).timeouts, 0);
    //  At 300 ms it fails.
    zqi_clock_advance (clock, 1);
    assert_null (zq_queue_recv (client, DEADLINE_MS));
    assert_int_equal (errno, ZQ_ETIMEDOUT);
    zq_msg_t *failed = zq_queue_failed (client);
    assert_non_null (failed);
    assert_memory_equal (zq_msg_id (failed), id, ZQ_MSG_ID_SIZE);
    assert_int_equal (zq_msg_attempt (failed), 2);
    assert_int_equal (number_of (failed), 9);
    zq_msg_destroy (&failed);
    assert_null (zq_queue_failed (client));
    //  Reported once only.
    assert_null (zq_queue_recv (client, 0));
    assert_int_equal (errno, EAGAIN);
    assert_int_equal (zq_queue_next_timer_ms (client), -1);
    zq_queue_stats_t stats = stats_of (client);
    assert_int_equal (stats.timeouts, 1);
    assert_int_equal (stats.retries, 2);
    //  The server saw every attempt; a reply now is late and dropped.
    zq_msg_t *attempts[3];
    for (int i = 0; i < 3; i++) {
        attempts[i] = recv_ok (server);
        assert_int_equal (zq_msg_attempt (attempts[i]), i);
    }
    answer (server, attempts[2]);
    for (int i = 0; i < 3; i++)
        zq_msg_destroy (&attempts[i]);
    int64_t deadline = now_ms () + DEADLINE_MS;
    while (stats_of (client).dropped == 0 && now_ms () < deadline) {
        assert_null (zq_queue_recv (client, 20));
        assert_int_equal (errno, EAGAIN);
    }
    assert_int_equal (stats_of (client).dropped, 1);
    //  Sent again by the user, the failed request is a new request.
    zq_queue_destroy (&client);
    zq_queue_destroy (&server);
    zqi_clock_destroy (&clock);
}

//  Several requests fail; each failure is reported exactly once, and a
//  request that failed can be sent again.
static void
test_failures_reported_once_each (void **state)
{
    (void)state;
    zq_options_t *options = rpc_options (50, 0, 100);
    zqi_clock_t *clock = zqi_clock_fake_new ();
    zq_queue_t *server, *client;
    open_pair_clocked ("inproc", options, clock, &server, &client);
    zq_options_destroy (&options);
    uint8_t ids[3][ZQ_MSG_ID_SIZE];
    for (int n = 0; n < 3; n++)
        send_request (client, n, ids[n]);
    zqi_clock_advance (clock, 50);
    bool seen[3] = {false, false, false};
    zq_msg_t *again = NULL;
    for (int i = 0; i < 3; i++) {
        assert_null (zq_queue_recv (client, DEADLINE_MS));
        assert_int_equal (errno, ZQ_ETIMEDOUT);
        zq_msg_t *failed = zq_queue_failed (client);
        assert_non_null (failed);
        int64_t n = number_of (failed);
        assert_false (seen[n]);
        seen[n] = true;
        assert_memory_equal (zq_msg_id (failed), ids[n], ZQ_MSG_ID_SIZE);
        if (!again)
            again = failed;
        else
            zq_msg_destroy (&failed);
    }
    assert_int_equal (stats_of (client).timeouts, 3);
    //  The server drains the three attempts, then answers the resend.
    for (int i = 0; i < 3; i++) {
        zq_msg_t *request = recv_ok (server);
        zq_msg_destroy (&request);
    }
    uint8_t id[ZQ_MSG_ID_SIZE];
    memcpy (id, zq_msg_id (again), ZQ_MSG_ID_SIZE);
    zq_msg_set_attempt (again, 0);
    assert_int_equal (zq_queue_send (client, &again, DEADLINE_MS), 0);
    zq_msg_t *request = recv_ok (server);
    assert_memory_equal (zq_msg_id (request), id, ZQ_MSG_ID_SIZE);
    answer (server, request);
    zq_msg_destroy (&request);
    //  The clock stands still: the resend gets its answer, however slowly.
    zq_msg_t *reply = recv_ok (client);
    assert_memory_equal (zq_msg_id (reply), id, ZQ_MSG_ID_SIZE);
    zq_msg_destroy (&reply);
    assert_int_equal (stats_of (client).timeouts, 3);
    zq_queue_destroy (&client);
    zq_queue_destroy (&server);
    zqi_clock_destroy (&clock);
}

//  ---- A raw ROUTER as the server: duplicates, strays, garbage ------------

//  Receives one request on a raw ROUTER, in either form (17.7): stores
//  the routing id, the request id and its attempt, checks the frames.
//  Returns true for the compact form.
static bool
raw_recv_form (zsock_t *router, zframe_t **routing_p, uint8_t *id, uint32_t *attempt_p)
{
    zsock_set_rcvtimeo (router, DEADLINE_MS);
    zmsg_t *msg = zmsg_recv (router);
    assert_non_null (msg);
    *routing_p = zmsg_pop (msg);
    zframe_t *first = zmsg_first (msg);
    assert_non_null (first);
    bool compact = zframe_size (first) > 0;
    zq_msg_t *request;
    if (compact) {
        //  One frame: [1, 0], then the envelope.
        assert_int_equal (zmsg_size (msg), 1);
        assert_true (zframe_size (first) > 3);
        assert_memory_equal (zframe_data (first), "\x92\x01\x00", 3);
        const void *data = zframe_data (first) + 3;
        size_t size = zframe_size (first) - 3;
        request = zq_msg_decode_buffers (&data, &size, 1, 0);
    } else {
        //  Delimiter, rpc frame, then one envelope frame or two.
        assert_true (zmsg_size (msg) == 3 || zmsg_size (msg) == 4);
        zframe_t *delimiter = zmsg_pop (msg);
        zframe_t *rpc = zmsg_pop (msg);
        assert_int_equal (zframe_size (rpc), 3);
        assert_memory_equal (zframe_data (rpc), "\x92\x01\x00", 3);
        zframe_destroy (&delimiter);
        zframe_destroy (&rpc);
        request = zq_msg_decode (msg, 0);
    }
    assert_non_null (request);
    memcpy (id, zq_msg_id (request), ZQ_MSG_ID_SIZE);
    *attempt_p = zq_msg_attempt (request);
    zq_msg_destroy (&request);
    zmsg_destroy (&msg);
    return compact;
}

//  Receives one request on a raw ROUTER, in the classic form.
static void
raw_recv_request (zsock_t *router, zframe_t **routing_p, uint8_t *id)
{
    uint32_t attempt;
    assert_false (raw_recv_form (router, routing_p, id, &attempt));
}

//  How a raw server answers: classic, classic saying it takes compact
//  requests (element 3 = 1), compact.
typedef enum { RAW_CLASSIC, RAW_CLASSIC_TAKES, RAW_COMPACT } raw_form_t;

//  Sends a reply for id, with body {"n": n}, to routing, in form.
static void
raw_send_reply_in (zsock_t *router, zframe_t *routing, const uint8_t *id, int64_t n,
                   raw_form_t form)
{
    zmsg_t *out = zmsg_new ();
    zmsg_append (out, &(zframe_t *){zframe_dup (routing)});
    if (form != RAW_COMPACT)
        zmsg_addmem (out, "", 0);
    uint8_t rpc[22] = {0x93, 1, 1, 0xc4, 16};
    memcpy (rpc + 5, id, 16);
    size_t rpc_size = 21;
    if (form == RAW_CLASSIC_TAKES) {
        rpc[0] = 0x94;
        rpc[rpc_size++] = 1;
    }
    zmsg_addmem (out, rpc, rpc_size);
    zq_msg_t *reply = numbered ("raw", n);
    assert_int_equal (zq_msg_encode (&reply, out), 0);
    if (form == RAW_COMPACT) {
        //  The rpc frame and the envelope in one frame.
        zframe_t *envelope = zmsg_last (out);
        zmsg_remove (out, envelope);
        zframe_t *frame = zmsg_last (out);
        zmsg_remove (out, frame);
        zchunk_t *chunk = zchunk_new (zframe_data (frame), zframe_size (frame));
        zchunk_extend (chunk, zframe_data (envelope), zframe_size (envelope));
        zmsg_addmem (out, zchunk_data (chunk), zchunk_size (chunk));
        zchunk_destroy (&chunk);
        zframe_destroy (&frame);
        zframe_destroy (&envelope);
    }
    assert_int_equal (zmsg_send (&out, router), 0);
}

//  Sends a reply for id, with body {"n": n}, to routing (classic form).
static void
raw_send_reply (zsock_t *router, zframe_t *routing, const uint8_t *id, int64_t n)
{
    raw_send_reply_in (router, routing, id, n, RAW_CLASSIC);
}

static void
raw_send (zsock_t *router, zframe_t *routing, const char *picture, ...)
{
    zmsg_t *out = zmsg_new ();
    zmsg_append (out, &(zframe_t *){zframe_dup (routing)});
    va_list args;
    va_start (args, picture);
    for (const char *p = picture; *p; p++) {
        const void *data = va_arg (args, const void *);
        size_t size = va_arg (args, size_t);
        zmsg_addmem (out, data, size);
    }
    va_end (args);
    assert_int_equal (zmsg_send (&out, router), 0);
}

static void
test_duplicate_stray_and_garbage_replies (void **state)
{
    (void)state;
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    assert_non_null (router);
    int port = zsock_bind (router, "tcp://127.0.0.1:*");
    assert_true (port > 0);
    char spec[64];
    snprintf (spec, sizeof spec, ">tcp://127.0.0.1:%d", port);
    zq_options_t *options = rpc_options (DEADLINE_MS, 0, 100);
    zq_queue_t *client = zq_queue_new ("rpc", ZQ_CLIENT, spec, options);
    zq_options_destroy (&options);
    assert_non_null (client);

    uint8_t id[ZQ_MSG_ID_SIZE], seen_id[ZQ_MSG_ID_SIZE];
    send_request (client, 1, id);
    zframe_t *routing;
    raw_recv_request (router, &routing, seen_id);
    assert_memory_equal (seen_id, id, ZQ_MSG_ID_SIZE);

    //  Garbage first: each is counted and skipped.
    zframe_t *envelope = envelope_frame ("g", 0);
    uint8_t reply_rpc[21] = {0x93, 1, 1, 0xc4, 16};
    memcpy (reply_rpc + 5, id, 16);
    uint8_t v2_rpc[21] = {0x93, 2, 1, 0xc4, 16};
    memcpy (v2_rpc + 5, id, 16);
    raw_send (router, routing, "s", "junk", (size_t)4);                         //  no delimiter
    raw_send (router, routing, "s", "", (size_t)0);                             //  delimiter only
    raw_send (router, routing, "ss", "", (size_t)0, "\x92\x01\x01", (size_t)3); //  no id
    raw_send (router, routing, "sss", "", (size_t)0, "\x92\x01\x00", (size_t)3,
              zframe_data (envelope), zframe_size (envelope)); //  a request, not a reply
    raw_send (router, routing, "sss", "", (size_t)0, v2_rpc, sizeof v2_rpc, zframe_data (envelope),
              zframe_size (envelope)); //  rpc version 2
    raw_send (router, routing, "sss", "", (size_t)0, reply_rpc, sizeof reply_rpc, "\x96\x01",
              (size_t)2); //  broken envelope
    zframe_destroy (&envelope);
    //  A reply to an id never sent, then the real reply twice.
    uint8_t stray[ZQ_MSG_ID_SIZE];
    memset (stray, 0xab, sizeof stray);
    raw_send_reply (router, routing, stray, 99);
    raw_send_reply (router, routing, id, 10);
    raw_send_reply (router, routing, id, 11);

    zq_msg_t *reply = recv_ok (client);
    assert_memory_equal (zq_msg_id (reply), id, ZQ_MSG_ID_SIZE);
    assert_int_equal (number_of (reply), 10);
    zq_msg_destroy (&reply);
    //  The duplicate is dropped: nothing more is returned.
    int64_t deadline = now_ms () + DEADLINE_MS;
    while (stats_of (client).dropped < 2 && now_ms () < deadline) {
        assert_null (zq_queue_recv (client, 20));
        assert_int_equal (errno, EAGAIN);
    }
    zq_queue_stats_t stats = stats_of (client);
    assert_int_equal (stats.dropped, 2);
    assert_int_equal (stats.errors, 6);
    assert_int_equal (stats.received, 1);
    zframe_destroy (&routing);
    zq_queue_destroy (&client);
    zsock_destroy (&router);
}

//  ---- The compact form against a raw ROUTER (PROTOCOL.md 17.7) ----------

//  Receives the reply to request n ({"n": n * 10} from raw_send_reply_in),
//  checking its id.
static void
recv_reply_to (zq_queue_t *client, const uint8_t *id, int64_t n)
{
    zq_msg_t *reply = recv_ok (client);
    assert_memory_equal (zq_msg_id (reply), id, ZQ_MSG_ID_SIZE);
    assert_int_equal (number_of (reply), n * 10);
    zq_msg_destroy (&reply);
}

//  A raw ROUTER bound on a tcp port of its own, and an rpc client of it
//  (one server: a DEALER) with request_timeout_ms 300 and 2 retries.
static zsock_t *
raw_server_and_client (zq_queue_t **client_p, char *endpoint, size_t size)
{
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    assert_non_null (router);
    int port = zsock_bind (router, "tcp://127.0.0.1:*");
    assert_true (port > 0);
    snprintf (endpoint, size, "tcp://127.0.0.1:%d", port);
    char spec[80];
    snprintf (spec, sizeof spec, ">%s", endpoint);
    zq_options_t *options = rpc_options (300, 2, 100);
    *client_p = zq_queue_new ("rpc", ZQ_CLIENT, spec, options);
    zq_options_destroy (&options);
    assert_non_null (*client_p);
    return router;
}

//  One round trip through a raw server: request n must arrive compact or
//  not, as first attempt; the reply goes in form.
static void
raw_round_trip (zq_queue_t *client, zsock_t *router, int64_t n, bool compact, raw_form_t form)
{
    uint8_t id[ZQ_MSG_ID_SIZE], seen[ZQ_MSG_ID_SIZE];
    uint32_t attempt;
    zframe_t *routing;
    send_request (client, n, id);
    if (compact)
        assert_true (raw_recv_form (router, &routing, seen, &attempt));
    else
        assert_false (raw_recv_form (router, &routing, seen, &attempt));
    assert_memory_equal (seen, id, ZQ_MSG_ID_SIZE);
    assert_int_equal (attempt, 0);
    raw_send_reply_in (router, routing, seen, n * 10, form);
    zframe_destroy (&routing);
    recv_reply_to (client, id, n);
}

static void
test_compact_only_where_the_server_says (void **state)
{
    (void)state;
    char endpoint[64];
    zq_queue_t *client;
    zsock_t *router = raw_server_and_client (&client, endpoint, sizeof endpoint);
    uint8_t id[ZQ_MSG_ID_SIZE], seen[ZQ_MSG_ID_SIZE];
    uint32_t attempt;
    zframe_t *routing;

    //  1: classic, until a reply says the server takes compact requests.
    raw_round_trip (client, router, 1, false, RAW_CLASSIC_TAKES);
    //  2: compact, but a body too large for one frame goes classic.
    zq_msg_t *large = zq_msg_new ("rpc.large");
    uint8_t body[3 + 9000] = {0xc5, 9000 >> 8, 9000 & 0xff};
    assert_int_equal (zq_msg_set_body (large, body, sizeof body), 0);
    memcpy (id, zq_msg_id (large), ZQ_MSG_ID_SIZE);
    assert_int_equal (zq_queue_send (client, &large, DEADLINE_MS), 0);
    assert_false (raw_recv_form (router, &routing, seen, &attempt));
    raw_send_reply_in (router, routing, seen, 20, RAW_CLASSIC_TAKES);
    zframe_destroy (&routing);
    recv_reply_to (client, id, 2);

    //  3: compact; a compact reply with a broken envelope, of the wrong
    //  kind or without an id is counted and skipped, and the good one
    //  then returned.
    send_request (client, 3, id);
    assert_true (raw_recv_form (router, &routing, seen, &attempt));
    uint8_t broken[23] = {0x93, 1, 1, 0xc4, 16};
    memcpy (broken + 5, seen, 16);
    memcpy (broken + 21, "\x96\x01", 2);
    raw_send (router, routing, "s", broken, sizeof broken);
    zframe_t *envelope = envelope_frame ("g", 0);
    zchunk_t *request_kind = zchunk_new ("\x92\x01\x00", 3);
    zchunk_extend (request_kind, zframe_data (envelope), zframe_size (envelope));
    raw_send (router, routing, "s", zchunk_data (request_kind), zchunk_size (request_kind));
    raw_send (router, routing, "s", "\x93\x01\x01", (size_t)3); //  no id, no envelope
    zchunk_destroy (&request_kind);
    zframe_destroy (&envelope);
    raw_send_reply_in (router, routing, seen, 30, RAW_COMPACT);
    zframe_destroy (&routing);
    recv_reply_to (client, id, 3);

    //  4: compact. A server that refuses it (one of another version behind
    //  a proxy) gets the retry classic, and the connection stays classic,
    //  even when a reply then says more.
    send_request (client, 4, id);
    assert_true (raw_recv_form (router, &routing, seen, &attempt));
    assert_memory_equal (seen, id, ZQ_MSG_ID_SIZE);
    assert_int_equal (attempt, 0);
    zframe_destroy (&routing);
    zpoller_t *poller = zpoller_new (router, NULL);
    int64_t deadline = now_ms () + DEADLINE_MS;
    while (!zpoller_wait (poller, 0) && now_ms () < deadline) //  the client's timers run
        assert_null (zq_queue_recv (client, 20));
    zpoller_destroy (&poller);
    assert_false (raw_recv_form (router, &routing, seen, &attempt));
    assert_int_equal (attempt, 1);
    raw_send_reply_in (router, routing, seen, 40, RAW_CLASSIC_TAKES);
    zframe_destroy (&routing);
    recv_reply_to (client, id, 4);
    raw_round_trip (client, router, 5, false, RAW_COMPACT);
    raw_round_trip (client, router, 6, false, RAW_CLASSIC_TAKES);

    zq_queue_stats_t stats = stats_of (client);
    assert_int_equal (stats.errors, 3);
    assert_int_equal (stats.retries, 1);
    assert_int_equal (stats.received, 6);
    zq_queue_destroy (&client);
    zsock_destroy (&router);
}

static void
test_compact_per_server_of_a_router_client (void **state)
{
    (void)state;
    //  Two raw servers: the client (a ROUTER) learns of each on its own.
    zsock_t *routers[2];
    char spec[200] = "";
    for (int i = 0; i < 2; i++) {
        routers[i] = zsock_new (ZMQ_ROUTER);
        assert_non_null (routers[i]);
        int port = zsock_bind (routers[i], "tcp://127.0.0.1:*");
        assert_true (port > 0);
        size_t used = strlen (spec);
        snprintf (spec + used, sizeof spec - used, "%s>tcp://127.0.0.1:%d", i ? "," : "", port);
    }
    zq_options_t *options = rpc_options (DEADLINE_MS, 2, 100);
    zq_queue_t *client = zq_queue_new ("rpc", ZQ_CLIENT, spec, options);
    zq_options_destroy (&options);
    assert_non_null (client);
    zpoller_t *poller = zpoller_new (routers[0], routers[1], NULL);
    //  Until each has answered twice: the client sends to the live ones in
    //  turn, and the second may become live some round trips after the
    //  first (its handshake, then the client's look at its monitor).
    int heard[2] = {0, 0};
    for (int64_t n = 1; (heard[0] < 2 || heard[1] < 2) && n <= 1000; n++) {
        uint8_t id[ZQ_MSG_ID_SIZE], seen[ZQ_MSG_ID_SIZE];
        uint32_t attempt;
        zframe_t *routing;
        send_request (client, n, id);
        zsock_t *which = (zsock_t *)zpoller_wait (poller, DEADLINE_MS);
        assert_non_null (which);
        int i = which == routers[0] ? 0 : 1;
        //  Classic until this server's reply said it takes compact.
        bool compact = raw_recv_form (which, &routing, seen, &attempt);
        assert_int_equal (compact, heard[i] > 0);
        assert_memory_equal (seen, id, ZQ_MSG_ID_SIZE);
        raw_send_reply_in (which, routing, seen, n * 10, compact ? RAW_COMPACT : RAW_CLASSIC_TAKES);
        zframe_destroy (&routing);
        recv_reply_to (client, id, n);
        heard[i]++;
    }
    assert_true (heard[0] >= 2 && heard[1] >= 2); //  both were used, and again
    zpoller_destroy (&poller);
    zq_queue_destroy (&client);
    zsock_destroy (&routers[0]);
    zsock_destroy (&routers[1]);
}

//  Waits for a connection to be accepted by the socket monitor watches.
static void
accepted (zsock_t *monitor)
{
    zsock_set_rcvtimeo (monitor, DEADLINE_MS);
    while (true) {
        zmsg_t *event = zmsg_recv (monitor);
        assert_non_null (event); //  within the deadline
        zframe_t *first = zmsg_first (event);
        uint16_t kind;
        memcpy (&kind, zframe_data (first), sizeof kind);
        zmsg_destroy (&event);
        if (kind == ZMQ_EVENT_ACCEPTED)
            return;
    }
}

static void
test_compact_forgotten_with_the_connection (void **state)
{
    (void)state;
    char endpoint[64];
    zq_queue_t *client;
    zsock_t *router = raw_server_and_client (&client, endpoint, sizeof endpoint);
    raw_round_trip (client, router, 1, false, RAW_CLASSIC_TAKES);
    raw_round_trip (client, router, 2, true, RAW_COMPACT);
    //  The server goes; another, of another version maybe, takes its port.
    for (int round = 0; round < 2; round++) {
        zsock_destroy (&router);
        router = zsock_new (ZMQ_ROUTER);
        assert_non_null (router);
        char spec[80];
        snprintf (spec, sizeof spec, "inproc://test-rpc-accepted-%d", round);
        assert_int_equal (zmq_socket_monitor (zsock_resolve (router), spec, ZMQ_EVENT_ACCEPTED), 0);
        zsock_t *monitor = zsock_new_pair (spec);
        assert_non_null (monitor);
        //  The closed socket's listener goes in libzmq's own time.
        int64_t deadline = now_ms () + DEADLINE_MS;
        while (zsock_bind (router, "%s", endpoint) < 0 && now_ms () < deadline)
            zclock_sleep (5);
        assert_non_null (zsock_endpoint (router));
        accepted (monitor); //  the client came back
        zsock_destroy (&monitor);
        if (round == 0) {
            //  Compact before the close: classic first again.
            raw_round_trip (client, router, 3, false, RAW_CLASSIC);
            raw_round_trip (client, router, 4, false, RAW_CLASSIC_TAKES); //  classic sticks
        } else {
            //  Classic for good before the close: forgotten too.
            raw_round_trip (client, router, 5, false, RAW_CLASSIC_TAKES);
            raw_round_trip (client, router, 6, true, RAW_COMPACT);
        }
    }
    zq_queue_destroy (&client);
    zsock_destroy (&router);
}

//  A message on subject whose envelope is exactly size octets (one frame):
//  its body a bin.
static zq_msg_t *
sized_msg (const char *subject, size_t size)
{
    zq_msg_t *msg = zq_msg_new (subject);
    uint8_t *body = (uint8_t *)calloc (1, size);
    assert_non_null (body);
    size_t bin = size;
    for (int pass = 0; pass < 2; pass++) {
        body[0] = 0xc5;
        body[1] = (uint8_t)((bin - 3) >> 8);
        body[2] = (uint8_t)(bin - 3);
        assert_int_equal (zq_msg_set_body (msg, body, bin), 0);
        zq_msg_t *copy = zq_msg_dup (msg);
        zmsg_t *frames = zmsg_new ();
        assert_int_equal (zq_msg_encode (&copy, frames), 0);
        size_t encoded = zframe_size (zmsg_first (frames));
        zmsg_destroy (&frames);
        bin = bin - encoded + size;
    }
    free (body);
    zq_msg_t *copy = zq_msg_dup (msg);
    zmsg_t *frames = zmsg_new ();
    assert_int_equal (zq_msg_encode (&copy, frames), 0);
    assert_int_equal (zmsg_size (frames), 1);
    assert_int_equal (zframe_size (zmsg_first (frames)), size);
    zmsg_destroy (&frames);
    return msg;
}

static void
test_compact_at_max_message_bytes (void **state)
{
    (void)state;
    //  Envelopes of exactly max_message_bytes go both ways in compact
    //  frames (the rpc frame beside them); one octet more is refused.
    zq_options_t *options = rpc_options (DEADLINE_MS, 1, 10);
    assert_int_equal (zq_options_set_int (options, "max_message_bytes", 4096), 0);
    zq_queue_t *server, *client;
    open_pair ("tcp", options, &server, &client);
    zq_options_destroy (&options);
    for (int n = 0; n < 3; n++) {
        zq_msg_t *request = n == 0 ? numbered ("rpc.small", 0) : sized_msg ("rpc.max", 4096);
        uint8_t id[ZQ_MSG_ID_SIZE];
        memcpy (id, zq_msg_id (request), ZQ_MSG_ID_SIZE);
        assert_int_equal (zq_queue_send (client, &request, DEADLINE_MS), 0);
        request = recv_ok (server);
        zq_msg_t *reply = n == 0 ? numbered ("rpc.small", 0) : sized_msg ("rpc.max", 4096);
        assert_int_equal (zq_queue_reply (server, request, &reply, DEADLINE_MS), 0);
        zq_msg_destroy (&request);
        reply = recv_ok (client);
        assert_memory_equal (zq_msg_id (reply), id, ZQ_MSG_ID_SIZE);
        zq_msg_destroy (&reply);
    }
    zq_msg_t *request = sized_msg ("rpc.max", 4097);
    assert_int_equal (zq_queue_send (client, &request, DEADLINE_MS), 0);
    int64_t deadline = now_ms () + DEADLINE_MS;
    while (stats_of (server).errors == 0 && now_ms () < deadline)
        assert_null (zq_queue_recv (server, 20));
    assert_int_equal (stats_of (server).errors, 1);
    assert_int_equal (stats_of (server).received, 3);
    zq_queue_destroy (&client);
    zq_queue_destroy (&server);
}

//  ---- Garbage from a raw DEALER at a server ------------------------------

static void
test_server_counts_garbage (void **state)
{
    (void)state;
    zq_queue_t *server, *client;
    open_pair ("tcp", NULL, &server, &client);
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    assert_non_null (dealer);
    assert_int_equal (zsock_connect (dealer, "%s", zq_queue_endpoint (server)), 0);

    zframe_t *envelope = envelope_frame ("g", 0);
    //  Each of these is one malformed message.
    zstr_send (dealer, "hello");                                         //  no delimiter
    zstr_send (dealer, "");                                              //  delimiter only
    zstr_sendx (dealer, "", "\x92\x01\x00", NULL);                       //  no envelope
    zstr_sendx (dealer, "", "not msgpack", "x", NULL);                   //  bad rpc frame
    zsock_send (dealer, "sbf", "", "\x92\x02\x00", (size_t)3, envelope); //  version 2
    zsock_send (dealer, "sbf", "", "\x92\x01\x01", (size_t)3, envelope); //  a reply
    zsock_send (dealer, "sbb", "", "\x92\x01\x00", (size_t)3, "\x96\x01\xc4", (size_t)3);
    zmsg_t *deep = zmsg_new ();
    for (int i = 0; i < 12; i++)
        zmsg_addstr (deep, "x"); //  too many routing frames, no delimiter
    zmsg_send (&deep, dealer);
    //  The compact form (PROTOCOL.md 17.7), each one malformed message.
    zstr_send (dealer, "\x92\x01\x00"); //  no envelope
    zchunk_t *compact = zchunk_new ("\x92\x01\x01", 3);
    zchunk_extend (compact, zframe_data (envelope), zframe_size (envelope));
    zsock_send (dealer, "c", compact);                               //  a reply without its id
    zsock_send (dealer, "b", "\x92\x01\x00\x96\x01\xc4", (size_t)6); //  broken envelope
    zchunk_t *good = zchunk_new ("\x92\x01\x00", 3);
    zchunk_extend (good, zframe_data (envelope), zframe_size (envelope));
    zmsg_t *far = zmsg_new ();
    for (int i = 0; i < 8; i++)
        zmsg_addstr (far, "r"); //  with the server's own, 9 routing frames
    zmsg_addmem (far, zchunk_data (good), zchunk_size (good));
    zmsg_send (&far, dealer);
    zchunk_destroy (&good);
    zchunk_destroy (&compact);
    zframe_destroy (&envelope);
    //  A good client is served all along.
    for (int64_t n = 0; n < 5; n++) {
        uint8_t id[ZQ_MSG_ID_SIZE];
        send_request (client, n, id);
        zq_msg_t *request = recv_ok (server);
        assert_int_equal (number_of (request), n);
        answer (server, request);
        zq_msg_destroy (&request);
        zq_msg_t *reply = recv_ok (client);
        assert_memory_equal (zq_msg_id (reply), id, ZQ_MSG_ID_SIZE);
        zq_msg_destroy (&reply);
    }
    int64_t deadline = now_ms () + DEADLINE_MS;
    while (stats_of (server).errors < 12 && now_ms () < deadline) {
        zq_msg_t *msg = zq_queue_recv (server, 20);
        assert_null (msg);
    }
    assert_int_equal (stats_of (server).errors, 12);
    assert_int_equal (stats_of (server).received, 5);
    zsock_destroy (&dealer);
    zq_queue_destroy (&client);
    zq_queue_destroy (&server);
}

//  ---- A reply to a client that does not read -----------------------------

//  A raw client sends requests and reads no reply: once its pipe is full,
//  a reply to it waits out its timeout asleep (the server's ROUTER stays
//  writable for other clients, which once made the wait spin), and fails
//  with EAGAIN.
static void
test_reply_to_a_client_not_reading_waits_asleep (void **state)
{
    (void)state;
    zq_options_t *options = zq_options_new ();
    assert_int_equal (zq_options_set_int (options, "sndhwm", 2), 0);
    zq_queue_t *server, *client;
    open_pair ("tcp", options, &server, &client);
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    assert_non_null (dealer);
    zsock_set_rcvhwm (dealer, 1);
    zsock_set_rcvbuf (dealer, 4096);
    assert_int_equal (zsock_connect (dealer, "%s", zq_queue_endpoint (server)), 0);
    zframe_t *envelope = envelope_frame ("q", 0);
    for (int n = 0; n < 200; n++)
        assert_int_equal (zsock_send (dealer, "sbf", "", "\x92\x01\x00", (size_t)3, envelope), 0);
    zframe_destroy (&envelope);
    //  Replies of 100 kB until one finds no room, and no room comes while
    //  it waits (the kernel's buffers take some first).
    char *body = (char *)malloc (100000);
    assert_non_null (body);
    memset (body, 'r', 100000);
    bool waited_out = false;
    for (int n = 0; n < 200 && !waited_out; n++) {
        zq_msg_t *request = recv_ok (server);
        zq_msg_t *reply = zq_msg_new ("r");
        assert_int_equal (zq_msg_pack (reply, "B", body, (size_t)100000), 0);
        if (zq_queue_reply (server, request, &reply, 0)) {
            assert_int_equal (errno, EAGAIN);
            int64_t wall = now_ms (), cpu = thread_cpu_us ();
            int rc = zq_queue_reply (server, request, &reply, 400);
            int saved = errno;
            wall = now_ms () - wall;
            cpu = thread_cpu_us () - cpu;
            if (rc) {
                waited_out = true;
                assert_int_equal (saved, EAGAIN);
                assert_true (wall >= 350);
                assert_waited_asleep (wall, cpu);
            }
        }
        zq_msg_destroy (&reply);
        zq_msg_destroy (&request);
    }
    assert_true (waited_out);
    free (body);
    //  The good client is still answered.
    uint8_t id[ZQ_MSG_ID_SIZE];
    send_request (client, 7, id);
    zq_msg_t *got;
    while ((got = recv_ok (server)) && number_of (got) != 7)
        zq_msg_destroy (&got); //  the raw client's last requests
    answer (server, got);
    zq_msg_destroy (&got);
    got = recv_ok (client);
    assert_memory_equal (zq_msg_id (got), id, ZQ_MSG_ID_SIZE);
    zq_msg_destroy (&got);
    zsock_destroy (&dealer);
    zq_queue_destroy (&client);
    zq_queue_destroy (&server);
    zq_options_destroy (&options);
}

//  ---- Unroutable reply -----------------------------------------------------

static void
test_unroutable_reply (void **state)
{
    (void)state;
    zq_queue_t *server, *client;
    open_pair ("tcp", NULL, &server, &client);
    zactor_t *monitor = zactor_new (zmonitor, zq_queue_sock (server));
    assert_non_null (monitor);
    zstr_sendx (monitor, "LISTEN", "DISCONNECTED", NULL);
    zstr_send (monitor, "START");
    zsock_wait (monitor);

    enum { COUNT = 400 };
    static zq_msg_t *requests[COUNT];
    for (int n = 0; n < COUNT; n++) {
        uint8_t id[ZQ_MSG_ID_SIZE];
        send_request (client, n, id);
        requests[n] = recv_ok (server);
    }
    zq_queue_destroy (&client);
    //  Wait until the server's side of the connection is gone.
    zsock_set_rcvtimeo (monitor, DEADLINE_MS);
    zmsg_t *event = zmsg_recv (monitor);
    assert_non_null (event);
    char *name = zmsg_popstr (event);
    assert_string_equal (name, "DISCONNECTED");
    free (name);
    zmsg_destroy (&event);
    //  The socket takes the news in when it next processes its commands,
    //  a moment after the event: a reply before that still leaves (for a
    //  pipe that is closing). Every reply from the first failure on fails.
    //  Between replies that leave, the server waits a little on its socket
    //  (which processes its commands), within the deadline.
    int failures = 0;
    for (int n = 0; n < COUNT; n++) {
        zq_queue_events (server);
        zq_msg_t *reply = numbered ("r", n);
        int rc = zq_queue_reply (server, requests[n], &reply, 0);
        if (rc == 0) {
            assert_int_equal (failures, 0);
            assert_null (zq_queue_recv (server, 10));
            assert_int_equal (errno, EAGAIN);
        } else {
            assert_int_equal (errno, EHOSTUNREACH);
            assert_non_null (reply);
            failures++;
            //  The route is gone with the client.
            assert_int_equal (zq_queue_reply (server, requests[n], &reply, 0), -1);
            assert_int_equal (errno, ZQ_ENOTFOUND);
        }
        zq_msg_destroy (&reply);
        zq_msg_destroy (&requests[n]);
    }
    assert_true (failures > 0);
    zq_queue_stats_t stats = stats_of (server);
    assert_int_equal (stats.dropped, failures);
    assert_int_equal (stats.sent, COUNT - failures);
    zactor_destroy (&monitor);
    zq_queue_destroy (&server);
}

//  ---- A server keeps a bounded number of routes -------------------------

static void
test_server_routes_bounded (void **state)
{
    (void)state;
    zq_options_t *options = rpc_options (DEADLINE_MS, 0, 3);
    char spec[300];
    bind_spec ("inproc", spec, sizeof spec);
    zq_queue_t *server = zq_queue_new ("rpc", ZQ_SERVER, spec, options);
    zq_options_destroy (&options);
    assert_non_null (server);
    connect_spec (server, spec, sizeof spec);
    zq_queue_t *client = zq_queue_new ("rpc", ZQ_CLIENT, spec, NULL);
    assert_non_null (client);
    zq_msg_t *requests[5];
    for (int n = 0; n < 5; n++) {
        uint8_t id[ZQ_MSG_ID_SIZE];
        send_request (client, n, id);
        requests[n] = recv_ok (server);
    }
    //  Three routes are kept: those of the two oldest are forgotten.
    zq_msg_t *reply = numbered ("r", 0);
    for (int n = 0; n < 2; n++) {
        assert_int_equal (zq_queue_reply (server, requests[n], &reply, 0), -1);
        assert_int_equal (errno, ZQ_ENOTFOUND);
    }
    zq_msg_destroy (&reply);
    for (int n = 2; n < 5; n++)
        answer (server, requests[n]);
    for (int n = 2; n < 5; n++) {
        reply = recv_ok (client);
        zq_msg_destroy (&reply);
    }
    for (int n = 0; n < 5; n++)
        zq_msg_destroy (&requests[n]);
    zq_queue_destroy (&client);
    zq_queue_destroy (&server);
}

//  ---- Event loop: events and next_timer_ms drive a client ----------------

static void
test_event_loop_drives_deadlines (void **state)
{
    (void)state;
    zq_options_t *options = rpc_options (50, 1, 10);
    zq_queue_t *server, *client;
    open_pair ("ipc", options, &server, &client);
    zq_options_destroy (&options);
    uint8_t id[ZQ_MSG_ID_SIZE];
    send_request (client, 1, id);
    int fd = zq_queue_fd (client);
    assert_true (fd >= 0);
    bool failed = false;
    int64_t deadline = now_ms () + DEADLINE_MS;
    while (!failed && now_ms () < deadline) {
        int64_t timer = zq_queue_next_timer_ms (client);
        assert_true (timer <= 50);
        struct pollfd item = {fd, POLLIN, 0};
        poll (&item, 1, timer < 0 ? 100 : (int)timer);
        while (zq_queue_events (client) & ZQ_POLLIN) {
            zq_msg_t *msg = zq_queue_recv (client, 0);
            if (!msg && errno == ZQ_ETIMEDOUT)
                failed = true;
            zq_msg_destroy (&msg);
        }
    }
    assert_true (failed);
    zq_msg_t *request = zq_queue_failed (client);
    assert_memory_equal (zq_msg_id (request), id, ZQ_MSG_ID_SIZE);
    zq_msg_destroy (&request);
    assert_int_equal (stats_of (client).retries, 1);
    zq_queue_destroy (&client);
    zq_queue_destroy (&server);
}

//  ---- Failover: a server process is killed while requests flow -----------

typedef struct {
    pid_t pid;
    int stdin_fd;
    int stdout_fd;
    char endpoint[300];
} server_proc_t;

static char s_proc_path[4096];

//  The server processes started and not yet stopped, so that a test that
//  fails half-way (cmocka leaves it at the failed assertion) leaves none
//  behind, stopped or running, for the next tests: s_reap_servers.
static server_proc_t s_started[8];
static int s_started_count;

//  The registry's entry for pid, or NULL.
static server_proc_t *
s_started_entry (pid_t pid)
{
    for (int i = 0; i < s_started_count; i++)
        if (s_started[i].pid == pid)
            return &s_started[i];
    return NULL;
}

static void
s_forget_server (pid_t pid)
{
    server_proc_t *entry = s_started_entry (pid);
    if (entry)
        *entry = s_started[--s_started_count];
}

//  Teardown of the tests that start servers: kills and waits for those a
//  failure left, and closes the pipes still open (-1: closed already).
static int
s_reap_servers (void **state)
{
    (void)state;
    while (s_started_count) {
        server_proc_t *proc = &s_started[s_started_count - 1];
        kill (proc->pid, SIGKILL);
        waitpid (proc->pid, NULL, 0);
        if (proc->stdin_fd >= 0)
            close (proc->stdin_fd);
        if (proc->stdout_fd >= 0)
            close (proc->stdout_fd);
        s_started_count--;
    }
    return 0;
}

//  Starts rpc_proc in mode ("server", "hold", "busy") on spec, with extra
//  (NULL: none) as its last argument, and reads its "ready <endpoint>"
//  line into proc->endpoint.
static void
start_rpc_proc_args (server_proc_t *proc, const char *mode, const char *spec, const char *extra)
{
    int to_child[2], from_child[2];
    assert_true (s_started_count < (int)(sizeof s_started / sizeof s_started[0]));
    //  Close-on-exec: the other servers must not hold this one's stdin open.
    assert_int_equal (pipe2 (to_child, O_CLOEXEC), 0);
    assert_int_equal (pipe2 (from_child, O_CLOEXEC), 0);
    proc->pid = fork ();
    assert_true (proc->pid >= 0);
    if (proc->pid == 0) {
        dup2 (to_child[0], STDIN_FILENO);
        dup2 (from_child[1], STDOUT_FILENO);
        close (to_child[0]);
        close (to_child[1]);
        close (from_child[0]);
        close (from_child[1]);
        execl (s_proc_path, s_proc_path, mode, spec, extra, (char *)NULL);
        _exit (127);
    }
    close (to_child[0]);
    close (from_child[1]);
    proc->stdin_fd = to_child[1];
    proc->stdout_fd = from_child[0];
    s_started[s_started_count++] = *proc;
    //  "ready <endpoint>\n", within the deadline.
    char line[300];
    size_t used = 0;
    int64_t deadline = now_ms () + DEADLINE_MS;
    while (used < sizeof line - 1 && (used == 0 || line[used - 1] != '\n')) {
        int64_t left = deadline - now_ms ();
        assert_true (left > 0);
        struct pollfd item = {proc->stdout_fd, POLLIN, 0};
        assert_true (poll (&item, 1, (int)left) == 1);
        ssize_t got = read (proc->stdout_fd, line + used, 1);
        assert_true (got == 1);
        used++;
    }
    line[used - 1] = '\0';
    assert_memory_equal (line, "ready ", 6);
    snprintf (proc->endpoint, sizeof proc->endpoint, "%s", line + 6);
}

static void
start_rpc_proc (server_proc_t *proc, const char *mode, const char *spec)
{
    start_rpc_proc_args (proc, mode, spec, NULL);
}

static void
start_server_proc (server_proc_t *proc, const char *bind)
{
    start_rpc_proc (proc, "server", bind);
}

//  A server floods replies past the client's receive high-water mark while
//  the client's application reads nothing for 5 s, then falls silent: the
//  client's heartbeat timeout replaces the connection. With a high-water
//  mark on its pipe, libzmq 4.3 aborted the client at its next read (its
//  issue #3937); a client that pings keeps none, and lives.
static void
test_client_flooded_while_not_reading_lives (void **state)
{
    (void)state;
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    assert_non_null (router);
    zsock_set_sndhwm (router, 0);
    int port = zsock_bind (router, "tcp://127.0.0.1:*");
    assert_true (port > 0);
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, ">tcp://127.0.0.1:%d", port);
    server_proc_t proc;
    start_rpc_proc_args (&proc, "busy", endpoint, "5000");
    zmsg_t *request = zmsg_recv (router);
    assert_non_null (request);
    zframe_t *route = zmsg_pop (request);
    zmsg_destroy (&request);
    for (int n = 0; n < 20000; n++) {
        zframe_t *copy = zframe_dup (route);
        zmsg_t *flood = zmsg_new ();
        zmsg_append (flood, &copy);
        zmsg_addstr (flood, "");
        zmsg_addstr (flood, "x");
        assert_int_equal (zmsg_send (&flood, router), 0);
    }
    zframe_destroy (&route);
    int status = 0;
    int64_t deadline = now_ms () + 30000;
    pid_t done = 0;
    while ((done = waitpid (proc.pid, &status, WNOHANG)) == 0 && now_ms () < deadline)
        usleep (20000);
    assert_true (done == proc.pid);
    s_forget_server (proc.pid);
    close (proc.stdin_fd);
    close (proc.stdout_fd);
    if (WIFSIGNALED (status))
        fail_msg ("the client was killed by signal %d", WTERMSIG (status));
    assert_int_equal (WEXITSTATUS (status), 0);
    zsock_destroy (&router);
}

static void
stop_server_proc (server_proc_t *proc, bool kill_it)
{
    if (kill_it)
        kill (proc->pid, SIGKILL);
    close (proc->stdin_fd); //  a live server exits on this
    server_proc_t *entry = s_started_entry (proc->pid);
    if (entry)
        entry->stdin_fd = -1;
    int status;
    assert_int_equal (waitpid (proc->pid, &status, 0), proc->pid);
    s_forget_server (proc->pid);
    close (proc->stdout_fd);
    if (!kill_it)
        assert_true (WIFEXITED (status) && WEXITSTATUS (status) == 0);
}

static void
s_failover (const char *transport)
{
    enum { COUNT = 3000, IN_FLIGHT = 20, KILL_AT = 60, AFTER_KILL = 200 };
    char bind[300];
    server_proc_t procs[2];
    for (int i = 0; i < 2; i++) {
        bind_spec (transport, bind, sizeof bind);
        start_server_proc (&procs[i], bind);
    }
    char connect[700];
    snprintf (connect, sizeof connect, ">%s,>%s", procs[0].endpoint, procs[1].endpoint);
    //  Requests in flight on the killed server are sent again to the other
    //  at once; retries are allowed for those a request timeout catches.
    zq_options_t *options = rpc_options (300, 12, IN_FLIGHT);
    zq_queue_t *client = zq_queue_new ("rpc", ZQ_CLIENT, connect, options);
    zq_options_destroy (&options);
    assert_non_null (client);

    static uint8_t ids[COUNT][ZQ_MSG_ID_SIZE];
    static bool answered[COUNT];
    memset (answered, 0, sizeof answered);
    int sent = 0, received = 0, by_victim = 0, by_survivor_before = 0, by_survivor_after = 0;
    char victim_pid[32];
    snprintf (victim_pid, sizeof victim_pid, "%d", (int)procs[0].pid);
    bool paused = false, killed = false;
    int sent_at_pause = 0;
    int limit = COUNT; //  after the kill: AFTER_KILL more requests
    int64_t deadline = now_ms () + 4 * DEADLINE_MS;
    while (received < limit && now_ms () < deadline) {
        while (sent < limit && sent - received < IN_FLIGHT)
            send_request (client, sent, ids[sent]), sent++;
        zq_msg_t *reply = zq_queue_recv (client, DEADLINE_MS);
        if (!reply)
            fail_msg ("request failed: %s", zq_strerror (errno));
        int64_t n = number_of (reply);
        assert_true (n >= 0 && n < COUNT);
        assert_false (answered[n]);
        answered[n] = true;
        assert_memory_equal (zq_msg_id (reply), ids[n], ZQ_MSG_ID_SIZE);
        const char *pid = zq_msg_header (reply, "pid");
        assert_non_null (pid);
        //  (replies the victim sent before it died may still come in)
        bool from_victim = strcmp (pid, victim_pid) == 0;
        if (!killed && from_victim)
            by_victim++;
        if (!killed && !from_victim)
            by_survivor_before++;
        if (killed && !from_victim)
            by_survivor_after++;
        zq_msg_destroy (&reply);
        received++;
        //  Once both servers have been answering (connections come up in
        //  the background), one dies mid-flow, with requests in flight: it
        //  is paused first, so that the next requests sent to it (every
        //  other one, in turn) wait there, and killed a few sends later.
        if (!paused && received >= KILL_AT && by_victim > 0 && by_survivor_before > 0) {
            kill (procs[0].pid, SIGSTOP);
            paused = true;
            sent_at_pause = sent;
        }
        if (paused && !killed && sent - sent_at_pause >= 4) {
            stop_server_proc (&procs[0], true);
            killed = true;
            limit = sent + AFTER_KILL;
        }
    }
    if (!killed)
        fail_msg ("both servers never answered: %d and %d", by_victim, by_survivor_before);
    assert_int_equal (received, limit);
    assert_true (by_survivor_after > 0);
    zq_queue_stats_t stats = stats_of (client);
    assert_int_equal (stats.timeouts, 0);
    assert_int_equal (stats.received, limit);
    //  The requests that died with the victim were sent again.
    assert_true (stats.retries > 0);
    zq_queue_destroy (&client);
    stop_server_proc (&procs[1], false);
}

static void
test_failover_tcp (void **state)
{
    (void)state;
    s_failover ("tcp");
}

static void
test_failover_ipc (void **state)
{
    (void)state;
    s_failover ("ipc");
}

//  ---- Failover, one request at a time: three servers, one lost ------------
//  A request sent to a server that is then lost must be sent again to a
//  live one at once (kill -9: its connection closes) or once heartbeats
//  find it silent (SIGSTOP: about 4 s with the defaults, once), never
//  after its request timeout, and no later request goes to it. The
//  request timeout is 10 s here so that a wait for it cannot pass for a
//  heartbeat timeout.

enum { SEQ_SERVERS = 3, SEQ_COUNT = 1000, SEQ_LOSE_AT = 100, SEQ_TIMEOUT_MS = 10000 };

typedef enum { LOSS_NONE, LOSS_KILL, LOSS_STOP } loss_t;

typedef struct {
    int64_t total_ms;  //  the whole run
    int64_t worst_ms;  //  the slowest request
    int64_t out_ms;    //  from the loss to the answer of the last request sent again
    int slow;          //  requests that took over SEQ_SLOW_MS
    int by_lost_after; //  replies from the lost server after the loss
    int by_server[SEQ_SERVERS];
} seq_figures_t;

#define SEQ_SLOW_MS 1000

//  Receives one reply by the rule for event loops (zq_queue.h): the fd,
//  zq_queue_events, and zq_queue_recv (q, 0) when next_timer_ms says.
static zq_msg_t *
poller_recv (zq_queue_t *client, int timeout_ms)
{
    int fd = zq_queue_fd (client);
    assert_true (fd >= 0);
    int64_t deadline = now_ms () + timeout_ms;
    while (true) {
        int events = zq_queue_events (client);
        assert_true (events >= 0);
        if (events & ZQ_POLLIN) {
            zq_msg_t *msg = zq_queue_recv (client, 0);
            if (msg || errno != EAGAIN)
                return msg;
            continue;
        }
        int64_t left = deadline - now_ms ();
        if (left <= 0) {
            errno = EAGAIN;
            return NULL;
        }
        int64_t timer = zq_queue_next_timer_ms (client);
        bool timer_first = timer >= 0 && timer < left;
        struct pollfd item = {fd, POLLIN, 0};
        if (poll (&item, 1, (int)(timer_first ? timer : left)) == 0 && timer_first) {
            zq_msg_t *msg = zq_queue_recv (client, 0);
            if (msg || errno != EAGAIN)
                return msg;
        }
    }
}

//  A client of the SEQ_SERVERS servers of procs, as the sequential runs
//  use it (request timeout SEQ_TIMEOUT_MS, 3 retries, 10 in flight).
static zq_queue_t *
s_sequential_client (server_proc_t *procs)
{
    char connect[1200] = "";
    for (int i = 0; i < SEQ_SERVERS; i++)
        snprintf (connect + strlen (connect), sizeof connect - strlen (connect), "%s>%s",
                  i ? "," : "", procs[i].endpoint);
    zq_options_t *options = rpc_options (SEQ_TIMEOUT_MS, 3, 10);
    zq_queue_t *client = zq_queue_new ("rpc", ZQ_CLIENT, connect, options);
    zq_options_destroy (&options);
    assert_non_null (client);
    return client;
}

//  Fails the run on request n, unanswered within bound_ms, saying what
//  became of it: the client's counters then, and the reply that came
//  later (within the request timeout and a second), with the server
//  that sent it (its index in procs) and how long after.
static void
s_fail_unanswered (zq_queue_t *client, int n, loss_t loss, bool poller, int64_t bound_ms,
                   int64_t done_at, int64_t lost_at, const server_proc_t *procs)
{
    const char *why = zq_strerror (errno);
    zq_queue_stats_t then = stats_of (client);
    int wait_ms = SEQ_TIMEOUT_MS + 1000;
    zq_msg_t *late = poller ? poller_recv (client, wait_ms) : zq_queue_recv (client, wait_ms);
    int64_t late_ms = now_ms () - done_at;
    const char *pid = late ? zq_msg_header (late, "pid") : NULL;
    int from = -1, number = late ? number_of (late) : -1;
    for (int i = 0; pid && i < SEQ_SERVERS; i++)
        if (atoi (pid) == (int)procs[i].pid)
            from = i;
    zq_msg_destroy (&late);
    fail_msg ("request %d (%s%s): no reply within %lld ms (%s), %lld ms after the loss; "
              "retries %llu, dropped %llu then; later: %s (number %d, server %d) %lld ms after",
              n,
              loss == LOSS_NONE   ? "no loss"
              : loss == LOSS_KILL ? "kill -9"
                                  : "SIGSTOP",
              poller ? ", poller" : "", (long long)bound_ms, why,
              lost_at ? (long long)(done_at - lost_at) : 0LL, (unsigned long long)then.retries,
              (unsigned long long)then.dropped, number >= 0 ? "a reply" : "none", number, from,
              (long long)late_ms);
}

//  Sends SEQ_COUNT requests one at a time to procs[0..SEQ_SERVERS-1]; after
//  SEQ_LOSE_AT replies, loses procs[0] as loss says while it holds a request
//  (servers take requests in turn: the one after a reply from the last
//  server goes to the first; the server is stopped before it is sent, so
//  it cannot answer, and killed after). Each request must be answered
//  within bound_ms (fails at once otherwise, so a run without failover
//  ends fast). Fills figures.
static void
s_sequential (server_proc_t *procs, loss_t loss, bool poller, int64_t bound_ms,
              seq_figures_t *figures)
{
    zq_queue_t *client = s_sequential_client (procs);
    memset (figures, 0, sizeof *figures);
    char pids[SEQ_SERVERS][32];
    for (int i = 0; i < SEQ_SERVERS; i++)
        snprintf (pids[i], sizeof pids[i], "%d", (int)procs[i].pid);
    int64_t start = now_ms (), lost_at = 0;
    int last_from = -1;
    for (int n = 0; n < SEQ_COUNT; n++) {
        uint64_t retries_before = stats_of (client).retries;
        bool lose =
            loss != LOSS_NONE && !lost_at && n >= SEQ_LOSE_AT && last_from == SEQ_SERVERS - 1;
        if (lose) {
            assert_int_equal (kill (procs[0].pid, SIGSTOP), 0);
            lost_at = now_ms ();
        }
        int64_t sent_at = now_ms ();
        zq_msg_t *request = numbered ("rpc.seq", n);
        assert_int_equal (zq_queue_send (client, &request, poller ? 0 : DEADLINE_MS), 0);
        if (lose && loss == LOSS_KILL)
            assert_int_equal (kill (procs[0].pid, SIGKILL), 0);
        zq_msg_t *reply =
            poller ? poller_recv (client, (int)bound_ms) : zq_queue_recv (client, (int)bound_ms);
        int64_t done_at = now_ms ();
        if (!reply)
            s_fail_unanswered (client, n, loss, poller, bound_ms, done_at, lost_at, procs);
        assert_int_equal (number_of (reply), n);
        const char *pid = zq_msg_header (reply, "pid");
        assert_non_null (pid);
        for (int i = 0; i < SEQ_SERVERS; i++)
            if (strcmp (pid, pids[i]) == 0) {
                last_from = i;
                figures->by_server[i]++;
                if (i == 0 && lost_at)
                    figures->by_lost_after++;
            }
        zq_msg_destroy (&reply);
        int64_t latency = done_at - sent_at;
        if (latency > figures->worst_ms)
            figures->worst_ms = latency;
        if (latency > SEQ_SLOW_MS)
            figures->slow++;
        if (lost_at && stats_of (client).retries > retries_before)
            figures->out_ms = done_at - lost_at;
    }
    figures->total_ms = now_ms () - start;
    if (loss != LOSS_NONE && !lost_at)
        fail_msg ("the servers never answered in turn");
    zq_queue_stats_t stats = stats_of (client);
    assert_int_equal (stats.timeouts, 0);
    assert_int_equal (stats.received, SEQ_COUNT);
    zq_queue_destroy (&client);
}

static void
s_start_servers (server_proc_t *procs)
{
    for (int i = 0; i < SEQ_SERVERS; i++)
        start_server_proc (&procs[i], "@tcp://127.0.0.1:*");
}

static void
s_stop_servers (server_proc_t *procs, loss_t loss)
{
    for (int i = 0; i < SEQ_SERVERS; i++)
        stop_server_proc (&procs[i], i == 0 && loss != LOSS_NONE);
}

static void
s_print_figures (const char *what, const seq_figures_t *figures)
{
    print_message ("%s: total %lld ms, worst request %lld ms, lost server out after %lld ms, "
                   "%d requests over %d ms, replies by server %d/%d/%d\n",
                   what, (long long)figures->total_ms, (long long)figures->worst_ms,
                   (long long)figures->out_ms, figures->slow, SEQ_SLOW_MS, figures->by_server[0],
                   figures->by_server[1], figures->by_server[2]);
}

//  The run without a loss, then with loss; checks the bounds.
static void
s_sequential_loss (loss_t loss, bool poller)
{
    server_proc_t procs[SEQ_SERVERS];
    seq_figures_t base, lost;
    s_start_servers (procs);
    s_sequential (procs, LOSS_NONE, poller, SEQ_SLOW_MS, &base);
    s_print_figures (poller ? "no loss, poller" : "no loss", &base);
    //  Every server took its share.
    for (int i = 0; i < SEQ_SERVERS; i++)
        assert_true (base.by_server[i] >= SEQ_COUNT / SEQ_SERVERS / 2);
    //  kill -9: the closed connection is seen at once, which on a loaded
    //  2-core machine has taken up to ~1.4 s (libzmq's event, then the
    //  resend); 2 s keeps the bound under the heartbeats' 3-4 s and far
    //  under the 10 s request timeout. SIGSTOP: the heartbeats (a PING
    //  every 1 s, 3 s of silence) close it within 4 s.
    int64_t detect_ms = loss == LOSS_KILL ? 2000 : 4000;
    int64_t bound_ms = detect_ms + SEQ_SLOW_MS;
    s_sequential (procs, loss, poller, bound_ms, &lost);
    s_print_figures (loss == LOSS_KILL ? (poller ? "kill -9, poller" : "kill -9")
                                       : (poller ? "SIGSTOP, poller" : "SIGSTOP"),
                     &lost);
    //  Once out, the lost server gets no more requests; a single request
    //  (the one it held) waited for the loss to be seen.
    assert_int_equal (lost.by_lost_after, 0);
    assert_true (lost.slow <= 1);
    assert_true (lost.worst_ms < SEQ_TIMEOUT_MS);
    //  The whole run: the no-loss run's time (twice over, and 2 s, for a
    //  busy machine) plus the one wait for the loss to be seen.
    assert_true (lost.total_ms <= 2 * base.total_ms + 2000 + detect_ms);
    for (int i = 1; i < SEQ_SERVERS; i++)
        assert_true (lost.by_server[i] >= (SEQ_COUNT - SEQ_LOSE_AT) / 2 / 2);
    if (loss == LOSS_STOP)
        kill (procs[0].pid, SIGCONT);
    s_stop_servers (procs, loss);
}

static void
test_sequential_kill (void **state)
{
    (void)state;
    s_sequential_loss (LOSS_KILL, false);
}

static void
test_sequential_stop (void **state)
{
    (void)state;
    s_sequential_loss (LOSS_STOP, false);
}

static void
test_poller_kill (void **state)
{
    (void)state;
    s_sequential_loss (LOSS_KILL, true);
}

static void
test_poller_stop (void **state)
{
    (void)state;
    s_sequential_loss (LOSS_STOP, true);
}

//  A killed server restarted on its port is used again, and the load is
//  spread over the three evenly again.
static void
test_restarted_server_used_again (void **state)
{
    (void)state;
    server_proc_t procs[SEQ_SERVERS];
    //  The one restarted binds its port again: one no other connection
    //  can hold meanwhile.
    char bind[300];
    restartable_tcp_spec (bind, sizeof bind);
    start_server_proc (&procs[0], bind);
    for (int i = 1; i < SEQ_SERVERS; i++)
        start_server_proc (&procs[i], "@tcp://127.0.0.1:*");
    zq_queue_t *client = s_sequential_client (procs);
    char pids[SEQ_SERVERS][32];
    int by_server[SEQ_SERVERS] = {0};
    int phase = 0; //  0: all up, 1: one killed, 2: restarted, not seen yet, 3: seen
    int in_phase = 0, n = 0;
    int64_t deadline = now_ms () + DEADLINE_MS;
    while (phase < 3 || in_phase < 300) {
        if (now_ms () > deadline)
            fail_msg ("phase %d: %d requests, restarted server not used", phase, in_phase);
        for (int i = 0; i < SEQ_SERVERS; i++)
            snprintf (pids[i], sizeof pids[i], "%d", (int)procs[i].pid);
        zq_msg_t *request = numbered ("rpc.restart", n);
        assert_int_equal (zq_queue_send (client, &request, DEADLINE_MS), 0);
        zq_msg_t *reply = zq_queue_recv (client, SEQ_SLOW_MS);
        if (!reply)
            fail_msg ("phase %d: request %d: no reply within %d ms", phase, n, SEQ_SLOW_MS);
        assert_int_equal (number_of (reply), n);
        const char *pid = zq_msg_header (reply, "pid");
        assert_non_null (pid);
        int from = -1;
        for (int i = 0; i < SEQ_SERVERS; i++)
            if (strcmp (pid, pids[i]) == 0)
                from = i;
        zq_msg_destroy (&reply);
        n++;
        in_phase++;
        if (phase == 1)
            assert_true (from != 0); //  the killed one cannot answer
        if (phase == 2 && from == 0) {
            phase = 3;
            in_phase = 0;
            continue;
        }
        if (phase == 3)
            by_server[from]++;
        if (phase == 0 && in_phase == SEQ_LOSE_AT) {
            stop_server_proc (&procs[0], true);
            phase = 1;
            in_phase = 0;
        } else if (phase == 1 && in_phase == SEQ_LOSE_AT) {
            //  Back on the same endpoint (its tcp port).
            start_server_proc (&procs[0], bind);
            phase = 2;
            in_phase = 0;
        }
    }
    print_message ("after the restart: replies by server %d/%d/%d\n", by_server[0], by_server[1],
                   by_server[2]);
    for (int i = 0; i < SEQ_SERVERS; i++)
        assert_true (by_server[i] >= 60);
    assert_int_equal (stats_of (client).timeouts, 0);
    zq_queue_destroy (&client);
    s_stop_servers (procs, LOSS_NONE);
}

//  ---- Heartbeats are on by default ------------------------------------------

static void
test_heartbeat_defaults (void **state)
{
    (void)state;
    zq_queue_t *server, *client;
    open_pair ("inproc", NULL, &server, &client);
    void *handle = zsock_resolve (zq_queue_sock (client));
    int value = 0;
    size_t size = sizeof value;
    assert_int_equal (zmq_getsockopt (handle, ZMQ_HEARTBEAT_IVL, &value, &size), 0);
    assert_true (value > 0);
    //  Off, so replies that arrived survive their server's disconnection.
    assert_int_equal (zmq_getsockopt (handle, ZMQ_IMMEDIATE, &value, &size), 0);
    assert_int_equal (value, 0);
    zq_queue_destroy (&client);
    //  Set to 0 by the user: off.
    zq_options_t *options = zq_options_new ();
    assert_int_equal (zq_options_set_int (options, "heartbeat_ivl_ms", 0), 0);
    char spec[300];
    connect_spec (server, spec, sizeof spec);
    client = zq_queue_new ("rpc", ZQ_CLIENT, spec, options);
    zq_options_destroy (&options);
    handle = zsock_resolve (zq_queue_sock (client));
    assert_int_equal (zmq_getsockopt (handle, ZMQ_HEARTBEAT_IVL, &value, &size), 0);
    assert_int_equal (value, 0);
    zq_queue_destroy (&client);
    zq_queue_destroy (&server);
}

//  The value of an int option of queue's socket.
static int
s_sockopt (zq_queue_t *queue, int option)
{
    int value = -1;
    size_t size = sizeof value;
    assert_int_equal (zmq_getsockopt (zsock_resolve (zq_queue_sock (queue)), option, &value, &size),
                      0);
    return value;
}

//  The TTL a client opened with options asks of its servers.
static int
s_client_ttl (const zq_options_t *options)
{
    zq_queue_t *server, *client;
    open_pair ("tcp", options, &server, &client);
    int ttl = s_sockopt (client, ZMQ_HEARTBEAT_TTL);
    zq_queue_destroy (&client);
    zq_queue_destroy (&server);
    return ttl;
}

//  A client pings every second and asks its servers to drop it when
//  nothing comes from it for 4 s (the interval and the timeout: TTL); a
//  server has no heartbeat timer of its own, and TCP keepalive instead.
static void
test_liveness_by_role (void **state)
{
    (void)state;
    zq_queue_t *server, *client;
    open_pair ("tcp", NULL, &server, &client);
    assert_int_equal (s_sockopt (client, ZMQ_HEARTBEAT_IVL), 1000);
    assert_int_equal (s_sockopt (client, ZMQ_HEARTBEAT_TIMEOUT), 3000);
    assert_int_equal (s_sockopt (client, ZMQ_HEARTBEAT_TTL), 4000);
    assert_int_equal (s_sockopt (server, ZMQ_HEARTBEAT_IVL), 0);
    assert_int_equal (s_sockopt (server, ZMQ_TCP_KEEPALIVE), 1);
    assert_int_equal (s_sockopt (server, ZMQ_TCP_KEEPALIVE_IDLE), 1);
    assert_int_equal (s_sockopt (server, ZMQ_TCP_KEEPALIVE_INTVL), 1);
    assert_int_equal (s_sockopt (server, ZMQ_TCP_KEEPALIVE_CNT), 3);
    zq_queue_destroy (&client);
    zq_queue_destroy (&server);
    //  The client's timeout sets its TTL; so do heartbeats the user set,
    //  at most ZQ_HEARTBEAT_TTL_MAX_MS (libzmq would read a longer one
    //  wrong); a TTL set by the user stays, and a longer one is refused.
    zq_options_t *options = zq_options_new ();
    assert_int_equal (zq_options_set_int (options, "heartbeat_timeout_ms", 2000), 0);
    assert_int_equal (s_client_ttl (options), 3000);
    assert_int_equal (zq_options_set_int (options, "heartbeat_ivl_ms", 500), 0);
    assert_int_equal (s_client_ttl (options), 2500);
    assert_int_equal (zq_options_set_int (options, "heartbeat_timeout_ms", 100000), 0);
    assert_int_equal (s_client_ttl (options), ZQ_HEARTBEAT_TTL_MAX_MS);
    assert_int_equal (zq_options_set_int (options, "heartbeat_ttl_ms", 9000), 0);
    errno = 0;
    assert_int_equal (zq_options_set_int (options, "heartbeat_ttl_ms", ZQ_HEARTBEAT_TTL_MAX_MS + 1),
                      -1);
    assert_int_equal (errno, EINVAL);
    assert_int_equal (s_client_ttl (options), 9000);
    zq_options_destroy (&options);
}

//  Waits up to timeout_ms for the event on monitor (a socket monitor's
//  PAIR); returns when it came (ms after start), or -1.
static int64_t
s_event_after (void *monitor, uint16_t wanted, int64_t start, int timeout_ms)
{
    int64_t deadline = start + timeout_ms;
    for (int64_t left; (left = deadline - now_ms ()) > 0;) {
        zmq_pollitem_t item = {monitor, 0, ZMQ_POLLIN, 0};
        if (zmq_poll (&item, 1, (long)left) <= 0)
            continue;
        zmq_msg_t frame;
        zmq_msg_init (&frame);
        assert_true (zmq_msg_recv (&frame, monitor, 0) >= 6);
        uint16_t event;
        memcpy (&event, zmq_msg_data (&frame), sizeof event);
        assert_true (zmq_msg_recv (&frame, monitor, 0) >= 0); //  the endpoint
        zmq_msg_close (&frame);
        if (event == wanted)
            return now_ms () - start;
    }
    return -1;
}

//  A zq server, which has no heartbeat timer of its own, keeps an idle
//  client that is alive (its PINGs keep coming, and libzmq answers them)
//  and drops a paused one within the TTL that client asked for: 4 s
//  after its last PING, which came up to 1 s before the pause, so 3 to
//  4 s after the pause.
static void
test_server_drops_a_paused_client (void **state)
{
    (void)state;
    zq_queue_t *server = zq_queue_new ("rpc", ZQ_SERVER, "@tcp://127.0.0.1:*", NULL);
    assert_non_null (server);
    char spec[300];
    snprintf (spec, sizeof spec, ">%s", zq_queue_endpoint (server));
    char monitor_endpoint[64];
    snprintf (monitor_endpoint, sizeof monitor_endpoint, "inproc://test-rpc-monitor-%d",
              (int)getpid ());
    assert_int_equal (zmq_socket_monitor (zsock_resolve (zq_queue_sock (server)), monitor_endpoint,
                                          ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED),
                      0);
    zsock_t *monitor = zsock_new_pair (monitor_endpoint);
    assert_non_null (monitor);
    void *monitor_handle = zsock_resolve (monitor);
    server_proc_t client;
    start_rpc_proc (&client, "hold", spec);
    assert_true (
        s_event_after (monitor_handle, ZMQ_EVENT_HANDSHAKE_SUCCEEDED, now_ms (), DEADLINE_MS) >= 0);
    //  Idle and alive: still connected after more than the TTL.
    assert_int_equal (s_event_after (monitor_handle, ZMQ_EVENT_DISCONNECTED, now_ms (), 6000), -1);
    assert_int_equal (kill (client.pid, SIGSTOP), 0);
    int64_t after = s_event_after (monitor_handle, ZMQ_EVENT_DISCONNECTED, now_ms (), 10000);
    assert_int_equal (kill (client.pid, SIGCONT), 0);
    stop_server_proc (&client, true);
    zmq_socket_monitor (zsock_resolve (zq_queue_sock (server)), NULL, 0);
    zsock_destroy (&monitor);
    zq_queue_destroy (&server);
    if (after < 2900 || after > 4800)
        fail_msg ("the paused client was dropped %lld ms after its pause, not 3000 to 4000",
                  (long long)after);
}

int
main (int argc, char *argv[])
{
    (void)argc;
    //  rpc_proc is built next to this program.
    char self[4096];
    ssize_t length = readlink ("/proc/self/exe", self, sizeof self - 1);
    if (length <= 0)
        return 1;
    self[length] = '\0';
    const char *builddir = getenv ("ZQ_BUILDDIR");
    if (builddir)
        snprintf (s_proc_path, sizeof s_proc_path, "%s/tests/rpc_proc", builddir);
    else
        snprintf (s_proc_path, sizeof s_proc_path, "%s/rpc_proc", dirname (self));
    (void)argv;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_roundtrip_inproc),
        cmocka_unit_test (test_roundtrip_ipc),
        cmocka_unit_test (test_roundtrip_tcp),
        cmocka_unit_test (test_large_body_and_headers),
        cmocka_unit_test (test_reply_then_close_ipc),
        cmocka_unit_test (test_reply_then_close_tcp),
        cmocka_unit_test (test_many_in_flight_out_of_order),
        cmocka_unit_test (test_window_full),
        cmocka_unit_test (test_roles),
        cmocka_unit_test (test_retry_after_ignored_attempt),
        cmocka_unit_test (test_final_timeout),
        cmocka_unit_test (test_failures_reported_once_each),
        cmocka_unit_test (test_duplicate_stray_and_garbage_replies),
        cmocka_unit_test (test_compact_only_where_the_server_says),
        cmocka_unit_test (test_compact_forgotten_with_the_connection),
        cmocka_unit_test (test_compact_per_server_of_a_router_client),
        cmocka_unit_test (test_compact_at_max_message_bytes),
        cmocka_unit_test (test_server_counts_garbage),
        cmocka_unit_test (test_reply_to_a_client_not_reading_waits_asleep),
        cmocka_unit_test_teardown (test_client_flooded_while_not_reading_lives, s_reap_servers),
        cmocka_unit_test (test_unroutable_reply),
        cmocka_unit_test (test_server_routes_bounded),
        cmocka_unit_test (test_event_loop_drives_deadlines),
        cmocka_unit_test_teardown (test_failover_tcp, s_reap_servers),
        cmocka_unit_test_teardown (test_failover_ipc, s_reap_servers),
        cmocka_unit_test (test_heartbeat_defaults),
        cmocka_unit_test (test_liveness_by_role),
        cmocka_unit_test_teardown (test_server_drops_a_paused_client, s_reap_servers),
        cmocka_unit_test_teardown (test_sequential_kill, s_reap_servers),
        cmocka_unit_test_teardown (test_sequential_stop, s_reap_servers),
        cmocka_unit_test_teardown (test_poller_kill, s_reap_servers),
        cmocka_unit_test_teardown (test_poller_stop, s_reap_servers),
        cmocka_unit_test_teardown (test_restarted_server_used_again, s_reap_servers),
    };
    int failures = cmocka_run_group_tests (tests, NULL, NULL);
    remove_ipc_dir ();
    return failures;
}
