/*  =========================================================================
    test_zq_admin - the admin protocol's codec (src/device/zq_admin.h): what the
    device encodes, zq decodes to the same values; unknown keys are
    skipped; malformed frames are refused with ZQ_EPROTO, never trusted.

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
#include "device/zq_admin.h"

static void
test_row_round_trip (void **state)
{
    (void)state;
    zqi_row_t counters;
    memset (&counters, 0, sizeof counters);
    counters.depth = 7;
    counters.in = UINT64_MAX;
    counters.consumers = 3;
    counters.dead_lettered = 2;
    counters.in_rate = 12.5;
    counters.out_rate = 0.25;
    zframe_t *frame = zqi_admin_row_encode ("orders", "queue", &counters);
    assert_non_null (frame);
    zqi_admin_row_t row;
    assert_int_equal (zqi_admin_row_decode (zframe_data (frame), zframe_size (frame), &row), 0);
    assert_string_equal (row.name, "orders");
    assert_string_equal (row.kind, "queue");
    assert_true (row.has_counters);
    assert_memory_equal (&row.counters, &counters, sizeof counters);
    //  The same frame reads as JSON with every key.
    char *json = zq_msgpack_to_json (zframe_data (frame), zframe_size (frame));
    assert_non_null (json);
    assert_non_null (strstr (json, "\"consumers\":3"));
    assert_non_null (strstr (json, "\"in_rate\":12.5"));
    free (json);
    zframe_destroy (&frame);

    //  An LS row: name and kind only.
    frame = zqi_admin_row_encode ("metrics", "stream", NULL);
    assert_int_equal (zqi_admin_row_decode (zframe_data (frame), zframe_size (frame), &row), 0);
    assert_string_equal (row.name, "metrics");
    assert_false (row.has_counters);
    zframe_destroy (&frame);
}

static void
test_count_and_info_round_trip (void **state)
{
    (void)state;
    zframe_t *frame = zqi_admin_count_encode ("purged", 42);
    uint64_t value = 0;
    assert_int_equal (
        zqi_admin_count_decode (zframe_data (frame), zframe_size (frame), "purged", &value), 0);
    assert_int_equal (value, 42);
    assert_int_equal (
        zqi_admin_count_decode (zframe_data (frame), zframe_size (frame), "redriven", &value), -1);
    assert_int_equal (errno, ZQ_EPROTO);
    zframe_destroy (&frame);

    zqi_admin_info_t info, back;
    memset (&info, 0, sizeof info);
    snprintf (info.version, sizeof info.version, "1.2.3");
    snprintf (info.store, sizeof info.store, "/var/lib/zqd");
    snprintf (info.fsync, sizeof info.fsync, "always");
    info.uptime_ms = 123456;
    info.max_message_bytes = 1048576;
    info.peek_max = 1000;
    frame = zqi_admin_info_encode (&info);
    assert_int_equal (zqi_admin_info_decode (zframe_data (frame), zframe_size (frame), &back), 0);
    assert_memory_equal (&back, &info, sizeof info);
    zframe_destroy (&frame);
}

static void
test_unknown_keys_are_skipped (void **state)
{
    (void)state;
    //  {"extra": [1, {"x": nil}], "name": "a", "kind": "queue", "depth": 5}
    const uint8_t frame[] = {0x84, 0xa5, 'e',  'x',  't', 'r',  'a', 0x92, 0x01, 0x81,
                             0xa1, 'x',  0xc0, 0xa4, 'n', 'a',  'm', 'e',  0xa1, 'a',
                             0xa4, 'k',  'i',  'n',  'd', 0xa5, 'q', 'u',  'e',  'u',
                             'e',  0xa5, 'd',  'e',  'p', 't',  'h', 0x05};
    zqi_admin_row_t row;
    assert_int_equal (zqi_admin_row_decode (frame, sizeof frame, &row), 0);
    assert_string_equal (row.name, "a");
    assert_int_equal (row.counters.depth, 5);
}

static void
s_refused (const void *data, size_t size, const char *what)
{
    zqi_admin_row_t row;
    errno = 0;
    if (zqi_admin_row_decode (data, size, &row) != -1 || errno != ZQ_EPROTO)
        fail_msg ("%s: not refused with ZQ_EPROTO", what);
}

//  Writes {"name": "xxx..." (length bytes, str16), "kind": "queue"} into
//  frame (512 bytes); returns its size.
static size_t
s_row_named (uint8_t *frame, size_t length)
{
    size_t size = 0;
    frame[size++] = 0x82;
    memcpy (frame + size, "\xa4name", 5);
    size += 5;
    frame[size++] = 0xda;
    frame[size++] = (uint8_t)(length >> 8);
    frame[size++] = (uint8_t)length;
    memset (frame + size, 'x', length);
    size += length;
    memcpy (frame + size, "\xa4kind\xa5queue", 11);
    return size + 11;
}

static void
test_malformed_rows_are_refused (void **state)
{
    (void)state;
    s_refused (NULL, 0, "nothing");
    const uint8_t not_map[] = {0x91, 0x01};
    s_refused (not_map, sizeof not_map, "an array");
    //  {"name": "a"}: no kind.
    const uint8_t no_kind[] = {0x81, 0xa4, 'n', 'a', 'm', 'e', 0xa1, 'a'};
    s_refused (no_kind, sizeof no_kind, "no kind");
    //  {"name": 1, "kind": "queue"}: a name that is not a string.
    const uint8_t bad_name[] = {0x82, 0xa4, 'n', 'a',  'm', 'e', 0x01, 0xa4, 'k',
                                'i',  'n',  'd', 0xa5, 'q', 'u', 'e',  'u',  'e'};
    s_refused (bad_name, sizeof bad_name, "a number for a name");
    //  A map claiming more pairs than the bytes hold.
    const uint8_t truncated[] = {0xde, 0xff, 0xff, 0xa4, 'n', 'a', 'm', 'e'};
    s_refused (truncated, sizeof truncated, "truncated");
    //  {"name": "a", "kind": "queue", "depth": -1}: a negative counter.
    const uint8_t negative[] = {0x83, 0xa4, 'n', 'a', 'm',  'e', 0xa1, 'a', 0xa4,
                                'k',  'i',  'n', 'd', 0xa5, 'q', 'u',  'e', 'u',
                                'e',  0xa5, 'd', 'e', 'p',  't', 'h',  0xff};
    s_refused (negative, sizeof negative, "a negative counter");
    //  Names up to ZQI_ADMIN_NAME_MAX bytes, not one more.
    uint8_t frame[512];
    size_t size = s_row_named (frame, ZQI_ADMIN_NAME_MAX);
    zqi_admin_row_t row;
    assert_int_equal (zqi_admin_row_decode (frame, size, &row), 0);
    assert_int_equal (strlen (row.name), ZQI_ADMIN_NAME_MAX);
    size = s_row_named (frame, ZQI_ADMIN_NAME_MAX + 1);
    s_refused (frame, size, "a name over the bound");
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_row_round_trip),
        cmocka_unit_test (test_count_and_info_round_trip),
        cmocka_unit_test (test_unknown_keys_are_skipped),
        cmocka_unit_test (test_malformed_rows_are_refused),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
