/*  =========================================================================
    reliable_store_jetstream - what the files of the JetStream store share:
    its limits, its state, and the functions one file calls in another.
    Internal, never installed; reliable_store.h is the store's contract.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_RELIABLE_STORE_JETSTREAM_H_INCLUDED
#define ZQ_RELIABLE_STORE_JETSTREAM_H_INCLUDED

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "reliable_store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HAVE_NATS
#include <czmq.h>
#include <nats/nats.h>
#include <pthread.h>

#define ZQI_JS_DURABLE         "zq"
#define ZQI_JS_PREFIX          "ZQ"
#define ZQI_JS_PREFIX_MAX      32
#define ZQI_JS_PENDING_MAX     4096  //  puts waiting for their PubAck
#define ZQI_JS_RESULTS_MAX     65536 //  results and deliveries not collected
#define ZQI_JS_FETCH_WAIT_MS   200   //  one fetch waits at most this long
#define ZQI_JS_IDLE_WAIT_MS    100   //  the fetcher's nap when no queue has credit
#define ZQI_JS_DEAD_SUFFIX     ".dead"
#define ZQI_JS_SUBJECT_ROOT    "zq.q."
#define ZQI_JS_ACK_PENDING_MAX 100000 //  deliveries unsettled over all gateways, per queue
#define ZQI_JS_BIND_RETRY_MS   500    //  a consumer not bound is tried again after this
#define ZQI_JS_QUIET_CHECK_MS  5000   //  fetches empty this long: is the consumer there, stalled?
#define ZQI_JS_ADMIN_WAIT_MS   1000   //  longest wait for a stat or the list of streams
#define ZQI_JS_PING_IVL_MS     1000   //  pings to the server on the connection ...
#define ZQI_JS_PINGS_OUT       3      //  ... and how many may go unanswered
#define ZQI_JS_BROWSE_SKIP_MAX 4096   //  sequences gone a peek or redrive steps over
#define ZQI_JS_REDRIVE_MARK    ".r"   //  a redriven copy's dedupe id: zq id, mark, dead seq
#define ZQI_JS_WRITE_WAIT_MS   3000   //  longest wait for the socket to take a write
#define ZQI_JS_URL_MAX         256    //  a server's URL as the log names it

//  Which server a store's connection is on (reliable_store_jetstream_link.c).
typedef struct _zqi_js_link_t zqi_js_link_t;

typedef struct {
    char *name;
    char stream[ZQI_STORE_NAME_MAX + 1];
    char subject[ZQI_STORE_NAME_MAX + 8];
    natsSubscription *sub; //  NULL until the fetcher has bound the consumer
    uint32_t credit;
    int64_t
        failed_at;    //  monotonic ms (the config's clock) when binding last failed (0: it did not)
    int64_t quiet_at; //  fetcher only: since when its fetches came back empty (0: they did not)
    int64_t checked_at;      //  fetcher only: when the cluster was last asked for its consumer
    uint32_t bind_failures;  //  fetcher only: binds failed in a row (logged at powers of two)
    uint32_t fetch_failures; //  fetcher only: fetches failed (not timed out) in a row, the same
    uint32_t stalls;         //  fetcher only: quiet checks finding messages waiting, the same
    uint32_t unanswered;     //  fetcher only: quiet checks the cluster did not answer, the same
    bool stream_made;        //  its stream is known to exist (puts skip the check)
} zqi_js_queue_t;

typedef struct {
    zqi_store_t base;
    zqi_store_config_t config;
    char prefix[ZQI_JS_PREFIX_MAX + 1];
    natsOptions *opts;
    natsConnection *conn;
    zqi_js_link_t *link; //  the server conn is on, for the log (freed with its last share)
    jsCtx *js;
    int pipe[2];
    pthread_t fetcher;
    bool fetcher_started;
    pthread_mutex_t lock; //  guards everything below
    pthread_cond_t wake;
    bool stopping;
    zhashx_t *queues;    //  name -> zqi_js_queue_t
    zhashx_t *by_stream; //  stream -> zqi_js_queue_t (not owned)
    zlistx_t *results;   //  zqi_store_result_t *
    zlistx_t *ready;     //  zqi_store_delivery_t *
    zlistx_t *retired;   //  natsSubscription * of removed queues, freed at the end
    //  natsMsg * of puts answered, destroyed on the caller's thread (in put
    //  and put_results): a PubAck timeout can fire while js_PublishMsgAsync
    //  still reads the message on that thread.
    zlistx_t *answered;
    uint32_t pending; //  puts without a result
    uint32_t turn;    //  the fetcher's round-robin over queues with credit
} zqi_js_store_t;

//  The errno of a libnats status.
int zqi_js_errno (natsStatus status);
//  Makes the store's signal fd readable.
void zqi_js_signal (zqi_js_store_t *self);
//  Empties the store's signal pipe.
void zqi_js_drain (zqi_js_store_t *self);
//  Writes id as 2 * ZQI_STORE_ID_SIZE lowercase hex digits and a NUL.
void zqi_js_hex (const uint8_t *id, char *hex);
//  Reads an id written by zqi_js_hex. Returns 0, or -1 if hex is not one.
int zqi_js_unhex (const char *hex, uint8_t *id);
//  Fills config for a queue's stream: named stream, taking the one subject
//  *subject_p (config keeps subject_p: it must outlive config), work-queue
//  retention (a message is gone once acked), file storage, replicas
//  copies. The JetStream benchmark makes its streams with it too.
ZQ_EXPORT void zqi_js_stream_config (jsStreamConfig *config, const char *stream,
                                     const char **subject_p, int replicas);
//  Creates the stream of queue when missing (an existing stream of that
//  name is used as it is). Blocks up to the request wait. Returns 0, or -1
//  with errno.
int zqi_js_stream_ensure (zqi_js_store_t *self, const char *stream, const char *subject);
//  The queue entry of name, made (without touching the cluster) when new;
//  NULL with errno if name maps to no stream name or memory ran out. Call
//  with the lock held.
zqi_js_queue_t *zqi_js_queue (zqi_js_store_t *self, const char *name);

//  reliable_store_jetstream_link.c: which server a store's connection is
//  on, for the log. The link is the closure of the three callbacks below,
//  shared by the store and libnats; the store calls the other functions
//  from its own thread, libnats the callbacks from its own.

//  A link with both shares taken, or NULL (no memory).
zqi_js_link_t *zqi_js_link_new (void);
//  Once natsConnection_Connect gave conn: records the server it is on and
//  logs "connected (URL)" (notice). A callback that ran before this names
//  the server libnats gives then.
void zqi_js_link_opened (zqi_js_link_t *link, natsConnection *conn);
//  Before the store calls natsConnection_Close: from then on the loss and
//  the close of its connection are not logged.
void zqi_js_link_closing (zqi_js_link_t *link);
//  The store lets go of its share (and of libnats' too if connected is
//  false: libnats runs no callback of a connection it never made), and
//  sets *link_p to NULL. The link is freed once both shares are gone.
void zqi_js_link_release (zqi_js_link_t **link_p, bool connected);
//  libnats' callbacks (natsConnectionHandler, closure: the link). lost
//  logs the server the connection was on (warning); back records the one
//  it is on now and logs it (warning), or, gone again already, says so
//  and records nothing; closed, the last callback libnats runs for a
//  connection, logs an error unless the store was closing it, and lets go
//  of libnats' share.
void zqi_js_link_lost (natsConnection *conn, void *closure);
void zqi_js_link_back (natsConnection *conn, void *closure);
void zqi_js_link_closed (natsConnection *conn, void *closure);

//  libnats' thread: the PubAck (or its failure) of one put.
void zqi_js_pub_ack (jsCtx *js, natsMsg *msg, jsPubAck *ack, jsPubAckErr *error, void *closure);
//  The fetcher thread's body (arg: the store).
void *zqi_js_fetcher (void *arg);

//  The store's operations (reliable_store.h states their contracts).
int zqi_js_put (zqi_store_t *base, const char *name, const uint8_t *id, const void *data,
                size_t size);
size_t zqi_js_put_results (zqi_store_t *base, zqi_store_result_t *results, size_t max);
int zqi_js_want (zqi_store_t *base, const char *name, uint32_t credit);
size_t zqi_js_deliveries (zqi_store_t *base, zqi_store_delivery_t **out, size_t max);
void zqi_js_delivery_destroy (zqi_store_delivery_t **delivery_p);
int zqi_js_settle (zqi_store_t *base, zqi_store_delivery_t *delivery, zqi_store_settle_t how,
                   int64_t delay_ms);
int zqi_js_stat (zqi_store_t *base, const char *name, zqi_store_stat_t *stat);
int zqi_js_purge (zqi_store_t *base, const char *name);
int zqi_js_remove (zqi_store_t *base, const char *name);
int zqi_js_names (zqi_store_t *base, void (*each) (void *arg, const char *name), void *arg);
int zqi_js_peek (zqi_store_t *base, const char *name, size_t max,
                 int (*each) (void *arg, const uint8_t *data, size_t size), void *arg);
int zqi_js_redrive (zqi_store_t *base, const char *name, size_t max, uint64_t *count_p);
#endif

#endif
