/*  =========================================================================
    reliable_wire - the reliable pattern's command frames and a parser of
    envelope headers that allocates nothing (doc/PROTOCOL.md, "reliable").

    The server reads the envelope of every PUT to learn its id, queue,
    attempt and reserved headers, and stores the frame as it came; so the
    envelope is checked here by the same rules zq_msg's decoder applies
    (doc/PROTOCOL.md sections 6 to 9), without building a message.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable.h"

//  ---- msgpack reading beyond zqi_mp_read_* -------------------------------

//  Reads an array marker without the "fits in what remains" check of
//  zqi_mp_read_array (the count is checked by the caller's bounds).
static int
s_read_array (zqi_cursor_t *cursor, uint64_t *count_p)
{
    if (cursor->pos >= cursor->end)
        return zqi_fail (ZQ_EPROTO);
    const uint8_t *p = cursor->pos;
    size_t left = (size_t)(cursor->end - p);
    if (*p >= 0x90 && *p <= 0x9f) {
        *count_p = *p & 0x0f;
        cursor->pos += 1;
    } else if (*p == 0xdc && left >= 3) {
        *count_p = ((uint64_t)p[1] << 8) | p[2];
        cursor->pos += 3;
    } else if (*p == 0xdd && left >= 5) {
        *count_p = ((uint64_t)p[1] << 24) | ((uint64_t)p[2] << 16) | ((uint64_t)p[3] << 8) | p[4];
        cursor->pos += 5;
    } else
        return zqi_fail (ZQ_EPROTO);
    return 0;
}

//  Reads an integer of any encoding, negative ones included.
static int
s_read_int (zqi_cursor_t *cursor, int64_t *value_p)
{
    if (cursor->pos >= cursor->end)
        return zqi_fail (ZQ_EPROTO);
    const uint8_t *p = cursor->pos;
    size_t left = (size_t)(cursor->end - p);
    if (*p >= 0xe0) {
        *value_p = (int8_t)*p;
        cursor->pos += 1;
        return 0;
    }
    int width = *p == 0xd0 ? 1 : *p == 0xd1 ? 2 : *p == 0xd2 ? 4 : *p == 0xd3 ? 8 : 0;
    if (width) {
        if (left < (size_t)width + 1)
            return zqi_fail (ZQ_EPROTO);
        uint64_t raw = 0;
        for (int i = 1; i <= width; i++)
            raw = (raw << 8) | p[i];
        if (width == 1)
            *value_p = (int8_t)raw;
        else if (width == 2)
            *value_p = (int16_t)raw;
        else if (width == 4)
            *value_p = (int32_t)raw;
        else
            *value_p = (int64_t)raw;
        cursor->pos += width + 1;
        return 0;
    }
    uint64_t value;
    if (zqi_mp_read_uint (cursor, &value))
        return -1;
    if (value > INT64_MAX) {
        cursor->pos = p;
        return zqi_fail (ZQ_EPROTO);
    }
    *value_p = (int64_t)value;
    return 0;
}

//  Parses a header value as a decimal integer >= 0; -1 if it is not one.
static int64_t
s_decimal (const char *text, uint32_t size)
{
    if (size == 0 || size > 18)
        return -1;
    int64_t value = 0;
    for (uint32_t i = 0; i < size; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -1;
        value = value * 10 + (text[i] - '0');
    }
    return value;
}

//  ---- Commands -----------------------------------------------------------

int
zqi_r_command_parse (const uint8_t *data, size_t size, zqi_r_command_t *command)
{
    memset (command, 0, sizeof *command);
    zqi_cursor_t cursor = {data, data + size};
    uint64_t elements, version;
    if (s_read_array (&cursor, &elements) || elements == 0 || zqi_mp_read_uint (&cursor, &version))
        return zqi_fail (ZQ_EPROTO);
    if (version != ZQI_R_VERSION)
        return zqi_fail (ZQ_EVERSION);
    if (elements < 2 || elements > ZQI_R_ELEMENTS_MAX || zqi_mp_read_uint (&cursor, &command->kind))
        return zqi_fail (ZQ_EPROTO);
    uint64_t used = 2;
    const uint8_t *bin;
    uint32_t bin_size;
    uint64_t value;
    switch (command->kind) {
        case ZQI_R_PUT:
        case ZQI_R_PING:
            break;
        case ZQI_R_CONFIRM:
        case ZQI_R_ACK:
        case ZQI_R_REFUSE:
        case ZQI_R_NACK:
        case ZQI_R_TOUCH:
            if (elements < 3 || zqi_mp_read_bin (&cursor, &bin, &bin_size) || bin_size == 0 ||
                bin_size % ZQ_MSG_ID_SIZE)
                return zqi_fail (ZQ_EPROTO);
            command->ids = bin;
            command->id_count = bin_size / ZQ_MSG_ID_SIZE;
            used = 3;
            if (command->kind == ZQI_R_REFUSE) {
                if (elements < 5 || zqi_mp_read_uint (&cursor, &command->code) ||
                    zqi_mp_read_str (&cursor, &command->text, &command->text_size))
                    return zqi_fail (ZQ_EPROTO);
                used = 5;
            } else if (command->kind == ZQI_R_NACK) {
                if (elements < 4 || s_read_int (&cursor, &command->number))
                    return zqi_fail (ZQ_EPROTO);
                used = 4;
            } else if (command->kind == ZQI_R_TOUCH) {
                //  Any uint: the server clamps it (max_delay_ms).
                if (elements < 4 || zqi_mp_read_uint (&cursor, &value))
                    return zqi_fail (ZQ_EPROTO);
                command->number = value > INT64_MAX ? INT64_MAX : (int64_t)value;
                used = 4;
            }
            break;
        case ZQI_R_LEAVE:
            if (elements >= 3) {
                if (zqi_mp_read_bin (&cursor, &bin, &bin_size) || bin_size % ZQ_MSG_ID_SIZE)
                    return zqi_fail (ZQ_EPROTO);
                command->ids = bin;
                command->id_count = bin_size / ZQ_MSG_ID_SIZE;
                used = 3;
            }
            break;
        case ZQI_R_CONSUME:
        case ZQI_R_CANCEL:
            if (elements < 3 || zqi_mp_read_str (&cursor, &command->text, &command->text_size))
                return zqi_fail (ZQ_EPROTO);
            used = 3;
            if (command->kind == ZQI_R_CONSUME) {
                if (elements < 4 || zqi_mp_read_uint (&cursor, &value) || value > 1000000)
                    return zqi_fail (ZQ_EPROTO);
                command->number = (int64_t)value;
                used = 4;
            }
            break;
        case ZQI_R_DELIVER:
            if (elements < 3 || zqi_mp_read_uint (&cursor, &value) || value > INT32_MAX)
                return zqi_fail (ZQ_EPROTO);
            command->number = (int64_t)value;
            used = 3;
            break;
        case ZQI_R_PONG:
            if (elements < 4 || zqi_mp_read_bin (&cursor, &bin, &bin_size) ||
                bin_size != ZQI_R_INSTANCE_SIZE || zqi_mp_read_uint (&cursor, &value))
                return zqi_fail (ZQ_EPROTO);
            command->instance = bin;
            command->number = (int64_t)(value & 0xffff);
            used = 4;
            break;
        case ZQI_R_ERROR:
            if (elements < 4 || zqi_mp_read_uint (&cursor, &command->code) ||
                zqi_mp_read_str (&cursor, &command->text, &command->text_size))
                return zqi_fail (ZQ_EPROTO);
            used = 4;
            break;
        default:
            //  Unknown: the caller answers it; the rest is not looked at.
            return 0;
    }
    for (uint64_t index = used; index < elements; index++)
        if (zqi_mp_skip (&cursor, ZQ_MSG_MAX_DEPTH))
            return -1;
    return cursor.pos == cursor.end ? 0 : zqi_fail (ZQ_EPROTO);
}

//  ---- Envelope -----------------------------------------------------------

int
zqi_r_envelope_parse (const uint8_t *first, size_t first_size, const uint8_t *second,
                      size_t second_size, bool check_body, zqi_r_envelope_t *envelope)
{
    zqi_envelope_t parsed;
    if (zqi_envelope_parse (first, first_size, second, second_size, check_body, &parsed))
        return -1;
    envelope->id = parsed.id;
    envelope->subject = parsed.subject;
    envelope->subject_size = parsed.subject_size;
    envelope->created_ms = parsed.created_ms;
    envelope->attempt = parsed.attempt;
    envelope->attempt_offset = parsed.attempt_offset;
    envelope->attempt_size = parsed.attempt_size;
    envelope->ttl_ms = -1;
    envelope->not_before_ms = -1;
    envelope->body = parsed.body;
    envelope->body_size = parsed.body_size;
    for (uint32_t index = 0; index < parsed.header_count; index++) {
        const char *name = parsed.headers[index].name;
        uint32_t name_size = parsed.headers[index].name_size;
        if (name_size == 9 && memcmp (name, "zq-ttl-ms", 9) == 0)
            envelope->ttl_ms =
                s_decimal (parsed.headers[index].value, parsed.headers[index].value_size);
        else if (name_size == 16 && memcmp (name, "zq-not-before-ms", 16) == 0)
            envelope->not_before_ms =
                s_decimal (parsed.headers[index].value, parsed.headers[index].value_size);
    }
    return 0;
}

int
zqi_r_envelope_id (const uint8_t *first, size_t first_size, const uint8_t **id_p)
{
    zqi_cursor_t cursor = {first, first + first_size};
    uint64_t elements, version;
    const uint8_t *id;
    uint32_t id_size;
    if (s_read_array (&cursor, &elements) || elements < 2 || zqi_mp_read_uint (&cursor, &version) ||
        version != 1 || zqi_mp_read_bin (&cursor, &id, &id_size) || id_size != ZQ_MSG_ID_SIZE)
        return zqi_fail (ZQ_EPROTO);
    *id_p = id;
    return 0;
}

//  ---- Building frames ----------------------------------------------------

void
zqi_r_buf_reset (zqi_r_buf_t *buf)
{
    buf->size = 0;
}

void
zqi_r_buf_free (zqi_r_buf_t *buf)
{
    free (buf->data);
    buf->data = NULL;
    buf->size = buf->capacity = 0;
}

static int
s_reserve (zqi_r_buf_t *buf, size_t more)
{
    if (buf->size + more <= buf->capacity)
        return 0;
    size_t capacity = buf->capacity ? buf->capacity : 256;
    while (capacity < buf->size + more)
        capacity *= 2;
    uint8_t *data = (uint8_t *)realloc (buf->data, capacity);
    if (!data)
        return zqi_fail (ENOMEM);
    buf->data = data;
    buf->capacity = capacity;
    return 0;
}

static void
s_put_be (uint8_t *out, uint64_t value, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        out[i] = (uint8_t)value;
        value >>= 8;
    }
}

//  Writes marker then value in width big-endian bytes.
static int
s_put_marked (zqi_r_buf_t *buf, uint8_t marker, uint64_t value, int width)
{
    if (s_reserve (buf, 1 + (size_t)width))
        return -1;
    buf->data[buf->size] = marker;
    s_put_be (buf->data + buf->size + 1, value, width);
    buf->size += 1 + (size_t)width;
    return 0;
}

int
zqi_r_put_raw (zqi_r_buf_t *buf, const void *data, size_t size)
{
    if (s_reserve (buf, size))
        return -1;
    if (size)
        memcpy (buf->data + buf->size, data, size);
    buf->size += size;
    return 0;
}

int
zqi_r_put_array (zqi_r_buf_t *buf, uint32_t count)
{
    if (count < 16) {
        uint8_t marker = (uint8_t)(0x90 | count);
        return zqi_r_put_raw (buf, &marker, 1);
    }
    return count <= 0xffff ? s_put_marked (buf, 0xdc, count, 2)
                           : s_put_marked (buf, 0xdd, count, 4);
}

int
zqi_r_put_uint (zqi_r_buf_t *buf, uint64_t value)
{
    if (value < 128) {
        uint8_t byte = (uint8_t)value;
        return zqi_r_put_raw (buf, &byte, 1);
    }
    if (value <= 0xff)
        return s_put_marked (buf, 0xcc, value, 1);
    if (value <= 0xffff)
        return s_put_marked (buf, 0xcd, value, 2);
    if (value <= 0xffffffffu)
        return s_put_marked (buf, 0xce, value, 4);
    return s_put_marked (buf, 0xcf, value, 8);
}

int
zqi_r_put_int (zqi_r_buf_t *buf, int64_t value)
{
    if (value >= 0)
        return zqi_r_put_uint (buf, (uint64_t)value);
    if (value >= -32) {
        uint8_t byte = (uint8_t)(int8_t)value;
        return zqi_r_put_raw (buf, &byte, 1);
    }
    if (value >= INT8_MIN)
        return s_put_marked (buf, 0xd0, (uint64_t)value & 0xff, 1);
    if (value >= INT16_MIN)
        return s_put_marked (buf, 0xd1, (uint64_t)value & 0xffff, 2);
    if (value >= INT32_MIN)
        return s_put_marked (buf, 0xd2, (uint64_t)value & 0xffffffffu, 4);
    return s_put_marked (buf, 0xd3, (uint64_t)value, 8);
}

int
zqi_r_put_str (zqi_r_buf_t *buf, const char *text, size_t size)
{
    int rc;
    if (size < 32) {
        uint8_t marker = (uint8_t)(0xa0 | size);
        rc = zqi_r_put_raw (buf, &marker, 1);
    } else if (size <= 0xff)
        rc = s_put_marked (buf, 0xd9, size, 1);
    else if (size <= 0xffff)
        rc = s_put_marked (buf, 0xda, size, 2);
    else
        rc = s_put_marked (buf, 0xdb, size, 4);
    return rc ? rc : zqi_r_put_raw (buf, text, size);
}

int
zqi_r_put_bin (zqi_r_buf_t *buf, const void *data, size_t size)
{
    int rc;
    if (size <= 0xff)
        rc = s_put_marked (buf, 0xc4, size, 1);
    else if (size <= 0xffff)
        rc = s_put_marked (buf, 0xc5, size, 2);
    else
        rc = s_put_marked (buf, 0xc6, size, 4);
    return rc ? rc : zqi_r_put_raw (buf, data, size);
}

int
zqi_r_put_command (zqi_r_buf_t *buf, uint32_t elements, zqi_r_kind_t kind)
{
    zqi_r_buf_reset (buf);
    if (zqi_r_put_array (buf, elements) || zqi_r_put_uint (buf, ZQI_R_VERSION) ||
        zqi_r_put_uint (buf, (uint64_t)kind))
        return -1;
    return 0;
}

//  ---- Frames -------------------------------------------------------------

int
zqi_r_recv_frame (void *handle, zmq_msg_t *frame)
{
    return zmq_msg_recv (frame, handle, ZMQ_DONTWAIT) < 0 ? -1 : 0;
}

int
zqi_r_code_errno (uint64_t code)
{
    switch (code) {
        case ZQI_R_CODE_FULL:
            return ZQ_EFULL;
        case ZQI_R_CODE_INVALID:
            return EINVAL;
        case ZQI_R_CODE_FAILED:
            return EIO;
        case ZQI_R_CODE_VERSION:
            return ZQ_EVERSION;
        case ZQI_R_CODE_CONFLICT:
            return EEXIST;
        case ZQI_R_CODE_LIMIT:
            return ZQ_ELIMIT;
        case ZQI_R_CODE_BUSY:
            return EBUSY; //  the server's descriptors, not ours: not EMFILE
        case ZQI_R_CODE_DENIED:
            return EACCES;
        case ZQI_R_CODE_NO_SPACE:
            return ENOSPC;
        case ZQI_R_CODE_DELETED:
            return ZQ_ENOTFOUND;
        default:
            return ZQ_EPROTO;
    }
}
