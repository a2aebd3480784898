/*  =========================================================================
    js_load - a steady load through the JetStream store (the store a zqd
    gateway keeps queues in), for tests/fault/netns_faults.py: one process,
    standing for a gateway with a producer and a consumer behind it.

        js_load SERVERS QUEUE RATE

    Puts numbered messages (1, 2, ...) to QUEUE at RATE per second, each
    sent again under the same id until the store confirms it (as a zq
    producer does), and takes every delivery of QUEUE meanwhile, acking
    it. Prints "c N" when N is confirmed and "d N ATTEMPT" when it is
    delivered, one line each, flushed. At the end of stdin it puts no new
    ones, waits for the outstanding results, and drains: it exits once
    every confirmed number was delivered (0), or after S_DRAIN_MS (1).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../patterns/reliable_store.h"
#include <nats/nats.h>

#define S_MESSAGES_MAX 200000 //  numbers a run may put
#define S_WINDOW       200    //  puts without a result
#define S_DRAIN_MS     60000  //  longest wait from the end of stdin to the exit
#define S_OPEN_MS      20000  //  longest wait for the cluster to take the store

enum { S_NOT_SENT = 0, S_SENT = 1, S_CONFIRMED = 2 };

static int64_t
s_now_ms (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

//  The id of number n: n in its first four bytes, the rest a run's tag.
static void
s_id (uint8_t *id, const uint8_t *tag, uint32_t n)
{
    memcpy (id, tag, ZQI_STORE_ID_SIZE);
    memcpy (id, &n, sizeof n);
}

static uint32_t
s_number (const uint8_t *id)
{
    uint32_t n;
    memcpy (&n, id, sizeof n);
    return n;
}

int
main (int argc, char *argv[])
{
    if (argc != 4 || atoi (argv[3]) <= 0) {
        fprintf (stderr, "usage: js_load SERVERS QUEUE RATE\n");
        return 2;
    }
    const char *queue = argv[2];
    int rate = atoi (argv[3]);
    zqi_store_config_t config = {
        .servers = argv[1],
        .replicas = 3,
        .visibility_ms = 5000,
        .prefix = "F",
        .request_wait_ms = 0, //  the default, as a zqd gateway has it
    };
    zqi_store_t *store = NULL;
    int64_t until = s_now_ms () + S_OPEN_MS;
    while (!store && s_now_ms () < until) {
        store = zqi_store_jetstream.open (&config);
        if (!store)
            poll (NULL, 0, 200); //  the cluster may still be forming
    }
    if (!store) {
        fprintf (stderr, "js_load: no store on %s: %s\n", argv[1], strerror (errno));
        return 1;
    }
    uint8_t tag[ZQI_STORE_ID_SIZE];
    srand ((unsigned)time (NULL) ^ (unsigned)getpid ());
    for (size_t i = 0; i < sizeof tag; i++)
        tag[i] = (uint8_t)rand ();
    uint8_t *state = calloc (S_MESSAGES_MAX + 1, 1);
    uint8_t *delivered = calloc (S_MESSAGES_MAX + 1, 1);
    if (!state || !delivered)
        return 1;
    uint32_t next = 1, in_flight = 0, resend_from = 1;
    uint64_t confirmed = 0, distinct = 0;
    bool reading = true;
    int64_t started = s_now_ms ();
    int64_t drain_until = 0;
    int rc = 1;
    while (true) {
        int64_t now = s_now_ms ();
        if (!reading && now > drain_until)
            break; //  rc 1: not everything confirmed was delivered in time
        //  Puts: the numbers due by now at RATE, and any sent again.
        uint32_t due = reading ? (uint32_t)((now - started) * rate / 1000) + 1 : next - 1;
        if (due > S_MESSAGES_MAX)
            due = S_MESSAGES_MAX;
        while (resend_from < next && state[resend_from] != S_NOT_SENT)
            resend_from++;
        for (uint32_t n = resend_from; n < next && in_flight < S_WINDOW; n++) {
            if (state[n] != S_NOT_SENT)
                continue;
            uint8_t id[ZQI_STORE_ID_SIZE];
            char body[32];
            s_id (id, tag, n);
            int size = snprintf (body, sizeof body, "load %u", n);
            if (zqi_store_jetstream.put (store, queue, id, body, (size_t)size) < 0)
                break;
            state[n] = S_SENT;
            in_flight++;
        }
        while (next <= due && in_flight < S_WINDOW) {
            uint8_t id[ZQI_STORE_ID_SIZE];
            char body[32];
            s_id (id, tag, next);
            int size = snprintf (body, sizeof body, "load %u", next);
            if (zqi_store_jetstream.put (store, queue, id, body, (size_t)size) < 0)
                break; //  EAGAIN or the cluster is electing: later
            state[next++] = S_SENT;
            in_flight++;
        }
        struct pollfd items[2] = {{zqi_store_jetstream.signal_fd (store), POLLIN, 0},
                                  {reading ? 0 : -1, POLLIN, 0}};
        poll (items, 2, 10);
        if (reading && (items[1].revents & (POLLIN | POLLHUP))) {
            char buffer[256];
            if (read (0, buffer, sizeof buffer) <= 0) {
                reading = false;
                drain_until = s_now_ms () + S_DRAIN_MS;
            }
        }
        zqi_store_result_t results[64];
        size_t count;
        while ((count = zqi_store_jetstream.put_results (store, results, 64)) > 0)
            for (size_t i = 0; i < count; i++) {
                uint32_t n = s_number (results[i].id);
                if (n == 0 || n >= next || state[n] != S_SENT)
                    continue;
                in_flight--;
                if (results[i].errnum) {
                    state[n] = S_NOT_SENT; //  sent again, same id
                    if (n < resend_from)
                        resend_from = n;
                } else {
                    state[n] = S_CONFIRMED;
                    confirmed++;
                    printf ("c %u\n", n);
                }
            }
        zqi_store_jetstream.want (store, queue, ZQI_STORE_FETCH_MAX);
        zqi_store_delivery_t *got[64];
        while ((count = zqi_store_jetstream.deliveries (store, got, 64)) > 0)
            for (size_t i = 0; i < count; i++) {
                uint32_t n = s_number (got[i]->id);
                if (n > 0 && n <= S_MESSAGES_MAX) {
                    printf ("d %u %u\n", n, got[i]->attempt);
                    if (!delivered[n]++)
                        distinct++;
                }
                zqi_store_jetstream.settle (store, got[i], ZQI_STORE_ACK, 0);
                zqi_store_jetstream.delivery_destroy (&got[i]);
            }
        fflush (stdout);
        if (!reading && in_flight == 0 && confirmed == next - 1) {
            //  Every put confirmed: done once each was delivered.
            uint64_t missing = 0;
            for (uint32_t n = 1; n < next; n++)
                missing += delivered[n] ? 0 : 1;
            if (missing == 0) {
                rc = 0;
                break;
            }
        }
    }
    fprintf (stderr, "js_load: %u put, %llu confirmed, %llu delivered\n", next - 1,
             (unsigned long long)confirmed, (unsigned long long)distinct);
    zqi_store_jetstream.destroy (&store);
    free (state);
    free (delivered);
    nats_CloseAndWait (5000);
    return rc;
}
