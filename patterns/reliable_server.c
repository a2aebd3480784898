/*  =========================================================================
    reliable_server - the holder of the reliable pattern (ZQ_SERVER,
    ROUTER): named queues in spools, confirms, credit-based delivery,
    visibility timeouts, nacks with backoff, dead letters, TTL, delayed
    delivery, dedupe, local consumption and the admin calls.

    Work happens in batches: s_work reads up to S_BATCH commands from the
    socket, appends every PUT to its queue's spool, commits each spool
    touched once (one fdatasync under fsync "always"), then sends one
    CONFIRM per producer for the whole batch, runs due timers and delivers
    to consumers that have credit.

    A queue's messages are the records of its spool. One table, keyed by
    message id, tracks the records the server has handed out of a spool
    and not yet acked:
        DELIVERED  in flight at a consumer, until ack, nack, touch, the
                   visibility deadline or the consumer's end
        HELD       kept out of delivery until a time (a "zq-not-before-ms"
                   in the future, or a nack delay); the record stays in
                   flight in the spool, only the id, seq and time are kept
        RETURNED   given back to the spool (zq_spool_return), which hands
                   it out again before newer records; the entry remembers
                   the attempt its next delivery carries
    So memory follows what is in flight, delayed or being redelivered, not
    the backlog. What waits in a consumer's pipe is bounded in bytes too
    (max_unsettled_bytes per connection, max_unsettled_bytes_total in all),
    beside its prefetch. Attempts live in these entries: a restart of the server
    delivers every unacked record again with the attempt it was stored
    with (the consumer's death and visibility timeouts do count).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable.h"
#include <dirent.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>

#define S_BATCH         1024 //  commands read per round of work
#define S_BATCH_PEERS   64   //  producers one round confirms (more ends the round)
#define S_LOCAL         0    //  consumer index of local consumption
#define S_RETRY_MS      1000 //  dead-lettering that failed is tried again after this
#define S_LOG_IVL_MS    1000 //  at most one line about refusals in this time
#define S_RESUME_MIN_MS 1    //  first retry of consumers whose pipe was full
#define S_RESUME_MAX_MS 50   //  longest wait between those retries

//  File descriptors. An open queue holds at most S_QUEUE_FDS (its spool's
//  directory, lock, the segment written and the segment read). Queues
//  share what RLIMIT_NOFILE leaves after a reserve for connections,
//  sockets and libzmq: a quarter of the limit, at least S_FD_RESERVE.
//  Past that budget the least recently used idle queue is closed (its
//  spool reopens on demand); if none is idle, the queue is refused. New
//  queues get all but an eighth of the budget: the rest keeps existing
//  queues servable when clients hold every other queue busy.
#define S_QUEUE_FDS    4
#define S_FD_RESERVE   64
#define S_OPEN_MIN     4     //  queues open at once, however low the limit
#define S_LIMIT_LOG_MS 10000 //  a refusal for a limit is logged once per this

//  Why a queue or a CONSUME was refused (s_limit_log).
enum {
    S_LIMIT_QUEUES = 0,
    S_LIMIT_BUDGET = 1,
    S_LIMIT_PROCESS = 2,
    S_LIMIT_CONSUMER = 3,
    S_LIMITS = 4
};

enum { S_DELIVERED = 1, S_HELD = 2, S_RETURNED = 3 };

typedef struct {
    char *name;
    uint32_t index;
    zq_spool_t *spool;
    bool is_dead;        //  a dead-letter queue: never dead-letters itself
    uint32_t dead;       //  index of NAME.dead, or ZQI_R_NONE until needed
    uint32_t *consumers; //  indexes of the consumers subscribed
    uint32_t consumer_count;
    uint32_t consumer_capacity;
    uint32_t rr;        //  round-robin position in consumers
    uint64_t in_flight; //  DELIVERED entries
    uint64_t held;      //  HELD entries
    bool appended;      //  records appended this round, not yet committed
    bool commit_failed; //  this round's commit failed: ask each record
    bool complained;    //  a read error was logged already
    zq_queue_info_t counters;
    //  spool NULL: the queue is closed (idle, its files given back); what
    //  its spool held when closed, for info without reopening it.
    uint64_t used; //  when last named (server's use_clock), for closing the least recent
    zq_spool_stats_t closed_stats;
    uint64_t closed_oldest_ms; //  created_ms of its oldest ready message, or 0
} s_queue_t;

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
} s_consumer_t;

//  One PUT of the current round, waiting for the commit.
typedef struct {
    uint8_t id[ZQ_MSG_ID_SIZE];
    uint32_t peer;  //  index in the round's peers
    uint32_t queue; //  ZQI_R_NONE when refused before storing
    uint64_t seq;
    uint8_t code;      //  0: confirm if stored; else the refusal code
    zqi_r_seen_t seen; //  its dedupe key, once stored
} s_pending_t;

typedef struct {
    uint8_t route_size;
    uint8_t route[255];
} s_peer_t;

struct _zqi_r_server_t {
    zqi_r_common_t common;
    const zq_options_t *options;
    char *spool_dir; //  NULL: queues in memory
    int64_t visibility_ms;
    uint32_t max_attempts;
    int64_t backoff_ms;
    int64_t backoff_max_ms;
    uint32_t max_queues;
    uint32_t dead_unmade;         //  queues whose NAME.dead has a place kept but does not exist
    bool starting;                //  opening the queues found in the spool directory
    uint32_t max_consumer_queues; //  most queues one remote consumer consumes
    uint32_t local_prefetch;
    size_t max_message_bytes;
    int64_t max_delay_ms;               //  longest NACK delay or TOUCH extension
    uint64_t max_unsettled_bytes;       //  per remote consumer connection
    uint64_t max_unsettled_bytes_total; //  over all of them
    uint64_t unsettled_bytes;           //  sum of their delivered and expired bytes
    uint32_t next_session;
    zqi_log_limit_t refusal_log;      //  PUTs and settles turned down
    zqi_log_limit_t ack_failure_log;  //  acks the spool did not take
    zqi_log_limit_t dead_failure_log; //  messages not dead-lettered now
    uint8_t instance[ZQI_R_INSTANCE_SIZE];
    s_queue_t **queues;
    uint32_t queue_count;
    uint32_t queue_capacity;
    zhashx_t *queue_by_name; //  name -> index + 1
    s_queue_t *last_queue;   //  the last queue a PUT named
    s_queue_t *pinned;       //  a queue an admin call works on: kept open
    uint32_t open_count;     //  queues whose spool is open
    uint32_t open_max;       //  most open at once (the fd budget)
    uint64_t use_clock;
    zqi_log_limit_t limit_log[S_LIMITS]; //  S_LIMIT_*: refusals for a limit
    s_consumer_t *consumers;
    uint32_t consumer_capacity;
    zhashx_t *consumer_by_route; //  hex route -> index + 1
    zqi_r_table_t table;
    zqi_r_dedupe_t dedupe;
    s_pending_t *pending;
    uint32_t pending_count;
    s_peer_t peers[S_BATCH_PEERS];
    uint32_t peer_count;
    uint32_t *touched; //  queues appended to this round
    uint32_t touched_count;
    zqi_buf_t buf;   //  command frames
    zqi_buf_t bytes; //  joined or rewritten envelopes
    int64_t next_probe;
    int64_t now;        //  zclock_mono at the start of the current round
    int64_t work_ms;    //  when zq_queue_recv last ran a whole round
    bool drained;       //  the last round read the socket empty
    int64_t resume_due; //  zclock_mono of the next try of stalled consumers; 0: none
    int64_t resume_ms;  //  the wait before that try, doubled while nothing goes
    uint64_t conflicts; //  PUTs refused: their id was stored with other content
};

//  ---- Names and queues ---------------------------------------------------

static s_queue_t *
s_queue_find (zqi_r_server_t *self, const char *name)
{
    uintptr_t slot = (uintptr_t)zhashx_lookup (self->queue_by_name, name);
    return slot ? self->queues[slot - 1] : NULL;
}

//  Makes the spool directory (and its parents).
static int
s_mkdirs (const char *path)
{
    char buffer[4096];
    size_t length = strlen (path);
    if (length >= sizeof buffer)
        return zqi_fail (ENAMETOOLONG);
    memcpy (buffer, path, length + 1);
    for (size_t i = 1; i <= length; i++)
        if (buffer[i] == '/' || buffer[i] == '\0') {
            char saved = buffer[i];
            buffer[i] = '\0';
            if (mkdir (buffer, 0700) && errno != EEXIST)
                return -1;
            buffer[i] = saved;
        }
    return 0;
}

//  How many queues may be open when a queue is created (or opened at
//  start): all but an eighth of the budget.
static uint32_t
s_open_new_max (zqi_r_server_t *self)
{
    return self->open_max - self->open_max / 8;
}

//  Logs a refusal for a limit (S_LIMIT_*) at most once per S_LIMIT_LOG_MS,
//  with how many were refused since the last line.
static void
s_limit_log (zqi_r_server_t *self, int which, const char *name)
{
    uint64_t skipped;
    if (!zqi_log_limit_due (&self->limit_log[which], zclock_mono (), S_LIMIT_LOG_MS, &skipped))
        return;
    uint64_t refused = skipped + 1;
    if (which == S_LIMIT_QUEUES)
        zqi_log (ZQ_LOG_WARNING,
                 "reliable: new queue %s refused: max_queues (%" PRIu32 ") reached (%" PRIu64
                 " refused since the last such line)",
                 name, self->max_queues, refused);
    else if (which == S_LIMIT_BUDGET)
        zqi_log (ZQ_LOG_WARNING,
                 "reliable: queue %s refused: the file descriptor budget is spent (%" PRIu32
                 " queues open, none idle; RLIMIT_NOFILE allows %" PRIu32 ", new queues %" PRIu32
                 "; %" PRIu64 " refused since the last such line)",
                 name, self->open_count, self->open_max, s_open_new_max (self), refused);
    else if (which == S_LIMIT_CONSUMER)
        zqi_log (ZQ_LOG_WARNING,
                 "reliable: CONSUME of %s refused: a connection consumes at most "
                 "max_consumer_queues (%" PRIu32 ") queues (%" PRIu64
                 " refused since the last such line)",
                 name, self->max_consumer_queues, refused);
    else
        zqi_log (ZQ_LOG_WARNING,
                 "reliable: queue %s refused: the process has no file descriptor left "
                 "(RLIMIT_NOFILE; %" PRIu32 " queues open, none idle; %" PRIu64
                 " refused since the last such line)",
                 name, self->open_count, refused);
}

static int s_peek (zqi_r_server_t *self, s_queue_t *queue, zq_msg_t **msgs, size_t max,
                   size_t *count_p);

//  True if the queue's spool can be closed now: nothing of it is in
//  flight, held or subscribed, and it is not the queue being opened or
//  one an admin call works on.
static bool
s_queue_idle (zqi_r_server_t *self, s_queue_t *queue, s_queue_t *keep)
{
    if (!queue->spool || queue == keep || queue == self->pinned || queue->consumer_count ||
        queue->in_flight || queue->held)
        return false;
    zq_spool_stats_t stats;
    zq_spool_stats (queue->spool, &stats);
    return stats.in_flight == 0;
}

//  The REFUSE code for a record its spool refused (errno).
static zqi_r_code_t
s_store_code (int errnum)
{
    return errnum == ZQ_EFULL                     ? ZQI_R_CODE_FULL
           : errnum == EMFILE || errnum == ENFILE ? ZQI_R_CODE_BUSY
                                                  : ZQI_R_CODE_FAILED;
}

//  Closes an idle queue's spool, giving its files back. Records appended
//  this round are committed first and their PUTs settled.
static void
s_queue_close (zqi_r_server_t *self, s_queue_t *queue)
{
    if (queue->appended) {
        bool failed = zq_spool_commit (queue->spool) != 0;
        for (uint32_t i = 0; i < self->pending_count; i++) {
            s_pending_t *pending = &self->pending[i];
            if (pending->code || pending->queue != queue->index)
                continue;
            if (failed && zq_spool_wait (queue->spool, pending->seq)) {
                pending->code = s_store_code (errno);
                zqi_r_dedupe_forget (&self->dedupe, &pending->seen);
                queue->counters.refused++;
            }
            pending->queue = ZQI_R_NONE; //  settled: code 0 is a confirm
        }
        for (uint32_t i = 0; i < self->touched_count; i++)
            if (self->touched[i] == queue->index) {
                self->touched[i] = self->touched[--self->touched_count];
                break;
            }
        queue->appended = false;
    }
    zq_msg_t *oldest = NULL;
    size_t count = 0;
    queue->closed_oldest_ms = 0;
    if (s_peek (self, queue, &oldest, 1, &count) == 0 && count == 1)
        queue->closed_oldest_ms = zq_msg_created_ms (oldest);
    zq_msg_destroy (&oldest);
    zq_spool_stats (queue->spool, &queue->closed_stats);
    zq_spool_destroy (&queue->spool);
    self->open_count--;
}

//  Closes the least recently used idle queue other than keep. Returns
//  false if no queue is idle.
static bool
s_close_idle (zqi_r_server_t *self, s_queue_t *keep)
{
    s_queue_t *victim = NULL;
    for (uint32_t index = 0; index < self->queue_count; index++) {
        s_queue_t *queue = self->queues[index];
        if ((!victim || queue->used < victim->used) && s_queue_idle (self, queue, keep))
            victim = queue;
    }
    if (victim)
        s_queue_close (self, victim);
    return victim != NULL;
}

//  Opens the queue's spool if it is closed (is_new: a queue being
//  created), closing idle queues first when the budget is spent or the
//  process is out of descriptors. Returns 0, or -1 with errno EMFILE (no
//  descriptor for it: refused for now) or the spool's errno.
static int
s_queue_open (zqi_r_server_t *self, s_queue_t *queue, bool is_new)
{
    queue->used = ++self->use_clock;
    if (queue->spool)
        return 0;
    uint32_t limit = is_new ? s_open_new_max (self) : self->open_max;
    while (self->open_count >= limit)
        if (!s_close_idle (self, queue)) {
            s_limit_log (self, S_LIMIT_BUDGET, queue->name);
            return zqi_fail (EMFILE);
        }
    char *dir = NULL;
    if (self->spool_dir) {
        dir = zsys_sprintf ("%s/%s", self->spool_dir, queue->name);
        if (!dir)
            return zqi_fail (ENOMEM);
    }
    for (int attempt = 0; attempt < 2 && !queue->spool; attempt++) {
        queue->spool = zqi_r_spool_open (self->options, dir);
        if (!queue->spool && ((errno != EMFILE && errno != ENFILE) || !s_close_idle (self, queue)))
            break;
    }
    int saved_errno = errno;
    zstr_free (&dir);
    if (!queue->spool) {
        if (saved_errno == EMFILE || saved_errno == ENFILE) {
            s_limit_log (self, S_LIMIT_PROCESS, queue->name);
            return zqi_fail (EMFILE);
        }
        zqi_log (ZQ_LOG_ERROR, "reliable: cannot open the spool of queue %s: %s", queue->name,
                 zq_strerror (saved_errno));
        return zqi_fail (saved_errno);
    }
    self->open_count++;
    return 0;
}

//  The queue whose dead-letter queue is the dead-letter queue named key
//  (NAME for NAME.dead), or NULL if no such queue exists (a dead-letter
//  queue has none: NAME.dead.dead holds nobody's dead letters).
static s_queue_t *
s_dead_parent (zqi_r_server_t *self, const char *key, size_t size)
{
    char parent[ZQ_QUEUE_NAME_MAX + sizeof ZQ_QUEUE_DEAD_SUFFIX];
    size_t parent_size = size - (sizeof ZQ_QUEUE_DEAD_SUFFIX - 1);
    memcpy (parent, key, parent_size);
    parent[parent_size] = '\0';
    s_queue_t *queue = s_queue_find (self, parent);
    return queue && !queue->is_dead ? queue : NULL;
}

//  The dead-letter queue of the queue named key, or NULL if it does not
//  exist.
static s_queue_t *
s_dead_child (zqi_r_server_t *self, const char *key)
{
    char name[ZQ_QUEUE_NAME_MAX + sizeof ZQ_QUEUE_DEAD_SUFFIX];
    snprintf (name, sizeof name, "%s%s", key, ZQ_QUEUE_DEAD_SUFFIX);
    return s_queue_find (self, name);
}

//  A new queue named key (size bytes), closed and not yet registered.
//  NULL with errno ZQ_ELIMIT (max_queues reached) or ENOMEM.
//
//  A queue's dead-letter queue always has a place: while dead-lettering
//  is on (max_attempts), a new queue takes a place for itself and one
//  kept for its NAME.dead (unless that exists), and NAME.dead takes the
//  place kept for it. So the places taken, queue_count + dead_unmade,
//  never pass max_queues through a client. Queues found in the spool
//  directory at start count one each, as far as max_queues goes.
static s_queue_t *
s_queue_new (zqi_r_server_t *self, const char *key, size_t size)
{
    bool is_dead = zqi_queue_name_check (key, size) == 1;
    uint32_t places = 1;
    if (is_dead && s_dead_parent (self, key, size))
        places = 0;
    else if (!is_dead && self->max_attempts && !self->starting && !s_dead_child (self, key))
        places = 2;
    uint64_t taken = (uint64_t)self->queue_count + (self->starting ? 0 : self->dead_unmade);
    if (places && taken + places > self->max_queues) {
        s_limit_log (self, S_LIMIT_QUEUES, key);
        errno = ZQ_ELIMIT;
        return NULL;
    }
    if (self->queue_count == self->queue_capacity) {
        uint32_t capacity = self->queue_capacity ? self->queue_capacity * 2 : 16;
        s_queue_t **queues = (s_queue_t **)realloc (self->queues, capacity * sizeof (s_queue_t *));
        if (!queues) {
            errno = ENOMEM;
            return NULL;
        }
        self->queues = queues;
        self->queue_capacity = capacity;
    }
    s_queue_t *queue = (s_queue_t *)calloc (1, sizeof (s_queue_t));
    if (!queue || !(queue->name = strdup (key))) {
        free (queue);
        errno = ENOMEM;
        return NULL;
    }
    queue->dead = ZQI_R_NONE;
    queue->is_dead = is_dead;
    return queue;
}

//  Makes a queue from s_queue_new one of the server's, linked by name to
//  its dead-letter queue or to the queue it holds the dead letters of
//  (whichever was found or made first).
static void
s_queue_register (zqi_r_server_t *self, s_queue_t *queue)
{
    queue->index = self->queue_count;
    self->queues[self->queue_count++] = queue;
    zhashx_insert (self->queue_by_name, queue->name, (void *)(uintptr_t)(queue->index + 1));
    if (queue->is_dead) {
        s_queue_t *parent = s_dead_parent (self, queue->name, strlen (queue->name));
        if (parent) {
            parent->dead = queue->index;
            if (self->max_attempts && self->dead_unmade)
                self->dead_unmade--;
        }
    } else {
        s_queue_t *dead = s_dead_child (self, queue->name);
        if (dead)
            queue->dead = dead->index;
        else if (self->max_attempts)
            self->dead_unmade++;
    }
}

//  Returns queue name (size bytes, not NUL-terminated) with its spool
//  open, creating it if needed when create is true. NULL with errno EINVAL
//  (bad name), ZQ_ENOTFOUND (absent, create false), ZQ_ELIMIT (a new
//  queue past max_queues), EMFILE (the fd budget is spent and no queue is
//  idle) or the spool's errno. A new queue that cannot be opened is not
//  kept.
static s_queue_t *
s_queue_get (zqi_r_server_t *self, const char *name, size_t size, bool create)
{
    s_queue_t *queue = NULL;
    if (self->last_queue && strlen (self->last_queue->name) == size &&
        memcmp (self->last_queue->name, name, size) == 0)
        queue = self->last_queue;
    else {
        if (zqi_queue_name_check (name, size) < 0)
            return NULL;
        char key[ZQ_QUEUE_NAME_MAX + sizeof ZQ_QUEUE_DEAD_SUFFIX];
        memcpy (key, name, size);
        key[size] = '\0';
        queue = s_queue_find (self, key);
        if (!queue) {
            if (!create) {
                errno = ZQ_ENOTFOUND;
                return NULL;
            }
            queue = s_queue_new (self, key, size);
            if (!queue)
                return NULL;
            //  A dead-letter queue of a queue that exists may use the
            //  eighth of the fd budget kept for existing queues.
            bool kept = queue->is_dead && s_dead_parent (self, key, size);
            if (s_queue_open (self, queue, !kept)) {
                int saved = errno;
                free (queue->name);
                free (queue);
                errno = saved;
                return NULL;
            }
            s_queue_register (self, queue);
        }
    }
    if (s_queue_open (self, queue, false))
        return NULL;
    self->last_queue = queue;
    return queue;
}

//  The spool of a queue that may be closed, opened. NULL with errno as
//  s_queue_open.
static zq_spool_t *
s_spool (zqi_r_server_t *self, s_queue_t *queue)
{
    return s_queue_open (self, queue, false) ? NULL : queue->spool;
}

//  Returns the dead-letter queue of queue with its spool open, making it
//  if needed; NULL with errno as s_queue_get.
static s_queue_t *
s_dead_queue (zqi_r_server_t *self, s_queue_t *queue)
{
    if (queue->dead != ZQI_R_NONE) {
        s_queue_t *dead = self->queues[queue->dead];
        return s_queue_open (self, dead, false) ? NULL : dead;
    }
    char name[ZQ_QUEUE_NAME_MAX + sizeof ZQ_QUEUE_DEAD_SUFFIX];
    snprintf (name, sizeof name, "%s%s", queue->name, ZQ_QUEUE_DEAD_SUFFIX);
    s_queue_t *last = self->last_queue;
    s_queue_t *dead = s_queue_get (self, name, strlen (name), true);
    self->last_queue = last;
    if (dead)
        queue->dead = dead->index;
    return dead;
}

//  ---- Consumers ----------------------------------------------------------

static void
s_route_key (const uint8_t *route, size_t size, char *key)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < size; i++) {
        key[2 * i] = hex[route[i] >> 4];
        key[2 * i + 1] = hex[route[i] & 15];
    }
    key[2 * size] = '\0';
}

static uint32_t
s_consumer_find (zqi_r_server_t *self, const uint8_t *route, size_t size)
{
    char key[512];
    s_route_key (route, size, key);
    uintptr_t slot = (uintptr_t)zhashx_lookup (self->consumer_by_route, key);
    return slot ? (uint32_t)(slot - 1) : ZQI_R_NONE;
}

//  Returns a free consumer slot (1 and up; 0 is local consumption).
static uint32_t
s_consumer_slot (zqi_r_server_t *self)
{
    for (uint32_t index = 1; index < self->consumer_capacity; index++)
        if (!self->consumers[index].in_use)
            return index;
    uint32_t capacity = self->consumer_capacity * 2;
    s_consumer_t *consumers =
        (s_consumer_t *)realloc (self->consumers, capacity * sizeof (s_consumer_t));
    if (!consumers)
        return ZQI_R_NONE;
    memset (consumers + self->consumer_capacity, 0,
            (capacity - self->consumer_capacity) * sizeof (s_consumer_t));
    self->consumers = consumers;
    uint32_t index = self->consumer_capacity;
    self->consumer_capacity = capacity;
    return index;
}

//  A session number for a new consumer: never 0, not reused before 2^32-1
//  others were made.
static uint32_t
s_session_new (zqi_r_server_t *self)
{
    if (++self->next_session == 0)
        self->next_session = 1;
    return self->next_session;
}

static uint32_t
s_consumer_new (zqi_r_server_t *self, const uint8_t *route, size_t size)
{
    uint32_t index = s_consumer_slot (self);
    if (index == ZQI_R_NONE)
        return ZQI_R_NONE;
    s_consumer_t *consumer = &self->consumers[index];
    memset (consumer, 0, sizeof *consumer);
    consumer->in_use = true;
    consumer->route_size = (uint8_t)size;
    memcpy (consumer->route, route, size);
    consumer->head = ZQI_R_NONE;
    consumer->session = s_session_new (self);
    char key[512];
    s_route_key (route, size, key);
    zhashx_insert (self->consumer_by_route, key, (void *)(uintptr_t)(index + 1));
    return index;
}

static int
s_array_add (uint32_t **array, uint32_t *count, uint32_t *capacity, uint32_t value)
{
    for (uint32_t i = 0; i < *count; i++)
        if ((*array)[i] == value)
            return 0;
    if (*count == *capacity) {
        uint32_t grown = *capacity ? *capacity * 2 : 4;
        uint32_t *bigger = (uint32_t *)realloc (*array, grown * sizeof (uint32_t));
        if (!bigger)
            return zqi_fail (ENOMEM);
        *array = bigger;
        *capacity = grown;
    }
    (*array)[(*count)++] = value;
    return 0;
}

static bool
s_array_remove (uint32_t *array, uint32_t *count, uint32_t value)
{
    for (uint32_t i = 0; i < *count; i++)
        if (array[i] == value) {
            array[i] = array[--*count];
            return true;
        }
    return false;
}

static int
s_subscribe (zqi_r_server_t *self, uint32_t index, s_queue_t *queue)
{
    s_consumer_t *consumer = &self->consumers[index];
    if (s_array_add (&consumer->queues, &consumer->queue_count, &consumer->queue_capacity,
                     queue->index) ||
        s_array_add (&queue->consumers, &queue->consumer_count, &queue->consumer_capacity, index))
        return -1;
    return 0;
}

static void
s_unsubscribe (zqi_r_server_t *self, uint32_t index, s_queue_t *queue)
{
    s_consumer_t *consumer = &self->consumers[index];
    s_array_remove (consumer->queues, &consumer->queue_count, queue->index);
    s_array_remove (queue->consumers, &queue->consumer_count, index);
    if (queue->rr >= queue->consumer_count)
        queue->rr = 0;
}

//  ---- Entries ------------------------------------------------------------

static void
s_owner_link (zqi_r_server_t *self, uint32_t index, uint32_t owner)
{
    zqi_r_entry_t *entry = &self->table.entries[index];
    s_consumer_t *consumer = &self->consumers[owner];
    entry->owner = owner;
    entry->holder = consumer->session;
    entry->prev = ZQI_R_NONE;
    entry->next = consumer->head;
    if (consumer->head != ZQI_R_NONE)
        self->table.entries[consumer->head].prev = index;
    consumer->head = index;
    consumer->in_flight++;
    consumer->delivered_bytes += entry->bytes;
    self->unsettled_bytes += entry->bytes;
}

static void
s_owner_unlink (zqi_r_server_t *self, uint32_t index)
{
    zqi_r_entry_t *entry = &self->table.entries[index];
    s_consumer_t *consumer = &self->consumers[entry->owner];
    if (entry->prev != ZQI_R_NONE)
        self->table.entries[entry->prev].next = entry->next;
    else
        consumer->head = entry->next;
    if (entry->next != ZQI_R_NONE)
        self->table.entries[entry->next].prev = entry->prev;
    consumer->in_flight--;
    consumer->delivered_bytes -= entry->bytes;
    self->unsettled_bytes -= entry->bytes;
    entry->owner = entry->prev = entry->next = ZQI_R_NONE;
}

//  True if delivery number a was sent at or after b (numbers wrap).
static bool
s_sent_since (uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) >= 0;
}

//  The DELIVERED entry's visibility ran out: its bytes stay the
//  consumer's, as expired, until it shows it read past them.
static void
s_owner_expire (zqi_r_server_t *self, uint32_t index)
{
    zqi_r_entry_t *entry = &self->table.entries[index];
    s_consumer_t *consumer = &self->consumers[entry->owner];
    if (!entry->bytes)
        return;
    if (!consumer->expired_bytes || s_sent_since (entry->sent, consumer->expired_sent)) {
        consumer->expired_sent = entry->sent;
        memcpy (consumer->expired_id, entry->id, ZQ_MSG_ID_SIZE);
    }
    consumer->expired_bytes += entry->bytes;
    self->unsettled_bytes += entry->bytes;
}

//  The consumer settled id, entry the delivery of it that it held (NULL
//  if none): naming the last expired delivery's id, or settling one sent
//  at or after it, shows it read its pipe that far, so its expired
//  deliveries are out of the pipe.
static void
s_read_through (zqi_r_server_t *self, s_consumer_t *consumer, const zqi_r_entry_t *entry,
                const uint8_t *id)
{
    if (consumer->expired_bytes && ((entry && s_sent_since (entry->sent, consumer->expired_sent)) ||
                                    memcmp (id, consumer->expired_id, ZQ_MSG_ID_SIZE) == 0)) {
        self->unsettled_bytes -= consumer->expired_bytes;
        consumer->expired_bytes = 0;
    }
}

//  True if the remote consumer may be sent another delivery: what it holds
//  unsettled is under max_unsettled_bytes and the server's total under
//  max_unsettled_bytes_total, or it holds nothing (one message always
//  goes, however big).
static bool
s_has_room (zqi_r_server_t *self, const s_consumer_t *consumer)
{
    uint64_t held = consumer->delivered_bytes + consumer->expired_bytes;
    return held == 0 || (held < self->max_unsettled_bytes &&
                         self->unsettled_bytes < self->max_unsettled_bytes_total);
}

//  Takes the entry out of its state (levels, owner, timer).
static void
s_entry_leave (zqi_r_server_t *self, uint32_t index)
{
    zqi_r_entry_t *entry = &self->table.entries[index];
    s_queue_t *queue = self->queues[entry->queue];
    if (entry->state == S_DELIVERED) {
        s_owner_unlink (self, index);
        queue->in_flight--;
    } else if (entry->state == S_HELD)
        queue->held--;
    zqi_r_table_unschedule (&self->table, index);
    entry->state = 0;
}

//  Holds the entry's record out of delivery until due (zclock_mono).
static void
s_hold (zqi_r_server_t *self, uint32_t index, int64_t due)
{
    s_entry_leave (self, index);
    zqi_r_entry_t *entry = &self->table.entries[index];
    entry->state = S_HELD;
    self->queues[entry->queue]->held++;
    zqi_r_table_schedule (&self->table, index, due);
}

//  Gives the entry's record back to its spool for delivery.
static void
s_return (zqi_r_server_t *self, uint32_t index)
{
    s_entry_leave (self, index);
    zqi_r_entry_t *entry = &self->table.entries[index];
    entry->state = S_RETURNED;
    zq_spool_return (self->queues[entry->queue]->spool, entry->seq);
}

//  A delivery failed (nack, visibility timeout, consumer gone): the next
//  one carries attempt + 1, after delay_ms.
static void
s_fail_delivery (zqi_r_server_t *self, uint32_t index, int64_t delay_ms)
{
    zqi_r_entry_t *entry = &self->table.entries[index];
    if (entry->attempt < UINT32_MAX)
        entry->attempt++;
    if (delay_ms > 0)
        s_hold (self, index, zclock_mono () + delay_ms);
    else
        s_return (self, index);
}

//  Counts an ack the spool did not take (errnum: ENOMEM, or the spool's
//  failure) and logs it, one line per S_LOG_IVL_MS at most.
static void
s_ack_failed (zqi_r_server_t *self, const s_queue_t *queue, int errnum)
{
    self->common.ctx->stats->errors++;
    uint64_t skipped;
    if (zqi_log_limit_due (&self->ack_failure_log, zclock_mono (), S_LOG_IVL_MS, &skipped))
        zqi_log (ZQ_LOG_ERROR,
                 "reliable: queue %s did not record an ack (%s): the message stays; %" PRIu64
                 " more since the last line",
                 queue->name, zq_strerror (errnum), skipped);
}

//  Acks the entry's record and forgets it. Returns 0, or -1 with errno of
//  zq_spool_ack (counted and logged): the entry and its record stay as
//  they were.
static int
s_entry_ack (zqi_r_server_t *self, uint32_t index)
{
    zqi_r_entry_t *entry = &self->table.entries[index];
    //  A RETURNED entry's queue may be closed: it is opened again, and if
    //  it cannot be, the ack fails as one the spool refused.
    s_queue_t *queue = self->queues[entry->queue];
    zq_spool_t *spool = s_spool (self, queue);
    if (!spool || zq_spool_ack (spool, entry->seq)) {
        int errnum = errno;
        s_ack_failed (self, queue, errnum);
        errno = errnum;
        return -1;
    }
    s_entry_leave (self, index);
    zqi_r_table_remove (&self->table, index);
    return 0;
}

//  Acks a record no entry tracks. Returns 0, or -1 (counted and logged):
//  the record is given back to the spool, which hands it out again first.
static int
s_record_ack (zqi_r_server_t *self, s_queue_t *queue, uint64_t seq)
{
    if (zq_spool_ack (queue->spool, seq) == 0)
        return 0;
    int errnum = errno;
    s_ack_failed (self, queue, errnum);
    zq_spool_return (queue->spool, seq);
    errno = errnum;
    return -1;
}

//  The consumer is gone: its deliveries go back to their queues.
static void
s_consumer_drop (zqi_r_server_t *self, uint32_t index)
{
    s_consumer_t *consumer = &self->consumers[index];
    if (!consumer->in_use)
        return;
    while (consumer->head != ZQI_R_NONE)
        s_fail_delivery (self, consumer->head, 0);
    while (consumer->queue_count)
        s_unsubscribe (self, index, self->queues[consumer->queues[0]]);
    self->unsettled_bytes -= consumer->expired_bytes;
    free (consumer->queues);
    if (index != S_LOCAL) {
        char key[512];
        s_route_key (consumer->route, consumer->route_size, key);
        zhashx_delete (self->consumer_by_route, key);
    }
    memset (consumer, 0, sizeof *consumer);
    consumer->head = ZQI_R_NONE;
}

//  ---- Sending ------------------------------------------------------------

//  Sends route then the frame in buf (and more frames if more). Returns
//  0, or -1 with errno (EHOSTUNREACH: peer gone; EAGAIN: its pipe full).
static int
s_send_command (zqi_r_server_t *self, const uint8_t *route, size_t route_size, bool more)
{
    void *handle = self->common.handle;
    if (zmq_send (handle, route, route_size, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1)
        return -1;
    return zmq_send (handle, self->buf.data, self->buf.size,
                     (more ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) == -1
               ? -1
               : 0;
}

static void
s_send_error (zqi_r_server_t *self, const uint8_t *route, size_t route_size, zqi_r_code_t code,
              const char *reason)
{
    if (zqi_r_put_command (&self->buf, 4, ZQI_R_ERROR) == 0 &&
        zqi_mp_put_uint (&self->buf, code) == 0 &&
        zqi_mp_put_str (&self->buf, reason, strlen (reason)) == 0)
        s_send_command (self, route, route_size, false);
}

//  Counts a PUT or settle the server turned down and logs it, one line per
//  S_LOG_IVL_MS at most (the lines left out are counted in the next).
static void
s_turned_down (zqi_r_server_t *self, const char *what, size_t size)
{
    self->common.ctx->stats->errors++;
    uint64_t skipped;
    if (zqi_log_limit_due (&self->refusal_log, zclock_mono (), S_LOG_IVL_MS, &skipped))
        zqi_log (ZQ_LOG_WARNING, "reliable: %s (%zu bytes); %" PRIu64 " more since the last line",
                 what, size, skipped);
}

//  Refuses one PUT at once (REFUSE code 2: never storable), counted and
//  logged.
static void
s_refuse_put (zqi_r_server_t *self, const s_peer_t *from, const uint8_t *id, const char *reason,
              size_t size)
{
    s_turned_down (self, reason, size);
    if (zqi_r_put_command (&self->buf, 5, ZQI_R_REFUSE) == 0 &&
        zqi_mp_put_bin (&self->buf, id, ZQ_MSG_ID_SIZE) == 0 &&
        zqi_mp_put_uint (&self->buf, ZQI_R_CODE_INVALID) == 0 &&
        zqi_mp_put_str (&self->buf, reason, strlen (reason)) == 0)
        s_send_command (self, from->route, from->route_size, false);
}

//  ---- Reading records ----------------------------------------------------

//  Writes the record with its attempt replaced into self->bytes.
static int
s_rewrite_attempt (zqi_r_server_t *self, const zq_spool_record_t *record,
                   const zqi_r_envelope_t *envelope, uint32_t attempt)
{
    const uint8_t *data = (const uint8_t *)record->data;
    zqi_buf_reset (&self->bytes);
    size_t tail = envelope->attempt_offset + envelope->attempt_size;
    if (zqi_buf_append (&self->bytes, data, envelope->attempt_offset) ||
        zqi_mp_put_uint (&self->bytes, attempt) ||
        zqi_buf_append (&self->bytes, data + tail, record->size - tail))
        return -1;
    return 0;
}

//  Counts a message that could not be dead-lettered now (errnum) and
//  logs it, one line per S_LOG_IVL_MS at most.
static void
s_dead_letter_failed (zqi_r_server_t *self, const s_queue_t *queue, int errnum)
{
    self->common.ctx->stats->errors++;
    uint64_t skipped;
    if (zqi_log_limit_due (&self->dead_failure_log, zclock_mono (), S_LOG_IVL_MS, &skipped))
        zqi_log (ZQ_LOG_WARNING,
                 "reliable: cannot dead-letter a message of %s: %s; it is held and tried again in "
                 "%d ms (%" PRIu64 " more such failures since the last line)",
                 queue->name, zq_strerror (errnum), S_RETRY_MS, skipped);
}

//  Moves a record to the dead-letter queue. Returns 0, or -1 (the record
//  is held and tried again later; counted and logged).
static int
s_dead_letter (zqi_r_server_t *self, s_queue_t *queue, uint32_t index,
               const zq_spool_record_t *record, const zqi_r_envelope_t *envelope)
{
    zqi_r_entry_t *entry = &self->table.entries[index];
    s_queue_t *dead = s_dead_queue (self, queue);
    if (!dead || s_rewrite_attempt (self, record, envelope, entry->attempt) ||
        zq_spool_append (dead->spool, self->bytes.data, self->bytes.size, NULL) ||
        zq_spool_commit (dead->spool)) {
        s_dead_letter_failed (self, queue, errno);
        s_hold (self, index, zclock_mono () + S_RETRY_MS);
        return -1;
    }
    dead->counters.put++;
    queue->counters.dead_lettered++;
    if (s_entry_ack (self, index)) {
        //  The copy is stored but the original stays: it is tried again
        //  (the dead-letter queue may then hold it twice, never none).
        s_hold (self, index, zclock_mono () + S_RETRY_MS);
        return -1;
    }
    return 0;
}

//  Returns the index of the entry with id in queue, or ZQI_R_NONE. (Each
//  queue is an id space of its own: other queues may track the same id.)
static uint32_t
s_entry_in (zqi_r_server_t *self, const uint8_t *id, uint32_t queue)
{
    uint32_t cursor = ZQI_R_NONE;
    uint32_t index;
    while ((index = zqi_r_table_find_from (&self->table, id, &cursor)) != ZQI_R_NONE)
        if (self->table.entries[index].queue == queue)
            break;
    return index;
}

//  Returns the index of the entry with id that consumer holds delivered,
//  else of the first with id, or ZQI_R_NONE.
static uint32_t
s_entry_for (zqi_r_server_t *self, const uint8_t *id, uint32_t consumer)
{
    uint32_t cursor = ZQI_R_NONE;
    uint32_t first = ZQI_R_NONE;
    uint32_t index;
    while ((index = zqi_r_table_find_from (&self->table, id, &cursor)) != ZQI_R_NONE) {
        const zqi_r_entry_t *entry = &self->table.entries[index];
        if (entry->state == S_DELIVERED && entry->owner == consumer)
            return index;
        if (first == ZQI_R_NONE)
            first = index;
    }
    return first;
}

//  What to do with a record read from a queue's spool.
typedef enum { S_SKIP = 0, S_SEND = 1, S_STOP = 2 } s_verdict_t;

//  Reads the queue's next ready record and decides its fate: expired,
//  delayed, dead-lettered or a duplicate (S_SKIP, done), or to deliver
//  (S_SEND: *index_p its entry, *record and *envelope filled). S_STOP:
//  nothing ready (or the spool cannot be read).
static s_verdict_t
s_take (zqi_r_server_t *self, s_queue_t *queue, zq_spool_record_t *record,
        zqi_r_envelope_t *envelope, uint32_t *index_p)
{
    if (zq_spool_next (queue->spool, record)) {
        if (errno != EAGAIN && !queue->complained) {
            zqi_log (ZQ_LOG_ERROR, "reliable: queue %s cannot be read: %s", queue->name,
                     zq_strerror (errno));
            queue->complained = true;
        }
        return S_STOP;
    }
    if (zqi_r_envelope_parse ((const uint8_t *)record->data, record->size, NULL, 0, false,
                              envelope)) {
        zqi_log (ZQ_LOG_ERROR, "reliable: queue %s: record %" PRIu64 " is not a message; dropped",
                 queue->name, record->seq);
        if (s_record_ack (self, queue, record->seq))
            return S_STOP;
        queue->counters.dropped++;
        return S_SKIP;
    }
    uint32_t index = s_entry_in (self, envelope->id, queue->index);
    if (index != ZQI_R_NONE) {
        zqi_r_entry_t *entry = &self->table.entries[index];
        if (entry->seq != record->seq) {
            //  Another record of the same message is tracked in this queue:
            //  this copy is a duplicate (a resend stored outside the dedupe
            //  window). The same id in another queue is another message.
            if (s_record_ack (self, queue, record->seq))
                return S_STOP;
            queue->counters.dropped++;
            return S_SKIP;
        }
        s_entry_leave (self, index);
        if (envelope->attempt > entry->attempt)
            entry->attempt = (uint32_t)envelope->attempt;
    } else {
        index = zqi_r_table_add (&self->table, envelope->id);
        if (index == ZQI_R_NONE) {
            zq_spool_return (queue->spool, record->seq);
            return S_STOP;
        }
        zqi_r_entry_t *entry = &self->table.entries[index];
        entry->queue = queue->index;
        entry->seq = record->seq;
        entry->attempt = (uint32_t)envelope->attempt;
    }
    zqi_r_entry_t *entry = &self->table.entries[index];
    int64_t wall = (envelope->ttl_ms >= 0 || envelope->not_before_ms >= 0) ? zqi_r_wall_ms () : 0;
    if (envelope->ttl_ms >= 0 &&
        zqi_r_add_ms ((int64_t)envelope->created_ms, envelope->ttl_ms) <= wall) {
        if (s_entry_ack (self, index))
            s_hold (self, index, zclock_mono () + S_RETRY_MS);
        else
            queue->counters.expired++;
        return S_SKIP;
    }
    if (envelope->not_before_ms > wall) {
        s_hold (self, index, zqi_r_add_ms (zclock_mono (), envelope->not_before_ms - wall));
        return S_SKIP;
    }
    if (self->max_attempts && !queue->is_dead && entry->attempt >= self->max_attempts) {
        s_dead_letter (self, queue, index, record, envelope);
        return S_SKIP;
    }
    *index_p = index;
    return S_SEND;
}

//  Marks the entry delivered to consumer owner.
static void
s_delivered (zqi_r_server_t *self, s_queue_t *queue, uint32_t index, uint32_t owner, size_t bytes)
{
    zqi_r_entry_t *entry = &self->table.entries[index];
    entry->state = S_DELIVERED;
    entry->bytes = (uint32_t)bytes;
    entry->sent = ++self->consumers[owner].sent;
    s_owner_link (self, index, owner);
    queue->in_flight++;
    queue->counters.delivered++;
    if (entry->attempt > 0)
        queue->counters.redelivered++;
    zqi_r_table_schedule (&self->table, index, self->now + self->visibility_ms);
}

//  Sends a DELIVER to a remote consumer. Returns 0 or -1 with errno.
static int
s_send_deliver (zqi_r_server_t *self, s_consumer_t *consumer, const zq_spool_record_t *record,
                const zqi_r_envelope_t *envelope, uint32_t attempt)
{
    const void *data = record->data;
    size_t size = record->size;
    if (attempt != envelope->attempt) {
        if (s_rewrite_attempt (self, record, envelope, attempt))
            return -1;
        data = self->bytes.data;
        size = self->bytes.size;
    }
    if (zqi_r_put_command (&self->buf, 3, ZQI_R_DELIVER) ||
        zqi_mp_put_uint (&self->buf, (uint64_t)self->visibility_ms))
        return -1;
    if (s_send_command (self, consumer->route, consumer->route_size, true))
        return -1;
    //  Past the first frame the rest cannot meet the high-water mark.
    return zmq_send (self->common.handle, data, size, ZMQ_DONTWAIT) == -1 ? -1 : 0;
}

//  Delivers what the queue has ready to its remote consumers with credit;
//  adds the deliveries sent to *sent_p.
static void
s_deliver_queue (zqi_r_server_t *self, s_queue_t *queue, uint64_t *sent_p)
{
    while (queue->consumer_count) {
        //  The next remote consumer with credit, round-robin.
        uint32_t chosen = ZQI_R_NONE;
        for (uint32_t tried = 0; tried < queue->consumer_count; tried++) {
            uint32_t position = (queue->rr + tried) % queue->consumer_count;
            uint32_t index = queue->consumers[position];
            s_consumer_t *consumer = &self->consumers[index];
            if (index != S_LOCAL && !consumer->stalled &&
                consumer->in_flight < consumer->prefetch && s_has_room (self, consumer)) {
                chosen = index;
                queue->rr = (position + 1) % queue->consumer_count;
                break;
            }
        }
        if (chosen == ZQI_R_NONE)
            return;
        zq_spool_record_t record;
        zqi_r_envelope_t envelope;
        uint32_t index;
        s_verdict_t verdict = s_take (self, queue, &record, &envelope, &index);
        if (verdict == S_STOP)
            return;
        if (verdict == S_SKIP)
            continue;
        s_consumer_t *consumer = &self->consumers[chosen];
        uint32_t attempt = self->table.entries[index].attempt;
        if (s_send_deliver (self, consumer, &record, &envelope, attempt) == 0) {
            s_delivered (self, queue, index, chosen, record.size);
            (*sent_p)++;
            continue;
        }
        int failure = errno;
        self->table.entries[index].state = S_RETURNED;
        zq_spool_return (queue->spool, record.seq);
        if (failure == EAGAIN)
            consumer->stalled = true;
        else if (failure == EHOSTUNREACH)
            s_consumer_drop (self, chosen);
        else
            return;
    }
}

//  Delivers to every remote consumer with credit. A consumer whose pipe
//  is full (EAGAIN) is stalled for the round; libzmq tells no one when
//  that pipe has room again (a ROUTER has no POLLOUT per peer), so while
//  any is stalled a retry is due after resume_ms: S_RESUME_MIN_MS after a
//  round that sent something, doubled up to S_RESUME_MAX_MS after one
//  that sent nothing (a consumer that has stopped reading costs a round
//  per S_RESUME_MAX_MS, no more).
static void
s_deliver_all (zqi_r_server_t *self)
{
    for (uint32_t index = 1; index < self->consumer_capacity; index++)
        self->consumers[index].stalled = false;
    uint64_t sent = 0;
    for (uint32_t index = 0; index < self->queue_count; index++)
        if (self->queues[index]->consumer_count)
            s_deliver_queue (self, self->queues[index], &sent);
    bool stalled = false;
    for (uint32_t index = 1; index < self->consumer_capacity && !stalled; index++)
        stalled = self->consumers[index].in_use && self->consumers[index].stalled;
    if (!stalled) {
        self->resume_due = 0;
        self->resume_ms = S_RESUME_MIN_MS;
        return;
    }
    if (sent || self->resume_ms < S_RESUME_MIN_MS)
        self->resume_ms = S_RESUME_MIN_MS;
    else if (self->resume_due && self->now >= self->resume_due)
        self->resume_ms =
            self->resume_ms * 2 > S_RESUME_MAX_MS ? S_RESUME_MAX_MS : self->resume_ms * 2;
    self->resume_due = zclock_mono () + self->resume_ms;
}

//  ---- Input --------------------------------------------------------------

//  Returns the round's index of the peer at route, adding it; ZQI_R_NONE
//  when the round has S_BATCH_PEERS peers already.
static uint32_t
s_peer_index (zqi_r_server_t *self, const uint8_t *route, size_t size)
{
    for (uint32_t index = self->peer_count; index-- > 0;)
        if (self->peers[index].route_size == size &&
            memcmp (self->peers[index].route, route, size) == 0)
            return index;
    if (self->peer_count == S_BATCH_PEERS)
        return ZQI_R_NONE;
    s_peer_t *peer = &self->peers[self->peer_count];
    peer->route_size = (uint8_t)size;
    memcpy (peer->route, route, size);
    return self->peer_count++;
}

static s_pending_t *
s_pending_add (zqi_r_server_t *self, uint32_t peer, const uint8_t *id)
{
    s_pending_t *pending = &self->pending[self->pending_count++];
    memcpy (pending->id, id, ZQ_MSG_ID_SIZE);
    pending->peer = peer;
    pending->queue = ZQI_R_NONE;
    pending->seq = 0;
    pending->code = 0;
    return pending;
}

//  Counts a PUT refused because its id was stored in queue with another
//  body, and logs it (the first, then at each power of two: a client
//  cannot flood the log).
static void
s_conflict (zqi_r_server_t *self, s_queue_t *queue, const uint8_t *id)
{
    queue->counters.refused++;
    self->conflicts++;
    if (self->conflicts & (self->conflicts - 1))
        return;
    char hex[ZQ_MSG_ID_SIZE * 2 + 1];
    for (int i = 0; i < ZQ_MSG_ID_SIZE; i++)
        snprintf (hex + 2 * i, 3, "%02x", id[i]);
    zqi_log (ZQ_LOG_WARNING,
             "reliable: queue %s: a PUT reused id %s with other content: refused "
             "(%" PRIu64 " such PUTs so far)",
             queue->name, hex, self->conflicts);
}

//  The REFUSE or ERROR code for a queue that s_queue_get could not give.
static zqi_r_code_t
s_queue_code (int errnum)
{
    return errnum == EINVAL      ? ZQI_R_CODE_INVALID
           : errnum == ZQ_ELIMIT ? ZQI_R_CODE_LIMIT
           : errnum == EMFILE    ? ZQI_R_CODE_BUSY
                                 : ZQI_R_CODE_FAILED;
}

//  The reason sent with a REFUSE or ERROR code.
static const char *
s_code_reason (zqi_r_code_t code)
{
    switch (code) {
        case ZQI_R_CODE_FULL:
            return "storage full";
        case ZQI_R_CODE_INVALID:
            return "invalid queue name";
        case ZQI_R_CODE_LIMIT:
            return "queue limit reached (max_queues)";
        case ZQI_R_CODE_CONFLICT:
            return "id stored with other content";
        case ZQI_R_CODE_BUSY:
            return "no file descriptor to open the queue (too many open queues or "
                   "connections): retry later";
        default:
            return "storage failed";
    }
}

//  Handles a PUT whose envelope frames are first (and second).
static void
s_put (zqi_r_server_t *self, uint32_t peer, const zmq_msg_t *first, const zmq_msg_t *second)
{
    const uint8_t *data = (const uint8_t *)zmq_msg_data ((zmq_msg_t *)first);
    size_t size = zmq_msg_size ((zmq_msg_t *)first);
    const uint8_t *body = second ? (const uint8_t *)zmq_msg_data ((zmq_msg_t *)second) : NULL;
    size_t body_size = second ? zmq_msg_size ((zmq_msg_t *)second) : 0;
    s_peer_t *from = &self->peers[peer];
    zqi_r_envelope_t envelope;
    //  A PUT that can never be stored is refused with its id when the id
    //  can be read (so a producer stops sending it), else answered ERROR.
    const uint8_t *id = NULL;
    if (size + body_size > self->max_message_bytes) {
        if (zqi_r_envelope_id (data, size, &id) == 0)
            s_refuse_put (self, from, id, "message too big", size + body_size);
        else {
            s_turned_down (self, "message too big, no id", size + body_size);
            s_send_error (self, from->route, from->route_size, ZQI_R_CODE_PROTOCOL,
                          "message too big");
        }
        return;
    }
    if (zqi_r_envelope_parse (data, size, body, body_size, true, &envelope)) {
        int failure = errno;
        if (failure != ZQ_EVERSION && zqi_r_envelope_id (data, size, &id) == 0)
            s_refuse_put (self, from, id, "malformed envelope", size + body_size);
        else {
            s_turned_down (self, "malformed envelope, no id", size + body_size);
            s_send_error (self, from->route, from->route_size,
                          failure == ZQ_EVERSION ? ZQI_R_CODE_VERSION : ZQI_R_CODE_PROTOCOL,
                          failure == ZQ_EVERSION ? "unknown envelope version"
                                                 : "malformed envelope");
        }
        return;
    }
    if (zqi_queue_name_check (envelope.subject, envelope.subject_size) == 1) {
        s_refuse_put (self, from, envelope.id, "a dead-letter queue is not put to",
                      size + body_size);
        return;
    }
    s_pending_t *pending = s_pending_add (self, peer, envelope.id);
    s_queue_t *queue = s_queue_get (self, envelope.subject, envelope.subject_size, true);
    if (!queue) {
        pending->code = s_queue_code (errno);
        if (pending->code == ZQI_R_CODE_LIMIT || pending->code == ZQI_R_CODE_BUSY)
            self->common.ctx->stats->refused++;
        return;
    }
    //  A duplicate is the same id, queue and producer identity (the
    //  User-Id ZAP gave the connection, if any), with the same body.
    int64_t now = self->now;
    zqi_r_seen_t *key = &pending->seen;
    zqi_r_dedupe_key (&self->dedupe, key, envelope.id, queue->index,
                      zmq_msg_gets ((zmq_msg_t *)first, "User-Id"));
    uint64_t content = zqi_r_dedupe_content (&self->dedupe, envelope.body, envelope.body_size);
    zqi_r_seen_t *seen = zqi_r_dedupe_find (&self->dedupe, key, now);
    if (seen && seen->content != content) {
        s_conflict (self, queue, envelope.id);
        pending->code = ZQI_R_CODE_CONFLICT;
        return;
    }
    if (seen) {
        pending->queue = seen->queue;
        pending->seq = seen->seq;
        queue->counters.duplicates++;
        return;
    }
    if (second || envelope.attempt) {
        //  Stored in the one-frame form, with attempt 0: the attempt counts
        //  the server's deliveries, whatever the producer wrote.
        size_t tail = envelope.attempt_offset + envelope.attempt_size;
        zqi_buf_reset (&self->bytes);
        if (zqi_buf_append (&self->bytes, data, envelope.attempt_offset) ||
            zqi_mp_put_uint (&self->bytes, 0) ||
            zqi_buf_append (&self->bytes, data + tail, size - tail) ||
            zqi_buf_append (&self->bytes, body, body_size)) {
            pending->code = ZQI_R_CODE_FAILED;
            return;
        }
        data = self->bytes.data;
        size = self->bytes.size;
    }
    uint64_t seq;
    if (zq_spool_append (queue->spool, data, size, &seq)) {
        pending->code = errno == ZQ_ETOOBIG ? ZQI_R_CODE_INVALID : s_store_code (errno);
        queue->counters.refused++;
        return;
    }
    pending->queue = queue->index;
    pending->seq = seq;
    queue->counters.put++;
    zqi_r_dedupe_add (&self->dedupe, key, content, now, seq);
    if (!queue->appended) {
        queue->appended = true;
        self->touched[self->touched_count++] = queue->index;
    }
}

//  ACK, NACK or TOUCH of ids from the consumer at index (ZQI_R_NONE if
//  the peer is not a known consumer). Only the consumer holding a
//  delivery settles it; an ACK also settles a delivery the same consumer
//  held last and that was taken back (timed out, nacked) but not yet
//  delivered again. Returns how many ids were not the sender's to settle
//  (unknown, held by another consumer or by none).
static size_t
s_settle_ids (zqi_r_server_t *self, uint32_t consumer, const zqi_r_command_t *command,
              size_t *failed_p, int *errnum_p)
{
    size_t not_held = 0;
    uint32_t session = consumer == ZQI_R_NONE ? 0 : self->consumers[consumer].session;
    for (size_t i = 0; i < command->id_count; i++) {
        const uint8_t *id = command->ids + i * ZQ_MSG_ID_SIZE;
        uint32_t index = s_entry_for (self, id, consumer);
        if (index == ZQI_R_NONE) {
            if (session)
                s_read_through (self, &self->consumers[consumer], NULL, id);
            not_held++;
            continue;
        }
        zqi_r_entry_t *entry = &self->table.entries[index];
        s_queue_t *queue = self->queues[entry->queue];
        bool owned = session && entry->state == S_DELIVERED && entry->owner == consumer;
        bool held_last = session && entry->holder == session &&
                         (entry->state == S_RETURNED || entry->state == S_HELD);
        if (session)
            s_read_through (self, &self->consumers[consumer], owned || held_last ? entry : NULL,
                            id);
        if (command->kind == ZQI_R_ACK && (owned || held_last)) {
            if (s_entry_ack (self, index) == 0)
                queue->counters.acked++;
            else {
                (*failed_p)++;
                *errnum_p = errno;
            }
        } else if (!owned)
            not_held++;
        else if (command->kind == ZQI_R_NACK) {
            int64_t delay = command->number;
            if (delay < 0) {
                delay = self->backoff_ms;
                for (uint32_t step = 0; step < entry->attempt && delay < self->backoff_max_ms;
                     step++)
                    delay *= 2;
                if (delay > self->backoff_max_ms)
                    delay = self->backoff_max_ms;
            }
            if (delay > self->max_delay_ms)
                delay = self->max_delay_ms;
            queue->counters.nacked++;
            s_fail_delivery (self, index, delay);
        } else {
            int64_t extend = command->number > 0 ? command->number : self->visibility_ms;
            if (extend > self->max_delay_ms)
                extend = self->max_delay_ms;
            zqi_r_table_schedule (&self->table, index, zclock_mono () + extend);
        }
    }
    return not_held;
}

//  The consumer closed: the deliveries it names never reached its
//  application and go back as they were; the others go back with attempt
//  one higher (they may have been worked on), and the consumer is
//  forgotten.
static void
s_consumer_leave (zqi_r_server_t *self, uint32_t consumer, const zqi_r_command_t *command)
{
    for (size_t i = 0; i < command->id_count; i++) {
        uint32_t index = s_entry_for (self, command->ids + i * ZQ_MSG_ID_SIZE, consumer);
        if (index != ZQI_R_NONE && self->table.entries[index].state == S_DELIVERED &&
            self->table.entries[index].owner == consumer)
            s_return (self, index);
    }
    s_consumer_drop (self, consumer);
}

//  Handles a command other than PUT from route.
static void
s_command (zqi_r_server_t *self, const uint8_t *route, size_t route_size,
           const zqi_r_command_t *command)
{
    uint32_t consumer = s_consumer_find (self, route, route_size);
    switch (command->kind) {
        case ZQI_R_CONSUME:
        case ZQI_R_CANCEL: {
            if (zqi_queue_name_check (command->text, command->text_size) < 0) {
                s_turned_down (self,
                               command->kind == ZQI_R_CONSUME ? "a CONSUME of an invalid queue name"
                                                              : "a CANCEL of an invalid queue name",
                               command->text_size);
                s_send_error (self, route, route_size, ZQI_R_CODE_INVALID,
                              s_code_reason (ZQI_R_CODE_INVALID));
                return;
            }
            char key[ZQ_QUEUE_NAME_MAX + sizeof ZQ_QUEUE_DEAD_SUFFIX];
            memcpy (key, command->text, command->text_size);
            key[command->text_size] = '\0';
            if (command->kind == ZQI_R_CANCEL) {
                //  Found, not opened. A queue not consumed (or unknown) has
                //  nothing to cancel: not an error, no answer.
                s_queue_t *queue = s_queue_find (self, key);
                if (queue && consumer != ZQI_R_NONE)
                    s_unsubscribe (self, consumer, queue);
                return;
            }
            if (consumer != ZQI_R_NONE &&
                self->consumers[consumer].queue_count >= self->max_consumer_queues) {
                //  A connection past max_consumer_queues may renew what it
                //  consumes (its prefetch), not add a queue.
                s_queue_t *known = s_queue_find (self, key);
                s_consumer_t *holder = &self->consumers[consumer];
                bool renewal = false;
                for (uint32_t i = 0; known && i < holder->queue_count; i++)
                    renewal |= holder->queues[i] == known->index;
                if (!renewal) {
                    self->common.ctx->stats->refused++;
                    s_limit_log (self, S_LIMIT_CONSUMER, key);
                    s_send_error (self, route, route_size, ZQI_R_CODE_LIMIT,
                                  "subscription limit reached (max_consumer_queues)");
                    return;
                }
            }
            s_queue_t *queue = s_queue_get (self, command->text, command->text_size, true);
            if (!queue) {
                zqi_r_code_t code = s_queue_code (errno);
                s_send_error (self, route, route_size, code, s_code_reason (code));
                return;
            }
            if (consumer == ZQI_R_NONE)
                consumer = s_consumer_new (self, route, route_size);
            if (consumer == ZQI_R_NONE || s_subscribe (self, consumer, queue)) {
                s_send_error (self, route, route_size, ZQI_R_CODE_FAILED, "out of memory");
                return;
            }
            self->consumers[consumer].prefetch = (uint32_t)command->number;
            return;
        }
        case ZQI_R_ACK:
        case ZQI_R_NACK:
        case ZQI_R_TOUCH: {
            size_t failed = 0;
            int errnum = 0;
            size_t not_held = s_settle_ids (self, consumer, command, &failed, &errnum);
            if (failed) {
                //  Nothing was removed: the deliveries stay the consumer's
                //  (ack them again) until their visibility time.
                char reason[160];
                snprintf (reason, sizeof reason, "%zu of %zu acks not recorded: %s", failed,
                          command->id_count, zq_strerror (errnum));
                s_send_error (self, route, route_size, ZQI_R_CODE_FAILED, reason);
            }
            if (not_held) {
                char reason[96];
                snprintf (reason, sizeof reason, "%zu of %zu ids not held by this consumer",
                          not_held, command->id_count);
                s_turned_down (self, "a settle of ids the sender does not hold",
                               command->id_count * ZQ_MSG_ID_SIZE);
                s_send_error (self, route, route_size, ZQI_R_CODE_NOT_HELD, reason);
            }
            return;
        }
        case ZQI_R_LEAVE:
            if (consumer != ZQI_R_NONE)
                s_consumer_leave (self, consumer, command);
            return;
        case ZQI_R_PING:
            if (zqi_r_put_command (&self->buf, 4, ZQI_R_PONG) == 0 &&
                zqi_mp_put_bin (&self->buf, self->instance, ZQI_R_INSTANCE_SIZE) == 0 &&
                zqi_mp_put_uint (&self->buf, consumer == ZQI_R_NONE ? ZQI_R_PONG_NO_SESSION : 0) ==
                    0)
                s_send_command (self, route, route_size, false);
            return;
        case ZQI_R_PUT:
        case ZQI_R_CONFIRM:
        case ZQI_R_REFUSE:
        case ZQI_R_DELIVER:
        case ZQI_R_PONG:
        case ZQI_R_ERROR:
            //  Commands a server sends, not receives: counted, not answered
            //  (so two confused servers cannot ping-pong errors).
            self->common.ctx->stats->errors++;
            return;
        default:
            self->common.ctx->stats->errors++;
            s_send_error (self, route, route_size, ZQI_R_CODE_UNKNOWN, "unknown command");
    }
}

//  Reads one message from the socket. Returns 0 (handled), or -1 with
//  errno EAGAIN (nothing waiting) or another libzmq error.
static int
s_read_one (zqi_r_server_t *self)
{
    void *handle = self->common.handle;
    zmq_msg_t frames[4];
    for (int i = 0; i < 4; i++)
        zmq_msg_init (&frames[i]);
    int count = 0;
    int rc = 0;
    //  Routing id, command, and up to two envelope frames.
    while (count < 4) {
        if (zqi_r_recv_frame (handle, &frames[count])) {
            rc = count ? 0 : -1;
            break;
        }
        count++;
        if (!zmq_msg_more (&frames[count - 1]))
            break;
    }
    if (rc == -1) {
        int saved = errno;
        zmq_msg_close (&frames[0]);
        errno = saved;
        return -1;
    }
    bool too_many = count == 4 && zmq_msg_more (&frames[3]);
    if (too_many)
        zqi_drain (handle);
    const uint8_t *route = (const uint8_t *)zmq_msg_data (&frames[0]);
    size_t route_size = zmq_msg_size (&frames[0]);
    zqi_r_command_t command;
    if (count < 2 || route_size == 0 || route_size > 255) {
        self->common.ctx->stats->errors++;
        goto done;
    }
    if (zqi_r_command_parse ((const uint8_t *)zmq_msg_data (&frames[1]), zmq_msg_size (&frames[1]),
                             &command)) {
        self->common.ctx->stats->errors++;
        s_send_error (self, route, route_size,
                      errno == ZQ_EVERSION ? ZQI_R_CODE_VERSION : ZQI_R_CODE_PROTOCOL,
                      "malformed command");
        goto done;
    }
    if (command.kind == ZQI_R_PUT) {
        if (count < 3 || too_many) {
            self->common.ctx->stats->errors++;
            s_send_error (self, route, route_size, ZQI_R_CODE_PROTOCOL,
                          "PUT needs 1 or 2 envelope frames");
            goto done;
        }
        uint32_t peer = s_peer_index (self, route, route_size);
        ZQ_ASSERT (peer != ZQI_R_NONE); //  the round ends before the peers run out
        s_put (self, peer, &frames[2], count == 4 ? &frames[3] : NULL);
    } else if (count != 2) {
        self->common.ctx->stats->errors++;
        s_send_error (self, route, route_size, ZQI_R_CODE_PROTOCOL, "unexpected frames");
    } else
        s_command (self, route, route_size, &command);
done:
    for (int i = 0; i < count; i++)
        zmq_msg_close (&frames[i]);
    return 0;
}

//  Sends the ids of the round's PUTs from peer with code (0: CONFIRM).
static void
s_answer (zqi_r_server_t *self, uint32_t peer, uint8_t code)
{
    zqi_buf_reset (&self->bytes);
    for (uint32_t i = 0; i < self->pending_count; i++)
        if (self->pending[i].peer == peer && self->pending[i].code == code)
            if (zqi_buf_append (&self->bytes, self->pending[i].id, ZQ_MSG_ID_SIZE))
                return;
    if (!self->bytes.size)
        return;
    int rc = code ? zqi_r_put_command (&self->buf, 5, ZQI_R_REFUSE)
                  : zqi_r_put_command (&self->buf, 3, ZQI_R_CONFIRM);
    if (rc || zqi_mp_put_bin (&self->buf, self->bytes.data, self->bytes.size))
        return;
    if (code) {
        const char *reason = s_code_reason ((zqi_r_code_t)code);
        if (zqi_mp_put_uint (&self->buf, code) ||
            zqi_mp_put_str (&self->buf, reason, strlen (reason)))
            return;
    }
    //  A producer gone or too slow to take its confirms sends again.
    s_send_command (self, self->peers[peer].route, self->peers[peer].route_size, false);
}

//  Commits the spools the round appended to and answers every PUT.
static void
s_commit_and_answer (zqi_r_server_t *self)
{
    for (uint32_t i = 0; i < self->touched_count; i++) {
        s_queue_t *queue = self->queues[self->touched[i]];
        queue->commit_failed = zq_spool_commit (queue->spool) != 0;
        if (queue->commit_failed)
            zqi_log (ZQ_LOG_WARNING, "reliable: queue %s refused a batch: %s", queue->name,
                     zq_strerror (errno));
        queue->appended = false;
    }
    for (uint32_t i = 0; i < self->pending_count; i++) {
        s_pending_t *pending = &self->pending[i];
        if (pending->code || pending->queue == ZQI_R_NONE)
            continue;
        s_queue_t *queue = self->queues[pending->queue];
        if (queue->commit_failed && zq_spool_wait (queue->spool, pending->seq)) {
            pending->code = s_store_code (errno);
            zqi_r_dedupe_forget (&self->dedupe, &pending->seen);
            queue->counters.refused++;
        }
    }
    for (uint32_t i = 0; i < self->touched_count; i++)
        self->queues[self->touched[i]]->commit_failed = false;
    for (uint32_t peer = 0; peer < self->peer_count; peer++) {
        s_answer (self, peer, 0);
        s_answer (self, peer, ZQI_R_CODE_FULL);
        s_answer (self, peer, ZQI_R_CODE_INVALID);
        s_answer (self, peer, ZQI_R_CODE_FAILED);
        s_answer (self, peer, ZQI_R_CODE_CONFLICT);
        s_answer (self, peer, ZQI_R_CODE_LIMIT);
        s_answer (self, peer, ZQI_R_CODE_BUSY);
    }
    self->pending_count = 0;
    self->peer_count = 0;
    self->touched_count = 0;
}

//  Runs due timers: visibility deadlines and the ends of holds.
static void
s_run_timers (zqi_r_server_t *self, int64_t now)
{
    uint32_t index;
    while ((index = zqi_r_table_first (&self->table)) != ZQI_R_NONE &&
           self->table.entries[index].due <= now) {
        zqi_r_entry_t *entry = &self->table.entries[index];
        if (entry->state == S_DELIVERED) {
            self->queues[entry->queue]->counters.timeouts++;
            s_owner_expire (self, index);
            s_fail_delivery (self, index, 0);
        } else
            s_return (self, index);
    }
    if (now >= self->next_probe) {
        //  A probe to each remote consumer: a gone one fails with
        //  EHOSTUNREACH (ROUTER_MANDATORY), and its deliveries go back.
        self->next_probe = now + self->common.ping_ivl_ms;
        if (zqi_r_put_command (&self->buf, 2, ZQI_R_PING) == 0)
            for (uint32_t slot = 1; slot < self->consumer_capacity; slot++) {
                s_consumer_t *consumer = &self->consumers[slot];
                if (consumer->in_use &&
                    s_send_command (self, consumer->route, consumer->route_size, false) &&
                    errno == EHOSTUNREACH)
                    s_consumer_drop (self, slot);
            }
    }
}

//  One round of work. Returns -1 with errno only for a socket failure
//  (ETERM, ...).
static int
s_work (zqi_r_server_t *self)
{
    int rc = 0;
    self->now = zclock_mono ();
    self->drained = false;
    for (int n = 0; n < S_BATCH && self->peer_count < S_BATCH_PEERS; n++)
        if (s_read_one (self)) {
            if (errno != EAGAIN)
                rc = -1;
            self->drained = errno == EAGAIN;
            break;
        }
    int saved = errno;
    if (self->pending_count || self->peer_count)
        s_commit_and_answer (self);
    self->now = zclock_mono ();
    s_run_timers (self, self->now);
    s_deliver_all (self);
    errno = saved;
    return rc;
}

//  ---- Local consumption --------------------------------------------------

static zq_msg_t *
s_local_recv (zqi_r_server_t *self)
{
    self->now = zclock_mono ();
    s_consumer_t *local = &self->consumers[S_LOCAL];
    if (!local->in_use || !local->queue_count || local->in_flight >= local->prefetch) {
        errno = EAGAIN;
        return NULL;
    }
    for (uint32_t tried = 0; tried < local->queue_count;) {
        uint32_t position = local->rr % local->queue_count;
        s_queue_t *queue = self->queues[local->queues[position]];
        zq_spool_record_t record;
        zqi_r_envelope_t envelope;
        uint32_t index;
        s_verdict_t verdict = s_take (self, queue, &record, &envelope, &index);
        if (verdict == S_SKIP)
            continue;
        if (verdict == S_STOP) {
            local->rr = position + 1;
            tried++;
            continue;
        }
        const void *frames[1] = {record.data};
        size_t sizes[1] = {record.size};
        zq_msg_t *msg = zq_msg_decode_buffers (frames, sizes, 1, 0);
        if (!msg) {
            self->table.entries[index].state = S_RETURNED;
            zq_spool_return (queue->spool, record.seq);
            errno = ENOMEM;
            return NULL;
        }
        zq_msg_set_attempt (msg, self->table.entries[index].attempt);
        s_delivered (self, queue, index, S_LOCAL, 0);
        local->rr = position + 1;
        return msg;
    }
    errno = EAGAIN;
    return NULL;
}

//  ---- Hooks --------------------------------------------------------------

static void
s_open_existing (zqi_r_server_t *self)
{
    DIR *dir = opendir (self->spool_dir);
    if (!dir)
        return;
    struct dirent *item;
    while ((item = readdir (dir))) {
        if (item->d_name[0] == '.' &&
            (item->d_name[1] == '\0' || (item->d_name[1] == '.' && item->d_name[2] == '\0')))
            continue;
        char *path = zsys_sprintf ("%s/%s", self->spool_dir, item->d_name);
        struct stat info;
        bool is_dir = path && stat (path, &info) == 0 && S_ISDIR (info.st_mode);
        zstr_free (&path);
        if (!is_dir)
            continue;
        size_t size = strlen (item->d_name);
        if (self->open_count < s_open_new_max (self) ||
            zqi_queue_name_check (item->d_name, size) < 0) {
            if (!s_queue_get (self, item->d_name, size, true))
                zqi_log (ZQ_LOG_ERROR, "reliable: queue %s not opened: %s", item->d_name,
                         zq_strerror (errno));
            continue;
        }
        //  Past the fd budget a queue is known by name and opened when
        //  first used.
        s_queue_t *queue = s_queue_new (self, item->d_name, size);
        if (!queue) {
            zqi_log (ZQ_LOG_ERROR, "reliable: queue %s not opened: %s", item->d_name,
                     zq_strerror (errno));
            continue;
        }
        s_queue_register (self, queue);
    }
    closedir (dir);
    self->last_queue = NULL;
}

//  How many queues may be open at once under the process's RLIMIT_NOFILE.
static uint32_t
s_open_max (void)
{
    struct rlimit limit;
    uint64_t files = 1024;
    if (getrlimit (RLIMIT_NOFILE, &limit) == 0)
        files = limit.rlim_cur == RLIM_INFINITY ? (1u << 20) : (uint64_t)limit.rlim_cur;
    uint64_t reserve = files / 4 > S_FD_RESERVE ? files / 4 : S_FD_RESERVE;
    uint64_t open = files > reserve ? (files - reserve) / S_QUEUE_FDS : 0;
    if (open < S_OPEN_MIN)
        open = S_OPEN_MIN;
    return open > UINT32_MAX ? UINT32_MAX : (uint32_t)open;
}

zqi_r_server_t *
zqi_r_server_new (zq_pattern_ctx_t *ctx)
{
    zqi_r_server_t *self = (zqi_r_server_t *)calloc (1, sizeof (zqi_r_server_t));
    if (!self) {
        errno = ENOMEM;
        return NULL;
    }
    if (zqi_r_common_open (&self->common, ctx))
        goto failed;
    int on = 1;
    if (zmq_setsockopt (self->common.handle, ZMQ_ROUTER_MANDATORY, &on, sizeof on))
        goto failed;
    const zq_options_t *options = ctx->options;
    self->options = options;
    const char *spool_dir = zq_options_get_str (options, "spool_dir");
    if (spool_dir && *spool_dir) {
        if (s_mkdirs (spool_dir))
            goto failed;
        self->spool_dir = strdup (spool_dir);
        if (!self->spool_dir)
            goto no_memory;
    }
    self->visibility_ms = zqi_r_option (options, "visibility_timeout_ms");
    self->max_attempts = (uint32_t)zqi_r_option (options, "max_attempts");
    self->backoff_ms = zqi_r_option (options, "nack_backoff_ms");
    self->backoff_max_ms = zqi_r_option (options, "nack_backoff_max_ms");
    self->max_queues = (uint32_t)zqi_r_option (options, "max_queues");
    self->max_consumer_queues = (uint32_t)zqi_r_option (options, "max_consumer_queues");
    self->open_max = self->spool_dir ? s_open_max () : UINT32_MAX;
    self->local_prefetch = (uint32_t)zqi_r_option (options, "prefetch");
    self->max_message_bytes = ctx->max_message_bytes;
    self->max_delay_ms = zqi_r_option (options, "max_delay_ms");
    self->max_unsettled_bytes = (uint64_t)zqi_r_option (options, "max_unsettled_bytes");
    self->max_unsettled_bytes_total = (uint64_t)zqi_r_option (options, "max_unsettled_bytes_total");
    //  Frames a little over the message limit reach the server, which
    //  refuses such a PUT with its id; libzmq closes the connection of a
    //  peer whose frame is over this (doc/PROTOCOL.md 18.2).
    size_t headroom = ctx->max_message_bytes > 65536 ? ctx->max_message_bytes : 65536;
    int64_t frame_max = (int64_t)(ctx->max_message_bytes + headroom);
    if (zmq_setsockopt (self->common.handle, ZMQ_MAXMSGSIZE, &frame_max, sizeof frame_max))
        goto failed;
    if (getrandom (self->instance, sizeof self->instance, GRND_NONBLOCK) !=
        (ssize_t)sizeof self->instance) {
        int64_t now = zclock_usecs () ^ ((int64_t)getpid () << 40);
        memcpy (self->instance, &now, sizeof self->instance);
    }
    zqi_r_table_init (&self->table);
    zqi_r_dedupe_init (&self->dedupe, zqi_r_option (options, "dedupe_window_ms"),
                       (uint32_t)zqi_r_option (options, "dedupe_max"));
    self->queue_by_name = zhashx_new ();
    self->consumer_by_route = zhashx_new ();
    self->consumer_capacity = 8;
    self->consumers = (s_consumer_t *)calloc (self->consumer_capacity, sizeof (s_consumer_t));
    self->pending = (s_pending_t *)malloc (S_BATCH * sizeof (s_pending_t));
    self->touched = (uint32_t *)malloc (S_BATCH * sizeof (uint32_t));
    if (!self->queue_by_name || !self->consumer_by_route || !self->consumers || !self->pending ||
        !self->touched)
        goto no_memory;
    for (uint32_t index = 0; index < self->consumer_capacity; index++)
        self->consumers[index].head = ZQI_R_NONE;
    if (self->spool_dir) {
        self->starting = true;
        s_open_existing (self);
        self->starting = false;
    }
    return self;
no_memory:
    errno = ENOMEM;
failed:;
    int saved = errno;
    zqi_r_server_destroy (&self);
    errno = saved;
    return NULL;
}

size_t
zqi_r_server_destroy (zqi_r_server_t **self_p)
{
    zqi_r_server_t *self = *self_p;
    if (!self)
        return 0;
    size_t lost = 0;
    for (uint32_t index = 0; index < self->queue_count; index++) {
        s_queue_t *queue = self->queues[index];
        if (!self->spool_dir) {
            zq_spool_stats_t stats;
            zq_spool_stats (queue->spool, &stats);
            lost += stats.depth;
        }
        zq_spool_destroy (&queue->spool);
        free (queue->consumers);
        free (queue->name);
        free (queue);
    }
    for (uint32_t index = 0; index < self->consumer_capacity && self->consumers; index++)
        free (self->consumers[index].queues);
    free (self->queues);
    free (self->consumers);
    zhashx_destroy (&self->queue_by_name);
    zhashx_destroy (&self->consumer_by_route);
    zqi_r_table_free (&self->table);
    zqi_r_dedupe_free (&self->dedupe);
    free (self->pending);
    free (self->touched);
    zqi_buf_free (&self->buf);
    zqi_buf_free (&self->bytes);
    free (self->spool_dir);
    free (self);
    *self_p = NULL;
    return lost;
}

//  True if local consumption has a message ready now.
static bool
s_local_ready (zqi_r_server_t *self)
{
    s_consumer_t *local = &self->consumers[S_LOCAL];
    if (!local->in_use || local->in_flight >= local->prefetch)
        return false;
    for (uint32_t i = 0; i < local->queue_count; i++) {
        zq_spool_stats_t stats;
        zq_spool_stats (self->queues[local->queues[i]]->spool, &stats);
        if (stats.depth > stats.in_flight)
            return true;
    }
    return false;
}

zq_msg_t *
zqi_r_server_recv (zqi_r_server_t *self)
{
    //  Consuming locally at full speed: a round per message would read the
    //  socket empty each time (a system call or two in libzmq). Within the
    //  millisecond of a round that emptied it, a ready message is returned
    //  without one; NULL always comes after a whole round.
    int64_t now = zclock_mono ();
    if (now == self->work_ms && self->drained && s_local_ready (self)) {
        zq_msg_t *msg = s_local_recv (self);
        if (msg)
            return msg;
    }
    self->work_ms = now;
    if (s_work (self))
        return NULL;
    return s_local_recv (self);
}

int
zqi_r_server_events (zqi_r_server_t *self, int zmq_events)
{
    if (s_work (self))
        return -1;
    int events = 0;
    size_t size = sizeof events;
    if (zmq_getsockopt (self->common.handle, ZMQ_EVENTS, &events, &size))
        return -1;
    events &= ZMQ_POLLIN;
    if (s_local_ready (self))
        events |= ZMQ_POLLIN;
    return events;
}

int64_t
zqi_r_server_next_timer_ms (zqi_r_server_t *self)
{
    int64_t now = zclock_mono ();
    int64_t due = self->next_probe;
    uint32_t index = zqi_r_table_first (&self->table);
    if (index != ZQI_R_NONE && self->table.entries[index].due < due)
        due = self->table.entries[index].due;
    if (self->resume_due && self->resume_due < due)
        due = self->resume_due;
    //  Local consumption with credit back and messages ready: now.
    if (s_local_ready (self))
        return 0;
    return due > now ? due - now : 0;
}

int
zqi_r_server_subscribe (zqi_r_server_t *self, const char *name)
{
    s_queue_t *queue = s_queue_get (self, name, strlen (name), true);
    if (!queue)
        return -1;
    s_consumer_t *local = &self->consumers[S_LOCAL];
    if (!local->in_use) {
        local->in_use = true;
        local->head = ZQI_R_NONE;
        local->prefetch = self->local_prefetch;
        local->session = s_session_new (self);
    }
    return s_subscribe (self, S_LOCAL, queue);
}

int
zqi_r_server_unsubscribe (zqi_r_server_t *self, const char *name)
{
    //  Found, not opened: a closed queue has no consumer to take off.
    if (zqi_queue_name_check (name, strlen (name)) < 0)
        return zqi_fail (EINVAL);
    s_queue_t *queue = s_queue_find (self, name);
    if (!queue)
        return zqi_fail (ZQ_ENOTFOUND);
    if (self->consumers[S_LOCAL].in_use)
        s_unsubscribe (self, S_LOCAL, queue);
    return 0;
}

int
zqi_r_server_ack (zqi_r_server_t *self, const zq_msg_t *msg, int how, int64_t number)
{
    uint32_t index = s_entry_for (self, zq_msg_id (msg), S_LOCAL);
    if (index == ZQI_R_NONE || self->table.entries[index].state != S_DELIVERED ||
        self->table.entries[index].owner != S_LOCAL)
        return zqi_fail (ZQ_ENOTFOUND);
    zqi_r_command_t command = {0};
    command.kind = how == ZQI_SETTLE_ACK    ? ZQI_R_ACK
                   : how == ZQI_SETTLE_NACK ? ZQI_R_NACK
                                            : ZQI_R_TOUCH;
    command.ids = zq_msg_id (msg);
    command.id_count = 1;
    command.number = number;
    size_t failed = 0;
    int errnum = 0;
    s_settle_ids (self, S_LOCAL, &command, &failed, &errnum);
    if (failed)
        return zqi_fail (errnum);
    return 0;
}

//  ---- Admin --------------------------------------------------------------

int
zqi_r_server_declare (zqi_r_server_t *self, const char *name)
{
    return s_queue_get (self, name, strlen (name), true) ? 0 : -1;
}

static int
s_compare_names (const void *a, const void *b)
{
    return strcmp ((const char *)a, (const char *)b);
}

static void
s_free_name (void **item)
{
    free (*item);
    *item = NULL;
}

zlistx_t *
zqi_r_server_names (zqi_r_server_t *self)
{
    zlistx_t *names = zlistx_new ();
    if (!names) {
        errno = ENOMEM;
        return NULL;
    }
    zlistx_set_destructor (names, s_free_name);
    zlistx_set_comparator (names, (zlistx_comparator_fn *)s_compare_names);
    for (uint32_t index = 0; index < self->queue_count; index++) {
        char *name = strdup (self->queues[index]->name);
        if (!name || !zlistx_add_end (names, name)) {
            free (name);
            zlistx_destroy (&names);
            errno = ENOMEM;
            return NULL;
        }
    }
    zlistx_sort (names);
    return names;
}

//  Looks up an existing queue by NUL-terminated name.
static s_queue_t *
s_admin_queue (zqi_r_server_t *self, const char *name)
{
    s_queue_t *queue = s_queue_get (self, name, strlen (name), false);
    return queue;
}

//  Reads up to max ready records of queue without delivering them: each
//  is handed out, decoded, and given back (records given back come out
//  again first, lowest seq first, so the order is kept).
static int
s_peek (zqi_r_server_t *self, s_queue_t *queue, zq_msg_t **msgs, size_t max, size_t *count_p)
{
    *count_p = 0;
    uint64_t *seqs = max ? (uint64_t *)malloc (max * sizeof (uint64_t)) : NULL;
    if (max && !seqs)
        return zqi_fail (ENOMEM);
    int rc = 0;
    size_t taken = 0;
    while (taken < max) {
        zq_spool_record_t record;
        if (zq_spool_next (queue->spool, &record)) {
            if (errno != EAGAIN)
                rc = -1;
            break;
        }
        seqs[taken] = record.seq;
        const void *frames[1] = {record.data};
        size_t sizes[1] = {record.size};
        zq_msg_t *msg = zq_msg_decode_buffers (frames, sizes, 1, 0);
        taken++;
        if (!msg)
            continue;
        uint32_t index = s_entry_in (self, zq_msg_id (msg), queue->index);
        if (index != ZQI_R_NONE && self->table.entries[index].seq == record.seq &&
            self->table.entries[index].attempt > zq_msg_attempt (msg))
            zq_msg_set_attempt (msg, self->table.entries[index].attempt);
        msgs[(*count_p)++] = msg;
    }
    int saved = errno;
    for (size_t i = 0; i < taken; i++)
        zq_spool_return (queue->spool, seqs[i]);
    free (seqs);
    errno = saved;
    return rc;
}

int
zqi_r_server_info (zqi_r_server_t *self, const char *name, zq_queue_info_t *info)
{
    //  A closed queue answers from what its spool held when it was closed.
    if (zqi_queue_name_check (name, strlen (name)) < 0)
        return zqi_fail (EINVAL);
    s_queue_t *queue = s_queue_find (self, name);
    if (!queue)
        return zqi_fail (ZQ_ENOTFOUND);
    //  One known by name only since the start (never used) is opened once.
    if (!queue->spool && !queue->used && s_queue_open (self, queue, false))
        return -1;
    *info = queue->counters;
    zq_spool_stats_t stats = queue->closed_stats;
    if (queue->spool)
        zq_spool_stats (queue->spool, &stats);
    info->depth = stats.depth;
    info->ready = stats.depth - stats.in_flight;
    info->in_flight = queue->in_flight;
    info->delayed = queue->held;
    info->consumers = queue->consumer_count;
    info->dead = 0;
    if (queue->dead != ZQI_R_NONE) {
        s_queue_t *dead = self->queues[queue->dead];
        if (!dead->spool && !dead->used) {
            //  Known by name only since the start: opened once, as above.
            self->pinned = queue;
            int rc = s_queue_open (self, dead, false);
            self->pinned = NULL;
            if (rc)
                return -1;
        }
        stats = dead->closed_stats;
        if (dead->spool)
            zq_spool_stats (dead->spool, &stats);
        info->dead = stats.depth;
    }
    info->oldest_age_ms = 0;
    uint64_t oldest_ms = queue->spool ? 0 : queue->closed_oldest_ms;
    zq_msg_t *oldest = NULL;
    size_t count = 0;
    if (queue->spool && info->ready && s_peek (self, queue, &oldest, 1, &count) == 0 && count == 1)
        oldest_ms = zq_msg_created_ms (oldest);
    zq_msg_destroy (&oldest);
    if (info->ready && oldest_ms) {
        int64_t age = zqi_r_wall_ms () - (int64_t)oldest_ms;
        info->oldest_age_ms = age > 0 ? (uint64_t)age : 0;
    }
    return 0;
}

int
zqi_r_server_peek (zqi_r_server_t *self, const char *name, zq_msg_t **msgs, size_t max,
                   size_t *count_p)
{
    *count_p = 0;
    s_queue_t *queue = s_admin_queue (self, name);
    return queue ? s_peek (self, queue, msgs, max, count_p) : -1;
}

int
zqi_r_server_purge (zqi_r_server_t *self, const char *name, uint64_t *count_p)
{
    s_queue_t *queue = s_admin_queue (self, name);
    if (!queue)
        return -1;
    //  Held records first (they are in flight in the spool), then every
    //  ready record.
    for (uint32_t index = 0; index < self->table.capacity; index++) {
        zqi_r_entry_t *entry = &self->table.entries[index];
        if (entry->in_use && entry->queue == queue->index && entry->state == S_HELD) {
            if (s_entry_ack (self, index))
                return -1;
            (*count_p)++;
        }
    }
    zq_spool_record_t record;
    while (zq_spool_next (queue->spool, &record) == 0) {
        zqi_r_envelope_t envelope;
        uint32_t index = ZQI_R_NONE;
        if (zqi_r_envelope_parse ((const uint8_t *)record.data, record.size, NULL, 0, false,
                                  &envelope) == 0) {
            index = s_entry_in (self, envelope.id, queue->index);
            if (index != ZQI_R_NONE && self->table.entries[index].seq != record.seq)
                index = ZQI_R_NONE;
        }
        if (s_record_ack (self, queue, record.seq))
            return -1;
        if (index != ZQI_R_NONE) {
            s_entry_leave (self, index);
            zqi_r_table_remove (&self->table, index);
        }
        (*count_p)++;
    }
    if (errno != EAGAIN)
        return -1;
    return zq_spool_commit (queue->spool);
}

int
zqi_r_server_redrive (zqi_r_server_t *self, const char *name, uint64_t *count_p)
{
    s_queue_t *queue = s_admin_queue (self, name);
    if (!queue)
        return -1;
    if (queue->is_dead || queue->dead == ZQI_R_NONE)
        return 0;
    self->pinned = queue; //  opening the dead-letter queue must not close it
    s_queue_t *dead = s_dead_queue (self, queue);
    self->pinned = NULL;
    if (!dead)
        return -1;
    uint64_t seqs[256];
    int rc = 0;
    while (rc == 0) {
        size_t taken = 0;
        zq_spool_record_t record;
        while (taken < 256 && zq_spool_next (dead->spool, &record) == 0) {
            zqi_r_envelope_t envelope;
            if (zqi_r_envelope_parse ((const uint8_t *)record.data, record.size, NULL, 0, false,
                                      &envelope) ||
                s_rewrite_attempt (self, &record, &envelope, 0) ||
                zq_spool_append (queue->spool, self->bytes.data, self->bytes.size, NULL)) {
                zq_spool_return (dead->spool, record.seq);
                rc = -1;
                break;
            }
            //  Only this record's entry: another copy of the same id may
            //  be delivered from the dead-letter queue meanwhile.
            uint32_t index = s_entry_in (self, envelope.id, dead->index);
            if (index != ZQI_R_NONE && self->table.entries[index].seq == record.seq) {
                s_entry_leave (self, index);
                zqi_r_table_remove (&self->table, index);
            }
            seqs[taken++] = record.seq;
        }
        int saved = errno;
        if (taken == 0)
            break;
        if (zq_spool_commit (queue->spool)) {
            //  Those not stored stay dead letters.
            saved = errno;
            for (size_t i = 0; i < taken; i++)
                zq_spool_return (dead->spool, seqs[i]);
            rc = -1;
        } else {
            //  Copies whose ack fails stay dead letters too (redriven
            //  twice, never lost); they are given back to the dead queue.
            for (size_t i = 0; i < taken; i++)
                if (s_record_ack (self, dead, seqs[i])) {
                    saved = errno;
                    rc = -1;
                }
            *count_p += taken;
            queue->counters.put += taken;
        }
        errno = saved;
    }
    int saved = errno;
    zq_spool_commit (dead->spool);
    errno = saved;
    return rc;
}
