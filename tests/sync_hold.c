/*  =========================================================================
    sync_hold - a preload library for test_hostile_slow_disk.py: a disk
    that takes as long as the test says. While the file named by the
    environment variable ZQ_TEST_SYNC_HOLD exists, each fdatasync of the
    process waits until it is removed, then passes on to libc's; while one
    waits, NAME.held exists, so the test knows the commit has reached the
    disk. A wait gives up after S_LIMIT_S (a test that failed before
    removing the file does not leave zqd stuck).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define S_LIMIT_S 60

int fdatasync (int fd);

//  libc's, found once as the library loads (before any thread can call).
static int (*s_next) (int);

__attribute__ ((constructor)) static void
s_find_next (void)
{
    *(void **)&s_next = dlsym (RTLD_NEXT, "fdatasync");
}

int
fdatasync (int fd)
{
    const char *hold = getenv ("ZQ_TEST_SYNC_HOLD");
    if (hold && *hold && access (hold, F_OK) == 0) {
        char held[4096];
        snprintf (held, sizeof held, "%s.held", hold);
        int marker = open (held, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        if (marker >= 0)
            close (marker);
        //  Looks again each millisecond until the file is gone.
        struct timespec step = {0, 1000000};
        for (int n = 0; n < S_LIMIT_S * 1000 && access (hold, F_OK) == 0; n++)
            nanosleep (&step, NULL);
        unlink (held);
    }
    return s_next ? s_next (fd) : (int)syscall (SYS_fdatasync, fd);
}
