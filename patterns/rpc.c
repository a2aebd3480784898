/*  =========================================================================
    rpc - request-reply between clients (DEALER with one server, ROUTER
    with several) and servers (ROUTER),
    with correlation ids, a deadline per attempt, retries and failover.

    Frames (doc/PROTOCOL.md, "rpc"), after any routing frames, in the
    classic form:
        [empty delimiter] [rpc frame] [envelope]
    or the compact form (17.7), one frame without a delimiter:
        [rpc frame + envelope in the one-frame form]
    The rpc frame is msgpack: [1, 0] for a request, [1, 1, request-id]
    for a reply. A request's id is its envelope id (zq_msg_id), known
    before it is sent; a reply names the request it answers in its rpc
    frame and keeps its own envelope id on the wire. A server takes both
    forms, answers each request in its own form (classic when the reply's
    body is too large for one frame) and says in each classic reply, as
    [1, 1, request-id, 1], that it takes compact requests; libzmq's cost
    is per frame, and the compact form saves two each way.

    Server. zq_queue_recv returns each request as it arrives (every
    attempt of it: a retry may reach the same server twice). zq_queue_reply
    answers it: the server remembers the route of each request it received
    and has not answered, keyed by request id (the latest attempt's route
    wins), at most max_in_flight of them; beyond that the oldest route is
    forgotten. Replying removes the route, so a second reply to the same
    request fails with ZQ_ENOTFOUND, as does a reply to a request whose
    route was forgotten. A request never answered keeps its route until
    it is pushed out. ZMQ_ROUTER_MANDATORY is on: a reply to a client that
    is gone fails with EHOSTUNREACH and is counted in stats.dropped; one to
    a client whose pipe is full (it does not read) waits asleep, up to the
    reply's timeout, for the socket's signal that a pipe drained. Up to
    ZQI_RPC_MAX_HOPS routing frames are accepted before the delimiter, so zq
    clients and servers may talk through ROUTER/DEALER proxies.

    Heartbeats: unless the options set heartbeat_ivl_ms, a client pings
    each server every ZQI_RPC_HEARTBEAT_IVL_MS and drops a connection
    silent for ZQI_RPC_HEARTBEAT_TIMEOUT_MS (or heartbeat_timeout_ms if
    set), so a silent server is out within 4 s: under the default request
    timeout (5 s), so the failover comes before the retry would. Three
    missed pings (the zguide's Paranoid Pirate liveness) ride out a few
    lost TCP segments (retransmits from 200 ms, doubling) and short
    stalls; a server busy in its own code is never taken for silent,
    since libzmq's I/O thread answers PINGs. Each PING of a client (its
    default heartbeats or those the options set) asks the server to drop
    the client in turn when nothing at all comes from it for the interval
    and the timeout together (ZMQ_HEARTBEAT_TTL, at most
    ZQ_HEARTBEAT_TTL_MAX_MS, unless heartbeat_ttl_ms is set): a paused zq
    client is out of its servers within 4 s of its last PING. A client that
    pings has no receive high-water mark unless rcvhwm is set, and then
    one above 0 is refused (src/zq_socket.c, s_connect_check).
    A server has no heartbeat timer of its own (unless heartbeat_ivl_ms
    is set): with a timer pending, libzmq's I/O thread arms one at every
    wait for the socket, which on a virtual machine cost about 3% of an
    rpc round trip (zq bench rpc on one CPU, 2 vCPU KVM guest: ratio
    1.095-1.102 with it, 1.061-1.076 without). Its clients' TTL drops a
    silent zq client; TCP keepalive (ZQI_RPC_KEEPALIVE_*, kernel timers,
    nothing in libzmq) drops a connection whose host or network was lost,
    whatever the client, once idle: a client that sets no TTL and whose
    process is paused keeps its connection (and a pipe of at most sndhwm
    replies) until it goes on or dies.

    The client is described in patterns/rpc_client.c.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "rpc.h"

//  ---- Entries -------------------------------------------------------------

static const zqi_idtable_layout_t s_layout =
    ZQI_IDTABLE_LAYOUT (zqi_rpc_entry_t, deadline, heap_index, next, in_use, key_hash);

//  Adds an entry for id, with no server, list or deadline. Returns its
//  index, or ZQI_RPC_NONE with errno ENOMEM. The caller has checked count <
//  max_entries.
uint32_t
zqi_rpc_entry_add (zqi_rpc_t *self, const uint8_t *id)
{
    uint32_t index = zqi_idtable_add (&self->table, id);
    if (index == ZQI_RPC_NONE) {
        errno = ENOMEM;
        return ZQI_RPC_NONE;
    }
    zqi_rpc_entry_t *entry = &self->entries[index];
    entry->prev = entry->server = ZQI_RPC_NONE;
    entry->compact = false;
    return index;
}

//  Removes an entry (and its deadline) and frees its route; the caller
//  handles the request and the lists.
void
zqi_rpc_entry_release (zqi_rpc_t *self, uint32_t index)
{
    zqi_rpc_entry_t *entry = &self->entries[index];
    free (entry->route_heap);
    entry->route_heap = NULL;
    zqi_idtable_remove (&self->table, index);
}

//  ---- Lists: expired requests (client), route ages (server) -------------

void
zqi_rpc_list_append (zqi_rpc_t *self, zqi_rpc_list_t *list, uint32_t index)
{
    zqi_rpc_entry_t *entry = &self->entries[index];
    entry->prev = list->tail;
    entry->next = ZQI_RPC_NONE;
    if (list->tail != ZQI_RPC_NONE)
        self->entries[list->tail].next = index;
    else
        list->head = index;
    list->tail = index;
}

void
zqi_rpc_list_remove (zqi_rpc_t *self, zqi_rpc_list_t *list, uint32_t index)
{
    zqi_rpc_entry_t *entry = &self->entries[index];
    if (entry->prev != ZQI_RPC_NONE)
        self->entries[entry->prev].next = entry->next;
    else
        list->head = entry->next;
    if (entry->next != ZQI_RPC_NONE)
        self->entries[entry->next].prev = entry->prev;
    else
        list->tail = entry->prev;
    entry->prev = entry->next = ZQI_RPC_NONE;
}

//  ---- Frames -------------------------------------------------------------

//  Parses the rpc frame at the cursor: stores its kind and, for a reply,
//  a pointer to the request id inside the frame and what its element 3
//  says of the forms the server takes (0 without one, or when it is not
//  an integer). Leaves the cursor after the frame's last element. Returns
//  0, or -1 with errno ZQ_EPROTO, ZQ_EVERSION (version other than 1) or
//  ZQ_EDEPTH.
static int
s_parse_rpc_frame (zqi_cursor_t *cursor, uint64_t *kind_p, const uint8_t **id_p, uint64_t *takes_p)
{
    uint32_t elements;
    if (zqi_wire_command_read (cursor, ZQI_RPC_VERSION, &elements, kind_p))
        return -1;
    uint32_t used = 2;
    *takes_p = 0;
    if (*kind_p == ZQI_RPC_REPLY) {
        uint32_t id_size;
        if (elements < 3 || zqi_mp_read_bin (cursor, id_p, &id_size) || id_size != ZQ_MSG_ID_SIZE)
            return zqi_fail (ZQ_EPROTO);
        used = 3;
        zqi_cursor_t element = *cursor;
        if (elements > 3 && zqi_mp_read_uint (&element, takes_p) == 0) {
            *cursor = element;
            used = 4;
        }
    } else if (*kind_p != ZQI_RPC_REQUEST)
        return zqi_fail (ZQ_EPROTO);
    for (uint32_t index = used; index < elements; index++)
        if (zqi_mp_skip (cursor, ZQ_MSG_MAX_DEPTH))
            return -1;
    return 0;
}

//  Checks a parsed rpc frame's kind, and copies a reply's request id into
//  id. Returns 0, or -1 with errno ZQ_EPROTO.
static int
s_check_kind (uint64_t kind, uint64_t expected_kind, const uint8_t *request_id, uint8_t *id)
{
    if (kind != expected_kind)
        return zqi_fail (ZQ_EPROTO);
    if (request_id)
        memcpy (id, request_id, ZQ_MSG_ID_SIZE);
    return 0;
}

//  Receives the rpc frame (the delimiter already read) of a message of
//  the expected kind, then its envelope. For a reply, copies the request
//  id into id and stores in *takes_p what the reply frame says of the
//  forms the server takes. Returns the message, or NULL with errno
//  (EAGAIN only for the first frame; bad input with every frame read).
zq_msg_t *
zqi_rpc_recv_rest (zqi_rpc_t *self, uint64_t expected_kind, uint8_t *id, uint64_t *takes_p)
{
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    zq_msg_t *msg = NULL;
    if (zmq_msg_recv (&frame, self->handle, ZMQ_DONTWAIT) < 0)
        goto done;
    if (!zmq_msg_more (&frame)) {
        errno = ZQ_EPROTO;
        goto done;
    }
    const uint8_t *data = (const uint8_t *)zmq_msg_data (&frame);
    zqi_cursor_t cursor = {data, data + zmq_msg_size (&frame)};
    uint64_t kind;
    const uint8_t *request_id = NULL;
    if (s_parse_rpc_frame (&cursor, &kind, &request_id, takes_p))
        goto drain;
    if (cursor.pos != cursor.end) {
        errno = ZQ_EPROTO;
        goto drain;
    }
    if (s_check_kind (kind, expected_kind, request_id, id))
        goto drain;
    msg = zq_msg_recv (self->handle, ZMQ_DONTWAIT, self->ctx->max_message_bytes);
    goto done;
drain:
    zqi_drain (self->handle);
done:;
    int saved_errno = errno;
    zmq_msg_close (&frame);
    errno = saved_errno;
    return msg;
}

//  Decodes a compact frame (the last of its message, received whole) of
//  the expected kind: its rpc frame, then the envelope that follows it in
//  the same frame. For a reply, copies the request id into id. Takes the
//  frame's content as zqi_msg_from_frame_at does, and closes the frame.
//  Returns the message, or NULL with errno.
zq_msg_t *
zqi_rpc_from_compact (zqi_rpc_t *self, zmq_msg_t *frame, uint64_t expected_kind, uint8_t *id)
{
    const uint8_t *data = (const uint8_t *)zmq_msg_data (frame);
    zqi_cursor_t cursor = {data, data + zmq_msg_size (frame)};
    uint64_t kind, takes;
    const uint8_t *request_id = NULL;
    zq_msg_t *msg = NULL;
    if (s_parse_rpc_frame (&cursor, &kind, &request_id, &takes) == 0 &&
        s_check_kind (kind, expected_kind, request_id, id) == 0) {
        if (cursor.pos == cursor.end)
            errno = ZQ_EPROTO; //  no envelope
        else
            msg = zqi_msg_from_frame_at (frame, (size_t)(cursor.pos - data),
                                         self->ctx->max_message_bytes);
    }
    int saved_errno = errno;
    zmq_msg_close (frame);
    errno = saved_errno;
    return msg;
}

bool
zqi_rpc_compact_fits (const zq_msg_t *msg)
{
    size_t body_size;
    zq_msg_body (msg, &body_size);
    return body_size < ZQ_MSG_ZEROCOPY_MIN;
}

//  Sends, as the message's last frame, the compact frame of msg: rpc_frame
//  (rpc_size octets) then msg's envelope (zqi_rpc_compact_fits), leaving
//  msg as it is. Returns 0, or -1 with errno (ENOMEM, or from libzmq).
int
zqi_rpc_send_compact (void *handle, const uint8_t *rpc_frame, size_t rpc_size, const zq_msg_t *msg)
{
    zmq_msg_t frame;
    if (zmq_msg_init_size (&frame, rpc_size + zqi_msg_wire_size (msg)))
        return zqi_fail (ENOMEM);
    uint8_t *data = (uint8_t *)zmq_msg_data (&frame);
    memcpy (data, rpc_frame, rpc_size);
    zqi_msg_wire_write (msg, data + rpc_size);
    if (zmq_msg_send (&frame, handle, ZMQ_DONTWAIT) == -1) {
        int saved_errno = errno;
        zmq_msg_close (&frame);
        return zqi_fail (saved_errno);
    }
    return 0;
}

//  ---- Server -------------------------------------------------------------

//  flags (ZMQ_DONTWAIT or 0) are for the first frame.
static zq_msg_t *
s_server_recv (zqi_rpc_t *self, int flags)
{
    //  Routing frames up to the empty delimiter (the classic form) or up
    //  to the compact frame, the last of the message.
    uint32_t route_size = 0;
    zq_msg_t *request = NULL;
    bool compact = false;
    for (int hops = 0;; hops++) {
        zmq_msg_t frame;
        zmq_msg_init (&frame);
        if (zmq_msg_recv (&frame, self->handle, hops ? ZMQ_DONTWAIT : flags) < 0) {
            int saved_errno = errno;
            zmq_msg_close (&frame);
            errno = hops ? ZQ_EPROTO : saved_errno; //  mid-message: cannot be
            return NULL;
        }
        size_t size = zmq_msg_size (&frame);
        bool more = zmq_msg_more (&frame);
        if (!more && size > 0 && hops > 0) {
            request = zqi_rpc_from_compact (self, &frame, ZQI_RPC_REQUEST, NULL);
            if (!request)
                return NULL;
            compact = true;
            break;
        }
        bool fits = hops < ZQI_RPC_MAX_HOPS && size <= 255;
        if (fits && size > 0) {
            self->route[route_size++] = (uint8_t)size;
            memcpy (self->route + route_size, zmq_msg_data (&frame), size);
            route_size += (uint32_t)size;
        }
        zmq_msg_close (&frame);
        if (!more || !fits || (size == 0 && hops == 0)) {
            if (more)
                zqi_drain (self->handle);
            errno = ZQ_EPROTO;
            return NULL;
        }
        if (size == 0)
            break;
    }
    if (!compact) {
        uint64_t takes;
        request = zqi_rpc_recv_rest (self, ZQI_RPC_REQUEST, NULL, &takes);
        if (!request)
            return NULL;
    }
    const uint8_t *id = zq_msg_id (request);
    uint32_t index = zqi_rpc_find (self, id);
    if (index != ZQI_RPC_NONE)
        zqi_rpc_list_remove (self, &self->age, index); //  a retry: its route wins
    else {
        if (self->count >= self->max_entries) {
            uint32_t oldest = self->age.head;
            zqi_rpc_list_remove (self, &self->age, oldest);
            zqi_rpc_entry_release (self, oldest);
        }
        index = zqi_rpc_entry_add (self, id);
        if (index == ZQI_RPC_NONE) {
            zq_msg_destroy (&request);
            return NULL;
        }
    }
    zqi_rpc_entry_t *entry = &self->entries[index];
    //  (inline routes are reached through the entry, as the slab may move)
    free (entry->route_heap);
    entry->route_heap = route_size > ZQI_RPC_ROUTE_INLINE ? (uint8_t *)malloc (route_size) : NULL;
    uint8_t *route = route_size > ZQI_RPC_ROUTE_INLINE ? entry->route_heap : entry->route_inline;
    if (!route) {
        zqi_rpc_entry_release (self, index);
        zq_msg_destroy (&request);
        errno = ENOMEM;
        return NULL;
    }
    memcpy (route, self->route, route_size);
    entry->route_size = route_size;
    entry->compact = compact;
    zqi_rpc_list_append (self, &self->age, index);
    return request;
}

static int
s_server_reply (zqi_rpc_t *self, const zq_msg_t *request, zq_msg_t **reply_p)
{
    const uint8_t *id = zq_msg_id (request);
    uint32_t index = zqi_rpc_find (self, id);
    if (index == ZQI_RPC_NONE)
        return zqi_fail (ZQ_ENOTFOUND);
    zqi_rpc_entry_t *entry = &self->entries[index];
    const uint8_t *hop = entry->route_heap ? entry->route_heap : entry->route_inline;
    const uint8_t *end = hop + entry->route_size;
    //  The first routing frame picks the client; ROUTER_MANDATORY makes
    //  an unknown one EHOSTUNREACH and a full pipe EAGAIN.
    if (zmq_send (self->handle, hop + 1, hop[0], ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1) {
        if (errno == EHOSTUNREACH) {
            zqi_rpc_list_remove (self, &self->age, index);
            zqi_rpc_entry_release (self, index);
            self->ctx->stats->dropped++;
            errno = EHOSTUNREACH;
        }
        return -1;
    }
    int rc = 0;
    for (hop += 1 + hop[0]; rc >= 0 && hop < end; hop += 1 + hop[0])
        rc = zmq_send (self->handle, hop + 1, hop[0], ZMQ_SNDMORE | ZMQ_DONTWAIT);
    //  A compact request gets a compact reply when it fits; a classic one
    //  gets a classic reply, which says the server takes the compact form.
    bool compact = entry->compact && zqi_rpc_compact_fits (*reply_p);
    uint8_t rpc_frame[ZQI_RPC_FRAME_MAX];
    uint8_t *end_of_frame =
        zqi_wire_command_write (rpc_frame, compact ? 3 : 4, ZQI_RPC_VERSION, ZQI_RPC_REPLY);
    end_of_frame = zqi_mp_write_bin_header (end_of_frame, ZQ_MSG_ID_SIZE);
    memcpy (end_of_frame, id, ZQ_MSG_ID_SIZE);
    end_of_frame += ZQ_MSG_ID_SIZE;
    if (!compact)
        end_of_frame = zqi_mp_write_uint (end_of_frame, ZQI_RPC_TAKES_COMPACT);
    size_t rpc_size = (size_t)(end_of_frame - rpc_frame);
    if (rc >= 0 && !compact)
        rc = zmq_send (self->handle, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (rc >= 0 && !compact)
        rc = zmq_send (self->handle, rpc_frame, rpc_size, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    //  Past the first frame the route is spent, whatever happens next.
    zqi_rpc_list_remove (self, &self->age, index);
    zqi_rpc_entry_release (self, index);
    if (rc >= 0 && compact) {
        rc = zqi_rpc_send_compact (self->handle, rpc_frame, rpc_size, *reply_p);
        if (rc == 0)
            zq_msg_destroy (reply_p);
    } else if (rc >= 0)
        rc = zq_msg_send (reply_p, self->handle, ZMQ_DONTWAIT);
    if (rc < 0) {
        //  Only ENOMEM gets here: end the message (the client counts it as
        //  malformed) so the socket stays usable.
        int saved_errno = errno;
        zmq_send (self->handle, "", 0, ZMQ_DONTWAIT);
        return zqi_fail (saved_errno);
    }
    return 0;
}

//  ---- The pattern --------------------------------------------------------

//  Liveness (see the top of this file): a server's TCP keepalive; a
//  client's default heartbeats (heartbeat_ivl_ms not set) and, whenever it
//  pings, the TTL it asks of its servers. Returns 0, or -1 with errno.
static int
s_liveness (zqi_rpc_t *self, const zq_options_t *options)
{
    if (!self->is_client) {
        const int keepalive[] = {ZMQ_TCP_KEEPALIVE, ZMQ_TCP_KEEPALIVE_IDLE, ZMQ_TCP_KEEPALIVE_INTVL,
                                 ZMQ_TCP_KEEPALIVE_CNT};
        const int values[] = {1, ZQI_RPC_KEEPALIVE_IDLE_S, ZQI_RPC_KEEPALIVE_INTVL_S,
                              ZQI_RPC_KEEPALIVE_CNT};
        for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
            if (zmq_setsockopt (self->handle, keepalive[i], &values[i], sizeof values[i]))
                return -1;
        return 0;
    }
    bool defaults = !zq_options_is_set (options, "heartbeat_ivl_ms");
    int64_t ivl =
        defaults ? ZQI_RPC_HEARTBEAT_IVL_MS : zqi_option_int (options, "heartbeat_ivl_ms");
    int64_t timeout = zq_options_is_set (options, "heartbeat_timeout_ms")
                          ? zqi_option_int (options, "heartbeat_timeout_ms")
                      : defaults ? ZQI_RPC_HEARTBEAT_TIMEOUT_MS
                                 : 0;
    if (defaults) {
        int ivl_int = (int)ivl, timeout_int = (int)timeout;
        if (zmq_setsockopt (self->handle, ZMQ_HEARTBEAT_IVL, &ivl_int, sizeof ivl_int) ||
            (timeout > 0 && zmq_setsockopt (self->handle, ZMQ_HEARTBEAT_TIMEOUT, &timeout_int,
                                            sizeof timeout_int)))
            return -1;
    }
    //  A client that pings keeps no receive high-water mark (see
    //  s_connect_check in src/zq_socket.c); what a well-behaved server
    //  sends is bounded by max_in_flight and retries.
    if (zqi_pattern_rcvhwm_for_pings (self->ctx))
        return -1;
    if (ivl <= 0 || zq_options_is_set (options, "heartbeat_ttl_ms"))
        return 0;
    //  libzmq takes a timeout of 0 as the interval.
    int64_t ttl = ivl + (timeout > 0 ? timeout : ivl);
    int ttl_ms = ttl > ZQ_HEARTBEAT_TTL_MAX_MS ? ZQ_HEARTBEAT_TTL_MAX_MS : (int)ttl;
    return zmq_setsockopt (self->handle, ZMQ_HEARTBEAT_TTL, &ttl_ms, sizeof ttl_ms);
}

static int
s_open (void *state, zq_pattern_ctx_t *ctx)
{
    zqi_rpc_t *self = (zqi_rpc_t *)state;
    self->ctx = ctx;
    self->handle = ctx->handle;
    self->is_client = ctx->role == ZQ_CLIENT;
    self->request_timeout_ms = zqi_option_int (ctx->options, "request_timeout_ms");
    self->retries = (uint32_t)zqi_option_int (ctx->options, "retries");
    self->max_entries = (uint32_t)zqi_option_int (ctx->options, "max_in_flight");
    zqi_idtable_init (&self->table, &s_layout, self->max_entries);
    self->expired.head = self->expired.tail = ZQI_RPC_NONE;
    self->pending.head = self->pending.tail = ZQI_RPC_NONE;
    self->age.head = self->age.tail = ZQI_RPC_NONE;
    //  A client of one server has a DEALER socket: there is no server to
    //  choose, and no routing frame to send and read in each round trip.
    self->dealer = self->is_client && zsock_type (ctx->sock) == ZMQ_DEALER;
    int on = 1;
    if (!self->dealer && zmq_setsockopt (self->handle, ZMQ_ROUTER_MANDATORY, &on, sizeof on))
        return -1;
    //  A compact frame holds the rpc frame beside the envelope, which may
    //  be max_message_bytes on its own (zqi_rpc_from_compact bounds it).
    int64_t frame_max = (int64_t)ctx->max_message_bytes + ZQI_RPC_FRAME_SLACK;
    if (zmq_setsockopt (self->handle, ZMQ_MAXMSGSIZE, &frame_max, sizeof frame_max))
        return -1;
    if (s_liveness (self, ctx->options))
        return -1;
    if (self->is_client) {
        //  The monitor reports each connection's handshake and close; its
        //  pipe has no high-water mark, so libzmq never waits to report.
        char endpoint[64];
        snprintf (endpoint, sizeof endpoint, "inproc://zq-rpc-monitor-%p-%016llx", (void *)self,
                  (unsigned long long)zqi_idhash_seed (&self->monitor));
        self->monitor = zsock_new (ZMQ_PAIR);
        if (!self->monitor)
            return zqi_fail (ENOMEM);
        self->monitor_handle = zsock_resolve (self->monitor);
        zsock_set_sndhwm (self->monitor, 0);
        zsock_set_rcvhwm (self->monitor, 0);
        zsock_set_linger (self->monitor, 0);
        if (zmq_socket_monitor (self->handle, endpoint,
                                ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED) ||
            zmq_connect (self->monitor_handle, endpoint)) {
            int saved_errno = errno;
            zmq_socket_monitor (self->handle, NULL, 0);
            zsock_destroy (&self->monitor);
            return zqi_fail (saved_errno);
        }
    }
    return 0;
}

//  Client: each endpoint is a server, whose connection gets a routing id
//  of its own. tcp and ipc servers are live once their handshake
//  succeeded; inproc ones (which report nothing) from the start.
static int
s_attaching (void *state, const char *endpoint, bool bind)
{
    zqi_rpc_t *self = (zqi_rpc_t *)state;
    if (!self->is_client)
        return 0;
    if (bind)
        return zqi_fail (EINVAL); //  servers it cannot route to would connect
    if (self->server_count >= ZQI_RPC_NONE - 1)
        return zqi_fail (EINVAL);
    zqi_rpc_server_t *servers = (zqi_rpc_server_t *)realloc (
        self->servers, (size_t)(self->server_count + 1) * sizeof (zqi_rpc_server_t));
    if (!servers)
        return zqi_fail (ENOMEM);
    self->servers = servers;
    uint32_t server = self->server_count;
    uint8_t routing_id[ZQI_RPC_ROUTING_ID_SIZE];
    zqi_rpc_routing_id (server, routing_id);
    servers[server].endpoint = strdup (endpoint);
    if (!servers[server].endpoint)
        return zqi_fail (ENOMEM);
    if (!self->dealer &&
        zmq_setsockopt (self->handle, ZMQ_CONNECT_ROUTING_ID, routing_id, sizeof routing_id)) {
        free (servers[server].endpoint);
        return -1;
    }
    servers[server].live = strncmp (endpoint, "inproc://", 9) == 0;
    servers[server].form = ZQI_RPC_FORM_UNKNOWN;
    self->live_count += servers[server].live;
    self->server_count++;
    return 0;
}

static size_t
s_close (void *state)
{
    zqi_rpc_t *self = (zqi_rpc_t *)state;
    if (self->is_client) {
        //  What libzmq still holds are attempts of requests answered
        //  already or given up here (counted below): none is worth a wait.
        int zero = 0;
        zmq_setsockopt (self->handle, ZMQ_LINGER, &zero, sizeof zero);
        if (self->monitor) {
            zmq_socket_monitor (self->handle, NULL, 0);
            zsock_destroy (&self->monitor);
        }
        for (uint32_t server = 0; server < self->server_count; server++)
            free (self->servers[server].endpoint);
        free (self->servers);
        self->servers = NULL;
        self->server_count = 0;
    }
    size_t unsent = 0;
    for (uint32_t index = 0; index < self->capacity; index++) {
        zqi_rpc_entry_t *entry = &self->entries[index];
        if (entry->request) {
            zq_msg_destroy (&entry->request);
            unsent++;
        }
        free (entry->route_heap);
    }
    zq_msg_destroy (&self->failed);
    zqi_idtable_free (&self->table);
    return unsent;
}

static int
s_send (void *state, zq_msg_t **msg_p)
{
    zqi_rpc_t *self = (zqi_rpc_t *)state;
    if (!self->is_client)
        return zqi_fail (ENOTSUP);
    return zqi_rpc_client_send (self, msg_p);
}

static zq_msg_t *
s_recv (void *state)
{
    zqi_rpc_t *self = (zqi_rpc_t *)state;
    return self->is_client ? zqi_rpc_client_recv (self, ZMQ_DONTWAIT)
                           : s_server_recv (self, ZMQ_DONTWAIT);
}

static zq_msg_t *
s_recv_blocking (void *state)
{
    zqi_rpc_t *self = (zqi_rpc_t *)state;
    return self->is_client ? zqi_rpc_client_recv (self, 0) : s_server_recv (self, 0);
}

static int
s_reply (void *state, const zq_msg_t *request, zq_msg_t **reply_p)
{
    zqi_rpc_t *self = (zqi_rpc_t *)state;
    if (self->is_client)
        return zqi_fail (ENOTSUP);
    return s_server_reply (self, request, reply_p);
}

//  A server's reply that found its client's pipe full waits for the
//  socket's signal (that pipe drained, among others), not for POLLOUT,
//  which the ROUTER reports while any client has room: waiting for it
//  spun until the reply's timeout.
static int
s_wait (void *state, short what, long timeout_ms)
{
    zqi_rpc_t *self = (zqi_rpc_t *)state;
    if (!self->is_client && what == ZMQ_POLLOUT) {
        int events;
        return zqi_pattern_poll_signal (self->ctx, self->handle, timeout_ms, &events);
    }
    return zqi_pattern_poll (self->ctx, self->handle, what, timeout_ms);
}

static int
s_send_wait (void *state)
{
    zqi_rpc_t *self = (zqi_rpc_t *)state;
    //  A full window only empties through zq_queue_recv: waiting is useless.
    return self->is_client && self->count >= self->max_entries ? 0 : ZMQ_POLLOUT;
}

static int
s_events (void *state, int zmq_events)
{
    zqi_rpc_t *self = (zqi_rpc_t *)state;
    if (!self->is_client)
        return zmq_events;
    if (zqi_rpc_client_tend (self, zqi_clock_mono (self->ctx->clock), !(zmq_events & ZMQ_POLLIN))) {
        //  Sending may have taken in a reply's arrival: look again.
        size_t size = sizeof zmq_events;
        if (zmq_getsockopt (self->handle, ZMQ_EVENTS, &zmq_events, &size))
            return -1;
    }
    if (self->expired.head != ZQI_RPC_NONE)
        zmq_events |= ZMQ_POLLIN;
    //  Requests never wait for the socket: only the window limits them.
    if (self->count < self->max_entries)
        zmq_events |= ZMQ_POLLOUT;
    else
        zmq_events &= ~ZMQ_POLLOUT;
    return zmq_events;
}

static int64_t
s_next_timer_ms (void *state)
{
    zqi_rpc_t *self = (zqi_rpc_t *)state;
    if (!zqi_rpc_first_due (self))
        return -1;
    int64_t now = zqi_clock_mono (self->ctx->clock);
    int64_t wait_ms = zqi_rpc_first_due (self)->deadline - now;
    //  While requests wait, liveness events are looked at regularly even
    //  by an event loop that only watches the socket's fd.
    int64_t check_ms = self->monitor_read_ms + ZQI_RPC_MONITOR_CHECK_MS - now;
    if (check_ms < wait_ms)
        wait_ms = check_ms;
    return wait_ms > 0 ? wait_ms : 0;
}

static zq_msg_t *
s_failed (void *state)
{
    zqi_rpc_t *self = (zqi_rpc_t *)state;
    zq_msg_t *request = self->failed;
    self->failed = NULL;
    if (!request)
        errno = self->is_client ? ZQ_ENOTFOUND : ENOTSUP;
    return request;
}

//  The pattern's own settings (zq_options.h describes them). A reliable
//  producer's memory outbox is bounded by max_in_flight too.
static const zq_option_info_t s_options[] = {
    {"request_timeout_ms", ZQ_OPTION_INT, 5000, NULL, 1, INT_MAX,
     "rpc: deadline of one request attempt", NULL},
    {"retries", ZQ_OPTION_INT, 3, NULL, 0, 1000,
     "rpc: attempts after the first before a request fails", NULL},
    {"max_in_flight", ZQ_OPTION_INT, 1000, NULL, 1, 1000000,
     "rpc: requests a client awaits at once; routes a server keeps for unanswered requests;"
     " reliable: unconfirmed messages a producer keeps in memory (unset: 4096,"
     " ZQ_PRODUCER_WINDOW_DEFAULT)",
     NULL},
    {NULL, ZQ_OPTION_INT, 0, NULL, 0, 0, NULL, NULL},
};

const zq_pattern_t zqi_pattern_rpc = {
    .name = "rpc",
    .state_size = sizeof (zqi_rpc_t),
    .roles =
        {
            [ZQ_CLIENT] = {.socket_type = ZMQ_DEALER,
                           .binds_by_default = false,
                           .several_socket_type = ZMQ_ROUTER},
            [ZQ_SERVER] = {.socket_type = ZMQ_ROUTER, .binds_by_default = true},
        },
    .open = s_open,
    .attaching = s_attaching,
    .close = s_close,
    .send = s_send,
    .recv = s_recv,
    .recv_blocking = s_recv_blocking,
    .recv_seldom_ready = true,
    .events = s_events,
    .next_timer_ms = s_next_timer_ms,
    .send_wait = s_send_wait,
    .wait = s_wait,
    .options = s_options,
};

//  ---- The pattern's own verbs (include/zq_rpc.h) ----------------------------

int
zq_queue_reply (zq_queue_t *queue, const zq_msg_t *request, zq_msg_t **reply_p, int timeout_ms)
{
    if (!queue || !request || !reply_p || !*reply_p)
        return zqi_fail (EINVAL);
    if (!zqi_queue_is_open (queue))
        return zqi_fail (ENOTSOCK);
    if (!zqi_queue_pattern_state (queue, &zqi_pattern_rpc))
        return -1;
    return zqi_queue_send_with (queue, s_reply, request, reply_p, timeout_ms);
}

zq_msg_t *
zq_queue_failed (zq_queue_t *queue)
{
    void *state = zqi_queue_pattern_state (queue, &zqi_pattern_rpc);
    return state ? s_failed (state) : NULL;
}
