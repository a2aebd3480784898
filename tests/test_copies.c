/*  =========================================================================
    test_copies - envelope parses and body copies per message on the
    durable path put -> deliver -> ack, counted by a library built with
    ./configure --enable-copy-counters (ZQI_COUNT in src/zq_internal.h).

    The server parses an envelope once, when the PUT arrives; the record
    goes from the received frame into the spool's batch with one copy, and
    each DELIVER is built with one copy whatever its attempt; a record
    just written is delivered without reading it back from its segment; a
    producer copies a message once, into the frame it sends, and a
    producer whose socket has no room does not copy what waits again and
    again into batch frames that cannot go.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable_helpers.h"
#include <inttypes.h>

static const char *s_names[ZQI_COUNT_KINDS] = {
    "producer_copies", "server_parses", "server_copies",
    "spool_copies",    "spool_reads",   "msg_decodes",
};

static void
take_counts (uint64_t *counts, const char *what, uint64_t messages)
{
    zqi_counts_take (counts);
    printf ("%s (%" PRIu64 " messages):", what, messages);
    for (int kind = 0; kind < ZQI_COUNT_KINDS; kind++)
        printf (" %s=%" PRIu64, s_names[kind], counts[kind]);
    printf ("\n");
    fflush (stdout);
}

//  A server with a spool on disk (fsync always), a producer and a
//  consumer of "orders", over tcp.
typedef struct {
    char dir[64];
    test_server_t *server;
    zq_queue_t *producer;
    zq_queue_t *consumer;
} fixture_t;

static void
fixture_start (fixture_t *self)
{
    snprintf (self->dir, sizeof self->dir, "/tmp/zq-copies-XXXXXX");
    assert_non_null (mkdtemp (self->dir));
    zq_options_t *options = options_of ("spool_dir", self->dir, NULL);
    char spec[300];
    bind_spec ("tcp", spec, sizeof spec);
    self->server = server_start (spec, options);
    assert_non_null (self->server);
    zq_options_destroy (&options);
    snprintf (spec, sizeof spec, ">%s", self->server->endpoint);
    self->producer = zq_queue_new ("reliable", ZQ_PRODUCER, spec, NULL);
    assert_non_null (self->producer);
    self->consumer = zq_queue_new ("reliable", ZQ_CONSUMER, spec, NULL);
    assert_non_null (self->consumer);
    assert_int_equal (zq_queue_subscribe (self->consumer, "orders"), 0);
}

static void
fixture_stop (fixture_t *self)
{
    zq_queue_destroy (&self->consumer);
    zq_queue_destroy (&self->producer);
    server_stop (&self->server);
    remove_tree (self->dir);
}

//  Each message is put (its confirm awaited), received and acked before
//  the next: per message, one parse in the server and one decode in the
//  consumer, two copies in the producer (a small message goes into a
//  block of its outbox, and the PUT that sends it alone copies it into
//  libzmq's frame), one copy into the spool's batch and one into the
//  DELIVER frame, and no read of the segment.
static void
test_put_deliver_ack (void **state)
{
    (void)state;
    fixture_t fixture;
    fixture_start (&fixture);
    uint64_t counts[ZQI_COUNT_KINDS];
    zqi_counts_take (counts);
    const int64_t messages = 200;
    for (int64_t n = 0; n < messages; n++) {
        send_numbered (fixture.producer, "orders", n);
        zq_msg_t *msg = zq_queue_recv (fixture.consumer, DEADLINE_MS);
        assert_non_null (msg);
        assert_int_equal (number_of (msg), n);
        assert_int_equal (zq_msg_attempt (msg), 0);
        assert_int_equal (zq_queue_ack (fixture.consumer, msg), 0);
        zq_msg_destroy (&msg);
    }
    zq_queue_info_t info;
    WAIT_INFO (fixture.server, "orders", info, info.acked == (uint64_t)messages);
    take_counts (counts, "put, deliver, ack", (uint64_t)messages);
    //  A PUT the producer sent again (its confirm late on a busy machine)
    //  is parsed again, as any PUT received, and copied again into its
    //  frame, but not stored again.
    zq_queue_stats_t stats;
    zq_queue_stats (fixture.producer, &stats);
    printf ("producer retries: %" PRIu64 "\n", stats.retries);
    assert_in_range (counts[ZQI_COUNT_SERVER_PARSES], messages, messages + stats.retries);
    assert_int_equal (counts[ZQI_COUNT_MSG_DECODES], messages);
    assert_in_range (counts[ZQI_COUNT_PRODUCER_COPIES], 2 * messages, 2 * messages + stats.retries);
    assert_int_equal (counts[ZQI_COUNT_SPOOL_COPIES], messages);
    assert_int_equal (counts[ZQI_COUNT_SERVER_COPIES], messages);
    assert_int_equal (counts[ZQI_COUNT_SPOOL_READS], 0);
    fixture_stop (&fixture);
}

//  A PUT in the two-frame form with attempt 3 (a resend from another
//  client) is stored with one copy; its first delivery (attempt 0) and
//  its redelivery after a nack (attempt 1, the attempt rewritten) each
//  take one copy, and neither parses the envelope again.
static void
test_resend_and_redelivery (void **state)
{
    (void)state;
    fixture_t fixture;
    fixture_start (&fixture);
    uint64_t counts[ZQI_COUNT_KINDS];
    zqi_counts_take (counts);

    zsock_t *client = zsock_new_dealer (fixture.server->endpoint);
    assert_non_null (client);
    zq_msg_t *msg = zq_msg_new ("orders");
    assert_non_null (msg);
    //  A bin of 9000 octets: over ZQ_MSG_ZEROCOPY_MIN, so two frames.
    static uint8_t body[9003];
    body[0] = 0xc5;
    body[1] = 9000 >> 8;
    body[2] = 9000 & 0xff;
    for (size_t i = 3; i < sizeof body; i++)
        body[i] = (uint8_t)i;
    assert_int_equal (zq_msg_set_body (msg, body, sizeof body), 0);
    zq_msg_set_attempt (msg, 3);
    uint8_t id[ZQ_MSG_ID_SIZE];
    memcpy (id, zq_msg_id (msg), ZQ_MSG_ID_SIZE);
    const uint8_t put[] = {0x92, 0x01, 0x01};
    assert_int_equal (zmq_send (zsock_resolve (client), put, sizeof put, ZMQ_SNDMORE), 3);
    assert_int_equal (zq_msg_send (&msg, client, 0), 0);
    //  The answer: [1, 2, ids], a CONFIRM.
    zsock_set_rcvtimeo (client, DEADLINE_MS);
    zframe_t *answer = zframe_recv (client);
    assert_non_null (answer);
    assert_true (zframe_size (answer) >= 3);
    assert_int_equal (zframe_data (answer)[2], 0x02);
    zframe_destroy (&answer);

    for (uint32_t attempt = 0; attempt < 2; attempt++) {
        zq_msg_t *got = zq_queue_recv (fixture.consumer, DEADLINE_MS);
        assert_non_null (got);
        assert_memory_equal (zq_msg_id (got), id, ZQ_MSG_ID_SIZE);
        assert_int_equal (zq_msg_attempt (got), attempt);
        size_t size;
        const void *data = zq_msg_body (got, &size);
        assert_int_equal (size, sizeof body);
        assert_memory_equal (data, body, sizeof body);
        if (attempt == 0)
            assert_int_equal (zq_queue_nack (fixture.consumer, got, 0), 0);
        else
            assert_int_equal (zq_queue_ack (fixture.consumer, got), 0);
        zq_msg_destroy (&got);
    }
    zq_queue_info_t info;
    WAIT_INFO (fixture.server, "orders", info, info.acked == 1);
    take_counts (counts, "two-frame PUT with attempt 3, nack, redelivery, ack", 1);
    assert_int_equal (counts[ZQI_COUNT_SERVER_PARSES], 1);
    assert_int_equal (counts[ZQI_COUNT_SPOOL_COPIES], 1);
    assert_int_equal (counts[ZQI_COUNT_SERVER_COPIES], 2);
    assert_int_equal (counts[ZQI_COUNT_SPOOL_READS], 0);
    zsock_destroy (&client);
    fixture_stop (&fixture);
}

//  A producer whose socket has no room (its server, a plain ROUTER, reads
//  nothing) copies each message it takes once, into its outbox, and once
//  more at most into a batch frame that found no room: it builds no
//  further batch until libzmq has room again, however many posts come.
static void
test_no_room_no_batch_copies (void **state)
{
    (void)state;
    char spec[128];
    bind_spec ("inproc", spec, sizeof spec);
    zsock_t *silent = zsock_new (ZMQ_ROUTER);
    assert_non_null (silent);
    zsock_set_rcvhwm (silent, 1);
    assert_int_equal (zsock_bind (silent, "%s", spec + 1), 0);
    spec[0] = '>';
    zq_options_t *options = options_of ("max_in_flight", "2000", "sndhwm", "1", NULL);
    zq_queue_t *producer = zq_queue_new ("reliable", ZQ_PRODUCER, spec, options);
    zq_options_destroy (&options);
    assert_non_null (producer);
    uint64_t counts[ZQI_COUNT_KINDS];
    zqi_counts_take (counts);
    //  The socket is full after two messages (its sndhwm and the
    //  ROUTER's rcvhwm); each post after makes the producer try to send
    //  what waits.
    const uint64_t messages = 1500;
    for (uint64_t n = 0; n < messages; n++) {
        zq_msg_t *msg = numbered ("orders", (int64_t)n);
        assert_int_equal (zq_queue_post (producer, &msg, 0), 0);
    }
    take_counts (counts, "posts into a socket with no room", messages);
    assert_in_range (counts[ZQI_COUNT_PRODUCER_COPIES], messages, 2 * messages);
    zq_queue_destroy (&producer);
    zsock_destroy (&silent);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_put_deliver_ack),
        cmocka_unit_test (test_resend_and_redelivery),
        cmocka_unit_test (test_no_room_no_batch_copies),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
