/*  =========================================================================
    zq_msg_envelope - the envelope header (doc/PROTOCOL.md sections 6 to 9):
    writing it with zq_wire's writer, and parsing and checking it without
    allocating (zqi_envelope_parse), for zq_msg's decoder and for the
    reliable server, which stores frames as they came; and finding the id
    alone (zqi_envelope_id), for a PUT read ahead or refused.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_msg_internal.h"

//  How a header of this version starts: an array of the six elements,
//  the version, then the id's bin marker and size. The writer always
//  writes this, and the fast parser looks for it.
static const uint8_t s_start[4] = {0x90 | ZQI_MSG_HEADER_ELEMENTS_MIN, ZQ_PROTOCOL_VERSION, 0xc4,
                                   ZQ_MSG_ID_SIZE};

//  ---- Encoding -----------------------------------------------------------
//  The header is written with zq_wire's writer: the shortest encoding of
//  each value.

size_t
zqi_msg_header_size (const zq_msg_t *self)
{
    size_t size = 1 + 1 + 2 + ZQ_MSG_ID_SIZE + zqi_mp_str_size (self->subject_size) +
                  zqi_mp_uint_size ((uint64_t)self->created_ms) + zqi_mp_uint_size (self->attempt) +
                  zqi_mp_map_size (self->header_count);
    for (uint32_t index = 0; index < self->header_count; index++)
        size += zqi_mp_str_size (self->headers[index].name_size) +
                zqi_mp_str_size (self->headers[index].value_size);
    return size;
}

//  Writes the header into out, which holds zqi_msg_header_size bytes; returns
//  the position after it.
uint8_t *
zqi_msg_header_write (const zq_msg_t *self, uint8_t *out)
{
    memcpy (out, s_start, sizeof s_start);
    memcpy (out + sizeof s_start, self->id, ZQ_MSG_ID_SIZE);
    out += sizeof s_start + ZQ_MSG_ID_SIZE;
    out = zqi_mp_write_str (out, self->subject, self->subject_size);
    out = zqi_mp_write_uint (out, (uint64_t)self->created_ms);
    out = zqi_mp_write_uint (out, self->attempt);
    out = zqi_mp_write_map (out, self->header_count);
    for (uint32_t index = 0; index < self->header_count; index++) {
        const zqi_msg_header_t *header = &self->headers[index];
        out = zqi_mp_write_str (out, header->name, header->name_size);
        out = zqi_mp_write_str (out, header->value, header->value_size);
    }
    return out;
}

size_t
zqi_msg_wire_size (const zq_msg_t *self)
{
    ZQ_ASSERT (self);
    return zqi_msg_header_size (self) + self->body_size;
}

size_t
zqi_msg_wire_write (const zq_msg_t *self, uint8_t *out)
{
    ZQ_ASSERT (self && out);
    uint8_t *body = zqi_msg_header_write (self, out);
    memcpy (body, self->body, self->body_size);
    return (size_t)(body - out) + self->body_size;
}

//  ---- Decoding -----------------------------------------------------------

int
zqi_envelope_id (const uint8_t *first, size_t first_size, const uint8_t **id_p)
{
    //  A PUT batch's every element comes here first (its dedupe lookup is
    //  started ahead).
    if (first_size >= sizeof s_start + ZQ_MSG_ID_SIZE &&
        memcmp (first, s_start, sizeof s_start) == 0) {
        *id_p = first + sizeof s_start;
        return 0;
    }
    zqi_cursor_t cursor = {first, first + first_size};
    uint64_t elements, version;
    const uint8_t *id;
    uint32_t id_size;
    if (zqi_mp_read_array_marker (&cursor, &elements) || elements < 2 ||
        zqi_mp_read_uint (&cursor, &version) || version != ZQ_PROTOCOL_VERSION ||
        zqi_mp_read_bin (&cursor, &id, &id_size) || id_size != ZQ_MSG_ID_SIZE)
        return zqi_fail (ZQ_EPROTO);
    *id_p = id;
    return 0;
}

//  Reads a str of the forms a header written by zq uses for names, values
//  and subjects up to 255 bytes (fixstr, str8). Returns false, pos
//  unchanged, for anything else.
static inline bool
s_fast_str (const uint8_t **pos_p, const uint8_t *end, const char **str_p, uint32_t *size_p)
{
    const uint8_t *pos = *pos_p;
    if (pos >= end)
        return false;
    uint32_t size;
    if ((*pos & 0xe0) == 0xa0) {
        size = *pos & 0x1f;
        pos += 1;
    } else if (*pos == 0xd9 && end - pos >= 2) {
        size = pos[1];
        pos += 2;
    } else
        return false;
    if (size > (size_t)(end - pos))
        return false;
    *str_p = (const char *)pos;
    *size_p = size;
    *pos_p = pos + size;
    return true;
}

//  Reads a positive fixint or a uint64 (the forms zq writes for small
//  attempts and for today's created_ms). Returns false, pos unchanged, for
//  anything else.
static inline bool
s_fast_uint (const uint8_t **pos_p, const uint8_t *end, uint64_t *value_p)
{
    const uint8_t *pos = *pos_p;
    if (pos >= end)
        return false;
    if (*pos <= 0x7f) {
        *value_p = *pos;
        *pos_p = pos + 1;
        return true;
    }
    if (*pos == 0xcf && end - pos >= 9) {
        uint64_t value;
        memcpy (&value, pos + 1, sizeof value);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        value = __builtin_bswap64 (value);
#endif
        *value_p = value;
        *pos_p = pos + 9;
        return true;
    }
    return false;
}

//  Parses the header in the forms zq itself writes for usual messages: six
//  elements, version 1, the id as bin8, str up to 255 bytes, created_ms
//  and attempt as fixint or uint64, up to 15 headers. Checks everything
//  the general parser checks for these forms. Returns true with the
//  envelope's header fields set, or false for any other input (which the
//  general parser then reads, and judges).
static bool
s_parse_header_fast (const uint8_t *first, size_t first_size, zqi_envelope_t *envelope)
{
    if (first_size < sizeof s_start + ZQ_MSG_ID_SIZE ||
        memcmp (first, s_start, sizeof s_start) != 0)
        return false;
    const uint8_t *pos = first + sizeof s_start + ZQ_MSG_ID_SIZE;
    const uint8_t *end = first + first_size;
    envelope->id = first + sizeof s_start;
    if (!s_fast_str (&pos, end, &envelope->subject, &envelope->subject_size) ||
        !s_fast_uint (&pos, end, &envelope->created_ms) || envelope->created_ms > INT64_MAX)
        return false;
    envelope->attempt_offset = (size_t)(pos - first);
    if (!s_fast_uint (&pos, end, &envelope->attempt) || envelope->attempt > UINT32_MAX ||
        pos >= end || (*pos & 0xf0) != 0x80)
        return false;
    envelope->attempt_size = (size_t)(pos - first) - envelope->attempt_offset;
    uint32_t pairs = *pos++ & 0x0f;
    for (uint32_t index = 0; index < pairs; index++) {
        const char *name, *value;
        uint32_t name_size, value_size;
        if (!s_fast_str (&pos, end, &name, &name_size) || name_size == 0 ||
            !s_fast_str (&pos, end, &value, &value_size))
            return false;
        for (uint32_t other = 0; other < index; other++)
            if (envelope->headers[other].name_size == name_size &&
                memcmp (envelope->headers[other].name, name, name_size) == 0)
                return false;
        envelope->headers[index].name = name;
        envelope->headers[index].name_size = name_size;
        envelope->headers[index].value = value;
        envelope->headers[index].value_size = value_size;
    }
    envelope->header_count = pairs;
    envelope->header_size = (size_t)(pos - first);
    return true;
}

//  Parses and checks the header at the start of first, any valid encoding.
//  Returns 0 with the envelope's header fields set, or -1 with errno
//  ZQ_EPROTO, ZQ_EVERSION or ZQ_EDEPTH.
static int
s_parse_header (const uint8_t *first, size_t first_size, zqi_envelope_t *envelope)
{
    zqi_cursor_t cursor = {first, first + first_size};
    //  The array marker, then the version, whatever else follows.
    if (first_size == 0)
        return zqi_fail (ZQ_EPROTO);
    uint64_t elements;
    uint8_t marker = *cursor.pos;
    if (marker >= 0x90 && marker <= 0x9f) {
        elements = marker & 0x0f;
        cursor.pos += 1;
    } else if (marker == 0xdc && first_size >= 3) {
        elements = ((uint64_t)first[1] << 8) | first[2];
        cursor.pos += 3;
    } else if (marker == 0xdd && first_size >= 5) {
        elements = ((uint64_t)first[1] << 24) | ((uint64_t)first[2] << 16) |
                   ((uint64_t)first[3] << 8) | first[4];
        cursor.pos += 5;
    } else
        return zqi_fail (ZQ_EPROTO);
    uint64_t version;
    if (elements == 0 || zqi_mp_read_uint (&cursor, &version))
        return zqi_fail (ZQ_EPROTO);
    if (version != ZQ_PROTOCOL_VERSION)
        return zqi_fail (ZQ_EVERSION);
    if (elements < ZQI_MSG_HEADER_ELEMENTS_MIN || elements > ZQI_MSG_HEADER_ELEMENTS_MAX)
        return zqi_fail (ZQ_EPROTO);

    const uint8_t *id;
    uint32_t id_size;
    if (zqi_mp_read_bin (&cursor, &id, &id_size) || id_size != ZQ_MSG_ID_SIZE)
        return zqi_fail (ZQ_EPROTO);
    envelope->id = id;
    if (zqi_mp_read_str (&cursor, &envelope->subject, &envelope->subject_size) ||
        envelope->subject_size > ZQ_MSG_MAX_STRING)
        return zqi_fail (ZQ_EPROTO);
    if (zqi_mp_read_uint (&cursor, &envelope->created_ms) || envelope->created_ms > INT64_MAX)
        return zqi_fail (ZQ_EPROTO);
    envelope->attempt_offset = (size_t)(cursor.pos - first);
    if (zqi_mp_read_uint (&cursor, &envelope->attempt) || envelope->attempt > UINT32_MAX)
        return zqi_fail (ZQ_EPROTO);
    envelope->attempt_size = (size_t)(cursor.pos - first) - envelope->attempt_offset;
    uint32_t pairs;
    if (zqi_mp_read_map (&cursor, &pairs) || pairs > ZQ_MSG_MAX_HEADERS)
        return zqi_fail (ZQ_EPROTO);
    for (uint32_t index = 0; index < pairs; index++) {
        const char *name, *value;
        uint32_t name_size, value_size;
        if (zqi_mp_read_str (&cursor, &name, &name_size) || name_size == 0 ||
            name_size > ZQ_MSG_MAX_STRING || zqi_mp_read_str (&cursor, &value, &value_size) ||
            value_size > ZQ_MSG_MAX_STRING)
            return zqi_fail (ZQ_EPROTO);
        for (uint32_t other = 0; other < index; other++)
            if (envelope->headers[other].name_size == name_size &&
                memcmp (envelope->headers[other].name, name, name_size) == 0)
                return zqi_fail (ZQ_EPROTO);
        envelope->headers[index].name = name;
        envelope->headers[index].name_size = name_size;
        envelope->headers[index].value = value;
        envelope->headers[index].value_size = value_size;
    }
    envelope->header_count = pairs;
    //  Extension elements of later minor revisions: checked, skipped.
    for (uint64_t index = ZQI_MSG_HEADER_ELEMENTS_MIN; index < elements; index++)
        if (zqi_mp_skip (&cursor, ZQ_MSG_MAX_DEPTH))
            return -1;
    envelope->header_size = (size_t)(cursor.pos - first);
    return 0;
}

int
zqi_envelope_parse (const uint8_t *first, size_t first_size, const uint8_t *second,
                    size_t second_size, bool check_body, zqi_envelope_t *envelope)
{
    if (!s_parse_header_fast (first, first_size, envelope) &&
        s_parse_header (first, first_size, envelope))
        return -1;
    if (second) {
        if (envelope->header_size != first_size)
            return zqi_fail (ZQ_EPROTO);
        envelope->body = second;
        envelope->body_size = second_size;
    } else {
        envelope->body = first + envelope->header_size;
        envelope->body_size = first_size - envelope->header_size;
    }
    if (!check_body)
        return envelope->body_size ? 0 : zqi_fail (ZQ_EPROTO);
    return zqi_msgpack_check (envelope->body, envelope->body_size, NULL, ZQ_MSG_MAX_DEPTH);
}
