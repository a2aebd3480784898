/*  =========================================================================
    zq_device_admin - the device's commands, from its pipe or its admin
    socket: replies encoded in msgpack, the queue list, per-queue info,
    peek, purge and redrive, endpoint lookups, errors.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_device_internal.h"
#include <msgpack.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#define S_PEEK_DEFAULT 10
#define S_PEEK_MAX     1000
//  ---- Replies ---------------------------------------------------------------

static void
s_pack_str (msgpack_packer *packer, const char *text)
{
    size_t length = strlen (text);
    msgpack_pack_str (packer, length);
    msgpack_pack_str_body (packer, text, length);
}

static void
s_pack_uint (msgpack_packer *packer, const char *key, uint64_t value)
{
    s_pack_str (packer, key);
    msgpack_pack_uint64 (packer, value);
}

//  Appends a frame holding the packer's buffer to reply.
static void
s_append_buffer (zmsg_t *reply, msgpack_sbuffer *buffer)
{
    zframe_t *frame = zframe_new (buffer->data, buffer->size);
    if (frame)
        zmsg_append (reply, &frame);
    msgpack_sbuffer_clear (buffer);
}

static void
s_append_row (zmsg_t *reply, const char *name, zqi_kind_t kind, const zqi_row_t *row)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    if (!row) {
        msgpack_pack_map (&packer, 2);
        s_pack_str (&packer, "name");
        s_pack_str (&packer, name);
        s_pack_str (&packer, "kind");
        s_pack_str (&packer, zqi_kind_name (kind));
    } else {
        msgpack_pack_map (&packer, 26);
        s_pack_str (&packer, "name");
        s_pack_str (&packer, name);
        s_pack_str (&packer, "kind");
        s_pack_str (&packer, zqi_kind_name (kind));
        s_pack_uint (&packer, "depth", row->depth);
        s_pack_uint (&packer, "ready", row->ready);
        s_pack_uint (&packer, "in_flight", row->in_flight);
        s_pack_uint (&packer, "delayed", row->delayed);
        s_pack_uint (&packer, "oldest_age_ms", row->oldest_age_ms);
        s_pack_uint (&packer, "in", row->in);
        s_pack_uint (&packer, "out", row->out);
        s_pack_uint (&packer, "delivered", row->delivered);
        s_pack_uint (&packer, "acked", row->acked);
        s_pack_uint (&packer, "nacked", row->nacked);
        s_pack_uint (&packer, "redelivered", row->redelivered);
        s_pack_uint (&packer, "timeouts", row->timeouts);
        s_pack_uint (&packer, "dead", row->dead);
        s_pack_uint (&packer, "dead_lettered", row->dead_lettered);
        s_pack_uint (&packer, "expired", row->expired);
        s_pack_uint (&packer, "duplicates", row->duplicates);
        s_pack_uint (&packer, "refused", row->refused);
        s_pack_uint (&packer, "dropped", row->dropped);
        s_pack_uint (&packer, "gaps", row->gaps);
        s_pack_uint (&packer, "errors", row->errors);
        s_pack_uint (&packer, "spilled", row->spilled);
        s_pack_uint (&packer, "consumers", row->consumers);
        s_pack_str (&packer, "in_rate");
        msgpack_pack_double (&packer, row->in_rate);
        s_pack_str (&packer, "out_rate");
        msgpack_pack_double (&packer, row->out_rate);
    }
    s_append_buffer (reply, &buffer);
    msgpack_sbuffer_destroy (&buffer);
}

static void
s_append_count (zmsg_t *reply, const char *key, uint64_t value)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&packer, 1);
    s_pack_uint (&packer, key, value);
    s_append_buffer (reply, &buffer);
    msgpack_sbuffer_destroy (&buffer);
}

static void s_error_reply (zmsg_t **reply_p, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

//  Replaces *reply_p (destroyed if any) with ERROR and the text.
static void
s_error_reply (zmsg_t **reply_p, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    char *text = zsys_vprintf (format, args);
    va_end (args);
    zmsg_destroy (reply_p);
    *reply_p = zmsg_new ();
    zmsg_addstr (*reply_p, "ERROR");
    zmsg_addstr (*reply_p, text ? text : "out of memory");
    zstr_free (&text);
}

static int
s_compare_names (const void *item1, const void *item2)
{
    return strcmp (((const zqi_dqueue_t *)item1)->name, ((const zqi_dqueue_t *)item2)->name);
}

//  The device's queues, sorted by name (a list the caller destroys; the
//  queues stay the device's).
static zlistx_t *
s_sorted_queues (zqi_device_t *self)
{
    zqi_device_queues_sync (self);
    zlistx_t *list = zlistx_new ();
    if (!list)
        return NULL;
    zlistx_set_comparator (list, s_compare_names);
    for (zqi_dqueue_t *dq = (zqi_dqueue_t *)zhashx_first (self->queues); dq;
         dq = (zqi_dqueue_t *)zhashx_next (self->queues))
        zlistx_add_end (list, dq);
    zlistx_sort (list);
    return list;
}

static zqi_dqueue_t *
s_lookup (zqi_device_t *self, const char *name)
{
    zqi_dqueue_t *dq = (zqi_dqueue_t *)zhashx_lookup (self->queues, name);
    if (!dq) {
        zqi_device_queues_sync (self);
        dq = (zqi_dqueue_t *)zhashx_lookup (self->queues, name);
    }
    return dq;
}

static zmsg_t *
s_command_endpoint (zqi_device_t *self, const char *what)
{
    const char *endpoint = NULL;
    if (streq (what, "bind"))
        endpoint = self->qserver ? zqi_qserver_endpoint (self->qserver) : "";
    else if (streq (what, "admin"))
        endpoint = self->admin_endpoint ? self->admin_endpoint : "";
    else {
        const char *slash = strrchr (what, '/');
        if (slash) {
            char *name = strndup (what, (size_t)(slash - what));
            zqi_dqueue_t *dq = name ? (zqi_dqueue_t *)zhashx_lookup (self->queues, name) : NULL;
            free (name);
            if (dq && dq->ops->has_endpoints) {
                if (streq (slash + 1, "in"))
                    endpoint = dq->in_endpoint;
                else if (streq (slash + 1, "out"))
                    endpoint = dq->out_endpoint;
            }
        }
    }
    zmsg_t *reply = NULL;
    if (!endpoint) {
        s_error_reply (&reply, "no endpoint '%s' (bind, admin, NAME/in, NAME/out)", what);
        return reply;
    }
    reply = zmsg_new ();
    zmsg_addstr (reply, "OK");
    zmsg_addstr (reply, endpoint);
    return reply;
}

static zmsg_t *
s_command_queue (zqi_device_t *self, zmsg_t *request)
{
    char *name = zmsg_popstr (request);
    char *kind_name = zmsg_popstr (request);
    char *in = zmsg_popstr (request);
    char *out = zmsg_popstr (request);
    zmsg_t *reply = NULL;
    zqi_kind_t kind = zqi_kind_lookup (kind_name);
    const zqi_kind_ops_t *ops = zqi_kind_ops (kind);
    zqi_dqueue_t *existing = name ? s_lookup (self, name) : NULL;
    if (!name || zqi_device_name_check (name))
        s_error_reply (&reply,
                       "QUEUE: not a queue name: 1 to %d letters, digits, '.', '_' or '-', not "
                       "starting or ending with '.', without '..' (zq_queue.h)",
                       ZQ_QUEUE_NAME_MAX);
    else if (!kind)
        s_error_reply (&reply, "QUEUE %s: kind is queue, stream or forward", name);
    else if (existing && existing->kind != kind)
        s_error_reply (&reply, "QUEUE %s: exists as a %s", name, zqi_kind_name (existing->kind));
    else if (existing && ops->has_endpoints)
        s_error_reply (&reply, "QUEUE %s: exists", name);
    else if (ops->has_endpoints && (!in || !*in || !out || !*out))
        s_error_reply (&reply, "QUEUE %s: a %s needs IN and OUT endpoints", name,
                       zqi_kind_name (kind));
    else {
        zqi_queue_config_t *config = zqi_queue_config_new (self->config, name, kind);
        char error[512] = "";
        if (config && ops->has_endpoints) {
            free (config->in);
            free (config->out);
            config->in = strdup (in);
            config->out = strdup (out);
            if (!config->in || !config->out)
                zqi_queue_config_destroy (&config);
        }
        if (!config)
            s_error_reply (&reply, "out of memory");
        else if (existing) {
            zqi_queue_config_destroy (&config);
        } else if (zqi_device_queue_add (self, config, error, sizeof error))
            s_error_reply (&reply, "QUEUE %s: %s", name, error);
    }
    if (!reply) {
        reply = zmsg_new ();
        zmsg_addstr (reply, "OK");
    }
    zstr_free (&name);
    zstr_free (&kind_name);
    zstr_free (&in);
    zstr_free (&out);
    return reply;
}

//  Parses a count argument: decimal, 1 to max.
static int
s_parse_count (const char *text, uint64_t max, uint64_t *count_p)
{
    if (!text || !*text || *text == '-' || *text == '+')
        return -1;
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull (text, &end, 10);
    if (errno || *end || value < 1 || value > max)
        return -1;
    *count_p = value;
    return 0;
}

static zmsg_t *
s_command_admin (zqi_device_t *self, const char *command, zmsg_t *request)
{
    char *name = zmsg_popstr (request);
    char *argument = zmsg_popstr (request);
    zmsg_t *reply = zmsg_new ();
    zmsg_addstr (reply, "OK");
    zqi_dqueue_t *dq = name ? s_lookup (self, name) : NULL;
    bool named = streq (command, "PEEK") || streq (command, "PURGE") || streq (command, "REDRIVE");
    if (named && !name) {
        s_error_reply (&reply, "%s: which queue?", command);
    } else if (named && !dq) {
        s_error_reply (&reply, "%s: no queue '%s'", command, name);
    } else if (streq (command, "LS") || streq (command, "STAT")) {
        zlistx_t *list = s_sorted_queues (self);
        bool found = false;
        for (zqi_dqueue_t *each = list ? (zqi_dqueue_t *)zlistx_first (list) : NULL; each;
             each = (zqi_dqueue_t *)zlistx_next (list)) {
            if (name && !streq (name, each->name))
                continue;
            found = true;
            if (streq (command, "LS"))
                s_append_row (reply, each->name, each->kind, NULL);
            else {
                zqi_row_t row;
                zqi_device_row (self, each, &row);
                s_append_row (reply, each->name, each->kind, &row);
            }
        }
        zlistx_destroy (&list);
        if (name && !found) {
            s_error_reply (&reply, "%s: no queue '%s'", command, name);
        }
    } else if (streq (command, "PEEK")) {
        uint64_t count = S_PEEK_DEFAULT;
        if (argument && s_parse_count (argument, S_PEEK_MAX, &count)) {
            s_error_reply (&reply, "PEEK: COUNT is 1 to %d, not '%s'", S_PEEK_MAX, argument);
        } else if (!dq->ops->peek) {
            s_error_reply (&reply, "PEEK: %s is a %s: it keeps no messages", name, dq->ops->name);
        } else if (dq->ops->peek (self, dq, (size_t)count, reply)) {
            s_error_reply (&reply, "PEEK %s: %s", name, zq_strerror (errno));
        }
    } else if (streq (command, "PURGE")) {
        uint64_t purged = 0;
        int rc = dq->ops->purge ? dq->ops->purge (self, dq, &purged) : 0;
        if (rc) {
            s_error_reply (&reply, "PURGE %s: %s", name, zq_strerror (errno));
        } else {
            s_append_count (reply, "purged", purged);
            zqi_log (ZQ_LOG_NOTICE, "zq_device: purged %llu messages from %s",
                     (unsigned long long)purged, name);
        }
    } else {
        uint64_t redriven = 0;
        if (!dq->ops->redrive) {
            s_error_reply (&reply, "REDRIVE: %s is a %s: it has no dead letters", name,
                           dq->ops->name);
        } else if (dq->ops->redrive (self, dq, &redriven)) {
            s_error_reply (&reply, "REDRIVE %s: %s", name, zq_strerror (errno));
        } else {
            s_append_count (reply, "redriven", redriven);
            zqi_log (ZQ_LOG_NOTICE, "zq_device: redrove %llu dead letters to %s",
                     (unsigned long long)redriven, name);
        }
    }
    zstr_free (&name);
    zstr_free (&argument);
    return reply;
}

//  Answers one command; from_pipe allows the embedding-only ones.
zmsg_t *
zqi_device_handle (zqi_device_t *self, zmsg_t *request, bool from_pipe)
{
    char *command = zmsg_popstr (request);
    zmsg_t *reply = NULL;
    if (!command)
        s_error_reply (&reply, "empty command");
    else if (from_pipe && streq (command, "ENDPOINT")) {
        char *what = zmsg_popstr (request);
        if (what)
            reply = s_command_endpoint (self, what);
        else
            s_error_reply (&reply, "ENDPOINT: what?");
        zstr_free (&what);
    } else if (from_pipe && streq (command, "QUEUE"))
        reply = s_command_queue (self, request);
    else if (streq (command, "LS") || streq (command, "STAT") || streq (command, "PEEK") ||
             streq (command, "PURGE") || streq (command, "REDRIVE"))
        reply = s_command_admin (self, command, request);
    else if (streq (command, "PING")) {
        reply = zmsg_new ();
        zmsg_addstr (reply, "OK");
        zmsg_addstr (reply, "PONG");
    } else {
        self->bad_commands++;
        size_t length = strlen (command);
        s_error_reply (&reply, "unknown command '%.*s'%s", length > 64 ? 64 : (int)length, command,
                       length > 64 ? "..." : "");
    }
    zstr_free (&command);
    return reply;
}

//  Answers one request from the admin socket (a ROUTER): the routing
//  envelope up to an empty frame, then the command. Anything else is
//  dropped; a reply that finds no room is dropped too, so no client can
//  stall the device.
void
zqi_device_admin_request (zqi_device_t *self, zmsg_t *request)
{
    zmsg_t *envelope = zmsg_new ();
    zframe_t *frame;
    bool delimited = false;
    while (envelope && (frame = zmsg_pop (request))) {
        bool empty = zframe_size (frame) == 0;
        zmsg_append (envelope, &frame);
        if (empty) {
            delimited = true;
            break;
        }
    }
    if (delimited && zmsg_size (request) > 0) {
        zmsg_t *reply = zqi_device_handle (self, request, false);
        while (reply && (frame = zmsg_pop (reply)))
            zmsg_append (envelope, &frame);
        zmsg_destroy (&reply);
        void *handle = zsock_resolve (self->admin);
        size_t left = zmsg_size (envelope);
        while ((frame = zmsg_pop (envelope))) {
            left--;
            if (zframe_send (&frame, handle, ZFRAME_DONTWAIT | (left ? ZFRAME_MORE : 0))) {
                zframe_destroy (&frame);
                break;
            }
        }
    } else
        self->bad_commands++;
    zmsg_destroy (&envelope);
    zmsg_destroy (&request);
}
