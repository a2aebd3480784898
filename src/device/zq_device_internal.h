/*  =========================================================================
    zq_device_internal - what the device's source files share: its parsed
    configuration, its queues and the hooks of each queue kind. Never
    installed.

    src/device/zq_device.c          the actor: open, poll loop, start and stop
    src/device/zq_device_io.c       helpers the kinds share: fds, CURVE, bind, I/O
    src/device/zq_device_list.c     the device's queue list, rows and rates
    src/device/zq_device_admin.c    commands and admin replies
    src/device/zq_device_config.c   ZPL -> zqi_device_config_t, with clear errors
    src/device/zq_device_kinds.c    the kinds' ops tables, found by kind or name
    src/device/zq_device_queue.c    kind "queue": the reliable pattern's server
    src/device/zq_device_stream.c   kind "stream": PULL -> buffer/spool -> PUSH
    src/device/zq_device_forward.c  kind "forward": XSUB -> XPUB with counts

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_DEVICE_INTERNAL_H_INCLUDED
#define ZQ_DEVICE_INTERNAL_H_INCLUDED

#include "zq_internal.h"
#include "zq_device.h"

//  A stream's defaults: bytes its memory ring holds, and its spool's quota
//  when the spool is on disk (in memory, zq_spool's own bound applies).
#define ZQI_STREAM_MEMORY_BYTES_DEFAULT (64 * 1024 * 1024)
#define ZQI_STREAM_QUOTA_BYTES_DEFAULT  (1024 * 1024 * 1024)

typedef enum { ZQI_KIND_QUEUE = 1, ZQI_KIND_STREAM = 2, ZQI_KIND_FORWARD = 3 } zqi_kind_t;

//  Returns "queue", "stream" or "forward".
const char *zqi_kind_name (zqi_kind_t kind);
//  Returns the kind named name, or 0.
zqi_kind_t zqi_kind_lookup (const char *name);

//  One configured queue.
typedef struct {
    char *name;
    zqi_kind_t kind;
    char *in;                //  stream, forward: endpoints messages come in on
    char *out;               //  stream, forward: endpoints they go out on
    int64_t memory_messages; //  stream: messages held in memory before spilling
    int64_t memory_bytes;    //  stream: bytes held in memory before spilling
    int64_t quota_bytes;     //  stream: spool quota (0: none, -1: the default)
    int64_t sndhwm;          //  stream, forward: ZMQ_SNDHWM of out
    int64_t rcvhwm;          //  stream, forward: ZMQ_RCVHWM of in
} zqi_queue_config_t;

//  The whole configuration, parsed and checked.
typedef struct {
    char *bind;  //  queue kind endpoint(s); "" = no queue kind
    char *admin; //  admin endpoint; "" = none
    char *spool; //  spool directory; "" = memory
    zq_spool_fsync_t fsync;
    int64_t fsync_interval_ms;
    char *curve_secret_cert;     //  zcert file with the secret key; "" = no CURVE
    char *curve_clients;         //  directory of allowed public certs, or "*"
    bool insecure;               //  plaintext endpoints may bind beyond loopback
    zq_options_t *queue_options; //  options of the queue kind's server
    zqi_queue_config_t stream_defaults;
    zqi_queue_config_t forward_defaults;
    zlistx_t *queues; //  of zqi_queue_config_t *, in file order
} zqi_device_config_t;

//  Parses and checks config (NULL = defaults) into a new object. Returns
//  it, or NULL with errno EINVAL (or ENOMEM) and one line in error.
zqi_device_config_t *zqi_device_config_new (zconfig_t *config, char *error, size_t error_size);
void zqi_device_config_destroy (zqi_device_config_t **self_p);
//  Returns a queue config for name with the kind's defaults (new; free with
//  zqi_queue_config_destroy), or NULL on ENOMEM.
zqi_queue_config_t *zqi_queue_config_new (const zqi_device_config_t *config, const char *name,
                                          zqi_kind_t kind);
void zqi_queue_config_destroy (zqi_queue_config_t **self_p);
//  Checks the name of a queue of any kind by zq_queue_name_check's rule (a
//  dead-letter queue name included). Returns 0 or -1 (EINVAL).
int zqi_device_name_check (const char *name);

//  Counters and levels of one queue, as STAT reports them.
typedef struct {
    uint64_t depth;         //  messages waiting (ready + in flight + delayed)
    uint64_t ready;         //  messages ready for delivery
    uint64_t in_flight;     //  delivered, not yet acked
    uint64_t delayed;       //  waiting for their not-before time
    uint64_t oldest_age_ms; //  age of the oldest ready message (0: none)
    uint64_t in;            //  messages accepted (queue: stored; stream, forward: received)
    uint64_t out;           //  messages done (queue: acked; stream, forward: sent)
    uint64_t delivered;     //  queue: deliveries, first ones and again
    uint64_t acked;
    uint64_t nacked;
    uint64_t redelivered;   //  queue: deliveries with attempt > 0
    uint64_t timeouts;      //  queue: visibility timeouts
    uint64_t dead;          //  queue: dead letters waiting in NAME.dead
    uint64_t dead_lettered; //  queue: messages moved to NAME.dead
    uint64_t expired;
    uint64_t duplicates; //  queue: PUTs confirmed again without storing
    uint64_t refused;    //  queue: PUTs refused (storage full or failed)
    uint64_t dropped;
    uint64_t gaps;
    uint64_t errors;
    uint64_t spilled; //  stream: messages written to the spool
    uint64_t consumers;
    double in_rate; //  messages/s over the last ZQI_RATE_WINDOW s
    double out_rate;
} zqi_row_t;

#define ZQI_RATE_WINDOW 10

typedef struct _zqi_kind_ops_t zqi_kind_ops_t;
typedef struct _zqi_device_t zqi_device_t;

//  A queue of the device (any kind). Streams and forwards own sockets;
//  queues of kind "queue" live in the reliable server and are listed here
//  only for their rates.
typedef struct {
    char *name;
    zqi_kind_t kind;
    const zqi_kind_ops_t *ops; //  its kind's operations
    zqi_queue_config_t *config;
    zsock_t *in;
    zsock_t *out;
    char *in_endpoint; //  resolved, comma-separated
    char *out_endpoint;
    zqi_row_t counters; //  stream, forward: kept here
    //  Rates: totals sampled every second, ring of ZQI_RATE_WINDOW + 1.
    uint64_t in_samples[ZQI_RATE_WINDOW + 1];
    uint64_t out_samples[ZQI_RATE_WINDOW + 1];
    size_t samples;   //  samples taken so far
    void *kind_state; //  stream or forward state
} zqi_dqueue_t;

//  What the device's kinds need from the device.
typedef struct {
    zqi_device_config_t *config;
    zcert_t *cert; //  CURVE server certificate, or NULL
} zqi_device_env_t;

//  ---- The kinds' operations (zq_device_kinds.c) -------------------------
//  The device knows a queue's kind only through these: it never asks
//  which kind a queue is. Each kind's file exports one const table.

//  Most poll items one queue adds.
#define ZQI_KIND_POLL_MAX 3

struct _zqi_kind_ops_t {
    zqi_kind_t kind;
    const char *name; //  "queue", "stream", "forward"
    //  True if its queues have in and out endpoints of their own (so they
    //  exist only when configured, and QUEUE needs IN and OUT).
    bool has_endpoints;
    //  Required. Opens dq (name, kind, ops and config set): its sockets
    //  and state. Returns 0, or -1 with errno and one line in error (the
    //  device then calls close and frees dq).
    int (*open) (zqi_device_t *device, zqi_dqueue_t *dq, char *error, size_t error_size);
    //  Optional. Releases what open made (also after a failed open).
    void (*close) (zqi_dqueue_t *dq);
    //  Optional. Stores up to ZQI_KIND_POLL_MAX poll items of dq (socket and
    //  events) in items, and returns how many; asked before every poll.
    size_t (*poll_items) (zqi_dqueue_t *dq, zmq_pollitem_t *items);
    //  Optional. Handles poll item number which of those poll_items gave,
    //  which had an event. Never blocks.
    void (*handle) (zqi_dqueue_t *dq, size_t which);
    //  Optional. Work after every poll round, events or not.
    void (*after_poll) (zqi_dqueue_t *dq);
    //  Required. Fills row (zeroed by the caller) with dq's counts.
    void (*row) (zqi_device_t *device, zqi_dqueue_t *dq, zqi_row_t *row);
    //  Optional (NULL: the kind keeps no messages). Appends up to count
    //  ready messages (copies, one-frame wire form) to reply. 0 or -1.
    int (*peek) (zqi_device_t *device, zqi_dqueue_t *dq, size_t count, zmsg_t *reply);
    //  Optional (NULL: nothing to drop). Drops every waiting message,
    //  storing how many in *count_p. 0 or -1 with errno.
    int (*purge) (zqi_device_t *device, zqi_dqueue_t *dq, uint64_t *count_p);
    //  Optional (NULL: the kind has no dead letters). Moves NAME.dead back
    //  to the queue, storing how many in *count_p. 0 or -1 with errno.
    int (*redrive) (zqi_device_t *device, zqi_dqueue_t *dq, uint64_t *count_p);
};

extern const zqi_kind_ops_t zqi_kind_queue;
extern const zqi_kind_ops_t zqi_kind_stream;
extern const zqi_kind_ops_t zqi_kind_forward;

//  Returns the operations of kind, or NULL if kind is none.
const zqi_kind_ops_t *zqi_kind_ops (zqi_kind_t kind);

//  Creates a socket of type for a kind or the admin socket through the
//  library's socket helper (zqi_socket_new: the signal guard and the
//  common socket options): sndhwm, rcvhwm and max_message_bytes as given
//  (max_message_bytes -1: no limit), linger 0 and, if secure, the device's
//  CURVE certificate (a CURVE server). Returns it, or NULL with errno and
//  one line in error.
zsock_t *zqi_device_socket_new (zqi_device_env_t *env, int type, int sndhwm, int rcvhwm,
                                int64_t max_message_bytes, bool secure, char *error,
                                size_t error_size);

//  Makes the socket file of each ipc:// item of the resolved, comma-
//  separated endpoints 0600 (libzmq gives it the mode the umask allows).
void zqi_device_ipc_private (const char *endpoints);
//  Binds sock on endpoints through zqi_socket_attach (CZMQ syntax; every
//  item binds: one with '>' is refused with EINVAL); stores the resolved
//  endpoints (new string) in *resolved_p; makes each ipc socket file
//  0600. Returns 0, or -1 with errno and a line in error.
int zqi_device_bind (zsock_t *sock, const char *endpoints, char **resolved_p, char *error,
                     size_t error_size);

//  Receives a whole message waiting on sock without blocking, or NULL.
zmsg_t *zqi_device_recv_nowait (zsock_t *sock);

//  Returns msg in its one-frame wire form (doc/PROTOCOL.md) as a new
//  frame, or NULL on ENOMEM. msg is not changed.
zframe_t *zqi_device_one_frame (const zq_msg_t *msg);

//  ---- stream -----------------------------------------------------------
//  Opens dq's sockets and spool (spool_dir NULL: memory). Returns 0 or -1
//  with errno and error.
int zqi_stream_open (zqi_dqueue_t *dq, zqi_device_env_t *env, const char *spool_dir, char *error,
                     size_t error_size);
void zqi_stream_close (zqi_dqueue_t *dq);
//  Takes in what waits on dq->in (a bounded burst).
void zqi_stream_input (zqi_dqueue_t *dq);
//  Sends what it can on dq->out (a bounded burst).
void zqi_stream_output (zqi_dqueue_t *dq);
//  True if the stream holds messages to send.
bool zqi_stream_pending (zqi_dqueue_t *dq);
void zqi_stream_row (zqi_dqueue_t *dq, zqi_row_t *row);
//  Appends up to count ready messages (copies, one-frame wire form) to reply.
void zqi_stream_peek (zqi_dqueue_t *dq, size_t count, zmsg_t *reply);
//  Drops every waiting message; returns how many.
uint64_t zqi_stream_purge (zqi_dqueue_t *dq);

//  ---- forward ----------------------------------------------------------
int zqi_forward_open (zqi_dqueue_t *dq, zqi_device_env_t *env, char *error, size_t error_size);
void zqi_forward_close (zqi_dqueue_t *dq);
void zqi_forward_input (zqi_dqueue_t *dq);  //  publishers -> subscribers
void zqi_forward_output (zqi_dqueue_t *dq); //  subscriptions upstream
void zqi_forward_row (zqi_dqueue_t *dq, zqi_row_t *row);
//  The socket that reports dq->out's connections; poll it for input and
//  call zqi_forward_output when it has some.
zsock_t *zqi_forward_monitor (zqi_dqueue_t *dq);

//  ---- queue (the reliable server) ---------------------------------------
typedef struct _zqi_qserver_t zqi_qserver_t;
//  Opens the reliable server on config->bind with the queue options and
//  spool_dir (NULL: memory). Returns it, or NULL with errno and error.
zqi_qserver_t *zqi_qserver_new (zqi_device_env_t *env, const char *spool_dir, char *error,
                                size_t error_size);
void zqi_qserver_destroy (zqi_qserver_t **self_p);
//  The socket to poll for input, and its resolved endpoints.
zsock_t *zqi_qserver_sock (zqi_qserver_t *self);
const char *zqi_qserver_endpoint (zqi_qserver_t *self);
//  Does the server's work: input waiting and due timers. Never blocks.
void zqi_qserver_work (zqi_qserver_t *self);
//  Milliseconds until the server needs zqi_qserver_work, or -1.
int64_t zqi_qserver_next_timer_ms (zqi_qserver_t *self);
//  Makes queue name exist (declared in the configuration). 0 or -1.
int zqi_qserver_declare (zqi_qserver_t *self, const char *name);
//  Appends to names (of char *, new strings) the server's queue names.
void zqi_qserver_names (zqi_qserver_t *self, zlistx_t *names);
//  Fills row for queue name. Returns 0, or -1 with errno ZQ_ENOTFOUND.
int zqi_qserver_row (zqi_qserver_t *self, const char *name, zqi_row_t *row);
int zqi_qserver_peek (zqi_qserver_t *self, const char *name, size_t count, zmsg_t *reply);
int zqi_qserver_purge (zqi_qserver_t *self, const char *name, uint64_t *count_p);
int zqi_qserver_redrive (zqi_qserver_t *self, const char *name, uint64_t *count_p);

//  ---- The actor (zq_device.c, zq_device_io.c, zq_device_list.c,
//  zq_device_admin.c) ----------------------------------------------------

//  How often rates are sampled, and queues of kind queue the reliable
//  server created for clients are noticed.
#define ZQI_DEVICE_TICK_MS 1000

struct _zqi_device_t {
    zsock_t *pipe;
    zqi_device_env_t env;
    zqi_device_config_t *config;
    zactor_t *auth;
    zsock_t *admin;
    char *admin_endpoint;
    zqi_qserver_t *qserver;
    zhashx_t *queues; //  name -> zqi_dqueue_t *
    int64_t next_tick_ms;
    int lock_fd; //  flock()ed SPOOL/zqd.lock, or -1
    bool terminated;
    uint64_t bad_commands;
};

//  ---- zq_device_io.c ----------------------------------------------------

int zqi_device_fds_free (const char *what, char *error, size_t error_size);

//  ---- zq_device_list.c --------------------------------------------------

void zqi_device_dqueue_destructor (void **item_p);

int zqi_device_queue_add (zqi_device_t *self, zqi_queue_config_t *config, char *error,
                          size_t error_size);

void zqi_device_queues_sync (zqi_device_t *self);

void zqi_device_row (zqi_device_t *self, zqi_dqueue_t *dq, zqi_row_t *row);

void zqi_device_tick (zqi_device_t *self);

//  ---- zq_device_admin.c -------------------------------------------------

zmsg_t *zqi_device_handle (zqi_device_t *self, zmsg_t *request, bool from_pipe);

void zqi_device_admin_request (zqi_device_t *self, zmsg_t *request);

#endif
