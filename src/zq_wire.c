/*  =========================================================================
    zq_wire - the buffer, msgpack writer, signed-integer reader and
    command-frame header that every zq protocol shares (src/zq_wire.h).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_internal.h"

//  ---- Buffer ---------------------------------------------------------------

#define S_BUF_INITIAL 256

int
zqi_array_reserve (void **items_p, size_t *capacity_p, size_t needed, size_t item_size,
                   size_t first_capacity)
{
    if (needed <= *capacity_p)
        return 0;
    if (needed > SIZE_MAX / 2 / item_size)
        return zqi_fail (ENOMEM);
    size_t capacity = *capacity_p ? *capacity_p : first_capacity;
    while (capacity < needed)
        capacity *= 2;
    void *items = realloc (*items_p, capacity * item_size);
    if (!items)
        return zqi_fail (ENOMEM);
    *items_p = items;
    *capacity_p = capacity;
    return 0;
}

void
zqi_buf_reset (zqi_buf_t *buf)
{
    buf->size = 0;
}

void
zqi_buf_free (zqi_buf_t *buf)
{
    free (buf->data);
    buf->data = NULL;
    buf->size = buf->capacity = 0;
}

int
zqi_buf_reserve (zqi_buf_t *buf, size_t more)
{
    if (more > SIZE_MAX - buf->size)
        return zqi_fail (ENOMEM);
    void *data = buf->data;
    if (zqi_array_reserve (&data, &buf->capacity, buf->size + more, 1, S_BUF_INITIAL))
        return -1;
    buf->data = (uint8_t *)data;
    return 0;
}

int
zqi_buf_append (zqi_buf_t *buf, const void *data, size_t size)
{
    if (zqi_buf_reserve (buf, size))
        return -1;
    if (size)
        memcpy (buf->data + buf->size, data, size);
    buf->size += size;
    return 0;
}

//  ---- msgpack writing ------------------------------------------------------

//  Widest encoded integer or header: a marker and 8 bytes.
#define S_SCALAR_MAX 9

uint8_t *
zqi_mp_write_int (uint8_t *out, int64_t value)
{
    if (value >= 0)
        return zqi_mp_write_uint (out, (uint64_t)value);
    if (value >= -32) {
        *out = (uint8_t)(int8_t)value;
        return out + 1;
    }
    return value >= INT8_MIN    ? zqi_mp_write_marked (out, 0xd0, (uint64_t)value & 0xff, 1)
           : value >= INT16_MIN ? zqi_mp_write_marked (out, 0xd1, (uint64_t)value & 0xffff, 2)
           : value >= INT32_MIN ? zqi_mp_write_marked (out, 0xd2, (uint64_t)value & 0xffffffffu, 4)
                                : zqi_mp_write_marked (out, 0xd3, (uint64_t)value, 8);
}

//  Reserves room for a scalar, so the writers below cannot run over.
static inline uint8_t *
s_scalar_at (zqi_buf_t *buf)
{
    return zqi_buf_reserve (buf, S_SCALAR_MAX) ? NULL : buf->data + buf->size;
}

int
zqi_mp_put_array (zqi_buf_t *buf, uint32_t count)
{
    uint8_t *at = s_scalar_at (buf);
    if (!at)
        return -1;
    buf->size = (size_t)(zqi_mp_write_array (at, count) - buf->data);
    return 0;
}

int
zqi_mp_put_map (zqi_buf_t *buf, uint32_t pairs)
{
    uint8_t *at = s_scalar_at (buf);
    if (!at)
        return -1;
    buf->size = (size_t)(zqi_mp_write_map (at, pairs) - buf->data);
    return 0;
}

int
zqi_mp_put_uint (zqi_buf_t *buf, uint64_t value)
{
    uint8_t *at = s_scalar_at (buf);
    if (!at)
        return -1;
    buf->size = (size_t)(zqi_mp_write_uint (at, value) - buf->data);
    return 0;
}

int
zqi_mp_put_int (zqi_buf_t *buf, int64_t value)
{
    uint8_t *at = s_scalar_at (buf);
    if (!at)
        return -1;
    buf->size = (size_t)(zqi_mp_write_int (at, value) - buf->data);
    return 0;
}

int
zqi_mp_put_str (zqi_buf_t *buf, const char *text, size_t size)
{
    if (size > UINT32_MAX)
        return zqi_fail (EINVAL);
    if (zqi_buf_reserve (buf, zqi_mp_str_size (size)))
        return -1;
    buf->size = (size_t)(zqi_mp_write_str (buf->data + buf->size, text, size) - buf->data);
    return 0;
}

int
zqi_mp_put_bin (zqi_buf_t *buf, const void *data, size_t size)
{
    if (size > UINT32_MAX)
        return zqi_fail (EINVAL);
    if (zqi_buf_reserve (buf, zqi_mp_bin_size (size)))
        return -1;
    uint8_t *out = zqi_mp_write_bin_header (buf->data + buf->size, size);
    if (size)
        memcpy (out, data, size);
    buf->size = (size_t)(out + size - buf->data);
    return 0;
}

//  ---- msgpack reading ------------------------------------------------------

int
zqi_mp_read_int (zqi_cursor_t *cursor, int64_t *value_p)
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

//  ---- Command frames -------------------------------------------------------

int
zqi_mp_read_array_marker (zqi_cursor_t *cursor, uint64_t *count_p)
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

int
zqi_wire_command_read (zqi_cursor_t *cursor, uint64_t version, uint32_t *elements_p,
                       uint64_t *kind_p)
{
    uint64_t elements, found;
    if (zqi_mp_read_array_marker (cursor, &elements) || elements == 0 ||
        zqi_mp_read_uint (cursor, &found))
        return zqi_fail (ZQ_EPROTO);
    if (found != version)
        return zqi_fail (ZQ_EVERSION);
    if (elements < 2 || elements > ZQI_WIRE_ELEMENTS_MAX || zqi_mp_read_uint (cursor, kind_p))
        return zqi_fail (ZQ_EPROTO);
    *elements_p = (uint32_t)elements;
    return 0;
}

int
zqi_wire_command_end (zqi_cursor_t *cursor, uint32_t used, uint32_t elements, int max_depth)
{
    for (uint32_t index = used; index < elements; index++)
        if (zqi_mp_skip (cursor, max_depth))
            return -1;
    return cursor->pos == cursor->end ? 0 : zqi_fail (ZQ_EPROTO);
}

int
zqi_wire_command_put (zqi_buf_t *buf, uint32_t elements, uint64_t version, uint64_t kind)
{
    ZQ_ASSERT (elements >= 2 && elements <= ZQI_WIRE_ELEMENTS_MAX);
    zqi_buf_reset (buf);
    if (zqi_buf_reserve (buf, zqi_wire_command_size (elements, version, kind)))
        return -1;
    buf->size = (size_t)(zqi_wire_command_write (buf->data, elements, version, kind) - buf->data);
    return 0;
}
