/*  =========================================================================
    reliable_server_admin - the reliable server's admin calls: declare,
    the list of names, info, peek, purge and redrive.

    patterns/reliable_server.h holds what the server's files share.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable_server.h"

//  ---- Admin --------------------------------------------------------------

int
zqi_r_server_authorizer (zqi_r_server_t *self, zq_queue_authorize_fn *fn, void *arg)
{
    self->authorize = fn;
    self->authorize_arg = fn ? arg : NULL;
    return 0;
}

int
zqi_r_server_declare (zqi_r_server_t *self, const char *name)
{
    if (self->store)
        return zqi_rs_store_declare (self, name);
    self->declaring = true;
    zqi_rs_queue_t *queue = zqi_rs_queue_get (self, name, strlen (name), true);
    self->declaring = false;
    if (!queue)
        return -1;
    //  Found on disk as a client's, or made by a client before: it is
    //  the configuration's now.
    if (queue->is_auto) {
        queue->is_auto = false;
        self->auto_count--;
    }
    queue->declared = true;
    return 0;
}

static int
s_compare_names (const void *a, const void *b)
{
    return strcmp ((const char *)a, (const char *)b);
}

static void
s_free_name (void **item)
{
    free (*item);
    *item = NULL;
}

zlistx_t *
zqi_r_server_names (zqi_r_server_t *self)
{
    zlistx_t *names = zlistx_new ();
    if (!names) {
        errno = ENOMEM;
        return NULL;
    }
    zlistx_set_destructor (names, s_free_name);
    zlistx_set_comparator (names, (zlistx_comparator_fn *)s_compare_names);
    if (self->store) {
        zqi_rs_store_names (self, names);
        zlistx_sort (names);
        return names;
    }
    for (uint32_t index = 0; index < self->queue_count; index++) {
        if (!self->queues[index]->name)
            continue;
        char *name = strdup (self->queues[index]->name);
        if (!name || !zlistx_add_end (names, name)) {
            free (name);
            zlistx_destroy (&names);
            errno = ENOMEM;
            return NULL;
        }
    }
    zlistx_sort (names);
    return names;
}

//  Looks up an existing queue by NUL-terminated name, for a call that reads
//  or changes its records: the PUTs a call of zqi_rs_work left in flight
//  are settled first, so that no commit runs meanwhile in the committer.
static zqi_rs_queue_t *
s_admin_queue (zqi_r_server_t *self, const char *name)
{
    zqi_rs_settle_all (self);
    zqi_rs_queue_t *queue = zqi_rs_queue_get (self, name, strlen (name), false);
    return queue;
}

//  Reads up to max ready records of queue without delivering them: each
//  is handed out, decoded, and given back (records given back come out
//  again first, lowest seq first, so the order is kept).
int
zqi_rs_peek (zqi_r_server_t *self, zqi_rs_queue_t *queue, zq_msg_t **msgs, size_t max,
             size_t *count_p)
{
    *count_p = 0;
    uint64_t *seqs = max ? (uint64_t *)malloc (max * sizeof (uint64_t)) : NULL;
    if (max && !seqs)
        return zqi_fail (ENOMEM);
    int rc = 0;
    size_t taken = 0, bytes = 0;
    while (taken < max) {
        zq_spool_record_t record;
        if (zq_spool_next (queue->spool, &record)) {
            if (errno != EAGAIN)
                rc = -1;
            break;
        }
        seqs[taken++] = record.seq;
        if (*count_p && bytes + record.size > ZQ_QUEUE_PEEK_MAX_BYTES)
            break;
        bytes += record.size;
        const void *frames[1] = {record.data};
        size_t sizes[1] = {record.size};
        zq_msg_t *msg = zq_msg_decode_buffers (frames, sizes, 1, 0);
        if (!msg)
            continue;
        uint32_t index = zqi_rs_entry_in (self, zq_msg_id (msg), queue->index);
        if (index != ZQI_R_NONE && self->table.entries[index].seq == record.seq &&
            self->table.entries[index].attempt > zq_msg_attempt (msg))
            zq_msg_set_attempt (msg, self->table.entries[index].attempt);
        msgs[(*count_p)++] = msg;
    }
    int saved = errno;
    for (size_t i = 0; i < taken; i++)
        zq_spool_return (queue->spool, seqs[i]);
    free (seqs);
    errno = saved;
    return rc;
}

void
zqi_r_server_refusals (zqi_r_server_t *self, uint64_t *counts, size_t count)
{
    for (size_t code = 0; code < count; code++)
        counts[code] = code < ZQI_R_CODE_COUNT ? self->refusals[code] : 0;
}

int
zqi_r_server_info (zqi_r_server_t *self, const char *name, zq_queue_info_t *info)
{
    //  A closed queue answers from what its spool held when it was closed.
    if (zqi_queue_name_check (name, strlen (name)) < 0)
        return zqi_fail (EINVAL);
    if (self->store)
        return zqi_rs_store_info (self, name, info);
    zqi_rs_queue_t *queue = zqi_rs_queue_find (self, name);
    if (!queue)
        return zqi_fail (ZQ_ENOTFOUND);
    //  One known by name only since the start (never used) is opened once.
    if (!queue->spool && !queue->used && zqi_rs_queue_open (self, queue, false))
        return -1;
    *info = queue->counters;
    zq_spool_stats_t stats = queue->closed_stats;
    if (queue->spool)
        zq_spool_stats (queue->spool, &stats);
    info->depth = stats.depth;
    info->disk_bytes = stats.disk_bytes;
    info->ready = stats.depth - stats.in_flight;
    info->in_flight = queue->in_flight;
    info->delayed = queue->held;
    info->consumers = queue->consumer_count;
    info->dead = 0;
    if (queue->dead != ZQI_R_NONE) {
        zqi_rs_queue_t *dead = self->queues[queue->dead];
        if (!dead->spool && !dead->used) {
            //  Known by name only since the start: opened once, as above.
            self->pinned = queue;
            int rc = zqi_rs_queue_open (self, dead, false);
            self->pinned = NULL;
            if (rc)
                return -1;
        }
        stats = dead->closed_stats;
        if (dead->spool)
            zq_spool_stats (dead->spool, &stats);
        info->dead = stats.depth;
    }
    info->oldest_age_ms = 0;
    uint64_t oldest_ms = queue->spool ? 0 : queue->closed_oldest_ms;
    zq_msg_t *oldest = NULL;
    size_t count = 0;
    if (queue->spool && info->ready && zqi_rs_peek (self, queue, &oldest, 1, &count) == 0 &&
        count == 1)
        oldest_ms = zq_msg_created_ms (oldest);
    zq_msg_destroy (&oldest);
    if (info->ready && oldest_ms) {
        int64_t age = zqi_clock_wall (self->common.ctx->clock) - (int64_t)oldest_ms;
        info->oldest_age_ms = age > 0 ? (uint64_t)age : 0;
    }
    return 0;
}

int
zqi_r_server_peek (zqi_r_server_t *self, const char *name, zq_msg_t **msgs, size_t max,
                   size_t *count_p)
{
    *count_p = 0;
    if (self->store)
        return zqi_queue_name_check (name, strlen (name)) < 0
                   ? zqi_fail (EINVAL)
                   : zqi_rs_store_peek (self, name, msgs, max, count_p);
    zqi_rs_queue_t *queue = s_admin_queue (self, name);
    return queue ? zqi_rs_peek (self, queue, msgs, max, count_p) : -1;
}

int
zqi_r_server_purge (zqi_r_server_t *self, const char *name, uint64_t *count_p)
{
    if (self->store)
        return zqi_queue_name_check (name, strlen (name)) < 0
                   ? zqi_fail (EINVAL)
                   : zqi_rs_store_purge (self, name, count_p);
    zqi_rs_queue_t *queue = s_admin_queue (self, name);
    if (!queue)
        return -1;
    //  Held records first (they are in flight in the spool), then every
    //  ready record.
    for (uint32_t index = 0; index < self->table.capacity; index++) {
        zqi_r_entry_t *entry = &self->table.entries[index];
        if (entry->in_use && entry->queue == queue->index && entry->state == ZQI_RS_HELD) {
            if (zqi_rs_entry_ack (self, index))
                return -1;
            (*count_p)++;
        }
    }
    zq_spool_record_t record;
    while (zq_spool_next (queue->spool, &record) == 0) {
        zqi_envelope_t envelope;
        uint32_t index = ZQI_R_NONE;
        if (zqi_envelope_parse ((const uint8_t *)record.data, record.size, NULL, 0, false,
                                &envelope) == 0) {
            index = zqi_rs_entry_in (self, envelope.id, queue->index);
            if (index != ZQI_R_NONE && self->table.entries[index].seq != record.seq)
                index = ZQI_R_NONE;
        }
        if (zqi_rs_record_ack (self, queue, record.seq))
            return -1;
        if (index != ZQI_R_NONE) {
            zqi_rs_entry_leave (self, index);
            zqi_r_table_remove (&self->table, index);
        }
        (*count_p)++;
    }
    if (errno != EAGAIN)
        return -1;
    return zq_spool_commit (queue->spool);
}

int
zqi_r_server_redrive (zqi_r_server_t *self, const char *name, uint64_t *count_p)
{
    if (self->store)
        return zqi_queue_name_check (name, strlen (name)) < 0
                   ? zqi_fail (EINVAL)
                   : zqi_rs_store_redrive (self, name, count_p);
    zqi_rs_queue_t *queue = s_admin_queue (self, name);
    if (!queue)
        return -1;
    if (queue->is_dead || queue->dead == ZQI_R_NONE)
        return 0;
    self->pinned = queue; //  opening the dead-letter queue must not close it
    zqi_rs_queue_t *dead = zqi_rs_dead_queue (self, queue);
    self->pinned = NULL;
    if (!dead)
        return -1;
    uint64_t seqs[256];
    int rc = 0;
    while (rc == 0) {
        size_t taken = 0;
        zq_spool_record_t record;
        while (taken < 256 && zq_spool_next (dead->spool, &record) == 0) {
            zqi_envelope_t envelope;
            if (zqi_envelope_parse ((const uint8_t *)record.data, record.size, NULL, 0, false,
                                    &envelope) ||
                zqi_rs_rewrite_attempt (self, &record, &envelope, 0) ||
                zq_spool_append (queue->spool, self->bytes.data, self->bytes.size, NULL)) {
                zq_spool_return (dead->spool, record.seq);
                rc = -1;
                break;
            }
            //  Only this record's entry: another copy of the same id may
            //  be delivered from the dead-letter queue meanwhile.
            uint32_t index = zqi_rs_entry_in (self, envelope.id, dead->index);
            if (index != ZQI_R_NONE && self->table.entries[index].seq == record.seq) {
                zqi_rs_entry_leave (self, index);
                zqi_r_table_remove (&self->table, index);
            }
            seqs[taken++] = record.seq;
        }
        int saved = errno;
        if (taken == 0)
            break;
        if (zq_spool_commit (queue->spool)) {
            //  Those not stored stay dead letters.
            saved = errno;
            for (size_t i = 0; i < taken; i++)
                zq_spool_return (dead->spool, seqs[i]);
            rc = -1;
        } else {
            //  Copies whose ack fails stay dead letters too (redriven
            //  twice, never lost); they are given back to the dead queue.
            for (size_t i = 0; i < taken; i++)
                if (zqi_rs_record_ack (self, dead, seqs[i])) {
                    saved = errno;
                    rc = -1;
                }
            *count_p += taken;
            queue->counters.put += taken;
        }
        errno = saved;
    }
    int saved = errno;
    zq_spool_commit (dead->spool);
    errno = saved;
    return rc;
}

int
zqi_r_server_delete (zqi_r_server_t *self, const char *name, int flags, uint64_t *count_p)
{
    if (zqi_queue_name_check (name, strlen (name)) < 0)
        return zqi_fail (EINVAL);
    if (self->store)
        return zqi_rs_store_delete (self, name, flags, count_p);
    zqi_rs_settle_all (self); //  as s_admin_queue
    zqi_rs_queue_t *queue = zqi_rs_queue_find (self, name);
    if (!queue)
        return zqi_fail (ZQ_ENOTFOUND);
    zqi_rs_queue_t *dead =
        queue->dead != ZQI_R_NONE && !queue->is_dead ? self->queues[queue->dead] : NULL;
    if (queue->declared || (dead && dead->declared))
        return zqi_fail (EPERM);
    self->pinned = queue; //  counting the dead-letter queue must not close it
    bool holds = zqi_rs_queue_depth (self, queue) || queue->held || queue->in_flight ||
                 (dead && (zqi_rs_queue_depth (self, dead) || dead->held || dead->in_flight));
    self->pinned = NULL;
    if (holds && !(flags & ZQ_DELETE_FORCE))
        return zqi_fail (ENOTEMPTY);
    uint64_t dropped = 0;
    if (dead)
        dropped += zqi_rs_queue_remove (self, dead);
    dropped += zqi_rs_queue_remove (self, queue);
    *count_p = dropped;
    return 0;
}
