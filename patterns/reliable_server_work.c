/*  =========================================================================
    reliable_server_work - the reliable server's work, one call at a time:
    passes of reading the socket (reliable_server_input.c), committing the
    PUTs read (reliable_server_commit.c), due timers and deliveries, and
    the waits between them while the disk syncs.

    patterns/reliable_server.h holds what the server's files share.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable_server.h"

//  Runs due timers: visibility deadlines and the ends of holds.
static void
s_run_timers (zqi_r_server_t *self, int64_t now)
{
    uint32_t index;
    while ((index = zqi_r_table_first (&self->table)) != ZQI_R_NONE &&
           self->table.entries[index].due <= now) {
        zqi_r_entry_t *entry = &self->table.entries[index];
        if (entry->state == ZQI_RS_DELIVERED) {
            self->queues[entry->queue]->counters.timeouts++;
            zqi_rs_event (self, ZQI_RS_EVENT_REDELIVERY,
                          "queue %s: a delivery (attempt %u) passed its visibility timeout: it "
                          "goes back for redelivery",
                          self->queues[entry->queue]->name, entry->attempt);
            zqi_rs_owner_expire (self, index);
            zqi_rs_fail_delivery (self, index, 0);
        } else
            zqi_rs_return (self, index);
    }
    if (self->auto_idle_ms && now >= self->next_sweep) {
        self->next_sweep = now + ZQI_RS_SWEEP_MS;
        zqi_rs_sweep (self, now);
    }
    if (now >= self->next_probe) {
        //  A probe to each remote consumer: a gone one fails with
        //  EHOSTUNREACH (ROUTER_MANDATORY), and its deliveries go back.
        self->next_probe = now + self->common.ping_ivl_ms;
        if (zqi_r_put_command (&self->buf, 2, ZQI_R_PING) == 0)
            for (uint32_t slot = 1; slot < self->consumer_capacity; slot++) {
                zqi_rs_consumer_t *consumer = &self->consumers[slot];
                if (consumer->in_use &&
                    zqi_rs_send_command (self, consumer->route, consumer->route_size, false) &&
                    errno == EHOSTUNREACH)
                    zqi_rs_consumer_drop (self, slot);
            }
    }
}

//  True when the round holds all the PUTs, or answers all the producers,
//  one commit takes.
static bool
s_round_full (const zqi_r_server_t *self)
{
    return self->puts.pending_count >= ZQI_RS_ROUND || self->puts.peer_count >= ZQI_RS_BATCH_PEERS;
}

//  True when the round holds PUTs (or answers) not yet committed.
static bool
s_gathered (const zqi_r_server_t *self)
{
    return self->puts.pending_count || self->puts.peer_count;
}

//  True when a commit in the server's thread would keep the remote
//  consumers connected waiting for an fdatasync (counted from their first
//  CONSUME to their LEAVE or loss).
static bool
s_sync_keeps_consumers (zqi_r_server_t *self)
{
    return self->commit_syncs && zhashx_size (self->consumer_by_route) > 0;
}

//  Reads up to ZQI_RS_BATCH commands, until the socket is empty
//  (self->drained) or the round is full, adding them to *commands.
//  Returns -1 with errno only for a socket failure.
static int
s_read (zqi_r_server_t *self, uint32_t *commands)
{
    self->now = zqi_r_now (&self->common);
    self->drained = false;
    for (int n = 0; n < ZQI_RS_BATCH && !s_round_full (self); n++) {
        if (zqi_rs_read_one (self)) {
            self->drained = errno == EAGAIN;
            return self->drained ? 0 : -1;
        }
        (*commands)++;
    }
    return 0;
}

bool
zqi_rs_in_flight (const zqi_r_server_t *self)
{
    return self->committer.pending || s_gathered (self);
}

//  Commits the round gathered, unless the round before it is still behind
//  (then the round goes on gathering): behind, in the committer thread, or
//  in this thread when it is small, read with the socket left empty and no
//  remote consumer waits on its sync (ZQI_RS_ALONE), or without a
//  committer.
static void
s_commit_gathered (zqi_r_server_t *self)
{
    if (!s_gathered (self) || self->committer.pending)
        return;
    bool alone =
        self->drained && self->puts.pending_count <= ZQI_RS_ALONE && !s_sync_keeps_consumers (self);
    if (alone || !zqi_rs_commit_behind (self))
        zqi_rs_commit_and_answer (self);
}

//  One call's work, in passes: each reads the socket, then runs due timers
//  and deliveries. The PUTs read gather in a round. While the committer
//  thread commits the round before (reliable_server_commit.c), reads go on
//  filling the next one, so the disk's write and fdatasync overlap the
//  reading, parsing and appending of the PUTs that arrive meanwhile, and a
//  round grows with the time the disk takes (up to ZQI_RS_ROUND). When the
//  socket is empty and that commit still runs, the thread waits for
//  whichever comes first: input, the commit's end or a timer, for
//  ZQI_RS_AWAIT_MS at most (then the call ends). So acks, credit and
//  deliveries go on while the disk syncs. A round is settled (its PUTs
//  answered) as soon as its commit has ended, and the round read meanwhile
//  is committed behind it. The call ends with the socket read empty,
//  nothing behind and nothing gathered, at the bounds of ZQI_RS_WORK_*, or
//  after waiting ZQI_RS_AWAIT_MS for a slow disk. The pipeline is not
//  drained then: a commit may stay behind and a round gathered (the round
//  handed to the committer if it is free), so that the host's loop is
//  never held long by the disk. The commit's end signals the committer's
//  eventfd, which the host polls (zqi_r_server_store_fd), and the next
//  call settles it. After a socket failure everything is settled before
//  the call returns, as no call may follow. Returns -1 with errno only for
//  a socket failure (ETERM, ...).
int
zqi_rs_work (zqi_r_server_t *self)
{
    int rc = 0, saved = 0;
    uint32_t commands = 0, commits = 0;
    for (int pass = 1;; pass++) {
        if (rc == 0) {
            rc = s_read (self, &commands);
            saved = errno;
        }
        bool last = rc != 0 || pass >= ZQI_RS_WORK_PASSES || commits >= ZQI_RS_WORK_COMMITS ||
                    commands >= ZQI_RS_WORK_COMMANDS;
        if (self->committer.pending && (s_round_full (self) || zqi_rs_behind_done (self))) {
            zqi_rs_settle_behind (self);
            commits++;
        }
        s_commit_gathered (self);
        self->now = zqi_r_now (&self->common);
        s_run_timers (self, self->now);
        if (self->store)
            zqi_rs_store_work (self);
        zqi_rs_deliver_all (self);
        if (last) {
            //  (Timers and deliveries may have settled the commit behind,
            //  a queue closing: the round gathered meanwhile is handed on.)
            if (rc)
                zqi_rs_settle_all (self);
            else
                s_commit_gathered (self);
            break;
        }
        //  (Likewise: the round gathered takes another pass.)
        if (!self->committer.pending && !s_gathered (self) && self->drained)
            break;
        //  Nothing to read now and the disk still busy: wait for input,
        //  the commit's end or a timer (a failed wait ends the call at the
        //  next pass); a disk slower than ZQI_RS_AWAIT_MS ends the call.
        if (self->drained) {
            int waited = zqi_rs_await_behind_or_input (self);
            if (waited > 0)
                break;
            if (waited < 0) {
                rc = -1;
                saved = errno;
            }
        }
    }
    errno = saved;
    return rc;
}
