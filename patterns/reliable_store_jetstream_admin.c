/*  =========================================================================
    reliable_store_jetstream_admin - the JetStream store's settling of a
    delivery (ack, nack, touch) and its admin calls: a queue's figures,
    purge and removal, the list of queues.
    Built only with libnats (HAVE_NATS).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable_store_jetstream.h"

int
zqi_js_settle (zqi_store_t *base, zqi_store_delivery_t *delivery, zqi_store_settle_t how,
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
        errno = zqi_js_errno (status);
        return -1;
    }
    return 0;
}

//  The options of the requests the server makes each second (stat, names),
//  on its own thread: they fail at once while the connection is away, and
//  wait ZQI_JS_ADMIN_WAIT_MS at most (the server's loop waits meanwhile).
static int
s_admin_options (zqi_js_store_t *self, jsOptions *options)
{
    if (natsConnection_Status (self->conn) != NATS_CONN_STATUS_CONNECTED) {
        errno = ECONNREFUSED;
        return -1;
    }
    jsOptions_Init (options);
    options->Wait = self->config.request_wait_ms < ZQI_JS_ADMIN_WAIT_MS
                        ? self->config.request_wait_ms
                        : ZQI_JS_ADMIN_WAIT_MS;
    return 0;
}

int
zqi_js_stat (zqi_store_t *base, const char *name, zqi_store_stat_t *stat)
{
    zqi_js_store_t *self = (zqi_js_store_t *)base;
    char stream[ZQI_STORE_NAME_MAX + 1];
    jsOptions options;
    if (zqi_store_stream_name (self->prefix, name, stream, sizeof stream) < 0 ||
        s_admin_options (self, &options))
        return -1;
    jsStreamInfo *info = NULL;
    natsStatus status = js_GetStreamInfo (&info, self->js, stream, &options, NULL);
    if (status != NATS_OK) {
        errno = zqi_js_errno (status);
        return -1;
    }
    memset (stat, 0, sizeof *stat);
    stat->messages = info->State.Msgs;
    stat->bytes = info->State.Bytes;
    jsStreamInfo_Destroy (info);
    jsConsumerInfo *consumer = NULL;
    if (js_GetConsumerInfo (&consumer, self->js, stream, ZQI_JS_DURABLE, &options, NULL) ==
        NATS_OK) {
        stat->in_flight = consumer->NumAckPending > 0 ? (uint64_t)consumer->NumAckPending : 0;
        jsConsumerInfo_Destroy (consumer);
    }
    return 0;
}

int
zqi_js_purge (zqi_store_t *base, const char *name)
{
    zqi_js_store_t *self = (zqi_js_store_t *)base;
    char stream[ZQI_STORE_NAME_MAX + 1];
    if (zqi_store_stream_name (self->prefix, name, stream, sizeof stream) < 0)
        return -1;
    natsStatus status = js_PurgeStream (self->js, stream, NULL, NULL);
    if (status != NATS_OK) {
        errno = zqi_js_errno (status);
        return -1;
    }
    return 0;
}

int
zqi_js_remove (zqi_store_t *base, const char *name)
{
    zqi_js_store_t *self = (zqi_js_store_t *)base;
    char stream[ZQI_STORE_NAME_MAX + 1];
    if (zqi_store_stream_name (self->prefix, name, stream, sizeof stream) < 0)
        return -1;
    natsStatus status = js_DeleteStream (self->js, stream, NULL, NULL);
    //  The consumer went with the stream: bind again on the next want.
    pthread_mutex_lock (&self->lock);
    zqi_js_queue_t *queue = (zqi_js_queue_t *)zhashx_lookup (self->queues, name);
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
        errno = zqi_js_errno (status);
        return -1;
    }
    return 0;
}

//  The queues of the streams named with this store's prefix.
int
zqi_js_names (zqi_store_t *base, void (*each) (void *arg, const char *name), void *arg)
{
    zqi_js_store_t *self = (zqi_js_store_t *)base;
    jsStreamNamesList *list = NULL;
    jsOptions options;
    if (s_admin_options (self, &options))
        return -1;
    natsStatus status = js_StreamNames (&list, self->js, &options, NULL);
    if (status == NATS_NOT_FOUND)
        return 0; //  no stream at all
    if (status != NATS_OK) {
        errno = zqi_js_errno (status);
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
