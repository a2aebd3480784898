/*  =========================================================================
    zq_wire - what every zq protocol shares on the wire: one growable
    byte buffer, one msgpack writer, the bounded msgpack reader, and the
    command-frame header. Internal, never installed; included through
    zq_internal.h. It knows nothing of patterns: the rpc and reliable
    patterns, the device and the CLI build and read their frames with it.

        buffer     zqi_buf_t: bytes that grow by doubling, freed once.
        writing    zqi_mp_write_* put one value at a pointer the caller
                   sized with zqi_mp_*_size (the fast path, no checks);
                   zqi_mp_put_* append one value to a zqi_buf_t. Both emit
                   the shortest encoding of each value, so a frame reads
                   the same byte for byte whichever way it was built.
        reading    zqi_cursor_t and zqi_mp_read_*: each read checks the
                   declared length against the bytes that remain.
        commands   a command frame is a msgpack array [version, kind,
                   ...] of 2 to ZQI_WIRE_ELEMENTS_MAX elements (rpc and
                   reliable frames, doc/PROTOCOL.md); elements a reader
                   does not know are skipped, so a newer peer may append.
        batches    (reserved) frames carrying several messages belong here,
                   beside the command header, split with the same limits.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_WIRE_H_INCLUDED
#define ZQ_WIRE_H_INCLUDED

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

//  ---- Buffer ---------------------------------------------------------------

//  A growable byte buffer; all zeros is an empty one. data is NULL until
//  the first byte is reserved.
typedef struct {
    uint8_t *data;
    size_t size;
    size_t capacity;
} zqi_buf_t;

//  Makes room in a malloc'd array for at least needed items of item_size
//  bytes: *capacity_p doubles (from first_capacity when 0) until it holds
//  needed, and *items_p is reallocated. Nothing changes when there is room
//  already, or on failure. Returns 0, or -1 with errno ENOMEM (also when
//  the size in bytes would overflow). zqi_buf_t and the spool's arrays
//  grow through it.
int zqi_array_reserve (void **items_p, size_t *capacity_p, size_t needed, size_t item_size,
                       size_t first_capacity);

//  Empties the buffer, keeping its memory for the next frame.
void zqi_buf_reset (zqi_buf_t *buf);
//  Frees the buffer's memory; it is then empty and may be used again.
void zqi_buf_free (zqi_buf_t *buf);
//  Makes room for more bytes after size (capacity doubles from 256).
//  Returns 0, or -1 with errno ENOMEM (also when the size would overflow).
int zqi_buf_reserve (zqi_buf_t *buf, size_t more);
//  Appends size bytes. Returns 0, or -1 with errno ENOMEM.
int zqi_buf_append (zqi_buf_t *buf, const void *data, size_t size);

//  ---- msgpack writing ------------------------------------------------------

//  Encoded size of an unsigned integer, of a str or bin of size bytes
//  (marker, length and bytes), and of an array or map header.
static inline size_t
zqi_mp_uint_size (uint64_t value)
{
    return value <= 0x7f         ? 1
           : value <= 0xff       ? 2
           : value <= 0xffff     ? 3
           : value <= 0xffffffff ? 5
                                 : 9;
}

static inline size_t
zqi_mp_str_size (size_t size)
{
    return size + (size <= 31 ? 1 : size <= 0xff ? 2 : size <= 0xffff ? 3 : 5);
}

static inline size_t
zqi_mp_bin_size (size_t size)
{
    return size + (size <= 0xff ? 2 : size <= 0xffff ? 3 : 5);
}

static inline size_t
zqi_mp_array_size (uint32_t count)
{
    return count <= 15 ? 1 : count <= 0xffff ? 3 : 5;
}

#define zqi_mp_map_size zqi_mp_array_size

//  Stores value big-endian in width bytes (1, 2, 4 or 8); returns the
//  position after it.
static inline uint8_t *
zqi_mp_write_be (uint8_t *out, uint64_t value, int width)
{
    if (width == 1)
        *out = (uint8_t)value;
    else if (width == 2) {
        out[0] = (uint8_t)(value >> 8);
        out[1] = (uint8_t)value;
    } else if (width == 4) {
        uint32_t word = (uint32_t)value;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        word = __builtin_bswap32 (word);
#endif
        memcpy (out, &word, sizeof word);
    } else {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        value = __builtin_bswap64 (value);
#endif
        memcpy (out, &value, sizeof value);
    }
    return out + width;
}

//  Writes marker, then value big-endian in width bytes.
static inline uint8_t *
zqi_mp_write_marked (uint8_t *out, uint8_t marker, uint64_t value, int width)
{
    *out = marker;
    return zqi_mp_write_be (out + 1, value, width);
}

//  Each zqi_mp_write_* writes one value at out, which has room for it (its
//  zqi_mp_*_size), and returns the position after it.
static inline uint8_t *
zqi_mp_write_uint (uint8_t *out, uint64_t value)
{
    if (value <= 0x7f) {
        *out = (uint8_t)value;
        return out + 1;
    }
    return value <= 0xff         ? zqi_mp_write_marked (out, 0xcc, value, 1)
           : value <= 0xffff     ? zqi_mp_write_marked (out, 0xcd, value, 2)
           : value <= 0xffffffff ? zqi_mp_write_marked (out, 0xce, value, 4)
                                 : zqi_mp_write_marked (out, 0xcf, value, 8);
}

//  A signed integer: values >= 0 as zqi_mp_write_uint does, negative ones
//  in the shortest of negative fixint, int8, int16, int32, int64. At most
//  9 bytes.
uint8_t *zqi_mp_write_int (uint8_t *out, int64_t value);

//  Writes the marker and length of a str (no bytes).
static inline uint8_t *
zqi_mp_write_str_header (uint8_t *out, size_t size)
{
    if (size <= 31) {
        *out = (uint8_t)(0xa0 | size);
        return out + 1;
    }
    return size <= 0xff     ? zqi_mp_write_marked (out, 0xd9, size, 1)
           : size <= 0xffff ? zqi_mp_write_marked (out, 0xda, size, 2)
                            : zqi_mp_write_marked (out, 0xdb, size, 4);
}

static inline uint8_t *
zqi_mp_write_str (uint8_t *out, const char *str, size_t size)
{
    out = zqi_mp_write_str_header (out, size);
    if (size)
        memcpy (out, str, size);
    return out + size;
}

//  Writes the marker and length of a bin (no bytes).
static inline uint8_t *
zqi_mp_write_bin_header (uint8_t *out, size_t size)
{
    return size <= 0xff     ? zqi_mp_write_marked (out, 0xc4, size, 1)
           : size <= 0xffff ? zqi_mp_write_marked (out, 0xc5, size, 2)
                            : zqi_mp_write_marked (out, 0xc6, size, 4);
}

//  An array or map header: a fix form (fix_marker | count) up to 15, then
//  a 16-bit and a 32-bit count after their markers.
static inline uint8_t *
zqi_mp_write_container (uint8_t *out, uint32_t count, uint8_t fix_marker, uint8_t marker16)
{
    if (count <= 15) {
        *out = (uint8_t)(fix_marker | count);
        return out + 1;
    }
    return count <= 0xffff ? zqi_mp_write_marked (out, marker16, count, 2)
                           : zqi_mp_write_marked (out, (uint8_t)(marker16 + 1), count, 4);
}

static inline uint8_t *
zqi_mp_write_array (uint8_t *out, uint32_t count)
{
    return zqi_mp_write_container (out, count, 0x90, 0xdc);
}

static inline uint8_t *
zqi_mp_write_map (uint8_t *out, uint32_t pairs)
{
    return zqi_mp_write_container (out, pairs, 0x80, 0xde);
}

//  Each zqi_mp_put_* appends one value to buf, encoded as the matching
//  zqi_mp_write_* does. Returns 0, or -1 with errno ENOMEM (buf unchanged).
//  A str or bin is at most UINT32_MAX bytes (EINVAL beyond).
int zqi_mp_put_array (zqi_buf_t *buf, uint32_t count);
int zqi_mp_put_map (zqi_buf_t *buf, uint32_t pairs);
int zqi_mp_put_uint (zqi_buf_t *buf, uint64_t value);
int zqi_mp_put_int (zqi_buf_t *buf, int64_t value);
int zqi_mp_put_str (zqi_buf_t *buf, const char *text, size_t size);
int zqi_mp_put_bin (zqi_buf_t *buf, const void *data, size_t size);

//  ---- msgpack reading ------------------------------------------------------

//  A strict msgpack reader over a byte range: pos is the next byte, end one
//  past the last. Each zqi_mp_read_* reads one value of the named type (any
//  of its encodings), checks its declared length against the bytes that
//  remain, advances pos and returns 0; otherwise it returns -1 with errno
//  ZQ_EPROTO (wrong type, truncated) and leaves pos where it was.
//  (src/zq_msgpack_check.c, beside the validator they share rules with.)
typedef struct {
    const uint8_t *pos;
    const uint8_t *end;
} zqi_cursor_t;

//  Array header (fixarray, array16, array32): stores the element count,
//  which may not exceed the bytes that remain (each element takes one).
int zqi_mp_read_array (zqi_cursor_t *cursor, uint32_t *count_p);
//  Array header whose count is not held against the bytes that remain, for
//  a reader that bounds it itself (after a version, so that a frame of
//  another version is reported as such).
int zqi_mp_read_array_marker (zqi_cursor_t *cursor, uint64_t *count_p);
//  Map header: stores the pair count; two bytes remain per pair at least.
int zqi_mp_read_map (zqi_cursor_t *cursor, uint32_t *pairs_p);
//  Integer of any encoding whose value is >= 0 (a negative one: ZQ_EPROTO).
int zqi_mp_read_uint (zqi_cursor_t *cursor, uint64_t *value_p);
//  Integer of any encoding, negative ones included, that fits an int64_t
//  (a uint64 above INT64_MAX: ZQ_EPROTO).
int zqi_mp_read_int (zqi_cursor_t *cursor, int64_t *value_p);
//  str: stores a pointer to its bytes (not NUL-terminated) and their size.
int zqi_mp_read_str (zqi_cursor_t *cursor, const char **str_p, uint32_t *size_p);
//  bin: stores a pointer to its bytes and their size.
int zqi_mp_read_bin (zqi_cursor_t *cursor, const uint8_t **data_p, uint32_t *size_p);
//  Skips one whole object of any type, checked as zqi_msgpack_check does
//  (errno ZQ_EPROTO or ZQ_EDEPTH).
int zqi_mp_skip (zqi_cursor_t *cursor, int max_depth);

//  ---- Command frames -------------------------------------------------------

//  Most elements a command frame may have (version and kind included).
#define ZQI_WIRE_ELEMENTS_MAX 16

//  Reads the header of a command frame at cursor: an array of 2 to
//  ZQI_WIRE_ELEMENTS_MAX elements whose first is version and second the
//  kind (an unsigned integer). Stores the element count and the kind.
//  Returns 0, or -1 with errno ZQ_EPROTO (no array, an element missing or
//  too many, no kind) or ZQ_EVERSION (a first element other than version,
//  checked before the element count is held against the limit).
int zqi_wire_command_read (zqi_cursor_t *cursor, uint64_t version, uint32_t *elements_p,
                           uint64_t *kind_p);

//  Ends reading a command frame whose first used elements were read:
//  skips the rest (each checked, nesting within max_depth) and checks
//  that nothing follows. Returns 0, or -1 with errno ZQ_EPROTO or ZQ_EDEPTH.
int zqi_wire_command_end (zqi_cursor_t *cursor, uint32_t used, uint32_t elements, int max_depth);

//  Starts a command frame in buf (emptied first): the array header for
//  elements (2 to ZQI_WIRE_ELEMENTS_MAX), version and kind. The caller
//  appends the other elements. Returns 0, or -1 with errno ENOMEM.
int zqi_wire_command_put (zqi_buf_t *buf, uint32_t elements, uint64_t version, uint64_t kind);

//  Size of a command header, and writing one at out (room for it).
static inline size_t
zqi_wire_command_size (uint32_t elements, uint64_t version, uint64_t kind)
{
    return zqi_mp_array_size (elements) + zqi_mp_uint_size (version) + zqi_mp_uint_size (kind);
}

static inline uint8_t *
zqi_wire_command_write (uint8_t *out, uint32_t elements, uint64_t version, uint64_t kind)
{
    out = zqi_mp_write_array (out, elements);
    out = zqi_mp_write_uint (out, version);
    return zqi_mp_write_uint (out, kind);
}

//  ---- Batch frames ---------------------------------------------------------
//  (reserved: the codec of frames that carry several messages goes here,
//  with its limits, so that every protocol splits them the same way.)

#endif
