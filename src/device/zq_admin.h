/*  =========================================================================
    zq_admin - the admin protocol's one codec (doc/DEVICE.md, "Admin
    protocol"): the device encodes its replies with it and the command line
    decodes them with it, so a field's name and type live in one place.
    Never installed; the functions are exported from libzq for the zq
    program only.

    A reply is "OK" or "ERROR" and then frames; this module knows the
    frames after "OK" that carry msgpack maps:
    - a queue row (LS: name and kind; STAT: every counter too),
    - a count (PURGE: "purged", REDRIVE: "redriven"),
    - the device's facts (INFO).
    Decoders never trust the bytes: every length is checked, unknown keys
    are skipped (a newer device may add some), strings are bounded, and
    a malformed frame is -1 with errno ZQ_EPROTO, never a crash.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_ADMIN_H_INCLUDED
#define ZQ_ADMIN_H_INCLUDED

#include "zq_internal.h"
#include <czmq.h>

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
    uint64_t bytes;       //  bytes held: a stream's memory ring plus any spool's segments
    uint64_t spool_bytes; //  bytes the spool's segments take
    double in_rate;       //  messages/s over the device's last seconds
    double out_rate;
} zqi_row_t;

//  Longest queue name a row carries (a dead-letter queue's name included),
//  and longest kind name.
#define ZQI_ADMIN_NAME_MAX 255
#define ZQI_ADMIN_KIND_MAX 15
//  Longest text field of INFO (the store's path).
#define ZQI_ADMIN_TEXT_MAX 4095

//  A decoded queue row.
typedef struct {
    char name[ZQI_ADMIN_NAME_MAX + 1];
    char kind[ZQI_ADMIN_KIND_MAX + 1];
    bool has_counters; //  a STAT row (false: an LS row)
    zqi_row_t counters;
} zqi_admin_row_t;

//  The device's facts, as INFO reports them.
typedef struct {
    char version[32];                   //  the package's version, "X.Y.Z"
    uint64_t uptime_ms;                 //  since the device started
    char store[ZQI_ADMIN_TEXT_MAX + 1]; //  the spool directory, or "memory"
    char fsync[16];                     //  the fsync policy
    char bind[ZQI_ADMIN_TEXT_MAX + 1];  //  where producers and consumers connect ("": none)
    uint64_t queues;                    //  queues of every kind now
    uint64_t max_queues;                //  most queues of kind queue clients may create
    uint64_t max_message_bytes;         //  largest message the queue kind accepts
    uint64_t peek_max;                  //  most messages one PEEK returns
    uint64_t admin_request_max_bytes;   //  largest admin request accepted
} zqi_admin_info_t;

//  Encodes a row: name and kind, and with counters (not NULL) every
//  counter. Returns a new frame, or NULL on ENOMEM.
ZQ_EXPORT zframe_t *zqi_admin_row_encode (const char *name, const char *kind,
                                          const zqi_row_t *counters);

//  Decodes a row frame into *row (zeroed first). Returns 0, or -1 with
//  errno ZQ_EPROTO when the frame is not a map with a name and a kind
//  (strings within their bounds) whose counters are numbers.
ZQ_EXPORT int zqi_admin_row_decode (const void *data, size_t size, zqi_admin_row_t *row);

//  Encodes a count: a map of one key. Returns a new frame, or NULL.
ZQ_EXPORT zframe_t *zqi_admin_count_encode (const char *key, uint64_t value);

//  Decodes a count frame: stores the value of key. Returns 0, or -1 with
//  errno ZQ_EPROTO (not a map, or key missing or not a number).
ZQ_EXPORT int zqi_admin_count_decode (const void *data, size_t size, const char *key,
                                      uint64_t *value_p);

//  Encodes the device's facts. Returns a new frame, or NULL on ENOMEM.
ZQ_EXPORT zframe_t *zqi_admin_info_encode (const zqi_admin_info_t *info);

//  Decodes an INFO frame into *info (zeroed first; missing keys stay 0 or
//  ""). Returns 0, or -1 with errno ZQ_EPROTO.
ZQ_EXPORT int zqi_admin_info_decode (const void *data, size_t size, zqi_admin_info_t *info);

#endif
