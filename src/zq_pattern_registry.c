/*  =========================================================================
    zq_pattern_registry - the patterns zq is built with, found by name.
    Adding a pattern: one line in s_patterns and its declaration in
    src/zq_pattern.h.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_pattern.h"

static const zq_pattern_t *const s_patterns[] = {
    &zqi_pattern_pipeline,
    &zqi_pattern_pubsub,
    &zqi_pattern_rpc,
    &zqi_pattern_reliable,
};
#define S_COUNT (sizeof s_patterns / sizeof s_patterns[0])

const zq_pattern_t *
zqi_pattern_lookup (const char *name)
{
    if (name)
        for (size_t i = 0; i < S_COUNT; i++)
            if (strcmp (s_patterns[i]->name, name) == 0)
                return s_patterns[i];
    return NULL;
}

const zq_option_info_t *
zqi_pattern_options (size_t index)
{
    static const zq_option_info_t none = {NULL, ZQ_OPTION_INT, 0, NULL, 0, 0, NULL, NULL};
    if (index >= S_COUNT)
        return NULL;
    return s_patterns[index]->options ? s_patterns[index]->options : &none;
}
