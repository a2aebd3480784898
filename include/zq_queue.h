/*  =========================================================================
    zq_queue - a message queue over one ZeroMQ socket pattern: open it for
    a pattern and a role on some endpoints, send and receive zq_msg_t with
    timeouts, poll it from any event loop, read its counters, close it.

    Patterns and roles:
        "pipeline"  ZQ_PRODUCER (PUSH)  ZQ_CONSUMER (PULL)
                    Each message goes to one consumer, round-robin among
                    those connected; consumers fair-queue among producers.
        "pubsub"    ZQ_PUBLISHER (XPUB) ZQ_SUBSCRIBER (SUB)
                    Each message goes to every subscriber whose prefix
                    matches its subject; subscribers count lost messages.
        "rpc"       ZQ_CLIENT (ROUTER)  ZQ_SERVER (ROUTER)
                    Clients send requests round-robin among the live
                    servers they connect to, with deadlines, retries and
                    failover; servers reply to the client that asked
                    (see "rpc" below).
        "reliable"  ZQ_PRODUCER (DEALER) ZQ_CONSUMER (DEALER) ZQ_SERVER (ROUTER)
                    At-least-once: the server holds named queues (in
                    spools), producers get a confirm once a message is
                    stored, consumers ack what they processed; unacked
                    messages are delivered again (see "reliable" below).
    The frames each pattern puts on the wire are in doc/PROTOCOL.md.

    Threads: like a ZeroMQ socket, a queue is used by one thread at a time
    (it may move between threads with a full memory barrier between uses).

    The process and the host program. Queues live in CZMQ's process-wide
    ZeroMQ context (so inproc endpoints reach other queues and CZMQ actors
    of the same process). The first time anything in the process creates a
    CZMQ socket, CZMQ installs SIGINT and SIGTERM handlers. A library must
    not change its host's signal handling, so if creating a queue is what
    initialises CZMQ and CZMQ replaced a handler, zq puts the host's
    handlers back at once (zsys_handler_set (NULL)) and CZMQ leaves signals
    alone from then on. A host that initialised CZMQ itself keeps whatever
    it chose. That first queue must not be created while another thread
    creates CZMQ sockets (CZMQ's own rule for zsys_init). CZMQ registers an
    atexit handler that terminates its context: destroy queues before exit.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_QUEUE_H_INCLUDED
#define ZQ_QUEUE_H_INCLUDED

#include "zq_library.h"
#include "zq_msg.h"
#include "zq_options.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zq_queue_t zq_queue_t;

//  The part a queue plays in its pattern. 0 is never a valid role.
typedef enum {
    ZQ_PRODUCER = 1,   //  pipeline: sends; connects by default
    ZQ_CONSUMER = 2,   //  pipeline: receives; binds by default
    ZQ_PUBLISHER = 3,  //  pubsub: sends; binds by default
    ZQ_SUBSCRIBER = 4, //  pubsub: receives; connects by default
    ZQ_CLIENT = 5,     //  rpc: sends requests, receives replies; connects
    ZQ_SERVER = 6      //  rpc: receives requests, sends replies; binds
} zq_role_t;
//  In "reliable", producers and consumers connect by default and servers
//  bind.
#define ZQ_ROLE_MAX 6

//  Readiness bits returned by zq_queue_events.
#define ZQ_POLLIN  1 //  zq_queue_recv (self, 0) has something to read
#define ZQ_POLLOUT 2 //  zq_queue_send (self, &msg, 0) has room for a message

//  Timeouts, in milliseconds, for send, receive and waits: a positive
//  number, 0 (try once, never wait), -1 (wait as long as it takes), or
//  ZQ_TIMEOUT_DEFAULT (the queue's send_timeout_ms / recv_timeout_ms).
#define ZQ_TIMEOUT_DEFAULT (-2)

//  A queue's counters since it was opened. Fields are never reordered or
//  removed; new counters take the reserved slots, in order, which read 0
//  until then, so the struct's size and layout never change.
typedef struct {
    //  Messages zq_queue_send handed to libzmq (each successful call).
    uint64_t sent;
    //  Messages zq_queue_recv returned.
    uint64_t received;
    //  Messages zq knows did not reach every peer meant to get them:
    //  pubsub publishers with slow_subscriber "drop" count each message no
    //  subscriber got because a matching subscriber's queue was full (the
    //  send still succeeded and counts in sent too). With "skip", libzmq
    //  drops for the full subscriber without telling: this stays 0 and only
    //  that subscriber's gaps show it; with "wait" nothing is dropped.
    //  rpc server: replies that failed with EHOSTUNREACH (client gone).
    //  rpc client: replies dropped as late or duplicate (their request had
    //  its result already) or answering no request it sent.
    uint64_t dropped;
    //  Malformed messages received and skipped: bad envelope (ZQ_EPROTO,
    //  ZQ_ETOOBIG, ZQ_EVERSION, ZQ_EDEPTH) or bad pattern frames; on a
    //  publisher, anything a peer sent that is not a subscription; on a
    //  reliable server, also PUTs refused as never storable before any
    //  queue was chosen (too big, malformed, into a dead-letter queue) and
    //  settles of deliveries the sender does not hold.
    uint64_t errors;
    //  pubsub subscriber: messages missing from the per-publisher,
    //  per-subject sequence (lost to a full queue or a broken connection).
    uint64_t gaps;
    //  Operations whose deadline passed: rpc client, requests that failed
    //  after all their attempts (each reported once by ZQ_ETIMEDOUT); 0
    //  elsewhere.
    uint64_t timeouts;
    //  Messages sent again after a timeout: rpc client, attempts after the
    //  first handed to libzmq; 0 elsewhere.
    uint64_t retries;
    //  reliable producer: refusals the server sent (storage full or
    //  failed; the message stays in the outbox and is sent again).
    //  reliable server: PUTs refused before reaching a queue (max_queues,
    //  no file descriptor to open it; doc/PROTOCOL.md 18.6) and CONSUMEs
    //  past max_consumer_queues (18.8).
    uint64_t refused;
    uint64_t reserved[8];
} zq_queue_stats_t;

//  Opens a queue of pattern ("pipeline", "pubsub", "rpc") in role on
//  endpoints, with options (NULL = all defaults; the options are copied).
//  endpoints uses CZMQ's syntax: a comma-separated list of tcp://, ipc://
//  or inproc:// endpoints, each prefixed '@' to bind or '>' to connect;
//  without a prefix, the role's default applies (see zq_role_t). Binding
//  "tcp://127.0.0.1:*" picks a free port: read it with zq_queue_endpoint.
//  Connections are made in the background; a connect succeeds before any
//  peer exists, and lost connections are remade every reconnect_ms.
//  Returns the queue, or NULL with errno: EINVAL (unknown pattern, a role
//  the pattern lacks, NULL or malformed endpoints, an empty item, an
//  endpoint to bind for an rpc client, which only connects), or the
//  error of a bind or connect that failed (EADDRINUSE, EPROTONOSUPPORT,
//  ENOENT, ...), or ENOMEM. Nothing is left open after a failure.
ZQ_EXPORT zq_queue_t *zq_queue_new (const char *pattern, zq_role_t role, const char *endpoints,
                                    const zq_options_t *options);

//  Closes the queue as zq_queue_close does, ignoring the report, frees it
//  and sets *self_p to NULL. Safe on NULL and twice.
ZQ_EXPORT void zq_queue_destroy (zq_queue_t **self_p);

//  Closes the queue's socket; only zq_queue_stats, zq_queue_pattern,
//  zq_queue_role and zq_queue_endpoint remain usable, and
//  zq_queue_destroy must still be called. What the unsent count means:
//  - Messages zq itself still held (a pattern's own buffers, e.g. rpc
//    requests not yet answered) are discarded and counted.
//  - Messages already handed to libzmq (stats.sent) stay in libzmq, which
//    keeps sending them in the background for up to linger_ms after this
//    call (and makes a process's exit wait that long for them), then
//    discards what is left. libzmq exposes no count of what it still holds,
//    so those are NOT in the count: the number is a lower bound on what
//    was never delivered. Peers' stats.received, compared with stats.sent,
//    tell the rest; at-least-once delivery needs the "reliable" pattern.
//  A pipeline producer first sends the batch it holds (zq_queue_flush),
//  waiting up to linger_ms for room, and counts what could not go; for
//  pubsub zq holds nothing, so the count is always 0.
//  If unsent_p is not NULL, stores the count there. Returns 0; -1 with
//  errno EINVAL if the queue was already closed (*unsent_p is then 0).
ZQ_EXPORT int zq_queue_close (zq_queue_t *self, size_t *unsent_p);

//  Sends the message and takes ownership of it: on success *msg_p becomes
//  NULL. Waits up to timeout_ms for room when every peer's queue is at its
//  high-water mark (pipeline also has room only for connected consumers:
//  ZMQ_IMMEDIATE; but over inproc a connect made before the bind queues
//  like a connection). Returns 0, or -1 with errno, the caller keeping the
//  message: EAGAIN (no room within the timeout; with timeout 0, right
//  away), EINVAL (NULL message), ENOTSUP (the role does not send),
//  ENOTSOCK (the queue was closed), EINTR (a signal arrived while
//  waiting), ETERM, or ENOMEM. The timeout is only looked at when there is
//  no room: a send with room costs no clock read and no poll.
//  pubsub publishers wait only with slow_subscriber "wait"; otherwise a
//  send always succeeds at once, and a subscriber whose queue is full
//  misses the message (see zq_options.h and stats.dropped).
ZQ_EXPORT int zq_queue_send (zq_queue_t *self, zq_msg_t **msg_p, int timeout_ms);

//  Hands libzmq what the queue took but still holds: a pipeline producer
//  gathers messages that found no room into one batch frame instead of
//  waiting (batch_max_bytes, zq_options.h), and sends it when there is
//  room at its next zq_queue_send, zq_queue_events or zq_queue_close, or
//  here. Call it before a producer goes quiet (stops sending for a while
//  without closing), as one calls fflush on a stdio stream. Waits up to
//  timeout_ms for room (ZQ_TIMEOUT_DEFAULT: send_timeout_ms). Returns 0
//  when nothing is held (at once for patterns that never hold any), or
//  -1 with errno: EAGAIN (still held when the timeout passed), ENOTSOCK
//  (closed), EINVAL (NULL), EINTR, ETERM or ENOMEM.
ZQ_EXPORT int zq_queue_flush (zq_queue_t *self, int timeout_ms);

//  Receives the next message, waiting up to timeout_ms for one. Returns a
//  message the caller owns, or NULL with errno: EAGAIN (nothing within the
//  timeout), ENOTSUP (the role does not receive), ENOTSOCK (closed), EINTR
//  (a signal arrived while waiting), ETERM or ENOMEM. Malformed input (see stats.errors) is
//  counted, skipped, and the wait goes on until the deadline; with timeout
//  0, EAGAIN can mean only malformed messages were waiting.
ZQ_EXPORT zq_msg_t *zq_queue_recv (zq_queue_t *self, int timeout_ms);

//  ---- Polling --------------------------------------------------------------
//  (a) zloop, zpoller, zmq_poll: use zq_queue_sock (level-triggered; no
//      special rules). Readable means call zq_queue_recv (self, 0) until it
//      returns NULL with EAGAIN (a reliable producer: zq_queue_confirmed
//      until EAGAIN). On a publisher, subscription notices also make the
//      socket readable; call zq_queue_events (self) to take them
//      (zq_queue_recv on a publisher fails with ENOTSUP). Use the timeout
//      zq_queue_next_timer_ms gives for the reliable pattern's timers.
//  (b) epoll, libuv, libevent, poll(): use zq_queue_fd with zq_queue_events.
//      The fd is the socket's ZMQ_FD: watch it for READING only (EPOLLIN,
//      edge-triggered or not; never EPOLLOUT), whether you want to receive
//      or to send. The fd does not mean "a message is there"; it means
//      "the queue's state may have changed". The rule:
//        1. When the fd is readable, and ALSO after every other zq_queue_*
//           call on this queue (send, recv, post, confirmed, ack, nack,
//           touch, subscribe...; wherever it was made, each may consume
//           the fd's signal), loop:
//               events = zq_queue_events (q);
//               if (events & ZQ_POLLIN)  -> zq_queue_recv (q, 0), continue
//                                           (a reliable producer:
//                                           zq_queue_confirmed)
//               if ((events & ZQ_POLLOUT) && you have something to send)
//                                        -> zq_queue_send (q, &msg, 0), continue
//               otherwise stop and go back to the event loop.
//        2. Never block in the loop: use timeout 0 there; EAGAIN from
//           either call just means "check events again".
//      Stopping while events still shows ZQ_POLLIN (e.g. to bound the work
//      per wakeup) is allowed only if you come back without waiting for the
//      fd (an idle callback, a zero-timeout epoll_wait): the fd will not
//      signal again for messages already waiting.

//  Returns the queue's CZMQ socket for zloop (zloop_reader), zpoller and
//  zmq_poll (via zsock_resolve). It stays owned by the queue: do not send,
//  receive, destroy or change options on it. NULL after zq_queue_close.
ZQ_EXPORT zsock_t *zq_queue_sock (zq_queue_t *self);

//  Returns the file descriptor to watch for reading (rules above), or -1
//  with errno ENOTSOCK after zq_queue_close.
ZQ_EXPORT int zq_queue_fd (zq_queue_t *self);

//  Returns the queue's readiness now as ZQ_POLLIN | ZQ_POLLOUT bits
//  (0 = nothing to do until the fd signals), or -1 with errno (ENOTSOCK
//  after close, ETERM). ZQ_POLLIN is only reported for roles that receive,
//  ZQ_POLLOUT only for roles that send (a publisher always reports
//  ZQ_POLLOUT: with slow_subscriber "wait", a send may still fail with
//  EAGAIN; retry when the fd signals). On a publisher it also takes in
//  waiting subscription notices (see zq_queue_subscribers).
ZQ_EXPORT int zq_queue_events (zq_queue_t *self);

//  ---- Counters and names -----------------------------------------------------

//  Copies the queue's counters into *stats (see zq_queue_stats_t).
ZQ_EXPORT void zq_queue_stats (zq_queue_t *self, zq_queue_stats_t *stats);

//  Returns the endpoints the queue bound, resolved ("tcp://127.0.0.1:41234"
//  for "@tcp://127.0.0.1:*"), comma-separated in the order given, or ""
//  if it only connects. Valid while the queue lives.
ZQ_EXPORT const char *zq_queue_endpoint (zq_queue_t *self);

//  Returns the pattern's name ("pipeline", ...).
ZQ_EXPORT const char *zq_queue_pattern (zq_queue_t *self);

//  Returns the queue's role.
ZQ_EXPORT zq_role_t zq_queue_role (zq_queue_t *self);

//  Returns the name of a role ("producer", "consumer", "publisher",
//  "subscriber", "client", "server"), or NULL if role is not one.
ZQ_EXPORT const char *zq_role_name (zq_role_t role);

//  Returns the role named name (as zq_role_name spells it), or 0.
ZQ_EXPORT zq_role_t zq_role_lookup (const char *name);

//  ---- pubsub -------------------------------------------------------------
//  Each message is published on its subject. Subscribers choose subjects by
//  prefix ("" = all, "orders." = every subject starting "orders."); a new
//  subscriber receives nothing until it subscribes. Sequence numbers per
//  publisher and subject let a subscriber count lost messages in
//  stats.gaps. The first message a subscriber gets from a publisher on a
//  subject starts the count (joining late or subscribing later is not a
//  gap); after zq_queue_unsubscribe the count starts afresh for every
//  subject. A publisher that restarts counts as a new publisher.

//  Subscriber: receives messages whose subject starts with prefix (NULL is
//  ""). Subscribing twice to one prefix needs two unsubscribes. Returns 0,
//  or -1 with errno ENOTSUP (not a subscriber) or ZQ_ETOOBIG (prefix
//  longer than ZQ_MSG_MAX_STRING).
ZQ_EXPORT int zq_queue_subscribe (zq_queue_t *self, const char *prefix);

//  Subscriber: removes one subscription made with zq_queue_subscribe.
//  Returns 0, or -1 with errno ENOTSUP or ZQ_ETOOBIG.
ZQ_EXPORT int zq_queue_unsubscribe (zq_queue_t *self, const char *prefix);

//  Publisher: returns the number of subscriptions its subscribers hold now
//  (one per prefix per subscriber: a subscriber with two prefixes counts
//  twice; a subscriber's subscriptions end when it disconnects), after
//  taking in waiting notices. Returns -1 with errno ENOTSUP (not a
//  publisher) or ETERM.
ZQ_EXPORT int zq_queue_subscribers (zq_queue_t *self);

//  Publisher: waits up to timeout_ms until zq_queue_subscribers would
//  return at least count. Once it returns 0, every one of those
//  subscriptions is in force: messages sent next reach those subscribers.
//  Returns 0, or -1 with errno ZQ_ETIMEDOUT, ENOTSUP, EINTR or ETERM.
ZQ_EXPORT int zq_queue_wait_subscribers (zq_queue_t *self, size_t count, int timeout_ms);

//  ---- rpc ----------------------------------------------------------------
//  A client sends requests with zq_queue_send and takes their results with
//  zq_queue_recv; a server takes requests with zq_queue_recv and answers
//  each with zq_queue_reply. Frames: doc/PROTOCOL.md, "rpc".
//
//  Client. Each endpoint it connects to is a server (a client never
//  binds). zq_queue_send never waits for a server: it hands the request
//  to the next live server in turn (with none live yet, to one still
//  connecting; with every connection full, the client holds it) and
//  returns; a request is known by its id, zq_msg_id, read before sending.
//  Up to max_in_flight requests await their results at once: beyond,
//  zq_queue_send fails with EAGAIN at once, whatever the timeout (only
//  zq_queue_recv frees room); a request whose id is already awaiting its
//  result fails with EALREADY.
//  zq_queue_recv returns replies in the order they arrive, each under the
//  id of the request it answers: zq_msg_id (reply) is that request's id.
//  A server is live once its connection's handshake succeeded, until the
//  connection closes (the server exited or was killed, its host reset) or
//  heartbeats find it silent (paused, host or network lost: within
//  heartbeat_ivl_ms + heartbeat_timeout_ms, by default 1 s + 3 s); then it
//  gets no new request, and the requests it held are sent again at once
//  to a live server (stats.retries) once the replies already received
//  are read, unless they have no attempt left. A server that comes back
//  is live again. Each attempt has request_timeout_ms; then the request
//  is sent again with the same id and attempt + 1 (stats.retries), to
//  another live server if there is one. Every attempt counts, whatever
//  sent it: a request reaches servers at most 1 + retries times (so
//  retries 0 means at most once), and may be processed more than once
//  (make requests idempotent where that matters). When 1 + retries
//  attempts have passed their deadline, zq_queue_recv returns NULL with
//  errno ZQ_ETIMEDOUT, once for that request (stats.timeouts), and
//  zq_queue_failed hands it back. So
//  each request has exactly one result: a reply, or ZQ_ETIMEDOUT. Replies
//  that come after the result (late or duplicate) are dropped and counted
//  in stats.dropped. Deadlines and liveness are checked inside
//  zq_queue_send, zq_queue_recv and zq_queue_events: a blocking
//  zq_queue_recv wakes for them by itself; an event loop also calls
//  zq_queue_recv (self, 0) when zq_queue_next_timer_ms says (while
//  requests wait, at least every 25 ms, so it learns of a lost server).
//  zq_queue_close counts the requests still awaiting a result as unsent
//  and drops every attempt libzmq still holds (none is waited for: linger
//  does not apply).
//
//  Server. zq_queue_recv returns every attempt of every request (a retry
//  can reach a server that already has the request). zq_queue_send fails
//  with ENOTSUP: answer with zq_queue_reply.

//  Server: sends reply as the answer to request (a message this queue's
//  zq_queue_recv returned; only its id is read, so it may be destroyed
//  right after) and takes ownership of reply: on success *reply_p becomes
//  NULL. One reply per request: replying removes the request's route.
//  Waits up to timeout_ms while the client's queue is full. Returns 0, or
//  -1 with errno, the caller keeping the reply: EHOSTUNREACH (the client
//  is gone; counted in stats.dropped), ZQ_ENOTFOUND (the request was
//  answered already, or is older than the max_in_flight requests received
//  since without an answer), EAGAIN (no room within the timeout), EINVAL
//  (NULL argument), ENOTSUP (not a server), ENOTSOCK (closed), EINTR,
//  ETERM or ENOMEM.
ZQ_EXPORT int zq_queue_reply (zq_queue_t *self, const zq_msg_t *request, zq_msg_t **reply_p,
                              int timeout_ms);

//  Client: after zq_queue_recv failed with ZQ_ETIMEDOUT, returns the
//  request that failed (its id says which; zq_msg_attempt, its last
//  attempt); the caller owns it and may send it again. Only the latest
//  failed request is kept: one not taken is destroyed by the next failure
//  or at close. Returns NULL with errno ZQ_ENOTFOUND if there is none, or
//  ENOTSUP if the queue is not an rpc client.
ZQ_EXPORT zq_msg_t *zq_queue_failed (zq_queue_t *self);

//  Returns the milliseconds until the queue needs a call for its own timers
//  (an rpc client's next attempt deadline): an event loop calls
//  zq_queue_recv (self, 0) then, even if its fd stays quiet. 0 means now,
//  -1 no timer (and always for patterns without timers, or once closed).
ZQ_EXPORT int64_t zq_queue_next_timer_ms (zq_queue_t *self);

//  ---- reliable -----------------------------------------------------------
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
//  by calling zq_queue_recv (self, 0) when its socket is readable and
//  when zq_queue_next_timer_ms says (a device does that). zq_queue_recv
//  on a server also returns messages of the queues it subscribed to with
//  zq_queue_subscribe (local consumption: the brokerless mode, where a
//  service embeds its own server), which it settles with zq_queue_ack,
//  zq_queue_nack and zq_queue_touch like a consumer (a zq_queue_recv that
//  returns a local message may leave the socket unread for up to a
//  millisecond; one that returns NULL has done a whole round). zq_queue_send fails
//  with ENOTSUP.
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
//  sends it and waits for the server's confirm: 0 means the server
//  stored it. On -1 the caller keeps the message, and errno says: EAGAIN
//  (no confirm within the timeout: the outbox still holds a copy and
//  sends it again; calling zq_queue_send again with the same message, same
//  id, goes on waiting for that confirm without storing it twice),
//  ZQ_EFULL (the server refused it: its storage is full; the outbox copy
//  is sent again later, counted in stats.refused), EBUSY (refused for
//  now: the server has no file descriptor to open the queue; sent again
//  later, counted the same), ENOSPC (refused for now: the server's disk
//  is under its free-space watermark, min_free_bytes; sent again later,
//  counted the same), EINVAL (the server can never store it: bad
//  queue name, a dead-letter queue, over the server's max_message_bytes,
//  malformed; the outbox dropped it), EEXIST (the server holds another
//  message of this producer under the same id in that queue: never stored
//  under this id; the outbox dropped it), ZQ_ELIMIT (a new queue past the
//  server's max_queues or max_auto_queues; the outbox dropped it), EACCES (the server's
//  authoriser denies this producer's identity the queue: REFUSE code 11;
//  the outbox dropped it). The
//  outbox is in memory (up to max_in_flight messages) or, with option
//  outbox_dir, a spool there that survives the producer's crash: what it
//  holds unconfirmed is sent again at the next start. Messages are sent
//  again, under the same id, after confirm_timeout_ms without a confirm
//  and when the server restarted or came back. zq_queue_next_timer_ms
//  is -1 exactly when the outbox holds nothing unconfirmed; an event loop
//  calls zq_queue_events (or a send, post or confirmed) when it says
//  (every reconnect_ms while messages wait for a server to connect: a new
//  connection does not make the socket readable).
//  zq_queue_recv fails with ENOTSUP.
//
//  Consumer (connects). zq_queue_subscribe (q, NAME) starts consuming
//  queue NAME (unsubscribe stops). The server delivers up to prefetch
//  messages not yet acked or nacked (over all the consumer's queues);
//  zq_queue_recv returns them (zq_msg_attempt: earlier deliveries of the
//  message). A server that denies this consumer's identity a queue
//  (zq_queue_set_authorizer) makes zq_queue_recv fail with EACCES, once
//  per refused CONSUME (the consumer asks again with its pings while the
//  queue stays subscribed). Settle each with zq_queue_ack, or
//  zq_queue_nack, or extend its time with zq_queue_touch. With option
//  max_deliveries the window
//  shrinks as deliveries are settled: no more than that many come in all.
//  The consumer pings the server every ping_ivl_ms while it calls
//  zq_queue_recv, and subscribes again when a restarted server does not
//  know it. Closing the queue (zq_queue_close or zq_queue_destroy) hands
//  back at once what it holds unsettled: deliveries still unread go back
//  with their attempt unchanged, those zq_queue_recv returned with attempt
//  one higher. zq_queue_send fails with ENOTSUP.

//  Nack delay meaning "the server's backoff": nack_backoff_ms doubled per
//  attempt, at most nack_backoff_max_ms.
#define ZQ_NACK_BACKOFF (-1)

//  Producer: puts the message into the outbox and sends it without
//  waiting for its confirm; takes ownership (on success *msg_p becomes
//  NULL). Waits up to timeout_ms while the outbox is full. Returns 0, or
//  -1 with errno, the caller keeping the message: EAGAIN (outbox full:
//  max_in_flight unconfirmed messages in memory, or the outbox spool's
//  quota), EINVAL, ENOTSUP (not a reliable producer), ENOTSOCK, EINTR,
//  ETERM, ENOMEM, or a storage errno of the outbox spool.
ZQ_EXPORT int zq_queue_post (zq_queue_t *self, zq_msg_t **msg_p, int timeout_ms);

//  Producer: takes the next report about a posted message and copies its
//  id into id (ZQ_MSG_ID_SIZE bytes). Never waits. Returns 0 (the server
//  confirmed it), or -1 with errno: ZQ_EFULL, EBUSY or ENOSPC (refused for now,
//  id set: it stays in the outbox and is sent again), EINVAL, EEXIST or
//  ZQ_ELIMIT (refused for good, as for zq_queue_send; id set: dropped from
//  the outbox), EAGAIN (no
//  report), ENOTSUP. Up to
//  max_in_flight reports wait to be taken; older ones are discarded
//  (counted in stats.dropped). Called in a tight loop, this and
//  zq_queue_post read the socket at most once per millisecond (an empty
//  read costs a system call); zq_queue_events always reads it, so a loop
//  that follows the fd rule above learns of every answer at once.
ZQ_EXPORT int zq_queue_confirmed (zq_queue_t *self, uint8_t *id);

//  Consumer, or server consuming locally: settles a message zq_queue_recv
//  returned (only its id is read; it may be destroyed right after).
//  ack: done with it. nack: deliver it again after delay_ms (0 = at once,
//  ZQ_NACK_BACKOFF = the server's backoff), with attempt one higher, or
//  dead-letter it if that reaches max_attempts. touch: its visibility
//  deadline becomes extend_ms from now (0 = visibility_timeout_ms).
//  A consumer sends the command and returns: a settle the server cannot
//  match (the delivery timed out and went to another consumer) is ignored
//  there; an ack the server cannot record (its spool refused it) removes
//  nothing and is logged here as the server's error 3: the delivery stays
//  the consumer's, ack it again or it comes back at its visibility time.
//  A consumer's ack goes to libzmq at once whenever its socket has room;
//  one that finds none is kept (at most 4096) and the kept ones go as one
//  ACK at the next call on the queue (zq_queue_next_timer_ms then asks for
//  one within 1 ms) or at zq_queue_destroy: no ack waits while the
//  connection could take it, and nack and touch go after the acks kept.
//  Returns 0, or -1 with errno EINVAL (NULL message, negative touch),
//  ENOTSUP (other patterns and roles), ENOTSOCK, EAGAIN (the connection to
//  the server is full; for an ack: and 4096 acks are kept), ZQ_ENOTFOUND (server: no delivery of
//  that id is in flight), ENOMEM or the spool's failure errno such as EIO (server, ack: not
//  recorded; the message stays delivered, as before the call), ETERM.
ZQ_EXPORT int zq_queue_ack (zq_queue_t *self, const zq_msg_t *msg);
ZQ_EXPORT int zq_queue_nack (zq_queue_t *self, const zq_msg_t *msg, int64_t delay_ms);
ZQ_EXPORT int zq_queue_touch (zq_queue_t *self, const zq_msg_t *msg, int64_t extend_ms);

//  ---- queue names ---------------------------------------------------------

//  The longest name of a queue a producer may put to. Its dead-letter queue
//  is NAME + ZQ_QUEUE_DEAD_SUFFIX, up to ZQ_QUEUE_NAME_MAX + 5 bytes.
#define ZQ_QUEUE_NAME_MAX    195
#define ZQ_QUEUE_DEAD_SUFFIX ".dead"

//  The one rule for reliable queue names, used by the server, the device
//  (config and QUEUE command) and the CLI: a name is 1 to
//  ZQ_QUEUE_NAME_MAX bytes of ASCII letters, digits, '.', '_' and '-', not
//  starting or ending with '.', without "..", and not ending in ".dead".
//  NAME + ".dead" for such a NAME names NAME's dead-letter queue, which
//  may be consumed, peeked, purged and redriven, but not put to.
//  Returns 0 for a queue name, 1 for a dead-letter queue name, or -1 with
//  errno EINVAL for anything else (NULL included).
ZQ_EXPORT int zq_queue_name_check (const char *name);

//  ---- reliable server: admin ---------------------------------------------
//  Each fails with ENOTSUP on other patterns and roles, and with EINVAL
//  for a NULL or invalid queue name.

//  A queue's levels and counters (counters since the server opened).
//  Fields are never reordered or removed; new ones take reserved slots.
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

//  Copies up to max ready messages of queue name, oldest first, into
//  msgs[0..] without delivering them (the caller owns and destroys each)
//  and stores how many in *count_p. Returns 0, or -1 with errno
//  ZQ_ENOTFOUND, EINVAL, ENOTSUP, ENOMEM or the spool's errno.
ZQ_EXPORT int zq_queue_peek (zq_queue_t *self, const char *name, zq_msg_t **msgs, size_t max,
                             size_t *count_p);

//  Drops every ready and delayed message of queue name (deliveries in
//  flight are left to settle) and stores how many in *count_p (if not
//  NULL). Returns 0, or -1 with errno as zq_queue_peek.
ZQ_EXPORT int zq_queue_purge (zq_queue_t *self, const char *name, uint64_t *count_p);

//  Moves the messages waiting in NAME.dead back to queue name, with
//  attempt 0, and stores how many in *count_p (if not NULL). Returns 0,
//  or -1 with errno as zq_queue_peek (ZQ_EFULL: name's spool is full;
//  what moved before stays moved).
ZQ_EXPORT int zq_queue_redrive (zq_queue_t *self, const char *name, uint64_t *count_p);

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
