/*  =========================================================================
    reliable_server_store - what reliable_server_store.c and
    reliable_server_store_admin.c share: the state of a reliable server
    whose queues live in the JetStream store. Internal, never installed.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_RELIABLE_SERVER_STORE_H_INCLUDED
#define ZQ_RELIABLE_SERVER_STORE_H_INCLUDED

#include "reliable_server.h"
#include "reliable_store.h"

#define ZQI_RSS_ROUTES 4    //  producers one put waiting for its result answers
#define ZQI_RSS_BATCH  1024 //  results or deliveries collected at once

//  The store's operations (NULL: built without libnats).
#ifdef HAVE_NATS
#define ZQI_RSS_OPS (&zqi_store_jetstream)
#else
#define ZQI_RSS_OPS ((const zqi_store_ops_t *)NULL)
#endif

typedef struct {
    uint8_t size;
    uint8_t route[255];
} zqi_rss_route_t;

//  A put the store has not answered yet, and who to answer.
typedef struct {
    zqi_rss_route_t routes[ZQI_RSS_ROUTES];
    uint32_t count;
    int64_t since;
} zqi_rss_waiter_t;

//  A queue the server has met (by a PUT, a CONSUME or an admin call).
typedef struct {
    char *name;
    uint32_t *consumers; //  indexes of the consumers subscribed
    uint32_t consumer_count;
    uint32_t consumer_capacity;
    uint32_t rr;
    zlistx_t *held;  //  deliveries taken from the store, not yet sent
    uint32_t wanted; //  the credit last given to the store
    uint64_t in_flight;
    zq_queue_info_t counters;
} zqi_rss_queue_t;

//  A delivery sent to a consumer and not settled.
typedef struct {
    zqi_store_delivery_t *delivery;
    zqi_rss_queue_t *queue;
    uint32_t owner;   //  consumer index; ZQI_R_NONE once past its visibility
    uint32_t session; //  the owner's session
    int64_t due;      //  visibility deadline (zqi_r_now)
    int64_t forget;   //  then forgotten (the store has delivered it again)
} zqi_rss_flight_t;

//  At most one line per this many ms about puts the store did not take.
#define ZQI_RSS_FAILED_LOG_MS 10000

struct _zqi_rs_store_t {
    zqi_store_t *store;
    int64_t request_wait_ms;
    zhashx_t *queues;  //  name -> zqi_rss_queue_t
    zhashx_t *waiters; //  hex id '/' queue -> zqi_rss_waiter_t
    zhashx_t *flights; //  hex id -> zqi_rss_flight_t
    zlistx_t *names;   //  the store's queues, as last asked
    int64_t names_at;
    int64_t next_sweep;
    zqi_log_limit_t failed_log; //  puts the store did not take
    zqi_store_result_t results[ZQI_RSS_BATCH];
    zqi_store_delivery_t *batch[ZQI_RSS_BATCH];
};

//  Writes id as 32 hex digits and a NUL into hex.
void zqi_rss_hex (const uint8_t *id, char *hex);
//  The queue of name (a valid name), made when create; NULL and errno
//  (ZQ_ENOTFOUND, ZQ_ELIMIT past max_queues, ENOMEM).
zqi_rss_queue_t *zqi_rss_queue (zqi_r_server_t *self, const char *name, bool create);
//  Ends a flight: the consumer's credit comes back; the delivery goes.
void zqi_rss_land (zqi_r_server_t *self, zqi_rss_flight_t *flight, const char *hex);

#endif
