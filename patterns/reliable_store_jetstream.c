/*  =========================================================================
    reliable_store_jetstream - the reliable server's JetStream store: each
    zq queue is a JetStream stream (work-queue retention, file storage)
    with one durable pull consumer, "zq", that every gateway shares.

    Threads: puts are published asynchronously; libnats calls zqi_js_pub_ack on
    its own thread, which queues the result and writes a byte to a pipe.
    A fetcher thread of this store pulls messages for the queues that have
    credit, dead-letters those past max_attempts, queues the rest and
    writes to the same pipe. The server's thread collects both; nothing
    here touches the server's state.

    This file: queue and stream names, opening and closing the store, and
    its table of operations. Puts and their results are in
    reliable_store_jetstream_publish.c, the fetcher and deliveries in
    reliable_store_jetstream_fetch.c, settling and the admin calls in
    reliable_store_jetstream_admin.c; reliable_store_jetstream.h holds
    their shared state.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable_store_jetstream.h"
#include "zq_internal.h"

#include <fcntl.h>
#include <unistd.h>

#ifdef HAVE_NATS

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

int
zqi_js_errno (natsStatus status)
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
        case NATS_MAX_PAYLOAD:
            //  Larger than the servers take (their max_payload counts the
            //  message's headers too): never storable there.
            return EMSGSIZE;
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

void
zqi_js_signal (zqi_js_store_t *self)
{
    char byte = 1;
    //  A full pipe is already readable: nothing is lost.
    if (write (self->pipe[1], &byte, 1) < 0) {
    }
}

void
zqi_js_drain (zqi_js_store_t *self)
{
    char bytes[256];
    while (read (self->pipe[0], bytes, sizeof bytes) > 0) {
    }
}

void
zqi_js_hex (const uint8_t *id, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < ZQI_STORE_ID_SIZE; i++) {
        hex[2 * i] = digits[id[i] >> 4];
        hex[2 * i + 1] = digits[id[i] & 15];
    }
    hex[2 * ZQI_STORE_ID_SIZE] = 0;
}

int
zqi_js_unhex (const char *hex, uint8_t *id)
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

void
zqi_js_stream_config (jsStreamConfig *config, const char *stream, const char **subject_p,
                      int replicas)
{
    jsStreamConfig_Init (config);
    config->Name = stream;
    config->Subjects = subject_p;
    config->SubjectsLen = 1;
    config->Retention = js_WorkQueuePolicy;
    config->Storage = js_FileStorage;
    config->Replicas = replicas;
}

//  Creates the stream of queue when missing (an existing stream of that
//  name is used as it is). Blocks up to the request wait.
int
zqi_js_stream_ensure (zqi_js_store_t *self, const char *stream, const char *subject)
{
    jsStreamInfo *info = NULL;
    jsErrCode code = 0;
    natsStatus status = js_GetStreamInfo (&info, self->js, stream, NULL, &code);
    if (status == NATS_OK) {
        jsStreamInfo_Destroy (info);
        return 0;
    }
    if (status != NATS_NOT_FOUND) {
        errno = zqi_js_errno (status);
        return -1;
    }
    jsStreamConfig config;
    zqi_js_stream_config (&config, stream, &subject, self->config.replicas);
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
    errno = zqi_js_errno (status);
    return -1;
}

static void
s_queue_destroy (void **item)
{
    zqi_js_queue_t *queue = (zqi_js_queue_t *)*item;
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
zqi_js_queue_t *
zqi_js_queue (zqi_js_store_t *self, const char *name)
{
    zqi_js_queue_t *queue = (zqi_js_queue_t *)zhashx_lookup (self->queues, name);
    if (queue)
        return queue;
    queue = (zqi_js_queue_t *)calloc (1, sizeof *queue);
    if (!queue) {
        errno = ENOMEM;
        return NULL;
    }
    if (zqi_store_stream_name (self->prefix, name, queue->stream, sizeof queue->stream) < 0) {
        free (queue);
        return NULL;
    }
    snprintf (queue->subject, sizeof queue->subject, ZQI_JS_SUBJECT_ROOT "%s", queue->stream);
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

static void s_destroy (zqi_store_t **self_p);

static zqi_store_t *
s_open (const zqi_store_config_t *config)
{
    if (!config || !config->servers || !*config->servers ||
        config->replicas > ZQI_STORE_REPLICAS_MAX || config->visibility_ms <= 0 ||
        (config->prefix && strlen (config->prefix) > ZQI_JS_PREFIX_MAX)) {
        errno = EINVAL;
        return NULL;
    }
    const char *prefix = config->prefix && *config->prefix ? config->prefix : ZQI_JS_PREFIX;
    for (const char *c = prefix; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-')) {
            errno = EINVAL;
            return NULL;
        }
    zqi_js_store_t *self = (zqi_js_store_t *)calloc (1, sizeof *self);
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
    self->answered = zlistx_new ();
    self->link = zqi_js_link_new ();
    if (!self->queues || !self->by_stream || !self->results || !self->ready || !self->retired ||
        !self->answered || !self->link) {
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
    //  A server gone silent (a partition) is left after ZQI_JS_PINGS_OUT
    //  unanswered pings, not after TCP's own time-outs.
    if (status == NATS_OK)
        status = natsOptions_SetPingInterval (self->opts, ZQI_JS_PING_IVL_MS);
    if (status == NATS_OK)
        status = natsOptions_SetMaxPingsOut (self->opts, ZQI_JS_PINGS_OUT);
    //  Without a write deadline the socket blocks once a silent server
    //  stops taking data (its send buffer full): the write then holds the
    //  connection's lock until the partition heals, and the ping timer,
    //  the puts and the fetcher all wait on that lock, so the silence is
    //  never noticed. With one, the write fails and the connection goes
    //  on to another server.
    if (status == NATS_OK)
        status = natsOptions_SetWriteDeadline (self->opts, ZQI_JS_WRITE_WAIT_MS);
    if (status == NATS_OK)
        status = natsOptions_SetDisconnectedCB (self->opts, zqi_js_link_lost, self->link);
    if (status == NATS_OK)
        status = natsOptions_SetReconnectedCB (self->opts, zqi_js_link_back, self->link);
    if (status == NATS_OK)
        status = natsOptions_SetClosedCB (self->opts, zqi_js_link_closed, self->link);
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
    if (status == NATS_OK)
        zqi_js_link_opened (self->link, self->conn);
    jsOptions js_options;
    jsOptions_Init (&js_options);
    js_options.Wait = self->config.request_wait_ms;
    js_options.PublishAsync.MaxPending = ZQI_JS_PENDING_MAX;
    js_options.PublishAsync.AckHandler = zqi_js_pub_ack;
    js_options.PublishAsync.AckHandlerClosure = self;
    if (status == NATS_OK)
        status = natsConnection_JetStream (&self->js, self->conn, &js_options);
    if (status == NATS_OK)
        self->fetcher_started = pthread_create (&self->fetcher, NULL, zqi_js_fetcher, self) == 0;
    if (status != NATS_OK || !self->fetcher_started) {
        int errnum = status == NATS_OK ? EAGAIN : zqi_js_errno (status);
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
    zqi_js_store_t *self = (zqi_js_store_t *)*self_p;
    *self_p = NULL;
    if (self->fetcher_started) {
        pthread_mutex_lock (&self->lock);
        self->stopping = true;
        pthread_cond_signal (&self->wake);
        pthread_mutex_unlock (&self->lock);
        pthread_join (self->fetcher, NULL);
    }
    //  libnats may still run a PubAck callback after the connection is
    //  closed (nats.c issue 735), and the callback writes to this store:
    //  the puts in flight are answered first, for at most the request
    //  wait. Those still unanswered then are taken back from libnats, so
    //  that no answer can reach them any more, and the callbacks already
    //  running (taken from libnats' list, not yet counted out of it) are
    //  waited for. Only then may the store be freed.
    bool freeable = true;
    if (self->js) {
        jsPubOptions options;
        jsPubOptions_Init (&options);
        options.MaxWait = self->config.request_wait_ms;
        natsStatus answered = js_PublishAsyncComplete (self->js, &options);
        if (answered != NATS_OK) {
            natsMsgList unanswered = {0};
            natsStatus taken = js_PublishAsyncGetPendingList (&unanswered, self->js);
            if (taken == NATS_OK)
                natsMsgList_Destroy (&unanswered);
            if (taken == NATS_OK || taken == NATS_NOT_FOUND)
                answered = js_PublishAsyncComplete (self->js, &options);
        }
        //  A callback that does not return, or puts libnats would not give
        //  back: the store is left allocated rather than freed under a
        //  callback.
        freeable = answered == NATS_OK;
        if (!freeable)
            zqi_log (ZQ_LOG_ERROR,
                     "reliable: JetStream store closed with PubAcks still due after twice "
                     "%lld ms (%s): its memory is not freed",
                     (long long)self->config.request_wait_ms, natsStatus_GetText (answered));
    }
    if (self->conn) {
        zqi_js_link_closing (self->link);
        natsConnection_Close (self->conn);
    }
    zqi_js_link_release (&self->link, self->conn != NULL);
    if (!freeable)
        return;
    zhashx_destroy (&self->queues); //  (their subscriptions)
    zhashx_destroy (&self->by_stream);
    if (self->js)
        jsCtx_Destroy (self->js);
    if (self->conn)
        natsConnection_Destroy (self->conn);
    if (self->opts)
        natsOptions_Destroy (self->opts);
    zlistx_destroy (&self->results);
    if (self->answered) {
        natsMsg *msg;
        while ((msg = (natsMsg *)zlistx_detach (self->answered, NULL)))
            natsMsg_Destroy (msg);
        zlistx_destroy (&self->answered);
    }
    if (self->retired) {
        natsSubscription *sub;
        while ((sub = (natsSubscription *)zlistx_detach (self->retired, NULL)))
            natsSubscription_Destroy (sub);
        zlistx_destroy (&self->retired);
    }
    if (self->ready) {
        zqi_store_delivery_t *delivery;
        while ((delivery = (zqi_store_delivery_t *)zlistx_detach (self->ready, NULL)))
            zqi_js_delivery_destroy (&delivery);
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
    return ((zqi_js_store_t *)base)->pipe[0];
}

const zqi_store_ops_t zqi_store_jetstream = {
    .name = "jetstream",
    .open = s_open,
    .destroy = s_destroy,
    .signal_fd = s_signal_fd,
    .put = zqi_js_put,
    .put_results = zqi_js_put_results,
    .want = zqi_js_want,
    .deliveries = zqi_js_deliveries,
    .settle = zqi_js_settle,
    .delivery_destroy = zqi_js_delivery_destroy,
    .stat = zqi_js_stat,
    .purge = zqi_js_purge,
    .remove = zqi_js_remove,
    .names = zqi_js_names,
    .peek = zqi_js_peek,
    .redrive = zqi_js_redrive,
};
#endif
