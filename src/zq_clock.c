/*  =========================================================================
    zq_clock - the real clock, and the fake one tests advance by hand.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_internal.h"
#include "zq_clock.h"
#include <fcntl.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

struct _zqi_clock_t {
    int64_t mono_ms; //  read and moved with __atomic: any thread may advance
    int64_t wall_ms;
    pthread_mutex_t mutex;                  //  guards the watchers
    int watch_read[ZQI_CLOCK_MAX_WATCHERS]; //  -1: free slot
    int watch_write[ZQI_CLOCK_MAX_WATCHERS];
};

int64_t
zqi_clock_mono (const zqi_clock_t *clock)
{
    if (!clock)
        return zclock_mono ();
    return __atomic_load_n (&clock->mono_ms, __ATOMIC_ACQUIRE);
}

int64_t
zqi_clock_mono_coarse (const zqi_clock_t *clock)
{
    if (clock)
        return __atomic_load_n (&clock->mono_ms, __ATOMIC_ACQUIRE);
    struct timespec now;
    if (clock_gettime (CLOCK_MONOTONIC_COARSE, &now))
        return zclock_mono ();
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

int64_t
zqi_clock_wall (const zqi_clock_t *clock)
{
    if (!clock)
        return zclock_time ();
    return __atomic_load_n (&clock->wall_ms, __ATOMIC_ACQUIRE);
}

zqi_clock_t *
zqi_clock_fake_new (void)
{
    zqi_clock_t *self = (zqi_clock_t *)calloc (1, sizeof (zqi_clock_t));
    if (!self) {
        errno = ENOMEM;
        return NULL;
    }
    self->mono_ms = zclock_mono ();
    self->wall_ms = zclock_time ();
    pthread_mutex_init (&self->mutex, NULL);
    for (int i = 0; i < ZQI_CLOCK_MAX_WATCHERS; i++)
        self->watch_read[i] = self->watch_write[i] = -1;
    return self;
}

void
zqi_clock_destroy (zqi_clock_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zqi_clock_t *self = *self_p;
    for (int i = 0; i < ZQI_CLOCK_MAX_WATCHERS; i++)
        if (self->watch_read[i] >= 0) {
            close (self->watch_read[i]);
            close (self->watch_write[i]);
        }
    pthread_mutex_destroy (&self->mutex);
    free (self);
    *self_p = NULL;
}

void
zqi_clock_advance (zqi_clock_t *self, int64_t ms)
{
    if (!self || ms < 0)
        return;
    __atomic_add_fetch (&self->wall_ms, ms, __ATOMIC_RELEASE);
    __atomic_add_fetch (&self->mono_ms, ms, __ATOMIC_RELEASE);
    pthread_mutex_lock (&self->mutex);
    for (int i = 0; i < ZQI_CLOCK_MAX_WATCHERS; i++)
        if (self->watch_write[i] >= 0) {
            //  A full pipe already holds a wake-up: EAGAIN is fine.
            ssize_t rc = write (self->watch_write[i], "", 1);
            (void)rc;
        }
    pthread_mutex_unlock (&self->mutex);
}

int
zqi_clock_watch (zqi_clock_t *clock)
{
    if (!clock)
        return -1;
    pthread_mutex_lock (&clock->mutex);
    int slot = 0;
    while (slot < ZQI_CLOCK_MAX_WATCHERS && clock->watch_read[slot] >= 0)
        slot++;
    int fds[2] = {-1, -1};
    int rc = -1;
    if (slot == ZQI_CLOCK_MAX_WATCHERS)
        errno = EMFILE;
    else if (pipe (fds) == 0) {
        for (int end = 0; end < 2; end++) {
            fcntl (fds[end], F_SETFL, fcntl (fds[end], F_GETFL) | O_NONBLOCK);
            fcntl (fds[end], F_SETFD, FD_CLOEXEC);
        }
        clock->watch_read[slot] = fds[0];
        clock->watch_write[slot] = fds[1];
        rc = fds[0];
    }
    pthread_mutex_unlock (&clock->mutex);
    return rc;
}

void
zqi_clock_drain (int fd)
{
    char buffer[64];
    //  Bounded: the pipe is non-blocking and only advance writes to it.
    for (int i = 0; i < 1024 && read (fd, buffer, sizeof buffer) > 0; i++)
        ;
}

void
zqi_clock_unwatch (zqi_clock_t *clock, int fd)
{
    if (!clock || fd < 0)
        return;
    pthread_mutex_lock (&clock->mutex);
    for (int i = 0; i < ZQI_CLOCK_MAX_WATCHERS; i++)
        if (clock->watch_read[i] == fd) {
            close (clock->watch_read[i]);
            close (clock->watch_write[i]);
            clock->watch_read[i] = clock->watch_write[i] = -1;
        }
    pthread_mutex_unlock (&clock->mutex);
}
