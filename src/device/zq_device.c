/*  =========================================================================
    zq_device - the buffering device as a CZMQ actor: opens it, runs its
    poll loop over the pipe, the admin socket, the reliable server and the
    streams' and forwards' sockets, and starts and stops it
    (include/zq_device.h). Each queue kind lives in its own file; helpers
    the kinds share in zq_device_io.c, the device's list of queues and
    their rates in zq_device_list.c, commands and admin replies in
    zq_device_admin.c.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_device_internal.h"
#include "zq_device_metrics.h"
#include <msgpack.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
//  ---- The actor -------------------------------------------------------------

typedef struct {
    zconfig_t *config;
    char *error;
    size_t error_size;
    int status; //  0 started, else the errno of the failure
    const zqi_clock_t *clock;
} s_start_t;

//  The authoriser of the queue kind's server: the access module's answer,
//  each refusal counted and logged there.
static bool
s_authorize (void *arg, const char *user_id, int operation, const char *queue)
{
    zqi_device_t *self = (zqi_device_t *)arg;
    zqi_access_op_t op = operation == ZQ_ACCESS_PUT ? ZQI_ACCESS_PUT : ZQI_ACCESS_CONSUME;
    if (zqi_access_allows (self->config->access, user_id, op, queue))
        return true;
    zqi_access_refused (self->config->access, user_id, op, queue,
                        op == ZQI_ACCESS_PUT ? "PUT refused, code 11" : "CONSUME refused, code 11");
    return false;
}

static void
s_device_destroy (zqi_device_t **self_p)
{
    if (self_p && *self_p) {
        zqi_device_t *self = *self_p;
        zqi_http_destroy (&self->http); //  before what it shows
        zqi_metrics_destroy (&self->metrics);
        zhashx_destroy (&self->queues);
        zqi_qserver_destroy (&self->qserver);
        zsock_destroy (&self->admin);
        zstr_free (&self->admin_endpoint);
        zactor_destroy (&self->auth);
        zsock_destroy (&self->zap);
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
s_device_open (zqi_device_t *self, char *error, size_t error_size)
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
        if (!config->access &&
            zqi_curve_auth_start (config->curve_clients, &self->auth, reason, sizeof reason)) {
            int saved = errno;
            snprintf (error, error_size, "device/curve/clients: %s", reason);
            return zqi_fail (saved);
        }
    }
    //  With an access section, zq's own ZAP handler admits the clients
    //  (by key, and by the right each socket serves), before any binds.
    if (config->access) {
        char reason[512] = "";
        self->zap = zqi_access_zap_new (reason, sizeof reason);
        if (!self->zap) {
            int saved = errno;
            snprintf (error, error_size, "access: %s", reason);
            return zqi_fail (saved);
        }
    }
    if (*config->bind) {
        if (zqi_device_fds_free ("device/bind", error, error_size))
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
        if (config->access)
            zqi_qserver_authorize (self->qserver, s_authorize, self);
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
            copy->max_subscription_bytes = queue->max_subscription_bytes;
            if (!copy->in || !copy->out)
                zqi_queue_config_destroy (&copy);
        }
        if (!copy) {
            snprintf (error, error_size, "out of memory");
            return zqi_fail (ENOMEM);
        }
        if (zqi_device_queue_add (self, copy, error, error_size))
            return -1;
    }
    //  The HTTP server (its own thread) reads only the metrics snapshot,
    //  which the actor publishes once a second.
    if (*config->http) {
        self->metrics = zqi_metrics_new (config->spool, self->env.clock);
        if (!self->metrics) {
            snprintf (error, error_size, "out of memory");
            return zqi_fail (ENOMEM);
        }
        char http_error[512];
        self->http = zqi_http_new (config->http, self->metrics, http_error, sizeof http_error);
        if (!self->http) {
            int saved = errno;
            snprintf (error, error_size, "device/http: %s", http_error);
            return zqi_fail (saved);
        }
    }
    //  The admin socket last: once it answers, every queue is there.
    if (*config->admin) {
        if (zqi_device_fds_free ("device/admin", error, error_size))
            return -1;
        //  With CURVE, the admin socket is a CURVE server with the same
        //  certificate; with an access section, only identities with an
        //  admin right pass its handshake.
        char socket_error[256];
        self->admin = zqi_device_socket_new (&self->env, ZMQ_ROUTER, ZQI_DEVICE_ADMIN_REPLIES_KEPT,
                                             1000, ZQI_DEVICE_ADMIN_REQUEST_MAX, true, socket_error,
                                             sizeof socket_error);
        if (!self->admin) {
            snprintf (error, error_size, "device/admin: %s", socket_error);
            return -1;
        }
        if (config->access)
            zsock_set_zap_domain (self->admin, ZQI_ACCESS_DOMAIN_ADMIN);
        char admin_error[512];
        if (zqi_device_bind (self->admin, config->admin, &self->admin_endpoint, admin_error,
                             sizeof admin_error)) {
            snprintf (error, error_size, "device/admin: %s", admin_error);
            return -1;
        }
    }
    return 0;
}

typedef enum { S_ITEM_PIPE, S_ITEM_ZAP, S_ITEM_ADMIN, S_ITEM_QSERVER, S_ITEM_QUEUE } s_item_kind_t;

//  Who a poll item is for: a queue's items are handled by its kind, which
//  learns which of its items it was.
typedef struct {
    s_item_kind_t kind;
    zqi_dqueue_t *dq;
    size_t which;
} s_item_t;

static void
s_device_loop (zqi_device_t *self)
{
    size_t capacity = 0;
    zmq_pollitem_t *items = NULL;
    s_item_t *owners = NULL;
    self->started_ms = zqi_clock_mono (self->env.clock);
    self->next_tick_ms = self->started_ms + ZQI_DEVICE_TICK_MS;
    zqi_device_tick (self);
    while (!self->terminated) {
        size_t needed = 5 + ZQI_KIND_POLL_MAX * zhashx_size (self->queues);
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
#define S_ADD(sock_, events_, kind_)                                                               \
    do {                                                                                           \
        items[count] = (zmq_pollitem_t){zsock_resolve (sock_), 0, (events_), 0};                   \
        owners[count] = (s_item_t){(kind_), NULL, 0};                                              \
        count++;                                                                                   \
    } while (0)
        S_ADD (self->pipe, ZMQ_POLLIN, S_ITEM_PIPE);
        if (self->zap)
            S_ADD (self->zap, ZMQ_POLLIN, S_ITEM_ZAP);
        if (self->admin)
            S_ADD (self->admin, ZMQ_POLLIN, S_ITEM_ADMIN);
        if (self->qserver)
            S_ADD (zqi_qserver_sock (self->qserver), ZMQ_POLLIN, S_ITEM_QSERVER);
        if (self->qserver && zqi_qserver_store_fd (self->qserver) >= 0) {
            //  Queues in JetStream: its results and deliveries wake the loop;
            //  queues in spools: the end of a commit a call left running.
            items[count] =
                (zmq_pollitem_t){NULL, zqi_qserver_store_fd (self->qserver), ZMQ_POLLIN, 0};
            owners[count] = (s_item_t){S_ITEM_QSERVER, NULL, 0};
            count++;
        }
        for (zqi_dqueue_t *dq = (zqi_dqueue_t *)zhashx_first (self->queues); dq;
             dq = (zqi_dqueue_t *)zhashx_next (self->queues)) {
            size_t added = dq->ops->poll_items ? dq->ops->poll_items (dq, items + count) : 0;
            ZQ_ASSERT (added <= ZQI_KIND_POLL_MAX);
            for (size_t which = 0; which < added; which++)
                owners[count++] = (s_item_t){S_ITEM_QUEUE, dq, which};
        }
#undef S_ADD
        int64_t now = zqi_clock_mono (self->env.clock);
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
                    zmsg_t *reply = zqi_device_handle (self, request, true, NULL);
                    zmsg_send (&reply, self->pipe);
                }
                zstr_free (&first);
                zmsg_destroy (&request);
                //  A QUEUE command may have changed the poll set.
                break;
            } else if (owner->kind == S_ITEM_ZAP) {
                for (int burst = 0; burst < 64; burst++) {
                    int events = zsock_events (self->zap);
                    if (!(events & ZMQ_POLLIN))
                        break;
                    zqi_access_zap_answer (self->config->access, self->zap);
                }
            } else if (owner->kind == S_ITEM_ADMIN) {
                for (int burst = 0; burst < 64; burst++) {
                    //  The identity ZAP gave the connection, if any.
                    char user_id[256];
                    zmsg_t *request =
                        zqi_device_recv_identified (self->admin, user_id, sizeof user_id);
                    if (!request)
                        break;
                    zqi_device_admin_request (self, request, user_id);
                }
            } else if (owner->kind == S_ITEM_QSERVER)
                ; //  worked below
            else
                owner->dq->ops->handle (owner->dq, owner->which);
        }
        if (self->qserver && !self->terminated)
            zqi_qserver_work (self->qserver);
        for (zqi_dqueue_t *dq = (zqi_dqueue_t *)zhashx_first (self->queues); dq;
             dq = (zqi_dqueue_t *)zhashx_next (self->queues))
            if (dq->ops->after_poll)
                dq->ops->after_poll (dq);
        if (zqi_clock_mono (self->env.clock) >= self->next_tick_ms) {
            zqi_device_tick (self);
            self->next_tick_ms = zqi_clock_mono (self->env.clock) + ZQI_DEVICE_TICK_MS;
        }
    }
    free (items);
    free (owners);
}

static void
s_device_actor (zsock_t *pipe, void *args)
{
    s_start_t *start = (s_start_t *)args;
    zqi_device_t *self = (zqi_device_t *)calloc (1, sizeof *self);
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
    self->env.clock = start->clock;
    zqi_access_clock_set (self->config->access, start->clock);
    zhashx_set_destructor (self->queues, zqi_device_dqueue_destructor);
    if (s_device_open (self, start->error, start->error_size)) {
        start->status = errno ? errno : EINVAL;
        s_device_destroy (&self);
        zsock_signal (pipe, 0);
        return;
    }
    //  With JetStream, queues of kind queue are kept there, not in the spool.
    const char *jetstream = zq_options_get_str (self->config->queue_options, "jetstream_servers");
    zqi_log (ZQ_LOG_NOTICE, "zq_device: started%s%s%s%s%s%s%s, spool %s, fsync %s",
             self->qserver ? ", queues on " : "",
             self->qserver ? zqi_qserver_endpoint (self->qserver) : "",
             self->admin ? ", admin on " : "", self->admin ? self->admin_endpoint : "",
             self->http ? ", http on " : "", self->http ? zqi_http_address (self->http) : "",
             jetstream && *jetstream ? ", queues kept in JetStream" : "",
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
    return zqi_device_new_clocked (config, NULL, error, error_size);
}

zactor_t *
zqi_device_new_clocked (zconfig_t *config, const zqi_clock_t *clock, char *error, size_t error_size)
{
    char scratch[8];
    if (!error || !error_size) {
        error = scratch;
        error_size = sizeof scratch;
    }
    error[0] = '\0';
    s_start_t start = {config, error, error_size, 0, clock};
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
