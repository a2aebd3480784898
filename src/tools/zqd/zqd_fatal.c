/*  =========================================================================
    zqd_fatal - the report of a fatal signal on stderr (zqd_fatal.h).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zqd_fatal.h"
#include <errno.h>
#include <execinfo.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

//  The deepest stack reported.
#define S_FRAMES_MAX 64

//  The longest a report may take: past it, SIGALRM ends the process (a
//  report that waits on a lock the dying thread holds, as the dynamic
//  loader's may be while the heap's is taken, must not hang zqd).
#define S_REPORT_MAX_S 5

static const struct {
    int signum;
    const char *name;
} s_fatal[] = {{SIGSEGV, "SIGSEGV"},
               {SIGBUS, "SIGBUS"},
               {SIGILL, "SIGILL"},
               {SIGFPE, "SIGFPE"},
               {SIGABRT, "SIGABRT"}};

#define S_FATAL_COUNT (sizeof s_fatal / sizeof s_fatal[0])

//  Writes text to stderr, as the handler may: write(2) only.
static void
s_say (const char *text)
{
    size_t length = strlen (text);
    while (length) {
        ssize_t written = write (STDERR_FILENO, text, length);
        if (written < 0 && errno == EINTR)
            continue;
        if (written <= 0)
            return;
        text += written;
        length -= (size_t)written;
    }
}

//  The signal's number in decimal, into text (at least 12 bytes).
static void
s_decimal (int number, char *text)
{
    char digits[12];
    int count = 0;
    unsigned value = number < 0 ? 0u : (unsigned)number;
    do {
        digits[count++] = (char)('0' + value % 10);
        value /= 10;
    } while (value && count < (int)sizeof digits - 1);
    for (int i = 0; i < count; i++)
        text[i] = digits[count - 1 - i];
    text[count] = 0;
}

static void
s_report (int signum)
{
    //  Every fatal signal takes its default action from here on: a fault
    //  while reporting, or in another thread, ends the process at once.
    const char *name = "?";
    for (size_t i = 0; i < S_FATAL_COUNT; i++) {
        struct sigaction action;
        memset (&action, 0, sizeof action);
        action.sa_handler = SIG_DFL;
        sigemptyset (&action.sa_mask);
        sigaction (s_fatal[i].signum, &action, NULL);
        if (s_fatal[i].signum == signum)
            name = s_fatal[i].name;
    }
    //  The backstop works whatever SIGALRM's disposition was (an ignored
    //  signal stays ignored across exec, a blocked one across fork).
    struct sigaction alarm_default;
    memset (&alarm_default, 0, sizeof alarm_default);
    alarm_default.sa_handler = SIG_DFL;
    sigemptyset (&alarm_default.sa_mask);
    sigaction (SIGALRM, &alarm_default, NULL);
    sigset_t alarm_only;
    sigemptyset (&alarm_only);
    sigaddset (&alarm_only, SIGALRM);
    sigprocmask (SIG_UNBLOCK, &alarm_only, NULL);
    alarm (S_REPORT_MAX_S);
    char number[12];
    s_decimal (signum, number);
    s_say ("zqd: fatal signal ");
    s_say (number);
    s_say (" (");
    s_say (name);
    s_say ("), stack of the thread that took it:\n");
    void *frames[S_FRAMES_MAX];
    int count = backtrace (frames, S_FRAMES_MAX);
    backtrace_symbols_fd (frames, count, STDERR_FILENO);
    //  The default action is back and SA_NODEFER left the signal
    //  unblocked: raised again, it ends the process here as it would have
    //  (with its core dump, if any).
    raise (signum);
}

int
zqd_fatal_report_install (void)
{
    //  backtrace() loads the unwinder on its first call (a dlopen, which
    //  allocates): done here, not in a handler called from inside malloc.
    void *warm[1];
    backtrace (warm, 1);

    int rc = 0;
    for (size_t i = 0; i < S_FATAL_COUNT; i++) {
        struct sigaction before;
        if (sigaction (s_fatal[i].signum, NULL, &before) == -1) {
            rc = -1;
            continue;
        }
        if (before.sa_handler != SIG_DFL || (before.sa_flags & SA_SIGINFO))
            continue; //  handled already (a sanitizer's runtime)
        struct sigaction action;
        memset (&action, 0, sizeof action);
        action.sa_handler = s_report;
        sigemptyset (&action.sa_mask);
        action.sa_flags = SA_NODEFER;
        if (sigaction (s_fatal[i].signum, &action, NULL) == -1)
            rc = -1;
    }
    return rc;
}
