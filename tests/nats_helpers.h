/*  =========================================================================
    nats_helpers - nats-server processes for the JetStream store tests:
    each on 127.0.0.1, free ports, a store directory of its own, started
    and stopped by PID; a cluster of several joined by routes. A test
    program that includes this builds tests/nats_helpers.c with it.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef NATS_HELPERS_H_INCLUDED
#define NATS_HELPERS_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define NATS_WAIT_MS   10000 //  longest wait for a server to listen
#define NATS_NODES_MAX 3

typedef struct {
    pid_t pid;
    int port;         //  clients
    int cluster_port; //  routes (0: not in a cluster)
    char dir[64];
    char url[64];
} nats_node_t;

//  The monotonic clock in ms.
int64_t nats_now_ms (void);
//  A TCP port free on 127.0.0.1 now, below the kernel's ephemeral range
//  (tests/port_helpers.h), never one this process was given before, or -1.
int nats_free_port (void);
//  True once something accepts on port (bounded by NATS_WAIT_MS).
bool nats_listening (int port);
//  Starts count nodes (a cluster when count > 1); 0 once all listen, or -1.
int nats_start (nats_node_t *nodes, int count);
//  Kills node i at once (SIGKILL), as a crash would.
void nats_kill (nats_node_t *node);
//  Stops every node still running and removes their directories.
int nats_stop (nats_node_t *nodes, int count);

#endif
