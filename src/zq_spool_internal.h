/*  =========================================================================
    zq_spool_internal - what the spool's source files share: the object,
    segments, the record format and the fault-injection hook for tests.
    Never installed; nothing here is part of the API.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_SPOOL_INTERNAL_H_INCLUDED
#define ZQ_SPOOL_INTERNAL_H_INCLUDED

#include "zq_internal.h"
#include "zq_spool.h"
#include <pthread.h>

//  ---- On-disk format (doc/SPOOL.md) -------------------------------------
#define ZQI_SEG_MAGIC       "ZQSPOOL" //  8 bytes with its NUL
#define ZQI_SEG_HEADER_SIZE 64
//  Where each field of a segment header lies (its size: up to the next).
enum {
    ZQI_SEG_AT_MAGIC = 0,        //  8: ZQI_SEG_MAGIC
    ZQI_SEG_AT_VERSION = 8,      //  4: ZQ_SPOOL_FORMAT_VERSION
    ZQI_SEG_AT_HEADER_SIZE = 12, //  4: ZQI_SEG_HEADER_SIZE
    ZQI_SEG_AT_ID = 16,          //  8: the segment's id (its file name)
    ZQI_SEG_AT_FIRST_SEQ = 24,   //  8
    ZQI_SEG_AT_BASE_LSN = 32,    //  8
    ZQI_SEG_AT_SALT = 40,        //  8
    ZQI_SEG_AT_CREATED = 48,     //  8: ms since the Unix epoch
    ZQI_SEG_AT_CHECK = 56        //  8: XXH3-64 of the bytes before it
};
#define ZQI_REC_HEADER_SIZE 32
#define ZQI_REC_MAGIC0      0x7a //  'z'
#define ZQI_REC_MAGIC1      0x72 //  'r'
//  Where each field of a record header lies.
enum {
    ZQI_REC_AT_CHECK = 0,   //  8: XXH3-64 (salt) of the record past it
    ZQI_REC_AT_MAGIC = 8,   //  2: ZQI_REC_MAGIC0, ZQI_REC_MAGIC1
    ZQI_REC_AT_TYPE = 10,   //  1
    ZQI_REC_AT_FLAGS = 11,  //  1: 0
    ZQI_REC_AT_LENGTH = 12, //  4: the payload's
    ZQI_REC_AT_SEQ = 16,    //  8
    ZQI_REC_AT_CLAIM = 24   //  8
};
//  A checkpoint's payload: its head, then ranges as in an ack record.
enum {
    ZQI_CHECKPOINT_AT_FLOOR = 0,    //  8: every seq below it is acked
    ZQI_CHECKPOINT_AT_LAST_SEQ = 8, //  8
    ZQI_CHECKPOINT_HEAD = 16
};
#define ZQI_SEAL_PAYLOAD 32
//  Where each field of a seal's payload lies (8 octets each).
enum {
    ZQI_SEAL_AT_FIRST_SEQ = 0,
    ZQI_SEAL_AT_LAST_SEQ = 8,
    ZQI_SEAL_AT_COUNT = 16, //  messages: last - first + 1
    ZQI_SEAL_AT_OFFSET = 24 //  of the seal record in its file
};
#define ZQI_SEAL_SIZE (ZQI_REC_HEADER_SIZE + ZQI_SEAL_PAYLOAD)
//  A segment's file name, from its id (a printf format taking a uint64_t).
#define ZQI_SEG_NAME "%016" PRIx64 ".zqs"
//  Zeros written past the newest segment's records at a time: a commit
//  that extends the file pays for the inode, the next ones do not.
#define ZQI_PREPARE_BYTES (1024 * 1024)
//  Only a batch this small prepares more: a larger one pays the inode
//  over many records already, and zeros ahead of a flood would double
//  what reaches the disk.
#define ZQI_PREPARE_AFTER_MAX (64 * 1024)
//  A control record (ack, checkpoint, seal) is read only if its payload
//  is at most max_record_bytes + ZQI_CONTROL_EXTRA; writers split the
//  acked ranges over as many records as it takes to stay within that.
#define ZQI_CONTROL_EXTRA 64
//  Most ranges one ack or checkpoint record carries, whatever the bound
//  (64 KiB of ranges: records stay small next to a read window).
#define ZQI_RANGES_PER_RECORD_MAX 4096

typedef enum {
    ZQI_REC_MESSAGE = 1,    //  payload: the appended bytes
    ZQI_REC_ACK = 2,        //  payload: acked ranges
    ZQI_REC_CHECKPOINT = 3, //  payload: ack floor + acked ranges (first record of a segment)
    ZQI_REC_SEAL = 4        //  payload: segment summary (last record of a sealed segment)
} zqi_rec_type_t;

//  A decoded record header.
typedef struct {
    uint64_t checksum;
    uint8_t type;
    uint32_t length; //  payload bytes
    uint64_t seq;    //  message: its seq; others: the last message seq before it
    uint64_t claim;  //  log position known durable when the record was appended
} zqi_rec_t;

//  A set of disjoint, sorted, non-adjacent ranges [start, end) of seqs.
typedef struct {
    uint64_t start;
    uint64_t end;
} zqi_range_t;

typedef struct {
    zqi_range_t *items;
    size_t count;
    size_t capacity;
} zqi_rangeset_t;

//  One segment: a file NNNNNNNNNNNNNNNN.zqs (id in hex) or a memory block.
typedef struct {
    uint64_t id;
    uint64_t first_seq; //  seq of its first message (if it has any)
    uint64_t last_seq;  //  seq of its last message; first_seq - 1 if none
    uint64_t base_lsn;  //  log position of its first record
    //  end, synced, sealed and wfd belong to the leader (the thread that
    //  set writing); readers use visible, published under lock.
    uint64_t end;    //  bytes written: the log's end (the file's size but for prepared)
    uint64_t synced; //  bytes known to be on stable storage
    //  The file's size when zeros were written past end ahead of the
    //  records (zqi_segment_prepare), else at most end. Records written
    //  there change neither the file's size nor its blocks, so the
    //  fdatasync of a commit writes the data alone, not the inode.
    uint64_t prepared;
    uint64_t visible; //  bytes readers may read
    //  Bytes before its first record after the checkpoint (header, the
    //  checkpoint and the ack records that complete it): segment_bytes
    //  counts what comes after, so a large ack state does not make
    //  every batch a segment of its own.
    uint64_t body_start;
    bool sealed;
    uint64_t records; //  records after the checkpoint
    int wfd;          //  writer's descriptor (the newest segment), or -1
    int rfd;          //  reader's descriptor, or -1
    uint8_t *memory;  //  memory mode: the block, of memory_capacity bytes
    size_t memory_capacity;
} zqi_segment_t;

//  Where a record handed out lives, to read it again after a return.
typedef struct {
    uint64_t seq;
    uint64_t segment_id;
    uint64_t offset; //  of the record header
    uint32_t size;   //  payload bytes
} zqi_location_t;

//  The records handed out and not yet acked or returned: their locations
//  by seq, kept in the slots of an open-addressing table (linear probing,
//  removal by shifting back), no allocation per record (zq_spool_flight.c).
//  Seqs are the spool's own, 1 and up, so a multiplicative hash spreads
//  them evenly; no peer chooses them.
typedef struct {
    zqi_location_t *slots; //  seq 0: a free slot
    uint32_t mask;         //  slot count - 1 (a power of two); 0 before the first put
    uint32_t count;
} zqi_flight_t;

//  Frees the slots; the table is empty (and usable).
void zqi_flight_free (zqi_flight_t *self);
//  The location of the record at seq, or NULL.
zqi_location_t *zqi_flight_find (const zqi_flight_t *self, uint64_t seq);
//  Adds location (seq >= 1), or replaces the one of the same seq. Returns
//  0, or -1 with errno ENOMEM (the table is then unchanged).
int zqi_flight_put (zqi_flight_t *self, const zqi_location_t *location);
//  Removes the location of seq. Returns whether there was one.
bool zqi_flight_remove (zqi_flight_t *self, uint64_t seq);
//  The locations one by one: *cursor starts at 0; NULL after the last. A
//  put or remove ends the walk.
zqi_location_t *zqi_flight_next (const zqi_flight_t *self, uint32_t *cursor);
//  Removes every location, keeping the slots.
void zqi_flight_clear (zqi_flight_t *self);

//  A read window over one segment, used by recovery and by the cursor.
typedef struct {
    zqi_segment_t *segment;
    uint64_t offset; //  file offset of data[0]
    zqi_buf_t buf;
} zqi_window_t;

//  Fault injection modes (see zqi_spool_set_crash).
enum {
    ZQI_CRASH_DROP = 1,   //  unsynced bytes are lost
    ZQI_CRASH_TEAR = 2,   //  a random prefix of the unsynced bytes survives
    ZQI_CRASH_GARBLE = 3, //  a random prefix survives, then random garbage
    ZQI_CRASH_SECTORS = 4 //  each 512-byte sector of the unsynced bytes kept, zeroed or garbled
};
#define ZQI_CRASH_MODES 4

struct _zq_spool_t {
    zq_spool_config_t config;
    char *dir; //  NULL in memory
    int dir_fd;
    int lock_fd;
    uint64_t salt; //  checksum seed, the same in every segment of the spool

    //  Everything below is guarded by lock, except where "reader" says
    //  read_lock (held first when both are taken).
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_mutex_t read_lock;

    zqi_segment_t **segments; //  oldest first; the last is the one written
    size_t segment_count;
    size_t segment_capacity;
    uint64_t next_segment_id;
    uint64_t disk_bytes;

    //  Appending and group commit.
    zqi_buf_t fill;   //  records appended, not yet written
    zqi_buf_t flight; //  the batch a leader is writing
    //  The last batch of messages written to a file segment, kept so that
    //  the cursor hands its records out from memory, not read back: its
    //  bytes are those of segment recent_segment from recent_offset. The
    //  record handed out last may point into it (recent_held): a leader
    //  then sets it aside as retired (retired_held) before keeping its
    //  own batch, and the retired buffer is reused once the next reading
    //  call lets the record go.
    zqi_buf_t recent;
    zqi_buf_t retired;
    uint64_t recent_segment;
    uint64_t recent_offset;
    bool recent_held;
    bool retired_held;
    uint64_t fill_last_seq; //  last message seq in fill (0: none)
    uint64_t next_seq;
    uint64_t seq_hint; //  recovery: highest seq any record mentions
    uint64_t written_seq;
    uint64_t durable_seq;
    uint64_t durable_lsn; //  every log byte before this position is synced
    bool writing;         //  a leader is writing or syncing
    bool sync_wanted;     //  interval thread: a sync is due
    int64_t last_sync_ms;
    zqi_rangeset_t pending_acks; //  acked, not yet logged
    zqi_rangeset_t flight_acks;  //  logged in the batch being written
    zqi_buf_t ack_payload;       //  scratch for an ack record's payload
    uint64_t ack_epoch;          //  acks made so far
    uint64_t acks_written;       //  acks up to this epoch are written
    uint64_t acks_durable;       //  ... and synced
    zqi_range_t *refused;        //  seq ranges lost to failed writes, with their errno
    int *refused_errno;
    size_t refused_count;
    int failed; //  non-zero: the spool failed (an errno); only destroy remains

    pthread_t thread;
    bool thread_started;
    bool stopping;

    //  Reader state (read_lock; ack state also under lock when changed).
    uint64_t ack_floor;      //  every seq below is acked
    zqi_rangeset_t acked;    //  acked seqs at or above the floor
    uint64_t acked_above;    //  how many seqs acked holds
    zqi_window_t window;     //  the cursor's read buffer
    uint64_t cursor_segment; //  segment id the cursor is in
    uint64_t cursor_offset;  //  offset of the next record there
    zqi_flight_t in_flight;  //  the records handed out, by seq
    zqi_location_t *ready;   //  returned records: a min-heap by seq
    size_t ready_count;
    size_t ready_capacity;
    uint8_t *record_copy; //  a redelivered record's bytes
    size_t record_copy_size;

    zq_spool_stats_t stats;

    //  Fault injection (tests).
    int crash_at_sync;
    int crash_mode;
    int sync_count;
    uint64_t crash_rng;
};

//  ---- Storage: segments, records, recovery (zq_spool_format.c,
//  zq_spool_store.c, zq_spool_recovery.c, zq_spool_crash.c) ----------
//  The width (1 to 8) low octets of a little-endian number at p, and
//  the same written. Inline, through one memcpy: callers pass constant
//  widths, which become one load or store (a loop over the octets cost
//  some 120 instructions a stored record).
static inline uint64_t
zqi_load_le (const uint8_t *p, int width)
{
    uint64_t value = 0;
    memcpy (&value, p, (size_t)width);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    value = __builtin_bswap64 (value);
#endif
    return value;
}
static inline void
zqi_store_le (uint8_t *p, uint64_t value, int width)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    value = __builtin_bswap64 (value);
#endif
    memcpy (p, &value, (size_t)width);
}

int zqi_rangeset_add (zqi_rangeset_t *set, uint64_t start, uint64_t end);
//  Makes room for extra more ranges (so that many adds of one range cannot
//  fail). Returns 0 or -1 with ENOMEM.
int zqi_rangeset_reserve (zqi_rangeset_t *set, size_t extra);
bool zqi_rangeset_has (const zqi_rangeset_t *set, uint64_t seq);
void zqi_rangeset_free (zqi_rangeset_t *set);

//  Appends one record (header + payload) to buf. Returns 0 or -1 ENOMEM.
int zqi_record_put (zqi_buf_t *buf, uint64_t salt, zqi_rec_type_t type, uint64_t seq,
                    uint64_t claim, const void *payload, size_t size);
//  The same with the payload gathered from count parts, in order.
int zqi_record_put_parts (zqi_buf_t *buf, uint64_t salt, zqi_rec_type_t type, uint64_t seq,
                          uint64_t claim, const void *const *parts, const size_t *sizes,
                          size_t count);
//  Decodes and checks the record at data (avail bytes). Returns 1 if whole
//  and valid, 0 if more bytes are needed (*need_p), -1 if invalid.
int zqi_record_parse (const uint8_t *data, size_t avail, uint64_t salt, uint32_t max_length,
                      zqi_rec_t *rec, size_t *need_p);

//  Appends ranges as an ack record payload: count (4) | 0 (4) | pairs.
int zqi_ranges_put (zqi_buf_t *buf, const zqi_range_t *items, size_t count);

//  How many ranges one ack record may carry so that the reader accepts
//  it (a checkpoint record carries one less). At least 2.
size_t zqi_ranges_per_record (const zq_spool_t *self);

//  Bytes that count ranges take on disk as ack records, with their
//  headers (an upper bound for a checkpoint of count ranges as well).
uint64_t zqi_ranges_disk_bytes (const zq_spool_t *self, size_t count);

//  Appends ranges to buf as ack records (type ZQI_REC_ACK, seq and claim
//  as given), each within the reader's bound; scratch is a buffer for
//  the payloads. Nothing is appended for count 0. Returns 0 or -1 ENOMEM
//  (buf may then hold some of the records: the caller cuts it back).
int zqi_ack_records_put (const zq_spool_t *self, zqi_buf_t *buf, zqi_buf_t *scratch,
                         const zqi_range_t *items, size_t count, uint64_t seq, uint64_t claim);

//  Segment I/O (file or memory). Each returns 0 or -1 with errno.
int zqi_segment_write (zq_spool_t *self, zqi_segment_t *segment, const void *data, size_t size);
int zqi_segment_sync (zq_spool_t *self, zqi_segment_t *segment);
//  The segment file's size: its end, or past it the zeros prepared.
static inline uint64_t
zqi_segment_file_size (const zqi_segment_t *segment)
{
    return segment->prepared > segment->end ? segment->prepared : segment->end;
}
//  Zeros for writing and comparing (prepared space, recovery, crash mode).
#define ZQI_ZEROS_BYTES (64 * 1024)
extern const uint8_t zqi_spool_zeros[ZQI_ZEROS_BYTES];
//  Cuts the file (and what was prepared past size) at size.
int zqi_segment_truncate (zq_spool_t *self, zqi_segment_t *segment, uint64_t size);
//  Writes zeros past the end of a file segment, ZQI_PREPARE_BYTES at a
//  time, when less than half of that is prepared; no further than its
//  seal may reach. They reach the disk with the next sync. The writer
//  calls it after a batch of at most ZQI_PREPARE_AFTER_MAX bytes and at
//  a segment's creation. Nothing is prepared under fsync none (there is
//  no fdatasync to spare an inode write) nor for a memory or sealed
//  segment, and a failed write of zeros (a full disk) changes nothing
//  but the file's size.
void zqi_segment_prepare (zq_spool_t *self, zqi_segment_t *segment);
//  Cuts the zeros prepared past the end of segment (at its seal, at a
//  clean close). Returns 0 or -1 with errno.
int zqi_segment_trim (zq_spool_t *self, zqi_segment_t *segment);
//  Reads up to size bytes of segment at offset (again after EINTR, on
//  until size or the file's end). Returns how many (0 at the end), or -1
//  with errno.
ssize_t zqi_segment_read (zq_spool_t *self, zqi_segment_t *segment, uint64_t offset, void *data,
                          size_t size);
//  Creates the next segment with its header and an ack checkpoint
//  record, synced (file and directory); in memory, with room for at
//  least room more bytes. Returns it or NULL with errno.
zqi_segment_t *zqi_segment_create (zq_spool_t *self, uint64_t first_seq, uint64_t base_lsn,
                                   const zqi_rangeset_t *acked, uint64_t ack_floor,
                                   uint64_t last_seq, size_t room);
//  Writes the seal record and syncs. Returns 0 or -1 with errno.
int zqi_segment_seal (zq_spool_t *self, zqi_segment_t *segment);
//  Closes and deletes a segment (file or memory) and frees it.
void zqi_segment_remove (zq_spool_t *self, zqi_segment_t *segment, bool unlink_file);
void zqi_segment_close (zqi_segment_t *segment);
//  Closes the reader's descriptor of a segment (reads open it again):
//  the reader keeps one open, for the segment its cursor is in.
void zqi_segment_close_reader (zqi_segment_t *segment);

//  Makes bytes [offset, offset + size) of the window's segment available
//  at the returned pointer, reading ahead. Returns NULL with errno (EIO,
//  ENODATA: beyond the end given).
const uint8_t *zqi_window_get (zq_spool_t *self, zqi_window_t *window, zqi_segment_t *segment,
                               uint64_t offset, size_t size, uint64_t end);

//  Opens the spool's directory and recovers it into self. Returns 0 or -1
//  with errno.
int zqi_spool_recover (zq_spool_t *self);

//  Applies an ack range to the ack state (floor and set).
int zqi_spool_ack_range (zq_spool_t *self, uint64_t start, uint64_t end);

//  ---- The crash mode (zq_spool_crash.c), for tests only ----------------
//  Built with ./configure --enable-crash-injection (ZQ_CRASH_INJECTION);
//  off by default, so the shipped library neither has nor exports it.

#ifdef ZQ_CRASH_INJECTION
//  Runs the fault hook at a sync point: returns 1 if the spool crashes
//  here (the caller fails with EIO) or has failed already, else 0.
int zqi_spool_crash_point (zq_spool_t *self, zqi_segment_t *segment);

//  Applies the crash mode to one file of size bytes whose bytes [synced,
//  end) were not synced; past end (up to size) it holds prepared zeros.
void zqi_spool_crash_file (zq_spool_t *self, int fd, uint64_t synced, uint64_t end, uint64_t size);

//  Arms the crash mode: at the at_sync-th sync (counting from 1, every
//  fdatasync / directory fsync of the spool) the spool does not sync but
//  drops or garbles every byte written and not yet synced, as mode says
//  (ZQI_CRASH_*, seed for its random choices), and fails from then on:
//  every call returns -1 with EIO and destroy writes nothing, as if the
//  process and the machine had stopped there. 0 disarms.
//  Exported (though in no installed header) so the test programs, which
//  link the shared library, can reach it.
ZQ_EXPORT void zqi_spool_set_crash (zq_spool_t *self, int at_sync, int mode, uint64_t seed);
#else
//  Without the crash mode a sync point only reports a spool that has
//  failed already, and no file is ever crashed.
static inline int
zqi_spool_crash_point (zq_spool_t *self, zqi_segment_t *segment)
{
    (void)segment;
    return self->failed ? 1 : 0;
}

static inline void
zqi_spool_crash_file (zq_spool_t *self, int fd, uint64_t synced, uint64_t end, uint64_t size)
{
    (void)self, (void)fd, (void)synced, (void)end, (void)size;
}
#endif

//  ---- Across the spool's files: helpers one file calls in another ------

//  ---- zq_spool.c --------------------------------------------------------

int zqi_spool_ready_push (zq_spool_t *self, const zqi_location_t *location);

void zqi_spool_ready_pop (zq_spool_t *self);

void zqi_spool_refuse (zq_spool_t *self, uint64_t start, uint64_t end, int errnum);

int zqi_spool_refused_errno (zq_spool_t *self, uint64_t seq);

int zqi_spool_refused_between (zq_spool_t *self, uint64_t start, uint64_t end);

void zqi_spool_reclaim (zq_spool_t *self);

//  ---- zq_spool_write.c --------------------------------------------------

zqi_segment_t *zqi_spool_tail (zq_spool_t *self);

void zqi_spool_account (zq_spool_t *self);

int zqi_spool_flush (zq_spool_t *self, bool sync);

void *zqi_spool_sync_thread (void *arg);

//  ---- zq_spool_store.c --------------------------------------------------

char *zqi_spool_segment_path (zq_spool_t *self, uint64_t id, const char *suffix);

int zqi_spool_write_all (int fd, const void *data, size_t size, uint64_t offset);

zqi_segment_t *zqi_spool_segment_alloc (uint64_t id);

int zqi_spool_header_parse (const uint8_t *p, uint64_t *id_p, uint64_t *first_seq_p,
                            uint64_t *base_lsn_p, uint64_t *salt_p);

int zqi_spool_ranges_apply (zq_spool_t *self, const uint8_t *p, size_t size);

#endif
