/*  =========================================================================
    rpc_proc - an rpc server or client in a process of its own, for tests
    that kill a server (tests/test_rpc.c) and for the Python interop test
    (tests/interop/rpc_peer.py).

        rpc_proc server ENDPOINTS
            Opens an rpc server, prints "ready <bound endpoints>" on one
            line, then answers every request with a reply of the same
            subject and body and a header "pid" (this process's id), until
            its standard input is closed or readable.
        rpc_proc client ENDPOINTS COUNT
            Sends COUNT requests with bodies {"n": 0} .. {"n": COUNT-1},
            all in flight at once, and checks that each gets exactly one
            reply, under its id, whose body is its own. Prints
            "ok <count> <retries> <dropped>" and exits 0, or a reason on
            stderr and exits 1.
        rpc_proc serial ENDPOINTS COUNT
            As client, one request at a time: each is sent once the
            reply to the one before it was received.
        rpc_proc hold ENDPOINTS
            Opens an rpc client, prints "ready <endpoints>", then sends
            no request (its heartbeats go on) until its standard input is
            closed or readable.
        rpc_proc busy ENDPOINTS PAUSE_MS
            Opens an rpc client, sends one request, prints "ready
            <endpoints>", reads nothing for PAUSE_MS (an application busy
            elsewhere), then receives ten times (100 ms each at most,
            whatever comes) and exits 0.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "zq.h"

#define S_DEADLINE_MS 20000

static int
s_server (const char *endpoints)
{
    zq_queue_t *server = zq_queue_new ("rpc", ZQ_SERVER, endpoints, NULL);
    if (!server) {
        fprintf (stderr, "rpc_proc: cannot open %s: %s\n", endpoints, zq_strerror (errno));
        return 1;
    }
    printf ("ready %s\n", zq_queue_endpoint (server));
    fflush (stdout);
    char pid[32];
    snprintf (pid, sizeof pid, "%d", (int)getpid ());
    int rc = 0;
    while (true) {
        zmq_pollitem_t items[2] = {{zsock_resolve (zq_queue_sock (server)), 0, ZMQ_POLLIN, 0},
                                   {NULL, STDIN_FILENO, ZMQ_POLLIN, 0}};
        if (zmq_poll (items, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            rc = 1;
            break;
        }
        if (items[1].revents)
            break; //  the parent closed our stdin or went away
        zq_msg_t *request;
        while ((request = zq_queue_recv (server, 0))) {
            size_t size;
            const void *body = zq_msg_body (request, &size);
            zq_msg_t *reply = zq_msg_new (zq_msg_subject (request));
            if (!reply || zq_msg_set_body (reply, body, size) ||
                zq_msg_set_header (reply, "pid", pid)) {
                rc = 1;
                break;
            }
            //  A client that went away meanwhile is not this process's failure.
            if (zq_queue_reply (server, request, &reply, 1000) && errno != EHOSTUNREACH)
                fprintf (stderr, "rpc_proc: reply: %s\n", zq_strerror (errno));
            zq_msg_destroy (&reply);
            zq_msg_destroy (&request);
        }
        if (rc)
            break;
    }
    zq_queue_destroy (&server);
    return rc;
}

//  Receives one reply and checks it against the requests sent (ids),
//  marking it answered. Returns 0, or 1 with a reason on stderr.
static int
s_client_reply (zq_queue_t *client, int received, int count, uint8_t (*ids)[ZQ_MSG_ID_SIZE],
                bool *answered)
{
    zq_msg_t *reply = zq_queue_recv (client, S_DEADLINE_MS);
    if (!reply) {
        fprintf (stderr, "rpc_proc: reply %d: %s\n", received, zq_strerror (errno));
        return 1;
    }
    int64_t n = -1;
    int rc = 0;
    if (zq_msg_get_int (reply, "n", &n) || n < 0 || n >= count ||
        memcmp (zq_msg_id (reply), ids[n], ZQ_MSG_ID_SIZE) != 0 || answered[n]) {
        fprintf (stderr, "rpc_proc: reply %d does not match its request\n", received);
        rc = 1;
    } else
        answered[n] = true;
    zq_msg_destroy (&reply);
    return rc;
}

//  Sends count requests, at most window of them awaiting a reply at once.
static int
s_client (const char *endpoints, int count, int window)
{
    zq_options_t *options = zq_options_new ();
    if (!options || zq_options_set_int (options, "max_in_flight", count > 0 ? count : 1) ||
        zq_options_set_int (options, "request_timeout_ms", 2000)) {
        fprintf (stderr, "rpc_proc: options: %s\n", zq_strerror (errno));
        return 1;
    }
    zq_queue_t *client = zq_queue_new ("rpc", ZQ_CLIENT, endpoints, options);
    zq_options_destroy (&options);
    if (!client) {
        fprintf (stderr, "rpc_proc: cannot open %s: %s\n", endpoints, zq_strerror (errno));
        return 1;
    }
    uint8_t (*ids)[ZQ_MSG_ID_SIZE] = calloc ((size_t)count + 1, ZQ_MSG_ID_SIZE);
    bool *answered = calloc ((size_t)count + 1, sizeof (bool));
    int rc = ids && answered ? 0 : 1;
    int sent = 0, received = 0;
    while (received < count && rc == 0) {
        if (sent < count && sent - received < window) {
            zq_msg_t *request = zq_msg_new ("interop.rpc");
            if (!request || zq_msg_pack (request, "{si}", "n", (int64_t)sent)) {
                zq_msg_destroy (&request);
                rc = 1;
                break;
            }
            memcpy (ids[sent], zq_msg_id (request), ZQ_MSG_ID_SIZE);
            if (zq_queue_send (client, &request, S_DEADLINE_MS)) {
                fprintf (stderr, "rpc_proc: send %d: %s\n", sent, zq_strerror (errno));
                zq_msg_destroy (&request);
                rc = 1;
            }
            sent++;
        } else
            rc = s_client_reply (client, received++, count, ids, answered);
    }
    zq_queue_stats_t stats;
    zq_queue_stats (client, &stats);
    if (rc == 0)
        printf ("ok %d %llu %llu\n", count, (unsigned long long)stats.retries,
                (unsigned long long)stats.dropped);
    free (ids);
    free (answered);
    zq_queue_destroy (&client);
    return rc;
}

static int
s_hold (const char *endpoints)
{
    zq_queue_t *client = zq_queue_new ("rpc", ZQ_CLIENT, endpoints, NULL);
    if (!client) {
        fprintf (stderr, "rpc_proc: cannot open %s: %s\n", endpoints, zq_strerror (errno));
        return 1;
    }
    printf ("ready %s\n", endpoints);
    fflush (stdout);
    char byte;
    while (read (STDIN_FILENO, &byte, 1) < 0 && errno == EINTR)
        ;
    zq_queue_destroy (&client);
    return 0;
}

static int
s_busy (const char *endpoints, int pause_ms)
{
    zq_queue_t *client = zq_queue_new ("rpc", ZQ_CLIENT, endpoints, NULL);
    zq_msg_t *request = zq_msg_new ("rpc.busy");
    if (!client || !request || zq_queue_send (client, &request, S_DEADLINE_MS)) {
        fprintf (stderr, "rpc_proc: cannot ask %s: %s\n", endpoints, zq_strerror (errno));
        return 1;
    }
    printf ("ready %s\n", endpoints);
    fflush (stdout);
    usleep ((useconds_t)pause_ms * 1000);
    for (int n = 0; n < 10; n++) {
        zq_msg_t *msg = zq_queue_recv (client, 100);
        zq_msg_destroy (&msg);
    }
    zq_queue_destroy (&client);
    return 0;
}

int
main (int argc, char *argv[])
{
    if (argc == 3 && strcmp (argv[1], "server") == 0)
        return s_server (argv[2]);
    if (argc == 4 && strcmp (argv[1], "client") == 0)
        return s_client (argv[2], atoi (argv[3]), atoi (argv[3]));
    if (argc == 4 && strcmp (argv[1], "serial") == 0)
        return s_client (argv[2], atoi (argv[3]), 1);
    if (argc == 3 && strcmp (argv[1], "hold") == 0)
        return s_hold (argv[2]);
    if (argc == 4 && strcmp (argv[1], "busy") == 0)
        return s_busy (argv[2], atoi (argv[3]));
    fprintf (stderr, "usage: rpc_proc server ENDPOINTS | client ENDPOINTS COUNT | hold ENDPOINTS"
                     " | busy ENDPOINTS PAUSE_MS\n");
    return 2;
}
