/*  =========================================================================
    test_zq_msg - the message class: fields, ids, headers, body, and the
    wire codec with every class of bad input it must refuse.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "zq.h"

//  ---- Hand-built msgpack -------------------------------------------------

typedef struct {
    uint8_t data[80000];
    size_t size;
} buf_t;

static void
put (buf_t *buf, const void *data, size_t size)
{
    assert_true (buf->size + size <= sizeof buf->data);
    memcpy (buf->data + buf->size, data, size);
    buf->size += size;
}

static void
put_byte (buf_t *buf, uint8_t byte)
{
    put (buf, &byte, 1);
}

static void
put_be (buf_t *buf, uint64_t value, int width)
{
    for (int index = width - 1; index >= 0; index--)
        put_byte (buf, (uint8_t)(value >> (8 * index)));
}

static void
put_str (buf_t *buf, const char *str)
{
    size_t size = strlen (str);
    if (size <= 31)
        put_byte (buf, (uint8_t)(0xa0 | size));
    else if (size <= 255) {
        put_byte (buf, 0xd9);
        put_byte (buf, (uint8_t)size);
    } else {
        put_byte (buf, 0xda);
        put_be (buf, size, 2);
    }
    put (buf, str, size);
}

static const uint8_t s_id[ZQ_MSG_ID_SIZE] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
                                             0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10};

static void
put_id (buf_t *buf)
{
    put_byte (buf, 0xc4);
    put_byte (buf, ZQ_MSG_ID_SIZE);
    put (buf, s_id, sizeof s_id);
}

//  The fields after the version: id, subject "orders", created_ms
//  1700000000000 (as uint64), attempt 3, headers {"k": "v"}.
static void
put_fields (buf_t *buf)
{
    put_id (buf);
    put_str (buf, "orders");
    put_byte (buf, 0xcf);
    put_be (buf, 1700000000000ull, 8);
    put_byte (buf, 0x03);
    put_byte (buf, 0x81);
    put_str (buf, "k");
    put_str (buf, "v");
}

//  A good version-1 header of six elements.
static void
put_header (buf_t *buf)
{
    put_byte (buf, 0x96);
    put_byte (buf, 0x01);
    put_fields (buf);
}

//  A body: [1, "x"]
static void
put_body (buf_t *buf)
{
    put (buf, "\x92\x01\xa1x", 4);
}

//  Decodes buf as a one-frame envelope; returns 0 if it decoded, else errno.
static int
decode_error (const buf_t *buf, size_t max_size)
{
    const void *frames[1] = {buf->data};
    size_t sizes[1] = {buf->size};
    errno = 0;
    zq_msg_t *msg = zq_msg_decode_buffers (frames, sizes, 1, max_size);
    if (msg) {
        zq_msg_destroy (&msg);
        return 0;
    }
    assert_int_not_equal (errno, 0);
    return errno;
}

//  Decodes header and body as a two-frame envelope; 0 or errno.
static int
decode_two_error (const buf_t *header, const buf_t *body)
{
    const void *frames[2] = {header->data, body->data};
    size_t sizes[2] = {header->size, body->size};
    zq_msg_t *msg = zq_msg_decode_buffers (frames, sizes, 2, 0);
    if (msg) {
        zq_msg_destroy (&msg);
        return 0;
    }
    return errno;
}

//  ---- Helpers for messages -----------------------------------------------

static zq_msg_t *
make_msg (size_t body_size)
{
    zq_msg_t *msg = zq_msg_new ("payments");
    assert_non_null (msg);
    zq_msg_set_attempt (msg, 70000);
    assert_int_equal (zq_msg_set_header (msg, "trace", "t-1"), 0);
    assert_int_equal (zq_msg_set_header (msg, "reply-to", "inbox"), 0);
    if (body_size) {
        //  bin32 of body_size - 5 bytes of a pattern: one msgpack object
        uint8_t *body = malloc (body_size);
        assert_non_null (body);
        size_t payload = body_size - 5;
        body[0] = 0xc6;
        body[1] = (uint8_t)(payload >> 24);
        body[2] = (uint8_t)(payload >> 16);
        body[3] = (uint8_t)(payload >> 8);
        body[4] = (uint8_t)payload;
        for (size_t index = 0; index < payload; index++)
            body[5 + index] = (uint8_t)(index * 7);
        assert_int_equal (zq_msg_set_body (msg, body, body_size), 0);
        free (body);
    }
    return msg;
}

static void
assert_same (const zq_msg_t *a, const zq_msg_t *b)
{
    assert_memory_equal (zq_msg_id (a), zq_msg_id (b), ZQ_MSG_ID_SIZE);
    assert_string_equal (zq_msg_subject (a), zq_msg_subject (b));
    assert_true (zq_msg_created_ms (a) == zq_msg_created_ms (b));
    assert_int_equal (zq_msg_attempt (a), zq_msg_attempt (b));
    assert_int_equal (zq_msg_header_count (a), zq_msg_header_count (b));
    for (size_t index = 0; index < zq_msg_header_count (a); index++) {
        const char *value_a, *value_b;
        assert_string_equal (zq_msg_header_at (a, index, &value_a),
                             zq_msg_header_at (b, index, &value_b));
        assert_string_equal (value_a, value_b);
    }
    size_t size_a, size_b;
    const void *body_a = zq_msg_body (a, &size_a);
    const void *body_b = zq_msg_body (b, &size_b);
    assert_int_equal (size_a, size_b);
    assert_memory_equal (body_a, body_b, size_a);
}

static int64_t
now_ms (void)
{
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

//  ---- Fields -------------------------------------------------------------

static void
test_new_defaults (void **state)
{
    int64_t before = now_ms ();
    zq_msg_t *msg = zq_msg_new ("orders");
    int64_t after = now_ms ();
    assert_non_null (msg);
    assert_string_equal (zq_msg_subject (msg), "orders");
    assert_true (zq_msg_created_ms (msg) >= before && zq_msg_created_ms (msg) <= after);
    assert_int_equal (zq_msg_attempt (msg), 0);
    assert_int_equal (zq_msg_header_count (msg), 0);
    size_t size;
    const uint8_t *body = zq_msg_body (msg, &size);
    assert_int_equal (size, 1);
    assert_int_equal (body[0], 0xc0);
    //  The id carries the creation millisecond in its first six bytes.
    const uint8_t *id = zq_msg_id (msg);
    uint64_t id_ms = 0;
    for (int index = 0; index < 6; index++)
        id_ms = (id_ms << 8) | id[index];
    assert_true ((int64_t)id_ms >= before && (int64_t)id_ms <= after + 1);
    char hex[ZQ_MSG_ID_HEX_SIZE + 1];
    assert_ptr_equal (zq_msg_id_hex (msg, hex), hex);
    assert_int_equal (strlen (hex), ZQ_MSG_ID_HEX_SIZE);
    for (int index = 0; index < ZQ_MSG_ID_SIZE; index++) {
        char pair[3];
        snprintf (pair, sizeof pair, "%02x", id[index]);
        assert_memory_equal (hex + 2 * index, pair, 2);
    }
    zq_msg_set_id (msg, s_id);
    assert_memory_equal (zq_msg_id (msg), s_id, ZQ_MSG_ID_SIZE);
    zq_msg_set_attempt (msg, UINT32_MAX);
    assert_int_equal (zq_msg_attempt (msg), UINT32_MAX);
    zq_msg_destroy (&msg);
    assert_null (msg);
    zq_msg_destroy (&msg); //  safe twice

    msg = zq_msg_new (NULL);
    assert_non_null (msg);
    assert_string_equal (zq_msg_subject (msg), "");
    zq_msg_destroy (&msg);
}

static void
test_subject_limits (void **state)
{
    char *long_subject = malloc (ZQ_MSG_MAX_STRING + 2);
    assert_non_null (long_subject);
    memset (long_subject, 's', ZQ_MSG_MAX_STRING + 1);
    long_subject[ZQ_MSG_MAX_STRING + 1] = 0;
    errno = 0;
    assert_null (zq_msg_new (long_subject));
    assert_int_equal (errno, ZQ_ETOOBIG);

    zq_msg_t *msg = zq_msg_new ("short");
    assert_int_equal (zq_msg_set_subject (msg, long_subject), -1);
    assert_int_equal (errno, ZQ_ETOOBIG);
    assert_string_equal (zq_msg_subject (msg), "short");
    //  the longest subject allowed, then a short one again
    long_subject[ZQ_MSG_MAX_STRING] = 0;
    assert_int_equal (zq_msg_set_subject (msg, long_subject), 0);
    assert_string_equal (zq_msg_subject (msg), long_subject);
    assert_int_equal (zq_msg_set_subject (msg, "again"), 0);
    assert_string_equal (zq_msg_subject (msg), "again");
    //  a subject set from the message's own subject
    assert_int_equal (zq_msg_set_subject (msg, zq_msg_subject (msg) + 1), 0);
    assert_string_equal (zq_msg_subject (msg), "gain");
    zq_msg_destroy (&msg);
    free (long_subject);
}

static void
test_ids_sort_by_creation (void **state)
{
    enum { COUNT = 200000 };
    uint8_t previous[ZQ_MSG_ID_SIZE];
    zq_msg_t *msg = zq_msg_new ("x");
    memcpy (previous, zq_msg_id (msg), ZQ_MSG_ID_SIZE);
    zq_msg_destroy (&msg);
    for (int index = 0; index < COUNT; index++) {
        msg = zq_msg_new ("x");
        assert_non_null (msg);
        //  strictly greater: sorted, and therefore unique
        assert_true (memcmp (previous, zq_msg_id (msg), ZQ_MSG_ID_SIZE) < 0);
        memcpy (previous, zq_msg_id (msg), ZQ_MSG_ID_SIZE);
        zq_msg_destroy (&msg);
    }
}

static int
s_compare_u64 (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

//  Seeing one id must not tell the next: each id of a thread carries
//  random octets of its own (8 to 15), while the time and sequence
//  (0 to 7) still sort the ids of a thread in creation order.
static void
test_ids_fresh_random (void **state)
{
    enum { COUNT = 4096 };
    uint64_t *randoms = (uint64_t *)malloc (COUNT * sizeof (uint64_t));
    assert_non_null (randoms);
    uint8_t previous[ZQ_MSG_ID_SIZE] = {0};
    for (int index = 0; index < COUNT; index++) {
        zq_msg_t *msg = zq_msg_new ("x");
        assert_non_null (msg);
        const uint8_t *id = zq_msg_id (msg);
        if (index > 0) {
            assert_true (memcmp (previous, id, ZQ_MSG_ID_SIZE) < 0);
            assert_memory_not_equal (previous + 8, id + 8, 8);
        }
        memcpy (previous, id, ZQ_MSG_ID_SIZE);
        memcpy (&randoms[index], id + 8, 8);
        zq_msg_destroy (&msg);
    }
    //  No two random parts alike (64 bits each: a repeat among 4096 would
    //  mean they are not drawn per id).
    qsort (randoms, COUNT, sizeof (uint64_t), s_compare_u64);
    for (int index = 1; index < COUNT; index++)
        assert_true (randoms[index - 1] != randoms[index]);
    free (randoms);
}

static void *
s_make_id (void *arg)
{
    zq_msg_t *msg = zq_msg_new ("thread");
    memcpy (arg, zq_msg_id (msg), ZQ_MSG_ID_SIZE);
    zq_msg_destroy (&msg);
    return NULL;
}

static void
test_ids_differ_between_threads (void **state)
{
    uint8_t other[ZQ_MSG_ID_SIZE];
    pthread_t thread;
    assert_int_equal (pthread_create (&thread, NULL, s_make_id, other), 0);
    assert_int_equal (pthread_join (thread, NULL), 0);
    zq_msg_t *msg = zq_msg_new ("main");
    //  the random halves are drawn per id, from a pool of each thread
    assert_memory_not_equal (zq_msg_id (msg) + 8, other + 8, 8);
    zq_msg_destroy (&msg);
}

static void
test_headers (void **state)
{
    zq_msg_t *msg = zq_msg_new ("h");
    assert_null (zq_msg_header (msg, "a"));
    assert_int_equal (zq_msg_set_header (msg, "a", "1"), 0);
    assert_int_equal (zq_msg_set_header (msg, "b", ""), 0);
    assert_int_equal (zq_msg_set_header (msg, "c", "3"), 0);
    assert_string_equal (zq_msg_header (msg, "a"), "1");
    assert_string_equal (zq_msg_header (msg, "b"), "");
    //  replacing keeps the position and the count
    assert_int_equal (zq_msg_set_header (msg, "a", "one"), 0);
    assert_int_equal (zq_msg_header_count (msg), 3);
    const char *value;
    assert_string_equal (zq_msg_header_at (msg, 0, &value), "a");
    assert_string_equal (value, "one");
    assert_string_equal (zq_msg_header_at (msg, 2, &value), "c");
    assert_string_equal (value, "3");
    assert_null (zq_msg_header_at (msg, 3, &value));
    //  bad names and values
    assert_int_equal (zq_msg_set_header (msg, NULL, "x"), -1);
    assert_int_equal (errno, EINVAL);
    assert_int_equal (zq_msg_set_header (msg, "", "x"), -1);
    assert_int_equal (errno, EINVAL);
    char *long_text = malloc (ZQ_MSG_MAX_STRING + 2);
    memset (long_text, 'v', ZQ_MSG_MAX_STRING + 1);
    long_text[ZQ_MSG_MAX_STRING + 1] = 0;
    assert_int_equal (zq_msg_set_header (msg, "long", long_text), -1);
    assert_int_equal (errno, ZQ_ETOOBIG);
    assert_int_equal (zq_msg_set_header (msg, long_text, "x"), -1);
    assert_int_equal (errno, ZQ_ETOOBIG);
    long_text[ZQ_MSG_MAX_STRING] = 0;
    assert_int_equal (zq_msg_set_header (msg, "long", long_text), 0);
    assert_string_equal (zq_msg_header (msg, "long"), long_text);
    free (long_text);
    //  up to ZQ_MSG_MAX_HEADERS, then no new name but replacements
    char name[16];
    for (size_t index = zq_msg_header_count (msg); index < ZQ_MSG_MAX_HEADERS; index++) {
        snprintf (name, sizeof name, "n%zu", index);
        assert_int_equal (zq_msg_set_header (msg, name, name), 0);
    }
    assert_int_equal (zq_msg_header_count (msg), ZQ_MSG_MAX_HEADERS);
    assert_int_equal (zq_msg_set_header (msg, "one-more", "x"), -1);
    assert_int_equal (errno, ZQ_ETOOBIG);
    assert_int_equal (zq_msg_set_header (msg, "c", "three"), 0);
    assert_string_equal (zq_msg_header (msg, "c"), "three");
    assert_int_equal (zq_msg_header_count (msg), ZQ_MSG_MAX_HEADERS);

    //  all of them survive the wire
    zq_msg_t *copy = zq_msg_dup (msg);
    zmsg_t *frames = zmsg_new ();
    assert_int_equal (zq_msg_encode (&copy, frames), 0);
    zq_msg_t *decoded = zq_msg_decode (frames, 0);
    assert_non_null (decoded);
    assert_same (msg, decoded);
    zq_msg_destroy (&decoded);
    zmsg_destroy (&frames);
    zq_msg_destroy (&msg);
}

static void
test_body (void **state)
{
    zq_msg_t *msg = zq_msg_new ("b");
    //  {"a": [1, 2.5, true, nil]}
    const uint8_t good[] = {0x81, 0xa1, 'a', 0x94, 0x01, 0xcb, 0x40, 0x04,
                            0,    0,    0,   0,    0,    0,    0xc3, 0xc0};
    assert_int_equal (zq_msg_set_body (msg, good, sizeof good), 0);
    size_t size;
    const void *body = zq_msg_body (msg, &size);
    assert_int_equal (size, sizeof good);
    assert_memory_equal (body, good, sizeof good);
    //  bad bodies leave the body as it was
    struct {
        const char *bytes;
        size_t size;
        int error;
    } bad[] = {
        {"", 0, ZQ_EPROTO},                     //  empty
        {"\x92\x01", 2, ZQ_EPROTO},             //  truncated array
        {"\x01\x02", 2, ZQ_EPROTO},             //  two objects
        {"\xc1", 1, ZQ_EPROTO},                 //  reserved byte
        {"\x91\xc1", 2, ZQ_EPROTO},             //  reserved byte inside
        {"\xa5hi", 3, ZQ_EPROTO},               //  short string
        {"\xd9", 1, ZQ_EPROTO},                 //  missing length
        {"\xdd\xff\xff\xff\xff", 5, ZQ_EPROTO}, //  array32 of 2^32-1 in 5 bytes
        {"\xdb\xff\xff\xff\xff"
         "a",
         6, ZQ_EPROTO},                                 //  str32 of 4 GiB
        {"\xde\x00\x10\x01\x02\x03\x04", 7, ZQ_EPROTO}, //  map16 of 16 pairs in 4 bytes
        {"\xc9\xff\xff\xff\xff\x01", 6, ZQ_EPROTO},     //  ext32 of 4 GiB
        {"\xd8\x01\x02", 3, ZQ_EPROTO},                 //  short fixext16
    };
    for (size_t index = 0; index < sizeof bad / sizeof bad[0]; index++) {
        errno = 0;
        assert_int_equal (zq_msg_set_body (msg, bad[index].bytes, bad[index].size), -1);
        assert_int_equal (errno, bad[index].error);
        body = zq_msg_body (msg, &size);
        assert_int_equal (size, sizeof good);
        assert_memory_equal (body, good, sizeof good);
    }
    //  a body set from part of the message's own body: the inner array
    body = zq_msg_body (msg, &size);
    assert_int_equal (zq_msg_set_body (msg, (const uint8_t *)body + 3, size - 3), 0);
    body = zq_msg_body (msg, &size);
    assert_int_equal (size, sizeof good - 3);
    assert_memory_equal (body, good + 3, sizeof good - 3);
    zq_msg_destroy (&msg);
}

static void
test_depth (void **state)
{
    uint8_t nested[40];
    zq_msg_t *msg = zq_msg_new ("d");
    //  32 arrays, one inside the other, around nil: accepted
    memset (nested, 0x91, ZQ_MSG_MAX_DEPTH);
    nested[ZQ_MSG_MAX_DEPTH] = 0xc0;
    assert_int_equal (zq_msg_set_body (msg, nested, ZQ_MSG_MAX_DEPTH + 1), 0);
    //  33: refused
    memset (nested, 0x91, ZQ_MSG_MAX_DEPTH + 1);
    nested[ZQ_MSG_MAX_DEPTH + 1] = 0xc0;
    assert_int_equal (zq_msg_set_body (msg, nested, ZQ_MSG_MAX_DEPTH + 2), -1);
    assert_int_equal (errno, ZQ_EDEPTH);
    //  maps count too: {1: {1: ... nil}}
    uint8_t maps[2 * ZQ_MSG_MAX_DEPTH + 3];
    for (int level = 0; level <= ZQ_MSG_MAX_DEPTH; level++) {
        maps[2 * level] = 0x81;
        maps[2 * level + 1] = 0x01;
    }
    maps[2 * ZQ_MSG_MAX_DEPTH] = 0xc0;
    assert_int_equal (zq_msg_set_body (msg, maps, 2 * ZQ_MSG_MAX_DEPTH + 1), 0);
    maps[2 * ZQ_MSG_MAX_DEPTH] = 0x81;
    maps[2 * ZQ_MSG_MAX_DEPTH + 2] = 0xc0;
    assert_int_equal (zq_msg_set_body (msg, maps, 2 * ZQ_MSG_MAX_DEPTH + 3), -1);
    assert_int_equal (errno, ZQ_EDEPTH);
    //  an empty container is one level: 32 arrays around [] is too deep
    memset (nested, 0x91, ZQ_MSG_MAX_DEPTH);
    nested[ZQ_MSG_MAX_DEPTH] = 0x90;
    assert_int_equal (zq_msg_set_body (msg, nested, ZQ_MSG_MAX_DEPTH + 1), -1);
    assert_int_equal (errno, ZQ_EDEPTH);
    assert_int_equal (zq_msg_set_body (msg, nested + 1, ZQ_MSG_MAX_DEPTH), 0);
    zq_msg_destroy (&msg);

    //  in a received body
    for (int depth = ZQ_MSG_MAX_DEPTH; depth <= ZQ_MSG_MAX_DEPTH + 1; depth++) {
        buf_t *buf = calloc (1, sizeof (buf_t));
        put_header (buf);
        for (int level = 0; level < depth; level++)
            put_byte (buf, 0x91);
        put_byte (buf, 0x01);
        assert_int_equal (decode_error (buf, 0), depth > ZQ_MSG_MAX_DEPTH ? ZQ_EDEPTH : 0);
        free (buf);
    }
}

static void
test_dup (void **state)
{
    size_t sizes[] = {0, 100, ZQ_MSG_ZEROCOPY_MIN + 10};
    for (size_t index = 0; index < 3; index++) {
        zq_msg_t *msg = make_msg (sizes[index]);
        zq_msg_t *copy = zq_msg_dup (msg);
        assert_non_null (copy);
        assert_same (msg, copy);
        //  a deep copy: changing it leaves the original alone
        assert_int_equal (zq_msg_set_header (copy, "trace", "other"), 0);
        assert_int_equal (zq_msg_set_subject (copy, "elsewhere"), 0);
        assert_int_equal (zq_msg_set_body (copy, "\x07", 1), 0);
        assert_string_equal (zq_msg_header (msg, "trace"), "t-1");
        assert_string_equal (zq_msg_subject (msg), "payments");
        size_t size;
        zq_msg_body (msg, &size);
        assert_int_equal (size, sizes[index] ? sizes[index] : 1);
        zq_msg_destroy (&copy);
        zq_msg_destroy (&msg);
    }
}

//  ---- Wire round trips ---------------------------------------------------

static void
test_encode_decode (void **state)
{
    size_t sizes[] = {0, 100, ZQ_MSG_ZEROCOPY_MIN - 1, ZQ_MSG_ZEROCOPY_MIN, 300000};
    for (size_t index = 0; index < sizeof sizes / sizeof sizes[0]; index++) {
        zq_msg_t *msg = make_msg (sizes[index]);
        zq_msg_t *copy = zq_msg_dup (msg);
        zmsg_t *frames = zmsg_new ();
        assert_int_equal (zq_msg_encode (&copy, frames), 0);
        assert_null (copy);
        bool two_frames = sizes[index] >= ZQ_MSG_ZEROCOPY_MIN;
        assert_int_equal (zmsg_size (frames), two_frames ? 2 : 1);
        //  the header starts as the protocol says, with the shortest forms
        zframe_t *first = zmsg_first (frames);
        const uint8_t *bytes = zframe_data (first);
        assert_int_equal (bytes[0], 0x96);
        assert_int_equal (bytes[1], 0x01);
        assert_int_equal (bytes[2], 0xc4);
        assert_int_equal (bytes[3], 0x10);
        assert_memory_equal (bytes + 4, zq_msg_id (msg), ZQ_MSG_ID_SIZE);
        assert_int_equal (bytes[20], 0xa8); //  fixstr "payments"
        assert_memory_equal (bytes + 21, "payments", 8);
        assert_int_equal (bytes[29], 0xcf); //  created_ms needs 8 bytes
        assert_int_equal (bytes[38], 0xce); //  attempt 70000 needs 4
        size_t body_size;
        const void *body = zq_msg_body (msg, &body_size);
        if (two_frames) {
            zframe_t *second = zmsg_next (frames);
            assert_int_equal (zframe_size (second), body_size);
            assert_memory_equal (zframe_data (second), body, body_size);
        } else {
            assert_memory_equal (bytes + zframe_size (first) - body_size, body, body_size);
        }

        //  the same frames through decode_buffers
        const void *buffers[2];
        size_t buffer_sizes[2];
        size_t count = 0;
        for (zframe_t *frame = zmsg_first (frames); frame; frame = zmsg_next (frames)) {
            buffers[count] = zframe_data (frame);
            buffer_sizes[count++] = zframe_size (frame);
        }
        zq_msg_t *decoded = zq_msg_decode_buffers (buffers, buffer_sizes, count, 0);
        assert_non_null (decoded);
        assert_same (msg, decoded);
        zq_msg_destroy (&decoded);

        //  and through decode, which empties the zmsg
        decoded = zq_msg_decode (frames, 0);
        assert_non_null (decoded);
        assert_int_equal (zmsg_size (frames), 0);
        assert_same (msg, decoded);
        zq_msg_destroy (&decoded);
        zmsg_destroy (&frames);
        zq_msg_destroy (&msg);
    }
}

static void
test_either_form_any_size (void **state)
{
    //  a small body in two frames
    buf_t *header = calloc (1, sizeof (buf_t));
    buf_t *body = calloc (1, sizeof (buf_t));
    put_header (header);
    put_body (body);
    assert_int_equal (decode_two_error (header, body), 0);
    //  a large body in one frame
    buf_t *whole = calloc (1, sizeof (buf_t));
    put_header (whole);
    put_byte (whole, 0xc5);
    put_be (whole, 20000, 2);
    for (int index = 0; index < 20000; index++)
        put_byte (whole, (uint8_t)index);
    const void *frames[1] = {whole->data};
    size_t sizes[1] = {whole->size};
    zq_msg_t *msg = zq_msg_decode_buffers (frames, sizes, 1, 0);
    assert_non_null (msg);
    assert_memory_equal (zq_msg_id (msg), s_id, ZQ_MSG_ID_SIZE);
    assert_string_equal (zq_msg_subject (msg), "orders");
    assert_true (zq_msg_created_ms (msg) == 1700000000000ll);
    assert_int_equal (zq_msg_attempt (msg), 3);
    assert_string_equal (zq_msg_header (msg, "k"), "v");
    size_t body_size;
    const uint8_t *data = zq_msg_body (msg, &body_size);
    assert_int_equal (body_size, 20003);
    assert_int_equal (data[0], 0xc5);
    zq_msg_destroy (&msg);
    free (header);
    free (body);
    free (whole);
}

static void
test_longer_encodings_accepted (void **state)
{
    //  array16 marker, version as uint8, id as bin16, subject as str16,
    //  created as int64, attempt as uint32, headers as map16
    buf_t *buf = calloc (1, sizeof (buf_t));
    put (buf, "\xdc\x00\x06", 3);
    put (buf, "\xcc\x01", 2);
    put (buf, "\xc5\x00\x10", 3);
    put (buf, s_id, sizeof s_id);
    put (buf, "\xda\x00\x02hi", 5);
    put_byte (buf, 0xd3);
    put_be (buf, 42, 8);
    put (buf, "\xce\x00\x00\x00\x05", 5);
    put (buf, "\xde\x00\x01\xd9\x01k\xa0", 7);
    put_body (buf);
    const void *frames[1] = {buf->data};
    size_t sizes[1] = {buf->size};
    zq_msg_t *msg = zq_msg_decode_buffers (frames, sizes, 1, 0);
    assert_non_null (msg);
    assert_string_equal (zq_msg_subject (msg), "hi");
    assert_true (zq_msg_created_ms (msg) == 42);
    assert_int_equal (zq_msg_attempt (msg), 5);
    assert_string_equal (zq_msg_header (msg, "k"), "");
    zq_msg_destroy (&msg);
    free (buf);
}

static void
test_extension_elements (void **state)
{
    //  a header of eight elements: the two extra ones are skipped
    buf_t *buf = calloc (1, sizeof (buf_t));
    put_byte (buf, 0x98);
    put_byte (buf, 0x01);
    put_fields (buf);
    put (buf, "\x82\xa1x\x91\x01\xa1y\xc0", 8);
    put_str (buf, "later");
    put_body (buf);
    assert_int_equal (decode_error (buf, 0), 0);
    //  an extension element must itself be good msgpack
    buf->size = 0;
    put_byte (buf, 0x97);
    put_byte (buf, 0x01);
    put_fields (buf);
    put_byte (buf, 0xc1);
    put_body (buf);
    assert_int_equal (decode_error (buf, 0), ZQ_EPROTO);
    //  ... within the depth limit
    buf->size = 0;
    put_byte (buf, 0x97);
    put_byte (buf, 0x01);
    put_fields (buf);
    for (int level = 0; level <= ZQ_MSG_MAX_DEPTH; level++)
        put_byte (buf, 0x91);
    put_byte (buf, 0xc0);
    put_body (buf);
    assert_int_equal (decode_error (buf, 0), ZQ_EDEPTH);
    free (buf);
}

static zsock_t *
s_pair (zsock_t **peer_p, const char *endpoint)
{
    char bind[64], connect[64];
    snprintf (bind, sizeof bind, "@%s", endpoint);
    snprintf (connect, sizeof connect, ">%s", endpoint);
    zsock_t *server = zsock_new_pair (bind);
    zsock_t *client = zsock_new_pair (connect);
    assert_non_null (server);
    assert_non_null (client);
    zsock_set_rcvtimeo (server, 5000);
    zsock_set_rcvtimeo (client, 5000);
    zsock_set_sndtimeo (server, 5000);
    zsock_set_sndtimeo (client, 5000);
    *peer_p = client;
    return server;
}

static void
test_send_recv (void **state)
{
    zsock_t *client;
    zsock_t *server = s_pair (&client, "inproc://test-send-recv");
    size_t sizes[] = {0, 100, ZQ_MSG_ZEROCOPY_MIN, 500000};
    for (size_t index = 0; index < sizeof sizes / sizeof sizes[0]; index++) {
        zq_msg_t *msg = make_msg (sizes[index]);
        zq_msg_t *copy = zq_msg_dup (msg);
        //  zsock_t, and a raw libzmq socket on the other side
        assert_int_equal (zq_msg_send (&copy, client, 0), 0);
        assert_null (copy);
        zq_msg_t *received = zq_msg_recv (zsock_resolve (server), 0, 0);
        assert_non_null (received);
        assert_same (msg, received);
        //  a received message goes on again unchanged (back to the client)
        assert_int_equal (zq_msg_send (&received, server, 0), 0);
        received = zq_msg_recv (client, 0, 0);
        assert_non_null (received);
        assert_same (msg, received);
        zq_msg_destroy (&received);

        //  the frames on the wire: one, or two for a large body
        copy = zq_msg_dup (msg);
        assert_int_equal (zq_msg_send (&copy, client, 0), 0);
        zmsg_t *frames = zmsg_recv (server);
        assert_non_null (frames);
        assert_int_equal (zmsg_size (frames), sizes[index] >= ZQ_MSG_ZEROCOPY_MIN ? 2 : 1);
        received = zq_msg_decode (frames, 0);
        assert_non_null (received);
        assert_same (msg, received);
        zq_msg_destroy (&received);
        zmsg_destroy (&frames);
        zq_msg_destroy (&msg);
    }
    zsock_destroy (&client);
    zsock_destroy (&server);
}

static void
test_send_failure_keeps_message (void **state)
{
    //  a PUSH socket with no peer cannot send without waiting
    zsock_t *push = zsock_new_push ("@inproc://test-no-peer");
    assert_non_null (push);
    zsock_t *client;
    zsock_t *server = s_pair (&client, "inproc://test-send-failure");
    size_t sizes[] = {100, ZQ_MSG_ZEROCOPY_MIN * 4};
    for (size_t index = 0; index < 2; index++) {
        zq_msg_t *msg = make_msg (sizes[index]);
        zq_msg_t *expected = zq_msg_dup (msg);
        assert_int_equal (zq_msg_send (&msg, push, ZMQ_DONTWAIT), -1);
        assert_int_equal (errno, EAGAIN);
        assert_non_null (msg);
        assert_same (expected, msg);
        //  a received message (its body inside the received frame) too
        assert_int_equal (zq_msg_send (&msg, client, 0), 0);
        msg = zq_msg_recv (server, 0, 0);
        assert_non_null (msg);
        assert_int_equal (zq_msg_send (&msg, push, ZMQ_DONTWAIT), -1);
        assert_int_equal (errno, EAGAIN);
        assert_same (expected, msg);
        //  and still sends afterwards
        assert_int_equal (zq_msg_send (&msg, server, 0), 0);
        msg = zq_msg_recv (client, 0, 0);
        assert_non_null (msg);
        assert_same (expected, msg);
        zq_msg_destroy (&msg);
        zq_msg_destroy (&expected);
    }
    zsock_destroy (&push);
    zsock_destroy (&client);
    zsock_destroy (&server);
}

static void
test_recv_errors_keep_socket_usable (void **state)
{
    zsock_t *client;
    zsock_t *server = s_pair (&client, "inproc://test-recv-errors");
    void *raw = zsock_resolve (client);
    //  nothing there
    assert_null (zq_msg_recv (server, ZMQ_DONTWAIT, 0));
    assert_int_equal (errno, EAGAIN);

    buf_t *buf = calloc (1, sizeof (buf_t));
    put_header (buf);
    put_body (buf);
    for (int round = 0; round < 6; round++) {
        size_t max_size = 0;
        int expected = 0;
        switch (round) {
            case 0: //  one frame over the limit
                zmq_send (raw, buf->data, buf->size, 0);
                max_size = buf->size - 1;
                expected = ZQ_ETOOBIG;
                break;
            case 1: //  over the limit on the second of three frames
                zmq_send (raw, buf->data, 10, ZMQ_SNDMORE);
                zmq_send (raw, buf->data, buf->size, ZMQ_SNDMORE);
                zmq_send (raw, buf->data, buf->size, 0);
                max_size = buf->size;
                expected = ZQ_ETOOBIG;
                break;
            case 2: //  three frames
                zmq_send (raw, buf->data, buf->size, ZMQ_SNDMORE);
                zmq_send (raw, "\xc0", 1, ZMQ_SNDMORE);
                zmq_send (raw, "\xc0", 1, 0);
                expected = ZQ_EPROTO;
                break;
            case 3: //  malformed
                zmq_send (raw, buf->data, buf->size - 1, 0);
                expected = ZQ_EPROTO;
                break;
            case 4: //  the two-frame form over the limit (default 1 MiB)
            {
                size_t big = ZQ_MSG_MAX_SIZE_DEFAULT;
                uint8_t *body = calloc (1, big);
                body[0] = 0xc6;
                body[1] = (uint8_t)((big - 5) >> 24);
                body[2] = (uint8_t)((big - 5) >> 16);
                body[3] = (uint8_t)((big - 5) >> 8);
                body[4] = (uint8_t)(big - 5);
                zmq_send (raw, buf->data, buf->size - 4, ZMQ_SNDMORE);
                zmq_send (raw, body, big, 0);
                free (body);
                expected = ZQ_ETOOBIG;
                break;
            }
            case 5: //  unknown version
                zmq_send (raw, "\x96\x02", 2, 0);
                expected = ZQ_EVERSION;
                break;
        }
        errno = 0;
        assert_null (zq_msg_recv (server, 0, max_size));
        assert_int_equal (errno, expected);
        //  a good message right after is received intact
        zq_msg_t *msg = make_msg (100);
        zq_msg_t *copy = zq_msg_dup (msg);
        assert_int_equal (zq_msg_send (&copy, client, 0), 0);
        zq_msg_t *received = zq_msg_recv (server, 0, 0);
        assert_non_null (received);
        assert_same (msg, received);
        zq_msg_destroy (&received);
        zq_msg_destroy (&msg);
    }
    free (buf);
    zsock_destroy (&client);
    zsock_destroy (&server);
}

//  ---- Bad input ----------------------------------------------------------

static void
test_truncated_everywhere (void **state)
{
    buf_t *buf = calloc (1, sizeof (buf_t));
    put_header (buf);
    put_body (buf);
    size_t full = buf->size;
    assert_int_equal (decode_error (buf, 0), 0);
    for (size_t size = 0; size < full; size++) {
        buf->size = size;
        assert_int_equal (decode_error (buf, 0), ZQ_EPROTO);
    }
    //  and the header alone as the first of two frames, cut anywhere
    buf_t *body = calloc (1, sizeof (buf_t));
    put_body (body);
    size_t header_size = full - body->size;
    for (size_t size = 0; size < header_size; size++) {
        buf->size = size;
        assert_int_equal (decode_two_error (buf, body), ZQ_EPROTO);
    }
    free (body);
    free (buf);
}

static void
test_too_big (void **state)
{
    buf_t *buf = calloc (1, sizeof (buf_t));
    put_header (buf);
    put_body (buf);
    assert_int_equal (decode_error (buf, buf->size), 0);
    assert_int_equal (decode_error (buf, buf->size - 1), ZQ_ETOOBIG);
    //  checked before parsing: garbage over the limit is "too big"
    buf->data[0] = 0xc1;
    assert_int_equal (decode_error (buf, 8), ZQ_ETOOBIG);
    //  the sum of both frames counts
    buf_t *header = calloc (1, sizeof (buf_t));
    buf_t *body = calloc (1, sizeof (buf_t));
    put_header (header);
    put_body (body);
    const void *frames[2] = {header->data, body->data};
    size_t sizes[2] = {header->size, body->size};
    zq_msg_t *msg = zq_msg_decode_buffers (frames, sizes, 2, header->size + body->size - 1);
    assert_null (msg);
    assert_int_equal (errno, ZQ_ETOOBIG);
    //  decode too, leaving the zmsg empty
    zmsg_t *zmsg = zmsg_new ();
    zmsg_addmem (zmsg, header->data, header->size);
    zmsg_addmem (zmsg, body->data, body->size);
    assert_null (zq_msg_decode (zmsg, header->size));
    assert_int_equal (errno, ZQ_ETOOBIG);
    assert_int_equal (zmsg_size (zmsg), 0);
    zmsg_destroy (&zmsg);
    free (header);
    free (body);
    free (buf);
}

static void
test_frame_count (void **state)
{
    buf_t *buf = calloc (1, sizeof (buf_t));
    put_header (buf);
    put_body (buf);
    const void *frames[3] = {buf->data, "\xc0", "\xc0"};
    size_t sizes[3] = {buf->size, 1, 1};
    assert_null (zq_msg_decode_buffers (frames, sizes, 0, 0));
    assert_int_equal (errno, ZQ_EPROTO);
    assert_null (zq_msg_decode_buffers (frames, sizes, 3, 0));
    assert_int_equal (errno, ZQ_EPROTO);
    //  a one-frame envelope followed by a body frame: trailing header bytes
    assert_null (zq_msg_decode_buffers (frames, sizes, 2, 0));
    assert_int_equal (errno, ZQ_EPROTO);

    zmsg_t *zmsg = zmsg_new ();
    assert_null (zq_msg_decode (zmsg, 0));
    assert_int_equal (errno, ZQ_EPROTO);
    for (int index = 0; index < 3; index++)
        zmsg_addmem (zmsg, frames[index], sizes[index]);
    assert_null (zq_msg_decode (zmsg, 0));
    assert_int_equal (errno, ZQ_EPROTO);
    assert_int_equal (zmsg_size (zmsg), 0);
    zmsg_destroy (&zmsg);
    free (buf);
}

static void
test_version (void **state)
{
    buf_t *buf = calloc (1, sizeof (buf_t));
    //  version 2, whatever follows
    put (buf, "\x96\x02", 2);
    assert_int_equal (decode_error (buf, 0), ZQ_EVERSION);
    put (buf, "\xc1\xc1", 2);
    assert_int_equal (decode_error (buf, 0), ZQ_EVERSION);
    //  version 2 with a good rest
    buf->size = 0;
    put_byte (buf, 0x96);
    put_byte (buf, 0x02);
    put_fields (buf);
    put_body (buf);
    assert_int_equal (decode_error (buf, 0), ZQ_EVERSION);
    //  version 0, as uint16
    buf->size = 0;
    put (buf, "\x91\xcd\x00\x00", 4);
    assert_int_equal (decode_error (buf, 0), ZQ_EVERSION);
    //  not an array, an empty array, a version that is no integer or < 0
    const char *bad[] = {"\x81\x01\x01",
                         "\x90",
                         "\x96\xa1"
                         "1",
                         "\x96\xff",
                         "\x96\xd0\xff",
                         "\x96\xc0",
                         "\x96\xc1"};
    size_t bad_sizes[] = {3, 1, 3, 2, 3, 2, 2};
    for (size_t index = 0; index < sizeof bad / sizeof bad[0]; index++) {
        buf->size = 0;
        put (buf, bad[index], bad_sizes[index]);
        assert_int_equal (decode_error (buf, 0), ZQ_EPROTO);
    }
    //  version 1 needs 6 to 16 elements
    for (int elements = 5; elements <= 17; elements += 12) {
        buf->size = 0;
        put_byte (buf, 0xdc);
        put_be (buf, (uint64_t)elements, 2);
        put_byte (buf, 0x01);
        put_fields (buf);
        for (int index = 6; index < elements; index++)
            put_byte (buf, 0xc0);
        put_body (buf);
        assert_int_equal (decode_error (buf, 0), ZQ_EPROTO);
    }
    free (buf);
}

//  Builds a header whose field number field is replaced by the bytes given.
static void
put_header_with (buf_t *buf, int field, const void *bytes, size_t size)
{
    buf->size = 0;
    put_byte (buf, 0x96);
    put_byte (buf, 0x01);
    if (field == 1)
        put (buf, bytes, size);
    else
        put_id (buf);
    if (field == 2)
        put (buf, bytes, size);
    else
        put_str (buf, "orders");
    if (field == 3)
        put (buf, bytes, size);
    else
        put_byte (buf, 0x05);
    if (field == 4)
        put (buf, bytes, size);
    else
        put_byte (buf, 0x00);
    if (field == 5)
        put (buf, bytes, size);
    else
        put_byte (buf, 0x80);
    put_body (buf);
}

static void
test_field_types (void **state)
{
    buf_t *buf = calloc (1, sizeof (buf_t));
    buf_t *field = calloc (1, sizeof (buf_t));
    struct {
        int field;
        const char *bytes;
        size_t size;
    } bad[] = {
        {1,
         "\xc4\x0f"
         "123456789012345",
         17}, //  id of 15 bytes
        {1,
         "\xc4\x11"
         "12345678901234567",
         19}, //  id of 17 bytes
        {1,
         "\xb0"
         "1234567890123456",
         17},                                           //  id as str
        {1, "\xc6\xff\xff\xff\xff", 5},                 //  id bin32 of 4 GiB
        {2, "\xc4\x01x", 3},                            //  subject as bin
        {2, "\x01", 1},                                 //  subject as int
        {2, "\xdb\xff\xff\xff\xff", 5},                 //  subject of 4 GiB
        {3, "\xff", 1},                                 //  created_ms < 0
        {3, "\xd3\xff\xff\xff\xff\xff\xff\xff\xff", 9}, //  created_ms -1 as int64
        {3, "\xcf\x80\x00\x00\x00\x00\x00\x00\x00", 9}, //  created_ms > INT64_MAX
        {3,
         "\xa1"
         "5",
         2},                                            //  created_ms as str
        {3, "\xcb\x40\x14\x00\x00\x00\x00\x00\x00", 9}, //  created_ms as double
        {4, "\xcf\x00\x00\x00\x01\x00\x00\x00\x00", 9}, //  attempt 2^32
        {4, "\xc2", 1},                                 //  attempt as bool
        {5, "\x90", 1},                                 //  headers as array
        {5, "\xc0", 1},                                 //  headers nil
        {5, "\x81\xa0\xa1v", 4},                        //  empty key
        {5, "\x81\x01\xa1v", 4},                        //  int key
        {5, "\x81\xa1k\x01", 4},                        //  int value
        {5, "\x81\xa1k\xc4\x01v", 6},                   //  bin value
        {5, "\x82\xa1k\xa1v\xa1k\xa1w", 9},             //  duplicate key
        {5, "\xdf\xff\xff\xff\xff", 5},                 //  map32 of 2^32-1 pairs
        {5, "\xde\x00\x10\xa1k\xa1v", 7},               //  map16 with too few bytes
        {5, "\x81\xa1k\xc1", 4},                        //  reserved byte
    };
    for (size_t index = 0; index < sizeof bad / sizeof bad[0]; index++) {
        put_header_with (buf, bad[index].field, bad[index].bytes, bad[index].size);
        assert_int_equal (decode_error (buf, 0), ZQ_EPROTO);
    }
    //  limits: 4096-byte subject, key and value and 64 headers are fine;
    //  one more byte, or one more header, is not
    for (int over = 0; over <= 1; over++) {
        char *text = malloc (ZQ_MSG_MAX_STRING + 2);
        memset (text, 'a', ZQ_MSG_MAX_STRING + over);
        text[ZQ_MSG_MAX_STRING + over] = 0;
        for (int which = 0; which < 3; which++) {
            field->size = 0;
            if (which == 0)
                put_str (field, text);
            else {
                put_byte (field, 0x81);
                put_str (field, which == 1 ? text : "k");
                put_str (field, which == 2 ? text : "v");
            }
            put_header_with (buf, which == 0 ? 2 : 5, field->data, field->size);
            assert_int_equal (decode_error (buf, 0), over ? ZQ_EPROTO : 0);
        }
        free (text);
        field->size = 0;
        int count = ZQ_MSG_MAX_HEADERS + over;
        put_byte (field, 0xde);
        put_be (field, (uint64_t)count, 2);
        for (int index = 0; index < count; index++) {
            char name[8];
            snprintf (name, sizeof name, "h%d", index);
            put_str (field, name);
            put_str (field, "");
        }
        put_header_with (buf, 5, field->data, field->size);
        assert_int_equal (decode_error (buf, 0), over ? ZQ_EPROTO : 0);
    }
    //  attempt 2^32-1 is fine
    put_header_with (buf, 4, "\xce\xff\xff\xff\xff", 5);
    assert_int_equal (decode_error (buf, 0), 0);
    free (field);
    free (buf);
}

static void
test_bad_body (void **state)
{
    buf_t *buf = calloc (1, sizeof (buf_t));
    struct {
        const char *bytes;
        size_t size;
    } bad[] = {
        {"", 0},                     //  missing body
        {"\x01\x02", 2},             //  trailing bytes
        {"\xc1", 1},                 //  reserved byte
        {"\x92\x01\xc1", 3},         //  reserved byte inside
        {"\xdd\xff\xff\xff\xff", 5}, //  array32 of 2^32-1
        {"\xdb\xff\xff\xff\xff"
         "abc",
         8},                                 //  str32 of 4 GiB
        {"\xde\x00\x10\x01\x01\x01\x01", 7}, //  map16 with too few bytes
        {"\xc6\x00\x01\x00\x00"
         "ab",
         7},                                 //  bin32 longer than the rest
        {"\xdf\x80\x00\x00\x00\x01\x01", 7}, //  map32 of 2^31 pairs
    };
    for (size_t index = 0; index < sizeof bad / sizeof bad[0]; index++) {
        buf->size = 0;
        put_header (buf);
        put (buf, bad[index].bytes, bad[index].size);
        assert_int_equal (decode_error (buf, 0), ZQ_EPROTO);
        //  in two-frame form as well
        buf_t *header = calloc (1, sizeof (buf_t));
        buf_t *body = calloc (1, sizeof (buf_t));
        put_header (header);
        put (body, bad[index].bytes, bad[index].size);
        assert_int_equal (decode_two_error (header, body), ZQ_EPROTO);
        free (header);
        free (body);
    }
    free (buf);
}

static void
test_strerror (void **state)
{
    int codes[] = {ZQ_EPROTO, ZQ_ETOOBIG,  ZQ_EVERSION, ZQ_EDEPTH,    ZQ_EJSON,
                   ZQ_ETYPE,  ZQ_ECORRUPT, ZQ_EFULL,    ZQ_ETIMEDOUT, ZQ_ENOTFOUND};
    const char *unknown = zq_strerror (ZQ_ERRNO_BASE + 999);
    assert_non_null (unknown);
    for (size_t index = 0; index < sizeof codes / sizeof codes[0]; index++) {
        const char *text = zq_strerror (codes[index]);
        assert_non_null (text);
        assert_true (strlen (text) > 0);
        assert_string_not_equal (text, unknown);
        for (size_t other = 0; other < index; other++)
            assert_string_not_equal (text, zq_strerror (codes[other]));
    }
    assert_string_equal (zq_strerror (EAGAIN), strerror (EAGAIN));
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_new_defaults),
        cmocka_unit_test (test_subject_limits),
        cmocka_unit_test (test_ids_sort_by_creation),
        cmocka_unit_test (test_ids_fresh_random),
        cmocka_unit_test (test_ids_differ_between_threads),
        cmocka_unit_test (test_headers),
        cmocka_unit_test (test_body),
        cmocka_unit_test (test_depth),
        cmocka_unit_test (test_dup),
        cmocka_unit_test (test_encode_decode),
        cmocka_unit_test (test_either_form_any_size),
        cmocka_unit_test (test_longer_encodings_accepted),
        cmocka_unit_test (test_extension_elements),
        cmocka_unit_test (test_send_recv),
        cmocka_unit_test (test_send_failure_keeps_message),
        cmocka_unit_test (test_recv_errors_keep_socket_usable),
        cmocka_unit_test (test_truncated_everywhere),
        cmocka_unit_test (test_too_big),
        cmocka_unit_test (test_frame_count),
        cmocka_unit_test (test_version),
        cmocka_unit_test (test_field_types),
        cmocka_unit_test (test_bad_body),
        cmocka_unit_test (test_strerror),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
