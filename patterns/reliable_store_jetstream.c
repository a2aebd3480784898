/*  =========================================================================
    reliable_store_jetstream - the reliable server's JetStream store: each
    zq queue is a JetStream stream (work-queue retention, file storage)
    with one durable pull consumer, "zq", that every gateway shares.

    Threads: puts are published asynchronously; libnats calls s_pub_ack on
    its own thread, which queues the result and writes a byte to a pipe.
    A fetcher thread of this store pulls messages for the queues that have
    credit, dead-letters those past max_attempts, queues the rest and
    writes to the same pipe. The server's thread collects both; nothing
    here touches the server's state.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "reliable_store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef HAVE_NATS
#include <czmq.h>
#include <nats/nats.h>
#include <pthread.h>

#define S_DURABLE         "zq"
#define S_PREFIX          "ZQ"
#define S_PREFIX_MAX      32
#define S_PENDING_MAX     4096  //  puts waiting for their PubAck
#define S_RESULTS_MAX     65536 //  results and deliveries not collected
#define S_FETCH_WAIT_MS   200   //  one fetch waits at most this long
#define S_IDLE_WAIT_MS    100   //  the fetcher's nap when no queue has credit
#define S_DEAD_SUFFIX     ".dead"
#define S_SUBJECT_ROOT    "zq.q."
#define S_ACK_PENDING_MAX 100000 //  deliveries unsettled over all gateways, per queue
#define S_BIND_RETRY_MS   500    //  a consumer not bound is tried again after this

typedef struct {
    char *name;
    char stream[ZQI_STORE_NAME_MAX + 1];
    char subject[ZQI_STORE_NAME_MAX + 8];
    natsSubscription *sub; //  NULL until the fetcher has bound the consumer
    uint32_t credit;
    int64_t
        failed_at;    //  monotonic ms (the config's clock) when binding last failed (0: it did not)
    bool stream_made; //  its stream is known to exist (puts skip the check)
} s_queue_t;

typedef struct {
    zqi_store_t base;
    zqi_store_config_t config;
    char prefix[S_PREFIX_MAX + 1];
    natsOptions *opts;
    natsConnection *conn;
    jsCtx *js;
    int pipe[2];
    pthread_t fetcher;
    bool fetcher_started;
    pthread_mutex_t lock; //  guards everything below
    pthread_cond_t wake;
    bool stopping;
    zhashx_t *queues;    //  name -> s_queue_t
    zhashx_t *by_stream; //  stream -> s_queue_t (not owned)
    zlistx_t *results;   //  zqi_store_result_t *
    zlistx_t *ready;     //  zqi_store_delivery_t *
    zlistx_t *retired;   //  natsSubscription * of removed queues, freed at the end
    uint32_t pending;    //  puts without a result
    uint32_t turn;       //  the fetcher's round-robin over queues with credit
} s_store_t;

int
zqi_store_stream_name (const char *prefix, const char *queue, char *name, size_t size)
{
    if (!prefix || !queue || !*queue || !name) {
        errno = EINVAL;
        return -1;
    }
    size_t at = 0;
    for (const char *c = prefix; *c; c++) {
        if (at + 1 >= size) {
            errno = ENAMETOOLONG;
            return -1;
        }
        name[at++] = *c;
    }
    if (at + 1 >= size) {
        errno = ENAMETOOLONG;
        return -1;
    }
    name[at++] = '_';
    for (const char *c = queue; *c; c++) {
        char two[2] = {*c, 0};
        size_t n = 1;
        if (*c == '_') {
            two[1] = '_';
            n = 2;
        } else if (*c == '.') {
            two[0] = '_';
            two[1] = 'd';
            n = 2;
        } else if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                     (*c >= '0' && *c <= '9') || *c == '-')) {
            errno = EINVAL;
            return -1;
        }
        if (at + n >= size) {
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy (name + at, two, n);
        at += n;
    }
    name[at] = 0;
    return 0;
}

static int
s_errno (natsStatus status)
{
    switch (status) {
        case NATS_OK:
            return 0;
        case NATS_TIMEOUT:
            return ETIMEDOUT;
        case NATS_NO_SERVER:
        case NATS_CONNECTION_CLOSED:
        case NATS_CONNECTION_DISCONNECTED:
        case NATS_NO_RESPONDERS:
            return ECONNREFUSED;
        case NATS_NO_MEMORY:
            return ENOMEM;
        case NATS_INVALID_ARG:
            return EINVAL;
        case NATS_NOT_FOUND:
            return ENOENT;
        default:
            return EIO;
    }
}

static void
s_free_item (void **item)
{
    free (*item);
    *item = NULL;
}

static void
s_signal (s_store_t *self)
{
    char byte = 1;
    //  A full pipe is already readable: nothing is lost.
    if (write (self->pipe[1], &byte, 1) < 0) {
    }
}

static void
s_drain (s_store_t *self)
{
    char bytes[256];
    while (read (self->pipe[0], bytes, sizeof bytes) > 0) {
    }
}

static void
s_hex (const uint8_t *id, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < ZQI_STORE_ID_SIZE; i++) {
        hex[2 * i] = digits[id[i] >> 4];
        hex[2 * i + 1] = digits[id[i] & 15];
    }
    hex[2 * ZQI_STORE_ID_SIZE] = 0;
}

static int
s_unhex (const char *hex, uint8_t *id)
{
    if (!hex || strlen (hex) != 2 * ZQI_STORE_ID_SIZE)
        return -1;
    for (size_t i = 0; i < 2 * ZQI_STORE_ID_SIZE; i++) {
        char c = hex[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return -1;
        if (i % 2 == 0)
            id[i / 2] = (uint8_t)(v << 4);
        else
            id[i / 2] |= (uint8_t)v;
    }
    return 0;
}

//  Creates the stream of queue when missing (an existing stream of that
//  name is used as it is). Blocks up to the request wait.
static int
s_stream_ensure (s_store_t *self, const char *stream, const char *subject)
{
    jsStreamInfo *info = NULL;
    jsErrCode code = 0;
    natsStatus status = js_GetStreamInfo (&info, self->js, stream, NULL, &code);
    if (status == NATS_OK) {
        jsStreamInfo_Destroy (info);
        return 0;
    }
    if (status != NATS_NOT_FOUND) {
        errno = s_errno (status);
        return -1;
    }
    jsStreamConfig config;
    jsStreamConfig_Init (&config);
    const char *subjects[1] = {subject};
    config.Name = stream;
    config.Subjects = subjects;
    config.SubjectsLen = 1;
    config.Retention = js_WorkQueuePolicy;
    config.Storage = js_FileStorage;
    config.Replicas = self->config.replicas;
    status = js_AddStream (&info, self->js, &config, NULL, &code);
    if (status == NATS_OK) {
        jsStreamInfo_Destroy (info);
        return 0;
    }
    //  Another gateway made it meanwhile.
    if (js_GetStreamInfo (&info, self->js, stream, NULL, &code) == NATS_OK) {
        jsStreamInfo_Destroy (info);
        return 0;
    }
    errno = s_errno (status);
    return -1;
}

static void
s_queue_destroy (void **item)
{
    s_queue_t *queue = (s_queue_t *)*item;
    if (queue) {
        if (queue->sub)
            natsSubscription_Destroy (queue->sub);
        free (queue->name);
        free (queue);
        *item = NULL;
    }
}

//  The queue entry of name, made (without touching the cluster) when new.
//  Call with the lock held.
static s_queue_t *
s_queue (s_store_t *self, const char *name)
{
    s_queue_t *queue = (s_queue_t *)zhashx_lookup (self->queues, name);
    if (queue)
        return queue;
    queue = (s_queue_t *)calloc (1, sizeof *queue);
    if (!queue) {
        errno = ENOMEM;
        return NULL;
    }
    if (zqi_store_stream_name (self->prefix, name, queue->stream, sizeof queue->stream) < 0) {
        free (queue);
        return NULL;
    }
    snprintf (queue->subject, sizeof queue->subject, S_SUBJECT_ROOT "%s", queue->stream);
    queue->name = strdup (name);
    if (!queue->name) {
        free (queue);
        errno = ENOMEM;
        return NULL;
    }
    zhashx_insert (self->queues, name, queue);
    zhashx_insert (self->by_stream, queue->stream, queue);
    return queue;
}

static void
s_result (s_store_t *self, const char *stream, const char *hex, int errnum, bool duplicate)
{
    //  Without memory or a readable id the put stays unconfirmed: the
    //  producer sends it again. It no longer waits here either way.
    zqi_store_result_t *result = (zqi_store_result_t *)calloc (1, sizeof *result);
    if (result) {
        result->errnum = errnum;
        result->duplicate = duplicate;
        if (s_unhex (hex, result->id) < 0) {
            free (result);
            result = NULL;
        }
    }
    pthread_mutex_lock (&self->lock);
    if (self->pending)
        self->pending--;
    if (!result) {
        pthread_mutex_unlock (&self->lock);
        return;
    }
    s_queue_t *queue = stream ? (s_queue_t *)zhashx_lookup (self->by_stream, stream) : NULL;
    //  No stream answered: it may have been deleted; check on the next put.
    if (queue && errnum == ECONNREFUSED)
        queue->stream_made = false;
    if (queue && zlistx_size (self->results) < S_RESULTS_MAX) {
        snprintf (result->queue, sizeof result->queue, "%s", queue->name);
        zlistx_add_end (self->results, result);
        result = NULL;
    }
    pthread_mutex_unlock (&self->lock);
    free (result);
    s_signal (self);
}

//  libnats' thread: the PubAck (or its failure) of one put.
static void
s_pub_ack (jsCtx *js, natsMsg *msg, jsPubAck *ack, jsPubAckErr *error, void *closure)
{
    s_store_t *self = (s_store_t *)closure;
    const char *hex = NULL;
    natsMsgHeader_Get (msg, "Nats-Msg-Id", &hex);
    //  The subject is zq.q.STREAM.
    const char *subject = natsMsg_GetSubject (msg);
    const char *stream = subject && strlen (subject) > strlen (S_SUBJECT_ROOT)
                             ? subject + strlen (S_SUBJECT_ROOT)
                             : NULL;
    if (ack && !error)
        s_result (self, stream, hex, 0, ack->Duplicate);
    else
        s_result (self, stream, hex, error ? s_errno (error->Err) : EIO, false);
    natsMsg_Destroy (msg);
}

static void
s_delivery_destroy (zqi_store_delivery_t **delivery_p)
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
s_dead_letter (s_store_t *self, s_queue_t *queue, natsMsg *msg, const char *hex)
{
    char dead_name[ZQI_STORE_NAME_MAX + 1];
    char stream[ZQI_STORE_NAME_MAX + 1];
    char subject[ZQI_STORE_NAME_MAX + 8];
    if (snprintf (dead_name, sizeof dead_name, "%s" S_DEAD_SUFFIX, queue->name) >=
            (int)sizeof dead_name ||
        zqi_store_stream_name (self->prefix, dead_name, stream, sizeof stream) < 0)
        return false;
    snprintf (subject, sizeof subject, S_SUBJECT_ROOT "%s", stream);
    if (s_stream_ensure (self, stream, subject) < 0)
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
s_take (s_store_t *self, s_queue_t *queue, const char *name, natsMsg *msg)
{
    jsMsgMetaData *meta = NULL;
    const char *hex = NULL;
    natsMsgHeader_Get (msg, "Nats-Msg-Id", &hex);
    uint8_t id[ZQI_STORE_ID_SIZE];
    if (natsMsg_GetMetaData (&meta, msg) != NATS_OK || s_unhex (hex, id) < 0) {
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
    s_signal (self);
}

//  True if the fetcher should fetch for queue now.
static bool
s_eligible (s_queue_t *queue, const zqi_clock_t *clock)
{
    return queue->credit &&
           (!queue->failed_at || zqi_clock_mono (clock) - queue->failed_at >= S_BIND_RETRY_MS);
}

static void *
s_fetcher (void *arg)
{
    s_store_t *self = (s_store_t *)arg;
    pthread_mutex_lock (&self->lock);
    while (!self->stopping) {
        //  The queues with credit take turns.
        s_queue_t *queue = NULL;
        uint32_t eligible = 0;
        if (zlistx_size (self->ready) < S_RESULTS_MAX)
            for (s_queue_t *q = (s_queue_t *)zhashx_first (self->queues); q;
                 q = (s_queue_t *)zhashx_next (self->queues))
                if (s_eligible (q, self->config.clock))
                    eligible++;
        if (eligible) {
            uint32_t pick = self->turn++ % eligible;
            for (s_queue_t *q = (s_queue_t *)zhashx_first (self->queues); q && !queue;
                 q = (s_queue_t *)zhashx_next (self->queues))
                if (s_eligible (q, self->config.clock) && pick-- == 0)
                    queue = q;
        }
        if (!queue) {
            struct timespec until;
            clock_gettime (CLOCK_REALTIME, &until);
            until.tv_nsec += S_IDLE_WAIT_MS * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait (&self->wake, &self->lock, &until);
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
            bool ok = s_stream_ensure (self, queue->stream, queue->subject) == 0;
            if (ok) {
                jsSubOptions options;
                jsSubOptions_Init (&options);
                options.Stream = queue->stream;
                options.Config.AckPolicy = js_AckExplicit;
                options.Config.AckWait = self->config.visibility_ms * 1000000LL;
                options.Config.MaxAckPending = S_ACK_PENDING_MAX;
                ok = js_PullSubscribe (&sub, self->js, queue->subject, S_DURABLE, NULL, &options,
                                       NULL) == NATS_OK;
            }
            pthread_mutex_lock (&self->lock);
            if (ok) {
                queue->sub = sub;
                queue->failed_at = 0;
            } else
                queue->failed_at = zqi_clock_mono (self->config.clock);
            continue;
        }
        natsMsgList list = {0};
        natsStatus status = natsSubscription_Fetch (&list, sub, batch, S_FETCH_WAIT_MS, NULL);
        if (status == NATS_OK)
            for (int i = 0; i < list.Count; i++) {
                natsMsg *msg = list.Msgs[i];
                list.Msgs[i] = NULL;
                s_take (self, queue, name, msg);
            }
        natsMsgList_Destroy (&list);
        pthread_mutex_lock (&self->lock);
        if (status != NATS_OK && status != NATS_TIMEOUT) {
            //  The cluster is away (a leader election, a lost link): pause
            //  briefly instead of spinning.
            struct timespec until;
            clock_gettime (CLOCK_REALTIME, &until);
            until.tv_nsec += S_IDLE_WAIT_MS * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait (&self->wake, &self->lock, &until);
        }
    }
    pthread_mutex_unlock (&self->lock);
    return NULL;
}

static void s_destroy (zqi_store_t **self_p);

static zqi_store_t *
s_open (const zqi_store_config_t *config)
{
    if (!config || !config->servers || !*config->servers ||
        config->replicas > ZQI_STORE_REPLICAS_MAX || config->visibility_ms <= 0 ||
        (config->prefix && strlen (config->prefix) > S_PREFIX_MAX)) {
        errno = EINVAL;
        return NULL;
    }
    const char *prefix = config->prefix && *config->prefix ? config->prefix : S_PREFIX;
    for (const char *c = prefix; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-')) {
            errno = EINVAL;
            return NULL;
        }
    s_store_t *self = (s_store_t *)calloc (1, sizeof *self);
    if (!self) {
        errno = ENOMEM;
        return NULL;
    }
    self->base.ops = &zqi_store_jetstream;
    self->config = *config;
    self->config.servers = NULL;
    self->config.credentials = NULL;
    self->config.tls_ca = self->config.tls_cert = self->config.tls_key = NULL;
    self->config.prefix = NULL;
    if (!self->config.replicas)
        self->config.replicas = 1;
    if (self->config.request_wait_ms <= 0)
        self->config.request_wait_ms = 5000;
    snprintf (self->prefix, sizeof self->prefix, "%s", prefix);
    self->pipe[0] = self->pipe[1] = -1;
    pthread_mutex_init (&self->lock, NULL);
    pthread_cond_init (&self->wake, NULL);
    self->queues = zhashx_new ();
    self->by_stream = zhashx_new ();
    self->results = zlistx_new ();
    self->ready = zlistx_new ();
    self->retired = zlistx_new ();
    if (!self->queues || !self->by_stream || !self->results || !self->ready || !self->retired) {
        s_destroy ((zqi_store_t **)&self);
        errno = ENOMEM;
        return NULL;
    }
    zhashx_set_destructor (self->queues, s_queue_destroy);
    zlistx_set_destructor (self->results, s_free_item);
    if (pipe (self->pipe) < 0) {
        int errnum = errno;
        s_destroy ((zqi_store_t **)&self);
        errno = errnum;
        return NULL;
    }
    for (int i = 0; i < 2; i++) {
        fcntl (self->pipe[i], F_SETFL, fcntl (self->pipe[i], F_GETFL) | O_NONBLOCK);
        fcntl (self->pipe[i], F_SETFD, FD_CLOEXEC);
    }

    //  The server list: URL[,URL...].
    char *servers = strdup (config->servers);
    const char *urls[16];
    int url_count = 0;
    for (char *save = NULL, *url = servers ? strtok_r (servers, ",", &save) : NULL;
         url && url_count < 16; url = strtok_r (NULL, ",", &save))
        urls[url_count++] = url;
    natsStatus status = servers && url_count ? natsOptions_Create (&self->opts) : NATS_INVALID_ARG;
    if (status == NATS_OK)
        status = natsOptions_SetServers (self->opts, urls, url_count);
    free (servers);
    if (status == NATS_OK)
        status = natsOptions_SetMaxReconnect (self->opts, -1); //  a gateway keeps trying
    if (status == NATS_OK && config->credentials)
        status = natsOptions_SetUserCredentialsFromFiles (self->opts, config->credentials, NULL);
    if (status == NATS_OK && config->tls_ca) {
        status = natsOptions_SetSecure (self->opts, true);
        if (status == NATS_OK)
            status = natsOptions_LoadCATrustedCertificates (self->opts, config->tls_ca);
    }
    if (status == NATS_OK && config->tls_cert && config->tls_key)
        status = natsOptions_LoadCertificatesChain (self->opts, config->tls_cert, config->tls_key);
    if (status == NATS_OK)
        status = natsConnection_Connect (&self->conn, self->opts);
    jsOptions js_options;
    jsOptions_Init (&js_options);
    js_options.Wait = self->config.request_wait_ms;
    js_options.PublishAsync.MaxPending = S_PENDING_MAX;
    js_options.PublishAsync.AckHandler = s_pub_ack;
    js_options.PublishAsync.AckHandlerClosure = self;
    if (status == NATS_OK)
        status = natsConnection_JetStream (&self->js, self->conn, &js_options);
    if (status == NATS_OK)
        self->fetcher_started = pthread_create (&self->fetcher, NULL, s_fetcher, self) == 0;
    if (status != NATS_OK || !self->fetcher_started) {
        int errnum = status == NATS_OK ? EAGAIN : s_errno (status);
        s_destroy ((zqi_store_t **)&self);
        errno = errnum;
        return NULL;
    }
    return &self->base;
}

static void
s_destroy (zqi_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    s_store_t *self = (s_store_t *)*self_p;
    *self_p = NULL;
    if (self->fetcher_started) {
        pthread_mutex_lock (&self->lock);
        self->stopping = true;
        pthread_cond_signal (&self->wake);
        pthread_mutex_unlock (&self->lock);
        pthread_join (self->fetcher, NULL);
    }
    //  libnats may still run a PubAck callback after the connection is
    //  closed (nats.c issue 735): let the puts in flight be answered first,
    //  for at most the request wait.
    if (self->js) {
        jsPubOptions options;
        jsPubOptions_Init (&options);
        options.MaxWait = self->config.request_wait_ms;
        js_PublishAsyncComplete (self->js, &options);
    }
    if (self->conn)
        natsConnection_Close (self->conn);
    zhashx_destroy (&self->queues); //  (their subscriptions)
    zhashx_destroy (&self->by_stream);
    if (self->js)
        jsCtx_Destroy (self->js);
    if (self->conn)
        natsConnection_Destroy (self->conn);
    if (self->opts)
        natsOptions_Destroy (self->opts);
    zlistx_destroy (&self->results);
    if (self->retired) {
        natsSubscription *sub;
        while ((sub = (natsSubscription *)zlistx_detach (self->retired, NULL)))
            natsSubscription_Destroy (sub);
        zlistx_destroy (&self->retired);
    }
    if (self->ready) {
        zqi_store_delivery_t *delivery;
        while ((delivery = (zqi_store_delivery_t *)zlistx_detach (self->ready, NULL)))
            s_delivery_destroy (&delivery);
        zlistx_destroy (&self->ready);
    }
    for (int i = 0; i < 2; i++)
        if (self->pipe[i] >= 0)
            close (self->pipe[i]);
    pthread_cond_destroy (&self->wake);
    pthread_mutex_destroy (&self->lock);
    free (self);
}

static int
s_signal_fd (zqi_store_t *base)
{
    return ((s_store_t *)base)->pipe[0];
}

static int
s_put (zqi_store_t *base, const char *name, const uint8_t *id, const void *data, size_t size)
{
    s_store_t *self = (s_store_t *)base;
    if (size > INT32_MAX) {
        errno = EMSGSIZE;
        return -1;
    }
    char subject[ZQI_STORE_NAME_MAX + 8];
    pthread_mutex_lock (&self->lock);
    s_queue_t *queue = s_queue (self, name);
    bool full = self->pending >= S_PENDING_MAX;
    bool made = queue && queue->stream_made;
    if (queue && !full) {
        snprintf (subject, sizeof subject, "%s", queue->subject);
        self->pending++;
    }
    pthread_mutex_unlock (&self->lock);
    if (!queue)
        return -1;
    if (full) {
        errno = EAGAIN;
        return -1;
    }
    //  The first put of a queue makes its stream (a blocking request,
    //  once per queue unless the stream goes away).
    int rc = -1;
    natsMsg *msg = NULL;
    char hex[2 * ZQI_STORE_ID_SIZE + 1];
    s_hex (id, hex);
    if (!made && s_stream_ensure (self, queue->stream, queue->subject) == 0) {
        made = true;
        pthread_mutex_lock (&self->lock);
        queue->stream_made = true;
        pthread_mutex_unlock (&self->lock);
    }
    if (made) {
        natsStatus status = natsMsg_Create (&msg, subject, NULL, (const char *)data, (int)size);
        if (status == NATS_OK)
            status = natsMsgHeader_Set (msg, "Nats-Msg-Id", hex);
        //  With MaxWait, a PubAck that never comes is a timeout result.
        jsPubOptions options;
        jsPubOptions_Init (&options);
        options.MaxWait = self->config.request_wait_ms;
        if (status == NATS_OK)
            status = js_PublishMsgAsync (self->js, &msg, &options);
        if (status == NATS_OK)
            rc = 0;
        else
            errno = s_errno (status);
        if (msg)
            natsMsg_Destroy (msg);
    }
    if (rc < 0) {
        int errnum = errno;
        pthread_mutex_lock (&self->lock);
        self->pending--;
        pthread_mutex_unlock (&self->lock);
        errno = errnum;
    }
    return rc;
}

static size_t
s_put_results (zqi_store_t *base, zqi_store_result_t *results, size_t max)
{
    s_store_t *self = (s_store_t *)base;
    s_drain (self);
    size_t count = 0;
    pthread_mutex_lock (&self->lock);
    while (count < max && zlistx_size (self->results)) {
        zqi_store_result_t *result = (zqi_store_result_t *)zlistx_detach (self->results, NULL);
        results[count++] = *result;
        free (result);
    }
    bool more = zlistx_size (self->results) || zlistx_size (self->ready);
    pthread_mutex_unlock (&self->lock);
    if (more)
        s_signal (self);
    return count;
}

static int
s_want (zqi_store_t *base, const char *name, uint32_t credit)
{
    s_store_t *self = (s_store_t *)base;
    pthread_mutex_lock (&self->lock);
    s_queue_t *queue = s_queue (self, name);
    if (queue) {
        queue->credit = credit;
        pthread_cond_signal (&self->wake);
    }
    pthread_mutex_unlock (&self->lock);
    return queue ? 0 : -1;
}

static size_t
s_deliveries (zqi_store_t *base, zqi_store_delivery_t **out, size_t max)
{
    s_store_t *self = (s_store_t *)base;
    s_drain (self);
    size_t count = 0;
    pthread_mutex_lock (&self->lock);
    while (count < max && zlistx_size (self->ready))
        out[count++] = (zqi_store_delivery_t *)zlistx_detach (self->ready, NULL);
    bool more = zlistx_size (self->results) || zlistx_size (self->ready);
    pthread_mutex_unlock (&self->lock);
    if (more)
        s_signal (self);
    return count;
}

static int
s_settle (zqi_store_t *base, zqi_store_delivery_t *delivery, zqi_store_settle_t how,
          int64_t delay_ms)
{
    if (!delivery || !delivery->handle || delay_ms < 0 || delay_ms > ZQI_STORE_DELAY_MAX_MS) {
        errno = EINVAL;
        return -1;
    }
    natsMsg *msg = (natsMsg *)delivery->handle;
    natsStatus status;
    if (how == ZQI_STORE_ACK)
        status = natsMsg_Ack (msg, NULL);
    else if (how == ZQI_STORE_NACK && delay_ms == 0)
        status = natsMsg_Nak (msg, NULL);
    else if (how == ZQI_STORE_NACK)
        status = natsMsg_NakWithDelay (msg, delay_ms, NULL);
    else
        status = natsMsg_InProgress (msg, NULL);
    if (status != NATS_OK) {
        errno = s_errno (status);
        return -1;
    }
    return 0;
}

static int
s_stat (zqi_store_t *base, const char *name, zqi_store_stat_t *stat)
{
    s_store_t *self = (s_store_t *)base;
    char stream[ZQI_STORE_NAME_MAX + 1];
    if (zqi_store_stream_name (self->prefix, name, stream, sizeof stream) < 0)
        return -1;
    jsStreamInfo *info = NULL;
    natsStatus status = js_GetStreamInfo (&info, self->js, stream, NULL, NULL);
    if (status != NATS_OK) {
        errno = s_errno (status);
        return -1;
    }
    memset (stat, 0, sizeof *stat);
    stat->messages = info->State.Msgs;
    stat->bytes = info->State.Bytes;
    jsStreamInfo_Destroy (info);
    jsConsumerInfo *consumer = NULL;
    if (js_GetConsumerInfo (&consumer, self->js, stream, S_DURABLE, NULL, NULL) == NATS_OK) {
        stat->in_flight = consumer->NumAckPending > 0 ? (uint64_t)consumer->NumAckPending : 0;
        jsConsumerInfo_Destroy (consumer);
    }
    return 0;
}

static int
s_purge (zqi_store_t *base, const char *name)
{
    s_store_t *self = (s_store_t *)base;
    char stream[ZQI_STORE_NAME_MAX + 1];
    if (zqi_store_stream_name (self->prefix, name, stream, sizeof stream) < 0)
        return -1;
    natsStatus status = js_PurgeStream (self->js, stream, NULL, NULL);
    if (status != NATS_OK) {
        errno = s_errno (status);
        return -1;
    }
    return 0;
}

static int
s_remove (zqi_store_t *base, const char *name)
{
    s_store_t *self = (s_store_t *)base;
    char stream[ZQI_STORE_NAME_MAX + 1];
    if (zqi_store_stream_name (self->prefix, name, stream, sizeof stream) < 0)
        return -1;
    natsStatus status = js_DeleteStream (self->js, stream, NULL, NULL);
    //  The consumer went with the stream: bind again on the next want.
    pthread_mutex_lock (&self->lock);
    s_queue_t *queue = (s_queue_t *)zhashx_lookup (self->queues, name);
    //  The fetcher may be in a fetch on it: freed when the store closes.
    if (queue && queue->sub) {
        zlistx_add_end (self->retired, queue->sub);
        queue->sub = NULL;
    }
    if (queue) {
        queue->credit = 0;
        queue->stream_made = false;
    }
    pthread_mutex_unlock (&self->lock);
    if (status != NATS_OK) {
        errno = s_errno (status);
        return -1;
    }
    return 0;
}

//  The queues of the streams named with this store's prefix.
static int
s_names (zqi_store_t *base, void (*each) (void *arg, const char *name), void *arg)
{
    s_store_t *self = (s_store_t *)base;
    jsStreamNamesList *list = NULL;
    natsStatus status = js_StreamNames (&list, self->js, NULL, NULL);
    if (status == NATS_NOT_FOUND)
        return 0; //  no stream at all
    if (status != NATS_OK) {
        errno = s_errno (status);
        return -1;
    }
    size_t length = strlen (self->prefix);
    for (int i = 0; i < list->Count; i++) {
        const char *stream = list->List[i];
        if (strncmp (stream, self->prefix, length) != 0 || stream[length] != '_')
            continue;
        char name[ZQI_STORE_NAME_MAX + 1];
        size_t at = 0;
        bool valid = true;
        for (const char *c = stream + length + 1; *c && valid; c++) {
            if (*c == '_' && (c[1] == '_' || c[1] == 'd'))
                name[at++] = *++c == '_' ? '_' : '.';
            else if (*c == '_')
                valid = false;
            else
                name[at++] = *c;
            valid = valid && at < sizeof name;
        }
        name[at < sizeof name ? at : 0] = 0;
        if (valid && at)
            each (arg, name);
    }
    jsStreamNamesList_Destroy (list);
    return 0;
}

const zqi_store_ops_t zqi_store_jetstream = {
    .name = "jetstream",
    .open = s_open,
    .destroy = s_destroy,
    .signal_fd = s_signal_fd,
    .put = s_put,
    .put_results = s_put_results,
    .want = s_want,
    .deliveries = s_deliveries,
    .settle = s_settle,
    .delivery_destroy = s_delivery_destroy,
    .stat = s_stat,
    .purge = s_purge,
    .remove = s_remove,
    .names = s_names,
};
#endif
