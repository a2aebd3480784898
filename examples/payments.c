/*  =========================================================================
    payments - the payment service: consumes the "payments" queue of a zq
    device, charges each order and acks it. An order that is not acked
    (the service crashed mid-way) is delivered again.

        payments ENDPOINT COUNT    handles COUNT orders, then stops

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
        fprintf (stderr, "usage: payments ENDPOINT COUNT\n");
        return 1;
    }
    const char *endpoint = argv[1];
    int count = atoi (argv[2]);
    zq_queue_t *queue = zq_queue_new ("reliable", ZQ_CONSUMER, endpoint, NULL);
    if (!queue || zq_queue_subscribe (queue, "payments")) {
        fprintf (stderr, "payments: cannot consume at %s: %s\n", endpoint, zq_strerror (errno));
        zq_queue_destroy (&queue);
        return 1;
    }
    int handled = 0;
    while (handled < count) {
        zq_msg_t *order = zq_queue_recv (queue, 10000);
        if (!order) {
            fprintf (stderr, "payments: %s after %d orders\n", zq_strerror (errno), handled);
            break;
        }
        int64_t number = 0;
        uint64_t cents = 0;
        char *item = zq_msg_get_str (order, "item");
        zq_msg_get_int (order, "order", &number);
        zq_msg_get_uint (order, "cents", &cents);
        printf ("payments: charged order %lld (%s, %llu cents)%s\n", (long long)number,
                item ? item : "?", (unsigned long long)cents,
                zq_msg_attempt (order) ? " (delivered again)" : "");
        fflush (stdout);
        free (item);
        //  Done with it: the device forgets it.
        zq_queue_ack (queue, order);
        zq_msg_destroy (&order);
        handled++;
    }
    zq_queue_destroy (&queue);
    return handled == count ? 0 : 1;
}
