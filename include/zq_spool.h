/*  =========================================================================
    zq_spool - a durable FIFO of records (zq messages in their one-frame
    wire form): segmented append-only files with a checksum per record,
    group commit under an fsync policy, acks, recovery that cuts a torn
    tail and reports damage, and reclaim of fully acked segments. The same
    API works in memory. The on-disk format and the promises of each
    fsync policy are specified in doc/SPOOL.md.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_SPOOL_H_INCLUDED
#define ZQ_SPOOL_H_INCLUDED

#include "zq_library.h"
#include "zq_msg.h"

#ifdef __cplusplus
extern "C" {
#endif

//  The on-disk format version this library writes and reads (doc/SPOOL.md).
#define ZQ_SPOOL_FORMAT_VERSION 1

typedef struct _zq_spool_t zq_spool_t;

//  When appended records are made durable (doc/SPOOL.md, "fsync policies").
typedef enum {
    //  zq_spool_commit and zq_spool_wait return only after an fdatasync that
    //  covers the records; concurrent callers share one fdatasync.
    ZQ_SPOOL_FSYNC_ALWAYS = 0,
    //  Records are written at commit and fdatasync'ed by a thread the spool
    //  owns every fsync_interval_ms; zq_spool_wait waits for that fsync.
    ZQ_SPOOL_FSYNC_INTERVAL = 1,
    //  Records are written at commit and never fdatasync'ed (except when a
    //  segment is sealed and at destroy): they survive the process, not the
    //  machine.
    ZQ_SPOOL_FSYNC_NONE = 2
} zq_spool_fsync_t;

//  Settings for zq_spool_new. Fill with zq_spool_config_init, then change
//  what you need.
typedef struct {
    zq_spool_fsync_t fsync;     //  default ZQ_SPOOL_FSYNC_ALWAYS
    uint32_t fsync_interval_ms; //  for ZQ_SPOOL_FSYNC_INTERVAL; default 100
    //  Most bytes the spool's segments may take; appends past it fail with
    //  ZQ_EFULL. 0 means no quota on disk; in memory 0 means 256 MiB.
    //  The newest segment is freed only once sealed, so a quota must be at
    //  least 2 * segment_bytes + batch_bytes (else EINVAL). The zeros
    //  written ahead of the newest segment's records (at most 1 MiB past
    //  them, doc/SPOOL.md) are not counted.
    uint64_t quota_bytes;
    //  A segment is sealed and a new one started past this size (a single
    //  write batch may exceed it). Default 64 MiB, at least 4096.
    uint64_t segment_bytes;
    //  Records waiting to be written are buffered up to this many bytes;
    //  one write(2) per batch. Default 1 MiB.
    uint32_t batch_bytes;
    //  Largest record payload accepted (and believed when reading).
    //  Default ZQ_MSG_MAX_SIZE_DEFAULT + 64 KiB. The spool's own ack and
    //  checkpoint records are split to stay within it plus 64 bytes, so
    //  no number of acked ranges makes a record the reader refuses.
    uint32_t max_record_bytes;
    //  On damage in the middle of the log, open fails with ZQ_ECORRUPT
    //  (false, the default) or moves the damaged segment aside (renamed
    //  to NAME.corrupt, or NAME.corrupt.N when that is taken: an earlier
    //  copy is never replaced), logs the lost sequence range and goes on
    //  (true). New segments take ids past every one set aside.
    //  A read that fails is not damage: the open fails either way.
    bool quarantine;
} zq_spool_config_t;

//  One record handed out by zq_spool_next. data points into the spool and
//  stays valid until the next call of a reading function (next, ack,
//  return, destroy) on this spool.
typedef struct {
    uint64_t seq;     //  sequence number, from 1, increasing by append order
    const void *data; //  the payload as appended
    size_t size;      //  its size in bytes
} zq_spool_record_t;

//  Counters and levels; all counters count since the spool was opened.
typedef struct {
    uint64_t appends;            //  records appended
    uint64_t append_bytes;       //  payload bytes appended
    uint64_t refused;            //  appends refused or records lost to a failed write
    uint64_t writes;             //  write batches written
    uint64_t fsyncs;             //  fdatasync calls on segment files
    uint64_t last_seq;           //  highest sequence number assigned
    uint64_t durable_seq;        //  every record up to here is durable (or refused)
    uint64_t depth;              //  records not acked (ready + in flight)
    uint64_t in_flight;          //  records handed out by next, not acked or returned
    uint64_t acked;              //  acks
    uint64_t returned;           //  records returned to ready
    uint64_t delivered;          //  records handed out by next
    uint64_t corrupt_records;    //  damaged records detected (at open and when reading)
    uint64_t tail_cut_bytes;     //  bytes of torn tail cut at open
    uint64_t segments;           //  segment files (or memory segments) in use
    uint64_t segments_reclaimed; //  segments deleted because fully acked
    uint64_t disk_bytes;         //  bytes taken by the segments
} zq_spool_stats_t;

//  Fills config with the defaults above.
ZQ_EXPORT void zq_spool_config_init (zq_spool_config_t *config);

//  Parses "always", "interval" or "none" into *policy_p. Returns 0, or -1
//  with EINVAL.
ZQ_EXPORT int zq_spool_fsync_parse (const char *name, zq_spool_fsync_t *policy_p);

//  Returns "always", "interval" or "none" (or "?").
ZQ_EXPORT const char *zq_spool_fsync_name (zq_spool_fsync_t policy);

//  Opens the spool in directory dir (created if missing), recovering what
//  it holds; dir NULL makes a spool in memory. config NULL means defaults.
//  Only one spool may have a directory open at a time (a lock file).
//  Returns the spool, or NULL with errno: ZQ_ECORRUPT (damage in the middle
//  of the log, see config.quarantine; the log says where), EBUSY (open
//  elsewhere), EINVAL (bad config), ENOMEM, EMFILE or ENFILE (no file
//  descriptor: nothing is called damaged), EIO (a segment could not be
//  read, whatever the read's own errno; no segment is moved aside or cut
//  for it, and opening again once the disk reads recovers as before), or
//  the system's errno (ENOSPC, EROFS, EACCES...). An open
//  spool in a directory holds at most 4 descriptors (directory, lock,
//  the segment written, the segment its reader is in), briefly one more.
//  With ZQ_SPOOL_FSYNC_INTERVAL the spool starts one thread, which
//  zq_spool_destroy joins.
ZQ_EXPORT zq_spool_t *zq_spool_new (const char *dir, const zq_spool_config_t *config);

//  Writes and fdatasyncs what is pending (unless the spool has failed),
//  closes the spool and sets *self_p to NULL; safe on NULL and twice.
ZQ_EXPORT void zq_spool_destroy (zq_spool_t **self_p);

//  ---- Appending -----------------------------------------------------------

//  Appends a record of size bytes (copied) and stores its sequence number
//  in *seq_p (if not NULL). Does not wait: the record is buffered and
//  becomes durable with a later commit (or wait). Returns 0, or -1 with
//  errno ZQ_EFULL (quota reached: nothing stored), ZQ_ETOOBIG (size over
//  max_record_bytes), ENOMEM, or EIO / the errno of an earlier failed
//  fsync (the spool has failed: destroy and reopen it).
ZQ_EXPORT int zq_spool_append (zq_spool_t *self, const void *data, size_t size, uint64_t *seq_p);

//  Appends count records at once (one lock for the batch) with
//  consecutive sequence numbers, the first stored in *first_seq_p. All or
//  none: on -1 (errno as zq_spool_append) nothing was appended.
ZQ_EXPORT int zq_spool_appendv (zq_spool_t *self, const void *const *data, const size_t *sizes,
                                size_t count, uint64_t *first_seq_p);

//  Appends msg in its one-frame wire form (zq_msg_encode); msg is not
//  changed and stays the caller's. Errors as zq_spool_append.
ZQ_EXPORT int zq_spool_append_msg (zq_spool_t *self, const zq_msg_t *msg, uint64_t *seq_p);

//  Makes every record appended so far (by any thread) durable under the
//  fsync policy: ALWAYS writes and fdatasyncs them (one write and one
//  fdatasync for the whole batch, shared with concurrent callers) before
//  returning; INTERVAL and NONE write them and return (see zq_spool_wait).
//  Acks made so far are logged the same way. Returns 0, or -1 with errno
//  ZQ_EFULL (the disk or quota was full: records not written were
//  refused), EIO or another write/fsync errno (the spool has failed;
//  EOVERFLOW: a new segment was needed and the directory's names used the
//  last id, 2^64 - 1: ids never wrap, so no segment is written over).
//  After -1, zq_spool_wait tells which records were stored. A 0 covers the
//  writes this call made or waited for: records refused before it began
//  (by a full batch's write during an append, or another thread's
//  commit) are not reported again; zq_spool_refusal finds them.
ZQ_EXPORT int zq_spool_commit (zq_spool_t *self);

//  Waits until record seq is durable: under ALWAYS it joins or leads a
//  group commit; under INTERVAL it waits for the spool's next fdatasync;
//  under NONE it waits until the record is written. Returns 0, or -1 with
//  errno: the refusal that lost this record (ZQ_EFULL, EIO, ...), EINVAL
//  (seq never assigned).
ZQ_EXPORT int zq_spool_wait (zq_spool_t *self, uint64_t seq);

//  Returns 0 if none of the records first to last (seqs appended, and
//  settled since by zq_spool_commit or zq_spool_wait) was refused, else
//  the errno that refused one of them (zq_spool_wait tells which);
//  EINVAL for an empty range. Unlike zq_spool_commit's result, this covers
//  records refused before the commit began: by a full batch's write
//  during an append, or by a commit another thread led. The spool
//  remembers the last 1024 refused ranges.
ZQ_EXPORT int zq_spool_refusal (zq_spool_t *self, uint64_t first, uint64_t last);

//  Appends one record and waits until it is durable (append + wait).
//  Concurrent callers share fsyncs. Errors as zq_spool_append and
//  zq_spool_wait; on -1 after the append, *seq_p holds the refused seq.
ZQ_EXPORT int zq_spool_append_durable (zq_spool_t *self, const void *data, size_t size,
                                       uint64_t *seq_p);

//  Returns the highest seq such that every record up to it is durable
//  under the policy, or was refused (0 if none).
ZQ_EXPORT uint64_t zq_spool_durable_seq (zq_spool_t *self);

//  Returns the highest sequence number assigned so far (0 if none).
ZQ_EXPORT uint64_t zq_spool_last_seq (zq_spool_t *self);

//  ---- Reading for delivery ------------------------------------------------
//  Records are handed out in FIFO order: first records returned to ready
//  (lowest seq first), then records never handed out, in seq order. A
//  record handed out is "in flight" until acked or returned. After a
//  restart every record not acked is ready again. Only written records
//  are handed out (committed, or written because the batch filled).

//  Hands out the next ready record and marks it in flight. Returns 0 and
//  fills *record, or -1 with errno EAGAIN (no ready record), ZQ_ECORRUPT
//  (the next record is damaged: it is counted and logged, never served;
//  the spool stays at it until quarantine or repair), or a read errno.
ZQ_EXPORT int zq_spool_next (zq_spool_t *self, zq_spool_record_t *record);

//  As zq_spool_next, decoding the record as a zq message (max_size 0:
//  ZQ_MSG_MAX_SIZE_DEFAULT). Returns a new message the caller owns and
//  stores its seq in *seq_p, or NULL with errno as zq_spool_next or the
//  decoder's (the record stays in flight: ack or return it).
ZQ_EXPORT zq_msg_t *zq_spool_next_msg (zq_spool_t *self, size_t max_size, uint64_t *seq_p);

//  Acks record seq (in flight or not yet handed out): it will not be
//  handed out again, and its segment is deleted once every record in it is
//  acked. The ack is logged with the next commit, under the same policy.
//  Acks out of order keep one acked range per gap, 16 bytes in memory and
//  in each new segment's checkpoint, until the gap is acked too (the
//  bound is in doc/SPOOL.md). Returns 0 (also if already acked), or -1
//  with errno ZQ_ENOTFOUND (seq never assigned), ENOMEM, or the spool's
//  failure errno; a failed ack changes nothing (the record stays as it
//  was: in flight, or ready).
ZQ_EXPORT int zq_spool_ack (zq_spool_t *self, uint64_t seq);

//  Acks seqs[0..count) in order, each as zq_spool_ack does, taking the
//  spool's locks once for all (a server settling a consumer's ACK of many
//  ids). Stops at the first that fails. Returns 0 with *acked_p = count
//  (count 0: nothing acked), or -1 with that ack's errno and *acked_p =
//  how many were acked before it (seqs[*acked_p] failed and changed
//  nothing; the ones after it were not tried); -1 with errno EINVAL and
//  nothing acked for a NULL self or acked_p, or NULL seqs with count
//  not 0.
ZQ_EXPORT int zq_spool_ack_many (zq_spool_t *self, const uint64_t *seqs, size_t count,
                                 size_t *acked_p);

//  Returns in-flight record seq to ready (a nack, or a visibility timeout
//  kept by the caller); it is handed out again before newer records.
//  Returns 0, or -1 with errno ZQ_ENOTFOUND (seq is not in flight).
ZQ_EXPORT int zq_spool_return (zq_spool_t *self, uint64_t seq);

//  Returns every in-flight record to ready; returns how many.
ZQ_EXPORT size_t zq_spool_return_all (zq_spool_t *self);

//  Fills *stats with the spool's counters and levels.
ZQ_EXPORT void zq_spool_stats (zq_spool_t *self, zq_spool_stats_t *stats);

#ifdef __cplusplus
}
#endif

#endif
