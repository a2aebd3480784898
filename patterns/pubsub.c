/*  =========================================================================
    pubsub - publishers send to every matching subscriber (XPUB/SUB).

    Frames (doc/PROTOCOL.md, "pubsub"): the subject as a topic frame, so
    ZeroMQ's prefix filtering works on it; a 16-byte frame with the
    publisher id and the sequence number of the message on its subject;
    then the envelope.

    Sequence numbers count per publisher AND per subject, because a
    subscriber sees only the subjects its prefixes match: one counter per
    publisher would make every unmatched message look lost. A subscriber
    remembers the last number per (publisher, subject); a jump of more than
    one adds the missing count to stats.gaps. The first message of a pair
    starts the count (late joiners see no false gap); a number that does
    not move forward means the publisher started its counters again and
    restarts the count without a gap.

    Publisher: an XPUB socket whose subscriptions zq applies itself,
    bounded per connection as every XPUB of zq's (src/zq_subscriptions.h:
    a topic prefix of at most 256 bytes, at most 1024 subscriptions per
    connection, a connection that breaks them closed), so
    zq_queue_subscribers counts what is in force, per connection. Each
    call reads a bounded number of notices: at most S_NOTICES_PER_SEND in
    a send (once per millisecond of the system's clock, or every
    S_NOTICE_EVERY sends), S_NOTICES_PER_CALL elsewhere. What happens when a
    matching subscriber's queue is full is the slow_subscriber option:
      skip  ZeroMQ's PUB behaviour (ZMQ_XPUB_NODROP off): that subscriber
            misses the message, the others get it. libzmq says nothing, so
            the publisher cannot count it; the subscriber counts the gap.
      drop  ZMQ_XPUB_NODROP on: the send fails inside libzmq, zq counts the
            message in stats.dropped and reports success; no subscriber
            gets it and each matching one counts the gap. Exact on both
            sides, at the price of one slow subscriber costing all of them.
            (Sending it again with NODROP off to reach the others would not
            do: libzmq then stops offering messages to the full subscriber
            until it drains, and those losses would go uncounted.)
      wait  ZMQ_XPUB_NODROP on: the send waits for room up to its timeout,
            then fails with EAGAIN and the caller keeps the message, as a
            pipeline send does. An XPUB always polls writable, so the wait
            is on the socket's ZMQ_FD, which signals when a subscriber's
            queue drains (and on any other socket event).

    Memory is bounded: each side tracks at most S_MAX_TRACKED subjects (or
    publisher-subject pairs), each by a 128-bit hash, never a copy of the
    subject, so the bound is in bytes too. When a table is full it is
    cleared; a publisher also takes a new publisher id then, so its
    subscribers start counting afresh instead of seeing numbers restart.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_pattern.h"
#include "zq_sequence.h"
#include "zq_subscriptions.h"
#include <inttypes.h>
#include <sys/random.h>
#include <xxhash.h>

//  Refused subscriptions and closed connections are logged one line per
//  this long at most (the others counted in the next line).
#define S_BOUND_LOG_MS 1000

#define S_MAX_TRACKED 65536
//  Most notice frames a publisher reads in one send, and in one of its
//  other calls: a flood of notices cannot stall a call past its timeout.
#define S_NOTICES_PER_SEND 256
#define S_NOTICES_PER_CALL 1024
//  A send reads notices when the system's millisecond has moved since the
//  last read, or after this many sends: looking costs more than a send.
#define S_NOTICE_EVERY 256

//  ---- A small open-addressing table: (publisher, subject) -> sequence ----
//  Keyed by a 128-bit hash of the pair, not a copy of the subject: an entry
//  is 32 bytes whatever the subject's length, so the table holds at most
//  S_MAX_TRACKED entries in at most 2 * S_MAX_TRACKED slots (4 MiB).

typedef struct {
    XXH128_hash_t key; //  of (publisher, subject)
    uint64_t sequence; //  the last number sent or received
    uint64_t used;     //  1 if the slot holds a pair
} s_entry_t;

typedef struct {
    s_entry_t *entries;
    size_t capacity; //  a power of two, or 0
    size_t count;
} s_table_t;

static void
s_table_clear (s_table_t *table)
{
    free (table->entries);
    memset (table, 0, sizeof *table);
}

static s_entry_t *
s_table_slot (s_table_t *table, XXH128_hash_t key)
{
    size_t mask = table->capacity - 1;
    for (size_t i = (size_t)key.low64 & mask;; i = (i + 1) & mask) {
        s_entry_t *entry = &table->entries[i];
        if (!entry->used || XXH128_isEqual (entry->key, key))
            return entry;
    }
}

static int
s_table_grow (s_table_t *table)
{
    size_t capacity = table->capacity ? table->capacity * 2 : 64;
    s_entry_t *entries = (s_entry_t *)calloc (capacity, sizeof (s_entry_t));
    if (!entries)
        return zqi_fail (ENOMEM);
    s_table_t bigger = {entries, capacity, table->count};
    for (size_t i = 0; i < table->capacity; i++) {
        s_entry_t *old = &table->entries[i];
        if (old->used)
            *s_table_slot (&bigger, old->key) = *old;
    }
    free (table->entries);
    *table = bigger;
    return 0;
}

//  Finds the entry for (publisher, subject), adding it with sequence 0 and
//  *added_p true if absent. Returns NULL on ENOMEM. Clears the table first
//  when it holds S_MAX_TRACKED entries and a new one is needed.
static s_entry_t *
s_table_find (s_table_t *table, uint64_t publisher, const char *subject, size_t subject_size,
              bool *added_p)
{
    XXH128_hash_t key = XXH3_128bits_withSeed (subject, subject_size, publisher);
    *added_p = false;
    if (table->capacity) {
        s_entry_t *entry = s_table_slot (table, key);
        if (entry->used)
            return entry;
    }
    if (table->count >= S_MAX_TRACKED)
        s_table_clear (table);
    if (table->count * 2 >= table->capacity && s_table_grow (table))
        return NULL;
    s_entry_t *entry = s_table_slot (table, key);
    *entry = (s_entry_t){key, 0, 1};
    table->count++;
    *added_p = true;
    return entry;
}

//  ---- The pattern ------------------------------------------------------

typedef struct {
    zq_pattern_ctx_t *ctx;
    void *handle;
    uint64_t publisher_id;     //  publisher: as it goes on the wire (raw bytes)
    s_table_t table;           //  publisher: last sequence sent per subject;
                               //  subscriber: last received per pair
    zqi_subs_t *subscriptions; //  publisher: the subscriptions in force
    char slow_subscriber;      //  publisher: 's'kip, 'd'rop or 'w'ait
    unsigned sends_since_notices;
    int64_t notices_ms;                            //  publisher: when a send last read notices
    zqi_log_limit_t bound_log[ZQI_SUBS_MALFORMED]; //  publisher: refusals and closes, by event
} s_pubsub_t;

static void
s_new_publisher_id (s_pubsub_t *self)
{
    uint64_t id = 0;
    if (getrandom (&id, sizeof id, GRND_NONBLOCK) != (ssize_t)sizeof id)
        id = (uint64_t)zclock_usecs () ^ ((uint64_t)getpid () << 32) ^ (uint64_t)(uintptr_t)self;
    if (id == self->publisher_id)
        id++;
    self->publisher_id = id;
}

static int
s_open (void *state, zq_pattern_ctx_t *ctx)
{
    s_pubsub_t *self = (s_pubsub_t *)state;
    self->ctx = ctx;
    self->handle = ctx->handle;
    if (ctx->role == ZQ_PUBLISHER) {
        const char *mode = zq_options_get_str (ctx->options, "slow_subscriber");
        self->slow_subscriber = mode ? mode[0] : 's';
        int nodrop = self->slow_subscriber != 's';
        if (zmq_setsockopt (self->handle, ZMQ_XPUB_NODROP, &nodrop, sizeof nodrop))
            return -1;
        self->subscriptions = zqi_subs_new (
            ctx->sock, (size_t)zqi_option_int (ctx->options, "max_subscription_bytes"));
        if (!self->subscriptions)
            return -1;
        s_new_publisher_id (self);
    }
    return 0;
}

static size_t
s_close (void *state)
{
    s_pubsub_t *self = (s_pubsub_t *)state;
    s_table_clear (&self->table);
    zqi_subs_destroy (&self->subscriptions);
    return 0;
}

//  What a peer sent that is not a subscription counts as an error; a
//  subscription refused or a connection closed for the bounds of
//  src/zq_subscriptions.h is logged, one line a second at most of each.
static void
s_notice (void *arg, zqi_subs_event_t event, const uint8_t *topic, size_t size)
{
    s_pubsub_t *self = (s_pubsub_t *)arg;
    if (event == ZQI_SUBS_MALFORMED)
        self->ctx->stats->errors++;
    const char *what = zqi_subs_event_text (event);
    uint64_t skipped;
    if (what &&
        zqi_log_limit_due (&self->bound_log[event], zqi_clock_mono_coarse (self->ctx->clock),
                           S_BOUND_LOG_MS, &skipped))
        zqi_log (ZQ_LOG_WARNING, "pubsub publisher: %s; %" PRIu64 " more since the last line", what,
                 skipped);
}

//  Takes in at most max_frames of the publisher's waiting notices:
//  "\x01prefix" subscribes, "\x00prefix" ends a subscription, within the
//  bounds of src/zq_subscriptions.h. Returns 0 or -1 with errno.
static int
s_take_notices (s_pubsub_t *self, size_t max_frames)
{
    return zqi_subs_take (self->subscriptions, max_frames, s_notice, self) < 0 ? -1 : 0;
}

static int
s_send (void *state, zq_msg_t **msg_p)
{
    s_pubsub_t *self = (s_pubsub_t *)state;
    if (self->ctx->role != ZQ_PUBLISHER)
        return zqi_fail (ENOTSUP);
    //  New subscriptions apply once read. (The system's clock, not the
    //  queue's: this paces work, it is no timer.)
    int64_t now_ms = zqi_clock_mono (NULL);
    if (++self->sends_since_notices >= S_NOTICE_EVERY || now_ms != self->notices_ms) {
        self->sends_since_notices = 0;
        self->notices_ms = now_ms;
        if (s_take_notices (self, S_NOTICES_PER_SEND))
            return -1;
    }
    const char *subject = zq_msg_subject (*msg_p);
    size_t subject_size = strlen (subject);
    bool added;
    size_t tracked = self->table.count;
    s_entry_t *entry = s_table_find (&self->table, 0, subject, subject_size, &added);
    if (!entry)
        return -1;
    if (added && self->table.count < tracked)
        s_new_publisher_id (self); //  the table was cleared: counters restart
    uint64_t sequence = entry->sequence + 1;
    uint8_t header[ZQI_SEQUENCE_SIZE];
    zqi_sequence_write (header, (const uint8_t *)&self->publisher_id, sequence);

    if (zmq_send (self->handle, subject, subject_size, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1) {
        if (errno != EAGAIN || self->slow_subscriber == 'w')
            return -1;
        //  drop: the number is used, so subscribers see the gap.
        entry->sequence = sequence;
        self->ctx->stats->dropped++;
        zq_msg_destroy (msg_p);
        return 0;
    }
    //  The first frame is out: the rest of the message cannot meet the
    //  high-water mark.
    int rc = zmq_send (self->handle, header, ZQI_SEQUENCE_SIZE, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (rc >= 0)
        rc = zq_msg_send (msg_p, self->handle, ZMQ_DONTWAIT);
    int saved_errno = errno;
    if (rc < 0)
        //  Only ENOMEM can get here: end the half-sent message so the
        //  socket stays usable (subscribers count it as malformed, and the
        //  sequence number it used as a gap).
        zmq_send (self->handle, "", 0, ZMQ_DONTWAIT);
    entry->sequence = sequence;
    return rc < 0 ? zqi_fail (saved_errno) : 0;
}

//  flags (ZMQ_DONTWAIT or 0) are for the first frame.
static zq_msg_t *
s_recv_flags (s_pubsub_t *self, int flags)
{
    if (self->ctx->role != ZQ_SUBSCRIBER) {
        errno = ENOTSUP;
        return NULL;
    }
    zmq_msg_t topic, header;
    zmq_msg_init (&topic);
    zmq_msg_init (&header);
    zq_msg_t *msg = NULL;
    if (zmq_msg_recv (&topic, self->handle, flags) < 0)
        goto done; //  EAGAIN and friends
    if (!zmq_msg_more (&topic)) {
        errno = ZQ_EPROTO;
        goto done;
    }
    if (zmq_msg_recv (&header, self->handle, ZMQ_DONTWAIT) < 0)
        goto done;
    if (zmq_msg_size (&header) != ZQI_SEQUENCE_SIZE || !zmq_msg_more (&header)) {
        zqi_drain (self->handle);
        errno = ZQ_EPROTO;
        goto done;
    }
    msg = zq_msg_recv (self->handle, ZMQ_DONTWAIT, self->ctx->max_message_bytes);
    if (!msg)
        goto done; //  zq_msg_recv read every frame of a bad message
    const uint8_t *publisher_id;
    uint64_t publisher, sequence = 0;
    int bad_sequence = zqi_sequence_read (zmq_msg_data (&header), zmq_msg_size (&header),
                                          &publisher_id, &sequence);
    if (!bad_sequence)
        memcpy (&publisher, publisher_id, sizeof publisher);
    const char *subject = zq_msg_subject (msg);
    size_t subject_size = strlen (subject);
    if (bad_sequence || subject_size != zmq_msg_size (&topic) ||
        memcmp (subject, zmq_msg_data (&topic), subject_size) != 0) {
        zq_msg_destroy (&msg);
        errno = ZQ_EPROTO;
        goto done;
    }
    bool added;
    s_entry_t *entry = s_table_find (&self->table, publisher, subject, subject_size, &added);
    if (entry) {
        self->ctx->stats->gaps += zqi_sequence_gap (!added, entry->sequence, sequence);
        entry->sequence = sequence;
    }
    //  Without memory to track the pair, the message is still delivered;
    //  only its gap count is lost.
done:;
    int saved_errno = errno;
    zmq_msg_close (&topic);
    zmq_msg_close (&header);
    errno = saved_errno;
    return msg;
}

static zq_msg_t *
s_recv (void *state)
{
    return s_recv_flags ((s_pubsub_t *)state, ZMQ_DONTWAIT);
}

static zq_msg_t *
s_recv_blocking (void *state)
{
    return s_recv_flags ((s_pubsub_t *)state, 0);
}

static int
s_events (void *state, int zmq_events)
{
    s_pubsub_t *self = (s_pubsub_t *)state;
    if (self->ctx->role == ZQ_PUBLISHER && (zmq_events & ZMQ_POLLIN)) {
        if (s_take_notices (self, S_NOTICES_PER_CALL))
            return -1;
        zmq_events &= ~ZMQ_POLLIN;
    }
    return zmq_events;
}

static int
s_wait (void *state, short what, long timeout_ms)
{
    s_pubsub_t *self = (s_pubsub_t *)state;
    if (self->ctx->role == ZQ_PUBLISHER && what == ZMQ_POLLOUT) {
        //  Wake on any command to the socket (a subscriber's queue
        //  draining is one): an XPUB is writable while any subscriber is.
        int events;
        if (zqi_pattern_poll_signal (self->ctx, self->handle, timeout_ms, &events))
            return -1;
        return (events & ZMQ_POLLIN) ? s_take_notices (self, S_NOTICES_PER_CALL) : 0;
    }
    return zqi_pattern_poll (self->ctx, self->handle, what, timeout_ms);
}

static int
s_subscribe (void *state, const char *prefix)
{
    s_pubsub_t *self = (s_pubsub_t *)state;
    if (self->ctx->role != ZQ_SUBSCRIBER)
        return zqi_fail (ENOTSUP);
    return zmq_setsockopt (self->handle, ZMQ_SUBSCRIBE, prefix, strlen (prefix));
}

static int
s_unsubscribe (void *state, const char *prefix)
{
    s_pubsub_t *self = (s_pubsub_t *)state;
    if (self->ctx->role != ZQ_SUBSCRIBER)
        return zqi_fail (ENOTSUP);
    if (zmq_setsockopt (self->handle, ZMQ_UNSUBSCRIBE, prefix, strlen (prefix)))
        return -1;
    //  Messages skipped while not subscribed are not losses: count afresh.
    s_table_clear (&self->table);
    return 0;
}

static int
s_subscribers (void *state)
{
    s_pubsub_t *self = (s_pubsub_t *)state;
    if (self->ctx->role != ZQ_PUBLISHER)
        return zqi_fail (ENOTSUP);
    if (s_take_notices (self, S_NOTICES_PER_CALL))
        return -1;
    size_t count = zqi_subs_count (self->subscriptions);
    return count > INT_MAX ? INT_MAX : (int)count;
}

//  The pattern's own settings (zq_options.h describes them).
static const zq_option_info_t s_options[] = {
    {"slow_subscriber", ZQ_OPTION_STR, 0, "skip", 4, 4,
     "pubsub: a full subscriber queue skips that subscriber, drops the message, or waits",
     "skip|drop|wait"},
    {"max_subscription_bytes", ZQ_OPTION_INT, ZQ_SUBSCRIPTION_BYTES_DEFAULT, NULL, 0, INT_MAX,
     "pubsub publisher: what subscriptions may cost in bytes of prefix, an eighth for one "
     "connection (over inproc aside)",
     NULL},
    {NULL, ZQ_OPTION_INT, 0, NULL, 0, 0, NULL, NULL},
};

const zq_pattern_t zqi_pattern_pubsub = {
    .name = "pubsub",
    .state_size = sizeof (s_pubsub_t),
    .roles =
        {
            [ZQ_PUBLISHER] = {.socket_type = ZMQ_XPUB, .binds_by_default = true},
            [ZQ_SUBSCRIBER] = {.socket_type = ZMQ_SUB, .binds_by_default = false},
        },
    .open = s_open,
    .close = s_close,
    .send = s_send,
    .recv = s_recv,
    .recv_blocking = s_recv_blocking,
    .events = s_events,
    .wait = s_wait,
    .subscribe = s_subscribe,
    .unsubscribe = s_unsubscribe,
    .options = s_options,
};

//  ---- The pattern's own verbs (include/zq_pubsub.h) -------------------------

int
zq_queue_subscribers (zq_queue_t *queue)
{
    if (!queue)
        return zqi_fail (EINVAL);
    if (!zqi_queue_is_open (queue))
        return zqi_fail (ENOTSOCK);
    void *state = zqi_queue_pattern_state (queue, &zqi_pattern_pubsub);
    return state ? s_subscribers (state) : -1;
}

int
zq_queue_wait_subscribers (zq_queue_t *queue, size_t count, int timeout_ms)
{
    int64_t deadline = 0;
    timeout_ms = timeout_ms < -1 ? -1 : timeout_ms;
    while (true) {
        int have = zq_queue_subscribers (queue);
        if (have < 0)
            return -1;
        if ((size_t)have >= count)
            return 0;
        if (timeout_ms == 0 || zqi_queue_wait (queue, ZMQ_POLLIN, timeout_ms, &deadline))
            return zqi_fail (errno == EAGAIN || timeout_ms == 0 ? ZQ_ETIMEDOUT : errno);
    }
}
