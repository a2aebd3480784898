/*  =========================================================================
    reliable_acks - a reliable consumer's acks and nacks in batches.

    An ACK (or NACK) names many ids (doc/PROTOCOL.md 18.1), so a consumer
    that settles deliveries one by one may send them as one frame: each
    zq_queue_ack (or zq_queue_nack with the delay of the ones before)
    adds its id to the batch held here, and the batch goes as one command
    when the first of these comes:
      - the application's next call finds nothing to do: zq_queue_recv
        finds no delivery waiting, zq_queue_events reports no ZQ_POLLIN
        (so a consumer that reads faster than deliveries come, or that
        waits, sends at once; one busy with a backlog batches);
      - the consumer sends another command (CONSUME, CANCEL, TOUCH, LEAVE,
        an ACK of another kind or for another server): the batch goes
        first, so the server sees the commands in the order given;
      - the batch holds half the consumer's prefetch window (at most
        S_BATCH_MAX ids): the server gets that credit back while the
        application still works on the other half, so a consumer with a
        backlog never waits a whole round trip with nothing to do;
      - ack_flush_us passed since the first of the batch was added, even
        when the application makes no call at all (it went quiet, or
        works on something else for a long time): the flush thread;
      - the queue closes (before its LEAVE).

    The flush thread. A zq queue belongs to the application's thread, and
    a libzmq socket may be used by another thread only with a full memory
    barrier in between. So the consumer gives the core a mutex
    (zq_pattern_ctx_t.lock) that every call on the queue holds from start
    to end, waits included, and the thread sends only while holding it:
    the two never use the socket at once, and the mutex is the barrier.
    A call that waits has sent the batch before it waits (nothing to do)
    or wakes for the flush timer (next_timer_ms), so the thread is only
    needed, and only runs, between the application's calls. It starts
    with the first ack held, sleeps on a condition variable while nothing
    is held, and is joined at close.
    An application that polls the socket or fd itself (zq_queue_sock,
    zq_queue_fd: zmq_poll, zloop, epoll) would use the socket outside any
    call, and a send from the thread could take the fd's signal of a
    delivery it waits for: such a queue holds no acks (each goes at once,
    as with ack_flush_us 0), and no thread runs for it.

    The other design weighed: a second socket owned by the thread, which
    needs the server to take a settle from another connection as the
    consumer's own (a shared secret in CONSUME), a change of the wire and
    of the server's "only the holder settles" rule, and would lose the
    order between a settle and a CONSUME window or LEAVE on the first
    connection. The mutex costs an uncontended lock per call.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable.h"
#include <signal.h>
#include <time.h>

//  Most ids one batch holds (16 KiB of ids; a server takes up to its
//  frame limit, doc/PROTOCOL.md 18.7).
#define S_BATCH_MAX 1024
//  Longest wait of the thread between tries of a batch that found no room
//  (no server connected).
#define S_RETRY_MAX_US 100000

static int64_t
s_now_us (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

static int64_t
s_coarse_now_us (void)
{
    struct timespec now;
    if (clock_gettime (CLOCK_MONOTONIC_COARSE, &now))
        return s_now_us ();
    return (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

int
zqi_r_acks_open (zqi_r_acks_t *self, zq_pattern_ctx_t *ctx, zqi_r_peers_t *peers)
{
    memset (self, 0, sizeof *self);
    self->ctx = ctx;
    self->peers = peers;
    self->flush_us = zqi_r_option (ctx->options, "ack_flush_us");
    int64_t half_window = zqi_r_option (ctx->options, "prefetch") / 2;
    self->batch_max = half_window < 1 ? 1 : half_window > S_BATCH_MAX ? S_BATCH_MAX : half_window;
    if (!self->flush_us)
        return 0;
    pthread_condattr_t attr;
    if (pthread_condattr_init (&attr))
        return zqi_fail (ENOMEM);
    int rc = pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init (&self->wake, &attr);
    pthread_condattr_destroy (&attr);
    if (rc)
        return zqi_fail (rc);
    if ((rc = pthread_mutex_init (&self->lock, NULL))) {
        pthread_cond_destroy (&self->wake);
        return zqi_fail (rc);
    }
    self->ready = true;
    ctx->lock = &self->lock;
    return 0;
}

//  Sends the batch, or the ACK or NACK of one id. Returns 0, or -1 with
//  errno (EAGAIN: no room now).
static int
s_send (zqi_r_acks_t *self, zqi_r_kind_t kind, const uint8_t *ids, size_t size, int64_t number,
        uint32_t peer)
{
    zqi_buf_t *frame = &self->frame;
    if (zqi_r_put_command (frame, kind == ZQI_R_ACK ? 3 : 4, kind) ||
        zqi_mp_put_bin (frame, ids, size) || (kind != ZQI_R_ACK && zqi_mp_put_int (frame, number)))
        return -1;
    if (self->peers->multi)
        return zqi_r_peers_send (self->peers, self->ctx->handle, peer, frame->data, frame->size);
    return zmq_send (self->ctx->handle, frame->data, frame->size, ZMQ_DONTWAIT) == -1 ? -1 : 0;
}

int
zqi_r_acks_flush (zqi_r_acks_t *self)
{
    if (!self->count)
        return 0;
    if (s_send (self, (zqi_r_kind_t)self->kind, self->ids.data, self->ids.size, self->number,
                self->peer)) {
        if (errno == EAGAIN) {
            //  Tried again at the next call, or by the thread after twice
            //  the wait before (at most S_RETRY_MAX_US).
            self->since_us = s_now_us ();
            self->wait_us = self->wait_us < S_RETRY_MAX_US / 2 ? 2 * self->wait_us : S_RETRY_MAX_US;
            return -1;
        }
        //  A server gone (several servers: not connected) takes back what
        //  it delivered; a batch that cannot be written (out of memory)
        //  comes back at its visibility time.
        int saved = errno;
        self->count = 0;
        zqi_buf_reset (&self->ids);
        errno = saved;
        return -1;
    }
    self->count = 0;
    zqi_buf_reset (&self->ids);
    return 0;
}

static void *
s_flusher (void *arg)
{
    zqi_r_acks_t *self = (zqi_r_acks_t *)arg;
    pthread_mutex_lock (&self->lock);
    while (!self->stopping) {
        if (!self->count || self->ctx->polled) {
            self->idle = true;
            pthread_cond_wait (&self->wake, &self->lock);
            self->idle = false;
            continue;
        }
        int64_t due = self->since_us + self->wait_us;
        if (s_now_us () < due) {
            struct timespec until = {(time_t)(due / 1000000), (long)(due % 1000000) * 1000};
            pthread_cond_timedwait (&self->wake, &self->lock, &until);
            continue;
        }
        zqi_r_acks_flush (self);
    }
    pthread_mutex_unlock (&self->lock);
    return NULL;
}

int
zqi_r_acks_hold (zqi_r_acks_t *self, zqi_r_kind_t kind, const uint8_t *id, int64_t number,
                 uint32_t peer)
{
    if (!self->flush_us || self->ctx->polled)
        return zqi_fail (ENOTSUP);
    if (!self->started) {
        //  The caller holds the lock: the thread waits for it. It takes
        //  no signal (they stay the application's threads'), as libzmq's.
        sigset_t all, before;
        sigfillset (&all);
        pthread_sigmask (SIG_SETMASK, &all, &before);
        int rc = pthread_create (&self->thread, NULL, s_flusher, self);
        pthread_sigmask (SIG_SETMASK, &before, NULL);
        if (rc)
            return zqi_fail (ENOTSUP); //  no thread: each ack goes at once
        self->started = true;
    }
    if (self->count &&
        (kind != (zqi_r_kind_t)self->kind || (kind != ZQI_R_ACK && number != self->number) ||
         peer != self->peer || self->count >= self->batch_max) &&
        zqi_r_acks_flush (self) && errno == EAGAIN)
        return -1;
    if (zqi_buf_append (&self->ids, id, ZQ_MSG_ID_SIZE))
        return -1;
    if (!self->count++) {
        self->kind = (uint8_t)kind;
        self->number = number;
        self->peer = peer;
        self->since_us = s_now_us ();
        self->wait_us = self->flush_us;
        if (self->idle)
            pthread_cond_signal (&self->wake);
    }
    //  Full: it goes now (without room, it stays held and goes later).
    if (self->count >= self->batch_max)
        zqi_r_acks_flush (self);
    return 0;
}

void
zqi_r_acks_due (zqi_r_acks_t *self)
{
    if (!self->count)
        return;
    //  While the flusher thread keeps their time (it runs, and the
    //  application does not poll), a call only backs it up (the thread
    //  may wait for the lock while the application calls in a loop): on
    //  the coarse clock, a fifth of the precise one's cost, which reads
    //  the same time or up to a tick earlier, never later.
    bool backup = self->started && !self->ctx->polled;
    int64_t now_us = backup ? s_coarse_now_us () : s_now_us ();
    if (now_us >= self->since_us + self->wait_us)
        zqi_r_acks_flush (self);
}

int64_t
zqi_r_acks_next_ms (zqi_r_acks_t *self)
{
    if (!self->count)
        return -1;
    int64_t wait_us = self->since_us + self->wait_us - s_now_us ();
    return wait_us > 0 ? (wait_us + 999) / 1000 : 0;
}

void
zqi_r_acks_close (zqi_r_acks_t *self)
{
    if (self->started) {
        pthread_mutex_lock (&self->lock);
        self->stopping = true;
        pthread_cond_signal (&self->wake);
        pthread_mutex_unlock (&self->lock);
        pthread_join (self->thread, NULL);
        self->started = false;
    }
    //  The socket is still open: what is held goes now (libzmq's linger
    //  takes it on after the close).
    zqi_r_acks_flush (self);
    if (self->ready) {
        self->ctx->lock = NULL;
        pthread_cond_destroy (&self->wake);
        pthread_mutex_destroy (&self->lock);
        self->ready = false;
    }
    zqi_buf_free (&self->ids);
    zqi_buf_free (&self->frame);
}
