/*  =========================================================================
    port_helpers - a free tcp port for a test server that must get the same
    port again after a restart (no cmocka: for any test source).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_TESTS_PORT_HELPERS_H_INCLUDED
#define ZQ_TESTS_PORT_HELPERS_H_INCLUDED

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

//  A port on 127.0.0.1 that was free when probed, from 10000 up to below
//  the kernel's ephemeral range (ip_local_port_range) and 49152, where
//  zq's "*" binds look: no outgoing connection and no "*" bind takes it
//  between the probe and the server's bind, or while the server is down.
//  seed (rand_r) picks where to look. Returns the port, or -1 after 100
//  ports found taken (or a range too small to look in).
static inline int
tu_low_free_port (unsigned *seed)
{
    int top = 32768;
    FILE *range = fopen ("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (range) {
        if (fscanf (range, "%d", &top) != 1)
            top = 32768;
        fclose (range);
    }
    if (top > 49152)
        top = 49152;
    if (top <= 11000)
        return -1;
    for (int tries = 0; tries < 100; tries++) {
        int port = 10000 + (int)(rand_r (seed) % (unsigned)(top - 10000));
        int fd = socket (AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            return -1;
        struct sockaddr_in address = {0};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
        address.sin_port = htons ((uint16_t)port);
        int rc = bind (fd, (struct sockaddr *)&address, sizeof address);
        close (fd);
        if (rc == 0)
            return port;
    }
    return -1;
}

#endif
