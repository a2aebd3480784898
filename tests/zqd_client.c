/*  =========================================================================
    zqd_client - a producer or consumer of the device's queue kind, in a
    process of its own, for the shell tests that kill zqd or the client
    itself (tests/test_zqd_faults.sh, tests/fault/zqd_kill.sh).

        zqd_client produce ENDPOINT QUEUE FIRST COUNT
            puts numbers FIRST .. FIRST+COUNT-1 ({"n": N}), one at a time;
            prints N once its confirm came. Keeps trying each (same id)
            across device restarts until it is confirmed; stops at SIGTERM
            after the current one. Exit 0.
        zqd_client produce-lines ENDPOINT QUEUE
            the same, one put per line of stdin (a decimal N), each made
            only once its line came; exit 0 at the end of input.
        zqd_client consume ENDPOINT QUEUE COUNT IDLE_MS [kill]
            prints "N ATTEMPT" per message and acks it, until COUNT arrived
            or nothing came for IDLE_MS. With "kill", prints the first one
            and dies by SIGKILL without acking. Exit 0 if COUNT arrived.
        zqd_client connections ENDPOINT QUEUE N
            opens N producers at once (N connections), posts one message on
            each, waits until all N are confirmed while every connection is
            held, prints "confirmed N". Exit 0 if all were.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq.h"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define S_DEADLINE_MS 60000

static volatile sig_atomic_t s_stop = 0;

static void
s_on_signal (int signum)
{
    (void)signum;
    s_stop = 1;
}

static zq_queue_t *
s_open (zq_role_t role, const char *endpoint)
{
    char spec[512];
    snprintf (spec, sizeof spec, ">%s", endpoint);
    zq_options_t *options = zq_options_new ();
    zq_options_set_int (options, "linger_ms", 0);
    zq_options_set_int (options, "confirm_timeout_ms", 500);
    zq_queue_t *queue = zq_queue_new ("reliable", role, spec, options);
    zq_options_destroy (&options);
    if (!queue)
        fprintf (stderr, "zqd_client: open %s: %s\n", endpoint, zq_strerror (errno));
    return queue;
}

//  Puts {"n": number} until it is confirmed (same message, same id,
//  across restarts), then prints number. Returns 0, 1 on a failure, or 2
//  when stopped first.
static int
s_put_number (zq_queue_t *queue, const char *name, uint64_t number)
{
    zq_msg_t *msg = zq_msg_new (name);
    zq_msg_pack (msg, "{su}", "n", number);
    int64_t deadline = zclock_mono () + S_DEADLINE_MS;
    while (zq_queue_send (queue, &msg, 1000)) {
        if (errno != EAGAIN && errno != ZQ_EFULL && errno != EINTR) {
            fprintf (stderr, "zqd_client: put %llu: %s\n", (unsigned long long)number,
                     zq_strerror (errno));
            zq_msg_destroy (&msg);
            return 1;
        }
        if (zclock_mono () > deadline || (s_stop && errno == EINTR)) {
            zq_msg_destroy (&msg);
            return s_stop ? 2 : 1;
        }
    }
    printf ("%llu\n", (unsigned long long)number);
    fflush (stdout);
    return 0;
}

static int
s_produce (const char *endpoint, const char *name, uint64_t first, uint64_t count)
{
    zq_queue_t *queue = s_open (ZQ_PRODUCER, endpoint);
    if (!queue)
        return 1;
    int rc = 0;
    for (uint64_t number = first; number < first + count && !s_stop && rc == 0; number++)
        rc = s_put_number (queue, name, number);
    zq_queue_destroy (&queue);
    return rc == 1 ? 1 : 0;
}

//  One put per line of stdin (its number), made and sent only once the
//  line came: the caller sets the pace.
static int
s_produce_lines (const char *endpoint, const char *name)
{
    zq_queue_t *queue = s_open (ZQ_PRODUCER, endpoint);
    if (!queue)
        return 1;
    int rc = 0;
    char line[64];
    while (rc == 0 && !s_stop && fgets (line, sizeof line, stdin))
        rc = s_put_number (queue, name, strtoull (line, NULL, 10));
    zq_queue_destroy (&queue);
    return rc == 1 ? 1 : 0;
}

static int
s_consume (const char *endpoint, const char *name, uint64_t count, int idle_ms, bool die)
{
    zq_queue_t *queue = s_open (ZQ_CONSUMER, endpoint);
    if (!queue || zq_queue_subscribe (queue, name))
        return 1;
    uint64_t received = 0;
    while (received < count && !s_stop) {
        zq_msg_t *msg = zq_queue_recv (queue, idle_ms);
        if (!msg)
            break;
        uint64_t number = 0;
        zq_msg_get_uint (msg, "n", &number);
        printf ("%llu %u\n", (unsigned long long)number, zq_msg_attempt (msg));
        fflush (stdout);
        if (die)
            raise (SIGKILL);
        zq_queue_ack (queue, msg);
        zq_msg_destroy (&msg);
        received++;
    }
    zq_queue_destroy (&queue);
    return received == count ? 0 : 2;
}

static int
s_connections (const char *endpoint, const char *name, size_t count)
{
    struct rlimit limit;
    if (getrlimit (RLIMIT_NOFILE, &limit) == 0) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit (RLIMIT_NOFILE, &limit);
    }
    zsys_set_max_sockets (0); //  as many as the fd limit allows
    zq_queue_t **queues = (zq_queue_t **)calloc (count, sizeof *queues);
    bool *confirmed = (bool *)calloc (count, sizeof *confirmed);
    if (!queues || !confirmed)
        return 1;
    int rc = 0;
    for (size_t index = 0; index < count && rc == 0; index++) {
        queues[index] = s_open (ZQ_PRODUCER, endpoint);
        zq_msg_t *msg = queues[index] ? zq_msg_new (name) : NULL;
        if (!msg || zq_msg_pack (msg, "{su}", "n", (uint64_t)index + 1) ||
            zq_queue_post (queues[index], &msg, 1000)) {
            fprintf (stderr, "zqd_client: connection %zu: %s\n", index, zq_strerror (errno));
            zq_msg_destroy (&msg);
            rc = 1;
        }
    }
    size_t done = 0;
    int64_t deadline = zclock_mono () + S_DEADLINE_MS;
    while (rc == 0 && done < count && zclock_mono () < deadline && !s_stop) {
        for (size_t index = 0; index < count; index++) {
            uint8_t id[ZQ_MSG_ID_SIZE];
            if (!confirmed[index] && zq_queue_confirmed (queues[index], id) == 0) {
                confirmed[index] = true;
                done++;
            }
        }
        if (done < count)
            zclock_sleep (10); //  a poll interval over many queues, bounded by the deadline
    }
    printf ("confirmed %zu\n", done);
    fflush (stdout);
    for (size_t index = 0; index < count; index++)
        zq_queue_destroy (&queues[index]);
    free (queues);
    free (confirmed);
    return rc == 0 && done == count ? 0 : 1;
}

int
main (int argc, char *argv[])
{
    struct sigaction action;
    memset (&action, 0, sizeof action);
    action.sa_handler = s_on_signal;
    sigaction (SIGTERM, &action, NULL);
    sigaction (SIGINT, &action, NULL);
    if (argc >= 6 && streq (argv[1], "produce"))
        return s_produce (argv[2], argv[3], strtoull (argv[4], NULL, 10),
                          strtoull (argv[5], NULL, 10));
    if (argc >= 4 && streq (argv[1], "produce-lines"))
        return s_produce_lines (argv[2], argv[3]);
    if (argc >= 6 && streq (argv[1], "consume"))
        return s_consume (argv[2], argv[3], strtoull (argv[4], NULL, 10), atoi (argv[5]),
                          argc > 6 && streq (argv[6], "kill"));
    if (argc >= 5 && streq (argv[1], "connections"))
        return s_connections (argv[2], argv[3], strtoull (argv[4], NULL, 10));
    fprintf (stderr, "usage: see tests/zqd_client.c\n");
    return 1;
}
