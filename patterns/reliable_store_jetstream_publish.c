/*  =========================================================================
    reliable_store_jetstream_publish - the JetStream store's puts: each is
    published asynchronously, and its PubAck (on libnats' thread) becomes a
    result the server collects.
    Built only with libnats (HAVE_NATS).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable_store_jetstream.h"

static void
s_result (zqi_js_store_t *self, const char *stream, const char *hex, int errnum, bool duplicate)
{
    //  Without memory or a readable id the put stays unconfirmed: the
    //  producer sends it again. It no longer waits here either way.
    zqi_store_result_t *result = (zqi_store_result_t *)calloc (1, sizeof *result);
    if (result) {
        result->errnum = errnum;
        result->duplicate = duplicate;
        if (zqi_js_unhex (hex, result->id) < 0) {
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
    zqi_js_queue_t *queue =
        stream ? (zqi_js_queue_t *)zhashx_lookup (self->by_stream, stream) : NULL;
    //  No stream answered: it may have been deleted; check on the next put.
    if (queue && errnum == ECONNREFUSED)
        queue->stream_made = false;
    if (queue && zlistx_size (self->results) < ZQI_JS_RESULTS_MAX) {
        snprintf (result->queue, sizeof result->queue, "%s", queue->name);
        zlistx_add_end (self->results, result);
        result = NULL;
    }
    pthread_mutex_unlock (&self->lock);
    free (result);
    zqi_js_signal (self);
}

//  libnats' thread: the PubAck (or its failure) of one put.
void
zqi_js_pub_ack (jsCtx *js, natsMsg *msg, jsPubAck *ack, jsPubAckErr *error, void *closure)
{
    zqi_js_store_t *self = (zqi_js_store_t *)closure;
    const char *hex = NULL;
    natsMsgHeader_Get (msg, "Nats-Msg-Id", &hex);
    //  The subject is zq.q.STREAM.
    const char *subject = natsMsg_GetSubject (msg);
    const char *stream = subject && strlen (subject) > strlen (ZQI_JS_SUBJECT_ROOT)
                             ? subject + strlen (ZQI_JS_SUBJECT_ROOT)
                             : NULL;
    if (ack && !error)
        s_result (self, stream, hex, 0, ack->Duplicate);
    else if (error && error->ErrCode == JSStreamMessageExceedsMaximumErr)
        //  Over the stream's own max_msg_size (made or changed by hand):
        //  never storable there, as over the servers' max_payload.
        s_result (self, stream, hex, EMSGSIZE, false);
    else
        s_result (self, stream, hex, error ? zqi_js_errno (error->Err) : EIO, false);
    //  Not destroyed here (see answered); without room for it, it leaks
    //  rather than be freed under the publisher.
    pthread_mutex_lock (&self->lock);
    zlistx_add_end (self->answered, msg);
    pthread_mutex_unlock (&self->lock);
}

//  Destroys the messages of answered puts. On the thread that puts.
static void
s_bury (zqi_js_store_t *self)
{
    pthread_mutex_lock (&self->lock);
    zlistx_t *answered = self->answered;
    self->answered = zlistx_new ();
    if (!self->answered) {
        self->answered = answered;
        answered = NULL;
    }
    pthread_mutex_unlock (&self->lock);
    natsMsg *msg;
    while (answered && (msg = (natsMsg *)zlistx_detach (answered, NULL)))
        natsMsg_Destroy (msg);
    zlistx_destroy (&answered);
}

int
zqi_js_put (zqi_store_t *base, const char *name, const uint8_t *id, const void *data, size_t size)
{
    zqi_js_store_t *self = (zqi_js_store_t *)base;
    if (size > INT32_MAX) {
        errno = EMSGSIZE;
        return -1;
    }
    char subject[ZQI_STORE_NAME_MAX + 8];
    pthread_mutex_lock (&self->lock);
    zqi_js_queue_t *queue = zqi_js_queue (self, name);
    bool full = self->pending >= ZQI_JS_PENDING_MAX;
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
    zqi_js_hex (id, hex);
    //  Not while the connection is away: the server's thread would wait
    //  for the request's whole time; the put is refused now instead.
    if (!made && natsConnection_Status (self->conn) != NATS_CONN_STATUS_CONNECTED)
        errno = ECONNREFUSED;
    else if (!made && zqi_js_stream_ensure (self, queue->stream, queue->subject) == 0) {
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
            errno = zqi_js_errno (status);
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

size_t
zqi_js_put_results (zqi_store_t *base, zqi_store_result_t *results, size_t max)
{
    zqi_js_store_t *self = (zqi_js_store_t *)base;
    zqi_js_drain (self);
    s_bury (self);
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
        zqi_js_signal (self);
    return count;
}
