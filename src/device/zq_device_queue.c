/*  =========================================================================
    zq_device_queue - the "queue" kind: the reliable pattern's server role
    (zq_queue "reliable", ZQ_SERVER) on the device's bind endpoint, with
    its spool under SPOOL/queue. The server owns every named queue, its
    dead letters, redelivery timers and dedupe window; the device drives
    it from its poll loop and reads its admin functions.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_device_internal.h"
#include <inttypes.h>

//  Most messages and protocol commands handled per wake-up.
#define S_BURST 4096

struct _zqi_qserver_t {
    zq_queue_t *queue;
    zsock_t *monitor;     //  the server socket's accepted and disconnected events
    uint64_t connections; //  accepted, not yet disconnected
};

//  Counts the connections the monitor reported since the last call.
static void
s_monitor_drain (zqi_qserver_t *self)
{
    for (int burst = 0; self->monitor && burst < 1000; burst++) {
        zmsg_t *event = zqi_device_recv_nowait (self->monitor);
        if (!event)
            break;
        zframe_t *head = zmsg_first (event);
        if (head && zframe_size (head) >= 2) {
            uint16_t kind;
            memcpy (&kind, zframe_data (head), sizeof kind);
            if (kind == ZMQ_EVENT_ACCEPTED)
                self->connections++;
            else if (kind == ZMQ_EVENT_DISCONNECTED && self->connections)
                self->connections--;
        }
        zmsg_destroy (&event);
    }
}

zqi_qserver_t *
zqi_qserver_new (zqi_device_env_t *env, const char *spool_dir, char *error, size_t error_size)
{
    zqi_device_config_t *config = env->config;
    zq_options_t *options = zq_options_dup (config->queue_options);
    if (!options) {
        snprintf (error, error_size, "out of memory");
        errno = ENOMEM;
        return NULL;
    }
    //  CURVE: the server's certificate goes in as a queue option, applied
    //  before the socket binds. The allowed clients are checked by the
    //  device's own zauth (one ZAP handler per process), already running.
    if (env->cert && zq_options_set (options, "curve_cert", config->curve_secret_cert)) {
        zq_options_destroy (&options);
        snprintf (error, error_size, "device/curve/secret_cert: path too long");
        errno = EINVAL;
        return NULL;
    }
    //  The device's storage settings, unless the queue section set them.
    if (spool_dir && !zq_options_is_set (options, "spool_dir"))
        zq_options_set (options, "spool_dir", spool_dir);
    if (!zq_options_is_set (options, "fsync"))
        zq_options_set (options, "fsync", zq_spool_fsync_name (config->fsync));
    if (!zq_options_is_set (options, "fsync_interval_ms"))
        zq_options_set_int (options, "fsync_interval_ms", config->fsync_interval_ms);
    //  Every queue on disk has a byte quota unless the configuration set
    //  one (0 there: none); the filesystem keeps device/min_free_bytes.
    if (spool_dir && zq_options_lookup ("quota_bytes") &&
        !zq_options_is_set (options, "quota_bytes"))
        zq_options_set_int (options, "quota_bytes", ZQI_QUEUE_QUOTA_BYTES_DEFAULT);
    if (zq_options_lookup ("min_free_bytes"))
        zq_options_set_int (options, "min_free_bytes", config->min_free_bytes);

    zqi_qserver_t *self = (zqi_qserver_t *)calloc (1, sizeof *self);
    if (!self) {
        zq_options_destroy (&options);
        snprintf (error, error_size, "out of memory");
        errno = ENOMEM;
        return NULL;
    }
    //  The server role binds endpoints without a prefix.
    self->queue = zq_queue_new ("reliable", ZQ_SERVER, config->bind, options);
    int saved = errno;
    zq_options_destroy (&options);
    if (!self->queue) {
        snprintf (error, error_size, "device/bind: cannot serve queues on %s: %s", config->bind,
                  zq_strerror (saved));
        free (self);
        errno = saved;
        return NULL;
    }
    zqi_device_ipc_private (zq_queue_endpoint (self->queue));
    //  Connections are counted from the socket's events (for metrics); a
    //  server without them still serves.
    //  The name is new each time: a device started where the last one was
    //  freed must not meet that one's monitor.
    char *monitor =
        zsys_sprintf ("inproc://zq-device-connections-%p-%" PRId64, (void *)self, zclock_usecs ());
    if (monitor && zmq_socket_monitor (zsock_resolve (zq_queue_sock (self->queue)), monitor,
                                       ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) == 0) {
        self->monitor = zsock_new (ZMQ_PAIR);
        //  libzmq waits for room to report an event: never make it wait.
        if (self->monitor)
            zsock_set_rcvhwm (self->monitor, 0);
        if (!self->monitor || zsock_connect (self->monitor, "%s", monitor)) {
            zmq_socket_monitor (zsock_resolve (zq_queue_sock (self->queue)), NULL, 0);
            zsock_destroy (&self->monitor);
        }
    }
    zstr_free (&monitor);
    return self;
}

int
zqi_qserver_authorize (zqi_qserver_t *self, zq_queue_authorize_fn *fn, void *arg)
{
    return zq_queue_set_authorizer (self->queue, fn, arg);
}

void
zqi_qserver_destroy (zqi_qserver_t **self_p)
{
    if (self_p && *self_p) {
        //  The monitor stops before its socket goes.
        if ((*self_p)->monitor)
            zmq_socket_monitor (zsock_resolve (zq_queue_sock ((*self_p)->queue)), NULL, 0);
        zsock_destroy (&(*self_p)->monitor);
        zq_queue_destroy (&(*self_p)->queue);
        free (*self_p);
        *self_p = NULL;
    }
}

zsock_t *
zqi_qserver_sock (zqi_qserver_t *self)
{
    return zq_queue_sock (self->queue);
}

const char *
zqi_qserver_endpoint (zqi_qserver_t *self)
{
    return zq_queue_endpoint (self->queue);
}

void
zqi_qserver_work (zqi_qserver_t *self)
{
    //  The device consumes nothing locally: a receive only runs the
    //  server's protocol and timers, and returns EAGAIN when done.
    for (int burst = 0; burst < S_BURST; burst++) {
        zq_msg_t *msg = zq_queue_recv (self->queue, 0);
        if (!msg)
            break;
        zq_msg_destroy (&msg);
    }
    s_monitor_drain (self);
}

void
zqi_qserver_counters (zqi_qserver_t *self, uint64_t *connections_p, zq_queue_stats_t *stats,
                      uint64_t *counts, size_t count)
{
    s_monitor_drain (self);
    *connections_p = self->connections;
    zq_queue_stats (self->queue, stats);
    if (zq_queue_refusals (self->queue, counts, count))
        memset (counts, 0, count * sizeof *counts);
}

int64_t
zqi_qserver_next_timer_ms (zqi_qserver_t *self)
{
    return zq_queue_next_timer_ms (self->queue);
}

int
zqi_qserver_store_fd (zqi_qserver_t *self)
{
    return zq_queue_store_fd (self->queue);
}

int
zqi_qserver_declare (zqi_qserver_t *self, const char *name)
{
    return zq_queue_declare (self->queue, name);
}

void
zqi_qserver_names (zqi_qserver_t *self, zlistx_t *names)
{
    zlistx_t *list = zq_queue_names (self->queue);
    for (const char *name = list ? (const char *)zlistx_first (list) : NULL; name;
         name = (const char *)zlistx_next (list)) {
        char *copy = strdup (name);
        if (copy)
            zlistx_add_end (names, copy);
    }
    zlistx_destroy (&list);
}

int
zqi_qserver_row (zqi_qserver_t *self, const char *name, zqi_row_t *row)
{
    zq_queue_info_t info;
    if (zq_queue_info (self->queue, name, &info))
        return -1;
    row->depth = info.depth;
    row->ready = info.ready;
    row->in_flight = info.in_flight;
    row->delayed = info.delayed;
    row->dead = info.dead;
    row->consumers = info.consumers;
    row->oldest_age_ms = info.oldest_age_ms;
    row->in = info.put;
    row->out = info.acked;
    row->delivered = info.delivered;
    row->redelivered = info.redelivered;
    row->acked = info.acked;
    row->nacked = info.nacked;
    row->timeouts = info.timeouts;
    row->dead_lettered = info.dead_lettered;
    row->expired = info.expired;
    row->duplicates = info.duplicates;
    row->refused = info.refused;
    row->dropped = info.dropped;
    row->bytes = info.disk_bytes;
    row->spool_bytes = info.disk_bytes;
    return 0;
}

int
zqi_qserver_peek (zqi_qserver_t *self, const char *name, size_t count, zmsg_t *reply)
{
    zq_msg_t **msgs = (zq_msg_t **)calloc (count ? count : 1, sizeof *msgs);
    if (!msgs)
        return zqi_fail (ENOMEM);
    size_t taken = 0;
    int rc = zq_queue_peek (self->queue, name, msgs, count, &taken);
    for (size_t index = 0; index < taken; index++) {
        zframe_t *frame = rc == 0 ? zqi_device_one_frame (msgs[index]) : NULL;
        if (frame)
            zmsg_append (reply, &frame);
        zq_msg_destroy (&msgs[index]);
    }
    free (msgs);
    return rc;
}

int
zqi_qserver_purge (zqi_qserver_t *self, const char *name, uint64_t *count_p)
{
    return zq_queue_purge (self->queue, name, count_p);
}

int
zqi_qserver_redrive (zqi_qserver_t *self, const char *name, uint64_t *count_p)
{
    return zq_queue_redrive (self->queue, name, count_p);
}

int
zqi_qserver_delete (zqi_qserver_t *self, const char *name, int flags, uint64_t *count_p)
{
    return zq_queue_delete (self->queue, name, flags, count_p);
}

//  ---- The kind's operations -------------------------------------------------
//  Every queue of this kind lives in the one reliable server, which the
//  device polls and works itself: a queue adds no poll items of its own.

static int
s_kind_open (zqi_device_t *device, zqi_dqueue_t *dq, char *error, size_t error_size)
{
    if (!device->qserver) {
        snprintf (error, error_size, "queue %s: the device has no bind endpoint", dq->name);
        return zqi_fail (EINVAL);
    }
    //  A queue the server made for a client has no config: it exists.
    if (dq->config && zqi_qserver_declare (device->qserver, dq->name)) {
        snprintf (error, error_size, "queue %s: %s", dq->name, zq_strerror (errno));
        return -1;
    }
    return 0;
}

static void
s_kind_row (zqi_device_t *device, zqi_dqueue_t *dq, zqi_row_t *row)
{
    if (device->qserver)
        zqi_qserver_row (device->qserver, dq->name, row);
}

static int
s_kind_peek (zqi_device_t *device, zqi_dqueue_t *dq, size_t count, zmsg_t *reply)
{
    return zqi_qserver_peek (device->qserver, dq->name, count, reply);
}

static int
s_kind_purge (zqi_device_t *device, zqi_dqueue_t *dq, uint64_t *count_p)
{
    return zqi_qserver_purge (device->qserver, dq->name, count_p);
}

static int
s_kind_redrive (zqi_device_t *device, zqi_dqueue_t *dq, uint64_t *count_p)
{
    return zqi_qserver_redrive (device->qserver, dq->name, count_p);
}

static int
s_kind_delete (zqi_device_t *device, zqi_dqueue_t *dq, int flags, uint64_t *count_p)
{
    return zqi_qserver_delete (device->qserver, dq->name, flags, count_p);
}

const zqi_kind_ops_t zqi_kind_queue = {
    .kind = ZQI_KIND_QUEUE,
    .name = "queue",
    .has_endpoints = false,
    .open = s_kind_open,
    .row = s_kind_row,
    .peek = s_kind_peek,
    .purge = s_kind_purge,
    .redrive = s_kind_redrive,
    .delete_queue = s_kind_delete,
};
