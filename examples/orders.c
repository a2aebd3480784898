/*  =========================================================================
    orders - the orders service: takes orders and hands each one to the
    "payments" queue of a zq device (zqd). zq_queue_send returns once the
    device confirms it stored the order, so the orders service never waits
    for the payment service, which may be down.

        orders ENDPOINT COUNT      puts COUNT orders, one confirm each

    Try it (see examples/demo.sh):
        zqd --bind tcp://127.0.0.1:5670 --spool /tmp/zqd &
        ./orders tcp://127.0.0.1:5670 5

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include <zq.h>
#include <stdio.h>
#include <stdlib.h>

int
main (int argc, char *argv[])
{
    if (argc != 3) {
        fprintf (stderr, "usage: orders ENDPOINT COUNT\n");
        return 1;
    }
    const char *endpoint = argv[1];
    int count = atoi (argv[2]);
    //  A reliable producer connects to the device; the queue it puts to is
    //  each message's subject.
    zq_queue_t *queue = zq_queue_new ("reliable", ZQ_PRODUCER, endpoint, NULL);
    if (!queue) {
        fprintf (stderr, "orders: cannot open %s: %s\n", endpoint, zq_strerror (errno));
        return 1;
    }
    const char *items[] = {"coffee", "bagel", "juice", "muffin", "tea"};
    int rc = 0;
    for (int number = 1; number <= count && rc == 0; number++) {
        zq_msg_t *order = zq_msg_new ("payments");
        const char *item = items[(number - 1) % 5];
        uint64_t cents = (uint64_t)(150 + 100 * number);
        if (!order || zq_msg_pack (order, "{sisssu}", "order", (int64_t)number, "item", item,
                                   "cents", cents)) {
            fprintf (stderr, "orders: %s\n", zq_strerror (errno));
            zq_msg_destroy (&order);
            rc = 1;
            break;
        }
        //  Returns after the device's confirm: the order is on its disk.
        if (zq_queue_send (queue, &order, 10000)) {
            fprintf (stderr, "orders: order %d not confirmed: %s\n", number, zq_strerror (errno));
            zq_msg_destroy (&order);
            rc = 1;
            break;
        }
        printf ("orders: order %d (%s, %llu cents) stored by the device\n", number, item,
                (unsigned long long)cents);
        fflush (stdout);
    }
    zq_queue_destroy (&queue);
    return rc;
}
