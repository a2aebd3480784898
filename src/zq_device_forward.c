/*  =========================================================================
    zq_device_forward - the "forward" kind: a pub/sub forwarder. Publishers
    connect to its XSUB socket (in), subscribers to its XPUB socket (out);
    subscriptions travel upstream, messages downstream, frames untouched.

    What ZeroMQ would drop in silence is counted: the XPUB socket refuses
    a message when a matching subscriber's queue is full (ZMQ_XPUB_NODROP),
    and the device then drops it for every subscriber and counts it in
    "dropped" (each subscriber sees the gap in its sequence numbers). The
    device also reads each message's sequence frame (doc/PROTOCOL.md,
    "pubsub") and counts in "gaps" the messages lost before they reached
    it. Messages that are not pubsub messages (fewer than three frames, a
    bad sequence frame) are counted in "errors" and not forwarded.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_device_internal.h"

#define S_BURST 1024
//  Most (publisher, subject) pairs remembered; past it, all are forgotten
//  (a pair seen afresh is never a gap).
#define S_MAX_PAIRS     65536
#define S_SEQUENCE_SIZE 16

typedef struct {
    zhashx_t *last_seq; //  "publisher hex:subject" -> uint64_t *
} s_forward_t;

int
zqi_forward_open (zqi_dqueue_t *dq, zqi_device_env_t *env, char *error, size_t error_size)
{
    s_forward_t *self = (s_forward_t *)calloc (1, sizeof *self);
    if (!self)
        return zqi_fail (ENOMEM);
    dq->kind_state = self;
    self->last_seq = zhashx_new ();
    dq->in = zsock_new (ZMQ_XSUB);
    dq->out = zsock_new (ZMQ_XPUB);
    if (!self->last_seq || !dq->in || !dq->out) {
        zqi_forward_close (dq);
        snprintf (error, error_size, "forward %s: out of memory", dq->name);
        return zqi_fail (ENOMEM);
    }
    zhashx_set_destructor (self->last_seq, (zhashx_destructor_fn *)zstr_free);
    zsock_set_rcvhwm (dq->in, (int)dq->config->rcvhwm);
    zsock_set_sndhwm (dq->out, (int)dq->config->sndhwm);
    zsock_set_xpub_nodrop (dq->out, 1);
    zsock_set_linger (dq->out, 0);
    int64_t max_bytes = ZQ_MSG_MAX_SIZE_DEFAULT;
    zq_options_get_int (env->config->queue_options, "max_message_bytes", &max_bytes);
    zsock_set_maxmsgsize (dq->in, max_bytes + 8192);
    zqi_device_secure (env, dq->in);
    zqi_device_secure (env, dq->out);
    if (zqi_device_bind (dq->in, dq->config->in, &dq->in_endpoint, error, error_size) ||
        zqi_device_bind (dq->out, dq->config->out, &dq->out_endpoint, error, error_size)) {
        int saved = errno;
        zqi_forward_close (dq);
        return zqi_fail (saved);
    }
    return 0;
}

void
zqi_forward_close (zqi_dqueue_t *dq)
{
    s_forward_t *self = (s_forward_t *)dq->kind_state;
    zsock_destroy (&dq->in);
    zsock_destroy (&dq->out);
    if (self) {
        zhashx_destroy (&self->last_seq);
        free (self);
        dq->kind_state = NULL;
    }
}

//  Counts the gap this message shows. Returns 0 if it is a pubsub message,
//  -1 if not.
static int
s_track (zqi_dqueue_t *dq, zmsg_t *msg)
{
    s_forward_t *self = (s_forward_t *)dq->kind_state;
    if (zmsg_size (msg) < 3)
        return -1;
    zframe_t *topic = zmsg_first (msg);
    zframe_t *sequence = zmsg_next (msg);
    if (zframe_size (sequence) != S_SEQUENCE_SIZE || zframe_size (topic) > ZQ_MSG_MAX_STRING)
        return -1;
    const uint8_t *bytes = zframe_data (sequence);
    uint64_t seq = 0;
    for (int index = 8; index < 16; index++)
        seq = (seq << 8) | bytes[index];
    if (seq == 0)
        return -1;
    char key[2 * 8 + 1 + ZQ_MSG_MAX_STRING + 1];
    for (int index = 0; index < 8; index++)
        snprintf (key + 2 * index, 3, "%02x", bytes[index]);
    key[16] = ':';
    memcpy (key + 17, zframe_data (topic), zframe_size (topic));
    key[17 + zframe_size (topic)] = '\0';
    if (strlen (key) != 17 + zframe_size (topic))
        return -1; //  a NUL inside the topic
    uint64_t *last = (uint64_t *)zhashx_lookup (self->last_seq, key);
    if (last) {
        if (seq > *last + 1)
            dq->counters.gaps += seq - *last - 1;
        *last = seq;
        return 0;
    }
    if (zhashx_size (self->last_seq) >= S_MAX_PAIRS)
        zhashx_purge (self->last_seq);
    last = (uint64_t *)malloc (sizeof *last);
    if (last) {
        *last = seq;
        if (zhashx_insert (self->last_seq, key, last))
            free (last);
    }
    return 0;
}

void
zqi_forward_input (zqi_dqueue_t *dq)
{
    void *out = zsock_resolve (dq->out);
    for (int burst = 0; burst < S_BURST; burst++) {
        zmsg_t *msg = zqi_device_recv_nowait (dq->in);
        if (!msg)
            break;
        dq->counters.in++;
        if (s_track (dq, msg)) {
            dq->counters.errors++;
            zmsg_destroy (&msg);
            continue;
        }
        //  The first frame decides: XPUB_NODROP refuses it when a matching
        //  subscriber is full; the rest of a message always follows.
        bool sent = true;
        size_t left = zmsg_size (msg);
        zframe_t *frame;
        while ((frame = zmsg_pop (msg))) {
            left--;
            int flags = ZFRAME_DONTWAIT | (left ? ZFRAME_MORE : 0);
            if (sent && zframe_send (&frame, out, flags))
                sent = false;
            zframe_destroy (&frame);
        }
        if (sent)
            dq->counters.out++;
        else
            dq->counters.dropped++;
        zmsg_destroy (&msg);
    }
}

void
zqi_forward_output (zqi_dqueue_t *dq)
{
    void *in = zsock_resolve (dq->in);
    for (int burst = 0; burst < S_BURST; burst++) {
        zmsg_t *msg = zqi_device_recv_nowait (dq->out);
        if (!msg)
            break;
        //  Subscriptions and unsubscriptions (first byte 1 or 0) go up.
        zframe_t *frame = zmsg_first (msg);
        if (zmsg_size (msg) == 1 && zframe_size (frame) >= 1 &&
            (zframe_data (frame)[0] == 0 || zframe_data (frame)[0] == 1)) {
            frame = zmsg_pop (msg);
            if (zframe_send (&frame, in, ZFRAME_DONTWAIT))
                zframe_destroy (&frame);
        } else
            dq->counters.errors++;
        zmsg_destroy (&msg);
    }
}

void
zqi_forward_row (zqi_dqueue_t *dq, zqi_row_t *row)
{
    *row = dq->counters;
}
