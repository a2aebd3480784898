/*  =========================================================================
    reliable_helpers - a reliable server running in an actor of its own
    (so a test's producer can wait for confirms while the server works),
    with its counters read through the actor's pipe, and optionally its
    timers on a fake clock that the test advances (server_advance).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef RELIABLE_HELPERS_H_INCLUDED
#define RELIABLE_HELPERS_H_INCLUDED

#include "queue_helpers.h"
#include "zq_pattern.h" //  zqi_queue_new_clocked, the fake clock

typedef struct {
    const char *endpoints;
    zq_options_t *options;
    zqi_clock_t *clock; //  NULL: the real clock
} server_args_t;

//  The actor: opens the server, answers "ENDPOINT", "INFO name" (the
//  zq_queue_info_t as one frame, or an empty frame), "STATS" (the
//  zq_queue_stats_t), "RUN" (works the server once, then answers "ok":
//  the timers a clock advance made due have run), and works the server
//  until $TERM.
static void
server_actor (zsock_t *pipe, void *arg)
{
    server_args_t *args = (server_args_t *)arg;
    zq_queue_t *server = zqi_queue_new_clocked ("reliable", ZQ_SERVER, args->endpoints,
                                                args->options, args->clock);
    zsock_signal (pipe, server ? 0 : 1);
    if (!server)
        return;
    zpoller_t *poller = zpoller_new (pipe, zq_queue_sock (server), NULL);
    bool running = true;
    while (running) {
        int64_t timer = zq_queue_next_timer_ms (server);
        void *which = zpoller_wait (poller, timer < 0 || timer > 100 ? 100 : (int)timer);
        bool run_requested = false;
        if (which == pipe) {
            zmsg_t *request = zmsg_recv (pipe);
            char *command = zmsg_popstr (request);
            if (!command || streq (command, "$TERM"))
                running = false;
            else if (streq (command, "ENDPOINT"))
                zstr_send (pipe, zq_queue_endpoint (server));
            else if (streq (command, "INFO")) {
                char *name = zmsg_popstr (request);
                zq_queue_info_t info;
                if (zq_queue_info (server, name, &info) == 0)
                    zsock_send (pipe, "b", &info, sizeof info);
                else
                    zsock_send (pipe, "b", "", 0);
                zstr_free (&name);
            } else if (streq (command, "RUN"))
                run_requested = true;
            else if (streq (command, "STATS")) {
                zq_queue_stats_t stats;
                zq_queue_stats (server, &stats);
                zsock_send (pipe, "b", &stats, sizeof stats);
            }
            zstr_free (&command);
            zmsg_destroy (&request);
        }
        //  Work until the socket has nothing more for now.
        for (int i = 0; i < 64; i++) {
            zq_msg_t *msg = zq_queue_recv (server, 0);
            zq_msg_destroy (&msg);
            if (!(zq_queue_events (server) & ZQ_POLLIN))
                break;
        }
        if (run_requested)
            zstr_send (pipe, "ok");
    }
    zpoller_destroy (&poller);
    zq_queue_destroy (&server);
}

typedef struct {
    zactor_t *actor;
    server_args_t args;
    char endpoint[256];
} test_server_t;

//  Starts a server bound on spec (e.g. "@tcp://127.0.0.1:*") with options
//  (copied; NULL = defaults), its timers on clock (NULL: the real one;
//  the test destroys it after server_stop). Returns it, or NULL if it
//  could not open.
static inline test_server_t *
server_start_clocked (const char *spec, const zq_options_t *options, zqi_clock_t *clock)
{
    test_server_t *self = (test_server_t *)calloc (1, sizeof (test_server_t));
    assert_non_null (self);
    self->args.clock = clock;
    self->args.endpoints = strdup (spec);
    self->args.options = options ? zq_options_dup (options) : zq_options_new ();
    self->actor = zactor_new (server_actor, &self->args);
    if (!self->actor) {
        free ((char *)self->args.endpoints);
        zq_options_destroy (&self->args.options);
        free (self);
        return NULL;
    }
    zstr_send (self->actor, "ENDPOINT");
    char *endpoint = zstr_recv (self->actor);
    snprintf (self->endpoint, sizeof self->endpoint, "%s", endpoint);
    zstr_free (&endpoint);
    return self;
}

//  As server_start_clocked with the real clock.
static inline test_server_t *
server_start (const char *spec, const zq_options_t *options)
{
    return server_start_clocked (spec, options, NULL);
}

//  Advances the server's fake clock by ms and returns once the server has
//  run the timers that made due (and sent what they send).
static inline void
server_advance (test_server_t *self, int64_t ms)
{
    assert_non_null (self->args.clock);
    zqi_clock_advance (self->args.clock, ms);
    zstr_send (self->actor, "RUN");
    char *reply = zstr_recv (self->actor);
    assert_non_null (reply);
    assert_string_equal (reply, "ok");
    zstr_free (&reply);
}

static inline void
server_stop (test_server_t **self_p)
{
    test_server_t *self = *self_p;
    if (!self)
        return;
    zactor_destroy (&self->actor);
    free ((char *)self->args.endpoints);
    zq_options_destroy (&self->args.options);
    free (self);
    *self_p = NULL;
}

//  Reads queue name's info; returns 0, or -1 if there is no such queue.
static inline int
server_info (test_server_t *self, const char *name, zq_queue_info_t *info)
{
    zstr_sendm (self->actor, "INFO");
    zstr_send (self->actor, name);
    zframe_t *frame = zframe_recv (self->actor);
    assert_non_null (frame);
    int rc = -1;
    if (zframe_size (frame) == sizeof *info) {
        memcpy (info, zframe_data (frame), sizeof *info);
        rc = 0;
    }
    zframe_destroy (&frame);
    return rc;
}

static inline void
server_stats (test_server_t *self, zq_queue_stats_t *stats)
{
    zstr_send (self->actor, "STATS");
    zframe_t *frame = zframe_recv (self->actor);
    assert_non_null (frame);
    assert_int_equal (zframe_size (frame), sizeof *stats);
    memcpy (stats, zframe_data (frame), sizeof *stats);
    zframe_destroy (&frame);
}

//  Waits until the queue's info satisfies check, or fails after the
//  deadline.
#define WAIT_INFO(server, name, info, condition)                                                   \
    do {                                                                                           \
        int64_t wait_deadline = now_ms () + DEADLINE_MS;                                           \
        while (true) {                                                                             \
            if (server_info ((server), (name), &(info)) == 0 && (condition))                       \
                break;                                                                             \
            assert_true (now_ms () < wait_deadline);                                               \
            zclock_sleep (5); /* polling interval of a condition, not a wait for time */           \
        }                                                                                          \
    } while (0)

#endif
