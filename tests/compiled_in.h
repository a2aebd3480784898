/*  =========================================================================
    compiled_in.h - for a test program that compiles an internal module
    in (its code is hidden in the library): cmocka, and the zqi_panic that
    a ZQ_ASSERT in that code calls, which fails the test that reached it.
    Included once, by the program's one source file.

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

#endif
