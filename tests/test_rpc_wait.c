/*  =========================================================================
    test_rpc_wait - how an rpc client and server wait for what comes one at
    a time: a receive that has to wait starts waiting inside libzmq at
    once, without a non-blocking attempt first (one that finds nothing
    costs a system call in libzmq, and in a round trip nothing is there
    yet), and waiting that way keeps what the client owes: a failure is
    reported at once, and a reply already waiting wins over it.

    This program defines zmq_msg_recv, which the library reaches through
    the dynamic linker, and counts, for the one socket it watches, the
    non-blocking receives that found nothing, before passing each call on
    to libzmq's own.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "queue_helpers.h"
#include <dlfcn.h>

static void *s_watched;      //  the libzmq socket whose empty receives count
static int s_empty_receives; //  non-blocking receives on it that found nothing

int
zmq_msg_recv (zmq_msg_t *msg, void *socket, int flags)
{
    static int (*library_recv) (zmq_msg_t *, void *, int);
    if (!library_recv)
        *(void **)&library_recv = dlsym (RTLD_NEXT, "zmq_msg_recv");
    assert_non_null (library_recv);
    int rc = library_recv (msg, socket, flags);
    if (rc == -1 && errno == EAGAIN && (flags & ZMQ_DONTWAIT) &&
        socket == __atomic_load_n (&s_watched, __ATOMIC_SEQ_CST))
        __atomic_add_fetch (&s_empty_receives, 1, __ATOMIC_SEQ_CST);
    return rc;
}

static void
s_watch (zq_queue_t *queue)
{
    __atomic_store_n (&s_watched, queue ? zsock_resolve (zq_queue_sock (queue)) : NULL,
                      __ATOMIC_SEQ_CST);
    __atomic_store_n (&s_empty_receives, 0, __ATOMIC_SEQ_CST);
}

static int
s_empty (void)
{
    return __atomic_load_n (&s_empty_receives, __ATOMIC_SEQ_CST);
}

static zq_options_t *
s_options (int request_timeout_ms, int retries)
{
    zq_options_t *options = zq_options_new ();
    assert_non_null (options);
    assert_int_equal (zq_options_set_int (options, "request_timeout_ms", request_timeout_ms), 0);
    assert_int_equal (zq_options_set_int (options, "retries", retries), 0);
    return options;
}

//  An rpc server bound over tcp on a loopback address of its own
//  (127.A.T.B: T counts this process's servers, A and B come from its
//  process id), so that the pipes of a client closed by an earlier test,
//  still delivering to the port its server had (the next bind may take it
//  again), or a client of another test process, can never reach it.
static zq_queue_t *
s_new_server (const zq_options_t *options)
{
    static int servers;
    char spec[64];
    snprintf (spec, sizeof spec, "@tcp://127.%d.%d.%d:*", 1 + (int)getpid () % 250,
              1 + (servers++ % 250), 1 + (int)(getpid () / 250) % 250);
    zq_queue_t *queue = zq_queue_new ("rpc", ZQ_SERVER, spec, options);
    assert_non_null (queue);
    return queue;
}

//  One round trip, client and server in this thread: the client sends,
//  the server waits for the request (tcp: it is not there yet) and
//  answers, the client waits for the reply.
static void
s_round_trip (zq_queue_t *client, zq_queue_t *server, int64_t n)
{
    zq_msg_t *request = numbered ("work", n);
    uint8_t id[ZQ_MSG_ID_SIZE];
    memcpy (id, zq_msg_id (request), ZQ_MSG_ID_SIZE);
    assert_int_equal (zq_queue_send (client, &request, DEADLINE_MS), 0);
    request = zq_queue_recv (server, DEADLINE_MS);
    if (!request)
        fail_msg ("round trip %d: no request: %s", (int)n, zq_strerror (errno));
    assert_int_equal (number_of (request), n);
    zq_msg_t *reply = numbered ("work.reply", n + 1);
    assert_int_equal (zq_queue_reply (server, request, &reply, DEADLINE_MS), 0);
    zq_msg_destroy (&request);
    reply = zq_queue_recv (client, DEADLINE_MS);
    if (!reply)
        fail_msg ("round trip %d: no reply: %s", (int)n, zq_strerror (errno));
    assert_memory_equal (zq_msg_id (reply), id, ZQ_MSG_ID_SIZE);
    assert_int_equal (number_of (reply), n + 1);
    zq_msg_destroy (&reply);
}

//  Round trips over tcp, after some to let the connection settle (its
//  handshake makes the client's server live, which the client reads from
//  its socket monitor at most once a millisecond and acts on first): at
//  least WARM_UP of them and WARM_UP_MS of time. Then counts the empty
//  non-blocking receives on the socket of watched (server or client).
static void
s_waits_in_libzmq (bool watch_client)
{
    enum { WARM_UP = 20, WARM_UP_MS = 20, WARM_UP_MAX = 100000, ROUND_TRIPS = 200 };
    zq_options_t *options = s_options (DEADLINE_MS, 0);
    zq_queue_t *server = s_new_server (options);
    zq_queue_t *client = new_connected ("rpc", ZQ_CLIENT, server, options);
    zq_options_destroy (&options);
    int64_t settled_ms = now_ms () + WARM_UP_MS;
    int n = 0;
    while (n < WARM_UP || (now_ms () < settled_ms && n < WARM_UP_MAX))
        s_round_trip (client, server, n++);
    s_watch (watch_client ? client : server);
    for (int trip = 0; trip < ROUND_TRIPS; trip++)
        s_round_trip (client, server, n++);
    int empty = s_empty ();
    s_watch (NULL);
    if (empty)
        fail_msg ("%s: %d non-blocking receives found nothing in %d round trips",
                  watch_client ? "client" : "server", empty, ROUND_TRIPS);
    zq_queue_stats_t stats;
    zq_queue_stats (client, &stats);
    assert_int_equal (stats.retries, 0);
    assert_int_equal (stats.timeouts, 0);
    zq_queue_destroy (&client);
    zq_queue_destroy (&server);
}

static void
test_server_waits_in_libzmq (void **state)
{
    (void)state;
    s_waits_in_libzmq (false);
}

static void
test_client_waits_in_libzmq (void **state)
{
    (void)state;
    s_waits_in_libzmq (true);
}

//  A request whose only attempt passed its deadline, found failed by
//  zq_queue_events (as an event loop would): a receive that would wait up
//  to DEADLINE_MS reports the failure at once.
static void
test_failure_reported_at_once (void **state)
{
    (void)state;
    enum { TIMEOUT_MS = 50, AT_ONCE_MS = 1000 };
    zq_options_t *options = s_options (TIMEOUT_MS, 0);
    zq_queue_t *server = s_new_server (options);
    zq_queue_t *client = new_connected ("rpc", ZQ_CLIENT, server, options);
    zq_options_destroy (&options);
    s_round_trip (client, server, 0);
    zq_msg_t *request = numbered ("work", 1);
    uint8_t id[ZQ_MSG_ID_SIZE];
    memcpy (id, zq_msg_id (request), ZQ_MSG_ID_SIZE);
    assert_int_equal (zq_queue_send (client, &request, DEADLINE_MS), 0);
    //  The server takes it and never answers.
    zq_msg_t *taken = zq_queue_recv (server, DEADLINE_MS);
    assert_non_null (taken);
    zq_msg_destroy (&taken);
    int64_t give_up_ms = now_ms () + DEADLINE_MS;
    while (!(zq_queue_events (client) & ZQ_POLLIN)) {
        assert_true (now_ms () < give_up_ms);
        int64_t wait_ms = zq_queue_next_timer_ms (client);
        assert_true (wait_ms >= 0);
        zmq_poll (NULL, 0, (long)wait_ms);
    }
    int64_t start = now_ms ();
    zq_msg_t *reply = zq_queue_recv (client, DEADLINE_MS);
    assert_null (reply);
    assert_int_equal (errno, ZQ_ETIMEDOUT);
    int64_t waited_ms = now_ms () - start;
    if (waited_ms >= AT_ONCE_MS)
        fail_msg ("the failure was reported after %d ms", (int)waited_ms);
    request = zq_queue_failed (client);
    assert_non_null (request);
    assert_memory_equal (zq_msg_id (request), id, ZQ_MSG_ID_SIZE);
    zq_msg_destroy (&request);
    zq_queue_destroy (&client);
    zq_queue_destroy (&server);
}

//  A reply that arrived before its request's last deadline passed wins,
//  even when the receive starts after that deadline and would wait.
static void
test_waiting_reply_wins (void **state)
{
    (void)state;
    enum { TIMEOUT_MS = 200 };
    zq_options_t *options = s_options (TIMEOUT_MS, 0);
    zq_queue_t *server = s_new_server (options);
    zq_queue_t *client = new_connected ("rpc", ZQ_CLIENT, server, options);
    zq_options_destroy (&options);
    s_round_trip (client, server, 0);
    zq_msg_t *request = numbered ("work", 1);
    uint8_t id[ZQ_MSG_ID_SIZE];
    memcpy (id, zq_msg_id (request), ZQ_MSG_ID_SIZE);
    int64_t sent_ms = now_ms ();
    assert_int_equal (zq_queue_send (client, &request, DEADLINE_MS), 0);
    request = zq_queue_recv (server, DEADLINE_MS);
    assert_non_null (request);
    zq_msg_t *reply = numbered ("work.reply", 2);
    assert_int_equal (zq_queue_reply (server, request, &reply, DEADLINE_MS), 0);
    zq_msg_destroy (&request);
    //  The reply reaches the client's socket; the client reads nothing
    //  until the deadline has passed.
    zmq_pollitem_t item = {zsock_resolve (zq_queue_sock (client)), 0, ZMQ_POLLIN, 0};
    assert_int_equal (zmq_poll (&item, 1, DEADLINE_MS), 1);
    int64_t late_ms = TIMEOUT_MS + 20 - (now_ms () - sent_ms);
    if (late_ms > 0)
        assert_int_equal (zmq_poll (NULL, 0, (long)late_ms), 0);
    reply = zq_queue_recv (client, DEADLINE_MS);
    if (!reply)
        fail_msg ("the waiting reply lost to its deadline: %s", zq_strerror (errno));
    assert_memory_equal (zq_msg_id (reply), id, ZQ_MSG_ID_SIZE);
    assert_int_equal (number_of (reply), 2);
    zq_msg_destroy (&reply);
    zq_queue_stats_t stats;
    zq_queue_stats (client, &stats);
    assert_int_equal (stats.timeouts, 0);
    assert_null (zq_queue_failed (client));
    zq_queue_destroy (&client);
    zq_queue_destroy (&server);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_server_waits_in_libzmq),
        cmocka_unit_test (test_client_waits_in_libzmq),
        cmocka_unit_test (test_failure_reported_at_once),
        cmocka_unit_test (test_waiting_reply_wins),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
