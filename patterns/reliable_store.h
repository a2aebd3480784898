/*  =========================================================================
    reliable_store - the reliable server's store seam: where the messages
    of its named queues live, behind one const table of operations.
    Internal, never installed.

    A store keeps, per named queue, the messages PUT and not yet acked,
    hands them out against a consumer's credit, and settles each delivery
    (ack, nack with a delay, touch). Every call is made from the server's
    own thread; a store that works on threads of its own (the JetStream
    store: libnats) never calls back into the server: it queues results
    and makes signal_fd readable, and the server collects them with
    put_results and deliveries when that fd polls readable.

    Implementations:
      jetstream (reliable_store_jetstream.c, built when configure found
      libnats: HAVE_NATS): one JetStream stream and one durable pull
      consumer per queue, shared by every zqd pointed at the same cluster.
      libnats starts threads of its own for the whole process with the
      first store; a program that opened one calls nats_Close (or
      nats_CloseAndWait) before it exits.
    The local store (zq_spool plus in-memory delivery state) is still
    called directly by reliable_server_*.c; it moves behind this table
    next, with no change of behaviour.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_RELIABLE_STORE_H_INCLUDED
#define ZQ_RELIABLE_STORE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zq_clock.h"

#define ZQI_STORE_ID_SIZE      16                       //  a zq message id (ZQ_MSG_ID_SIZE)
#define ZQI_STORE_NAME_MAX     240                      //  longest stream name a queue maps to
#define ZQI_STORE_FETCH_MAX    256                      //  most messages one fetch asks for
#define ZQI_STORE_REPLICAS_MAX 5                        //  JetStream's own limit
#define ZQI_STORE_DELAY_MAX_MS (7 * 24 * 3600 * 1000LL) //  longest nack delay
#define ZQI_STORE_REDRIVE_MAX  1000                     //  most dead letters one redrive moves

typedef struct _zqi_store_t zqi_store_t;

//  What a store is opened with. Strings are copied; NULL means "none".
typedef struct {
    const char *servers;      //  URL[,URL...] of the cluster (required)
    const char *credentials;  //  a NATS .creds file
    const char *tls_ca;       //  CA file: the servers must present a certificate it signed
    const char *tls_cert;     //  client certificate chain ...
    const char *tls_key;      //  ... and its private key
    const char *prefix;       //  stream name prefix (default "ZQ"; [A-Za-z0-9-], <= 32 bytes)
    uint32_t replicas;        //  1..ZQI_STORE_REPLICAS_MAX; 0: 1
    int64_t visibility_ms;    //  AckWait: a delivery not settled in this time goes again
    uint32_t max_attempts;    //  deliveries before dead-lettering; 0: no limit
    int64_t request_wait_ms;  //  longest wait for a JetStream API reply (0: 5000)
    const zqi_clock_t *clock; //  the store's timers (retries); NULL: the real clock
} zqi_store_config_t;

//  The outcome of one put, read back with put_results.
typedef struct {
    uint8_t id[ZQI_STORE_ID_SIZE];
    char queue[ZQI_STORE_NAME_MAX + 1];
    //  0: stored (confirm the PUT); else why not (do not confirm):
    //  EMSGSIZE when the store will never take it (over its size limit),
    //  anything else when a later try may succeed.
    int errnum;
    bool duplicate; //  stored already under this id: nothing new was stored
} zqi_store_result_t;

//  One message handed out. The caller owns it: settle it (which consumes
//  the delivery's right to be settled) and destroy it with
//  ops->delivery_destroy.
typedef struct {
    char queue[ZQI_STORE_NAME_MAX + 1];
    uint8_t id[ZQI_STORE_ID_SIZE];
    const uint8_t *data; //  the bytes given to put, valid until destroyed
    size_t size;
    uint32_t attempt; //  1 on the first delivery
    void *handle;     //  the store's own
} zqi_store_delivery_t;

typedef enum { ZQI_STORE_ACK = 0, ZQI_STORE_NACK = 1, ZQI_STORE_TOUCH = 2 } zqi_store_settle_t;

typedef struct {
    uint64_t messages;  //  stored and not acked (ready + in flight)
    uint64_t in_flight; //  handed out and not settled, over every gateway
    uint64_t bytes;
} zqi_store_stat_t;

typedef struct {
    const char *name;
    //  Opens a store; NULL and errno when it cannot (EINVAL: bad config;
    //  ECONNREFUSED / ETIMEDOUT: no server answered).
    zqi_store_t *(*open) (const zqi_store_config_t *config);
    //  Closes the store: deliveries not settled go again after their
    //  visibility timeout; puts without a result are not confirmed.
    void (*destroy) (zqi_store_t **self_p);
    //  A file descriptor that polls readable while results or deliveries
    //  wait to be collected.
    int (*signal_fd) (zqi_store_t *self);
    //  Starts storing size bytes under id in queue (a name as
    //  zq_queue_name_valid accepts). 0: a result will follow (put_results);
    //  -1 and errno (ENAMETOOLONG, EMSGSIZE, EAGAIN when too many puts
    //  wait for their result, EIO) when it will not.
    int (*put) (zqi_store_t *self, const char *queue, const uint8_t *id, const void *data,
                size_t size);
    //  Moves up to max results into results; returns how many.
    size_t (*put_results) (zqi_store_t *self, zqi_store_result_t *results, size_t max);
    //  Sets how many more messages of queue the caller will take now
    //  (its credit; each delivery queued spends one; 0 stops). Fetches
    //  ask for at most ZQI_STORE_FETCH_MAX at once; lowering the credit
    //  while one is out may still bring that fetch's messages.
    int (*want) (zqi_store_t *self, const char *queue, uint32_t credit);
    //  Moves up to max deliveries into out; returns how many.
    size_t (*deliveries) (zqi_store_t *self, zqi_store_delivery_t **out, size_t max);
    //  Settles a delivery: ack (gone), nack (goes again after delay_ms,
    //  0..ZQI_STORE_DELAY_MAX_MS) or touch (its visibility timeout starts
    //  again). -1 and errno when the store could not pass it on.
    int (*settle) (zqi_store_t *self, zqi_store_delivery_t *delivery, zqi_store_settle_t how,
                   int64_t delay_ms);
    void (*delivery_destroy) (zqi_store_delivery_t **delivery_p);
    //  What queue holds (ENOENT: no such queue).
    int (*stat) (zqi_store_t *self, const char *queue, zqi_store_stat_t *stat);
    //  Drops every message of queue.
    int (*purge) (zqi_store_t *self, const char *queue);
    //  Deletes queue and its messages.
    int (*remove) (zqi_store_t *self, const char *queue);
    //  Calls each (arg, name) for every queue the store holds, as far as
    //  the cluster knows (queues of other gateways too). 0, or -1 and errno.
    int (*names) (zqi_store_t *self, void (*each) (void *arg, const char *name), void *arg);
    //  Calls each (arg, data, size) with the bytes given to put of up to
    //  max messages at the head of queue, oldest first, in flight ones
    //  included, without taking them or counting a delivery; stops early
    //  when each returns non-zero. Blocks (on the caller's thread) for
    //  requests each bounded by the store's request wait. 0, or -1 and
    //  errno (ENOENT: no such queue; ECONNREFUSED: cluster away).
    int (*peek) (zqi_store_t *self, const char *queue, size_t max,
                 int (*each) (void *arg, const uint8_t *data, size_t size), void *arg);
    //  Moves up to max dead letters of queue (from the queue queue
    //  ".dead") back to queue, oldest first, under their ids: each is
    //  stored in queue (its PubAck awaited) before it leaves the dead
    //  queue, so a failure or crash in between leaves it in both, never in
    //  neither. *count_p: how many were stored in queue (on -1 too).
    //  Blocks like peek. 0 (no dead queue: none moved), or -1 and errno.
    int (*redrive) (zqi_store_t *self, const char *queue, size_t max, uint64_t *count_p);
} zqi_store_ops_t;

struct _zqi_store_t {
    const zqi_store_ops_t *ops;
};

//  Writes the JetStream stream name of queue into name (size bytes):
//  prefix, '_', then the queue name with '_' written "__" and '.' written
//  "_d" (every other byte a queue name may hold is kept), so two queues
//  never share a stream. 0, or -1 and errno ENAMETOOLONG / EINVAL.
int zqi_store_stream_name (const char *prefix, const char *queue, char *name, size_t size);

#ifdef HAVE_NATS
extern const zqi_store_ops_t zqi_store_jetstream;
#endif

#endif
