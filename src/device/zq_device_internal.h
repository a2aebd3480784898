/*  =========================================================================
    zq_device_internal - what the device's source files share: its parsed
    configuration, its queues and the hooks of each queue kind. Never
    installed.

    src/device/zq_device.c          the actor: open, poll loop, start and stop
    src/device/zq_device_io.c       helpers the kinds share: fds, CURVE, bind, I/O
    src/device/zq_device_list.c     the device's queue list, rows and rates
    src/device/zq_device_admin.c    commands and admin replies
    src/device/zq_admin.c           the admin codec, shared with zq (zq_admin.h)
    src/device/zq_device_config.c   ZPL -> zqi_device_config_t, with clear errors
    src/device/zq_device_access.c   identities, rights and the ZAP handler
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
#include "zq_clock.h"
#include "zq_admin.h"
#include "zq_device.h"

//  A stream's defaults: bytes its memory ring holds, and its spool's quota
//  when the spool is on disk (in memory, zq_spool's own bound applies).
#define ZQI_STREAM_MEMORY_BYTES_DEFAULT (64 * 1024 * 1024)
#define ZQI_STREAM_QUOTA_BYTES_DEFAULT  (1024 * 1024 * 1024)
//  A queue's (kind queue) spool quota when neither queue/quota_bytes nor
//  the queue's own setting says, with a spool directory.
#define ZQI_QUEUE_QUOTA_BYTES_DEFAULT (1024 * 1024 * 1024)
//  device/min_free_bytes: free space the spool's filesystem keeps.
#define ZQI_MIN_FREE_BYTES_DEFAULT (1024 * 1024 * 1024)

//  device/backlog_warning_ms when not set: five minutes.
#define ZQI_BACKLOG_WARNING_MS_DEFAULT (5 * 60 * 1000)

typedef enum { ZQI_KIND_QUEUE = 1, ZQI_KIND_STREAM = 2, ZQI_KIND_FORWARD = 3 } zqi_kind_t;

//  Returns "queue", "stream" or "forward".
const char *zqi_kind_name (zqi_kind_t kind);
//  Returns the kind named name, or 0.
zqi_kind_t zqi_kind_lookup (const char *name);

//  One configured queue.
typedef struct {
    char *name;
    zqi_kind_t kind;
    char *in;                       //  stream, forward: endpoints messages come in on
    char *out;                      //  stream, forward: endpoints they go out on
    int64_t memory_messages;        //  stream: messages held in memory before spilling
    int64_t memory_bytes;           //  stream: bytes held in memory before spilling
    int64_t quota_bytes;            //  stream: spool quota (0: none, -1: the default)
    int64_t sndhwm;                 //  stream, forward: ZMQ_SNDHWM of out
    int64_t rcvhwm;                 //  stream, forward: ZMQ_RCVHWM of in
    int64_t max_subscription_bytes; //  forward: what out's subscriptions may cost
} zqi_queue_config_t;

//  ---- access (zq_device_access.c) -------------------------------------
//  Identities and their rights, from the config's access section.
typedef enum { ZQI_ACCESS_PUT = 0, ZQI_ACCESS_CONSUME = 1, ZQI_ACCESS_ADMIN = 2 } zqi_access_op_t;
#define ZQI_ACCESS_OPS 3
//  The identity of clients without CURVE.
#define ZQI_ACCESS_ANONYMOUS "anonymous"
//  The ZAP domain of the admin socket; a stream's or forward's sockets
//  take "put NAME" (in) and "consume NAME" (out).
#define ZQI_ACCESS_DOMAIN_ADMIN "admin"
typedef struct _zqi_access_t zqi_access_t;

//  Reads the access section (its children are identities). Returns the
//  object, or NULL with errno EINVAL (or ENOMEM) and one line in error.
zqi_access_t *zqi_access_new (zconfig_t *section, char *error, size_t error_size);
void zqi_access_destroy (zqi_access_t **self_p);
//  With CURVE on, every client has a User-Id from the ZAP handler: one
//  without (which would be a bug) is allowed nothing.
void zqi_access_require_identity (zqi_access_t *self);
//  Returns "put", "consume" or "admin".
const char *zqi_access_op_name (zqi_access_op_t op);
//  True if name matches one of the comma-separated patterns.
bool zqi_access_match (const char *patterns, const char *name);
//  The one question: may identity (a ZAP User-Id; NULL or "" for a client
//  without CURVE) do op on queue (NULL: on some queue)? self NULL (no
//  access section) allows everything; so does a client without CURVE when
//  the section has no "anonymous" identity and the device has no CURVE;
//  an unknown identity nothing.
bool zqi_access_allows (zqi_access_t *self, const char *identity, zqi_access_op_t op,
                        const char *queue);
//  The name of an identity that holds a CURVE key, or NULL if none does.
const char *zqi_access_keyed (zqi_access_t *self);
//  Counts a refusal of identity and logs it, one line per identity per
//  10 s at most; where says what was refused ("PUT", "admin PURGE", ...).
void zqi_access_refused (zqi_access_t *self, const char *identity, zqi_access_op_t op,
                         const char *queue, const char *where);
//  Binds zq's ZAP handler (a REP socket on libzmq's ZAP endpoint); poll it
//  and call zqi_access_zap_answer when it has input. NULL with errno
//  (EADDRINUSE: another handler runs) and a line in error.
zsock_t *zqi_access_zap_new (char *error, size_t error_size);
//  Answers one waiting ZAP request: a CURVE key is admitted if an identity
//  holds it, a client without CURVE as "anonymous"; then the socket's ZAP
//  domain must allow the identity (see ZQI_ACCESS_DOMAIN_ADMIN). The
//  User-Id given is the identity's name. Never blocks.
void zqi_access_zap_answer (zqi_access_t *self, zsock_t *zap);
//  Sets the clock its log rate limits read (NULL: the system's; the
//  default). clock must outlive self.
void zqi_access_clock_set (zqi_access_t *self, const zqi_clock_t *clock);

//  The whole configuration, parsed and checked.
typedef struct {
    char *bind;  //  queue kind endpoint(s); "" = no queue kind
    char *admin; //  admin endpoint; "" = none
    char *http;  //  HTTP server address (HOST:PORT); "" = none
    char *spool; //  spool directory; "" = memory
    zq_spool_fsync_t fsync;
    int64_t fsync_interval_ms;
    int64_t backlog_warning_ms;  //  warn when a queue's oldest message is older (0: never)
    char *curve_secret_cert;     //  zcert file with the secret key; "" = no CURVE
    char *curve_clients;         //  directory of allowed public certs, or "*"
    bool insecure;               //  plaintext endpoints may bind beyond loopback
    zqi_access_t *access;        //  the access section, or NULL (every right)
    int64_t min_free_bytes;      //  under it on the spool's filesystem, nothing new is stored
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

//  zqi_row_t, the counters of one queue as STAT reports them, is the admin
//  codec's (src/device/zq_admin.h).

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
    int64_t sample_ms[ZQI_RATE_WINDOW + 1]; //  monotonic time of each sample
    size_t samples;                         //  samples taken so far
    bool backlog_warned;                    //  its oldest message passed backlog_warning_ms
    void *kind_state;                       //  stream or forward state
} zqi_dqueue_t;

//  What the device's kinds need from the device.
typedef struct {
    zqi_device_config_t *config;
    zcert_t *cert; //  CURVE server certificate, or NULL
    //  The device's clock (NULL: the system's): rate samples, the tick,
    //  uptime, and the kinds' and access module's log rate limits read it.
    const zqi_clock_t *clock;
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
    //  Optional (NULL: the kind's queues exist only as configured). DELETE
    //  of a queue no configuration declared: flags ZQ_DELETE_FORCE or 0,
    //  how many messages went in *count_p. 0 or -1 with errno.
    int (*delete_queue) (zqi_device_t *device, zqi_dqueue_t *dq, int flags, uint64_t *count_p);
};

extern const zqi_kind_ops_t zqi_kind_queue;
extern const zqi_kind_ops_t zqi_kind_stream;
extern const zqi_kind_ops_t zqi_kind_forward;

//  Returns the operations of kind, or NULL if kind is none.
const zqi_kind_ops_t *zqi_kind_ops (zqi_kind_t kind);

//  Creates a socket of type for a kind or the admin socket through the
//  library's socket helper (zqi_socket_new: the signal guard and the
//  common socket options): sndhwm, rcvhwm and max_message_bytes as given
//  (max_message_bytes at most INT32_MAX), linger 0 and, if secure, the
//  device's CURVE certificate (a CURVE server). Returns it, or NULL with errno and
//  one line in error.
zsock_t *zqi_device_socket_new (zqi_device_env_t *env, int type, int sndhwm, int rcvhwm,
                                int64_t max_message_bytes, bool secure, char *error,
                                size_t error_size);
//  With an access section, sets sock's ZAP domain so that the ZAP handler
//  admits only identities with right op on queue name (a stream's or a
//  forward's socket), before it binds.
void zqi_device_guard (zqi_device_env_t *env, zsock_t *sock, zqi_access_op_t op, const char *name);

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
//  As zqi_device_recv_nowait; also copies the connection's ZAP User-Id
//  into user_id ("" if it has none).
zmsg_t *zqi_device_recv_identified (zsock_t *sock, char *user_id, size_t user_id_size);

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
//  Sets the server's authoriser (zq_queue_set_authorizer). 0 or -1.
int zqi_qserver_authorize (zqi_qserver_t *self, zq_queue_authorize_fn *fn, void *arg);
//  The socket to poll for input, and its resolved endpoints.
zsock_t *zqi_qserver_sock (zqi_qserver_t *self);
const char *zqi_qserver_endpoint (zqi_qserver_t *self);
//  Does the server's work: input waiting and due timers. Never blocks.
void zqi_qserver_work (zqi_qserver_t *self);
//  Milliseconds until the server needs zqi_qserver_work, or -1.
int64_t zqi_qserver_next_timer_ms (zqi_qserver_t *self);
//  The JetStream store's signal fd (polled beside the socket), or -1.
int zqi_qserver_store_fd (zqi_qserver_t *self);
//  Makes queue name exist (declared in the configuration). 0 or -1.
int zqi_qserver_declare (zqi_qserver_t *self, const char *name);
//  Appends to names (of char *, new strings) the server's queue names.
void zqi_qserver_names (zqi_qserver_t *self, zlistx_t *names);
//  Fills row for queue name. Returns 0, or -1 with errno ZQ_ENOTFOUND.
int zqi_qserver_row (zqi_qserver_t *self, const char *name, zqi_row_t *row);
int zqi_qserver_peek (zqi_qserver_t *self, const char *name, size_t count, zmsg_t *reply);
int zqi_qserver_purge (zqi_qserver_t *self, const char *name, uint64_t *count_p);
int zqi_qserver_redrive (zqi_qserver_t *self, const char *name, uint64_t *count_p);
//  zq_queue_delete on the server (flags ZQ_DELETE_FORCE or 0).
int zqi_qserver_delete (zqi_qserver_t *self, const char *name, int flags, uint64_t *count_p);

//  The server's own counters: connections now, its zq_queue_stats_t
//  (errors, refused, forgotten, ...), and refusals by code (counts[0 ..
//  count - 1]).
void zqi_qserver_counters (zqi_qserver_t *self, uint64_t *connections_p, zq_queue_stats_t *stats,
                           uint64_t *counts, size_t count);

//  ---- The actor (zq_device.c, zq_device_io.c, zq_device_list.c,
//  zq_device_admin.c) ----------------------------------------------------

//  How often rates are sampled, and queues of kind queue the reliable
//  server created for clients are noticed.
#define ZQI_DEVICE_TICK_MS 1000
//  Largest request the admin socket accepts (INFO reports it).
#define ZQI_DEVICE_ADMIN_REQUEST_MAX (64 * 1024)
//  Replies the admin socket keeps for a client that does not read them;
//  past it the next are dropped. A PEEK reply may hold up to
//  ZQ_QUEUE_PEEK_MAX_BYTES, so this bounds what an unread client costs.
#define ZQI_DEVICE_ADMIN_REPLIES_KEPT 4

struct _zqi_device_t {
    zsock_t *pipe;
    zqi_device_env_t env;
    zqi_device_config_t *config;
    zactor_t *auth;
    zsock_t *zap; //  zq's ZAP handler (with an access section), or NULL
    zsock_t *admin;
    char *admin_endpoint;
    zqi_qserver_t *qserver;
    zhashx_t *queues; //  name -> zqi_dqueue_t *
    int64_t next_tick_ms;
    int64_t started_ms; //  monotonic, for INFO's uptime
    int lock_fd;        //  flock()ed SPOOL/zqd.lock, or -1
    bool terminated;
    uint64_t bad_commands;
    struct _zqi_metrics_t *metrics; //  what the HTTP server shows, or NULL (zq_device_metrics.h)
    struct _zqi_http_t *http;       //  the HTTP server (device/http), or NULL
};

//  Test only: zq_device_new with the device's rates, tick, uptime and log
//  rate limits on clock (zq_clock.h; NULL: the system's), so a test
//  drives them with a fake clock. clock must outlive the device.
ZQ_EXPORT zactor_t *zqi_device_new_clocked (zconfig_t *config, const zqi_clock_t *clock,
                                            char *error, size_t error_size);

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

zmsg_t *zqi_device_handle (zqi_device_t *self, zmsg_t *request, bool from_pipe,
                           const char *user_id);

void zqi_device_admin_request (zqi_device_t *self, zmsg_t *request, const char *user_id);

#endif
