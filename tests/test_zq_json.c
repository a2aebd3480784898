/*  =========================================================================
    test_zq_json - JSON <-> msgpack conversion of bodies.

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

//  Converts json to msgpack and asserts the bytes are exactly expected.
static void
s_assert_msgpack (const char *json, const void *expected, size_t expected_size)
{
    void *data = NULL;
    size_t size = 0;
    if (zq_json_to_msgpack (json, &data, &size) != 0)
        fail_msg ("%s: %s", json, zq_strerror (errno));
    assert_int_equal (size, expected_size);
    assert_memory_equal (data, expected, size);
    free (data);
}
#define S_ASSERT_MSGPACK(json, literal) s_assert_msgpack ((json), (literal), sizeof (literal) - 1)

//  Converts msgpack to JSON and asserts the text is exactly expected.
static void
s_assert_json (const void *data, size_t size, const char *expected)
{
    char *json = zq_msgpack_to_json (data, size);
    if (!json)
        fail_msg ("expected %s: %s", expected, zq_strerror (errno));
    assert_string_equal (json, expected);
    free (json);
}
#define S_ASSERT_JSON(literal, json) s_assert_json ((literal), sizeof (literal) - 1, (json))

//  Asserts that msgpack -> JSON fails with errnum.
static void
s_assert_json_fails (const void *data, size_t size, int errnum)
{
    errno = 0;
    char *json = zq_msgpack_to_json (data, size);
    if (json) {
        fail_msg ("converted to %s", json);
        free (json);
    }
    assert_int_equal (errno, errnum);
}
#define S_ASSERT_JSON_FAILS(literal, errnum)                                                       \
    s_assert_json_fails ((literal), sizeof (literal) - 1, (errnum))

//  Asserts that JSON -> msgpack fails with errnum and leaves the outputs alone.
static void
s_assert_msgpack_fails (const char *json, int errnum)
{
    void *data = NULL;
    size_t size = 12345;
    errno = 0;
    if (zq_json_to_msgpack (json, &data, &size) == 0) {
        free (data);
        fail_msg ("%s converted", json);
    }
    assert_int_equal (errno, errnum);
    assert_null (data);
    assert_int_equal (size, 12345);
}

//  Asserts JSON -> msgpack -> JSON gives back the same text.
static void
s_assert_round_trip (const char *json)
{
    void *data = NULL;
    size_t size = 0;
    if (zq_json_to_msgpack (json, &data, &size) != 0)
        fail_msg ("%s: %s", json, zq_strerror (errno));
    char *back = zq_msgpack_to_json (data, size);
    free (data);
    if (!back)
        fail_msg ("%s back: %s", json, zq_strerror (errno));
    assert_string_equal (back, json);
    free (back);
}

static void
test_scalars (void **state)
{
    (void)state;
    S_ASSERT_MSGPACK ("null", "\xc0");
    S_ASSERT_MSGPACK ("true", "\xc3");
    S_ASSERT_MSGPACK ("false", "\xc2");
    //  Integers take their shortest encoding, reals are float64.
    S_ASSERT_MSGPACK ("0", "\x00");
    S_ASSERT_MSGPACK ("127", "\x7f");
    S_ASSERT_MSGPACK ("-32", "\xe0");
    S_ASSERT_MSGPACK ("200", "\xcc\xc8");
    S_ASSERT_MSGPACK ("-129", "\xd1\xff\x7f");
    S_ASSERT_MSGPACK ("65536", "\xce\x00\x01\x00\x00");
    S_ASSERT_MSGPACK ("1.5", "\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00");
    S_ASSERT_MSGPACK ("1.0", "\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00");
    S_ASSERT_MSGPACK ("\"abc\"", "\xa3"
                                 "abc");
    S_ASSERT_MSGPACK (" \"\" ", "\xa0");

    S_ASSERT_JSON ("\xc0", "null");
    S_ASSERT_JSON ("\xc3", "true");
    S_ASSERT_JSON ("\xc2", "false");
    S_ASSERT_JSON ("\x05", "5");
    S_ASSERT_JSON ("\xff", "-1");
    //  Any encoding is read, not only the shortest.
    S_ASSERT_JSON ("\xd3\x00\x00\x00\x00\x00\x00\x00\x05", "5");
    S_ASSERT_JSON ("\xcf\x00\x00\x00\x00\x00\x00\x00\x05", "5");
    S_ASSERT_JSON ("\xd9\x02hi", "\"hi\"");

    s_assert_round_trip ("42");
    s_assert_round_trip ("-7");
    s_assert_round_trip ("1.5");
    s_assert_round_trip ("-0.0");
    s_assert_round_trip ("6.103515625e-5");
    s_assert_round_trip ("\"a\\\"b\\\\c\\nd\\u0001\"");
}

static void
test_big_integers (void **state)
{
    (void)state;
    S_ASSERT_MSGPACK ("-9223372036854775808", "\xd3\x80\x00\x00\x00\x00\x00\x00\x00");
    S_ASSERT_MSGPACK ("9223372036854775807", "\xcf\x7f\xff\xff\xff\xff\xff\xff\xff");
    s_assert_round_trip ("-9223372036854775808");
    s_assert_round_trip ("9223372036854775807");
    S_ASSERT_JSON ("\xd3\x80\x00\x00\x00\x00\x00\x00\x00", "-9223372036854775808");
    //  Above INT64_MAX, JSON gets the nearest double (documented).
    S_ASSERT_JSON ("\xcf\xff\xff\xff\xff\xff\xff\xff\xff", "1.8446744073709552e19");
    S_ASSERT_JSON ("\xcf\x80\x00\x00\x00\x00\x00\x00\x00", "9.2233720368547758e18");
    //  ... and JSON integers beyond int64 are refused rather than rounded.
    s_assert_msgpack_fails ("18446744073709551615", ZQ_EJSON);
    s_assert_msgpack_fails ("[-9223372036854775809]", ZQ_EJSON);
}

static void
test_floats (void **state)
{
    (void)state;
    //  0.1 is not exact in binary: 17 digits read back to the same double.
    void *data;
    size_t size;
    assert_int_equal (zq_json_to_msgpack ("0.1", &data, &size), 0);
    assert_int_equal (size, 9);
    double expected = 0.1;
    uint64_t bits;
    memcpy (&bits, &expected, sizeof bits);
    for (int index = 0; index < 8; index++)
        assert_int_equal (((uint8_t *)data)[1 + index], (uint8_t)(bits >> (56 - 8 * index)));
    char *json = zq_msgpack_to_json (data, size);
    free (data);
    assert_non_null (json);
    assert_true (strtod (json, NULL) == 0.1);
    free (json);

    //  float32 widens exactly.
    S_ASSERT_JSON ("\xca\x3f\xc0\x00\x00", "1.5");
    S_ASSERT_JSON ("\xca\xc0\x20\x00\x00", "-2.5");
    //  NaN and infinity have no JSON form.
    S_ASSERT_JSON_FAILS ("\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", ZQ_EJSON);
    S_ASSERT_JSON_FAILS ("\xca\x7f\xc0\x00\x00", ZQ_EJSON);
    S_ASSERT_JSON_FAILS ("\xcb\xff\xf0\x00\x00\x00\x00\x00\x00", ZQ_EJSON);
    S_ASSERT_JSON_FAILS ("\x91\xca\x7f\x80\x00\x00", ZQ_EJSON);
    s_assert_msgpack_fails ("NaN", ZQ_EJSON);
    s_assert_msgpack_fails ("Infinity", ZQ_EJSON);
    s_assert_msgpack_fails ("1e400", ZQ_EJSON);
}

static void
test_containers (void **state)
{
    (void)state;
    S_ASSERT_MSGPACK ("[]", "\x90");
    S_ASSERT_MSGPACK ("{}", "\x80");
    S_ASSERT_MSGPACK ("[[],{}]", "\x92\x90\x80");
    S_ASSERT_JSON ("\x90", "[]");
    S_ASSERT_JSON ("\x80", "{}");
    S_ASSERT_JSON ("\xdc\x00\x00", "[]");
    S_ASSERT_JSON ("\xdf\x00\x00\x00\x00", "{}");
    //  Keys keep their order, in both directions.
    S_ASSERT_MSGPACK ("{\"b\":1,\"a\":2}", "\x82\xa1"
                                           "b\x01\xa1"
                                           "a\x02");
    S_ASSERT_JSON ("\x82\xa1z\x01\xa1y\x02", "{\"z\":1,\"y\":2}");
    s_assert_round_trip ("{\"zeta\":[1,2,{\"inner\":null}],\"alpha\":{\"x\":[],\"w\":{}},"
                         "\"mid\":[true,false,\"s\",-1.25]}");
    s_assert_round_trip ("[[[[[]]]]]");
    //  Whitespace in the input does not matter; the output is compact.
    S_ASSERT_MSGPACK (" [ 1 , { \"k\" : [ ] } ] ", "\x92\x01\x81\xa1k\x90");
}

static void
test_unicode (void **state)
{
    (void)state;
    //  Non-ASCII stays UTF-8 in both directions.
    S_ASSERT_MSGPACK ("\"zürich\"", "\xa7z\xc3\xbcrich");
    S_ASSERT_JSON ("\xa7z\xc3\xbcrich", "\"zürich\"");
    s_assert_round_trip ("{\"city\":\"zürich\",\"東京\":\"😀\",\"mixed\":\"a東b😀c\"}");
    //  Escapes are decoded to UTF-8, including surrogate pairs.
    S_ASSERT_MSGPACK ("\"\\u00fc\"", "\xa2\xc3\xbc");
    S_ASSERT_MSGPACK ("\"\\ud83d\\ude00\"", "\xa4\xf0\x9f\x98\x80");
    S_ASSERT_JSON ("\xa4\xf0\x9f\x98\x80", "\"😀\"");
    S_ASSERT_MSGPACK ("\"東京\"", "\xa6\xe6\x9d\xb1\xe4\xba\xac");
    //  NUL inside a string survives.
    S_ASSERT_MSGPACK ("\"a\\u0000b\"", "\xa3"
                                       "a\x00"
                                       "b");
    S_ASSERT_JSON ("\xa3"
                   "a\x00"
                   "b",
                   "\"a\\u0000b\"");
    //  Control characters are escaped: below U+0020 by jansson, and DEL
    //  and the C1 controls (U+0080 to U+009F; a terminal may take U+009B
    //  as CSI) by zq, in keys too; they read back as they were.
    S_ASSERT_JSON ("\xa4"
                   "a\x1b\xc2\x9b",
                   "\"a\\u001B\\u009B\"");
    S_ASSERT_JSON ("\x81\xa3\x7f\xc2\x85\xa3"
                   "\xc2\x80z",
                   "{\"\\u007F\\u0085\":\"\\u0080z\"}");
    S_ASSERT_MSGPACK ("\"a\\u001b\\u009b\"", "\xa4"
                                             "a\x1b\xc2\x9b");
    s_assert_round_trip ("{\"\\u007F\":\"\\u0080\\u009F \xc2\xa0 z\"}");
    //  Invalid UTF-8 in JSON text is refused.
    s_assert_msgpack_fails ("\"\xff\"", ZQ_EJSON);
    s_assert_msgpack_fails ("\"\xc0\xaf\"", ZQ_EJSON);
}

static void
test_binary (void **state)
{
    (void)state;
    //  Every byte value, through a message body and back.
    uint8_t all_bytes[256];
    for (int index = 0; index < 256; index++)
        all_bytes[index] = (uint8_t)index;
    const char *expected =
        "{\"$bin\":"
        "\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7"
        "PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9"
        "fn+AgYKDhIWGh4iJiouMjY6PkJGSk5SVlpeYmZqbnJ2en6ChoqOkpaanqKmqq6ytrq+wsbKztLW2t7i5uru8vb6/"
        "wMHCw8TFxsfIycrLzM3Oz9DR0tPU1dbX2Nna29zd3t/g4eLj5OXm5+jp6uvs7e7v8PHy8/T19vf4+fr7/P3+/"
        "w==\"}";
    zq_msg_t *msg = zq_msg_new ("bin");
    assert_non_null (msg);
    assert_int_equal (zq_msg_pack (msg, "B", (const void *)all_bytes, sizeof all_bytes), 0);
    char *json = zq_msg_body_json (msg);
    assert_non_null (json);
    assert_string_equal (json, expected);
    zq_msg_t *copy = zq_msg_new ("copy");
    assert_int_equal (zq_msg_set_body_json (copy, json), 0);
    free (json);
    const void *bytes;
    size_t size;
    assert_int_equal (zq_msg_unpack (copy, "B", &bytes, &size), 0);
    assert_int_equal (size, 256);
    assert_memory_equal (bytes, all_bytes, 256);
    size_t body_size;
    const uint8_t *body = zq_msg_body (copy, &body_size);
    assert_int_equal (body_size, 3 + 256);
    assert_memory_equal (body, "\xc5\x01\x00", 3);
    zq_msg_destroy (&copy);
    zq_msg_destroy (&msg);

    //  RFC 4648 test vectors, both ways.
    const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *encoded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t index = 0; index < 7; index++) {
        uint8_t packed[16] = {0xc4, (uint8_t)strlen (plain[index])};
        memcpy (packed + 2, plain[index], strlen (plain[index]));
        char text[64];
        snprintf (text, sizeof text, "{\"$bin\":\"%s\"}", encoded[index]);
        s_assert_json (packed, 2 + strlen (plain[index]), text);
        s_assert_msgpack (text, packed, 2 + strlen (plain[index]));
    }

    //  str that is not UTF-8 becomes $bin (and so comes back as bin).
    S_ASSERT_JSON ("\xa2\xff\xfe", "{\"$bin\":\"//4=\"}");
    S_ASSERT_JSON ("\xa3\xed\xa0\x80", "{\"$bin\":\"7aCA\"}"); //  a surrogate
    S_ASSERT_JSON ("\xa2\xc0\x80", "{\"$bin\":\"wIA=\"}");     //  overlong NUL

    //  Bad base64 in a $bin object is an error, not a map.
    const char *bad[] = {"Zm9v!A==", "Zg=",      "Zh==",  "Zm9=",    "Z===",
                         "=Zg=",     "Zg==Zg==", "Zm 9v", "Zm9v\\n", "Zg\\u0000="};
    for (size_t index = 0; index < sizeof bad / sizeof bad[0]; index++) {
        char text[64];
        snprintf (text, sizeof text, "{\"$bin\":\"%s\"}", bad[index]);
        s_assert_msgpack_fails (text, ZQ_EJSON);
    }
    //  Other shapes with the "$bin" key are ordinary maps.
    S_ASSERT_MSGPACK ("{\"$bin\":5}", "\x81\xa4$bin\x05");
    S_ASSERT_MSGPACK ("{\"$bin\":\"Zg==\",\"x\":1}", "\x82\xa4$bin\xa4Zg==\xa1x\x01");
    S_ASSERT_MSGPACK ("[{\"$bin\":\"Zg==\"}]", "\x91\xc4\x01"
                                               "f");
}

static void
test_ext (void **state)
{
    (void)state;
    S_ASSERT_JSON ("\xd4\x05\x41", "{\"$ext\":[5,\"QQ==\"]}");
    S_ASSERT_JSON ("\xd6\xff\x00\x00\x00\x01", "{\"$ext\":[-1,\"AAAAAQ==\"]}");
    S_ASSERT_JSON ("\xc7\x00\x07", "{\"$ext\":[7,\"\"]}");
    S_ASSERT_MSGPACK ("{\"$ext\":[5,\"QQ==\"]}", "\xd4\x05\x41");
    S_ASSERT_MSGPACK ("{\"$ext\":[-1,\"AAAAAQ==\"]}", "\xd6\xff\x00\x00\x00\x01");
    S_ASSERT_MSGPACK ("{\"$ext\":[7,\"AAA=\"]}", "\xd5\x07\x00\x00");
    S_ASSERT_MSGPACK ("{\"$ext\":[7,\"AAAA\"]}", "\xc7\x03\x07\x00\x00\x00");
    s_assert_msgpack_fails ("{\"$ext\":[200,\"QQ==\"]}", ZQ_EJSON);
    s_assert_msgpack_fails ("{\"$ext\":[-129,\"QQ==\"]}", ZQ_EJSON);
    s_assert_msgpack_fails ("{\"$ext\":[1,\"Q\"]}", ZQ_EJSON);
    //  Not the ext shape: a map.
    S_ASSERT_MSGPACK ("{\"$ext\":[1]}", "\x81\xa4$ext\x91\x01");
}

static void
test_invalid_json (void **state)
{
    (void)state;
    const char *bad[] = {"",
                         " ",
                         "{",
                         "[1,]",
                         "[1 2]",
                         "nan",
                         "{\"a\":}",
                         "{a:1}",
                         "'x'",
                         "1 2",
                         "[1]]",
                         "{\"a\":1,}",
                         "\"\\x41\"",
                         "--1",
                         "01",
                         "{\"a\":1,\"a\":2}",
                         "\"unterminated",
                         "tru"};
    for (size_t index = 0; index < sizeof bad / sizeof bad[0]; index++)
        s_assert_msgpack_fails (bad[index], ZQ_EJSON);
    void *data;
    size_t size;
    errno = 0;
    assert_int_equal (zq_json_to_msgpack (NULL, &data, &size), -1);
    assert_int_equal (errno, EINVAL);
}

static void
test_msgpack_without_json_form (void **state)
{
    (void)state;
    S_ASSERT_JSON_FAILS ("\x81\x01\x02", ZQ_EJSON);           //  {1: 2}
    S_ASSERT_JSON_FAILS ("\x81\xc4\x01k\x02", ZQ_EJSON);      //  bin key
    S_ASSERT_JSON_FAILS ("\x81\xc0\x02", ZQ_EJSON);           //  nil key
    S_ASSERT_JSON_FAILS ("\x81\xa1\xff\x02", ZQ_EJSON);       //  key not UTF-8
    S_ASSERT_JSON_FAILS ("\x82\xa1k\x01\xa1k\x02", ZQ_EJSON); //  duplicate key
    S_ASSERT_JSON_FAILS ("\x91\x81\x91\x01\x02", ZQ_EJSON);   //  deep inside
    //  A key with NUL in it is a valid JSON key.
    S_ASSERT_JSON ("\x81\xa3"
                   "a\x00"
                   "b\x01",
                   "{\"a\\u0000b\":1}");
}

static void
test_hostile_msgpack (void **state)
{
    (void)state;
    //  Declared sizes far beyond the bytes present fail before allocating.
    S_ASSERT_JSON_FAILS ("\xdd\xff\xff\xff\xff", ZQ_EPROTO); //  array32 of 4G
    S_ASSERT_JSON_FAILS ("\xdd\xff\xff\xff\xff\x01\x02", ZQ_EPROTO);
    S_ASSERT_JSON_FAILS ("\xdf\xff\xff\xff\xff\x01\x02", ZQ_EPROTO); //  map32 of 4G
    S_ASSERT_JSON_FAILS ("\xdb\xff\xff\xff\xff"
                         "abc",
                         ZQ_EPROTO); //  str32 of 4G
    S_ASSERT_JSON_FAILS ("\xc6\xff\xff\xff\xff"
                         "abc",
                         ZQ_EPROTO); //  bin32 of 4G
    S_ASSERT_JSON_FAILS ("\xc9\xff\xff\xff\xff\x01"
                         "abc",
                         ZQ_EPROTO);
    S_ASSERT_JSON_FAILS ("\x93\x01\x02", ZQ_EPROTO); //  truncated
    S_ASSERT_JSON_FAILS ("\xcb\x00", ZQ_EPROTO);
    S_ASSERT_JSON_FAILS ("\xc1", ZQ_EPROTO);     //  reserved byte
    S_ASSERT_JSON_FAILS ("\x01\x02", ZQ_EPROTO); //  trailing bytes
    s_assert_json_fails ("", 0, ZQ_EPROTO);

    //  Nesting: ZQ_MSG_MAX_DEPTH levels convert, one more is refused
    //  (an empty array is one level, as [1] is).
    uint8_t deep[ZQ_MSG_MAX_DEPTH + 1];
    memset (deep, 0x91, sizeof deep);
    deep[ZQ_MSG_MAX_DEPTH - 1] = 0x90;
    char *json = zq_msgpack_to_json (deep, ZQ_MSG_MAX_DEPTH);
    assert_non_null (json);
    assert_int_equal (strlen (json), 2 * ZQ_MSG_MAX_DEPTH);
    free (json);
    deep[ZQ_MSG_MAX_DEPTH - 1] = 0x91;
    deep[ZQ_MSG_MAX_DEPTH] = 0x90;
    s_assert_json_fails (deep, ZQ_MSG_MAX_DEPTH + 1, ZQ_EDEPTH);
}

static void
test_json_depth (void **state)
{
    (void)state;
    //  ZQ_MSG_MAX_DEPTH nested containers are accepted, one more is not;
    //  a $bin object is a scalar in msgpack and adds no level.
    char text[4 * 5000 + 64];
    char *p = text;
    for (int level = 0; level < ZQ_MSG_MAX_DEPTH; level++)
        *p++ = '[';
    p += sprintf (p, "{\"$bin\":\"Zg==\"}");
    for (int level = 0; level < ZQ_MSG_MAX_DEPTH; level++)
        *p++ = ']';
    *p = 0;
    void *data;
    size_t size;
    assert_int_equal (zq_json_to_msgpack (text, &data, &size), 0);
    assert_int_equal (size, ZQ_MSG_MAX_DEPTH + 3);
    free (data);

    p = text;
    for (int level = 0; level < ZQ_MSG_MAX_DEPTH; level++)
        p += sprintf (p, "{\"k\":");
    p += sprintf (p, "[1]");
    for (int level = 0; level < ZQ_MSG_MAX_DEPTH; level++)
        *p++ = '}';
    *p = 0;
    s_assert_msgpack_fails (text, ZQ_EDEPTH);

    //  Far deeper than the JSON parser goes: still a clean ZQ_EDEPTH.
    p = text;
    for (int level = 0; level < 5000; level++)
        *p++ = '[';
    for (int level = 0; level < 5000; level++)
        *p++ = ']';
    *p = 0;
    s_assert_msgpack_fails (text, ZQ_EDEPTH);
}

static void
test_message_body_json (void **state)
{
    (void)state;
    zq_msg_t *msg = zq_msg_new ("orders");
    assert_non_null (msg);
    //  A new message's body is nil.
    char *json = zq_msg_body_json (msg);
    assert_non_null (json);
    assert_string_equal (json, "null");
    free (json);

    assert_int_equal (zq_msg_set_body_json (msg, "{\"order\":\"A-17\",\"cents\":1299}"), 0);
    int64_t cents = 0;
    assert_int_equal (zq_msg_get_int (msg, "cents", &cents), 0);
    assert_true (cents == 1299);
    char *order = zq_msg_get_str (msg, "order");
    assert_string_equal (order, "A-17");
    free (order);

    //  A failed conversion leaves the body as it was.
    errno = 0;
    assert_int_equal (zq_msg_set_body_json (msg, "{\"broken\":"), -1);
    assert_int_equal (errno, ZQ_EJSON);
    json = zq_msg_body_json (msg);
    assert_non_null (json);
    assert_string_equal (json, "{\"order\":\"A-17\",\"cents\":1299}");
    free (json);

    //  A body with no JSON form.
    assert_int_equal (zq_msg_set_body (msg, "\x81\x01\x02", 3), 0);
    errno = 0;
    assert_null (zq_msg_body_json (msg));
    assert_int_equal (errno, ZQ_EJSON);
    zq_msg_destroy (&msg);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_scalars),
        cmocka_unit_test (test_big_integers),
        cmocka_unit_test (test_floats),
        cmocka_unit_test (test_containers),
        cmocka_unit_test (test_unicode),
        cmocka_unit_test (test_binary),
        cmocka_unit_test (test_ext),
        cmocka_unit_test (test_invalid_json),
        cmocka_unit_test (test_msgpack_without_json_form),
        cmocka_unit_test (test_hostile_msgpack),
        cmocka_unit_test (test_json_depth),
        cmocka_unit_test (test_message_body_json),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
