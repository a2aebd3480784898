/*  =========================================================================
    test_reliable_ack_failure - a reliable server whose spool does not take
    an ack (zq_spool_ack fails: out of memory, or a spool that has failed)
    removes nothing: the delivery stays the consumer's, the consumer is
    told (ERROR 3 to a remote consumer, -1 from zq_queue_ack locally), and
    an ack sent again once the spool takes it settles the message.

    The failure is made here: this program defines zq_spool_ack_many,
    which the library reaches through the dynamic linker (for zq_spool_ack
    too), and passes each call on to the library's own unless
    s_refuse_acks is set.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable_helpers.h"
#include <dlfcn.h>

static int s_refuse_acks; //  nonzero: every ack fails with ENOMEM
static int s_acks_refused;
static int s_errors_logged; //  lines saying the server reported error 3

int
zq_spool_ack_many (zq_spool_t *spool, const uint64_t *seqs, size_t count, size_t *acked_p)
{
    static int (*library_ack) (zq_spool_t *, const uint64_t *, size_t, size_t *);
    if (count && __atomic_load_n (&s_refuse_acks, __ATOMIC_SEQ_CST)) {
        __atomic_add_fetch (&s_acks_refused, 1, __ATOMIC_SEQ_CST);
        *acked_p = 0;
        errno = ENOMEM;
        return -1;
    }
    if (!library_ack)
        *(void **)&library_ack = dlsym (RTLD_NEXT, "zq_spool_ack_many");
    assert_non_null (library_ack);
    return library_ack (spool, seqs, count, acked_p);
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
    __atomic_store_n (&s_acks_refused, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n (&s_errors_logged, 0, __ATOMIC_SEQ_CST);
    return 0;
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup (test_remote_ack_refused, s_setup),
        cmocka_unit_test_setup (test_local_ack_refused, s_setup),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
