/*  =========================================================================
    reliable_store_jetstream_fetch - the JetStream store's fetcher thread:
    binds each queue's durable consumer, pulls messages for the queues with
    credit, dead-letters those past max_attempts, and queues the rest as
    deliveries the server collects.
    Built only with libnats (HAVE_NATS).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable_store_jetstream.h"
#include "zq_internal.h"

#include <time.h>

void
zqi_js_delivery_destroy (zqi_store_delivery_t **delivery_p)
{
    if (delivery_p && *delivery_p) {
        zqi_store_delivery_t *delivery = *delivery_p;
        if (delivery->handle)
            natsMsg_Destroy ((natsMsg *)delivery->handle);
        free (delivery);
        *delivery_p = NULL;
    }
}

//  Fetcher thread: a message delivered more than max_attempts times goes
//  to the stream of NAME.dead (stored there before it leaves NAME).
static bool
s_dead_letter (zqi_js_store_t *self, zqi_js_queue_t *queue, natsMsg *msg, const char *hex)
{
    char dead_name[ZQI_STORE_NAME_MAX + 1];
    char stream[ZQI_STORE_NAME_MAX + 1];
    char subject[ZQI_STORE_NAME_MAX + 8];
    if (snprintf (dead_name, sizeof dead_name, "%s" ZQI_JS_DEAD_SUFFIX, queue->name) >=
            (int)sizeof dead_name ||
        zqi_store_stream_name (self->prefix, dead_name, stream, sizeof stream) < 0)
        return false;
    snprintf (subject, sizeof subject, ZQI_JS_SUBJECT_ROOT "%s", stream);
    if (zqi_js_stream_ensure (self, stream, subject) < 0)
        return false;
    jsPubOptions options;
    jsPubOptions_Init (&options);
    options.MsgId = hex;
    jsPubAck *ack = NULL;
    if (js_Publish (&ack, self->js, subject, natsMsg_GetData (msg), natsMsg_GetDataLength (msg),
                    &options, NULL) != NATS_OK)
        return false;
    jsPubAck_Destroy (ack);
    natsMsg_AckSync (msg, NULL, NULL);
    return true;
}

static void
s_take (zqi_js_store_t *self, zqi_js_queue_t *queue, const char *name, natsMsg *msg)
{
    jsMsgMetaData *meta = NULL;
    const char *hex = NULL;
    natsMsgHeader_Get (msg, "Nats-Msg-Id", &hex);
    //  A redriven copy's dedupe id is the zq id, then the redrive's mark.
    char key[2 * ZQI_STORE_ID_SIZE + 1];
    snprintf (key, sizeof key, "%s", hex ? hex : "");
    bool ours = hex && (hex[strlen (key)] == 0 || strncmp (hex + strlen (key), ZQI_JS_REDRIVE_MARK,
                                                           strlen (ZQI_JS_REDRIVE_MARK)) == 0);
    uint8_t id[ZQI_STORE_ID_SIZE];
    if (natsMsg_GetMetaData (&meta, msg) != NATS_OK || !ours || zqi_js_unhex (key, id) < 0) {
        //  Not one of ours (or unreadable): it would come back forever.
        natsMsg_Term (msg, NULL);
        jsMsgMetaData_Destroy (meta);
        natsMsg_Destroy (msg);
        return;
    }
    uint64_t attempt = meta->NumDelivered;
    jsMsgMetaData_Destroy (meta);
    if (self->config.max_attempts && attempt > self->config.max_attempts) {
        if (!s_dead_letter (self, queue, msg, hex))
            natsMsg_NakWithDelay (msg, 1000, NULL); //  tried again later
        natsMsg_Destroy (msg);
        return;
    }
    zqi_store_delivery_t *delivery = (zqi_store_delivery_t *)calloc (1, sizeof *delivery);
    if (!delivery) {
        natsMsg_Nak (msg, NULL);
        natsMsg_Destroy (msg);
        return;
    }
    snprintf (delivery->queue, sizeof delivery->queue, "%s", name);
    memcpy (delivery->id, id, sizeof id);
    delivery->data = (const uint8_t *)natsMsg_GetData (msg);
    delivery->size = (size_t)natsMsg_GetDataLength (msg);
    delivery->attempt = attempt > UINT32_MAX ? UINT32_MAX : (uint32_t)attempt;
    delivery->handle = msg;
    //  Credit is spent here, with the delivery queued, so that a want
    //  made after the caller collected it is never undone.
    pthread_mutex_lock (&self->lock);
    zlistx_add_end (self->ready, delivery);
    if (queue->credit)
        queue->credit--;
    pthread_mutex_unlock (&self->lock);
    zqi_js_signal (self);
}

//  True if the fetcher should fetch for queue now.
static bool
s_eligible (zqi_js_queue_t *queue, const zqi_clock_t *clock)
{
    return queue->credit &&
           (!queue->failed_at || zqi_clock_mono (clock) - queue->failed_at >= ZQI_JS_BIND_RETRY_MS);
}

//  What a result means for a streak of failures counted in *failures.
typedef enum {
    S_STREAK_QUIET,    //  nothing to log
    S_STREAK_FAILED,   //  a failure to log: the first of a streak, or a power of two
    S_STREAK_RECOVERED //  a success that ends a streak (of *ended failures)
} s_streak_t;

//  Counts a failure (ok false) or ends the streak (ok true, *ended its
//  length). Only the first failure of a streak and each power of two are
//  logged, so that a cluster away for hours cannot flood the log.
static s_streak_t
s_streak (uint32_t *failures, bool ok, uint32_t *ended)
{
    if (ok) {
        *ended = *failures;
        *failures = 0;
        return *ended ? S_STREAK_RECOVERED : S_STREAK_QUIET;
    }
    if (*failures < UINT32_MAX)
        (*failures)++;
    return (*failures & (*failures - 1)) == 0 ? S_STREAK_FAILED : S_STREAK_QUIET;
}

//  Fetcher thread: logs a quiet consumer of queue that the cluster says
//  has messages waiting for it (info, from a quiet check; NULL after a
//  fetch that delivered), as when deliveries unsettled over all gateways
//  reached its MaxAckPending; or the end of such a stall (a fetch that
//  delivered, or a check that finds nothing waiting any more).
static void
s_log_stall (zqi_js_queue_t *queue, const char *name, const jsConsumerInfo *info, int64_t quiet_ms)
{
    uint32_t ended = 0;
    bool stalled = info && info->NumPending > 0;
    s_streak_t streak = s_streak (&queue->stalls, !stalled, &ended);
    if (streak == S_STREAK_RECOVERED)
        zqi_log (ZQ_LOG_NOTICE, "reliable: JetStream consumer of queue %s is no longer stalled",
                 name);
    else if (streak == S_STREAK_FAILED) {
        //  The consumer's limit, when the cluster gave one.
        int64_t most = info->Config ? info->Config->MaxAckPending : 0;
        char limit[80] = "";
        if (most > 0)
            snprintf (limit, sizeof limit, ", at most %" PRId64 "%s", most,
                      info->NumAckPending >= most ? ": deliveries wait for settles" : "");
        zqi_log (ZQ_LOG_WARNING,
                 "reliable: JetStream consumer of queue %s delivered nothing for %" PRId64
                 " ms while %" PRIu64 " messages wait for it; %" PRId64
                 " deliveries unsettled over all gateways%s",
                 name, quiet_ms, info->NumPending, info->NumAckPending, limit);
    }
}

//  The text libnats keeps of the calling thread's last error, for a log
//  line ("no detail" when it has none).
static const char *
s_nats_detail (void)
{
    const char *detail = nats_GetLastError (NULL);
    return detail && *detail ? detail : "no detail";
}

//  Fetcher thread: logs a quiet check of queue's consumer that the
//  cluster did not answer (found, what asking gave, neither NATS_OK nor
//  NATS_NOT_FOUND), as when the consumer has no leader while its stream
//  takes puts; or, with found NATS_OK (a check answered, "not found"
//  included), the end of such a streak. Only checks count: a fetch that
//  delivers in between says nothing of the cluster's answers, so a
//  cluster that answers no check for hours while deliveries come and go
//  is one streak, logged at its powers of two.
static void
s_log_unanswered (zqi_js_queue_t *queue, const char *name, natsStatus found, int64_t quiet_ms)
{
    uint32_t ended = 0;
    s_streak_t streak = s_streak (&queue->unanswered, found == NATS_OK, &ended);
    if (streak == S_STREAK_RECOVERED)
        zqi_log (ZQ_LOG_NOTICE,
                 "reliable: the JetStream cluster answers for the consumer of queue %s again "
                 "(after %u checks it did not)",
                 name, ended);
    else if (streak == S_STREAK_FAILED)
        zqi_log (ZQ_LOG_WARNING,
                 "reliable: JetStream consumer of queue %s delivered nothing for %" PRId64
                 " ms and the cluster did not answer for it (check %u, one per %d ms): %s: %s",
                 name, quiet_ms, queue->unanswered, ZQI_JS_QUIET_CHECK_MS,
                 natsStatus_GetText (found), s_nats_detail ());
}

//  Fetcher thread, after a fetch on queue's sub that gave status: true
//  when its durable consumer is gone (deleted by hand, or lost by the
//  cluster), fetches on it only ever timing out. The cluster is asked
//  (a blocking request) after a failed fetch (the first after a deletion
//  fails), at most once per ZQI_JS_BIND_RETRY_MS, and after fetches came
//  back empty for ZQI_JS_QUIET_CHECK_MS. Only its answer "not found"
//  counts: a cluster that is away (an election, a lost link) is not a
//  reason to bind again. A quiet consumer that is there but has messages
//  waiting is stalled, and logged (s_log_stall); one the cluster does not
//  answer for while fetches merely come back empty is logged too
//  (s_log_unanswered): nothing else would show it.
static bool
s_consumer_gone (zqi_js_store_t *self, zqi_js_queue_t *queue, const char *name, natsStatus status)
{
    if (status == NATS_OK) {
        queue->quiet_at = 0;
        s_log_stall (queue, name, NULL, 0);
        return false;
    }
    int64_t now = zqi_clock_mono (self->config.clock);
    if (status == NATS_TIMEOUT) {
        if (!queue->quiet_at)
            queue->quiet_at = now;
        if (now - queue->quiet_at < ZQI_JS_QUIET_CHECK_MS ||
            now - queue->checked_at < ZQI_JS_QUIET_CHECK_MS)
            return false;
    } else if (now - queue->checked_at < ZQI_JS_BIND_RETRY_MS)
        return false;
    queue->checked_at = now;
    jsConsumerInfo *info = NULL;
    jsErrCode code = 0;
    natsStatus found =
        js_GetConsumerInfo (&info, self->js, queue->stream, ZQI_JS_DURABLE, NULL, &code);
    //  Unanswered counts after a quiet fetch only (after a failed one the
    //  cluster is away, logged as such); any answer ends the streak.
    bool answered = found == NATS_OK || found == NATS_NOT_FOUND;
    if (status == NATS_TIMEOUT || answered)
        s_log_unanswered (queue, name, answered ? NATS_OK : found, now - queue->quiet_at);
    if (found == NATS_OK && status == NATS_TIMEOUT)
        s_log_stall (queue, name, info, now - queue->quiet_at);
    jsConsumerInfo_Destroy (info);
    return found == NATS_NOT_FOUND;
}

//  Fetcher thread: logs a failure to bind queue's consumer (or to make its
//  stream), or the bind that ends a streak of them.
static void
s_log_bind (zqi_js_queue_t *queue, const char *name, natsStatus status)
{
    uint32_t ended = 0;
    s_streak_t streak = s_streak (&queue->bind_failures, status == NATS_OK, &ended);
    if (streak == S_STREAK_RECOVERED)
        zqi_log (ZQ_LOG_NOTICE,
                 "reliable: JetStream consumer of queue %s bound after %u failed attempts", name,
                 ended);
    else if (streak == S_STREAK_FAILED)
        zqi_log (ZQ_LOG_WARNING,
                 "reliable: JetStream consumer of queue %s not bound (attempt %u, tried again "
                 "every %d ms, no deliveries meanwhile): %s: %s",
                 name, queue->bind_failures, ZQI_JS_BIND_RETRY_MS, natsStatus_GetText (status),
                 s_nats_detail ());
}

//  Fetcher thread: logs a fetch that failed other than by timing out, or
//  the fetch that ends a streak of them.
static void
s_log_fetch (zqi_js_queue_t *queue, const char *name, natsStatus status)
{
    uint32_t ended = 0;
    s_streak_t streak =
        s_streak (&queue->fetch_failures, status == NATS_OK || status == NATS_TIMEOUT, &ended);
    if (streak == S_STREAK_RECOVERED)
        zqi_log (ZQ_LOG_NOTICE,
                 "reliable: JetStream fetches for queue %s work again after %u failed", name,
                 ended);
    else if (streak == S_STREAK_FAILED)
        zqi_log (ZQ_LOG_WARNING,
                 "reliable: JetStream fetch for queue %s failed (%u in a row): %s: %s", name,
                 queue->fetch_failures, natsStatus_GetText (status), s_nats_detail ());
}

//  The fetcher's pause: up to ZQI_JS_IDLE_WAIT_MS, or until woken (a want,
//  the store closing). Call with the lock held.
static void
s_nap (zqi_js_store_t *self)
{
    struct timespec until;
    clock_gettime (CLOCK_REALTIME, &until);
    until.tv_nsec += ZQI_JS_IDLE_WAIT_MS * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait (&self->wake, &self->lock, &until);
}

void *
zqi_js_fetcher (void *arg)
{
    zqi_js_store_t *self = (zqi_js_store_t *)arg;
    pthread_mutex_lock (&self->lock);
    while (!self->stopping) {
        //  The queues with credit take turns.
        zqi_js_queue_t *queue = NULL;
        uint32_t eligible = 0;
        if (zlistx_size (self->ready) < ZQI_JS_RESULTS_MAX)
            for (zqi_js_queue_t *q = (zqi_js_queue_t *)zhashx_first (self->queues); q;
                 q = (zqi_js_queue_t *)zhashx_next (self->queues))
                if (s_eligible (q, self->config.clock))
                    eligible++;
        if (eligible) {
            uint32_t pick = self->turn++ % eligible;
            for (zqi_js_queue_t *q = (zqi_js_queue_t *)zhashx_first (self->queues); q && !queue;
                 q = (zqi_js_queue_t *)zhashx_next (self->queues))
                if (s_eligible (q, self->config.clock) && pick-- == 0)
                    queue = q;
        }
        if (!queue) {
            s_nap (self);
            continue;
        }
        //  Queues are never freed while the store runs (remove only
        //  resets them), so queue stays valid without the lock.
        char name[ZQI_STORE_NAME_MAX + 1];
        snprintf (name, sizeof name, "%s", queue->name);
        int batch =
            (int)(queue->credit > ZQI_STORE_FETCH_MAX ? ZQI_STORE_FETCH_MAX : queue->credit);
        natsSubscription *sub = queue->sub;
        pthread_mutex_unlock (&self->lock);

        if (!sub) {
            natsStatus bound = zqi_js_stream_ensure (self, queue->stream, queue->subject) == 0
                                   ? NATS_OK
                                   : NATS_ERR;
            if (bound == NATS_OK) {
                jsSubOptions options;
                jsSubOptions_Init (&options);
                options.Stream = queue->stream;
                options.Config.AckPolicy = js_AckExplicit;
                options.Config.AckWait = self->config.visibility_ms * 1000000LL;
                options.Config.MaxAckPending = ZQI_JS_ACK_PENDING_MAX;
                bound = js_PullSubscribe (&sub, self->js, queue->subject, ZQI_JS_DURABLE, NULL,
                                          &options, NULL);
            }
            s_log_bind (queue, name, bound);
            pthread_mutex_lock (&self->lock);
            if (bound == NATS_OK) {
                queue->sub = sub;
                queue->failed_at = 0;
            } else
                queue->failed_at = zqi_clock_mono (self->config.clock);
            continue;
        }
        //  libnats 3.4's fetch stops at count == its batch less the
        //  messages it first took from those already pending, re-read on
        //  every message: with more than half the batch pending (late
        //  answers to earlier pull requests, many after a reconnect), the
        //  count passes that mark, never meets it, and writes past the
        //  array of batch messages until the wait ends (heap damage). One
        //  message at a time while any is pending keeps the two apart:
        //  it takes one pending message (and sends no request), or none
        //  and asks for one.
        int pending = 0;
        if (natsSubscription_GetPending (sub, &pending, NULL) != NATS_OK || pending > 0)
            batch = 1;
        natsMsgList list = {0};
        natsStatus status = natsSubscription_Fetch (&list, sub, batch, ZQI_JS_FETCH_WAIT_MS, NULL);
        if (status == NATS_OK)
            for (int i = 0; i < list.Count; i++) {
                natsMsg *msg = list.Msgs[i];
                list.Msgs[i] = NULL;
                s_take (self, queue, name, msg);
            }
        natsMsgList_Destroy (&list);
        s_log_fetch (queue, name, status);
        bool gone = s_consumer_gone (self, queue, name, status);
        pthread_mutex_lock (&self->lock);
        if (gone && queue->sub == sub) {
            //  Bound again on a next round (made again if it is missing).
            //  Deliveries taken from the old binding may still be settled
            //  through it: it is freed when the store closes.
            zlistx_add_end (self->retired, sub);
            queue->sub = NULL;
            queue->quiet_at = 0;
            zqi_log (ZQ_LOG_WARNING,
                     "reliable: JetStream consumer of queue %s is gone: binding it again", name);
        }
        if (status != NATS_OK && status != NATS_TIMEOUT) {
            //  The cluster is away (a leader election, a lost link): pause
            //  briefly instead of spinning.
            s_nap (self);
        }
    }
    pthread_mutex_unlock (&self->lock);
    return NULL;
}

int
zqi_js_want (zqi_store_t *base, const char *name, uint32_t credit)
{
    zqi_js_store_t *self = (zqi_js_store_t *)base;
    pthread_mutex_lock (&self->lock);
    zqi_js_queue_t *queue = zqi_js_queue (self, name);
    if (queue) {
        queue->credit = credit;
        pthread_cond_signal (&self->wake);
    }
    pthread_mutex_unlock (&self->lock);
    return queue ? 0 : -1;
}

size_t
zqi_js_deliveries (zqi_store_t *base, zqi_store_delivery_t **out, size_t max)
{
    zqi_js_store_t *self = (zqi_js_store_t *)base;
    zqi_js_drain (self);
    size_t count = 0;
    pthread_mutex_lock (&self->lock);
    while (count < max && zlistx_size (self->ready))
        out[count++] = (zqi_store_delivery_t *)zlistx_detach (self->ready, NULL);
    bool more = zlistx_size (self->results) || zlistx_size (self->ready);
    pthread_mutex_unlock (&self->lock);
    if (more)
        zqi_js_signal (self);
    return count;
}
