/*  =========================================================================
    test_zq_wire - the shared buffer, msgpack writer and command-frame
    header (src/zq_wire.c): every value is written byte for byte as
    msgpack-c writes it, both ways of writing agree, and command headers
    read back with the errors doc/PROTOCOL.md names.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "../src/zq_internal.h"
#include <msgpack.h>
#include "compiled_in.h"

//  Values at each boundary of the msgpack encodings, and beside it.
static const uint64_t s_uints[] = {0,      1,       0x7f,        0x80,           0xff,      0x100,
                                   0xffff, 0x10000, 0xffffffffu, 0x100000000ull, UINT64_MAX};
static const int64_t s_ints[] = {0,         -1,     -32,      -33,       -128,
                                 -129,      -32768, -32769,   INT32_MIN, (int64_t)INT32_MIN - 1,
                                 INT64_MIN, 127,    INT64_MAX};
static const size_t s_sizes[] = {0, 1, 31, 32, 255, 256, 65535, 65536};

//  Checks that buf holds exactly what msgpack-c wrote in sbuf, then empties both.
static void
s_same (zqi_buf_t *buf, msgpack_sbuffer *sbuf)
{
    assert_int_equal (buf->size, sbuf->size);
    assert_memory_equal (buf->data, sbuf->data, sbuf->size);
    zqi_buf_reset (buf);
    msgpack_sbuffer_clear (sbuf);
}

static void
test_writer_matches_msgpack_c (void **state)
{
    (void)state;
    zqi_buf_t buf = {0};
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &sbuf, msgpack_sbuffer_write);
    uint8_t direct[16];
    for (size_t i = 0; i < sizeof s_uints / sizeof s_uints[0]; i++) {
        assert_int_equal (zqi_mp_put_uint (&buf, s_uints[i]), 0);
        msgpack_pack_uint64 (&packer, s_uints[i]);
        uint8_t *end = zqi_mp_write_uint (direct, s_uints[i]);
        assert_int_equal ((size_t)(end - direct), zqi_mp_uint_size (s_uints[i]));
        assert_memory_equal (direct, buf.data, buf.size);
        s_same (&buf, &sbuf);
    }
    for (size_t i = 0; i < sizeof s_ints / sizeof s_ints[0]; i++) {
        assert_int_equal (zqi_mp_put_int (&buf, s_ints[i]), 0);
        msgpack_pack_int64 (&packer, s_ints[i]);
        s_same (&buf, &sbuf);
    }
    char *bytes = (char *)calloc (1, 65536);
    assert_non_null (bytes);
    for (size_t i = 0; i < sizeof s_sizes / sizeof s_sizes[0]; i++) {
        size_t size = s_sizes[i];
        assert_int_equal (zqi_mp_put_str (&buf, bytes, size), 0);
        assert_int_equal (buf.size, zqi_mp_str_size (size));
        msgpack_pack_str_with_body (&packer, bytes, size);
        s_same (&buf, &sbuf);
        assert_int_equal (zqi_mp_put_bin (&buf, bytes, size), 0);
        assert_int_equal (buf.size, zqi_mp_bin_size (size));
        msgpack_pack_bin_with_body (&packer, bytes, size);
        s_same (&buf, &sbuf);
        if (size <= UINT32_MAX) {
            assert_int_equal (zqi_mp_put_array (&buf, (uint32_t)size), 0);
            assert_int_equal (buf.size, zqi_mp_array_size ((uint32_t)size));
            msgpack_pack_array (&packer, size);
            s_same (&buf, &sbuf);
            assert_int_equal (zqi_mp_put_map (&buf, (uint32_t)size), 0);
            msgpack_pack_map (&packer, size);
            s_same (&buf, &sbuf);
        }
    }
    free (bytes);
    msgpack_sbuffer_destroy (&sbuf);
    zqi_buf_free (&buf);
    assert_null (buf.data);
}

//  Reading back what was written: signed integers of every width.
static void
test_int_roundtrip (void **state)
{
    (void)state;
    zqi_buf_t buf = {0};
    for (size_t i = 0; i < sizeof s_ints / sizeof s_ints[0]; i++) {
        zqi_buf_reset (&buf);
        assert_int_equal (zqi_mp_put_int (&buf, s_ints[i]), 0);
        zqi_cursor_t cursor = {buf.data, buf.data + buf.size};
        int64_t value = 0;
        assert_int_equal (zqi_mp_read_int (&cursor, &value), 0);
        assert_true (value == s_ints[i]);
        assert_ptr_equal (cursor.pos, cursor.end);
        //  One byte short: an error, the cursor where it was.
        if (buf.size > 1) {
            cursor.pos = buf.data;
            cursor.end = buf.data + buf.size - 1;
            assert_int_equal (zqi_mp_read_int (&cursor, &value), -1);
            assert_int_equal (errno, ZQ_EPROTO);
            assert_ptr_equal (cursor.pos, buf.data);
        }
    }
    //  A uint64 above INT64_MAX is no int64.
    zqi_buf_reset (&buf);
    assert_int_equal (zqi_mp_put_uint (&buf, UINT64_MAX), 0);
    zqi_cursor_t cursor = {buf.data, buf.data + buf.size};
    int64_t value;
    assert_int_equal (zqi_mp_read_int (&cursor, &value), -1);
    assert_int_equal (errno, ZQ_EPROTO);
    zqi_buf_free (&buf);
}

//  Parses data as a command frame of version 1 that knows its first
//  known elements; returns 0 or the errno.
static int
s_parse (const uint8_t *data, size_t size, uint32_t known, uint64_t *kind_p)
{
    zqi_cursor_t cursor = {data, data + size};
    uint32_t elements;
    if (zqi_wire_command_read (&cursor, 1, &elements, kind_p))
        return errno;
    for (uint32_t index = 2; index < known && index < elements; index++)
        if (zqi_mp_skip (&cursor, 8))
            return errno;
    if (zqi_wire_command_end (&cursor, known < elements ? known : elements, elements, 8))
        return errno;
    return 0;
}

static void
test_command_header (void **state)
{
    (void)state;
    zqi_buf_t buf = {0};
    //  Written both ways, the same bytes: [1, 7, "x"].
    assert_int_equal (zqi_wire_command_put (&buf, 3, 1, 7), 0);
    assert_int_equal (zqi_mp_put_str (&buf, "x", 1), 0);
    const uint8_t expected[] = {0x93, 0x01, 0x07, 0xa1, 'x'};
    assert_int_equal (buf.size, sizeof expected);
    assert_memory_equal (buf.data, expected, sizeof expected);
    uint8_t direct[8];
    assert_int_equal (zqi_wire_command_write (direct, 3, 1, 7) - direct,
                      (long)zqi_wire_command_size (3, 1, 7));
    assert_memory_equal (direct, expected, 3);
    uint64_t kind = 0;
    assert_int_equal (s_parse (buf.data, buf.size, 3, &kind), 0);
    assert_int_equal (kind, 7);
    //  Elements a reader does not know are skipped (a newer peer's).
    assert_int_equal (s_parse (buf.data, buf.size, 2, &kind), 0);
    //  put empties the buffer first.
    assert_int_equal (zqi_wire_command_put (&buf, 2, 1, 10), 0);
    assert_int_equal (buf.size, 3);

    struct {
        uint8_t bytes[24];
        size_t size;
        int errnum;
    } cases[] = {
        {{0x92, 0x01, 0x05}, 3, 0},
        {{0x92, 0x02, 0x05}, 3, ZQ_EVERSION},
        //  Another version is reported as such, before the count is held
        //  against the limit or the bytes present.
        {{0x9f, 0x02}, 2, ZQ_EVERSION},
        {{0xdc, 0x00, 0x11, 0x01, 0x05}, 5, ZQ_EPROTO}, //  17 elements
        {{0x91, 0x01}, 2, ZQ_EPROTO},                   //  no kind
        {{0x90}, 1, ZQ_EPROTO},
        {{0x92, 0x01, 0xa1, 'x'}, 4, ZQ_EPROTO},  //  kind not an integer
        {{0x92, 0x01, 0x05, 0x00}, 4, ZQ_EPROTO}, //  trailing byte
        {{0x93, 0x01, 0x05}, 3, ZQ_EPROTO},       //  element missing
        {{0x82, 0x01, 0x05}, 3, ZQ_EPROTO},       //  a map
        {{0}, 0, ZQ_EPROTO},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        print_message ("case %zu\n", i);
        assert_int_equal (s_parse (cases[i].bytes, cases[i].size, 3, &kind), cases[i].errnum);
    }
    zqi_buf_free (&buf);
}

//  bin and str of each size class read back what was written, up to the
//  cursor's end and no further; cut short anywhere (in the marker, the
//  length, the octets), or of the other kind, they fail with ZQ_EPROTO
//  and leave the cursor where it was.
static void
test_bytes_read_back (void **state)
{
    (void)state;
    zqi_buf_t buf = {0};
    for (size_t n = 0; n < sizeof s_sizes / sizeof s_sizes[0]; n++) {
        size_t size = s_sizes[n];
        uint8_t *bytes = (uint8_t *)malloc (size + 1);
        for (size_t i = 0; i < size; i++)
            bytes[i] = (uint8_t)('a' + i % 26);
        for (int as_str = 0; as_str < 2; as_str++) {
            zqi_buf_reset (&buf);
            if (as_str)
                assert_int_equal (zqi_mp_put_str (&buf, (const char *)bytes, size), 0);
            else
                assert_int_equal (zqi_mp_put_bin (&buf, bytes, size), 0);
            size_t header = buf.size - size;
            //  Whole: read back, the cursor at its end.
            zqi_cursor_t cursor = {buf.data, buf.data + buf.size};
            const uint8_t *data = NULL;
            const char *text = NULL;
            uint32_t got = UINT32_MAX;
            int rc = as_str ? zqi_mp_read_str (&cursor, &text, &got)
                            : zqi_mp_read_bin (&cursor, &data, &got);
            assert_int_equal (rc, 0);
            assert_int_equal (got, size);
            assert_ptr_equal (as_str ? (const uint8_t *)text : data, buf.data + header);
            assert_ptr_equal (cursor.pos, buf.data + buf.size);
            //  Of the other kind: refused.
            cursor.pos = buf.data;
            rc = as_str ? zqi_mp_read_bin (&cursor, &data, &got)
                        : zqi_mp_read_str (&cursor, &text, &got);
            assert_int_equal (rc, -1);
            assert_int_equal (errno, ZQ_EPROTO);
            assert_ptr_equal (cursor.pos, buf.data);
            //  One octet short, and cut inside the marker and length.
            size_t cuts[] = {buf.size - 1, header, header > 1 ? header - 1 : 0, 1, 0};
            for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
                if (cuts[c] >= buf.size)
                    continue;
                zqi_cursor_t cut = {buf.data, buf.data + cuts[c]};
                errno = 0;
                rc = as_str ? zqi_mp_read_str (&cut, &text, &got)
                            : zqi_mp_read_bin (&cut, &data, &got);
                if (rc != -1 || errno != ZQ_EPROTO || cut.pos != buf.data)
                    fail_msg ("%s of %zu octets cut to %zu: rc %d", as_str ? "str" : "bin", size,
                              cuts[c], rc);
            }
        }
        free (bytes);
    }
    zqi_buf_free (&buf);
}

//  The buffer grows by doubling and keeps what it holds; reset keeps its memory.
static void
test_buffer (void **state)
{
    (void)state;
    zqi_buf_t buf = {0};
    for (uint32_t i = 0; i < 10000; i++)
        assert_int_equal (zqi_buf_append (&buf, &i, sizeof i), 0);
    assert_int_equal (buf.size, 40000);
    assert_true (buf.capacity >= 40000 && buf.capacity < 80000);
    for (uint32_t i = 0; i < 10000; i++) {
        uint32_t value;
        memcpy (&value, buf.data + 4 * i, sizeof value);
        assert_int_equal (value, i);
    }
    size_t capacity = buf.capacity;
    zqi_buf_reset (&buf);
    assert_int_equal (buf.size, 0);
    assert_int_equal (buf.capacity, capacity);
    errno = 0;
    assert_int_equal (zqi_buf_reserve (&buf, SIZE_MAX - 8), -1);
    assert_int_equal (errno, ENOMEM);
    assert_int_equal (buf.capacity, capacity);
    zqi_buf_free (&buf);
    zqi_buf_free (&buf); //  twice: nothing more
    assert_int_equal (buf.capacity, 0);
}

//  An array grows from its first capacity by doubling, only when it must,
//  and a size in bytes that would overflow is refused with nothing changed.
static void
test_array_reserve (void **state)
{
    (void)state;
    void *items = NULL;
    size_t capacity = 0;
    assert_int_equal (zqi_array_reserve (&items, &capacity, 1, sizeof (uint64_t), 16), 0);
    assert_non_null (items);
    assert_int_equal (capacity, 16);
    void *before = items;
    assert_int_equal (zqi_array_reserve (&items, &capacity, 16, sizeof (uint64_t), 16), 0);
    assert_ptr_equal (items, before);
    assert_int_equal (capacity, 16);
    assert_int_equal (zqi_array_reserve (&items, &capacity, 33, sizeof (uint64_t), 16), 0);
    assert_int_equal (capacity, 64);
    ((uint64_t *)items)[63] = 7; //  the whole capacity is usable
    errno = 0;
    assert_int_equal (zqi_array_reserve (&items, &capacity, SIZE_MAX / 8, sizeof (uint64_t), 16),
                      -1);
    assert_int_equal (errno, ENOMEM);
    assert_int_equal (capacity, 64);
    assert_int_equal (((uint64_t *)items)[63], 7);
    free (items);
    //  A buffer that holds bytes refuses a "more" whose sum would wrap.
    zqi_buf_t buf = {0};
    assert_int_equal (zqi_buf_append (&buf, "abc", 3), 0);
    errno = 0;
    assert_int_equal (zqi_buf_reserve (&buf, SIZE_MAX - 1), -1);
    assert_int_equal (errno, ENOMEM);
    assert_int_equal (buf.size, 3);
    zqi_buf_free (&buf);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_writer_matches_msgpack_c),
        cmocka_unit_test (test_int_roundtrip),
        cmocka_unit_test (test_command_header),
        cmocka_unit_test (test_bytes_read_back),
        cmocka_unit_test (test_buffer),
        cmocka_unit_test (test_array_reserve),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
