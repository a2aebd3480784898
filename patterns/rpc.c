/*  =========================================================================
    rpc - request-reply between clients (DEALER) and servers (ROUTER),
    with correlation ids, a deadline per attempt, retries and failover.

    Frames (doc/PROTOCOL.md, "rpc"), after any routing frames:
        [empty delimiter] [rpc frame] [envelope]
    The rpc frame is msgpack: [1, 0] for a request, [1, 1, request-id]
    for a reply. A request's id is its envelope id (zq_msg_id), known
    before it is sent; a reply names the request it answers in its rpc
    frame and keeps its own envelope id on the wire.

    Client. zq_queue_send hands a request to libzmq and returns at once;
    many may be in flight, up to max_in_flight (then send fails with
    EAGAIN at once: only zq_queue_recv frees room). zq_queue_recv returns
    replies in the order they arrive, each under the id of the request it
    answers: zq_msg_id (reply) is that request's id (the reply's own wire
    id is not kept). Each attempt has a deadline of request_timeout_ms; when
    it passes, the request is sent again under the same id with attempt
    one higher (stats.retries), and DEALER's round-robin takes it to the
    next connected server: that is the failover. An attempt that cannot be
    handed to libzmq (no server connected) still uses up its deadline.
    When the last of 1 + retries attempts passes its deadline, the request
    has failed: zq_queue_recv returns NULL with errno ZQ_ETIMEDOUT (once
    for each failed request, stats.timeouts), and zq_queue_failed hands the
    request itself back. A reply that was already waiting in the socket
    when the failure would be reported still wins. Replies to requests
    already answered or reported failed, and replies to ids never sent,
    are dropped and counted in stats.dropped; a request is answered or
    reported failed exactly once. Retries and failures happen inside
    zq_queue_send, zq_queue_recv and zq_queue_events; the core's waits
    wake for the next deadline (next_timer_ms).
    The client keeps each request until its result is returned (to resend
    it) and encodes each attempt from it, without copying the message
    (a body of ZQ_MSG_ZEROCOPY_MIN bytes or more is copied per attempt).
    ZMQ_IMMEDIATE is off: a server's connection keeps its pipe while it is
    down, so a reply that arrived before the server closed is still read
    (with ZMQ_IMMEDIATE, libzmq drops a connection's unread replies when
    it closes). The cost: DEALER keeps dealing requests to a server that
    is still connecting or that is gone, in its turn, until that pipe
    holds sndhwm messages; each waits there until the server comes back
    or its deadline sends it again, to the next server in turn. A server
    that comes back gets the attempts still queued for it, including
    ones already answered elsewhere (those replies are dropped as late).

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
    S_HEARTBEAT_TIMEOUT_MS (or heartbeat_timeout_ms if set), so a server
    whose host vanished leaves the client's round-robin.

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

//  One request in flight (client) or one remembered route (server).
typedef struct {
    uint8_t id[ZQ_MSG_ID_SIZE];
    bool in_use;
    bool expired;      //  client: every attempt failed, not yet reported
    uint32_t attempts; //  client: attempts made so far
    uint32_t heap_index;
    uint32_t prev, next; //  expired list (client), age list (server), free list
    int64_t deadline;    //  client: end of the current attempt (zclock_mono)
    zq_msg_t *request;   //  client: kept for retries
    uint8_t *route_heap; //  server: the route when longer than route_inline
    uint32_t route_size; //  server: routing frames as [size][bytes]...
    uint8_t route_inline[S_ROUTE_INLINE];
} s_entry_t;

typedef struct {
    uint32_t head, tail;
} s_list_t;

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
    zq_msg_t *failed; //  the last request reported failed, not yet taken
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
    entry->prev = entry->next = entry->heap_index = S_NONE;
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

//  Sends an attempt of request: delimiter, rpc frame, then its envelope.
//  Returns 0, or -1 with errno (EAGAIN if no server can take it now).
static int
s_send_request (s_rpc_t *self, const zq_msg_t *request)
{
    static const uint8_t rpc_frame[] = {0x92, S_RPC_VERSION, S_KIND_REQUEST};
    if (zmq_send (self->handle, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1)
        return -1;
    //  The first frame is out: the rest cannot meet the high-water mark.
    int rc = zmq_send (self->handle, rpc_frame, sizeof rpc_frame, ZMQ_SNDMORE | ZMQ_DONTWAIT);
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

//  ---- Client -------------------------------------------------------------

//  Sends one attempt of the entry's request and starts its deadline.
static void
s_attempt (s_rpc_t *self, uint32_t index, int64_t now)
{
    s_entry_t *entry = &self->entries[index];
    zq_msg_set_attempt (entry->request, zq_msg_attempt (entry->request) + 1);
    if (s_send_request (self, entry->request) == 0)
        self->ctx->stats->retries++;
    entry->attempts++;
    entry->deadline = now + self->request_timeout_ms;
    s_heap_down (self, entry->heap_index);
}

//  Retries requests whose attempt deadline has passed, and moves those
//  out of attempts to the expired list.
static void
s_run_timers (s_rpc_t *self, int64_t now)
{
    while (self->heap_size && self->entries[self->heap[0]].deadline <= now) {
        uint32_t index = self->heap[0];
        if (self->entries[index].attempts <= self->retries)
            s_attempt (self, index, now);
        else {
            s_heap_remove (self, index);
            self->entries[index].expired = true;
            s_list_append (self, &self->expired, index);
        }
    }
}

//  Forgets a request: out of the heap or expired list, out of the hash.
//  Returns the kept request, which the caller now owns.
static zq_msg_t *
s_client_forget (s_rpc_t *self, uint32_t index)
{
    s_entry_t *entry = &self->entries[index];
    if (entry->expired)
        s_list_remove (self, &self->expired, index);
    else
        s_heap_remove (self, index);
    zq_msg_t *request = entry->request;
    entry->request = NULL;
    s_entry_release (self, index);
    return request;
}

static int
s_client_send (s_rpc_t *self, zq_msg_t **msg_p)
{
    int64_t now = zclock_mono ();
    if (self->heap_size && self->entries[self->heap[0]].deadline <= now)
        s_run_timers (self, now);
    if (self->count >= self->max_entries)
        return zqi_fail (EAGAIN);
    const uint8_t *id = zq_msg_id (*msg_p);
    if (s_find (self, id) != S_NONE)
        return zqi_fail (EALREADY);
    uint32_t index = s_entry_take (self);
    if (index == S_NONE)
        return -1;
    if (s_send_request (self, *msg_p)) {
        int saved_errno = errno;
        s_entry_release (self, index);
        return zqi_fail (saved_errno);
    }
    s_entry_commit (self, index, id);
    s_entry_t *entry = &self->entries[index];
    entry->request = *msg_p;
    entry->attempts = 1;
    entry->deadline = now + self->request_timeout_ms;
    s_heap_push (self, index);
    *msg_p = NULL;
    return 0;
}

//  flags (ZMQ_DONTWAIT or 0) are for the first frame: once a late reply
//  was skipped, nothing more waits.
static zq_msg_t *
s_client_recv (s_rpc_t *self, int flags)
{
    for (int late = 0; late < S_LATE_BURST; late++) {
        zmq_msg_t delimiter;
        zmq_msg_init (&delimiter);
        if (zmq_msg_recv (&delimiter, self->handle, late ? ZMQ_DONTWAIT : flags) < 0) {
            int saved_errno = errno;
            zmq_msg_close (&delimiter);
            if (saved_errno == EAGAIN)
                break;
            errno = saved_errno;
            return NULL;
        }
        bool good = zmq_msg_size (&delimiter) == 0 && zmq_msg_more (&delimiter);
        zmq_msg_close (&delimiter);
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
    if (self->heap_size)
        s_run_timers (self, zclock_mono ());
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
    self->age.head = self->age.tail = S_NONE;
    int on = 1;
    if (!self->is_client && zmq_setsockopt (self->handle, ZMQ_ROUTER_MANDATORY, &on, sizeof on))
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
    return 0;
}

static size_t
s_close (void *state)
{
    s_rpc_t *self = (s_rpc_t *)state;
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
    if (self->heap_size) {
        int64_t now = zclock_mono ();
        if (self->entries[self->heap[0]].deadline <= now)
            s_run_timers (self, now);
    }
    if (self->expired.head != S_NONE)
        zmq_events |= ZMQ_POLLIN;
    if (self->count >= self->max_entries)
        zmq_events &= ~ZMQ_POLLOUT;
    return zmq_events;
}

static int64_t
s_next_timer_ms (void *state)
{
    s_rpc_t *self = (s_rpc_t *)state;
    if (!self->heap_size)
        return -1;
    int64_t wait_ms = self->entries[self->heap[0]].deadline - zclock_mono ();
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
            [ZQ_CLIENT] = {ZMQ_DEALER, false},
            [ZQ_SERVER] = {ZMQ_ROUTER, true},
        },
    .open = s_open,
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
