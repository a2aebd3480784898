/*  =========================================================================
    zq_internal - declarations shared between zq's own source files.
    Never installed; nothing here is part of the API.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_INTERNAL_H_INCLUDED
#define ZQ_INTERNAL_H_INCLUDED

#include "config.h"
#include "zq.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Invariants only: a failed ZQ_ASSERT is a bug in zq, never a reaction to
//  input from the network, a file or the caller.
#define ZQ_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            zqi_panic (__FILE__, __LINE__, #cond);                                                 \
    } while (0)
void zqi_panic (const char *file, int line, const char *what) __attribute__ ((noreturn));

//  Sets errno to errnum and returns -1 (for "return zqi_fail (ZQ_EPROTO);").
static inline int
zqi_fail (int errnum)
{
    errno = errnum;
    return -1;
}

//  Logs one line through the handler set with zq_set_log_handler, if any.
void zqi_log (zq_log_level_t level, const char *format, ...) __attribute__ ((format (printf, 2, 3)));

//  Checks that data holds well-formed msgpack: exactly one object if
//  used_p is NULL, or the first object (its length stored in *used_p)
//  otherwise. Every declared length is checked against the bytes present
//  and nesting is limited to max_depth; nothing is allocated. Returns 0, or
//  -1 with errno ZQ_EPROTO (truncated, trailing bytes, reserved byte 0xc1)
//  or ZQ_EDEPTH.
int zqi_msgpack_check (const void *data, size_t size, size_t *used_p, int max_depth);

//  Replaces the body of self with data (size bytes, from malloc), taking
//  ownership without copying or checking: the caller built it and vouches
//  for it being one msgpack object within ZQ_MSG_MAX_DEPTH.
void zqi_msg_take_body (zq_msg_t *self, void *data, size_t size);

#endif
