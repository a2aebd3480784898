/*  =========================================================================
    test_pipeline - producers and consumers over inproc, ipc and tcp: fair
    distribution, fan-in, the high-water mark with timeouts, garbage from a
    raw socket, the close report, and the pollable fd under epoll.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "queue_helpers.h"
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/time.h>

#define CONSUMERS 3

//  Makes sure every consumer is connected to the producer: sends one probe
//  at a time and waits until some consumer has it, until each has had one.
//  A PUSH socket deals only to connected consumers, in turn.
static void
wait_all_connected (zq_queue_t *producer, zq_queue_t **consumers, int count)
{
    bool seen[16] = {false};
    int seen_count = 0;
    int64_t deadline = now_ms () + DEADLINE_MS;
    zpoller_t *poller = zpoller_new (NULL);
    for (int i = 0; i < count; i++)
        zpoller_add (poller, zq_queue_sock (consumers[i]));
    while (seen_count < count) {
        assert_true (now_ms () < deadline);
        send_numbered (producer, "probe", -1);
        bool got = false;
        while (!got) {
            void *which = zpoller_wait (poller, (int)(deadline - now_ms ()));
            assert_non_null (which);
            for (int i = 0; i < count; i++)
                if (which == zq_queue_sock (consumers[i])) {
                    zq_msg_t *msg = zq_queue_recv (consumers[i], 0);
                    if (msg) {
                        assert_string_equal (zq_msg_subject (msg), "probe");
                        zq_msg_destroy (&msg);
                        got = true;
                        if (!seen[i]) {
                            seen[i] = true;
                            seen_count++;
                        }
                    }
                }
        }
    }
    zpoller_destroy (&poller);
}

static void
test_roundtrip (void **state)
{
    const char *transport = (const char *)*state;
    zq_queue_t *consumer = new_bound ("pipeline", ZQ_CONSUMER, transport, NULL);
    zq_queue_t *producer = new_connected ("pipeline", ZQ_PRODUCER, consumer, NULL);

    zq_msg_t *msg = zq_msg_new ("orders");
    assert_int_equal (zq_msg_set_header (msg, "trace", "t-1"), 0);
    assert_int_equal (zq_msg_pack (msg, "{sssu}", "order", "A-17", "cents", (uint64_t)1299), 0);
    uint8_t id[ZQ_MSG_ID_SIZE];
    memcpy (id, zq_msg_id (msg), sizeof id);
    assert_int_equal (zq_queue_send (producer, &msg, DEADLINE_MS), 0);
    assert_null (msg);

    //  A large body takes the two-frame, zero-copy form.
    zq_msg_t *big = zq_msg_new ("big");
    char *blob = (char *)calloc (1, 50000);
    assert_int_equal (zq_msg_pack (big, "B", blob, (size_t)50000), 0);
    assert_int_equal (zq_queue_send (producer, &big, DEADLINE_MS), 0);
    free (blob);

    msg = zq_queue_recv (consumer, DEADLINE_MS);
    assert_non_null (msg);
    assert_memory_equal (zq_msg_id (msg), id, sizeof id);
    assert_string_equal (zq_msg_subject (msg), "orders");
    assert_string_equal (zq_msg_header (msg, "trace"), "t-1");
    char *order = zq_msg_get_str (msg, "order");
    assert_string_equal (order, "A-17");
    free (order);
    zq_msg_destroy (&msg);
    msg = zq_queue_recv (consumer, DEADLINE_MS);
    assert_non_null (msg);
    size_t size;
    zq_msg_body (msg, &size);
    assert_true (size > 50000);
    zq_msg_destroy (&msg);

    zq_queue_stats_t stats;
    zq_queue_stats (producer, &stats);
    assert_int_equal (stats.sent, 2);
    zq_queue_stats (consumer, &stats);
    assert_int_equal (stats.received, 2);
    assert_int_equal (stats.errors, 0);
    zq_queue_destroy (&producer);
    zq_queue_destroy (&consumer);
    assert_null (producer);
}

static void
test_fair_distribution (void **state)
{
    const char *transport = (const char *)*state;
    //  The producer binds; consumers connect to it. Round-robin is per
    //  frame, and a batch frame goes to one consumer, so the per-message
    //  share is checked with batching off (batch_max_bytes 0).
    zq_options_t *options = zq_options_new ();
    assert_int_equal (zq_options_set (options, "batch_max_bytes", "0"), 0);
    zq_queue_t *producer = new_bound ("pipeline", ZQ_PRODUCER, transport, options);
    zq_options_destroy (&options);
    zq_queue_t *consumers[CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++)
        consumers[i] = new_connected ("pipeline", ZQ_CONSUMER, producer, NULL);
    wait_all_connected (producer, consumers, CONSUMERS);

    const int total = 300;
    for (int n = 0; n < total; n++)
        send_numbered (producer, "work", n);
    int counts[CONSUMERS] = {0};
    int received = 0;
    bool seen[300] = {false};
    int64_t deadline = now_ms () + DEADLINE_MS;
    while (received < total) {
        assert_true (now_ms () < deadline);
        for (int i = 0; i < CONSUMERS; i++) {
            zq_msg_t *msg = zq_queue_recv (consumers[i], 10);
            if (msg) {
                int64_t n = number_of (msg);
                assert_true (n >= 0 && n < total);
                assert_false (seen[n]);
                seen[n] = true;
                counts[i]++;
                received++;
                zq_msg_destroy (&msg);
            }
        }
    }
    //  Round-robin over consumers with room: each gets a third, within 10%.
    for (int i = 0; i < CONSUMERS; i++) {
        assert_true (counts[i] >= total / CONSUMERS - total / 30);
        assert_true (counts[i] <= total / CONSUMERS + total / 30);
    }
    for (int i = 0; i < CONSUMERS; i++)
        zq_queue_destroy (&consumers[i]);
    zq_queue_destroy (&producer);
}

static void
test_fan_in (void **state)
{
    const char *transport = (const char *)*state;
    zq_queue_t *consumer = new_bound ("pipeline", ZQ_CONSUMER, transport, NULL);
    zq_queue_t *producers[3];
    for (int i = 0; i < 3; i++)
        producers[i] = new_connected ("pipeline", ZQ_PRODUCER, consumer, NULL);
    const int each = 100;
    for (int n = 0; n < each; n++)
        for (int i = 0; i < 3; i++) {
            char subject[16];
            snprintf (subject, sizeof subject, "p%d", i);
            send_numbered (producers[i], subject, n);
        }
    int64_t next[3] = {0, 0, 0};
    for (int count = 0; count < 3 * each; count++) {
        zq_msg_t *msg = zq_queue_recv (consumer, DEADLINE_MS);
        assert_non_null (msg);
        int i = zq_msg_subject (msg)[1] - '0';
        assert_true (i >= 0 && i < 3);
        //  Each producer's messages arrive in the order sent.
        assert_int_equal (number_of (msg), next[i]);
        next[i]++;
        zq_msg_destroy (&msg);
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal (next[i], each);
        zq_queue_destroy (&producers[i]);
    }
    zq_queue_destroy (&consumer);
}

//  {"n": n, "pad": 2000 bytes}: fills kernel buffers in fewer messages.
static zq_msg_t *
padded (int64_t n)
{
    static char pad[2001];
    memset (pad, 'p', 2000);
    zq_msg_t *msg = zq_msg_new ("x");
    assert_int_equal (zq_msg_pack (msg, "{sisB}", "n", n, "pad", pad, (size_t)2000), 0);
    return msg;
}

static void
test_high_water_mark (void **state)
{
    const char *transport = (const char *)*state;
    zq_options_t *options = zq_options_new ();
    assert_int_equal (zq_options_set (options, "sndhwm", "5"), 0);
    assert_int_equal (zq_options_set (options, "rcvhwm", "5"), 0);
    //  Fixed kernel buffers: left to itself, tcp grows them (up to
    //  net.ipv4.tcp_rmem's maximum, 32 MiB here) while the test fills them.
    assert_int_equal (zq_options_set (options, "sndbuf_bytes", "8192"), 0);
    assert_int_equal (zq_options_set (options, "rcvbuf_bytes", "8192"), 0);

    //  No consumer at all: no room (ZMQ_IMMEDIATE), so EAGAIN after the
    //  timeout and the caller keeps the message.
    zq_queue_t *consumer = new_bound ("pipeline", ZQ_CONSUMER, transport, options);
    //  (An inproc connect to a name not yet bound queues messages until the
    //  bind, like a connected pipe, so the lonely producer uses ipc or tcp.)
    char lonely_spec[300];
    int dead_fd = nobody_spec (strcmp (transport, "ipc") == 0 ? "ipc" : "tcp", lonely_spec,
                               sizeof lonely_spec);
    zq_queue_t *lonely = zq_queue_new ("pipeline", ZQ_PRODUCER, lonely_spec, options);
    assert_non_null (lonely);
    zq_msg_t *msg = numbered ("x", 0);
    assert_int_equal (zq_queue_send (lonely, &msg, 0), -1);
    assert_int_equal (errno, EAGAIN);
    assert_non_null (msg);
    int64_t start = now_ms ();
    assert_int_equal (zq_queue_send (lonely, &msg, 150), -1);
    int64_t elapsed = now_ms () - start;
    assert_int_equal (errno, EAGAIN);
    assert_non_null (msg);
    assert_true (elapsed >= 140);
    assert_true (elapsed < 3000);
    zq_queue_destroy (&lonely);
    if (dead_fd >= 0)
        close (dead_fd);

    //  A consumer that does not read: fill every queue on the way.
    zq_queue_t *producer = new_connected ("pipeline", ZQ_PRODUCER, consumer, options);
    send_numbered (producer, "x", 0); //  waits for the connection
    int accepted = 1;
    int64_t deadline = now_ms () + DEADLINE_MS;
    //  tcp and ipc also buffer in the kernel, which libzmq's I/O thread
    //  fills in the background: full means no room for 100 ms.
    while (zq_queue_send (producer, &msg, 100) == 0) {
        accepted++;
        msg = padded (accepted);
        assert_true (now_ms () < deadline);
    }
    assert_int_equal (errno, EAGAIN);
    assert_non_null (msg);
    //  The I/O thread may still be moving messages into the kernel's
    //  buffers: retry until a send times out.
    int rc = 0;
    for (int attempt = 0; attempt < 50 && rc == 0; attempt++) {
        start = now_ms ();
        rc = zq_queue_send (producer, &msg, 200);
        elapsed = now_ms () - start;
        if (rc == 0) {
            accepted++;
            msg = padded (accepted);
        }
    }
    assert_int_equal (rc, -1);
    assert_int_equal (errno, EAGAIN);
    assert_non_null (msg);
    assert_true (elapsed >= 190);
    assert_true (elapsed < 3000);

    //  Once the consumer reads, there is room again.
    deadline = now_ms () + DEADLINE_MS;
    while (msg) {
        zq_msg_t *got = zq_queue_recv (consumer, 10);
        zq_msg_destroy (&got);
        if (zq_queue_send (producer, &msg, 0))
            assert_int_equal (errno, EAGAIN);
        assert_true (now_ms () < deadline);
    }
    zq_queue_stats_t stats;
    zq_queue_stats (producer, &stats);
    assert_int_equal (stats.sent, (uint64_t)accepted + 1);
    zq_queue_destroy (&producer);
    zq_queue_destroy (&consumer);
    zq_options_destroy (&options);
}

//  Sends one frame (more = true: more frames follow).
static void
raw_send (void *raw, const void *data, size_t size, bool more)
{
    assert_true (zmq_send (raw, data, size, more ? ZMQ_SNDMORE : 0) == (int)size);
}

static void
test_garbage_is_counted (void **state)
{
    const char *transport = (const char *)*state;
    zq_queue_t *consumer = new_bound ("pipeline", ZQ_CONSUMER, transport, NULL);
    zsock_t *raw = zsock_new (ZMQ_PUSH);
    assert_non_null (raw);
    assert_int_equal (zsock_connect (raw, "%s", zq_queue_endpoint (consumer)), 0);
    void *handle = zsock_resolve (raw);

    int garbage = 0;
    for (int n = 0; n < 20; n++) {
        zq_msg_t *msg = numbered ("good", n);
        assert_int_equal (zq_msg_send (&msg, handle, 0), 0);
        switch (n % 5) {
            case 0:
                raw_send (handle, "\xc1\x00 not msgpack", 13, false);
                break;
            case 1:
                raw_send (handle, "", 0, false);
                break;
            case 2: //  three frames
                raw_send (handle, "\x96", 1, true);
                raw_send (handle, "\xc0", 1, true);
                raw_send (handle, "\xc0", 1, false);
                break;
            case 3: //  version 2 header
                raw_send (handle, "\x96\x02", 2, false);
                break;
            case 4: //  header array truncated
                raw_send (handle, "\x96\x01\xc4\x10", 4, false);
                break;
        }
        garbage++;
    }
    recv_numbered (consumer, 0, 20);
    //  The last garbage message follows the last good one.
    int64_t deadline = now_ms () + DEADLINE_MS;
    zq_queue_stats_t stats;
    do {
        assert_null (zq_queue_recv (consumer, 10));
        zq_queue_stats (consumer, &stats);
        assert_true (now_ms () < deadline);
    } while (stats.errors < (uint64_t)garbage);
    assert_int_equal (stats.errors, garbage);
    assert_int_equal (stats.received, 20);
    zsock_destroy (&raw);
    zq_queue_destroy (&consumer);
}

//  A consumer waiting while only garbage arrives still returns at its
//  deadline, having counted the garbage.
typedef struct {
    const char *endpoint;
    volatile int stop;
} s_flood_t;

static void *
s_flood (void *arg)
{
    s_flood_t *flood = (s_flood_t *)arg;
    zsock_t *raw = zsock_new (ZMQ_PUSH);
    assert_non_null (raw);
    assert_int_equal (zsock_connect (raw, "%s", flood->endpoint), 0);
    int64_t deadline = now_ms () + DEADLINE_MS;
    while (!__atomic_load_n (&flood->stop, __ATOMIC_ACQUIRE) && now_ms () < deadline)
        zmq_send (zsock_resolve (raw), "\xc1", 1, ZMQ_DONTWAIT);
    zsock_destroy (&raw);
    return NULL;
}

static void
test_deadline_while_garbage_flows (void **state)
{
    const char *transport = (const char *)*state;
    zq_queue_t *consumer = new_bound ("pipeline", ZQ_CONSUMER, transport, NULL);
    s_flood_t flood = {zq_queue_endpoint (consumer), 0};
    pthread_t thread;
    assert_int_equal (pthread_create (&thread, NULL, s_flood, &flood), 0);
    zq_queue_stats_t stats;
    int64_t deadline = now_ms () + DEADLINE_MS;
    do {
        zq_queue_stats (consumer, &stats);
        assert_null (zq_queue_recv (consumer, 10));
        assert_true (now_ms () < deadline);
    } while (stats.errors == 0);
    int64_t start = now_ms ();
    assert_null (zq_queue_recv (consumer, 200));
    int64_t elapsed = now_ms () - start;
    assert_int_equal (errno, EAGAIN);
    assert_true (elapsed >= 190 && elapsed < 3000);
    __atomic_store_n (&flood.stop, 1, __ATOMIC_RELEASE);
    assert_int_equal (pthread_join (thread, NULL), 0);
    zq_queue_destroy (&consumer);
}

//  A signal ends a wait in send or receive with EINTR.
static void
s_on_alarm (int signum)
{
    (void)signum;
}

static void
test_signal_ends_wait (void **state)
{
    const char *transport = (const char *)*state;
    struct sigaction action, before;
    memset (&action, 0, sizeof action);
    action.sa_handler = s_on_alarm; //  no SA_RESTART
    sigemptyset (&action.sa_mask);
    assert_int_equal (sigaction (SIGALRM, &action, &before), 0);
    struct itimerval in_100_ms = {{0, 0}, {0, 100 * 1000}};

    zq_queue_t *consumer = new_bound ("pipeline", ZQ_CONSUMER, transport, NULL);
    int64_t start = now_ms ();
    assert_int_equal (setitimer (ITIMER_REAL, &in_100_ms, NULL), 0);
    assert_null (zq_queue_recv (consumer, DEADLINE_MS));
    assert_int_equal (errno, EINTR);
    assert_true (now_ms () - start < DEADLINE_MS / 2);

    //  A producer with no consumer has no room (ZMQ_IMMEDIATE).
    char lonely_spec[300];
    int dead_fd = nobody_spec (strcmp (transport, "tcp") == 0 ? "tcp" : "ipc", lonely_spec,
                               sizeof lonely_spec);
    zq_queue_t *lonely = zq_queue_new ("pipeline", ZQ_PRODUCER, lonely_spec, NULL);
    assert_non_null (lonely);
    zq_msg_t *msg = numbered ("x", 0);
    start = now_ms ();
    assert_int_equal (setitimer (ITIMER_REAL, &in_100_ms, NULL), 0);
    assert_int_equal (zq_queue_send (lonely, &msg, DEADLINE_MS), -1);
    assert_int_equal (errno, EINTR);
    assert_non_null (msg);
    assert_true (now_ms () - start < DEADLINE_MS / 2);
    zq_msg_destroy (&msg);
    zq_queue_destroy (&lonely);
    if (dead_fd >= 0)
        close (dead_fd);
    zq_queue_destroy (&consumer);
    assert_int_equal (sigaction (SIGALRM, &before, NULL), 0);
}

static void
test_close_report (void **state)
{
    const char *transport = (const char *)*state;
    zq_queue_t *consumer = new_bound ("pipeline", ZQ_CONSUMER, transport, NULL);
    zq_queue_t *producer = new_connected ("pipeline", ZQ_PRODUCER, consumer, NULL);
    const int total = 500;
    for (int n = 0; n < total; n++)
        send_numbered (producer, "flush", n);
    size_t unsent = 99;
    assert_int_equal (zq_queue_close (producer, &unsent), 0);
    assert_int_equal (unsent, 0);
    //  Closed: only the counters remain.
    zq_msg_t *msg = numbered ("late", 0);
    assert_int_equal (zq_queue_send (producer, &msg, 0), -1);
    assert_int_equal (errno, ENOTSOCK);
    zq_msg_destroy (&msg);
    assert_null (zq_queue_sock (producer));
    assert_int_equal (zq_queue_close (producer, &unsent), -1);
    assert_int_equal (errno, EINVAL);
    zq_queue_stats_t stats;
    zq_queue_stats (producer, &stats);
    assert_int_equal (stats.sent, total);
    zq_queue_destroy (&producer);
    //  libzmq flushes what it held within the linger: nothing is lost.
    recv_numbered (consumer, 0, total);
    zq_queue_destroy (&consumer);
}

//  Follows the header's rule for edge-triggered use: on every wakeup, and
//  after every call, loop on zq_queue_events until nothing is left.
static void
test_epoll_edge_triggered (void **state)
{
    const char *transport = (const char *)*state;
    zq_queue_t *consumer = new_bound ("pipeline", ZQ_CONSUMER, transport, NULL);
    zq_queue_t *producer = new_connected ("pipeline", ZQ_PRODUCER, consumer, NULL);

    int epoll = epoll_create1 (0);
    assert_true (epoll >= 0);
    struct epoll_event event = {.events = EPOLLIN | EPOLLET};
    event.data.ptr = consumer;
    assert_int_equal (epoll_ctl (epoll, EPOLL_CTL_ADD, zq_queue_fd (consumer), &event), 0);
    event.data.ptr = producer;
    assert_int_equal (epoll_ctl (epoll, EPOLL_CTL_ADD, zq_queue_fd (producer), &event), 0);

    //  One loop drives both ends: the producer sends when it has room,
    //  the consumer receives when it has input.
    const int total = 2000;
    int sent = 0, received = 0;
    int64_t deadline = now_ms () + DEADLINE_MS;
    while (received < total) {
        assert_true (now_ms () < deadline);
        bool busy = true;
        while (busy) {
            assert_true (now_ms () < deadline);
            busy = false;
            int events = zq_queue_events (producer);
            assert_true (events >= 0);
            assert_false (events & ZQ_POLLIN);
            if ((events & ZQ_POLLOUT) && sent < total) {
                zq_msg_t *msg = numbered ("e", sent);
                if (zq_queue_send (producer, &msg, 0) == 0)
                    sent++;
                else {
                    assert_int_equal (errno, EAGAIN);
                    zq_msg_destroy (&msg);
                }
                busy = true;
            }
            events = zq_queue_events (consumer);
            assert_true (events >= 0);
            assert_false (events & ZQ_POLLOUT);
            if (events & ZQ_POLLIN) {
                zq_msg_t *msg = zq_queue_recv (consumer, 0);
                if (msg) {
                    assert_int_equal (number_of (msg), received);
                    received++;
                    zq_msg_destroy (&msg);
                } else
                    assert_int_equal (errno, EAGAIN);
                busy = true;
            }
        }
        if (received == total)
            break;
        struct epoll_event ready[2];
        int count = epoll_wait (epoll, ready, 2, (int)(deadline - now_ms ()));
        assert_true (count >= 0);
    }
    assert_int_equal (received, total);
    close (epoll);
    zq_queue_destroy (&producer);
    zq_queue_destroy (&consumer);
}

//  zloop drives the consumer through zq_queue_sock.
typedef struct {
    int received;
    zq_queue_t *consumer;
} loop_arg_t;

static int
s_on_readable (zloop_t *loop, zsock_t *reader, void *arg)
{
    (void)loop;
    (void)reader;
    loop_arg_t *self = (loop_arg_t *)arg;
    zq_msg_t *msg;
    while ((msg = zq_queue_recv (self->consumer, 0))) {
        self->received++;
        zq_msg_destroy (&msg);
    }
    return self->received >= 100 ? -1 : 0;
}

static int
s_on_deadline (zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    (void)arg;
    return -1;
}

static void
test_zloop (void **state)
{
    const char *transport = (const char *)*state;
    zq_queue_t *consumer = new_bound ("pipeline", ZQ_CONSUMER, transport, NULL);
    zq_queue_t *producer = new_connected ("pipeline", ZQ_PRODUCER, consumer, NULL);
    for (int n = 0; n < 100; n++)
        send_numbered (producer, "z", n);
    loop_arg_t arg = {0, consumer};
    zloop_t *loop = zloop_new ();
    assert_int_equal (zloop_reader (loop, zq_queue_sock (consumer), s_on_readable, &arg), 0);
    zloop_timer (loop, DEADLINE_MS, 1, s_on_deadline, NULL);
    zloop_start (loop);
    zloop_destroy (&loop);
    assert_int_equal (arg.received, 100);
    zq_queue_destroy (&producer);
    zq_queue_destroy (&consumer);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        FOR_EACH_TRANSPORT (test_roundtrip),
        FOR_EACH_TRANSPORT (test_fair_distribution),
        FOR_EACH_TRANSPORT (test_fan_in),
        FOR_EACH_TRANSPORT (test_high_water_mark),
        FOR_EACH_TRANSPORT (test_garbage_is_counted),
        FOR_EACH_TRANSPORT (test_deadline_while_garbage_flows),
        FOR_EACH_TRANSPORT (test_signal_ends_wait),
        FOR_EACH_TRANSPORT (test_close_report),
        FOR_EACH_TRANSPORT (test_epoll_edge_triggered),
        FOR_EACH_TRANSPORT (test_zloop),
    };
    return cmocka_run_group_tests (tests, NULL, teardown_ipc_dir);
}
