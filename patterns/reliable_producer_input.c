/*  =========================================================================
    reliable_producer_input - what the reliable producer reads and its
    timers: CONFIRMs and REFUSEs, PONGs, the reports for
    zq_queue_confirmed, confirm deadlines and pings.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable_producer.h"

//  A refused message is sent again after this long.
#define S_REFUSED_RETRY_MS 1000
//  Commands read per call before looking at timers.
#define S_BURST 4096
//  Ids of CONFIRMs and REFUSEs looked up per call: the call ends after the
//  command that reaches it. Each id costs a lookup, and a frame holds up
//  to 65536 of them (max_message_bytes 1 MiB): without this bound, 4096
//  such frames, which a broken or hostile server can send, would hold a
//  call for seconds, past any timeout its caller gave. 16384 lookups take
//  about a millisecond; a zq server's answers (one CONFIRM per producer
//  and batch of at most 4096 PUTs) stay far below it.
#define S_ROUND_IDS 16384

static void
s_report (zqi_r_producer_t *self, const uint8_t *id, int errnum)
{
    if (self->sync_active && memcmp (id, self->sync_id, ZQ_MSG_ID_SIZE) == 0) {
        self->sync_result = errnum;
        return;
    }
    if (self->report_count == self->window) {
        self->report_head = (self->report_head + 1) % self->window;
        self->report_count--;
        self->common.ctx->stats->dropped++;
    }
    zqi_rp_report_t *report =
        &self->reports[(self->report_head + self->report_count) % self->window];
    memcpy (report->id, id, ZQ_MSG_ID_SIZE);
    report->errnum = errnum;
    self->report_count++;
}

static void
s_answer (zqi_r_producer_t *self, const zqi_r_command_t *command, uint32_t peer)
{
    int errnum = command->kind == ZQI_R_CONFIRM ? 0 : zqi_r_code_errno (command->code);
    for (size_t i = 0; i < command->id_count && self->table.count; i++) {
        const uint8_t *id = command->ids + i * ZQ_MSG_ID_SIZE;
        uint32_t index = zqi_rp_answered (self, id);
        if (index == ZQI_R_NONE)
            continue; //  answered already (a resend's second answer)
        zqi_r_entry_t *entry = &self->table.entries[index];
        if (entry->state != ZQI_RP_SENT)
            continue; //  given back already: the resend will be answered
        if (errnum != 0 && entry->owner != peer)
            continue; //  a server it was moved from: the other one answers
        self->answer_tick = self->tick;
        if (errnum == 0 || errnum == EINVAL || errnum == EEXIST || errnum == ZQ_ELIMIT ||
            errnum == EACCES) {
            //  Stored, or never storable (under this id, a new queue past
            //  the server's max_queues, or a queue this producer may not
            //  put to): out of the outbox.
            self->sent--;
            zqi_rp_drop (self, index);
        } else {
            //  Refused for now: wait, then send again.
            self->sent--;
            entry->state = ZQI_RP_WAITING;
            zqi_r_table_schedule (&self->table, index,
                                  zqi_r_now (&self->common) + S_REFUSED_RETRY_MS);
            self->common.ctx->stats->refused++;
        }
        s_report (self, id, errnum);
    }
}

//  A PONG from server peer of several: it answers again; if it restarted,
//  what it had not confirmed goes again.
static void
s_pong (zqi_r_producer_t *self, uint32_t peer, const uint8_t *instance)
{
    zqi_r_peer_t *server = &self->peers.peers[peer];
    bool restarted =
        server->have_instance && memcmp (server->instance, instance, ZQI_R_INSTANCE_SIZE) != 0;
    memcpy (server->instance, instance, ZQI_R_INSTANCE_SIZE);
    server->have_instance = true;
    server->unanswered = 0;
    server->lost = false;
    if (restarted)
        zqi_rp_peer_gone (self, peer);
}

//  Reads what the server sent. Returns 0, or -1 with errno for a socket
//  failure.
int
zqi_rp_input (zqi_r_producer_t *self)
{
    void *handle = self->common.handle;
    bool confirmed = false;
    self->input_drained = false;
    size_t ids = 0;
    for (int n = 0; n < S_BURST && ids < S_ROUND_IDS; n++) {
        uint32_t peer;
        if (zqi_r_peers_recv_from (&self->peers, handle, &peer)) {
            if (errno == EAGAIN) {
                self->input_drained = true;
                break;
            }
            if (errno != ZQ_EPROTO)
                return -1;
            self->common.ctx->stats->errors++;
            continue;
        }
        zmq_msg_t frame;
        if (zqi_r_recv_frame (handle, &frame)) {
            if (errno != EAGAIN)
                return -1;
            self->input_drained = true;
            break;
        }
        zqi_r_command_t command;
        bool more = zmq_msg_more (&frame);
        int rc = zqi_r_command_parse ((const uint8_t *)zmq_msg_data (&frame), zmq_msg_size (&frame),
                                      &command);
        if (more)
            zqi_drain (handle);
        if (rc || more)
            self->common.ctx->stats->errors++;
        else if (command.kind == ZQI_R_CONFIRM || command.kind == ZQI_R_REFUSE) {
            ids += command.id_count;
            s_answer (self, &command, peer);
            confirmed = true;
        } else if (command.kind == ZQI_R_PONG && self->peers.multi)
            s_pong (self, peer, command.instance);
        else if (command.kind == ZQI_R_PONG) {
            bool restarted = self->have_instance &&
                             memcmp (self->instance, command.instance, ZQI_R_INSTANCE_SIZE) != 0;
            memcpy (self->instance, command.instance, ZQI_R_INSTANCE_SIZE);
            self->have_instance = true;
            self->last_pong = zqi_r_now (&self->common);
            if (restarted || self->server_lost)
                zqi_rp_resend_all (self);
            self->server_lost = false;
        } else if (command.kind == ZQI_R_ERROR && self->batch_sent && self->batch_max_bytes &&
                   (command.code == ZQI_R_CODE_PROTOCOL || command.code == ZQI_R_CODE_VERSION ||
                    command.code == ZQI_R_CODE_UNKNOWN)) {
            //  A server that predates PUT batches (or takes none this
            //  size): every PUT goes alone from now on, and what awaits an
            //  answer goes again (its dedupe window keeps copies out).
            zqi_log (ZQ_LOG_WARNING,
                     "reliable producer: the server answered a PUT batch with error %u (%.*s): "
                     "PUTs go one by one",
                     (unsigned)command.code, (int)command.text_size, command.text);
            self->batch_max_bytes = 0;
            zqi_rp_resend_all (self);
        } else if (command.kind != ZQI_R_PING)
            self->common.ctx->stats->errors++;
        zmq_msg_close (&frame);
    }
    (void)confirmed;
    return 0;
}

//  Pings each of several servers; one that leaves 3 pings unanswered, or
//  is found gone, gives back what it has not confirmed.
static void
s_ping_peers (zqi_r_producer_t *self, const void *ping, size_t size)
{
    for (uint32_t peer = 0; peer < self->peers.count; peer++) {
        zqi_r_peer_t *server = &self->peers.peers[peer];
        if (!server->lost && server->unanswered >= 3) {
            server->lost = true;
            zqi_rp_peer_gone (self, peer);
        }
        bool was_connected = server->connected;
        if (zqi_r_peers_send (&self->peers, self->common.handle, peer, ping, size) == 0)
            server->unanswered++;
        else if (errno == EHOSTUNREACH && was_connected)
            zqi_rp_peer_gone (self, peer);
    }
}

//  Runs due timers: deadlines of PUTs, ends of refusal backoffs, pings.
void
zqi_rp_timers (zqi_r_producer_t *self, int64_t now)
{
    uint32_t index;
    while ((index = zqi_r_table_first (&self->table)) != ZQI_R_NONE &&
           self->table.entries[index].due <= now) {
        zqi_r_entry_t *entry = &self->table.entries[index];
        if (self->peers.multi && entry->state == ZQI_RP_SENT) {
            //  Its server did not confirm in time: lost until it answers
            //  a ping, and all it holds unconfirmed goes elsewhere.
            self->peers.peers[entry->owner].lost = true;
            zqi_rp_peer_gone (self, entry->owner);
        } else
            zqi_rp_resend (self, index);
    }
    uint8_t ping_frame[ZQI_R_BARE_SIZE];
    size_t ping_frame_size = zqi_r_bare_command (ping_frame, ZQI_R_PING);
    if (self->peers.multi && (self->table.count || zqi_rp_outbox_depth (self)) &&
        now - self->last_ping >= self->common.ping_ivl_ms) {
        s_ping_peers (self, ping_frame, ping_frame_size);
        self->last_ping = now;
    } else if ((self->table.count || zqi_rp_outbox_depth (self)) &&
               now - self->last_ping >= self->common.ping_ivl_ms) {
        if (self->last_ping > self->last_pong &&
            now - self->last_pong > 3 * (int64_t)self->common.ping_ivl_ms)
            self->server_lost = true;
        //  (No server connected: the ping waits for the next interval.)
        zmq_send (self->common.handle, ping_frame, ping_frame_size, ZMQ_DONTWAIT);
        self->last_ping = now;
    }
}
