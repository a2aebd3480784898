/*  =========================================================================
    test_pattern_verbs - each pattern's own verbs live in its own header
    (zq_pubsub.h, zq_rpc.h, zq_reliable.h), each of which compiles on its
    own; every verb refuses a queue of another pattern with ENOTSUP,
    leaving the caller's message alone; the options every pattern declares
    are listed with the generic ones, in their documented order, with
    their bounds.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
//  Only the pattern headers: each must bring what its verbs need.
#include "zq_pubsub.h"
#include "zq_rpc.h"
#include "zq_reliable.h"
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

//  A queue of each pattern, and what its verbs must refuse.
static zq_queue_t *
s_open (const char *pattern, zq_role_t role, const char *endpoint)
{
    zq_queue_t *queue = zq_queue_new (pattern, role, endpoint, NULL);
    assert_non_null (queue);
    return queue;
}

static void
test_verbs_refuse_other_patterns (void **state)
{
    (void)state;
    zq_queue_t *pipeline = s_open ("pipeline", ZQ_CONSUMER, "@inproc://verbs-pipeline");
    zq_queue_t *publisher = s_open ("pubsub", ZQ_PUBLISHER, "@inproc://verbs-pubsub");
    zq_queue_t *rpc = s_open ("rpc", ZQ_SERVER, "@inproc://verbs-rpc");
    zq_queue_t *server = s_open ("reliable", ZQ_SERVER, "@inproc://verbs-reliable");
    zq_queue_t *others[] = {pipeline, publisher, rpc, server};

    zq_msg_t *msg = zq_msg_new ("orders");
    assert_non_null (msg);
    uint8_t id[ZQ_MSG_ID_SIZE];
    zq_queue_info_t info;
    size_t count = 0;
    uint64_t moved = 0;
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        zq_queue_t *queue = others[i];
        if (queue != publisher) {
            errno = 0;
            assert_int_equal (zq_queue_subscribers (queue), -1);
            assert_int_equal (errno, ENOTSUP);
            errno = 0;
            assert_int_equal (zq_queue_wait_subscribers (queue, 1, 0), -1);
            assert_int_equal (errno, ENOTSUP);
        }
        if (queue != rpc) {
            zq_msg_t *reply = msg;
            errno = 0;
            assert_int_equal (zq_queue_reply (queue, msg, &reply, 0), -1);
            assert_int_equal (errno, ENOTSUP);
            assert_ptr_equal (reply, msg);
            errno = 0;
            assert_null (zq_queue_failed (queue));
            assert_int_equal (errno, ENOTSUP);
        }
        if (queue != server) {
            zq_msg_t *post = msg;
            errno = 0;
            assert_int_equal (zq_queue_post (queue, &post, 0), -1);
            assert_int_equal (errno, ENOTSUP);
            assert_ptr_equal (post, msg);
            assert_int_equal (zq_queue_confirmed (queue, id), -1);
            assert_int_equal (errno, ENOTSUP);
            assert_int_equal (zq_queue_ack (queue, msg), -1);
            assert_int_equal (errno, ENOTSUP);
            assert_int_equal (zq_queue_nack (queue, msg, 0), -1);
            assert_int_equal (errno, ENOTSUP);
            assert_int_equal (zq_queue_touch (queue, msg, 0), -1);
            assert_int_equal (errno, ENOTSUP);
            assert_int_equal (zq_queue_declare (queue, "orders"), -1);
            assert_int_equal (errno, ENOTSUP);
            assert_null (zq_queue_names (queue));
            assert_int_equal (errno, ENOTSUP);
            assert_int_equal (zq_queue_info (queue, "orders", &info), -1);
            assert_int_equal (errno, ENOTSUP);
            assert_int_equal (zq_queue_peek (queue, "orders", NULL, 0, &count), -1);
            assert_int_equal (errno, ENOTSUP);
            assert_int_equal (zq_queue_purge (queue, "orders", &moved), -1);
            assert_int_equal (errno, ENOTSUP);
            assert_int_equal (zq_queue_redrive (queue, "orders", &moved), -1);
            assert_int_equal (errno, ENOTSUP);
            assert_int_equal (zq_queue_delete (queue, "orders", 0, &moved), -1);
            assert_int_equal (errno, ENOTSUP);
            assert_int_equal (zq_queue_refusals (queue, &moved, 1), -1);
            assert_int_equal (errno, ENOTSUP);
            assert_int_equal (zq_queue_set_authorizer (queue, NULL, NULL), -1);
            assert_int_equal (errno, ENOTSUP);
        }
    }
    //  NULL queues are EINVAL; closed ones ENOTSOCK, before the pattern.
    assert_int_equal (zq_queue_subscribers (NULL), -1);
    assert_int_equal (errno, EINVAL);
    assert_int_equal (zq_queue_confirmed (NULL, id), -1);
    assert_int_equal (errno, EINVAL);
    assert_null (zq_queue_failed (NULL));
    assert_int_equal (errno, EINVAL);
    assert_int_equal (zq_queue_close (pipeline, NULL), 0);
    assert_int_equal (zq_queue_ack (pipeline, msg), -1);
    assert_int_equal (errno, ENOTSOCK);
    assert_int_equal (zq_queue_close (server, NULL), 0);
    assert_int_equal (zq_queue_declare (server, "orders"), -1);
    assert_int_equal (errno, ENOTSOCK);

    //  The right pattern still answers.
    assert_int_equal (zq_queue_subscribers (publisher), 0);
    errno = 0;
    assert_null (zq_queue_failed (rpc)); //  a server has no failed requests
    assert_int_equal (errno, ENOTSUP);

    zq_msg_destroy (&msg);
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        zq_queue_destroy (&others[i]);
}

//  The listing order: the socket options, then the patterns' own
//  (pipeline, pubsub, rpc, reliable), then CURVE.
static const char *s_listing[] = {"sndhwm",
                                  "rcvhwm",
                                  "sndbuf_bytes",
                                  "rcvbuf_bytes",
                                  "linger_ms",
                                  "reconnect_ms",
                                  "reconnect_max_ms",
                                  "heartbeat_ivl_ms",
                                  "heartbeat_timeout_ms",
                                  "heartbeat_ttl_ms",
                                  "max_message_bytes",
                                  "identity",
                                  "send_timeout_ms",
                                  "recv_timeout_ms",
                                  "batch_max_bytes",
                                  "slow_subscriber",
                                  "max_subscription_bytes",
                                  "request_timeout_ms",
                                  "retries",
                                  "max_in_flight",
                                  "spool_dir",
                                  "outbox_dir",
                                  "fsync",
                                  "fsync_interval_ms",
                                  "quota_bytes",
                                  "segment_bytes",
                                  "visibility_timeout_ms",
                                  "max_attempts",
                                  "prefetch",
                                  "ack_flush_us",
                                  "max_deliveries",
                                  "dedupe_window_ms",
                                  "dedupe_max",
                                  "nack_backoff_ms",
                                  "nack_backoff_max_ms",
                                  "max_delay_ms",
                                  "max_unsettled_bytes",
                                  "max_unsettled_bytes_total",
                                  "max_delayed_messages",
                                  "max_delayed_messages_total",
                                  "confirm_timeout_ms",
                                  "ping_ivl_ms",
                                  "max_queues",
                                  "max_consumer_queues",
                                  "max_auto_queues",
                                  "max_auto_queues_per_identity",
                                  "auto_queue_idle_ms",
                                  "min_free_bytes",
                                  "jetstream_servers",
                                  "jetstream_credentials",
                                  "jetstream_tls_ca",
                                  "jetstream_tls_cert",
                                  "jetstream_tls_key",
                                  "jetstream_replicas",
                                  "jetstream_prefix",
                                  "curve_cert",
                                  "curve_server_key",
                                  "curve_server_cert",
                                  "curve_clients"};

static void
test_pattern_options_listed (void **state)
{
    (void)state;
    size_t count = sizeof s_listing / sizeof s_listing[0];
    for (size_t i = 0; i < count; i++) {
        const zq_option_info_t *info = zq_options_info (i);
        assert_non_null (info);
        assert_string_equal (info->name, s_listing[i]);
        assert_ptr_equal (zq_options_lookup (s_listing[i]), info);
    }
    assert_null (zq_options_info (count));

    //  A pattern's settings keep their defaults and bounds.
    zq_options_t *options = zq_options_new ();
    assert_non_null (options);
    int64_t value = 0;
    assert_int_equal (zq_options_get_int (options, "prefetch", &value), 0);
    assert_int_equal (value, 256);
    assert_int_equal (zq_options_set (options, "prefetch", "0"), -1);
    assert_int_equal (errno, EINVAL);
    assert_int_equal (zq_options_get_int (options, "ack_flush_us", &value), 0);
    assert_int_equal (value, 1000);
    assert_int_equal (zq_options_set (options, "ack_flush_us", "1000001"), -1);
    assert_int_equal (zq_options_set (options, "ack_flush_us", "0"), 0);
    assert_int_equal (zq_options_get_int (options, "retries", &value), 0);
    assert_int_equal (value, 3);
    assert_int_equal (zq_options_set_int (options, "retries", 1001), -1);
    assert_string_equal (zq_options_get_str (options, "slow_subscriber"), "skip");
    assert_int_equal (zq_options_set (options, "slow_subscriber", "lose"), -1);
    assert_int_equal (zq_options_set (options, "slow_subscriber", "drop"), 0);
    assert_string_equal (zq_options_get_str (options, "slow_subscriber"), "drop");
    assert_string_equal (zq_options_get_str (options, "fsync"), "always");
    zq_options_destroy (&options);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_verbs_refuse_other_patterns),
        cmocka_unit_test (test_pattern_options_listed),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
