/*  =========================================================================
    test_store_jetstream - the reliable server's JetStream store against a
    real nats-server (started here on 127.0.0.1, a free port, a store
    directory of its own; stopped by PID). Two store instances stand for
    two zqd gateways sharing the queues; two servers more stand for a
    cluster the connection moves across.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../patterns/reliable_store.h"
#include "../patterns/reliable_store_jetstream.h"
#include "zq.h"
#include <nats/nats.h>
#include "nats_helpers.h"

#define VISIBILITY_MS 1500
#define MAX_ATTEMPTS  3
#define WAIT_MS       10000 //  longest wait for anything the cluster should do

static nats_node_t s_node;
#define s_url    s_node.url
#define s_now_ms nats_now_ms

//  The store's PubAck callback and its waits for the puts in flight, seen
//  through -Wl,--wrap (Makefile.am): with s_hold_acks set, a callback
//  waits, before it runs, until the store's close has started its second
//  wait (at most WAIT_MS; past that it gives up and never runs).
static atomic_bool s_hold_acks;
static atomic_bool s_ack_entered;
static atomic_bool s_ack_done;
static atomic_int s_complete_calls;

void __wrap_zqi_js_pub_ack (jsCtx *js, natsMsg *msg, jsPubAck *ack, jsPubAckErr *error,
                            void *closure);
natsStatus __wrap_js_PublishAsyncComplete (jsCtx *js, jsPubOptions *opts);
void __real_zqi_js_pub_ack (jsCtx *js, natsMsg *msg, jsPubAck *ack, jsPubAckErr *error,
                            void *closure);
natsStatus __real_js_PublishAsyncComplete (jsCtx *js, jsPubOptions *opts);

//  The closed callback, the last libnats runs for a store's connection,
//  seen through -Wl,--wrap as well: s_closed_seen is set once it has run
//  for the connection s_closed_watched.
static _Atomic (natsConnection *) s_closed_watched;
static atomic_bool s_closed_seen;
void __wrap_zqi_js_link_closed (natsConnection *conn, void *closure);
void __real_zqi_js_link_closed (natsConnection *conn, void *closure);

//  The cluster's answer about a consumer, seen through -Wl,--wrap as
//  well: with s_info_unanswered set, asking times out (as when the
//  consumer has no leader), for the store and the test alike.
static atomic_bool s_info_unanswered;
natsStatus __wrap_js_GetConsumerInfo (jsConsumerInfo **info, jsCtx *js, const char *stream,
                                      const char *consumer, jsOptions *opts, jsErrCode *code);
natsStatus __real_js_GetConsumerInfo (jsConsumerInfo **info, jsCtx *js, const char *stream,
                                      const char *consumer, jsOptions *opts, jsErrCode *code);

natsStatus
__wrap_js_GetConsumerInfo (jsConsumerInfo **info, jsCtx *js, const char *stream,
                           const char *consumer, jsOptions *opts, jsErrCode *code)
{
    if (atomic_load (&s_info_unanswered))
        return NATS_TIMEOUT;
    return __real_js_GetConsumerInfo (info, js, stream, consumer, opts, code);
}

void
__wrap_zqi_js_link_closed (natsConnection *conn, void *closure)
{
    __real_zqi_js_link_closed (conn, closure);
    if (conn == atomic_load (&s_closed_watched))
        atomic_store (&s_closed_seen, true);
}

void
__wrap_zqi_js_pub_ack (jsCtx *js, natsMsg *msg, jsPubAck *ack, jsPubAckErr *error, void *closure)
{
    if (atomic_load (&s_hold_acks)) {
        atomic_store (&s_ack_entered, true);
        int64_t until = nats_now_ms () + WAIT_MS;
        while (atomic_load (&s_complete_calls) < 2 && nats_now_ms () < until)
            poll (NULL, 0, 5);
        if (atomic_load (&s_complete_calls) < 2)
            return; //  the store may be gone: the message is left to leak
    }
    __real_zqi_js_pub_ack (js, msg, ack, error, closure);
    atomic_store (&s_ack_done, true);
}

natsStatus
__wrap_js_PublishAsyncComplete (jsCtx *js, jsPubOptions *opts)
{
    atomic_fetch_add (&s_complete_calls, 1);
    return __real_js_PublishAsyncComplete (js, opts);
}

static zqi_store_t *
s_open (void)
{
    zqi_store_config_t config = {
        .servers = s_url,
        .visibility_ms = VISIBILITY_MS,
        .max_attempts = MAX_ATTEMPTS,
        .prefix = "T",
    };
    return zqi_store_jetstream.open (&config);
}

//  Teardown of the tests that act through the wraps or log to s_log and
//  its kin: the wraps act no more and the log goes back to stderr, even
//  after a failed assertion (later tests would otherwise meet held
//  PubAcks, unanswered checks or a handler counting their lines).
static int
s_test_reset (void **state)
{
    atomic_store (&s_hold_acks, false);
    atomic_store (&s_info_unanswered, false);
    zq_set_log_handler (NULL, NULL, ZQ_LOG_ERROR);
    return 0;
}

static int
s_setup (void **state)
{
    return nats_start (&s_node, 1);
}

static int
s_teardown (void **state)
{
    return nats_stop (&s_node, 1);
}

//  Waits (up to ms) for the store's signal and collects results.
static size_t
s_results (zqi_store_t *store, zqi_store_result_t *results, size_t want, int64_t ms)
{
    size_t count = 0;
    int64_t until = s_now_ms () + ms;
    while (count < want && s_now_ms () < until) {
        struct pollfd item = {.fd = zqi_store_jetstream.signal_fd (store), .events = POLLIN};
        poll (&item, 1, (int)(until - s_now_ms () > 0 ? until - s_now_ms () : 0));
        count += zqi_store_jetstream.put_results (store, results + count, want - count);
    }
    return count;
}

//  Collects deliveries of up to two stores until want came or ms passed.
static size_t
s_collect (zqi_store_t *a, zqi_store_t *b, zqi_store_delivery_t **out, size_t want, int64_t ms)
{
    size_t count = 0;
    int64_t until = s_now_ms () + ms;
    while (count < want && s_now_ms () < until) {
        struct pollfd items[2] = {
            {.fd = zqi_store_jetstream.signal_fd (a), .events = POLLIN},
            {.fd = b ? zqi_store_jetstream.signal_fd (b) : -1, .events = POLLIN}};
        poll (items, 2, (int)(until - s_now_ms () > 0 ? until - s_now_ms () : 0));
        count += zqi_store_jetstream.deliveries (a, out + count, want - count);
        if (b)
            count += zqi_store_jetstream.deliveries (b, out + count, want - count);
    }
    return count;
}

static void
s_id (uint8_t *id, uint32_t n)
{
    memset (id, 0x5a, ZQI_STORE_ID_SIZE);
    memcpy (id, &n, sizeof n);
}

static void
s_put_all (zqi_store_t *store, const char *queue, uint32_t first, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        uint8_t id[ZQI_STORE_ID_SIZE];
        char body[32];
        s_id (id, first + i);
        int size = snprintf (body, sizeof body, "body %u", first + i);
        assert_int_equal (zqi_store_jetstream.put (store, queue, id, body, (size_t)size), 0);
    }
    zqi_store_result_t *results = calloc (count, sizeof *results);
    assert_int_equal (s_results (store, results, count, WAIT_MS), count);
    for (uint32_t i = 0; i < count; i++) {
        assert_int_equal (results[i].errnum, 0);
        assert_string_equal (results[i].queue, queue);
    }
    free (results);
}

//  Waits (up to WAIT_MS) until queue's stream holds no message.
static void
s_wait_empty (zqi_store_t *store, const char *queue)
{
    zqi_store_stat_t stat = {0};
    int64_t until = s_now_ms () + WAIT_MS;
    do
        assert_int_equal (zqi_store_jetstream.stat (store, queue, &stat), 0);
    while (stat.messages && s_now_ms () < until && poll (NULL, 0, 20) == 0);
    assert_int_equal (stat.messages, 0);
}

static void
test_stream_name (void **state)
{
    char name[ZQI_STORE_NAME_MAX + 1];
    assert_int_equal (zqi_store_stream_name ("ZQ", "orders.eu_1", name, sizeof name), 0);
    assert_string_equal (name, "ZQ_orders_deu__1");
    //  '.' and '_' never collide: these two queues get two streams.
    assert_int_equal (zqi_store_stream_name ("ZQ", "a_d", name, sizeof name), 0);
    assert_string_equal (name, "ZQ_a__d");
    assert_int_equal (zqi_store_stream_name ("ZQ", "a.", name, sizeof name), 0);
    assert_string_equal (name, "ZQ_a_d");
    //  What NATS forbids in stream names never passes.
    assert_int_equal (zqi_store_stream_name ("ZQ", "a*", name, sizeof name), -1);
    assert_int_equal (errno, EINVAL);
    assert_int_equal (zqi_store_stream_name ("ZQ", "a b", name, sizeof name), -1);
    assert_int_equal (zqi_store_stream_name ("ZQ", "a>", name, sizeof name), -1);
    char dots[200];
    memset (dots, '.', sizeof dots - 1);
    dots[sizeof dots - 1] = 0;
    assert_int_equal (zqi_store_stream_name ("ZQ", dots, name, sizeof name), -1);
    assert_int_equal (errno, ENAMETOOLONG);
}

static void
test_put_get_ack_two_gateways (void **state)
{
    zqi_store_t *a = s_open ();
    zqi_store_t *b = s_open ();
    assert_non_null (a);
    assert_non_null (b);
    s_put_all (a, "jobs.one", 0, 40);
    s_put_all (b, "jobs.one", 40, 40);
    assert_int_equal (zqi_store_jetstream.want (a, "jobs.one", 40), 0);
    assert_int_equal (zqi_store_jetstream.want (b, "jobs.one", 40), 0);
    zqi_store_delivery_t *got[100] = {0};
    size_t count = s_collect (a, b, got, 80, WAIT_MS);
    assert_int_equal (count, 80);
    bool seen[80] = {0};
    for (size_t i = 0; i < count; i++) {
        uint32_t n;
        memcpy (&n, got[i]->id, sizeof n);
        assert_true (n < 80);
        assert_false (seen[n]); //  each message once over both gateways
        seen[n] = true;
        char body[32];
        int size = snprintf (body, sizeof body, "body %u", n);
        assert_int_equal (got[i]->size, size);
        assert_memory_equal (got[i]->data, body, size);
        assert_int_equal (got[i]->attempt, 1);
        assert_string_equal (got[i]->queue, "jobs.one");
    }
    for (size_t i = 0; i < count; i++) {
        assert_int_equal (zqi_store_jetstream.settle (a, got[i], ZQI_STORE_ACK, 0), 0);
        zqi_store_jetstream.delivery_destroy (&got[i]);
    }
    //  Acked: gone from the stream (work-queue retention), never again.
    s_wait_empty (b, "jobs.one");
    assert_int_equal (zqi_store_jetstream.want (a, "jobs.one", 10), 0);
    assert_int_equal (s_collect (a, b, got, 1, VISIBILITY_MS + 500), 0);
    zqi_store_jetstream.destroy (&a);
    zqi_store_jetstream.destroy (&b);
}

static void
test_dedupe (void **state)
{
    zqi_store_t *a = s_open ();
    zqi_store_t *b = s_open ();
    assert_non_null (a);
    assert_non_null (b);
    uint8_t id[ZQI_STORE_ID_SIZE];
    s_id (id, 7);
    zqi_store_result_t result;
    assert_int_equal (zqi_store_jetstream.put (a, "dedupe", id, "x", 1), 0);
    assert_int_equal (s_results (a, &result, 1, WAIT_MS), 1);
    assert_int_equal (result.errnum, 0);
    assert_false (result.duplicate);
    //  The same id again, through the other gateway: confirmed, not stored twice.
    assert_int_equal (zqi_store_jetstream.put (b, "dedupe", id, "x", 1), 0);
    assert_int_equal (s_results (b, &result, 1, WAIT_MS), 1);
    assert_int_equal (result.errnum, 0);
    assert_true (result.duplicate);
    assert_memory_equal (result.id, id, sizeof id);
    zqi_store_stat_t stat;
    assert_int_equal (zqi_store_jetstream.stat (a, "dedupe", &stat), 0);
    assert_int_equal (stat.messages, 1);
    zqi_store_jetstream.destroy (&a);
    zqi_store_jetstream.destroy (&b);
}

static void
test_nack_delay_and_touch (void **state)
{
    zqi_store_t *a = s_open ();
    zqi_store_t *b = s_open ();
    assert_non_null (a);
    assert_non_null (b);
    s_put_all (a, "retry", 100, 1);
    assert_int_equal (zqi_store_jetstream.want (a, "retry", 1), 0);
    zqi_store_delivery_t *got = NULL;
    assert_int_equal (s_collect (a, NULL, &got, 1, WAIT_MS), 1);
    //  Nack with a delay: not back before it passed, back after, attempt 2.
    int64_t nacked = s_now_ms ();
    assert_int_equal (zqi_store_jetstream.settle (a, got, ZQI_STORE_NACK, 1000), 0);
    zqi_store_jetstream.delivery_destroy (&got);
    assert_int_equal (zqi_store_jetstream.want (b, "retry", 1), 0);
    assert_int_equal (s_collect (b, NULL, &got, 1, WAIT_MS), 1);
    assert_true (s_now_ms () - nacked >= 900);
    assert_int_equal (got->attempt, 2);

    //  Touch: held past its visibility timeout while touched.
    int64_t until = s_now_ms () + 2 * VISIBILITY_MS;
    assert_int_equal (zqi_store_jetstream.want (a, "retry", 1), 0);
    zqi_store_delivery_t *other = NULL;
    while (s_now_ms () < until) {
        assert_int_equal (zqi_store_jetstream.settle (b, got, ZQI_STORE_TOUCH, 0), 0);
        assert_int_equal (s_collect (a, NULL, &other, 1, VISIBILITY_MS / 3), 0);
    }
    assert_int_equal (zqi_store_jetstream.settle (b, got, ZQI_STORE_ACK, 0), 0);
    zqi_store_jetstream.delivery_destroy (&got);
    assert_int_equal (s_collect (a, NULL, &other, 1, VISIBILITY_MS + 500), 0);
    zqi_store_jetstream.destroy (&a);
    zqi_store_jetstream.destroy (&b);
}

static void
test_timeout_and_dead_letter (void **state)
{
    zqi_store_t *a = s_open ();
    zqi_store_t *b = s_open ();
    assert_non_null (a);
    assert_non_null (b);
    s_put_all (a, "poison", 200, 1);
    //  Attempt 1 times out (never settled), 2 and 3 are nacked.
    assert_int_equal (zqi_store_jetstream.want (a, "poison", 1), 0);
    zqi_store_delivery_t *got = NULL;
    assert_int_equal (s_collect (a, NULL, &got, 1, WAIT_MS), 1);
    assert_int_equal (got->attempt, 1);
    zqi_store_jetstream.delivery_destroy (&got);
    for (uint32_t attempt = 2; attempt <= MAX_ATTEMPTS; attempt++) {
        assert_int_equal (zqi_store_jetstream.want (b, "poison", 1), 0);
        assert_int_equal (s_collect (b, NULL, &got, 1, WAIT_MS), 1);
        assert_int_equal (got->attempt, attempt);
        assert_int_equal (zqi_store_jetstream.settle (b, got, ZQI_STORE_NACK, 0), 0);
        zqi_store_jetstream.delivery_destroy (&got);
    }
    //  Past max attempts: not handed out again, but kept in poison.dead.
    assert_int_equal (zqi_store_jetstream.want (a, "poison", 1), 0);
    assert_int_equal (zqi_store_jetstream.want (a, "poison.dead", 1), 0);
    assert_int_equal (s_collect (a, NULL, &got, 1, WAIT_MS), 1);
    assert_string_equal (got->queue, "poison.dead");
    uint32_t n;
    memcpy (&n, got->id, sizeof n);
    assert_int_equal (n, 200);
    assert_memory_equal (got->data, "body 200", 8);
    assert_int_equal (zqi_store_jetstream.settle (a, got, ZQI_STORE_ACK, 0), 0);
    zqi_store_jetstream.delivery_destroy (&got);
    zqi_store_stat_t stat;
    int64_t until = s_now_ms () + WAIT_MS;
    do
        assert_int_equal (zqi_store_jetstream.stat (a, "poison", &stat), 0);
    while (stat.messages && s_now_ms () < until && poll (NULL, 0, 20) == 0);
    assert_int_equal (stat.messages, 0);
    zqi_store_jetstream.destroy (&a);
    zqi_store_jetstream.destroy (&b);
}

static void
test_purge_remove_and_bad_config (void **state)
{
    zqi_store_t *a = s_open ();
    assert_non_null (a);
    s_put_all (a, "scratch", 300, 5);
    zqi_store_stat_t stat;
    assert_int_equal (zqi_store_jetstream.stat (a, "scratch", &stat), 0);
    assert_int_equal (stat.messages, 5);
    assert_int_equal (zqi_store_jetstream.purge (a, "scratch"), 0);
    assert_int_equal (zqi_store_jetstream.stat (a, "scratch", &stat), 0);
    assert_int_equal (stat.messages, 0);
    assert_int_equal (zqi_store_jetstream.remove (a, "scratch"), 0);
    assert_int_equal (zqi_store_jetstream.stat (a, "scratch", &stat), -1);
    assert_int_equal (errno, ENOENT);
    //  A name no stream can take is refused, not sent.
    uint8_t id[ZQI_STORE_ID_SIZE] = {1};
    assert_int_equal (zqi_store_jetstream.put (a, "bad name", id, "x", 1), -1);
    assert_int_equal (errno, EINVAL);
    zqi_store_jetstream.destroy (&a);

    zqi_store_config_t config = {.servers = s_url, .visibility_ms = 0};
    assert_null (zqi_store_jetstream.open (&config));
    assert_int_equal (errno, EINVAL);
    config.visibility_ms = 1000;
    config.replicas = 9;
    assert_null (zqi_store_jetstream.open (&config));
    assert_int_equal (errno, EINVAL);
}

//  The stream of queue (its name in stream, ZQI_STORE_NAME_MAX + 1 bytes),
//  and a connection of the test's own with its JetStream context, to act
//  on the cluster behind the store's back.
static void
s_js_connect (const char *queue, char *stream, natsConnection **connection_p, jsCtx **js_p)
{
    assert_int_equal (zqi_store_stream_name ("T", queue, stream, ZQI_STORE_NAME_MAX + 1), 0);
    assert_int_equal (natsConnection_ConnectTo (connection_p, s_url), NATS_OK);
    assert_int_equal (natsConnection_JetStream (js_p, *connection_p, NULL), NATS_OK);
}

//  Checks that delivery carries a number in [first, end) (s_id), acks it
//  and destroys it; returns the number.
static uint32_t
s_ack_numbered (zqi_store_t *store, zqi_store_delivery_t **delivery_p, uint32_t first, uint32_t end)
{
    uint32_t n;
    memcpy (&n, (*delivery_p)->id, sizeof n);
    assert_in_range (n, first, end - 1);
    assert_int_equal (zqi_store_jetstream.settle (store, *delivery_p, ZQI_STORE_ACK, 0), 0);
    zqi_store_jetstream.delivery_destroy (delivery_p);
    return n;
}

//  The store's consumer deleted behind its back (an operator, or a
//  cluster that lost it): the store makes it again and delivery goes on.
static void
test_a_deleted_consumer_is_made_again (void **state)
{
    zqi_store_t *store = s_open ();
    assert_non_null (store);
    s_put_all (store, "jobs.gone", 0, 5);
    assert_int_equal (zqi_store_jetstream.want (store, "jobs.gone", 10), 0);
    zqi_store_delivery_t *got[10] = {0};
    assert_int_equal (s_collect (store, NULL, got, 5, WAIT_MS), 5);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal (zqi_store_jetstream.settle (store, got[i], ZQI_STORE_ACK, 0), 0);
        zqi_store_jetstream.delivery_destroy (&got[i]);
    }
    //  The acks are not waited for: the five leave the stream once they
    //  land (else the new consumer would rightly deliver them again).
    s_wait_empty (store, "jobs.gone");
    char stream[ZQI_STORE_NAME_MAX + 1];
    natsConnection *connection = NULL;
    jsCtx *js = NULL;
    s_js_connect ("jobs.gone", stream, &connection, &js);
    assert_int_equal (js_DeleteConsumer (js, stream, "zq", NULL, NULL), NATS_OK);
    jsCtx_Destroy (js);
    natsConnection_Destroy (connection);
    s_put_all (store, "jobs.gone", 5, 5);
    assert_int_equal (zqi_store_jetstream.want (store, "jobs.gone", 10), 0);
    size_t count = s_collect (store, NULL, got, 5, WAIT_MS);
    assert_int_equal (count, 5);
    for (size_t i = 0; i < count; i++)
        s_ack_numbered (store, &got[i], 5, 10);
    zqi_store_jetstream.destroy (&store);
}

//  Lines the store logged, the ones naming the blocked queue's bind and
//  the stalled queue's consumer (the last warning kept).
static pthread_mutex_t s_log_lock = PTHREAD_MUTEX_INITIALIZER;
static int s_bind_warnings;
static int s_bind_recovered;
static int s_stall_warnings;
static int s_stall_ended;
static char s_stall_line[512];
static int s_unanswered_warnings;
static int s_unanswered_ended;
static int s_gone_warnings;
static char s_unanswered_line[512];

static void
s_log (zq_log_level_t level, const char *line, void *arg)
{
    (void)arg;
    pthread_mutex_lock (&s_log_lock);
    if (level == ZQ_LOG_WARNING && strstr (line, "consumer of queue jobs.blocked not bound"))
        s_bind_warnings++;
    if (level == ZQ_LOG_NOTICE && strstr (line, "consumer of queue jobs.blocked bound after"))
        s_bind_recovered++;
    if (level == ZQ_LOG_WARNING && strstr (line, "consumer of queue jobs.stalled delivered")) {
        s_stall_warnings++;
        snprintf (s_stall_line, sizeof s_stall_line, "%s", line);
    }
    if (level == ZQ_LOG_NOTICE && strstr (line, "consumer of queue jobs.stalled is no longer"))
        s_stall_ended++;
    if (level == ZQ_LOG_WARNING &&
        strstr (line, "consumer of queue jobs.unanswered delivered nothing for")) {
        s_unanswered_warnings++;
        snprintf (s_unanswered_line, sizeof s_unanswered_line, "%s", line);
    }
    if (level == ZQ_LOG_NOTICE &&
        strstr (line, "answers for the consumer of queue jobs.unanswered again"))
        s_unanswered_ended++;
    if (strstr (line, "consumer of queue jobs.unanswered is gone"))
        s_gone_warnings++;
    pthread_mutex_unlock (&s_log_lock);
}

static int
s_logged (int *counter)
{
    pthread_mutex_lock (&s_log_lock);
    int value = *counter;
    pthread_mutex_unlock (&s_log_lock);
    return value;
}

//  Waits (up to ms) until *counter reaches want; returns its value.
static int
s_wait_logged (int *counter, int want, int64_t ms)
{
    int64_t until = s_now_ms () + ms;
    while (s_logged (counter) < want && s_now_ms () < until)
        poll (NULL, 0, 20);
    return s_logged (counter);
}

//  Waits (up to two quiet checks and WAIT_MS) until *counter reaches want,
//  then checks that the line kept (in s_log, under s_log_lock) has text.
static void
s_wait_quiet_line (int *counter, int want, const char *kept, const char *text)
{
    assert_int_equal (s_wait_logged (counter, want, ZQI_JS_QUIET_CHECK_MS * 2 + WAIT_MS), want);
    char line[512];
    pthread_mutex_lock (&s_log_lock);
    snprintf (line, sizeof line, "%s", kept);
    pthread_mutex_unlock (&s_log_lock);
    if (!strstr (line, text))
        fail_msg ("the line: \"%s\"", line);
}

//  Check n of a streak the cluster did not answer (the wrapped
//  js_GetConsumerInfo times out).
#define S_UNANSWERED_CHECK(n)                                                                      \
    " ms and the cluster did not answer for it (check " #n ", one per 5000 ms): Timeout: "

//  A store opened with s_log as the log handler (notices and up).
static zqi_store_t *
s_open_logged (void)
{
    zq_set_log_handler (s_log, NULL, ZQ_LOG_NOTICE);
    zqi_store_t *store = s_open ();
    assert_non_null (store);
    return store;
}

//  A consumer the store cannot bind (a push consumer someone made under
//  its durable name): the log says so, without a line per attempt, no
//  delivery comes meanwhile, and once the obstacle is gone the store binds
//  (and logs that) and delivers what waited.
static void
test_a_consumer_not_bound_is_logged (void **state)
{
    zqi_store_t *store = s_open_logged ();
    s_put_all (store, "jobs.blocked", 0, 3);
    char stream[ZQI_STORE_NAME_MAX + 1];
    natsConnection *connection = NULL;
    jsCtx *js = NULL;
    s_js_connect ("jobs.blocked", stream, &connection, &js);
    jsConsumerConfig config;
    jsConsumerConfig_Init (&config);
    config.Durable = "zq";
    config.DeliverSubject = "elsewhere.blocked";
    config.AckPolicy = js_AckExplicit;
    jsConsumerInfo *info = NULL;
    assert_int_equal (js_AddConsumer (&info, js, stream, &config, NULL, NULL), NATS_OK);
    jsConsumerInfo_Destroy (info);

    assert_int_equal (zqi_store_jetstream.want (store, "jobs.blocked", 10), 0);
    //  Attempts 1 and 2 are logged (then 4, 8, ...): at least two attempts
    //  500 ms apart, and not a line each.
    assert_in_range (s_wait_logged (&s_bind_warnings, 2, WAIT_MS), 2, 3);
    zqi_store_delivery_t *got[3] = {0};
    assert_int_equal (zqi_store_jetstream.deliveries (store, got, 3), 0);

    assert_int_equal (js_DeleteConsumer (js, stream, "zq", NULL, NULL), NATS_OK);
    jsCtx_Destroy (js);
    natsConnection_Destroy (connection);
    size_t count = s_collect (store, NULL, got, 3, WAIT_MS);
    assert_int_equal (count, 3);
    for (size_t i = 0; i < count; i++) {
        assert_int_equal (zqi_store_jetstream.settle (store, got[i], ZQI_STORE_ACK, 0), 0);
        zqi_store_jetstream.delivery_destroy (&got[i]);
    }
    assert_int_equal (s_logged (&s_bind_recovered), 1);
    zqi_store_jetstream.destroy (&store);
}

//  A consumer the cluster holds back (its MaxAckPending lowered to the
//  deliveries this gateway holds unsettled) while messages wait: once its
//  fetches have come back empty for ZQI_JS_QUIET_CHECK_MS, the log says
//  how many wait and why; once the held ones are settled, the waiting
//  ones come and the log says the stall ended.
static void
test_a_stalled_consumer_is_logged (void **state)
{
    zq_set_log_handler (s_log, NULL, ZQ_LOG_NOTICE);
    //  A visibility timeout longer than the test: nothing is redelivered.
    zqi_store_config_t config = {
        .servers = s_url, .visibility_ms = 120000, .max_attempts = MAX_ATTEMPTS, .prefix = "T"};
    zqi_store_t *store = zqi_store_jetstream.open (&config);
    assert_non_null (store);
    s_put_all (store, "jobs.stalled", 0, 2);
    assert_int_equal (zqi_store_jetstream.want (store, "jobs.stalled", 10), 0);
    zqi_store_delivery_t *held[2] = {0};
    assert_int_equal (s_collect (store, NULL, held, 2, WAIT_MS), 2);

    char stream[ZQI_STORE_NAME_MAX + 1];
    natsConnection *connection = NULL;
    jsCtx *js = NULL;
    s_js_connect ("jobs.stalled", stream, &connection, &js);
    jsConsumerInfo *info = NULL, *updated = NULL;
    assert_int_equal (js_GetConsumerInfo (&info, js, stream, "zq", NULL, NULL), NATS_OK);
    info->Config->MaxAckPending = 2;
    assert_int_equal (js_UpdateConsumer (&updated, js, stream, info->Config, NULL, NULL), NATS_OK);
    jsConsumerInfo_Destroy (updated);
    jsConsumerInfo_Destroy (info);
    jsCtx_Destroy (js);
    natsConnection_Destroy (connection);

    s_put_all (store, "jobs.stalled", 2, 3);
    assert_int_equal (zqi_store_jetstream.want (store, "jobs.stalled", 10), 0);
    s_wait_quiet_line (&s_stall_warnings, 1, s_stall_line,
                       "while 3 messages wait for it; 2 deliveries unsettled over all "
                       "gateways, at most 2: deliveries wait for settles");
    zqi_store_delivery_t *got[3] = {0};
    assert_int_equal (zqi_store_jetstream.deliveries (store, got, 3), 0);
    assert_int_equal (s_logged (&s_stall_ended), 0);

    //  Settled, the held two make room for two more at a time.
    for (size_t i = 0; i < 2; i++)
        s_ack_numbered (store, &held[i], 0, 2);
    size_t count = 0;
    int64_t until = s_now_ms () + WAIT_MS;
    while (count < 3 && s_now_ms () < until) {
        size_t came = s_collect (store, NULL, got, 3 - count, 100);
        for (size_t i = 0; i < came; i++)
            s_ack_numbered (store, &got[i], 2, 5);
        count += came;
    }
    assert_int_equal (count, 3);
    assert_int_equal (s_wait_logged (&s_stall_ended, 1, WAIT_MS), 1);
    assert_int_equal (s_logged (&s_stall_warnings), 1);
    zqi_store_jetstream.destroy (&store);
}

//  A bound consumer the cluster stops answering for (asking about it times
//  out, as when it has no leader) while its fetches merely come back
//  empty: once they did for ZQI_JS_QUIET_CHECK_MS the log says so, with
//  what asking gave, and the store keeps its binding (only "not found"
//  binds again). A delivery in between does not end the streak (check 2
//  follows); an answered check does, logged, and the next streak starts
//  at check 1 again. Delivery goes on through the same binding.
static void
test_a_consumer_the_cluster_does_not_answer_for_is_logged (void **state)
{
    zqi_store_t *store = s_open_logged ();
    s_put_all (store, "jobs.unanswered", 0, 1);
    assert_int_equal (zqi_store_jetstream.want (store, "jobs.unanswered", 10), 0);
    zqi_store_delivery_t *got[1] = {0};
    assert_int_equal (s_collect (store, NULL, got, 1, WAIT_MS), 1);
    s_ack_numbered (store, &got[0], 0, 1);

    atomic_store (&s_info_unanswered, true);
    s_wait_quiet_line (&s_unanswered_warnings, 1, s_unanswered_line, S_UNANSWERED_CHECK (1));
    //  A delivery while asking still times out: the next check is check 2.
    s_put_all (store, "jobs.unanswered", 1, 1);
    assert_int_equal (zqi_store_jetstream.want (store, "jobs.unanswered", 10), 0);
    assert_int_equal (s_collect (store, NULL, got, 1, WAIT_MS), 1);
    s_ack_numbered (store, &got[0], 1, 2);
    s_wait_quiet_line (&s_unanswered_warnings, 2, s_unanswered_line, S_UNANSWERED_CHECK (2));
    assert_int_equal (s_logged (&s_unanswered_ended), 0);
    atomic_store (&s_info_unanswered, false);
    assert_int_equal (s_wait_logged (&s_unanswered_ended, 1, ZQI_JS_QUIET_CHECK_MS + WAIT_MS), 1);

    //  A second streak starts at check 1.
    atomic_store (&s_info_unanswered, true);
    s_wait_quiet_line (&s_unanswered_warnings, 3, s_unanswered_line, S_UNANSWERED_CHECK (1));
    atomic_store (&s_info_unanswered, false);
    assert_int_equal (s_wait_logged (&s_unanswered_ended, 2, ZQI_JS_QUIET_CHECK_MS + WAIT_MS), 2);
    s_put_all (store, "jobs.unanswered", 2, 1);
    assert_int_equal (zqi_store_jetstream.want (store, "jobs.unanswered", 10), 0);
    assert_int_equal (s_collect (store, NULL, got, 1, WAIT_MS), 1);
    s_ack_numbered (store, &got[0], 2, 3);
    assert_int_equal (s_logged (&s_gone_warnings), 0);
    zqi_store_jetstream.destroy (&store);
}

//  Messages already waiting in the store's pull subscription (here: 200
//  answers to a pull request sent behind the store's back, as late answers
//  come after a reconnect) are taken one fetch of one at a time (libnats
//  3.4's fetch could write past its array with more than half its batch
//  waiting; this run does not reach that case), then full fetches again:
//  every message is delivered once.
static void
test_fetch_with_many_pending (void **state)
{
    zqi_store_t *store = s_open ();
    assert_non_null (store);
    s_put_all (store, "burst", 1000, 300);
    //  A first want binds the consumer (and takes one message).
    assert_int_equal (zqi_store_jetstream.want (store, "burst", 1), 0);
    zqi_store_delivery_t *got[300] = {0};
    assert_int_equal (s_collect (store, NULL, got, 1, WAIT_MS), 1);
    zqi_js_store_t *js_store = (zqi_js_store_t *)store;
    pthread_mutex_lock (&js_store->lock);
    zqi_js_queue_t *queue = (zqi_js_queue_t *)zhashx_lookup (js_store->queues, "burst");
    natsSubscription *sub = queue ? queue->sub : NULL;
    pthread_mutex_unlock (&js_store->lock);
    assert_non_null (sub);
    //  200 messages into the subscription, while the store has no credit.
    char stream[ZQI_STORE_NAME_MAX + 1];
    natsConnection *connection = NULL;
    jsCtx *js = NULL;
    s_js_connect ("burst", stream, &connection, &js);
    const char *inbox = natsSubscription_GetSubject (sub);
    assert_non_null (inbox);
    char next[ZQI_STORE_NAME_MAX + 64];
    snprintf (next, sizeof next, "$JS.API.CONSUMER.MSG.NEXT.%s.%s", stream, ZQI_JS_DURABLE);
    const char *request = "{\"batch\":200,\"expires\":5000000000}";
    assert_int_equal (natsConnection_PublishRequestString (connection, next, inbox, request),
                      NATS_OK);
    int pending = 0;
    int64_t until = s_now_ms () + WAIT_MS;
    while (pending < 200 && s_now_ms () < until) {
        assert_int_equal (natsSubscription_GetPending (sub, &pending, NULL), NATS_OK);
        poll (NULL, 0, 10);
    }
    assert_int_equal (pending, 200);
    //  Credit for the rest: 200 waiting, 99 to ask for.
    assert_int_equal (zqi_store_jetstream.want (store, "burst", ZQI_STORE_FETCH_MAX), 0);
    size_t count = 1 + s_collect (store, NULL, got + 1, ZQI_STORE_FETCH_MAX, WAIT_MS);
    assert_int_equal (zqi_store_jetstream.want (store, "burst", 300), 0);
    count += s_collect (store, NULL, got + count, 300 - count, WAIT_MS);
    assert_int_equal (count, 300);
    bool seen[300] = {false};
    for (size_t i = 0; i < count; i++) {
        uint32_t n = s_ack_numbered (store, &got[i], 1000, 1300);
        assert_false (seen[n - 1000]);
        seen[n - 1000] = true;
    }
    jsCtx_Destroy (js);
    natsConnection_Destroy (connection);
    zqi_store_jetstream.destroy (&store);
}

//  A queue whose stream was made by hand with a max_msg_size smaller than
//  zq's limit: a put over it fails for good (EMSGSIZE, so the gateway
//  refuses it as never storable), one under it is stored.
static void
test_a_put_larger_than_the_stream_takes_fails_for_good (void **state)
{
    char stream[ZQI_STORE_NAME_MAX + 1];
    natsConnection *connection = NULL;
    jsCtx *js = NULL;
    s_js_connect ("small", stream, &connection, &js);
    char subject[ZQI_STORE_NAME_MAX + 8];
    snprintf (subject, sizeof subject, ZQI_JS_SUBJECT_ROOT "%s", stream);
    const char *subject_p = subject;
    jsStreamConfig config;
    zqi_js_stream_config (&config, stream, &subject_p, 1);
    config.MaxMsgSize = 128; //  the headers count too (Nats-Msg-Id: some 60 octets)
    jsStreamInfo *info = NULL;
    assert_int_equal (js_AddStream (&info, js, &config, NULL, NULL), NATS_OK);
    jsStreamInfo_Destroy (info);
    zqi_store_t *store = s_open ();
    assert_non_null (store);
    uint8_t id[ZQI_STORE_ID_SIZE];
    char body[256];
    memset (body, 'b', sizeof body);
    s_id (id, 1);
    assert_int_equal (zqi_store_jetstream.put (store, "small", id, body, sizeof body), 0);
    zqi_store_result_t result;
    assert_int_equal (s_results (store, &result, 1, WAIT_MS), 1);
    assert_memory_equal (result.id, id, sizeof id);
    assert_int_equal (result.errnum, EMSGSIZE);
    s_put_all (store, "small", 2, 1);
    zqi_store_stat_t stat;
    assert_int_equal (zqi_store_jetstream.stat (store, "small", &stat), 0);
    assert_int_equal (stat.messages, 1);
    zqi_store_jetstream.destroy (&store);
    jsCtx_Destroy (js);
    natsConnection_Destroy (connection);
}

//  A store closed while a PubAck callback runs (on libnats' thread, past
//  the close's wait for the puts in flight) is freed only once that
//  callback returned, which writes to the store.
static void
test_close_waits_for_a_running_callback (void **state)
{
    zqi_store_config_t config = {
        .servers = s_url,
        .visibility_ms = VISIBILITY_MS,
        .prefix = "T",
        .request_wait_ms = 1000,
    };
    zqi_store_t *store = zqi_store_jetstream.open (&config);
    assert_non_null (store);
    s_put_all (store, "closing", 600, 1);
    atomic_store (&s_complete_calls, 0);
    atomic_store (&s_ack_done, false);
    atomic_store (&s_hold_acks, true);
    uint8_t id[ZQI_STORE_ID_SIZE];
    s_id (id, 601);
    assert_int_equal (zqi_store_jetstream.put (store, "closing", id, "last", 4), 0);
    int64_t until = s_now_ms () + WAIT_MS;
    while (!atomic_load (&s_ack_entered) && s_now_ms () < until)
        poll (NULL, 0, 5);
    assert_true (atomic_load (&s_ack_entered));
    //  The first wait (1000 ms) ends with the callback still held; the
    //  close takes the unanswered puts back (none) and waits again.
    zqi_store_jetstream.destroy (&store);
    atomic_store (&s_hold_acks, false);
    assert_true (atomic_load (&s_ack_done));
    assert_int_equal (atomic_load (&s_complete_calls), 2);
}

//  The log lines of a store's connection ("JetStream conn..."), in order.
#define S_LINK_LINES 8
static pthread_mutex_t s_link_lock = PTHREAD_MUTEX_INITIALIZER;
static char s_link_lines[S_LINK_LINES][160];
static int s_link_count;

static void
s_link_log (zq_log_level_t level, const char *line, void *arg)
{
    (void)level;
    (void)arg;
    if (!strstr (line, "JetStream conn"))
        return;
    pthread_mutex_lock (&s_link_lock);
    if (s_link_count < S_LINK_LINES)
        snprintf (s_link_lines[s_link_count++], sizeof s_link_lines[0], "%s", line);
    pthread_mutex_unlock (&s_link_lock);
}

static int
s_link_logged (void)
{
    pthread_mutex_lock (&s_link_lock);
    int count = s_link_count;
    pthread_mutex_unlock (&s_link_lock);
    return count;
}

//  Asserts that log line index says what, naming url.
static void
s_assert_link_line (int index, const char *what, const char *url)
{
    char expected[160];
    snprintf (expected, sizeof expected, "reliable: JetStream %s (%s)", what, url);
    pthread_mutex_lock (&s_link_lock);
    char line[160];
    snprintf (line, sizeof line, "%s", s_link_lines[index]);
    pthread_mutex_unlock (&s_link_lock);
    if (!strstr (line, expected))
        fail_msg ("log line %d is \"%s\", expected \"%s\"", index, line, expected);
}

//  A store on two servers (not a cluster): the log names the server it
//  connected to; when that one is killed, the loss names it (libnats
//  reports the loss later, on its own thread, when the connection may be
//  on the other one already, or on none), and the return names the other;
//  the store's own close logs nothing.
static nats_node_t s_two_nodes[2];

//  Teardown: the two servers stop, even after a failed assertion.
static int
s_two_nodes_stop (void **state)
{
    s_test_reset (state);
    return nats_stop (s_two_nodes, 2);
}

static void
test_the_log_names_the_server_lost (void **state)
{
    nats_node_t *nodes = s_two_nodes;
    memset (s_two_nodes, 0, sizeof s_two_nodes);
    assert_int_equal (nats_start (&nodes[0], 1), 0);
    assert_int_equal (nats_start (&nodes[1], 1), 0);
    char servers[160];
    int written = snprintf (servers, sizeof servers, "%s,%s", nodes[0].url, nodes[1].url);
    assert_true (written > 0 && (size_t)written < sizeof servers);
    s_link_count = 0;
    zq_set_log_handler (s_link_log, NULL, ZQ_LOG_NOTICE);
    zqi_store_config_t config = {
        .servers = servers,
        .visibility_ms = VISIBILITY_MS,
        .prefix = "T",
    };
    zqi_store_t *store = zqi_store_jetstream.open (&config);
    assert_non_null (store);
    assert_int_equal (s_link_logged (), 1);
    //  libnats picks either server first.
    pthread_mutex_lock (&s_link_lock);
    int on = strstr (s_link_lines[0], nodes[0].url) ? 0 : 1;
    pthread_mutex_unlock (&s_link_lock);
    s_assert_link_line (0, "connected", nodes[on].url);

    nats_kill (&nodes[on]);
    int64_t until = s_now_ms () + WAIT_MS;
    while (s_link_logged () < 3 && s_now_ms () < until)
        poll (NULL, 0, 20);
    assert_int_equal (s_link_logged (), 3);
    s_assert_link_line (1, "connection lost", nodes[on].url);
    s_assert_link_line (2, "connection back", nodes[1 - on].url);

    atomic_store (&s_closed_seen, false);
    atomic_store (&s_closed_watched, ((zqi_js_store_t *)store)->conn);
    zqi_store_jetstream.destroy (&store);
    until = s_now_ms () + WAIT_MS;
    while (!atomic_load (&s_closed_seen) && s_now_ms () < until)
        poll (NULL, 0, 20);
    assert_true (atomic_load (&s_closed_seen));
    assert_int_equal (s_link_logged (), 3);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_stream_name),
        cmocka_unit_test (test_put_get_ack_two_gateways),
        cmocka_unit_test (test_dedupe),
        cmocka_unit_test (test_a_put_larger_than_the_stream_takes_fails_for_good),
        cmocka_unit_test (test_nack_delay_and_touch),
        cmocka_unit_test (test_timeout_and_dead_letter),
        cmocka_unit_test (test_purge_remove_and_bad_config),
        cmocka_unit_test (test_a_deleted_consumer_is_made_again),
        cmocka_unit_test_teardown (test_a_consumer_not_bound_is_logged, s_test_reset),
        cmocka_unit_test_teardown (test_a_stalled_consumer_is_logged, s_test_reset),
        cmocka_unit_test_teardown (test_a_consumer_the_cluster_does_not_answer_for_is_logged,
                                   s_test_reset),
        cmocka_unit_test_teardown (test_close_waits_for_a_running_callback, s_test_reset),
        cmocka_unit_test (test_fetch_with_many_pending),
        cmocka_unit_test_teardown (test_the_log_names_the_server_lost, s_two_nodes_stop),
    };
    int failed = cmocka_run_group_tests (tests, s_setup, s_teardown);
    //  libnats keeps threads of its own per process until this.
    nats_CloseAndWait (5000);
    return failed;
}
