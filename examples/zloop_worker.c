/*  =========================================================================
    zloop_worker - a zq queue in CZMQ's reactor (zloop), beside a timer.

        zloop_worker [COUNT]      (default 10 jobs)

    zloop, zpoller and zmq_poll take the queue's CZMQ socket
    (zq_queue_sock): they are level-triggered, so no special rules apply.
    When the socket is readable, receive with timeout 0 until EAGAIN.

    Here a zloop timer plays a producer that hands out one job every
    10 ms; the consumer's socket is a zloop reader that takes the jobs.
    The loop ends once COUNT jobs are done, or after 10 seconds.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include <zq.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    zq_queue_t *producer;
    zq_queue_t *consumer;
    int64_t count;
    int64_t sent;
    int64_t done;
    bool timed_out;
} app_t;

//  Timer: sends the next job. A send that finds no room (the consumer is
//  not connected yet) is simply tried again on the next tick.
static int
s_on_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    app_t *app = (app_t *)arg;
    if (app->sent == app->count)
        return 0;
    zq_msg_t *job = zq_msg_new ("jobs");
    if (!job || zq_msg_pack (job, "{si}", "job", app->sent + 1))
        return -1;
    if (zq_queue_send (app->producer, &job, 0) == 0)
        app->sent++;
    zq_msg_destroy (&job); //  still ours only if the send failed
    return 0;
}

//  Reader: the consumer's socket is readable; take everything waiting.
//  Returning -1 ends zloop_start.
static int
s_on_job (zloop_t *loop, zsock_t *sock, void *arg)
{
    (void)loop;
    (void)sock;
    app_t *app = (app_t *)arg;
    zq_msg_t *job;
    while ((job = zq_queue_recv (app->consumer, 0))) {
        int64_t number = 0;
        zq_msg_get_int (job, "job", &number);
        printf ("zloop: job %lld done\n", (long long)number);
        zq_msg_destroy (&job);
        app->done++;
    }
    if (errno != EAGAIN)
        return -1;
    return app->done == app->count ? -1 : 0;
}

static int
s_on_deadline (zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    ((app_t *)arg)->timed_out = true;
    return -1;
}

int
main (int argc, char *argv[])
{
    app_t app = {NULL, NULL, argc > 1 ? atoll (argv[1]) : 10, 0, 0, false};
    if (app.count <= 0) {
        fprintf (stderr, "usage: %s [COUNT]\n", argv[0]);
        return 2;
    }
    app.consumer = zq_queue_new ("pipeline", ZQ_CONSUMER, "@tcp://127.0.0.1:*", NULL);
    char endpoint[300];
    snprintf (endpoint, sizeof endpoint, ">%s",
              app.consumer ? zq_queue_endpoint (app.consumer) : "");
    app.producer = app.consumer ? zq_queue_new ("pipeline", ZQ_PRODUCER, endpoint, NULL) : NULL;
    if (!app.producer) {
        fprintf (stderr, "zloop: %s\n", zq_strerror (errno));
        zq_queue_destroy (&app.consumer);
        return 1;
    }
    zloop_t *loop = zloop_new ();
    zloop_reader (loop, zq_queue_sock (app.consumer), s_on_job, &app);
    zloop_timer (loop, 10, 0, s_on_tick, &app);
    zloop_timer (loop, 10000, 1, s_on_deadline, &app);
    zloop_start (loop);
    zloop_destroy (&loop);
    printf ("zloop: %lld of %lld jobs done%s\n", (long long)app.done, (long long)app.count,
            app.timed_out ? " (deadline passed)" : "");
    zq_queue_destroy (&app.producer);
    zq_queue_destroy (&app.consumer);
    return app.done == app.count && !app.timed_out ? 0 : 1;
}
