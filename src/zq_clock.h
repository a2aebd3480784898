/*  =========================================================================
    zq_clock - the one place zq's timers read the time. Internal, never
    installed.

    A queue has a clock, given to its pattern in zq_pattern_ctx_t; every
    pattern timer reads it (visibility timeouts, nack delays, holds of
    delayed messages, TTL, dedupe windows, confirm timeouts and retries,
    pings and liveness, request deadlines). NULL means the real clock.

    Two kinds of time, never mixed:
      - monotonic ms (zqi_clock_mono): every timer, interval and due time
        kept in memory; it never jumps when the system time is set;
      - wall ms since the epoch (zqi_clock_wall): only to compare with a
        wall time that travels in a message (its creation time, the
        zq-not-before-ms header) or is shown to people (the age of the
        oldest message). Times written into messages and onto disk are
        wall times read by zq_msg and zq_spool themselves, which know
        nothing of queues and keep reading the system clock.
    What is not time stays off the clock: seeds mixed from zclock_usecs,
    and the caller's own timeouts (zq_queue_recv's timeout_ms), which say
    how long the caller's thread may wait in real time.

    A fake clock is for tests: it stands still until zqi_clock_advance
    moves it, so a test drives a 30 s visibility timeout in no time and
    without margins. Advancing wakes every queue that waits on the clock
    (zqi_clock_watch), so a thread blocked in zq_queue_recv re-evaluates
    its pattern's timers at once instead of sleeping for a wait computed
    from the fake time. The fake-clock calls are exported only so that the
    test programs can link them; they are not part of zq's API.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_CLOCK_H_INCLUDED
#define ZQ_CLOCK_H_INCLUDED

#include "zq_library.h"
#include <stdbool.h>
#include <stdint.h>

typedef struct _zqi_clock_t zqi_clock_t;

//  How many queues may watch one fake clock at a time.
#define ZQI_CLOCK_MAX_WATCHERS 64

//  Returns clock's monotonic time in ms (clock NULL: the system's).
ZQ_EXPORT int64_t zqi_clock_mono (const zqi_clock_t *clock);

//  The same, cheaply read (a fraction of zqi_clock_mono's cost): the
//  system's monotonic time as of its last tick (CLOCK_MONOTONIC_COARSE:
//  up to a few ms behind zqi_clock_mono, never ahead of it), or a fake
//  clock's own time. For choices that need no precision, never for a due
//  time.
int64_t zqi_clock_mono_coarse (const zqi_clock_t *clock);

//  Returns clock's wall time, ms since the epoch (clock NULL: the
//  system's).
ZQ_EXPORT int64_t zqi_clock_wall (const zqi_clock_t *clock);

//  Test only. Returns a new fake clock reading the system's monotonic and
//  wall times of now, standing still until advanced; NULL with errno
//  ENOMEM. Destroy it after every queue using it.
ZQ_EXPORT zqi_clock_t *zqi_clock_fake_new (void);

//  Test only. Destroys a fake clock and sets *self_p to NULL; safe twice.
ZQ_EXPORT void zqi_clock_destroy (zqi_clock_t **self_p);

//  Test only. Moves a fake clock's two times forward by ms (>= 0; others
//  are ignored) and wakes every watcher. Safe from any thread.
ZQ_EXPORT void zqi_clock_advance (zqi_clock_t *self, int64_t ms);

//  For a fake clock: returns a file descriptor that polls readable (POLLIN)
//  after each advance, to poll beside the queue's socket; -1 when clock is
//  real (nothing to watch) or, with errno, when no more watchers fit
//  (ZQI_CLOCK_MAX_WATCHERS, errno EMFILE) or the pipe failed. The caller
//  drains it with zqi_clock_drain and gives it back with zqi_clock_unwatch.
int zqi_clock_watch (zqi_clock_t *clock);

//  Reads away the wake-ups waiting on fd (from zqi_clock_watch).
void zqi_clock_drain (int fd);

//  Gives back fd from zqi_clock_watch (closes it); -1 is ignored.
void zqi_clock_unwatch (zqi_clock_t *clock, int fd);

#endif
