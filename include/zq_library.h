/*  =========================================================================
    zq_library - what the whole library shares: export macro, version,
    error codes and the log hook.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_LIBRARY_H_INCLUDED
#define ZQ_LIBRARY_H_INCLUDED

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <czmq.h>

#if defined(ZQ_BUILD) && defined(__GNUC__)
#define ZQ_EXPORT __attribute__ ((visibility ("default")))
#else
#define ZQ_EXPORT
#endif

#include "zq_version.h"

#define ZQ_MAKE_VERSION(major, minor, patch) ((major)*10000 + (minor)*100 + (patch))
#define ZQ_VERSION                           ZQ_MAKE_VERSION (ZQ_VERSION_MAJOR, ZQ_VERSION_MINOR, ZQ_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif

//  zq's own error numbers, set in errno like the system's. They start well
//  above both the system's and libzmq's (ZMQ_HAUSNUMERO) ranges.
#define ZQ_ERRNO_BASE 0x5A510000
//  Malformed input: bad frame count, truncated or invalid msgpack, a
//  declared length larger than the bytes present, a field of the wrong type.
#define ZQ_EPROTO (ZQ_ERRNO_BASE + 1)
//  A message, frame, header or body is larger than the limit in force.
#define ZQ_ETOOBIG (ZQ_ERRNO_BASE + 2)
//  The peer speaks a protocol version this library does not know.
#define ZQ_EVERSION (ZQ_ERRNO_BASE + 3)
//  msgpack nested deeper than ZQ_MSG_MAX_DEPTH.
#define ZQ_EDEPTH (ZQ_ERRNO_BASE + 4)
//  Text is not valid JSON, or msgpack has no JSON form (NaN, non-string key).
#define ZQ_EJSON (ZQ_ERRNO_BASE + 5)
//  A body does not have the shape a picture or key lookup asked for.
#define ZQ_ETYPE (ZQ_ERRNO_BASE + 6)
//  Stored data failed its checksum or framing: it is reported, never served.
#define ZQ_ECORRUPT (ZQ_ERRNO_BASE + 7)
//  A storage quota or the disk is full; nothing was stored or confirmed.
#define ZQ_EFULL (ZQ_ERRNO_BASE + 8)
//  The operation's deadline passed before it could complete.
#define ZQ_ETIMEDOUT (ZQ_ERRNO_BASE + 9)
//  No such key, header or named item.
#define ZQ_ENOTFOUND (ZQ_ERRNO_BASE + 10)
//  A configured count limit (such as a server's max_queues) is reached:
//  nothing was created or stored, and retrying will not help until an
//  operator raises the limit.
#define ZQ_ELIMIT (ZQ_ERRNO_BASE + 11)

//  Returns a static, human-readable text for any errno value: zq's own codes
//  above, libzmq's, or the system's. Never returns NULL.
ZQ_EXPORT const char *zq_strerror (int errnum);

//  Log levels passed to the log handler.
typedef enum {
    ZQ_LOG_ERROR = 0,
    ZQ_LOG_WARNING = 1,
    ZQ_LOG_NOTICE = 2,
    ZQ_LOG_DEBUG = 3
} zq_log_level_t;

//  A log handler receives one complete line of UTF-8 text without a
//  newline. No line holds a control character: each byte of one that a
//  line would carry (text a peer sent, such as a server's ERROR reason:
//  below 0x20, 0x7f, or U+0080 to U+009F, the C1 controls), and each byte
//  that is not part of a UTF-8 character, is written as the four
//  characters \xHH. A line is at most 511 bytes.
typedef void (zq_log_fn) (zq_log_level_t level, const char *line, void *arg);

//  Routes the library's log lines to fn (called from whichever thread logs;
//  it must be thread-safe). The library is silent until a handler is set;
//  pass NULL to silence it again. Messages above max_level are not formatted.
ZQ_EXPORT void zq_set_log_handler (zq_log_fn *fn, void *arg, zq_log_level_t max_level);

//  Returns the library's version as ZQ_MAKE_VERSION (major, minor, patch).
ZQ_EXPORT int zq_version (void);

#ifdef __cplusplus
}
#endif

#endif
