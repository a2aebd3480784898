/*  =========================================================================
    zq_socket - the one home of socket creation for zq_queue and for every
    socket the device opens: the common socket options, CURVE (through
    zq_curve.c), endpoint lists (bind or connect, "*" ports), and the rule
    that keeps libzmq 4.3 from aborting a process whose connection its
    heartbeats replaced (its issue #3937).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_pattern.h"

//  Creates a CZMQ socket without changing the host's signal handling
//  (zqi_czmq_init: the first CZMQ socket of a process runs zsys_init).
static zsock_t *
s_socket_new (int type)
{
    zqi_czmq_init ();
    errno = 0;
    zsock_t *sock = zsock_new (type);
    int saved_errno = errno;
    if (!sock)
        errno = saved_errno ? saved_errno : ENOMEM;
    return sock;
}

//  Applies the options every socket shares, before any connection exists.
static int
s_apply_options (void *h, const zq_options_t *o)
{
    int value;
#define S_SET(opt, name)                                                                           \
    do {                                                                                           \
        value = zqi_option_int (o, name);                                                          \
        if (zmq_setsockopt (h, opt, &value, sizeof value))                                         \
            return -1;                                                                             \
    } while (0)
    S_SET (ZMQ_SNDHWM, "sndhwm");
    S_SET (ZMQ_RCVHWM, "rcvhwm");
    if (zqi_option_int (o, "sndbuf_bytes") > 0)
        S_SET (ZMQ_SNDBUF, "sndbuf_bytes");
    if (zqi_option_int (o, "rcvbuf_bytes") > 0)
        S_SET (ZMQ_RCVBUF, "rcvbuf_bytes");
    S_SET (ZMQ_LINGER, "linger_ms");
    S_SET (ZMQ_RECONNECT_IVL, "reconnect_ms");
    S_SET (ZMQ_RECONNECT_IVL_MAX, "reconnect_max_ms");
    if (zqi_option_int (o, "heartbeat_ivl_ms") > 0) {
        S_SET (ZMQ_HEARTBEAT_IVL, "heartbeat_ivl_ms");
        if (zqi_option_int (o, "heartbeat_timeout_ms") > 0)
            S_SET (ZMQ_HEARTBEAT_TIMEOUT, "heartbeat_timeout_ms");
    }
    if (zqi_option_int (o, "heartbeat_ttl_ms") > 0)
        S_SET (ZMQ_HEARTBEAT_TTL, "heartbeat_ttl_ms");
#undef S_SET
    int64_t max_size = zqi_option_int (o, "max_message_bytes");
    if (zmq_setsockopt (h, ZMQ_MAXMSGSIZE, &max_size, sizeof max_size))
        return -1;
    const char *identity = zq_options_get_str (o, "identity");
    if (identity && *identity && zmq_setsockopt (h, ZMQ_ROUTING_ID, identity, strlen (identity)))
        return -1;
    return 0;
}

zsock_t *
zqi_socket_new (int type, const zq_options_t *options, zactor_t **auth_p)
{
    zsock_t *sock = s_socket_new (type);
    if (sock && (s_apply_options (zsock_resolve (sock), options) ||
                 zqi_curve_apply (sock, options, auth_p))) {
        int saved_errno = errno;
        zsock_destroy (&sock);
        errno = saved_errno;
    }
    return sock;
}

//  The ports a "*" bind takes: 49152 to 65535 (IANA's dynamic range, as
//  CZMQ's "!").
#define S_STAR_FIRST 49152
#define S_STAR_COUNT (65536 - S_STAR_FIRST)

//  Binds sock to endpoint. A tcp endpoint whose port is "*" gets the
//  first free port from one chosen at random in S_STAR_FIRST up (then
//  round the range): not the lowest free one (CZMQ's "*"), which is the
//  port of a server that just closed or died, so that the dead server's
//  clients would connect to the next socket that binds "*"; and not from
//  CZMQ's "!", which draws from random() as CZMQ seeds it, with the time
//  in seconds, so that processes started in the same second drew the
//  same ports. Every other form (a port, "!", "*[first-last]", ipc,
//  inproc) is CZMQ's. Returns 0, or -1 with errno (EADDRINUSE: every
//  port of the range is taken).
static int
s_bind (zsock_t *sock, const char *endpoint)
{
    size_t length = strlen (endpoint);
    if (strncmp (endpoint, "tcp://", 6) != 0 || length <= 8 ||
        strcmp (endpoint + length - 2, ":*") != 0)
        return zsock_bind (sock, "%s", endpoint) == -1 ? -1 : 0;
    uint32_t start = (uint32_t)(zqi_idhash_seed (sock) % S_STAR_COUNT);
    for (uint32_t step = 0; step < S_STAR_COUNT; step++) {
        unsigned port = S_STAR_FIRST + (start + step) % S_STAR_COUNT;
        if (zsock_bind (sock, "%.*s%u", (int)(length - 1), endpoint, port) != -1)
            return 0;
        if (errno != EADDRINUSE)
            return -1;
    }
    return zqi_fail (EADDRINUSE);
}

//  Appends text to the comma-separated list *list_p (NULL: empty).
static int
s_endpoint_append (char **list_p, const char *text)
{
    size_t old_length = *list_p ? strlen (*list_p) : 0;
    char *joined = (char *)realloc (*list_p, old_length + strlen (text) + 2);
    if (!joined)
        return zqi_fail (ENOMEM);
    if (old_length)
        joined[old_length++] = ',';
    strcpy (joined + old_length, text);
    *list_p = joined;
    return 0;
}

//  The rule that keeps libzmq 4.3 from aborting the process (its issue
//  #3937, assertion _input_stopped in restart_input), its one home: a
//  socket that connects over a network (not inproc, which has no
//  heartbeats), pings (ZMTP heartbeats) and receives into a pipe that can
//  fill (ZMQ_RCVHWM above 0) and outlives its connection (ZMQ_IMMEDIATE
//  off, which otherwise makes a new pipe for each connection) is not
//  connected. When the application reads nothing for a while, the full
//  pipe stops libzmq reading the connection, the PONGs go unread, the
//  heartbeat timeout replaces the connection, and the application's next
//  read aborts: a pipeline consumer, subscriber or publisher (subscriptions
//  come in a pipe too) with heartbeat_ivl_ms set did, and so did an rpc
//  client, which pings by default. Only PUSH never reads what comes in.
//  The roles that ping by default and would fall under it (rpc client,
//  reliable producer of several servers) keep no receive high-water mark
//  unless the options set one (zqi_pattern_rcvhwm_for_pings); a reliable
//  server, which pings too, normally binds. Returns 0, or -1 with errno
//  (EINVAL after logging which options make endpoint unsafe).
static int
s_connect_check (zsock_t *sock, const char *endpoint)
{
    if (zsock_type (sock) == ZMQ_PUSH || strncmp (endpoint, "inproc://", 9) == 0)
        return 0;
    int ivl = 0, rcvhwm = 0, immediate = 0;
    size_t size = sizeof (int);
    void *handle = zsock_resolve (sock);
    if (zmq_getsockopt (handle, ZMQ_HEARTBEAT_IVL, &ivl, &size))
        return -1;
    size = sizeof (int);
    if (zmq_getsockopt (handle, ZMQ_RCVHWM, &rcvhwm, &size))
        return -1;
    size = sizeof (int);
    if (zmq_getsockopt (handle, ZMQ_IMMEDIATE, &immediate, &size))
        return -1;
    if (ivl <= 0 || rcvhwm <= 0 || immediate)
        return 0;
    zqi_log (ZQ_LOG_ERROR,
             "cannot connect %s: a %s socket that pings (heartbeat_ivl_ms %d) with rcvhwm %d "
             "can make libzmq abort the process (its issue #3937); set rcvhwm 0 (no receive "
             "bound) or heartbeat_ivl_ms 0 (no heartbeats)",
             endpoint, zsock_type_str (sock), ivl, rcvhwm);
    return zqi_fail (EINVAL);
}

//  The next item of the endpoint list at *cursor (cut there in place), its
//  '@' or '>' taken off and told in *bind_p (else binds_by_default);
//  *cursor moves past it, to NULL after the last. NULL once none is left.
static char *
s_next_item (char **cursor, bool binds_by_default, bool *bind_p)
{
    char *item = *cursor;
    if (!item)
        return NULL;
    char *comma = strchr (item, ',');
    if (comma)
        *comma = '\0';
    *cursor = comma ? comma + 1 : NULL;
    *bind_p = binds_by_default;
    if (*item == '@' || *item == '>') {
        *bind_p = *item == '@';
        item++;
    }
    return item;
}

//  Binds or connects sock to one item (not empty), attaching seeing it
//  first; a bind's resolved endpoint is appended to *resolved_p. Returns 0
//  or -1 with errno.
static int
s_attach_item (zsock_t *sock, const char *item, bool bind, zqi_attaching_fn *attaching, void *state,
               char **resolved_p)
{
    if (attaching && attaching (state, item, bind))
        return -1;
    if (!bind)
        return zsock_connect (sock, "%s", item) == -1 ? -1 : 0;
    if (s_bind (sock, item))
        return -1;
    char *resolved = zsock_last_endpoint (sock);
    int rc = s_endpoint_append (resolved_p, resolved ? resolved : item);
    free (resolved);
    return rc;
}

int
zqi_socket_attach (zsock_t *sock, const char *endpoints, bool binds_by_default,
                   zqi_attaching_fn *attaching, void *state, char **resolved_p)
{
    if (!endpoints || !*endpoints)
        return zqi_fail (EINVAL);
    char *list = strdup (endpoints);
    if (!list)
        return zqi_fail (ENOMEM);
    int rc = 0;
    //  Two passes: every connect is checked (s_connect_check) before
    //  anything is attached.
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        strcpy (list, endpoints);
        char *cursor = list, *item;
        bool bind;
        while (rc == 0 && (item = s_next_item (&cursor, binds_by_default, &bind))) {
            if (!*item)
                rc = zqi_fail (EINVAL);
            else if (pass == 0)
                rc = bind ? 0 : s_connect_check (sock, item);
            else
                rc = s_attach_item (sock, item, bind, attaching, state, resolved_p);
        }
    }
    int saved_errno = errno;
    free (list);
    errno = saved_errno;
    if (rc == 0 && !*resolved_p)
        rc = s_endpoint_append (resolved_p, "");
    return rc;
}

int
zqi_pattern_rcvhwm_for_pings (const zq_pattern_ctx_t *ctx)
{
    int ivl = 0, unlimited = 0;
    size_t size = sizeof ivl;
    if (zq_options_is_set (ctx->options, "rcvhwm"))
        return 0;
    if (zmq_getsockopt (ctx->handle, ZMQ_HEARTBEAT_IVL, &ivl, &size))
        return -1;
    return ivl > 0 ? zmq_setsockopt (ctx->handle, ZMQ_RCVHWM, &unlimited, sizeof unlimited) : 0;
}
