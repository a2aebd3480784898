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
        "rpc"       ZQ_CLIENT (DEALER; ROUTER with several servers)
                    ZQ_SERVER (ROUTER)
                    Clients send requests round-robin among the live
                    servers they connect to, with deadlines, retries and
                    failover; servers reply to the client that asked
                    (zq_rpc.h).
        "reliable"  ZQ_PRODUCER (DEALER) ZQ_CONSUMER (DEALER) ZQ_SERVER (ROUTER)
                    At-least-once: the server holds named queues (in
                    spools), producers get a confirm once a message is
                    stored, consumers ack what they processed; unacked
                    messages are delivered again (zq_reliable.h).
    The frames each pattern puts on the wire are in doc/PROTOCOL.md. This
    header holds what every pattern shares; a pattern's own verbs are in
    zq_pubsub.h, zq_rpc.h and zq_reliable.h (zq.h includes them all).

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
    //  reliable producer on several servers: PUTs given to another server
    //  because the one they were sent to stopped answering (disconnected,
    //  pings unanswered, or no confirm within confirm_timeout_ms) before
    //  it confirmed them. Each may be stored twice, if the first server
    //  had stored it (zq_queue(3), "Several servers").
    uint64_t moved;
    //  reliable server: PUT ids its dedupe window forgot before
    //  dedupe_window_ms had passed (the oldest, to stay within dedupe_max
    //  or for want of memory to grow), or never remembered for want of
    //  memory. A producer's resend of one of them is stored again, where
    //  it would have been confirmed as a duplicate: while this grows,
    //  the window is shorter than dedupe_window_ms (at dedupe_max, raise
    //  it; the log says which). 0 with a JetStream store, whose streams
    //  keep their own dedupe.
    uint64_t forgotten;
    uint64_t reserved[6];
} zq_queue_stats_t;

//  Opens a queue of pattern ("pipeline", "pubsub", "rpc") in role on
//  endpoints, with options (NULL = all defaults; the options are copied).
//  endpoints uses CZMQ's syntax: a comma-separated list of tcp://, ipc://
//  or inproc:// endpoints, each prefixed '@' to bind or '>' to connect;
//  without a prefix, the role's default applies (see zq_role_t). Binding
//  "tcp://127.0.0.1:*" picks a free port: read it with zq_queue_endpoint.
//  It is the first free one from a port drawn at random (getrandom) in
//  49152 to 65535 (CZMQ's own "*" takes the lowest free one), so the port
//  of a queue that just closed or died, in this process or another, is
//  not handed at once to the next one that binds "*", with the dead one's
//  clients. "*[first-last]" still takes the lowest free port of its
//  range; "!" is CZMQ's, drawn from random(), which CZMQ seeds with the
//  time in seconds (processes started in the same second draw alike).
//  Connections are made in the background; a connect succeeds before any
//  peer exists, and lost connections are remade every reconnect_ms. A
//  reliable producer or consumer on several endpoints talks to each
//  server on its own (zq_queue(3), "Several servers").
//  Returns the queue, or NULL with errno: EINVAL (unknown pattern, a role
//  the pattern lacks, NULL or malformed endpoints, an empty item, an
//  endpoint to bind for an rpc client, which only connects, or for a
//  reliable producer or consumer on several endpoints, or more than 16
//  of them), or the
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
//    Linger covers libzmq's queues, not what the receiver has yet to read:
//    when the socket closes or the sending process ends while a tcp or ipc
//    receiver is behind (its rcvhwm full), the last messages already taken
//    from the queue for the connection can be lost (seen with plain libzmq
//    4.3.4 sockets too). A process that must not lose them keeps the queue
//    open until its consumer says it has them.
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
//  here; a reliable producer sends the few PUTs it holds back while many
//  await their confirms (zq_reliable.h) and returns 0 at once (its outbox
//  sends the others as the window, a server or room allows). Call it
//  before a producer goes quiet (stops sending for a while without
//  closing), as one calls fflush on a stdio stream. Waits up to
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
//      zq_queue_next_timer_ms gives for the reliable pattern's timers, and
//      on a reliable server poll zq_queue_store_fd too when it gives one
//      (zq_reliable.h): readable, it is worked like the socket.
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
//      signal again for messages already waiting. Timers and a reliable
//      server's zq_queue_store_fd are kept as in (a).

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

//  Returns the endpoints the queue bound, resolved ("tcp://127.0.0.1:51234"
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

//  ---- Choosing what to receive ----------------------------------------
//  pubsub subscribers choose subjects by prefix (zq_pubsub.h); reliable
//  consumers, and servers consuming locally, choose queues by name
//  (zq_reliable.h). Other patterns and roles fail with ENOTSUP.

//  pubsub subscriber: receives messages whose subject starts with prefix
//  (NULL is ""); subscribing twice to one prefix needs two unsubscribes.
//  reliable consumer, or server consuming locally: consumes the queue
//  named prefix (zq_reliable.h). Returns 0, or -1 with errno ENOTSUP (not
//  a subscriber, consumer or server), ZQ_ETOOBIG (prefix longer than
//  ZQ_MSG_MAX_STRING), or the pattern's error (zq_reliable.h).
ZQ_EXPORT int zq_queue_subscribe (zq_queue_t *self, const char *prefix);

//  Removes one subscription made with zq_queue_subscribe.
//  Returns 0, or -1 with errno ENOTSUP or ZQ_ETOOBIG.
ZQ_EXPORT int zq_queue_unsubscribe (zq_queue_t *self, const char *prefix);

//  ---- Timers ---------------------------------------------------------------

//  Returns the milliseconds until the queue needs a call for its own timers
//  (an rpc client's next attempt deadline): an event loop calls
//  zq_queue_recv (self, 0) then, even if its fd stays quiet. 0 means now,
//  -1 no timer (and always for patterns without timers, or once closed).
ZQ_EXPORT int64_t zq_queue_next_timer_ms (zq_queue_t *self);

//  ---- Queue names ---------------------------------------------------------
//  (reliable queues, and every queue of a device)

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

//  ---- Each pattern's own verbs ----------------------------------------------
//  are in its own header, which zq.h includes: zq_pubsub.h (subscriber
//  counts), zq_rpc.h (zq_queue_reply, zq_queue_failed), zq_reliable.h
//  (post, confirm reports, ack/nack/touch, admin). Called on a
//  queue of another pattern, each fails with ENOTSUP.

#ifdef __cplusplus
}
#endif

#endif
