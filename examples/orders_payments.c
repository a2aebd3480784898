/*  =========================================================================
    orders_payments - an order service calling a payment service over rpc.

        orders_payments payments ENDPOINT   the payment service (binds)
        orders_payments orders ENDPOINT     the order service (connects)

    The order service sends all its payment requests at once (rpc clients
    keep many requests in flight), then takes the replies as they come and
    matches each to its order by the request id. The payment service
    declines charges over 1000 cents, and stops on a request whose header
    "command" is "stop".

    Try it:
        ./orders_payments payments '@tcp://127.0.0.1:5556' &
        ./orders_payments orders '>tcp://127.0.0.1:5556'

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include <zq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIMIT_CENTS 1000

static int
s_payments (const char *endpoint)
{
    zq_queue_t *server = zq_queue_new ("rpc", ZQ_SERVER, endpoint, NULL);
    if (!server) {
        fprintf (stderr, "payments: cannot open %s: %s\n", endpoint, zq_strerror (errno));
        return 1;
    }
    printf ("payments: listening on %s\n", zq_queue_endpoint (server));
    fflush (stdout);
    int rc = 0;
    while (true) {
        zq_msg_t *request = zq_queue_recv (server, 30000);
        if (!request) {
            fprintf (stderr, "payments: receive: %s\n", zq_strerror (errno));
            rc = 1;
            break;
        }
        //  Every reply is a message of its own; zq_queue_reply routes it
        //  back to the client that asked, under the request's id.
        zq_msg_t *reply = zq_msg_new ("payments");
        const char *command = zq_msg_header (request, "command");
        bool stop = command && streq (command, "stop");
        int64_t order = 0;
        uint64_t cents = 0;
        if (stop)
            zq_msg_pack (reply, "s", "bye");
        else if (zq_msg_get_int (request, "order", &order) == 0 &&
                 zq_msg_get_uint (request, "cents", &cents) == 0) {
            bool paid = cents <= LIMIT_CENTS;
            zq_msg_pack (reply, "{sisssu}", "order", order, "status", paid ? "paid" : "declined",
                         "cents", cents);
            printf ("payments: order %lld for %llu cents: %s\n", (long long)order,
                    (unsigned long long)cents, paid ? "charged" : "declined");
        } else
            //  A request we cannot read still gets an answer.
            zq_msg_pack (reply, "{ss}", "error", "expected {order, cents}");
        if (zq_queue_reply (server, request, &reply, 5000))
            fprintf (stderr, "payments: reply: %s\n", zq_strerror (errno));
        zq_msg_destroy (&reply);
        zq_msg_destroy (&request);
        if (stop)
            break;
    }
    printf ("payments: stopped\n");
    zq_queue_destroy (&server);
    return rc;
}

static int
s_orders (const char *endpoint)
{
    zq_options_t *options = zq_options_new ();
    //  Each attempt gets 2 s; after 1 + 2 attempts a request fails.
    zq_options_set (options, "request_timeout_ms", "2000");
    zq_options_set (options, "retries", "2");
    zq_queue_t *client = zq_queue_new ("rpc", ZQ_CLIENT, endpoint, options);
    zq_options_destroy (&options);
    if (!client) {
        fprintf (stderr, "orders: cannot open %s: %s\n", endpoint, zq_strerror (errno));
        return 1;
    }
    const uint64_t amounts[] = {250, 1299, 800};
    enum { ORDERS = 3 };
    uint8_t ids[ORDERS][ZQ_MSG_ID_SIZE];
    for (int i = 0; i < ORDERS; i++) {
        zq_msg_t *request = zq_msg_new ("payments.charge");
        zq_msg_pack (request, "{sisu}", "order", (int64_t)(i + 1), "cents", amounts[i]);
        //  Remember the id before sending: the reply comes back under it.
        memcpy (ids[i], zq_msg_id (request), ZQ_MSG_ID_SIZE);
        if (zq_queue_send (client, &request, 5000)) {
            fprintf (stderr, "orders: send: %s\n", zq_strerror (errno));
            zq_msg_destroy (&request);
            zq_queue_destroy (&client);
            return 1;
        }
        printf ("orders: asked payment for order %d (%llu cents)\n", i + 1,
                (unsigned long long)amounts[i]);
    }
    int answered = 0;
    while (answered < ORDERS) {
        //  Each request ends with exactly one result: a reply, or NULL with
        //  ZQ_ETIMEDOUT once all its attempts have passed their deadline.
        zq_msg_t *reply = zq_queue_recv (client, ZQ_TIMEOUT_DEFAULT);
        if (!reply) {
            fprintf (stderr, "orders: no reply: %s\n", zq_strerror (errno));
            zq_queue_destroy (&client);
            return 1;
        }
        int order = 0;
        for (int i = 0; i < ORDERS; i++)
            if (memcmp (zq_msg_id (reply), ids[i], ZQ_MSG_ID_SIZE) == 0)
                order = i + 1;
        char *status = zq_msg_get_str (reply, "status");
        printf ("orders: order %d %s\n", order, status ? status : "?");
        free (status);
        zq_msg_destroy (&reply);
        answered++;
    }
    //  Tell the payment service to stop. Its goodbye is only a courtesy:
    //  a reply sent just before a server exits can be lost with the
    //  connection, so nothing here depends on it.
    zq_msg_t *stop = zq_msg_new ("payments.stop");
    zq_msg_set_header (stop, "command", "stop");
    int rc = zq_queue_send (client, &stop, 5000);
    zq_msg_destroy (&stop);
    zq_msg_t *bye = rc == 0 ? zq_queue_recv (client, 2000) : NULL;
    zq_msg_destroy (&bye);
    printf ("orders: %d orders answered\n", answered);
    zq_queue_destroy (&client);
    return rc == 0 ? 0 : 1;
}

int
main (int argc, char *argv[])
{
    if (argc == 3 && streq (argv[1], "payments"))
        return s_payments (argv[2]);
    if (argc == 3 && streq (argv[1], "orders"))
        return s_orders (argv[2]);
    fprintf (stderr, "usage: %s payments|orders ENDPOINT\n", argv[0]);
    return 2;
}
