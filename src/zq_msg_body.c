/*  =========================================================================
    zq_msg_body - building and reading a message body: the picture
    language of zq_msg_pack / zq_msg_unpack and the key lookups.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_internal.h"
#include <msgpack.h>

//  A picture is checked as a whole before anything is packed or read:
//  every character must be a known one, brackets must pair up, and a map
//  must hold an even number of values. Returns 0 and stores the number of
//  top-level values and the deepest bracket nesting, or -1 with EINVAL.
static int
s_picture_check (const char *picture, size_t *values_p, size_t *depth_p)
{
    if (!picture || !*picture)
        return zqi_fail (EINVAL);

    //  Per open bracket: its kind and how many values it holds so far.
    //  The stack is dynamic only in the pathological case of pictures
    //  nested deeper than any body may be.
    char local_kind[ZQ_MSG_MAX_DEPTH + 2];
    size_t local_count[ZQ_MSG_MAX_DEPTH + 2];
    char *kind = local_kind;
    size_t *count = local_count;
    size_t capacity = ZQ_MSG_MAX_DEPTH + 2;
    size_t top = 0; //  open brackets
    size_t values = 0;
    size_t depth = 0;
    int rc = 0;

    for (const char *p = picture; *p && rc == 0; p++) {
        switch (*p) {
            case 'i':
            case 'u':
            case 'd':
            case 'b':
            case 's':
            case 'B':
            case 'n':
                if (top)
                    count[top - 1]++;
                else
                    values++;
                break;
            case '[':
            case '{':
                if (top)
                    count[top - 1]++;
                else
                    values++;
                if (top == capacity) {
                    size_t new_capacity = capacity * 2;
                    char *new_kind = malloc (new_capacity);
                    size_t *new_count = malloc (new_capacity * sizeof (size_t));
                    if (!new_kind || !new_count) {
                        free (new_kind);
                        free (new_count);
                        rc = zqi_fail (ENOMEM);
                        break;
                    }
                    memcpy (new_kind, kind, top);
                    memcpy (new_count, count, top * sizeof (size_t));
                    if (kind != local_kind) {
                        free (kind);
                        free (count);
                    }
                    kind = new_kind;
                    count = new_count;
                    capacity = new_capacity;
                }
                kind[top] = *p;
                count[top] = 0;
                top++;
                if (top > depth)
                    depth = top;
                break;
            case ']':
                if (top == 0 || kind[top - 1] != '[')
                    rc = zqi_fail (EINVAL);
                else
                    top--;
                break;
            case '}':
                if (top == 0 || kind[top - 1] != '{' || count[top - 1] % 2)
                    rc = zqi_fail (EINVAL);
                else
                    top--;
                break;
            default:
                rc = zqi_fail (EINVAL);
                break;
        }
    }
    if (rc == 0 && top)
        rc = zqi_fail (EINVAL);
    if (kind != local_kind) {
        free (kind);
        free (count);
    }
    if (rc == 0) {
        *values_p = values;
        *depth_p = depth;
    }
    return rc;
}

//  Counts the values directly inside the container whose opening bracket
//  precedes p, in a picture already checked.
static size_t
s_picture_children (const char *p)
{
    size_t children = 0;
    size_t level = 0;
    for (; *p; p++) {
        if (*p == '[' || *p == '{') {
            if (level == 0)
                children++;
            level++;
        } else if (*p == ']' || *p == '}') {
            if (level == 0)
                break;
            level--;
        } else if (level == 0)
            children++;
    }
    return children;
}

//  ---- Packing --------------------------------------------------------------

//  Packs the values of a checked picture from *picture_p up to the end or
//  the bracket that closes the enclosing container, advancing *picture_p
//  past that bracket. Returns 0, or -1 with errno ENOMEM or ZQ_ETOOBIG.
static int
s_pack_values (msgpack_packer *packer, const char **picture_p, va_list *args)
{
    const char *p = *picture_p;
    int rc = 0;
    while (*p && rc == 0) {
        char code = *p++;
        switch (code) {
            case 'i':
                rc = msgpack_pack_int64 (packer, va_arg (*args, int64_t));
                break;
            case 'u':
                rc = msgpack_pack_uint64 (packer, va_arg (*args, uint64_t));
                break;
            case 'd':
                rc = msgpack_pack_double (packer, va_arg (*args, double));
                break;
            case 'b':
                rc = va_arg (*args, int) ? msgpack_pack_true (packer) : msgpack_pack_false (packer);
                break;
            case 's': {
                const char *string = va_arg (*args, const char *);
                if (!string)
                    rc = msgpack_pack_nil (packer);
                else {
                    size_t size = strlen (string);
                    if (size > UINT32_MAX)
                        return zqi_fail (ZQ_ETOOBIG);
                    rc = msgpack_pack_str_with_body (packer, string, size);
                }
                break;
            }
            case 'B': {
                const void *bytes = va_arg (*args, const void *);
                size_t size = va_arg (*args, size_t);
                if (size > UINT32_MAX)
                    return zqi_fail (ZQ_ETOOBIG);
                rc = msgpack_pack_bin_with_body (packer, size ? bytes : "", size);
                break;
            }
            case 'n':
                rc = msgpack_pack_nil (packer);
                break;
            case '[':
            case '{': {
                size_t children = s_picture_children (p);
                if (code == '[')
                    rc = msgpack_pack_array (packer, children);
                else
                    rc = msgpack_pack_map (packer, children / 2);
                if (rc == 0)
                    rc = s_pack_values (packer, &p, args);
                break;
            }
            default: //  ']' or '}': this container is complete
                *picture_p = p;
                return 0;
        }
    }
    if (rc)
        return zqi_fail (ENOMEM);
    *picture_p = p;
    return 0;
}

int
zq_msg_pack (zq_msg_t *self, const char *picture, ...)
{
    if (!self)
        return zqi_fail (EINVAL);
    size_t values, depth;
    if (s_picture_check (picture, &values, &depth))
        return -1;
    if (values > 1)
        depth++; //  the values are wrapped in an array
    if (depth > ZQ_MSG_MAX_DEPTH)
        return zqi_fail (ZQ_EDEPTH);

    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);

    int rc = 0;
    if (values > 1 && msgpack_pack_array (&packer, values))
        rc = zqi_fail (ENOMEM);
    if (rc == 0) {
        va_list args;
        va_start (args, picture);
        const char *p = picture;
        rc = s_pack_values (&packer, &p, &args);
        va_end (args);
    }
    if (rc) {
        int saved = errno;
        msgpack_sbuffer_destroy (&buffer);
        errno = saved;
        return -1;
    }
    size_t size = buffer.size;
    zqi_msg_take_body (self, msgpack_sbuffer_release (&buffer), size);
    return 0;
}

//  ---- Reading -----------------------------------------------------------------

//  Parses the body of self into result after a strict check, so msgpack-c
//  only ever sees well-formed bytes whose every declared length is backed
//  by data. Returns 0 (the caller destroys result), or -1 with errno
//  ZQ_EPROTO, ZQ_EDEPTH or ENOMEM (nothing to destroy).
static int
s_body_parse (const zq_msg_t *self, msgpack_unpacked *result)
{
    size_t size;
    const void *data = zq_msg_body (self, &size);
    if (!data || size == 0)
        return zqi_fail (ZQ_EPROTO);
    if (zqi_msgpack_check (data, size, NULL, ZQ_MSG_MAX_DEPTH))
        return -1;
    msgpack_unpacked_init (result);
    size_t offset = 0;
    msgpack_unpack_return ret = msgpack_unpack_next (result, data, size, &offset);
    if (ret == MSGPACK_UNPACK_SUCCESS && offset == size)
        return 0;
    msgpack_unpacked_destroy (result);
    return zqi_fail (ret == MSGPACK_UNPACK_NOMEM_ERROR ? ENOMEM : ZQ_EPROTO);
}

static int
s_object_to_int (const msgpack_object *object, int64_t *value_p)
{
    if (object->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *value_p = object->via.i64;
    else if (object->type == MSGPACK_OBJECT_POSITIVE_INTEGER && object->via.u64 <= INT64_MAX)
        *value_p = (int64_t)object->via.u64;
    else
        return zqi_fail (ZQ_ETYPE);
    return 0;
}

static int
s_object_to_uint (const msgpack_object *object, uint64_t *value_p)
{
    //  msgpack-c reports every integer >= 0 as positive, whatever its encoding.
    if (object->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return zqi_fail (ZQ_ETYPE);
    *value_p = object->via.u64;
    return 0;
}

static int
s_object_to_double (const msgpack_object *object, double *value_p)
{
    switch (object->type) {
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
            *value_p = object->via.f64;
            return 0;
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            *value_p = (double)object->via.u64;
            return 0;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            *value_p = (double)object->via.i64;
            return 0;
        default:
            return zqi_fail (ZQ_ETYPE);
    }
}

//  Returns a NUL-terminated copy of size bytes, or NULL with ENOMEM.
static char *
s_strndup (const char *data, size_t size)
{
    char *string = malloc (size + 1);
    if (!string) {
        errno = ENOMEM;
        return NULL;
    }
    if (size)
        memcpy (string, data, size);
    string[size] = 0;
    return string;
}

//  Strings handed out by one zq_msg_unpack call, freed again if a later
//  value cannot be stored.
typedef struct {
    char ***targets;
    size_t count;
    size_t capacity;
} s_strings_t;

static void
s_strings_undo (s_strings_t *strings)
{
    for (size_t index = 0; index < strings->count; index++) {
        free (*strings->targets[index]);
        *strings->targets[index] = NULL;
    }
    free (strings->targets);
}

//  Reads count values of a checked picture, starting at *picture_p, from
//  count objects, and leaves *picture_p just after the last of them. With
//  strings NULL only the shape is checked (the pointers are consumed but
//  nothing is stored); otherwise values are stored and every new string is
//  recorded in strings. Returns 0, or -1 with errno ZQ_ETYPE or ENOMEM.
static int
s_unpack_values (const msgpack_object *objects, size_t count, const char **picture_p, va_list *args,
                 s_strings_t *strings)
{
    const char *p = *picture_p;
    for (size_t index = 0; index < count; index++) {
        const msgpack_object *object = &objects[index];
        char code = *p++;
        switch (code) {
            case 'i': {
                int64_t *target = va_arg (*args, int64_t *);
                int64_t value;
                if (s_object_to_int (object, &value))
                    return -1;
                if (strings)
                    *target = value;
                break;
            }
            case 'u': {
                uint64_t *target = va_arg (*args, uint64_t *);
                uint64_t value;
                if (s_object_to_uint (object, &value))
                    return -1;
                if (strings)
                    *target = value;
                break;
            }
            case 'd': {
                double *target = va_arg (*args, double *);
                double value;
                if (s_object_to_double (object, &value))
                    return -1;
                if (strings)
                    *target = value;
                break;
            }
            case 'b': {
                bool *target = va_arg (*args, bool *);
                if (object->type != MSGPACK_OBJECT_BOOLEAN)
                    return zqi_fail (ZQ_ETYPE);
                if (strings)
                    *target = object->via.boolean;
                break;
            }
            case 's': {
                char **target = va_arg (*args, char **);
                if (object->type != MSGPACK_OBJECT_STR && object->type != MSGPACK_OBJECT_NIL)
                    return zqi_fail (ZQ_ETYPE);
                if (!strings)
                    break;
                if (object->type == MSGPACK_OBJECT_NIL) {
                    *target = NULL;
                    break;
                }
                if (strings->count == strings->capacity) {
                    size_t capacity = strings->capacity ? strings->capacity * 2 : 8;
                    char ***targets = realloc (strings->targets, capacity * sizeof (char **));
                    if (!targets)
                        return zqi_fail (ENOMEM);
                    strings->targets = targets;
                    strings->capacity = capacity;
                }
                char *copy = s_strndup (object->via.str.ptr, object->via.str.size);
                if (!copy)
                    return -1;
                *target = copy;
                strings->targets[strings->count++] = target;
                break;
            }
            case 'B': {
                const void **data_target = va_arg (*args, const void **);
                size_t *size_target = va_arg (*args, size_t *);
                const char *bytes;
                size_t size;
                if (object->type == MSGPACK_OBJECT_BIN) {
                    bytes = object->via.bin.ptr;
                    size = object->via.bin.size;
                } else if (object->type == MSGPACK_OBJECT_STR) {
                    bytes = object->via.str.ptr;
                    size = object->via.str.size;
                } else
                    return zqi_fail (ZQ_ETYPE);
                if (strings) {
                    *data_target = bytes;
                    *size_target = size;
                }
                break;
            }
            case 'n':
                if (object->type != MSGPACK_OBJECT_NIL)
                    return zqi_fail (ZQ_ETYPE);
                break;
            case '[': {
                size_t children = s_picture_children (p);
                if (object->type != MSGPACK_OBJECT_ARRAY || object->via.array.size != children)
                    return zqi_fail (ZQ_ETYPE);
                if (s_unpack_values (object->via.array.ptr, children, &p, args, strings))
                    return -1;
                ZQ_ASSERT (*p == ']');
                p++;
                break;
            }
            case '{': {
                size_t children = s_picture_children (p);
                if (object->type != MSGPACK_OBJECT_MAP || object->via.map.size != children / 2)
                    return zqi_fail (ZQ_ETYPE);
                for (size_t pair = 0; pair < children / 2; pair++) {
                    const msgpack_object_kv *kv = &object->via.map.ptr[pair];
                    msgpack_object key_value[2] = {kv->key, kv->val};
                    if (s_unpack_values (key_value, 2, &p, args, strings))
                        return -1;
                }
                ZQ_ASSERT (*p == '}');
                p++;
                break;
            }
            default:
                //  A checked picture holds as many values as the container
                //  they are compared with, so no closing bracket comes here.
                ZQ_ASSERT (false);
        }
    }
    *picture_p = p;
    return 0;
}

int
zq_msg_unpack (const zq_msg_t *self, const char *picture, ...)
{
    if (!self)
        return zqi_fail (EINVAL);
    size_t values, depth;
    if (s_picture_check (picture, &values, &depth))
        return -1;

    msgpack_unpacked result;
    if (s_body_parse (self, &result))
        return -1;
    const msgpack_object *objects = &result.data;
    if (values > 1) {
        //  Several values read an array of exactly that many.
        if (result.data.type != MSGPACK_OBJECT_ARRAY || result.data.via.array.size != values) {
            msgpack_unpacked_destroy (&result);
            return zqi_fail (ZQ_ETYPE);
        }
        objects = result.data.via.array.ptr;
    }

    //  First check the whole shape without storing anything, then store:
    //  a mismatch leaves every target untouched.
    va_list args;
    va_start (args, picture);
    const char *p = picture;
    int rc = s_unpack_values (objects, values, &p, &args, NULL);
    va_end (args);
    if (rc == 0) {
        s_strings_t strings = {NULL, 0, 0};
        va_start (args, picture);
        p = picture;
        rc = s_unpack_values (objects, values, &p, &args, &strings);
        va_end (args);
        int saved = errno;
        if (rc)
            s_strings_undo (&strings);
        else
            free (strings.targets);
        errno = saved;
    }
    msgpack_unpacked_destroy (&result);
    return rc;
}

//  ---- Key lookups -----------------------------------------------------------

//  Finds key in the body of self (a map with str keys; the first pair with
//  that key wins) and calls convert on its value. Returns what convert
//  returns, or -1 with errno ZQ_ENOTFOUND, EINVAL or what parsing set.
typedef int (s_convert_fn) (const msgpack_object *object, void *value_p);

static int
s_lookup (const zq_msg_t *self, const char *key, s_convert_fn *convert, void *value_p)
{
    if (!self || !key || !value_p)
        return zqi_fail (EINVAL);
    msgpack_unpacked result;
    if (s_body_parse (self, &result))
        return -1;
    int rc = zqi_fail (ZQ_ENOTFOUND);
    if (result.data.type == MSGPACK_OBJECT_MAP) {
        size_t key_size = strlen (key);
        const msgpack_object_map *map = &result.data.via.map;
        for (uint32_t index = 0; index < map->size; index++) {
            const msgpack_object *candidate = &map->ptr[index].key;
            if (candidate->type == MSGPACK_OBJECT_STR && candidate->via.str.size == key_size &&
                memcmp (candidate->via.str.ptr, key, key_size) == 0) {
                rc = convert (&map->ptr[index].val, value_p);
                break;
            }
        }
    }
    int saved = errno;
    msgpack_unpacked_destroy (&result);
    errno = saved;
    return rc;
}

static int
s_convert_int (const msgpack_object *object, void *value_p)
{
    return s_object_to_int (object, (int64_t *)value_p);
}

static int
s_convert_uint (const msgpack_object *object, void *value_p)
{
    return s_object_to_uint (object, (uint64_t *)value_p);
}

static int
s_convert_double (const msgpack_object *object, void *value_p)
{
    return s_object_to_double (object, (double *)value_p);
}

static int
s_convert_bool (const msgpack_object *object, void *value_p)
{
    if (object->type != MSGPACK_OBJECT_BOOLEAN)
        return zqi_fail (ZQ_ETYPE);
    *(bool *)value_p = object->via.boolean;
    return 0;
}

static int
s_convert_str (const msgpack_object *object, void *value_p)
{
    if (object->type != MSGPACK_OBJECT_STR)
        return zqi_fail (ZQ_ETYPE);
    char *copy = s_strndup (object->via.str.ptr, object->via.str.size);
    if (!copy)
        return -1;
    *(char **)value_p = copy;
    return 0;
}

//  Each lookup stores only on success: on error *value_p is untouched.
int
zq_msg_get_int (const zq_msg_t *self, const char *key, int64_t *value_p)
{
    return s_lookup (self, key, s_convert_int, value_p);
}

int
zq_msg_get_uint (const zq_msg_t *self, const char *key, uint64_t *value_p)
{
    return s_lookup (self, key, s_convert_uint, value_p);
}

int
zq_msg_get_double (const zq_msg_t *self, const char *key, double *value_p)
{
    return s_lookup (self, key, s_convert_double, value_p);
}

int
zq_msg_get_bool (const zq_msg_t *self, const char *key, bool *value_p)
{
    return s_lookup (self, key, s_convert_bool, value_p);
}

char *
zq_msg_get_str (const zq_msg_t *self, const char *key)
{
    char *value = NULL;
    if (s_lookup (self, key, s_convert_str, &value))
        return NULL;
    return value;
}
