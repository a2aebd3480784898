/*  =========================================================================
    rpc - what the files of the "rpc" pattern share. Internal, never
    installed.

        patterns/rpc.c         entries, frames, the server, the pattern table
        patterns/rpc_client.c  the client: routing, liveness, attempts

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQI_RPC_PATTERN_H_INCLUDED
#define ZQI_RPC_PATTERN_H_INCLUDED

#include "zq_pattern.h"

#define ZQI_RPC_VERSION 1
#define ZQI_RPC_REQUEST 0
#define ZQI_RPC_REPLY   1
//  Room for an rpc frame: the command header, a bin of one id and what
//  a reply says of the forms its server takes (one octet).
#define ZQI_RPC_FRAME_MAX (3 + 2 + ZQ_MSG_ID_SIZE + 1)
//  The compact form (doc/PROTOCOL.md 17.7): after the routing frames, no
//  delimiter, one frame holding the rpc frame then the envelope's
//  one-frame form. A server takes it and answers a compact request in it;
//  its classic replies say so with ZQI_RPC_TAKES_COMPACT in the reply
//  frame's element 3, and a client sends compact requests only to a
//  connection whose replies say so.
#define ZQI_RPC_TAKES_COMPACT 1
//  libzmq bounds each frame (ZMQ_MAXMSGSIZE): an rpc socket's bound is
//  max_message_bytes and this much more, room for the rpc frame beside a
//  compact envelope (zq bounds the envelope itself).
#define ZQI_RPC_FRAME_SLACK 256
//  Client: what a server's connection said of the compact form. Unknown
//  and compact change with each reply; classic (a reply that did not say
//  it takes compact requests, or a compact attempt that timed out) holds
//  until the connection closes.
enum { ZQI_RPC_FORM_UNKNOWN, ZQI_RPC_FORM_COMPACT, ZQI_RPC_FORM_CLASSIC };
#define ZQI_RPC_MAX_HOPS             8
#define ZQI_RPC_ROUTE_INLINE         24
#define ZQI_RPC_HEARTBEAT_IVL_MS     1000
#define ZQI_RPC_HEARTBEAT_TIMEOUT_MS 3000
//  Server: TCP keepalive, probes after 1 s idle, then every second; the
//  third unanswered closes the connection (a lost host: within 4 s idle).
#define ZQI_RPC_KEEPALIVE_IDLE_S  1
#define ZQI_RPC_KEEPALIVE_INTVL_S 1
#define ZQI_RPC_KEEPALIVE_CNT     3
//  Late replies one client receive skips before it looks at its timers.
#define ZQI_RPC_LATE_BURST 64
#define ZQI_RPC_NONE       ZQI_ID_NONE
//  Client: the routing id it gives its connection to server N is
//  ZQI_RPC_ROUTING_MARK then N in 4 octets, big-endian (libzmq keeps ids that
//  start with 0 for its own).
#define ZQI_RPC_ROUTING_MARK    'r'
#define ZQI_RPC_ROUTING_ID_SIZE 5
//  Client: liveness events taken in per look at the monitor, and how long
//  an event loop that only watches the fd may go without a look while
//  requests wait (next_timer_ms).
#define ZQI_RPC_EVENT_BURST      64
#define ZQI_RPC_MONITOR_CHECK_MS 25

//  One request in flight (client) or one remembered route (server).
typedef struct {
    uint8_t id[ZQ_MSG_ID_SIZE];
    uint32_t key_hash; //  zq_idtable's: the id's hash
    bool in_use;
    bool expired;      //  client: every attempt failed, not yet reported
    bool pending;      //  client: the attempt waits for a live server
    uint32_t attempts; //  client: attempts made so far
    uint32_t heap_index;
    uint32_t server;     //  client: server of the current attempt (ZQI_RPC_NONE: none yet)
    uint32_t prev, next; //  expired or pending list (client), age list (server), free list
    bool compact;        //  server: the request came compact; client: its attempt went so
    int64_t deadline;    //  client: end of the current attempt (ctx->clock)
    zq_msg_t *request;   //  client: kept for retries
    uint8_t *route_heap; //  server: the route when longer than route_inline
    uint32_t route_size; //  server: routing frames as [size][bytes]...
    uint8_t route_inline[ZQI_RPC_ROUTE_INLINE];
} zqi_rpc_entry_t;

typedef struct {
    uint32_t head, tail;
} zqi_rpc_list_t;

//  Client: one server, that is one endpoint it connected to.
typedef struct {
    char *endpoint; //  as connected: the monitor's events name it so
    bool live;      //  takes new requests
    uint8_t form;   //  ZQI_RPC_FORM_*: may its connection take compact requests
} zqi_rpc_server_t;

typedef struct {
    zq_pattern_ctx_t *ctx;
    void *handle;
    bool is_client;
    bool dealer; //  client: one server, over a DEALER socket (no routing frames)
    int request_timeout_ms;
    uint32_t retries;
    uint32_t max_entries; //  max_in_flight
    //  Entries by index in zq_idtable (found by id, the client's attempt
    //  deadlines in its heap); entries, capacity and count read the
    //  table's own first members, typed.
    union {
        zqi_idtable_t table;
        struct {
            zqi_rpc_entry_t *entries;
            uint32_t capacity;
            uint32_t count;
        };
    };
    //  Client: requests out of attempts, not yet reported.
    zqi_rpc_list_t expired;
    zqi_rpc_list_t pending; //  attempts waiting for a live server with room
    zq_msg_t *failed;       //  the last request reported failed, not yet taken
    //  Client: its servers, in the order connected; the next in turn; the
    //  socket monitor that reports their connections, and when it was
    //  last read (ctx->clock, as every time here).
    zqi_rpc_server_t *servers;
    uint32_t server_count;
    uint32_t next_server;
    uint32_t live_count;
    bool reroute_due; //  a server went out, or came: see s_reroute
    zsock_t *monitor;
    void *monitor_handle;
    int64_t monitor_read_ms;
    zqi_log_limit_t retry_log; //  client: "retrying" lines, at most one a second
    //  Server: routes from oldest to newest; scratch for one route.
    zqi_rpc_list_t age;
    uint8_t route[ZQI_RPC_MAX_HOPS * 256];
} zqi_rpc_t;

//  ---- rpc.c -------------------------------------------------------------

static inline uint32_t
zqi_rpc_find (const zqi_rpc_t *self, const uint8_t *id)
{
    return zqi_idtable_find (&self->table, id);
}

//  The entry whose deadline comes first, or NULL.
static inline zqi_rpc_entry_t *
zqi_rpc_first_due (const zqi_rpc_t *self)
{
    uint32_t index = zqi_idtable_first (&self->table);
    return index == ZQI_RPC_NONE ? NULL : &self->entries[index];
}

//  Adds an entry for id, with no server, list or deadline. Returns its
//  index, or ZQI_RPC_NONE with errno ENOMEM. The caller has checked count
//  < max_entries.
uint32_t zqi_rpc_entry_add (zqi_rpc_t *self, const uint8_t *id);
//  Removes an entry (and its deadline) and frees its route; the caller
//  handles the request and the lists.
void zqi_rpc_entry_release (zqi_rpc_t *self, uint32_t index);
//  The expired or pending list (client), the age list (server).
void zqi_rpc_list_append (zqi_rpc_t *self, zqi_rpc_list_t *list, uint32_t index);
void zqi_rpc_list_remove (zqi_rpc_t *self, zqi_rpc_list_t *list, uint32_t index);
//  Receives the rpc frame (the delimiter already read) of a message of
//  the expected kind, then its envelope. For a reply, copies the request
//  id into id and stores in *takes_p what the reply frame says of the
//  forms the server takes (ZQI_RPC_TAKES_COMPACT, or 0). Returns the
//  message, or NULL with errno (EAGAIN only for the first frame; bad
//  input with every frame read).
zq_msg_t *zqi_rpc_recv_rest (zqi_rpc_t *self, uint64_t expected_kind, uint8_t *id,
                             uint64_t *takes_p);
//  Decodes a compact frame (the last of its message, received whole) of
//  the expected kind: its rpc frame, then the envelope that follows it in
//  the same frame. For a reply, copies the request id into id. Takes the
//  frame's content as zqi_msg_from_frame_at does, and closes the frame.
//  Returns the message, or NULL with errno.
zq_msg_t *zqi_rpc_from_compact (zqi_rpc_t *self, zmq_msg_t *frame, uint64_t expected_kind,
                                uint8_t *id);
//  True when msg may go in the compact form: its body is below
//  ZQ_MSG_ZEROCOPY_MIN (a larger one goes in the classic form, whose
//  two-frame envelope hands the body to libzmq).
bool zqi_rpc_compact_fits (const zq_msg_t *msg);
//  Sends, as the message's last frame, the compact frame of msg: rpc_frame
//  (rpc_size octets) then msg's envelope, leaving msg as it is. Returns 0,
//  or -1 with errno (ENOMEM, or from libzmq).
int zqi_rpc_send_compact (void *handle, const uint8_t *rpc_frame, size_t rpc_size,
                          const zq_msg_t *msg);

//  ---- rpc_client.c --------------------------------------------------------

//  Writes the routing id of the client's connection to server.
void zqi_rpc_routing_id (uint32_t server, uint8_t *routing_id);
//  The client's own work, without waiting: liveness events, requests held
//  by a server that went out (only once socket_idle says no reply waits to
//  be read, so that replies already received win), attempts waiting for a
//  live server, deadlines. Returns true if it may have sent something.
bool zqi_rpc_client_tend (zqi_rpc_t *self, int64_t now, bool socket_idle);
//  zq_queue_send and zq_queue_recv of the client (flags: ZMQ_DONTWAIT or
//  0, for the first frame).
int zqi_rpc_client_send (zqi_rpc_t *self, zq_msg_t **msg_p);
zq_msg_t *zqi_rpc_client_recv (zqi_rpc_t *self, int flags);

#endif
