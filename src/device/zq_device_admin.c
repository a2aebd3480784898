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
#include "zq_device_metrics.h"
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

//  Appends a row (counters NULL: an LS row) in the admin codec's form.
static void
s_append_row (zmsg_t *reply, const char *name, zqi_kind_t kind, const zqi_row_t *row)
{
    zframe_t *frame = zqi_admin_row_encode (name, zqi_kind_name (kind), row);
    if (frame)
        zmsg_append (reply, &frame);
}

static void
s_append_count (zmsg_t *reply, const char *key, uint64_t value)
{
    zframe_t *frame = zqi_admin_count_encode (key, value);
    if (frame)
        zmsg_append (reply, &frame);
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
    else if (streq (what, "http"))
        endpoint = self->http ? zqi_http_address (self->http) : "";
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

//  DELETE NAME [FORCE]: a queue of kind queue that no configuration
//  declared, with its NAME.dead; FORCE drops what it holds.
static void
s_command_delete (zqi_device_t *self, zqi_dqueue_t *dq, const char *argument, zmsg_t **reply_p)
{
    char *name = strdup (dq->name);
    uint64_t dropped = 0;
    if (!name)
        s_error_reply (reply_p, "out of memory");
    else if (argument && !streq (argument, "FORCE"))
        s_error_reply (reply_p, "DELETE %s: the argument is FORCE or nothing, not '%.32s'", name,
                       argument);
    else if (!dq->ops->delete_queue)
        s_error_reply (reply_p,
                       "DELETE %s: a %s is declared in the configuration: remove it there and "
                       "restart",
                       name, dq->ops->name);
    else if (dq->config)
        s_error_reply (reply_p,
                       "DELETE %s: declared in the configuration (queues/%s): remove it there "
                       "and restart",
                       name, name);
    else if (dq->ops->delete_queue (self, dq, argument ? ZQ_DELETE_FORCE : 0, &dropped)) {
        int errnum = errno;
        if (errnum == ENOTEMPTY)
            s_error_reply (reply_p,
                           "DELETE %s: holds messages (it or %s.dead): purge it, or delete with "
                           "FORCE (zq delete --force)",
                           name, name);
        else if (errnum == EPERM)
            s_error_reply (reply_p, "DELETE %s: declared in the configuration", name);
        else
            s_error_reply (reply_p, "DELETE %s: %s", name, zq_strerror (errnum));
    } else {
        s_append_count (*reply_p, "deleted", dropped);
        zqi_log (ZQ_LOG_NOTICE, "zq_device: deleted queue %s (%llu messages dropped)", name,
                 (unsigned long long)dropped);
        zqi_device_queues_sync (self);
    }
    free (name);
}

//  Answers an admin command. access is NULL for the embedding's pipe
//  (every right), else the device's access rules for identity user_id.
static zmsg_t *
s_command_admin (zqi_device_t *self, const char *command, zmsg_t *request, zqi_access_t *access,
                 const char *user_id)
{
    char *name = zmsg_popstr (request);
    char *argument = zmsg_popstr (request);
    zmsg_t *reply = zmsg_new ();
    zmsg_addstr (reply, "OK");
    bool allowed = !name || zqi_access_allows (access, user_id, ZQI_ACCESS_ADMIN, name);
    zqi_dqueue_t *dq = name && allowed ? s_lookup (self, name) : NULL;
    bool named = streq (command, "PEEK") || streq (command, "PURGE") ||
                 streq (command, "REDRIVE") || streq (command, "DELETE");
    if (named && !name) {
        s_error_reply (&reply, "%s: which queue?", command);
    } else if (!allowed) {
        //  Before the queue is looked up: a refusal tells nothing of it.
        char where[32];
        snprintf (where, sizeof where, "admin %s", command);
        zqi_access_refused (access, user_id, ZQI_ACCESS_ADMIN, name, where);
        s_error_reply (&reply, "%s %s: denied: identity %s has no admin right on it", command, name,
                       user_id && *user_id ? user_id : ZQI_ACCESS_ANONYMOUS);
    } else if (named && !dq) {
        s_error_reply (&reply, "%s: no queue '%s'", command, name);
    } else if (streq (command, "LS") || streq (command, "STAT")) {
        zlistx_t *list = s_sorted_queues (self);
        bool found = false;
        for (zqi_dqueue_t *each = list ? (zqi_dqueue_t *)zlistx_first (list) : NULL; each;
             each = (zqi_dqueue_t *)zlistx_next (list)) {
            if (name && !streq (name, each->name))
                continue;
            //  Each identity sees the queues it may administer.
            if (!zqi_access_allows (access, user_id, ZQI_ACCESS_ADMIN, each->name))
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
    } else if (streq (command, "DELETE")) {
        s_command_delete (self, dq, argument, &reply);
        dq = NULL; //  freed if deleted
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

//  INFO: version, uptime, store and the limits a client meets. Its queue
//  count, like LS, counts the queues the identity may administer (access
//  NULL: all).
static zmsg_t *
s_command_info (zqi_device_t *self, zqi_access_t *access, const char *user_id)
{
    zqi_admin_info_t info;
    memset (&info, 0, sizeof info);
    snprintf (info.version, sizeof info.version, "%s", PACKAGE_VERSION);
    info.uptime_ms = (uint64_t)(zqi_clock_mono (self->env.clock) - self->started_ms);
    snprintf (info.store, sizeof info.store, "%s",
              *self->config->spool ? self->config->spool : "memory");
    snprintf (info.fsync, sizeof info.fsync, "%s", zq_spool_fsync_name (self->config->fsync));
    snprintf (info.bind, sizeof info.bind, "%s",
              self->qserver ? zqi_qserver_endpoint (self->qserver) : "");
    zqi_device_queues_sync (self);
    for (zqi_dqueue_t *each = (zqi_dqueue_t *)zhashx_first (self->queues); each;
         each = (zqi_dqueue_t *)zhashx_next (self->queues))
        if (zqi_access_allows (access, user_id, ZQI_ACCESS_ADMIN, each->name))
            info.queues++;
    int64_t value = 0;
    if (zq_options_get_int (self->config->queue_options, "max_queues", &value) == 0)
        info.max_queues = (uint64_t)value;
    if (zq_options_get_int (self->config->queue_options, "max_message_bytes", &value) == 0)
        info.max_message_bytes = (uint64_t)value;
    info.peek_max = S_PEEK_MAX;
    info.admin_request_max_bytes = ZQI_DEVICE_ADMIN_REQUEST_MAX;
    zmsg_t *reply = zmsg_new ();
    zframe_t *frame = zqi_admin_info_encode (&info);
    if (!reply || !frame) {
        zframe_destroy (&frame);
        zmsg_destroy (&reply);
        s_error_reply (&reply, "INFO: out of memory");
        return reply;
    }
    zmsg_addstr (reply, "OK");
    zmsg_append (reply, &frame);
    return reply;
}

//  Answers one command; from_pipe allows the embedding-only ones and
//  every right, else user_id is the admin client's identity.
zmsg_t *
zqi_device_handle (zqi_device_t *self, zmsg_t *request, bool from_pipe, const char *user_id)
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
             streq (command, "PURGE") || streq (command, "REDRIVE") || streq (command, "DELETE"))
        reply = s_command_admin (self, command, request, from_pipe ? NULL : self->config->access,
                                 user_id);
    else if (streq (command, "INFO"))
        reply = s_command_info (self, from_pipe ? NULL : self->config->access, user_id);
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
zqi_device_admin_request (zqi_device_t *self, zmsg_t *request, const char *user_id)
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
        zmsg_t *reply = zqi_device_handle (self, request, false, user_id);
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
