/*  =========================================================================
    test_zqd_fatal - zqd's report of a fatal signal (src/tools/zqd/
    zqd_fatal.c, compiled into this program), in a child process each
    time: a report ends with the signal's own action (as tests/test_zqd.sh
    sees of zqd itself; here it also shows that the wrapper below passes
    the frames through), and a report that hangs (here: writing the frames
    never returns, as when the dying thread holds a lock the report needs)
    is ended by SIGALRM after about 5 s, its first line written, instead of
    leaving zqd hung, even in a process started with SIGALRM ignored and
    blocked.

    SIGABRT is the signal: the sanitizers' runtimes leave it alone (they
    take SIGSEGV, which zqd's report then leaves to them).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../src/tools/zqd/zqd_fatal.h"

//  Longest wait for a child to end (the report's own limit is 5 s).
#define S_WAIT_MS 20000

#define S_FIRST_LINE "zqd: fatal signal 6 (SIGABRT), stack of the thread that took it:\n"

//  The report's frames are written through -Wl,--wrap (Makefile.am):
//  with s_hang set, the write never returns.
static volatile sig_atomic_t s_hang;
void __real_backtrace_symbols_fd (void *const *frames, int count, int fd);
void __wrap_backtrace_symbols_fd (void *const *frames, int count, int fd);

void
__wrap_backtrace_symbols_fd (void *const *frames, int count, int fd)
{
    while (s_hang)
        pause ();
    __real_backtrace_symbols_fd (frames, count, fd);
}

static int64_t
s_now_ms (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

typedef struct {
    int status;         //  as waitpid gives it
    int64_t elapsed_ms; //  from the signal to the child's end
    char err[8192];     //  what the child wrote on stderr
} s_ended_t;

//  Runs a child that installs the report and raises SIGABRT (with its
//  report hanging if hang, and SIGALRM ignored and blocked first if
//  deaf); collects its stderr and how it ended.
static void
s_crash_child (bool hang, bool deaf, s_ended_t *ended)
{
    memset (ended, 0, sizeof *ended);
    int pipe_fds[2];
    assert_int_equal (pipe (pipe_fds), 0);
    int64_t started = s_now_ms ();
    pid_t pid = fork ();
    assert_true (pid >= 0);
    if (pid == 0) {
        struct rlimit no_core = {0, 0};
        setrlimit (RLIMIT_CORE, &no_core);
        dup2 (pipe_fds[1], STDERR_FILENO);
        close (pipe_fds[0]);
        close (pipe_fds[1]);
        s_hang = hang;
        if (deaf) {
            signal (SIGALRM, SIG_IGN);
            sigset_t alarm_only;
            sigemptyset (&alarm_only);
            sigaddset (&alarm_only, SIGALRM);
            sigprocmask (SIG_BLOCK, &alarm_only, NULL);
        }
        if (zqd_fatal_report_install ())
            _exit (3);
        raise (SIGABRT);
        _exit (4); //  not reached: the report raises it again
    }
    close (pipe_fds[1]);
    size_t size = 0;
    int64_t until = started + S_WAIT_MS;
    while (s_now_ms () < until) {
        struct pollfd item = {.fd = pipe_fds[0], .events = POLLIN};
        int64_t left = until - s_now_ms ();
        if (poll (&item, 1, left > 0 ? (int)left : 0) <= 0)
            continue;
        ssize_t got = read (pipe_fds[0], ended->err + size, sizeof ended->err - 1 - size);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break; //  the end: every writer is gone
        size += (size_t)got;
    }
    close (pipe_fds[0]);
    pid_t reaped = 0;
    while ((reaped = waitpid (pid, &ended->status, WNOHANG)) == 0 && s_now_ms () < until)
        poll (NULL, 0, 10);
    ended->elapsed_ms = s_now_ms () - started;
    if (reaped != pid) {
        kill (pid, SIGKILL);
        waitpid (pid, NULL, 0);
        fail_msg ("the child did not end within %d ms; it wrote: %s", S_WAIT_MS, ended->err);
    }
}

//  A report that completes: the first line, frames, then the signal's
//  own end, at once.
static void
test_a_report_ends_by_its_signal (void **state)
{
    s_ended_t ended;
    s_crash_child (false, false, &ended);
    assert_true (WIFSIGNALED (ended.status));
    assert_int_equal (WTERMSIG (ended.status), SIGABRT);
    assert_memory_equal (ended.err, S_FIRST_LINE, strlen (S_FIRST_LINE));
    assert_true (strlen (ended.err) > strlen (S_FIRST_LINE)); //  the frames
    assert_true (ended.elapsed_ms < 4000);
}

//  A report stuck writing its frames: SIGALRM ends the process after
//  about 5 s (not before 4, well within S_WAIT_MS), the first line out;
//  with SIGALRM ignored and blocked before as well.
static void
s_assert_ended_by_sigalrm (bool deaf)
{
    s_ended_t ended;
    s_crash_child (true, deaf, &ended);
    if (!WIFSIGNALED (ended.status) || WTERMSIG (ended.status) != SIGALRM)
        fail_msg ("the child ended with status 0x%x, not by SIGALRM; it wrote: %s", ended.status,
                  ended.err);
    assert_string_equal (ended.err, S_FIRST_LINE);
    assert_in_range (ended.elapsed_ms, 4000, 15000);
}

static void
test_a_hung_report_ends_by_sigalrm (void **state)
{
    s_assert_ended_by_sigalrm (false);
}

static void
test_sigalrm_ignored_and_blocked_still_ends_it (void **state)
{
    s_assert_ended_by_sigalrm (true);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_a_report_ends_by_its_signal),
        cmocka_unit_test (test_a_hung_report_ends_by_sigalrm),
        cmocka_unit_test (test_sigalrm_ignored_and_blocked_still_ends_it),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
