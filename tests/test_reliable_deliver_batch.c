/*  =========================================================================
    test_reliable_deliver_batch - a reliable consumer against a raw server
    (a ROUTER this test drives) that sends DELIVER batches
    (doc/PROTOCOL.md 19.7): the consumer asks for them in CONSUME, splits
    them into deliveries that keep their id, attempt and body, rejects a
    bad batch whole and a bad element alone (each counted in the queue's
    errors), takes a batch at exactly the limits, and names the elements
    it never returned in its LEAVE. (A frame over max_message_bytes never
    reaches zq: libzmq's ZMQ_MAXMSGSIZE closes the connection first.)

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "batch_frame_helpers.h"
#include "queue_helpers.h"

#define S_WAIT_MS     10000
#define S_MAX_MESSAGE 4096 //  the consumer's max_message_bytes

typedef struct {
    zsock_t *router;
    zq_queue_t *consumer;
    zframe_t *route; //  the consumer's routing id
} fixture_t;

//  Receives one message from the client within S_WAIT_MS, skipping PINGs.
static zmsg_t *
s_server_recv (fixture_t *self)
{
    return raw_server_recv (self->router, S_WAIT_MS);
}

//  Unpacks the command frame (2nd of msg) into *unpacked (to destroy).
static msgpack_object
s_command (zmsg_t *msg, msgpack_unpacked *unpacked)
{
    zframe_t *frame = zmsg_first (msg);
    frame = zmsg_next (msg);
    assert_non_null (frame);
    msgpack_unpacked_init (unpacked);
    assert_int_equal (msgpack_unpack_next (unpacked, (const char *)zframe_data (frame),
                                           zframe_size (frame), NULL),
                      MSGPACK_UNPACK_SUCCESS);
    assert_int_equal (unpacked->data.type, MSGPACK_OBJECT_ARRAY);
    return unpacked->data;
}

//  Opens a raw server and a consumer of "q" with options batch_max_bytes
//  (-1: the default); reads the consumer's CONSUME and returns its
//  element count; *batch_p gets element 5 (0 if absent).
static int
s_open (fixture_t *self, int64_t batch_max_bytes, uint64_t *batch_p)
{
    memset (self, 0, sizeof *self);
    self->router = zsock_new (ZMQ_ROUTER);
    assert_non_null (self->router);
    int port = zsock_bind (self->router, "tcp://127.0.0.1:*");
    assert_true (port > 0);
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, ">tcp://127.0.0.1:%d", port);
    zq_options_t *options = zq_options_new ();
    assert_int_equal (zq_options_set_int (options, "max_message_bytes", S_MAX_MESSAGE), 0);
    if (batch_max_bytes >= 0)
        assert_int_equal (zq_options_set_int (options, "batch_max_bytes", batch_max_bytes), 0);
    self->consumer = zq_queue_new ("reliable", ZQ_CONSUMER, endpoint, options);
    zq_options_destroy (&options);
    assert_non_null (self->consumer);
    assert_int_equal (zq_queue_subscribe (self->consumer, "q"), 0);
    zmsg_t *msg = s_server_recv (self);
    assert_non_null (msg);
    msgpack_unpacked unpacked;
    msgpack_object command = s_command (msg, &unpacked);
    assert_true (command.via.array.size >= 4);
    assert_int_equal (command.via.array.ptr[1].via.u64, 4); //  CONSUME
    int elements = (int)command.via.array.size;
    *batch_p = elements >= 5 ? command.via.array.ptr[4].via.u64 : 0;
    msgpack_unpacked_destroy (&unpacked);
    self->route = zframe_dup (zmsg_first (msg));
    zmsg_destroy (&msg);
    return elements;
}

static void
s_close (fixture_t *self)
{
    zq_queue_destroy (&self->consumer);
    zframe_destroy (&self->route);
    zsock_destroy (&self->router);
}

//  One envelope in the one-frame form: subject "q", body {"n": n},
//  attempt; its id into id (16 octets).
static zchunk_t *
s_envelope (int64_t n, uint32_t attempt, uint8_t *id)
{
    zq_msg_t *msg = zq_msg_new ("q");
    assert_non_null (msg);
    assert_int_equal (zq_msg_pack (msg, "{si}", "n", n), 0);
    zq_msg_set_attempt (msg, attempt);
    memcpy (id, zq_msg_id (msg), ZQ_MSG_ID_SIZE);
    zmsg_t *frames = zmsg_new ();
    assert_int_equal (zq_msg_encode (&msg, frames), 0);
    assert_int_equal (zmsg_size (frames), 1);
    zframe_t *frame = zmsg_first (frames);
    zchunk_t *chunk = zchunk_new (zframe_data (frame), zframe_size (frame));
    zmsg_destroy (&frames);
    return chunk;
}

static void
s_batch_envelope (batch_frame_t *self, zchunk_t **chunk_p)
{
    batch_frame_bin (self, zchunk_data (*chunk_p), zchunk_size (*chunk_p));
    zchunk_destroy (chunk_p);
}

//  Sends DELIVER (visibility 30000) and then the frames given (data,
//  size pairs, count of them) to the consumer.
static void
s_deliver_frames (fixture_t *self, const void *data, size_t size, const void *extra,
                  size_t extra_size)
{
    static const uint8_t deliver[] = {0x93, 0x01, 0x06, 0xcd, 0x75, 0x30};
    zmsg_t *msg = zmsg_new ();
    zmsg_append (msg, &(zframe_t *){zframe_dup (self->route)});
    zmsg_addmem (msg, deliver, sizeof deliver);
    zmsg_addmem (msg, data, size);
    if (extra)
        zmsg_addmem (msg, extra, extra_size);
    assert_int_equal (zmsg_send (&msg, self->router), 0);
}

static void
s_batch_send (fixture_t *self, batch_frame_t *batch)
{
    s_deliver_frames (self, batch->buffer.data, batch->buffer.size, NULL, 0);
    batch_frame_free (batch);
}

//  Sends one plain DELIVER of {"n": n}; its id into id.
static void
s_deliver_one (fixture_t *self, int64_t n, uint8_t *id)
{
    zchunk_t *chunk = s_envelope (n, 0, id);
    s_deliver_frames (self, zchunk_data (chunk), zchunk_size (chunk), NULL, 0);
    zchunk_destroy (&chunk);
}

//  Receives the next delivery and checks its id and {"n": n}.
static void
s_expect (fixture_t *self, const uint8_t *id, int64_t n, uint32_t attempt)
{
    zq_msg_t *msg = zq_queue_recv (self->consumer, S_WAIT_MS);
    assert_non_null (msg);
    assert_memory_equal (zq_msg_id (msg), id, ZQ_MSG_ID_SIZE);
    assert_int_equal (zq_msg_attempt (msg), attempt);
    assert_string_equal (zq_msg_subject (msg), "q");
    int64_t got = -1;
    assert_int_equal (zq_msg_get_int (msg, "n", &got), 0);
    assert_int_equal (got, n);
    zq_msg_destroy (&msg);
}

static uint64_t
s_errors (fixture_t *self)
{
    zq_queue_stats_t stats;
    zq_queue_stats (self->consumer, &stats);
    return stats.errors;
}

//  ---- Tests ------------------------------------------------------------------

//  CONSUME carries element 5, the largest batch the consumer takes
//  (batch_max_bytes, at most max_message_bytes); with batch_max_bytes=0,
//  the four elements of a consumer that takes no batches.
static void
test_consume_asks_for_batches (void **state)
{
    (void)state;
    fixture_t fixture;
    uint64_t batch = 0;
    assert_int_equal (s_open (&fixture, -1, &batch), 5);
    assert_int_equal (batch, S_MAX_MESSAGE); //  65536 by default, cut to max_message_bytes
    s_close (&fixture);
    assert_int_equal (s_open (&fixture, 1000, &batch), 5);
    assert_int_equal (batch, 1000);
    s_close (&fixture);
    assert_int_equal (s_open (&fixture, 0, &batch), 4);
    s_close (&fixture);
}

//  A batch of three: three deliveries in order, each with its own id,
//  attempt and body; acked by id as if each had come alone.
static void
test_batch_split (void **state)
{
    (void)state;
    fixture_t fixture;
    uint64_t batch_bytes;
    s_open (&fixture, -1, &batch_bytes);
    uint8_t ids[3][ZQ_MSG_ID_SIZE];
    uint32_t attempts[3] = {0, 2, 0};
    batch_frame_t batch;
    batch_frame_start (&batch, 3);
    for (int n = 0; n < 3; n++) {
        zchunk_t *chunk = s_envelope (n, attempts[n], ids[n]);
        s_batch_envelope (&batch, &chunk);
    }
    s_batch_send (&fixture, &batch);
    for (int n = 0; n < 3; n++) {
        zq_msg_t *msg = zq_queue_recv (fixture.consumer, S_WAIT_MS);
        assert_non_null (msg);
        assert_memory_equal (zq_msg_id (msg), ids[n], ZQ_MSG_ID_SIZE);
        assert_int_equal (zq_msg_attempt (msg), attempts[n]);
        int64_t got = -1;
        assert_int_equal (zq_msg_get_int (msg, "n", &got), 0);
        assert_int_equal (got, n);
        assert_int_equal (zq_queue_ack (fixture.consumer, msg), 0);
        zq_msg_destroy (&msg);
        zmsg_t *ack = s_server_recv (&fixture);
        assert_non_null (ack);
        msgpack_unpacked unpacked;
        msgpack_object command = s_command (ack, &unpacked);
        assert_int_equal (command.via.array.ptr[1].via.u64, 7); //  ACK
        assert_int_equal (command.via.array.ptr[2].via.bin.size, ZQ_MSG_ID_SIZE);
        assert_memory_equal (command.via.array.ptr[2].via.bin.ptr, ids[n], ZQ_MSG_ID_SIZE);
        msgpack_unpacked_destroy (&unpacked);
        zmsg_destroy (&ack);
    }
    assert_int_equal (s_errors (&fixture), 0);
    s_close (&fixture);
}

//  A truncated batch, one followed by another frame and one over the
//  count limit are each rejected whole and counted once; the consumer goes on with what comes next.
static void
test_bad_batches_rejected_whole (void **state)
{
    (void)state;
    fixture_t fixture;
    uint64_t batch_bytes;
    s_open (&fixture, -1, &batch_bytes);
    uint8_t id[ZQ_MSG_ID_SIZE];
    batch_frame_t batch;
    //  Truncated: the last element runs past the frame.
    batch_frame_start (&batch, 2);
    zchunk_t *chunk = s_envelope (1, 0, id);
    s_batch_envelope (&batch, &chunk);
    chunk = s_envelope (2, 0, id);
    s_batch_envelope (&batch, &chunk);
    s_deliver_frames (&fixture, batch.buffer.data, batch.buffer.size - 5, NULL, 0);
    //  A whole batch, then a frame after it.
    s_deliver_frames (&fixture, batch.buffer.data, batch.buffer.size, "\x90", 1);
    batch_frame_free (&batch);
    //  1025 elements.
    batch_frame_start (&batch, 1025);
    for (int n = 0; n < 1025; n++)
        batch_frame_bin (&batch, "\x90", 1);
    s_batch_send (&fixture, &batch);
    //  Then a good batch and a plain delivery: the first things returned.
    uint8_t good[2][ZQ_MSG_ID_SIZE];
    batch_frame_start (&batch, 2);
    for (int n = 0; n < 2; n++) {
        chunk = s_envelope (20 + n, 0, good[n]);
        s_batch_envelope (&batch, &chunk);
    }
    s_batch_send (&fixture, &batch);
    s_deliver_one (&fixture, 42, id);
    s_expect (&fixture, good[0], 20, 0);
    s_expect (&fixture, good[1], 21, 0);
    s_expect (&fixture, id, 42, 0);
    assert_int_equal (s_errors (&fixture), 3);
    s_close (&fixture);
}

//  A batch of exactly 1024 elements and one of exactly max_message_bytes
//  octets are taken whole.
static void
test_batch_at_the_limits (void **state)
{
    (void)state;
    //  1024 deliveries of ~40 octets: a frame over S_MAX_MESSAGE, so this
    //  consumer keeps the default max_message_bytes.
    fixture_t fixture;
    uint64_t batch_bytes;
    memset (&fixture, 0, sizeof fixture);
    fixture.router = zsock_new (ZMQ_ROUTER);
    int port = zsock_bind (fixture.router, "tcp://127.0.0.1:*");
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, ">tcp://127.0.0.1:%d", port);
    fixture.consumer = zq_queue_new ("reliable", ZQ_CONSUMER, endpoint, NULL);
    assert_non_null (fixture.consumer);
    assert_int_equal (zq_queue_subscribe (fixture.consumer, "q"), 0);
    zmsg_t *consume = s_server_recv (&fixture);
    assert_non_null (consume);
    fixture.route = zframe_dup (zmsg_first (consume));
    zmsg_destroy (&consume);

    uint8_t (*ids)[ZQ_MSG_ID_SIZE] = calloc (1024, ZQ_MSG_ID_SIZE);
    assert_non_null (ids);
    batch_frame_t batch;
    batch_frame_start (&batch, 1024);
    for (int n = 0; n < 1024; n++) {
        zchunk_t *chunk = s_envelope (n, 0, ids[n]);
        s_batch_envelope (&batch, &chunk);
    }
    s_batch_send (&fixture, &batch);
    for (int n = 0; n < 1024; n++)
        s_expect (&fixture, ids[n], n, 0);
    assert_int_equal (s_errors (&fixture), 0);
    free (ids);
    s_close (&fixture);

    //  Exactly max_message_bytes: two envelopes, the second's body padded.
    s_open (&fixture, -1, &batch_bytes);
    uint8_t first[ZQ_MSG_ID_SIZE], second[ZQ_MSG_ID_SIZE];
    batch_frame_start (&batch, 2);
    zchunk_t *chunk = s_envelope (1, 0, first);
    s_batch_envelope (&batch, &chunk);
    zq_msg_t *msg = zq_msg_new ("q");
    memcpy (second, zq_msg_id (msg), ZQ_MSG_ID_SIZE);
    //  A body of one msgpack str, sized so the frame is S_MAX_MESSAGE.
    size_t before = batch.buffer.size;
    zmsg_t *frames = zmsg_new ();
    zq_msg_t *probe = zq_msg_dup (msg);
    assert_int_equal (zq_msg_set_body (probe, "\xc0", 1), 0); //  nil
    assert_int_equal (zq_msg_encode (&probe, frames), 0);
    size_t header = zframe_size (zmsg_first (frames)) - 1;
    zmsg_destroy (&frames);
    //  frame = before + bin32 marker (5) + header + str32 marker (5) + text
    size_t text = S_MAX_MESSAGE - before - 5 - header - 5;
    uint8_t *body = (uint8_t *)malloc (5 + text);
    body[0] = 0xdb;
    body[1] = (uint8_t)(text >> 24);
    body[2] = (uint8_t)(text >> 16);
    body[3] = (uint8_t)(text >> 8);
    body[4] = (uint8_t)text;
    memset (body + 5, 'x', text);
    assert_int_equal (zq_msg_set_body (msg, body, 5 + text), 0);
    free (body);
    frames = zmsg_new ();
    assert_int_equal (zq_msg_encode (&msg, frames), 0);
    assert_int_equal (zmsg_size (frames), 1);
    zframe_t *frame = zmsg_first (frames);
    //  msgpack-c picks the smallest bin marker; force bin32 so the sum holds.
    uint32_t size = (uint32_t)zframe_size (frame);
    uint8_t marker[5] = {0xc6, (uint8_t)(size >> 24), (uint8_t)(size >> 16), (uint8_t)(size >> 8),
                         (uint8_t)size};
    msgpack_sbuffer_write (&batch.buffer, (const char *)marker, sizeof marker);
    msgpack_sbuffer_write (&batch.buffer, (const char *)zframe_data (frame), size);
    zmsg_destroy (&frames);
    assert_int_equal (batch.buffer.size, S_MAX_MESSAGE);
    s_batch_send (&fixture, &batch);
    s_expect (&fixture, first, 1, 0);
    msg = zq_queue_recv (fixture.consumer, S_WAIT_MS);
    assert_non_null (msg);
    assert_memory_equal (zq_msg_id (msg), second, ZQ_MSG_ID_SIZE);
    zq_msg_destroy (&msg);
    assert_int_equal (s_errors (&fixture), 0);
    s_close (&fixture);
}

//  Good and bad elements mixed: the good ones come in order, each bad one
//  is counted once and skipped.
static void
test_mixed_elements (void **state)
{
    (void)state;
    fixture_t fixture;
    uint64_t batch_bytes;
    s_open (&fixture, -1, &batch_bytes);
    uint8_t ids[3][ZQ_MSG_ID_SIZE];
    uint8_t ignored[ZQ_MSG_ID_SIZE];
    batch_frame_t batch;
    batch_frame_start (&batch, 6);
    zchunk_t *chunk = s_envelope (0, 0, ids[0]);
    s_batch_envelope (&batch, &chunk);
    batch_frame_bin (&batch, "", 0); //  empty
    chunk = s_envelope (1, 1, ids[1]);
    s_batch_envelope (&batch, &chunk);
    batch_frame_bin (&batch, "\x92\x02\xc4\x00", 4); //  version 2
    chunk = s_envelope (9, 0, ignored);              //  trailing octets
    zchunk_extend (chunk, "\xc0", 1);
    s_batch_envelope (&batch, &chunk);
    chunk = s_envelope (2, 0, ids[2]);
    s_batch_envelope (&batch, &chunk);
    s_batch_send (&fixture, &batch);
    s_expect (&fixture, ids[0], 0, 0);
    s_expect (&fixture, ids[1], 1, 1);
    s_expect (&fixture, ids[2], 2, 0);
    assert_int_equal (s_errors (&fixture), 3);
    s_close (&fixture);
}

//  Closing names in LEAVE the elements of a batch the application never
//  took, so the server gives them back with their attempt unchanged.
static void
test_leave_names_unread_elements (void **state)
{
    (void)state;
    fixture_t fixture;
    uint64_t batch_bytes;
    s_open (&fixture, -1, &batch_bytes);
    uint8_t ids[4][ZQ_MSG_ID_SIZE];
    batch_frame_t batch;
    batch_frame_start (&batch, 4);
    for (int n = 0; n < 4; n++) {
        zchunk_t *chunk = s_envelope (n, 0, ids[n]);
        s_batch_envelope (&batch, &chunk);
    }
    s_batch_send (&fixture, &batch);
    s_expect (&fixture, ids[0], 0, 0);
    //  A second batch, sent before the close, waits unread on the socket
    //  (or is still on its way).
    uint8_t more[2][ZQ_MSG_ID_SIZE];
    batch_frame_start (&batch, 2);
    for (int n = 0; n < 2; n++) {
        zchunk_t *chunk = s_envelope (10 + n, 0, more[n]);
        s_batch_envelope (&batch, &chunk);
    }
    s_batch_send (&fixture, &batch);
    zq_queue_destroy (&fixture.consumer);
    zmsg_t *leave = s_server_recv (&fixture);
    assert_non_null (leave);
    msgpack_unpacked unpacked;
    msgpack_object command = s_command (leave, &unpacked);
    assert_int_equal (command.via.array.ptr[1].via.u64, 13); //  LEAVE
    assert_int_equal (command.via.array.size, 3);
    const uint8_t *unseen = (const uint8_t *)command.via.array.ptr[2].via.bin.ptr;
    uint32_t size = command.via.array.ptr[2].via.bin.size;
    //  The three left of the first batch; the second batch too if it had
    //  arrived before the close (it is sent before, on the same pipe, but
    //  may still be on its way).
    assert_true (size == 3 * ZQ_MSG_ID_SIZE || size == 5 * ZQ_MSG_ID_SIZE);
    for (int n = 1; n < 4; n++)
        assert_memory_equal (unseen + (n - 1) * ZQ_MSG_ID_SIZE, ids[n], ZQ_MSG_ID_SIZE);
    if (size == 5 * ZQ_MSG_ID_SIZE) {
        assert_memory_equal (unseen + 3 * ZQ_MSG_ID_SIZE, more[0], ZQ_MSG_ID_SIZE);
        assert_memory_equal (unseen + 4 * ZQ_MSG_ID_SIZE, more[1], ZQ_MSG_ID_SIZE);
    }
    msgpack_unpacked_destroy (&unpacked);
    zmsg_destroy (&leave);
    s_close (&fixture);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_consume_asks_for_batches),
        cmocka_unit_test (test_batch_split),
        cmocka_unit_test (test_bad_batches_rejected_whole),
        cmocka_unit_test (test_batch_at_the_limits),
        cmocka_unit_test (test_mixed_elements),
        cmocka_unit_test (test_leave_names_unread_elements),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
