/*  =========================================================================
    zq_device - the buffering device as a CZMQ actor: starts it, runs its
    poll loop over the pipe, the admin socket, the reliable server and the
    streams' and forwards' sockets, answers commands (include/zq_device.h)
    and keeps the rates. Each queue kind lives in its own file.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_device_internal.h"
#include <msgpack.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

//  How often rates are sampled, and queues of kind queue the reliable
//  server created for clients are noticed.
#define S_TICK_MS      1000
#define S_PEEK_DEFAULT 10
#define S_PEEK_MAX     1000

//  Descriptors that must be free before the device creates a kind's or the
//  admin sockets (sockets, listeners, a stream's spool, address lookups).
#define S_SOCKET_FDS 16

typedef struct {
    zsock_t *pipe;
    zqi_device_env_t env;
    zqi_device_config_t *config;
    zactor_t *auth;
    zsock_t *admin;
    char *admin_endpoint;
    zqi_qserver_t *qserver;
    zhashx_t *queues; //  name -> zqi_dqueue_t *
    int64_t next_tick_ms;
    int lock_fd; //  flock()ed SPOOL/zqd.lock, or -1
    bool terminated;
    uint64_t bad_commands;
} s_device_t;

//  ---- Helpers shared by the kinds -------------------------------------------

//  CZMQ asserts when it cannot create a socket, and libzmq when an address
//  lookup finds no descriptor: before creating sockets the device checks
//  that wanted descriptors are free, so that running short is an error of
//  the start, never an abort. Returns 0, or -1 with errno EMFILE and error.
static int
s_fds_free (const char *what, char *error, size_t error_size)
{
    int fds[S_SOCKET_FDS];
    int got = 0;
    while (got < S_SOCKET_FDS && (fds[got] = open ("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
        got++;
    int saved = errno;
    for (int i = 0; i < got; i++)
        close (fds[i]);
    if (got == S_SOCKET_FDS)
        return 0;
    snprintf (error, error_size,
              "%s: fewer than %d file descriptors left (%s); raise the limit (ulimit -n) or "
              "configure fewer queues",
              what, S_SOCKET_FDS, strerror (saved));
    return zqi_fail (EMFILE);
}

void
zqi_device_secure (zqi_device_env_t *env, zsock_t *sock)
{
    if (env->cert) {
        zcert_apply (env->cert, sock);
        zsock_set_curve_server (sock, 1);
    }
}

void
zqi_device_ipc_private (const char *endpoints)
{
    for (const char *item = endpoints; item && *item;) {
        const char *comma = strchr (item, ',');
        size_t length = comma ? (size_t)(comma - item) : strlen (item);
        //  Abstract sockets (ipc://@NAME) have no file.
        if (length > 6 && strncmp (item, "ipc://", 6) == 0 && item[6] != '@') {
            char *path = zsys_sprintf ("%.*s", (int)(length - 6), item + 6);
            if (path && chmod (path, 0600))
                zqi_log (ZQ_LOG_WARNING, "zq_device: cannot make %s 0600: %s", path,
                         strerror (errno));
            zstr_free (&path);
        }
        item = comma ? comma + 1 : NULL;
    }
}

int
zqi_device_bind (zsock_t *sock, const char *endpoints, char **resolved_p, char *error,
                 size_t error_size)
{
    char *copy = strdup (endpoints);
    char *resolved = strdup ("");
    if (!copy || !resolved) {
        free (copy);
        free (resolved);
        snprintf (error, error_size, "out of memory");
        return zqi_fail (ENOMEM);
    }
    char *saveptr = NULL;
    for (char *item = strtok_r (copy, ",", &saveptr); item; item = strtok_r (NULL, ",", &saveptr)) {
        if (*item == '@')
            item++;
        if (zmq_bind (zsock_resolve (sock), item)) {
            int saved = errno;
            snprintf (error, error_size, "cannot bind %s: %s", item, zq_strerror (saved));
            free (copy);
            free (resolved);
            return zqi_fail (saved);
        }
        char last[1024] = "";
        size_t size = sizeof last;
        zmq_getsockopt (zsock_resolve (sock), ZMQ_LAST_ENDPOINT, last, &size);
        zqi_device_ipc_private (last);
        char *joined = zsys_sprintf ("%s%s%s", resolved, *resolved ? "," : "", last);
        free (resolved);
        resolved = joined;
        if (!resolved) {
            free (copy);
            return zqi_fail (ENOMEM);
        }
    }
    free (copy);
    *resolved_p = resolved;
    return 0;
}

//  Receives one frame without waiting (copied into a zframe_t); *more_p
//  tells whether more follow. NULL if none is waiting.
static zframe_t *
s_frame_recv (void *handle, int flags, bool *more_p)
{
    zmq_msg_t part;
    zmq_msg_init (&part);
    if (zmq_msg_recv (&part, handle, flags) == -1) {
        zmq_msg_close (&part);
        return NULL;
    }
    *more_p = zmq_msg_more (&part) != 0;
    zframe_t *frame = zframe_new (zmq_msg_data (&part), zmq_msg_size (&part));
    zmq_msg_close (&part);
    return frame;
}

zmsg_t *
zqi_device_recv_nowait (zsock_t *sock)
{
    void *handle = zsock_resolve (sock);
    bool more = false;
    zframe_t *frame = s_frame_recv (handle, ZMQ_DONTWAIT, &more);
    if (!frame)
        return NULL;
    zmsg_t *msg = zmsg_new ();
    while (msg && frame) {
        zmsg_append (msg, &frame);
        //  The rest of a multipart message is there once its first frame is.
        frame = more ? s_frame_recv (handle, ZMQ_DONTWAIT, &more) : NULL;
    }
    zframe_destroy (&frame);
    return msg;
}

zframe_t *
zqi_device_one_frame (const zq_msg_t *msg)
{
    zframe_t *frame = zframe_new (NULL, zqi_msg_wire_size (msg));
    if (frame)
        zqi_msg_wire_write (msg, zframe_data (frame));
    return frame;
}

//  ---- Queues ----------------------------------------------------------------

static void
s_dqueue_destroy (zqi_dqueue_t **self_p)
{
    if (self_p && *self_p) {
        zqi_dqueue_t *self = *self_p;
        if (self->kind == ZQI_KIND_STREAM)
            zqi_stream_close (self);
        else if (self->kind == ZQI_KIND_FORWARD)
            zqi_forward_close (self);
        zqi_queue_config_destroy (&self->config);
        free (self->name);
        free (self->in_endpoint);
        free (self->out_endpoint);
        free (self);
        *self_p = NULL;
    }
}

static void
s_dqueue_destructor (void **item_p)
{
    s_dqueue_destroy ((zqi_dqueue_t **)item_p);
}

//  Creates queue name of kind with config (taken: the queue owns it, also
//  on failure). Returns 0, or -1 with errno and error.
static int
s_queue_add (s_device_t *self, zqi_queue_config_t *config, char *error, size_t error_size)
{
    zqi_dqueue_t *dq = (zqi_dqueue_t *)calloc (1, sizeof *dq);
    if (!dq || !(dq->name = strdup (config->name))) {
        free (dq);
        zqi_queue_config_destroy (&config);
        snprintf (error, error_size, "out of memory");
        return zqi_fail (ENOMEM);
    }
    dq->kind = config->kind;
    dq->config = config;
    int rc = 0;
    if (dq->kind == ZQI_KIND_QUEUE) {
        if (!self->qserver) {
            snprintf (error, error_size, "queue %s: the device has no bind endpoint", dq->name);
            rc = zqi_fail (EINVAL);
        } else if (zqi_qserver_declare (self->qserver, dq->name)) {
            snprintf (error, error_size, "queue %s: %s", dq->name, zq_strerror (errno));
            rc = -1;
        }
    } else if (s_fds_free (dq->name, error, error_size))
        rc = -1;
    else if (dq->kind == ZQI_KIND_STREAM) {
        char *dir = NULL;
        if (*self->config->spool) {
            dir = zsys_sprintf ("%s/stream/%s", self->config->spool, dq->name);
            if (!dir || zsys_dir_create ("%s", dir)) {
                snprintf (error, error_size, "stream %s: cannot create %s/stream/%s: %s", dq->name,
                          self->config->spool, dq->name, strerror (errno));
                zstr_free (&dir);
                rc = -1;
            }
        }
        if (rc == 0)
            rc = zqi_stream_open (dq, &self->env, dir, error, error_size);
        zstr_free (&dir);
    } else
        rc = zqi_forward_open (dq, &self->env, error, error_size);
    if (rc) {
        int saved = errno;
        s_dqueue_destroy (&dq);
        return zqi_fail (saved);
    }
    if (zhashx_insert (self->queues, dq->name, dq)) {
        s_dqueue_destroy (&dq);
        snprintf (error, error_size, "out of memory");
        return zqi_fail (ENOMEM);
    }
    return 0;
}

//  Makes sure every queue the reliable server holds has an entry here (for
//  its rates): clients create queues by using them.
static void
s_queues_sync (s_device_t *self)
{
    if (!self->qserver)
        return;
    zlistx_t *names = zlistx_new ();
    if (!names)
        return;
    zlistx_set_destructor (names, (zlistx_destructor_fn *)zstr_free);
    zqi_qserver_names (self->qserver, names);
    for (char *name = (char *)zlistx_first (names); name; name = (char *)zlistx_next (names)) {
        if (zhashx_lookup (self->queues, name))
            continue;
        zqi_dqueue_t *dq = (zqi_dqueue_t *)calloc (1, sizeof *dq);
        if (!dq)
            break;
        dq->name = strdup (name);
        dq->kind = ZQI_KIND_QUEUE;
        if (!dq->name || zhashx_insert (self->queues, dq->name, dq))
            s_dqueue_destroy (&dq);
    }
    zlistx_destroy (&names);
}

static void
s_row (s_device_t *self, zqi_dqueue_t *dq, zqi_row_t *row)
{
    memset (row, 0, sizeof *row);
    if (dq->kind == ZQI_KIND_STREAM)
        zqi_stream_row (dq, row);
    else if (dq->kind == ZQI_KIND_FORWARD)
        zqi_forward_row (dq, row);
    else if (self->qserver)
        zqi_qserver_row (self->qserver, dq->name, row);
    if (dq->samples > 1) {
        size_t span = dq->samples - 1 < ZQI_RATE_WINDOW ? dq->samples - 1 : ZQI_RATE_WINDOW;
        size_t newest = (dq->samples - 1) % (ZQI_RATE_WINDOW + 1);
        size_t oldest = (dq->samples - 1 - span) % (ZQI_RATE_WINDOW + 1);
        row->in_rate = (double)(dq->in_samples[newest] - dq->in_samples[oldest]) / (double)span;
        row->out_rate = (double)(dq->out_samples[newest] - dq->out_samples[oldest]) / (double)span;
    }
}

//  Every S_TICK_MS: notices new queues, samples totals for the rates.
static void
s_tick (s_device_t *self)
{
    s_queues_sync (self);
    for (zqi_dqueue_t *dq = (zqi_dqueue_t *)zhashx_first (self->queues); dq;
         dq = (zqi_dqueue_t *)zhashx_next (self->queues)) {
        zqi_row_t row;
        size_t samples = dq->samples;
        dq->samples = 0; //  s_row without rates
        s_row (self, dq, &row);
        dq->samples = samples;
        size_t slot = dq->samples % (ZQI_RATE_WINDOW + 1);
        dq->in_samples[slot] = row.in;
        dq->out_samples[slot] = row.out;
        dq->samples++;
    }
}

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
s_sorted_queues (s_device_t *self)
{
    s_queues_sync (self);
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
s_lookup (s_device_t *self, const char *name)
{
    zqi_dqueue_t *dq = (zqi_dqueue_t *)zhashx_lookup (self->queues, name);
    if (!dq) {
        s_queues_sync (self);
        dq = (zqi_dqueue_t *)zhashx_lookup (self->queues, name);
    }
    return dq;
}

static zmsg_t *
s_command_endpoint (s_device_t *self, const char *what)
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
            if (dq && dq->kind != ZQI_KIND_QUEUE) {
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
s_command_queue (s_device_t *self, zmsg_t *request)
{
    char *name = zmsg_popstr (request);
    char *kind_name = zmsg_popstr (request);
    char *in = zmsg_popstr (request);
    char *out = zmsg_popstr (request);
    zmsg_t *reply = NULL;
    zqi_kind_t kind = zqi_kind_lookup (kind_name);
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
    else if (existing && kind != ZQI_KIND_QUEUE)
        s_error_reply (&reply, "QUEUE %s: exists", name);
    else if (kind != ZQI_KIND_QUEUE && (!in || !*in || !out || !*out))
        s_error_reply (&reply, "QUEUE %s: a %s needs IN and OUT endpoints", name,
                       zqi_kind_name (kind));
    else {
        zqi_queue_config_t *config = zqi_queue_config_new (self->config, name, kind);
        char error[512] = "";
        if (config && kind != ZQI_KIND_QUEUE) {
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
        } else if (s_queue_add (self, config, error, sizeof error))
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
s_command_admin (s_device_t *self, const char *command, zmsg_t *request)
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
                s_row (self, each, &row);
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
        } else if (dq->kind == ZQI_KIND_STREAM)
            zqi_stream_peek (dq, (size_t)count, reply);
        else if (dq->kind == ZQI_KIND_FORWARD) {
            s_error_reply (&reply, "PEEK: %s is a forward: it keeps no messages", name);
        } else if (zqi_qserver_peek (self->qserver, name, (size_t)count, reply)) {
            s_error_reply (&reply, "PEEK %s: %s", name, zq_strerror (errno));
        }
    } else if (streq (command, "PURGE")) {
        uint64_t purged = 0;
        int rc = 0;
        if (dq->kind == ZQI_KIND_STREAM)
            purged = zqi_stream_purge (dq);
        else if (dq->kind == ZQI_KIND_QUEUE)
            rc = zqi_qserver_purge (self->qserver, name, &purged);
        if (rc) {
            s_error_reply (&reply, "PURGE %s: %s", name, zq_strerror (errno));
        } else {
            s_append_count (reply, "purged", purged);
            zqi_log (ZQ_LOG_NOTICE, "zq_device: purged %llu messages from %s",
                     (unsigned long long)purged, name);
        }
    } else {
        uint64_t redriven = 0;
        if (dq->kind != ZQI_KIND_QUEUE) {
            s_error_reply (&reply, "REDRIVE: %s is a %s: it has no dead letters", name,
                           zqi_kind_name (dq->kind));
        } else if (zqi_qserver_redrive (self->qserver, name, &redriven)) {
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
static zmsg_t *
s_handle (s_device_t *self, zmsg_t *request, bool from_pipe)
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
static void
s_admin_request (s_device_t *self, zmsg_t *request)
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
        zmsg_t *reply = s_handle (self, request, false);
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

//  ---- The actor -------------------------------------------------------------

typedef struct {
    zconfig_t *config;
    char *error;
    size_t error_size;
    int status; //  0 started, else the errno of the failure
} s_start_t;

static void
s_device_destroy (s_device_t **self_p)
{
    if (self_p && *self_p) {
        s_device_t *self = *self_p;
        zhashx_destroy (&self->queues);
        zqi_qserver_destroy (&self->qserver);
        zsock_destroy (&self->admin);
        zstr_free (&self->admin_endpoint);
        zactor_destroy (&self->auth);
        zcert_destroy (&self->env.cert);
        if (self->lock_fd >= 0)
            close (self->lock_fd);
        zqi_device_config_destroy (&self->config);
        free (self);
        *self_p = NULL;
    }
}

//  Opens everything the configuration asks for. Returns 0, or -1 with errno
//  and error.
static int
s_device_open (s_device_t *self, char *error, size_t error_size)
{
    zqi_device_config_t *config = self->config;
    if (*config->spool && zsys_dir_create ("%s", config->spool)) {
        int saved = errno;
        snprintf (error, error_size, "cannot create spool directory %s: %s", config->spool,
                  strerror (saved));
        return zqi_fail (saved);
    }
    //  One device per spool directory: the spools of queues not yet
    //  created are not locked yet, so the directory itself is.
    if (*config->spool) {
        char *path = zsys_sprintf ("%s/zqd.lock", config->spool);
        self->lock_fd = path ? open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0600) : -1;
        int saved = errno;
        zstr_free (&path);
        if (self->lock_fd < 0) {
            snprintf (error, error_size, "cannot open %s/zqd.lock: %s", config->spool,
                      strerror (saved));
            return zqi_fail (saved);
        }
        if (flock (self->lock_fd, LOCK_EX | LOCK_NB)) {
            saved = errno == EWOULDBLOCK ? EBUSY : errno;
            snprintf (error, error_size, "spool %s is in use by another device (%s)", config->spool,
                      strerror (saved));
            return zqi_fail (saved);
        }
    }
    if (*config->curve_secret_cert) {
        char reason[512] = "";
        if (!zsys_has_curve ()) {
            snprintf (error, error_size, "device/curve: libzmq was built without CURVE");
            return zqi_fail (ENOTSUP);
        }
        self->env.cert =
            zqi_curve_cert_load (config->curve_secret_cert, true, reason, sizeof reason);
        //  A file holding a secret key must be the owner's only.
        if (self->env.cert &&
            zqi_curve_secret_private (config->curve_secret_cert, reason, sizeof reason))
            zcert_destroy (&self->env.cert);
        if (!self->env.cert) {
            snprintf (error, error_size, "device/curve/secret_cert: %s", reason);
            return zqi_fail (EINVAL);
        }
        if (zqi_curve_auth_start (config->curve_clients, &self->auth, reason, sizeof reason)) {
            int saved = errno;
            snprintf (error, error_size, "device/curve/clients: %s", reason);
            return zqi_fail (saved);
        }
    }
    if (*config->bind) {
        if (s_fds_free ("device/bind", error, error_size))
            return -1;
        char *dir = NULL;
        if (*config->spool) {
            dir = zsys_sprintf ("%s/queue", config->spool);
            if (!dir || zsys_dir_create ("%s", dir)) {
                snprintf (error, error_size, "cannot create %s/queue: %s", config->spool,
                          strerror (errno));
                zstr_free (&dir);
                return -1;
            }
        }
        self->qserver = zqi_qserver_new (&self->env, dir, error, error_size);
        zstr_free (&dir);
        if (!self->qserver)
            return -1;
    }
    for (zqi_queue_config_t *queue = (zqi_queue_config_t *)zlistx_first (config->queues); queue;
         queue = (zqi_queue_config_t *)zlistx_next (config->queues)) {
        zqi_queue_config_t *copy = zqi_queue_config_new (config, queue->name, queue->kind);
        if (copy) {
            free (copy->in);
            free (copy->out);
            copy->in = strdup (queue->in);
            copy->out = strdup (queue->out);
            copy->memory_messages = queue->memory_messages;
            copy->memory_bytes = queue->memory_bytes;
            copy->quota_bytes = queue->quota_bytes;
            copy->sndhwm = queue->sndhwm;
            copy->rcvhwm = queue->rcvhwm;
            if (!copy->in || !copy->out)
                zqi_queue_config_destroy (&copy);
        }
        if (!copy) {
            snprintf (error, error_size, "out of memory");
            return zqi_fail (ENOMEM);
        }
        if (s_queue_add (self, copy, error, error_size))
            return -1;
    }
    //  The admin socket last: once it answers, every queue is there.
    if (*config->admin) {
        if (s_fds_free ("device/admin", error, error_size))
            return -1;
        self->admin = zsock_new (ZMQ_ROUTER);
        if (!self->admin) {
            snprintf (error, error_size, "cannot create the admin socket");
            return zqi_fail (ENOMEM);
        }
        zsock_set_maxmsgsize (self->admin, 64 * 1024);
        zsock_set_sndhwm (self->admin, 100);
        zsock_set_linger (self->admin, 0);
        char admin_error[512];
        if (zqi_device_bind (self->admin, config->admin, &self->admin_endpoint, admin_error,
                             sizeof admin_error)) {
            snprintf (error, error_size, "device/admin: %s", admin_error);
            return -1;
        }
    }
    return 0;
}

typedef enum { S_ITEM_PIPE, S_ITEM_ADMIN, S_ITEM_QSERVER, S_ITEM_IN, S_ITEM_OUT } s_item_kind_t;

typedef struct {
    s_item_kind_t kind;
    zqi_dqueue_t *dq;
} s_item_t;

static void
s_device_loop (s_device_t *self)
{
    size_t capacity = 0;
    zmq_pollitem_t *items = NULL;
    s_item_t *owners = NULL;
    self->next_tick_ms = zclock_mono () + S_TICK_MS;
    s_tick (self);
    while (!self->terminated) {
        size_t needed = 3 + 3 * zhashx_size (self->queues);
        if (needed > capacity) {
            free (items);
            free (owners);
            capacity = needed * 2;
            items = (zmq_pollitem_t *)calloc (capacity, sizeof *items);
            owners = (s_item_t *)calloc (capacity, sizeof *owners);
            if (!items || !owners) {
                zqi_log (ZQ_LOG_ERROR, "zq_device: out of memory; stopping");
                break;
            }
        }
        size_t count = 0;
#define S_ADD(sock_, events_, kind_, dq_)                                                          \
    do {                                                                                           \
        items[count] = (zmq_pollitem_t){zsock_resolve (sock_), 0, (events_), 0};                   \
        owners[count] = (s_item_t){(kind_), (dq_)};                                                \
        count++;                                                                                   \
    } while (0)
        S_ADD (self->pipe, ZMQ_POLLIN, S_ITEM_PIPE, NULL);
        if (self->admin)
            S_ADD (self->admin, ZMQ_POLLIN, S_ITEM_ADMIN, NULL);
        if (self->qserver)
            S_ADD (zqi_qserver_sock (self->qserver), ZMQ_POLLIN, S_ITEM_QSERVER, NULL);
        for (zqi_dqueue_t *dq = (zqi_dqueue_t *)zhashx_first (self->queues); dq;
             dq = (zqi_dqueue_t *)zhashx_next (self->queues)) {
            if (dq->kind == ZQI_KIND_QUEUE)
                continue;
            S_ADD (dq->in, ZMQ_POLLIN, S_ITEM_IN, dq);
            if (dq->kind == ZQI_KIND_FORWARD) {
                S_ADD (dq->out, ZMQ_POLLIN, S_ITEM_OUT, dq);
                S_ADD (zqi_forward_monitor (dq), ZMQ_POLLIN, S_ITEM_OUT, dq);
            } else if (zqi_stream_pending (dq))
                S_ADD (dq->out, ZMQ_POLLOUT, S_ITEM_OUT, dq);
        }
#undef S_ADD
        int64_t now = zclock_mono ();
        int64_t timeout = self->next_tick_ms > now ? self->next_tick_ms - now : 0;
        if (self->qserver) {
            int64_t timer = zqi_qserver_next_timer_ms (self->qserver);
            if (timer >= 0 && timer < timeout)
                timeout = timer;
        }
        int rc = zmq_poll (items, (int)count, (long)timeout);
        if (rc == -1) {
            if (errno == EINTR)
                continue;
            break; //  ETERM: the context is going away
        }
        for (size_t index = 0; index < count && !self->terminated; index++) {
            if (!items[index].revents)
                continue;
            s_item_t *owner = &owners[index];
            if (owner->kind == S_ITEM_PIPE) {
                zmsg_t *request = zmsg_recv (self->pipe);
                if (!request) {
                    self->terminated = true;
                    break;
                }
                char *first = zframe_strdup (zmsg_first (request));
                if (first && streq (first, "$TERM"))
                    self->terminated = true;
                else {
                    zmsg_t *reply = s_handle (self, request, true);
                    zmsg_send (&reply, self->pipe);
                }
                zstr_free (&first);
                zmsg_destroy (&request);
                //  A QUEUE command may have changed the poll set.
                break;
            } else if (owner->kind == S_ITEM_ADMIN) {
                for (int burst = 0; burst < 64; burst++) {
                    zmsg_t *request = zqi_device_recv_nowait (self->admin);
                    if (!request)
                        break;
                    s_admin_request (self, request);
                }
            } else if (owner->kind == S_ITEM_QSERVER)
                ; //  worked below
            else if (owner->kind == S_ITEM_IN) {
                if (owner->dq->kind == ZQI_KIND_STREAM)
                    zqi_stream_input (owner->dq);
                else
                    zqi_forward_input (owner->dq);
            } else {
                if (owner->dq->kind == ZQI_KIND_STREAM)
                    zqi_stream_output (owner->dq);
                else
                    zqi_forward_output (owner->dq);
            }
        }
        if (self->qserver && !self->terminated)
            zqi_qserver_work (self->qserver);
        //  Streams that took input may send at once.
        for (zqi_dqueue_t *dq = (zqi_dqueue_t *)zhashx_first (self->queues); dq;
             dq = (zqi_dqueue_t *)zhashx_next (self->queues))
            if (dq->kind == ZQI_KIND_STREAM && zqi_stream_pending (dq))
                zqi_stream_output (dq);
        if (zclock_mono () >= self->next_tick_ms) {
            s_tick (self);
            self->next_tick_ms = zclock_mono () + S_TICK_MS;
        }
    }
    free (items);
    free (owners);
}

static void
s_device_actor (zsock_t *pipe, void *args)
{
    s_start_t *start = (s_start_t *)args;
    s_device_t *self = (s_device_t *)calloc (1, sizeof *self);
    if (!self) {
        snprintf (start->error, start->error_size, "out of memory");
        start->status = ENOMEM;
        zsock_signal (pipe, 0);
        return;
    }
    self->pipe = pipe;
    self->lock_fd = -1;
    self->queues = zhashx_new ();
    self->config = zqi_device_config_new (start->config, start->error, start->error_size);
    if (!self->queues || !self->config) {
        start->status = errno ? errno : ENOMEM;
        s_device_destroy (&self);
        zsock_signal (pipe, 0);
        return;
    }
    self->env.config = self->config;
    zhashx_set_destructor (self->queues, s_dqueue_destructor);
    if (s_device_open (self, start->error, start->error_size)) {
        start->status = errno ? errno : EINVAL;
        s_device_destroy (&self);
        zsock_signal (pipe, 0);
        return;
    }
    zqi_log (ZQ_LOG_NOTICE, "zq_device: started%s%s%s%s, spool %s, fsync %s",
             self->qserver ? ", queues on " : "",
             self->qserver ? zqi_qserver_endpoint (self->qserver) : "",
             self->admin ? ", admin on " : "", self->admin ? self->admin_endpoint : "",
             *self->config->spool ? self->config->spool : "in memory",
             zq_spool_fsync_name (self->config->fsync));
    start->status = 0;
    start = NULL; //  the caller's; gone after the signal
    zsock_signal (pipe, 0);
    s_device_loop (self);
    s_device_destroy (&self);
    zqi_log (ZQ_LOG_NOTICE, "zq_device: stopped");
}

//  Starts the actor without changing the host's signal handlers (see
//  zq_queue.h: the first CZMQ socket of a process runs zsys_init).

zactor_t *
zq_device_new (zconfig_t *config, char *error, size_t error_size)
{
    char scratch[8];
    if (!error || !error_size) {
        error = scratch;
        error_size = sizeof scratch;
    }
    error[0] = '\0';
    s_start_t start = {config, error, error_size, 0};
    zqi_czmq_init ();
    zactor_t *actor = zactor_new (s_device_actor, &start);
    if (!actor) {
        snprintf (error, error_size, "cannot start the device's thread");
        errno = ENOMEM;
        return NULL;
    }
    if (start.status) {
        zactor_destroy (&actor);
        errno = start.status;
        return NULL;
    }
    return actor;
}

zactor_t *
zq_device_start (const char *config_path, char *error, size_t error_size)
{
    char scratch[8];
    if (!error || !error_size) {
        error = scratch;
        error_size = sizeof scratch;
    }
    if (!config_path) {
        snprintf (error, error_size, "no configuration file given");
        errno = EINVAL;
        return NULL;
    }
    zconfig_t *config = zq_device_config_load (config_path, error, error_size);
    if (!config)
        return NULL;
    zactor_t *device = zq_device_new (config, error, error_size);
    int saved = errno;
    zconfig_destroy (&config);
    errno = saved;
    return device;
}

char *
zq_device_endpoint (zactor_t *device, const char *what)
{
    if (!device || !what) {
        errno = EINVAL;
        return NULL;
    }
    if (zstr_sendx (device, "ENDPOINT", what, NULL))
        return NULL;
    char *status = NULL, *endpoint = NULL;
    if (zstr_recvx (device, &status, &endpoint, NULL) < 1)
        return NULL;
    if (!streq (status, "OK")) {
        zstr_free (&endpoint);
        errno = ZQ_ENOTFOUND;
    }
    zstr_free (&status);
    return endpoint;
}
