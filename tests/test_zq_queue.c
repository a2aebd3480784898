/*  =========================================================================
    test_zq_queue - the queue core and its options: the host's signal
    handlers, option parsing and bounds, opening errors, endpoints, roles,
    default timeouts, calls a role does not support, close.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "queue_helpers.h"
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t s_host_signals;

static void
s_host_handler (int signal_number)
{
    (void)signal_number;
    s_host_signals++;
}

//  Runs first: the first queue of the process initialises CZMQ, which
//  would install its own SIGINT/SIGTERM handlers; the host's must stay.
static void
test_host_signal_handlers_survive (void **state)
{
    (void)state;
    struct sigaction action = {0}, seen;
    action.sa_handler = s_host_handler;
    sigemptyset (&action.sa_mask);
    assert_int_equal (sigaction (SIGINT, &action, NULL), 0);
    assert_int_equal (sigaction (SIGTERM, &action, NULL), 0);

    zq_queue_t *queue = zq_queue_new ("pipeline", ZQ_CONSUMER, "@inproc://signals", NULL);
    assert_non_null (queue);
    assert_int_equal (sigaction (SIGINT, NULL, &seen), 0);
    assert_ptr_equal (seen.sa_handler, s_host_handler);
    assert_int_equal (sigaction (SIGTERM, NULL, &seen), 0);
    assert_ptr_equal (seen.sa_handler, s_host_handler);
    zq_queue_t *other = zq_queue_new ("pubsub", ZQ_PUBLISHER, "@inproc://signals-2", NULL);
    assert_non_null (other);
    assert_int_equal (sigaction (SIGINT, NULL, &seen), 0);
    assert_ptr_equal (seen.sa_handler, s_host_handler);

    //  And the host still gets its signal.
    assert_int_equal (raise (SIGINT), 0);
    assert_int_equal (s_host_signals, 1);
    zq_queue_destroy (&other);
    zq_queue_destroy (&queue);
    signal (SIGINT, SIG_DFL);
    signal (SIGTERM, SIG_DFL);
}

static void
test_options (void **state)
{
    (void)state;
    zq_options_t *options = zq_options_new ();
    assert_non_null (options);
    int64_t value = 0;
    assert_int_equal (zq_options_get_int (options, "sndhwm", &value), 0);
    assert_int_equal (value, 1000);
    assert_int_equal (zq_options_get_int (options, "max_message_bytes", &value), 0);
    assert_int_equal (value, 1024 * 1024);
    assert_string_equal (zq_options_get_str (options, "identity"), "");
    assert_string_equal (zq_options_get_str (options, "slow_subscriber"), "skip");
    assert_false (zq_options_is_set (options, "sndhwm"));

    assert_int_equal (zq_options_set (options, "sndhwm", "25"), 0);
    assert_true (zq_options_is_set (options, "sndhwm"));
    assert_int_equal (zq_options_get_int (options, "sndhwm", &value), 0);
    assert_int_equal (value, 25);
    assert_int_equal (zq_options_set (options, "linger_ms", "-1"), 0);
    assert_int_equal (zq_options_set_int (options, "retries", 7), 0);
    assert_int_equal (zq_options_set (options, "identity", "worker-1"), 0);
    assert_string_equal (zq_options_get_str (options, "identity"), "worker-1");
    assert_int_equal (zq_options_set (options, "slow_subscriber", "wait"), 0);

    //  Bad names and values leave the option as it was.
    const char *bad[][2] = {
        {"no_such_option", "1"},
        {"sndhwm", ""},
        {"sndhwm", "12x"},
        {"sndhwm", "-1"},
        {"sndhwm", "99999999999"},
        {"linger_ms", "-2"},
        {"sndhwm", " 5"},
        {"slow_subscriber", "nope"},
        {"slow_subscriber", "wai"},
        {"heartbeat_ttl_ms", "6553600"},
        {"sndhwm", "99999999999999999999999"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        assert_int_equal (zq_options_set (options, bad[i][0], bad[i][1]), -1);
        assert_int_equal (errno, EINVAL);
    }
    char long_identity[300];
    memset (long_identity, 'i', sizeof long_identity - 1);
    long_identity[sizeof long_identity - 1] = '\0';
    assert_int_equal (zq_options_set (options, "identity", long_identity), -1);
    assert_int_equal (errno, EINVAL);
    assert_int_equal (zq_options_set_int (options, "identity", 3), -1);
    assert_int_equal (errno, EINVAL);
    assert_int_equal (zq_options_set_int (options, "max_message_bytes", 0), -1);
    assert_int_equal (zq_options_get_int (options, "identity", &value), -1);
    assert_null (zq_options_get_str (options, "sndhwm"));
    assert_int_equal (zq_options_get_int (options, "sndhwm", &value), 0);
    assert_int_equal (value, 25);
    assert_string_equal (zq_options_get_str (options, "identity"), "worker-1");
    assert_string_equal (zq_options_get_str (options, "slow_subscriber"), "wait");

    //  The table lists every option once, with help text.
    size_t count = 0;
    const zq_option_info_t *info;
    while ((info = zq_options_info (count))) {
        assert_non_null (info->help);
        assert_ptr_equal (zq_options_lookup (info->name), info);
        if (info->type != ZQ_OPTION_STR) {
            assert_true (info->default_int >= info->min);
            assert_true (info->default_int <= info->max);
        }
        count++;
    }
    assert_true (count >= 15);
    assert_null (zq_options_lookup ("nope"));

    zq_options_t *copy = zq_options_dup (options);
    assert_non_null (copy);
    zq_options_destroy (&options);
    assert_null (options);
    zq_options_destroy (&options);
    assert_string_equal (zq_options_get_str (copy, "identity"), "worker-1");
    assert_true (zq_options_is_set (copy, "retries"));
    zq_options_destroy (&copy);

    //  Kernel buffer sizes reach the socket; 0 leaves the system default.
    options = zq_options_new ();
    assert_int_equal (zq_options_set (options, "sndbuf_bytes", "65536"), 0);
    zq_queue_t *queue = zq_queue_new ("pipeline", ZQ_PRODUCER, ">inproc://buffers", options);
    assert_non_null (queue);
    assert_int_equal (zsock_sndbuf (zq_queue_sock (queue)), 65536);
    assert_int_equal (zsock_rcvbuf (zq_queue_sock (queue)), -1);
    zq_queue_destroy (&queue);
    zq_options_destroy (&options);
}

static void
test_open_errors (void **state)
{
    (void)state;
    errno = 0;
    assert_null (zq_queue_new ("nope", ZQ_PRODUCER, "@inproc://x", NULL));
    assert_int_equal (errno, EINVAL);
    assert_null (zq_queue_new (NULL, ZQ_PRODUCER, "@inproc://x", NULL));
    assert_int_equal (errno, EINVAL);
    assert_null (zq_queue_new ("pipeline", ZQ_PUBLISHER, "@inproc://x", NULL));
    assert_int_equal (errno, EINVAL);
    assert_null (zq_queue_new ("pubsub", ZQ_CONSUMER, "@inproc://x", NULL));
    assert_int_equal (errno, EINVAL);
    assert_null (zq_queue_new ("pipeline", (zq_role_t)0, "@inproc://x", NULL));
    assert_int_equal (errno, EINVAL);
    assert_null (zq_queue_new ("pipeline", (zq_role_t)99, "@inproc://x", NULL));
    assert_int_equal (errno, EINVAL);
    assert_null (zq_queue_new ("pipeline", ZQ_PRODUCER, NULL, NULL));
    assert_int_equal (errno, EINVAL);
    assert_null (zq_queue_new ("pipeline", ZQ_PRODUCER, "", NULL));
    assert_int_equal (errno, EINVAL);
    assert_null (zq_queue_new ("pipeline", ZQ_PRODUCER, "@inproc://a,,@inproc://b", NULL));
    assert_int_equal (errno, EINVAL);
    assert_null (zq_queue_new ("pipeline", ZQ_PRODUCER, "@", NULL));
    assert_int_equal (errno, EINVAL);
    assert_null (zq_queue_new ("pipeline", ZQ_PRODUCER, "@bogus://where", NULL));

    //  A port in use.
    zq_queue_t *first = zq_queue_new ("pipeline", ZQ_CONSUMER, "@tcp://127.0.0.1:*", NULL);
    assert_non_null (first);
    char spec[300];
    snprintf (spec, sizeof spec, "@%s", zq_queue_endpoint (first));
    errno = 0;
    assert_null (zq_queue_new ("pipeline", ZQ_CONSUMER, spec, NULL));
    assert_int_equal (errno, EADDRINUSE);
    //  The same inproc name twice.
    zq_queue_t *named = zq_queue_new ("pipeline", ZQ_CONSUMER, "@inproc://taken", NULL);
    assert_non_null (named);
    assert_null (zq_queue_new ("pipeline", ZQ_CONSUMER, "@inproc://taken", NULL));
    assert_int_equal (errno, EADDRINUSE);
    zq_queue_destroy (&named);
    zq_queue_destroy (&first);
}

//  True if a socket can bind 127.0.0.1:port now.
static bool
s_port_free (int port)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    assert_true (fd >= 0);
    int on = 1;
    setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)port)};
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    bool free_now = bind (fd, (struct sockaddr *)&address, sizeof address) == 0;
    close (fd);
    return free_now;
}

//  Closes queue, bound to one tcp port, and waits until the port is free
//  (libzmq closes the listener in the background). Writes its endpoint.
static void
s_close_bound (zq_queue_t **queue_p, char *endpoint, size_t size)
{
    snprintf (endpoint, size, "%s", zq_queue_endpoint (*queue_p));
    assert_true (strncmp (endpoint, "tcp://127.0.0.1:", 16) == 0);
    zq_queue_destroy (queue_p);
    int port = atoi (endpoint + 16);
    int64_t deadline = zclock_mono () + DEADLINE_MS;
    while (!s_port_free (port)) {
        assert_true (zclock_mono () < deadline);
        zclock_sleep (1);
    }
}

//  A port picked by "*" and let go is not the next "*" bind's: zq picks
//  at random (CZMQ's own "*" hands on the lowest free port, the one just
//  let go, and with it the clients still connecting to it). Four rounds,
//  at most one of them the same port: a random pick is the same about
//  once in 16,000, and in the first round the lowest free port may be
//  one that a queue an earlier test closed was still holding.
static void
test_star_port_not_handed_on (void **state)
{
    (void)state;
    int same = 0;
    for (int round = 0; round < 4; round++) {
        char first_endpoint[300], next_endpoint[300];
        zq_queue_t *queue = zq_queue_new ("pipeline", ZQ_CONSUMER, "@tcp://127.0.0.1:*", NULL);
        assert_non_null (queue);
        s_close_bound (&queue, first_endpoint, sizeof first_endpoint);
        queue = zq_queue_new ("pipeline", ZQ_CONSUMER, "@tcp://127.0.0.1:*", NULL);
        assert_non_null (queue);
        s_close_bound (&queue, next_endpoint, sizeof next_endpoint);
        if (strcmp (next_endpoint, first_endpoint) == 0)
            same++;
    }
    assert_true (same <= 1);
}

static void
test_endpoints_and_names (void **state)
{
    (void)state;
    //  Two binds, resolved, in order; a consumer binds by default.
    zq_queue_t *consumer =
        zq_queue_new ("pipeline", ZQ_CONSUMER, "inproc://names-a,@tcp://127.0.0.1:*", NULL);
    assert_non_null (consumer);
    const char *endpoint = zq_queue_endpoint (consumer);
    assert_true (strncmp (endpoint, "inproc://names-a,tcp://127.0.0.1:", 33) == 0);
    assert_true (atoi (endpoint + 33) > 0);
    assert_string_equal (zq_queue_pattern (consumer), "pipeline");
    assert_int_equal (zq_queue_role (consumer), ZQ_CONSUMER);

    //  A producer connects by default, to both.
    char spec[300];
    snprintf (spec, sizeof spec, "%s", endpoint);
    zq_queue_t *producer = zq_queue_new ("pipeline", ZQ_PRODUCER, spec, NULL);
    assert_non_null (producer);
    assert_string_equal (zq_queue_endpoint (producer), "");
    for (int n = 0; n < 10; n++)
        send_numbered (producer, "both", n);
    for (int n = 0; n < 10; n++) {
        zq_msg_t *msg = zq_queue_recv (consumer, DEADLINE_MS);
        assert_non_null (msg);
        zq_msg_destroy (&msg);
    }

    for (int role = 1; role <= ZQ_ROLE_MAX; role++)
        assert_int_equal (zq_role_lookup (zq_role_name ((zq_role_t)role)), role);
    assert_string_equal (zq_role_name (ZQ_SUBSCRIBER), "subscriber");
    assert_null (zq_role_name ((zq_role_t)0));
    assert_int_equal (zq_role_lookup ("boss"), 0);
    assert_int_equal (zq_role_lookup (NULL), 0);
    zq_queue_destroy (&producer);
    zq_queue_destroy (&consumer);
}

//  The one rule for reliable queue names (zq_queue_name_check).
static void
test_queue_name_rule (void **state)
{
    (void)state;
    char longest[ZQ_QUEUE_NAME_MAX + 8];
    memset (longest, 'q', ZQ_QUEUE_NAME_MAX);
    longest[ZQ_QUEUE_NAME_MAX] = '\0';
    const char *plain[] = {"orders", "Orders_2-eu.v1", "a", "0", "-x", "a.b.c", longest};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        assert_int_equal (zq_queue_name_check (plain[i]), 0);
    //  NAME.dead of a plain NAME, the longest included: a dead-letter queue.
    assert_int_equal (zq_queue_name_check ("orders.dead"), 1);
    strcat (longest, ".dead");
    assert_int_equal (strlen (longest), ZQ_QUEUE_NAME_MAX + 5);
    assert_int_equal (zq_queue_name_check (longest), 1);
    //  One byte more than the longest: neither.
    char over[ZQ_QUEUE_NAME_MAX + 8];
    memset (over, 'q', ZQ_QUEUE_NAME_MAX + 1);
    over[ZQ_QUEUE_NAME_MAX + 1] = '\0';
    const char *invalid[] = {
        "",    ".hidden", "...dead",     ".dead",       "a..b",    "a.",  "x/y",    "..", ".",
        "a b", "tab\t",   "caf\xc3\xa9", "a.dead.dead", "a..dead", "a:b", "line\n", over};
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        errno = 0;
        assert_int_equal (zq_queue_name_check (invalid[i]), -1);
        assert_int_equal (errno, EINVAL);
    }
    strcat (over, ".dead");
    assert_int_equal (zq_queue_name_check (over), -1);
    assert_int_equal (zq_queue_name_check (NULL), -1);
}

static void
test_role_mismatch_and_close (void **state)
{
    (void)state;
    zq_queue_t *consumer = zq_queue_new ("pipeline", ZQ_CONSUMER, "@inproc://mismatch", NULL);
    zq_queue_t *producer = zq_queue_new ("pipeline", ZQ_PRODUCER, ">inproc://mismatch", NULL);
    assert_non_null (consumer);
    assert_non_null (producer);
    assert_null (zq_queue_recv (producer, 0));
    assert_int_equal (errno, ENOTSUP);
    zq_msg_t *msg = numbered ("x", 1);
    assert_int_equal (zq_queue_send (consumer, &msg, 0), -1);
    assert_int_equal (errno, ENOTSUP);
    assert_non_null (msg);
    assert_int_equal (zq_queue_send (producer, NULL, 0), -1);
    assert_int_equal (errno, EINVAL);
    assert_int_equal (zq_queue_subscribe (consumer, "a"), -1);
    assert_int_equal (errno, ENOTSUP);
    assert_int_equal (zq_queue_wait_subscribers (producer, 1, 0), -1);
    assert_int_equal (errno, ENOTSUP);
    assert_true (zq_queue_fd (consumer) >= 0);
    assert_non_null (zq_queue_sock (consumer));

    size_t unsent = 5;
    assert_int_equal (zq_queue_close (consumer, &unsent), 0);
    assert_int_equal (unsent, 0);
    assert_null (zq_queue_recv (consumer, 0));
    assert_int_equal (errno, ENOTSOCK);
    assert_int_equal (zq_queue_fd (consumer), -1);
    assert_int_equal (zq_queue_events (consumer), -1);
    assert_string_equal (zq_queue_pattern (consumer), "pipeline");
    zq_queue_stats_t stats;
    zq_queue_stats (consumer, &stats);
    assert_int_equal (stats.received, 0);
    zq_msg_destroy (&msg);
    zq_queue_destroy (&consumer);
    zq_queue_destroy (&consumer);
    zq_queue_destroy (&producer);
    zq_queue_destroy (NULL);
}

static void
test_default_timeouts (void **state)
{
    (void)state;
    zq_options_t *options = zq_options_new ();
    assert_int_equal (zq_options_set (options, "recv_timeout_ms", "120"), 0);
    assert_int_equal (zq_options_set (options, "send_timeout_ms", "80"), 0);
    zq_queue_t *consumer = zq_queue_new ("pipeline", ZQ_CONSUMER, "@inproc://timeouts", options);
    assert_non_null (consumer);
    int64_t start = now_ms ();
    assert_null (zq_queue_recv (consumer, ZQ_TIMEOUT_DEFAULT));
    assert_int_equal (errno, EAGAIN);
    int64_t elapsed = now_ms () - start;
    assert_true (elapsed >= 110 && elapsed < 3000);

    //  A producer with nowhere to send.
    char dead_spec[100];
    int dead_fd = dead_tcp_spec (dead_spec, sizeof dead_spec);
    zq_queue_t *producer = zq_queue_new ("pipeline", ZQ_PRODUCER, dead_spec, options);
    assert_non_null (producer);
    zq_msg_t *msg = numbered ("x", 1);
    start = now_ms ();
    assert_int_equal (zq_queue_send (producer, &msg, ZQ_TIMEOUT_DEFAULT), -1);
    assert_int_equal (errno, EAGAIN);
    elapsed = now_ms () - start;
    assert_true (elapsed >= 70 && elapsed < 3000);
    zq_msg_destroy (&msg);
    zq_queue_destroy (&producer);
    close (dead_fd);
    zq_queue_destroy (&consumer);
    zq_options_destroy (&options);
}

//  A consumer with a small max_message_bytes refuses larger messages
//  (counted as errors) and keeps receiving smaller ones.
static void
test_max_message_bytes (void **state)
{
    (void)state;
    zq_options_t *options = zq_options_new ();
    assert_int_equal (zq_options_set (options, "max_message_bytes", "1000"), 0);
    zq_queue_t *consumer = zq_queue_new ("pipeline", ZQ_CONSUMER, "@inproc://max", options);
    zq_queue_t *producer = zq_queue_new ("pipeline", ZQ_PRODUCER, ">inproc://max", NULL);
    assert_non_null (consumer);
    assert_non_null (producer);
    char big[2000];
    memset (big, 'b', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    zq_msg_t *msg = zq_msg_new ("big");
    assert_int_equal (zq_msg_pack (msg, "s", big), 0);
    assert_int_equal (zq_queue_send (producer, &msg, DEADLINE_MS), 0);
    send_numbered (producer, "small", 1);
    msg = zq_queue_recv (consumer, DEADLINE_MS);
    assert_non_null (msg);
    assert_string_equal (zq_msg_subject (msg), "small");
    zq_msg_destroy (&msg);
    zq_queue_stats_t stats;
    zq_queue_stats (consumer, &stats);
    assert_int_equal (stats.errors, 1);
    zq_queue_destroy (&producer);
    zq_queue_destroy (&consumer);
    zq_options_destroy (&options);
}

//  The log lines that named libzmq's issue #3937 and what to set.
static int s_abort_lines;

static void
s_count_abort_lines (zq_log_level_t level, const char *line, void *arg)
{
    (void)level;
    (void)arg;
    if (strstr (line, "#3937") && strstr (line, "set rcvhwm 0 (no receive bound) or "
                                                "heartbeat_ivl_ms 0 (no heartbeats)"))
        s_abort_lines++;
}

//  Opens a queue of pattern and role on endpoints with the options given
//  as NULL-terminated name, value pairs; returns it (NULL with errno kept).
static zq_queue_t *
s_open_with (const char *pattern, zq_role_t role, const char *endpoints, const char *first, ...)
{
    va_list args;
    va_start (args, first);
    zq_options_t *options = options_of_list (first, args);
    va_end (args);
    zq_queue_t *queue = zq_queue_new (pattern, role, endpoints, options);
    int saved = errno;
    zq_options_destroy (&options);
    errno = saved;
    return queue;
}

//  Its receive high-water mark, or asserts q opened.
static int
s_rcvhwm (zq_queue_t *q)
{
    assert_non_null (q);
    return zsock_rcvhwm (zq_queue_sock (q));
}

static void
test_pings_with_rcvhwm_not_connected (void **state)
{
    (void)state;
    //  A socket that connects, pings and keeps a full pipe across its
    //  connections can make libzmq 4.3 abort the process (its issue
    //  #3937): zq refuses that connect, saying why, and the roles that ping
    //  by default keep no receive high-water mark unless one is set.
    s_abort_lines = 0;
    zq_set_log_handler (s_count_abort_lines, NULL, ZQ_LOG_ERROR);
    const char *peer = ">tcp://127.0.0.1:9";
    const char *two = ">tcp://127.0.0.1:9,>tcp://127.0.0.1:7";
    struct {
        const char *pattern;
        zq_role_t role;
        const char *endpoints;
        const char *name, *value, *name2, *value2;
    } refused[] = {
        {"pipeline", ZQ_CONSUMER, peer, "heartbeat_ivl_ms", "500", NULL, NULL},
        {"pubsub", ZQ_SUBSCRIBER, peer, "heartbeat_ivl_ms", "500", NULL, NULL},
        {"pubsub", ZQ_SUBSCRIBER, peer, "heartbeat_ivl_ms", "500", "rcvhwm", "10"},
        {"pubsub", ZQ_PUBLISHER, peer, "heartbeat_ivl_ms", "500", NULL, NULL},
        {"pipeline", ZQ_CONSUMER, ">ipc:///tmp/zq-nobody", "heartbeat_ivl_ms", "500", NULL, NULL},
        //  Refused too when an item before it binds.
        {"pipeline", ZQ_CONSUMER, "@tcp://127.0.0.1:*,>tcp://127.0.0.1:9", "heartbeat_ivl_ms",
         "500", NULL, NULL},
        {"rpc", ZQ_CLIENT, peer, "rcvhwm", "10", NULL, NULL},
        {"reliable", ZQ_PRODUCER, two, "rcvhwm", "10", NULL, NULL},
        //  A reliable server pings by default; it normally binds.
        {"reliable", ZQ_SERVER, peer, "spool_dir", "", NULL, NULL},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        errno = 0;
        zq_queue_t *q =
            s_open_with (refused[i].pattern, refused[i].role, refused[i].endpoints, refused[i].name,
                         refused[i].value, refused[i].name2, refused[i].value2, NULL);
        assert_null (q);
        assert_int_equal (errno, EINVAL);
        assert_int_equal (s_abort_lines, (int)i + 1);
    }

    //  Safe: no receive high-water mark, no pings, a bind (no connection
    //  to replace), inproc (no heartbeats), nothing received (PUSH), or a
    //  new pipe per connection.
    zq_queue_t *q =
        s_open_with ("pipeline", ZQ_CONSUMER, peer, "heartbeat_ivl_ms", "500", "rcvhwm", "0", NULL);
    assert_int_equal (s_rcvhwm (q), 0);
    zq_queue_destroy (&q);
    q = s_open_with ("pipeline", ZQ_CONSUMER, "@tcp://127.0.0.1:*", "heartbeat_ivl_ms", "500",
                     NULL);
    assert_int_equal (s_rcvhwm (q), 1000);
    zq_queue_destroy (&q);
    q = s_open_with ("pipeline", ZQ_CONSUMER, ">inproc://zq-pings", "heartbeat_ivl_ms", "500",
                     NULL);
    assert_int_equal (s_rcvhwm (q), 1000);
    zq_queue_destroy (&q);
    q = s_open_with ("rpc", ZQ_CLIENT, ">inproc://zq-pings", "rcvhwm", "10", NULL);
    assert_int_equal (s_rcvhwm (q), 10);
    zq_queue_destroy (&q);
    q = s_open_with ("reliable", ZQ_SERVER, peer, "spool_dir", "", "rcvhwm", "0", NULL);
    assert_int_equal (s_rcvhwm (q), 0);
    zq_queue_destroy (&q);
    q = s_open_with ("pipeline", ZQ_PRODUCER, peer, "heartbeat_ivl_ms", "500", NULL);
    assert_non_null (q);
    zq_queue_destroy (&q);
    q = s_open_with ("rpc", ZQ_CLIENT, peer, NULL);
    assert_int_equal (s_rcvhwm (q), 0);
    zq_queue_destroy (&q);
    q = s_open_with ("rpc", ZQ_CLIENT, peer, "rcvhwm", "10", "heartbeat_ivl_ms", "0", NULL);
    assert_int_equal (s_rcvhwm (q), 10);
    zq_queue_destroy (&q);
    q = s_open_with ("reliable", ZQ_PRODUCER, two, NULL);
    assert_int_equal (s_rcvhwm (q), 0);
    zq_queue_destroy (&q);
    q = s_open_with ("reliable", ZQ_PRODUCER, peer, NULL);
    assert_int_equal (s_rcvhwm (q), 1000);
    zq_queue_destroy (&q);
    assert_int_equal (s_abort_lines, (int)(sizeof refused / sizeof refused[0]));
    zq_set_log_handler (NULL, NULL, ZQ_LOG_ERROR);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_host_signal_handlers_survive),
        cmocka_unit_test (test_options),
        cmocka_unit_test (test_open_errors),
        cmocka_unit_test (test_endpoints_and_names),
        cmocka_unit_test (test_star_port_not_handed_on),
        cmocka_unit_test (test_queue_name_rule),
        cmocka_unit_test (test_role_mismatch_and_close),
        cmocka_unit_test (test_default_timeouts),
        cmocka_unit_test (test_max_message_bytes),
        cmocka_unit_test (test_pings_with_rcvhwm_not_connected),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
