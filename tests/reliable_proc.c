/*  =========================================================================
    reliable_proc - one role of the reliable pattern in a process of its
    own, for the kill -9 tests (tests/fault/reliable_kill.sh) and the
    Python interop peer (tests/interop/reliable_peer.py).

        reliable_proc [-o NAME=VALUE]... server ENDPOINTS
            prints "ready ENDPOINT" and works the server until stdin
            closes or SIGTERM
        reliable_proc [-o ...]... produce ENDPOINT QUEUE FIRST LAST
            posts {"n": n} for n in [FIRST, LAST), printing "posted n" once
            each post returned (the message is in the outbox), then waits
            until the outbox is empty and prints "done"
        reliable_proc [-o ...]... consume ENDPOINT QUEUE COUNT [hold]
            prints "got n attempt" for each delivery and acks it (not with
            hold), until COUNT distinct numbers came, then prints "done"
    Every wait is bounded (60 s without progress: exit 2).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq.h"
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IDLE_LIMIT_MS 60000

static volatile sig_atomic_t s_stop;

static void
s_on_signal (int signum)
{
    s_stop = 1;
}

static int
s_server (const char *endpoints, zq_options_t *options)
{
    zq_queue_t *server = zq_queue_new ("reliable", ZQ_SERVER, endpoints, options);
    if (!server) {
        fprintf (stderr, "server: %s\n", zq_strerror (errno));
        return 1;
    }
    printf ("ready %s\n", zq_queue_endpoint (server));
    fflush (stdout);
    zmq_pollitem_t items[2] = {{zsock_resolve (zq_queue_sock (server)), 0, ZMQ_POLLIN, 0},
                               {NULL, STDIN_FILENO, ZMQ_POLLIN, 0}};
    while (!s_stop) {
        int64_t timer = zq_queue_next_timer_ms (server);
        if (zmq_poll (items, 2, timer < 0 || timer > 100 ? 100 : (long)timer) < 0 && errno != EINTR)
            break;
        if (items[1].revents & (ZMQ_POLLIN | ZMQ_POLLERR)) {
            char buffer[64];
            if (read (STDIN_FILENO, buffer, sizeof buffer) <= 0)
                break;
        }
        for (int i = 0; i < 64; i++) {
            zq_msg_t *msg = zq_queue_recv (server, 0);
            zq_msg_destroy (&msg);
            if (!(zq_queue_events (server) & ZQ_POLLIN))
                break;
        }
    }
    zq_queue_destroy (&server);
    return 0;
}

static int
s_produce (const char *endpoint, const char *queue, int64_t first, int64_t last,
           zq_options_t *options)
{
    zq_queue_t *producer = zq_queue_new ("reliable", ZQ_PRODUCER, endpoint, options);
    if (!producer) {
        fprintf (stderr, "producer: %s\n", zq_strerror (errno));
        return 1;
    }
    for (int64_t n = first; n < last && !s_stop; n++) {
        zq_msg_t *msg = zq_msg_new (queue);
        zq_msg_pack (msg, "{si}", "n", n);
        if (zq_queue_post (producer, &msg, IDLE_LIMIT_MS)) {
            fprintf (stderr, "post %" PRId64 ": %s\n", n, zq_strerror (errno));
            zq_queue_destroy (&producer);
            return 2;
        }
        printf ("posted %" PRId64 "\n", n);
        fflush (stdout);
    }
    //  Until every message in the outbox (this run's and any earlier
    //  run's) is confirmed.
    int64_t idle_since = zclock_mono ();
    while (!s_stop) {
        uint8_t id[ZQ_MSG_ID_SIZE];
        if (zq_queue_confirmed (producer, id) == 0) {
            idle_since = zclock_mono ();
            continue;
        }
        //  -1: every message of the outbox is confirmed.
        if (zq_queue_next_timer_ms (producer) < 0)
            break;
        if (zclock_mono () - idle_since > IDLE_LIMIT_MS) {
            zq_queue_destroy (&producer);
            return 2;
        }
        int events = zq_queue_events (producer);
        if (events > 0 && (events & ZQ_POLLIN))
            continue;
        zmq_pollitem_t item = {NULL, zq_queue_fd (producer), ZMQ_POLLIN, 0};
        int64_t timer = zq_queue_next_timer_ms (producer);
        zmq_poll (&item, 1, timer < 0 || timer > 50 ? 50 : (long)timer);
    }
    printf ("done\n");
    fflush (stdout);
    zq_queue_destroy (&producer);
    return 0;
}

static int
s_consume (const char *endpoint, const char *queue, int64_t count, bool hold, zq_options_t *options)
{
    zq_queue_t *consumer = zq_queue_new ("reliable", ZQ_CONSUMER, endpoint, options);
    if (!consumer || zq_queue_subscribe (consumer, queue)) {
        fprintf (stderr, "consumer: %s\n", zq_strerror (errno));
        return 1;
    }
    uint8_t *seen = (uint8_t *)calloc ((size_t)count + 1, 1);
    int64_t distinct = 0;
    while (distinct < count && !s_stop) {
        zq_msg_t *msg = zq_queue_recv (consumer, IDLE_LIMIT_MS);
        if (!msg) {
            if (errno == EINTR)
                continue;
            fprintf (stderr, "consumer: %s after %" PRId64 "\n", zq_strerror (errno), distinct);
            free (seen);
            zq_queue_destroy (&consumer);
            return 2;
        }
        int64_t n = -1;
        zq_msg_get_int (msg, "n", &n);
        printf ("got %" PRId64 " %u\n", n, zq_msg_attempt (msg));
        fflush (stdout);
        if (n >= 0 && n < count && !seen[n]) {
            seen[n] = 1;
            distinct++;
        }
        if (!hold)
            zq_queue_ack (consumer, msg);
        zq_msg_destroy (&msg);
    }
    printf ("done\n");
    fflush (stdout);
    free (seen);
    zq_queue_destroy (&consumer);
    return 0;
}

int
main (int argc, char *argv[])
{
    zq_options_t *options = zq_options_new ();
    int arg = 1;
    while (arg + 1 < argc && strcmp (argv[arg], "-o") == 0) {
        char *setting = argv[arg + 1];
        char *equals = strchr (setting, '=');
        if (!equals) {
            fprintf (stderr, "-o wants NAME=VALUE\n");
            return 1;
        }
        *equals = '\0';
        if (zq_options_set (options, setting, equals + 1)) {
            fprintf (stderr, "option %s: %s\n", setting, zq_strerror (errno));
            return 1;
        }
        arg += 2;
    }
    struct sigaction action = {0};
    action.sa_handler = s_on_signal;
    sigaction (SIGTERM, &action, NULL);
    sigaction (SIGINT, &action, NULL);
    int rc = 1;
    if (arg + 1 < argc && strcmp (argv[arg], "server") == 0)
        rc = s_server (argv[arg + 1], options);
    else if (arg + 4 < argc && strcmp (argv[arg], "produce") == 0)
        rc = s_produce (argv[arg + 1], argv[arg + 2], atoll (argv[arg + 3]), atoll (argv[arg + 4]),
                        options);
    else if (arg + 3 < argc && strcmp (argv[arg], "consume") == 0)
        rc = s_consume (argv[arg + 1], argv[arg + 2], atoll (argv[arg + 3]),
                        arg + 4 < argc && strcmp (argv[arg + 4], "hold") == 0, options);
    else
        fprintf (stderr, "usage: reliable_proc [-o NAME=VALUE]... server|produce|consume ...\n");
    zq_options_destroy (&options);
    return rc;
}
