/*  =========================================================================
    zq_msgpack_check - a strict, non-allocating msgpack validator and the
    small bounded reader the envelope decoder uses.

    The validator walks the bytes without recursion. It keeps, per open
    array or map, how many elements have not started yet, and the sum of
    those counts: since every element takes at least one byte, that sum may
    never exceed the bytes that remain, which stops hostile element counts
    before anything trusts them.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_internal.h"

//  Loads a big-endian unsigned integer of width 1, 2, 4 or 8 bytes.
static inline uint64_t
s_load_be (const uint8_t *bytes, int width)
{
    switch (width) {
        case 1:
            return bytes[0];
        case 2:
            return (uint64_t)bytes[0] << 8 | bytes[1];
        case 4: {
            uint32_t value;
            memcpy (&value, bytes, sizeof value);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            value = __builtin_bswap32 (value);
#endif
            return value;
        }
        default: {
            uint64_t value;
            memcpy (&value, bytes, sizeof value);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            value = __builtin_bswap64 (value);
#endif
            return value;
        }
    }
}

//  Describes the object whose first byte is marker: how many bytes of
//  length follow the marker (length_width), how many fixed payload bytes
//  follow those (fixed), whether the length counts payload bytes or
//  elements, and for fix types the length itself.
typedef enum { S_SCALAR, S_BYTES, S_ARRAY, S_MAP, S_RESERVED } s_kind_t;

typedef struct {
    s_kind_t kind;
    int length_width; //  bytes of big-endian length after the marker
    uint32_t fixed;   //  payload bytes not counted by the length (ext type)
    uint32_t length;  //  for fix forms: the length, or payload size of scalars
} s_marker_t;

static inline __attribute__ ((always_inline)) s_marker_t
s_marker (uint8_t marker)
{
    s_marker_t m = {S_SCALAR, 0, 0, 0};
    if (marker <= 0x7f || marker >= 0xe0)
        return m; //  positive or negative fixint
    if (marker <= 0x8f) {
        m.kind = S_MAP;
        m.length = marker & 0x0f;
        return m;
    }
    if (marker <= 0x9f) {
        m.kind = S_ARRAY;
        m.length = marker & 0x0f;
        return m;
    }
    if (marker <= 0xbf) {
        m.kind = S_BYTES; //  fixstr
        m.length = marker & 0x1f;
        return m;
    }
    switch (marker) {
        case 0xc0: //  nil, false, true
        case 0xc2:
        case 0xc3:
            return m;
        case 0xc1:
            m.kind = S_RESERVED;
            return m;
        case 0xc4: //  bin 8/16/32
        case 0xd9: //  str 8
            m.kind = S_BYTES;
            m.length_width = 1;
            return m;
        case 0xc5:
        case 0xda:
            m.kind = S_BYTES;
            m.length_width = 2;
            return m;
        case 0xc6:
        case 0xdb:
            m.kind = S_BYTES;
            m.length_width = 4;
            return m;
        case 0xc7: //  ext 8/16/32: length, then a type byte, then data
            m.kind = S_BYTES;
            m.length_width = 1;
            m.fixed = 1;
            return m;
        case 0xc8:
            m.kind = S_BYTES;
            m.length_width = 2;
            m.fixed = 1;
            return m;
        case 0xc9:
            m.kind = S_BYTES;
            m.length_width = 4;
            m.fixed = 1;
            return m;
        case 0xca: //  float 32
        case 0xce: //  uint 32
        case 0xd2: //  int 32
            m.length = 4;
            return m;
        case 0xcb:
        case 0xcf:
        case 0xd3:
            m.length = 8;
            return m;
        case 0xcc:
        case 0xd0:
            m.length = 1;
            return m;
        case 0xcd:
        case 0xd1:
            m.length = 2;
            return m;
        case 0xd4: //  fixext 1/2/4/8/16: type byte + data
            m.length = 2;
            return m;
        case 0xd5:
            m.length = 3;
            return m;
        case 0xd6:
            m.length = 5;
            return m;
        case 0xd7:
            m.length = 9;
            return m;
        case 0xd8:
            m.length = 17;
            return m;
        case 0xdc:
            m.kind = S_ARRAY;
            m.length_width = 2;
            return m;
        case 0xdd:
            m.kind = S_ARRAY;
            m.length_width = 4;
            return m;
        case 0xde:
            m.kind = S_MAP;
            m.length_width = 2;
            return m;
        default: //  0xdf
            m.kind = S_MAP;
            m.length_width = 4;
            return m;
    }
}

//  The general case of zqi_msgpack_check: any object, containers included.
static int
s_check (const void *data, size_t size, size_t *used_p, int max_depth)
{
    const uint8_t *pos = (const uint8_t *)data;
    const uint8_t *end = pos + size;
    //  open[i]: elements of the i-th open container not started yet
    uint64_t open[ZQI_MSGPACK_DEPTH_LIMIT];
    int depth = 0;
    uint64_t pending = 0; //  sum of open[]
    if (max_depth > ZQI_MSGPACK_DEPTH_LIMIT)
        max_depth = ZQI_MSGPACK_DEPTH_LIMIT;
    if (max_depth < 0)
        max_depth = 0;

    while (true) {
        if (pos >= end)
            return zqi_fail (ZQ_EPROTO);
        s_marker_t m = s_marker (*pos++);
        if (m.kind == S_RESERVED)
            return zqi_fail (ZQ_EPROTO);
        uint64_t length = m.length;
        if (m.length_width) {
            if ((size_t)(end - pos) < (size_t)m.length_width)
                return zqi_fail (ZQ_EPROTO);
            length = s_load_be (pos, m.length_width);
            pos += m.length_width;
        }
        if (depth > 0) {
            open[depth - 1]--;
            pending--;
        }
        if (m.kind == S_ARRAY || m.kind == S_MAP) {
            if (depth + 1 > max_depth)
                return zqi_fail (ZQ_EDEPTH);
            uint64_t elements = m.kind == S_MAP ? 2 * length : length;
            if (elements > 0) {
                pending += elements;
                if (pending > (uint64_t)(end - pos))
                    return zqi_fail (ZQ_EPROTO);
                open[depth++] = elements;
                continue;
            }
        } else {
            //  scalars and byte strings: skip their payload
            uint64_t payload = length + m.fixed;
            if (payload > (uint64_t)(end - pos))
                return zqi_fail (ZQ_EPROTO);
            pos += payload;
        }
        //  One object is complete: close every container it completes.
        while (depth > 0 && open[depth - 1] == 0)
            depth--;
        if (depth == 0)
            break;
    }
    size_t used = (size_t)(pos - (const uint8_t *)data);
    if (used_p)
        *used_p = used;
    else if (used != size)
        return zqi_fail (ZQ_EPROTO);
    return 0;
}

int
zqi_msgpack_check (const void *data, size_t size, size_t *used_p, int max_depth)
{
    //  A lone scalar or string (a common body) needs no container stack.
    const uint8_t *pos = (const uint8_t *)data;
    if (size > 0) {
        s_marker_t m = s_marker (pos[0]);
        if (m.kind == S_SCALAR || m.kind == S_BYTES) {
            size_t remaining = size - 1;
            uint64_t length = m.length;
            if (m.length_width) {
                if (remaining < (size_t)m.length_width)
                    return zqi_fail (ZQ_EPROTO);
                length = s_load_be (pos + 1, m.length_width);
                remaining -= (size_t)m.length_width;
            }
            uint64_t payload = length + m.fixed;
            if (payload > remaining)
                return zqi_fail (ZQ_EPROTO);
            size_t used = size - remaining + (size_t)payload;
            if (used_p)
                *used_p = used;
            else if (used != size)
                return zqi_fail (ZQ_EPROTO);
            return 0;
        }
    }
    return s_check (data, size, used_p, max_depth);
}

//  ---- Bounded reader -----------------------------------------------------

//  Reads the marker at the cursor if it is of kind, storing its declared
//  length in *length_p and the position just after the length in *after_p;
//  the cursor itself does not move.
static int
s_read_length (const zqi_cursor_t *cursor, s_kind_t kind, uint64_t *length_p,
               const uint8_t **after_p)
{
    const uint8_t *pos = cursor->pos;
    if (pos >= cursor->end)
        return zqi_fail (ZQ_EPROTO);
    s_marker_t m = s_marker (*pos++);
    if (m.kind != kind)
        return zqi_fail (ZQ_EPROTO);
    uint64_t length = m.length;
    if (m.length_width) {
        if ((size_t)(cursor->end - pos) < (size_t)m.length_width)
            return zqi_fail (ZQ_EPROTO);
        length = s_load_be (pos, m.length_width);
        pos += m.length_width;
    }
    *length_p = length;
    *after_p = pos;
    return 0;
}

//  Reads an array or map marker (kind S_ARRAY or S_MAP) whose count, at
//  objects_each objects (one byte at least) per item, fits in what is left.
static int
s_read_count (zqi_cursor_t *cursor, s_kind_t kind, uint64_t objects_each, uint32_t *count_p)
{
    uint64_t count;
    const uint8_t *after;
    if (s_read_length (cursor, kind, &count, &after))
        return -1;
    if (objects_each * count > (uint64_t)(cursor->end - after))
        return zqi_fail (ZQ_EPROTO);
    cursor->pos = after;
    *count_p = (uint32_t)count;
    return 0;
}

int
zqi_mp_read_array (zqi_cursor_t *cursor, uint32_t *count_p)
{
    return s_read_count (cursor, S_ARRAY, 1, count_p);
}

int
zqi_mp_read_map (zqi_cursor_t *cursor, uint32_t *pairs_p)
{
    return s_read_count (cursor, S_MAP, 2, pairs_p);
}

static bool
s_is_str_marker (uint8_t marker)
{
    return (marker >= 0xa0 && marker <= 0xbf) || (marker >= 0xd9 && marker <= 0xdb);
}

static bool
s_is_bin_marker (uint8_t marker)
{
    return marker >= 0xc4 && marker <= 0xc6;
}

static int
s_read_bytes (zqi_cursor_t *cursor, bool want_str, const uint8_t **data_p, uint32_t *size_p)
{
    if (cursor->pos >= cursor->end)
        return zqi_fail (ZQ_EPROTO);
    uint8_t marker = *cursor->pos;
    if (want_str ? !s_is_str_marker (marker) : !s_is_bin_marker (marker))
        return zqi_fail (ZQ_EPROTO);
    uint64_t size;
    const uint8_t *after;
    if (s_read_length (cursor, S_BYTES, &size, &after))
        return -1;
    if (size > (uint64_t)(cursor->end - after))
        return zqi_fail (ZQ_EPROTO);
    *data_p = after;
    *size_p = (uint32_t)size;
    cursor->pos = after + size;
    return 0;
}

int
zqi_mp_read_str (zqi_cursor_t *cursor, const char **str_p, uint32_t *size_p)
{
    const uint8_t *data;
    if (s_read_bytes (cursor, true, &data, size_p))
        return -1;
    *str_p = (const char *)data;
    return 0;
}

int
zqi_mp_read_bin (zqi_cursor_t *cursor, const uint8_t **data_p, uint32_t *size_p)
{
    //  A bin 8 (ids, and the elements of a batch of small messages, each
    //  read twice or three times by the server) without the general
    //  reader: about 25 instructions instead of 80.
    const uint8_t *pos = cursor->pos;
    size_t left = cursor->end > pos ? (size_t)(cursor->end - pos) : 0;
    if (left >= 2 && pos[0] == 0xc4 && pos[1] <= left - 2) {
        *data_p = pos + 2;
        *size_p = pos[1];
        cursor->pos = pos + 2 + pos[1];
        return 0;
    }
    return s_read_bytes (cursor, false, data_p, size_p);
}

int
zqi_mp_read_uint (zqi_cursor_t *cursor, uint64_t *value_p)
{
    const uint8_t *pos = cursor->pos;
    if (pos >= cursor->end)
        return zqi_fail (ZQ_EPROTO);
    uint8_t marker = *pos++;
    if (marker <= 0x7f) {
        *value_p = marker;
        cursor->pos = pos;
        return 0;
    }
    int width;
    bool is_signed;
    switch (marker) {
        case 0xcc:
        case 0xcd:
        case 0xce:
        case 0xcf:
            width = 1 << (marker - 0xcc);
            is_signed = false;
            break;
        case 0xd0:
        case 0xd1:
        case 0xd2:
        case 0xd3:
            width = 1 << (marker - 0xd0);
            is_signed = true;
            break;
        default:
            return zqi_fail (ZQ_EPROTO); //  not an integer, or a negative fixint
    }
    if ((size_t)(cursor->end - pos) < (size_t)width)
        return zqi_fail (ZQ_EPROTO);
    uint64_t value = s_load_be (pos, width);
    if (is_signed && (pos[0] & 0x80))
        return zqi_fail (ZQ_EPROTO);
    *value_p = value;
    cursor->pos = pos + width;
    return 0;
}

int
zqi_mp_skip (zqi_cursor_t *cursor, int max_depth)
{
    size_t used;
    if (zqi_msgpack_check (cursor->pos, (size_t)(cursor->end - cursor->pos), &used, max_depth))
        return -1;
    cursor->pos += used;
    return 0;
}
