/*  =========================================================================
    seed_story - the smallest zq story: a producer sends three orders, a
    consumer receives them; a stop message ends the consumer.

        seed_story consumer ENDPOINT     binds ENDPOINT, prints what arrives
        seed_story producer ENDPOINT     connects, sends three orders + stop

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include <zq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
s_producer (const char *endpoint)
{
    zsock_t *push = zsock_new_push (endpoint);
    if (!push) {
        fprintf (stderr, "producer: cannot connect %s\n", endpoint);
        return 1;
    }
    const char *items[] = {"coffee", "bagel", "juice"};
    for (int number = 1; number <= 3; number++) {
        zq_msg_t *order = zq_msg_new ("orders");
        if (!order || zq_msg_pack (order, "{sisssu}", "order", (int64_t) number, "item",
                                   items[number - 1], "cents", (uint64_t) (250 * number))
                          != 0) {
            fprintf (stderr, "producer: %s\n", zq_strerror (errno));
            zq_msg_destroy (&order);
            zsock_destroy (&push);
            return 1;
        }
        if (zq_msg_send (&order, push, 0) != 0) {
            fprintf (stderr, "producer: send: %s\n", zq_strerror (errno));
            zq_msg_destroy (&order);
            zsock_destroy (&push);
            return 1;
        }
        printf ("producer: sent order %d (%s)\n", number, items[number - 1]);
    }
    zq_msg_t *stop = zq_msg_new ("orders");
    zq_msg_set_header (stop, "command", "stop");
    int rc = zq_msg_send (&stop, push, 0);
    zq_msg_destroy (&stop);
    printf ("producer: sent stop\n");
    //  Linger lets the queued messages reach the consumer before close.
    zsock_set_linger (push, 5000);
    zsock_destroy (&push);
    return rc == 0 ? 0 : 1;
}

static int
s_consumer (const char *endpoint)
{
    zsock_t *pull = zsock_new_pull (endpoint);
    if (!pull) {
        fprintf (stderr, "consumer: cannot bind %s\n", endpoint);
        return 1;
    }
    zsock_set_rcvtimeo (pull, 30000);
    printf ("consumer: listening on %s\n", zsock_endpoint (pull));
    fflush (stdout);
    int received = 0;
    while (true) {
        zq_msg_t *msg = zq_msg_recv (pull, 0, 0);
        if (!msg) {
            fprintf (stderr, "consumer: receive: %s\n", zq_strerror (errno));
            zsock_destroy (&pull);
            return 1;
        }
        const char *command = zq_msg_header (msg, "command");
        if (command && streq (command, "stop")) {
            zq_msg_destroy (&msg);
            break;
        }
        char *json = zq_msg_body_json (msg);
        printf ("consumer: received %s %s\n", zq_msg_subject (msg), json ? json : "?");
        free (json);
        zq_msg_destroy (&msg);
        received++;
    }
    printf ("consumer: stop after %d orders\n", received);
    zsock_destroy (&pull);
    return received == 3 ? 0 : 1;
}

int
main (int argc, char *argv[])
{
    if (argc != 3) {
        fprintf (stderr, "usage: %s producer|consumer ENDPOINT\n", argv[0]);
        return 2;
    }
    //  zq is a guest: keep this program's own signal handling.
    zsys_handler_set (NULL);
    if (streq (argv[1], "producer"))
        return s_producer (argv[2]);
    if (streq (argv[1], "consumer"))
        return s_consumer (argv[2]);
    fprintf (stderr, "usage: %s producer|consumer ENDPOINT\n", argv[0]);
    return 2;
}
