/*  =========================================================================
    nats_helpers - nats-server processes for the JetStream store tests
    (tests/nats_helpers.h states what each call does). Built into each
    test program that starts a nats-server; NATS_SERVER is the server's
    path (configure).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "nats_helpers.h"
#include "port_helpers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int64_t
nats_now_ms (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

int
nats_free_port (void)
{
    //  Below the ephemeral range (tu_low_free_port): no connection takes
    //  the port before nats-server binds it. A port is handed out once per
    //  process, so that nodes started together (client and route ports)
    //  never share one.
    static int handed_out[256];
    static size_t handed_count;
    static unsigned seed;
    if (!seed)
        seed = (unsigned)getpid () ^ (unsigned)nats_now_ms ();
    for (int attempt = 0; attempt < 100; attempt++) {
        int port = tu_low_free_port (&seed);
        if (port < 0)
            return -1;
        bool seen = false;
        for (size_t i = 0; i < handed_count && !seen; i++)
            seen = handed_out[i] == port;
        if (seen)
            continue;
        if (handed_count < sizeof handed_out / sizeof handed_out[0])
            handed_out[handed_count++] = port;
        return port;
    }
    return -1;
}

//  True once something accepts on port (bounded by NATS_WAIT_MS).
bool
nats_listening (int port)
{
    int64_t until = nats_now_ms () + NATS_WAIT_MS;
    while (nats_now_ms () < until) {
        int fd = socket (AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)port)};
        addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
        int rc = connect (fd, (struct sockaddr *)&addr, sizeof addr);
        close (fd);
        if (rc == 0)
            return true;
        poll (NULL, 0, 20);
    }
    return false;
}

//  Starts count nodes (a cluster when count > 1); 0 once all listen.
int
nats_start (nats_node_t *nodes, int count)
{
    for (int i = 0; i < count; i++) {
        nats_node_t *node = &nodes[i];
        memset (node, 0, sizeof *node);
        snprintf (node->dir, sizeof node->dir, "/tmp/zq-test-nats-XXXXXX");
        if (!mkdtemp (node->dir))
            return -1;
        node->port = nats_free_port ();
        node->cluster_port = count > 1 ? nats_free_port () : 0;
        snprintf (node->url, sizeof node->url, "nats://127.0.0.1:%d", node->port);
    }
    for (int i = 0; i < count; i++) {
        nats_node_t *node = &nodes[i];
        char port[16], name[16], cluster[64], routes[256] = "";
        snprintf (port, sizeof port, "%d", node->port);
        snprintf (name, sizeof name, "n%d", i + 1);
        snprintf (cluster, sizeof cluster, "nats://127.0.0.1:%d", node->cluster_port);
        for (int j = 0; j < count; j++)
            if (j != i)
                snprintf (routes + strlen (routes), sizeof routes - strlen (routes),
                          "%snats://127.0.0.1:%d", *routes ? "," : "", nodes[j].cluster_port);
        node->pid = fork ();
        if (node->pid == 0) {
            if (count > 1)
                execl (NATS_SERVER, "nats-server", "-js", "-a", "127.0.0.1", "-p", port, "-sd",
                       node->dir, "-n", name, "--cluster_name", "zqtest", "--cluster", cluster,
                       "--routes", routes, (char *)NULL);
            else
                execl (NATS_SERVER, "nats-server", "-js", "-a", "127.0.0.1", "-p", port, "-sd",
                       node->dir, "-n", name, (char *)NULL);
            _exit (127);
        }
        if (node->pid < 0)
            return -1;
    }
    for (int i = 0; i < count; i++)
        if (!nats_listening (nodes[i].port))
            return -1;
    return 0;
}

//  Kills node i at once (SIGKILL), as a crash would.
void
nats_kill (nats_node_t *node)
{
    if (node->pid > 0) {
        kill (node->pid, SIGKILL);
        waitpid (node->pid, NULL, 0);
        node->pid = 0;
    }
}

//  Stops every node still running and removes their directories.
int
nats_stop (nats_node_t *nodes, int count)
{
    int rc = 0;
    for (int i = 0; i < count; i++) {
        if (nodes[i].pid > 0) {
            kill (nodes[i].pid, SIGTERM);
            waitpid (nodes[i].pid, NULL, 0);
            nodes[i].pid = 0;
        }
        if (*nodes[i].dir) {
            char command[128];
            snprintf (command, sizeof command, "rm -rf '%s'", nodes[i].dir);
            if (system (command) != 0)
                rc = -1;
        }
    }
    return rc;
}
