/*  =========================================================================
    zq_reliable - the "reliable" pattern's own verbs: a producer's posts
    and confirm reports, a consumer's settles, and the admin calls of a
    server holding named queues. Messages otherwise travel through
    zq_queue_send and zq_queue_recv, and queue names follow
    zq_queue_name_check (zq_queue.h).
    Included by zq.h.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_RELIABLE_H_INCLUDED
#define ZQ_RELIABLE_H_INCLUDED

#include "zq_queue.h"

#ifdef __cplusplus
extern "C" {
#endif

//  ---- reliable -----------------------------------------------------------
//  Each function here fails with ENOTSUP on a queue of another pattern.
//  At-least-once delivery through named queues. Frames: doc/PROTOCOL.md,
//  "reliable". A message's subject names its queue; the rule for queue
//  names is zq_queue_name_check's (doc/PROTOCOL.md 18.6 states it).
//
//  Server (binds). Holds the queues: each is a zq_spool in
//  spool_dir/NAME/ (in memory when spool_dir is ""), created when first
//  used, plus a dead-letter queue "NAME.dead", itself an ordinary queue
//  (consume it like any other; it never dead-letters). A server does its
//  work (reading PUTs, storing them with one spool commit per batch,
//  confirming, delivering, timers) inside zq_queue_recv and
//  zq_queue_events; a server nobody consumes locally is driven
//  by calling zq_queue_recv (self, 0) when its socket or zq_queue_store_fd
//  is readable and when zq_queue_next_timer_ms says (a device does that).
//  zq_queue_recv on a server also returns messages of the queues it
//  subscribed to with zq_queue_subscribe (local consumption: the
//  brokerless mode, where a service embeds its own server), which it
//  settles with zq_queue_ack, zq_queue_nack and zq_queue_touch like a
//  consumer (a zq_queue_recv that returns a local message may leave the
//  socket unread for up to a millisecond; one that returns NULL has done
//  a whole round, though the commit of the PUTs it read may still run:
//  zq_queue_store_fd). zq_queue_send fails with ENOTSUP.
//  Per message: a delivery not acked within visibility_timeout_ms (or
//  nacked, or whose consumer went away) is delivered again with attempt
//  one higher; a message whose attempt reaches max_attempts moves to the
//  dead-letter queue instead. Reserved headers: "zq-ttl-ms" (decimal ms
//  after created_ms; an expired message is dropped, counted as expired)
//  and "zq-not-before-ms" (decimal Unix ms; not delivered before). A PUT
//  whose id was stored within dedupe_window_ms in the same queue, from the
//  same producer identity (the ZAP User-Id: with curve_clients a directory,
//  the producer's CURVE key) and with the same body is confirmed again but
//  not stored twice; with another body it is refused (the producer sees
//  EEXIST) and counted in refused. The window is in memory: it starts
//  empty when the server restarts. The server stores attempt 0 whatever a
//  producer wrote; only the consumer holding a delivery settles it; NACK
//  delays and TOUCH extensions are cut to max_delay_ms (doc/PROTOCOL.md
//  18.7 lists every bound).
//
//  Producer (connects). zq_queue_send stores the message in the outbox,
//  sends it and waits for the server's confirm: 0 means the server stored
//  it. On -1 the caller keeps the message, and errno says: EAGAIN (no
//  confirm within the timeout: the outbox still holds a copy and sends it
//  again; calling zq_queue_send again with the same message, same id, goes
//  on waiting for that confirm without storing it twice), ZQ_EFULL (the
//  server refused it: its storage is full; the outbox copy is sent again
//  later, counted in stats.refused), EBUSY (refused for now: the server has
//  no file descriptor to open the queue; sent again later, counted the
//  same), ENOSPC (refused for now: the server's disk is under its
//  free-space watermark, min_free_bytes; sent again later, counted the
//  same), EINVAL (the server can never store it: bad queue name, a
//  dead-letter queue, over the server's max_message_bytes or what its store
//  takes, malformed; the outbox dropped it), EEXIST (the server holds
//  another message of this producer under the same id in that queue: never
//  stored under this id; the outbox dropped it), ZQ_ELIMIT (a new queue
//  past the server's max_queues or max_auto_queues; the outbox dropped it),
//  EACCES (the server's authoriser denies this producer's identity the
//  queue: REFUSE code 11; the outbox dropped it). The outbox is in memory
//  (up to max_in_flight messages, by default ZQ_PRODUCER_WINDOW_DEFAULT,
//  and quota_bytes of their wire form, by default 256 MiB; at most half of
//  them sent and unconfirmed at once: the others wait together and go as
//  one PUT batch when confirms make room; while more than 64 sent await an
//  answer and answers keep coming, fewer than 64 small ones waiting are
//  held back until 64 have gathered, answers bring those awaiting one down
//  to 64, none came for 100 ms, or zq_queue_flush or the close sends them:
//  the answers pace the batches) or, with option outbox_dir, a spool there
//  that survives the producer's crash: what it holds unconfirmed is sent
//  again at the next start. Messages are sent again, under the same id,
//  after confirm_timeout_ms without a confirm and when the server restarted
//  or came back. zq_queue_next_timer_ms is -1 exactly when the outbox holds
//  nothing unconfirmed; an event loop calls zq_queue_events (or a send,
//  post or confirmed) when it says (every reconnect_ms while messages wait
//  for a server to connect: a new connection does not make the socket
//  readable).
//  zq_queue_recv fails with ENOTSUP.
//
//  Consumer (connects). zq_queue_subscribe (q, NAME) starts consuming
//  queue NAME (unsubscribe stops). The server delivers up to prefetch
//  messages not yet acked or nacked (over all the consumer's queues);
//  zq_queue_recv returns them (zq_msg_attempt: earlier deliveries of the
//  message), one per call also when several came as one DELIVER batch
//  frame (option batch_max_bytes, doc/PROTOCOL.md 19.7: a bad element is
//  counted in the stats' errors and skipped, the others still come). A server that denies this
//  consumer's identity a queue (zq_queue_set_authorizer) makes zq_queue_recv fail with EACCES, once
//  per refused CONSUME (the consumer asks again with its pings while the
//  queue stays subscribed). Settle each with zq_queue_ack, or
//  zq_queue_nack, or extend its time with zq_queue_touch. With option
//  max_deliveries the window
//  shrinks as deliveries are settled (an ack or nack that fails counts
//  for nothing): no more than that many come in all.
//  The consumer pings the server every ping_ivl_ms while it calls
//  zq_queue_recv, and subscribes again when a restarted server does not
//  know it. Closing the queue (zq_queue_close or zq_queue_destroy) hands
//  back at once what it holds unsettled: deliveries still unread go back
//  with their attempt unchanged, those zq_queue_recv returned with attempt
//  one higher. zq_queue_send fails with ENOTSUP.

//  Nack delay meaning "the server's backoff": nack_backoff_ms doubled per
//  attempt, at most nack_backoff_max_ms.
#define ZQ_NACK_BACKOFF (-1)

//  A producer's max_in_flight when the option is not set: the unconfirmed
//  messages its outbox keeps (rpc's default, 1000, stays rpc's).
#define ZQ_PRODUCER_WINDOW_DEFAULT 8192

//  Producer: puts the message into the outbox and sends it without
//  waiting for its confirm; takes ownership (on success *msg_p becomes
//  NULL). Waits up to timeout_ms while the outbox is full. Returns 0, or
//  -1 with errno, the caller keeping the message: EAGAIN (outbox full:
//  max_in_flight unconfirmed messages, or quota_bytes of them, in memory
//  (a message alone always fits); or the outbox spool's quota), EINVAL, ENOTSUP (not a reliable
//  producer), ENOTSOCK, EINTR, ETERM, ENOMEM, or a storage errno of the outbox spool.
ZQ_EXPORT int zq_queue_post (zq_queue_t *self, zq_msg_t **msg_p, int timeout_ms);

//  Producer: pops the next report about a posted message (despite the
//  name, it asks nothing about one message: it takes the oldest report,
//  like a receive, whatever it says) and copies its
//  id into id (ZQ_MSG_ID_SIZE bytes). Never waits. Returns 0 (the server
//  confirmed it), or -1 with errno: ZQ_EFULL, EIO, EBUSY or ENOSPC (refused
//  for now: storage full, storage failed, the server busy, its disk under
//  its watermark; id set: it stays in the outbox and is sent again; any
//  other server code not named next is handled the same way), EINVAL,
//  EEXIST, ZQ_ELIMIT or EACCES (refused for good, as for zq_queue_send;
//  id set: dropped from the outbox), EAGAIN (no report), ENOTSUP. Up to
//  max_in_flight reports wait to be taken; older ones are discarded
//  (counted in stats.dropped). Called in a tight loop, this and
//  zq_queue_post read the socket at most once per tick of the system's
//  coarse monotonic clock, a few milliseconds at most (an empty read
//  costs a system call); zq_queue_events always reads it, so a loop
//  that follows the fd rule above learns of every answer at once.
ZQ_EXPORT int zq_queue_confirmed (zq_queue_t *self, uint8_t *id);

//  Consumer, or server consuming locally: settles a message zq_queue_recv
//  returned (only its id is read; it may be destroyed right after).
//  ack: done with it. nack: deliver it again after delay_ms (0 = at once,
//  ZQ_NACK_BACKOFF = the server's backoff), with attempt one higher, or
//  dead-letter it if that reaches max_attempts. touch: its visibility
//  deadline becomes extend_ms from now (0 = visibility_timeout_ms).
//  A consumer sends a touch at once. Its acks, and nacks with the delay
//  of the one before, wait to go with others as one command (option
//  ack_flush_us, 1000 us by default; 0: each goes at once) and go, in the
//  order given, when the next call on the queue finds nothing to read
//  (zq_queue_recv finds no delivery waiting, zq_queue_events no
//  ZQ_POLLIN), before any other command (touch, subscribe, close), when
//  half the prefetch window waits (at most 1024: the server gets that
//  credit back while the application works on the rest), and at the latest ack_flush_us after the
//  first, also when the application makes no further call: a thread of the consumer's own sends
//  them then, holding the queue's lock, which every call on the queue holds (so a queue may be
//  called from several threads one at a time, never at once). A consumer whose socket or fd the
//  application took (zq_queue_sock, zq_queue_fd) to poll it itself sends each at once: no thread
//  but the application's touches its socket. A settle that waits is the consumer's, not yet the
//  server's: until it goes, it settles nothing (a consumer killed meanwhile gets its deliveries
//  redelivered, as for any unsettled one).
//  The consumer returns once the command is sent or held: a settle the
//  server cannot match (the delivery timed out and went to another consumer) is ignored
//  there; an ack the server cannot record (its spool refused it) removes
//  nothing and is logged here as the server's error 3: the delivery stays
//  the consumer's, ack it again or it comes back at its visibility time.
//  Returns 0, or -1 with errno EINVAL (NULL message, negative touch),
//  ENOTSUP (other patterns and roles), ENOTSOCK, EAGAIN (the connection to
//  the server is full: for an ack or nack that would wait, only when 1024
//  wait already), ZQ_ENOTFOUND (server: no delivery of that id is in
//  flight), ENOMEM or the spool's failure errno such as EIO (server, ack:
//  not recorded; the message stays delivered, as before the call), ETERM.
ZQ_EXPORT int zq_queue_ack (zq_queue_t *self, const zq_msg_t *msg);
ZQ_EXPORT int zq_queue_nack (zq_queue_t *self, const zq_msg_t *msg, int64_t delay_ms);
ZQ_EXPORT int zq_queue_touch (zq_queue_t *self, const zq_msg_t *msg, int64_t extend_ms);

//  ---- reliable server: admin ---------------------------------------------
//  Each fails with ENOTSUP on other patterns and roles, and with EINVAL
//  for a NULL or invalid queue name.

//  A queue's levels and counters (counters since the server opened).
//  Fields are never reordered or removed; new ones take reserved slots.
//  Between two calls that work the server, put and the levels may count
//  PUTs whose commit still runs (zq_queue_store_fd): one that fails is
//  taken back out, counted refused.
typedef struct {
    uint64_t depth;         //  stored, not yet acked: ready + in_flight + delayed
    uint64_t ready;         //  waiting for a consumer
    uint64_t in_flight;     //  delivered, not yet acked or nacked
    uint64_t delayed;       //  held until their not-before time or nack delay
    uint64_t dead;          //  messages in the dead-letter queue NAME.dead
    uint64_t consumers;     //  consumers subscribed (the local one included)
    uint64_t oldest_age_ms; //  age of the oldest ready message (0: none)
    uint64_t put;           //  messages stored
    uint64_t duplicates;    //  PUTs confirmed without storing (dedupe window)
    uint64_t refused;       //  PUTs refused (storage full or failed, id conflict)
    uint64_t delivered;     //  deliveries, first ones and again
    uint64_t redelivered;   //  deliveries with attempt > 0
    uint64_t acked;
    uint64_t nacked;
    uint64_t timeouts;      //  deliveries whose visibility timeout passed
    uint64_t dead_lettered; //  moved to NAME.dead
    uint64_t expired;       //  dropped past their zq-ttl-ms
    uint64_t dropped;       //  duplicate records skipped at delivery
    uint64_t disk_bytes;    //  bytes its spool takes (on disk, or in memory)
    uint64_t reserved[7];
} zq_queue_info_t;

//  Makes queue name exist (opening or creating its spool). Returns 0, or
//  -1 with errno EINVAL, ZQ_ELIMIT (a new queue past max_queues), EMFILE
//  (no file descriptor to open it: every open queue is busy or the process
//  is out of descriptors; doc/PROTOCOL.md 18.6), or the spool's errno
//  (ZQ_ECORRUPT, EBUSY, ...). A declared queue is the application's, not
//  a client's: it does not count towards max_auto_queues, is never
//  removed when idle (auto_queue_idle_ms), and zq_queue_delete refuses it.
ZQ_EXPORT int zq_queue_declare (zq_queue_t *self, const char *name);

//  Who may do what on a server's queues. The server asks the authoriser
//  before it stores a PUT (operation ZQ_ACCESS_PUT) or subscribes a
//  CONSUME (ZQ_ACCESS_CONSUME), with the connection's ZAP User-Id (NULL
//  when the connection has none) and the queue's name. fn returns true
//  to allow; a refusal is answered REFUSE or ERROR code 11 "denied"
//  (doc/PROTOCOL.md 18.x) and counted in zq_queue_stats_t refused. fn
//  runs on the thread that drives the queue, inside zq_queue_recv; it
//  must not block, and should count and log what it refuses. ACK, NACK
//  and TOUCH need no question: only the holder of a delivery settles it.
#define ZQ_ACCESS_PUT     1
#define ZQ_ACCESS_CONSUME 2
typedef bool (zq_queue_authorize_fn) (void *arg, const char *user_id, int operation,
                                      const char *queue);

//  Sets (fn not NULL) or clears (NULL) the server's authoriser; arg is
//  passed to fn and stays the caller's. Returns 0, or -1 with errno
//  ENOTSUP (not a reliable server).
ZQ_EXPORT int zq_queue_set_authorizer (zq_queue_t *self, zq_queue_authorize_fn *fn, void *arg);

//  Returns a new list of the names of the queues the server holds
//  (dead-letter queues included, sorted), each a string the list owns:
//  zlistx_destroy frees them. NULL with errno ENOTSUP or ENOMEM.
ZQ_EXPORT zlistx_t *zq_queue_names (zq_queue_t *self);

//  Fills *info for queue name. Returns 0, or -1 with errno ZQ_ENOTFOUND
//  (no such queue), EINVAL, ENOTSUP.
ZQ_EXPORT int zq_queue_info (zq_queue_t *self, const char *name, zq_queue_info_t *info);

//  Most bytes zq_queue_peek copies in one call (the messages' encoded
//  sizes together); the first message is copied whatever its size.
#define ZQ_QUEUE_PEEK_MAX_BYTES (16 * 1024 * 1024)

//  Copies up to max ready messages of queue name, oldest first, into
//  msgs[0..] without delivering them (the caller owns and destroys each)
//  and stores how many in *count_p. It stops early rather than pass
//  ZQ_QUEUE_PEEK_MAX_BYTES. Returns 0, or -1 with errno
//  ZQ_ENOTFOUND, EINVAL, ENOTSUP (also: queues in JetStream, which has no
//  shared look without taking), ENOMEM or the spool's errno.
ZQ_EXPORT int zq_queue_peek (zq_queue_t *self, const char *name, zq_msg_t **msgs, size_t max,
                             size_t *count_p);

//  Drops every ready and delayed message of queue name (deliveries in
//  flight are left to settle) and stores how many in *count_p (if not
//  NULL). Returns 0, or -1 with errno as zq_queue_peek.
ZQ_EXPORT int zq_queue_purge (zq_queue_t *self, const char *name, uint64_t *count_p);

//  Moves the messages waiting in NAME.dead back to queue name, with
//  attempt 0, and stores how many in *count_p (if not NULL). Returns 0,
//  or -1 with errno as zq_queue_peek (ZQ_EFULL: name's spool is full;
//  what moved before stays moved; ENOTSUP: queues in JetStream).
ZQ_EXPORT int zq_queue_redrive (zq_queue_t *self, const char *name, uint64_t *count_p);

//  A server also has work when this file descriptor polls readable: poll
//  it beside zq_queue_sock or zq_queue_fd, and call zq_queue_events (or
//  zq_queue_recv) when it is. With queues in a JetStream cluster (the
//  option jetstream_servers) it signals stored puts to confirm and
//  messages to deliver; with spools on disk (spool_dir), the end of a
//  commit the last call left in flight (a call returns at its bounds of
//  work, or after waiting 5 ms for a slow disk, without waiting for the
//  commit), whose puts are then confirmed. A host
//  that does not poll it is still called back for those puts by
//  zq_queue_next_timer_ms (1 ms while a commit is in flight), later than
//  the descriptor would. It stays the queue's, the same for the queue's
//  life. Returns it, or -1 with errno ENOENT (queues in memory: nothing
//  more to poll; or no eventfd could be made, logged: commits then never
//  stay in flight) or ENOTSUP (not a reliable server).
ZQ_EXPORT int zq_queue_store_fd (zq_queue_t *self);

//  zq_queue_delete's flags: delete a queue that holds messages (they are
//  dropped, deliveries in flight included).
#define ZQ_DELETE_FORCE 1

//  Deletes queue name and its dead-letter queue NAME.dead, if any (a
//  NAME.dead given alone goes alone; its queue keeps a place for a new
//  one): their messages and spool directories are gone and the name is
//  free, as if never used. Consumers of it get ERROR 13 ("queue deleted")
//  and are no longer subscribed; settling a delivery of it afterwards
//  gets ERROR 7. Without ZQ_DELETE_FORCE a queue (or its NAME.dead) that
//  holds any message, ready, delayed or in flight, is not deleted. Stores
//  how many messages were dropped in *count_p (if not NULL). Returns 0,
//  or -1 with errno ZQ_ENOTFOUND, EINVAL (bad name or flags), ENOTSUP,
//  ENOTEMPTY (messages and no ZQ_DELETE_FORCE), EPERM (a queue made by
//  zq_queue_declare: it stays) or the spool's errno.
ZQ_EXPORT int zq_queue_delete (zq_queue_t *self, const char *name, int flags, uint64_t *count_p);

//  Stores in counts[code], for each code from 0 to count - 1, how many
//  times the server turned something down with that code since it opened
//  (doc/PROTOCOL.md's REFUSE and ERROR codes): one per PUT id a REFUSE
//  names, one per ERROR sent. Codes the protocol does not define (0
//  among them) count 0. Returns 0, or -1 with errno ENOTSUP (not a
//  reliable server) or EINVAL (counts NULL with count > 0).
ZQ_EXPORT int zq_queue_refusals (zq_queue_t *self, uint64_t *counts, size_t count);

#ifdef __cplusplus
}
#endif

#endif
