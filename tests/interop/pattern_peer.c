/*  =========================================================================
    pattern_peer - the C side of zq's pipeline and pubsub interop test,
    driven by tests/interop/pubsub_peer.py. It uses only the public zq API.

      pattern_peer consume ENDPOINT COUNT
          binds a consumer, prints "ready <endpoint>", then one JSON line
          per message received: {"subject", "headers", "body"}
      pattern_peer produce ENDPOINT COUNT
          connects a producer and sends COUNT messages on "work" with
          header from=zq and body {"n": i, "pad": <i * 100 bytes>}
      pattern_peer produce-burst ENDPOINT COUNT
          connects a producer (sndhwm 16) and sends COUNT messages on
          "burst" with body {"n": i} as fast as it can, prints "sent", then
          flushes what it gathered (batch frames), prints "flushed" and
          closes once a line arrives on stdin
      pattern_peer publish ENDPOINT COUNT
          binds a publisher, prints "ready <endpoint>", waits for one
          subscription, publishes COUNT messages alternating subjects
          "a.one", "b.two", "a.three" with body {"n": i}, then "a.end"
      pattern_peer subscribe ENDPOINT PREFIX
          connects a subscriber to PREFIX, prints "ready", receives until a
          message on subject "<PREFIX>end", prints one JSON line per
          message, then "received=R gaps=G errors=E"

    Every wait is bounded (20 s). Exits 0 on success, 1 on failure.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_MS 20000

static int
s_fail (const char *what)
{
    fprintf (stderr, "pattern_peer: %s: %s\n", what, zq_strerror (errno));
    return 1;
}

static void
s_print (const zq_msg_t *msg)
{
    char *body = zq_msg_body_json (msg);
    printf ("{\"subject\": \"%s\", \"headers\": {", zq_msg_subject (msg));
    for (size_t i = 0; i < zq_msg_header_count (msg); i++) {
        const char *value;
        const char *name = zq_msg_header_at (msg, i, &value);
        printf ("%s\"%s\": \"%s\"", i ? ", " : "", name, value);
    }
    printf ("}, \"body\": %s}\n", body ? body : "null");
    fflush (stdout);
    free (body);
}

static int
s_consume (const char *endpoint, int count)
{
    char spec[300];
    snprintf (spec, sizeof spec, "@%s", endpoint);
    zq_queue_t *queue = zq_queue_new ("pipeline", ZQ_CONSUMER, spec, NULL);
    if (!queue)
        return s_fail ("consumer");
    printf ("ready %s\n", zq_queue_endpoint (queue));
    fflush (stdout);
    for (int n = 0; n < count; n++) {
        zq_msg_t *msg = zq_queue_recv (queue, WAIT_MS);
        if (!msg) {
            zq_queue_destroy (&queue);
            return s_fail ("receive");
        }
        s_print (msg);
        zq_msg_destroy (&msg);
    }
    zq_queue_stats_t stats;
    zq_queue_stats (queue, &stats);
    printf ("received=%llu errors=%llu\n", (unsigned long long)stats.received,
            (unsigned long long)stats.errors);
    zq_queue_destroy (&queue);
    return 0;
}

static int
s_produce (const char *endpoint, int count)
{
    char spec[300];
    snprintf (spec, sizeof spec, ">%s", endpoint);
    zq_queue_t *queue = zq_queue_new ("pipeline", ZQ_PRODUCER, spec, NULL);
    if (!queue)
        return s_fail ("producer");
    size_t pad_size = (size_t)count * 100;
    char *pad = (char *)malloc (pad_size + 1);
    int rc = 0;
    for (int n = 0; n < count && rc == 0; n++) {
        memset (pad, 'a' + n % 26, (size_t)n * 100);
        pad[n * 100] = '\0';
        zq_msg_t *msg = zq_msg_new ("work");
        if (!msg || zq_msg_set_header (msg, "from", "zq") ||
            zq_msg_pack (msg, "{sisB}", "n", (int64_t)n, "pad", pad, (size_t)n * 100) ||
            zq_queue_send (queue, &msg, WAIT_MS)) {
            zq_msg_destroy (&msg);
            rc = s_fail ("send");
        }
    }
    free (pad);
    size_t unsent = 0;
    zq_queue_close (queue, &unsent);
    zq_queue_destroy (&queue);
    return rc;
}

static int
s_produce_burst (const char *endpoint, int count)
{
    char spec[300];
    snprintf (spec, sizeof spec, ">%s", endpoint);
    zq_options_t *options = zq_options_new ();
    zq_options_set (options, "sndhwm", "16");
    zq_options_set (options, "sndbuf_bytes", "4096");
    zq_options_set (options, "linger_ms", "20000");
    zq_queue_t *queue = zq_queue_new ("pipeline", ZQ_PRODUCER, spec, options);
    zq_options_destroy (&options);
    if (!queue)
        return s_fail ("producer");
    int rc = 0;
    for (int n = 0; n < count && rc == 0; n++) {
        zq_msg_t *msg = zq_msg_new ("burst");
        if (!msg || zq_msg_pack (msg, "{si}", "n", (int64_t)n) ||
            zq_queue_send (queue, &msg, WAIT_MS)) {
            zq_msg_destroy (&msg);
            rc = s_fail ("send");
        }
    }
    if (rc == 0) {
        printf ("sent\n");
        fflush (stdout);
    }
    //  The batch goes once the consumer makes room. Sent before close, and
    //  the process kept until the consumer says it has every message (a
    //  line on stdin): libzmq's linger keeps what a closed socket holds
    //  until the process ends, and a process that ends drops what the
    //  receiver has yet to read.
    if (rc == 0 && zq_queue_flush (queue, WAIT_MS))
        rc = s_fail ("flush");
    if (rc == 0) {
        printf ("flushed\n");
        fflush (stdout);
        char line[16];
        if (!fgets (line, sizeof line, stdin))
            rc = s_fail ("wait for the consumer");
    }
    size_t unsent = 0;
    zq_queue_close (queue, &unsent);
    if (rc == 0 && unsent) {
        errno = EAGAIN;
        rc = s_fail ("close");
    }
    zq_queue_destroy (&queue);
    return rc;
}

static int
s_publish (const char *endpoint, int count)
{
    char spec[300];
    snprintf (spec, sizeof spec, "@%s", endpoint);
    zq_queue_t *queue = zq_queue_new ("pubsub", ZQ_PUBLISHER, spec, NULL);
    if (!queue)
        return s_fail ("publisher");
    printf ("ready %s\n", zq_queue_endpoint (queue));
    fflush (stdout);
    if (zq_queue_wait_subscribers (queue, 1, WAIT_MS)) {
        zq_queue_destroy (&queue);
        return s_fail ("wait for a subscriber");
    }
    const char *subjects[] = {"a.one", "b.two", "a.three"};
    int rc = 0;
    for (int n = 0; n <= count && rc == 0; n++) {
        zq_msg_t *msg = zq_msg_new (n == count ? "a.end" : subjects[n % 3]);
        if (!msg || zq_msg_pack (msg, "{si}", "n", (int64_t)n) || zq_queue_send (queue, &msg, 0)) {
            zq_msg_destroy (&msg);
            rc = s_fail ("publish");
        }
    }
    zq_queue_destroy (&queue);
    return rc;
}

static int
s_subscribe (const char *endpoint, const char *prefix)
{
    char spec[300];
    snprintf (spec, sizeof spec, ">%s", endpoint);
    zq_queue_t *queue = zq_queue_new ("pubsub", ZQ_SUBSCRIBER, spec, NULL);
    if (!queue || zq_queue_subscribe (queue, prefix)) {
        zq_queue_destroy (&queue);
        return s_fail ("subscriber");
    }
    printf ("ready\n");
    fflush (stdout);
    char end[300];
    snprintf (end, sizeof end, "%send", prefix);
    while (true) {
        zq_msg_t *msg = zq_queue_recv (queue, WAIT_MS);
        if (!msg) {
            zq_queue_destroy (&queue);
            return s_fail ("receive");
        }
        s_print (msg);
        bool done = strcmp (zq_msg_subject (msg), end) == 0;
        zq_msg_destroy (&msg);
        if (done)
            break;
    }
    zq_queue_stats_t stats;
    zq_queue_stats (queue, &stats);
    printf ("received=%llu gaps=%llu errors=%llu\n", (unsigned long long)stats.received,
            (unsigned long long)stats.gaps, (unsigned long long)stats.errors);
    zq_queue_destroy (&queue);
    return 0;
}

int
main (int argc, char **argv)
{
    if (argc == 4 && strcmp (argv[1], "consume") == 0)
        return s_consume (argv[2], atoi (argv[3]));
    if (argc == 4 && strcmp (argv[1], "produce") == 0)
        return s_produce (argv[2], atoi (argv[3]));
    if (argc == 4 && strcmp (argv[1], "produce-burst") == 0)
        return s_produce_burst (argv[2], atoi (argv[3]));
    if (argc == 4 && strcmp (argv[1], "publish") == 0)
        return s_publish (argv[2], atoi (argv[3]));
    if (argc == 4 && strcmp (argv[1], "subscribe") == 0)
        return s_subscribe (argv[2], argv[3]);
    fprintf (stderr,
             "usage: pattern_peer consume|produce|produce-burst|publish|subscribe ENDPOINT ARG\n");
    return 2;
}
