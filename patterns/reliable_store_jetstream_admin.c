/*  =========================================================================
    reliable_store_jetstream_admin - the JetStream store's settling of a
    delivery (ack, nack, touch) and its admin calls: a queue's figures,
    purge and removal.
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

int
zqi_js_stat (zqi_store_t *base, const char *name, zqi_store_stat_t *stat)
{
    zqi_js_store_t *self = (zqi_js_store_t *)base;
    char stream[ZQI_STORE_NAME_MAX + 1];
    if (zqi_store_stream_name (self->prefix, name, stream, sizeof stream) < 0)
        return -1;
    jsStreamInfo *info = NULL;
    natsStatus status = js_GetStreamInfo (&info, self->js, stream, NULL, NULL);
    if (status != NATS_OK) {
        errno = zqi_js_errno (status);
        return -1;
    }
    memset (stat, 0, sizeof *stat);
    stat->messages = info->State.Msgs;
    stat->bytes = info->State.Bytes;
    jsStreamInfo_Destroy (info);
    jsConsumerInfo *consumer = NULL;
    if (js_GetConsumerInfo (&consumer, self->js, stream, ZQI_JS_DURABLE, NULL, NULL) == NATS_OK) {
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
