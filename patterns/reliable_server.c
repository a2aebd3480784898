/*  =========================================================================
    reliable_server - the holder of the reliable pattern (ZQ_SERVER,
    ROUTER): named queues in spools, confirms, credit-based delivery,
    visibility timeouts, nacks with backoff, dead letters, TTL, delayed
    delivery, dedupe, local consumption and the admin calls.

    Work happens in batches: zqi_rs_work reads commands from the socket,
    appends every PUT to its queue's spool, commits each spool touched once
    (one fdatasync under fsync "always"), then sends one CONFIRM per
    producer for the whole batch, runs due timers and delivers to consumers
    that have credit. With spools on disk, a batch's commit runs in the
    committer thread while the next batch gathers, acks are taken and
    deliveries go on; a batch grows with the time the disk takes (up to
    ZQI_RS_ROUND PUTs). Its CONFIRMs still wait for its commit. A lone PUT
    read with the socket empty commits in the server's thread, unless that
    would keep remote consumers waiting for an fdatasync.

    A queue's messages are the records of its spool. One table, keyed by
    message id, tracks the records the server has handed out of a spool
    and not yet acked:
        DELIVERED  in flight at a consumer, until ack, nack, touch, the
                   visibility deadline or the consumer's end
        HELD       kept out of delivery until a time (a "zq-not-before-ms"
                   in the future, or a nack delay); the record stays in
                   flight in the spool, only the id, seq and time are kept
        RETURNED   given back to the spool (zq_spool_return), which hands
                   it out again before newer records; the entry remembers
                   the attempt its next delivery carries
    So memory follows what is in flight, delayed or being redelivered, not
    the backlog. What waits in a consumer's pipe is bounded in bytes too
    (max_unsettled_bytes per connection, max_unsettled_bytes_total in all),
    beside its prefetch. Attempts live in these entries: a restart of the server
    delivers every unacked record again with the attempt it was stored
    with (the consumer's death and visibility timeouts do count).

    The server's files (patterns/reliable_server.h holds what they share):
        reliable_server.c           open and close, the pattern's hooks
        reliable_server_queues.c    named queues, their spools and the fd
                                    budget; consumers and subscriptions
        reliable_server_delivery.c  entries (delivered, held, returned),
                                    sending, reading records, dead letters,
                                    local consumption
        reliable_server_acks.c      acks in the spools (one ACK's entries
                                    gathered per queue)
        reliable_server_input.c     commands from the socket, PUTs, settles
        reliable_server_work.c      one call's work: reads, commits, timers,
                                    deliveries, waits while the disk syncs
        reliable_server_commit.c    a batch's commit and answers, in place or
                                    in the committer thread
        reliable_server_admin.c     declare, names, info, peek, purge, redrive
        reliable_server_store*.c    with jetstream_servers set: every queue in
                                    the JetStream store instead of spools
                                    (puts, consumers, deliveries, settles;
                                    _admin.c: names, info, purge, delete)

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable_server.h"
#include <dirent.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>

//  ---- Hooks --------------------------------------------------------------

static void
s_open_existing (zqi_r_server_t *self)
{
    DIR *dir = opendir (self->spool_dir);
    if (!dir)
        return;
    struct dirent *item;
    while ((item = readdir (dir))) {
        if (item->d_name[0] == '.' &&
            (item->d_name[1] == '\0' || (item->d_name[1] == '.' && item->d_name[2] == '\0')))
            continue;
        char *path = zsys_sprintf ("%s/%s", self->spool_dir, item->d_name);
        struct stat info;
        bool is_dir = path && stat (path, &info) == 0 && S_ISDIR (info.st_mode);
        zstr_free (&path);
        if (!is_dir)
            continue;
        size_t size = strlen (item->d_name);
        if (strncmp (item->d_name, ZQI_RS_DELETED_PREFIX, strlen (ZQI_RS_DELETED_PREFIX)) == 0) {
            //  A delete that stopped midway: finish it.
            char *leftover = zsys_sprintf ("%s/%s", self->spool_dir, item->d_name);
            if (leftover)
                zqi_rs_remove_tree (leftover, 4);
            zstr_free (&leftover);
            continue;
        }
        if (self->open_count < zqi_rs_open_new_max (self) ||
            zqi_queue_name_check (item->d_name, size) < 0) {
            if (!zqi_rs_queue_get (self, item->d_name, size, true))
                zqi_log (ZQ_LOG_ERROR, "reliable: queue %s not opened: %s", item->d_name,
                         zq_strerror (errno));
            continue;
        }
        //  Past the fd budget a queue is known by name and opened when
        //  first used.
        zqi_rs_queue_t *queue = zqi_rs_queue_new (self, item->d_name, size);
        if (!queue) {
            zqi_log (ZQ_LOG_ERROR, "reliable: queue %s not opened: %s", item->d_name,
                     zq_strerror (errno));
            continue;
        }
        zqi_rs_queue_register (self, queue);
    }
    closedir (dir);
    self->last_queue = NULL;
}

//  How many queues may be open at once under the process's RLIMIT_NOFILE.
static uint32_t
s_open_max (void)
{
    struct rlimit limit;
    uint64_t files = 1024;
    if (getrlimit (RLIMIT_NOFILE, &limit) == 0)
        files = limit.rlim_cur == RLIM_INFINITY ? (1u << 20) : (uint64_t)limit.rlim_cur;
    uint64_t reserve = files / 4 > ZQI_RS_FD_RESERVE ? files / 4 : ZQI_RS_FD_RESERVE;
    uint64_t open = files > reserve ? (files - reserve) / ZQI_RS_QUEUE_FDS : 0;
    if (open < ZQI_RS_OPEN_MIN)
        open = ZQI_RS_OPEN_MIN;
    return open > UINT32_MAX ? UINT32_MAX : (uint32_t)open;
}

zqi_r_server_t *
zqi_r_server_new (zq_pattern_ctx_t *ctx)
{
    zqi_r_server_t *self = (zqi_r_server_t *)calloc (1, sizeof (zqi_r_server_t));
    if (!self) {
        errno = ENOMEM;
        return NULL;
    }
    self->committer.done_fd = -1;
    if (zqi_r_common_open (&self->common, ctx))
        goto failed;
    int on = 1;
    if (zmq_setsockopt (self->common.handle, ZMQ_ROUTER_MANDATORY, &on, sizeof on))
        goto failed;
    const zq_options_t *options = ctx->options;
    self->options = options;
    const char *spool_dir = zq_options_get_str (options, "spool_dir");
    if (spool_dir && *spool_dir) {
        if (zqi_rs_mkdirs (spool_dir))
            goto failed;
        self->spool_dir = strdup (spool_dir);
        if (!self->spool_dir)
            goto no_memory;
        //  (A policy that does not parse fails each spool's open.)
        zq_spool_fsync_t fsync = ZQ_SPOOL_FSYNC_ALWAYS;
        zq_spool_fsync_parse (zq_options_get_str (options, "fsync"), &fsync);
        self->commit_syncs = fsync == ZQ_SPOOL_FSYNC_ALWAYS;
    }
    self->visibility_ms = zqi_r_option (options, "visibility_timeout_ms");
    self->max_attempts = (uint32_t)zqi_r_option (options, "max_attempts");
    self->backoff_ms = zqi_r_option (options, "nack_backoff_ms");
    self->backoff_max_ms = zqi_r_option (options, "nack_backoff_max_ms");
    self->max_queues = (uint32_t)zqi_r_option (options, "max_queues");
    self->max_consumer_queues = (uint32_t)zqi_r_option (options, "max_consumer_queues");
    self->max_auto_queues = (uint32_t)zqi_r_option (options, "max_auto_queues");
    self->max_auto_per_identity = (uint32_t)zqi_r_option (options, "max_auto_queues_per_identity");
    self->auto_idle_ms = zqi_r_option (options, "auto_queue_idle_ms");
    zqi_disk_watch_init (&self->disk, self->spool_dir,
                         (uint64_t)zqi_r_option (options, "min_free_bytes"));
    self->open_max = self->spool_dir ? s_open_max () : UINT32_MAX;
    self->local_prefetch = (uint32_t)zqi_r_option (options, "prefetch");
    self->max_message_bytes = ctx->max_message_bytes;
    self->max_delay_ms = zqi_r_option (options, "max_delay_ms");
    self->max_unsettled_bytes = (uint64_t)zqi_r_option (options, "max_unsettled_bytes");
    self->max_unsettled_bytes_total = (uint64_t)zqi_r_option (options, "max_unsettled_bytes_total");
    self->max_delayed = (uint64_t)zqi_r_option (options, "max_delayed_messages");
    self->max_delayed_total = (uint64_t)zqi_r_option (options, "max_delayed_messages_total");
    //  Frames a little over the message limit reach the server, which
    //  refuses such a PUT with its id; libzmq closes the connection of a
    //  peer whose frame is over this (doc/PROTOCOL.md 18.2).
    size_t headroom = ctx->max_message_bytes > 65536 ? ctx->max_message_bytes : 65536;
    int64_t frame_max = (int64_t)(ctx->max_message_bytes + headroom);
    if (zmq_setsockopt (self->common.handle, ZMQ_MAXMSGSIZE, &frame_max, sizeof frame_max))
        goto failed;
    if (getrandom (self->instance, sizeof self->instance, GRND_NONBLOCK) !=
        (ssize_t)sizeof self->instance) {
        int64_t now = zclock_usecs () ^ ((int64_t)getpid () << 40);
        memcpy (self->instance, &now, sizeof self->instance);
    }
    zqi_r_table_init (&self->table);
    zqi_r_dedupe_init (&self->dedupe, zqi_r_option (options, "dedupe_window_ms"),
                       (uint32_t)zqi_r_option (options, "dedupe_max"));
    self->queue_by_name = zhashx_new ();
    self->consumer_by_route = zhashx_new ();
    self->consumer_capacity = 8;
    self->consumers =
        (zqi_rs_consumer_t *)calloc (self->consumer_capacity, sizeof (zqi_rs_consumer_t));
    //  A round gathers until ZQI_RS_ROUND PUTs are pending; the last may
    //  be a PUT batch of ZQI_BATCH_MAX_COUNT more.
    if (zqi_rs_puts_init (&self->puts))
        goto no_memory;
    self->parsed = (zqi_rs_parsed_t *)calloc (ZQI_RS_PARSED, sizeof (zqi_rs_parsed_t));
    if (!self->queue_by_name || !self->consumer_by_route || !self->consumers || !self->parsed)
        goto no_memory;
    for (uint32_t index = 0; index < self->consumer_capacity; index++)
        self->consumers[index].head = ZQI_R_NONE;
    if (zqi_rs_store_open (self, options))
        goto failed;
    zqi_rs_committer_init (self);
    if (self->spool_dir && !self->store) {
        self->starting = true;
        s_open_existing (self);
        self->starting = false;
    }
    return self;
no_memory:
    errno = ENOMEM;
failed:;
    int saved = errno;
    zqi_r_server_destroy (&self);
    errno = saved;
    return NULL;
}

size_t
zqi_r_server_destroy (zqi_r_server_t **self_p)
{
    zqi_r_server_t *self = *self_p;
    if (!self)
        return 0;
    size_t lost = 0;
    //  A call of zqi_rs_work may have left a commit in flight and a round
    //  gathered: both are committed and answered first.
    zqi_rs_settle_all (self);
    zqi_rs_committer_stop (self);
    zqi_rs_store_close (self);
    for (uint32_t index = 0; index < self->queue_count; index++) {
        zqi_rs_queue_t *queue = self->queues[index];
        if (!self->spool_dir && queue->spool) {
            zq_spool_stats_t stats;
            zq_spool_stats (queue->spool, &stats);
            lost += stats.depth;
        }
        zq_spool_destroy (&queue->spool);
        free (queue->consumers);
        free (queue->name);
        free (queue->maker);
        free (queue);
    }
    for (uint32_t index = 0; index < self->consumer_capacity && self->consumers; index++)
        free (self->consumers[index].queues);
    free (self->queues);
    free (self->consumers);
    zhashx_destroy (&self->queue_by_name);
    zhashx_destroy (&self->consumer_by_route);
    zqi_r_table_free (&self->table);
    zqi_r_dedupe_free (&self->dedupe);
    zqi_rs_puts_free (&self->puts);
    free (self->parsed);
    zqi_buf_free (&self->buf);
    zqi_buf_free (&self->bytes);
    free (self->spool_dir);
    free (self);
    *self_p = NULL;
    return lost;
}

//  True if local consumption has a message ready now.
static bool
s_local_ready (zqi_r_server_t *self)
{
    zqi_rs_consumer_t *local = &self->consumers[ZQI_RS_LOCAL];
    if (!local->in_use || local->in_flight >= local->prefetch)
        return false;
    for (uint32_t i = 0; i < local->queue_count; i++) {
        const zqi_rs_queue_t *queue = self->queues[local->queues[i]];
        zq_spool_stats_t stats;
        zq_spool_stats (queue->spool, &stats);
        if (stats.depth > stats.in_flight && !zqi_rs_delay_blocked (self, queue))
            return true;
    }
    return false;
}

zq_msg_t *
zqi_r_server_recv (zqi_r_server_t *self)
{
    //  Consuming locally at full speed: a round per message would read the
    //  socket empty each time (a system call or two in libzmq). Within the
    //  millisecond of a round that emptied it, a ready message is returned
    //  without one; NULL always comes after a whole round.
    int64_t now = zqi_r_now (&self->common);
    if (now == self->work_ms && self->drained && s_local_ready (self)) {
        zq_msg_t *msg = zqi_rs_local_recv (self);
        if (msg)
            return msg;
    }
    self->work_ms = now;
    if (zqi_rs_work (self))
        return NULL;
    return zqi_rs_local_recv (self);
}

int
zqi_r_server_events (zqi_r_server_t *self, int zmq_events)
{
    if (zqi_rs_work (self))
        return -1;
    int events = 0;
    size_t size = sizeof events;
    if (zmq_getsockopt (self->common.handle, ZMQ_EVENTS, &events, &size))
        return -1;
    events &= ZMQ_POLLIN;
    if (s_local_ready (self))
        events |= ZMQ_POLLIN;
    return events;
}

int64_t
zqi_rs_next_due (zqi_r_server_t *self)
{
    if (self->skipped_more)
        return 0;
    int64_t due = self->next_probe;
    uint32_t index = zqi_r_table_first (&self->table);
    if (index != ZQI_R_NONE && self->table.entries[index].due < due)
        due = self->table.entries[index].due;
    if (self->resume_due && self->resume_due < due)
        due = self->resume_due;
    if (self->auto_idle_ms && self->auto_count && self->next_sweep < due)
        due = self->next_sweep;
    if (self->store && zqi_rs_store_next_due (self) < due)
        due = zqi_rs_store_next_due (self);
    return due;
}

int64_t
zqi_r_server_next_timer_ms (zqi_r_server_t *self)
{
    int64_t now = zqi_r_now (&self->common);
    int64_t due = zqi_rs_next_due (self);
    //  Local consumption with credit back and messages ready: now.
    if (s_local_ready (self))
        return 0;
    //  A commit left in flight by the last call: its end signals the
    //  committer's eventfd (zqi_r_server_store_fd); a host that does not
    //  poll it still comes back within ZQI_RS_IN_FLIGHT_MS to answer.
    if (zqi_rs_in_flight (self) && due - now > ZQI_RS_IN_FLIGHT_MS)
        return ZQI_RS_IN_FLIGHT_MS;
    return due > now ? due - now : 0;
}

int
zqi_r_server_store_fd (zqi_r_server_t *self)
{
    return zqi_rs_store_fd (self);
}

int
zqi_r_server_subscribe (zqi_r_server_t *self, const char *name)
{
    //  Local consumption is of local spools only.
    if (self->store)
        return zqi_fail (ENOTSUP);
    zqi_rs_queue_t *queue = zqi_rs_queue_get (self, name, strlen (name), true);
    if (!queue)
        return -1;
    zqi_rs_consumer_t *local = &self->consumers[ZQI_RS_LOCAL];
    if (!local->in_use) {
        local->in_use = true;
        local->head = ZQI_R_NONE;
        local->prefetch = self->local_prefetch;
        local->session = zqi_rs_session_new (self);
    }
    return zqi_rs_subscribe (self, ZQI_RS_LOCAL, queue);
}

int
zqi_r_server_unsubscribe (zqi_r_server_t *self, const char *name)
{
    //  Found, not opened: a closed queue has no consumer to take off.
    if (zqi_queue_name_check (name, strlen (name)) < 0)
        return zqi_fail (EINVAL);
    zqi_rs_queue_t *queue = zqi_rs_queue_find (self, name);
    if (!queue)
        return zqi_fail (ZQ_ENOTFOUND);
    if (self->consumers[ZQI_RS_LOCAL].in_use)
        zqi_rs_unsubscribe (self, ZQI_RS_LOCAL, queue);
    return 0;
}

int
zqi_r_server_ack (zqi_r_server_t *self, const zq_msg_t *msg, int how, int64_t number)
{
    uint32_t index = zqi_rs_entry_for (self, zq_msg_id (msg), ZQI_RS_LOCAL);
    if (index == ZQI_R_NONE || self->table.entries[index].state != ZQI_RS_DELIVERED ||
        self->table.entries[index].owner != ZQI_RS_LOCAL)
        return zqi_fail (ZQ_ENOTFOUND);
    zqi_r_command_t command = {0};
    command.kind = how == ZQI_SETTLE_ACK    ? ZQI_R_ACK
                   : how == ZQI_SETTLE_NACK ? ZQI_R_NACK
                                            : ZQI_R_TOUCH;
    command.ids = zq_msg_id (msg);
    command.id_count = 1;
    command.number = number;
    size_t failed = 0;
    int errnum = 0;
    zqi_rs_settle_ids (self, ZQI_RS_LOCAL, &command, &failed, &errnum);
    if (failed)
        return zqi_fail (errnum);
    return 0;
}
