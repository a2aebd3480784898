/*  =========================================================================
    rpc - request-reply between clients and servers (both ROUTER),
    with correlation ids, a deadline per attempt, retries and failover.

    Frames (doc/PROTOCOL.md, "rpc"), after any routing frames:
        [empty delimiter] [rpc frame] [envelope]
    The rpc frame is msgpack: [1, 0] for a request, [1, 1, request-id]
    for a reply. A request's id is its envelope id (zq_msg_id), known
    before it is sent; a reply names the request it answers in its rpc
    frame and keeps its own envelope id on the wire.

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

    Client routing and liveness (the zguide's Freelance pattern, with the
    transport's own signals). The client's socket is a ROUTER: each
    endpoint it connects to is one server, whose connection gets its own
    routing id (ZMQ_CONNECT_ROUTING_ID), so the client chooses the server
    of each attempt: the next live one in turn (fair spread), skipping one
    whose pipe is full, and for a retry another than the last if it can.
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
    at most S_MONITOR_CHECK_MS while requests wait, so that a blocking
    zq_queue_recv, and an event loop that watches only the fd, look at it
    that often.
    Closing a client drops what libzmq still holds for it (linger 0):
    attempts of requests answered already or given up by the close.

    Server. zq_queue_recv returns each request as it arrives (every
    attempt of it: a retry may reach the same server twice). zq_queue_reply
    answers it: the server remembers the route of each request it received
    and has not answered, keyed by request id (the latest attempt's route
    wins), at most max_in_flight of them; beyond that the oldest route is
    forgotten. Replying removes the route, so a second reply to the same
    request fails with ZQ_ENOTFOUND, as does a reply to a request whose
    route was forgotten. A request never answered keeps its route until
    it is pushed out. ZMQ_ROUTER_MANDATORY is on: a reply to a client that
    is gone fails with EHOSTUNREACH and is counted in stats.dropped. Up to
    S_MAX_HOPS routing frames are accepted before the delimiter, so zq
    clients and servers may talk through ROUTER/DEALER proxies.

    Heartbeats: unless the options set heartbeat_ivl_ms, both roles ping
    every S_HEARTBEAT_IVL_MS and drop a connection silent for
    S_HEARTBEAT_TIMEOUT_MS (or heartbeat_timeout_ms if set), so a silent
    server is out within 4 s: under the default request timeout (5 s),
    so the failover comes before the retry would. Three missed pings
    (the zguide's Paranoid Pirate liveness) ride out a few lost TCP
    segments (retransmits from 200 ms, doubling) and short stalls; a
    server busy in its own code is never taken for silent, since libzmq's
    I/O thread answers PINGs.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_pattern.h"
//  The hash of a 16-byte id is a few instructions when inlined.
#define XXH_INLINE_ALL
#include <xxhash.h>
#include <sys/random.h>

#define S_RPC_VERSION          1
#define S_KIND_REQUEST         0
#define S_KIND_REPLY           1
#define S_RPC_ELEMENTS_MAX     16
#define S_MAX_HOPS             8
#define S_ROUTE_INLINE         24
#define S_HEARTBEAT_IVL_MS     1000
#define S_HEARTBEAT_TIMEOUT_MS 3000
//  Late replies one client receive skips before it looks at its timers.
#define S_LATE_BURST 64
#define S_NONE       UINT32_MAX
//  Client: the routing id it gives its connection to server N is
//  S_ROUTING_MARK then N in 4 octets, big-endian (libzmq keeps ids that
//  start with 0 for its own).
#define S_ROUTING_MARK    'r'
#define S_ROUTING_ID_SIZE 5
//  Client: liveness events taken in per look at the monitor, and how long
//  an event loop that only watches the fd may go without a look while
//  requests wait (next_timer_ms).
#define S_EVENT_BURST      64
#define S_MONITOR_CHECK_MS 25

//  One request in flight (client) or one remembered route (server).
typedef struct {
    uint8_t id[ZQ_MSG_ID_SIZE];
    bool in_use;
    bool expired;      //  client: every attempt failed, not yet reported
    bool pending;      //  client: the attempt waits for a live server
    uint32_t attempts; //  client: attempts made so far
    uint32_t heap_index;
    uint32_t server;     //  client: server of the current attempt (S_NONE: none yet)
    uint32_t prev, next; //  expired or pending list (client), age list (server), free list
    int64_t deadline;    //  client: end of the current attempt (ctx->clock)
    zq_msg_t *request;   //  client: kept for retries
    uint8_t *route_heap; //  server: the route when longer than route_inline
    uint32_t route_size; //  server: routing frames as [size][bytes]...
    uint8_t route_inline[S_ROUTE_INLINE];
} s_entry_t;

typedef struct {
    uint32_t head, tail;
} s_list_t;

//  Client: one server, that is one endpoint it connected to.
typedef struct {
    char *endpoint; //  as connected: the monitor's events name it so
    bool live;      //  takes new requests
} s_server_t;

typedef struct {
    zq_pattern_ctx_t *ctx;
    void *handle;
    bool is_client;
    int request_timeout_ms;
    uint32_t retries;
    uint32_t max_entries; //  max_in_flight
    //  Entries, by index; a hash of their ids (slot = index + 1, 0 free).
    s_entry_t *entries;
    uint32_t capacity;
    uint32_t count;
    uint32_t free_head;
    uint32_t *slots;
    uint32_t slot_mask;
    uint64_t seed; //  of the id hash: this table's own, so ids cannot be chosen to collide
    //  Client: deadlines (a binary min-heap of indexes) and expired list.
    uint32_t *heap;
    uint32_t heap_size;
    s_list_t expired;
    s_list_t pending; //  attempts waiting for a live server with room
    zq_msg_t *failed; //  the last request reported failed, not yet taken
    //  Client: its servers, in the order connected; the next in turn; the
    //  socket monitor that reports their connections, and when it was
    //  last read (ctx->clock, as every time here).
    s_server_t *servers;
    uint32_t server_count;
    uint32_t next_server;
    uint32_t live_count;
    bool reroute_due; //  a server went out, or came: see s_reroute
    zsock_t *monitor;
    void *monitor_handle;
    int64_t monitor_read_ms;
    zqi_log_limit_t retry_log; //  client: "retrying" lines, at most one a second
    //  Server: routes from oldest to newest; scratch for one route.
    s_list_t age;
    uint8_t route[S_MAX_HOPS * 256];
} s_rpc_t;

//  ---- Entries: a slab, a hash on the id, a free list ---------------------

static inline uint64_t
s_id_hash (uint64_t seed, const uint8_t *id)
{
    return XXH3_64bits_withSeed (id, ZQ_MSG_ID_SIZE, seed);
}

uint64_t
zqi_rpc_id_hash (uint64_t seed, const uint8_t *id)
{
    return s_id_hash (seed, id);
}

uint64_t
zqi_rpc_id_seed (const void *table)
{
    uint64_t seed = 0;
    if (getrandom (&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed) {
        //  No entropy yet (early boot): what differs between tables.
        static uint64_t tables = 0;
        seed = XXH3_64bits_withSeed (&table, sizeof table,
                                     (uint64_t)zclock_usecs () + ++tables * 0x9E3779B97F4A7C15ull);
    }
    return seed;
}

static inline uint32_t
s_home (const s_rpc_t *self, const uint8_t *id)
{
    return (uint32_t)s_id_hash (self->seed, id) & self->slot_mask;
}

//  Returns the slot holding id, or the empty slot where it would go.
static uint32_t
s_slot_of (const s_rpc_t *self, const uint8_t *id)
{
    uint32_t slot = s_home (self, id);
    while (self->slots[slot] &&
           memcmp (self->entries[self->slots[slot] - 1].id, id, ZQ_MSG_ID_SIZE) != 0)
        slot = (slot + 1) & self->slot_mask;
    return slot;
}

static uint32_t
s_find (const s_rpc_t *self, const uint8_t *id)
{
    if (!self->slots)
        return S_NONE;
    uint32_t slot = s_slot_of (self, id);
    return self->slots[slot] ? self->slots[slot] - 1 : S_NONE;
}

//  Removes the entry's id from the hash (linear probing, backward shift).
static void
s_hash_remove (s_rpc_t *self, uint32_t index)
{
    uint32_t hole = s_slot_of (self, self->entries[index].id);
    ZQ_ASSERT (self->slots[hole] == index + 1);
    uint32_t next = hole;
    while (true) {
        next = (next + 1) & self->slot_mask;
        if (!self->slots[next])
            break;
        uint32_t home = s_home (self, self->entries[self->slots[next] - 1].id);
        //  Move it back unless its home lies cyclically in (hole, next].
        bool stays = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next);
        if (!stays) {
            self->slots[hole] = self->slots[next];
            hole = next;
        }
    }
    self->slots[hole] = 0;
}

//  Doubles the slab (up to max_entries) and rebuilds the hash.
static int
s_grow (s_rpc_t *self)
{
    uint32_t capacity = self->capacity ? self->capacity * 2 : 64;
    if (capacity > self->max_entries)
        capacity = self->max_entries;
    uint32_t slot_count = 1;
    while (slot_count < capacity * 2)
        slot_count *= 2;
    s_entry_t *entries =
        (s_entry_t *)realloc (self->entries, (size_t)capacity * sizeof (s_entry_t));
    if (!entries)
        return zqi_fail (ENOMEM);
    self->entries = entries;
    uint32_t *heap = (uint32_t *)realloc (self->heap, (size_t)capacity * sizeof (uint32_t));
    if (!heap)
        return zqi_fail (ENOMEM);
    self->heap = heap;
    uint32_t *slots = (uint32_t *)calloc (slot_count, sizeof (uint32_t));
    if (!slots)
        return zqi_fail (ENOMEM);
    free (self->slots);
    self->slots = slots;
    self->slot_mask = slot_count - 1;
    for (uint32_t index = 0; index < self->capacity; index++)
        if (entries[index].in_use)
            self->slots[s_slot_of (self, entries[index].id)] = index + 1;
    //  The new entries join the free list.
    for (uint32_t index = capacity; index-- > self->capacity;) {
        memset (&entries[index], 0, sizeof (s_entry_t));
        entries[index].next = self->free_head;
        self->free_head = index;
    }
    self->capacity = capacity;
    return 0;
}

//  Takes a free entry (not yet in the hash). Returns its index, or S_NONE
//  with errno ENOMEM. The caller has checked count < max_entries.
static uint32_t
s_entry_take (s_rpc_t *self)
{
    if (self->free_head == S_NONE && s_grow (self))
        return S_NONE;
    uint32_t index = self->free_head;
    s_entry_t *entry = &self->entries[index];
    self->free_head = entry->next;
    memset (entry, 0, sizeof *entry);
    entry->prev = entry->next = entry->heap_index = entry->server = S_NONE;
    return index;
}

//  Puts id in the hash for a taken entry and counts it.
static void
s_entry_commit (s_rpc_t *self, uint32_t index, const uint8_t *id)
{
    s_entry_t *entry = &self->entries[index];
    memcpy (entry->id, id, ZQ_MSG_ID_SIZE);
    entry->in_use = true;
    self->slots[s_slot_of (self, id)] = index + 1;
    self->count++;
}

//  Returns a taken entry to the free list; removes it from the hash first
//  if it was committed. Frees the route; the caller handles the request.
static void
s_entry_release (s_rpc_t *self, uint32_t index)
{
    s_entry_t *entry = &self->entries[index];
    if (entry->in_use) {
        s_hash_remove (self, index);
        self->count--;
    }
    free (entry->route_heap);
    entry->route_heap = NULL;
    entry->in_use = false;
    entry->next = self->free_head;
    self->free_head = index;
}

//  ---- Lists: expired requests (client), route ages (server) -------------

static void
s_list_append (s_rpc_t *self, s_list_t *list, uint32_t index)
{
    s_entry_t *entry = &self->entries[index];
    entry->prev = list->tail;
    entry->next = S_NONE;
    if (list->tail != S_NONE)
        self->entries[list->tail].next = index;
    else
        list->head = index;
    list->tail = index;
}

static void
s_list_remove (s_rpc_t *self, s_list_t *list, uint32_t index)
{
    s_entry_t *entry = &self->entries[index];
    if (entry->prev != S_NONE)
        self->entries[entry->prev].next = entry->next;
    else
        list->head = entry->next;
    if (entry->next != S_NONE)
        self->entries[entry->next].prev = entry->prev;
    else
        list->tail = entry->prev;
    entry->prev = entry->next = S_NONE;
}

//  ---- Deadlines: a binary min-heap of entry indexes ---------------------

static inline bool
s_earlier (const s_rpc_t *self, uint32_t a, uint32_t b)
{
    return self->entries[self->heap[a]].deadline < self->entries[self->heap[b]].deadline;
}

static inline void
s_heap_swap (s_rpc_t *self, uint32_t a, uint32_t b)
{
    uint32_t index = self->heap[a];
    self->heap[a] = self->heap[b];
    self->heap[b] = index;
    self->entries[self->heap[a]].heap_index = a;
    self->entries[self->heap[b]].heap_index = b;
}

static void
s_heap_up (s_rpc_t *self, uint32_t position)
{
    while (position > 0) {
        uint32_t parent = (position - 1) / 2;
        if (!s_earlier (self, position, parent))
            break;
        s_heap_swap (self, position, parent);
        position = parent;
    }
}

static void
s_heap_down (s_rpc_t *self, uint32_t position)
{
    while (true) {
        uint32_t smallest = position;
        uint32_t left = 2 * position + 1, right = left + 1;
        if (left < self->heap_size && s_earlier (self, left, smallest))
            smallest = left;
        if (right < self->heap_size && s_earlier (self, right, smallest))
            smallest = right;
        if (smallest == position)
            break;
        s_heap_swap (self, position, smallest);
        position = smallest;
    }
}

static void
s_heap_push (s_rpc_t *self, uint32_t index)
{
    uint32_t position = self->heap_size++;
    self->heap[position] = index;
    self->entries[index].heap_index = position;
    s_heap_up (self, position);
}

static void
s_heap_remove (s_rpc_t *self, uint32_t index)
{
    uint32_t position = self->entries[index].heap_index;
    ZQ_ASSERT (position < self->heap_size && self->heap[position] == index);
    uint32_t last = --self->heap_size;
    if (position != last) {
        s_heap_swap (self, position, last);
        s_heap_down (self, position);
        s_heap_up (self, position);
    }
    self->entries[index].heap_index = S_NONE;
}

//  ---- Frames -------------------------------------------------------------

//  Parses an rpc frame: stores its kind and, for a reply, a pointer to the
//  request id inside data. Returns 0, or -1 with errno ZQ_EPROTO,
//  ZQ_EVERSION (version other than 1) or ZQ_EDEPTH.
static int
s_parse_rpc_frame (const uint8_t *data, size_t size, uint64_t *kind_p, const uint8_t **id_p)
{
    zqi_cursor_t cursor = {data, data + size};
    uint32_t elements;
    uint64_t version;
    if (zqi_mp_read_array (&cursor, &elements) || elements == 0 ||
        zqi_mp_read_uint (&cursor, &version))
        return zqi_fail (ZQ_EPROTO);
    if (version != S_RPC_VERSION)
        return zqi_fail (ZQ_EVERSION);
    if (elements < 2 || elements > S_RPC_ELEMENTS_MAX || zqi_mp_read_uint (&cursor, kind_p))
        return zqi_fail (ZQ_EPROTO);
    uint32_t used = 2;
    if (*kind_p == S_KIND_REPLY) {
        uint32_t id_size;
        if (elements < 3 || zqi_mp_read_bin (&cursor, id_p, &id_size) || id_size != ZQ_MSG_ID_SIZE)
            return zqi_fail (ZQ_EPROTO);
        used = 3;
    } else if (*kind_p != S_KIND_REQUEST)
        return zqi_fail (ZQ_EPROTO);
    for (uint32_t index = used; index < elements; index++)
        if (zqi_mp_skip (&cursor, ZQ_MSG_MAX_DEPTH))
            return -1;
    return cursor.pos == cursor.end ? 0 : zqi_fail (ZQ_EPROTO);
}

//  Receives the rpc frame (the delimiter already read) of a message of
//  the expected kind, then its envelope. For a reply, copies the request
//  id into id. Returns the message, or NULL with errno (EAGAIN only for
//  the first frame; bad input with every frame read).
static zq_msg_t *
s_recv_rest (s_rpc_t *self, uint64_t expected_kind, uint8_t *id)
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
    uint64_t kind;
    const uint8_t *request_id = NULL;
    if (s_parse_rpc_frame ((const uint8_t *)zmq_msg_data (&frame), zmq_msg_size (&frame), &kind,
                           &request_id))
        goto drain;
    if (kind != expected_kind) {
        errno = ZQ_EPROTO;
        goto drain;
    }
    if (request_id)
        memcpy (id, request_id, ZQ_MSG_ID_SIZE);
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
static void
s_routing_id (uint32_t server, uint8_t *routing_id)
{
    routing_id[0] = S_ROUTING_MARK;
    for (int octet = 1; octet < S_ROUTING_ID_SIZE; octet++)
        routing_id[octet] = (uint8_t)(server >> (8 * (S_ROUTING_ID_SIZE - 1 - octet)));
}

//  Sends an attempt of request to server: its routing id, delimiter, rpc
//  frame, then the envelope. Returns 0, or -1 with errno: EAGAIN (its
//  connection's pipe is full), EHOSTUNREACH (its connection is gone for
//  good: an inproc server that closed), ENOMEM.
static int
s_send_request (s_rpc_t *self, uint32_t server, const zq_msg_t *request)
{
    static const uint8_t rpc_frame[] = {0x92, S_RPC_VERSION, S_KIND_REQUEST};
    uint8_t routing_id[S_ROUTING_ID_SIZE];
    s_routing_id (server, routing_id);
    //  ROUTER_MANDATORY: a full pipe or an unknown id fails here, sending
    //  nothing; once the first frame is out, the rest cannot.
    if (zmq_send (self->handle, routing_id, sizeof routing_id, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1)
        return -1;
    int rc = zmq_send (self->handle, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (rc >= 0)
        rc = zmq_send (self->handle, rpc_frame, sizeof rpc_frame, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (rc >= 0)
        rc = s_send_envelope (self->handle, request);
    if (rc < 0) {
        //  Only ENOMEM gets here: end the message (the server counts it as
        //  malformed) so the socket stays usable.
        int saved_errno = errno;
        zmq_send (self->handle, "", 0, ZMQ_DONTWAIT);
        return zqi_fail (saved_errno);
    }
    return 0;
}

//  ---- Client: servers and their liveness ---------------------------------

//  Marks server live or out. One that goes out takes no new request, and
//  the attempts it holds are sent again (s_reroute) once the replies
//  already received are read; one that comes lets the attempts sent to
//  servers not live go to it.
static void
s_server_set (s_rpc_t *self, uint32_t server, bool live)
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
s_route_to (s_rpc_t *self, uint32_t index, uint32_t server, bool live)
{
    if (self->servers[server].live != live)
        return -1;
    if (s_send_request (self, server, self->entries[index].request)) {
        if (errno == EHOSTUNREACH)
            s_server_set (self, server, false);
        return -1;
    }
    self->entries[index].server = server;
    self->next_server = (server + 1) % self->server_count;
    return 0;
}

//  Sends the entry's request to the next live server in turn that has
//  room, other than avoid unless no other can take it. With no live
//  server, to the next one in turn that is not (libzmq sends it once that
//  one connects, and s_reroute moves it if another comes first). Returns
//  0, or -1 if no server can take it now.
static int
s_route (s_rpc_t *self, uint32_t index, uint32_t avoid)
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

//  Takes in up to S_EVENT_BURST events of the socket monitor: a connection
//  whose handshake succeeded makes its server live, one that closed (the
//  peer went away, or heartbeats found it silent) makes it out.
static void
s_monitor_read (s_rpc_t *self, int64_t now)
{
    self->monitor_read_ms = now;
    for (int count = 0; count < S_EVENT_BURST; count++) {
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
                else if (kind == ZMQ_EVENT_DISCONNECTED)
                    s_server_set (self, server, false);
            }
        } else
            zqi_drain (self->monitor_handle);
        zmq_msg_close (&event);
        zmq_msg_close (&address);
    }
}

//  True when no reply waits to be read.
static bool
s_socket_idle (s_rpc_t *self)
{
    int events = 0;
    size_t size = sizeof events;
    return zmq_getsockopt (self->handle, ZMQ_EVENTS, &events, &size) == 0 && !(events & ZMQ_POLLIN);
}

//  ---- Client -------------------------------------------------------------

static void
s_pending_remove (s_rpc_t *self, uint32_t index)
{
    s_list_remove (self, &self->pending, index);
    self->entries[index].pending = false;
}

//  Starts the next attempt of the entry's request, with a deadline, to a
//  live server other than the last one if it can; with none, the attempt
//  waits for one (the pending list).
static void
s_attempt (s_rpc_t *self, uint32_t index, int64_t now)
{
    s_entry_t *entry = &self->entries[index];
    zq_msg_set_attempt (entry->request, zq_msg_attempt (entry->request) + 1);
    entry->attempts++;
    entry->deadline = now + self->request_timeout_ms;
    s_heap_down (self, entry->heap_index);
    if (s_route (self, index, entry->server) == 0) {
        if (entry->pending)
            s_pending_remove (self, index);
        self->ctx->stats->retries++;
    } else if (!entry->pending) {
        entry->server = S_NONE;
        entry->pending = true;
        s_list_append (self, &self->pending, index);
    }
}

//  Says (at notice level, at most once a second) that a request is sent
//  again, and why: its attempt's deadline passed, or its server went.
static void
s_log_retry (s_rpc_t *self, uint32_t index, int64_t now, const char *why)
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
s_run_timers (s_rpc_t *self, int64_t now)
{
    while (self->heap_size && self->entries[self->heap[0]].deadline <= now) {
        uint32_t index = self->heap[0];
        if (self->entries[index].attempts <= self->retries) {
            char why[64];
            snprintf (why, sizeof why, "had no reply within %d ms", self->request_timeout_ms);
            s_log_retry (self, index, now, why);
            s_attempt (self, index, now);
        } else {
            s_heap_remove (self, index);
            if (self->entries[index].pending)
                s_pending_remove (self, index);
            self->entries[index].expired = true;
            s_list_append (self, &self->expired, index);
        }
    }
}

//  With a live server: sends again, at once, each request whose attempt
//  went to a server that is not live (it went out, or never came), while
//  it has attempts left (one with none waits out its deadline: its server
//  may still answer once it is back).
static void
s_reroute (s_rpc_t *self, int64_t now)
{
    self->reroute_due = false;
    for (uint32_t index = 0; index < self->capacity; index++) {
        s_entry_t *entry = &self->entries[index];
        if (entry->in_use && !entry->expired && !entry->pending && entry->server != S_NONE &&
            !self->servers[entry->server].live && entry->attempts <= self->retries) {
            s_log_retry (self, index, now, "lost its server");
            s_attempt (self, index, now);
        }
    }
}

//  Sends the attempts that wait for a live server, oldest first, while one
//  can take them.
static void
s_flush_pending (s_rpc_t *self)
{
    while (self->pending.head != S_NONE) {
        uint32_t index = self->pending.head;
        if (s_route (self, index, S_NONE))
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
static bool
s_client_tend (s_rpc_t *self, int64_t now, bool socket_idle)
{
    bool sent = false;
    //  At most once a millisecond: an empty read costs a system call.
    if (now != self->monitor_read_ms)
        s_monitor_read (self, now);
    if (self->reroute_due && self->live_count && socket_idle) {
        s_reroute (self, now);
        sent = true;
    }
    if (self->pending.head != S_NONE) {
        s_flush_pending (self);
        sent = true;
    }
    if (self->heap_size && self->entries[self->heap[0]].deadline <= now) {
        s_run_timers (self, now);
        sent = true;
    }
    return sent;
}

//  Forgets a request: out of the heap or expired list, out of the hash.
//  Returns the kept request, which the caller now owns.
static zq_msg_t *
s_client_forget (s_rpc_t *self, uint32_t index)
{
    s_entry_t *entry = &self->entries[index];
    if (entry->expired)
        s_list_remove (self, &self->expired, index);
    else {
        s_heap_remove (self, index);
        if (entry->pending)
            s_pending_remove (self, index);
    }
    zq_msg_t *request = entry->request;
    entry->request = NULL;
    s_entry_release (self, index);
    return request;
}

static int
s_client_send (s_rpc_t *self, zq_msg_t **msg_p)
{
    int64_t now = zqi_clock_mono (self->ctx->clock);
    if (now != self->monitor_read_ms ||
        (self->heap_size && self->entries[self->heap[0]].deadline <= now))
        s_client_tend (self, now, !self->reroute_due || s_socket_idle (self));
    if (self->count >= self->max_entries)
        return zqi_fail (EAGAIN);
    const uint8_t *id = zq_msg_id (*msg_p);
    if (s_find (self, id) != S_NONE)
        return zqi_fail (EALREADY);
    uint32_t index = s_entry_take (self);
    if (index == S_NONE)
        return -1;
    s_entry_commit (self, index, id);
    s_entry_t *entry = &self->entries[index];
    entry->request = *msg_p;
    entry->attempts = 1;
    entry->deadline = now + self->request_timeout_ms;
    s_heap_push (self, index);
    if (s_route (self, index, S_NONE)) {
        entry->pending = true;
        s_list_append (self, &self->pending, index);
    }
    *msg_p = NULL;
    return 0;
}

//  flags (ZMQ_DONTWAIT or 0) are for the first frame: a blocking wait lasts
//  up to ZMQ_RCVTIMEO, which the core keeps under next_timer_ms, so that
//  liveness is looked at every S_MONITOR_CHECK_MS while requests wait.
static zq_msg_t *
s_client_recv (s_rpc_t *self, int flags)
{
    bool socket_idle = false;
    for (int late = 0; late < S_LATE_BURST; late++) {
        //  The server's routing id (ROUTER), then the delimiter.
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
        bool good = zmq_msg_more (&frame);
        if (good && zmq_msg_recv (&frame, self->handle, ZMQ_DONTWAIT) < 0)
            good = false;
        good = good && zmq_msg_size (&frame) == 0 && zmq_msg_more (&frame);
        zmq_msg_close (&frame);
        if (!good) {
            zqi_drain (self->handle);
            errno = ZQ_EPROTO;
            return NULL;
        }
        uint8_t id[ZQ_MSG_ID_SIZE];
        zq_msg_t *reply = s_recv_rest (self, S_KIND_REPLY, id);
        if (!reply)
            return NULL;
        uint32_t index = s_find (self, id);
        if (index == S_NONE) {
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
    s_client_tend (self, zqi_clock_mono (self->ctx->clock), socket_idle);
    if (self->expired.head != S_NONE) {
        zq_msg_destroy (&self->failed);
        self->failed = s_client_forget (self, self->expired.head);
        self->ctx->stats->timeouts++;
        errno = ZQ_ETIMEDOUT;
        return NULL;
    }
    errno = EAGAIN;
    return NULL;
}

//  ---- Server -------------------------------------------------------------

//  flags (ZMQ_DONTWAIT or 0) are for the first frame.
static zq_msg_t *
s_server_recv (s_rpc_t *self, int flags)
{
    //  Routing frames up to the empty delimiter.
    uint32_t route_size = 0;
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
        bool fits = hops < S_MAX_HOPS && size <= 255;
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
    zq_msg_t *request = s_recv_rest (self, S_KIND_REQUEST, NULL);
    if (!request)
        return NULL;
    const uint8_t *id = zq_msg_id (request);
    uint32_t index = s_find (self, id);
    if (index != S_NONE)
        s_list_remove (self, &self->age, index); //  a retry: its route wins
    else {
        if (self->count >= self->max_entries) {
            uint32_t oldest = self->age.head;
            s_list_remove (self, &self->age, oldest);
            s_entry_release (self, oldest);
        }
        index = s_entry_take (self);
        if (index == S_NONE) {
            zq_msg_destroy (&request);
            return NULL;
        }
        s_entry_commit (self, index, id);
    }
    s_entry_t *entry = &self->entries[index];
    //  (inline routes are reached through the entry, as the slab may move)
    free (entry->route_heap);
    entry->route_heap = route_size > S_ROUTE_INLINE ? (uint8_t *)malloc (route_size) : NULL;
    uint8_t *route = route_size > S_ROUTE_INLINE ? entry->route_heap : entry->route_inline;
    if (!route) {
        s_entry_release (self, index);
        zq_msg_destroy (&request);
        errno = ENOMEM;
        return NULL;
    }
    memcpy (route, self->route, route_size);
    entry->route_size = route_size;
    s_list_append (self, &self->age, index);
    return request;
}

static int
s_server_reply (s_rpc_t *self, const zq_msg_t *request, zq_msg_t **reply_p)
{
    const uint8_t *id = zq_msg_id (request);
    uint32_t index = s_find (self, id);
    if (index == S_NONE)
        return zqi_fail (ZQ_ENOTFOUND);
    s_entry_t *entry = &self->entries[index];
    const uint8_t *hop = entry->route_heap ? entry->route_heap : entry->route_inline;
    const uint8_t *end = hop + entry->route_size;
    //  The first routing frame picks the client; ROUTER_MANDATORY makes
    //  an unknown one EHOSTUNREACH and a full pipe EAGAIN.
    if (zmq_send (self->handle, hop + 1, hop[0], ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1) {
        if (errno == EHOSTUNREACH) {
            s_list_remove (self, &self->age, index);
            s_entry_release (self, index);
            self->ctx->stats->dropped++;
            errno = EHOSTUNREACH;
        }
        return -1;
    }
    int rc = 0;
    for (hop += 1 + hop[0]; rc >= 0 && hop < end; hop += 1 + hop[0])
        rc = zmq_send (self->handle, hop + 1, hop[0], ZMQ_SNDMORE | ZMQ_DONTWAIT);
    uint8_t rpc_frame[5 + ZQ_MSG_ID_SIZE] = {0x93, S_RPC_VERSION, S_KIND_REPLY, 0xc4,
                                             ZQ_MSG_ID_SIZE};
    memcpy (rpc_frame + 5, id, ZQ_MSG_ID_SIZE);
    if (rc >= 0)
        rc = zmq_send (self->handle, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (rc >= 0)
        rc = zmq_send (self->handle, rpc_frame, sizeof rpc_frame, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    //  Past the first frame the route is spent, whatever happens next.
    s_list_remove (self, &self->age, index);
    s_entry_release (self, index);
    if (rc >= 0)
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

static int
s_open (void *state, zq_pattern_ctx_t *ctx)
{
    s_rpc_t *self = (s_rpc_t *)state;
    self->ctx = ctx;
    self->handle = ctx->handle;
    self->is_client = ctx->role == ZQ_CLIENT;
    self->request_timeout_ms = zqi_option_int (ctx->options, "request_timeout_ms");
    self->retries = (uint32_t)zqi_option_int (ctx->options, "retries");
    self->max_entries = (uint32_t)zqi_option_int (ctx->options, "max_in_flight");
    self->free_head = S_NONE;
    self->seed = zqi_rpc_id_seed (self);
    self->expired.head = self->expired.tail = S_NONE;
    self->pending.head = self->pending.tail = S_NONE;
    self->age.head = self->age.tail = S_NONE;
    int on = 1;
    if (zmq_setsockopt (self->handle, ZMQ_ROUTER_MANDATORY, &on, sizeof on))
        return -1;
    if (!zq_options_is_set (ctx->options, "heartbeat_ivl_ms")) {
        int ivl = S_HEARTBEAT_IVL_MS;
        int timeout = zq_options_is_set (ctx->options, "heartbeat_timeout_ms")
                          ? zqi_option_int (ctx->options, "heartbeat_timeout_ms")
                          : S_HEARTBEAT_TIMEOUT_MS;
        if (zmq_setsockopt (self->handle, ZMQ_HEARTBEAT_IVL, &ivl, sizeof ivl) ||
            (timeout > 0 &&
             zmq_setsockopt (self->handle, ZMQ_HEARTBEAT_TIMEOUT, &timeout, sizeof timeout)))
            return -1;
    }
    if (self->is_client) {
        //  The monitor reports each connection's handshake and close; its
        //  pipe has no high-water mark, so libzmq never waits to report.
        char endpoint[64];
        snprintf (endpoint, sizeof endpoint, "inproc://zq-rpc-monitor-%p-%016llx", (void *)self,
                  (unsigned long long)zqi_rpc_id_seed (&self->monitor));
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
    s_rpc_t *self = (s_rpc_t *)state;
    if (!self->is_client)
        return 0;
    if (bind)
        return zqi_fail (EINVAL); //  servers it cannot route to would connect
    if (self->server_count >= S_NONE - 1)
        return zqi_fail (EINVAL);
    s_server_t *servers = (s_server_t *)realloc (self->servers, (size_t)(self->server_count + 1) *
                                                                    sizeof (s_server_t));
    if (!servers)
        return zqi_fail (ENOMEM);
    self->servers = servers;
    uint32_t server = self->server_count;
    uint8_t routing_id[S_ROUTING_ID_SIZE];
    s_routing_id (server, routing_id);
    servers[server].endpoint = strdup (endpoint);
    if (!servers[server].endpoint)
        return zqi_fail (ENOMEM);
    if (zmq_setsockopt (self->handle, ZMQ_CONNECT_ROUTING_ID, routing_id, sizeof routing_id)) {
        free (servers[server].endpoint);
        return -1;
    }
    servers[server].live = strncmp (endpoint, "inproc://", 9) == 0;
    self->live_count += servers[server].live;
    self->server_count++;
    return 0;
}

static size_t
s_close (void *state)
{
    s_rpc_t *self = (s_rpc_t *)state;
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
        s_entry_t *entry = &self->entries[index];
        if (entry->request) {
            zq_msg_destroy (&entry->request);
            unsent++;
        }
        free (entry->route_heap);
    }
    zq_msg_destroy (&self->failed);
    free (self->entries);
    free (self->slots);
    free (self->heap);
    self->entries = NULL;
    self->slots = NULL;
    self->heap = NULL;
    self->capacity = self->count = self->heap_size = 0;
    return unsent;
}

static int
s_send (void *state, zq_msg_t **msg_p)
{
    s_rpc_t *self = (s_rpc_t *)state;
    if (!self->is_client)
        return zqi_fail (ENOTSUP);
    return s_client_send (self, msg_p);
}

static zq_msg_t *
s_recv (void *state)
{
    s_rpc_t *self = (s_rpc_t *)state;
    return self->is_client ? s_client_recv (self, ZMQ_DONTWAIT)
                           : s_server_recv (self, ZMQ_DONTWAIT);
}

static zq_msg_t *
s_recv_blocking (void *state)
{
    s_rpc_t *self = (s_rpc_t *)state;
    return self->is_client ? s_client_recv (self, 0) : s_server_recv (self, 0);
}

static int
s_reply (void *state, const zq_msg_t *request, zq_msg_t **reply_p)
{
    s_rpc_t *self = (s_rpc_t *)state;
    if (self->is_client)
        return zqi_fail (ENOTSUP);
    return s_server_reply (self, request, reply_p);
}

static int
s_send_wait (void *state)
{
    s_rpc_t *self = (s_rpc_t *)state;
    //  A full window only empties through zq_queue_recv: waiting is useless.
    return self->is_client && self->count >= self->max_entries ? 0 : ZMQ_POLLOUT;
}

static int
s_events (void *state, int zmq_events)
{
    s_rpc_t *self = (s_rpc_t *)state;
    if (!self->is_client)
        return zmq_events;
    if (s_client_tend (self, zqi_clock_mono (self->ctx->clock), !(zmq_events & ZMQ_POLLIN))) {
        //  Sending may have taken in a reply's arrival: look again.
        size_t size = sizeof zmq_events;
        if (zmq_getsockopt (self->handle, ZMQ_EVENTS, &zmq_events, &size))
            return -1;
    }
    if (self->expired.head != S_NONE)
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
    s_rpc_t *self = (s_rpc_t *)state;
    if (!self->heap_size)
        return -1;
    int64_t now = zqi_clock_mono (self->ctx->clock);
    int64_t wait_ms = self->entries[self->heap[0]].deadline - now;
    //  While requests wait, liveness events are looked at regularly even
    //  by an event loop that only watches the socket's fd.
    int64_t check_ms = self->monitor_read_ms + S_MONITOR_CHECK_MS - now;
    if (check_ms < wait_ms)
        wait_ms = check_ms;
    return wait_ms > 0 ? wait_ms : 0;
}

static zq_msg_t *
s_failed (void *state)
{
    s_rpc_t *self = (s_rpc_t *)state;
    zq_msg_t *request = self->failed;
    self->failed = NULL;
    if (!request)
        errno = self->is_client ? ZQ_ENOTFOUND : ENOTSUP;
    return request;
}

const zq_pattern_t zqi_pattern_rpc = {
    .name = "rpc",
    .state_size = sizeof (s_rpc_t),
    .roles =
        {
            [ZQ_CLIENT] = {ZMQ_ROUTER, false},
            [ZQ_SERVER] = {ZMQ_ROUTER, true},
        },
    .open = s_open,
    .attaching = s_attaching,
    .close = s_close,
    .send = s_send,
    .recv = s_recv,
    .recv_blocking = s_recv_blocking,
    .events = s_events,
    .next_timer_ms = s_next_timer_ms,
    .reply = s_reply,
    .send_wait = s_send_wait,
    .failed = s_failed,
};
