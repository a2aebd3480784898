/*  =========================================================================
    test_zq_batch - a batch's block (src/zq_batch.c), compiled into this
    program: the sizes it computes agree with the frames it builds; a
    batch told its size up front (zqi_batch_expect) takes its elements
    without growing; one kept from frame to frame starts each block at
    the size of the last frame it sent, and keeps that size when
    discarded; a block made for no element yet is freed by discard.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "../src/zq_batch.h"
#include "compiled_in.h"

//  A PAIR of sockets over inproc: out sends to in.
typedef struct {
    void *ctx;
    void *out;
    void *in;
} s_pair_t;

static s_pair_t
s_pair_open (const char *endpoint)
{
    s_pair_t pair = {zmq_ctx_new (), NULL, NULL};
    pair.out = zmq_socket (pair.ctx, ZMQ_PAIR);
    pair.in = zmq_socket (pair.ctx, ZMQ_PAIR);
    assert_int_equal (zmq_bind (pair.in, endpoint), 0);
    assert_int_equal (zmq_connect (pair.out, endpoint), 0);
    return pair;
}

static void
s_pair_close (s_pair_t *pair)
{
    zmq_close (pair->out);
    zmq_close (pair->in);
    zmq_ctx_term (pair->ctx);
}

//  Appends count elements of size octets (each filled with its number).
static void
s_fill (zqi_batch_t *batch, uint32_t count, size_t size)
{
    for (uint32_t n = 0; n < count; n++) {
        uint8_t *into = zqi_batch_reserve (batch, size, 1 << 20);
        assert_non_null (into);
        memset (into, (int)(n & 0xff), size);
    }
}

//  The frame size the helpers give is the frame the batch sends, on both
//  sides of the array marker's change (15 items: 14 elements and the tag).
static void
test_sizes_agree (void **state)
{
    (void)state;
    s_pair_t pair = s_pair_open ("inproc://sizes");
    uint32_t counts[] = {2, 13, 14, 15, 16, 300};
    size_t sizes[] = {1, 100, 255, 256};
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            zqi_batch_t batch;
            memset (&batch, 0, sizeof batch);
            s_fill (&batch, counts[c] - 1, sizes[s]);
            size_t with = zqi_batch_size_with (&batch, sizes[s]);
            s_fill (&batch, 1, sizes[s]);
            size_t frame =
                zqi_batch_frame_size (counts[c], counts[c] * zqi_batch_element_size (sizes[s]));
            assert_int_equal (with, frame);
            assert_int_equal (zqi_batch_send (&batch, pair.out, 0), 0);
            zmq_msg_t got;
            zmq_msg_init (&got);
            assert_true (zmq_msg_recv (&got, pair.in, 0) >= 0);
            assert_int_equal (zmq_msg_size (&got), frame);
            zmq_msg_close (&got);
        }
    s_pair_close (&pair);
}

//  Told its size, a batch takes that many elements in the block it made
//  at once; one more grows it; discard frees it, a block with no element
//  too.
static void
test_expect (void **state)
{
    (void)state;
    zqi_batch_t batch;
    memset (&batch, 0, sizeof batch);
    size_t expected = 50 * zqi_batch_element_size (300);
    assert_int_equal (zqi_batch_expect (&batch, expected), 0);
    uint8_t *block = batch.block;
    assert_non_null (block);
    assert_int_equal (batch.capacity, expected);
    s_fill (&batch, 50, 300);
    assert_ptr_equal (batch.block, block);
    assert_int_equal (batch.capacity, expected);
    assert_int_equal (batch.size, expected);
    s_fill (&batch, 1, 300);
    assert_true (batch.capacity >= expected + zqi_batch_element_size (300));
    assert_int_equal (zqi_batch_discard (&batch), 51);
    assert_null (batch.block);

    assert_int_equal (zqi_batch_expect (&batch, 1000), 0);
    assert_non_null (batch.block);
    assert_int_equal (zqi_batch_discard (&batch), 0);
    assert_null (batch.block);
}

//  A batch kept from frame to frame: the block after a send of N octets of
//  elements starts at N, so the same frame again takes it without growing;
//  a discard keeps that size for the next one.
static void
test_starts_at_last_size (void **state)
{
    (void)state;
    s_pair_t pair = s_pair_open ("inproc://last");
    zqi_batch_t batch;
    memset (&batch, 0, sizeof batch);
    s_fill (&batch, 400, 140);
    size_t sent = batch.size;
    assert_true (sent > 4096);
    assert_int_equal (zqi_batch_send (&batch, pair.out, 0), 0);
    assert_null (batch.block);
    assert_int_equal (batch.last_size, sent);
    s_fill (&batch, 1, 140);
    assert_int_equal (batch.capacity, sent);
    uint8_t *block = batch.block;
    s_fill (&batch, 399, 140);
    assert_ptr_equal (batch.block, block);
    assert_int_equal (batch.capacity, sent);
    zqi_batch_discard (&batch);
    assert_int_equal (batch.last_size, sent);
    s_fill (&batch, 1, 140);
    assert_int_equal (batch.capacity, sent);
    zqi_batch_discard (&batch);
    zmq_msg_t got;
    zmq_msg_init (&got);
    assert_true (zmq_msg_recv (&got, pair.in, 0) >= 0);
    zmq_msg_close (&got);
    s_pair_close (&pair);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_sizes_agree),
        cmocka_unit_test (test_expect),
        cmocka_unit_test (test_starts_at_last_size),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
