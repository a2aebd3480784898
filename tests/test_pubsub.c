/*  =========================================================================
    test_pubsub - publishers and subscribers over inproc, ipc and tcp:
    prefix filtering, waiting for subscribers, gap counting (real gaps from
    a full queue or a raw peer's sequence jumps, none on a clean run or for
    a late joiner), malformed pattern frames; a publisher's bounds on what
    subscribers send (a topic prefix of at most 256 bytes, at most 1024
    subscriptions per connection, max_subscription_bytes of prefix in
    all, its memory under many connections) and its count of subscriptions, per
    connection, back to 0 when they leave; a subscriber's memory under long
    subjects from ever new publishers.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "queue_helpers.h"
#include <malloc.h>
#include <poll.h>

//  Bounds of doc/PROTOCOL.md, "pubsub".
#define MAX_TOPIC         256
#define MAX_SUBSCRIPTIONS 1024

static zq_queue_t *
new_publisher (const char *transport, const zq_options_t *options)
{
    return new_bound ("pubsub", ZQ_PUBLISHER, transport, options);
}

static zq_queue_t *
new_subscriber (zq_queue_t *publisher, const char *prefix, const zq_options_t *options)
{
    zq_queue_t *subscriber = new_connected ("pubsub", ZQ_SUBSCRIBER, publisher, options);
    if (prefix)
        assert_int_equal (zq_queue_subscribe (subscriber, prefix), 0);
    return subscriber;
}

static void
test_prefix_filtering (void **state)
{
    zq_queue_t *publisher = new_publisher ((const char *)*state, NULL);
    zq_queue_t *subscriber = new_subscriber (publisher, "a.", NULL);
    assert_int_equal (zq_queue_wait_subscribers (publisher, 1, DEADLINE_MS), 0);
    assert_int_equal (zq_queue_subscribers (publisher), 1);

    for (int n = 0; n < 30; n++)
        send_numbered (publisher, n % 3 == 0 ? "a.x" : n % 3 == 1 ? "b.y" : "a.z", n);
    send_numbered (publisher, "a.end", 30);
    int received = 0;
    while (true) {
        zq_msg_t *msg = zq_queue_recv (subscriber, DEADLINE_MS);
        assert_non_null (msg);
        const char *subject = zq_msg_subject (msg);
        assert_true (strncmp (subject, "a.", 2) == 0);
        bool end = strcmp (subject, "a.end") == 0;
        if (!end)
            assert_int_not_equal (number_of (msg) % 3, 1);
        zq_msg_destroy (&msg);
        if (end)
            break;
        received++;
    }
    assert_int_equal (received, 20);
    zq_queue_stats_t stats;
    zq_queue_stats (subscriber, &stats);
    //  Subjects the subscriber does not see are not gaps.
    assert_int_equal (stats.gaps, 0);
    assert_int_equal (stats.errors, 0);
    assert_int_equal (stats.received, 21);
    zq_queue_stats (publisher, &stats);
    assert_int_equal (stats.sent, 31);
    assert_int_equal (stats.dropped, 0);

    //  Roles that do not fit the call.
    assert_int_equal (zq_queue_subscribe (publisher, "x"), -1);
    assert_int_equal (errno, ENOTSUP);
    assert_null (zq_queue_recv (publisher, 0));
    assert_int_equal (errno, ENOTSUP);
    assert_int_equal (zq_queue_subscribers (subscriber), -1);
    assert_int_equal (errno, ENOTSUP);
    zq_msg_t *msg = numbered ("a.x", 0);
    assert_int_equal (zq_queue_send (subscriber, &msg, 0), -1);
    assert_int_equal (errno, ENOTSUP);
    zq_msg_destroy (&msg);
    zq_queue_destroy (&subscriber);
    zq_queue_destroy (&publisher);
}

static void
test_wait_subscribers (void **state)
{
    zq_queue_t *publisher = new_publisher ((const char *)*state, NULL);
    //  Nobody yet: the wait times out after about its timeout.
    int64_t start = now_ms ();
    assert_int_equal (zq_queue_wait_subscribers (publisher, 1, 100), -1);
    assert_int_equal (errno, ZQ_ETIMEDOUT);
    int64_t elapsed = now_ms () - start;
    assert_true (elapsed >= 90 && elapsed < 3000);

    zq_queue_t *first = new_subscriber (publisher, "", NULL);
    zq_queue_t *second = new_subscriber (publisher, "orders.", NULL);
    assert_int_equal (zq_queue_wait_subscribers (publisher, 2, DEADLINE_MS), 0);
    assert_int_equal (zq_queue_subscribers (publisher), 2);
    assert_int_equal (zq_queue_wait_subscribers (publisher, 3, 50), -1);
    assert_int_equal (errno, ZQ_ETIMEDOUT);

    //  A publisher's fd never reports input: notices are taken in.
    int events = zq_queue_events (publisher);
    assert_true (events >= 0);
    assert_false (events & ZQ_POLLIN);

    //  Unsubscribing and disconnecting end subscriptions.
    assert_int_equal (zq_queue_unsubscribe (second, "orders."), 0);
    zq_queue_destroy (&first);
    int64_t deadline = now_ms () + DEADLINE_MS;
    while (zq_queue_subscribers (publisher) > 0) {
        assert_true (now_ms () < deadline);
        zmq_pollitem_t item = {zsock_resolve (zq_queue_sock (publisher)), 0, ZMQ_POLLIN, 0};
        zmq_poll (&item, 1, 100);
    }
    assert_int_equal (zq_queue_subscribers (publisher), 0);
    zq_queue_destroy (&second);
    zq_queue_destroy (&publisher);
}

static void
test_clean_run_has_no_gaps (void **state)
{
    zq_queue_t *publisher = new_publisher ((const char *)*state, NULL);
    zq_queue_t *subscriber = new_subscriber (publisher, "", NULL);
    assert_int_equal (zq_queue_wait_subscribers (publisher, 1, DEADLINE_MS), 0);
    const int total = 900;
    const char *subjects[] = {"s1", "s2", "s3"};
    for (int n = 0; n < total; n++)
        send_numbered (publisher, subjects[n % 3], n);
    recv_numbered (subscriber, 0, total);
    zq_queue_stats_t stats;
    zq_queue_stats (subscriber, &stats);
    assert_int_equal (stats.gaps, 0);
    assert_int_equal (stats.received, total);
    zq_queue_stats (publisher, &stats);
    assert_int_equal (stats.dropped, 0);
    zq_queue_destroy (&subscriber);
    zq_queue_destroy (&publisher);
}

static void
test_late_joiner_has_no_gaps (void **state)
{
    zq_queue_t *publisher = new_publisher ((const char *)*state, NULL);
    zq_queue_t *early = new_subscriber (publisher, "", NULL);
    assert_int_equal (zq_queue_wait_subscribers (publisher, 1, DEADLINE_MS), 0);
    for (int n = 0; n < 50; n++)
        send_numbered (publisher, "news", n);
    zq_queue_t *late = new_subscriber (publisher, "news", NULL);
    assert_int_equal (zq_queue_wait_subscribers (publisher, 2, DEADLINE_MS), 0);
    for (int n = 50; n < 100; n++)
        send_numbered (publisher, "news", n);
    recv_numbered (late, 50, 100);
    for (int n = 0; n < 100; n++) {
        zq_msg_t *msg = zq_queue_recv (early, DEADLINE_MS);
        assert_non_null (msg);
        zq_msg_destroy (&msg);
    }
    zq_queue_stats_t stats;
    zq_queue_stats (late, &stats);
    assert_int_equal (stats.gaps, 0);
    zq_queue_stats (early, &stats);
    assert_int_equal (stats.gaps, 0);
    zq_queue_destroy (&late);
    zq_queue_destroy (&early);
    zq_queue_destroy (&publisher);
}

//  A message of about pad_size bytes on "feed" numbered n.
static zq_msg_t *
feed_message (int64_t n, size_t pad_size)
{
    static char pad[16384];
    zq_msg_t *msg = zq_msg_new ("feed");
    assert_true (pad_size <= sizeof pad);
    assert_int_equal (zq_msg_pack (msg, "{sisB}", "n", n, "pad", pad, pad_size), 0);
    return msg;
}

//  Receives until a message numbered -1 arrives, the publisher sending
//  such markers until one gets through; returns how many were published.
static int
drain_until_marker (zq_queue_t *publisher, zq_queue_t *subscriber, int64_t deadline)
{
    int markers = 0;
    while (true) {
        assert_true (now_ms () < deadline);
        zq_msg_t *msg;
        while ((msg = zq_queue_recv (subscriber, 10))) {
            bool marker = number_of (msg) == -1;
            zq_msg_destroy (&msg);
            if (marker)
                return markers;
        }
        send_numbered (publisher, "feed", -1);
        markers++;
    }
}

//  A slow subscriber with tiny queues (and, over tcp and ipc, large
//  messages to fill the kernel's buffers), under each slow_subscriber mode.
static void
s_full_queue (const char *transport, const char *mode)
{
    zq_options_t *options = zq_options_new ();
    assert_int_equal (zq_options_set (options, "sndhwm", "4"), 0);
    assert_int_equal (zq_options_set (options, "rcvhwm", "4"), 0);
    assert_int_equal (zq_options_set (options, "slow_subscriber", mode), 0);
    zq_queue_t *publisher = new_publisher (transport, options);
    zq_queue_t *subscriber = new_subscriber (publisher, "", options);
    assert_int_equal (zq_queue_wait_subscribers (publisher, 1, DEADLINE_MS), 0);
    size_t pad_size = strcmp (transport, "inproc") == 0 ? 10 : 16384;
    int64_t deadline = now_ms () + DEADLINE_MS;
    int published = 0;
    zq_queue_stats_t stats;

    if (strcmp (mode, "wait") == 0) {
        //  The publisher fills the queues, then a send times out.
        zq_msg_t *msg = feed_message (published, pad_size);
        while (zq_queue_send (publisher, &msg, 100) == 0) {
            published++;
            msg = feed_message (published, pad_size);
            assert_true (now_ms () < deadline);
        }
        assert_int_equal (errno, EAGAIN);
        assert_non_null (msg);
        int64_t start = now_ms ();
        int rc = zq_queue_send (publisher, &msg, 150);
        int64_t elapsed = now_ms () - start;
        if (rc == -1) {
            assert_int_equal (errno, EAGAIN);
            assert_true (elapsed >= 140 && elapsed < 3000);
        } else {
            published++;
            msg = feed_message (published, pad_size);
        }
        //  Reading makes room: everything arrives, in order, no gap.
        int received = 0;
        while (received < published || msg) {
            assert_true (now_ms () < deadline);
            zq_msg_t *got = zq_queue_recv (subscriber, msg ? 0 : DEADLINE_MS);
            if (got) {
                assert_int_equal (number_of (got), received);
                received++;
                zq_msg_destroy (&got);
            }
            if (msg && zq_queue_send (publisher, &msg, 0) == 0)
                published++;
        }
        zq_queue_stats (subscriber, &stats);
        assert_int_equal (stats.gaps, 0);
        assert_int_equal (stats.received, (uint64_t)published);
        zq_queue_stats (publisher, &stats);
        assert_int_equal (stats.dropped, 0);
    } else {
        //  The publisher never waits: it keeps publishing while the
        //  subscriber reads nothing, until losses are certain.
        bool drop = strcmp (mode, "drop") == 0;
        int enough = strcmp (transport, "inproc") == 0 ? 200 : 3000;
        do {
            zq_msg_t *msg = feed_message (published, pad_size);
            assert_int_equal (zq_queue_send (publisher, &msg, 0), 0);
            assert_null (msg);
            published++;
            zq_queue_stats (publisher, &stats);
            assert_true (now_ms () < deadline);
        } while (drop ? stats.dropped < 10 : published < enough);
        published += drain_until_marker (publisher, subscriber, deadline);
        zq_queue_stats_t subscriber_stats;
        zq_queue_stats (subscriber, &subscriber_stats);
        zq_queue_stats (publisher, &stats);
        //  Every message was received or counted as missing.
        assert_true (subscriber_stats.gaps > 0);
        assert_int_equal (subscriber_stats.errors, 0);
        assert_int_equal (subscriber_stats.received + subscriber_stats.gaps, (uint64_t)published);
        assert_int_equal (stats.sent, (uint64_t)published);
        if (drop)
            //  One subscriber: what it missed is what the publisher dropped.
            assert_int_equal (stats.dropped, subscriber_stats.gaps);
        else
            //  libzmq does not tell the publisher.
            assert_int_equal (stats.dropped, 0);
    }
    zq_queue_destroy (&subscriber);
    zq_queue_destroy (&publisher);
    zq_options_destroy (&options);
}

static void
test_full_queue_skip (void **state)
{
    s_full_queue ((const char *)*state, "skip");
}

static void
test_full_queue_drop (void **state)
{
    s_full_queue ((const char *)*state, "drop");
}

static void
test_full_queue_wait (void **state)
{
    s_full_queue ((const char *)*state, "wait");
}

//  Sends topic, pubsub header and a good envelope from a raw socket.
static void
raw_publish (void *raw, const char *topic, uint64_t publisher, uint64_t sequence, int64_t n)
{
    uint8_t header[16];
    memcpy (header, &publisher, 8);
    for (int i = 0; i < 8; i++)
        header[8 + i] = (uint8_t)(sequence >> (56 - 8 * i));
    assert_int_equal (zmq_send (raw, topic, strlen (topic), ZMQ_SNDMORE), (int)strlen (topic));
    assert_int_equal (zmq_send (raw, header, 16, ZMQ_SNDMORE), 16);
    zq_msg_t *msg = numbered (topic, n);
    assert_int_equal (zq_msg_send (&msg, raw, 0), 0);
}

static void
test_sequence_jumps_from_raw_peer (void **state)
{
    const char *transport = (const char *)*state;
    char spec[300];
    bind_spec (transport, spec, sizeof spec);
    zsock_t *raw = zsock_new (ZMQ_XPUB);
    assert_non_null (raw);
    assert_true (zsock_bind (raw, "%s", spec + 1) >= 0);
    char *endpoint = zsock_last_endpoint (raw);
    snprintf (spec, sizeof spec, ">%s", endpoint);
    free (endpoint);
    zq_queue_t *subscriber = zq_queue_new ("pubsub", ZQ_SUBSCRIBER, spec, NULL);
    assert_non_null (subscriber);
    assert_int_equal (zq_queue_subscribe (subscriber, ""), 0);
    //  The subscription notice says the subscriber is in place.
    zmsg_t *notice = zmsg_recv (raw);
    assert_non_null (notice);
    zmsg_destroy (&notice);
    void *handle = zsock_resolve (raw);

    //  Publisher A: 1 2 5 6 10 -> gaps 2 + 3; publisher B starts at 7
    //  (joined late: no gap) then 8; A restarts at 1: no gap.
    uint64_t a = 0x1111, b = 0x2222;
    raw_publish (handle, "t", a, 1, 0);
    raw_publish (handle, "t", a, 2, 1);
    raw_publish (handle, "t", a, 5, 2);
    raw_publish (handle, "t", b, 7, 3);
    raw_publish (handle, "t", a, 6, 4);
    raw_publish (handle, "t", b, 8, 5);
    raw_publish (handle, "u", a, 3, 6); //  another subject: its own count
    raw_publish (handle, "t", a, 10, 7);
    raw_publish (handle, "t", a, 1, 8);
    raw_publish (handle, "t", a, 2, 9);
    //  Malformed: header of 15 bytes, topic not the subject, sequence 0,
    //  topic alone.
    assert_int_equal (zmq_send (handle, "t", 1, ZMQ_SNDMORE), 1);
    assert_int_equal (zmq_send (handle, "0123456789abcde", 15, ZMQ_SNDMORE), 15);
    zq_msg_t *msg = numbered ("t", 99);
    assert_int_equal (zq_msg_send (&msg, handle, 0), 0);
    raw_publish (handle, "v", a, 0, 99);
    assert_int_equal (zmq_send (handle, "t", 1, 0), 1);
    uint8_t header[16] = {0};
    header[15] = 1;
    assert_int_equal (zmq_send (handle, "t", 1, ZMQ_SNDMORE), 1);
    assert_int_equal (zmq_send (handle, header, 16, ZMQ_SNDMORE), 16);
    msg = numbered ("not-t", 99);
    assert_int_equal (zq_msg_send (&msg, handle, 0), 0);
    raw_publish (handle, "t", b, 9, 10);

    recv_numbered (subscriber, 0, 11);
    zq_queue_stats_t stats;
    zq_queue_stats (subscriber, &stats);
    assert_int_equal (stats.gaps, 5);
    assert_int_equal (stats.errors, 4);
    assert_int_equal (stats.received, 11);
    zq_queue_destroy (&subscriber);
    zsock_destroy (&raw);
}

//  ---- What subscribers send a publisher -----------------------------------

//  The port of a publisher bound on tcp://127.0.0.1.
static int
port_of (zq_queue_t *publisher)
{
    const char *colon = strrchr (zq_queue_endpoint (publisher), ':');
    assert_non_null (colon);
    return atoi (colon + 1);
}

//  Reads exactly size bytes from fd, or fails the test.
static void
read_exactly (int fd, uint8_t *buffer, size_t size)
{
    for (size_t got = 0; got < size;) {
        struct pollfd item = {fd, POLLIN, 0};
        assert_int_equal (poll (&item, 1, DEADLINE_MS), 1);
        ssize_t rc = recv (fd, buffer + got, size - got, 0);
        assert_true (rc > 0);
        got += (size_t)rc;
    }
}

//  A raw ZMTP 3.0 connection to port as a SUB, past the NULL handshake
//  (RFC 23), so a test can send what libzmq's SUB never would. Returns
//  its fd.
static int
raw_subscriber (int port)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    assert_true (fd >= 0);
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_port = htons ((uint16_t)port);
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    assert_int_equal (connect (fd, (struct sockaddr *)&address, sizeof address), 0);
    uint8_t greeting[64] = {0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 3, 0, 'N', 'U', 'L', 'L'};
    assert_int_equal (send (fd, greeting, sizeof greeting, MSG_NOSIGNAL), 64);
    const uint8_t ready[] = {4,   25,  5,   'R', 'E', 'A', 'D', 'Y', 11, 'S', 'o', 'c', 'k', 'e',
                             't', '-', 'T', 'y', 'p', 'e', 0,   0,   0,  3,   'S', 'U', 'B'};
    assert_int_equal (send (fd, ready, sizeof ready, MSG_NOSIGNAL), (ssize_t)sizeof ready);
    uint8_t reply[64 + 2 + 255];
    read_exactly (fd, reply, 66);
    read_exactly (fd, reply + 66, reply[65]);
    return fd;
}

//  Sends the frame flag + topic (flag 1 subscribes, 0 withdraws) on a raw
//  connection. Returns 0, or -1 once the publisher has closed it.
static int
raw_send (int fd, uint8_t flag, const char *topic, size_t size)
{
    uint8_t head[10] = {2};
    uint64_t length = 1 + size;
    for (int i = 0; i < 8; i++)
        head[1 + i] = (uint8_t)(length >> (56 - 8 * i));
    head[9] = flag;
    if (send (fd, head, sizeof head, MSG_NOSIGNAL) != (ssize_t)sizeof head)
        return -1;
    return size == 0 || send (fd, topic, size, MSG_NOSIGNAL) == (ssize_t)size ? 0 : -1;
}

//  Waits, taking in the publisher's notices, until it closes fd.
//  Returns true if it did within the deadline.
static bool
closed_by_publisher (zq_queue_t *publisher, int fd)
{
    int64_t deadline = now_ms () + DEADLINE_MS;
    while (now_ms () < deadline) {
        assert_true (zq_queue_subscribers (publisher) >= 0);
        struct pollfd item = {fd, POLLIN, 0};
        if (poll (&item, 1, 20) == 1) {
            uint8_t buffer[4096];
            ssize_t rc = recv (fd, buffer, sizeof buffer, 0);
            if (rc == 0 || (rc < 0 && errno == ECONNRESET))
                return true;
        }
    }
    return false;
}

//  Waits until zq_queue_subscribers returns count; fails at the deadline.
static void
wait_count (zq_queue_t *publisher, int count)
{
    int64_t deadline = now_ms () + DEADLINE_MS;
    int have;
    while ((have = zq_queue_subscribers (publisher)) != count) {
        if (now_ms () >= deadline)
            fail_msg ("%d subscriptions counted, not %d", have, count);
        zmq_pollitem_t item = {zsock_resolve (zq_queue_sock (publisher)), 0, ZMQ_POLLIN, 0};
        zmq_poll (&item, 1, 20);
    }
}

static long
rss_kib (void)
{
    FILE *file = fopen ("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (file && fgets (line, sizeof line, file))
        if (strncmp (line, "VmRSS:", 6) == 0)
            kib = atol (line + 6);
    if (file)
        fclose (file);
    return kib;
}

//  Bytes malloc has handed out and not had back, in KiB.
static long
heap_kib (void)
{
    struct mallinfo2 info = mallinfo2 ();
    return (long)((info.uordblks + info.hblkhd) / 1024);
}

//  The library's log lines that held the text a test looks for.
static const char *s_log_wanted;
static int s_log_seen;

static void
s_log_look (zq_log_level_t level, const char *line, void *arg)
{
    (void)level;
    (void)arg;
    if (s_log_wanted && strstr (line, s_log_wanted))
        __atomic_add_fetch (&s_log_seen, 1, __ATOMIC_RELAXED);
}

//  From now, counts the log lines that hold text.
static void
log_look_for (const char *text)
{
    s_log_wanted = text;
    s_log_seen = 0;
    zq_set_log_handler (s_log_look, NULL, ZQ_LOG_WARNING);
}

//  True once a line holding the text looked for was logged (the handler
//  is then taken off).
static bool
log_seen (void)
{
    bool seen = __atomic_load_n (&s_log_seen, __ATOMIC_RELAXED) > 0;
    zq_set_log_handler (NULL, NULL, ZQ_LOG_ERROR);
    return seen;
}

static void
test_long_subscription_closes_its_connection (void **state)
{
    (void)state;
    log_look_for ("pubsub publisher: a subscriber's connection closed: a subscription over 256"
                  " bytes");
    zq_queue_t *publisher = new_publisher ("tcp", NULL);
    //  Over 256 bytes: the publisher reads it and closes the connection;
    //  over 512 bytes: libzmq closes it before reading the frame whole.
    size_t sizes[] = {MAX_TOPIC + 1, 1000, 400 * 1024};
    for (size_t which = 0; which < 3; which++) {
        char *topic = (char *)malloc (sizes[which]);
        assert_non_null (topic);
        memset (topic, 'A', sizes[which]);
        int fd = raw_subscriber (port_of (publisher));
        raw_send (fd, 1, topic, sizes[which]);
        assert_true (closed_by_publisher (publisher, fd));
        close (fd);
        free (topic);
    }
    assert_true (log_seen ());
    assert_int_equal (zq_queue_subscribers (publisher), 0);
    //  A topic of exactly 256 bytes is applied.
    char topic[MAX_TOPIC];
    memset (topic, 'B', sizeof topic);
    int fd = raw_subscriber (port_of (publisher));
    assert_int_equal (raw_send (fd, 1, topic, sizeof topic), 0);
    wait_count (publisher, 1);
    close (fd);
    wait_count (publisher, 0);
    zq_queue_destroy (&publisher);
}

static void
test_subscriptions_per_connection_are_capped (void **state)
{
    (void)state;
    log_look_for ("pubsub publisher: a subscription refused: its connection holds the most (1024)");
    zq_queue_t *publisher = new_publisher ("tcp", NULL);
    int fd = raw_subscriber (port_of (publisher));
    char topic[32];
    for (int index = 0; index < MAX_SUBSCRIPTIONS + 100; index++) {
        snprintf (topic, sizeof topic, "t%05d.", index);
        assert_int_equal (raw_send (fd, 1, topic, strlen (topic)), 0);
    }
    //  Withdrawing one frees its place; notices are read in order, so once
    //  the count shows it every subscription before it was read.
    assert_int_equal (raw_send (fd, 0, "t00000.", 7), 0);
    wait_count (publisher, MAX_SUBSCRIPTIONS - 1);
    assert_true (log_seen ());
    assert_int_equal (raw_send (fd, 1, "late.", 5), 0);
    wait_count (publisher, MAX_SUBSCRIPTIONS);
    //  Another connection has a cap of its own.
    int other = raw_subscriber (port_of (publisher));
    assert_int_equal (raw_send (other, 1, "t01100.", 7), 0);
    wait_count (publisher, MAX_SUBSCRIPTIONS + 1);
    close (fd);
    close (other);
    wait_count (publisher, 0);
    zq_queue_destroy (&publisher);
}

static void
test_refused_flood_closes_its_connection (void **state)
{
    (void)state;
    log_look_for ("pubsub publisher: a subscriber's connection closed: too many subscriptions"
                  " refused");
    zq_queue_t *publisher = new_publisher ("tcp", NULL);
    int fd = raw_subscriber (port_of (publisher));
    char topic[32];
    //  Topics of 3 bytes: 2049 of them stay within a connection's share of
    //  max_subscription_bytes (each costs its bytes and 8).
    for (int index = 0; index < 3 * MAX_SUBSCRIPTIONS; index++) {
        snprintf (topic, sizeof topic, "%03x", index);
        if (raw_send (fd, 1, topic, strlen (topic)))
            break; //  closed already
    }
    assert_true (closed_by_publisher (publisher, fd));
    assert_true (log_seen ());
    close (fd);
    wait_count (publisher, 0);
    zq_queue_destroy (&publisher);
}

//  A flood of distinct 1000-byte subscriptions on one connection.
static void
test_flood_of_long_subscriptions_keeps_memory (void **state)
{
    (void)state;
    zq_queue_t *publisher = new_publisher ("tcp", NULL);
    long before_kib = rss_kib ();
    int fd = raw_subscriber (port_of (publisher));
    char topic[1000];
    memset (topic, 'p', sizeof topic);
    int64_t slowest_ms = 0;
    for (int index = 0; index < 20000; index++) {
        memcpy (topic, &index, sizeof index);
        if (raw_send (fd, 1, topic, sizeof topic))
            break; //  closed
        if (index % 100 == 0) {
            int64_t start = now_ms ();
            send_numbered (publisher, "news", index);
            int64_t took = now_ms () - start;
            slowest_ms = took > slowest_ms ? took : slowest_ms;
        }
    }
    close (fd);
    assert_int_equal (zq_queue_subscribers (publisher), 0);
    long after_kib = rss_kib ();
    printf ("RSS %ld kB before, %ld kB after; slowest send %lld ms\n", before_kib, after_kib,
            (long long)slowest_ms);
    assert_true (after_kib < before_kib + 32 * 1024);
    zq_queue_destroy (&publisher);
}

//  Subscribes the raw connection fd to count topics of 100 bytes, each
//  starting with the letter first.
static void
raw_subscribe_100 (int fd, char first, int count)
{
    char topic[100];
    for (int index = 0; index < count; index++) {
        memset (topic, first, sizeof topic);
        topic[1] = (char)('0' + index);
        assert_int_equal (raw_send (fd, 1, topic, sizeof topic), 0);
    }
}

static void
test_subscription_bytes_are_capped_in_all (void **state)
{
    (void)state;
    //  2400: a connection's share is 300, two 100-byte topics (each costs
    //  its bytes and 8 for the connection's record).
    zq_options_t *options = zq_options_new ();
    assert_int_equal (zq_options_set_int (options, "max_subscription_bytes", 2400), 0);
    zq_queue_t *publisher = new_publisher ("tcp", options);
    zq_options_destroy (&options);
    log_look_for ("pubsub publisher: a subscriber's connection closed: its subscriptions would"
                  " cost more than max_subscription_bytes in all, or for one connection more"
                  " than 1/8 of it");
    int greedy = raw_subscriber (port_of (publisher));
    raw_subscribe_100 (greedy, 'a', 3);
    assert_true (closed_by_publisher (publisher, greedy));
    close (greedy);
    assert_true (log_seen ());
    wait_count (publisher, 0);
    //  A topic costs its bytes once, however many connections send it:
    //  200 + 3 x 16.
    int shared[3];
    for (int which = 0; which < 3; which++) {
        shared[which] = raw_subscriber (port_of (publisher));
        raw_subscribe_100 (shared[which], 'b', 2);
        wait_count (publisher, 2 * (which + 1));
    }
    //  Nine connections of two topics of their own: 248 + 9 x 216 = 2192.
    int own[9];
    for (int which = 0; which < 9; which++) {
        own[which] = raw_subscriber (port_of (publisher));
        raw_subscribe_100 (own[which], (char)('c' + which), 2);
        wait_count (publisher, 6 + 2 * (which + 1));
    }
    //  Room for one more topic, not two: the second closes its connection.
    int late = raw_subscriber (port_of (publisher));
    raw_subscribe_100 (late, 'z', 2);
    assert_true (closed_by_publisher (publisher, late));
    close (late);
    wait_count (publisher, 24);
    //  An empty prefix costs nothing: applied at the bound.
    int everything = raw_subscriber (port_of (publisher));
    assert_int_equal (raw_send (everything, 1, "", 0), 0);
    wait_count (publisher, 25);
    //  A connection gone gives back what it held: 216 of its own topics,
    //  16 of a shared one's.
    close (own[0]);
    close (shared[0]);
    wait_count (publisher, 21);
    late = raw_subscriber (port_of (publisher));
    raw_subscribe_100 (late, 'z', 2);
    wait_count (publisher, 23);
    close (late);
    close (everything);
    for (int which = 1; which < 3; which++)
        close (shared[which]);
    for (int which = 1; which < 9; which++)
        close (own[which]);
    wait_count (publisher, 0);
    //  All of it is back: eleven connections of two topics of their own
    //  (2376) fit, a twelfth does not.
    int again[11];
    for (int which = 0; which < 11; which++) {
        again[which] = raw_subscriber (port_of (publisher));
        raw_subscribe_100 (again[which], (char)('A' + which), 2);
        wait_count (publisher, 2 * (which + 1));
    }
    late = raw_subscriber (port_of (publisher));
    raw_subscribe_100 (late, 'z', 1);
    assert_true (closed_by_publisher (publisher, late));
    close (late);
    for (int which = 0; which < 11; which++)
        close (again[which]);
    wait_count (publisher, 0);
    zq_queue_destroy (&publisher);
}

//  Many connections, each sending its most subscriptions of distinct
//  256-byte prefixes: libzmq would keep about 10 KB of each, 10 MB a
//  connection. Each is closed once past its share of
//  max_subscription_bytes, and what it made libzmq hold is freed.
static void
test_many_connections_keep_memory (void **state)
{
    (void)state;
    enum { CONNECTIONS = 40 };
    zq_queue_t *publisher = new_publisher ("tcp", NULL);
    long before_kib = rss_kib (), heap_before_kib = heap_kib ();
    int fds[CONNECTIONS];
    char topic[MAX_TOPIC];
    for (int which = 0; which < CONNECTIONS; which++) {
        fds[which] = raw_subscriber (port_of (publisher));
        for (int index = 0; index < MAX_SUBSCRIPTIONS; index++) {
            for (size_t at = 0; at < sizeof topic; at++)
                topic[at] = (char)('a' + (rand () % 26));
            if (raw_send (fds[which], 1, topic, sizeof topic))
                break; //  closed
        }
        //  Taken in as they come, as a publisher that sends would.
        assert_true (zq_queue_subscribers (publisher) >= 0);
    }
    for (int which = 0; which < CONNECTIONS; which++) {
        assert_true (closed_by_publisher (publisher, fds[which]));
        close (fds[which]);
    }
    wait_count (publisher, 0);
    //  What stays held at most: eight connections at their share, 124 of
    //  these each (8 x 124 x 264 <= 262144), all applied. (malloc's count;
    //  the process's size also keeps the peak of the flood above.)
    int held[8];
    for (int which = 0; which < 8; which++) {
        held[which] = raw_subscriber (port_of (publisher));
        for (int index = 0; index < 124; index++) {
            for (size_t at = 0; at < sizeof topic; at++)
                topic[at] = (char)('a' + (rand () % 26));
            assert_int_equal (raw_send (held[which], 1, topic, sizeof topic), 0);
        }
        wait_count (publisher, 124 * (which + 1));
    }
    long after_kib = rss_kib (), heap_after_kib = heap_kib ();
    printf ("RSS %ld kB before, %ld kB after; heap %ld kB before, %ld kB with 992 held\n",
            before_kib, after_kib, heap_before_kib, heap_after_kib);
    assert_true (heap_after_kib < heap_before_kib + 32 * 1024);
    for (int which = 0; which < 8; which++)
        close (held[which]);
    wait_count (publisher, 0);
    zq_queue_destroy (&publisher);
}

//  Subscribes sock to topic (a SUB) or sends the notice (an XSUB).
static void
sub_send (zsock_t *sock, const char *topic)
{
    if (zsock_type (sock) == ZMQ_SUB)
        zsock_set_subscribe (sock, topic);
    else {
        size_t size = strlen (topic);
        char frame[64] = {1};
        memcpy (frame + 1, topic, size);
        assert_int_equal (zmq_send (zsock_resolve (sock), frame, 1 + size, 0), (int)(1 + size));
    }
}

static void
test_duplicates_count_once (void **state)
{
    const char *transport = (const char *)*state;
    zq_queue_t *publisher = new_publisher (transport, NULL);
    //  A SUB that subscribes twice to the same prefix, and an XSUB that
    //  sends the same subscription 1000 times: one each, and none once
    //  they close. (Over inproc, where connections cannot be told apart,
    //  each subscription counts until withdrawn: not tested here.)
    int types[] = {ZMQ_SUB, ZMQ_XSUB};
    int repeats[] = {2, 1000};
    for (int which = 0; which < 2; which++) {
        zsock_t *sock = zsock_new (types[which]);
        assert_non_null (sock);
        zsock_set_sndhwm (sock, 0);
        assert_int_equal (zsock_connect (sock, "%s", zq_queue_endpoint (publisher)), 0);
        for (int index = 0; index < repeats[which]; index++)
            sub_send (sock, "news");
        //  Notices are read in order: once "zzz" counts, every "news" was
        //  read.
        sub_send (sock, "zzz");
        wait_count (publisher, 2);
        zsock_destroy (&sock);
        wait_count (publisher, 0);
    }
    assert_int_equal (zq_queue_wait_subscribers (publisher, 1, 0), -1);
    assert_int_equal (errno, ZQ_ETIMEDOUT);
    zq_queue_destroy (&publisher);
}

//  A subscriber's gap table grows by a fixed size per (publisher, subject)
//  pair, whatever the subject's length: long subjects from ever new
//  publisher ids keep its memory small.
static void
test_long_subjects_from_new_publishers_keep_memory (void **state)
{
    (void)state;
    char spec[300];
    bind_spec ("inproc", spec, sizeof spec);
    zsock_t *raw = zsock_new (ZMQ_XPUB);
    assert_non_null (raw);
    assert_true (zsock_bind (raw, "%s", spec + 1) >= 0);
    spec[0] = '>';
    zq_queue_t *subscriber = zq_queue_new ("pubsub", ZQ_SUBSCRIBER, spec, NULL);
    assert_non_null (subscriber);
    assert_int_equal (zq_queue_subscribe (subscriber, ""), 0);
    zmsg_t *notice = zmsg_recv (raw);
    assert_non_null (notice);
    zmsg_destroy (&notice);
    char *subject = (char *)malloc (ZQ_MSG_MAX_STRING + 1);
    assert_non_null (subject);
    memset (subject, 's', ZQ_MSG_MAX_STRING);
    subject[ZQ_MSG_MAX_STRING] = '\0';
    long before_kib = 0;
    int64_t sent = 0;
    for (int batch = 0; batch < 40; batch++) {
        if (batch == 8)
            before_kib = heap_kib (); //  once the allocator has warmed up
        for (int index = 0; index < 500; index++, sent++)
            raw_publish (zsock_resolve (raw), subject, 0x1000 + (uint64_t)sent, 1, sent);
        recv_numbered (subscriber, sent - 500, sent);
    }
    long after_kib = heap_kib ();
    printf ("heap %ld kB before, %ld kB after %lld pairs\n", before_kib, after_kib,
            (long long)sent);
    //  A copy of each subject would be 4 KiB x 16000 = 64 MB.
    assert_true (after_kib < before_kib + 16 * 1024);
    zq_queue_stats_t stats;
    zq_queue_stats (subscriber, &stats);
    assert_int_equal (stats.gaps, 0);
    assert_int_equal (stats.received, sent);
    free (subject);
    zq_queue_destroy (&subscriber);
    zsock_destroy (&raw);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        FOR_EACH_TRANSPORT (test_prefix_filtering),
        FOR_EACH_TRANSPORT (test_wait_subscribers),
        FOR_EACH_TRANSPORT (test_clean_run_has_no_gaps),
        FOR_EACH_TRANSPORT (test_late_joiner_has_no_gaps),
        FOR_EACH_TRANSPORT (test_full_queue_skip),
        FOR_EACH_TRANSPORT (test_full_queue_drop),
        FOR_EACH_TRANSPORT (test_full_queue_wait),
        FOR_EACH_TRANSPORT (test_sequence_jumps_from_raw_peer),
        cmocka_unit_test (test_long_subscription_closes_its_connection),
        cmocka_unit_test (test_subscriptions_per_connection_are_capped),
        cmocka_unit_test (test_refused_flood_closes_its_connection),
        cmocka_unit_test (test_flood_of_long_subscriptions_keeps_memory),
        cmocka_unit_test (test_subscription_bytes_are_capped_in_all),
        cmocka_unit_test (test_many_connections_keep_memory),
        cmocka_unit_test_prestate (test_duplicates_count_once, "ipc"),
        cmocka_unit_test_prestate (test_duplicates_count_once, "tcp"),
        cmocka_unit_test (test_long_subjects_from_new_publishers_keep_memory),
    };
    return cmocka_run_group_tests (tests, NULL, teardown_ipc_dir);
}
