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
#include "zq_device_metrics.h"
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

//  A new queue's first rate sample: nothing in or out at the last tick (it
//  did not exist then), so the first STAT after activity shows a rate.
static void
s_rate_baseline (zqi_device_t *self, zqi_dqueue_t *dq)
{
    int64_t now = zqi_clock_mono (self->env.clock);
    int64_t last_tick = self->next_tick_ms ? self->next_tick_ms - ZQI_DEVICE_TICK_MS : now;
    dq->sample_ms[0] = last_tick < now ? last_tick : now;
    dq->samples = 1;
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
    s_rate_baseline (self, dq);
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
//  its rates), and only those: clients create queues by using them, and
//  the server deletes idle ones it made for them.
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
    zhashx_t *present = zhashx_new ();
    for (char *name = (char *)zlistx_first (names); present && name;
         name = (char *)zlistx_next (names))
        zhashx_insert (present, name, name);
    zlistx_t *gone = present ? zlistx_new () : NULL;
    if (gone)
        zlistx_set_destructor (gone, (zlistx_destructor_fn *)zstr_free);
    for (zqi_dqueue_t *dq = gone ? (zqi_dqueue_t *)zhashx_first (self->queues) : NULL; dq;
         dq = (zqi_dqueue_t *)zhashx_next (self->queues)) {
        //  Only the reliable server's queues come and go with it.
        char *copy = dq->ops == &zqi_kind_queue && !zhashx_lookup (present, dq->name)
                         ? strdup (dq->name)
                         : NULL;
        if (copy)
            zlistx_add_end (gone, copy);
    }
    for (char *name = gone ? (char *)zlistx_first (gone) : NULL; name;
         name = (char *)zlistx_next (gone))
        zhashx_delete (self->queues, name);
    zlistx_destroy (&gone);
    zhashx_destroy (&present);
    for (char *name = (char *)zlistx_first (names); name; name = (char *)zlistx_next (names)) {
        if (zhashx_lookup (self->queues, name))
            continue;
        zqi_dqueue_t *dq = (zqi_dqueue_t *)calloc (1, sizeof *dq);
        if (!dq)
            break;
        dq->name = strdup (name);
        dq->kind = ZQI_KIND_QUEUE;
        dq->ops = &zqi_kind_queue;
        s_rate_baseline (self, dq);
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
    if (dq->samples > 0) {
        //  From the oldest sample kept to the live counters: activity since
        //  the last tick counts at once.
        size_t kept = dq->samples < ZQI_RATE_WINDOW + 1 ? dq->samples : ZQI_RATE_WINDOW + 1;
        size_t oldest = (dq->samples - kept) % (ZQI_RATE_WINDOW + 1);
        double seconds =
            (double)(zqi_clock_mono (self->env.clock) - dq->sample_ms[oldest]) / 1000.0;
        if (seconds < 0.1)
            seconds = 0.1;
        if (row->in >= dq->in_samples[oldest])
            row->in_rate = (double)(row->in - dq->in_samples[oldest]) / seconds;
        if (row->out >= dq->out_samples[oldest])
            row->out_rate = (double)(row->out - dq->out_samples[oldest]) / seconds;
    }
}

//  Warns once when a queue's oldest message passes backlog_warning_ms, and
//  says so again when the backlog is gone.
static void
s_backlog_check (zqi_device_t *self, zqi_dqueue_t *dq, const zqi_row_t *row)
{
    int64_t limit = self->config->backlog_warning_ms;
    if (limit <= 0)
        return;
    if (!dq->backlog_warned && row->oldest_age_ms > (uint64_t)limit) {
        dq->backlog_warned = true;
        zqi_log (ZQ_LOG_WARNING,
                 "zq_device: %s %s is backing up: its oldest message waits for %llu ms (over "
                 "device/backlog_warning_ms %lld), %llu waiting, %llu consumer%s",
                 zqi_kind_name (dq->kind), dq->name, (unsigned long long)row->oldest_age_ms,
                 (long long)limit, (unsigned long long)row->depth,
                 (unsigned long long)row->consumers, row->consumers == 1 ? "" : "s");
    } else if (dq->backlog_warned && row->oldest_age_ms <= (uint64_t)limit) {
        dq->backlog_warned = false;
        zqi_log (ZQ_LOG_NOTICE, "zq_device: %s %s caught up: its oldest message waits for %llu ms",
                 zqi_kind_name (dq->kind), dq->name, (unsigned long long)row->oldest_age_ms);
    }
}

//  Every ZQI_DEVICE_TICK_MS: notices new queues, samples totals for the rates.
void
zqi_device_tick (zqi_device_t *self)
{
    zqi_device_queues_sync (self);
    if (self->metrics)
        zqi_metrics_begin (self->metrics);
    for (zqi_dqueue_t *dq = (zqi_dqueue_t *)zhashx_first (self->queues); dq;
         dq = (zqi_dqueue_t *)zhashx_next (self->queues)) {
        zqi_row_t row;
        size_t samples = dq->samples;
        dq->samples = 0; //  zqi_device_row without rates
        zqi_device_row (self, dq, &row);
        dq->samples = samples;
        if (self->metrics)
            zqi_metrics_queue (self->metrics, dq->name, dq->kind, &row);
        size_t slot = dq->samples % (ZQI_RATE_WINDOW + 1);
        dq->in_samples[slot] = row.in;
        dq->out_samples[slot] = row.out;
        dq->sample_ms[slot] = zqi_clock_mono (self->env.clock);
        s_backlog_check (self, dq, &row);
        dq->samples++;
    }
    if (self->metrics) {
        zqi_metrics_device_t device = {0};
        device.bad_commands = self->bad_commands;
        if (self->qserver) {
            zq_queue_stats_t stats;
            zqi_qserver_counters (self->qserver, &device.connections, &stats, device.refusals,
                                  sizeof device.refusals / sizeof device.refusals[0]);
            device.server_errors = stats.errors;
            device.server_refused = stats.refused;
            device.dedupe_forgotten = stats.forgotten;
        }
        zqi_metrics_end (self->metrics, &device);
    }
}
