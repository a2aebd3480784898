/*  =========================================================================
    zq_rpc - the "rpc" pattern's own verbs: a server's reply and a client's
    failed-request report. Requests and replies otherwise travel through
    zq_queue_send and zq_queue_recv (zq_queue.h).
    Included by zq.h.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_RPC_H_INCLUDED
#define ZQ_RPC_H_INCLUDED

#include "zq_queue.h"

#ifdef __cplusplus
extern "C" {
#endif

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
//  with ENOTSUP: answer with zq_queue_reply. A server has no heartbeats
//  of its own unless heartbeat_ivl_ms is set: it drops a zq client whose
//  PINGs stopped (paused, host or network lost) within the TTL they
//  carry (a client that pings asks its interval and timeout together, by
//  default 1 s + 3 s; heartbeat_ttl_ms sets another, at most
//  ZQ_HEARTBEAT_TTL_MAX_MS), and, with TCP keepalive, any client whose
//  host or network was lost once its connection is idle
//  (doc/PROTOCOL.md 17.5).

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

//  Client: pops the failed-request report (despite the name, it asks
//  nothing: it takes the one request the last ZQ_ETIMEDOUT was about,
//  like a receive). After zq_queue_recv failed with ZQ_ETIMEDOUT, returns the
//  request that failed (its id says which; zq_msg_attempt, its last
//  attempt); the caller owns it and may send it again. Only the latest
//  failed request is kept: one not taken is destroyed by the next failure
//  or at close. Returns NULL with errno ZQ_ENOTFOUND if there is none, or
//  ENOTSUP if the queue is not an rpc client.
ZQ_EXPORT zq_msg_t *zq_queue_failed (zq_queue_t *self);

#ifdef __cplusplus
}
#endif

#endif
