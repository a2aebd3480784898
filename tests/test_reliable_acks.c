/*  =========================================================================
    test_reliable_acks - a reliable consumer's acks and nacks in batches
    (option ack_flush_us): coalesced into few ACK frames, sent when the
    application goes quiet (no further call) and when it closes, and one
    frame each with ack_flush_us 0 or when the application polls the
    socket itself. The server here is a raw ROUTER that counts the frames
    (doc/PROTOCOL.md 18.1, 19.6).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable_helpers.h"
#include <inttypes.h>

//  A raw server: the consumer's one connection, and what it sent.
typedef struct {
    zsock_t *router;
    char endpoint[128];
    zframe_t *route; //  the consumer's routing id, from its CONSUME
    uint8_t ids[512][ZQ_MSG_ID_SIZE];
    size_t sent;    //  deliveries sent
    size_t settled; //  ids named by ACK or NACK frames so far
    size_t frames;  //  ACK and NACK frames so far
    bool left;      //  a LEAVE came
    bool settle_after_leave;
    int64_t last_number; //  NACK's delay_ms of the last NACK
    uint64_t last_kind;
} raw_server_t;

static raw_server_t *
raw_start (void)
{
    static int counter;
    raw_server_t *self = (raw_server_t *)calloc (1, sizeof (raw_server_t));
    assert_non_null (self);
    self->router = zsock_new (ZMQ_ROUTER);
    assert_non_null (self->router);
    snprintf (self->endpoint, sizeof self->endpoint, "inproc://zq-acks-%d-%d", (int)getpid (),
              ++counter);
    assert_int_equal (zsock_bind (self->router, "%s", self->endpoint), 0);
    return self;
}

static void
raw_stop (raw_server_t **self_p)
{
    raw_server_t *self = *self_p;
    zframe_destroy (&self->route);
    zsock_destroy (&self->router);
    free (self);
    *self_p = NULL;
}

//  Reads a msgpack uint or negative fixint/int at *p (the few forms the
//  consumer writes); advances *p.
static int64_t
raw_int (const uint8_t **p)
{
    const uint8_t *at = *p;
    if (at[0] <= 0x7f || at[0] >= 0xe0) {
        *p += 1;
        return (int8_t)at[0];
    }
    int64_t value = 0;
    size_t size = at[0] == 0xcc || at[0] == 0xd0   ? 1
                  : at[0] == 0xcd || at[0] == 0xd1 ? 2
                  : at[0] == 0xce || at[0] == 0xd2 ? 4
                                                   : 8;
    for (size_t i = 0; i < size; i++)
        value = (value << 8) | at[1 + i];
    if (at[0] >= 0xd0 && at[0] <= 0xd3 && size < 8 && (at[1] & 0x80))
        value -= (int64_t)1 << (8 * size);
    *p += 1 + size;
    return value;
}

//  Reads one message from the consumer, waiting up to wait_ms; counts it.
//  Returns its command kind, or 0 when nothing came.
static uint64_t
raw_read (raw_server_t *self, int wait_ms)
{
    zsock_set_rcvtimeo (self->router, wait_ms);
    zmsg_t *msg = zmsg_recv (self->router);
    if (!msg)
        return 0;
    zframe_t *route = zmsg_pop (msg);
    zframe_t *command = zmsg_pop (msg);
    assert_non_null (command);
    const uint8_t *p = zframe_data (command);
    assert_true (zframe_size (command) >= 3);
    uint64_t kind = p[2];
    if (kind == 4 && !self->route) //  CONSUME
        self->route = zframe_dup (route);
    if (kind == 7 || kind == 8) { //  ACK, NACK: [1, kind, ids (, delay)]
        const uint8_t *at = p + 3;
        size_t size = at[0] == 0xc4 ? at[1] : (size_t)at[1] << 8 | at[2];
        at += at[0] == 0xc4 ? 2 : 3;
        assert_int_equal (size % ZQ_MSG_ID_SIZE, 0);
        for (size_t i = 0; i < size / ZQ_MSG_ID_SIZE; i++) {
            assert_true (self->settled < self->sent);
            //  In the order acked, which is the order delivered here.
            assert_memory_equal (at + i * ZQ_MSG_ID_SIZE, self->ids[self->settled], ZQ_MSG_ID_SIZE);
            self->settled++;
        }
        at += size;
        if (kind == 8)
            self->last_number = raw_int (&at);
        self->frames++;
        self->last_kind = kind;
        if (self->left)
            self->settle_after_leave = true;
    } else if (kind == 13)
        self->left = true;
    zframe_destroy (&route);
    zframe_destroy (&command);
    zmsg_destroy (&msg);
    return kind;
}

//  Waits (up to the deadline) for the consumer's CONSUME.
static void
raw_wait_consume (raw_server_t *self)
{
    int64_t deadline = now_ms () + DEADLINE_MS;
    while (!self->route && now_ms () < deadline)
        raw_read (self, 100);
    assert_non_null (self->route);
}

//  Sends count deliveries of {"n": sent...} on queue "acks".
static void
raw_deliver (raw_server_t *self, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        assert_true (self->sent < 512);
        zq_msg_t *msg = numbered ("acks", (int64_t)self->sent);
        memcpy (self->ids[self->sent++], zq_msg_id (msg), ZQ_MSG_ID_SIZE);
        zmsg_t *frames = zmsg_new ();
        zmsg_addmem (frames, zframe_data (self->route), zframe_size (self->route));
        zmsg_addmem (frames, "\x93\x01\x06\xcd\x75\x30", 6); //  DELIVER, 30000 ms
        assert_int_equal (zq_msg_encode (&msg, frames), 0);
        assert_int_equal (zmsg_send (&frames, self->router), 0);
    }
}

//  Reads until settled ids are named (or the deadline). Returns the ms it
//  took.
static int64_t
raw_wait_settled (raw_server_t *self, size_t settled, int64_t deadline_ms)
{
    int64_t start = now_ms ();
    int64_t deadline = start + deadline_ms;
    while (self->settled < settled && now_ms () < deadline)
        raw_read (self, 10);
    return now_ms () - start;
}

//  A consumer of "acks" on the raw server, ack_flush_us and prefetch set
//  (NULL: the default).
static zq_queue_t *
open_consumer_with (raw_server_t *server, const char *ack_flush_us, const char *prefetch)
{
    zq_options_t *options = zq_options_new ();
    assert_non_null (options);
    if (ack_flush_us)
        assert_int_equal (zq_options_set (options, "ack_flush_us", ack_flush_us), 0);
    if (prefetch)
        assert_int_equal (zq_options_set (options, "prefetch", prefetch), 0);
    char spec[200];
    snprintf (spec, sizeof spec, ">%s", server->endpoint);
    zq_queue_t *consumer = zq_queue_new ("reliable", ZQ_CONSUMER, spec, options);
    zq_options_destroy (&options);
    assert_non_null (consumer);
    assert_int_equal (zq_queue_subscribe (consumer, "acks"), 0);
    raw_wait_consume (server);
    return consumer;
}

static zq_queue_t *
open_consumer (raw_server_t *server, const char *ack_flush_us)
{
    return open_consumer_with (server, ack_flush_us, NULL);
}

//  Receives count deliveries in order and acks each.
static void
take_and_ack (zq_queue_t *consumer, raw_server_t *server, size_t first, size_t count)
{
    for (size_t n = first; n < first + count; n++) {
        zq_msg_t *msg = zq_queue_recv (consumer, DEADLINE_MS);
        assert_non_null (msg);
        assert_int_equal (number_of (msg), (int64_t)n);
        assert_int_equal (zq_queue_ack (consumer, msg), 0);
        zq_msg_destroy (&msg);
    }
}

//  200 acks given while deliveries keep coming go as a few ACK frames,
//  all reaching the server with no call after the last. The flush timer
//  is 100 ms, so that the count does not follow the machine's speed (at
//  the default 1 ms, a run slowed past 20 ms would send more frames).
static void
test_acks_go_in_batches (void **state)
{
    (void)state;
    raw_server_t *server = raw_start ();
    zq_queue_t *consumer = open_consumer (server, "100000");
    raw_deliver (server, 200);
    take_and_ack (consumer, server, 0, 200);
    int64_t took = raw_wait_settled (server, 200, DEADLINE_MS);
    print_message ("200 acks in %zu ACK frames, the last %" PRId64 " ms after the last ack\n",
                   server->frames, took);
    assert_int_equal (server->settled, 200);
    assert_true (server->frames <= 20);
    zq_queue_destroy (&consumer);
    raw_stop (&server);
}

//  Acks held while deliveries wait unread reach the server within the
//  flush timer although the application makes no further call.
static void
test_acks_reach_the_server_when_the_application_goes_quiet (void **state)
{
    (void)state;
    raw_server_t *server = raw_start ();
    zq_queue_t *consumer = open_consumer (server, "20000");
    raw_deliver (server, 60);
    take_and_ack (consumer, server, 0, 50);
    //  10 deliveries wait unread; the application goes quiet.
    int64_t took = raw_wait_settled (server, 50, DEADLINE_MS);
    print_message ("50 acks in %zu ACK frames, the last %" PRId64 " ms after the last ack\n",
                   server->frames, took);
    assert_int_equal (server->settled, 50);
    assert_true (server->frames <= 25);
    assert_true (took < 2000);
    zq_queue_destroy (&consumer);
    raw_stop (&server);
}

//  A batch holding half the prefetch window goes at once, with no further
//  call and long before its timer (1 s): the server gets the credit back
//  while the consumer still works on the other half.
static void
test_half_a_window_of_acks_goes_at_once (void **state)
{
    (void)state;
    raw_server_t *server = raw_start ();
    zq_queue_t *consumer = open_consumer_with (server, "1000000", "8");
    raw_deliver (server, 20);
    take_and_ack (consumer, server, 0, 4);
    int64_t took = raw_wait_settled (server, 4, DEADLINE_MS);
    print_message ("prefetch 8: 4 acks in %zu ACK frames, %" PRId64 " ms after the last ack\n",
                   server->frames, took);
    assert_int_equal (server->settled, 4);
    assert_int_equal (server->frames, 1);
    assert_true (took < 500);
    take_and_ack (consumer, server, 4, 8);
    raw_wait_settled (server, 12, 500);
    assert_int_equal (server->settled, 12);
    assert_int_equal (server->frames, 3);
    zq_queue_destroy (&consumer);
    raw_stop (&server);
}

//  Acks held when the queue closes go before its LEAVE, at once (long
//  before their timer of 1 s).
static void
test_acks_flushed_on_close (void **state)
{
    (void)state;
    raw_server_t *server = raw_start ();
    zq_queue_t *consumer = open_consumer (server, "1000000");
    raw_deliver (server, 60);
    take_and_ack (consumer, server, 0, 50);
    int64_t start = now_ms ();
    zq_queue_destroy (&consumer);
    int64_t deadline = start + DEADLINE_MS;
    while (!server->left && now_ms () < deadline)
        raw_read (server, 10);
    int64_t took = now_ms () - start;
    print_message ("close: 50 acks in %zu ACK frames, then LEAVE, %" PRId64 " ms after close\n",
                   server->frames, took);
    assert_true (server->left);
    assert_int_equal (server->settled, 50);
    assert_false (server->settle_after_leave);
    assert_true (server->frames <= 25);
    assert_true (took < 500);
    raw_stop (&server);
}

//  NACKs with the same delay go together; a NACK with another delay, or
//  an ACK, starts another frame, and order is kept.
static void
test_nacks_with_the_same_delay_go_together (void **state)
{
    (void)state;
    raw_server_t *server = raw_start ();
    zq_queue_t *consumer = open_consumer (server, "20000");
    raw_deliver (server, 40);
    for (int64_t n = 0; n < 30; n++) {
        zq_msg_t *msg = zq_queue_recv (consumer, DEADLINE_MS);
        assert_non_null (msg);
        assert_int_equal (number_of (msg), n);
        int rc = n < 10   ? zq_queue_nack (consumer, msg, 500)
                 : n < 20 ? zq_queue_nack (consumer, msg, ZQ_NACK_BACKOFF)
                          : zq_queue_ack (consumer, msg);
        assert_int_equal (rc, 0);
        zq_msg_destroy (&msg);
    }
    raw_wait_settled (server, 30, DEADLINE_MS);
    print_message ("10 nacks (500 ms), 10 nacks (backoff), 10 acks: %zu frames\n", server->frames);
    assert_int_equal (server->settled, 30);
    assert_int_equal (server->frames, 3);
    assert_int_equal (server->last_kind, 7);
    zq_queue_destroy (&consumer);
    raw_stop (&server);
}

//  ack_flush_us 0: each ack is its own frame, sent by zq_queue_ack.
static void
test_ack_flush_zero_sends_each_at_once (void **state)
{
    (void)state;
    raw_server_t *server = raw_start ();
    zq_queue_t *consumer = open_consumer (server, "0");
    raw_deliver (server, 20);
    take_and_ack (consumer, server, 0, 20);
    raw_wait_settled (server, 20, DEADLINE_MS);
    assert_int_equal (server->settled, 20);
    assert_int_equal (server->frames, 20);
    zq_queue_destroy (&consumer);
    raw_stop (&server);
}

//  An application that polls the queue's socket itself gets each ack sent
//  by zq_queue_ack (no thread of the queue's own touches the socket).
static void
test_polled_consumer_sends_each_ack_at_once (void **state)
{
    (void)state;
    raw_server_t *server = raw_start ();
    zq_queue_t *consumer = open_consumer (server, "1000000");
    assert_non_null (zq_queue_sock (consumer));
    raw_deliver (server, 20);
    take_and_ack (consumer, server, 0, 20);
    raw_wait_settled (server, 20, DEADLINE_MS);
    assert_int_equal (server->settled, 20);
    assert_int_equal (server->frames, 20);
    zq_queue_destroy (&consumer);
    raw_stop (&server);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_acks_go_in_batches),
        cmocka_unit_test (test_acks_reach_the_server_when_the_application_goes_quiet),
        cmocka_unit_test (test_half_a_window_of_acks_goes_at_once),
        cmocka_unit_test (test_acks_flushed_on_close),
        cmocka_unit_test (test_nacks_with_the_same_delay_go_together),
        cmocka_unit_test (test_ack_flush_zero_sends_each_at_once),
        cmocka_unit_test (test_polled_consumer_sends_each_ack_at_once),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
