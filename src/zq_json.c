/*  =========================================================================
    zq_json - JSON <-> msgpack conversion for bodies, on jansson.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_internal.h"
#include <jansson.h>
#include <math.h>
#include <msgpack.h>

//  ---- Base64 (RFC 4648, standard alphabet, padded) ----------------------
//  Neither jansson nor msgpack-c has one, and CZMQ's zarmour silently skips
//  characters outside the alphabet; zq rejects them.

static const char s_base64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

//  Returns the base64 text of size bytes as a new string, or NULL (ENOMEM).
static char *
s_base64_encode (const uint8_t *data, size_t size)
{
    if (size > (SIZE_MAX - 1) / 4 * 3 - 2)
        return (errno = ENOMEM), NULL;
    size_t length = (size + 2) / 3 * 4;
    char *text = malloc (length + 1);
    if (!text)
        return (errno = ENOMEM), NULL;
    char *out = text;
    size_t index = 0;
    for (; index + 3 <= size; index += 3) {
        uint32_t group =
            (uint32_t)data[index] << 16 | (uint32_t)data[index + 1] << 8 | data[index + 2];
        *out++ = s_base64_alphabet[group >> 18];
        *out++ = s_base64_alphabet[(group >> 12) & 63];
        *out++ = s_base64_alphabet[(group >> 6) & 63];
        *out++ = s_base64_alphabet[group & 63];
    }
    if (size - index == 1) {
        uint32_t group = (uint32_t)data[index] << 16;
        *out++ = s_base64_alphabet[group >> 18];
        *out++ = s_base64_alphabet[(group >> 12) & 63];
        *out++ = '=';
        *out++ = '=';
    } else if (size - index == 2) {
        uint32_t group = (uint32_t)data[index] << 16 | (uint32_t)data[index + 1] << 8;
        *out++ = s_base64_alphabet[group >> 18];
        *out++ = s_base64_alphabet[(group >> 12) & 63];
        *out++ = s_base64_alphabet[(group >> 6) & 63];
        *out++ = '=';
    }
    *out = 0;
    return text;
}

//  Returns the 6-bit value of a base64 character, or -1.
static int
s_base64_value (char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

//  Decodes base64 text of length characters into a new buffer (at least one
//  byte is allocated, so an empty result is not NULL). The length must be a
//  multiple of 4, padding only at the end, and the bits that padding drops
//  must be zero (one text per byte string). Returns 0, or -1 with errno
//  ZQ_EJSON (not canonical base64) or ENOMEM.
static int
s_base64_decode (const char *text, size_t length, uint8_t **data_p, size_t *size_p)
{
    if (length % 4)
        return zqi_fail (ZQ_EJSON);
    size_t padding = 0;
    if (length && text[length - 1] == '=')
        padding = (length >= 2 && text[length - 2] == '=') ? 2 : 1;
    size_t size = length / 4 * 3 - padding;
    uint8_t *data = malloc (size ? size : 1);
    if (!data)
        return zqi_fail (ENOMEM);
    uint8_t *out = data;
    for (size_t index = 0; index < length; index += 4) {
        bool last = index + 4 == length;
        size_t digits = last ? 4 - padding : 4;
        uint32_t group = 0;
        for (size_t offset = 0; offset < 4; offset++) {
            int value = offset < digits ? s_base64_value (text[index + offset]) : 0;
            if (value < 0) {
                free (data);
                return zqi_fail (ZQ_EJSON);
            }
            group = group << 6 | (uint32_t)value;
        }
        *out++ = (uint8_t)(group >> 16);
        if (digits > 2)
            *out++ = (uint8_t)(group >> 8);
        if (digits > 3)
            *out++ = (uint8_t)group;
        //  Bits below the last full byte must be zero.
        if ((digits == 2 && (group & 0xffff)) || (digits == 3 && (group & 0xff))) {
            free (data);
            return zqi_fail (ZQ_EJSON);
        }
    }
    *data_p = data;
    *size_p = size;
    return 0;
}

//  ---- JSON -> msgpack -----------------------------------------------------

//  Recognizes {"$bin": "<base64>"} and {"$ext": [type, "<base64>"]}: returns
//  1 after packing one, 0 if object is an ordinary map, or -1 with errno
//  (ZQ_EJSON if it has the form but its content is invalid, or ENOMEM).
static int
s_pack_tagged (msgpack_packer *packer, const json_t *object)
{
    if (json_object_size (object) != 1)
        return 0;
    const char *key = json_object_iter_key (json_object_iter ((json_t *)object));
    size_t key_size = json_object_iter_key_len (json_object_iter ((json_t *)object));
    const json_t *value = json_object_iter_value (json_object_iter ((json_t *)object));
    const json_t *text;
    json_int_t type = 0;
    bool is_bin = key_size == 4 && memcmp (key, "$bin", 4) == 0;
    if (is_bin) {
        if (!json_is_string (value))
            return 0;
        text = value;
    } else if (key_size == 4 && memcmp (key, "$ext", 4) == 0) {
        if (!json_is_array (value) || json_array_size (value) != 2 ||
            !json_is_integer (json_array_get (value, 0)) ||
            !json_is_string (json_array_get (value, 1)))
            return 0;
        type = json_integer_value (json_array_get (value, 0));
        if (type < INT8_MIN || type > INT8_MAX)
            return zqi_fail (ZQ_EJSON);
        text = json_array_get (value, 1);
    } else
        return 0;

    uint8_t *data;
    size_t size;
    if (s_base64_decode (json_string_value (text), json_string_length (text), &data, &size))
        return -1;
    int rc;
    if (size > UINT32_MAX)
        rc = zqi_fail (ZQ_ETOOBIG);
    else {
        if (is_bin)
            rc = msgpack_pack_bin_with_body (packer, data, size);
        else
            rc = msgpack_pack_ext_with_body (packer, data, size, (int8_t)type);
        if (rc)
            errno = ENOMEM;
    }
    free (data);
    return rc ? -1 : 1;
}

//  Packs value, found inside depth containers. Returns 0, or -1 with errno
//  ZQ_EDEPTH, ZQ_EJSON or ENOMEM.
static int
s_pack_json (msgpack_packer *packer, const json_t *value, int depth)
{
    int rc = 0;
    switch (json_typeof (value)) {
        case JSON_NULL:
            rc = msgpack_pack_nil (packer);
            break;
        case JSON_TRUE:
            rc = msgpack_pack_true (packer);
            break;
        case JSON_FALSE:
            rc = msgpack_pack_false (packer);
            break;
        case JSON_INTEGER:
            rc = msgpack_pack_int64 (packer, (int64_t)json_integer_value (value));
            break;
        case JSON_REAL:
            rc = msgpack_pack_double (packer, json_real_value (value));
            break;
        case JSON_STRING:
            if (json_string_length (value) > UINT32_MAX)
                return zqi_fail (ZQ_ETOOBIG);
            rc = msgpack_pack_str_with_body (packer, json_string_value (value),
                                             json_string_length (value));
            break;
        case JSON_ARRAY: {
            if (depth >= ZQ_MSG_MAX_DEPTH)
                return zqi_fail (ZQ_EDEPTH);
            size_t count = json_array_size (value);
            if (count > UINT32_MAX)
                return zqi_fail (ZQ_ETOOBIG);
            rc = msgpack_pack_array (packer, count);
            for (size_t index = 0; index < count && rc == 0; index++)
                if (s_pack_json (packer, json_array_get (value, index), depth + 1))
                    return -1;
            break;
        }
        case JSON_OBJECT: {
            int tagged = s_pack_tagged (packer, value);
            if (tagged)
                return tagged < 0 ? -1 : 0;
            if (depth >= ZQ_MSG_MAX_DEPTH)
                return zqi_fail (ZQ_EDEPTH);
            size_t count = json_object_size (value);
            if (count > UINT32_MAX)
                return zqi_fail (ZQ_ETOOBIG);
            rc = msgpack_pack_map (packer, count);
            //  Insertion order, which is the order of the JSON text.
            for (void *iter = json_object_iter ((json_t *)value); iter && rc == 0;
                 iter = json_object_iter_next ((json_t *)value, iter)) {
                rc = msgpack_pack_str_with_body (packer, json_object_iter_key (iter),
                                                 json_object_iter_key_len (iter));
                if (rc == 0 && s_pack_json (packer, json_object_iter_value (iter), depth + 1))
                    return -1;
            }
            break;
        }
    }
    return rc ? zqi_fail (ENOMEM) : 0;
}

int
zq_json_to_msgpack (const char *json, void **data_p, size_t *size_p)
{
    if (!json || !data_p || !size_p)
        return zqi_fail (EINVAL);
    json_error_t error;
    //  Any value at the top level; "\u0000" in strings is kept (msgpack
    //  strings may hold NUL); duplicate keys are refused rather than
    //  silently dropping all but one.
    json_t *root =
        json_loads (json, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &error);
    if (!root) {
        switch (json_error_code (&error)) {
            case json_error_out_of_memory:
                return zqi_fail (ENOMEM);
            case json_error_stack_overflow:
                return zqi_fail (ZQ_EDEPTH);
            default:
                return zqi_fail (ZQ_EJSON);
        }
    }
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    int rc = s_pack_json (&packer, root, 0);
    int saved = errno;
    json_decref (root);
    if (rc) {
        msgpack_sbuffer_destroy (&buffer);
        errno = saved;
        return -1;
    }
    *size_p = buffer.size;
    *data_p = msgpack_sbuffer_release (&buffer);
    return 0;
}

int
zq_msg_set_body_json (zq_msg_t *self, const char *json)
{
    if (!self)
        return zqi_fail (EINVAL);
    void *data;
    size_t size;
    if (zq_json_to_msgpack (json, &data, &size))
        return -1;
    zqi_msg_take_body (self, data, size);
    return 0;
}

//  ---- msgpack -> JSON -----------------------------------------------------

//  Returns {"<tag>": <content>}, taking content; NULL (ENOMEM) on failure.
static json_t *
s_tagged (const char *tag, json_t *content)
{
    json_t *object = content ? json_object () : NULL;
    if (!object || json_object_set_new_nocheck (object, tag, content)) {
        json_decref (object);
        return (errno = ENOMEM), NULL;
    }
    return object;
}

//  Returns a JSON base64 string of size bytes, or NULL (ENOMEM).
static json_t *
s_base64_string (const char *data, size_t size)
{
    char *text = s_base64_encode ((const uint8_t *)data, size);
    if (!text)
        return NULL;
    json_t *string = json_string_nocheck (text);
    free (text);
    if (!string)
        errno = ENOMEM;
    return string;
}

//  Returns the JSON form of object as a new reference, or NULL with errno
//  ZQ_EJSON or ENOMEM. The recursion is bounded: the data passed the
//  depth check before it was unpacked.
static json_t *
s_object_to_json (const msgpack_object *object)
{
    json_t *value = NULL;
    switch (object->type) {
        case MSGPACK_OBJECT_NIL:
            value = json_null ();
            break;
        case MSGPACK_OBJECT_BOOLEAN:
            value = json_boolean (object->via.boolean);
            break;
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            //  JSON integers here are int64; above that, the nearest double.
            if (object->via.u64 <= INT64_MAX)
                value = json_integer ((json_int_t)object->via.u64);
            else
                value = json_real ((double)object->via.u64);
            break;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            value = json_integer ((json_int_t)object->via.i64);
            break;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
            if (!isfinite (object->via.f64))
                return (errno = ZQ_EJSON), NULL;
            value = json_real (object->via.f64);
            break;
        case MSGPACK_OBJECT_STR:
            if (zqi_utf8_valid (object->via.str.ptr, object->via.str.size))
                value = json_stringn_nocheck (object->via.str.ptr, object->via.str.size);
            else
                return s_tagged ("$bin",
                                 s_base64_string (object->via.str.ptr, object->via.str.size));
            break;
        case MSGPACK_OBJECT_BIN:
            return s_tagged ("$bin", s_base64_string (object->via.bin.ptr, object->via.bin.size));
        case MSGPACK_OBJECT_EXT: {
            json_t *pair = json_array ();
            if (!pair || json_array_append_new (pair, json_integer (object->via.ext.type)) ||
                json_array_append_new (
                    pair, s_base64_string (object->via.ext.ptr, object->via.ext.size))) {
                json_decref (pair);
                return (errno = ENOMEM), NULL;
            }
            return s_tagged ("$ext", pair);
        }
        case MSGPACK_OBJECT_ARRAY: {
            value = json_array ();
            if (!value)
                break;
            for (uint32_t index = 0; index < object->via.array.size; index++) {
                json_t *item = s_object_to_json (&object->via.array.ptr[index]);
                if (!item || json_array_append_new (value, item)) {
                    int saved = item ? ENOMEM : errno;
                    json_decref (value);
                    return (errno = saved), NULL;
                }
            }
            break;
        }
        case MSGPACK_OBJECT_MAP: {
            value = json_object ();
            if (!value)
                break;
            for (uint32_t index = 0; index < object->via.map.size; index++) {
                const msgpack_object *key = &object->via.map.ptr[index].key;
                //  JSON keys are text: a key of another type, a key that is
                //  not UTF-8, or a key that repeats has no JSON form.
                if (key->type != MSGPACK_OBJECT_STR ||
                    !zqi_utf8_valid (key->via.str.ptr, key->via.str.size) ||
                    json_object_getn (value, key->via.str.ptr, key->via.str.size)) {
                    json_decref (value);
                    return (errno = ZQ_EJSON), NULL;
                }
                json_t *item = s_object_to_json (&object->via.map.ptr[index].val);
                if (!item || json_object_setn_new_nocheck (value, key->via.str.ptr,
                                                           key->via.str.size, item)) {
                    int saved = item ? ENOMEM : errno;
                    json_decref (value);
                    return (errno = saved), NULL;
                }
            }
            break;
        }
        default:
            return (errno = ZQ_EJSON), NULL;
    }
    if (!value)
        errno = ENOMEM;
    return value;
}

//  Collects dumped JSON text in a zq_wire buffer, NUL-terminated after
//  each chunk, so the caller frees it with free () whatever allocator the
//  host gave jansson.
static int
s_text_append (const char *chunk, size_t size, void *arg)
{
    zqi_buf_t *text = (zqi_buf_t *)arg;
    if (size == SIZE_MAX || zqi_buf_reserve (text, size + 1))
        return -1;
    memcpy (text->data + text->size, chunk, size);
    text->size += size;
    text->data[text->size] = 0;
    return 0;
}

//  Rewrites the dumped JSON in text so that no control character is left
//  as it is: jansson escapes those below U+0020 and keeps DEL and the C1
//  controls (zqi_text_control), which a terminal showing the text may
//  obey; they become \u007F to \u009F (in capitals, as jansson writes
//  its own). Outside strings JSON text is ASCII without them, so only
//  strings change, and they read back the same. Returns 0, or -1 (ENOMEM;
//  text is then unchanged).
static int
s_escape_controls (zqi_buf_t *text)
{
    size_t grown = 0;
    for (size_t index = 0; index < text->size;) {
        uint32_t code = 0;
        size_t length = zqi_utf8_char (text->data + index, text->size - index, &code);
        if (length == 0)
            length = 1; //  not from jansson, which writes UTF-8
        else if (zqi_text_control (code))
            grown += 6 - length;
        index += length;
    }
    if (grown == 0)
        return 0;
    zqi_buf_t escaped = {0};
    if (zqi_buf_reserve (&escaped, text->size + grown + 1))
        return -1;
    for (size_t index = 0; index < text->size;) {
        uint32_t code = 0;
        size_t length = zqi_utf8_char (text->data + index, text->size - index, &code);
        if (length && zqi_text_control (code))
            escaped.size += (size_t)snprintf ((char *)escaped.data + escaped.size, 7, "\\u%04X",
                                              (unsigned int)code);
        else {
            length = length ? length : 1;
            memcpy (escaped.data + escaped.size, text->data + index, length);
            escaped.size += length;
        }
        index += length;
    }
    escaped.data[escaped.size] = 0;
    zqi_buf_free (text);
    *text = escaped;
    return 0;
}

char *
zq_msgpack_to_json (const void *data, size_t size)
{
    if (!data && size)
        return (errno = EINVAL), NULL;
    if (size == 0)
        return (errno = ZQ_EPROTO), NULL; //  a body is never empty
    //  Every declared length is checked before msgpack-c allocates for it.
    if (zqi_msgpack_check (data, size, NULL, ZQ_MSG_MAX_DEPTH))
        return NULL;
    msgpack_unpacked result;
    msgpack_unpacked_init (&result);
    size_t offset = 0;
    msgpack_unpack_return ret = msgpack_unpack_next (&result, data, size, &offset);
    if (ret != MSGPACK_UNPACK_SUCCESS || offset != size) {
        msgpack_unpacked_destroy (&result);
        return (errno = ret == MSGPACK_UNPACK_NOMEM_ERROR ? ENOMEM : ZQ_EPROTO), NULL;
    }
    json_t *root = s_object_to_json (&result.data);
    int saved = errno;
    msgpack_unpacked_destroy (&result);
    if (!root)
        return (errno = saved), NULL;

    zqi_buf_t text = {0};
    if (zqi_buf_reserve (&text, 1)) {
        json_decref (root);
        return (errno = ENOMEM), NULL;
    }
    text.data[0] = 0;
    //  Compact, keys in msgpack order, UTF-8 kept as is but for control
    //  characters; 17 significant digits so every double reads back
    //  exactly.
    int rc = json_dump_callback (root, s_text_append, &text,
                                 JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER |
                                     JSON_REAL_PRECISION (17));
    json_decref (root);
    if (rc || s_escape_controls (&text)) {
        zqi_buf_free (&text);
        return (errno = ENOMEM), NULL;
    }
    return (char *)text.data;
}

char *
zq_msg_body_json (const zq_msg_t *self)
{
    if (!self)
        return (errno = EINVAL), NULL;
    size_t size;
    const void *data = zq_msg_body (self, &size);
    return zq_msgpack_to_json (data, size);
}
