/*  =========================================================================
    zq_device_config - reads a device's ZPL configuration into
    zqi_device_config_t, rejecting anything it does not know with one line
    that names the key and says what is wrong. doc/DEVICE.md lists the keys.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_device_internal.h"
#include "zq_device_metrics.h"
#include <arpa/inet.h>
#include <ctype.h>
#include <limits.h>

#define S_DEFAULT_BIND            "tcp://127.0.0.1:5670"
#define S_DEFAULT_MEMORY_MESSAGES 10000
#define S_DEFAULT_HWM             1000
#define S_IPC_PATH_MAX            100

int
zqi_device_name_check (const char *name)
{
    //  The reliable pattern's rule for queue names, for every kind (a name
    //  is also a directory name under the spool); a dead-letter queue's
    //  name may be configured too.
    return zq_queue_name_check (name) < 0 ? -1 : 0;
}

//  Formats the error line and returns -1 with errno EINVAL.
static int s_error (char *error, size_t error_size, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

static int
s_error (char *error, size_t error_size, const char *format, ...)
{
    if (error && error_size) {
        va_list args;
        va_start (args, format);
        vsnprintf (error, error_size, format, args);
        va_end (args);
    }
    return zqi_fail (EINVAL);
}

static const char *
s_value (zconfig_t *item)
{
    const char *value = zconfig_value (item);
    return value ? value : "";
}

//  Parses a decimal integer in [min, max].
static int
s_parse_int (const char *path, const char *text, int64_t min, int64_t max, int64_t *value_p,
             char *error, size_t error_size)
{
    char *end = NULL;
    errno = 0;
    long long value = strtoll (text, &end, 10);
    if (!*text || errno || *end || value < min || value > max)
        return s_error (error, error_size, "%s: '%s' is not a whole number from %lld to %lld", path,
                        text, (long long)min, (long long)max);
    *value_p = value;
    return 0;
}

//  Replaces *field_p with a copy of value.
static int
s_set_string (char **field_p, const char *value)
{
    char *copy = strdup (value);
    if (!copy)
        return zqi_fail (ENOMEM);
    free (*field_p);
    *field_p = copy;
    return 0;
}

static void
s_queue_config_free (zqi_queue_config_t *self)
{
    if (self) {
        free (self->name);
        free (self->in);
        free (self->out);
        free (self);
    }
}

void
zqi_queue_config_destroy (zqi_queue_config_t **self_p)
{
    if (self_p && *self_p) {
        s_queue_config_free (*self_p);
        *self_p = NULL;
    }
}

static void
s_queue_config_destructor (void **item_p)
{
    zqi_queue_config_destroy ((zqi_queue_config_t **)item_p);
}

zqi_queue_config_t *
zqi_queue_config_new (const zqi_device_config_t *config, const char *name, zqi_kind_t kind)
{
    zqi_queue_config_t *self = (zqi_queue_config_t *)calloc (1, sizeof *self);
    if (!self)
        return NULL;
    const zqi_queue_config_t *defaults =
        kind == ZQI_KIND_FORWARD ? &config->forward_defaults : &config->stream_defaults;
    self->kind = kind;
    self->memory_messages = defaults->memory_messages;
    self->memory_bytes = defaults->memory_bytes;
    self->quota_bytes = defaults->quota_bytes;
    self->sndhwm = defaults->sndhwm;
    self->rcvhwm = defaults->rcvhwm;
    self->max_subscription_bytes = defaults->max_subscription_bytes;
    self->name = strdup (name);
    self->in = strdup ("");
    self->out = strdup ("");
    if (!self->name || !self->in || !self->out) {
        s_queue_config_free (self);
        return NULL;
    }
    return self;
}

//  The settings a stream or forward takes, in a queue's entry or in the
//  kind's defaults section. Returns 1 if key was one of them (0 if not),
//  -1 on a bad value.
static int
s_queue_setting (zqi_queue_config_t *queue, const char *path, const char *key, const char *value,
                 bool stream, char *error, size_t error_size)
{
    int64_t *field = NULL;
    int64_t min = 0, max = INT_MAX;
    if (streq (key, "sndhwm"))
        field = &queue->sndhwm;
    else if (streq (key, "rcvhwm"))
        field = &queue->rcvhwm;
    else if (stream && streq (key, "memory_messages")) {
        field = &queue->memory_messages;
        min = 1;
        max = 100000000;
    } else if (stream && streq (key, "memory_bytes")) {
        field = &queue->memory_bytes;
        min = 1;
        max = INT64_MAX;
    } else if (stream && streq (key, "quota_bytes")) {
        field = &queue->quota_bytes;
        max = INT64_MAX;
    } else if (!stream && streq (key, "max_subscription_bytes"))
        field = &queue->max_subscription_bytes;
    if (!field)
        return 0;
    return s_parse_int (path, value, min, max, field, error, error_size) ? -1 : 1;
}

//  Checks an endpoint list: each item binds (no '>').
static int
s_check_endpoints (const char *path, const char *value, bool required, char *error,
                   size_t error_size)
{
    if (!*value)
        return required ? s_error (error, error_size, "%s: an endpoint is required", path) : 0;
    const char *item = value;
    while (item) {
        const char *comma = strchr (item, ',');
        size_t length = comma ? (size_t)(comma - item) : strlen (item);
        if (length && *item == '@') {
            item++;
            length--;
        }
        if (length == 0)
            return s_error (error, error_size, "%s: empty endpoint in '%s'", path, value);
        if (*item == '>')
            return s_error (error, error_size, "%s: '%s': the device binds every endpoint (no '>')",
                            path, value);
        bool has_scheme = false;
        for (size_t index = 0; index + 3 <= length && !has_scheme; index++)
            has_scheme = memcmp (item + index, "://", 3) == 0;
        if (!has_scheme)
            return s_error (error, error_size,
                            "%s: '%.*s' is not an endpoint (tcp://HOST:PORT, ipc://PATH, "
                            "inproc://NAME)",
                            path, (int)length, item);
        item = comma ? comma + 1 : NULL;
    }
    return 0;
}

static int
s_parse_device (zqi_device_config_t *self, zconfig_t *section, bool *admin_given, char *error,
                size_t error_size)
{
    for (zconfig_t *item = zconfig_child (section); item; item = zconfig_next (item)) {
        const char *key = zconfig_name (item);
        const char *value = s_value (item);
        char path[256];
        snprintf (path, sizeof path, "device/%s", key);
        int rc = 0;
        if (streq (key, "bind")) {
            rc = s_check_endpoints (path, value, false, error, error_size);
            if (rc == 0)
                rc = s_set_string (&self->bind, value);
        } else if (streq (key, "admin")) {
            rc = s_check_endpoints (path, value, false, error, error_size);
            if (rc == 0)
                rc = s_set_string (&self->admin, value);
            *admin_given = true;
        } else if (streq (key, "http")) {
            char reason[256];
            if (*value && zqi_http_address_check (value, reason, sizeof reason))
                return s_error (error, error_size, "%s: %s", path, reason);
            rc = s_set_string (&self->http, value);
        } else if (streq (key, "spool"))
            rc = s_set_string (&self->spool, value);
        else if (streq (key, "insecure")) {
            if (!streq (value, "true") && !streq (value, "false"))
                return s_error (error, error_size, "%s: '%s' is not true or false", path, value);
            self->insecure = streq (value, "true");
        } else if (streq (key, "fsync")) {
            if (zq_spool_fsync_parse (value, &self->fsync))
                return s_error (error, error_size, "%s: '%s' is not always, interval or none", path,
                                value);
        } else if (streq (key, "fsync_interval_ms"))
            rc = s_parse_int (path, value, 1, 3600000, &self->fsync_interval_ms, error, error_size);
        else if (streq (key, "backlog_warning_ms"))
            rc = s_parse_int (path, value, 0, INT32_MAX, &self->backlog_warning_ms, error,
                              error_size);
        else if (streq (key, "min_free_bytes"))
            rc = s_parse_int (path, value, 0, INT64_MAX, &self->min_free_bytes, error, error_size);
        else if (streq (key, "curve")) {
            for (zconfig_t *curve = zconfig_child (item); curve; curve = zconfig_next (curve)) {
                const char *name = zconfig_name (curve);
                if (streq (name, "secret_cert"))
                    rc = s_set_string (&self->curve_secret_cert, s_value (curve));
                else if (streq (name, "clients"))
                    rc = s_set_string (&self->curve_clients, s_value (curve));
                else
                    return s_error (error, error_size,
                                    "device/curve/%s: unknown key (secret_cert, clients)", name);
                if (rc)
                    return rc;
            }
        } else
            return s_error (error, error_size,
                            "%s: unknown key (bind, admin, http, spool, fsync, "
                            "fsync_interval_ms, backlog_warning_ms, min_free_bytes, curve, "
                            "insecure)",
                            path);
        if (rc)
            return rc;
    }
    return 0;
}

static int
s_parse_queue_options (zqi_device_config_t *self, zconfig_t *section, char *error,
                       size_t error_size)
{
    for (zconfig_t *item = zconfig_child (section); item; item = zconfig_next (item)) {
        const char *key = zconfig_name (item);
        const char *value = s_value (item);
        if (!zq_options_lookup (key))
            return s_error (error, error_size,
                            "queue/%s: unknown queue option (zq options lists them)", key);
        if (strncmp (key, "curve_", 6) == 0)
            return s_error (error, error_size,
                            "queue/%s: the device's CURVE settings are device/curve/secret_cert "
                            "and device/curve/clients",
                            key);
        if (streq (key, "min_free_bytes"))
            return s_error (error, error_size,
                            "queue/min_free_bytes: the device's watermark is "
                            "device/min_free_bytes (it covers streams too)");
        if (zq_options_set (self->queue_options, key, value))
            return s_error (error, error_size, "queue/%s: '%s' is malformed or out of range", key,
                            value);
    }
    return 0;
}

//  The jetstream section: each key is the reliable server's option
//  jetstream_KEY, for every queue of kind queue.
static int
s_parse_jetstream (zqi_device_config_t *self, zconfig_t *section, char *error, size_t error_size)
{
#ifndef HAVE_NATS
    (void)self;
    (void)section;
    return s_error (error, error_size,
                    "jetstream: this zqd was built without libnats (configure --with-nats)");
#else
    static const char *keys[] = {"servers", "credentials", "tls_ca", "tls_cert",
                                 "tls_key", "replicas",    "prefix"};
    for (zconfig_t *item = zconfig_child (section); item; item = zconfig_next (item)) {
        const char *key = zconfig_name (item);
        bool known = false;
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
            known |= streq (key, keys[i]);
        if (!known)
            return s_error (error, error_size,
                            "jetstream/%s: unknown key (servers, credentials, tls_ca, tls_cert, "
                            "tls_key, replicas, prefix)",
                            key);
        char option[64];
        snprintf (option, sizeof option, "jetstream_%s", key);
        if (zq_options_set (self->queue_options, option, s_value (item)))
            return s_error (error, error_size, "jetstream/%s: '%s' is malformed or out of range",
                            key, s_value (item));
    }
    const char *servers = zq_options_get_str (self->queue_options, "jetstream_servers");
    if (!servers || !*servers)
        return s_error (error, error_size, "jetstream/servers: required (URL[,URL...])");
    return 0;
#endif
}

static int
s_parse_defaults (zqi_queue_config_t *defaults, zconfig_t *section, bool stream, char *error,
                  size_t error_size)
{
    for (zconfig_t *item = zconfig_child (section); item; item = zconfig_next (item)) {
        char path[256];
        snprintf (path, sizeof path, "%s/%s", stream ? "stream" : "forward", zconfig_name (item));
        int rc = s_queue_setting (defaults, path, zconfig_name (item), s_value (item), stream,
                                  error, error_size);
        if (rc < 0)
            return -1;
        if (rc == 0)
            return s_error (error, error_size, "%s: unknown key (%s)", path,
                            stream ? "memory_messages, memory_bytes, quota_bytes, sndhwm, rcvhwm"
                                   : "sndhwm, rcvhwm, max_subscription_bytes");
    }
    return 0;
}

static int
s_parse_queue (zqi_device_config_t *self, zconfig_t *entry, char *error, size_t error_size)
{
    const char *name = zconfig_name (entry);
    if (zqi_device_name_check (name))
        return s_error (error, error_size,
                        "queues/%s: not a queue name: 1 to %d letters, digits, '.', '_' or "
                        "'-', not starting or ending with '.', without '..' (zq_queue.h)",
                        name, ZQ_QUEUE_NAME_MAX);
    for (void *other = zlistx_first (self->queues); other; other = zlistx_next (self->queues))
        if (streq (((zqi_queue_config_t *)other)->name, name))
            return s_error (error, error_size, "queues/%s: configured twice", name);
    const char *kind_name = zconfig_get (entry, "kind", "queue");
    zqi_kind_t kind = zqi_kind_lookup (kind_name ? kind_name : "queue");
    if (!kind)
        return s_error (error, error_size, "queues/%s/kind: '%s' is not queue, stream or forward",
                        name, kind_name);
    zqi_queue_config_t *queue = zqi_queue_config_new (self, name, kind);
    if (!queue)
        return zqi_fail (ENOMEM);
    zlistx_add_end (self->queues, queue);
    for (zconfig_t *item = zconfig_child (entry); item; item = zconfig_next (item)) {
        const char *key = zconfig_name (item);
        const char *value = s_value (item);
        char path[512];
        snprintf (path, sizeof path, "queues/%s/%s", name, key);
        if (streq (key, "kind"))
            continue;
        if (kind != ZQI_KIND_QUEUE && (streq (key, "in") || streq (key, "out"))) {
            if (s_check_endpoints (path, value, true, error, error_size))
                return -1;
            if (s_set_string (streq (key, "in") ? &queue->in : &queue->out, value))
                return -1;
            continue;
        }
        int rc = kind == ZQI_KIND_QUEUE
                     ? 0
                     : s_queue_setting (queue, path, key, value, kind == ZQI_KIND_STREAM, error,
                                        error_size);
        if (rc < 0)
            return -1;
        if (rc == 0)
            return s_error (error, error_size, "%s: unknown key for a %s (%s)", path,
                            zqi_kind_name (kind),
                            kind == ZQI_KIND_QUEUE ? "kind; queue options go in the queue section"
                            : kind == ZQI_KIND_STREAM
                                ? "kind, in, out, memory_messages, memory_bytes, quota_bytes, "
                                  "sndhwm, rcvhwm"
                                : "kind, in, out, sndhwm, rcvhwm, max_subscription_bytes");
    }
    if (kind != ZQI_KIND_QUEUE && (!*queue->in || !*queue->out))
        return s_error (error, error_size, "queues/%s: a %s needs both in and out endpoints", name,
                        zqi_kind_name (kind));
    return 0;
}

void
zqi_device_config_destroy (zqi_device_config_t **self_p)
{
    if (self_p && *self_p) {
        zqi_device_config_t *self = *self_p;
        free (self->bind);
        free (self->admin);
        free (self->http);
        free (self->spool);
        free (self->curve_secret_cert);
        free (self->curve_clients);
        zqi_access_destroy (&self->access);
        zq_options_destroy (&self->queue_options);
        zlistx_destroy (&self->queues);
        free (self);
        *self_p = NULL;
    }
}

//  True if the endpoint (length bytes at item, no '@') can only be reached
//  from this machine: ipc://, inproc://, or tcp:// on 127.0.0.0/8, ::1 or
//  localhost. Wildcards (*, 0.0.0.0, ::), other addresses, interface
//  names and every other transport are not.
static bool
s_endpoint_is_local (const char *item, size_t length)
{
    if ((length >= 6 && memcmp (item, "ipc://", 6) == 0) ||
        (length >= 9 && memcmp (item, "inproc://", 9) == 0))
        return true;
    if (length < 6 || memcmp (item, "tcp://", 6) != 0)
        return false;
    const char *host = item + 6;
    const char *end = item + length;
    const char *colon = NULL;
    for (const char *cursor = host; cursor < end; cursor++)
        if (*cursor == ':')
            colon = cursor;
    if (!colon)
        return false;
    size_t host_length = (size_t)(colon - host);
    if (host_length >= 2 && host[0] == '[' && host[host_length - 1] == ']') {
        host++;
        host_length -= 2;
    }
    char text[INET6_ADDRSTRLEN + 1];
    if (host_length == 0 || host_length >= sizeof text)
        return false;
    memcpy (text, host, host_length);
    text[host_length] = '\0';
    if (streq (text, "localhost"))
        return true;
    uint8_t address[16];
    if (inet_pton (AF_INET, text, address) == 1)
        return address[0] == 127;
    if (inet_pton (AF_INET6, text, address) == 1) {
        static const uint8_t loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        return memcmp (address, loopback, 16) == 0 ||
               (memcmp (address, mapped, 12) == 0 && address[12] == 127);
    }
    return false;
}

//  Finds the first endpoint in the list value that is not local (see
//  s_endpoint_is_local) and copies it into exposed. True if there is one.
static bool
s_endpoints_exposed (const char *value, char *exposed, size_t exposed_size)
{
    for (const char *item = value; item && *item;) {
        const char *comma = strchr (item, ',');
        size_t length = comma ? (size_t)(comma - item) : strlen (item);
        const char *start = item;
        if (length && *start == '@') {
            start++;
            length--;
        }
        if (length && !s_endpoint_is_local (start, length)) {
            snprintf (exposed, exposed_size, "%.*s", (int)length, start);
            return true;
        }
        item = comma ? comma + 1 : NULL;
    }
    return false;
}

//  Safe by default: without CURVE the admin socket stays on this machine,
//  and no endpoint binds beyond loopback unless device/insecure (zqd
//  --insecure) says so (never the admin socket).
static int
s_check_exposure (zqi_device_config_t *self, char *error, size_t error_size)
{
    char exposed[256];
    if (!*self->curve_secret_cert && s_endpoints_exposed (self->admin, exposed, sizeof exposed))
        return s_error (error, error_size,
                        "device/admin: refusing to bind '%s' without CURVE: anyone who can "
                        "reach it could purge queues, so it must be ipc://PATH or tcp on a "
                        "loopback address (127.0.0.1, ::1, localhost), or device/curve must be "
                        "configured; --insecure does not change this",
                        exposed);
    //  Plain HTTP has no authentication: CURVE does not cover it.
    if (*self->http && !self->insecure) {
        char endpoint[300];
        snprintf (endpoint, sizeof endpoint, "tcp://%s", self->http);
        if (s_endpoints_exposed (endpoint, exposed, sizeof exposed))
            return s_error (error, error_size,
                            "device/http: refusing to serve metrics on '%s': plain HTTP has no "
                            "authentication; use a loopback address (127.0.0.1:9670, "
                            "[::1]:9670, localhost:9670) or start zqd with --insecure "
                            "(device/insecure = true)",
                            self->http);
    }
    if (*self->curve_secret_cert || self->insecure)
        return 0;
    const char *path = "device/bind";
    bool found = s_endpoints_exposed (self->bind, exposed, sizeof exposed);
    char queue_path[256];
    for (zqi_queue_config_t *queue = (zqi_queue_config_t *)zlistx_first (self->queues);
         queue && !found; queue = (zqi_queue_config_t *)zlistx_next (self->queues)) {
        for (int side = 0; side < 2 && !found; side++) {
            const char *endpoints = side == 0 ? queue->in : queue->out;
            found = endpoints && s_endpoints_exposed (endpoints, exposed, sizeof exposed);
            if (found) {
                snprintf (queue_path, sizeof queue_path, "queues/%s/%s", queue->name,
                          side == 0 ? "in" : "out");
                path = queue_path;
            }
        }
    }
    if (found)
        return s_error (error, error_size,
                        "%s: refusing to bind '%s' without CURVE: anyone who can reach it may "
                        "put and consume; bind a loopback address, configure device/curve, or "
                        "start zqd with --insecure (device/insecure = true)",
                        path, exposed);
    return 0;
}

static int
s_parse (zqi_device_config_t *self, zconfig_t *config, char *error, size_t error_size)
{
    bool admin_given = false;
    //  Two passes: the kinds' defaults first, so that the queues, read
    //  second, start from them wherever the sections stand in the file.
    for (int pass = 0; pass < 2; pass++) {
        for (zconfig_t *section = config ? zconfig_child (config) : NULL; section;
             section = zconfig_next (section)) {
            const char *name = zconfig_name (section);
            bool queues = streq (name, "queues");
            if (queues != (pass == 1))
                continue;
            int rc = 0;
            if (streq (name, "device"))
                rc = s_parse_device (self, section, &admin_given, error, error_size);
            else if (streq (name, "queue"))
                rc = s_parse_queue_options (self, section, error, error_size);
            else if (streq (name, "jetstream"))
                rc = s_parse_jetstream (self, section, error, error_size);
            else if (streq (name, "stream"))
                rc = s_parse_defaults (&self->stream_defaults, section, true, error, error_size);
            else if (streq (name, "forward"))
                rc = s_parse_defaults (&self->forward_defaults, section, false, error, error_size);
            else if (streq (name, "access")) {
                if (self->access)
                    rc = s_error (error, error_size, "access: given twice");
                else if (!(self->access = zqi_access_new (section, error, error_size)))
                    rc = -1;
            } else if (queues) {
                for (zconfig_t *entry = zconfig_child (section); entry && rc == 0;
                     entry = zconfig_next (entry))
                    rc = s_parse_queue (self, entry, error, error_size);
            } else
                rc = s_error (error, error_size,
                              "%s: unknown section (device, queue, jetstream, stream, forward, "
                              "queues, access)",
                              name);
            if (rc)
                return -1;
        }
    }
    if (!*self->bind && zlistx_size (self->queues)) {
        for (zqi_queue_config_t *queue = (zqi_queue_config_t *)zlistx_first (self->queues); queue;
             queue = (zqi_queue_config_t *)zlistx_next (self->queues))
            if (queue->kind == ZQI_KIND_QUEUE)
                return s_error (error, error_size,
                                "queues/%s: a queue of kind queue needs device/bind", queue->name);
    }
    if (*self->curve_secret_cert && *self->curve_clients && self->access)
        return s_error (error, error_size,
                        "device/curve/clients: not with an access section, whose identities' "
                        "keys are the allowed clients");
    if (*self->curve_secret_cert && !*self->curve_clients && !self->access)
        return s_error (error, error_size,
                        "device/curve/clients: required with secret_cert (a directory of "
                        "client certificates, or \"*\" for any client), unless an access "
                        "section names the clients");
    if (!*self->curve_secret_cert && *self->curve_clients)
        return s_error (error, error_size, "device/curve/secret_cert: required with clients");
    //  Without CURVE no client has a key: every one would be "anonymous",
    //  with every right unless that identity is given; keys mean the
    //  operator meant CURVE.
    const char *keyed = zqi_access_keyed (self->access);
    if (keyed && !*self->curve_secret_cert)
        return s_error (error, error_size,
                        "access/%s: holds CURVE keys, but device/curve is not configured: "
                        "without CURVE no client has a key and every client is 'anonymous' "
                        "(with every right unless the section gives 'anonymous' its own); "
                        "configure device/curve/secret_cert",
                        keyed);
    if (self->access && *self->curve_secret_cert)
        zqi_access_require_identity (self->access);
    //  The default admin endpoint lives beside the spool.
    if (!admin_given && *self->spool) {
        char endpoint[S_IPC_PATH_MAX + 16];
        if (strlen (self->spool) + strlen ("/admin") <= S_IPC_PATH_MAX) {
            snprintf (endpoint, sizeof endpoint, "ipc://%s/admin", self->spool);
            if (s_set_string (&self->admin, endpoint))
                return -1;
        }
    }
    return s_check_exposure (self, error, error_size);
}

zqi_device_config_t *
zqi_device_config_new (zconfig_t *config, char *error, size_t error_size)
{
    if (error && error_size)
        error[0] = '\0';
    zqi_device_config_t *self = (zqi_device_config_t *)calloc (1, sizeof *self);
    if (!self) {
        s_error (error, error_size, "out of memory");
        errno = ENOMEM;
        return NULL;
    }
    self->bind = strdup (S_DEFAULT_BIND);
    self->admin = strdup ("");
    self->http = strdup ("");
    self->spool = strdup ("");
    self->curve_secret_cert = strdup ("");
    self->curve_clients = strdup ("");
    self->fsync = ZQ_SPOOL_FSYNC_ALWAYS;
    self->fsync_interval_ms = 100;
    self->backlog_warning_ms = ZQI_BACKLOG_WARNING_MS_DEFAULT;
    self->min_free_bytes = ZQI_MIN_FREE_BYTES_DEFAULT;
    self->queue_options = zq_options_new ();
    self->queues = zlistx_new ();
    self->stream_defaults.memory_messages = S_DEFAULT_MEMORY_MESSAGES;
    self->stream_defaults.memory_bytes = ZQI_STREAM_MEMORY_BYTES_DEFAULT;
    self->stream_defaults.quota_bytes = -1;
    self->stream_defaults.sndhwm = S_DEFAULT_HWM;
    self->stream_defaults.rcvhwm = S_DEFAULT_HWM;
    self->forward_defaults.sndhwm = S_DEFAULT_HWM;
    self->forward_defaults.rcvhwm = S_DEFAULT_HWM;
    self->forward_defaults.max_subscription_bytes = ZQ_SUBSCRIPTION_BYTES_DEFAULT;
    if (!self->bind || !self->admin || !self->http || !self->spool || !self->curve_secret_cert ||
        !self->curve_clients || !self->queue_options || !self->queues) {
        zqi_device_config_destroy (&self);
        s_error (error, error_size, "out of memory");
        errno = ENOMEM;
        return NULL;
    }
    zlistx_set_destructor (self->queues, s_queue_config_destructor);
    if (s_parse (self, config, error, error_size)) {
        int saved = errno;
        if (saved == ENOMEM)
            s_error (error, error_size, "out of memory");
        zqi_device_config_destroy (&self);
        errno = saved;
        return NULL;
    }
    return self;
}

#define S_CONFIG_MAX_BYTES (1024 * 1024)

zconfig_t *
zq_device_config_load (const char *path, char *error, size_t error_size)
{
    char scratch[8];
    if (!error || !error_size) {
        error = scratch;
        error_size = sizeof scratch;
    }
    if (!path) {
        s_error (error, error_size, "no configuration file given");
        return NULL;
    }
    FILE *file = fopen (path, "r");
    if (!file) {
        int saved = errno;
        snprintf (error, error_size, "cannot read %s: %s", path, strerror (saved));
        errno = saved;
        return NULL;
    }
    //  Read whole, then parsed from memory (CZMQ's file loader keeps a
    //  little memory when the text is not ZPL).
    char *text = (char *)malloc (S_CONFIG_MAX_BYTES + 1);
    size_t size = text ? fread (text, 1, S_CONFIG_MAX_BYTES + 1, file) : 0;
    int read_error = ferror (file);
    fclose (file);
    if (!text) {
        snprintf (error, error_size, "out of memory");
        errno = ENOMEM;
        return NULL;
    }
    if (read_error || size > S_CONFIG_MAX_BYTES) {
        free (text);
        snprintf (error, error_size, "%s: %s", path,
                  read_error ? "read error" : "larger than 1 MiB");
        errno = read_error ? EIO : ZQ_ETOOBIG;
        return NULL;
    }
    text[size] = '\0';
    zconfig_t *config = size ? zconfig_str_load (text) : zconfig_new ("root", NULL);
    free (text);
    if (!config)
        s_error (error, error_size,
                 "%s: not valid ZPL (sections and 'key = value' lines, indented by 4 spaces "
                 "per level)",
                 path);
    return config;
}

int
zq_device_check (zconfig_t *config, char *error, size_t error_size)
{
    zqi_device_config_t *parsed = zqi_device_config_new (config, error, error_size);
    if (!parsed)
        return -1;
    zqi_device_config_destroy (&parsed);
    return 0;
}
