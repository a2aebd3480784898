/*  =========================================================================
    reliable_server - what the files of the reliable pattern's server
    (ZQ_SERVER) share: its limits, its queue, consumer and round state, and
    the functions one file calls in another. Internal, never installed.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_RELIABLE_SERVER_H_INCLUDED
#define ZQ_RELIABLE_SERVER_H_INCLUDED

#include "reliable.h"
#include "zq_batch.h"

#define ZQI_RS_BATCH       1024 //  commands one read of the socket takes at most
#define ZQI_RS_ROUND       4096 //  PUTs a round gathers for one commit
#define ZQI_RS_BATCH_PEERS 64   //  producers one round confirms (more ends the round)
//  One call of zqi_rs_work ends after this many commits behind, this many
//  commands read, or this many passes (each a read, after a wait for
//  input, a commit's end or a timer), whichever comes first.
#define ZQI_RS_WORK_COMMITS  4
#define ZQI_RS_WORK_COMMANDS (4 * ZQI_RS_BATCH)
#define ZQI_RS_WORK_PASSES   1024
//  A round read with the socket left empty that holds at most this many
//  PUTs commits in the server's thread (a lone PUT gains nothing from a
//  handover to the committer), unless remote consumers are connected and
//  the commit fdatasyncs: then, as any larger round of spools on disk, it
//  commits behind, so that the consumers are served during the sync.
#define ZQI_RS_ALONE 8
//  A call waits this long at most for a commit behind with nothing else to
//  do; then it ends, so that a slow disk does not hold the host's loop.
#define ZQI_RS_AWAIT_MS 5
//  With a commit left in flight at the end of a call, the server asks for
//  the next call within this many milliseconds (zqi_r_server_next_timer_ms),
//  for a host that does not poll the committer's eventfd.
#define ZQI_RS_IN_FLIGHT_MS 1
//  PUTs one round may hold: ZQI_RS_ROUND, and the elements of a PUT batch
//  (zq_batch.h, ZQI_BATCH_MAX_COUNT) read last.
#define ZQI_RS_PENDING_MAX   (ZQI_RS_ROUND + ZQI_BATCH_MAX_COUNT)
#define ZQI_RS_LOCAL         0    //  consumer index of local consumption
#define ZQI_RS_RETRY_MS      1000 //  dead-lettering that failed is tried again after this
#define ZQI_RS_LOG_IVL_MS    1000 //  at most one line about refusals in this time
#define ZQI_RS_RESUME_MIN_MS 1    //  first retry of consumers whose pipe was full
//  Records one delivery pass of a queue may read without delivering any
//  (expired, delayed, dead-lettered, duplicates) before it yields; the
//  next pass is due at once.
#define ZQI_RS_SKIPS 4096
//  Messages a queue may hold for later (not-before, NACK delays) even when
//  all queues together hold max_delayed_messages_total.
#define ZQI_RS_DELAY_FLOOR   64
#define ZQI_RS_RESUME_MAX_MS 50 //  longest wait between those retries
//  At most one line about a dedupe window full at dedupe_max in this time.
#define ZQI_RS_FULL_LOG_MS 600000

//  File descriptors. An open queue holds at most ZQI_RS_QUEUE_FDS (its spool's
//  directory, lock, the segment written and the segment read). Queues
//  share what RLIMIT_NOFILE leaves after a reserve for connections,
//  sockets and libzmq: a quarter of the limit, at least ZQI_RS_FD_RESERVE.
//  Past that budget the least recently used idle queue is closed (its
//  spool reopens on demand); if none is idle, the queue is refused. New
//  queues get all but an eighth of the budget: the rest keeps existing
//  queues servable when clients hold every other queue busy.
#define ZQI_RS_QUEUE_FDS    4
#define ZQI_RS_FD_RESERVE   64
#define ZQI_RS_OPEN_MIN     4     //  queues open at once, however low the limit
#define ZQI_RS_LIMIT_LOG_MS 10000 //  a refusal for a limit is logged once per this
#define ZQI_RS_SWEEP_MS     1000  //  idle client-made queues are looked for once per this

//  A deleted queue's spool directory is renamed to this prefix + its name
//  before its files go, so a crash midway never leaves a half queue.
#define ZQI_RS_DELETED_PREFIX ".deleted."

//  Why a queue or a CONSUME was refused (zqi_rs_limit_log).
enum {
    ZQI_RS_LIMIT_QUEUES = 0,
    ZQI_RS_LIMIT_BUDGET = 1,
    ZQI_RS_LIMIT_PROCESS = 2,
    ZQI_RS_LIMIT_CONSUMER = 3,
    ZQI_RS_LIMIT_AUTO = 4,
    ZQI_RS_LIMIT_NO_SPACE = 5,
    ZQI_RS_LIMIT_SHARE = 6,
    ZQI_RS_LIMITS = 7
};

//  Notable events, each logged at debug level (zqd -v) one line at a time,
//  at most one line per ZQI_RS_EVENT_LOG_MS of each kind (the rest counted
//  in the next line), so a flood of them cannot fill a disk.
#define ZQI_RS_EVENT_LOG_MS 100
enum {
    ZQI_RS_EVENT_QUEUE = 0,      //  a queue created by a client
    ZQI_RS_EVENT_CONSUMER = 1,   //  a consumer joined or left
    ZQI_RS_EVENT_REDELIVERY = 2, //  a visibility timeout sent a delivery back
    ZQI_RS_EVENT_DEAD = 3,       //  a message dead-lettered
    ZQI_RS_EVENTS = 4
};

enum { ZQI_RS_DELIVERED = 1, ZQI_RS_HELD = 2, ZQI_RS_RETURNED = 3 };
//  Set on the state of an entry gathered to be acked (zqi_rs_acks_t)
//  until the batch is flushed, whatever the ack's outcome: lookups by id
//  (zqi_rs_entry_for) pass over it, as over an entry acked already, so a
//  second id for it in the same ACK finds another entry with that id or
//  none (counted not held, even if the first ack then fails).
#define ZQI_RS_ACKING 0x80

//  Most entries an ACK gathers before their spool acks them at once.
#define ZQI_RS_ACK_BATCH 128

//  What the PUT's envelope parse learned of a record it stored, as
//  offsets into the stored record (the one-frame form, attempt 0), so
//  that delivering the record takes no second parse. Kept in a table of
//  ZQI_RS_PARSED slots by queue and seq (a newer record takes the slot):
//  enough for the deliveries of a round's PUTs; older records are parsed.
#define ZQI_RS_PARSED 2048 //  a power of two
typedef struct {
    uint64_t seq; //  0: an empty slot
    uint32_t queue;
    uint32_t size; //  the stored record's bytes
    uint32_t id_offset;
    uint32_t subject_offset;
    uint32_t subject_size;
    uint32_t attempt_offset; //  attempt 0 is stored, in attempt_size octets
    uint32_t body_offset;
    uint32_t body_size;
    uint64_t created_ms;
    int64_t ttl_ms;
    int64_t not_before_ms;
    uint8_t id[ZQ_MSG_ID_SIZE];
    uint8_t attempt_size;
} zqi_rs_parsed_t;

//  The slot of the record at seq in queue: a queue's records in a row
//  take slots in a row.
static inline uint32_t
zqi_rs_parsed_slot (uint32_t queue, uint64_t seq)
{
    return (uint32_t)(seq + (uint64_t)queue * 0x9E3779B1u) & (ZQI_RS_PARSED - 1);
}

typedef struct {
    char *name;       //  NULL: a free slot (the queue was deleted)
    size_t name_size; //  strlen (name)
    uint32_t index;
    zq_spool_t *spool;
    bool is_dead;        //  a dead-letter queue: never dead-letters itself
    bool is_auto;        //  made by a client's first use (or found on disk), not declared
    char *maker;         //  is_auto: the User-Id of the client that made it, or NULL
    bool declared;       //  made or claimed by zq_queue_declare: never deleted
    int64_t named_ms;    //  zclock_mono when last named by a PUT, CONSUME or admin call
    uint32_t dead;       //  index of NAME.dead, or ZQI_R_NONE until needed
    uint32_t *consumers; //  indexes of the consumers subscribed
    uint32_t consumer_count;
    uint32_t consumer_capacity;
    uint32_t rr;        //  round-robin position in consumers
    uint64_t in_flight; //  DELIVERED entries
    uint64_t held;      //  HELD entries
    bool appended;      //  records appended (or found by dedupe) this round, not yet committed
    bool behind;        //  records in the round committed behind (zqi_rs_settle_behind)
    uint64_t first_seq; //  appended: the lowest and highest seq this round's PUTs hang on
    uint64_t last_seq;
    bool commit_failed; //  this round's commit failed: ask each record
    bool complained;    //  a read error was logged already
    bool delay_full;    //  its next record waits for room to be delayed (max_delayed_messages)
    zq_queue_info_t counters;
    //  spool NULL: the queue is closed (idle, its files given back); what
    //  its spool held when closed, for info without reopening it.
    uint64_t used; //  when last named (server's use_clock), for closing the least recent
    zq_spool_stats_t closed_stats;
    uint64_t closed_oldest_ms; //  created_ms of its oldest ready message, or 0
} zqi_rs_queue_t;

typedef struct {
    bool in_use;
    uint8_t route_size;
    uint8_t route[255];
    uint32_t prefetch;
    uint32_t in_flight;
    uint32_t head;    //  its DELIVERED entries, a list through prev/next
    uint32_t *queues; //  indexes of the queues it consumes
    uint32_t queue_count;
    uint32_t queue_capacity;
    uint32_t rr;      //  local consumer: next queue to take from
    bool stalled;     //  its pipe was full this round
    uint32_t session; //  never 0, never reused: who may settle (entry holder)
    //  Bytes sent to it and not settled (doc/PROTOCOL.md 18.3): those of
    //  its DELIVERED entries, and of deliveries that timed out while it
    //  had not shown it read them (they may still wait in its pipe) until
    //  it settles one sent at or after the last of them, or that one.
    uint64_t delivered_bytes;
    uint64_t expired_bytes;
    uint32_t sent;                      //  deliveries sent to it (wraps)
    uint32_t expired_sent;              //  number of the last delivery that timed out
    uint8_t expired_id[ZQ_MSG_ID_SIZE]; //  ... and its id
    //  DELIVER batches (doc/PROTOCOL.md 19.7): the largest it takes (0:
    //  none), and the deliveries gathered for it this round, sent as one
    //  frame at the round's end (its batch.count most recent entries).
    size_t batch_max_bytes;
    zqi_batch_t batch;
} zqi_rs_consumer_t;

//  One PUT of the current round, waiting for the commit.
typedef struct {
    uint8_t id[ZQ_MSG_ID_SIZE];
    uint32_t peer;  //  index in the round's peers
    uint32_t queue; //  ZQI_R_NONE when refused before storing
    uint64_t seq;
    uint8_t code;      //  0: confirm if stored; else the refusal code
    bool appended;     //  its record was appended by it (not found by the dedupe window)
    zqi_r_seen_t seen; //  its dedupe key, once stored
} zqi_rs_pending_t;

typedef struct {
    uint8_t route_size;
    uint8_t route[255];
} zqi_rs_peer_t;

//  The PUTs of a round of work and what answering them needs: the
//  envelopes' ids and outcomes, the peers that sent them, the queues
//  appended to. A server has two: the round being read, and the round
//  before it whose commit runs in the committer thread meanwhile
//  (reliable_server_commit.c).
typedef struct {
    zqi_rs_pending_t *pending; //  ZQI_RS_PENDING_MAX
    uint32_t pending_count;
    zqi_rs_peer_t *peers; //  ZQI_RS_BATCH_PEERS
    uint32_t peer_count;
    uint32_t *touched; //  indexes of the queues appended to (ZQI_RS_PENDING_MAX)
    uint32_t touched_count;
    zq_spool_t **spools;  //  their spools, for the committer (ZQI_RS_PENDING_MAX)
    int *refusals;        //  per touched queue: 0, or the errno its commit failed with
    uint64_t *first_seqs; //  per touched queue: the first and last seq the round appended
    uint64_t *last_seqs;
} zqi_rs_puts_t;

//  The thread that commits a round's spools while the next round is read.
typedef struct {
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stopping; //  under lock: the thread ends
    bool working;  //  behind is the thread's until it clears this: written under lock with
                   //  __atomic, so zqi_rs_behind_done may read it without the lock
    bool pending;  //  the server's view: behind holds PUTs not yet answered
    bool failed;   //  the thread could not start: rounds commit in place
    int done_fd;   //  an eventfd the thread signals when a commit ends (-1: none)
} zqi_rs_committer_t;

//  The server's queues in a store behind the seam (reliable_server_store.c).
typedef struct _zqi_rs_store_t zqi_rs_store_t;

struct _zqi_r_server_t {
    zqi_r_common_t common;
    const zq_options_t *options;
    char *spool_dir;       //  NULL: queues in memory
    bool commit_syncs;     //  spools on disk under fsync "always": each commit fdatasyncs
    zqi_rs_store_t *store; //  NULL: queues in spools; else in JetStream
    int64_t visibility_ms;
    uint32_t max_attempts;
    int64_t backoff_ms;
    int64_t backoff_max_ms;
    uint32_t max_queues;
    uint32_t dead_unmade;         //  queues whose NAME.dead has a place kept but does not exist
    bool starting;                //  opening the queues found in the spool directory
    uint32_t max_consumer_queues; //  most queues one remote consumer consumes
    uint32_t max_auto_queues;     //  most queues clients make by using them
    uint32_t auto_count;          //  queues with is_auto
    uint32_t free_count;          //  free slots in queues (deleted queues)
    bool declaring;               //  zq_queue_declare is making a queue
    int64_t auto_idle_ms;         //  auto_queue_idle_ms (0: never removed)
    int64_t next_sweep;           //  zclock_mono of the next look for idle queues
    zqi_disk_watch_t disk;        //  min_free_bytes on the spool's filesystem
    uint64_t no_space;            //  PUTs refused under min_free_bytes

    //  max_auto_queues_per_identity (0: no share), and the User-Id of the
    //  PUT or CONSUME being handled, which a queue it makes counts for.
    uint32_t max_auto_per_identity;
    const char *naming_user_id;

    uint32_t local_prefetch;
    size_t max_message_bytes;
    int64_t max_delay_ms;               //  longest NACK delay or TOUCH extension
    uint64_t max_unsettled_bytes;       //  per remote consumer connection
    uint64_t max_unsettled_bytes_total; //  over all of them
    uint64_t unsettled_bytes;           //  sum of their delivered and expired bytes
    uint64_t max_delayed;               //  HELD entries one queue may have (for not-before)
    uint64_t max_delayed_total;         //  and all queues together
    uint64_t held_total;                //  HELD entries of every queue
    bool skipped_more;                  //  a delivery pass stopped at ZQI_RS_SKIPS: go on at once
    uint32_t next_session;
    zqi_log_limit_t refusal_log;      //  PUTs and settles turned down
    zqi_log_limit_t error_log;        //  ERRORs sent to peers
    zqi_log_limit_t ack_failure_log;  //  acks the spool did not take
    zqi_log_limit_t dead_failure_log; //  messages not dead-lettered now
    zqi_log_limit_t dedupe_log;       //  ids the dedupe window lacked memory for
    zqi_log_limit_t delayed_log;      //  queues waiting at max_delayed_messages
    zqi_log_limit_t dedupe_full_log;  //  ids forgotten early at dedupe_max
    uint8_t instance[ZQI_R_INSTANCE_SIZE];
    zqi_rs_queue_t **queues;
    uint32_t queue_count;
    uint32_t queue_capacity;
    zhashx_t *queue_by_name;    //  name -> index + 1
    zqi_rs_queue_t *last_queue; //  the last queue a PUT named
    zqi_rs_queue_t *pinned;     //  a queue an admin call works on: kept open
    uint32_t open_count;        //  queues whose spool is open
    uint32_t open_max;          //  most open at once (the fd budget)
    uint64_t use_clock;
    zqi_log_limit_t limit_log[ZQI_RS_LIMITS]; //  S_LIMIT_*: refusals for a limit
    zqi_log_limit_t event_log[ZQI_RS_EVENTS]; //  ZQI_RS_EVENT_*: notable events
    zqi_rs_consumer_t *consumers;
    uint32_t consumer_capacity;
    zhashx_t *consumer_by_route; //  hex route -> index + 1
    zqi_r_table_t table;
    zqi_r_dedupe_t dedupe;
    zqi_rs_puts_t puts;   //  the round's PUTs, being read
    zqi_rs_puts_t behind; //  the PUTs of the round before, committed behind it
    zqi_rs_committer_t committer;
    zqi_buf_t buf;           //  command frames
    zqi_buf_t bytes;         //  joined or rewritten envelopes
    zqi_rs_parsed_t *parsed; //  ZQI_RS_PARSED slots: records stored lately
    int64_t next_probe;
    int64_t now;                      //  zqi_r_now at the start of the current round
    int64_t work_ms;                  //  when zq_queue_recv last ran a whole round
    bool drained;                     //  the last round read the socket empty
    int64_t resume_due;               //  zqi_r_now of the next try of stalled consumers; 0: none
    int64_t resume_ms;                //  the wait before that try, doubled while nothing goes
    uint64_t conflicts;               //  PUTs refused: their id was stored with other content
    zq_queue_authorize_fn *authorize; //  who may put and consume (NULL: anyone)
    void *authorize_arg;
    //  REFUSE ids and ERROR replies sent, by code (zq_queue_refusals).
    uint64_t refusals[ZQI_R_CODE_COUNT];
};

//  ---- reliable_server_queues.c ------------------------------------------

//  Removes a directory and what it holds, depth levels down at most
//  (links are removed, never followed).
void zqi_rs_remove_tree (const char *path, int depth);
//  Messages queue holds, ready, delayed or in flight (UINT64_MAX if a
//  queue known by name only cannot be opened to count them).
uint64_t zqi_rs_queue_depth (zqi_r_server_t *self, zqi_rs_queue_t *queue);
//  Deletes queue (entries, consumers told with ERROR 13, dedupe records,
//  spool and directory, name); its slot is kept free for a new queue.
//  Between rounds only. Returns how many messages it held.
uint64_t zqi_rs_queue_remove (zqi_r_server_t *self, zqi_rs_queue_t *queue);
//  Deletes client-made queues idle for auto_queue_idle_ms (empty, no
//  consumer, NAME.dead empty).
void zqi_rs_sweep (zqi_r_server_t *self, int64_t now);

zqi_rs_queue_t *zqi_rs_queue_find (zqi_r_server_t *self, const char *name);

int zqi_rs_mkdirs (const char *path);

uint32_t zqi_rs_open_new_max (zqi_r_server_t *self);

void zqi_rs_limit_log (zqi_r_server_t *self, int which, const char *name);
//  Logs one notable event (ZQI_RS_EVENT_*), rate-limited per kind.
void zqi_rs_event (zqi_r_server_t *self, int kind, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

zqi_r_code_t zqi_rs_store_code (int errnum);

int zqi_rs_queue_open (zqi_r_server_t *self, zqi_rs_queue_t *queue, bool is_new);

zqi_rs_queue_t *zqi_rs_queue_new (zqi_r_server_t *self, const char *key, size_t size);

void zqi_rs_queue_register (zqi_r_server_t *self, zqi_rs_queue_t *queue);

zqi_rs_queue_t *zqi_rs_queue_get (zqi_r_server_t *self, const char *name, size_t size, bool create);
//  The queue the last zqi_rs_queue_get gave, if name (size octets) names
//  it and its spool is open, marked as named at the round's time
//  (self->now): no lookup and no clock read, for PUTs in a row to one
//  queue. NULL otherwise (then zqi_rs_queue_get).
zqi_rs_queue_t *zqi_rs_queue_last (zqi_r_server_t *self, const char *name, size_t size);

zq_spool_t *zqi_rs_spool (zqi_r_server_t *self, zqi_rs_queue_t *queue);

zqi_rs_queue_t *zqi_rs_dead_queue (zqi_r_server_t *self, zqi_rs_queue_t *queue);

void zqi_rs_route_key (const uint8_t *route, size_t size, char *key);

uint32_t zqi_rs_consumer_find (zqi_r_server_t *self, const uint8_t *route, size_t size);

uint32_t zqi_rs_session_new (zqi_r_server_t *self);

uint32_t zqi_rs_consumer_new (zqi_r_server_t *self, const uint8_t *route, size_t size);

int zqi_rs_subscribe (zqi_r_server_t *self, uint32_t index, zqi_rs_queue_t *queue);

void zqi_rs_unsubscribe (zqi_r_server_t *self, uint32_t index, zqi_rs_queue_t *queue);

//  ---- reliable_server_delivery.c ----------------------------------------

void zqi_rs_owner_expire (zqi_r_server_t *self, uint32_t index);

void zqi_rs_read_through (zqi_r_server_t *self, zqi_rs_consumer_t *consumer,
                          const zqi_r_entry_t *entry, const uint8_t *id);

void zqi_rs_entry_leave (zqi_r_server_t *self, uint32_t index);

void zqi_rs_return (zqi_r_server_t *self, uint32_t index);

void zqi_rs_fail_delivery (zqi_r_server_t *self, uint32_t index, int64_t delay_ms);

int zqi_rs_entry_ack (zqi_r_server_t *self, uint32_t index);

//  The entries of one queue an ACK settles, gathered so that their spool
//  acks them holding its locks once (zq_spool_ack_many).
typedef struct {
    uint32_t queue;
    uint32_t count;
    uint32_t indexes[ZQI_RS_ACK_BATCH];
} zqi_rs_acks_t;

//  Gathers the entry at index (held by the consumer that acks it) for an
//  ack, marked ZQI_RS_ACKING; the ones gathered before are acked first
//  when they belong to another queue or fill the batch.
void zqi_rs_acks_add (zqi_r_server_t *self, zqi_rs_acks_t *acks, uint32_t index, size_t *failed_p,
                      int *errnum_p);
//  Acks the entries gathered, in order, as zqi_rs_entry_ack does each: an
//  entry acked leaves and is forgotten (its queue's acked counter one
//  more); one whose ack failed stays as it was, counted in *failed_p
//  (errno in *errnum_p) and logged. The batch is then empty.
void zqi_rs_acks_flush (zqi_r_server_t *self, zqi_rs_acks_t *acks, size_t *failed_p, int *errnum_p);

int zqi_rs_record_ack (zqi_r_server_t *self, zqi_rs_queue_t *queue, uint64_t seq);

void zqi_rs_consumer_drop (zqi_r_server_t *self, uint32_t index);

int zqi_rs_send_command (zqi_r_server_t *self, const uint8_t *route, size_t route_size, bool more);

//  The reason sent with a REFUSE or ERROR code.
const char *zqi_rs_code_reason (zqi_r_code_t code);

//  ---- Commits (reliable_server_commit.c) ----------------------------------

//  Allocates puts' arrays (empty); 0, or -1 with errno ENOMEM.
int zqi_rs_puts_init (zqi_rs_puts_t *puts);
void zqi_rs_puts_free (zqi_rs_puts_t *puts);
//  Commits the spools the round (self->puts) appended to and answers every
//  PUT of it: CONFIRM for the ones stored, REFUSE with its code for each
//  other; one command per peer and code. The round's PUTs are then none.
void zqi_rs_commit_and_answer (zqi_r_server_t *self);
//  After a failed commit of queue's spool: asks the spool whether the
//  record of pending (appended to queue) was stored; if not, makes the PUT
//  a refusal with the spool's reason (its dedupe record forgotten, counted
//  refused, no longer counted put, or duplicate for a PUT the dedupe
//  window answered).
void zqi_rs_check_stored (zqi_r_server_t *self, zqi_rs_queue_t *queue, zqi_rs_pending_t *pending);
//  Hands the round's PUTs to the committer thread (started at the first
//  call), which commits their spools while the caller reads the next
//  round, and starts an empty round. False (nothing done) when the server
//  has no disk spools, the round before is not settled, or the thread
//  cannot start: then commit them with zqi_rs_commit_and_answer.
bool zqi_rs_commit_behind (zqi_r_server_t *self);
//  True when the commit zqi_rs_commit_behind started has ended (or none is
//  behind): zqi_rs_settle_behind would not wait.
bool zqi_rs_behind_done (zqi_r_server_t *self);
//  Waits until the commit behind ends, the socket has input or one of the
//  server's timers is due, whichever comes first, for ZQI_RS_AWAIT_MS at
//  most. Returns 0 (also when a signal interrupted the wait), 1 when that
//  bound passed first (a slow disk: the call ends and the host polls the
//  committer's eventfd), or -1 with errno (ETERM: the context is ending).
int zqi_rs_await_behind_or_input (zqi_r_server_t *self);
//  Waits for the commit zqi_rs_commit_behind started, if any, and answers
//  its PUTs as zqi_rs_commit_and_answer does. A call of zqi_rs_work may
//  end with a commit behind (and the next round gathered): reads, acks,
//  timers and deliveries may meet one (a queue with records behind is not
//  swept, and is settled before it is closed); what changes or reads a
//  queue's records otherwise (peek, purge, redrive, delete, destroy)
//  settles everything first (zqi_rs_settle_all).
void zqi_rs_settle_behind (zqi_r_server_t *self);
//  Settles what is behind and commits the round gathered, in the calling
//  thread: then no PUT read is in flight or unanswered.
void zqi_rs_settle_all (zqi_r_server_t *self);
//  True when a commit is behind or PUTs are gathered: the server needs a
//  call of zqi_rs_work once the commit ends (its eventfd signals).
bool zqi_rs_in_flight (const zqi_r_server_t *self);
//  Makes the committer's eventfd for a server of spools on disk (the
//  thread itself starts at the first commit behind). Without one (no
//  spools, a store, or eventfd failed: logged), rounds commit in place.
void zqi_rs_committer_init (zqi_r_server_t *self);
//  The committer's eventfd, readable from the end of a commit behind until
//  it is settled, or -1 (none made).
int zqi_rs_committer_fd (const zqi_r_server_t *self);
void zqi_rs_committer_stop (zqi_r_server_t *self);

//  Sends ERROR code with reason to the peer at route; counts it by code and
//  logs it (one line per ZQI_RS_LOG_IVL_MS at most, the others counted).
void zqi_rs_send_error (zqi_r_server_t *self, const uint8_t *route, size_t route_size,
                        zqi_r_code_t code, const char *reason);

//  Turns down what a peer sent that has no id to REFUSE by (a message or
//  batch that cannot be read, a command that cannot be done): counts it
//  among the errors and answers ERROR code with reason, whose line the log
//  shows.
void zqi_rs_turn_down (zqi_r_server_t *self, const uint8_t *route, size_t route_size,
                       zqi_r_code_t code, const char *reason);

void zqi_rs_refuse_put (zqi_r_server_t *self, const zqi_rs_peer_t *from, const uint8_t *id,
                        const char *reason, size_t size);

int zqi_rs_rewrite_attempt (zqi_r_server_t *self, const zq_spool_record_t *record,
                            const zqi_envelope_t *envelope, uint32_t attempt);

//  Forgets what the PUT parses learned of the queue's records (its spool
//  is closed: a spool opened again may give the same seqs to others).
void zqi_rs_parsed_forget (zqi_r_server_t *self, uint32_t queue);

uint32_t zqi_rs_entry_in (zqi_r_server_t *self, const uint8_t *id, uint32_t queue);

uint32_t zqi_rs_entry_for (zqi_r_server_t *self, const uint8_t *id, uint32_t consumer);

void zqi_rs_deliver_all (zqi_r_server_t *self);
//  True if queue's next record waits for room among the messages delayed
//  (max_delayed_messages, _total): nothing of it is ready now.
bool zqi_rs_delay_blocked (const zqi_r_server_t *self, const zqi_rs_queue_t *queue);

zq_msg_t *zqi_rs_local_recv (zqi_r_server_t *self);

//  ---- reliable_server_input.c -------------------------------------------

//  The delay of a NACK: asked_ms when it is 0 or more, else the backoff
//  (nack_backoff_ms doubled doublings times, at most nack_backoff_max_ms);
//  either way at most max_delay_ms.
int64_t zqi_rs_nack_delay (const zqi_r_server_t *self, int64_t asked_ms, uint32_t doublings);

size_t zqi_rs_settle_ids (zqi_r_server_t *self, uint32_t consumer, const zqi_r_command_t *command,
                          size_t *failed_p, int *errnum_p);

//  Reads one message from the socket and handles it. Returns 0 (handled,
//  well formed or not), or -1 with errno EAGAIN (nothing waiting) or
//  another libzmq error.
int zqi_rs_read_one (zqi_r_server_t *self);

//  ---- reliable_server_work.c --------------------------------------------

//  Does the work the socket, the disk and the timers have for the server
//  now (a bounded amount). It may return with a commit behind and PUTs
//  gathered, unanswered (zqi_rs_in_flight): the committer's eventfd
//  signals that commit's end, for the next call. Returns 0, or -1 with
//  errno only for a socket failure (ETERM, ...), after which nothing is in
//  flight.
int zqi_rs_work (zqi_r_server_t *self);

//  ---- reliable_server.c -------------------------------------------------

//  The zqi_r_now time at which the server's next timer is due (probes,
//  delivery deadlines, holds, stalled consumers, sweeps, the store's).
int64_t zqi_rs_next_due (zqi_r_server_t *self);

//  ---- reliable_server_admin.c -------------------------------------------

int zqi_rs_peek (zqi_r_server_t *self, zqi_rs_queue_t *queue, zq_msg_t **msgs, size_t max,
                 size_t *count_p);

//  ---- reliable_server_store.c -------------------------------------------
//  With jetstream_servers set, every named queue lives in the JetStream
//  store: PUTs, CONSUMEs, settles and the admin calls go here, never to a
//  spool.

//  Opens the store the options name, if any (self->store stays NULL when
//  none). 0, or -1 and errno (ENOTSUP: built without libnats).
int zqi_rs_store_open (zqi_r_server_t *self, const zq_options_t *options);
void zqi_rs_store_close (zqi_r_server_t *self);
//  The fd that polls readable when the server has work a host must call it
//  for without input: the store's signal fd (readable while results or
//  deliveries wait), or for spools on disk the committer's eventfd
//  (zqi_rs_committer_fd); -1 when neither.
int zqi_rs_store_fd (zqi_r_server_t *self);
//  Starts storing one PUT (data: its one-frame form, attempt 0) from the
//  round's peer. 0: answered when the store's result comes; else the
//  code to REFUSE it with now.
zqi_r_code_t zqi_rs_store_put (zqi_r_server_t *self, uint32_t peer, const char *name,
                               const uint8_t *id, const uint8_t *data, size_t size);
//  CONSUME of name (valid, authorised) from route: the consumer at
//  *consumer_p, made when ZQI_R_NONE. 0, or -1 and errno (ZQ_ELIMIT).
int zqi_rs_store_consume (zqi_r_server_t *self, uint32_t *consumer_p, const uint8_t *route,
                          size_t route_size, const char *name, uint32_t prefetch);
void zqi_rs_store_cancel (zqi_r_server_t *self, uint32_t consumer, const char *name);
//  As zqi_rs_settle_ids, for deliveries of the store.
size_t zqi_rs_store_settle (zqi_r_server_t *self, uint32_t consumer, const zqi_r_command_t *command,
                            size_t *failed_p, int *errnum_p);
//  A consumer's end (LEAVE, gone): what it held goes back to the store.
void zqi_rs_store_leave (zqi_r_server_t *self, uint32_t consumer);
void zqi_rs_store_consumer_gone (zqi_r_server_t *self, uint32_t index);
//  Answers the store's results, sends its deliveries, runs its timers.
void zqi_rs_store_work (zqi_r_server_t *self);
//  zqi_r_now of the store mode's next timer.
int64_t zqi_rs_store_next_due (zqi_r_server_t *self);
int zqi_rs_store_declare (zqi_r_server_t *self, const char *name);
void zqi_rs_store_names (zqi_r_server_t *self, zlistx_t *names);
int zqi_rs_store_info (zqi_r_server_t *self, const char *name, zq_queue_info_t *info);
int zqi_rs_store_purge (zqi_r_server_t *self, const char *name, uint64_t *count_p);
//  The admin peek and redrive of a store queue (reliable_store.h's peek
//  and redrive; blocking on the server's thread, each request bounded by
//  the store's request wait).
int zqi_rs_store_peek (zqi_r_server_t *self, const char *name, zq_msg_t **msgs, size_t max,
                       size_t *count_p);
int zqi_rs_store_redrive (zqi_r_server_t *self, const char *name, uint64_t *count_p);
int zqi_rs_store_delete (zqi_r_server_t *self, const char *name, int flags, uint64_t *count_p);

#endif
