/*  =========================================================================
    zq_device_kinds - the device's queue kinds, found by kind or by name.
    Each kind is a const table of operations in its own file
    (zq_device_queue.c, zq_device_stream.c, zq_device_forward.c); adding
    a kind: its value in zqi_kind_t, its table, one line in s_kinds.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_device_internal.h"

static const zqi_kind_ops_t *const s_kinds[] = {
    &zqi_kind_queue,
    &zqi_kind_stream,
    &zqi_kind_forward,
};
#define S_COUNT (sizeof s_kinds / sizeof s_kinds[0])

const zqi_kind_ops_t *
zqi_kind_ops (zqi_kind_t kind)
{
    for (size_t i = 0; i < S_COUNT; i++)
        if (s_kinds[i]->kind == kind)
            return s_kinds[i];
    return NULL;
}

const char *
zqi_kind_name (zqi_kind_t kind)
{
    const zqi_kind_ops_t *ops = zqi_kind_ops (kind);
    return ops ? ops->name : "?";
}

zqi_kind_t
zqi_kind_lookup (const char *name)
{
    for (size_t i = 0; name && i < S_COUNT; i++)
        if (streq (name, s_kinds[i]->name))
            return s_kinds[i]->kind;
    return (zqi_kind_t)0;
}
