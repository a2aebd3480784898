/*  =========================================================================
    reliable_server_acks - acking delivered records in their spools: one
    entry (zqi_rs_entry_ack), a record no entry tracks (zqi_rs_record_ack),
    and the entries of a consumer's ACK, gathered per queue so that their
    spool acks them holding its locks once (zqi_rs_acks_t).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable_server.h"

//  Counts an ack the spool did not take (errnum: ENOMEM, or the spool's
//  failure) and logs it, one line per ZQI_RS_LOG_IVL_MS at most.
static void
s_ack_failed (zqi_r_server_t *self, const zqi_rs_queue_t *queue, int errnum)
{
    self->common.ctx->stats->errors++;
    uint64_t skipped;
    if (zqi_log_limit_due (&self->ack_failure_log, zqi_r_now (&self->common), ZQI_RS_LOG_IVL_MS,
                           &skipped))
        zqi_log (ZQ_LOG_ERROR,
                 "reliable: queue %s did not record an ack (%s): the message stays; %" PRIu64
                 " more since the last line",
                 queue->name, zq_strerror (errnum), skipped);
}

//  Acks the entry's record and forgets it. Returns 0, or -1 with errno of
//  zq_spool_ack (counted and logged): the entry and its record stay as
//  they were.
int
zqi_rs_entry_ack (zqi_r_server_t *self, uint32_t index)
{
    zqi_r_entry_t *entry = &self->table.entries[index];
    //  A RETURNED entry's queue may be closed: it is opened again, and if
    //  it cannot be, the ack fails as one the spool refused.
    zqi_rs_queue_t *queue = self->queues[entry->queue];
    zq_spool_t *spool = zqi_rs_spool (self, queue);
    if (!spool || zq_spool_ack (spool, entry->seq)) {
        int errnum = errno;
        s_ack_failed (self, queue, errnum);
        errno = errnum;
        return -1;
    }
    zqi_rs_entry_leave (self, index);
    zqi_r_table_remove (&self->table, index);
    return 0;
}

void
zqi_rs_acks_flush (zqi_r_server_t *self, zqi_rs_acks_t *acks, size_t *failed_p, int *errnum_p)
{
    uint32_t count = acks->count;
    acks->count = 0;
    if (count == 0)
        return;
    uint64_t seqs[ZQI_RS_ACK_BATCH];
    for (uint32_t i = 0; i < count; i++) {
        zqi_r_entry_t *entry = &self->table.entries[acks->indexes[i]];
        entry->state &= (uint8_t)~ZQI_RS_ACKING;
        seqs[i] = entry->seq;
    }
    //  A RETURNED entry's queue may be closed: it is opened again, and if
    //  it cannot be, its acks fail as ones the spool refused.
    zqi_rs_queue_t *queue = self->queues[acks->queue];
    zq_spool_t *spool = zqi_rs_spool (self, queue);
    int open_errnum = errno;
    uint32_t done = 0;
    while (done < count) {
        size_t acked = 0;
        int rc = spool ? zq_spool_ack_many (spool, seqs + done, count - done, &acked) : -1;
        int errnum = spool ? errno : open_errnum;
        for (size_t i = 0; i < acked; i++) {
            uint32_t index = acks->indexes[done + i];
            zqi_rs_entry_leave (self, index);
            zqi_r_table_remove (&self->table, index);
            queue->counters.acked++;
        }
        done += (uint32_t)acked;
        if (rc) {
            s_ack_failed (self, queue, errnum);
            (*failed_p)++;
            *errnum_p = errnum;
            done++; //  that entry stays as it was
        }
    }
}

void
zqi_rs_acks_add (zqi_r_server_t *self, zqi_rs_acks_t *acks, uint32_t index, size_t *failed_p,
                 int *errnum_p)
{
    uint32_t queue = self->table.entries[index].queue;
    if (acks->count && (acks->queue != queue || acks->count == ZQI_RS_ACK_BATCH))
        zqi_rs_acks_flush (self, acks, failed_p, errnum_p);
    //  (The flush may open a queue: the entry is looked up again.)
    acks->queue = queue;
    acks->indexes[acks->count++] = index;
    self->table.entries[index].state |= ZQI_RS_ACKING;
}

//  Acks a record no entry tracks. Returns 0, or -1 (counted and logged):
//  the record is given back to the spool, which hands it out again first.
int
zqi_rs_record_ack (zqi_r_server_t *self, zqi_rs_queue_t *queue, uint64_t seq)
{
    if (zq_spool_ack (queue->spool, seq) == 0)
        return 0;
    int errnum = errno;
    s_ack_failed (self, queue, errnum);
    zq_spool_return (queue->spool, seq);
    errno = errnum;
    return -1;
}
