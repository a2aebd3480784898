/*  =========================================================================
    zq_msg - one message: envelope (id, subject, time, attempt, headers)
    and a msgpack body; its wire form is specified in doc/PROTOCOL.md.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_MSG_H_INCLUDED
#define ZQ_MSG_H_INCLUDED

#include "zq_library.h"

#ifdef __cplusplus
extern "C" {
#endif

//  The envelope version this library writes (doc/PROTOCOL.md).
#define ZQ_PROTOCOL_VERSION 1
//  Size of a message id in bytes.
#define ZQ_MSG_ID_SIZE 16
//  Length of a message id as lowercase hex, without the terminating NUL.
#define ZQ_MSG_ID_HEX_SIZE 32
//  Default limit on one encoded message (all of its envelope frames).
#define ZQ_MSG_MAX_SIZE_DEFAULT (1024 * 1024)
//  Deepest msgpack nesting accepted in a body (a scalar is depth 0).
#define ZQ_MSG_MAX_DEPTH 32
//  Most headers one message may carry.
#define ZQ_MSG_MAX_HEADERS 64
//  Longest subject, header name or header value, in bytes.
#define ZQ_MSG_MAX_STRING 4096
//  Bodies at least this large are sent as their own frame without a copy.
#define ZQ_MSG_ZEROCOPY_MIN 8192

typedef struct _zq_msg_t zq_msg_t;

//  Creates a message for subject (a queue name or topic; NULL means "") with a
//  fresh id, the current time, attempt 0, no headers and an empty body (the
//  msgpack nil). Ids made by one thread sort strictly by creation; ids from
//  different threads or processes sort by creation millisecond. Each id
//  carries 8 random octets of its own, so no id tells the next one
//  (doc/PROTOCOL.md, section 11).
//  Returns NULL with errno ZQ_ETOOBIG if subject is longer than
//  ZQ_MSG_MAX_STRING, or ENOMEM.
ZQ_EXPORT zq_msg_t *zq_msg_new (const char *subject);

//  Destroys the message and sets *self_p to NULL; safe on NULL and twice.
ZQ_EXPORT void zq_msg_destroy (zq_msg_t **self_p);

//  Returns a deep copy of the message (same id), or NULL on ENOMEM.
ZQ_EXPORT zq_msg_t *zq_msg_dup (const zq_msg_t *self);

//  Returns the 16-byte id; valid while the message lives.
ZQ_EXPORT const uint8_t *zq_msg_id (const zq_msg_t *self);

//  Writes the id as 32 lowercase hex digits plus a NUL into hex, which must
//  hold ZQ_MSG_ID_HEX_SIZE + 1 bytes; returns hex.
ZQ_EXPORT char *zq_msg_id_hex (const zq_msg_t *self, char *hex);

//  Replaces the id (used when a message is re-sent under its original id).
ZQ_EXPORT void zq_msg_set_id (zq_msg_t *self, const uint8_t id[ZQ_MSG_ID_SIZE]);

//  Returns the subject; never NULL; valid until the subject changes.
ZQ_EXPORT const char *zq_msg_subject (const zq_msg_t *self);

//  Replaces the subject (copied). Returns 0, or -1 with errno ZQ_ETOOBIG or
//  ENOMEM, leaving the old subject in place.
ZQ_EXPORT int zq_msg_set_subject (zq_msg_t *self, const char *subject);

//  Returns the creation time in milliseconds since the Unix epoch.
ZQ_EXPORT int64_t zq_msg_created_ms (const zq_msg_t *self);

//  Returns how many times delivery was attempted before (0 on first send).
ZQ_EXPORT uint32_t zq_msg_attempt (const zq_msg_t *self);

//  Sets the attempt count.
ZQ_EXPORT void zq_msg_set_attempt (zq_msg_t *self, uint32_t attempt);

//  Sets header name to value (both copied), replacing an existing value.
//  Returns 0, or -1 with errno ZQ_ETOOBIG (name/value over ZQ_MSG_MAX_STRING,
//  or already ZQ_MSG_MAX_HEADERS headers), EINVAL (NULL or empty name, NULL
//  value) or ENOMEM.
ZQ_EXPORT int zq_msg_set_header (zq_msg_t *self, const char *name, const char *value);

//  Returns the value of header name, or NULL if the message has none.
ZQ_EXPORT const char *zq_msg_header (const zq_msg_t *self, const char *name);

//  Returns the number of headers.
ZQ_EXPORT size_t zq_msg_header_count (const zq_msg_t *self);

//  Returns the name of header number index (0-based, in insertion order) and
//  stores its value in *value_p; NULL if index is out of range.
ZQ_EXPORT const char *zq_msg_header_at (const zq_msg_t *self, size_t index, const char **value_p);

//  Returns the body's msgpack bytes and stores their size in *size_p. The
//  bytes belong to the message and stay valid until the body changes or
//  the message is sent or destroyed.
ZQ_EXPORT const void *zq_msg_body (const zq_msg_t *self, size_t *size_p);

//  Replaces the body with a copy of size bytes of msgpack. The bytes must be
//  exactly one well-formed msgpack object within ZQ_MSG_MAX_DEPTH. Returns 0,
//  or -1 with errno ZQ_EPROTO, ZQ_EDEPTH or ENOMEM (body unchanged).
ZQ_EXPORT int zq_msg_set_body (zq_msg_t *self, const void *data, size_t size);

//  Builds the body from a picture, one character per value:
//      i  int64_t         u  uint64_t        d  double        b  bool (int)
//      s  const char *    (NULL packs nil)
//      B  const void *, size_t   (msgpack bin)
//      n  nil (no argument)
//      [ ... ]  an array of the values inside
//      { ... }  a map: the values inside alternate key, value
//  One value makes the body that value; several make the body an array of
//  them. Integers are written in their shortest encoding, doubles as float64.
//  i and u read exactly an int64_t / uint64_t from the arguments, so cast
//  literals. Example:
//      zq_msg_pack (msg, "{sssu}", "order", "A-17", "cents", (uint64_t) 1299);
//  Returns 0, or -1 with errno EINVAL (NULL, empty or bad picture: unknown
//  character, unpaired bracket, odd map), ZQ_EDEPTH (nesting over
//  ZQ_MSG_MAX_DEPTH, counting the array that wraps several values),
//  ZQ_ETOOBIG (a string or bin over 4 GiB) or ENOMEM; on error the body is
//  unchanged.
ZQ_EXPORT int zq_msg_pack (zq_msg_t *self, const char *picture, ...);

//  Reads the body by the same picture language, storing through pointers:
//  i int64_t *, u uint64_t *, d double *, b bool *, s char ** (a new string
//  the caller frees; nil gives NULL), B const void **, size_t * (points into
//  the body), n nothing, [ ] an array that must have exactly the values
//  inside, { } a map whose keys and values are read in order. Several
//  values read an array of exactly that many. Conversions: i and u accept
//  any integer that fits; d accepts float32, float64 and integers; B
//  accepts bin and str; s accepts str and nil; n requires nil. Returns 0,
//  or -1 with errno EINVAL (bad picture), ZQ_ETYPE (the body has another
//  shape: nothing is stored and nothing is left allocated) or ENOMEM.
ZQ_EXPORT int zq_msg_unpack (const zq_msg_t *self, const char *picture, ...);

//  Key lookups in a body that is a map with string keys (keys of other
//  types are skipped; the first pair with the key wins). Each returns 0 and
//  stores the value, or -1 with errno ZQ_ENOTFOUND (no such key, or the body
//  is not a map) or ZQ_ETYPE (the value has another type), leaving *value_p
//  untouched. Integers convert between signed and unsigned when the value
//  fits; zq_msg_get_double also reads float32 and integers.
ZQ_EXPORT int zq_msg_get_int (const zq_msg_t *self, const char *key, int64_t *value_p);
ZQ_EXPORT int zq_msg_get_uint (const zq_msg_t *self, const char *key, uint64_t *value_p);
ZQ_EXPORT int zq_msg_get_double (const zq_msg_t *self, const char *key, double *value_p);
ZQ_EXPORT int zq_msg_get_bool (const zq_msg_t *self, const char *key, bool *value_p);
//  Returns a new string the caller frees, or NULL with errno as above
//  (a nil value is ZQ_ETYPE).
ZQ_EXPORT char *zq_msg_get_str (const zq_msg_t *self, const char *key);

//  Replaces the body with the msgpack form of one JSON document (UTF-8).
//  Any JSON value may be the document. Integers become the shortest msgpack
//  int; integers outside the int64 range are refused (ZQ_EJSON) rather than
//  rounded. Reals become float64. "\u0000" in strings is kept. An object of
//  exactly one key "$bin" whose value is a string becomes msgpack bin, and
//  one of exactly one key "$ext" whose value is [type, string] with type in
//  -128..127 becomes ext; the string must be canonical base64 (RFC 4648,
//  standard alphabet, padded) or the document is refused. Returns 0, or -1
//  with errno ZQ_EJSON (invalid JSON, duplicate keys in an object, bad
//  base64), ZQ_EDEPTH (nesting over ZQ_MSG_MAX_DEPTH) or ENOMEM; on error
//  the body is unchanged.
ZQ_EXPORT int zq_msg_set_body_json (zq_msg_t *self, const char *json);

//  Returns the body as compact JSON text, a new string the caller frees.
//  Keys keep their msgpack order and text stays UTF-8, but no control
//  character is written as it is: below U+0020, DEL and U+0080 to U+009F
//  (C1 controls, which a terminal may obey) are \uXXXX escapes. bin (and str that is
//  not valid UTF-8) become {"$bin": "<base64>"}; ext becomes
//  {"$ext": [type, "<base64>"]}. Integers up to INT64_MAX print exactly;
//  unsigned integers above INT64_MAX become the nearest double (JSON has no
//  portable integer that large). Floats print with up to 17 significant
//  digits, so they read back to the same double. Returns NULL with errno
//  ZQ_EJSON (a map key that is not a UTF-8 string, a duplicate key, NaN or
//  infinity) or ENOMEM.
ZQ_EXPORT char *zq_msg_body_json (const zq_msg_t *self);

//  Converts one JSON document to msgpack, as zq_msg_set_body_json does.
//  On success returns 0 and a new buffer in *data_p (caller frees) of
//  *size_p bytes; -1 with errno as zq_msg_set_body_json otherwise.
ZQ_EXPORT int zq_json_to_msgpack (const char *json, void **data_p, size_t *size_p);

//  Converts one msgpack object to JSON text, as zq_msg_body_json does;
//  the data is checked as strictly as a received body first.
//  Returns a new string the caller frees, or NULL with errno as
//  zq_msg_body_json, or ZQ_EPROTO / ZQ_EDEPTH for malformed or too deeply
//  nested data (rejected before anything is allocated for it).
ZQ_EXPORT char *zq_msgpack_to_json (const void *data, size_t size);

//  ---- Wire form ----------------------------------------------------------
//  A message goes on the wire as one or two frames (doc/PROTOCOL.md): the
//  header followed by the body in one frame, or, for bodies of at least
//  ZQ_MSG_ZEROCOPY_MIN bytes, the header frame and a body frame sent without
//  a copy. A pattern's own frames, if any, come before them.

//  Sends the message on socket (a libzmq socket, or a zsock_t / zactor_t)
//  with flags (ZMQ_DONTWAIT, ZMQ_SNDMORE for the last frame) and takes
//  ownership: on success *self_p becomes NULL. Returns 0, or -1 with errno
//  from zmq_msg_send (EAGAIN, ...); on error the caller keeps the message.
ZQ_EXPORT int zq_msg_send (zq_msg_t **self_p, void *socket, int flags);

//  Receives the envelope frames of one message from socket (flags as for
//  zmq_msg_recv) and decodes them strictly, rejecting anything over
//  max_size bytes (0 means ZQ_MSG_MAX_SIZE_DEFAULT). Returns a new message
//  the caller owns, or NULL with errno: EAGAIN / ETERM / EINTR from libzmq,
//  or ZQ_EPROTO, ZQ_ETOOBIG, ZQ_EVERSION, ZQ_EDEPTH for bad input. After a
//  bad message every frame of it has been read, so the socket stays usable.
ZQ_EXPORT zq_msg_t *zq_msg_recv (void *socket, int flags, size_t max_size);

//  Encodes the message into frames appended to dest and takes
//  ownership of it: *self_p becomes NULL. Returns 0, or -1 with ENOMEM (the
//  caller keeps the message).
ZQ_EXPORT int zq_msg_encode (zq_msg_t **self_p, zmsg_t *dest);

//  Decodes a message from the frames of src, strictly, with
//  max_size as in zq_msg_recv. Takes the frames it reads off src: on success
//  and on failure src is left empty. Returns a new message or NULL with errno.
ZQ_EXPORT zq_msg_t *zq_msg_decode (zmsg_t *src, size_t max_size);

//  Decodes a message from frames given as buffers (count of them, with their
//  sizes), copying what it keeps. Returns a new message or NULL with errno as
//  zq_msg_recv. For tests, fuzzers and other transports.
ZQ_EXPORT zq_msg_t *zq_msg_decode_buffers (const void *const *frames, const size_t *sizes,
                                           size_t count, size_t max_size);

#ifdef __cplusplus
}
#endif

#endif
