/*  =========================================================================
    test_reliable_wire - finding a PUT's id before its envelope is parsed
    (zqi_r_envelope_id, patterns/reliable_wire.c, compiled into this
    program): the id is found in every encoding of the envelope's head
    that msgpack allows, at the same octets whatever the form, and
    refused with ZQ_EPROTO for a version other than 1, an id of another
    size, an array of fewer than 2 elements, or a head cut short
    anywhere.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "../patterns/reliable.h"
#include "compiled_in.h"

//  Writes an envelope's head: an array marker for elements (in the form
//  array_form: 0 fix, 16, 32), the version (uint_form: 0 fixint, 8, 16,
//  32, 64 bits), a bin (bin_form: 8, 16, 32) of id_size octets 0xA0.. and
//  a nil (the next element, so that the head is never the whole frame).
//  Returns the octets written; *id_at is where the id's octets start.
static size_t
s_head (uint8_t *out, uint32_t elements, int array_form, uint64_t version, int uint_form,
        int bin_form, uint32_t id_size, size_t *id_at)
{
    size_t at = 0;
    if (array_form == 0)
        out[at++] = (uint8_t)(0x90 | elements);
    else if (array_form == 16) {
        out[at++] = 0xdc;
        out[at++] = (uint8_t)(elements >> 8);
        out[at++] = (uint8_t)elements;
    } else {
        out[at++] = 0xdd;
        for (int shift = 24; shift >= 0; shift -= 8)
            out[at++] = (uint8_t)(elements >> shift);
    }
    if (uint_form == 0)
        out[at++] = (uint8_t)version;
    else {
        int octets = uint_form / 8;
        out[at++] = (uint8_t)(uint_form == 8    ? 0xcc
                              : uint_form == 16 ? 0xcd
                              : uint_form == 32 ? 0xce
                                                : 0xcf);
        for (int index = octets - 1; index >= 0; index--)
            out[at++] = (uint8_t)(version >> (8 * index));
    }
    if (bin_form == 8) {
        out[at++] = 0xc4;
        out[at++] = (uint8_t)id_size;
    } else if (bin_form == 16) {
        out[at++] = 0xc5;
        out[at++] = (uint8_t)(id_size >> 8);
        out[at++] = (uint8_t)id_size;
    } else {
        out[at++] = 0xc6;
        for (int shift = 24; shift >= 0; shift -= 8)
            out[at++] = (uint8_t)(id_size >> shift);
    }
    *id_at = at;
    for (uint32_t index = 0; index < id_size; index++)
        out[at++] = (uint8_t)(0xA0 + index);
    out[at++] = 0xc0;
    return at;
}

//  Every form of a good head gives the id where it starts; cut anywhere
//  before the id's end, it is refused.
static void
test_id_in_every_form (void **state)
{
    (void)state;
    static const int array_forms[] = {0, 16, 32};
    static const int uint_forms[] = {0, 8, 16, 32, 64};
    static const int bin_forms[] = {8, 16, 32};
    static const uint32_t element_counts[] = {2, 7, 15};
    for (size_t a = 0; a < sizeof array_forms / sizeof *array_forms; a++)
        for (size_t u = 0; u < sizeof uint_forms / sizeof *uint_forms; u++)
            for (size_t b = 0; b < sizeof bin_forms / sizeof *bin_forms; b++)
                for (size_t e = 0; e < sizeof element_counts / sizeof *element_counts; e++) {
                    uint8_t head[64];
                    size_t id_at;
                    size_t size = s_head (head, element_counts[e], array_forms[a], 1, uint_forms[u],
                                          bin_forms[b], ZQ_MSG_ID_SIZE, &id_at);
                    const uint8_t *id = NULL;
                    assert_int_equal (zqi_r_envelope_id (head, size, &id), 0);
                    assert_ptr_equal (id, head + id_at);
                    for (size_t cut = 0; cut < id_at + ZQ_MSG_ID_SIZE; cut++) {
                        errno = 0;
                        assert_int_equal (zqi_r_envelope_id (head, cut, &id), -1);
                        assert_int_equal (errno, ZQ_EPROTO);
                    }
                    assert_int_equal (zqi_r_envelope_id (head, id_at + ZQ_MSG_ID_SIZE, &id), 0);
                }
}

//  What is not a PUT's head is refused, in the short form zq producers
//  write as in the others.
static void
test_bad_heads_refused (void **state)
{
    (void)state;
    static const int array_forms[] = {0, 16};
    static const int bin_forms[] = {8, 16};
    for (size_t a = 0; a < 2; a++)
        for (size_t b = 0; b < 2; b++) {
            uint8_t head[64];
            size_t id_at, size;
            const uint8_t *id;
            //  Versions 0 and 2.
            for (uint64_t version = 0; version <= 2; version += 2) {
                size = s_head (head, 7, array_forms[a], version, 0, bin_forms[b], ZQ_MSG_ID_SIZE,
                               &id_at);
                errno = 0;
                assert_int_equal (zqi_r_envelope_id (head, size, &id), -1);
                assert_int_equal (errno, ZQ_EPROTO);
            }
            //  Ids of 15 and 17 octets.
            for (uint32_t id_size = ZQ_MSG_ID_SIZE - 1; id_size <= ZQ_MSG_ID_SIZE + 1;
                 id_size += 2) {
                size = s_head (head, 7, array_forms[a], 1, 0, bin_forms[b], id_size, &id_at);
                errno = 0;
                assert_int_equal (zqi_r_envelope_id (head, size, &id), -1);
                assert_int_equal (errno, ZQ_EPROTO);
            }
            //  Arrays of 0 and 1 elements.
            for (uint32_t elements = 0; elements < 2; elements++) {
                size = s_head (head, elements, array_forms[a], 1, 0, bin_forms[b], ZQ_MSG_ID_SIZE,
                               &id_at);
                errno = 0;
                assert_int_equal (zqi_r_envelope_id (head, size, &id), -1);
                assert_int_equal (errno, ZQ_EPROTO);
            }
        }
    //  Not an array; the id as a str; a negative version.
    static const uint8_t map[] = {0x82, 0x01, 0xc4, 0x10, 0, 0, 0, 0, 0, 0,   0,
                                  0,    0,    0,    0,    0, 0, 0, 0, 0, 0xc0};
    static const uint8_t str_id[] = {0x92, 0x01, 0xd9, 0x10, 0, 0, 0, 0, 0, 0,
                                     0,    0,    0,    0,    0, 0, 0, 0, 0, 0};
    static const uint8_t negative[] = {0x92, 0xff, 0xc4, 0x10, 0, 0, 0, 0, 0, 0,
                                       0,    0,    0,    0,    0, 0, 0, 0, 0, 0};
    const uint8_t *id;
    assert_int_equal (zqi_r_envelope_id (map, sizeof map, &id), -1);
    assert_int_equal (zqi_r_envelope_id (str_id, sizeof str_id, &id), -1);
    assert_int_equal (zqi_r_envelope_id (negative, sizeof negative, &id), -1);
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
