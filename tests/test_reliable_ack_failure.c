/*  =========================================================================
    test_reliable_ack_failure - a reliable server whose spool does not take
    an ack (zq_spool_ack fails: out of memory, or a spool that has failed)
    removes nothing: the delivery stays the consumer's, the consumer is
    told (ERROR 3 to a remote consumer, -1 from zq_queue_ack locally), and
    an ack sent again once the spool takes it settles the message.

    When one ack of an ACK that names several fails, the others are
    recorded and only that delivery stays.

    The failure is made here: this program defines zq_spool_ack_many,
    which the server reaches through the dynamic linker for a consumer's
    acks, and passes each call on to the library's own unless
    s_refuse_acks is set (every ack fails) or s_refuse_seq names a seq in
    it (that ack fails, the ones before it are passed on).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable_helpers.h"
#include <dlfcn.h>

static int s_refuse_acks;     //  nonzero: every ack fails with ENOMEM
static uint64_t s_refuse_seq; //  nonzero: the ack of this seq fails with ENOMEM
static int s_partly_refused;  //  calls that failed after acking seqs before it
static int s_acks_refused;
static int s_errors_logged; //  lines saying the server reported error 3

int
zq_spool_ack_many (zq_spool_t *spool, const uint64_t *seqs, size_t count, size_t *acked_p)
{
    static int (*library_ack) (zq_spool_t *, const uint64_t *, size_t, size_t *);
    if (!library_ack)
        *(void **)&library_ack = dlsym (RTLD_NEXT, "zq_spool_ack_many");
    assert_non_null (library_ack);
    size_t refused = count && __atomic_load_n (&s_refuse_acks, __ATOMIC_SEQ_CST) ? 0 : count;
    uint64_t refused_seq = __atomic_load_n (&s_refuse_seq, __ATOMIC_SEQ_CST);
    for (size_t i = 0; refused_seq && i < refused; i++)
        if (seqs[i] == refused_seq)
            refused = i;
    if (refused == count)
        return library_ack (spool, seqs, count, acked_p);
    if (library_ack (spool, seqs, refused, acked_p))
        return -1;
    if (refused)
        __atomic_add_fetch (&s_partly_refused, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch (&s_acks_refused, 1, __ATOMIC_SEQ_CST);
    errno = ENOMEM;
    return -1;
}

static void
s_log (zq_log_level_t level, const char *line, void *arg)
{
    (void)level;
    (void)arg;
    if (strstr (line, "reports error 3"))
        __atomic_add_fetch (&s_errors_logged, 1, __ATOMIC_SEQ_CST);
}

static void
s_refuse (int refuse)
{
    __atomic_store_n (&s_refuse_acks, refuse, __ATOMIC_SEQ_CST);
}

static zq_queue_t *
s_client (zq_role_t role, test_server_t *server)
{
    char spec[300];
    snprintf (spec, sizeof spec, ">%s", server->endpoint);
    zq_queue_t *queue = zq_queue_new ("reliable", role, spec, NULL);
    assert_non_null (queue);
    return queue;
}

//  A remote consumer's ACK the spool refuses: ERROR 3, the delivery stays
//  in flight with it, and its ACK sent again settles the message.
static void
test_remote_ack_refused (void **state)
{
    (void)state;
    zq_set_log_handler (s_log, NULL, ZQ_LOG_DEBUG);
    test_server_t *server = server_start ("@tcp://127.0.0.1:*", NULL);
    assert_non_null (server);
    zq_queue_t *producer = s_client (ZQ_PRODUCER, server);
    zq_queue_t *consumer = s_client (ZQ_CONSUMER, server);
    assert_int_equal (zq_queue_subscribe (consumer, "acks"), 0);
    send_numbered (producer, "acks", 7);
    zq_msg_t *msg = zq_queue_recv (consumer, DEADLINE_MS);
    assert_non_null (msg);
    assert_int_equal (number_of (msg), 7);

    s_refuse (1);
    assert_int_equal (zq_queue_ack (consumer, msg), 0);
    int64_t deadline = now_ms () + DEADLINE_MS;
    while (!__atomic_load_n (&s_errors_logged, __ATOMIC_SEQ_CST)) {
        assert_true (now_ms () < deadline);
        zq_msg_t *other = zq_queue_recv (consumer, 20);
        assert_null (other);
    }
    assert_true (__atomic_load_n (&s_acks_refused, __ATOMIC_SEQ_CST) >= 1);
    zq_queue_info_t info;
    assert_int_equal (server_info (server, "acks", &info), 0);
    assert_int_equal (info.depth, 1);
    assert_int_equal (info.in_flight, 1);
    assert_int_equal (info.acked, 0);

    s_refuse (0);
    assert_int_equal (zq_queue_ack (consumer, msg), 0);
    WAIT_INFO (server, "acks", info, info.acked == 1 && info.depth == 0);
    assert_int_equal (info.redelivered, 0);
    zq_msg_destroy (&msg);
    zq_queue_destroy (&consumer);
    zq_queue_destroy (&producer);
    server_stop (&server);
    zq_set_log_handler (NULL, NULL, ZQ_LOG_ERROR);
}

//  A remote consumer acks three deliveries in one ACK and the spool
//  refuses the middle one's: the first and last are recorded, the middle
//  one stays in flight with the consumer, and its ACK sent again settles
//  it. (The queue's spool gives its messages seqs 1, 2, 3 in order.)
static void
test_one_ack_of_three_refused (void **state)
{
    (void)state;
    test_server_t *server = server_start ("@tcp://127.0.0.1:*", NULL);
    assert_non_null (server);
    zq_queue_t *producer = s_client (ZQ_PRODUCER, server);
    zq_queue_t *consumer = s_client (ZQ_CONSUMER, server);
    assert_int_equal (zq_queue_subscribe (consumer, "three"), 0);
    zq_msg_t *msgs[3];
    for (int n = 0; n < 3; n++)
        send_numbered (producer, "three", n);
    for (int n = 0; n < 3; n++) {
        msgs[n] = zq_queue_recv (consumer, DEADLINE_MS);
        assert_non_null (msgs[n]);
        assert_int_equal (number_of (msgs[n]), n);
    }
    __atomic_store_n (&s_refuse_seq, 2, __ATOMIC_SEQ_CST);
    //  The acks go in one ACK: the consumer holds them until its next call.
    for (int n = 0; n < 3; n++)
        assert_int_equal (zq_queue_ack (consumer, msgs[n]), 0);
    zq_queue_info_t info;
    WAIT_INFO (server, "three", info, info.acked == 2);
    assert_int_equal (info.depth, 1);
    assert_int_equal (info.in_flight, 1);
    assert_int_equal (__atomic_load_n (&s_partly_refused, __ATOMIC_SEQ_CST), 1);
    __atomic_store_n (&s_refuse_seq, 0, __ATOMIC_SEQ_CST);
    assert_int_equal (zq_queue_ack (consumer, msgs[1]), 0);
    WAIT_INFO (server, "three", info, info.acked == 3 && info.depth == 0);
    assert_int_equal (info.redelivered, 0);
    for (int n = 0; n < 3; n++)
        zq_msg_destroy (&msgs[n]);
    zq_queue_destroy (&consumer);
    zq_queue_destroy (&producer);
    server_stop (&server);
}

//  Local consumption: zq_queue_ack fails with the spool's errno and the
//  message stays delivered; a second ack settles it.
static void
test_local_ack_refused (void **state)
{
    (void)state;
    zq_queue_t *server = zq_queue_new ("reliable", ZQ_SERVER, "@tcp://127.0.0.1:*", NULL);
    assert_non_null (server);
    char spec[300];
    connect_spec (server, spec, sizeof spec);
    zq_queue_t *producer = zq_queue_new ("reliable", ZQ_PRODUCER, spec, NULL);
    assert_non_null (producer);
    zq_msg_t *put = numbered ("mine", 3);
    assert_int_equal (zq_queue_post (producer, &put, 0), 0);
    //  Work the server until the message is stored and confirmed.
    uint8_t id[ZQ_MSG_ID_SIZE];
    int64_t deadline = now_ms () + DEADLINE_MS;
    while (zq_queue_confirmed (producer, id)) {
        assert_true (now_ms () < deadline);
        assert_null (zq_queue_recv (server, 10));
    }
    assert_int_equal (zq_queue_subscribe (server, "mine"), 0);
    zq_msg_t *msg = zq_queue_recv (server, DEADLINE_MS);
    assert_non_null (msg);
    assert_int_equal (number_of (msg), 3);

    s_refuse (1);
    assert_int_equal (zq_queue_ack (server, msg), -1);
    assert_int_equal (errno, ENOMEM);
    s_refuse (0);
    zq_queue_info_t info;
    assert_int_equal (zq_queue_info (server, "mine", &info), 0);
    assert_int_equal (info.depth, 1);
    assert_int_equal (info.in_flight, 1);
    assert_int_equal (info.acked, 0);

    assert_int_equal (zq_queue_ack (server, msg), 0);
    assert_int_equal (zq_queue_info (server, "mine", &info), 0);
    assert_int_equal (info.depth, 0);
    assert_int_equal (info.acked, 1);
    zq_msg_destroy (&msg);
    zq_queue_destroy (&producer);
    zq_queue_destroy (&server);
}

//  Each test starts with acks taken and nothing counted.
static int
s_setup (void **state)
{
    (void)state;
    s_refuse (0);
    __atomic_store_n (&s_refuse_seq, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n (&s_partly_refused, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n (&s_acks_refused, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n (&s_errors_logged, 0, __ATOMIC_SEQ_CST);
    return 0;
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup (test_remote_ack_refused, s_setup),
        cmocka_unit_test_setup (test_one_ack_of_three_refused, s_setup),
        cmocka_unit_test_setup (test_local_ack_refused, s_setup),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
