/*  =========================================================================
    test_star_port_processes - a "*" tcp port differs between processes
    started one after the other, in the same second: a process that binds
    "*" right after another one bound it and died does not take its port
    (and with it the dead one's clients). The parent touches neither zq
    nor CZMQ, so that each child starts them as a fresh process does.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq.h"
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

//  Runs a child that binds a consumer to tcp://127.0.0.1:*, writes the
//  port it got, closes and exits. Returns the port (0: none).
static int
s_child_port (void)
{
    int pipe_fds[2];
    assert_int_equal (pipe (pipe_fds), 0);
    pid_t pid = fork ();
    assert_true (pid >= 0);
    if (pid == 0) {
        close (pipe_fds[0]);
        zq_queue_t *queue = zq_queue_new ("pipeline", ZQ_CONSUMER, "@tcp://127.0.0.1:*", NULL);
        const char *endpoint = queue ? strrchr (zq_queue_endpoint (queue), ':') : NULL;
        int port = endpoint ? atoi (endpoint + 1) : 0;
        ssize_t written = write (pipe_fds[1], &port, sizeof port);
        zq_queue_destroy (&queue);
        _exit (written == (ssize_t)sizeof port ? 0 : 1);
    }
    close (pipe_fds[1]);
    int port = 0;
    assert_int_equal (read (pipe_fds[0], &port, sizeof port), (ssize_t)sizeof port);
    close (pipe_fds[0]);
    int status = 0;
    assert_int_equal (waitpid (pid, &status, 0), pid);
    assert_true (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    assert_true (port >= 49152 && port <= 65535);
    return port;
}

//  Eight children, one after the other (each gone before the next
//  starts): at most one of them takes the port of the one before. A
//  random pick from 16,384 ports is the same about once in 16,000.
static void
test_ports_differ_between_processes (void **state)
{
    (void)state;
    int previous = s_child_port ();
    int same = 0;
    for (int child = 1; child < 8; child++) {
        int port = s_child_port ();
        if (port == previous)
            same++;
        previous = port;
    }
    assert_true (same <= 1);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_ports_differ_between_processes),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
