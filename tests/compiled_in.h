/*  =========================================================================
    compiled_in.h - for a test program that compiles an internal module
    in (its code is hidden in the library): cmocka, the zqi_panic that
    a ZQ_ASSERT in that code calls, which fails the test that reached it,
    and, in the build that counts copies (--enable-copy-counters), a
    zqi_count that counts nothing (the library's, in zq_library.c, is not
    compiled in; these programs read no counts). Included once, by the
    program's one source file.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_TESTS_COMPILED_IN_H_INCLUDED
#define ZQ_TESTS_COMPILED_IN_H_INCLUDED

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

void
zqi_panic (const char *file, int line, const char *what)
{
    fail_msg ("assertion failed at %s:%d: %s", file, line, what);
    abort ();
}

#ifdef ZQ_COUNT_COPIES
void
zqi_count (zqi_count_t kind)
{
    (void)kind;
}
#endif

#endif
