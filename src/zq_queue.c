/*  =========================================================================
    zq_queue - a message queue over one pattern. This file owns the queue's
    socket (made and attached by zq_socket.c), options, counters, timeouts
    and waits; everything a pattern puts on the wire is in
    patterns/<name>.c, reached through its zq_pattern_t.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_pattern.h"
#include <limits.h>
#include <poll.h>

struct _zq_queue_t {
    //  Hot fields first: send and recv touch only these.
    const zq_pattern_t *pattern;
    void *state;
    void *handle; //  libzmq socket; NULL once closed
    zq_queue_stats_t stats;
    zq_pattern_ctx_t ctx;
    zsock_t *sock;
    zq_options_t *options;
    zq_role_t role;
    int send_timeout_ms;
    int recv_timeout_ms;
    int sndtimeo_ms; //  the socket's ZMQ_SNDTIMEO and ZMQ_RCVTIMEO now
    int rcvtimeo_ms;
    char *endpoint; //  resolved bound endpoints, comma-separated
    zactor_t *auth; //  zauth for option curve_clients, or NULL
};

//  How many malformed messages in a row a zero-timeout receive skips
//  before it reports EAGAIN, so a flood of garbage cannot hold it forever.
#define S_BAD_INPUT_BURST 128

static const char *s_role_names[ZQ_ROLE_MAX + 1] = {
    NULL, "producer", "consumer", "publisher", "subscriber", "client", "server"};

const char *
zq_role_name (zq_role_t role)
{
    return role >= 1 && role <= ZQ_ROLE_MAX ? s_role_names[role] : NULL;
}

zq_role_t
zq_role_lookup (const char *name)
{
    if (name)
        for (int role = 1; role <= ZQ_ROLE_MAX; role++)
            if (strcmp (s_role_names[role], name) == 0)
                return (zq_role_t)role;
    return (zq_role_t)0;
}

zq_queue_t *
zq_queue_new (const char *pattern_name, zq_role_t role, const char *endpoints,
              const zq_options_t *options)
{
    return zqi_queue_new_clocked (pattern_name, role, endpoints, options, NULL);
}

zq_queue_t *
zqi_queue_new_clocked (const char *pattern_name, zq_role_t role, const char *endpoints,
                       const zq_options_t *options, zqi_clock_t *clock)
{
    const zq_pattern_t *pattern = zqi_pattern_lookup (pattern_name);
    if (!pattern || role < 1 || role > ZQ_ROLE_MAX || !pattern->roles[role].socket_type ||
        !endpoints) {
        errno = EINVAL;
        return NULL;
    }
    ZQ_ASSERT (pattern->open);
    zq_queue_t *self = (zq_queue_t *)calloc (1, sizeof (zq_queue_t));
    if (!self) {
        errno = ENOMEM;
        return NULL;
    }
    self->pattern = pattern;
    self->role = role;
    self->sndtimeo_ms = self->rcvtimeo_ms = -1; //  libzmq's defaults
    self->ctx.wake_fd = -1;
    self->options = zq_options_dup (options);
    self->state = pattern->state_size ? calloc (1, pattern->state_size) : NULL;
    if (!self->options || (pattern->state_size && !self->state)) {
        zq_options_destroy (&self->options);
        free (self->state);
        free (self);
        errno = ENOMEM;
        return NULL;
    }
    int socket_type = pattern->roles[role].socket_type;
    if (pattern->roles[role].several_socket_type && strchr (endpoints, ','))
        socket_type = pattern->roles[role].several_socket_type;
    self->sock = zqi_socket_new (socket_type, self->options, &self->auth);
    if (self->sock) {
        self->handle = zsock_resolve (self->sock);
        self->ctx.sock = self->sock;
        self->ctx.handle = self->handle;
        self->ctx.role = role;
        self->ctx.options = self->options;
        self->ctx.stats = &self->stats;
        self->ctx.max_message_bytes = (size_t)zqi_option_int (self->options, "max_message_bytes");
        self->send_timeout_ms = zqi_option_int (self->options, "send_timeout_ms");
        self->recv_timeout_ms = zqi_option_int (self->options, "recv_timeout_ms");
        self->ctx.clock = clock;
    }
    bool opened = false;
    int rc = self->sock ? 0 : -1;
    if (rc == 0 && clock) {
        self->ctx.wake_fd = zqi_clock_watch (clock);
        rc = self->ctx.wake_fd >= 0 ? 0 : -1;
    }
    if (rc == 0) {
        rc = pattern->open (self->state, &self->ctx);
        opened = (rc == 0);
    }
    if (rc == 0)
        rc = zqi_socket_attach (self->sock, endpoints, pattern->roles[role].binds_by_default,
                                pattern->attaching, self->state, &self->endpoint);
    if (rc) {
        int saved_errno = errno;
        if (opened && pattern->close)
            pattern->close (self->state);
        zsock_destroy (&self->sock);
        zactor_destroy (&self->auth);
        zqi_clock_unwatch (clock, self->ctx.wake_fd);
        zq_options_destroy (&self->options);
        free (self->state);
        free (self->endpoint);
        free (self);
        errno = saved_errno;
        return NULL;
    }
    return self;
}

int
zq_queue_close (zq_queue_t *self, size_t *unsent_p)
{
    if (unsent_p)
        *unsent_p = 0;
    if (!self || !self->sock)
        return zqi_fail (EINVAL);
    size_t unsent = self->pattern->close ? self->pattern->close (self->state) : 0;
    //  zmq_close returns at once; libzmq's reaper keeps flushing for up to
    //  linger_ms, and the context's termination at exit waits for it.
    zsock_destroy (&self->sock);
    self->handle = NULL;
    zactor_destroy (&self->auth);
    zqi_clock_unwatch (self->ctx.clock, self->ctx.wake_fd);
    self->ctx.wake_fd = -1;
    if (unsent_p)
        *unsent_p = unsent;
    return 0;
}

void
zq_queue_destroy (zq_queue_t **self_p)
{
    if (self_p && *self_p) {
        zq_queue_t *self = *self_p;
        if (self->sock)
            zq_queue_close (self, NULL);
        zq_options_destroy (&self->options);
        free (self->state);
        free (self->endpoint);
        free (self);
        *self_p = NULL;
    }
}

//  How long the next wait may last: until the deadline, or the next
//  pattern timer if sooner (-1: no limit). The deadline is set on the
//  first wait, so the fast path never reads the clock. It is the caller's
//  real time (how long its thread may wait), read from the system clock;
//  the pattern's timers run on the queue's clock. Returns 0, or -1 with
//  errno EAGAIN (deadline passed).
static int
s_wait_ms (zq_queue_t *self, int timeout_ms, int64_t *deadline_p, long *wait_ms_p)
{
    long wait_ms = -1;
    if (timeout_ms >= 0) {
        int64_t now = zclock_mono ();
        if (*deadline_p == 0)
            *deadline_p = now + timeout_ms;
        if (now >= *deadline_p)
            return zqi_fail (EAGAIN);
        wait_ms = (long)(*deadline_p - now);
    }
    if (self->pattern->next_timer_ms) {
        int64_t timer_ms = self->pattern->next_timer_ms (self->state);
        if (timer_ms >= 0 && (wait_ms < 0 || timer_ms < wait_ms))
            wait_ms = (long)timer_ms;
    }
    *wait_ms_p = wait_ms > INT_MAX ? INT_MAX : wait_ms;
    return 0;
}

int
zqi_pattern_poll (const zq_pattern_ctx_t *ctx, void *handle, short events, long timeout_ms)
{
    return zqi_pattern_poll_also (ctx, handle, events, -1, timeout_ms);
}

int
zqi_pattern_poll_also (const zq_pattern_ctx_t *ctx, void *handle, short events, int fd,
                       long timeout_ms)
{
    if (ctx->wake_fd < 0 && fd < 0) {
        //  One socket: its events, then a wait on its fd, which libzmq
        //  signals when they may have changed (the caller tries again).
        //  zmq_poll would look at both twice before it waits and once
        //  more after: system calls on the path of every answer.
        int ready = 0, socket_fd = -1;
        size_t size = sizeof ready;
        if (zmq_getsockopt (handle, ZMQ_EVENTS, &ready, &size))
            return -1;
        if ((ready & events) || timeout_ms == 0)
            return 0;
        size = sizeof socket_fd;
        if (zmq_getsockopt (handle, ZMQ_FD, &socket_fd, &size))
            return -1;
        struct pollfd item = {socket_fd, POLLIN, 0};
        return poll (&item, 1, timeout_ms < 0 ? -1 : (int)timeout_ms) < 0 ? -1 : 0;
    }
    //  With a fake clock, its advance wakes the wait too: the timers due
    //  after it run at once, not after timeout_ms of real time.
    zmq_pollitem_t items[3] = {{handle, 0, events, 0}};
    int count = 1, wake = -1;
    if (fd >= 0)
        items[count++] = (zmq_pollitem_t){NULL, fd, ZMQ_POLLIN, 0};
    if (ctx->wake_fd >= 0) {
        wake = count;
        items[count++] = (zmq_pollitem_t){NULL, ctx->wake_fd, ZMQ_POLLIN, 0};
    }
    if (zmq_poll (items, count, timeout_ms) < 0)
        return -1;
    if (wake >= 0 && (items[wake].revents & ZMQ_POLLIN))
        zqi_clock_drain (ctx->wake_fd);
    return 0;
}

int
zqi_pattern_poll_signal (const zq_pattern_ctx_t *ctx, void *handle, long timeout_ms, int *events_p)
{
    int fd = -1;
    size_t size = sizeof fd;
    if (zmq_getsockopt (handle, ZMQ_FD, &fd, &size))
        return -1;
    struct pollfd items[2] = {{fd, POLLIN, 0}, {ctx->wake_fd, POLLIN, 0}};
    if (poll (items, ctx->wake_fd < 0 ? 1 : 2, timeout_ms < 0 ? -1 : (int)timeout_ms) < 0)
        return -1;
    if (ctx->wake_fd >= 0 && (items[1].revents & POLLIN))
        zqi_clock_drain (ctx->wake_fd);
    size = sizeof *events_p;
    return zmq_getsockopt (handle, ZMQ_EVENTS, events_p, &size);
}

//  Waits until the socket may be ready for what (ZMQ_POLLIN/ZMQ_POLLOUT),
//  a pattern timer is due, or the deadline passes. Returns 0 to try
//  again, or -1 with errno EAGAIN (deadline passed), EINTR or ETERM.
static int
s_wait (zq_queue_t *self, short what, int timeout_ms, int64_t *deadline_p)
{
    long wait_ms;
    if (s_wait_ms (self, timeout_ms, deadline_p, &wait_ms))
        return -1;
    if (self->pattern->wait)
        return self->pattern->wait (self->state, what, wait_ms);
    return zqi_pattern_poll (&self->ctx, self->handle, what, wait_ms);
}

//  Before a send_blocking or recv_blocking call: sets the socket's
//  ZMQ_SNDTIMEO or ZMQ_RCVTIMEO (option; *current_p holds its value) to
//  the time s_wait would wait, only when that differs from its value.
//  Returns 0, or -1 with errno EAGAIN (deadline passed) or from libzmq.
static int
s_set_wait (zq_queue_t *self, int option, int *current_p, int timeout_ms, int64_t *deadline_p)
{
    long wait_ms;
    if (s_wait_ms (self, timeout_ms, deadline_p, &wait_ms))
        return -1;
    if (wait_ms != *current_p) {
        int value = (int)wait_ms;
        if (zmq_setsockopt (self->handle, option, &value, sizeof value))
            return -1;
        *current_p = value;
    }
    return 0;
}

//  What a send or reply that found no room waits for; 0 = waiting cannot
//  help (errno stays EAGAIN).
static short
s_send_wait (zq_queue_t *self)
{
    return self->pattern->send_wait ? (short)self->pattern->send_wait (self->state) : ZMQ_POLLOUT;
}

static int
s_resolve_timeout (int timeout_ms, int default_ms)
{
    if (timeout_ms == ZQ_TIMEOUT_DEFAULT)
        return default_ms;
    return timeout_ms < -1 ? -1 : timeout_ms;
}

//  The slow path of a send, after its first try failed (with errno EAGAIN
//  if there was no room): waits for room and tries again until timeout_ms
//  runs out, through attempt, or the pattern's send hooks when attempt is
//  NULL. Returns 0 (counted as sent) or -1 with errno.
static int
s_send_retry (zq_queue_t *self, zqi_queue_attempt_fn *attempt, const zq_msg_t *request,
              zq_msg_t **msg_p, int timeout_ms)
{
    timeout_ms = s_resolve_timeout (timeout_ms, self->send_timeout_ms);
    int64_t deadline = 0;
    while (errno == EAGAIN && timeout_ms != 0) {
        short what = s_send_wait (self);
        int rc;
        if (!attempt && what == ZMQ_POLLOUT && self->pattern->send_blocking &&
            self->ctx.wake_fd < 0) {
            if (s_set_wait (self, ZMQ_SNDTIMEO, &self->sndtimeo_ms, timeout_ms, &deadline))
                return -1;
            rc = self->pattern->send_blocking (self->state, msg_p);
        } else {
            if (!what || s_wait (self, what, timeout_ms, &deadline))
                return -1;
            if (attempt)
                rc = attempt (self->state, request, msg_p);
            else
                rc = self->pattern->send (self->state, msg_p);
        }
        if (rc == 0) {
            self->stats.sent++;
            return 0;
        }
    }
    return -1;
}

static int
s_queue_send (zq_queue_t *self, zq_msg_t **msg_p, int timeout_ms)
{
    if (!self || !msg_p || !*msg_p)
        return zqi_fail (EINVAL);
    if (!self->handle)
        return zqi_fail (ENOTSOCK);
    if (!self->pattern->send)
        return zqi_fail (ENOTSUP);
    if (self->pattern->send (self->state, msg_p) == 0) {
        self->stats.sent++;
        return 0;
    }
    return s_send_retry (self, NULL, NULL, msg_p, timeout_ms);
}

static int
s_queue_flush (zq_queue_t *self, int timeout_ms)
{
    if (!self)
        return zqi_fail (EINVAL);
    if (!self->handle)
        return zqi_fail (ENOTSOCK);
    if (!self->pattern->flush || self->pattern->flush (self->state) == 0)
        return 0;
    timeout_ms = s_resolve_timeout (timeout_ms, self->send_timeout_ms);
    int64_t deadline = 0;
    while (errno == EAGAIN && timeout_ms != 0) {
        if (s_wait (self, ZMQ_POLLOUT, timeout_ms, &deadline))
            return -1;
        if (self->pattern->flush (self->state) == 0)
            return 0;
    }
    return -1;
}

static zq_msg_t *
s_queue_recv (zq_queue_t *self, int timeout_ms)
{
    if (!self) {
        errno = EINVAL;
        return NULL;
    }
    if (!self->handle) {
        errno = ENOTSOCK;
        return NULL;
    }
    if (!self->pattern->recv) {
        errno = ENOTSUP;
        return NULL;
    }
    timeout_ms = s_resolve_timeout (timeout_ms, self->recv_timeout_ms);
    zq_msg_t *msg = NULL;
    if (timeout_ms != 0 && self->pattern->recv_seldom_ready && self->ctx.wake_fd < 0)
        errno = EAGAIN; //  a reply or request seldom waits: wait for it in libzmq at once
    else {
        msg = self->pattern->recv (self->state);
        if (msg) {
            self->stats.received++;
            return msg;
        }
    }
    //  Slow path: nothing yet, or something malformed.
    int64_t deadline = 0;
    int bad_in_a_row = 0;
    while (true) {
        bool wait = false;
        if (zqi_is_bad_input (errno)) {
            self->stats.errors++;
            if (timeout_ms == 0 && ++bad_in_a_row >= S_BAD_INPUT_BURST) {
                errno = EAGAIN;
                return NULL;
            }
            if (timeout_ms > 0) {
                //  Keep to the deadline even while garbage keeps coming.
                int64_t now = zclock_mono ();
                if (deadline == 0)
                    deadline = now + timeout_ms;
                else if (now >= deadline) {
                    errno = EAGAIN;
                    return NULL;
                }
            }
        } else if (errno == EAGAIN) {
            if (timeout_ms == 0)
                return NULL;
            wait = true;
        } else
            return NULL;
        if (wait && self->pattern->recv_blocking && self->ctx.wake_fd < 0) {
            if (s_set_wait (self, ZMQ_RCVTIMEO, &self->rcvtimeo_ms, timeout_ms, &deadline))
                return NULL;
            msg = self->pattern->recv_blocking (self->state);
        } else {
            if (wait && s_wait (self, ZMQ_POLLIN, timeout_ms, &deadline))
                return NULL;
            msg = self->pattern->recv (self->state);
        }
        if (msg) {
            self->stats.received++;
            return msg;
        }
    }
}

static int
s_queue_fd (zq_queue_t *self)
{
    if (!self || !self->handle)
        return zqi_fail (ENOTSOCK);
    int fd = -1;
    size_t size = sizeof fd;
    if (zmq_getsockopt (self->handle, ZMQ_FD, &fd, &size))
        return -1;
    return fd;
}

static int
s_queue_events (zq_queue_t *self)
{
    if (!self || !self->handle)
        return zqi_fail (ENOTSOCK);
    int events = 0;
    size_t size = sizeof events;
    if (zmq_getsockopt (self->handle, ZMQ_EVENTS, &events, &size))
        return -1;
    if (self->pattern->events) {
        events = self->pattern->events (self->state, events);
        if (events < 0)
            return -1;
    }
    return ((events & ZMQ_POLLIN) ? ZQ_POLLIN : 0) | ((events & ZMQ_POLLOUT) ? ZQ_POLLOUT : 0);
}

void
zq_queue_stats (zq_queue_t *self, zq_queue_stats_t *stats)
{
    if (!stats)
        return;
    if (self)
        *stats = self->stats;
    else
        memset (stats, 0, sizeof *stats);
}

const char *
zq_queue_endpoint (zq_queue_t *self)
{
    return self && self->endpoint ? self->endpoint : "";
}

const char *
zq_queue_pattern (zq_queue_t *self)
{
    return self ? self->pattern->name : NULL;
}

zq_role_t
zq_queue_role (zq_queue_t *self)
{
    return self ? self->role : (zq_role_t)0;
}

//  What the calls off the hot path check first, in this order: self and
//  their arguments (EINVAL), an open socket (ENOTSOCK), the pattern's hook
//  (ENOTSUP). Returns 0, or -1 with errno.
static int
s_check (zq_queue_t *self, bool arguments_ok, bool has_hook)
{
    if (!self || !arguments_ok)
        return zqi_fail (EINVAL);
    if (!self->handle)
        return zqi_fail (ENOTSOCK);
    if (!has_hook)
        return zqi_fail (ENOTSUP);
    return 0;
}

static int
s_queue_subscribe (zq_queue_t *self, const char *prefix)
{
    if (s_check (self, true, self && self->pattern->subscribe != NULL))
        return -1;
    if (prefix && strlen (prefix) > ZQ_MSG_MAX_STRING)
        return zqi_fail (ZQ_ETOOBIG);
    return self->pattern->subscribe (self->state, prefix ? prefix : "");
}

static int
s_queue_unsubscribe (zq_queue_t *self, const char *prefix)
{
    if (s_check (self, true, self && self->pattern->unsubscribe != NULL))
        return -1;
    if (prefix && strlen (prefix) > ZQ_MSG_MAX_STRING)
        return zqi_fail (ZQ_ETOOBIG);
    return self->pattern->unsubscribe (self->state, prefix ? prefix : "");
}

static int64_t
s_queue_next_timer_ms (zq_queue_t *self)
{
    if (!self || !self->handle || !self->pattern->next_timer_ms)
        return -1;
    return self->pattern->next_timer_ms (self->state);
}

//  ---- The calls, under the pattern's lock (zq_pattern_ctx_t.lock) ----------

//  Takes the lock of the queue's pattern, if it has one; returns it.
static pthread_mutex_t *
s_lock (zq_queue_t *self)
{
    pthread_mutex_t *lock = self ? self->ctx.lock : NULL;
    if (lock)
        pthread_mutex_lock (lock);
    return lock;
}

static void
s_unlock (pthread_mutex_t *lock)
{
    if (lock) {
        int saved = errno;
        pthread_mutex_unlock (lock);
        errno = saved;
    }
}

int
zq_queue_send (zq_queue_t *self, zq_msg_t **msg_p, int timeout_ms)
{
    pthread_mutex_t *lock = s_lock (self);
    int rc = s_queue_send (self, msg_p, timeout_ms);
    s_unlock (lock);
    return rc;
}

int
zq_queue_flush (zq_queue_t *self, int timeout_ms)
{
    pthread_mutex_t *lock = s_lock (self);
    int rc = s_queue_flush (self, timeout_ms);
    s_unlock (lock);
    return rc;
}

zq_msg_t *
zq_queue_recv (zq_queue_t *self, int timeout_ms)
{
    pthread_mutex_t *lock = s_lock (self);
    zq_msg_t *msg = s_queue_recv (self, timeout_ms);
    s_unlock (lock);
    return msg;
}

zsock_t *
zq_queue_sock (zq_queue_t *self)
{
    pthread_mutex_t *lock = s_lock (self);
    if (self && self->sock)
        self->ctx.polled = true;
    s_unlock (lock);
    return self ? self->sock : NULL;
}

int
zq_queue_fd (zq_queue_t *self)
{
    pthread_mutex_t *lock = s_lock (self);
    if (self && self->sock)
        self->ctx.polled = true;
    int rc = s_queue_fd (self);
    s_unlock (lock);
    return rc;
}

int
zq_queue_events (zq_queue_t *self)
{
    pthread_mutex_t *lock = s_lock (self);
    int rc = s_queue_events (self);
    s_unlock (lock);
    return rc;
}

int
zq_queue_subscribe (zq_queue_t *self, const char *prefix)
{
    pthread_mutex_t *lock = s_lock (self);
    int rc = s_queue_subscribe (self, prefix);
    s_unlock (lock);
    return rc;
}

int
zq_queue_unsubscribe (zq_queue_t *self, const char *prefix)
{
    pthread_mutex_t *lock = s_lock (self);
    int rc = s_queue_unsubscribe (self, prefix);
    s_unlock (lock);
    return rc;
}

int64_t
zq_queue_next_timer_ms (zq_queue_t *self)
{
    pthread_mutex_t *lock = s_lock (self);
    int64_t rc = s_queue_next_timer_ms (self);
    s_unlock (lock);
    return rc;
}

//  ---- What a pattern's own verbs use (src/zq_pattern.h) --------------------

void *
zqi_queue_pattern_state (zq_queue_t *queue, const zq_pattern_t *pattern)
{
    if (!queue) {
        errno = EINVAL;
        return NULL;
    }
    if (queue->pattern != pattern) {
        errno = ENOTSUP;
        return NULL;
    }
    return queue->state;
}

bool
zqi_queue_is_open (zq_queue_t *queue)
{
    return queue && queue->handle;
}

int
zqi_queue_send_with (zq_queue_t *queue, zqi_queue_attempt_fn *attempt, const zq_msg_t *request,
                     zq_msg_t **msg_p, int timeout_ms)
{
    ZQ_ASSERT (queue && queue->handle && attempt);
    if (attempt (queue->state, request, msg_p) == 0) {
        queue->stats.sent++;
        return 0;
    }
    return s_send_retry (queue, attempt, request, msg_p, timeout_ms);
}

int
zqi_queue_wait (zq_queue_t *queue, short what, int timeout_ms, int64_t *deadline_p)
{
    ZQ_ASSERT (queue && queue->handle);
    return s_wait (queue, what, timeout_ms, deadline_p);
}

//  ---- Queue names ----------------------------------------------------------

//  True if name is a queue name a producer may put to (the rule of
//  zq_queue_name_check, without the dead-letter form).
static bool
s_plain_name (const char *name, size_t size)
{
    size_t suffix = strlen (ZQ_QUEUE_DEAD_SUFFIX);
    if (size == 0 || size > ZQ_QUEUE_NAME_MAX || name[0] == '.' || name[size - 1] == '.')
        return false;
    if (size >= suffix && memcmp (name + size - suffix, ZQ_QUEUE_DEAD_SUFFIX, suffix) == 0)
        return false;
    for (size_t i = 0; i < size; i++) {
        char c = name[i];
        bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        bool digit = c >= '0' && c <= '9';
        if (!letter && !digit && c != '.' && c != '_' && c != '-')
            return false;
        if (c == '.' && i > 0 && name[i - 1] == '.')
            return false;
    }
    return true;
}

int
zqi_queue_name_check (const char *name, size_t size)
{
    if (name && s_plain_name (name, size))
        return 0;
    if (zqi_queue_name_is_dead (name, size))
        return 1;
    return zqi_fail (EINVAL);
}

bool
zqi_queue_name_is_dead (const char *name, size_t size)
{
    size_t suffix = strlen (ZQ_QUEUE_DEAD_SUFFIX);
    return name && size > suffix &&
           memcmp (name + size - suffix, ZQ_QUEUE_DEAD_SUFFIX, suffix) == 0 &&
           s_plain_name (name, size - suffix);
}

int
zq_queue_name_check (const char *name)
{
    return name ? zqi_queue_name_check (name, strlen (name)) : zqi_fail (EINVAL);
}
