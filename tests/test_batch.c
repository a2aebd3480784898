/*  =========================================================================
    test_batch - batch frames (doc/PROTOCOL.md section 19) through the
    public API: a raw PUSH socket hands a pipeline consumer batch frames
    built here octet by octet, at and past every limit, with good and bad
    elements mixed; a pipeline producer's batches are read by a raw PULL
    socket and handed on to a consumer, which must see every message once,
    in order.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "queue_helpers.h"
#include <pthread.h>

#define BATCH_MAX_COUNT 1024
#define BATCH_TAG       0x5A42
//  The number of the plain message sent after each batch under test.
#define MARKER 999999

//  A growable octet string.
typedef struct {
    uint8_t *data;
    size_t size;
    size_t capacity;
} bytes_t;

static void
put (bytes_t *self, const void *data, size_t size)
{
    if (self->size + size > self->capacity) {
        self->capacity = (self->size + size) * 2 + 64;
        self->data = (uint8_t *)realloc (self->data, self->capacity);
        assert_non_null (self->data);
    }
    memcpy (self->data + self->size, data, size);
    self->size += size;
}

static void
put_byte (bytes_t *self, uint8_t byte)
{
    put (self, &byte, 1);
}

static void
put_be (bytes_t *self, uint64_t value, int octets)
{
    for (int index = octets - 1; index >= 0; index--)
        put_byte (self, (uint8_t)(value >> (8 * index)));
}

//  The start of a batch of count elements: array marker, tag (uint16).
static void
put_batch_start (bytes_t *self, uint32_t count)
{
    uint32_t elements = count + 1;
    if (elements <= 15)
        put_byte (self, (uint8_t)(0x90 | elements));
    else {
        put_byte (self, 0xdc);
        put_be (self, elements, 2);
    }
    put_byte (self, 0xcd);
    put_be (self, BATCH_TAG, 2);
}

//  One element: a bin of size octets holding data.
static void
put_element (bytes_t *self, const void *data, size_t size)
{
    if (size < 256) {
        put_byte (self, 0xc4);
        put_be (self, size, 1);
    } else if (size < 65536) {
        put_byte (self, 0xc5);
        put_be (self, size, 2);
    } else {
        put_byte (self, 0xc6);
        put_be (self, size, 4);
    }
    put (self, data, size);
}

//  The one-frame envelope of a message numbered n with a body of pad_size
//  more octets (a bin), as zq encodes it.
static bytes_t
envelope (int n, size_t pad_size)
{
    zq_msg_t *msg = zq_msg_new ("batch");
    assert_non_null (msg);
    char *pad = (char *)calloc (1, pad_size + 1);
    assert_int_equal (zq_msg_pack (msg, "{sisB}", "n", (int64_t)n, "pad", pad, pad_size), 0);
    free (pad);
    zmsg_t *frames = zmsg_new ();
    assert_int_equal (zq_msg_encode (&msg, frames), 0);
    assert_int_equal (zmsg_size (frames), 1);
    zframe_t *frame = zmsg_first (frames);
    bytes_t out = {0};
    put (&out, zframe_data (frame), zframe_size (frame));
    zmsg_destroy (&frames);
    return out;
}

static void
put_message (bytes_t *self, int n, size_t pad_size)
{
    bytes_t one = envelope (n, pad_size);
    put_element (self, one.data, one.size);
    free (one.data);
}

//  A consumer bound over inproc (where libzmq applies no size limit of its
//  own, so zq's checks are what is tested) and a raw PUSH socket to it.
typedef struct {
    zq_queue_t *consumer;
    zsock_t *push;
} pair_t;

static pair_t
pair_new (const char *max_message_bytes)
{
    pair_t self;
    zq_options_t *options = zq_options_new ();
    if (max_message_bytes)
        assert_int_equal (zq_options_set (options, "max_message_bytes", max_message_bytes), 0);
    self.consumer = new_bound ("pipeline", ZQ_CONSUMER, "inproc", options);
    zq_options_destroy (&options);
    self.push = zsock_new (ZMQ_PUSH);
    assert_non_null (self.push);
    assert_int_equal (zsock_connect (self.push, "%s", zq_queue_endpoint (self.consumer)), 0);
    return self;
}

static void
pair_destroy (pair_t *self)
{
    zsock_destroy (&self->push);
    zq_queue_destroy (&self->consumer);
}

static void
push_bytes (pair_t *self, const bytes_t *frame)
{
    zframe_t *out = zframe_new (frame->data, frame->size);
    assert_int_equal (zframe_send (&out, self->push, 0), 0);
}

//  Sends the plain message numbered n: what the consumer reads after a
//  rejected batch shows the socket is still usable.
static void
push_plain (pair_t *self, int n)
{
    bytes_t one = envelope (n, 0);
    push_bytes (self, &one);
    free (one.data);
}

//  Receives messages numbered first, first+1, ..., up to (not including)
//  the message numbered marker, which it also takes; returns how many came
//  before it.
static int
recv_until (pair_t *self, int first, int marker)
{
    int count = 0;
    while (true) {
        zq_msg_t *msg = zq_queue_recv (self->consumer, DEADLINE_MS);
        assert_non_null (msg);
        int64_t n = number_of (msg);
        zq_msg_destroy (&msg);
        if (n == marker)
            return count;
        assert_int_equal (n, first + count);
        count++;
    }
}

static uint64_t
errors_of (pair_t *self)
{
    zq_queue_stats_t stats;
    zq_queue_stats (self->consumer, &stats);
    return stats.errors;
}

//  Pushes frame, then the marker: count messages numbered from first must
//  come before the marker, and the consumer's error count must then be
//  errors.
static void
expect_after_push (pair_t *self, const bytes_t *frame, int first, int count, uint64_t errors)
{
    push_bytes (self, frame);
    push_plain (self, MARKER);
    assert_int_equal (recv_until (self, first, MARKER), count);
    assert_int_equal (errors_of (self), errors);
}

static void
test_batch_split_in_order (void **state)
{
    (void)state;
    pair_t pair = pair_new (NULL);
    bytes_t frame = {0};
    put_batch_start (&frame, 3);
    for (int n = 0; n < 3; n++)
        put_message (&frame, n, 10);
    push_bytes (&pair, &frame);
    push_plain (&pair, MARKER);
    assert_int_equal (recv_until (&pair, 0, MARKER), 3);

    //  The tag in another integer encoding (uint32) is the same tag; and a
    //  batch of 20 elements takes an array16 marker.
    frame.size = 0;
    put_byte (&frame, 0xdc);
    put_be (&frame, 21, 2);
    put_byte (&frame, 0xce);
    put_be (&frame, BATCH_TAG, 4);
    for (int n = 0; n < 20; n++)
        put_message (&frame, n, 0);
    expect_after_push (&pair, &frame, 0, 20, 0);
    free (frame.data);
    pair_destroy (&pair);
}

static void
test_batch_count_limit (void **state)
{
    (void)state;
    pair_t pair = pair_new (NULL);
    bytes_t frame = {0};
    //  Exactly at the limit: every element comes.
    put_batch_start (&frame, BATCH_MAX_COUNT);
    for (int n = 0; n < BATCH_MAX_COUNT; n++)
        put_message (&frame, n, 0);
    expect_after_push (&pair, &frame, 0, BATCH_MAX_COUNT, 0);
    free (frame.data);
    pair_destroy (&pair);
}

static void
test_batch_count_over_limit (void **state)
{
    (void)state;
    pair_t pair = pair_new (NULL);
    bytes_t frame = {0};
    put_batch_start (&frame, BATCH_MAX_COUNT + 1);
    for (int n = 0; n < BATCH_MAX_COUNT + 1; n++)
        put_message (&frame, n, 0);
    push_bytes (&pair, &frame);
    push_plain (&pair, MARKER);
    //  None of it: the whole batch is rejected, once.
    assert_int_equal (recv_until (&pair, 0, MARKER), 0);
    assert_int_equal (errors_of (&pair), 1);
    free (frame.data);
    pair_destroy (&pair);
}

//  A batch frame of exactly size octets: two messages, the second padded.
static bytes_t
batch_of_size (size_t size)
{
    bytes_t frame = {0};
    put_batch_start (&frame, 2);
    put_message (&frame, 0, 0);
    size_t pad = 0;
    //  Grow the pad until the frame has the size asked (bin and str
    //  headers grow by steps, so search).
    while (true) {
        bytes_t trial = {0};
        put (&trial, frame.data, frame.size);
        put_message (&trial, 1, pad);
        if (trial.size == size) {
            free (frame.data);
            return trial;
        }
        assert_true (trial.size < size);
        free (trial.data);
        pad++;
    }
}

static void
test_batch_size_limit (void **state)
{
    (void)state;
    pair_t pair = pair_new ("4096");
    //  Exactly max_message_bytes: accepted.
    bytes_t frame = batch_of_size (4096);
    expect_after_push (&pair, &frame, 0, 2, 0);
    free (frame.data);
    //  One octet more: the whole batch is refused (ZQ_ETOOBIG), once.
    frame = batch_of_size (4097);
    expect_after_push (&pair, &frame, 0, 0, 1);
    free (frame.data);
    pair_destroy (&pair);
}

static void
test_batch_truncated (void **state)
{
    (void)state;
    pair_t pair = pair_new (NULL);
    bytes_t whole = {0};
    put_batch_start (&whole, 3);
    for (int n = 0; n < 3; n++)
        put_message (&whole, n, 20);
    //  Cut anywhere (in the marker, the tag, an element's length, its
    //  octets): nothing of the batch is delivered, each cut counts once.
    size_t cuts[] = {1, 2, 4, 5, 6, whole.size / 2, whole.size - 1};
    uint64_t errors = 0;
    for (size_t index = 0; index < sizeof cuts / sizeof cuts[0]; index++) {
        bytes_t cut = {whole.data, cuts[index], whole.size};
        push_bytes (&pair, &cut);
        push_plain (&pair, MARKER);
        assert_int_equal (recv_until (&pair, 0, MARKER), 0);
        errors++;
        assert_int_equal (errors_of (&pair), errors);
    }
    free (whole.data);
    pair_destroy (&pair);
}

static void
test_batch_bad_layout (void **state)
{
    (void)state;
    pair_t pair = pair_new (NULL);
    bytes_t frame = {0};
    uint64_t errors = 0;

    //  The tag alone: a batch of no element.
    put_batch_start (&frame, 0);
    push_bytes (&pair, &frame);
    //  An element that is not a bin (a str holding an envelope).
    frame.size = 0;
    put_batch_start (&frame, 2);
    put_message (&frame, 0, 0);
    bytes_t one = envelope (1, 0);
    put_byte (&frame, 0xd9);
    put_be (&frame, one.size, 1);
    put (&frame, one.data, one.size);
    free (one.data);
    push_bytes (&pair, &frame);
    //  An octet after the last element.
    frame.size = 0;
    put_batch_start (&frame, 2);
    put_message (&frame, 0, 0);
    put_message (&frame, 1, 0);
    put_byte (&frame, 0xc0);
    push_bytes (&pair, &frame);
    //  A batch frame with a second frame after it.
    frame.size = 0;
    put_batch_start (&frame, 1);
    put_message (&frame, 0, 0);
    zmsg_t *two = zmsg_new ();
    zmsg_addmem (two, frame.data, frame.size);
    zmsg_addmem (two, "\xc0", 1);
    assert_int_equal (zmsg_send (&two, pair.push), 0);

    push_plain (&pair, MARKER);
    assert_int_equal (recv_until (&pair, 0, MARKER), 0);
    errors += 4;
    assert_int_equal (errors_of (&pair), errors);
    free (frame.data);
    pair_destroy (&pair);
}

static void
test_batch_mixed_elements (void **state)
{
    (void)state;
    pair_t pair = pair_new (NULL);
    bytes_t frame = {0};
    put_batch_start (&frame, 8);
    put_message (&frame, 0, 0);
    //  An envelope of version 2.
    bytes_t other = envelope (99, 0);
    other.data[1] = 0x02;
    put_element (&frame, other.data, other.size);
    free (other.data);
    put_message (&frame, 1, 5);
    //  Not msgpack at all, and an empty element.
    put_element (&frame, "\xc1\xc1", 2);
    put_element (&frame, "", 0);
    put_message (&frame, 2, 0);
    //  A batch inside a batch: an element is one envelope, never a batch.
    bytes_t inner = {0};
    put_batch_start (&inner, 1);
    put_message (&inner, 98, 0);
    put_element (&frame, inner.data, inner.size);
    free (inner.data);
    //  A good envelope followed by a stray octet.
    bytes_t trailing = envelope (97, 0);
    put (&trailing, "\xc0", 1);
    put_element (&frame, trailing.data, trailing.size);
    free (trailing.data);
    push_bytes (&pair, &frame);
    push_plain (&pair, MARKER);
    //  The good ones come, in order; each bad one is counted alone.
    assert_int_equal (recv_until (&pair, 0, MARKER), 3);
    assert_int_equal (errors_of (&pair), 5);
    free (frame.data);
    pair_destroy (&pair);
}

//  ---- A producer's batches, read raw ------------------------------------

//  A PULL socket taking at most a few frames ahead, bound over tcp, or
//  over inproc when inproc_name is not NULL.
static zsock_t *
raw_pull (char *endpoint, size_t size, const char *inproc_name)
{
    zsock_t *pull = zsock_new (ZMQ_PULL);
    assert_non_null (pull);
    zsock_set_rcvhwm (pull, 4);
    zsock_set_rcvbuf (pull, 4096);
    if (inproc_name) {
        assert_int_equal (zsock_bind (pull, "inproc://%s", inproc_name), 0);
        snprintf (endpoint, size, ">inproc://%s", inproc_name);
    } else {
        int port = zsock_bind (pull, "tcp://127.0.0.1:*");
        assert_true (port > 0);
        snprintf (endpoint, size, ">tcp://127.0.0.1:%d", port);
    }
    return pull;
}

static bool
is_batch (zframe_t *frame)
{
    const uint8_t *data = zframe_data (frame);
    size_t size = zframe_size (frame);
    return size > 4 &&
           (((data[0] & 0xf0) == 0x90 && data[1] == 0xcd && data[2] == 0x5a && data[3] == 0x42) ||
            (data[0] == 0xdc && size > 6 && data[3] == 0xcd && data[4] == 0x5a && data[5] == 0x42));
}

//  Reads every frame the producer sent (count messages) from pull, hands
//  each on as it is to a consumer, and checks the messages come once each,
//  in order. producer (if not NULL) is flushed without waiting as frames
//  are read. Returns how many frames were batches.
static int
relay_and_check (zsock_t *pull, zq_queue_t *producer, int count)
{
    pair_t pair = pair_new (NULL);
    int batches = 0;
    int received = 0;
    int64_t deadline = now_ms () + DEADLINE_MS;
    zsock_set_rcvtimeo (pull, 100);
    while (received < count) {
        assert_true (now_ms () < deadline);
        if (producer && zq_queue_flush (producer, 0))
            assert_int_equal (errno, EAGAIN);
        zframe_t *frame = zframe_recv (pull);
        if (!frame)
            continue;
        if (is_batch (frame))
            batches++;
        assert_int_equal (zframe_send (&frame, pair.push, 0), 0);
        zq_msg_t *msg;
        while ((msg = zq_queue_recv (pair.consumer, received < count ? 100 : 0))) {
            assert_int_equal (number_of (msg), received);
            received++;
            zq_msg_destroy (&msg);
            if (zq_queue_events (pair.consumer) == 0)
                break;
        }
    }
    assert_int_equal (errors_of (&pair), 0);
    pair_destroy (&pair);
    return batches;
}

static zq_queue_t *
producer_to (const char *endpoint, const char *batch_max_bytes)
{
    zq_options_t *options = zq_options_new ();
    assert_int_equal (zq_options_set (options, "sndhwm", "16"), 0);
    assert_int_equal (zq_options_set (options, "sndbuf_bytes", "4096"), 0);
    if (batch_max_bytes)
        assert_int_equal (zq_options_set (options, "batch_max_bytes", batch_max_bytes), 0);
    zq_queue_t *producer = zq_queue_new ("pipeline", ZQ_PRODUCER, endpoint, options);
    assert_non_null (producer);
    zq_options_destroy (&options);
    return producer;
}

static void
send_n (zq_queue_t *producer, int n)
{
    zq_msg_t *msg = zq_msg_new ("batch");
    assert_int_equal (zq_msg_pack (msg, "{si}", "n", (int64_t)n), 0);
    assert_int_equal (zq_queue_send (producer, &msg, DEADLINE_MS), 0);
}

static void
test_producer_lone_message_alone (void **state)
{
    (void)state;
    char endpoint[64];
    zsock_t *pull = raw_pull (endpoint, sizeof endpoint, NULL);
    zq_queue_t *producer = producer_to (endpoint, NULL);
    send_n (producer, 0); //  waits for the connection, then goes
    zsock_set_rcvtimeo (pull, DEADLINE_MS);
    zframe_t *frame = zframe_recv (pull);
    assert_non_null (frame);
    //  A plain envelope: array of 6, version 1.
    assert_int_equal (zframe_data (frame)[0], 0x96);
    assert_int_equal (zframe_data (frame)[1], 0x01);
    zframe_destroy (&frame);
    zq_queue_destroy (&producer);
    zsock_destroy (&pull);
}

//  A burst the reader does not keep up with: what found no room goes in
//  batches, every message once and in order, the last batch when the
//  producer is flushed (zq_queue_flush).
static void
test_producer_burst_batches (void **state)
{
    (void)state;
    //  Not read during the burst, so it must fit what the queues and the
    //  kernel take plus one batch (at most 1024 messages).
    const int count = 1000;
    char endpoint[64];
    zsock_t *pull = raw_pull (endpoint, sizeof endpoint, NULL);
    zq_queue_t *producer = producer_to (endpoint, NULL);
    for (int n = 0; n < count; n++)
        send_n (producer, n);
    int batches = relay_and_check (pull, producer, count);
    assert_true (batches > 0);
    assert_int_equal (zq_queue_flush (producer, 0), 0);
    zq_queue_stats_t stats;
    zq_queue_stats (producer, &stats);
    assert_int_equal (stats.sent, (uint64_t)count);
    zq_queue_destroy (&producer);
    zsock_destroy (&pull);
}

typedef struct {
    zsock_t *pull;
    zlist_t *frames;
    int expected;
} reader_t;

//  Takes frames until they hold expected messages or 10 s pass.
static void *
s_read_frames (void *arg)
{
    reader_t *reader = (reader_t *)arg;
    int64_t deadline = now_ms () + DEADLINE_MS;
    zsock_set_rcvtimeo (reader->pull, 100);
    int messages = 0;
    while (messages < reader->expected && now_ms () < deadline) {
        zframe_t *frame = zframe_recv (reader->pull);
        if (!frame)
            continue;
        if (is_batch (frame)) {
            const uint8_t *data = zframe_data (frame);
            messages +=
                (data[0] & 0xf0) == 0x90 ? (data[0] & 0x0f) - 1 : ((data[1] << 8) | data[2]) - 1;
        } else
            messages++;
        zlist_append (reader->frames, frame);
    }
    return NULL;
}

//  Closing sends the batch still held, waiting up to linger_ms for room.
//  Over inproc: once closed, a tcp socket's last few KiB can still be lost
//  to a reader that lags (libzmq's linger covers its queues, not the
//  connection's buffer; zq_queue.h says so), and what is tested here is
//  that zq hands the batch over.
static void
test_producer_close_sends_held (void **state)
{
    (void)state;
    const int count = 1000;
    char endpoint[64];
    zsock_t *pull = raw_pull (endpoint, sizeof endpoint, "batch-close");
    zq_queue_t *producer = producer_to (endpoint, NULL);
    for (int n = 0; n < count; n++)
        send_n (producer, n);
    //  Someone reads while close waits.
    reader_t reader = {pull, zlist_new (), count};
    pthread_t thread;
    assert_int_equal (pthread_create (&thread, NULL, s_read_frames, &reader), 0);
    size_t unsent = 99;
    assert_int_equal (zq_queue_close (producer, &unsent), 0);
    assert_int_equal (pthread_join (thread, NULL), 0);
    assert_int_equal (unsent, 0);
    //  Hand what was read to a consumer: every message, in order.
    pair_t pair = pair_new (NULL);
    int batches = 0;
    zframe_t *frame;
    while ((frame = (zframe_t *)zlist_pop (reader.frames))) {
        batches += is_batch (frame);
        assert_int_equal (zframe_send (&frame, pair.push, 0), 0);
    }
    assert_true (batches > 0);
    zlist_destroy (&reader.frames);
    push_plain (&pair, MARKER);
    assert_int_equal (recv_until (&pair, 0, MARKER), count);
    assert_int_equal (errors_of (&pair), 0);
    pair_destroy (&pair);
    zq_queue_destroy (&producer);
    zsock_destroy (&pull);
}

//  Takes the next frame from pull if one comes within its receive
//  timeout; it must not be a batch. Returns 1 if a frame came, else 0.
static int
take_unbatched (zsock_t *pull)
{
    zframe_t *frame = zframe_recv (pull);
    if (!frame)
        return 0;
    assert_false (is_batch (frame));
    zframe_destroy (&frame);
    return 1;
}

//  batch_max_bytes 0: every message alone, for consumers that predate
//  batch frames.
static void
test_producer_batching_off (void **state)
{
    (void)state;
    const int count = 500;
    char endpoint[64];
    zsock_t *pull = raw_pull (endpoint, sizeof endpoint, NULL);
    zq_queue_t *producer = producer_to (endpoint, "0");
    //  Read as it goes: with batching off, a full queue makes send wait.
    send_n (producer, 0); //  waits for the connection
    zsock_set_rcvtimeo (pull, 100);
    int read = 0;
    int64_t deadline = now_ms () + DEADLINE_MS;
    for (int n = 1; n < count; n++) {
        zq_msg_t *msg = zq_msg_new ("batch");
        assert_int_equal (zq_msg_pack (msg, "{si}", "n", (int64_t)n), 0);
        while (zq_queue_send (producer, &msg, 0)) {
            assert_int_equal (errno, EAGAIN);
            assert_true (now_ms () < deadline);
            read += take_unbatched (pull);
        }
    }
    while (read < count) {
        assert_true (now_ms () < deadline);
        read += take_unbatched (pull);
    }
    zq_queue_destroy (&producer);
    zsock_destroy (&pull);
}

int
main (void)
{
    zsys_init ();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_batch_split_in_order),
        cmocka_unit_test (test_batch_count_limit),
        cmocka_unit_test (test_batch_count_over_limit),
        cmocka_unit_test (test_batch_size_limit),
        cmocka_unit_test (test_batch_truncated),
        cmocka_unit_test (test_batch_bad_layout),
        cmocka_unit_test (test_batch_mixed_elements),
        cmocka_unit_test (test_producer_lone_message_alone),
        cmocka_unit_test (test_producer_burst_batches),
        cmocka_unit_test (test_producer_close_sends_held),
        cmocka_unit_test (test_producer_batching_off),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
