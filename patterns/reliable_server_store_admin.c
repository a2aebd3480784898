/*  =========================================================================
    reliable_server_store_admin - the admin calls of a reliable server
    whose queues live in the JetStream store: declare, the list of queues
    (those met here and every stream under the prefix), info, peek, purge,
    redrive and delete, each answered from the cluster.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable_server_store.h"

#define S_NAMES_MS 1000 //  the store's list of queues asked at most once per this

static const zqi_store_ops_t *s_ops = ZQI_RSS_OPS;

int
zqi_rs_store_declare (zqi_r_server_t *self, const char *name)
{
    return zqi_rss_queue (self, name, true) ? 0 : -1;
}

static void
s_name_found (void *arg, const char *name)
{
    zlistx_t *found = (zlistx_t *)arg;
    char *copy = strdup (name);
    if (copy && !zlistx_add_end (found, copy))
        free (copy);
}

static void
s_name_add (zhashx_t *seen, zlistx_t *names, const char *name)
{
    if (!seen || zhashx_lookup (seen, name))
        return;
    char *copy = strdup (name);
    if (copy && zlistx_add_end (names, copy))
        zhashx_insert (seen, name, (void *)1);
    else
        free (copy);
}

void
zqi_rs_store_names (zqi_r_server_t *self, zlistx_t *names)
{
    //  The queues met here and those the cluster holds (asked at most
    //  once per S_NAMES_MS: the device asks each second).
    zqi_rs_store_t *state = self->store;
    int64_t now = zqi_r_now (&self->common);
    if (s_ops->names && (!state->names_at || now - state->names_at >= S_NAMES_MS)) {
        zlistx_t *found = zlistx_new ();
        if (found) {
            zlistx_set_destructor (found, (zlistx_destructor_fn *)zstr_free);
            if (s_ops->names (state->store, s_name_found, found) == 0) {
                zlistx_destroy (&state->names);
                state->names = found;
                found = NULL;
            }
            zlistx_destroy (&found);
        }
        state->names_at = now;
    }
    zhashx_t *seen = zhashx_new ();
    for (zqi_rss_queue_t *queue = (zqi_rss_queue_t *)zhashx_first (state->queues); queue;
         queue = (zqi_rss_queue_t *)zhashx_next (state->queues))
        s_name_add (seen, names, queue->name);
    for (const char *name = state->names ? (const char *)zlistx_first (state->names) : NULL; name;
         name = (const char *)zlistx_next (state->names))
        if (zqi_queue_name_check (name, strlen (name)) >= 0)
            s_name_add (seen, names, name);
    zhashx_destroy (&seen);
}

int
zqi_rs_store_info (zqi_r_server_t *self, const char *name, zq_queue_info_t *info)
{
    zqi_store_stat_t stat;
    if (s_ops->stat (self->store->store, name, &stat))
        return zqi_fail (errno == ENOENT ? ZQ_ENOTFOUND : errno);
    zqi_rss_queue_t *queue = (zqi_rss_queue_t *)zhashx_lookup (self->store->queues, name);
    memset (info, 0, sizeof *info);
    if (queue) {
        *info = queue->counters;
        info->consumers = queue->consumer_count;
    }
    //  Over every gateway of the cluster, not this server only.
    info->depth = stat.messages;
    info->in_flight = stat.in_flight;
    info->ready = stat.messages > stat.in_flight ? stat.messages - stat.in_flight : 0;
    info->disk_bytes = stat.bytes;
    char dead[ZQ_QUEUE_NAME_MAX + sizeof ZQ_QUEUE_DEAD_SUFFIX];
    if (zqi_queue_name_check (name, strlen (name)) == 0 &&
        snprintf (dead, sizeof dead, "%s" ZQ_QUEUE_DEAD_SUFFIX, name) < (int)sizeof dead &&
        s_ops->stat (self->store->store, dead, &stat) == 0)
        info->dead = stat.messages;
    return 0;
}

int
zqi_rs_store_purge (zqi_r_server_t *self, const char *name, uint64_t *count_p)
{
    zqi_store_stat_t stat;
    if (s_ops->stat (self->store->store, name, &stat))
        return zqi_fail (errno == ENOENT ? ZQ_ENOTFOUND : errno);
    if (s_ops->purge (self->store->store, name))
        return -1;
    *count_p = stat.messages;
    return 0;
}

typedef struct {
    zq_msg_t **msgs;
    size_t *count_p;
    size_t bytes; //  of the messages copied
} s_peeked_t;

static int
s_peeked (void *arg, const uint8_t *data, size_t size)
{
    s_peeked_t *peeked = (s_peeked_t *)arg;
    if (*peeked->count_p && peeked->bytes + size > ZQ_QUEUE_PEEK_MAX_BYTES)
        return 1;
    peeked->bytes += size;
    const void *frames[1] = {data};
    size_t sizes[1] = {size};
    //  Stored as put: its attempt is the one put with (a stream read sees
    //  no delivery count). One that does not decode is not shown.
    zq_msg_t *msg = zq_msg_decode_buffers (frames, sizes, 1, 0);
    if (msg)
        peeked->msgs[(*peeked->count_p)++] = msg;
    return 0;
}

int
zqi_rs_store_peek (zqi_r_server_t *self, const char *name, zq_msg_t **msgs, size_t max,
                   size_t *count_p)
{
    s_peeked_t peeked = {msgs, count_p, 0};
    *count_p = 0;
    if (!s_ops->peek)
        return zqi_fail (ENOTSUP);
    if (s_ops->peek (self->store->store, name, max, s_peeked, &peeked) == 0)
        return 0;
    int saved = errno == ENOENT ? ZQ_ENOTFOUND : errno;
    for (size_t i = 0; i < *count_p; i++)
        zq_msg_destroy (&msgs[i]);
    *count_p = 0;
    return zqi_fail (saved);
}

int
zqi_rs_store_redrive (zqi_r_server_t *self, const char *name, uint64_t *count_p)
{
    if (!s_ops->redrive)
        return zqi_fail (ENOTSUP);
    //  A dead queue has no dead letters of its own, as locally.
    size_t length = strlen (name), suffix = strlen (ZQ_QUEUE_DEAD_SUFFIX);
    if (length > suffix && strcmp (name + length - suffix, ZQ_QUEUE_DEAD_SUFFIX) == 0)
        return 0;
    uint64_t moved = 0;
    int rc = s_ops->redrive (self->store->store, name, ZQI_STORE_REDRIVE_MAX, &moved);
    int saved = errno == ENOENT ? ZQ_ENOTFOUND : errno;
    *count_p += moved;
    zqi_rss_queue_t *queue = (zqi_rss_queue_t *)zhashx_lookup (self->store->queues, name);
    if (queue)
        queue->counters.put += moved;
    return rc ? zqi_fail (saved) : 0;
}

int
zqi_rs_store_delete (zqi_r_server_t *self, const char *name, int flags, uint64_t *count_p)
{
    zqi_store_stat_t stat, dead_stat = {0};
    if (s_ops->stat (self->store->store, name, &stat))
        return zqi_fail (errno == ENOENT ? ZQ_ENOTFOUND : errno);
    //  NAME.dead goes with NAME (given alone, it goes alone).
    char dead[ZQ_QUEUE_NAME_MAX + sizeof ZQ_QUEUE_DEAD_SUFFIX];
    bool has_dead =
        zqi_queue_name_check (name, strlen (name)) == 0 &&
        snprintf (dead, sizeof dead, "%s" ZQ_QUEUE_DEAD_SUFFIX, name) < (int)sizeof dead &&
        s_ops->stat (self->store->store, dead, &dead_stat) == 0;
    if ((stat.messages || dead_stat.messages) && !(flags & ZQ_DELETE_FORCE))
        return zqi_fail (ENOTEMPTY);
    if (s_ops->remove (self->store->store, name))
        return -1;
    if (has_dead && s_ops->remove (self->store->store, dead) == 0)
        stat.messages += dead_stat.messages;
    *count_p = stat.messages;
    zqi_rss_queue_t *queue = (zqi_rss_queue_t *)zhashx_lookup (self->store->queues, name);
    if (queue) {
        //  Its consumers are told, as with a local queue.
        for (uint32_t i = 0; i < queue->consumer_count; i++) {
            zqi_rs_consumer_t *consumer = &self->consumers[queue->consumers[i]];
            if (consumer->in_use)
                zqi_rs_send_error (self, consumer->route, consumer->route_size, ZQI_R_CODE_DELETED,
                                   "queue deleted");
        }
        queue->consumer_count = 0;
        zqi_store_delivery_t *delivery;
        while ((delivery = (zqi_store_delivery_t *)zlistx_detach (queue->held, NULL)))
            s_ops->delivery_destroy (&delivery);
        zlistx_t *keys = zhashx_keys (self->store->flights);
        for (const char *hex = keys ? (const char *)zlistx_first (keys) : NULL; hex;
             hex = (const char *)zlistx_next (keys)) {
            zqi_rss_flight_t *flight =
                (zqi_rss_flight_t *)zhashx_lookup (self->store->flights, hex);
            if (flight && flight->queue == queue)
                zqi_rss_land (self, flight, hex);
        }
        zlistx_destroy (&keys);
        zhashx_delete (self->store->queues, name);
    }
    return 0;
}
