/*  =========================================================================
    test_reliable_outbox_sizes - the reliable producer's memory outbox keeps
    each message's wire form in a block sized to it (sizes step by 64
    octets up to 512, larger ones in a frame of their own), and reuses the
    blocks its confirmed messages free: messages of every size, posted
    while earlier ones are confirmed, arrive whole. (A block reused for a
    larger message than its own overwrites its neighbours, which shows as
    a body that differs or a heap the allocator finds damaged, and in the
    sanitizer build of make check as an overflow.)

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable_helpers.h"

//  Messages posted: enough that the window (256 here) turns over many
//  times, so blocks freed by confirms are taken again by later posts.
#define S_MESSAGES 3000
#define S_WINDOW   "256"
//  Bodies carry 0 to S_PAD_MAX octets of padding: wire forms from under
//  64 octets to past 512, across every block size.
#define S_PAD_MAX 700

//  The padding of message n: its length walks the sizes out of order, so
//  that neighbouring posts take blocks of different sizes. 37 and 701
//  (prime) have no common factor: any 701 messages in a row take every
//  length from 0 to 700 once, and from n = 256 on (where n's encoding
//  keeps one width) the wire sizes they make are consecutive but for one
//  step (the bin's length field widening at 256), so the block edges 64,
//  65, 512 and 513 are all posted, and posted again with reused blocks.
static size_t
s_pad_size (int64_t n)
{
    return (size_t)((n * 37) % (S_PAD_MAX + 1));
}

static void
s_pad_fill (int64_t n, uint8_t *pad, size_t size)
{
    for (size_t i = 0; i < size; i++)
        pad[i] = (uint8_t)(n * 131 + (int64_t)i * 7);
}

//  Takes confirms until none is there; returns how many. (A refusal
//  reported here fails the test: every message must be stored.)
static int
s_take_confirms (zq_queue_t *producer)
{
    int taken = 0;
    uint8_t id[ZQ_MSG_ID_SIZE];
    while (zq_queue_confirmed (producer, id) == 0)
        taken++;
    assert_int_equal (errno, EAGAIN);
    return taken;
}

static void
test_messages_of_every_size_arrive_whole (void **state)
{
    (void)state;
    test_server_t *server = server_start ("@tcp://127.0.0.1:*", NULL);
    assert_non_null (server);
    char spec[300];
    snprintf (spec, sizeof spec, ">%s", server->endpoint);
    zq_options_t *options = options_of ("max_in_flight", S_WINDOW, NULL);
    zq_queue_t *producer = zq_queue_new ("reliable", ZQ_PRODUCER, spec, options);
    assert_non_null (producer);
    zq_queue_t *consumer = zq_queue_new ("reliable", ZQ_CONSUMER, spec, NULL);
    assert_non_null (consumer);
    assert_int_equal (zq_queue_subscribe (consumer, "sizes"), 0);

    uint8_t pad[S_PAD_MAX];
    int confirmed = 0;
    for (int64_t n = 0; n < S_MESSAGES; n++) {
        zq_msg_t *msg = zq_msg_new ("sizes");
        assert_non_null (msg);
        size_t size = s_pad_size (n);
        s_pad_fill (n, pad, size);
        assert_int_equal (zq_msg_pack (msg, "{sisB}", "n", n, "pad", pad, size), 0);
        //  A full window waits for confirms, which free blocks.
        assert_int_equal (zq_queue_post (producer, &msg, DEADLINE_MS), 0);
        assert_null (msg);
        confirmed += s_take_confirms (producer);
    }
    int64_t deadline = now_ms () + DEADLINE_MS;
    while (confirmed < S_MESSAGES) {
        assert_true (now_ms () < deadline);
        int events = zq_queue_events (producer);
        assert_true (events >= 0);
        if (!(events & ZQ_POLLIN)) {
            zmq_pollitem_t item = {NULL, zq_queue_fd (producer), ZMQ_POLLIN, 0};
            zmq_poll (&item, 1, 50);
        }
        confirmed += s_take_confirms (producer);
    }

    //  Each arrives once, with the padding it was posted with.
    static bool seen[S_MESSAGES];
    uint8_t expected[S_PAD_MAX];
    for (int taken = 0; taken < S_MESSAGES; taken++) {
        zq_msg_t *msg = zq_queue_recv (consumer, DEADLINE_MS);
        assert_non_null (msg);
        int64_t n = -1;
        const void *got = NULL;
        size_t got_size = 0;
        char *n_key = NULL, *pad_key = NULL;
        assert_int_equal (zq_msg_unpack (msg, "{sisB}", &n_key, &n, &pad_key, &got, &got_size), 0);
        assert_string_equal (n_key, "n");
        assert_string_equal (pad_key, "pad");
        free (n_key);
        free (pad_key);
        assert_true (n >= 0 && n < S_MESSAGES);
        assert_false (seen[n]);
        seen[n] = true;
        assert_int_equal (got_size, s_pad_size (n));
        s_pad_fill (n, expected, got_size);
        assert_memory_equal (got, expected, got_size);
        assert_int_equal (zq_queue_ack (consumer, msg), 0);
        zq_msg_destroy (&msg);
    }
    zq_queue_destroy (&consumer);
    zq_queue_destroy (&producer);
    zq_options_destroy (&options);
    server_stop (&server);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_messages_of_every_size_arrive_whole),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
