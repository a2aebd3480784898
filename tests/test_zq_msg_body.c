/*  =========================================================================
    test_zq_msg_body - zq_msg_pack / zq_msg_unpack pictures and key lookups.

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
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "zq.h"

//  Asserts that the body of msg is exactly size bytes of expected.
static void
s_assert_body (const zq_msg_t *msg, const void *expected, size_t size)
{
    size_t body_size;
    const void *body = zq_msg_body (msg, &body_size);
    assert_non_null (body);
    assert_int_equal (body_size, size);
    assert_memory_equal (body, expected, size);
}

//  For literals: their size without the terminating NUL.
#define S_ASSERT_BODY(msg, literal) s_assert_body ((msg), (literal), sizeof (literal) - 1)
#define S_MSG_WITH_BODY(literal)    s_msg_with_body ((literal), sizeof (literal) - 1)

static zq_msg_t *
s_msg_with_body (const void *data, size_t size)
{
    zq_msg_t *msg = zq_msg_new ("body");
    assert_non_null (msg);
    assert_int_equal (zq_msg_set_body (msg, data, size), 0);
    return msg;
}

static void
test_pack_scalars_shortest (void **state)
{
    (void)state;
    zq_msg_t *msg = zq_msg_new ("t");
    assert_non_null (msg);

    assert_int_equal (zq_msg_pack (msg, "i", (int64_t)1), 0);
    S_ASSERT_BODY (msg, "\x01");
    assert_int_equal (zq_msg_pack (msg, "i", (int64_t)-1), 0);
    S_ASSERT_BODY (msg, "\xff");
    assert_int_equal (zq_msg_pack (msg, "i", (int64_t)-200), 0);
    S_ASSERT_BODY (msg, "\xd1\xff\x38");
    assert_int_equal (zq_msg_pack (msg, "u", (uint64_t)200), 0);
    S_ASSERT_BODY (msg, "\xcc\xc8");
    assert_int_equal (zq_msg_pack (msg, "i", INT64_MIN), 0);
    S_ASSERT_BODY (msg, "\xd3\x80\x00\x00\x00\x00\x00\x00\x00");
    assert_int_equal (zq_msg_pack (msg, "u", UINT64_MAX), 0);
    S_ASSERT_BODY (msg, "\xcf\xff\xff\xff\xff\xff\xff\xff\xff");
    assert_int_equal (zq_msg_pack (msg, "d", 1.5), 0);
    S_ASSERT_BODY (msg, "\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00");
    assert_int_equal (zq_msg_pack (msg, "b", 1), 0);
    S_ASSERT_BODY (msg, "\xc3");
    assert_int_equal (zq_msg_pack (msg, "b", 0), 0);
    S_ASSERT_BODY (msg, "\xc2");
    assert_int_equal (zq_msg_pack (msg, "n"), 0);
    S_ASSERT_BODY (msg, "\xc0");
    assert_int_equal (zq_msg_pack (msg, "s", "abc"), 0);
    S_ASSERT_BODY (msg, "\xa3"
                        "abc");
    assert_int_equal (zq_msg_pack (msg, "s", (const char *)NULL), 0);
    S_ASSERT_BODY (msg, "\xc0");
    assert_int_equal (zq_msg_pack (msg, "B", "\x00\x01", (size_t)2), 0);
    S_ASSERT_BODY (msg, "\xc4\x02\x00\x01");
    assert_int_equal (zq_msg_pack (msg, "B", (const void *)NULL, (size_t)0), 0);
    S_ASSERT_BODY (msg, "\xc4\x00");

    //  Several values make an array; the header example packs a map.
    assert_int_equal (zq_msg_pack (msg, "iu", (int64_t)1, (uint64_t)2), 0);
    S_ASSERT_BODY (msg, "\x92\x01\x02");
    assert_int_equal (zq_msg_pack (msg, "{sssu}", "order", "A-17", "cents", (uint64_t)1299), 0);
    S_ASSERT_BODY (msg, "\x82\xa5order\xa4"
                        "A-17\xa5"
                        "cents\xcd\x05\x13");
    zq_msg_destroy (&msg);
}

static void
test_round_trip_each_type (void **state)
{
    (void)state;
    zq_msg_t *msg = zq_msg_new ("t");
    uint8_t all_bytes[256];
    for (int index = 0; index < 256; index++)
        all_bytes[index] = (uint8_t)index;
    assert_int_equal (zq_msg_pack (msg, "iiuddbbsssBBn", INT64_MIN, INT64_MAX, UINT64_MAX, -0.25,
                                   1e300, 1, 0, "zürich", "", (const char *)NULL,
                                   (const void *)all_bytes, sizeof all_bytes, (const void *)"",
                                   (size_t)0),
                      0);
    int64_t small = 0, large = 0;
    uint64_t huge = 0;
    double quarter = 0, big = 0;
    bool yes = false, no = true;
    char *text = NULL, *empty = NULL, *none = (char *)"sentinel";
    const void *bytes = NULL, *no_bytes = NULL;
    size_t bytes_size = 0, no_bytes_size = 99;
    assert_int_equal (zq_msg_unpack (msg, "iiuddbbsssBBn", &small, &large, &huge, &quarter, &big,
                                     &yes, &no, &text, &empty, &none, &bytes, &bytes_size,
                                     &no_bytes, &no_bytes_size),
                      0);
    assert_true (small == INT64_MIN);
    assert_true (large == INT64_MAX);
    assert_true (huge == UINT64_MAX);
    assert_true (quarter == -0.25);
    assert_true (big == 1e300);
    assert_true (yes);
    assert_false (no);
    assert_string_equal (text, "zürich");
    assert_string_equal (empty, "");
    assert_null (none);
    assert_int_equal (bytes_size, 256);
    assert_memory_equal (bytes, all_bytes, 256);
    assert_int_equal (no_bytes_size, 0);
    //  B points into the body itself.
    size_t body_size;
    const uint8_t *body = zq_msg_body (msg, &body_size);
    assert_true ((const uint8_t *)bytes > body && (const uint8_t *)bytes < body + body_size);
    free (text);
    free (empty);
    zq_msg_destroy (&msg);
}

static void
test_nested (void **state)
{
    (void)state;
    zq_msg_t *msg = zq_msg_new ("t");
    assert_int_equal (zq_msg_pack (msg, "{s[iii]s{sb}s[]s{}}", "list", (int64_t)1, (int64_t)2,
                                   (int64_t)3, "inner", "flag", 1, "none", "nothing"),
                      0);
    S_ASSERT_BODY (msg, "\x84\xa4list\x93\x01\x02\x03\xa5inner\x81\xa4"
                        "flag\xc3\xa4none\x90\xa7nothing\x80");
    char *k1 = NULL, *k2 = NULL, *k3 = NULL, *k4 = NULL, *k5 = NULL;
    int64_t a = 0, b = 0, c = 0;
    bool flag = false;
    assert_int_equal (
        zq_msg_unpack (msg, "{s[iii]s{sb}s[]s{}}", &k1, &a, &b, &c, &k2, &k3, &flag, &k4, &k5), 0);
    assert_string_equal (k1, "list");
    assert_string_equal (k2, "inner");
    assert_string_equal (k3, "flag");
    assert_string_equal (k4, "none");
    assert_string_equal (k5, "nothing");
    assert_true (a == 1 && b == 2 && c == 3 && flag);
    free (k1);
    free (k2);
    free (k3);
    free (k4);
    free (k5);

    //  An array of arrays at the top level, read as several values.
    assert_int_equal (zq_msg_pack (msg, "[ii][s]", (int64_t)5, (int64_t)6, "x"), 0);
    S_ASSERT_BODY (msg, "\x92\x92\x05\x06\x91\xa1x");
    char *x = NULL;
    assert_int_equal (zq_msg_unpack (msg, "[ii][s]", &a, &b, &x), 0);
    assert_true (a == 5 && b == 6);
    assert_string_equal (x, "x");
    free (x);
    zq_msg_destroy (&msg);
}

static void
test_bad_pictures (void **state)
{
    (void)state;
    zq_msg_t *msg = zq_msg_new ("t");
    assert_int_equal (zq_msg_pack (msg, "s", "keep"), 0);
    const char *bad[] = {"",    "x",     "[",  "]",    "[}",    "{]",
                         "{s}", "{sss}", "i]", "[[i]", "{s[}]", "i "};
    for (size_t index = 0; index < sizeof bad / sizeof bad[0]; index++) {
        errno = 0;
        assert_int_equal (zq_msg_pack (msg, bad[index], "a", "b", "c"), -1);
        assert_int_equal (errno, EINVAL);
        S_ASSERT_BODY (msg, "\xa4keep");
        char *s1 = NULL, *s2 = NULL, *s3 = NULL;
        errno = 0;
        assert_int_equal (zq_msg_unpack (msg, bad[index], &s1, &s2, &s3), -1);
        assert_int_equal (errno, EINVAL);
        assert_null (s1);
    }
    errno = 0;
    assert_int_equal (zq_msg_pack (msg, NULL), -1);
    assert_int_equal (errno, EINVAL);
    errno = 0;
    assert_int_equal (zq_msg_unpack (msg, NULL), -1);
    assert_int_equal (errno, EINVAL);
    S_ASSERT_BODY (msg, "\xa4keep");
    zq_msg_destroy (&msg);
}

static void
test_depth (void **state)
{
    (void)state;
    zq_msg_t *msg = zq_msg_new ("t");
    char picture[2 * ZQ_MSG_MAX_DEPTH + 8];
    //  ZQ_MSG_MAX_DEPTH nested arrays around one int: the deepest body allowed.
    char *p = picture;
    for (int level = 0; level < ZQ_MSG_MAX_DEPTH; level++)
        *p++ = '[';
    *p++ = 'i';
    for (int level = 0; level < ZQ_MSG_MAX_DEPTH; level++)
        *p++ = ']';
    *p = 0;
    assert_int_equal (zq_msg_pack (msg, picture, (int64_t)7), 0);
    int64_t seven = 0;
    assert_int_equal (zq_msg_unpack (msg, picture, &seven), 0);
    assert_true (seven == 7);
    size_t deepest_size;
    const void *deepest = zq_msg_body (msg, &deepest_size);
    uint8_t saved[64];
    assert_true (deepest_size <= sizeof saved);
    memcpy (saved, deepest, deepest_size);

    //  A second top-level value wraps everything in one more array.
    strcat (picture, "i");
    errno = 0;
    assert_int_equal (zq_msg_pack (msg, picture, (int64_t)7, (int64_t)8), -1);
    assert_int_equal (errno, ZQ_EDEPTH);
    s_assert_body (msg, saved, deepest_size);

    //  One level more than allowed.
    memmove (picture + 1, picture, strlen (picture) + 1);
    picture[0] = '[';
    picture[strlen (picture) - 1] = ']';
    errno = 0;
    assert_int_equal (zq_msg_pack (msg, picture, (int64_t)7), -1);
    assert_int_equal (errno, ZQ_EDEPTH);
    s_assert_body (msg, saved, deepest_size);
    //  Reading it cannot match a body within the limit.
    errno = 0;
    assert_int_equal (zq_msg_unpack (msg, picture, &seven), -1);
    assert_int_equal (errno, ZQ_ETYPE);
    zq_msg_destroy (&msg);
}

static void
test_shape_mismatch (void **state)
{
    (void)state;
    zq_msg_t *msg = zq_msg_new ("t");
    assert_int_equal (zq_msg_pack (msg, "sis", "first", (int64_t)-5, "third"), 0);

    //  A mismatch after a string: nothing allocated, nothing stored.
    char *first = NULL, *third = NULL;
    int64_t number = 42;
    uint64_t unsigned_number = 42;
    errno = 0;
    assert_int_equal (zq_msg_unpack (msg, "sss", &first, &third, &third), -1);
    assert_int_equal (errno, ZQ_ETYPE);
    assert_null (first);
    assert_null (third);
    errno = 0;
    assert_int_equal (zq_msg_unpack (msg, "sus", &first, &unsigned_number, &third), -1);
    assert_int_equal (errno, ZQ_ETYPE);
    assert_null (first);
    assert_true (unsigned_number == 42);
    //  Wrong count of values, at the top level and inside.
    errno = 0;
    assert_int_equal (zq_msg_unpack (msg, "si", &first, &number), -1);
    assert_int_equal (errno, ZQ_ETYPE);
    errno = 0;
    assert_int_equal (zq_msg_unpack (msg, "sisn", &first, &number, &third), -1);
    assert_int_equal (errno, ZQ_ETYPE);
    errno = 0;
    assert_int_equal (zq_msg_unpack (msg, "[[sis]]", &first, &number, &third), -1);
    assert_int_equal (errno, ZQ_ETYPE);
    errno = 0;
    assert_int_equal (zq_msg_unpack (msg, "{sisi}", &first, &number, &third, &number), -1);
    assert_int_equal (errno, ZQ_ETYPE);
    assert_null (first);
    assert_true (number == 42);
    //  The right picture still reads it.
    assert_int_equal (zq_msg_unpack (msg, "sis", &first, &number, &third), 0);
    assert_string_equal (first, "first");
    assert_true (number == -5);
    assert_string_equal (third, "third");
    free (first);
    free (third);
    first = third = NULL;

    //  Integers convert between signed and unsigned only when they fit.
    assert_int_equal (zq_msg_pack (msg, "u", (uint64_t)5), 0);
    assert_int_equal (zq_msg_unpack (msg, "i", &number), 0);
    assert_true (number == 5);
    assert_int_equal (zq_msg_pack (msg, "u", (uint64_t)INT64_MAX + 1), 0);
    errno = 0;
    assert_int_equal (zq_msg_unpack (msg, "i", &number), -1);
    assert_int_equal (errno, ZQ_ETYPE);
    assert_int_equal (zq_msg_pack (msg, "i", (int64_t)-1), 0);
    errno = 0;
    assert_int_equal (zq_msg_unpack (msg, "u", &unsigned_number), -1);
    assert_int_equal (errno, ZQ_ETYPE);
    assert_int_equal (zq_msg_pack (msg, "i", (int64_t)9), 0);
    assert_int_equal (zq_msg_unpack (msg, "u", &unsigned_number), 0);
    assert_true (unsigned_number == 9);
    double real = 0;
    assert_int_equal (zq_msg_unpack (msg, "d", &real), 0);
    assert_true (real == 9.0);
    errno = 0;
    assert_int_equal (zq_msg_unpack (msg, "n"), -1);
    assert_int_equal (errno, ZQ_ETYPE);
    bool flag;
    errno = 0;
    assert_int_equal (zq_msg_unpack (msg, "b", &flag), -1);
    assert_int_equal (errno, ZQ_ETYPE);
    //  A map is not an array and bin is not a string, while B reads str too.
    assert_int_equal (zq_msg_pack (msg, "{si}", "k", (int64_t)1), 0);
    errno = 0;
    assert_int_equal (zq_msg_unpack (msg, "[si]", &first, &number), -1);
    assert_int_equal (errno, ZQ_ETYPE);
    assert_null (first);
    assert_int_equal (zq_msg_pack (msg, "B", "raw", (size_t)3), 0);
    errno = 0;
    assert_int_equal (zq_msg_unpack (msg, "s", &first), -1);
    assert_int_equal (errno, ZQ_ETYPE);
    assert_int_equal (zq_msg_pack (msg, "s", "text"), 0);
    const void *bytes;
    size_t size;
    assert_int_equal (zq_msg_unpack (msg, "B", &bytes, &size), 0);
    assert_int_equal (size, 4);
    assert_memory_equal (bytes, "text", 4);
    zq_msg_destroy (&msg);
}

static void
test_unpack_float32 (void **state)
{
    (void)state;
    //  1.5 as float32
    zq_msg_t *msg = S_MSG_WITH_BODY ("\xca\x3f\xc0\x00\x00");
    double value = 0;
    assert_int_equal (zq_msg_unpack (msg, "d", &value), 0);
    assert_true (value == 1.5);
    zq_msg_destroy (&msg);
}

static void
test_lookups (void **state)
{
    (void)state;
    zq_msg_t *msg = zq_msg_new ("t");
    assert_int_equal (zq_msg_pack (msg, "{sisisusdsbsssnsu}", "count", (int64_t)3, "delta",
                                   (int64_t)-2, "big", UINT64_MAX, "ratio", 0.5, "ok", 1, "name",
                                   "zq", "nothing", "small", (uint64_t)7),
                      0);
    int64_t integer = 0;
    uint64_t unsigned_integer = 0;
    double real = 0;
    bool flag = false;

    assert_int_equal (zq_msg_get_int (msg, "count", &integer), 0);
    assert_true (integer == 3);
    assert_int_equal (zq_msg_get_int (msg, "delta", &integer), 0);
    assert_true (integer == -2);
    assert_int_equal (zq_msg_get_int (msg, "small", &integer), 0);
    assert_true (integer == 7);
    assert_int_equal (zq_msg_get_uint (msg, "big", &unsigned_integer), 0);
    assert_true (unsigned_integer == UINT64_MAX);
    assert_int_equal (zq_msg_get_uint (msg, "count", &unsigned_integer), 0);
    assert_true (unsigned_integer == 3);
    assert_int_equal (zq_msg_get_double (msg, "ratio", &real), 0);
    assert_true (real == 0.5);
    assert_int_equal (zq_msg_get_double (msg, "delta", &real), 0);
    assert_true (real == -2.0);
    assert_int_equal (zq_msg_get_bool (msg, "ok", &flag), 0);
    assert_true (flag);
    char *name = zq_msg_get_str (msg, "name");
    assert_non_null (name);
    assert_string_equal (name, "zq");
    free (name);

    //  Wrong types leave the value untouched.
    integer = 99;
    errno = 0;
    assert_int_equal (zq_msg_get_int (msg, "big", &integer), -1);
    assert_int_equal (errno, ZQ_ETYPE);
    assert_true (integer == 99);
    errno = 0;
    assert_int_equal (zq_msg_get_uint (msg, "delta", &unsigned_integer), -1);
    assert_int_equal (errno, ZQ_ETYPE);
    errno = 0;
    assert_int_equal (zq_msg_get_int (msg, "ratio", &integer), -1);
    assert_int_equal (errno, ZQ_ETYPE);
    errno = 0;
    assert_int_equal (zq_msg_get_double (msg, "name", &real), -1);
    assert_int_equal (errno, ZQ_ETYPE);
    errno = 0;
    assert_int_equal (zq_msg_get_bool (msg, "count", &flag), -1);
    assert_int_equal (errno, ZQ_ETYPE);
    errno = 0;
    assert_null (zq_msg_get_str (msg, "count"));
    assert_int_equal (errno, ZQ_ETYPE);
    errno = 0;
    assert_null (zq_msg_get_str (msg, "nothing"));
    assert_int_equal (errno, ZQ_ETYPE);

    //  Missing keys, including prefixes of present ones.
    errno = 0;
    assert_int_equal (zq_msg_get_int (msg, "missing", &integer), -1);
    assert_int_equal (errno, ZQ_ENOTFOUND);
    errno = 0;
    assert_int_equal (zq_msg_get_int (msg, "coun", &integer), -1);
    assert_int_equal (errno, ZQ_ENOTFOUND);
    errno = 0;
    assert_null (zq_msg_get_str (msg, "names"));
    assert_int_equal (errno, ZQ_ENOTFOUND);

    //  A body that is not a map has no keys.
    assert_int_equal (zq_msg_pack (msg, "[si]", "count", (int64_t)1), 0);
    errno = 0;
    assert_int_equal (zq_msg_get_int (msg, "count", &integer), -1);
    assert_int_equal (errno, ZQ_ENOTFOUND);
    zq_msg_destroy (&msg);

    //  Keys of other types are skipped; float32 values read as doubles;
    //  the first of duplicate keys wins.
    //  {1: "x", "k": 2.5f, "d": 1, "d": 2}
    msg = S_MSG_WITH_BODY ("\x84\x01\xa1x\xa1k\xca\x40\x20\x00\x00\xa1"
                           "d\x01\xa1"
                           "d\x02");
    assert_int_equal (zq_msg_get_double (msg, "k", &real), 0);
    assert_true (real == 2.5);
    assert_int_equal (zq_msg_get_int (msg, "d", &integer), 0);
    assert_true (integer == 1);
    zq_msg_destroy (&msg);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_pack_scalars_shortest),
        cmocka_unit_test (test_round_trip_each_type),
        cmocka_unit_test (test_nested),
        cmocka_unit_test (test_bad_pictures),
        cmocka_unit_test (test_depth),
        cmocka_unit_test (test_shape_mismatch),
        cmocka_unit_test (test_unpack_float32),
        cmocka_unit_test (test_lookups),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
