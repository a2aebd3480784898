/*  =========================================================================
    reliable_server_commit - the reliable server's commits of a round's
    PUTs and their answers: one commit per spool a round appended to
    (one write and, under fsync "always", one fdatasync), then one CONFIRM
    per producer for the PUTs stored and one REFUSE per producer and code
    for the others.

    A round's commit runs in the committer thread while the server reads
    the next round and serves its consumers (zqi_rs_work): the disk's write
    and fdatasync overlap the reading, parsing and appending of the next
    PUTs, and the acks and deliveries, instead of stopping them. The thread
    signals the end of each commit on an eventfd, which the server waits
    on beside its socket when it has nothing to read, and which the host
    polls (zq_queue_store_fd) when a call ended with the commit running. A
    PUT is still answered only once the commit that holds its record
    returned: no CONFIRM before the record is durable under the queue's
    fsync policy. A small round read with the socket empty commits in the
    server's own thread, as a lone PUT would not gain from a handover to
    another thread, unless remote consumers would wait for its fdatasync
    (zqi_rs_work).

    patterns/reliable_server.h holds what the server's files share.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable_server.h"
#include <limits.h>
#include <sys/eventfd.h>
#include <unistd.h>

int
zqi_rs_puts_init (zqi_rs_puts_t *puts)
{
    memset (puts, 0, sizeof *puts);
    puts->pending = (zqi_rs_pending_t *)malloc (ZQI_RS_PENDING_MAX * sizeof (zqi_rs_pending_t));
    puts->peers = (zqi_rs_peer_t *)malloc (ZQI_RS_BATCH_PEERS * sizeof (zqi_rs_peer_t));
    puts->touched = (uint32_t *)malloc (ZQI_RS_PENDING_MAX * sizeof (uint32_t));
    puts->spools = (zq_spool_t **)malloc (ZQI_RS_PENDING_MAX * sizeof (zq_spool_t *));
    puts->refusals = (int *)malloc (ZQI_RS_PENDING_MAX * sizeof (int));
    puts->first_seqs = (uint64_t *)malloc (ZQI_RS_PENDING_MAX * sizeof (uint64_t));
    puts->last_seqs = (uint64_t *)malloc (ZQI_RS_PENDING_MAX * sizeof (uint64_t));
    if (!puts->pending || !puts->peers || !puts->touched || !puts->spools || !puts->refusals ||
        !puts->first_seqs || !puts->last_seqs) {
        zqi_rs_puts_free (puts);
        return zqi_fail (ENOMEM);
    }
    return 0;
}

void
zqi_rs_puts_free (zqi_rs_puts_t *puts)
{
    free (puts->pending);
    free (puts->peers);
    free (puts->touched);
    free (puts->spools);
    free (puts->refusals);
    free (puts->first_seqs);
    free (puts->last_seqs);
    memset (puts, 0, sizeof *puts);
}

//  Commits each spool of puts, noting each one's outcome: 0 when every
//  record the round appended to it is stored, else the errno that refused
//  one (a write another thread led may have refused some before the
//  commit began: the range check finds those). Runs in the server's thread
//  or in the committer's.
static void
s_commit_spools (zqi_rs_puts_t *puts)
{
    for (uint32_t i = 0; i < puts->touched_count; i++)
        puts->refusals[i] =
            zq_spool_commit (puts->spools[i])
                ? (errno ? errno : EIO)
                : zq_spool_refusal (puts->spools[i], puts->first_seqs[i], puts->last_seqs[i]);
}

//  Sends the ids of the PUTs in puts from peer with code (0: CONFIRM).
static void
s_answer (zqi_r_server_t *self, const zqi_rs_puts_t *puts, uint32_t peer, uint8_t code)
{
    zqi_buf_reset (&self->bytes);
    for (uint32_t i = 0; i < puts->pending_count; i++)
        if (puts->pending[i].peer == peer && puts->pending[i].code == code)
            if (zqi_buf_append (&self->bytes, puts->pending[i].id, ZQ_MSG_ID_SIZE))
                return;
    if (!self->bytes.size)
        return;
    if (code && code < ZQI_R_CODE_COUNT)
        self->refusals[code] += self->bytes.size / ZQ_MSG_ID_SIZE;
    int rc = code ? zqi_r_put_command (&self->buf, 5, ZQI_R_REFUSE)
                  : zqi_r_put_command (&self->buf, 3, ZQI_R_CONFIRM);
    if (rc || zqi_mp_put_bin (&self->buf, self->bytes.data, self->bytes.size))
        return;
    if (code) {
        const char *reason = zqi_rs_code_reason ((zqi_r_code_t)code);
        if (zqi_mp_put_uint (&self->buf, code) ||
            zqi_mp_put_str (&self->buf, reason, strlen (reason)))
            return;
    }
    //  A producer gone or too slow to take its confirms sends again.
    zqi_rs_send_command (self, puts->peers[peer].route, puts->peers[peer].route_size, false);
}

void
zqi_rs_check_stored (zqi_r_server_t *self, zqi_rs_queue_t *queue, zqi_rs_pending_t *pending)
{
    if (zq_spool_wait (queue->spool, pending->seq) == 0)
        return;
    pending->code = zqi_rs_store_code (errno);
    zqi_r_dedupe_forget (&self->dedupe, &pending->seen);
    if (pending->appended)
        queue->counters.put--;
    else
        queue->counters.duplicates--;
    queue->counters.refused++;
}

//  After the commits of puts' spools (their outcomes in puts->refusals):
//  settles each PUT (a record of a failed commit asks its spool whether
//  it was stored), answers them all, and empties puts.
static void
s_settle_and_answer (zqi_r_server_t *self, zqi_rs_puts_t *puts)
{
    for (uint32_t i = 0; i < puts->touched_count; i++) {
        zqi_rs_queue_t *queue = self->queues[puts->touched[i]];
        queue->commit_failed = puts->refusals[i] != 0;
        if (queue->commit_failed)
            zqi_log (ZQ_LOG_WARNING, "reliable: queue %s refused a batch: %s", queue->name,
                     zq_strerror (puts->refusals[i]));
    }
    for (uint32_t i = 0; i < puts->pending_count; i++) {
        zqi_rs_pending_t *pending = &puts->pending[i];
        if (pending->code || pending->queue == ZQI_R_NONE)
            continue;
        zqi_rs_queue_t *queue = self->queues[pending->queue];
        if (queue->commit_failed)
            zqi_rs_check_stored (self, queue, pending);
    }
    for (uint32_t i = 0; i < puts->touched_count; i++)
        self->queues[puts->touched[i]]->commit_failed = false;
    //  Which answers each peer gets (bit code), so that each answer's
    //  pass over the round's PUTs is one that finds some.
    _Static_assert(ZQI_R_CODE_COUNT <= 32, "a code is a bit of a word");
    uint32_t answers[ZQI_RS_BATCH_PEERS] = {0};
    for (uint32_t i = 0; i < puts->pending_count; i++)
        answers[puts->pending[i].peer] |= UINT32_C (1) << puts->pending[i].code;
    static const uint8_t codes[] = {0,
                                    ZQI_R_CODE_FULL,
                                    ZQI_R_CODE_INVALID,
                                    ZQI_R_CODE_FAILED,
                                    ZQI_R_CODE_CONFLICT,
                                    ZQI_R_CODE_LIMIT,
                                    ZQI_R_CODE_BUSY,
                                    ZQI_R_CODE_DENIED,
                                    ZQI_R_CODE_NO_SPACE};
    for (uint32_t peer = 0; peer < puts->peer_count; peer++)
        for (size_t n = 0; n < sizeof codes; n++)
            if (answers[peer] & (UINT32_C (1) << codes[n]))
                s_answer (self, puts, peer, codes[n]);
    puts->pending_count = 0;
    puts->peer_count = 0;
    puts->touched_count = 0;
}

//  The spools of the queues puts appended to, and the seqs appended, in
//  puts (what the commit needs, without the queues).
static void
s_note_spools (zqi_r_server_t *self, zqi_rs_puts_t *puts)
{
    for (uint32_t i = 0; i < puts->touched_count; i++) {
        zqi_rs_queue_t *queue = self->queues[puts->touched[i]];
        puts->spools[i] = queue->spool;
        puts->first_seqs[i] = queue->first_seq;
        puts->last_seqs[i] = queue->last_seq;
    }
}

void
zqi_rs_commit_and_answer (zqi_r_server_t *self)
{
    zqi_rs_puts_t *puts = &self->puts;
    s_note_spools (self, puts);
    s_commit_spools (puts);
    for (uint32_t i = 0; i < puts->touched_count; i++)
        self->queues[puts->touched[i]]->appended = false;
    s_settle_and_answer (self, puts);
}

//  ---- The committer thread ---------------------------------------------------

static void *
s_committer (void *arg)
{
    zqi_r_server_t *self = (zqi_r_server_t *)arg;
    zqi_rs_committer_t *committer = &self->committer;
    pthread_mutex_lock (&committer->lock);
    while (!committer->stopping) {
        if (!committer->working) {
            pthread_cond_wait (&committer->wake, &committer->lock);
            continue;
        }
        pthread_mutex_unlock (&committer->lock);
        //  behind is this thread's until working is cleared; the spools
        //  stay open until it is settled (zqi_rs_settle_behind).
        s_commit_spools (&self->behind);
        pthread_mutex_lock (&committer->lock);
        __atomic_store_n (&committer->working, false, __ATOMIC_RELEASE);
        pthread_cond_broadcast (&committer->wake);
        //  Wakes a server waiting in zqi_rs_await_behind_or_input, or its
        //  host (zq_queue_store_fd). Cannot fail short of an overflow,
        //  which a settle's read prevents.
        uint64_t one = 1;
        if (write (committer->done_fd, &one, sizeof one) != sizeof one) {
        }
    }
    pthread_mutex_unlock (&committer->lock);
    return NULL;
}

void
zqi_rs_committer_init (zqi_r_server_t *self)
{
    zqi_rs_committer_t *committer = &self->committer;
    if (!self->spool_dir || self->store)
        return;
    //  Made before any commit, so that a host may poll it from the start
    //  (zqi_rs_committer_fd). Without it, rounds commit in place.
    committer->done_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (committer->done_fd == -1) {
        zqi_log (ZQ_LOG_WARNING,
                 "reliable: no committer thread (eventfd: %s): each round commits before the next",
                 strerror (errno));
        committer->failed = true;
    }
}

int
zqi_rs_committer_fd (const zqi_r_server_t *self)
{
    return self->committer.done_fd;
}

static bool
s_committer_start (zqi_r_server_t *self)
{
    zqi_rs_committer_t *committer = &self->committer;
    if (committer->started)
        return true;
    if (!self->behind.pending && zqi_rs_puts_init (&self->behind))
        return false;
    //  Any failure here is for good: rounds commit in place from then on
    //  (the eventfd stays, never signalled, for a host that polls it).
    int rc = pthread_mutex_init (&committer->lock, NULL);
    if (rc == 0) {
        if ((rc = pthread_cond_init (&committer->wake, NULL)) == 0) {
            committer->stopping = committer->working = committer->pending = false;
            rc = pthread_create (&committer->thread, NULL, s_committer, self);
            if (rc == 0) {
                committer->started = true;
                return true;
            }
            pthread_cond_destroy (&committer->wake);
        }
        pthread_mutex_destroy (&committer->lock);
    }
    zqi_log (ZQ_LOG_WARNING,
             "reliable: no committer thread (%s): each round commits before the next",
             strerror (rc));
    committer->failed = true;
    return false;
}

bool
zqi_rs_commit_behind (zqi_r_server_t *self)
{
    zqi_rs_committer_t *committer = &self->committer;
    if (!self->spool_dir || self->store || committer->pending || committer->failed ||
        committer->done_fd == -1 || !s_committer_start (self))
        return false;
    //  The round becomes the one behind, behind's (empty) arrays the new round's.
    zqi_rs_puts_t round = self->puts;
    self->puts = self->behind;
    self->behind = round;
    for (uint32_t i = 0; i < round.touched_count; i++) {
        zqi_rs_queue_t *queue = self->queues[round.touched[i]];
        queue->appended = false;
        queue->behind = true;
    }
    s_note_spools (self, &self->behind);
    committer->pending = true;
    pthread_mutex_lock (&committer->lock);
    __atomic_store_n (&committer->working, true, __ATOMIC_RELAXED);
    pthread_cond_signal (&committer->wake);
    pthread_mutex_unlock (&committer->lock);
    return true;
}

bool
zqi_rs_behind_done (zqi_r_server_t *self)
{
    zqi_rs_committer_t *committer = &self->committer;
    return !committer->pending || !__atomic_load_n (&committer->working, __ATOMIC_ACQUIRE);
}

int
zqi_rs_await_behind_or_input (zqi_r_server_t *self)
{
    zqi_rs_committer_t *committer = &self->committer;
    if (!committer->pending)
        return 0;
    int64_t now = zqi_r_now (&self->common);
    int64_t due = zqi_rs_next_due (self);
    long timeout = due <= now ? 0 : due - now > LONG_MAX ? LONG_MAX : (long)(due - now);
    bool bounded = timeout > ZQI_RS_AWAIT_MS;
    if (bounded)
        timeout = ZQI_RS_AWAIT_MS;
    zmq_pollitem_t items[2] = {{self->common.handle, 0, ZMQ_POLLIN, 0},
                               {NULL, committer->done_fd, ZMQ_POLLIN, 0}};
    int ready = zmq_poll (items, 2, timeout);
    if (ready == -1)
        return errno == EINTR ? 0 : -1;
    return ready == 0 && bounded ? 1 : 0;
}

void
zqi_rs_settle_behind (zqi_r_server_t *self)
{
    zqi_rs_committer_t *committer = &self->committer;
    if (!committer->pending)
        return;
    pthread_mutex_lock (&committer->lock);
    while (committer->working)
        pthread_cond_wait (&committer->wake, &committer->lock);
    pthread_mutex_unlock (&committer->lock);
    //  The commit's signal, taken (nothing to take is EAGAIN: fine).
    uint64_t signals;
    if (read (committer->done_fd, &signals, sizeof signals) != sizeof signals) {
    }
    committer->pending = false;
    for (uint32_t i = 0; i < self->behind.touched_count; i++)
        self->queues[self->behind.touched[i]]->behind = false;
    s_settle_and_answer (self, &self->behind);
}

void
zqi_rs_settle_all (zqi_r_server_t *self)
{
    zqi_rs_settle_behind (self);
    if (self->puts.pending_count || self->puts.peer_count)
        zqi_rs_commit_and_answer (self);
}

void
zqi_rs_committer_stop (zqi_r_server_t *self)
{
    zqi_rs_committer_t *committer = &self->committer;
    if (committer->started) {
        zqi_rs_settle_behind (self);
        pthread_mutex_lock (&committer->lock);
        committer->stopping = true;
        pthread_cond_signal (&committer->wake);
        pthread_mutex_unlock (&committer->lock);
        pthread_join (committer->thread, NULL);
        pthread_cond_destroy (&committer->wake);
        pthread_mutex_destroy (&committer->lock);
        committer->started = false;
    }
    if (committer->done_fd != -1)
        close (committer->done_fd);
    committer->done_fd = -1;
    zqi_rs_puts_free (&self->behind);
}
