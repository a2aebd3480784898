/*  =========================================================================
    reliable_server_queues - the reliable server's named queues: finding,
    creating and registering them with their dead-letter queues, opening
    and closing their spools within the file-descriptor budget; and its
    remote consumers, their slots, sessions and subscriptions.

    patterns/reliable_server.h holds what the server's files share.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable_server.h"
#include <dirent.h>
#include <sys/stat.h>

//  ---- Names and queues ---------------------------------------------------

zqi_rs_queue_t *
zqi_rs_queue_find (zqi_r_server_t *self, const char *name)
{
    uintptr_t slot = (uintptr_t)zhashx_lookup (self->queue_by_name, name);
    return slot ? self->queues[slot - 1] : NULL;
}

//  Makes the spool directory (and its parents).
int
zqi_rs_mkdirs (const char *path)
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
uint32_t
zqi_rs_open_new_max (zqi_r_server_t *self)
{
    return self->open_max - self->open_max / 8;
}

void
zqi_rs_event (zqi_r_server_t *self, int kind, const char *format, ...)
{
    uint64_t skipped = 0;
    if (!zqi_log_limit_due (&self->event_log[kind], zqi_r_now (&self->common), ZQI_RS_EVENT_LOG_MS,
                            &skipped))
        return;
    va_list args;
    va_start (args, format);
    zqi_logv (ZQ_LOG_DEBUG, "reliable: ", skipped, format, args);
    va_end (args);
}

//  Logs a refusal for a limit (S_LIMIT_*) at most once per ZQI_RS_LIMIT_LOG_MS,
//  with how many were refused since the last line.
void
zqi_rs_limit_log (zqi_r_server_t *self, int which, const char *name)
{
    uint64_t skipped;
    if (!zqi_log_limit_due (&self->limit_log[which], zqi_r_now (&self->common), ZQI_RS_LIMIT_LOG_MS,
                            &skipped))
        return;
    uint64_t refused = skipped + 1;
    if (which == ZQI_RS_LIMIT_QUEUES)
        zqi_log (ZQ_LOG_WARNING,
                 "reliable: new queue %s refused: max_queues (%" PRIu32 ") reached (%" PRIu64
                 " refused since the last such line)",
                 name, self->max_queues, refused);
    else if (which == ZQI_RS_LIMIT_BUDGET)
        zqi_log (ZQ_LOG_WARNING,
                 "reliable: queue %s refused: the file descriptor budget is spent (%" PRIu32
                 " queues open, none idle; RLIMIT_NOFILE allows %" PRIu32 ", new queues %" PRIu32
                 "; %" PRIu64 " refused since the last such line)",
                 name, self->open_count, self->open_max, zqi_rs_open_new_max (self), refused);
    else if (which == ZQI_RS_LIMIT_AUTO)
        zqi_log (ZQ_LOG_WARNING,
                 "reliable: new queue %s refused: max_auto_queues (%" PRIu32
                 ") queues made by clients exist; delete some (zq delete) or raise it (%" PRIu64
                 " refused since the last such line)",
                 name, self->max_auto_queues, refused);
    else if (which == ZQI_RS_LIMIT_SHARE)
        zqi_log (ZQ_LOG_WARNING,
                 "reliable: new queue %s refused: %s made max_auto_queues_per_identity (%" PRIu32
                 ") queues already; delete some (zq delete) or raise it (%" PRIu64
                 " refused since the last such line)",
                 name, self->naming_user_id ? self->naming_user_id : "?",
                 self->max_auto_per_identity, refused);
    else if (which == ZQI_RS_LIMIT_NO_SPACE)
        zqi_log (ZQ_LOG_WARNING,
                 "reliable: PUT to %s refused: %" PRIu64
                 " bytes free on the spool's filesystem, under min_free_bytes (%" PRIu64
                 "; %" PRIu64 " refused since the last such line)",
                 name, self->disk.free_bytes, self->disk.min_free_bytes, refused);
    else if (which == ZQI_RS_LIMIT_CONSUMER)
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

//  True if the queue's spool can be closed now: nothing of it is in
//  flight, held or subscribed, and it is not the queue being opened or
//  one an admin call works on.
static bool
s_queue_idle (zqi_r_server_t *self, zqi_rs_queue_t *queue, zqi_rs_queue_t *keep)
{
    if (!queue->spool || queue == keep || queue == self->pinned || queue->consumer_count ||
        queue->in_flight || queue->held)
        return false;
    zq_spool_stats_t stats;
    zq_spool_stats (queue->spool, &stats);
    return stats.in_flight == 0;
}

//  The REFUSE code for a record its spool refused (errno).
zqi_r_code_t
zqi_rs_store_code (int errnum)
{
    return errnum == ZQ_EFULL                     ? ZQI_R_CODE_FULL
           : errnum == EMFILE || errnum == ENFILE ? ZQI_R_CODE_BUSY
                                                  : ZQI_R_CODE_FAILED;
}

//  Closes an idle queue's spool, giving its files back. Records appended
//  this round are committed first and their PUTs settled (and those of
//  the round committed behind it, if the queue has records there).
static void
s_queue_close (zqi_r_server_t *self, zqi_rs_queue_t *queue)
{
    if (queue->behind)
        zqi_rs_settle_behind (self);
    if (queue->appended) {
        bool failed = zq_spool_commit (queue->spool) != 0 ||
                      zq_spool_refusal (queue->spool, queue->first_seq, queue->last_seq) != 0;
        for (uint32_t i = 0; i < self->puts.pending_count; i++) {
            zqi_rs_pending_t *pending = &self->puts.pending[i];
            if (pending->code || pending->queue != queue->index)
                continue;
            if (failed)
                zqi_rs_check_stored (self, queue, pending);
            pending->queue = ZQI_R_NONE; //  settled: code 0 is a confirm
        }
        for (uint32_t i = 0; i < self->puts.touched_count; i++)
            if (self->puts.touched[i] == queue->index) {
                self->puts.touched[i] = self->puts.touched[--self->puts.touched_count];
                break;
            }
        queue->appended = false;
    }
    zq_msg_t *oldest = NULL;
    size_t count = 0;
    queue->closed_oldest_ms = 0;
    if (zqi_rs_peek (self, queue, &oldest, 1, &count) == 0 && count == 1)
        queue->closed_oldest_ms = zq_msg_created_ms (oldest);
    zq_msg_destroy (&oldest);
    zq_spool_stats (queue->spool, &queue->closed_stats);
    zq_spool_destroy (&queue->spool);
    zqi_rs_parsed_forget (self, queue->index);
    self->open_count--;
}

//  Closes the least recently used idle queue other than keep. Returns
//  false if no queue is idle.
static bool
s_close_idle (zqi_r_server_t *self, zqi_rs_queue_t *keep)
{
    zqi_rs_queue_t *victim = NULL;
    for (uint32_t index = 0; index < self->queue_count; index++) {
        zqi_rs_queue_t *queue = self->queues[index];
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
int
zqi_rs_queue_open (zqi_r_server_t *self, zqi_rs_queue_t *queue, bool is_new)
{
    queue->used = ++self->use_clock;
    if (queue->spool)
        return 0;
    uint32_t limit = is_new ? zqi_rs_open_new_max (self) : self->open_max;
    while (self->open_count >= limit)
        if (!s_close_idle (self, queue)) {
            zqi_rs_limit_log (self, ZQI_RS_LIMIT_BUDGET, queue->name);
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
            zqi_rs_limit_log (self, ZQI_RS_LIMIT_PROCESS, queue->name);
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
static zqi_rs_queue_t *
s_dead_parent (zqi_r_server_t *self, const char *key, size_t size)
{
    char parent[ZQ_QUEUE_NAME_MAX + sizeof ZQ_QUEUE_DEAD_SUFFIX];
    size_t parent_size = size - (sizeof ZQ_QUEUE_DEAD_SUFFIX - 1);
    memcpy (parent, key, parent_size);
    parent[parent_size] = '\0';
    zqi_rs_queue_t *queue = zqi_rs_queue_find (self, parent);
    return queue && !queue->is_dead ? queue : NULL;
}

//  The dead-letter queue of the queue named key, or NULL if it does not
//  exist.
static zqi_rs_queue_t *
s_dead_child (zqi_r_server_t *self, const char *key)
{
    char name[ZQ_QUEUE_NAME_MAX + sizeof ZQ_QUEUE_DEAD_SUFFIX];
    snprintf (name, sizeof name, "%s%s", key, ZQ_QUEUE_DEAD_SUFFIX);
    return zqi_rs_queue_find (self, name);
}

//  How many of the queues clients made user_id made (a linear count:
//  new queues are rare, and max_queues bounds the walk).
static uint32_t
s_made_by (zqi_r_server_t *self, const char *user_id)
{
    uint32_t made = 0;
    for (uint32_t index = 0; index < self->queue_count; index++) {
        const zqi_rs_queue_t *queue = self->queues[index];
        if (queue->name && queue->maker && streq (queue->maker, user_id))
            made++;
    }
    return made;
}

//  A new queue named key (size bytes), closed and not yet registered.
//  NULL with errno ZQ_ELIMIT (max_queues, max_auto_queues or the
//  naming identity's max_auto_queues_per_identity reached) or ENOMEM.
//
//  A queue's dead-letter queue always has a place: while dead-lettering
//  is on (max_attempts), a new queue takes a place for itself and one
//  kept for its NAME.dead (unless that exists), and NAME.dead takes the
//  place kept for it. So the places taken, queue_count + dead_unmade,
//  never pass max_queues through a client. Queues found in the spool
//  directory at start count one each, as far as max_queues goes.
zqi_rs_queue_t *
zqi_rs_queue_new (zqi_r_server_t *self, const char *key, size_t size)
{
    bool is_dead = zqi_queue_name_check (key, size) == 1;
    bool parent_exists = is_dead && s_dead_parent (self, key, size);
    uint32_t places = 1;
    if (parent_exists)
        places = 0;
    else if (!is_dead && self->max_attempts && !self->starting && !s_dead_child (self, key))
        places = 2;
    uint64_t taken =
        (uint64_t)self->queue_count - self->free_count + (self->starting ? 0 : self->dead_unmade);
    if (places && taken + places > self->max_queues) {
        zqi_rs_limit_log (self, ZQI_RS_LIMIT_QUEUES, key);
        errno = ZQ_ELIMIT;
        return NULL;
    }
    //  Queues a client makes by naming them have their own cap; those
    //  found on disk at start count towards it but are always kept. A
    //  NAME.dead named while NAME does not exist is one of them, until
    //  NAME is made (zqi_rs_queue_register).
    bool is_auto = !parent_exists && !self->declaring;
    if (is_auto && !self->starting && self->auto_count >= self->max_auto_queues) {
        zqi_rs_limit_log (self, ZQI_RS_LIMIT_AUTO, key);
        errno = ZQ_ELIMIT;
        return NULL;
    }
    //  Each client identity gets a share of that cap, so one tenant
    //  cannot spend the places of every other.
    const char *maker = is_auto && !self->starting ? self->naming_user_id : NULL;
    if (maker && !*maker)
        maker = NULL;
    if (maker && self->max_auto_per_identity &&
        s_made_by (self, maker) >= self->max_auto_per_identity) {
        zqi_rs_limit_log (self, ZQI_RS_LIMIT_SHARE, key);
        errno = ZQ_ELIMIT;
        return NULL;
    }
    if (self->queue_count == self->queue_capacity) {
        uint32_t capacity = self->queue_capacity ? self->queue_capacity * 2 : 16;
        zqi_rs_queue_t **queues =
            (zqi_rs_queue_t **)realloc (self->queues, capacity * sizeof (zqi_rs_queue_t *));
        if (!queues) {
            errno = ENOMEM;
            return NULL;
        }
        self->queues = queues;
        self->queue_capacity = capacity;
    }
    zqi_rs_queue_t *queue = (zqi_rs_queue_t *)calloc (1, sizeof (zqi_rs_queue_t));
    if (!queue || !(queue->name = strdup (key)) || (maker && !(queue->maker = strdup (maker)))) {
        if (queue)
            free (queue->name);
        free (queue);
        errno = ENOMEM;
        return NULL;
    }
    queue->name_size = size;
    queue->dead = ZQI_R_NONE;
    queue->is_dead = is_dead;
    queue->is_auto = is_auto;
    queue->named_ms = zqi_r_now (&self->common);
    return queue;
}

//  Makes a queue from zqi_rs_queue_new one of the server's, linked by name to
//  its dead-letter queue or to the queue it holds the dead letters of
//  (whichever was found or made first).
void
zqi_rs_queue_register (zqi_r_server_t *self, zqi_rs_queue_t *queue)
{
    queue->index = self->queue_count;
    if (self->free_count) {
        //  A deleted queue's slot (its dedupe records were forgotten).
        for (uint32_t index = 0; index < self->queue_count; index++)
            if (!self->queues[index]->name) {
                free (self->queues[index]);
                queue->index = index;
                break;
            }
        self->free_count--;
    } else
        self->queue_count++;
    self->queues[queue->index] = queue;
    if (queue->is_auto)
        self->auto_count++;
    zhashx_insert (self->queue_by_name, queue->name, (void *)(uintptr_t)(queue->index + 1));
    if (queue->is_dead) {
        zqi_rs_queue_t *parent = s_dead_parent (self, queue->name, queue->name_size);
        if (parent) {
            parent->dead = queue->index;
            if (self->max_attempts && self->dead_unmade)
                self->dead_unmade--;
        }
    } else {
        zqi_rs_queue_t *dead = s_dead_child (self, queue->name);
        if (dead && dead->is_auto) {
            //  A client made NAME.dead first: it is NAME's dead-letter
            //  queue now, in the place NAME keeps for it.
            dead->is_auto = false;
            self->auto_count--;
            free (dead->maker);
            dead->maker = NULL;
        }
        if (dead)
            queue->dead = dead->index;
        else if (self->max_attempts)
            self->dead_unmade++;
    }
}

//  True if the last queue named is name (size octets).
static bool
s_is_last (const zqi_r_server_t *self, const char *name, size_t size)
{
    const zqi_rs_queue_t *queue = self->last_queue;
    return queue && queue->name_size == size && memcmp (queue->name, name, size) == 0;
}

zqi_rs_queue_t *
zqi_rs_queue_last (zqi_r_server_t *self, const char *name, size_t size)
{
    zqi_rs_queue_t *queue = self->last_queue;
    if (!s_is_last (self, name, size) || !queue->spool)
        return NULL;
    queue->used = ++self->use_clock;
    queue->named_ms = self->now;
    return queue;
}

//  Returns queue name (size bytes, not NUL-terminated) with its spool
//  open, creating it if needed when create is true. NULL with errno EINVAL
//  (bad name), ZQ_ENOTFOUND (absent, create false), ZQ_ELIMIT (a new
//  queue past max_queues), EMFILE (the fd budget is spent and no queue is
//  idle) or the spool's errno. A new queue that cannot be opened is not
//  kept.
zqi_rs_queue_t *
zqi_rs_queue_get (zqi_r_server_t *self, const char *name, size_t size, bool create)
{
    zqi_rs_queue_t *queue = NULL;
    if (s_is_last (self, name, size))
        queue = self->last_queue;
    else {
        if (zqi_queue_name_check (name, size) < 0)
            return NULL;
        char key[ZQ_QUEUE_NAME_MAX + sizeof ZQ_QUEUE_DEAD_SUFFIX];
        memcpy (key, name, size);
        key[size] = '\0';
        queue = zqi_rs_queue_find (self, key);
        if (!queue) {
            if (!create) {
                errno = ZQ_ENOTFOUND;
                return NULL;
            }
            queue = zqi_rs_queue_new (self, key, size);
            if (!queue)
                return NULL;
            //  A dead-letter queue of a queue that exists may use the
            //  eighth of the fd budget kept for existing queues.
            bool kept = queue->is_dead && s_dead_parent (self, key, size);
            if (zqi_rs_queue_open (self, queue, !kept)) {
                int saved = errno;
                free (queue->name);
                free (queue->maker);
                free (queue);
                errno = saved;
                return NULL;
            }
            zqi_rs_queue_register (self, queue);
            zqi_rs_event (self, ZQI_RS_EVENT_QUEUE, "queue %s created", queue->name);
        }
    }
    if (zqi_rs_queue_open (self, queue, false))
        return NULL;
    self->last_queue = queue;
    queue->named_ms = zqi_r_now (&self->common);
    return queue;
}

//  The spool of a queue that may be closed, opened. NULL with errno as
//  zqi_rs_queue_open.
zq_spool_t *
zqi_rs_spool (zqi_r_server_t *self, zqi_rs_queue_t *queue)
{
    return zqi_rs_queue_open (self, queue, false) ? NULL : queue->spool;
}

//  Returns the dead-letter queue of queue with its spool open, making it
//  if needed; NULL with errno as zqi_rs_queue_get.
zqi_rs_queue_t *
zqi_rs_dead_queue (zqi_r_server_t *self, zqi_rs_queue_t *queue)
{
    if (queue->dead != ZQI_R_NONE) {
        zqi_rs_queue_t *dead = self->queues[queue->dead];
        return zqi_rs_queue_open (self, dead, false) ? NULL : dead;
    }
    char name[ZQ_QUEUE_NAME_MAX + sizeof ZQ_QUEUE_DEAD_SUFFIX];
    snprintf (name, sizeof name, "%s%s", queue->name, ZQ_QUEUE_DEAD_SUFFIX);
    zqi_rs_queue_t *last = self->last_queue;
    zqi_rs_queue_t *dead = zqi_rs_queue_get (self, name, strlen (name), true);
    self->last_queue = last;
    if (dead)
        queue->dead = dead->index;
    return dead;
}

//  ---- Consumers ----------------------------------------------------------

void
zqi_rs_route_key (const uint8_t *route, size_t size, char *key)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < size; i++) {
        key[2 * i] = hex[route[i] >> 4];
        key[2 * i + 1] = hex[route[i] & 15];
    }
    key[2 * size] = '\0';
}

uint32_t
zqi_rs_consumer_find (zqi_r_server_t *self, const uint8_t *route, size_t size)
{
    char key[512];
    zqi_rs_route_key (route, size, key);
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
    zqi_rs_consumer_t *consumers =
        (zqi_rs_consumer_t *)realloc (self->consumers, capacity * sizeof (zqi_rs_consumer_t));
    if (!consumers)
        return ZQI_R_NONE;
    memset (consumers + self->consumer_capacity, 0,
            (capacity - self->consumer_capacity) * sizeof (zqi_rs_consumer_t));
    self->consumers = consumers;
    uint32_t index = self->consumer_capacity;
    self->consumer_capacity = capacity;
    return index;
}

//  A session number for a new consumer: never 0, not reused before 2^32-1
//  others were made.
uint32_t
zqi_rs_session_new (zqi_r_server_t *self)
{
    if (++self->next_session == 0)
        self->next_session = 1;
    return self->next_session;
}

uint32_t
zqi_rs_consumer_new (zqi_r_server_t *self, const uint8_t *route, size_t size)
{
    uint32_t index = s_consumer_slot (self);
    if (index == ZQI_R_NONE)
        return ZQI_R_NONE;
    zqi_rs_consumer_t *consumer = &self->consumers[index];
    memset (consumer, 0, sizeof *consumer);
    consumer->in_use = true;
    consumer->route_size = (uint8_t)size;
    memcpy (consumer->route, route, size);
    consumer->head = ZQI_R_NONE;
    consumer->session = zqi_rs_session_new (self);
    char key[512];
    zqi_rs_route_key (route, size, key);
    zhashx_insert (self->consumer_by_route, key, (void *)(uintptr_t)(index + 1));
    zqi_rs_event (self, ZQI_RS_EVENT_CONSUMER, "consumer %u joined", consumer->session);
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

int
zqi_rs_subscribe (zqi_r_server_t *self, uint32_t index, zqi_rs_queue_t *queue)
{
    zqi_rs_consumer_t *consumer = &self->consumers[index];
    if (s_array_add (&consumer->queues, &consumer->queue_count, &consumer->queue_capacity,
                     queue->index) ||
        s_array_add (&queue->consumers, &queue->consumer_count, &queue->consumer_capacity, index))
        return -1;
    return 0;
}

void
zqi_rs_unsubscribe (zqi_r_server_t *self, uint32_t index, zqi_rs_queue_t *queue)
{
    zqi_rs_consumer_t *consumer = &self->consumers[index];
    s_array_remove (consumer->queues, &consumer->queue_count, queue->index);
    s_array_remove (queue->consumers, &queue->consumer_count, index);
    if (queue->rr >= queue->consumer_count)
        queue->rr = 0;
}

//  ---- Deleting queues ----------------------------------------------------

//  Removes a directory and what it holds (a spool: files, perhaps a
//  directory or two of them; links are removed, never followed), depth
//  levels down at most.
void
zqi_rs_remove_tree (const char *path, int depth)
{
    DIR *dir = opendir (path);
    if (dir) {
        struct dirent *item;
        while ((item = readdir (dir))) {
            if (streq (item->d_name, ".") || streq (item->d_name, ".."))
                continue;
            char *child = zsys_sprintf ("%s/%s", path, item->d_name);
            struct stat info;
            if (child && lstat (child, &info) == 0) {
                if (S_ISDIR (info.st_mode) && depth > 0)
                    zqi_rs_remove_tree (child, depth - 1);
                else
                    unlink (child);
            }
            zstr_free (&child);
        }
        closedir (dir);
    }
    rmdir (path);
}

//  Messages queue holds, ready, delayed or in flight. A queue closed
//  after use answers from what its spool held when closed (nothing
//  reaches a closed spool); one known by name only since the start is
//  opened to count (UINT64_MAX if it cannot be).
uint64_t
zqi_rs_queue_depth (zqi_r_server_t *self, zqi_rs_queue_t *queue)
{
    if (!queue->spool && !queue->used && zqi_rs_queue_open (self, queue, false))
        return UINT64_MAX;
    zq_spool_stats_t stats = queue->closed_stats;
    if (queue->spool)
        zq_spool_stats (queue->spool, &stats);
    return stats.depth;
}

//  Deletes queue: its entries (the deliveries of it are gone for their
//  consumers), its consumers (each told with ERROR 13), its dedupe
//  records, its spool and directory, its name. Its slot stays, free, for
//  the next new queue. Called with nothing in flight (zqi_rs_settle_all:
//  no PUT waits on it). Returns how many messages it held.
uint64_t
zqi_rs_queue_remove (zqi_r_server_t *self, zqi_rs_queue_t *queue)
{
    uint64_t dropped = zqi_rs_queue_depth (self, queue);
    if (dropped == UINT64_MAX)
        dropped = 0;
    for (uint32_t index = 0; index < self->table.capacity; index++) {
        zqi_r_entry_t *entry = &self->table.entries[index];
        if (entry->in_use && entry->queue == queue->index) {
            zqi_rs_entry_leave (self, index);
            zqi_r_table_remove (&self->table, index);
        }
    }
    while (queue->consumer_count) {
        uint32_t consumer = queue->consumers[0];
        zqi_rs_consumer_t *holder = &self->consumers[consumer];
        if (consumer != ZQI_RS_LOCAL) {
            char reason[ZQ_QUEUE_NAME_MAX + 64];
            snprintf (reason, sizeof reason, "queue deleted: %s", queue->name);
            zqi_rs_send_error (self, holder->route, holder->route_size, ZQI_R_CODE_DELETED, reason);
        }
        zqi_rs_unsubscribe (self, consumer, queue);
    }
    zqi_r_dedupe_forget_queue (&self->dedupe, queue->index);
    if (queue->is_dead) {
        zqi_rs_queue_t *parent = s_dead_parent (self, queue->name, queue->name_size);
        if (parent) {
            parent->dead = ZQI_R_NONE;
            if (self->max_attempts)
                self->dead_unmade++; //  its place is kept again
        }
    } else if (queue->dead == ZQI_R_NONE && self->max_attempts && self->dead_unmade)
        self->dead_unmade--; //  the place kept for its NAME.dead
    if (queue->spool) {
        zq_spool_destroy (&queue->spool);
        zqi_rs_parsed_forget (self, queue->index);
        self->open_count--;
    }
    if (self->spool_dir) {
        //  Renamed first: a crash from here on leaves no queue by this
        //  name, and the start removes what is left.
        char *dir = zsys_sprintf ("%s/%s", self->spool_dir, queue->name);
        char *gone = zsys_sprintf ("%s/%s%s", self->spool_dir, ZQI_RS_DELETED_PREFIX, queue->name);
        if (dir && gone) {
            if (rename (dir, gone) == 0)
                zqi_rs_remove_tree (gone, 4);
            else if (errno != ENOENT)
                zqi_log (ZQ_LOG_ERROR, "reliable: cannot remove %s: %s", dir, strerror (errno));
        }
        zstr_free (&dir);
        zstr_free (&gone);
    }
    zhashx_delete (self->queue_by_name, queue->name);
    if (queue->is_auto)
        self->auto_count--;
    if (self->last_queue == queue)
        self->last_queue = NULL;
    free (queue->name);
    free (queue->maker);
    free (queue->consumers);
    uint32_t index = queue->index;
    memset (queue, 0, sizeof *queue);
    queue->index = index;
    queue->dead = ZQI_R_NONE;
    self->free_count++;
    return dropped;
}

//  Deletes client-made queues unnamed for auto_queue_idle_ms that hold
//  nothing, have no consumer and whose NAME.dead (if any) holds nothing.
void
zqi_rs_sweep (zqi_r_server_t *self, int64_t now)
{
    for (uint32_t index = 0; index < self->queue_count; index++) {
        zqi_rs_queue_t *queue = self->queues[index];
        //  Queues past the fd budget at start, never named since, are
        //  left until named: counting them would open each.
        if (!queue->name || !queue->is_auto || queue->consumer_count || queue->in_flight ||
            queue->held || queue->appended || queue->behind ||
            now - queue->named_ms < self->auto_idle_ms || (!queue->spool && !queue->used) ||
            zqi_rs_queue_depth (self, queue))
            continue;
        zqi_rs_queue_t *dead = queue->dead != ZQI_R_NONE ? self->queues[queue->dead] : NULL;
        if (dead && (dead->declared || dead->consumer_count || dead->in_flight || dead->held ||
                     dead->appended || dead->behind || (!dead->spool && !dead->used) ||
                     zqi_rs_queue_depth (self, dead)))
            continue;
        zqi_log (ZQ_LOG_NOTICE,
                 "reliable: queue %s deleted: made by a client, empty and unused for %" PRId64
                 " ms (auto_queue_idle_ms)",
                 queue->name, now - queue->named_ms);
        if (dead)
            zqi_rs_queue_remove (self, dead);
        zqi_rs_queue_remove (self, queue);
    }
}
