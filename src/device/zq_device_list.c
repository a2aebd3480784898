/*  =========================================================================
    zq_device_list - the device's list of queues: adding one of each
    kind from its configuration, noticing the queues the reliable server
    made for clients, each queue's row of counts and the rates tick.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_device_internal.h"
#include <msgpack.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
//  ---- Queues ----------------------------------------------------------------

static void
s_dqueue_destroy (zqi_dqueue_t **self_p)
{
    if (self_p && *self_p) {
        zqi_dqueue_t *self = *self_p;
        if (self->ops && self->ops->close)
            self->ops->close (self);
        zqi_queue_config_destroy (&self->config);
        free (self->name);
        free (self->in_endpoint);
        free (self->out_endpoint);
        free (self);
        *self_p = NULL;
    }
}

void
zqi_device_dqueue_destructor (void **item_p)
{
    s_dqueue_destroy ((zqi_dqueue_t **)item_p);
}

//  Creates queue name of kind with config (taken: the queue owns it, also
//  on failure) through its kind's open. Returns 0, or -1 with errno and
//  error.
int
zqi_device_queue_add (zqi_device_t *self, zqi_queue_config_t *config, char *error,
                      size_t error_size)
{
    zqi_dqueue_t *dq = (zqi_dqueue_t *)calloc (1, sizeof *dq);
    if (!dq || !(dq->name = strdup (config->name))) {
        free (dq);
        zqi_queue_config_destroy (&config);
        snprintf (error, error_size, "out of memory");
        return zqi_fail (ENOMEM);
    }
    dq->kind = config->kind;
    dq->ops = zqi_kind_ops (config->kind);
    dq->config = config;
    ZQ_ASSERT (dq->ops); //  the configuration names only kinds that exist
    int rc = dq->ops->open (self, dq, error, error_size);
    if (rc) {
        int saved = errno;
        s_dqueue_destroy (&dq);
        return zqi_fail (saved);
    }
    if (zhashx_insert (self->queues, dq->name, dq)) {
        s_dqueue_destroy (&dq);
        snprintf (error, error_size, "out of memory");
        return zqi_fail (ENOMEM);
    }
    return 0;
}

//  Makes sure every queue the reliable server holds has an entry here (for
//  its rates): clients create queues by using them.
void
zqi_device_queues_sync (zqi_device_t *self)
{
    if (!self->qserver)
        return;
    zlistx_t *names = zlistx_new ();
    if (!names)
        return;
    zlistx_set_destructor (names, (zlistx_destructor_fn *)zstr_free);
    zqi_qserver_names (self->qserver, names);
    for (char *name = (char *)zlistx_first (names); name; name = (char *)zlistx_next (names)) {
        if (zhashx_lookup (self->queues, name))
            continue;
        zqi_dqueue_t *dq = (zqi_dqueue_t *)calloc (1, sizeof *dq);
        if (!dq)
            break;
        dq->name = strdup (name);
        dq->kind = ZQI_KIND_QUEUE;
        dq->ops = &zqi_kind_queue;
        if (!dq->name || zhashx_insert (self->queues, dq->name, dq))
            s_dqueue_destroy (&dq);
    }
    zlistx_destroy (&names);
}

void
zqi_device_row (zqi_device_t *self, zqi_dqueue_t *dq, zqi_row_t *row)
{
    memset (row, 0, sizeof *row);
    dq->ops->row (self, dq, row);
    if (dq->samples > 1) {
        size_t span = dq->samples - 1 < ZQI_RATE_WINDOW ? dq->samples - 1 : ZQI_RATE_WINDOW;
        size_t newest = (dq->samples - 1) % (ZQI_RATE_WINDOW + 1);
        size_t oldest = (dq->samples - 1 - span) % (ZQI_RATE_WINDOW + 1);
        row->in_rate = (double)(dq->in_samples[newest] - dq->in_samples[oldest]) / (double)span;
        row->out_rate = (double)(dq->out_samples[newest] - dq->out_samples[oldest]) / (double)span;
    }
}

//  Every ZQI_DEVICE_TICK_MS: notices new queues, samples totals for the rates.
void
zqi_device_tick (zqi_device_t *self)
{
    zqi_device_queues_sync (self);
    for (zqi_dqueue_t *dq = (zqi_dqueue_t *)zhashx_first (self->queues); dq;
         dq = (zqi_dqueue_t *)zhashx_next (self->queues)) {
        zqi_row_t row;
        size_t samples = dq->samples;
        dq->samples = 0; //  zqi_device_row without rates
        zqi_device_row (self, dq, &row);
        dq->samples = samples;
        size_t slot = dq->samples % (ZQI_RATE_WINDOW + 1);
        dq->in_samples[slot] = row.in;
        dq->out_samples[slot] = row.out;
        dq->samples++;
    }
}
