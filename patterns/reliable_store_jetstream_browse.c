/*  =========================================================================
    reliable_store_jetstream_browse - the JetStream store's reads of a
    stream by sequence, for the admin calls that look at messages without
    taking them through the queue's consumer: peek (the head of a queue)
    and redrive (dead letters back to their queue).
    Built only with libnats (HAVE_NATS).

    Both block the caller (the server's thread) on JetStream requests,
    each bounded by the store's request wait: they are admin calls, rare
    and bounded in count (ZQI_JS_BROWSE_SKIP_MAX, ZQI_STORE_REDRIVE_MAX).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable_store_jetstream.h"

#ifdef HAVE_NATS

//  The options of a blocking admin request: refused at once while the
//  connection is away.
static int
s_options (zqi_js_store_t *self, jsOptions *options)
{
    if (natsConnection_Status (self->conn) != NATS_CONN_STATUS_CONNECTED) {
        errno = ECONNREFUSED;
        return -1;
    }
    jsOptions_Init (options);
    options->Wait = self->config.request_wait_ms;
    return 0;
}

//  The first and last sequence of stream (0, 0 when it is empty).
static int
s_bounds (zqi_js_store_t *self, const char *stream, jsOptions *options, uint64_t *first,
          uint64_t *last)
{
    jsStreamInfo *info = NULL;
    natsStatus status = js_GetStreamInfo (&info, self->js, stream, options, NULL);
    if (status != NATS_OK) {
        errno = zqi_js_errno (status);
        return -1;
    }
    *first = info->State.Msgs ? info->State.FirstSeq : 0;
    *last = info->State.Msgs ? info->State.LastSeq : 0;
    jsStreamInfo_Destroy (info);
    return 0;
}

//  The next message of stream at *seq or after (up to last, skipping at
//  most ZQI_JS_BROWSE_SKIP_MAX sequences gone: acked or deleted). *msg is
//  NULL when none is left within those bounds. 0, or -1 and errno.
static int
s_next (zqi_js_store_t *self, const char *stream, jsOptions *options, uint64_t *seq, uint64_t last,
        natsMsg **msg)
{
    *msg = NULL;
    for (uint32_t skipped = 0; *seq && *seq <= last && skipped <= ZQI_JS_BROWSE_SKIP_MAX;
         skipped++) {
        natsStatus status = js_GetMsg (msg, self->js, stream, *seq, options, NULL);
        (*seq)++;
        if (status == NATS_OK)
            return 0;
        *msg = NULL;
        if (status != NATS_NOT_FOUND) {
            errno = zqi_js_errno (status);
            return -1;
        }
    }
    return 0;
}

int
zqi_js_peek (zqi_store_t *base, const char *name, size_t max,
             int (*each) (void *arg, const uint8_t *data, size_t size), void *arg)
{
    zqi_js_store_t *self = (zqi_js_store_t *)base;
    char stream[ZQI_STORE_NAME_MAX + 1];
    jsOptions options;
    uint64_t seq, last;
    if (zqi_store_stream_name (self->prefix, name, stream, sizeof stream) < 0 ||
        s_options (self, &options) || s_bounds (self, stream, &options, &seq, &last))
        return -1;
    for (size_t found = 0; found < max; found++) {
        natsMsg *msg = NULL;
        if (s_next (self, stream, &options, &seq, last, &msg))
            return -1;
        if (!msg)
            break;
        int stop =
            each (arg, (const uint8_t *)natsMsg_GetData (msg), (size_t)natsMsg_GetDataLength (msg));
        natsMsg_Destroy (msg);
        if (stop)
            break;
    }
    return 0;
}

//  Stores one dead letter in queue (subject), its PubAck awaited. Its
//  dedupe id is the zq id and the dead letter's sequence, so that this
//  copy is not taken for the put that first stored the message (within
//  the dedupe window), and a redrive repeated after a crash between the
//  PubAck and the removal of the dead letter is stored once.
static int
s_republish (zqi_js_store_t *self, const char *subject, natsMsg *dead, uint64_t seq,
             jsOptions *options)
{
    const char *header = NULL;
    natsMsgHeader_Get (dead, "Nats-Msg-Id", &header);
    char hex[2 * ZQI_STORE_ID_SIZE + 1];
    uint8_t id[ZQI_STORE_ID_SIZE];
    snprintf (hex, sizeof hex, "%s", header ? header : "");
    if (zqi_js_unhex (hex, id) < 0) {
        errno = EPROTO; //  not one of ours: it stays where it is
        return -1;
    }
    char key[sizeof hex + 24];
    snprintf (key, sizeof key, "%s" ZQI_JS_REDRIVE_MARK "%llu", hex, (unsigned long long)seq);
    jsPubOptions publish;
    jsPubOptions_Init (&publish);
    publish.MsgId = key;
    publish.MaxWait = options->Wait;
    jsPubAck *ack = NULL;
    natsStatus status = js_Publish (&ack, self->js, subject, natsMsg_GetData (dead),
                                    natsMsg_GetDataLength (dead), &publish, NULL);
    jsPubAck_Destroy (ack);
    if (status != NATS_OK) {
        errno = zqi_js_errno (status);
        return -1;
    }
    return 0;
}

int
zqi_js_redrive (zqi_store_t *base, const char *name, size_t max, uint64_t *count_p)
{
    zqi_js_store_t *self = (zqi_js_store_t *)base;
    *count_p = 0;
    char dead_name[ZQI_STORE_NAME_MAX + 1];
    char stream[ZQI_STORE_NAME_MAX + 1];
    char dead_stream[ZQI_STORE_NAME_MAX + 1];
    char subject[ZQI_STORE_NAME_MAX + 8];
    jsOptions options;
    if (snprintf (dead_name, sizeof dead_name, "%s" ZQI_JS_DEAD_SUFFIX, name) >=
        (int)sizeof dead_name) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if (zqi_store_stream_name (self->prefix, name, stream, sizeof stream) < 0 ||
        zqi_store_stream_name (self->prefix, dead_name, dead_stream, sizeof dead_stream) < 0 ||
        s_options (self, &options))
        return -1;
    uint64_t seq, last;
    if (s_bounds (self, dead_stream, &options, &seq, &last))
        return errno == ENOENT ? 0 : -1; //  no dead letter ever
    if (!seq)
        return 0;
    snprintf (subject, sizeof subject, ZQI_JS_SUBJECT_ROOT "%s", stream);
    if (zqi_js_stream_ensure (self, stream, subject))
        return -1;
    while (*count_p < max) {
        natsMsg *msg = NULL;
        if (s_next (self, dead_stream, &options, &seq, last, &msg))
            return -1;
        if (!msg)
            break;
        //  Stored in the queue first; removed from NAME.dead only then.
        int rc = s_republish (self, subject, msg, seq - 1, &options);
        natsMsg_Destroy (msg);
        if (rc)
            return -1;
        natsStatus status = js_DeleteMsg (self->js, dead_stream, seq - 1, &options, NULL);
        if (status != NATS_OK && status != NATS_NOT_FOUND) {
            //  In both now; the copy in NAME.dead is redriven again later
            //  (under the same dedupe id) or settled there.
            errno = zqi_js_errno (status);
            (*count_p)++;
            return -1;
        }
        (*count_p)++;
    }
    return 0;
}
#endif
