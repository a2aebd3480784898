/*  =========================================================================
    zq_bench_jetstream - zq bench jetstream: reliable servers keeping their
    queues in the JetStream cluster that -o jetstream_servers=URLS names
    (replicas: -o jetstream_replicas, else as the server chooses), as zqd
    --jetstream does, beside libnats publishing to that cluster directly.

    Each round, for one gateway and then for two (each a reliable server
    in this process, driven by a thread of its own, all on the cluster
    under a prefix of the round's own):
      - direct: libnats publishes count messages asynchronously (each with
        a Nats-Msg-Id, as the store does) to a stream of the same replicas,
        timed from the first publish to the last PubAck;
      - put: one producer opened on every gateway (">EP1,>EP2") posts
        count messages; timed from the first post to the last confirm;
      - e2e: a consumer opened on every gateway takes and acks count
        messages the producer posts meanwhile; timed from the first post
        to the last ack.
    Lines give medians over the rounds, the range, and ratio = gateway /
    direct: what the gateway costs. The streams made are deleted.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include "zq_cli.h"

#ifdef HAVE_NATS
#include "../patterns/reliable_store_jetstream.h"
#include <nats/nats.h>
#include <pthread.h>

#define S_GATEWAYS_MAX  2
#define S_QUEUE_PUT     "bench-put"
#define S_QUEUE_E2E     "bench-e2e"
#define S_ROUNDS_MAX    64
#define S_COUNT_DEFAULT 20000

typedef struct {
    zq_queue_t *server;
    pthread_t thread;
    volatile bool stop;
} s_gateway_t;

static void *
s_serve (void *arg)
{
    s_gateway_t *gateway = (s_gateway_t *)arg;
    while (!gateway->stop) {
        zq_msg_t *msg = zq_queue_recv (gateway->server, 50);
        zq_msg_destroy (&msg);
    }
    return NULL;
}

//  Publishes count messages of size bytes straight to a new stream of
//  the cluster; *rate_p: messages per second to the last PubAck.
static int
s_direct (const char *servers, int replicas, const char *stream, uint64_t count, size_t size,
          double *rate_p)
{
    natsOptions *opts = NULL;
    natsConnection *conn = NULL;
    jsCtx *js = NULL;
    char *copy = strdup (servers);
    const char *urls[16];
    int url_count = 0;
    for (char *save = NULL, *url = copy ? strtok_r (copy, ",", &save) : NULL; url && url_count < 16;
         url = strtok_r (NULL, ",", &save))
        urls[url_count++] = url;
    natsStatus status = url_count ? natsOptions_Create (&opts) : NATS_INVALID_ARG;
    if (status == NATS_OK)
        status = natsOptions_SetServers (opts, urls, url_count);
    if (status == NATS_OK)
        status = natsConnection_Connect (&conn, opts);
    jsOptions js_options;
    jsOptions_Init (&js_options);
    js_options.PublishAsync.MaxPending = 4096; //  as the store's
    js_options.PublishAsync.StallWait = ZQ_BENCH_STALL_MS;
    js_options.Wait = ZQ_BENCH_STALL_MS;
    if (status == NATS_OK)
        status = natsConnection_JetStream (&js, conn, &js_options);
    char subject[256];
    snprintf (subject, sizeof subject, "zqbench.%s", stream);
    if (status == NATS_OK) {
        //  The stream the store makes for a queue.
        jsStreamConfig config;
        const char *subject_one = subject;
        zqi_js_stream_config (&config, stream, &subject_one, replicas);
        jsStreamInfo *info = NULL;
        status = js_AddStream (&info, js, &config, NULL, NULL);
        jsStreamInfo_Destroy (info);
    }
    char *body = (char *)calloc (1, size ? size : 1);
    int64_t start = zq_bench_now_ns ();
    for (uint64_t i = 0; i < count && status == NATS_OK; i++) {
        natsMsg *msg = NULL;
        char id[40];
        snprintf (id, sizeof id, "%032llx", (unsigned long long)i);
        status = natsMsg_Create (&msg, subject, NULL, body, (int)size);
        if (status == NATS_OK)
            status = natsMsgHeader_Set (msg, "Nats-Msg-Id", id);
        if (status == NATS_OK)
            status = js_PublishMsgAsync (js, &msg, NULL);
        natsMsg_Destroy (msg);
    }
    if (status == NATS_OK) {
        jsPubOptions options;
        jsPubOptions_Init (&options);
        options.MaxWait = ZQ_BENCH_STALL_MS * 6;
        status = js_PublishAsyncComplete (js, &options);
    }
    int64_t end = zq_bench_now_ns ();
    if (js)
        js_DeleteStream (js, stream, NULL, NULL);
    free (body);
    free (copy);
    if (js)
        jsCtx_Destroy (js);
    if (conn)
        natsConnection_Destroy (conn);
    if (opts)
        natsOptions_Destroy (opts);
    if (status != NATS_OK) {
        fprintf (stderr, "zq bench jetstream: direct publish: %s\n", natsStatus_GetText (status));
        errno = EIO;
        return -1;
    }
    *rate_p = (double)count * 1e9 / (double)(end - start > 0 ? end - start : 1);
    return 0;
}

//  Posts count messages of body to queue through producer; 0 once all are
//  confirmed.
static int
s_post_all (zq_queue_t *producer, const char *queue, const void *body, size_t size, uint64_t count)
{
    for (uint64_t i = 0; i < count; i++) {
        zq_msg_t *msg = zq_msg_new (queue);
        if (!msg || zq_msg_set_body (msg, body, size) ||
            zq_queue_post (producer, &msg, ZQ_BENCH_STALL_MS)) {
            int saved = errno;
            zq_msg_destroy (&msg);
            errno = saved;
            return -1;
        }
        uint8_t id[ZQ_MSG_ID_SIZE];
        while (zq_queue_confirmed (producer, id) == 0)
            ;
    }
    return zq_bench_drain_confirms (producer, NULL);
}

typedef struct {
    zq_queue_t *consumer;
    uint64_t count;
    int64_t end_ns;
    int errnum;
} s_taker_t;

static void *
s_take (void *arg)
{
    s_taker_t *taker = (s_taker_t *)arg;
    for (uint64_t i = 0; i < taker->count; i++) {
        zq_msg_t *msg = zq_queue_recv (taker->consumer, ZQ_BENCH_STALL_MS);
        if (!msg || zq_queue_ack (taker->consumer, msg)) {
            taker->errnum = errno ? errno : EIO;
            zq_msg_destroy (&msg);
            break;
        }
        zq_msg_destroy (&msg);
    }
    taker->end_ns = zq_bench_now_ns ();
    return NULL;
}

//  One round through gateways: put and e2e rates.
static int
s_gateway_round (zq_cli_t *cli, int gateways, const char *prefix, const void *body, size_t size,
                 double *put_p, double *e2e_p)
{
    s_gateway_t gateway[S_GATEWAYS_MAX];
    memset (gateway, 0, sizeof gateway);
    zq_options_t *options = zq_options_dup (cli->options);
    if (!options || zq_options_set (options, "jetstream_prefix", prefix))
        return -1;
    char connect[2 * 300] = "";
    int rc = 0;
    int started = 0;
    for (int i = 0; i < gateways && rc == 0; i++) {
        gateway[i].server = zq_queue_new ("reliable", ZQ_SERVER, "tcp://127.0.0.1:*", options);
        if (!gateway[i].server ||
            pthread_create (&gateway[i].thread, NULL, s_serve, &gateway[i]) != 0) {
            rc = -1;
            break;
        }
        started++;
        snprintf (connect + strlen (connect), sizeof connect - strlen (connect), "%s>%s",
                  i ? "," : "", zq_queue_endpoint (gateway[i].server));
    }
    zq_queue_t *producer =
        rc == 0 ? zq_queue_new ("reliable", ZQ_PRODUCER, connect, cli->options) : NULL;
    zq_queue_t *consumer =
        producer ? zq_queue_new ("reliable", ZQ_CONSUMER, connect, cli->options) : NULL;
    if (!consumer)
        rc = -1;
    //  Untimed: each queue's stream is made by its first put.
    if (rc == 0 && (s_post_all (producer, S_QUEUE_PUT, body, size, 1) ||
                    s_post_all (producer, S_QUEUE_E2E, body, size, 1)))
        rc = -1;
    if (rc == 0) {
        int64_t start = zq_bench_now_ns ();
        rc = s_post_all (producer, S_QUEUE_PUT, body, size, cli->count);
        int64_t end = zq_bench_now_ns ();
        *put_p = (double)cli->count * 1e9 / (double)(end - start > 0 ? end - start : 1);
    }
    if (rc == 0 && zq_queue_subscribe (consumer, S_QUEUE_E2E))
        rc = -1;
    if (rc == 0) {
        s_taker_t taker = {consumer, cli->count + 1, 0, 0};
        pthread_t thread;
        int64_t start = zq_bench_now_ns ();
        if (pthread_create (&thread, NULL, s_take, &taker) != 0)
            rc = -1;
        else {
            rc = s_post_all (producer, S_QUEUE_E2E, body, size, cli->count);
            pthread_join (thread, NULL);
            if (taker.errnum) {
                errno = taker.errnum;
                rc = -1;
            }
            *e2e_p = (double)cli->count * 1e9 /
                     (double)(taker.end_ns - start > 0 ? taker.end_ns - start : 1);
        }
    }
    int saved = errno;
    zq_queue_destroy (&consumer);
    zq_queue_destroy (&producer);
    for (int i = 0; i < started; i++) {
        gateway[i].stop = true;
        pthread_join (gateway[i].thread, NULL);
    }
    if (started) {
        //  The streams of the round go.
        uint64_t dropped;
        zq_queue_delete (gateway[0].server, S_QUEUE_PUT, ZQ_DELETE_FORCE, &dropped);
        zq_queue_delete (gateway[0].server, S_QUEUE_E2E, ZQ_DELETE_FORCE, &dropped);
    }
    for (int i = 0; i < gateways; i++)
        zq_queue_destroy (&gateway[i].server);
    zq_options_destroy (&options);
    errno = saved;
    return rc;
}

static void
s_line (const char *what, int gateways, size_t size, uint64_t count, double *values, double *direct,
        int rounds)
{
    double low = values[0], high = values[0];
    for (int i = 1; i < rounds; i++) {
        low = values[i] < low ? values[i] : low;
        high = values[i] > high ? values[i] : high;
    }
    double median = zq_bench_median (values, rounds);
    double base = zq_bench_median (direct, rounds);
    printf ("jetstream %s gateways=%d size=%zu count=%llu msgs_per_s=%.0f min=%.0f max=%.0f "
            "direct_msgs_per_s=%.0f ratio=%.2f\n",
            what, gateways, size, (unsigned long long)count, median, low, high, base,
            base > 0 ? median / base : 0);
    fflush (stdout);
}

int
zq_bench_jetstream (zq_cli_t *cli)
{
    const char *servers = zq_options_get_str (cli->options, "jetstream_servers");
    if (!servers || !*servers)
        return zq_cli_usage_error (cli, "bench jetstream needs -o jetstream_servers=URL[,URL...]");
    int64_t replicas = 0;
    zq_options_get_int (cli->options, "jetstream_replicas", &replicas);
    if (replicas == 0) {
        int named = 1;
        for (const char *c = servers; *c; c++)
            named += *c == ',';
        replicas = named >= 3 ? 3 : 1;
    }
    int rounds = cli->rounds > 0 ? (cli->rounds > S_ROUNDS_MAX ? S_ROUNDS_MAX : cli->rounds) : 5;
    void *body = NULL, *frame = NULL;
    size_t body_size = 0;
    zq_bench_payloads (cli, S_COUNT_DEFAULT, 1000, &body, &body_size, &frame);
    if (!body)
        return zq_cli_failure (cli, "bench", ENOMEM);
    fprintf (stderr, "bench jetstream: %llu messages of %zu bytes, %d rounds, R%d, servers %s\n",
             (unsigned long long)cli->count, cli->size, rounds, (int)replicas, servers);
    fflush (stdout);
    double direct[S_GATEWAYS_MAX][S_ROUNDS_MAX], put[S_GATEWAYS_MAX][S_ROUNDS_MAX],
        e2e[S_GATEWAYS_MAX][S_ROUNDS_MAX];
    int rc = 0;
    for (int gateways = 1; gateways <= S_GATEWAYS_MAX && rc == 0; gateways++)
        for (int round = 0; round < rounds && rc == 0; round++) {
            char name[64];
            snprintf (name, sizeof name, "ZQBENCH%d-%d-%d", (int)getpid (), gateways, round);
            if (s_direct (servers, (int)replicas, name, cli->count, cli->size,
                          &direct[gateways - 1][round]) ||
                s_gateway_round (cli, gateways, name, body, body_size, &put[gateways - 1][round],
                                 &e2e[gateways - 1][round]))
                rc = zq_cli_failure (cli, "bench jetstream", errno);
            else
                fprintf (stderr, "  round %d, %d gateway(s): direct %.0f put %.0f e2e %.0f msg/s\n",
                         round + 1, gateways, direct[gateways - 1][round], put[gateways - 1][round],
                         e2e[gateways - 1][round]);
        }
    for (int gateways = 1; gateways <= S_GATEWAYS_MAX && rc == 0; gateways++) {
        double copy[S_ROUNDS_MAX];
        memcpy (copy, direct[gateways - 1], sizeof copy);
        s_line ("put", gateways, cli->size, cli->count, put[gateways - 1], copy, rounds);
        memcpy (copy, direct[gateways - 1], sizeof copy);
        s_line ("e2e", gateways, cli->size, cli->count, e2e[gateways - 1], copy, rounds);
    }
    free (body);
    free (frame);
    return rc;
}

#else

int
zq_bench_jetstream (zq_cli_t *cli)
{
    return zq_cli_usage_error (cli, "bench jetstream: this zq was built without libnats");
}

#endif
