/*  =========================================================================
    test_store_jetstream_cluster - the JetStream store on a 3-node cluster
    (three nats-server processes joined by routes, started here on
    127.0.0.1): two store instances, standing for two gateways, put while
    one node is killed with SIGKILL, then consume while one gateway goes
    away with deliveries unsettled. Nothing confirmed may be lost.

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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../patterns/reliable_store.h"
#include <nats/nats.h>
#include "nats_helpers.h"

#define NODES         3
#define MESSAGES      2000
#define WINDOW        200 //  puts without a result, per gateway
#define VISIBILITY_MS 2000
#define PUT_MS        60000 //  longest the put phase may take
#define GET_MS        30000 //  longest the get phase may take

enum { NOT_SENT = 0, SENT = 1, CONFIRMED = 2 };

static nats_node_t s_nodes[NODES];
static char s_servers[256];

static int
s_setup (void **state)
{
    if (nats_start (s_nodes, NODES))
        return -1;
    snprintf (s_servers, sizeof s_servers, "%s,%s,%s", s_nodes[0].url, s_nodes[1].url,
              s_nodes[2].url);
    return 0;
}

static int
s_teardown (void **state)
{
    return nats_stop (s_nodes, NODES);
}

static zqi_store_t *
s_open (void)
{
    zqi_store_config_t config = {
        .servers = s_servers,
        .replicas = 3,
        .visibility_ms = VISIBILITY_MS,
        .prefix = "C",
        .request_wait_ms = 3000,
    };
    return zqi_store_jetstream.open (&config);
}

static void
s_id (uint8_t *id, uint32_t n)
{
    memset (id, 0xc3, ZQI_STORE_ID_SIZE);
    memcpy (id, &n, sizeof n);
}

static uint32_t
s_number (const uint8_t *id)
{
    uint32_t n;
    memcpy (&n, id, sizeof n);
    return n;
}

//  Collects the results of one gateway into state; returns confirms.
static uint32_t
s_results (zqi_store_t *store, uint8_t *state, uint32_t *in_flight)
{
    zqi_store_result_t results[64];
    uint32_t confirmed = 0;
    size_t count;
    while ((count = zqi_store_jetstream.put_results (store, results, 64)) > 0)
        for (size_t i = 0; i < count; i++) {
            uint32_t n = s_number (results[i].id);
            assert_true (n < MESSAGES);
            (*in_flight)--;
            if (state[n] != SENT)
                continue;
            //  Not confirmed: sent again, as a zq producer does.
            state[n] = results[i].errnum ? NOT_SENT : CONFIRMED;
            confirmed += results[i].errnum ? 0 : 1;
        }
    return confirmed;
}

static void
test_node_killed_while_putting (void **state_arg)
{
    zqi_store_t *gateways[2] = {s_open (), s_open ()};
    assert_non_null (gateways[0]);
    assert_non_null (gateways[1]);
    uint8_t *state = calloc (MESSAGES, 1);
    uint32_t in_flight[2] = {0, 0};
    uint32_t confirmed = 0;
    int64_t killed_at = 0;
    uint32_t confirmed_at_kill = 0;
    int64_t started = 0;
    int64_t until = nats_now_ms () + PUT_MS;
    //  Even numbers through gateway 0, odd through gateway 1.
    while (confirmed < MESSAGES && nats_now_ms () < until) {
        for (int g = 0; g < 2; g++) {
            for (uint32_t n = (uint32_t)g; n < MESSAGES && in_flight[g] < WINDOW; n += 2) {
                if (state[n] != NOT_SENT)
                    continue;
                uint8_t id[ZQI_STORE_ID_SIZE];
                char body[32];
                s_id (id, n);
                int size = snprintf (body, sizeof body, "load %u", n);
                if (zqi_store_jetstream.put (gateways[g], "load", id, body, (size_t)size) < 0)
                    break; //  the cluster is not ready yet, or is electing: later
                state[n] = SENT;
                in_flight[g]++;
                if (!started)
                    started = nats_now_ms (); //  the first stream was made
            }
        }
        struct pollfd items[2] = {{zqi_store_jetstream.signal_fd (gateways[0]), POLLIN, 0},
                                  {zqi_store_jetstream.signal_fd (gateways[1]), POLLIN, 0}};
        poll (items, 2, 50);
        confirmed += s_results (gateways[0], state, &in_flight[0]);
        confirmed += s_results (gateways[1], state, &in_flight[1]);
        if (!killed_at && confirmed >= MESSAGES / 3) {
            nats_kill (&s_nodes[0]);
            killed_at = nats_now_ms ();
            confirmed_at_kill = confirmed;
        }
    }
    print_message ("puts: %u confirmed before node 1 was killed, in %lld ms (R3, window %u per "
                   "gateway); all %u confirmed %lld ms after the kill\n",
                   confirmed_at_kill, (long long)(killed_at - started), WINDOW, confirmed,
                   (long long)(nats_now_ms () - killed_at));
    assert_true (killed_at > 0);
    assert_int_equal (confirmed, MESSAGES);

    //  Consume through both gateways; gateway 0 goes away holding
    //  deliveries it never settled: they come back through gateway 1.
    uint32_t *seen = calloc (MESSAGES, sizeof *seen);
    uint32_t distinct = 0, duplicates = 0, abandoned = 0;
    until = nats_now_ms () + GET_MS;
    assert_int_equal (zqi_store_jetstream.want (gateways[0], "load", 50), 0);
    while (distinct < MESSAGES && nats_now_ms () < until) {
        //  Gateway 1 starts once gateway 0 holds its 50.
        if (!gateways[0])
            assert_int_equal (zqi_store_jetstream.want (gateways[1], "load", ZQI_STORE_FETCH_MAX),
                              0);
        struct pollfd items[2] = {
            {gateways[0] ? zqi_store_jetstream.signal_fd (gateways[0]) : -1, POLLIN, 0},
            {zqi_store_jetstream.signal_fd (gateways[1]), POLLIN, 0}};
        poll (items, 2, 100);
        for (int g = 0; g < 2; g++) {
            if (!gateways[g])
                continue;
            zqi_store_delivery_t *got[64];
            size_t count = zqi_store_jetstream.deliveries (gateways[g], got, 64);
            for (size_t i = 0; i < count; i++) {
                uint32_t n = s_number (got[i]->id);
                assert_true (n < MESSAGES);
                if (g == 0 && abandoned < 50) {
                    abandoned++; //  never settled
                    zqi_store_jetstream.delivery_destroy (&got[i]);
                    continue;
                }
                char body[32];
                int size = snprintf (body, sizeof body, "load %u", n);
                assert_int_equal (got[i]->size, size);
                assert_memory_equal (got[i]->data, body, size);
                if (seen[n]++)
                    duplicates++;
                else
                    distinct++;
                zqi_store_jetstream.settle (gateways[g], got[i], ZQI_STORE_ACK, 0);
                zqi_store_jetstream.delivery_destroy (&got[i]);
            }
        }
        if (gateways[0] && abandoned == 50)
            zqi_store_jetstream.destroy (&gateways[0]);
    }
    print_message ("gets: %u of %u confirmed messages, %u duplicates, %u abandoned by a gateway\n",
                   distinct, MESSAGES, duplicates, abandoned);
    assert_int_equal (abandoned, 50);
    assert_int_equal (distinct, MESSAGES);
    free (seen);
    free (state);
    zqi_store_jetstream.destroy (&gateways[0]);
    zqi_store_jetstream.destroy (&gateways[1]);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_node_killed_while_putting),
    };
    int failed = cmocka_run_group_tests (tests, s_setup, s_teardown);
    //  libnats keeps threads of its own per process until this.
    nats_CloseAndWait (5000);
    return failed;
}
