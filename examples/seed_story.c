/*  =========================================================================
    seed_story - the smallest zq story: a producer sends three orders over
    a pipeline queue, a consumer receives them; a stop message ends it.

        seed_story consumer ENDPOINT     binds ENDPOINT, prints what arrives
        seed_story producer ENDPOINT     connects, sends three orders + stop

    Try it:
        ./seed_story consumer '@tcp://127.0.0.1:5555' &
        ./seed_story producer '>tcp://127.0.0.1:5555'

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
    //  A producer connects by default; zq_queue_send waits (up to its
    //  timeout) until a consumer is connected, so nothing is sent into
    //  the void while the consumer is still starting.
    zq_queue_t *queue = zq_queue_new ("pipeline", ZQ_PRODUCER, endpoint, NULL);
    if (!queue) {
        fprintf (stderr, "producer: cannot open %s: %s\n", endpoint, zq_strerror (errno));
        return 1;
    }
    const char *items[] = {"coffee", "bagel", "juice"};
    for (int number = 1; number <= 3; number++) {
        //  A message: a subject (the queue's name) and a msgpack body,
        //  here the map {"order": N, "item": "...", "cents": N}.
        zq_msg_t *order = zq_msg_new ("orders");
        if (!order || zq_msg_pack (order, "{sisssu}", "order", (int64_t)number, "item",
                                   items[number - 1], "cents", (uint64_t)(250 * number))) {
            fprintf (stderr, "producer: %s\n", zq_strerror (errno));
            zq_msg_destroy (&order);
            zq_queue_destroy (&queue);
            return 1;
        }
        //  Send takes ownership on success (order becomes NULL); on failure
        //  the message is still ours to destroy.
        if (zq_queue_send (queue, &order, 10000)) {
            fprintf (stderr, "producer: send: %s\n", zq_strerror (errno));
            zq_msg_destroy (&order);
            zq_queue_destroy (&queue);
            return 1;
        }
        printf ("producer: sent order %d (%s)\n", number, items[number - 1]);
    }
    //  The stop message: same queue, a header says what it is.
    zq_msg_t *stop = zq_msg_new ("orders");
    int rc = stop ? zq_msg_set_header (stop, "command", "stop") : -1;
    if (rc == 0)
        rc = zq_queue_send (queue, &stop, 10000);
    zq_msg_destroy (&stop);
    printf ("producer: sent stop\n");
    //  Closing keeps what libzmq still holds flowing for linger_ms (1 s by
    //  default) so the consumer gets every message after we are gone.
    zq_queue_destroy (&queue);
    return rc == 0 ? 0 : 1;
}

static int
s_consumer (const char *endpoint)
{
    //  A consumer binds by default; "tcp://127.0.0.1:*" picks a free port,
    //  which zq_queue_endpoint tells.
    zq_queue_t *queue = zq_queue_new ("pipeline", ZQ_CONSUMER, endpoint, NULL);
    if (!queue) {
        fprintf (stderr, "consumer: cannot open %s: %s\n", endpoint, zq_strerror (errno));
        return 1;
    }
    printf ("consumer: listening on %s\n", zq_queue_endpoint (queue));
    fflush (stdout);
    int received = 0;
    while (true) {
        //  Wait up to 30 s for the next message; we own what comes back.
        zq_msg_t *msg = zq_queue_recv (queue, 30000);
        if (!msg) {
            fprintf (stderr, "consumer: receive: %s\n", zq_strerror (errno));
            zq_queue_destroy (&queue);
            return 1;
        }
        const char *command = zq_msg_header (msg, "command");
        if (command && streq (command, "stop")) {
            zq_msg_destroy (&msg);
            break;
        }
        //  Bodies are msgpack; JSON is the easy way to show one.
        char *json = zq_msg_body_json (msg);
        printf ("consumer: received %s %s\n", zq_msg_subject (msg), json ? json : "?");
        free (json);
        zq_msg_destroy (&msg);
        received++;
    }
    printf ("consumer: stop after %d orders\n", received);
    zq_queue_destroy (&queue);
    return received == 3 ? 0 : 1;
}

int
main (int argc, char *argv[])
{
    if (argc == 3 && streq (argv[1], "producer"))
        return s_producer (argv[2]);
    if (argc == 3 && streq (argv[1], "consumer"))
        return s_consumer (argv[2]);
    fprintf (stderr, "usage: %s producer|consumer ENDPOINT\n", argv[0]);
    return 2;
}
