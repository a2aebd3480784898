/*  =========================================================================
    zq_options - named, validated queue settings: the mechanism, and the
    generic options every pattern shares (each pattern declares its own).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_internal.h"
#include <limits.h>
#include <pthread.h>
#include <strings.h>

//  The generic options: the socket, timeouts and CURVE settings every
//  pattern shares. Each pattern declares its own settings in its file
//  (zq_pattern_t.options); zq_options lists them, in order, between the
//  socket rows and the CURVE rows. Order is the listing order and never
//  changes meaning: an options object stores values by row index.
static const zq_option_info_t s_generic[] = {
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
    {"heartbeat_ttl_ms", ZQ_OPTION_INT, 0, NULL, 0, ZQ_HEARTBEAT_TTL_MAX_MS,
     "silence after which the peer closes the connection (0 = none; at most 65500: libzmq reads "
     "a longer one wrong)",
     NULL},
    {"max_message_bytes", ZQ_OPTION_INT, ZQ_MSG_MAX_SIZE_DEFAULT, NULL, 64, INT32_MAX,
     "largest message accepted, all envelope frames (also ZMQ_MAXMSGSIZE; a reliable server's"
     " is at least twice this, so it can refuse a bigger PUT by its id)",
     NULL},
    {"identity", ZQ_OPTION_STR, 0, "", 0, 255,
     "routing identity of the socket (ZMQ_ROUTING_ID; empty = chosen by libzmq)", NULL},
    {"send_timeout_ms", ZQ_OPTION_INT, 5000, NULL, -1, INT_MAX,
     "send timeout used with ZQ_TIMEOUT_DEFAULT (-1 = wait as long as needed)", NULL},
    {"recv_timeout_ms", ZQ_OPTION_INT, -1, NULL, -1, INT_MAX,
     "receive timeout used with ZQ_TIMEOUT_DEFAULT (-1 = wait as long as needed)", NULL},
    {NULL, ZQ_OPTION_INT, 0, NULL, 0, 0, NULL, NULL},
};

static const zq_option_info_t s_curve[] = {
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
    {NULL, ZQ_OPTION_INT, 0, NULL, 0, 0, NULL, NULL},
};

//  Most options of all tables together (a bound checked once).
#define S_ROWS_MAX 128

//  Every row of every table, by index; built once per process.
static const zq_option_info_t *s_table[S_ROWS_MAX];
static size_t s_count;
static pthread_once_t s_table_once = PTHREAD_ONCE_INIT;

static void
s_table_add (const zq_option_info_t *rows)
{
    for (; rows && rows->name; rows++) {
        ZQ_ASSERT (s_count < S_ROWS_MAX);
        s_table[s_count++] = rows;
    }
}

static void
s_table_build (void)
{
    s_table_add (s_generic);
    const zq_option_info_t *rows;
    for (size_t i = 0; (rows = zqi_pattern_options (i)) != NULL; i++)
        s_table_add (rows);
    s_table_add (s_curve);
}

//  The number of options, the table built.
static size_t
s_rows (void)
{
    pthread_once (&s_table_once, s_table_build);
    return s_count;
}

#define S_COUNT (s_rows ())

struct _zq_options_t {
    int64_t ints[S_ROWS_MAX];
    char *strs[S_ROWS_MAX]; //  NULL = the default text
    bool set[S_ROWS_MAX];
};

static int
s_index (const char *name)
{
    if (name)
        for (size_t i = 0; i < S_COUNT; i++)
            if (strcmp (s_table[i]->name, name) == 0)
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
        self->ints[i] = s_table[i]->default_int;
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
    const zq_option_info_t *info = s_table[index];
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
    const zq_option_info_t *info = s_table[index];
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
    if (index < 0 || s_table[index]->type == ZQ_OPTION_STR || !value_p)
        return zqi_fail (EINVAL);
    *value_p = self ? self->ints[index] : s_table[index]->default_int;
    return 0;
}

const char *
zq_options_get_str (const zq_options_t *self, const char *name)
{
    int index = s_index (name);
    if (index < 0 || s_table[index]->type != ZQ_OPTION_STR) {
        errno = EINVAL;
        return NULL;
    }
    if (self && self->strs[index])
        return self->strs[index];
    return s_table[index]->default_str;
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
    return index < S_COUNT ? s_table[index] : NULL;
}

const zq_option_info_t *
zq_options_lookup (const char *name)
{
    int index = s_index (name);
    return index < 0 ? NULL : s_table[index];
}
