/*  =========================================================================
    test_zq_envelope_id - finding a PUT's id before its envelope is parsed
    (zqi_envelope_id, src/zq_msg_envelope.c, compiled into this program):
    the id is found in every encoding of the envelope's head that msgpack
    allows (the array, version and bin markers of each width, the version
    signed or not), at the same octets whatever the form, and refused with
    ZQ_EPROTO for a version other than 1, an id of another size, an array
    of fewer than 2 elements, anything but an array, or a head cut short
    anywhere.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "../src/zq_internal.h"
#include "compiled_in.h"

#define S_COUNT(array) (sizeof (array) / sizeof (array)[0])

//  The markers each part of a head is written with: the array's (0 for
//  a fixarray), the version's (0 for a positive fixint), the id's bin.
static const uint8_t s_array_markers[] = {0, 0xdc, 0xdd};
static const uint8_t s_version_markers[] = {0, 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3};
static const uint8_t s_bin_markers[] = {0xc4, 0xc5, 0xc6};

//  Writes value big-endian in width octets at out; returns the end.
static uint8_t *
s_put_be (uint8_t *out, uint64_t value, int width)
{
    for (int index = width - 1; index >= 0; index--)
        *out++ = (uint8_t)(value >> (8 * index));
    return out;
}

//  Writes an envelope's head with the markers given: an array of
//  elements, the version, a bin of id_size octets 0xA0, 0xA1, ... and a
//  nil (the next element, so that the head is never the whole frame).
//  Returns the octets written; *id_at is where the id's octets start.
static size_t
s_head (uint8_t *out, uint8_t array_marker, uint32_t elements, uint8_t version_marker,
        uint64_t version, uint8_t bin_marker, uint32_t id_size, size_t *id_at)
{
    uint8_t *at = out;
    if (array_marker == 0)
        *at++ = (uint8_t)(0x90 | elements);
    else {
        *at++ = array_marker;
        at = s_put_be (at, elements, array_marker == 0xdc ? 2 : 4);
    }
    if (version_marker == 0)
        *at++ = (uint8_t)version;
    else {
        *at++ = version_marker;
        at = s_put_be (at, version, 1 << (version_marker & 0x03));
    }
    *at++ = bin_marker;
    at = s_put_be (at, id_size, 1 << (bin_marker - 0xc4));
    *id_at = (size_t)(at - out);
    for (uint32_t index = 0; index < id_size; index++)
        *at++ = (uint8_t)(0xA0 + index);
    *at++ = 0xc0;
    return (size_t)(at - out);
}

//  Checks that the size octets at head are refused as no PUT's head.
static void
s_refused (const uint8_t *head, size_t size)
{
    const uint8_t *id = NULL;
    errno = 0;
    assert_int_equal (zqi_envelope_id (head, size, &id), -1);
    assert_int_equal (errno, ZQ_EPROTO);
}

//  Every form of a good head gives the id where it starts; cut anywhere
//  before the id's end, it is refused.
static void
test_id_in_every_form (void **state)
{
    (void)state;
    //  6: the head zq writes; 2 and 15 the fixarray's bounds.
    static const uint32_t element_counts[] = {2, 6, 15};
    for (size_t array = 0; array < S_COUNT (s_array_markers); array++)
        for (size_t version = 0; version < S_COUNT (s_version_markers); version++)
            for (size_t bin = 0; bin < S_COUNT (s_bin_markers); bin++)
                for (size_t count = 0; count < S_COUNT (element_counts); count++) {
                    uint8_t head[64];
                    size_t id_at;
                    size_t size = s_head (head, s_array_markers[array], element_counts[count],
                                          s_version_markers[version], 1, s_bin_markers[bin],
                                          ZQ_MSG_ID_SIZE, &id_at);
                    const uint8_t *id = NULL;
                    assert_int_equal (zqi_envelope_id (head, size, &id), 0);
                    assert_ptr_equal (id, head + id_at);
                    for (size_t cut = 0; cut < id_at + ZQ_MSG_ID_SIZE; cut++)
                        s_refused (head, cut);
                    assert_int_equal (zqi_envelope_id (head, id_at + ZQ_MSG_ID_SIZE, &id), 0);
                    assert_ptr_equal (id, head + id_at);
                }
}

//  What is not a PUT's head is refused, in the form zq writes as in the
//  others.
static void
test_bad_heads_refused (void **state)
{
    (void)state;
    static const uint8_t array_markers[] = {0, 0xdc};
    static const uint8_t bin_markers[] = {0xc4, 0xc5};
    for (size_t array = 0; array < S_COUNT (array_markers); array++)
        for (size_t bin = 0; bin < S_COUNT (bin_markers); bin++) {
            uint8_t head[64];
            size_t id_at;
            //  Versions 0 and 2.
            for (uint64_t version = 0; version <= 2; version += 2)
                s_refused (head, s_head (head, array_markers[array], 6, 0, version,
                                         bin_markers[bin], ZQ_MSG_ID_SIZE, &id_at));
            //  Ids of 15 and 17 octets.
            for (uint32_t id_size = ZQ_MSG_ID_SIZE - 1; id_size <= ZQ_MSG_ID_SIZE + 1; id_size += 2)
                s_refused (head, s_head (head, array_markers[array], 6, 0, 1, bin_markers[bin],
                                         id_size, &id_at));
            //  Arrays of 0 and 1 elements.
            for (uint32_t elements = 0; elements < 2; elements++)
                s_refused (head, s_head (head, array_markers[array], elements, 0, 1,
                                         bin_markers[bin], ZQ_MSG_ID_SIZE, &id_at));
        }
    //  A map; a fixstr where the array would be; the id as a str; a
    //  negative version; version 1 as a negative 8-bit integer's octet.
    static const uint8_t heads[][21] = {
        {0x86, 0x01, 0xc4, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xc0},
        {0xa6, 0x01, 0xc4, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xc0},
        {0x96, 0x01, 0xd9, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xc0},
        {0x96, 0xff, 0xc4, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xc0},
        {0x96, 0xd0, 0x81, 0xc4, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    };
    for (size_t index = 0; index < S_COUNT (heads); index++)
        s_refused (heads[index], sizeof heads[index]);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_id_in_every_form),
        cmocka_unit_test (test_bad_heads_refused),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
