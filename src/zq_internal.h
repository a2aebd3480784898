/*  =========================================================================
    zq_internal - declarations shared between zq's own source files.
    Never installed; nothing here is part of the API.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_INTERNAL_H_INCLUDED
#define ZQ_INTERNAL_H_INCLUDED

#include "config.h"
#include "zq.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Invariants only: a failed ZQ_ASSERT is a bug in zq, never a reaction to
//  input from the network, a file or the caller.
#define ZQ_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            zqi_panic (__FILE__, __LINE__, #cond);                                                 \
    } while (0)
void zqi_panic (const char *file, int line, const char *what) __attribute__ ((noreturn));

//  Sets errno to errnum and returns -1 (for "return zqi_fail (ZQ_EPROTO);").
static inline int
zqi_fail (int errnum)
{
    errno = errnum;
    return -1;
}

//  ---- zq_spool: what the library's own callers use beside the API ------

//  As zq_spool_append of one record whose payload is the count parts
//  (parts[i] of sizes[i] bytes) joined in order: the parts are copied once,
//  into the spool's batch, and need not outlive the call. Returns 0 (with
//  *seq_p, if seq_p, the record's seq), or -1 with errno as
//  zq_spool_append.
int zqi_spool_append_parts (zq_spool_t *self, const void *const *parts, const size_t *sizes,
                            size_t count, uint64_t *seq_p);

//  ---- The copy counters (tests only) -----------------------------------
//  Built with ./configure --enable-copy-counters (ZQ_COUNT_COPIES): each
//  envelope parse and each copy of a message's bytes on the durable path
//  adds one to its counter, so a test can count them per message. Off by
//  default: then ZQI_COUNT is nothing and the library has no counters.
typedef enum {
    ZQI_COUNT_PRODUCER_COPIES, //  a message's bytes copied by a producer
    ZQI_COUNT_SERVER_PARSES,   //  envelope parses by a reliable server
    ZQI_COUNT_SERVER_COPIES,   //  a message's bytes copied by a server (not the spool)
    ZQI_COUNT_SPOOL_COPIES,    //  a record's payload copied into the spool's batch
    ZQI_COUNT_SPOOL_READS,     //  a message record read back from a segment
    ZQI_COUNT_MSG_DECODES,     //  messages decoded from received frames
    ZQI_COUNT_KINDS
} zqi_count_t;

#ifdef ZQ_COUNT_COPIES
void zqi_count (zqi_count_t kind);
//  Copies the counters into counts (ZQI_COUNT_KINDS of them) and sets
//  them to zero. Exported (in no installed header) for the test programs.
ZQ_EXPORT void zqi_counts_take (uint64_t *counts);
#define ZQI_COUNT(kind) zqi_count (kind)
#else
#define ZQI_COUNT(kind) ((void)0)
#endif

#include "zq_wire.h"
#include "zq_idtable.h"

//  zq_queue_name_check for a name of size bytes, not NUL-terminated (a
//  NUL byte in it makes it invalid). src/zq_queue.c is its home.
int zqi_queue_name_check (const char *name, size_t size);
//  True when zqi_queue_name_check would return 1 (a dead-letter queue's
//  name); a name without the suffix is not scanned (a reliable server
//  asks this of every PUT's queue).
bool zqi_queue_name_is_dead (const char *name, size_t size);

//  Makes sure CZMQ is initialised (zsys_init) without changing the host's
//  SIGINT and SIGTERM handlers (zq_library.c). The first zsys_init of a
//  process installs CZMQ's own; if this call made them change,
//  zsys_handler_set (NULL) has CZMQ restore the ones it saved (the
//  host's) and never install them later. If CZMQ was initialised already,
//  nothing changes. zq calls it before creating any CZMQ socket or actor;
//  a process-wide mutex serialises the first calls from any thread (and
//  is not held while the caller goes on, so an actor's thread may call it
//  while the thread that starts the actor waits for it).
void zqi_czmq_init (void);

//  The settings of the index-th pattern zq is built with (src/
//  zq_pattern_registry.c), ended by a row whose name is NULL, or NULL past
//  the last pattern. zq_options lists them with its generic options.
const zq_option_info_t *zqi_pattern_options (size_t index);

//  ---- Sockets (src/zq_socket.c): the one home of socket creation, the
//  common socket options, CURVE and endpoint lists, for zq_queue and for
//  every socket the device opens.

//  Creates a CZMQ socket of type without changing the host's signal
//  handling (zq_queue.h), with the common options of options (NULL: the
//  defaults; high-water marks, buffers, linger, reconnect, heartbeats,
//  max_message_bytes, identity) and its CURVE settings (zqi_curve_apply:
//  with curve_clients it starts *auth_p). Returns the socket, or NULL
//  with errno (EINVAL for bad CURVE settings, ENOTSUP, EADDRINUSE, ...).
zsock_t *zqi_socket_new (int type, const zq_options_t *options, zactor_t **auth_p);

//  Called for each endpoint, its '@' or '>' removed, before it is bound
//  (bind true) or connected; returns 0 to go on or -1 with errno to stop.
typedef int (zqi_attaching_fn) (void *state, const char *endpoint, bool bind);

//  Binds or connects each item of endpoints, CZMQ-style: a comma-separated
//  list, each item prefixed '@' (bind) or '>' (connect), or neither
//  (binds_by_default says). attaching (if not NULL) sees each item first.
//  Appends the resolved endpoints it bound to *resolved_p (a string it
//  reallocates; "" if it bound none). Before attaching anything, it
//  refuses the list if a connect would break the rule that keeps libzmq
//  4.3 from aborting the process (src/zq_socket.c, s_connect_check: no
//  heartbeats with a receive high-water mark on a network connect), and
//  logs why. Returns 0, or -1 with errno: EINVAL (NULL or empty list, an
//  empty item, such a connect), attaching's, or the bind's or connect's;
//  what was attached before the failure stays attached.
int zqi_socket_attach (zsock_t *sock, const char *endpoints, bool binds_by_default,
                       zqi_attaching_fn *attaching, void *state, char **resolved_p);

//  Logs one line through the handler set with zq_set_log_handler, if any.
//  Exported (as the clock is) for the tests that build the JetStream store
//  from its sources and link the shared library for the rest.
ZQ_EXPORT void zqi_log (zq_log_level_t level, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

//  zqi_log with a va_list, the line starting with prefix and, when skipped
//  is not 0, ending with " (<skipped> more like it not shown)" (for lines
//  that zqi_log_limit_due holds back). Formats nothing when no handler
//  wants the level. A line is cut at 511 bytes, after zqi_text_escape made
//  each control character \xHH: every line of the library is one line,
//  whatever text a peer put in it.
void zqi_logv (zq_log_level_t level, const char *prefix, uint64_t skipped, const char *format,
               va_list args) __attribute__ ((format (printf, 4, 0)));

//  ---- Text a peer chose, shown to a person (src/zq_text.c) ----------------

//  The length (1 to 4) of the UTF-8 character at data (size bytes), its
//  code point in *code_p (if not NULL); 0 if data does not start with one
//  in its shortest form, below U+10FFFF and not a surrogate (or size is 0).
size_t zqi_utf8_char (const uint8_t *data, size_t size, uint32_t *code_p);
//  True if size bytes are UTF-8 throughout, as zqi_utf8_char reads it.
bool zqi_utf8_valid (const void *data, size_t size);

//  True if code is a control character: below U+0020, U+007F (DEL), or
//  U+0080 to U+009F (C1 controls, which some terminals obey, CSI among
//  them). What zq writes for a person (zqi_text_escape) or as JSON
//  (zq_msgpack_to_json) never carries one as it is.
bool zqi_text_control (uint32_t code);

//  The one way zq shows a person text a peer may have chosen (a log line,
//  the zq program's tables and error lines): copies text into line
//  (size bytes with its NUL, cut at a character to fit), each control
//  character (zqi_text_control) and each byte that is not part of a
//  UTF-8 character written as \xHH, one per byte: the result is
//  one line of printable UTF-8, with no newline, no terminal escape and
//  nothing that can hide the text after it. Any other character, a
//  backslash included, is kept. 4 * strlen (text) + 1 bytes always fit.
ZQ_EXPORT void zqi_text_escape (char *line, size_t size, const char *text);
//  zqi_text_escape into a new string of the size that always fits (the
//  caller frees it), or NULL on ENOMEM.
ZQ_EXPORT char *zqi_text_escaped (const char *text);

//  The rate limit of one kind of log line: at most one line per interval,
//  the events left out counted for the next line.
typedef struct {
    int64_t logged_ms; //  monotonic ms of the last line; 0: none yet
    uint64_t skipped;  //  events since that line that logged nothing
} zqi_log_limit_t;

//  Counts one event at now (monotonic ms). Returns true if its line is due
//  (none in the last interval_ms), with *skipped_p the events left out
//  since the previous line; false if the event is only counted.
bool zqi_log_limit_due (zqi_log_limit_t *limit, int64_t now, int64_t interval_ms,
                        uint64_t *skipped_p);

//  The free-space watermark of a spool's filesystem (src/zq_disk.c).
//  statvfs is asked at most once per ZQI_DISK_CHECK_MS, or sooner once
//  ZQI_DISK_CHECK_BYTES were written since it was last asked.
#define ZQI_DISK_CHECK_MS    1000
#define ZQI_DISK_CHECK_BYTES (16 * 1024 * 1024)
typedef struct {
    const char *path;        //  a directory on the filesystem (not owned)
    uint64_t min_free_bytes; //  0: never low
    uint64_t free_bytes;     //  at the last look (UINT64_MAX: none yet)
    uint64_t written;        //  bytes written since the last look
    int64_t next_check_ms;   //  monotonic ms of the next look
    bool checked;
    bool low; //  under min_free_bytes at the last look
} zqi_disk_watch_t;

//  Starts a watch of path's filesystem (path NULL or "": never low).
void zqi_disk_watch_init (zqi_disk_watch_t *watch, const char *path, uint64_t min_free_bytes);
//  Counts bytes about to be written at now_ms (monotonic) and returns true
//  if the filesystem is under the watermark: as last seen, or as seen now
//  when a look is due. A change either way is logged once (a warning when
//  it goes under, a notice when space returns).
bool zqi_disk_low (zqi_disk_watch_t *watch, int64_t now_ms, size_t bytes);

//  Checks that data holds well-formed msgpack: exactly one object if
//  used_p is NULL, or the first object (its length stored in *used_p)
//  otherwise. Every declared length is checked against the bytes present
//  and nesting is limited to max_depth; nothing is allocated. Returns 0, or
//  -1 with errno ZQ_EPROTO (truncated, trailing bytes, reserved byte 0xc1)
//  or ZQ_EDEPTH. max_depth is capped at ZQI_MSGPACK_DEPTH_LIMIT.
int zqi_msgpack_check (const void *data, size_t size, size_t *used_p, int max_depth);

//  The deepest nesting zqi_msgpack_check can track (its stack is fixed).
#define ZQI_MSGPACK_DEPTH_LIMIT 64

//  What the envelope decoder found; everything points into the frames.
typedef struct {
    const uint8_t *id;
    const char *subject;
    uint32_t subject_size;
    uint64_t created_ms;
    uint64_t attempt;
    size_t attempt_offset; //  where header element 4 starts in the first frame
    size_t attempt_size;   //  and its encoded size
    uint32_t header_count;
    struct {
        const char *name;
        const char *value;
        uint32_t name_size;
        uint32_t value_size;
    } headers[ZQ_MSG_MAX_HEADERS];
    size_t header_size; //  bytes of the first frame the header takes
    const uint8_t *body;
    size_t body_size;
} zqi_envelope_t;

//  Parses and checks one envelope by the rules of doc/PROTOCOL.md sections
//  6 to 9: first (the header, and in one-frame form the body after it) and
//  second (the body in two-frame form, else NULL). check_body false only
//  requires a non-empty body (for records validated when they were
//  stored). Allocates nothing. Returns 0, or -1 with errno ZQ_EPROTO,
//  ZQ_EVERSION or ZQ_EDEPTH.
int zqi_envelope_parse (const uint8_t *first, size_t first_size, const uint8_t *second,
                        size_t second_size, bool check_body, zqi_envelope_t *envelope);
//  Finds the id of an envelope whose first frame may be broken otherwise:
//  an array of 2 or more elements, version 1, a bin of 16 octets (the
//  start every zq writer writes is read without the general reader).
//  Returns 0 (*id_p points into first), or -1 with errno ZQ_EPROTO.
int zqi_envelope_id (const uint8_t *first, size_t first_size, const uint8_t **id_p);

//  Replaces the body of self with data (size bytes, from malloc; the
//  message releases it with free, or hands it to libzmq when sent), taking
//  ownership without copying or checking: the caller built it and vouches
//  for it being one msgpack object within ZQ_MSG_MAX_DEPTH.
void zqi_msg_take_body (zq_msg_t *self, void *data, size_t size);

//  zq_msg_send and zq_msg_recv for a libzmq socket handle (what
//  zsock_resolve returns), without checking whether it is a zsock_t or
//  zactor_t: for patterns, which hold the handle.
int zqi_msg_send_to (zq_msg_t **self_p, void *handle, int flags);
zq_msg_t *zqi_msg_recv_from (void *handle, int flags, size_t max_size);
//  zqi_msg_recv_from for a first frame the caller received itself: takes
//  its content (*first is left empty; the caller still closes it), reads
//  the message's further frames from handle and decodes the whole.
zq_msg_t *zqi_msg_from_frame (zmq_msg_t *first, void *handle, int flags, size_t max_size);
//  The message whose one-frame envelope fills frame (received whole, the
//  last of its message) from offset to the end, offset at most its size:
//  takes its content as zqi_msg_from_frame does. max_size (0: the
//  default) bounds the envelope, the octets from offset.
zq_msg_t *zqi_msg_from_frame_at (zmq_msg_t *frame, size_t offset, size_t max_size);

//  Size of msg's one-frame wire form (header immediately followed by the body).
size_t zqi_msg_wire_size (const zq_msg_t *self);
//  Writes that form into out (zqi_msg_wire_size bytes); returns the bytes written.
size_t zqi_msg_wire_write (const zq_msg_t *self, uint8_t *out);

//  CURVE (src/zq_curve.c). Applies options' curve_* settings to sock,
//  before it binds or connects; with curve_clients, starts a zauth actor
//  in *auth_p (else NULL) that the caller destroys after the socket.
//  Returns 0 (also when no CURVE option is set), or -1 with errno EINVAL
//  (bad key, certificate or directory; logged), ENOTSUP (libzmq without
//  CURVE), EADDRINUSE (a ZAP handler runs already) or ENOMEM.
int zqi_curve_apply (zsock_t *sock, const zq_options_t *options, zactor_t **auth_p);
//  Loads the zcert certificate at path (PATH_secret first, then PATH),
//  checking its keys are Z85 and, if need_secret, that it holds a secret
//  key matching the public one. Returns a new zcert, or NULL with errno
//  EINVAL (ENOMEM) and one line in error.
zcert_t *zqi_curve_cert_load (const char *path, bool need_secret, char *error, size_t error_size);
//  Checks that the file zqi_curve_cert_load would read for path
//  (PATH_secret, else PATH) gives group and others no access at all.
//  Returns 0, or -1 with errno EACCES and one line naming the file and
//  its mode in error (or the stat failure's errno).
int zqi_curve_secret_private (const char *path, char *error, size_t error_size);
//  Starts CZMQ's zauth in *auth_p, allowing the CURVE clients whose public
//  certificates are in directory location ("*": any client). Returns 0,
//  or -1 with errno EINVAL (not a directory), EADDRINUSE (a ZAP handler
//  runs in the process already) or ENOMEM, and one line in error.
int zqi_curve_auth_start (const char *location, zactor_t **auth_p, char *error, size_t error_size);

//  ---- fsync latency (src/zq_spool_store.c) ------------------------------
//  Durations of the group-commit fdatasync calls of every on-disk spool in
//  the process (the disk's latency, whichever queue asked), for the
//  device's metrics. Bucket i counts calls that took at most
//  zqi_fsync_bounds_s[i] seconds and more than the bound before it; the
//  last, ZQI_FSYNC_BUCKETS, counts the slower ones. Thread-safe.
#define ZQI_FSYNC_BUCKETS 14
extern const double zqi_fsync_bounds_s[ZQI_FSYNC_BUCKETS];
//  Copies the counts (not cumulative) and the sum of all durations.
void zqi_spool_fsync_histogram (uint64_t counts[ZQI_FSYNC_BUCKETS + 1], uint64_t *sum_ns_p);
//  Adds one call that took duration_ns.
void zqi_spool_fsync_observe (uint64_t duration_ns);

#endif
