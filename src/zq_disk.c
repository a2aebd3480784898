/*  =========================================================================
    zq_disk - the free-space watermark of a spool's filesystem: asks
    statvfs at most once per ZQI_DISK_CHECK_MS, or sooner when
    ZQI_DISK_CHECK_BYTES were written since the last look, never per
    message.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_internal.h"
#include <sys/statvfs.h>

void
zqi_disk_watch_init (zqi_disk_watch_t *watch, const char *path, uint64_t min_free_bytes)
{
    memset (watch, 0, sizeof *watch);
    watch->path = path;
    watch->min_free_bytes = path && *path ? min_free_bytes : 0;
    watch->free_bytes = UINT64_MAX;
}

bool
zqi_disk_low (zqi_disk_watch_t *watch, int64_t now_ms, size_t bytes)
{
    if (!watch->min_free_bytes)
        return false;
    watch->written += bytes;
    if (watch->checked && now_ms < watch->next_check_ms && watch->written < ZQI_DISK_CHECK_BYTES)
        return watch->low;
    watch->checked = true;
    watch->next_check_ms = now_ms + ZQI_DISK_CHECK_MS;
    watch->written = 0;
    struct statvfs info;
    if (statvfs (watch->path, &info))
        return watch->low; //  unknown: keep what was last seen
    watch->free_bytes = (uint64_t)info.f_bavail * (uint64_t)info.f_frsize;
    bool low = watch->free_bytes < watch->min_free_bytes;
    if (low != watch->low)
        zqi_log (low ? ZQ_LOG_WARNING : ZQ_LOG_NOTICE,
                 low ? "%s: %" PRIu64 " bytes free, under min_free_bytes (%" PRIu64
                       "): new messages are refused until space returns"
                     : "%s: %" PRIu64 " bytes free, min_free_bytes (%" PRIu64
                       ") reached again: new messages are taken",
                 watch->path, watch->free_bytes, watch->min_free_bytes);
    watch->low = low;
    return low;
}
