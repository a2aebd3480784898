/*  =========================================================================
    zq_device_metrics - what the device's HTTP server shows, and the server.
    Never installed.

    src/device/zq_device_metrics.c  a snapshot of the device's rows, published by
                             the actor once a second, with 10 minutes of
                             per-second samples; renders it as Prometheus
                             text and as JSON
    src/device/zq_device_http.c     the HTTP server (libmicrohttpd, its own thread):
                             GET /metrics, GET /api/queues, GET / (the page)

    The device's state belongs to its actor thread. The actor copies what
    the server may show into the snapshot under the snapshot's mutex; the
    server's thread reads only the snapshot (and /proc/self), never the
    device.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_DEVICE_METRICS_H_INCLUDED
#define ZQ_DEVICE_METRICS_H_INCLUDED

#include "zq_device_internal.h"

//  Per-second samples kept per queue for the status page's charts.
#define ZQI_METRICS_HISTORY 600

//  What the device as a whole reports at each publish.
typedef struct {
    uint64_t connections;      //  connections to the queue kind's endpoint
    uint64_t server_errors;    //  the reliable server's stats.errors
    uint64_t server_refused;   //  the reliable server's stats.refused
    uint64_t dedupe_forgotten; //  the reliable server's stats.forgotten
    uint64_t refusals[16];     //  REFUSE ids and ERRORs sent, by code
    uint64_t bad_commands;     //  admin requests that were not understood
} zqi_metrics_device_t;

typedef struct _zqi_metrics_t zqi_metrics_t;

//  A new, empty snapshot; spool_dir ("" or NULL: in memory) is where the
//  free disk space is measured; each publish is timed by clock's wall time
//  (NULL: the system's; clock must outlive it). NULL on ENOMEM.
zqi_metrics_t *zqi_metrics_new (const char *spool_dir, const zqi_clock_t *clock);
void zqi_metrics_destroy (zqi_metrics_t **self_p);

//  Actor thread: a publish is begin, one queue call per queue, end. begin
//  and queue only stage; end takes the mutex and replaces the snapshot
//  (queues not staged are removed), adding one sample to each queue's
//  history. row is copied; its rates are ignored (end computes them).
void zqi_metrics_begin (zqi_metrics_t *self);
void zqi_metrics_queue (zqi_metrics_t *self, const char *name, zqi_kind_t kind,
                        const zqi_row_t *row);
void zqi_metrics_end (zqi_metrics_t *self, const zqi_metrics_device_t *device);

//  Any thread: the snapshot as Prometheus text exposition format (0.0.4),
//  or as JSON with up to history_s seconds of samples per queue (0 to
//  ZQI_METRICS_HISTORY). Each returns a new string (free), or NULL on
//  ENOMEM.
char *zqi_metrics_text (zqi_metrics_t *self);
char *zqi_metrics_json (zqi_metrics_t *self, size_t history_s);

//  ---- the server --------------------------------------------------------
typedef struct _zqi_http_t zqi_http_t;

//  Parses an HTTP listening address, HOST:PORT (an IPv4 address, [IPv6]
//  or localhost; PORT 0 to 65535, 0 for any free port). Returns 0, or -1
//  with errno EINVAL and a line in error.
int zqi_http_address_check (const char *address, char *error, size_t error_size);

//  Starts serving metrics on address (zqi_http_address_check's form).
//  Returns the server, or NULL with errno (ENOTSUP: built without
//  libmicrohttpd) and a line in error. The server reads metrics, which
//  must outlive it.
zqi_http_t *zqi_http_new (const char *address, zqi_metrics_t *metrics, char *error,
                          size_t error_size);
//  Stops the server and waits for its thread.
void zqi_http_destroy (zqi_http_t **self_p);
//  The address it listens on, with the port it got ("127.0.0.1:9670").
const char *zqi_http_address (zqi_http_t *self);

#endif
