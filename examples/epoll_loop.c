/*  =========================================================================
    epoll_loop - zq queues inside an existing epoll loop, edge-triggered.

        epoll_loop [COUNT]        (default 100000 messages)

    A program that already runs its own epoll loop (a C daemon, say) adds
    a queue's file descriptor to it like any other. The descriptor only
    says "the queue's state may have changed", so the rule from zq_queue.h
    applies: when it fires, and after every send or receive on that queue,
    ask zq_queue_events and act until it reports nothing we can use.

    Here one loop drives both ends of a pipeline: a producer sends COUNT
    messages whenever it has room, a consumer takes them as they arrive,
    and a timerfd bounds the whole run to 10 seconds.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include <zq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

typedef struct {
    zq_queue_t *producer;
    zq_queue_t *consumer;
    long count; //  messages to send
    long sent;
    long received;
    long wakeups; //  times epoll_wait returned
} app_t;

//  Does everything the producer can do now, without blocking.
static int
s_service_producer (app_t *app)
{
    while (app->sent < app->count) {
        int events = zq_queue_events (app->producer);
        if (events < 0)
            return -1;
        if (!(events & ZQ_POLLOUT))
            return 0; //  no room: the fd will fire when there is
        zq_msg_t *msg = zq_msg_new ("work");
        if (!msg || zq_msg_pack (msg, "{si}", "job", (int64_t)app->sent + 1))
            return -1;
        //  Timeout 0: never block inside the loop. EAGAIN just means
        //  "check events again"; the loop does exactly that.
        if (zq_queue_send (app->producer, &msg, 0)) {
            zq_msg_destroy (&msg);
            if (errno != EAGAIN)
                return -1;
            continue;
        }
        app->sent++;
    }
    return 0;
}

//  Takes every message the consumer has now, without blocking.
static int
s_service_consumer (app_t *app)
{
    while (true) {
        int events = zq_queue_events (app->consumer);
        if (events < 0)
            return -1;
        if (!(events & ZQ_POLLIN))
            return 0; //  nothing left: the fd will fire for new messages
        zq_msg_t *msg = zq_queue_recv (app->consumer, 0);
        if (!msg) {
            if (errno != EAGAIN)
                return -1;
            continue;
        }
        int64_t job = 0;
        if (zq_msg_get_int (msg, "job", &job) == 0 && job == app->received + 1)
            app->received++;
        else
            fprintf (stderr, "epoll: job %lld out of order\n", (long long)job);
        zq_msg_destroy (&msg);
    }
}

//  Adds fd to the epoll set, edge-triggered, for reading only (never
//  EPOLLOUT, even for a queue we only send on).
static int
s_watch (int epoll_fd, int fd, void *tag)
{
    struct epoll_event event;
    memset (&event, 0, sizeof event);
    event.events = EPOLLIN | EPOLLET;
    event.data.ptr = tag;
    return epoll_ctl (epoll_fd, EPOLL_CTL_ADD, fd, &event);
}

int
main (int argc, char *argv[])
{
    app_t app;
    memset (&app, 0, sizeof app);
    app.count = argc > 1 ? atol (argv[1]) : 100000;
    if (app.count <= 0) {
        fprintf (stderr, "usage: %s [COUNT]\n", argv[0]);
        return 2;
    }
    app.consumer = zq_queue_new ("pipeline", ZQ_CONSUMER, "@tcp://127.0.0.1:*", NULL);
    if (!app.consumer) {
        fprintf (stderr, "epoll: consumer: %s\n", zq_strerror (errno));
        return 1;
    }
    char endpoint[300];
    snprintf (endpoint, sizeof endpoint, ">%s", zq_queue_endpoint (app.consumer));
    app.producer = zq_queue_new ("pipeline", ZQ_PRODUCER, endpoint, NULL);
    if (!app.producer) {
        fprintf (stderr, "epoll: producer: %s\n", zq_strerror (errno));
        zq_queue_destroy (&app.consumer);
        return 1;
    }
    printf ("epoll: consumer on %s, producer connecting\n", zq_queue_endpoint (app.consumer));

    //  A 10-second deadline, as one more fd in the same loop.
    int deadline_fd = timerfd_create (CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct itimerspec deadline = {{0, 0}, {10, 0}};
    int epoll_fd = epoll_create1 (EPOLL_CLOEXEC);
    int rc =
        (deadline_fd < 0 || epoll_fd < 0 || timerfd_settime (deadline_fd, 0, &deadline, NULL) ||
         s_watch (epoll_fd, zq_queue_fd (app.producer), app.producer) ||
         s_watch (epoll_fd, zq_queue_fd (app.consumer), app.consumer) ||
         s_watch (epoll_fd, deadline_fd, &deadline_fd))
            ? -1
            : 0;
    if (rc)
        perror ("epoll: setup");

    //  Edge-triggered: an fd that is already "ready" when added may not
    //  fire, so service both queues once before the first wait.
    if (rc == 0)
        rc = s_service_producer (&app);
    if (rc == 0)
        rc = s_service_consumer (&app);

    bool timed_out = false;
    while (rc == 0 && app.received < app.count && !timed_out) {
        struct epoll_event events[4];
        int ready = epoll_wait (epoll_fd, events, 4, -1);
        if (ready < 0) {
            rc = -1;
            break;
        }
        app.wakeups++;
        for (int i = 0; i < ready && rc == 0; i++) {
            if (events[i].data.ptr == &deadline_fd)
                timed_out = true;
            //  Whichever queue's fd fired, service both: simple, and each
            //  service function keeps going until zq_queue_events shows
            //  nothing left for it, as the rule asks (a queue with nothing
            //  to do costs one getsockopt).
            else {
                rc = s_service_producer (&app);
                if (rc == 0)
                    rc = s_service_consumer (&app);
            }
        }
    }
    if (rc)
        fprintf (stderr, "epoll: %s\n", zq_strerror (errno));
    if (timed_out)
        fprintf (stderr, "epoll: deadline passed\n");
    printf ("epoll: sent %ld, received %ld in order (%ld wakeups)\n", app.sent, app.received,
            app.wakeups);
    if (epoll_fd >= 0)
        close (epoll_fd);
    if (deadline_fd >= 0)
        close (deadline_fd);
    zq_queue_destroy (&app.producer);
    zq_queue_destroy (&app.consumer);
    return rc == 0 && !timed_out && app.received == app.count ? 0 : 1;
}
