/*  =========================================================================
    zq_options - named, validated queue settings, from one table.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_internal.h"
#include <limits.h>
#include <strings.h>

//  The one table. Order is the listing order and never changes meaning:
//  an options object stores values by row index.
static const zq_option_info_t s_table[] = {
    {"sndhwm", ZQ_OPTION_INT, 1000, NULL, 0, INT_MAX,
     "messages queued per peer for sending (ZMQ_SNDHWM; 0 = no limit)", NULL},
    {"rcvhwm", ZQ_OPTION_INT, 1000, NULL, 0, INT_MAX,
     "messages queued per peer on receipt (ZMQ_RCVHWM; 0 = no limit)", NULL},
    {"sndbuf_bytes", ZQ_OPTION_INT, 0, NULL, 0, INT_MAX,
     "kernel send buffer of each tcp connection (ZMQ_SNDBUF; 0 = system default)", NULL},
    {"rcvbuf_bytes", ZQ_OPTION_INT, 0, NULL, 0, INT_MAX,
     "kernel receive buffer of each tcp connection (ZMQ_RCVBUF; 0 = system default)", NULL},
    {"linger_ms", ZQ_OPTION_INT, 1000, NULL, -1, INT_MAX,
     "how long unsent messages are kept flushing after close (-1 = until sent)", NULL},
    {"reconnect_ms", ZQ_OPTION_INT, 100, NULL, -1, INT_MAX,
     "interval between reconnection attempts (-1 = never reconnect)", NULL},
    {"reconnect_max_ms", ZQ_OPTION_INT, 0, NULL, 0, INT_MAX,
     "cap of the exponential reconnection backoff (0 = no backoff)", NULL},
    {"heartbeat_ivl_ms", ZQ_OPTION_INT, 0, NULL, 0, INT_MAX,
     "interval between ZMTP heartbeats on each connection (0 = off)", NULL},
    {"heartbeat_timeout_ms", ZQ_OPTION_INT, 0, NULL, 0, INT_MAX,
     "silence after a heartbeat that closes a connection (0 = heartbeat_ivl_ms)", NULL},
    {"heartbeat_ttl_ms", ZQ_OPTION_INT, 0, NULL, 0, 6553500,
     "silence after which the peer closes the connection (0 = none)", NULL},
    {"max_message_bytes", ZQ_OPTION_INT, ZQ_MSG_MAX_SIZE_DEFAULT, NULL, 64, INT32_MAX,
     "largest message accepted, all envelope frames (also ZMQ_MAXMSGSIZE; a reliable server's"
     " is at least twice this, so it can refuse a bigger PUT by its id)",
     NULL},
    {"batch_max_bytes", ZQ_OPTION_INT, 65536, NULL, 0, 1048576,
     "pipeline producer: largest batch frame made of messages that found no room;"
     " reliable producer: largest PUT batch of messages waiting together (0 = every message"
     " alone)",
     NULL},
    {"identity", ZQ_OPTION_STR, 0, "", 0, 255,
     "routing identity of the socket (ZMQ_ROUTING_ID; empty = chosen by libzmq)", NULL},
    {"send_timeout_ms", ZQ_OPTION_INT, 5000, NULL, -1, INT_MAX,
     "send timeout used with ZQ_TIMEOUT_DEFAULT (-1 = wait as long as needed)", NULL},
    {"recv_timeout_ms", ZQ_OPTION_INT, -1, NULL, -1, INT_MAX,
     "receive timeout used with ZQ_TIMEOUT_DEFAULT (-1 = wait as long as needed)", NULL},
    {"slow_subscriber", ZQ_OPTION_STR, 0, "skip", 4, 4,
     "pubsub: a full subscriber queue skips that subscriber, drops the message, or waits",
     "skip|drop|wait"},
    {"request_timeout_ms", ZQ_OPTION_INT, 5000, NULL, 1, INT_MAX,
     "rpc: deadline of one request attempt", NULL},
    {"retries", ZQ_OPTION_INT, 3, NULL, 0, 1000,
     "rpc: attempts after the first before a request fails", NULL},
    {"max_in_flight", ZQ_OPTION_INT, 1000, NULL, 1, 1000000,
     "rpc: requests a client awaits at once; routes a server keeps for unanswered requests;"
     " reliable: unconfirmed messages a producer keeps in memory",
     NULL},
    {"spool_dir", ZQ_OPTION_STR, 0, "", 0, 4000,
     "reliable server: directory of the queue spools (empty = in memory)", NULL},
    {"outbox_dir", ZQ_OPTION_STR, 0, "", 0, 4000,
     "reliable producer: directory of a durable outbox spool (empty = in memory)", NULL},
    {"fsync", ZQ_OPTION_STR, 0, "always", 4, 8,
     "reliable: when spool records are made durable before a confirm", "always|interval|none"},
    {"fsync_interval_ms", ZQ_OPTION_INT, 100, NULL, 1, 3600000,
     "reliable: sync period of fsync \"interval\"", NULL},
    {"quota_bytes", ZQ_OPTION_INT, 0, NULL, 0, INT64_MAX,
     "reliable: bytes one spool (queue or outbox) may take (0 = no quota on disk)", NULL},
    {"segment_bytes", ZQ_OPTION_INT, 64 * 1024 * 1024, NULL, 4096, INT64_MAX,
     "reliable: size at which a spool starts a new segment file", NULL},
    {"visibility_timeout_ms", ZQ_OPTION_INT, 30000, NULL, 1, INT_MAX,
     "reliable server: time a consumer has to ack a delivery before it is delivered again", NULL},
    {"max_attempts", ZQ_OPTION_INT, 10, NULL, 0, INT_MAX,
     "reliable server: deliveries of a message before it is dead-lettered (0 = no limit)", NULL},
    {"prefetch", ZQ_OPTION_INT, 256, NULL, 1, 1000000,
     "reliable consumer: deliveries it holds at once without acking them", NULL},
    {"max_deliveries", ZQ_OPTION_INT, 0, NULL, 0, INT64_MAX,
     "reliable consumer: deliveries it takes in all, its window shrinking as it settles"
     " (0 = no limit)",
     NULL},
    {"dedupe_window_ms", ZQ_OPTION_INT, 60000, NULL, 0, INT_MAX,
     "reliable server: a PUT of an id stored this recently in the same queue, by the same "
     "producer, with the same body, is not stored again (0 = off)",
     NULL},
    {"dedupe_max", ZQ_OPTION_INT, 262144, NULL, 1, 1 << 30,
     "reliable server: most ids the dedupe window remembers (the oldest go first)", NULL},
    {"nack_backoff_ms", ZQ_OPTION_INT, 100, NULL, 0, INT_MAX,
     "reliable server: first delay of a nack with ZQ_NACK_BACKOFF, doubled per attempt", NULL},
    {"nack_backoff_max_ms", ZQ_OPTION_INT, 30000, NULL, 0, INT_MAX,
     "reliable server: longest nack backoff", NULL},
    {"max_delay_ms", ZQ_OPTION_INT, 43200000, NULL, 1, INT_MAX,
     "reliable server: longest NACK delay and TOUCH extension a consumer gets (longer ones are"
     " cut to this)",
     NULL},
    {"max_unsettled_bytes", ZQ_OPTION_INT, 16 * 1024 * 1024, NULL, 1, INT64_MAX,
     "reliable server: bytes of deliveries one consumer connection holds unsettled before it"
     " gets more (one message always goes)",
     NULL},
    {"max_unsettled_bytes_total", ZQ_OPTION_INT, 256 * 1024 * 1024, NULL, 1, INT64_MAX,
     "reliable server: bytes of deliveries all consumer connections hold unsettled before"
     " only those holding none get more (one message each)",
     NULL},
    {"confirm_timeout_ms", ZQ_OPTION_INT, 5000, NULL, 1, INT_MAX,
     "reliable producer: a message unconfirmed this long is sent again", NULL},
    {"ping_ivl_ms", ZQ_OPTION_INT, 1000, NULL, 10, INT_MAX,
     "reliable: interval of protocol pings (consumer session, server restarts)", NULL},
    {"max_queues", ZQ_OPTION_INT, 1024, NULL, 1, 1000000,
     "reliable server: most named queues it holds (dead-letter queues included: with"
     " max_attempts set, a new queue needs a place for its NAME.dead too)",
     NULL},
    {"max_consumer_queues", ZQ_OPTION_INT, 64, NULL, 1, 1000000,
     "reliable server: most queues one remote consumer (one connection) consumes at once", NULL},
    {"max_auto_queues", ZQ_OPTION_INT, 256, NULL, 0, 1000000,
     "reliable server: most queues clients create by a first PUT or CONSUME (declared queues"
     " and dead-letter queues do not count)",
     NULL},
    {"auto_queue_idle_ms", ZQ_OPTION_INT, 3600000, NULL, 0, INT_MAX,
     "reliable server: a queue a client created that is empty, unconsumed and unnamed this"
     " long is deleted (0 = never)",
     NULL},
    {"min_free_bytes", ZQ_OPTION_INT, 0, NULL, 0, INT64_MAX,
     "reliable server: PUTs are refused while the spool's filesystem has less free space"
     " (0 = no watermark)",
     NULL},
    {"curve_cert", ZQ_OPTION_STR, 0, "", 0, 4000,
     "CURVE: certificate file with this queue's keys (zmakecert; PATH_secret is read first);"
     " alone it makes the queue a CURVE server",
     NULL},
    {"curve_server_key", ZQ_OPTION_STR, 0, "", 0, 40,
     "CURVE client: the server's public key, Z85 text (40 characters)", NULL},
    {"curve_server_cert", ZQ_OPTION_STR, 0, "", 0, 4000,
     "CURVE client: the server's public certificate file (instead of curve_server_key)", NULL},
    {"curve_clients", ZQ_OPTION_STR, 0, "", 0, 4000,
     "CURVE server: directory of allowed clients' public certificates, or \"*\" (starts zauth)",
     NULL},
};
#define S_COUNT (sizeof s_table / sizeof s_table[0])

struct _zq_options_t {
    int64_t ints[S_COUNT];
    char *strs[S_COUNT]; //  NULL = the default text
    bool set[S_COUNT];
};

static int
s_index (const char *name)
{
    if (name)
        for (size_t i = 0; i < S_COUNT; i++)
            if (strcmp (s_table[i].name, name) == 0)
                return (int)i;
    errno = EINVAL;
    return -1;
}

zq_options_t *
zq_options_new (void)
{
    zq_options_t *self = (zq_options_t *)calloc (1, sizeof (zq_options_t));
    if (!self) {
        errno = ENOMEM;
        return NULL;
    }
    for (size_t i = 0; i < S_COUNT; i++)
        self->ints[i] = s_table[i].default_int;
    return self;
}

void
zq_options_destroy (zq_options_t **self_p)
{
    if (self_p && *self_p) {
        zq_options_t *self = *self_p;
        for (size_t i = 0; i < S_COUNT; i++)
            free (self->strs[i]);
        free (self);
        *self_p = NULL;
    }
}

zq_options_t *
zq_options_dup (const zq_options_t *self)
{
    zq_options_t *copy = zq_options_new ();
    if (!copy)
        return NULL;
    if (!self)
        return copy;
    for (size_t i = 0; i < S_COUNT; i++) {
        copy->ints[i] = self->ints[i];
        copy->set[i] = self->set[i];
        if (self->strs[i]) {
            copy->strs[i] = strdup (self->strs[i]);
            if (!copy->strs[i]) {
                zq_options_destroy (&copy);
                errno = ENOMEM;
                return NULL;
            }
        }
    }
    return copy;
}

static int
s_parse_int (const char *text, int64_t *value_p)
{
    if (!text || !*text)
        return -1;
    const char *p = text;
    bool negative = (*p == '-');
    if (negative)
        p++;
    if (!*p)
        return -1;
    uint64_t value = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        if (value > ((uint64_t)INT64_MAX) / 10)
            return -1;
        value = value * 10 + (uint64_t)(*p - '0');
        if (value > (uint64_t)INT64_MAX)
            return -1;
    }
    *value_p = negative ? -(int64_t)value : (int64_t)value;
    return 0;
}

//  True if value (length bytes) is one of the '|'-separated words.
static bool
s_is_choice (const char *choices, const char *value, size_t length)
{
    const char *word = choices;
    while (word) {
        const char *bar = strchr (word, '|');
        size_t word_length = bar ? (size_t)(bar - word) : strlen (word);
        if (word_length == length && memcmp (word, value, length) == 0)
            return true;
        word = bar ? bar + 1 : NULL;
    }
    return false;
}

int
zq_options_set_int (zq_options_t *self, const char *name, int64_t value)
{
    int index = s_index (name);
    if (!self || index < 0)
        return zqi_fail (EINVAL);
    const zq_option_info_t *info = &s_table[index];
    if (info->type == ZQ_OPTION_STR || value < info->min || value > info->max)
        return zqi_fail (EINVAL);
    self->ints[index] = value;
    self->set[index] = true;
    return 0;
}

int
zq_options_set (zq_options_t *self, const char *name, const char *value)
{
    int index = s_index (name);
    if (!self || !value || index < 0)
        return zqi_fail (EINVAL);
    const zq_option_info_t *info = &s_table[index];
    int64_t number = 0;
    switch (info->type) {
        case ZQ_OPTION_INT:
            if (s_parse_int (value, &number))
                return zqi_fail (EINVAL);
            return zq_options_set_int (self, name, number);
        case ZQ_OPTION_STR: {
            size_t length = strlen (value);
            if ((int64_t)length < info->min || (int64_t)length > info->max)
                return zqi_fail (EINVAL);
            if (info->choices && !s_is_choice (info->choices, value, length))
                return zqi_fail (EINVAL);
            char *copy = strdup (value);
            if (!copy)
                return zqi_fail (ENOMEM);
            free (self->strs[index]);
            self->strs[index] = copy;
            self->set[index] = true;
            return 0;
        }
    }
    return zqi_fail (EINVAL);
}

int
zq_options_get_int (const zq_options_t *self, const char *name, int64_t *value_p)
{
    int index = s_index (name);
    if (index < 0 || s_table[index].type == ZQ_OPTION_STR || !value_p)
        return zqi_fail (EINVAL);
    *value_p = self ? self->ints[index] : s_table[index].default_int;
    return 0;
}

const char *
zq_options_get_str (const zq_options_t *self, const char *name)
{
    int index = s_index (name);
    if (index < 0 || s_table[index].type != ZQ_OPTION_STR) {
        errno = EINVAL;
        return NULL;
    }
    if (self && self->strs[index])
        return self->strs[index];
    return s_table[index].default_str;
}

bool
zq_options_is_set (const zq_options_t *self, const char *name)
{
    int index = s_index (name);
    return self && index >= 0 && self->set[index];
}

const zq_option_info_t *
zq_options_info (size_t index)
{
    return index < S_COUNT ? &s_table[index] : NULL;
}

const zq_option_info_t *
zq_options_lookup (const char *name)
{
    int index = s_index (name);
    return index < 0 ? NULL : &s_table[index];
}
