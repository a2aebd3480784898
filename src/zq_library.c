/*  =========================================================================
    zq_library - error texts, the log hook, the version.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_internal.h"
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>

const char *
zq_strerror (int errnum)
{
    switch (errnum) {
        case ZQ_EPROTO:
            return "malformed message";
        case ZQ_ETOOBIG:
            return "message or field exceeds the size limit";
        case ZQ_EVERSION:
            return "unsupported protocol version";
        case ZQ_EDEPTH:
            return "msgpack nested too deeply";
        case ZQ_EJSON:
            return "invalid JSON, or msgpack with no JSON form";
        case ZQ_ETYPE:
            return "value has another type than asked for";
        case ZQ_ECORRUPT:
            return "stored data is corrupt";
        case ZQ_EFULL:
            return "storage is full";
        case ZQ_ETIMEDOUT:
            return "operation timed out";
        case ZQ_ENOTFOUND:
            return "not found";
        case ZQ_ELIMIT:
            return "configured limit reached";
        default:
            //  zmq_strerror knows libzmq's codes and defers to strerror.
            return zmq_strerror (errnum);
    }
}

//  The log hook is the one piece of process-wide state: set by the host
//  program, read by every zq object. A mutex keeps handler and argument
//  paired; the handler itself is called outside it.
static pthread_mutex_t s_log_mutex = PTHREAD_MUTEX_INITIALIZER;
static zq_log_fn *s_log_fn = NULL;
static void *s_log_arg = NULL;
static zq_log_level_t s_log_max_level = ZQ_LOG_ERROR;

void
zq_set_log_handler (zq_log_fn *fn, void *arg, zq_log_level_t max_level)
{
    pthread_mutex_lock (&s_log_mutex);
    s_log_fn = fn;
    s_log_arg = arg;
    s_log_max_level = max_level;
    pthread_mutex_unlock (&s_log_mutex);
}

bool
zqi_log_limit_due (zqi_log_limit_t *limit, int64_t now, int64_t interval_ms, uint64_t *skipped_p)
{
    if (limit->logged_ms && now - limit->logged_ms < interval_ms) {
        limit->skipped++;
        return false;
    }
    *skipped_p = limit->skipped;
    limit->logged_ms = now;
    limit->skipped = 0;
    return true;
}

void
zqi_logv (zq_log_level_t level, const char *prefix, uint64_t skipped, const char *format,
          va_list args)
{
    pthread_mutex_lock (&s_log_mutex);
    zq_log_fn *fn = s_log_fn;
    void *arg = s_log_arg;
    bool wanted = fn && level <= s_log_max_level;
    pthread_mutex_unlock (&s_log_mutex);
    if (!wanted)
        return;
    char text[512];
    size_t length = (size_t)snprintf (text, sizeof text, "%s", prefix);
    if (length < sizeof text)
        vsnprintf (text + length, sizeof text - length, format, args);
    length = strlen (text);
    if (skipped && length < sizeof text)
        snprintf (text + length, sizeof text - length, " (%" PRIu64 " more like it not shown)",
                  skipped);
    char line[512];
    zqi_text_escape (line, sizeof line, text);
    fn (level, line, arg);
}

void
zqi_log (zq_log_level_t level, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    zqi_logv (level, "", 0, format, args);
    va_end (args);
}

void
zqi_panic (const char *file, int line, const char *what)
{
    zqi_log (ZQ_LOG_ERROR, "zq: internal error at %s:%d: %s", file, line, what);
    fprintf (stderr, "zq: internal error at %s:%d: %s\n", file, line, what);
    abort ();
}

int
zq_version (void)
{
    return ZQ_VERSION;
}

//  ---- CZMQ and the host's signal handlers ----------------------------------

static pthread_mutex_t s_czmq_init_mutex = PTHREAD_MUTEX_INITIALIZER;

void
zqi_czmq_init (void)
{
    int saved_errno = errno;
    struct sigaction int_before, term_before, int_after, term_after;
    //  SIGINT and SIGTERM wait while CZMQ's handlers may stand in for the
    //  host's: one arriving then would only set zsys_interrupted, which the
    //  host never reads. Held back, it reaches the host's handler after.
    sigset_t stops, mask_before;
    sigemptyset (&stops);
    sigaddset (&stops, SIGINT);
    sigaddset (&stops, SIGTERM);
    pthread_sigmask (SIG_BLOCK, &stops, &mask_before);
    pthread_mutex_lock (&s_czmq_init_mutex);
    sigaction (SIGINT, NULL, &int_before);
    sigaction (SIGTERM, NULL, &term_before);
    zsys_init ();
    sigaction (SIGINT, NULL, &int_after);
    sigaction (SIGTERM, NULL, &term_after);
    if (int_after.sa_handler != int_before.sa_handler ||
        term_after.sa_handler != term_before.sa_handler)
        zsys_handler_set (NULL);
    pthread_mutex_unlock (&s_czmq_init_mutex);
    pthread_sigmask (SIG_SETMASK, &mask_before, NULL);
    errno = saved_errno;
}

#ifdef ZQ_COUNT_COPIES
//  Process-wide, as they count across every object (a test-only build).
static uint64_t s_counts[ZQI_COUNT_KINDS];

void
zqi_count (zqi_count_t kind)
{
    __atomic_fetch_add (&s_counts[kind], 1, __ATOMIC_RELAXED);
}

void
zqi_counts_take (uint64_t *counts)
{
    for (int kind = 0; kind < ZQI_COUNT_KINDS; kind++)
        counts[kind] = __atomic_exchange_n (&s_counts[kind], 0, __ATOMIC_RELAXED);
}
#endif
