/*  =========================================================================
    reliable - what the files of the "reliable" pattern share. Internal,
    never installed.

        patterns/reliable.c           the pattern table, open/close, dispatch
        patterns/reliable_wire.c      command frames, envelope header parsing
        patterns/reliable_table.c     the entry table (on zq_idtable), the
                                      dedupe window
        patterns/reliable_server*.c   ZQ_SERVER: the holder of named queues
                                      (patterns/reliable_server.h)
        patterns/reliable_producer.c  ZQ_PRODUCER: outbox, confirms, resends
        patterns/reliable_consumer.c  ZQ_CONSUMER: credit, ack/nack/touch

    The wire protocol is specified in doc/PROTOCOL.md, "reliable".

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef PATTERNS_RELIABLE_H_INCLUDED
#define PATTERNS_RELIABLE_H_INCLUDED

#include "zq_pattern.h"
#include <pthread.h>

#define ZQI_R_NONE ZQI_ID_NONE

//  How zq_queue_ack, zq_queue_nack and zq_queue_touch settle a message
//  (the kind argument of zqi_r_server_ack and zqi_r_consumer_ack).
#define ZQI_SETTLE_ACK   0
#define ZQI_SETTLE_NACK  1
#define ZQI_SETTLE_TOUCH 2

//  ---- Wire (reliable_wire.c) ------------------------------------------

//  Version of the reliable command frame (element 0).
#define ZQI_R_VERSION 1

//  Command kinds (element 1 of the command frame).
typedef enum {
    ZQI_R_PUT = 1,     //  producer -> server: [1, 1] + envelope
    ZQI_R_CONFIRM = 2, //  server -> producer: [1, 2, ids]
    ZQI_R_REFUSE = 3,  //  server -> producer: [1, 3, ids, code, reason]
    ZQI_R_CONSUME = 4, //  consumer -> server: [1, 4, queue, prefetch]
    ZQI_R_CANCEL = 5,  //  consumer -> server: [1, 5, queue]
    ZQI_R_DELIVER = 6, //  server -> consumer: [1, 6, visibility_ms] + envelope
    ZQI_R_ACK = 7,     //  consumer -> server: [1, 7, ids]
    ZQI_R_NACK = 8,    //  consumer -> server: [1, 8, ids, delay_ms]
    ZQI_R_TOUCH = 9,   //  consumer -> server: [1, 9, ids, extend_ms]
    ZQI_R_PING = 10,   //  any -> any: [1, 10]
    ZQI_R_PONG = 11,   //  server -> client: [1, 11, instance, flags]
    ZQI_R_ERROR = 12,  //  server -> client: [1, 12, code, reason]
    ZQI_R_LEAVE = 13   //  consumer -> server: [1, 13] or [1, 13, unseen ids]
} zqi_r_kind_t;

//  Codes carried by REFUSE and ERROR.
typedef enum {
    ZQI_R_CODE_FULL = 1,      //  storage full: retry later
    ZQI_R_CODE_INVALID = 2,   //  never storable (bad name, too large): give up
    ZQI_R_CODE_FAILED = 3,    //  storage failed: retry later
    ZQI_R_CODE_PROTOCOL = 4,  //  malformed command or envelope
    ZQI_R_CODE_VERSION = 5,   //  unknown command frame version
    ZQI_R_CODE_UNKNOWN = 6,   //  unknown command kind
    ZQI_R_CODE_NOT_HELD = 7,  //  ACK, NACK, TOUCH of ids the sender does not hold
    ZQI_R_CODE_CONFLICT = 8,  //  id stored with other content: never under this id
    ZQI_R_CODE_LIMIT = 9,     //  a configured count limit (max_queues, max_consumer_queues)
    ZQI_R_CODE_BUSY = 10,     //  a new queue past the fd budget: retry later
    ZQI_R_CODE_DENIED = 11,   //  the sender's identity lacks the right (PUT, CONSUME)
    ZQI_R_CODE_NO_SPACE = 12, //  the spool's filesystem is under min_free_bytes: retry later
    ZQI_R_CODE_DELETED = 13,  //  the queue consumed was deleted (DELETE, zq_queue_delete)
    ZQI_R_CODE_COUNT          //  one past the highest code
} zqi_r_code_t;

//  PONG flags.
#define ZQI_R_PONG_NO_SESSION 1 //  the server holds no consumer session for you

//  Size of the server instance id in PONG.
#define ZQI_R_INSTANCE_SIZE 8

//  A parsed command frame; pointers go into the frame.
typedef struct {
    uint64_t kind;
    const uint8_t *ids; //  ids, ZQ_MSG_ID_SIZE bytes each (LEAVE: maybe none)
    size_t id_count;
    const char *text; //  queue name (CONSUME, CANCEL) or reason (REFUSE, ERROR)
    uint32_t text_size;
    uint64_t code;           //  REFUSE, ERROR
    int64_t number;          //  prefetch, delay_ms, extend_ms, visibility_ms or flags
    const uint8_t *instance; //  PONG
    uint64_t batch_bytes;    //  CONSUME element 5: largest DELIVER batch taken (0: none)
} zqi_r_command_t;

//  Parses a command frame. Returns 0, or -1 with errno ZQ_EPROTO,
//  ZQ_EVERSION (element 0 other than 1) or ZQ_EDEPTH. Unknown kinds parse
//  (kind set, nothing else read) so the caller can answer them.
int zqi_r_command_parse (const uint8_t *data, size_t size, zqi_r_command_t *command);

//  Envelopes are parsed and checked by zq_msg's decoder
//  (zqi_envelope_parse, src/zq_internal.h), one layout for every reader.
//  The reliable headers it leaves as text: reads "zq-ttl-ms" and
//  "zq-not-before-ms" of envelope into *ttl_ms and *not_before_ms, each -1
//  when absent or not a decimal of 1 to 18 digits.
void zqi_r_envelope_times (const zqi_envelope_t *envelope, int64_t *ttl_ms, int64_t *not_before_ms);

//  a + b for b >= 0, INT64_MAX where the sum would overflow (client numbers
//  meeting a clock).
static inline int64_t
zqi_r_add_ms (int64_t a, int64_t b)
{
    return b > 0 && a > INT64_MAX - b ? INT64_MAX : a + b;
}

//  Starts a reliable command frame in buf (zq_wire: zqi_wire_command_put
//  with this protocol's version). Returns 0, or -1 with errno ENOMEM.
static inline int
zqi_r_put_command (zqi_buf_t *buf, uint32_t elements, zqi_r_kind_t kind)
{
    return zqi_wire_command_put (buf, elements, ZQI_R_VERSION, (uint64_t)kind);
}

//  Room for a command frame of no arguments, [1, kind].
#define ZQI_R_BARE_SIZE 3

//  Writes the command frame [1, kind] (a PUT's first frame, a PING) at
//  out, which has ZQI_R_BARE_SIZE bytes; returns its size.
static inline size_t
zqi_r_bare_command (uint8_t *out, zqi_r_kind_t kind)
{
    return (size_t)(zqi_wire_command_write (out, 2, ZQI_R_VERSION, (uint64_t)kind) - out);
}

//  Initialises frame and receives the next frame into it without waiting.
//  Returns 0 (the caller closes frame), or -1 with errno (EAGAIN: none
//  waiting); frame is then empty, and closing it is optional.
int zqi_r_recv_frame (void *handle, zmq_msg_t *frame);

//  Returns the errno a REFUSE or ERROR code stands for.
int zqi_r_code_errno (uint64_t code);

//  ---- Tables (reliable_table.c) -----------------------------------------

//  One tracked message. The server uses every field; the producer id,
//  seq, due, owner, attempt, sent and state.
typedef struct {
    uint8_t id[ZQ_MSG_ID_SIZE];
    uint64_t seq;        //  the record's seq in its spool (queue or outbox)
    int64_t due;         //  monotonic ms of its timer (zqi_r_now), if scheduled
    uint32_t heap_index; //  ZQI_R_NONE when not scheduled
    uint32_t queue;      //  server: queue index
    uint32_t owner;      //  server: consumer index, ZQI_R_NONE if none
    uint32_t attempt;    //  server: attempt of the current or next delivery
    uint32_t holder;     //  server: session of the consumer it was delivered to last (0: none)
    uint32_t bytes;      //  server: size of the last delivery to a remote consumer (0: local)
    uint32_t sent;       //  server: that delivery's number at its consumer (s_consumer_t.sent);
                         //  producer: its number in the order sent (memory outbox)
    uint32_t prev, next; //  owner's list; the free list
    uint32_t key_hash;   //  zq_idtable's: the id's hash
    uint8_t state;
    bool in_use;
} zqi_r_entry_t;

//  The entries in zq_idtable's slab (indexes stay valid; pointers do not
//  across adds), found by id, with timers (zq_idtable.h: a lane and a
//  heap). Several entries may have the same id (the server's queues are
//  separate id spaces). entries, capacity and count read the table's own first
//  members, typed.
typedef union {
    zqi_idtable_t core;
    struct {
        zqi_r_entry_t *entries;
        uint32_t capacity;
        uint32_t count;
    };
} zqi_r_table_t;

//  Makes the table empty (zqi_idtable_init with zqi_r_entry_t's layout).
void zqi_r_table_init (zqi_r_table_t *table);
void zqi_r_table_free (zqi_r_table_t *table);
//  Adds an entry for id, zeroed but for id, in_use, owner, prev, next and
//  heap_index (ZQI_R_NONE). Returns its index, or ZQI_R_NONE with errno
//  ENOMEM.
uint32_t zqi_r_table_add (zqi_r_table_t *table, const uint8_t *id);
//  The same, unless an entry has id already: then ZQI_R_NONE with errno
//  EEXIST (else ENOMEM). One hash of the id for both.
uint32_t zqi_r_table_add_new (zqi_r_table_t *table, const uint8_t *id);
//  The rest is zq_idtable's (src/zq_idtable.h).
static inline uint32_t
zqi_r_table_find (const zqi_r_table_t *table, const uint8_t *id)
{
    return zqi_idtable_find (&table->core, id);
}
static inline uint32_t
zqi_r_table_find_from (const zqi_r_table_t *table, const uint8_t *id, uint32_t *cursor)
{
    return zqi_idtable_find_from (&table->core, id, cursor);
}
static inline void
zqi_r_table_remove (zqi_r_table_t *table, uint32_t index)
{
    zqi_idtable_remove (&table->core, index);
}
static inline void
zqi_r_table_schedule (zqi_r_table_t *table, uint32_t index, int64_t due)
{
    zqi_idtable_schedule (&table->core, index, due);
}
static inline void
zqi_r_table_unschedule (zqi_r_table_t *table, uint32_t index)
{
    zqi_idtable_unschedule (&table->core, index);
}
static inline uint32_t
zqi_r_table_first (const zqi_r_table_t *table)
{
    return zqi_idtable_first (&table->core);
}

//  A stored message remembered for the dedupe window. Its key is the
//  fields before content: a PUT is a duplicate only with the same id, to
//  the same queue, from the same authenticated producer (or, both, none).
typedef struct {
    uint8_t id[ZQ_MSG_ID_SIZE];
    uint64_t producer; //  keyed hash of the producer's ZAP User-Id; 0: none
    uint32_t queue;
    uint32_t unused;   //  0 (the key is hashed and compared as bytes)
    uint64_t content;  //  keyed hash of the body
    int64_t stored_ms; //  monotonic ms (zqi_r_now); INT64_MIN: forgotten
    uint64_t seq;
    uint32_t key_hash; //  hash of id and producer in the dedupe hash (never hashed twice)
} zqi_r_seen_t;

//  The messages stored in the last window_ms, at most max of them (the
//  oldest are forgotten first), in a ring with a hash.
typedef struct {
    zqi_r_seen_t *ring;
    uint32_t capacity; //  power of two
    uint32_t head;
    uint32_t count;
    uint32_t max;
    int64_t window_ms;
    zqi_idhash_t hash;
    //  Ids forgotten while still within window_ms (the oldest, to stay
    //  within max or for want of memory to grow) or never remembered (no
    //  memory at all): a resend of each is stored again.
    uint64_t forgotten;
    //  When the last id forgotten early was stored (stored_ms).
    int64_t forgotten_stored_ms;
} zqi_r_dedupe_t;

//  An empty window of window_ms (0 or less: off) holding at most max ids
//  (0: 1; more than 2^30: 2^30).
void zqi_r_dedupe_init (zqi_r_dedupe_t *dedupe, int64_t window_ms, uint32_t max);
void zqi_r_dedupe_free (zqi_r_dedupe_t *dedupe);
//  The keyed hash of a producer's ZAP User-Id that its keys carry (0 for
//  NULL or "": none).
uint64_t zqi_r_dedupe_producer (const zqi_r_dedupe_t *dedupe, const char *producer);
//  Starts loading the slot where a lookup of a key with key_hash
//  (zqi_r_dedupe_key_hash) begins and, when the dedupe is full,
//  the slot of the record that the add after ahead others drops, so that
//  the lookup and add of a PUT handled ahead PUTs later do not wait for
//  memory. A hint: it changes nothing.
void zqi_r_dedupe_prefetch (const zqi_r_dedupe_t *dedupe, uint32_t key_hash, uint32_t ahead);
//  The hash of a key for id from producer (as zqi_r_dedupe_producer gives
//  it), whatever its queue: a key's key_hash.
uint32_t zqi_r_dedupe_key_hash (const zqi_r_dedupe_t *dedupe, const uint8_t *id, uint64_t producer);
//  Fills key (the fields before content, and key_hash; the rest zero) for
//  id put to queue by producer (its ZAP User-Id, or NULL or "" for none).
void zqi_r_dedupe_key (const zqi_r_dedupe_t *dedupe, zqi_r_seen_t *key, const uint8_t *id,
                       uint32_t queue, const char *producer);
//  The same with the producer's hash and the key's hash already known
//  (zqi_r_dedupe_producer, zqi_r_dedupe_key_hash).
void zqi_r_dedupe_key_hashed (zqi_r_seen_t *key, const uint8_t *id, uint32_t queue,
                              uint64_t producer, uint32_t key_hash);
//  Returns the keyed hash of a body, as the records keep it.
uint64_t zqi_r_dedupe_content (const zqi_r_dedupe_t *dedupe, const void *body, size_t size);
//  Returns the record with key if it was stored within the window, or NULL.
zqi_r_seen_t *zqi_r_dedupe_find (zqi_r_dedupe_t *dedupe, const zqi_r_seen_t *key, int64_t now);
//  Remembers key (not present) as stored now with content at seq. Returns
//  0; or 1 when the ring was full and could not grow (ENOMEM): the
//  oldest record was forgotten to make room, before max or the window
//  would drop it; or -1 with errno ENOMEM when the ring holds nothing
//  and none could be had (key is not remembered). Each id forgotten
//  within the window (at max too) or not remembered counts in forgotten.
int zqi_r_dedupe_add (zqi_r_dedupe_t *dedupe, const zqi_r_seen_t *key, uint64_t content,
                      int64_t now, uint64_t seq);
//  Forgets key (its store was refused).
void zqi_r_dedupe_forget (zqi_r_dedupe_t *dedupe, const zqi_r_seen_t *key);
//  Forgets every record of queue (the queue was deleted: its index may be
//  given to another).
void zqi_r_dedupe_forget_queue (zqi_r_dedupe_t *dedupe, uint32_t queue);

//  ---- Roles --------------------------------------------------------------

//  Settings every role reads from the options at open.
typedef struct {
    zq_pattern_ctx_t *ctx;
    void *handle;
    int ping_ivl_ms;
} zqi_r_common_t;

//  The role's monotonic time in ms: the queue's clock (zq_clock.h), which
//  every timer of the reliable pattern reads.
static inline int64_t
zqi_r_now (const zqi_r_common_t *common)
{
    return zqi_clock_mono (common->ctx->clock);
}

typedef struct _zqi_r_server_t zqi_r_server_t;
typedef struct _zqi_r_producer_t zqi_r_producer_t;
typedef struct _zqi_r_consumer_t zqi_r_consumer_t;

//  Each role's hooks, as zq_pattern_t describes them.
zqi_r_server_t *zqi_r_server_new (zq_pattern_ctx_t *ctx);
size_t zqi_r_server_destroy (zqi_r_server_t **self_p);
zq_msg_t *zqi_r_server_recv (zqi_r_server_t *self);
int zqi_r_server_events (zqi_r_server_t *self, int zmq_events);
int64_t zqi_r_server_next_timer_ms (zqi_r_server_t *self);
int zqi_r_server_store_fd (zqi_r_server_t *self);
int zqi_r_server_subscribe (zqi_r_server_t *self, const char *name);
int zqi_r_server_unsubscribe (zqi_r_server_t *self, const char *name);
int zqi_r_server_ack (zqi_r_server_t *self, const zq_msg_t *msg, int kind, int64_t number);
int zqi_r_server_declare (zqi_r_server_t *self, const char *name);
zlistx_t *zqi_r_server_names (zqi_r_server_t *self);
int zqi_r_server_info (zqi_r_server_t *self, const char *name, zq_queue_info_t *info);
void zqi_r_server_refusals (zqi_r_server_t *self, uint64_t *counts, size_t count);
int zqi_r_server_peek (zqi_r_server_t *self, const char *name, zq_msg_t **msgs, size_t max,
                       size_t *count_p);
int zqi_r_server_purge (zqi_r_server_t *self, const char *name, uint64_t *count_p);
int zqi_r_server_redrive (zqi_r_server_t *self, const char *name, uint64_t *count_p);
int zqi_r_server_authorizer (zqi_r_server_t *self, zq_queue_authorize_fn *fn, void *arg);
int zqi_r_server_delete (zqi_r_server_t *self, const char *name, int flags, uint64_t *count_p);

zqi_r_producer_t *zqi_r_producer_new (zq_pattern_ctx_t *ctx);
size_t zqi_r_producer_destroy (zqi_r_producer_t **self_p);
int zqi_r_producer_send (zqi_r_producer_t *self, zq_msg_t **msg_p);
int zqi_r_producer_post (zqi_r_producer_t *self, zq_msg_t **msg_p);
int zqi_r_producer_confirmed (zqi_r_producer_t *self, uint8_t *id);
zq_msg_t *zqi_r_producer_recv (zqi_r_producer_t *self);
int zqi_r_producer_events (zqi_r_producer_t *self, int zmq_events);
int zqi_r_producer_wait (zqi_r_producer_t *self, short what, long timeout_ms);
//  One round of work that sends what the memory outbox holds back
//  (ZQI_RP_HOLD), as zq_queue_flush: what still waits after it waits for
//  the window, a server or room in the socket, as the outbox always
//  does, and goes when they come. Returns 0, or -1 with errno for a
//  socket failure.
int zqi_r_producer_flush (zqi_r_producer_t *self);
int64_t zqi_r_producer_next_timer_ms (zqi_r_producer_t *self);
int zqi_r_producer_attaching (zqi_r_producer_t *self, const char *endpoint, bool bind);

zqi_r_consumer_t *zqi_r_consumer_new (zq_pattern_ctx_t *ctx);
size_t zqi_r_consumer_destroy (zqi_r_consumer_t **self_p);
zq_msg_t *zqi_r_consumer_recv (zqi_r_consumer_t *self);
int zqi_r_consumer_events (zqi_r_consumer_t *self, int zmq_events);
int64_t zqi_r_consumer_next_timer_ms (zqi_r_consumer_t *self);
int zqi_r_consumer_subscribe (zqi_r_consumer_t *self, const char *name);
int zqi_r_consumer_unsubscribe (zqi_r_consumer_t *self, const char *name);
int zqi_r_consumer_ack (zqi_r_consumer_t *self, const zq_msg_t *msg, int kind, int64_t number);
int zqi_r_consumer_attaching (zqi_r_consumer_t *self, const char *endpoint, bool bind);
//  After a call that found nothing to do (no delivery waiting): sends the
//  acks held.
void zqi_r_consumer_idle (zqi_r_consumer_t *self);

//  ---- Several servers (reliable_peers.c) ---------------------------------

//  Most endpoints a producer or consumer connects to.
#define ZQI_R_PEERS_MAX 16

//  One server of a producer or consumer, as its answers show it.
typedef struct {
    char routing_id[16]; //  the routing id it connects under (ZMQ_CONNECT_ROUTING_ID)
    uint8_t routing_id_size;
    bool connected; //  the last send to it found a connection
    bool lost;      //  producer: pings unanswered for 3 intervals, or gone
    bool pending;   //  consumer: its CONSUME commands are still to go
    uint8_t instance[ZQI_R_INSTANCE_SIZE];
    bool have_instance;
    uint32_t unanswered; //  producer: pings sent since its last PONG
} zqi_r_peer_t;

//  The servers: one (a DEALER socket, multi false) or one per endpoint (a
//  ROUTER socket, when the queue was opened on several).
typedef struct {
    bool multi;
    uint32_t count;
    uint32_t next; //  where the next search for a server starts
    zqi_r_peer_t peers[ZQI_R_PEERS_MAX];
} zqi_r_peers_t;

//  Sets up the servers for the role's socket (ZMQ_ROUTER_MANDATORY on a
//  ROUTER). Returns 0, or -1 with errno.
int zqi_r_peers_open (zqi_r_peers_t *peers, zq_pattern_ctx_t *ctx);
//  The attaching hook: gives the next connection its routing id. Returns
//  0, or -1 with errno EINVAL (a bind, or more than ZQI_R_PEERS_MAX).
int zqi_r_peers_attaching (zqi_r_peers_t *peers, void *handle, const char *endpoint, bool bind);
//  Several servers: sends the routing frame of server index (ZMQ_SNDMORE),
//  so the frames that follow go to it; one server: does nothing. Returns
//  0, or -1 with errno EHOSTUNREACH (not connected: connected turns
//  false), EAGAIN (its pipe is full) or another socket error.
int zqi_r_peers_address (zqi_r_peers_t *peers, void *handle, uint32_t index);
//  Sends one frame (a command) to server index. Returns 0 or -1 with errno.
int zqi_r_peers_send (zqi_r_peers_t *peers, void *handle, uint32_t index, const void *data,
                      size_t size);
//  Several servers: reads the routing frame of the next message and sets
//  *index_p to its server; one server: sets 0, reads nothing. Returns 0, or
//  -1 with errno (EAGAIN: nothing waits; ZQ_EPROTO: not from a server of
//  ours, the message was read and dropped).
int zqi_r_peers_recv_from (zqi_r_peers_t *peers, void *handle, uint32_t *index_p);

//  ---- A consumer's acks in batches (reliable_acks.c) ---------------------

//  The ACKs (or NACKs of one delay) held to go as one command, and the
//  thread that sends them ack_flush_us after the first when the
//  application makes no call meanwhile. All of it is used under lock,
//  which the core holds through every call on the queue.
typedef struct {
    zq_pattern_ctx_t *ctx;
    zqi_r_peers_t *peers;
    int64_t flush_us; //  option ack_flush_us; 0: nothing is held
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    bool ready;    //  lock and wake made (flush_us > 0)
    bool started;  //  the thread runs
    bool stopping; //  the thread is to end
    bool idle;     //  the thread waits with nothing held
    zqi_buf_t ids; //  the ids held, end to end
    size_t count;
    size_t batch_max; //  ids that fill a batch: half the prefetch window, 1 to 1024
    uint8_t kind;     //  ZQI_R_ACK or ZQI_R_NACK
    int64_t number;   //  a NACK's delay_ms
    uint32_t peer;    //  several servers: the one they go to
    int64_t since_us; //  monotonic us of the first held, or of the last try
    int64_t wait_us;  //  how long after since_us they go
    zqi_buf_t frame;
} zqi_r_acks_t;

//  Reads ack_flush_us; when it is not 0, makes the lock and sets ctx->lock
//  to it. Returns 0, or -1 with errno.
int zqi_r_acks_open (zqi_r_acks_t *acks, zq_pattern_ctx_t *ctx, zqi_r_peers_t *peers);
//  Holds the ACK or NACK of id to server peer (0 for one server), after
//  sending what is held if this one cannot join it (another kind or delay
//  or server, or the batch is full), and sends the batch once it holds
//  batch_max ids; starts the thread with the first.
//  Returns 0, or -1 with errno ENOTSUP (nothing is held: ack_flush_us 0,
//  the application polls the socket itself, or no thread could start;
//  send it at once), EAGAIN (the batch is full and finds no room: try
//  again) or ENOMEM.
int zqi_r_acks_hold (zqi_r_acks_t *acks, zqi_r_kind_t kind, const uint8_t *id, int64_t number,
                     uint32_t peer);
//  Sends what is held, now. Returns 0 (nothing held any more), or -1 with
//  errno: EAGAIN (no room: still held, tried again later), or another
//  send error (dropped: a lost server takes its deliveries back).
int zqi_r_acks_flush (zqi_r_acks_t *acks);
//  Sends what is held if its time has come (while the flusher thread
//  keeps that time, as read on the coarse clock: a backup for the
//  thread, at most a clock tick late).
void zqi_r_acks_due (zqi_r_acks_t *acks);
//  Milliseconds until what is held is due (0: now), or -1: nothing held.
int64_t zqi_r_acks_next_ms (zqi_r_acks_t *acks);
//  Stops the thread (the caller does not hold the lock), sends what is
//  held, and frees everything; ctx->lock is NULL after.
void zqi_r_acks_close (zqi_r_acks_t *acks);

//  Reads an integer option (asserting it exists).
int64_t zqi_r_option (const zq_options_t *options, const char *name);

//  Opens a spool with the queue's storage options (fsync, fsync_interval_ms,
//  quota_bytes, segment_bytes, max_message_bytes); dir NULL: in memory.
zq_spool_t *zqi_r_spool_open (const zq_options_t *options, const char *dir);

//  Ping intervals of silence after which a server's connection to a peer is
//  closed (its ZMTP heartbeat timeout, unless the options set one), and a
//  consumer on it gone (doc/PROTOCOL.md, "When a consumer is gone").
#define ZQI_R_SILENT_PINGS 5

//  Sets the ZMTP heartbeat defaults (unless the options chose) and the
//  ping interval.
int zqi_r_common_open (zqi_r_common_t *common, zq_pattern_ctx_t *ctx);

#endif
