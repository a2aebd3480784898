/*  =========================================================================
    zq_device_io - helpers the device's kinds share: free descriptors
    before creating sockets, CURVE on a socket, binding endpoints,
    receiving without waiting, one message as one frame.

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

void
zqi_device_secure (zqi_device_env_t *env, zsock_t *sock)
{
    if (env->cert) {
        zcert_apply (env->cert, sock);
        zsock_set_curve_server (sock, 1);
    }
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
