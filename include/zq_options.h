/*  =========================================================================
    zq_options - named, validated settings for a queue: high-water marks,
    linger, reconnect, heartbeats, size limit, identity, timeouts.

    Every option is a row (name, type, default, bounds, help): the generic
    ones in zq_options, each pattern's own settings declared by that
    pattern; zq_options_info lists them all as one table, so a command
    line or a config file can set any of them by name from text. An options object only records what
    was set on top of the defaults; zq_queue_new copies it, so one object
    may serve many queues and may be destroyed right after.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_OPTIONS_H_INCLUDED
#define ZQ_OPTIONS_H_INCLUDED

#include "zq_library.h"

//  The longest heartbeat_ttl_ms: libzmq 4.3 reads a PING's TTL back into 16
//  bits of milliseconds, so a longer one arrives as a few milliseconds and
//  the peer drops the connection at once.
#define ZQ_HEARTBEAT_TTL_MAX_MS 65500

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zq_options_t zq_options_t;

//  The kinds of value an option takes.
//  ZQ_OPTION_INT   a signed integer within [min, max]; as text, decimal
//                  digits with an optional leading '-'.
//  ZQ_OPTION_STR   text of min to max bytes (no NUL inside), or one of the
//                  words listed in choices.
//  (2 for ZQ_OPTION_STR: the value 1 is not used.)
typedef enum { ZQ_OPTION_INT = 0, ZQ_OPTION_STR = 2 } zq_option_type_t;

//  One row of the option table. For ZQ_OPTION_STR, min and max bound the
//  length in bytes and default_str is the default (never NULL); for the
//  other types default_int is the default.
typedef struct {
    const char *name; //  e.g. "sndhwm"
    zq_option_type_t type;
    int64_t default_int;
    const char *default_str;
    int64_t min;
    int64_t max;
    const char *help; //  one line, no trailing period
    //  For a text option limited to a set of words, the words separated by
    //  '|' ("skip|drop|wait"); NULL otherwise.
    const char *choices;
} zq_option_info_t;

//  The options, their defaults and meanings (see zq_options_info for bounds):
//    sndhwm               1000     ZMQ_SNDHWM, messages queued per peer to send (0 = no limit)
//    rcvhwm               1000     ZMQ_RCVHWM, messages queued per peer received (0 = no limit;
//                                  a reliable consumer has none: its prefetch bounds it;
//                                  nor, unless it is set, has an rpc client that pings or a
//                                  reliable producer on several endpoints). A connect over
//                                  tcp or ipc of a socket that pings (heartbeat_ivl_ms, or a
//                                  role's default heartbeats) with rcvhwm above 0 fails with
//                                  EINVAL and an error logged, since libzmq 4.3 can abort the
//                                  process then (its issue #3937); not for a pipeline
//                                  producer or a reliable producer of one server
//    sndbuf_bytes         0        ZMQ_SNDBUF, kernel send buffer per tcp connection
//                                  (0 = the system's default, which tcp grows on demand)
//    rcvbuf_bytes         0        ZMQ_RCVBUF, kernel receive buffer per tcp connection
//                                  (0 = default; libzmq leaves ipc buffers alone)
//    linger_ms            1000     ZMQ_LINGER: how long libzmq keeps flushing after close
//                                  (-1 = until sent, 0 = discard at once)
//    reconnect_ms         100      ZMQ_RECONNECT_IVL (-1 = never reconnect)
//    reconnect_max_ms     0        ZMQ_RECONNECT_IVL_MAX, exponential backoff cap (0 = none)
//    heartbeat_ivl_ms     0        ZMQ_HEARTBEAT_IVL, ZMTP ping interval (0 = off)
//    heartbeat_timeout_ms 0        ZMQ_HEARTBEAT_TIMEOUT (0 = same as heartbeat_ivl_ms)
//    heartbeat_ttl_ms     0        ZMQ_HEARTBEAT_TTL asked of the peer (0 = none), at most
//                                  ZQ_HEARTBEAT_TTL_MAX_MS
//                                  heartbeat_ivl_ms unset, rpc and reliable choose: a
//                                  reliable role pings every 1 s and closes after 3 s of
//                                  silence; so does an rpc client. An rpc client that
//                                  pings asks its servers, unless heartbeat_ttl_ms is set,
//                                  a TTL of its interval and timeout together (4 s by
//                                  default); an rpc server sends no pings unless
//                                  heartbeat_ivl_ms is set, and turns TCP keepalive on
//                                  (zq_rpc.h)
//    max_message_bytes    1048576  largest message accepted (all envelope frames);
//                                  also ZMQ_MAXMSGSIZE, so a peer sending a larger frame
//                                  over tcp or ipc is disconnected by libzmq
//    batch_max_bytes      65536    pipeline producer: once messages flow, those that find
//                                  no room are gathered into one batch frame of at most
//                                  this many octets (and 1024 messages), sent as soon as
//                                  there is room (zq_queue_flush; doc/PROTOCOL.md section
//                                  19); 0 = every message alone, for consumers older than
//                                  batch frames. Consumers' max_message_bytes must be at
//                                  least this. A message that finds room goes at once,
//                                  alone. Batching producers keep sndhwm / 8 frames (at
//                                  least 16) in libzmq's queue (patterns/pipeline.c).
//                                  A batch goes to one consumer (libzmq deals whole
//                                  frames round-robin), so shares even out per frame.
//                                  Reliable producer (memory outbox): messages waiting
//                                  together for the window or a server go as one PUT
//                                  batch of at most this (and max_message_bytes);
//                                  a server that answers one with ERROR 4, 5 or 6
//                                  (older than PUT batches) gets PUTs one by one after
//                                  (doc/PROTOCOL.md 19.5). Reliable consumer: the
//                                  largest DELIVER batch frame it asks the server for
//                                  (cut to max_message_bytes; 0 = single deliveries
//                                  only): deliveries ready together come as one
//                                  frame, returned one by one (doc/PROTOCOL.md 19.7)
//    identity             ""       ZMQ_ROUTING_ID of the socket ("" = libzmq chooses)
//    send_timeout_ms      5000     timeout used when zq_queue_send gets ZQ_TIMEOUT_DEFAULT
//    recv_timeout_ms      -1       timeout used when zq_queue_recv gets ZQ_TIMEOUT_DEFAULT
//    slow_subscriber      "skip"   pubsub publisher, when a matching subscriber's queue
//                                  is full: "skip" (ZeroMQ's PUB: that subscriber misses
//                                  the message, others get it; the publisher cannot
//                                  count it, the subscriber sees a gap), "drop" (no
//                                  subscriber gets it; counted in stats.dropped, every
//                                  matching subscriber sees a gap), "wait" (the send
//                                  waits for room like a pipeline send, up to its
//                                  timeout, then fails with EAGAIN: nothing is lost)
//    max_subscription_bytes 262144 pubsub publisher: what its subscribers' subscriptions may
//                                  cost, in bytes of prefix (each prefix once, plus 8 for
//                                  each connection's subscription to it; over inproc
//                                  aside), and one connection's (its prefixes in full, plus
//                                  8 each) an eighth of it: about 124 of 256 bytes at the
//                                  default (0: only empty prefixes; zq_pubsub.h)
//    request_timeout_ms   5000     rpc: deadline of one request attempt
//    retries              3        rpc: attempts after the first before a request fails
//    max_in_flight        1000     rpc client: requests awaiting their result at once
//                                  (zq_queue_send fails with EAGAIN beyond); rpc server:
//                                  routes kept for requests not yet answered (the oldest
//                                  is forgotten beyond); reliable producer: unconfirmed
//                                  messages held in a memory outbox (at most half of
//                                  them sent and awaiting a confirm at once; the rest
//                                  wait to go together as PUT batches, fewer than 64
//                                  held back while more than 64 await a confirm and
//                                  confirms keep coming); unset, a
//                                  producer keeps ZQ_PRODUCER_WINDOW_DEFAULT (8192)
//    The "reliable" pattern (zq_reliable.h):
//    spool_dir            ""       server: directory of the queue spools, one
//                                  subdirectory per queue ("" = in memory)
//    outbox_dir           ""       producer: directory of a durable outbox ("" = memory)
//    fsync                "always" spools (server queues, producer outbox): "always"
//                                  (confirm only after fdatasync), "interval", "none"
//                                  (doc/SPOOL.md)
//    fsync_interval_ms    100      sync period of fsync "interval"
//    quota_bytes          0        bytes one spool may take (0 = none on disk; 256 MiB
//                                  in memory); past it PUTs are refused with ZQ_EFULL.
//                                  A producer's memory outbox: wire bytes of the
//                                  messages it holds (0 = 256 MiB; one message alone
//                                  always fits); past it zq_queue_post waits (EAGAIN)
//    segment_bytes        64 MiB   spool segment size (a quota needs >= 2 segments + 1 MiB)
//    visibility_timeout_ms 30000   server: time to ack a delivery before redelivery
//    max_attempts         10       server: deliveries before dead-lettering (0 = no limit)
//    prefetch             256      consumer: unacked deliveries held at once
//    ack_flush_us         1000     consumer: longest an ack or nack (of one delay) waits to
//                                  go with others in one command; 0 = each at once, 0 to
//                                  1000000 (include/zq_reliable.h, zq_queue_ack)
//    max_deliveries       0        consumer: deliveries taken in all (0 = no limit); the
//                                  window shrinks as they are settled (an ack or nack
//                                  that fails does not count), so the server never
//                                  sends more (zq get -n)
//    dedupe_window_ms     60000    server: PUT ids remembered this long, per queue and
//                                  producer identity, with a body hash (0 = off)
//    dedupe_max           262144   server: most ids remembered (80 bytes each with the
//                                  hash, in a ring that grows fourfold with what the
//                                  window holds, up to dedupe_max rounded up to a
//                                  power of two; at least 1024; with no memory to
//                                  grow it, the oldest ids go early, with a warning).
//                                  Ids forgotten before dedupe_window_ms, at this
//                                  limit or for want of memory, count in
//                                  zq_queue_stats_t forgotten; at this limit, a
//                                  warning (one per 10 minutes) says how long
//                                  ids are kept
//    nack_backoff_ms      100      server: ZQ_NACK_BACKOFF delay, doubled per attempt
//    nack_backoff_max_ms  30000    server: cap of that backoff
//    confirm_timeout_ms   5000     producer: resend a message unconfirmed this long
//    ping_ivl_ms          1000     protocol ping interval (consumer sessions, restarts); a
//                                  server counts a consumer silent for 5 intervals gone
//    max_queues           1024     server: most named queues held, dead-letter queues
//                                  included; with max_attempts set a new queue needs a
//                                  place for itself and one kept for its NAME.dead
//    max_consumer_queues  64       server: most queues one remote consumer (connection)
//                                  consumes at once; a CONSUME past it gets ERROR 9
//    CURVE (encryption and authentication; applied before any bind or
//    connect, for every pattern and role; see "CURVE" below):
//    curve_cert           ""       certificate file with this queue's key pair,
//                                  as zmakecert writes it (PATH_secret is read
//                                  first, then PATH); it must hold the secret key
//    curve_server_key     ""       client: the server's public key, Z85 (40 chars)
//    curve_server_cert    ""       client: the server's public certificate file
//                                  (instead of curve_server_key)
//    curve_clients        ""       server: directory of the public certificates of
//                                  the clients allowed in, or "*" for any client
//
//  CURVE. A queue with curve_server_key or curve_server_cert is a CURVE
//  client: it talks only to a server holding that key, with the key pair
//  of curve_cert (without curve_cert, a fresh key pair made at open,
//  which only servers allowing any client accept). A queue with only
//  curve_cert is a CURVE server: it accepts only CURVE clients that know
//  its public key. Client and server are independent of bind and connect
//  (a binding consumer may be the client). zq_queue_new fails with
//  EINVAL, logging the reason, for a key that is not Z85, a certificate
//  file that cannot be read, has no secret key or whose keys do not
//  match, curve_clients on a queue that is not a CURVE server or naming
//  no directory, or both curve_server_key and curve_server_cert; with
//  ENOTSUP if libzmq lacks CURVE.
//  Allowed clients. With curve_clients, the queue starts a CZMQ zauth
//  actor (a thread; the certificates are read again when the directory
//  changes) and destroys it at close. ZeroMQ has one authentication
//  (ZAP) handler per context, and every queue shares CZMQ's: so that
//  handler decides for EVERY CURVE server of the process while it runs,
//  and only one queue (or zq_device with curve clients, or the host's
//  own zauth) may run it; zq_queue_new fails with EADDRINUSE when one
//  runs already. A CURVE server without curve_clients accepts any client
//  that knows its public key (unless such a handler runs).

//  Creates an options object holding every default. Returns NULL on ENOMEM.
ZQ_EXPORT zq_options_t *zq_options_new (void);

//  Destroys the object and sets *self_p to NULL; safe on NULL and twice.
ZQ_EXPORT void zq_options_destroy (zq_options_t **self_p);

//  Returns a copy of self, or NULL on ENOMEM.
ZQ_EXPORT zq_options_t *zq_options_dup (const zq_options_t *self);

//  Sets option name from text, as a command line or config file gives it.
//  Returns 0, or -1 with errno EINVAL (unknown name, text that does not
//  parse as the option's type, or a value outside its bounds) or ENOMEM;
//  on error the option keeps its value.
ZQ_EXPORT int zq_options_set (zq_options_t *self, const char *name, const char *value);

//  Sets an integer or boolean option. Returns 0, or -1 with errno EINVAL
//  (unknown name, a text option, or a value outside the bounds).
ZQ_EXPORT int zq_options_set_int (zq_options_t *self, const char *name, int64_t value);

//  Stores the value of an integer or boolean option in *value_p. Returns 0,
//  or -1 with errno EINVAL (unknown name or a text option).
ZQ_EXPORT int zq_options_get_int (const zq_options_t *self, const char *name, int64_t *value_p);

//  Returns the value of a text option, valid until it is next set or the
//  object is destroyed; NULL with errno EINVAL for an unknown name or an
//  option that is not text.
ZQ_EXPORT const char *zq_options_get_str (const zq_options_t *self, const char *name);

//  Returns true if the option was set (even to its default) since creation.
ZQ_EXPORT bool zq_options_is_set (const zq_options_t *self, const char *name);

//  Returns row index of the option table (0-based, stable order), or NULL
//  past the end: for (i = 0; (info = zq_options_info (i)); i++) lists all.
ZQ_EXPORT const zq_option_info_t *zq_options_info (size_t index);

//  Returns the table row of option name, or NULL with errno EINVAL.
ZQ_EXPORT const zq_option_info_t *zq_options_lookup (const char *name);

#ifdef __cplusplus
}
#endif

#endif
