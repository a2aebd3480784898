/*  =========================================================================
    zqd_fatal - what zqd leaves on stderr when it dies of a fault: the
    signal and the stack of the thread that took it, before the signal's
    own action (a core dump, or the end of the process) goes on as before.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQD_FATAL_H_INCLUDED
#define ZQD_FATAL_H_INCLUDED

//  For SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT (glibc's own checks of
//  the heap abort): a handler that writes one line "zqd: fatal signal N
//  (NAME), stack of the thread that took it:" and the frames (one per
//  line, as backtrace_symbols_fd writes them) to stderr, then raises the
//  signal again with its default action. A report that takes more than
//  5 s (a lock the dying thread holds) is ended by SIGALRM, whether zqd
//  was started with SIGALRM ignored or blocked or not. A thread that
//  overflowed its stack dies without a report (the handler has no stack
//  of its own to run on). A signal another component already handles (a
//  sanitizer's runtime) is left to it. Call once, before the threads
//  start. Returns 0, or -1 with errno if a handler could not be set (those
//  set stay).
int zqd_fatal_report_install (void);

#endif
