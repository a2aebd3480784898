/*  =========================================================================
    queue_helpers - endpoints per transport, message builders and
    deadline helpers shared by the queue and pattern tests.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef QUEUE_HELPERS_H_INCLUDED
#define QUEUE_HELPERS_H_INCLUDED

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include "port_helpers.h"
#include "zq.h"

//  Every wait in a test is bounded by this.
#define DEADLINE_MS 10000

static char s_ipc_dir[256];
static int s_endpoint_counter;

//  Writes a binding endpoint for transport ("inproc", "ipc" or "tcp").
static inline void
bind_spec (const char *transport, char *buf, size_t size)
{
    s_endpoint_counter++;
    if (strcmp (transport, "inproc") == 0)
        snprintf (buf, size, "@inproc://zq-test-%d-%d", (int)getpid (), s_endpoint_counter);
    else if (strcmp (transport, "ipc") == 0) {
        if (!*s_ipc_dir) {
            snprintf (s_ipc_dir, sizeof s_ipc_dir, "/tmp/zq-test-XXXXXX");
            assert_non_null (mkdtemp (s_ipc_dir));
        }
        snprintf (buf, size, "@ipc://%s/q%d", s_ipc_dir, s_endpoint_counter);
    } else
        snprintf (buf, size, "@tcp://127.0.0.1:*");
}

//  Writes an endpoint that connects to where bound is bound.
static inline void
connect_spec (zq_queue_t *bound, char *buf, size_t size)
{
    snprintf (buf, size, ">%s", zq_queue_endpoint (bound));
}

//  Writes "@tcp://127.0.0.1:PORT" for a free port below the kernel's
//  ephemeral range (tu_low_free_port), for a server that must bind the
//  same port again after a restart.
static inline void
restartable_tcp_spec (char *buf, size_t size)
{
    unsigned seed = (unsigned)getpid ();
    int port = tu_low_free_port (&seed);
    if (port < 0)
        fail_msg ("no free port below the ephemeral range in 100 tries");
    snprintf (buf, size, "@tcp://127.0.0.1:%d", port);
}

//  Writes ">tcp://127.0.0.1:PORT" for a port where nobody listens: the
//  port stays bound, without listen(), until the returned fd is closed, so
//  connections are refused. Returns the fd.
static inline int
dead_tcp_spec (char *buf, size_t size)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    assert_true (fd >= 0);
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    assert_int_equal (bind (fd, (struct sockaddr *)&address, sizeof address), 0);
    socklen_t length = sizeof address;
    assert_int_equal (getsockname (fd, (struct sockaddr *)&address, &length), 0);
    snprintf (buf, size, ">tcp://127.0.0.1:%d", ntohs (address.sin_port));
    return fd;
}

//  Writes a connecting endpoint where nobody listens, over "ipc" (a fresh
//  path nobody binds) or "tcp" (see dead_tcp_spec). Returns the fd to close
//  afterwards, or -1 if there is none.
static inline int
nobody_spec (const char *transport, char *buf, size_t size)
{
    if (strcmp (transport, "tcp") == 0)
        return dead_tcp_spec (buf, size);
    bind_spec ("ipc", buf, size);
    buf[0] = '>';
    return -1;
}

//  A queue of pattern in role, bound on a fresh endpoint of transport.
static inline zq_queue_t *
new_bound (const char *pattern, zq_role_t role, const char *transport, const zq_options_t *options)
{
    char spec[300];
    bind_spec (transport, spec, sizeof spec);
    zq_queue_t *queue = zq_queue_new (pattern, role, spec, options);
    assert_non_null (queue);
    return queue;
}

//  A queue of pattern in role, connected to where bound is bound.
static inline zq_queue_t *
new_connected (const char *pattern, zq_role_t role, zq_queue_t *bound, const zq_options_t *options)
{
    char spec[300];
    connect_spec (bound, spec, sizeof spec);
    zq_queue_t *queue = zq_queue_new (pattern, role, spec, options);
    assert_non_null (queue);
    return queue;
}

//  Removes path and everything below it; says so on stderr if it cannot.
static inline void
remove_tree (const char *path)
{
    char command[600];
    snprintf (command, sizeof command, "rm -rf '%s'", path);
    if (system (command) != 0)
        fprintf (stderr, "could not remove %s\n", path);
}

//  Removes the ipc directory (libzmq unlinks socket files on close).
static inline void
remove_ipc_dir (void)
{
    if (*s_ipc_dir) {
        remove_tree (s_ipc_dir);
        *s_ipc_dir = '\0';
    }
}

//  A group teardown for tests that may have used ipc endpoints.
static inline int
teardown_ipc_dir (void **state)
{
    (void)state;
    remove_ipc_dir ();
    return 0;
}

//  The three entries that run test once over each transport; the test finds
//  the transport's name in *state.
#define FOR_EACH_TRANSPORT(test)                                                                   \
    cmocka_unit_test_prestate (test, "inproc"), cmocka_unit_test_prestate (test, "ipc"),           \
        cmocka_unit_test_prestate (test, "tcp")

//  A message on subject whose body is {"n": n}.
static inline zq_msg_t *
numbered (const char *subject, int64_t n)
{
    zq_msg_t *msg = zq_msg_new (subject);
    assert_non_null (msg);
    assert_int_equal (zq_msg_pack (msg, "{si}", "n", n), 0);
    return msg;
}

static inline int64_t
number_of (const zq_msg_t *msg)
{
    int64_t n = -1;
    assert_int_equal (zq_msg_get_int (msg, "n", &n), 0);
    return n;
}

//  Sends {"n": n} on subject, asserting success within the deadline.
static inline void
send_numbered (zq_queue_t *queue, const char *subject, int64_t n)
{
    zq_msg_t *msg = numbered (subject, n);
    assert_int_equal (zq_queue_send (queue, &msg, DEADLINE_MS), 0);
    assert_null (msg);
}

//  Receives the messages numbered first to end - 1, in that order, each
//  within the deadline.
static inline void
recv_numbered (zq_queue_t *queue, int64_t first, int64_t end)
{
    for (int64_t n = first; n < end; n++) {
        zq_msg_t *msg = zq_queue_recv (queue, DEADLINE_MS);
        assert_non_null (msg);
        assert_int_equal (number_of (msg), n);
        zq_msg_destroy (&msg);
    }
}

//  Options from NULL-terminated name, value pairs (as strings).
static inline zq_options_t *
options_of_list (const char *first, va_list args)
{
    zq_options_t *options = zq_options_new ();
    assert_non_null (options);
    for (const char *name = first; name; name = va_arg (args, const char *)) {
        const char *value = va_arg (args, const char *);
        assert_int_equal (zq_options_set (options, name, value), 0);
    }
    return options;
}

static inline zq_options_t *
options_of (const char *first, ...)
{
    va_list args;
    va_start (args, first);
    zq_options_t *options = options_of_list (first, args);
    va_end (args);
    return options;
}

static inline int64_t
now_ms (void)
{
    return zclock_mono ();
}

//  A raw reliable server's receive: one message from router within
//  wait_ms, skipping the client's PINGs ([1, 10]); returns it (route
//  first), or NULL.
static inline zmsg_t *
raw_server_recv (zsock_t *router, int64_t wait_ms)
{
    zpoller_t *poller = zpoller_new (router, NULL);
    int64_t deadline = zclock_mono () + wait_ms;
    zmsg_t *msg = NULL;
    while (!msg && zclock_mono () < deadline) {
        if (!zpoller_wait (poller, (int)(deadline - zclock_mono ())))
            break;
        msg = zmsg_recv (router);
        zmsg_first (msg);
        zframe_t *second = zmsg_next (msg);
        if (second && zframe_size (second) == 3 && zframe_data (second)[2] == 10)
            zmsg_destroy (&msg); //  a PING
    }
    zpoller_destroy (&poller);
    return msg;
}

//  The calling thread's processor time, in microseconds: a wait that
//  sleeps uses almost none of it, one that spins all.
static inline int64_t
thread_cpu_us (void)
{
    struct timespec now;
    clock_gettime (CLOCK_THREAD_CPUTIME_ID, &now);
    return (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

//  Fails unless a wait of wall_ms used at most a quarter of it as the
//  thread's processor time (cpu_us): it slept rather than spun.
#define assert_waited_asleep(wall_ms, cpu_us)                                                      \
    do {                                                                                           \
        if ((cpu_us) > (wall_ms)*1000 / 4)                                                         \
            fail_msg ("the wait took %lld ms using %lld ms of CPU", (long long)(wall_ms),          \
                      (long long)((cpu_us) / 1000));                                               \
    } while (0)

#endif
