/*  =========================================================================
    zq_device_io - helpers the device's kinds share: free descriptors
    before creating sockets, creating and binding a socket (through the
    library's socket helper, the one home of socket options, CURVE and
    endpoint lists), receiving without waiting, one message as one frame.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_device_internal.h"
#include <limits.h>
#include <msgpack.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

//  Descriptors that must be free before the device creates a kind's or the
//  admin sockets (sockets, listeners, a stream's spool, address lookups).
#define S_SOCKET_FDS 16
//  ---- Helpers shared by the kinds -------------------------------------------

//  CZMQ asserts when it cannot create a socket, and libzmq when an address
//  lookup finds no descriptor: before creating sockets the device checks
//  that wanted descriptors are free, so that running short is an error of
//  the start, never an abort. Returns 0, or -1 with errno EMFILE and error.
int
zqi_device_fds_free (const char *what, char *error, size_t error_size)
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

zsock_t *
zqi_device_socket_new (zqi_device_env_t *env, int type, int sndhwm, int rcvhwm,
                       int64_t max_message_bytes, bool secure, char *error, size_t error_size)
{
    //  The device's sockets only bind: reconnecting, heartbeats and
    //  identities are the peers' business, so the rest stays at zq's
    //  defaults (which are libzmq's).
    zq_options_t *options = zq_options_new ();
    if (max_message_bytes > INT32_MAX)
        max_message_bytes = INT32_MAX;
    int rc = options ? 0 : zqi_fail (ENOMEM);
    if (rc == 0)
        rc = zq_options_set_int (options, "sndhwm", sndhwm) ||
             zq_options_set_int (options, "rcvhwm", rcvhwm) ||
             zq_options_set_int (options, "linger_ms", 0) ||
             zq_options_set_int (options, "max_message_bytes", max_message_bytes);
    //  CURVE: the device's certificate makes each socket a CURVE server;
    //  the allowed clients are checked by the device's own zauth.
    if (rc == 0 && secure && env->cert)
        rc = zq_options_set (options, "curve_cert", env->config->curve_secret_cert);
    zsock_t *sock = NULL;
    if (rc == 0) {
        zactor_t *auth = NULL;
        sock = zqi_socket_new (type, options, &auth);
        ZQ_ASSERT (!auth); //  curve_clients is never set here
    } else
        errno = EINVAL;
    int saved = errno;
    zq_options_destroy (&options);
    if (!sock) {
        snprintf (error, error_size, "cannot create a socket: %s", zq_strerror (saved));
        errno = saved;
    }
    return sock;
}

void
zqi_device_guard (zqi_device_env_t *env, zsock_t *sock, zqi_access_op_t op, const char *name)
{
    if (env->config->access) {
        char domain[ZQ_QUEUE_NAME_MAX + 32];
        snprintf (domain, sizeof domain, "%s %s", zqi_access_op_name (op), name);
        zsock_set_zap_domain (sock, domain);
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

//  What zqi_device_bind's attaching hook keeps: the item being bound, for
//  the error line.
typedef struct {
    char item[1024];
} s_bind_t;

//  Every endpoint of the device binds.
static int
s_bind_only (void *state, const char *endpoint, bool bind)
{
    s_bind_t *self = (s_bind_t *)state;
    snprintf (self->item, sizeof self->item, "%s", endpoint);
    return bind ? 0 : zqi_fail (EINVAL);
}

int
zqi_device_bind (zsock_t *sock, const char *endpoints, char **resolved_p, char *error,
                 size_t error_size)
{
    s_bind_t bind = {""};
    char *resolved = NULL;
    if (zqi_socket_attach (sock, endpoints, true, s_bind_only, &bind, &resolved)) {
        int saved = errno;
        if (saved == ENOMEM)
            snprintf (error, error_size, "out of memory");
        else if (!*bind.item)
            snprintf (error, error_size, "cannot bind '%s': %s", endpoints ? endpoints : "",
                      zq_strerror (saved));
        else
            snprintf (error, error_size, "cannot bind %s: %s", bind.item,
                      saved == EINVAL ? "the device only binds (no '>')" : zq_strerror (saved));
        free (resolved);
        return zqi_fail (saved);
    }
    zqi_device_ipc_private (resolved);
    *resolved_p = resolved;
    return 0;
}

//  Receives one frame without waiting (copied into a zframe_t); *more_p
//  tells whether more follow; the connection's ZAP User-Id, if any and
//  user_id is not NULL, goes into user_id. NULL if none is waiting.
static zframe_t *
s_frame_recv (void *handle, int flags, bool *more_p, char *user_id, size_t user_id_size)
{
    zmq_msg_t part;
    zmq_msg_init (&part);
    if (zmq_msg_recv (&part, handle, flags) == -1) {
        zmq_msg_close (&part);
        return NULL;
    }
    *more_p = zmq_msg_more (&part) != 0;
    const char *given = user_id ? zmq_msg_gets (&part, "User-Id") : NULL;
    if (given)
        snprintf (user_id, user_id_size, "%s", given);
    zframe_t *frame = zframe_new (zmq_msg_data (&part), zmq_msg_size (&part));
    zmq_msg_close (&part);
    return frame;
}

zmsg_t *
zqi_device_recv_nowait (zsock_t *sock)
{
    return zqi_device_recv_identified (sock, NULL, 0);
}

zmsg_t *
zqi_device_recv_identified (zsock_t *sock, char *user_id, size_t user_id_size)
{
    if (user_id && user_id_size)
        user_id[0] = '\0';
    void *handle = zsock_resolve (sock);
    bool more = false;
    zframe_t *frame = s_frame_recv (handle, ZMQ_DONTWAIT, &more, user_id, user_id_size);
    if (!frame)
        return NULL;
    zmsg_t *msg = zmsg_new ();
    while (msg && frame) {
        zmsg_append (msg, &frame);
        //  The rest of a multipart message is there once its first frame is.
        frame = more ? s_frame_recv (handle, ZMQ_DONTWAIT, &more, user_id, user_id_size) : NULL;
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
