/*  =========================================================================
    notifications - fan-out over pub/sub: one publisher, three subscribers
    that each choose what they hear by subject prefix.

        notifications [ENDPOINT]        (default @tcp://127.0.0.1:*)

    The publisher binds; each subscriber (a thread here, a service of its
    own in real life) connects and subscribes to prefixes:
        audit     ""                everything
        billing   "orders."         orders.created, orders.shipped, ...
        shipping  "orders.shipped"  only shipments
    and all three to "stop", the subject that ends them. The publisher
    waits until every subscription is in force before it publishes, so no
    subscriber misses the first notifications (ZeroMQ's "slow joiner").

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include <zq.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    const char *prefix;
    char endpoint[256]; //  the publisher's, to connect to
    int received;
    int status; //  0 when the subscriber ended cleanly
} subscriber_t;

static void *
s_subscriber (void *arg)
{
    subscriber_t *self = (subscriber_t *)arg;
    self->status = 1;
    char connect[260];
    snprintf (connect, sizeof connect, ">%s", self->endpoint);
    zq_queue_t *queue = zq_queue_new ("pubsub", ZQ_SUBSCRIBER, connect, NULL);
    //  A subscriber hears nothing until it subscribes; each prefix counts
    //  as one subscription on the publisher's side.
    if (!queue || zq_queue_subscribe (queue, self->prefix) || zq_queue_subscribe (queue, "stop")) {
        fprintf (stderr, "%s: %s\n", self->name, zq_strerror (errno));
        zq_queue_destroy (&queue);
        return NULL;
    }
    while (true) {
        zq_msg_t *msg = zq_queue_recv (queue, 10000);
        if (!msg) {
            fprintf (stderr, "%s: receive: %s\n", self->name, zq_strerror (errno));
            break;
        }
        if (streq (zq_msg_subject (msg), "stop")) {
            zq_msg_destroy (&msg);
            self->status = 0;
            break;
        }
        char *json = zq_msg_body_json (msg);
        printf ("%s: %s %s\n", self->name, zq_msg_subject (msg), json ? json : "?");
        free (json);
        zq_msg_destroy (&msg);
        self->received++;
    }
    //  Sequence numbers per publisher and subject let a subscriber count
    //  what it lost (a full queue, a broken connection): stats.gaps.
    zq_queue_stats_t stats;
    zq_queue_stats (queue, &stats);
    printf ("%s: %d notifications, %llu lost\n", self->name, self->received,
            (unsigned long long)stats.gaps);
    zq_queue_destroy (&queue);
    return NULL;
}

//  Publishes one notification with a small JSON body.
static int
s_publish (zq_queue_t *queue, const char *subject, const char *json)
{
    zq_msg_t *msg = zq_msg_new (subject);
    if (!msg || zq_msg_set_body_json (msg, json) || zq_queue_send (queue, &msg, 0)) {
        fprintf (stderr, "publisher: %s: %s\n", subject, zq_strerror (errno));
        zq_msg_destroy (&msg);
        return -1;
    }
    return 0;
}

int
main (int argc, char *argv[])
{
    const char *endpoint = argc > 1 ? argv[1] : "@tcp://127.0.0.1:*";
    //  Create the first queue before starting threads that create theirs.
    zq_queue_t *publisher = zq_queue_new ("pubsub", ZQ_PUBLISHER, endpoint, NULL);
    if (!publisher) {
        fprintf (stderr, "publisher: cannot open %s: %s\n", endpoint, zq_strerror (errno));
        return 1;
    }
    printf ("publisher: on %s\n", zq_queue_endpoint (publisher));

    subscriber_t subscribers[] = {
        {"audit", "", "", 0, 1},
        {"billing", "orders.", "", 0, 1},
        {"shipping", "orders.shipped", "", 0, 1},
    };
    size_t count = sizeof subscribers / sizeof subscribers[0];
    pthread_t threads[3];
    for (size_t i = 0; i < count; i++) {
        snprintf (subscribers[i].endpoint, sizeof subscribers[i].endpoint, "%s",
                  zq_queue_endpoint (publisher));
        pthread_create (&threads[i], NULL, s_subscriber, &subscribers[i]);
    }
    //  Two subscriptions per subscriber (its prefix and "stop").
    int rc = zq_queue_wait_subscribers (publisher, 2 * count, 10000);
    if (rc)
        fprintf (stderr, "publisher: subscribers did not join: %s\n", zq_strerror (errno));
    else {
        printf ("publisher: %d subscriptions in force\n", zq_queue_subscribers (publisher));
        rc = s_publish (publisher, "orders.created", "{\"order\":1,\"item\":\"coffee\"}");
        if (rc == 0)
            rc = s_publish (publisher, "orders.shipped", "{\"order\":1,\"carrier\":\"bike\"}");
        if (rc == 0)
            rc = s_publish (publisher, "payments.received", "{\"order\":1,\"cents\":250}");
        if (rc == 0)
            rc = s_publish (publisher, "orders.created", "{\"order\":2,\"item\":\"bagel\"}");
    }
    //  Always send the stop, so subscriber threads end either way.
    s_publish (publisher, "stop", "null");
    for (size_t i = 0; i < count; i++) {
        pthread_join (threads[i], NULL);
        if (subscribers[i].status)
            rc = -1;
    }
    zq_queue_stats_t stats;
    zq_queue_stats (publisher, &stats);
    printf ("publisher: sent %llu, dropped %llu\n", (unsigned long long)stats.sent,
            (unsigned long long)stats.dropped);
    zq_queue_destroy (&publisher);
    return rc == 0 ? 0 : 1;
}
