/*  =========================================================================
    zq_device_metrics - the snapshot the device's HTTP server shows: rows
    the actor publishes once a second, 10 minutes of per-second samples per
    queue, and their renderings as Prometheus text and JSON
    (src/device/zq_device_metrics.h).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_device_metrics.h"
#include <dirent.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

//  Rates in the rows are over this many of the last samples (seconds).
#define S_RATE_SAMPLES 10

//  One queue in the snapshot, with its history (a ring indexed like the
//  snapshot's sample times).
typedef struct {
    char *name;
    zqi_kind_t kind;
    zqi_row_t row;
    uint64_t samples; //  publishes this queue was part of
    uint64_t depth[ZQI_METRICS_HISTORY];
    uint64_t in[ZQI_METRICS_HISTORY];
    uint64_t out[ZQI_METRICS_HISTORY];
    bool staged;
} s_entry_t;

//  A row staged by zqi_metrics_queue, waiting for zqi_metrics_end.
typedef struct {
    char *name;
    zqi_kind_t kind;
    zqi_row_t row;
} s_staged_t;

struct _zqi_metrics_t {
    pthread_mutex_t mutex;
    char *spool_dir; //  NULL: in memory
    //  Under the mutex:
    zhashx_t *entries; //  name -> s_entry_t *
    zqi_metrics_device_t device;
    uint64_t publishes;
    int64_t time_ms[ZQI_METRICS_HISTORY]; //  wall-clock time of each publish
    const zqi_clock_t *clock;             //  the device's (NULL: the system's)
    //  The actor's only:
    s_staged_t *staged;
    size_t staged_count;
    size_t staged_capacity;
};

//  The REFUSE and ERROR codes by name (doc/PROTOCOL.md), index = code.
static const char *s_code_names[] = {NULL,       "full",    "invalid", "failed",
                                     "protocol", "version", "unknown", "not_held",
                                     "conflict", "limit",   "busy"};
#define S_CODES (sizeof s_code_names / sizeof s_code_names[0])

static void
s_entry_destroy (void **item_p)
{
    s_entry_t *entry = (s_entry_t *)*item_p;
    if (entry) {
        free (entry->name);
        free (entry);
        *item_p = NULL;
    }
}

zqi_metrics_t *
zqi_metrics_new (const char *spool_dir, const zqi_clock_t *clock)
{
    zqi_metrics_t *self = (zqi_metrics_t *)calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->clock = clock;
    pthread_mutex_init (&self->mutex, NULL);
    self->entries = zhashx_new ();
    if (spool_dir && *spool_dir)
        self->spool_dir = strdup (spool_dir);
    if (!self->entries || (spool_dir && *spool_dir && !self->spool_dir)) {
        zqi_metrics_destroy (&self);
        errno = ENOMEM;
        return NULL;
    }
    zhashx_set_destructor (self->entries, s_entry_destroy);
    return self;
}

static void
s_staged_clear (zqi_metrics_t *self)
{
    for (size_t index = 0; index < self->staged_count; index++)
        free (self->staged[index].name);
    self->staged_count = 0;
}

void
zqi_metrics_destroy (zqi_metrics_t **self_p)
{
    if (self_p && *self_p) {
        zqi_metrics_t *self = *self_p;
        s_staged_clear (self);
        free (self->staged);
        zhashx_destroy (&self->entries);
        free (self->spool_dir);
        pthread_mutex_destroy (&self->mutex);
        free (self);
        *self_p = NULL;
    }
}

void
zqi_metrics_begin (zqi_metrics_t *self)
{
    s_staged_clear (self);
}

void
zqi_metrics_queue (zqi_metrics_t *self, const char *name, zqi_kind_t kind, const zqi_row_t *row)
{
    if (self->staged_count == self->staged_capacity) {
        size_t capacity = self->staged_capacity ? self->staged_capacity * 2 : 64;
        s_staged_t *staged = (s_staged_t *)realloc (self->staged, capacity * sizeof *staged);
        if (!staged)
            return; //  this queue misses one sample
        self->staged = staged;
        self->staged_capacity = capacity;
    }
    s_staged_t *item = &self->staged[self->staged_count];
    item->name = strdup (name);
    if (!item->name)
        return;
    item->kind = kind;
    item->row = *row;
    self->staged_count++;
}

//  Ring slot of the sample taken back publishes ago (0: the newest).
static size_t
s_slot (const zqi_metrics_t *self, uint64_t back)
{
    return (size_t)((self->publishes - 1 - back) % ZQI_METRICS_HISTORY);
}

//  Samples an entry has, at most the ring's size.
static uint64_t
s_kept (const s_entry_t *entry)
{
    return entry->samples < ZQI_METRICS_HISTORY ? entry->samples : ZQI_METRICS_HISTORY;
}

void
zqi_metrics_end (zqi_metrics_t *self, const zqi_metrics_device_t *device)
{
    pthread_mutex_lock (&self->mutex);
    self->publishes++;
    size_t slot = s_slot (self, 0);
    self->time_ms[slot] = zqi_clock_wall (self->clock);
    self->device = *device;
    for (s_entry_t *entry = (s_entry_t *)zhashx_first (self->entries); entry;
         entry = (s_entry_t *)zhashx_next (self->entries))
        entry->staged = false;
    for (size_t index = 0; index < self->staged_count; index++) {
        s_staged_t *item = &self->staged[index];
        s_entry_t *entry = (s_entry_t *)zhashx_lookup (self->entries, item->name);
        if (!entry) {
            entry = (s_entry_t *)calloc (1, sizeof *entry);
            if (!entry)
                continue;
            entry->name = item->name;
            item->name = NULL;
            if (zhashx_insert (self->entries, entry->name, entry)) {
                free (entry->name);
                free (entry);
                continue;
            }
        }
        entry->kind = item->kind;
        entry->row = item->row;
        entry->depth[slot] = item->row.depth;
        entry->in[slot] = item->row.in;
        entry->out[slot] = item->row.out;
        entry->samples++;
        entry->staged = true;
        //  Rates over the last S_RATE_SAMPLES samples (or fewer).
        uint64_t back = s_kept (entry) - 1;
        if (back > S_RATE_SAMPLES)
            back = S_RATE_SAMPLES;
        entry->row.in_rate = entry->row.out_rate = 0;
        if (back > 0) {
            size_t old = s_slot (self, back);
            double seconds = (double)(self->time_ms[slot] - self->time_ms[old]) / 1000.0;
            if (seconds > 0) {
                entry->row.in_rate = (double)(entry->in[slot] - entry->in[old]) / seconds;
                entry->row.out_rate = (double)(entry->out[slot] - entry->out[old]) / seconds;
            }
        }
    }
    //  Queues gone since the last publish leave the snapshot.
    zlistx_t *gone = zlistx_new ();
    for (s_entry_t *entry = (s_entry_t *)zhashx_first (self->entries); entry && gone;
         entry = (s_entry_t *)zhashx_next (self->entries))
        if (!entry->staged)
            zlistx_add_end (gone, entry->name);
    for (char *name = gone ? (char *)zlistx_first (gone) : NULL; name;
         name = (char *)zlistx_next (gone))
        zhashx_delete (self->entries, name);
    zlistx_destroy (&gone);
    pthread_mutex_unlock (&self->mutex);
    s_staged_clear (self);
}

//  ---- Rendering (any thread) ------------------------------------------------
//  A render copies what it shows under the mutex, then formats without it:
//  the actor waits at most for the copy.

//  One queue as a render sees it, with up to history_s samples (oldest
//  first, in one block the copy owns).
typedef struct {
    char name[ZQ_QUEUE_NAME_MAX + 8];
    zqi_kind_t kind;
    zqi_row_t row;
    size_t samples;
    int64_t *time_ms; //  then depth, in, out: samples each
    uint64_t *depth, *in, *out;
} s_copy_t;

typedef struct {
    s_copy_t *queues;
    size_t count;
    zqi_metrics_device_t device;
    int64_t time_ms;
} s_view_t;

static int
s_compare_copies (const void *item1, const void *item2)
{
    return strcmp (((const s_copy_t *)item1)->name, ((const s_copy_t *)item2)->name);
}

static void
s_view_free (s_view_t *view)
{
    for (size_t index = 0; view->queues && index < view->count; index++)
        free (view->queues[index].time_ms);
    free (view->queues);
    view->queues = NULL;
}

//  Copies the snapshot into view, queues sorted by name, each with up to
//  history_s samples. Returns 0, or -1 on ENOMEM.
static int
s_view (zqi_metrics_t *self, size_t history_s, s_view_t *view)
{
    memset (view, 0, sizeof *view);
    pthread_mutex_lock (&self->mutex);
    size_t size = zhashx_size (self->entries);
    view->queues = (s_copy_t *)calloc (size ? size : 1, sizeof *view->queues);
    int rc = view->queues ? 0 : -1;
    for (s_entry_t *entry = (s_entry_t *)zhashx_first (self->entries); entry && rc == 0;
         entry = (s_entry_t *)zhashx_next (self->entries)) {
        s_copy_t *copy = &view->queues[view->count];
        snprintf (copy->name, sizeof copy->name, "%s", entry->name);
        copy->kind = entry->kind;
        copy->row = entry->row;
        uint64_t kept = s_kept (entry);
        copy->samples = (size_t)(kept < history_s ? kept : history_s);
        if (copy->samples) {
            copy->time_ms = (int64_t *)malloc (copy->samples * 4 * sizeof (uint64_t));
            if (!copy->time_ms) {
                rc = -1;
                break;
            }
            copy->depth = (uint64_t *)(copy->time_ms + copy->samples);
            copy->in = copy->depth + copy->samples;
            copy->out = copy->in + copy->samples;
            for (size_t index = 0; index < copy->samples; index++) {
                size_t slot = s_slot (self, copy->samples - 1 - index);
                copy->time_ms[index] = self->time_ms[slot];
                copy->depth[index] = entry->depth[slot];
                copy->in[index] = entry->in[slot];
                copy->out[index] = entry->out[slot];
            }
        }
        view->count++;
    }
    view->device = self->device;
    view->time_ms = self->publishes ? self->time_ms[s_slot (self, 0)] : 0;
    pthread_mutex_unlock (&self->mutex);
    if (rc) {
        s_view_free (view);
        errno = ENOMEM;
        return -1;
    }
    qsort (view->queues, view->count, sizeof *view->queues, s_compare_copies);
    return 0;
}

//  One per-queue metric: a field of zqi_row_t, shown times scale.
typedef struct {
    const char *name;
    const char *type;
    const char *help;
    size_t offset;
    double scale; //  0: the integer as it is
} s_family_t;

#define S_ROW(field_) offsetof (zqi_row_t, field_)
static const s_family_t s_families[] = {
    {"zq_queue_depth", "gauge", "Messages waiting: ready, in flight and delayed.", S_ROW (depth),
     0},
    {"zq_queue_ready", "gauge", "Messages ready for delivery.", S_ROW (ready), 0},
    {"zq_queue_in_flight", "gauge", "Messages delivered and not yet acked.", S_ROW (in_flight), 0},
    {"zq_queue_delayed", "gauge", "Messages waiting for their not-before time.", S_ROW (delayed),
     0},
    {"zq_queue_bytes", "gauge", "Bytes the queue holds, in memory and in its spool.", S_ROW (bytes),
     0},
    {"zq_queue_spool_bytes", "gauge", "Bytes the queue's spool segments take.", S_ROW (spool_bytes),
     0},
    {"zq_queue_consumers", "gauge", "Consumers subscribed.", S_ROW (consumers), 0},
    {"zq_queue_oldest_age_seconds", "gauge", "Age of the oldest ready message (0: none).",
     S_ROW (oldest_age_ms), 0.001},
    {"zq_queue_dead", "gauge", "Messages waiting in the queue's dead-letter queue NAME.dead.",
     S_ROW (dead), 0},
    {"zq_queue_in_total", "counter",
     "Messages accepted (queue: stored; stream, forward: received).", S_ROW (in), 0},
    {"zq_queue_out_total", "counter", "Messages done (queue: acked; stream, forward: sent).",
     S_ROW (out), 0},
    {"zq_queue_delivered_total", "counter", "Deliveries, first ones and again.", S_ROW (delivered),
     0},
    {"zq_queue_acked_total", "counter", "Deliveries acked.", S_ROW (acked), 0},
    {"zq_queue_nacked_total", "counter", "Deliveries nacked.", S_ROW (nacked), 0},
    {"zq_queue_redelivered_total", "counter", "Deliveries of messages delivered before.",
     S_ROW (redelivered), 0},
    {"zq_queue_timeouts_total", "counter", "Deliveries whose visibility timeout passed.",
     S_ROW (timeouts), 0},
    {"zq_queue_dead_lettered_total", "counter", "Messages moved to the dead-letter queue.",
     S_ROW (dead_lettered), 0},
    {"zq_queue_expired_total", "counter", "Messages dropped past their time to live.",
     S_ROW (expired), 0},
    {"zq_queue_duplicates_total", "counter", "PUTs confirmed again without storing.",
     S_ROW (duplicates), 0},
    {"zq_queue_refused_total", "counter", "PUTs refused (storage full or failed, id conflict).",
     S_ROW (refused), 0},
    {"zq_queue_dropped_total", "counter", "Messages dropped (stream: spool full; forward: HWM).",
     S_ROW (dropped), 0},
    {"zq_queue_gaps_total", "counter", "Messages missing from a publisher's sequence.",
     S_ROW (gaps), 0},
    {"zq_queue_errors_total", "counter", "Malformed messages received and skipped.", S_ROW (errors),
     0},
    {"zq_queue_spilled_total", "counter", "Stream messages written to the spool.", S_ROW (spilled),
     0},
};
#undef S_ROW

static uint64_t
s_field (const zqi_row_t *row, size_t offset)
{
    uint64_t value;
    memcpy (&value, (const char *)row + offset, sizeof value);
    return value;
}

static void
s_header (FILE *out, const char *name, const char *type, const char *help)
{
    fprintf (out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

//  Writes text as a label value: backslash, double quote and newline
//  escaped.
static void
s_label (FILE *out, const char *text)
{
    for (; *text; text++) {
        if (*text == '\\' || *text == '"')
            fprintf (out, "\\%c", *text);
        else if (*text == '\n')
            fputs ("\\n", out);
        else
            fputc (*text, out);
    }
}

//  Reads /proc/self: resident and virtual bytes, start time (Unix
//  seconds). Each is left as it was when it cannot be read.
static void
s_proc_self (uint64_t *resident_p, uint64_t *virtual_p, double *start_p)
{
    long page = sysconf (_SC_PAGESIZE);
    FILE *file = fopen ("/proc/self/statm", "r");
    unsigned long long size = 0, resident = 0;
    if (file) {
        if (fscanf (file, "%llu %llu", &size, &resident) == 2 && page > 0) {
            *virtual_p = size * (uint64_t)page;
            *resident_p = resident * (uint64_t)page;
        }
        fclose (file);
    }
    //  Field 22 of /proc/self/stat: start time in ticks after boot.
    char line[1024];
    unsigned long long start_ticks = 0, boot = 0;
    file = fopen ("/proc/self/stat", "r");
    if (file) {
        size_t got = fread (line, 1, sizeof line - 1, file);
        line[got] = '\0';
        fclose (file);
        char *field = strrchr (line, ')');
        //  After ") ": field 3 onward; the start time is the 20th of them.
        for (int index = 3; field && index <= 22; index++) {
            field = strchr (field + 1, ' ');
            if (field && index == 22)
                start_ticks = strtoull (field + 1, NULL, 10);
        }
    }
    file = fopen ("/proc/stat", "r");
    while (file && fgets (line, sizeof line, file))
        if (strncmp (line, "btime ", 6) == 0)
            boot = strtoull (line + 6, NULL, 10);
    if (file)
        fclose (file);
    long ticks = sysconf (_SC_CLK_TCK);
    if (boot && ticks > 0)
        *start_p = (double)boot + (double)start_ticks / (double)ticks;
}

static uint64_t
s_open_fds (void)
{
    uint64_t count = 0;
    DIR *dir = opendir ("/proc/self/fd");
    if (!dir)
        return 0;
    struct dirent *item;
    while ((item = readdir (dir)))
        if (item->d_name[0] != '.')
            count++;
    closedir (dir);
    return count > 0 ? count - 1 : 0; //  not the one opendir holds
}

static void
s_process_metrics (FILE *out)
{
    uint64_t resident = 0, virtual_bytes = 0;
    double start = 0;
    s_proc_self (&resident, &virtual_bytes, &start);
    struct rusage usage;
    double cpu = 0;
    if (getrusage (RUSAGE_SELF, &usage) == 0)
        cpu = (double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec / 1e6 +
              (double)usage.ru_stime.tv_sec + (double)usage.ru_stime.tv_usec / 1e6;
    struct rlimit limit;
    uint64_t max_fds = 0;
    if (getrlimit (RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY)
        max_fds = (uint64_t)limit.rlim_cur;
    s_header (out, "process_cpu_seconds_total", "counter", "User and system CPU time spent.");
    fprintf (out, "process_cpu_seconds_total %.6f\n", cpu);
    s_header (out, "process_resident_memory_bytes", "gauge", "Resident memory size.");
    fprintf (out, "process_resident_memory_bytes %" PRIu64 "\n", resident);
    s_header (out, "process_virtual_memory_bytes", "gauge", "Virtual memory size.");
    fprintf (out, "process_virtual_memory_bytes %" PRIu64 "\n", virtual_bytes);
    s_header (out, "process_open_fds", "gauge", "Open file descriptors.");
    fprintf (out, "process_open_fds %" PRIu64 "\n", s_open_fds ());
    s_header (out, "process_max_fds", "gauge", "Limit on open file descriptors.");
    fprintf (out, "process_max_fds %" PRIu64 "\n", max_fds);
    s_header (out, "process_start_time_seconds", "gauge",
              "Start time of the process since the Unix epoch.");
    fprintf (out, "process_start_time_seconds %.2f\n", start);
}

//  Free bytes for an unprivileged user on the spool's file system, or -1.
static int64_t
s_spool_free (zqi_metrics_t *self)
{
    struct statvfs stats;
    if (!self->spool_dir || statvfs (self->spool_dir, &stats))
        return -1;
    return (int64_t)((uint64_t)stats.f_bavail * (uint64_t)stats.f_frsize);
}

char *
zqi_metrics_text (zqi_metrics_t *self)
{
    s_view_t view;
    if (s_view (self, 0, &view))
        return NULL;
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&text, &size);
    if (!out) {
        s_view_free (&view);
        return NULL;
    }
    for (size_t family = 0; family < sizeof s_families / sizeof s_families[0]; family++) {
        const s_family_t *each = &s_families[family];
        s_header (out, each->name, each->type, each->help);
        for (size_t index = 0; index < view.count; index++) {
            const s_copy_t *queue = &view.queues[index];
            fprintf (out, "%s{queue=\"", each->name);
            s_label (out, queue->name);
            fprintf (out, "\",kind=\"%s\"} ", zqi_kind_name (queue->kind));
            uint64_t value = s_field (&queue->row, each->offset);
            if (each->scale)
                fprintf (out, "%.3f\n", (double)value * each->scale);
            else
                fprintf (out, "%" PRIu64 "\n", value);
        }
    }
    zqi_metrics_device_t device = view.device;
    s_view_free (&view);

    s_header (out, "zq_connections", "gauge", "Connections to the device's queue endpoint.");
    fprintf (out, "zq_connections %" PRIu64 "\n", device.connections);
    s_header (out, "zq_refusals_total", "counter",
              "PUT ids refused and ERRORs sent by the queue server, by reason (REFUSE and ERROR "
              "codes of doc/PROTOCOL.md).");
    for (size_t code = 1; code < S_CODES; code++)
        fprintf (out, "zq_refusals_total{reason=\"%s\"} %" PRIu64 "\n", s_code_names[code],
                 device.refusals[code]);
    s_header (out, "zq_server_errors_total", "counter",
              "Malformed or unwanted input the queue server received and skipped.");
    fprintf (out, "zq_server_errors_total %" PRIu64 "\n", device.server_errors);
    s_header (out, "zq_server_refused_total", "counter",
              "PUTs and CONSUMEs refused before reaching a queue (limits).");
    fprintf (out, "zq_server_refused_total %" PRIu64 "\n", device.server_refused);
    s_header (out, "zq_server_dedupe_forgotten_total", "counter",
              "PUT ids the dedupe window forgot before dedupe_window_ms (dedupe_max reached, or "
              "no memory): a resend of one is stored again.");
    fprintf (out, "zq_server_dedupe_forgotten_total %" PRIu64 "\n", device.dedupe_forgotten);
    s_header (out, "zq_admin_bad_commands_total", "counter",
              "Admin requests the device did not understand.");
    fprintf (out, "zq_admin_bad_commands_total %" PRIu64 "\n", device.bad_commands);
    int64_t free_bytes = s_spool_free (self);
    if (free_bytes >= 0) {
        s_header (out, "zq_spool_free_bytes", "gauge",
                  "Free bytes on the spool's file system (for an unprivileged user).");
        fprintf (out, "zq_spool_free_bytes %" PRId64 "\n", free_bytes);
    }
    uint64_t counts[ZQI_FSYNC_BUCKETS + 1], sum_ns = 0, total = 0;
    zqi_spool_fsync_histogram (counts, &sum_ns);
    s_header (out, "zq_spool_fsync_duration_seconds", "histogram",
              "Durations of the spools' group-commit fdatasync calls.");
    for (size_t bucket = 0; bucket <= ZQI_FSYNC_BUCKETS; bucket++) {
        total += counts[bucket];
        if (bucket < ZQI_FSYNC_BUCKETS)
            fprintf (out, "zq_spool_fsync_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                     zqi_fsync_bounds_s[bucket], total);
        else
            fprintf (out, "zq_spool_fsync_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n",
                     total);
    }
    fprintf (out, "zq_spool_fsync_duration_seconds_sum %.9f\n", (double)sum_ns / 1e9);
    fprintf (out, "zq_spool_fsync_duration_seconds_count %" PRIu64 "\n", total);
    s_process_metrics (out);
    if (fclose (out)) {
        free (text);
        return NULL;
    }
    return text;
}

//  Sets key to an integer in object.
static void
s_set_uint (json_t *object, const char *key, uint64_t value)
{
    json_object_set_new (object, key, json_integer ((json_int_t)value));
}

char *
zqi_metrics_json (zqi_metrics_t *self, size_t history_s)
{
    if (history_s > ZQI_METRICS_HISTORY)
        history_s = ZQI_METRICS_HISTORY;
    s_view_t view;
    if (s_view (self, history_s, &view))
        return NULL;
    json_t *root = json_object ();
    json_t *queues = json_array ();
    if (!root || !queues) {
        json_decref (root);
        json_decref (queues);
        s_view_free (&view);
        return NULL;
    }
    json_object_set_new (root, "queues", queues);
    json_object_set_new (root, "time_ms", json_integer (view.time_ms));
    for (size_t index = 0; index < view.count; index++) {
        const s_copy_t *copy = &view.queues[index];
        json_t *queue = json_object ();
        if (!queue)
            break;
        json_array_append_new (queues, queue);
        json_object_set_new (queue, "name", json_string (copy->name));
        json_object_set_new (queue, "kind", json_string (zqi_kind_name (copy->kind)));
        for (size_t family = 0; family < sizeof s_families / sizeof s_families[0]; family++) {
            const s_family_t *each = &s_families[family];
            //  The metric's name without "zq_queue_" and "_total".
            char key[64];
            snprintf (key, sizeof key, "%s", each->name + strlen ("zq_queue_"));
            size_t length = strlen (key);
            if (length > 6 && streq (key + length - 6, "_total"))
                key[length - 6] = '\0';
            uint64_t value = s_field (&copy->row, each->offset);
            if (each->scale)
                json_object_set_new (queue, key, json_real ((double)value * each->scale));
            else
                s_set_uint (queue, key, value);
        }
        json_object_set_new (queue, "in_rate", json_real (copy->row.in_rate));
        json_object_set_new (queue, "out_rate", json_real (copy->row.out_rate));
        if (history_s) {
            //  Oldest first: time_ms, depth and the in and out totals.
            json_t *history = json_object ();
            json_t *times = json_array (), *depth = json_array ();
            json_t *in = json_array (), *out = json_array ();
            for (size_t sample = 0; sample < copy->samples; sample++) {
                json_array_append_new (times, json_integer (copy->time_ms[sample]));
                json_array_append_new (depth, json_integer ((json_int_t)copy->depth[sample]));
                json_array_append_new (in, json_integer ((json_int_t)copy->in[sample]));
                json_array_append_new (out, json_integer ((json_int_t)copy->out[sample]));
            }
            json_object_set_new (history, "time_ms", times);
            json_object_set_new (history, "depth", depth);
            json_object_set_new (history, "in", in);
            json_object_set_new (history, "out", out);
            json_object_set_new (queue, "history", history);
        }
    }
    zqi_metrics_device_t device = view.device;
    s_view_free (&view);
    json_t *server = json_object ();
    json_t *refusals = json_object ();
    for (size_t code = 1; code < S_CODES; code++)
        s_set_uint (refusals, s_code_names[code], device.refusals[code]);
    json_object_set_new (server, "refusals", refusals);
    s_set_uint (server, "connections", device.connections);
    s_set_uint (server, "errors", device.server_errors);
    s_set_uint (server, "refused", device.server_refused);
    s_set_uint (server, "dedupe_forgotten", device.dedupe_forgotten);
    s_set_uint (server, "admin_bad_commands", device.bad_commands);
    int64_t free_bytes = s_spool_free (self);
    json_object_set_new (server, "spool_free_bytes",
                         free_bytes >= 0 ? json_integer (free_bytes) : json_null ());
    json_object_set_new (root, "device", server);
    char *text = json_dumps (root, JSON_COMPACT);
    json_decref (root);
    return text;
}
