/*  =========================================================================
    rpc_client - the client of the rpc pattern (patterns/rpc.c has the
    frames, the server and the pattern table).

    Client. zq_queue_send hands a request to a server (or holds it) and
    returns at once; many may be in flight, up to max_in_flight (then send
    fails with EAGAIN at once: only zq_queue_recv frees room).
    zq_queue_recv returns replies in the order they arrive, each under the
    id of the request it answers: zq_msg_id (reply) is that request's id
    (the reply's own wire id is not kept). Each attempt has a deadline of
    request_timeout_ms; when it passes, the request is sent again under
    the same id with attempt one higher (stats.retries), to another live
    server if there is one. When the last of 1 + retries attempts passes
    its deadline, the request has failed: zq_queue_recv returns NULL with
    errno ZQ_ETIMEDOUT (once for each failed request, stats.timeouts), and
    zq_queue_failed hands the request itself back. A reply that was
    already waiting in the socket when the failure would be reported
    still wins. Replies to requests already answered or reported failed,
    and replies to ids never sent, are dropped and counted in
    stats.dropped; a request is answered or reported failed exactly once.
    The client keeps each request until its result is returned (to resend
    it) and encodes each attempt from it, without copying the message
    (a body of ZQ_MSG_ZEROCOPY_MIN bytes or more is copied per attempt).
    A request's first attempt goes in the compact form (patterns/rpc.c)
    to a server whose replies said it takes it (or came compact), unless
    retries is 0; every other attempt goes in the classic form, which
    every server takes. A reply that does not say so, or a compact
    attempt whose deadline passed, turns the compact form off for that
    server until its connection closes: behind a proxy, servers of two
    versions cost at most one deadline per connection.

    Client routing and liveness (the zguide's Freelance pattern, with the
    transport's own signals). With several servers the client's socket is
    a ROUTER: each endpoint it connects to is one server, whose connection
    gets its own routing id (ZMQ_CONNECT_ROUTING_ID), so the client chooses
    the server of each attempt: the next live one in turn (fair spread),
    skipping one whose pipe is full, and for a retry another than the last
    if it can. With one server it is a DEALER (server 0, no routing frame
    to send or read in a round trip: libzmq's cost is per frame); the
    rules below hold the same, with that one server to choose from.
    A socket monitor reports, per endpoint, each ZMTP handshake that
    succeeded (the server is live) and each connection that closed (it is
    out): a peer killed or reset closes at once; a silent one (process
    paused, host lost, half-open TCP) is closed by ZMTP heartbeats after
    the heartbeat timeout (below). The monitor is chosen over rpc-level
    pings because it sees a close at once and puts no zq traffic on the
    wire: any ROUTER server that answers ZMTP PINGs (libzmq does) keeps
    working. Attempts held by a server that went out are sent again at
    once to a live one (stats.retries), while the request has attempts
    left, but only once no reply waits in the socket: a reply that
    arrived before the close wins, and is never lost (ZMQ_IMMEDIATE is
    off, so a closed connection keeps its pipe; with it, libzmq drops a
    connection's unread replies when it closes). A request with no
    attempts left waits out its deadline, as its server may still answer
    once back (libzmq delivers what its pipe still holds when it
    reconnects; replies to attempts answered elsewhere are dropped as
    late). With no live server, an attempt goes to one that is not, in
    turn (libzmq sends it once that one connects), and is sent again to
    the first server that becomes live if another; with every pipe full
    it waits in the client (pending). inproc connections report nothing:
    an inproc server is live until a send finds it gone. Liveness is
    looked at in zq_queue_send (at most once a millisecond),
    zq_queue_recv and zq_queue_events (at most once a millisecond: an
    empty read of the monitor costs a system call), and next_timer_ms is
    at most ZQI_RPC_MONITOR_CHECK_MS while requests wait, so that a blocking
    zq_queue_recv, and an event loop that watches only the fd, look at it
    that often.
    Closing a client drops what libzmq still holds for it (linger 0):
    attempts of requests answered already or given up by the close.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "rpc.h"

//  Sends the envelope of request as the message's last frame(s), leaving
//  request as it is. Returns 0, or -1 with errno.
static int
s_send_envelope (void *handle, const zq_msg_t *request)
{
    size_t body_size;
    zq_msg_body (request, &body_size);
    if (body_size >= ZQ_MSG_ZEROCOPY_MIN) {
        //  The two-frame form hands the body to libzmq: give it a copy.
        zq_msg_t *copy = zq_msg_dup (request);
        if (!copy)
            return zqi_fail (ENOMEM);
        int rc = zq_msg_send (&copy, handle, ZMQ_DONTWAIT);
        int saved_errno = errno;
        zq_msg_destroy (&copy);
        errno = saved_errno;
        return rc;
    }
    zmq_msg_t frame;
    if (zmq_msg_init_size (&frame, zqi_msg_wire_size (request)))
        return zqi_fail (ENOMEM);
    zqi_msg_wire_write (request, (uint8_t *)zmq_msg_data (&frame));
    if (zmq_msg_send (&frame, handle, ZMQ_DONTWAIT) == -1) {
        int saved_errno = errno;
        zmq_msg_close (&frame);
        return zqi_fail (saved_errno);
    }
    return 0;
}

//  Writes the routing id of the client's connection to server.
void
zqi_rpc_routing_id (uint32_t server, uint8_t *routing_id)
{
    routing_id[0] = ZQI_RPC_ROUTING_MARK;
    for (int octet = 1; octet < ZQI_RPC_ROUTING_ID_SIZE; octet++)
        routing_id[octet] = (uint8_t)(server >> (8 * (ZQI_RPC_ROUTING_ID_SIZE - 1 - octet)));
}

//  Sends an attempt of request to server: its routing id, then the
//  delimiter, rpc frame and envelope (classic form) or the compact frame.
//  Returns 0, or -1 with errno: EAGAIN (its connection's pipe is full, or
//  a DEALER's has none), EHOSTUNREACH (a ROUTER's connection is gone for
//  good: an inproc server that closed), ENOMEM.
static int
s_send_request (zqi_rpc_t *self, uint32_t server, const zq_msg_t *request, bool compact)
{
    uint8_t rpc_frame[ZQI_RPC_FRAME_MAX];
    size_t rpc_size =
        (size_t)(zqi_wire_command_write (rpc_frame, 2, ZQI_RPC_VERSION, ZQI_RPC_REQUEST) -
                 rpc_frame);
    //  A full pipe or (ROUTER_MANDATORY) an unknown id fails at the first
    //  frame, sending nothing: the routing id, or a DEALER's first frame.
    if (!self->dealer) {
        uint8_t routing_id[ZQI_RPC_ROUTING_ID_SIZE];
        zqi_rpc_routing_id (server, routing_id);
        if (zmq_send (self->handle, routing_id, sizeof routing_id, ZMQ_SNDMORE | ZMQ_DONTWAIT) ==
            -1)
            return -1;
    }
    int rc = compact ? zqi_rpc_send_compact (self->handle, rpc_frame, rpc_size, request)
                     : zmq_send (self->handle, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (rc < 0 && self->dealer)
        return -1; //  a DEALER's first frame: nothing was sent
    if (rc >= 0 && !compact) {
        rc = zmq_send (self->handle, rpc_frame, rpc_size, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        if (rc >= 0)
            rc = s_send_envelope (self->handle, request);
    }
    if (rc < 0) {
        //  Past the first frame: ENOMEM, or a pipe that ended meanwhile.
        //  End the message (the server counts it as malformed) so the
        //  socket stays usable; with the pipe gone, nothing more goes.
        int saved_errno = errno;
        zmq_send (self->handle, "", 0, ZMQ_DONTWAIT);
        return zqi_fail (saved_errno);
    }
    return 0;
}

//  Notes what a reply from server (ZQI_RPC_NONE: none of ours) said of the
//  compact form: it takes it, or (a classic reply without the word) not,
//  which holds until its connection closes.
static void
s_server_heard (zqi_rpc_t *self, uint32_t server, bool takes_compact)
{
    if (server != ZQI_RPC_NONE && self->servers[server].form != ZQI_RPC_FORM_CLASSIC)
        self->servers[server].form = takes_compact ? ZQI_RPC_FORM_COMPACT : ZQI_RPC_FORM_CLASSIC;
}

//  The server whose routing id frame holds (ZQI_RPC_NONE: none of ours).
static uint32_t
s_server_of (zqi_rpc_t *self, zmq_msg_t *frame)
{
    const uint8_t *data = (const uint8_t *)zmq_msg_data (frame);
    if (zmq_msg_size (frame) != ZQI_RPC_ROUTING_ID_SIZE || data[0] != ZQI_RPC_ROUTING_MARK)
        return ZQI_RPC_NONE;
    uint32_t server = 0;
    for (int octet = 1; octet < ZQI_RPC_ROUTING_ID_SIZE; octet++)
        server = (server << 8) | data[octet];
    return server < self->server_count ? server : ZQI_RPC_NONE;
}

//  ---- Client: servers and their liveness ---------------------------------

//  Marks server live or out. One that goes out takes no new request, and
//  the attempts it holds are sent again (s_reroute) once the replies
//  already received are read; one that comes lets the attempts sent to
//  servers not live go to it.
static void
s_server_set (zqi_rpc_t *self, uint32_t server, bool live)
{
    if (self->servers[server].live != live) {
        self->servers[server].live = live;
        self->live_count += live ? 1 : -1;
        self->reroute_due = true;
    }
}

//  Sends the entry's request to server if it is as live as asked and has
//  room, and records which. Returns 0, or -1.
static int
s_route_to (zqi_rpc_t *self, uint32_t index, uint32_t server, bool live)
{
    if (self->servers[server].live != live)
        return -1;
    //  The first attempt goes compact to a server that takes it; a further
    //  one classic, in case the first was refused for its form (a server
    //  of another version behind the same proxy). A request that has no
    //  further attempt never risks it.
    const zq_msg_t *request = self->entries[index].request;
    bool compact = self->servers[server].form == ZQI_RPC_FORM_COMPACT &&
                   self->entries[index].attempts == 1 && self->retries > 0 &&
                   zqi_rpc_compact_fits (request);
    if (s_send_request (self, server, request, compact)) {
        if (errno == EHOSTUNREACH)
            s_server_set (self, server, false);
        return -1;
    }
    self->entries[index].server = server;
    self->entries[index].compact = compact;
    self->next_server = (server + 1) % self->server_count;
    return 0;
}

//  Sends the entry's request to the next live server in turn that has
//  room, other than avoid unless no other can take it. With no live
//  server, to the next one in turn that is not (libzmq sends it once that
//  one connects, and s_reroute moves it if another comes first). Returns
//  0, or -1 if no server can take it now.
static int
s_route (zqi_rpc_t *self, uint32_t index, uint32_t avoid)
{
    for (int live = 1; live >= 0; live--) {
        if (live != (self->live_count > 0))
            continue;
        for (uint32_t step = 0; step < self->server_count; step++) {
            uint32_t server = (self->next_server + step) % self->server_count;
            if (server != avoid && s_route_to (self, index, server, live) == 0)
                return 0;
        }
        if (avoid < self->server_count && s_route_to (self, index, avoid, live) == 0)
            return 0;
    }
    return -1;
}

//  Takes in up to ZQI_RPC_EVENT_BURST events of the socket monitor: a connection
//  whose handshake succeeded makes its server live, one that closed (the
//  peer went away, or heartbeats found it silent) makes it out.
static void
s_monitor_read (zqi_rpc_t *self, int64_t now)
{
    self->monitor_read_ms = now;
    for (int count = 0; count < ZQI_RPC_EVENT_BURST; count++) {
        zmq_msg_t event, address;
        zmq_msg_init (&event);
        zmq_msg_init (&address);
        if (zmq_msg_recv (&event, self->monitor_handle, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&event);
            zmq_msg_close (&address);
            break;
        }
        //  Two frames: the event number (2 octets) and value, the endpoint.
        if (zmq_msg_more (&event) && zmq_msg_size (&event) >= 2 &&
            zmq_msg_recv (&address, self->monitor_handle, ZMQ_DONTWAIT) >= 0) {
            uint16_t kind;
            memcpy (&kind, zmq_msg_data (&event), sizeof kind);
            size_t size = zmq_msg_size (&address);
            for (uint32_t server = 0; server < self->server_count; server++) {
                const char *endpoint = self->servers[server].endpoint;
                if (strlen (endpoint) != size || memcmp (endpoint, zmq_msg_data (&address), size))
                    continue;
                if (kind == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
                    s_server_set (self, server, true);
                else if (kind == ZMQ_EVENT_DISCONNECTED) {
                    s_server_set (self, server, false);
                    //  The next connection may lead to a server of another
                    //  version: classic requests until its replies say
                    //  more. (Not at each handshake: the first one's event
                    //  is often read after the first reply.)
                    self->servers[server].form = ZQI_RPC_FORM_UNKNOWN;
                }
            }
        } else
            zqi_drain (self->monitor_handle);
        zmq_msg_close (&event);
        zmq_msg_close (&address);
    }
}

//  True when no reply waits to be read.
static bool
s_socket_idle (zqi_rpc_t *self)
{
    int events = 0;
    size_t size = sizeof events;
    return zmq_getsockopt (self->handle, ZMQ_EVENTS, &events, &size) == 0 && !(events & ZMQ_POLLIN);
}

//  ---- Client -------------------------------------------------------------

static void
s_pending_remove (zqi_rpc_t *self, uint32_t index)
{
    zqi_rpc_list_remove (self, &self->pending, index);
    self->entries[index].pending = false;
}

//  Starts the next attempt of the entry's request, with a deadline, to a
//  live server other than the last one if it can; with none, the attempt
//  waits for one (the pending list).
static void
s_attempt (zqi_rpc_t *self, uint32_t index, int64_t now)
{
    zqi_rpc_entry_t *entry = &self->entries[index];
    zq_msg_set_attempt (entry->request, zq_msg_attempt (entry->request) + 1);
    entry->attempts++;
    zqi_idtable_schedule (&self->table, index, now + self->request_timeout_ms);
    if (s_route (self, index, entry->server) == 0) {
        if (entry->pending)
            s_pending_remove (self, index);
        self->ctx->stats->retries++;
    } else if (!entry->pending) {
        entry->server = ZQI_RPC_NONE;
        entry->pending = true;
        zqi_rpc_list_append (self, &self->pending, index);
    }
}

//  Says (at notice level, at most once a second) that a request is sent
//  again, and why: its attempt's deadline passed, or its server went.
static void
s_log_retry (zqi_rpc_t *self, uint32_t index, int64_t now, const char *why)
{
    uint64_t skipped = 0;
    if (!zqi_log_limit_due (&self->retry_log, now, 1000, &skipped))
        return;
    char id_hex[ZQ_MSG_ID_SIZE * 2 + 1];
    zqi_log (ZQ_LOG_NOTICE, "rpc: request %s %s: retrying (attempt %u of %u)%s",
             zq_msg_id_hex (self->entries[index].request, id_hex), why,
             self->entries[index].attempts + 1, self->retries + 1,
             skipped ? " (and other requests)" : "");
}

//  Retries requests whose attempt deadline has passed, and moves those
//  out of attempts to the expired list.
static void
s_run_timers (zqi_rpc_t *self, int64_t now)
{
    while (zqi_rpc_first_due (self) && zqi_rpc_first_due (self)->deadline <= now) {
        uint32_t index = zqi_idtable_first (&self->table);
        zqi_rpc_entry_t *entry = &self->entries[index];
        if (entry->compact && entry->server != ZQI_RPC_NONE) {
            //  Unanswered: perhaps refused for its form. Classic from now.
            self->servers[entry->server].form = ZQI_RPC_FORM_CLASSIC;
            entry->compact = false;
        }
        if (self->entries[index].attempts <= self->retries) {
            char why[64];
            snprintf (why, sizeof why, "had no reply within %d ms", self->request_timeout_ms);
            s_log_retry (self, index, now, why);
            s_attempt (self, index, now);
        } else {
            zqi_idtable_unschedule (&self->table, index);
            if (self->entries[index].pending)
                s_pending_remove (self, index);
            self->entries[index].expired = true;
            zqi_rpc_list_append (self, &self->expired, index);
        }
    }
}

//  With a live server: sends again, at once, each request whose attempt
//  went to a server that is not live (it went out, or never came), while
//  it has attempts left (one with none waits out its deadline: its server
//  may still answer once it is back).
static void
s_reroute (zqi_rpc_t *self, int64_t now)
{
    self->reroute_due = false;
    for (uint32_t index = 0; index < self->capacity; index++) {
        zqi_rpc_entry_t *entry = &self->entries[index];
        if (entry->in_use && !entry->expired && !entry->pending && entry->server != ZQI_RPC_NONE &&
            !self->servers[entry->server].live && entry->attempts <= self->retries) {
            s_log_retry (self, index, now, "lost its server");
            s_attempt (self, index, now);
        }
    }
}

//  Sends the attempts that wait for a live server, oldest first, while one
//  can take them.
static void
s_flush_pending (zqi_rpc_t *self)
{
    while (self->pending.head != ZQI_RPC_NONE) {
        uint32_t index = self->pending.head;
        if (s_route (self, index, ZQI_RPC_NONE))
            break;
        s_pending_remove (self, index);
        if (self->entries[index].attempts > 1)
            self->ctx->stats->retries++;
    }
}

//  The client's own work, without waiting: liveness events, requests held
//  by a server that went out (only once socket_idle says no reply waits to
//  be read, so that replies already received win), attempts waiting for a
//  live server, deadlines. Returns true if it may have sent something.
bool
zqi_rpc_client_tend (zqi_rpc_t *self, int64_t now, bool socket_idle)
{
    bool sent = false;
    //  At most once a millisecond: an empty read costs a system call.
    if (now != self->monitor_read_ms)
        s_monitor_read (self, now);
    if (self->reroute_due && self->live_count && socket_idle) {
        s_reroute (self, now);
        sent = true;
    }
    if (self->pending.head != ZQI_RPC_NONE) {
        s_flush_pending (self);
        sent = true;
    }
    if (zqi_rpc_first_due (self) && zqi_rpc_first_due (self)->deadline <= now) {
        s_run_timers (self, now);
        sent = true;
    }
    return sent;
}

//  Forgets a request: out of the heap or expired list, out of the hash.
//  Returns the kept request, which the caller now owns.
static zq_msg_t *
s_client_forget (zqi_rpc_t *self, uint32_t index)
{
    zqi_rpc_entry_t *entry = &self->entries[index];
    if (entry->expired)
        zqi_rpc_list_remove (self, &self->expired, index);
    else {
        zqi_idtable_unschedule (&self->table, index);
        if (entry->pending)
            s_pending_remove (self, index);
    }
    zq_msg_t *request = entry->request;
    entry->request = NULL;
    zqi_rpc_entry_release (self, index);
    return request;
}

int
zqi_rpc_client_send (zqi_rpc_t *self, zq_msg_t **msg_p)
{
    int64_t now = zqi_clock_mono (self->ctx->clock);
    if (now != self->monitor_read_ms ||
        (zqi_rpc_first_due (self) && zqi_rpc_first_due (self)->deadline <= now))
        zqi_rpc_client_tend (self, now, !self->reroute_due || s_socket_idle (self));
    if (self->count >= self->max_entries)
        return zqi_fail (EAGAIN);
    const uint8_t *id = zq_msg_id (*msg_p);
    if (zqi_rpc_find (self, id) != ZQI_RPC_NONE)
        return zqi_fail (EALREADY);
    uint32_t index = zqi_rpc_entry_add (self, id);
    if (index == ZQI_RPC_NONE)
        return -1;
    zqi_rpc_entry_t *entry = &self->entries[index];
    entry->request = *msg_p;
    entry->attempts = 1;
    zqi_idtable_schedule (&self->table, index, now + self->request_timeout_ms);
    if (s_route (self, index, ZQI_RPC_NONE)) {
        entry->pending = true;
        zqi_rpc_list_append (self, &self->pending, index);
    }
    *msg_p = NULL;
    return 0;
}

//  True when the client has work that a receive does once it finds no
//  reply waiting (liveness events to act on, requests to send again or
//  still to send) or a failure to report: a receive must not start by
//  waiting then. Takes in the liveness events, at most once a millisecond.
static bool
s_work_due (zqi_rpc_t *self)
{
    int64_t now = zqi_clock_mono (self->ctx->clock);
    if (now != self->monitor_read_ms)
        s_monitor_read (self, now);
    return self->reroute_due || self->pending.head != ZQI_RPC_NONE ||
           self->expired.head != ZQI_RPC_NONE ||
           (zqi_rpc_first_due (self) && zqi_rpc_first_due (self)->deadline <= now);
}

//  flags (ZMQ_DONTWAIT or 0) are for the first frame: a blocking wait lasts
//  up to ZMQ_RCVTIMEO, which the core keeps under next_timer_ms, so that
//  liveness is looked at every ZQI_RPC_MONITOR_CHECK_MS while requests wait.
//  The core may call it blocking without a non-blocking attempt first
//  (recv_seldom_ready): with work due, the first frame is not waited for.
zq_msg_t *
zqi_rpc_client_recv (zqi_rpc_t *self, int flags)
{
    if (flags == 0 && s_work_due (self))
        flags = ZMQ_DONTWAIT;
    bool socket_idle = false;
    for (int late = 0; late < ZQI_RPC_LATE_BURST; late++) {
        //  The server's routing id (ROUTER only), then the delimiter
        //  (classic form) or the compact frame, the message's last.
        zmq_msg_t frame;
        zmq_msg_init (&frame);
        if (zmq_msg_recv (&frame, self->handle, late ? ZMQ_DONTWAIT : flags) < 0) {
            int saved_errno = errno;
            zmq_msg_close (&frame);
            if (saved_errno == EAGAIN) {
                socket_idle = true;
                break;
            }
            errno = saved_errno;
            return NULL;
        }
        uint32_t server = 0;
        bool good = true;
        if (!self->dealer) {
            server = s_server_of (self, &frame);
            good = zmq_msg_more (&frame) && zmq_msg_recv (&frame, self->handle, ZMQ_DONTWAIT) >= 0;
        }
        uint8_t id[ZQ_MSG_ID_SIZE];
        zq_msg_t *reply = NULL;
        if (good && zmq_msg_size (&frame) > 0 && !zmq_msg_more (&frame)) {
            reply = zqi_rpc_from_compact (self, &frame, ZQI_RPC_REPLY, id);
            if (!reply)
                return NULL;
            s_server_heard (self, server, true);
        } else {
            good = good && zmq_msg_size (&frame) == 0 && zmq_msg_more (&frame);
            zmq_msg_close (&frame);
            if (!good) {
                zqi_drain (self->handle);
                errno = ZQ_EPROTO;
                return NULL;
            }
            uint64_t takes;
            reply = zqi_rpc_recv_rest (self, ZQI_RPC_REPLY, id, &takes);
            if (!reply)
                return NULL;
            s_server_heard (self, server, (takes & ZQI_RPC_TAKES_COMPACT) != 0);
        }
        uint32_t index = zqi_rpc_find (self, id);
        if (index == ZQI_RPC_NONE) {
            //  Late (answered or failed already), duplicate, or unknown.
            zq_msg_destroy (&reply);
            self->ctx->stats->dropped++;
            continue;
        }
        zq_msg_t *request = s_client_forget (self, index);
        zq_msg_destroy (&request);
        zq_msg_set_id (reply, id);
        return reply;
    }
    zqi_rpc_client_tend (self, zqi_clock_mono (self->ctx->clock), socket_idle);
    if (self->expired.head != ZQI_RPC_NONE) {
        zq_msg_destroy (&self->failed);
        self->failed = s_client_forget (self, self->expired.head);
        self->ctx->stats->timeouts++;
        errno = ZQ_ETIMEDOUT;
        return NULL;
    }
    errno = EAGAIN;
    return NULL;
}
