/*  =========================================================================
    zq_admin - the admin protocol's one codec (src/device/zq_admin.h).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_admin.h"
#include <msgpack.h>
#include <stddef.h>

//  Nesting an unknown value may have before a decoder refuses it.
#define S_SKIP_DEPTH 8

//  The counters of a STAT row, in the order they go on the wire: one
//  table, read by the encoder and the decoder alike.
typedef struct {
    const char *key;
    size_t offset;
} s_field_t;

#define S_UINT(name)                                                                               \
    {                                                                                              \
#name, offsetof(zqi_row_t, name)                                                           \
    }
static const s_field_t s_counters[] = {
    S_UINT (depth),      S_UINT (ready),         S_UINT (in_flight),
    S_UINT (delayed),    S_UINT (oldest_age_ms), S_UINT (in),
    S_UINT (out),        S_UINT (delivered),     S_UINT (acked),
    S_UINT (nacked),     S_UINT (redelivered),   S_UINT (timeouts),
    S_UINT (dead),       S_UINT (dead_lettered), S_UINT (expired),
    S_UINT (duplicates), S_UINT (refused),       S_UINT (dropped),
    S_UINT (gaps),       S_UINT (errors),        S_UINT (spilled),
    S_UINT (consumers),  S_UINT (bytes),         S_UINT (spool_bytes),
};
#define S_COUNTER_COUNT (sizeof s_counters / sizeof s_counters[0])

static const s_field_t s_rates[] = {
    {"in_rate", offsetof (zqi_row_t, in_rate)},
    {"out_rate", offsetof (zqi_row_t, out_rate)},
};
#define S_RATE_COUNT (sizeof s_rates / sizeof s_rates[0])

//  INFO's fields: numbers, then strings (with their capacity).
typedef struct {
    const char *key;
    size_t offset;
    size_t capacity; //  0 for a number
} s_info_field_t;

#define S_INFO_UINT(name)                                                                          \
    {                                                                                              \
#name, offsetof(zqi_admin_info_t, name), 0                                                 \
    }
#define S_INFO_STR(name)                                                                           \
    {                                                                                              \
#name, offsetof(zqi_admin_info_t, name), sizeof(((zqi_admin_info_t *)0)->name)             \
    }
static const s_info_field_t s_info_fields[] = {
    S_INFO_STR (version),     S_INFO_UINT (uptime_ms),
    S_INFO_STR (store),       S_INFO_STR (fsync),
    S_INFO_STR (bind),        S_INFO_UINT (queues),
    S_INFO_UINT (max_queues), S_INFO_UINT (max_message_bytes),
    S_INFO_UINT (peek_max),   S_INFO_UINT (admin_request_max_bytes),
};
#define S_INFO_FIELD_COUNT (sizeof s_info_fields / sizeof s_info_fields[0])

//  ---- Writing ---------------------------------------------------------------

static void
s_pack_str (msgpack_packer *packer, const char *text)
{
    size_t length = strlen (text);
    msgpack_pack_str (packer, length);
    msgpack_pack_str_body (packer, text, length);
}

//  Moves the buffer's bytes into a new frame; NULL on ENOMEM.
static zframe_t *
s_frame (msgpack_sbuffer *buffer)
{
    zframe_t *frame = buffer->data ? zframe_new (buffer->data, buffer->size) : NULL;
    msgpack_sbuffer_destroy (buffer);
    if (!frame)
        errno = ENOMEM;
    return frame;
}

zframe_t *
zqi_admin_row_encode (const char *name, const char *kind, const zqi_row_t *counters)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&packer, 2 + (counters ? S_COUNTER_COUNT + S_RATE_COUNT : 0));
    s_pack_str (&packer, "name");
    s_pack_str (&packer, name);
    s_pack_str (&packer, "kind");
    s_pack_str (&packer, kind);
    for (size_t i = 0; counters && i < S_COUNTER_COUNT; i++) {
        s_pack_str (&packer, s_counters[i].key);
        msgpack_pack_uint64 (&packer,
                             *(const uint64_t *)((const char *)counters + s_counters[i].offset));
    }
    for (size_t i = 0; counters && i < S_RATE_COUNT; i++) {
        s_pack_str (&packer, s_rates[i].key);
        msgpack_pack_double (&packer,
                             *(const double *)((const char *)counters + s_rates[i].offset));
    }
    return s_frame (&buffer);
}

zframe_t *
zqi_admin_count_encode (const char *key, uint64_t value)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&packer, 1);
    s_pack_str (&packer, key);
    msgpack_pack_uint64 (&packer, value);
    return s_frame (&buffer);
}

zframe_t *
zqi_admin_info_encode (const zqi_admin_info_t *info)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&packer, S_INFO_FIELD_COUNT);
    for (size_t i = 0; i < S_INFO_FIELD_COUNT; i++) {
        const s_info_field_t *field = &s_info_fields[i];
        const char *where = (const char *)info + field->offset;
        s_pack_str (&packer, field->key);
        if (field->capacity)
            s_pack_str (&packer, where);
        else
            msgpack_pack_uint64 (&packer, *(const uint64_t *)where);
    }
    return s_frame (&buffer);
}

//  ---- Reading ---------------------------------------------------------------

//  A number as a double: float 32 or 64, or a non-negative integer.
static int
s_read_double (zqi_cursor_t *cursor, double *value_p)
{
    const uint8_t *pos = cursor->pos;
    if (pos < cursor->end && (*pos == 0xca || *pos == 0xcb)) {
        size_t width = *pos == 0xca ? 4 : 8;
        if ((size_t)(cursor->end - pos) < 1 + width)
            return zqi_fail (ZQ_EPROTO);
        uint64_t bits = 0;
        for (size_t i = 0; i < width; i++)
            bits = bits << 8 | pos[1 + i];
        if (width == 4) {
            uint32_t narrow = (uint32_t)bits;
            float value;
            memcpy (&value, &narrow, sizeof value);
            *value_p = value;
        } else
            memcpy (value_p, &bits, sizeof *value_p);
        cursor->pos = pos + 1 + width;
        return 0;
    }
    uint64_t integer;
    if (zqi_mp_read_uint (cursor, &integer))
        return -1;
    *value_p = (double)integer;
    return 0;
}

//  A string into text (capacity bytes with its NUL): ZQ_EPROTO if longer
//  or holding a NUL.
static int
s_read_text (zqi_cursor_t *cursor, char *text, size_t capacity)
{
    const char *str;
    uint32_t size;
    if (zqi_mp_read_str (cursor, &str, &size))
        return -1;
    if (size >= capacity || memchr (str, '\0', size))
        return zqi_fail (ZQ_EPROTO);
    memcpy (text, str, size);
    text[size] = '\0';
    return 0;
}

static bool
s_key_is (const char *key, uint32_t size, const char *name)
{
    return strlen (name) == size && memcmp (key, name, size) == 0;
}

//  Reads the value of one key of a map at the cursor into arg. Returns 0
//  when it read it, 1 when the key is not one it knows (the value is then
//  skipped), -1 on a bad value.
typedef int (s_field_fn) (zqi_cursor_t *cursor, const char *key, uint32_t key_size, void *arg);

//  Walks a frame that must be exactly one msgpack map with string keys,
//  handing each key to field. Returns 0, or -1 with errno ZQ_EPROTO.
static int
s_decode_map (const void *data, size_t size, s_field_fn *field, void *arg)
{
    if (!data || zqi_msgpack_check (data, size, NULL, S_SKIP_DEPTH + 1))
        return zqi_fail (ZQ_EPROTO);
    zqi_cursor_t cursor = {(const uint8_t *)data, (const uint8_t *)data + size};
    uint32_t pairs;
    if (zqi_mp_read_map (&cursor, &pairs))
        return -1;
    for (uint32_t pair = 0; pair < pairs; pair++) {
        const char *key;
        uint32_t key_size;
        if (zqi_mp_read_str (&cursor, &key, &key_size))
            return -1;
        int rc = field (&cursor, key, key_size, arg);
        if (rc == 1)
            rc = zqi_mp_skip (&cursor, S_SKIP_DEPTH);
        if (rc)
            return zqi_fail (ZQ_EPROTO);
    }
    return 0;
}

typedef struct {
    zqi_admin_row_t *row;
    bool has_name;
    bool has_kind;
} s_row_decode_t;

static int
s_row_field (zqi_cursor_t *cursor, const char *key, uint32_t key_size, void *arg)
{
    s_row_decode_t *decode = (s_row_decode_t *)arg;
    zqi_admin_row_t *row = decode->row;
    if (s_key_is (key, key_size, "name")) {
        int rc = s_read_text (cursor, row->name, sizeof row->name);
        decode->has_name = rc == 0;
        return rc;
    }
    if (s_key_is (key, key_size, "kind")) {
        int rc = s_read_text (cursor, row->kind, sizeof row->kind);
        decode->has_kind = rc == 0;
        return rc;
    }
    for (size_t i = 0; i < S_COUNTER_COUNT; i++)
        if (s_key_is (key, key_size, s_counters[i].key)) {
            row->has_counters = true;
            return zqi_mp_read_uint (cursor,
                                     (uint64_t *)((char *)&row->counters + s_counters[i].offset));
        }
    for (size_t i = 0; i < S_RATE_COUNT; i++)
        if (s_key_is (key, key_size, s_rates[i].key)) {
            row->has_counters = true;
            return s_read_double (cursor, (double *)((char *)&row->counters + s_rates[i].offset));
        }
    return 1;
}

int
zqi_admin_row_decode (const void *data, size_t size, zqi_admin_row_t *row)
{
    memset (row, 0, sizeof *row);
    s_row_decode_t decode = {row, false, false};
    if (s_decode_map (data, size, s_row_field, &decode))
        return -1;
    if (!decode.has_name || !decode.has_kind)
        return zqi_fail (ZQ_EPROTO);
    return 0;
}

typedef struct {
    const char *key_wanted;
    uint64_t *value_p;
    bool found;
} s_count_decode_t;

static int
s_count_field (zqi_cursor_t *cursor, const char *key, uint32_t key_size, void *arg)
{
    s_count_decode_t *decode = (s_count_decode_t *)arg;
    if (!s_key_is (key, key_size, decode->key_wanted))
        return 1;
    int rc = zqi_mp_read_uint (cursor, decode->value_p);
    decode->found = rc == 0;
    return rc;
}

int
zqi_admin_count_decode (const void *data, size_t size, const char *key_wanted, uint64_t *value_p)
{
    s_count_decode_t decode = {key_wanted, value_p, false};
    if (s_decode_map (data, size, s_count_field, &decode))
        return -1;
    return decode.found ? 0 : zqi_fail (ZQ_EPROTO);
}

static int
s_info_field (zqi_cursor_t *cursor, const char *key, uint32_t key_size, void *arg)
{
    for (size_t i = 0; i < S_INFO_FIELD_COUNT; i++) {
        const s_info_field_t *field = &s_info_fields[i];
        if (!s_key_is (key, key_size, field->key))
            continue;
        char *where = (char *)arg + field->offset;
        return field->capacity ? s_read_text (cursor, where, field->capacity)
                               : zqi_mp_read_uint (cursor, (uint64_t *)where);
    }
    return 1;
}

int
zqi_admin_info_decode (const void *data, size_t size, zqi_admin_info_t *info)
{
    memset (info, 0, sizeof *info);
    return s_decode_map (data, size, s_info_field, info);
}
