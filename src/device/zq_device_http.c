/*  =========================================================================
    zq_device_http - the device's HTTP server: GET /metrics (Prometheus
    text), GET /api/queues (JSON) and GET / (the status page), served by
    libmicrohttpd on its own thread from the metrics snapshot
    (src/device/zq_device_metrics.h). Built only when configure finds
    libmicrohttpd; otherwise zqi_http_new fails with ENOTSUP.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_device_metrics.h"
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <strings.h>
#include <sys/socket.h>

//  The request bounds: bytes a connection may use for its request line
//  and headers (past them libmicrohttpd answers 431 or closes), open
//  connections, and seconds a silent connection is kept.
#define S_MEMORY_LIMIT      (32 * 1024)
#define S_CONNECTION_LIMIT  64
#define S_CONNECTION_IDLE_S 10
//  libmicrohttpd's complaints (a request too big, a client gone) are
//  logged at most once per this time, with how many were left out.
#define S_LOG_IVL_MS 10000

//  Parses HOST:PORT into address (IPv4 or IPv6, port set). Returns 0, or
//  -1 with errno EINVAL and error.
static int
s_parse (const char *text, struct sockaddr_storage *address, char *error, size_t error_size)
{
    memset (address, 0, sizeof *address);
    const char *colon = text ? strrchr (text, ':') : NULL;
    if (!colon || colon == text) {
        snprintf (error, error_size,
                  "'%s' is not an HTTP address (HOST:PORT, e.g. 127.0.0.1:9670 or [::1]:9670)",
                  text ? text : "");
        return zqi_fail (EINVAL);
    }
    char host[64];
    size_t length = (size_t)(colon - text);
    if (length >= 2 && text[0] == '[' && text[length - 1] == ']') {
        text++;
        length -= 2;
    }
    if (length >= sizeof host) {
        snprintf (error, error_size, "'%s': the host is not an address", text);
        return zqi_fail (EINVAL);
    }
    memcpy (host, text, length);
    host[length] = '\0';
    const char *port_text = colon + 1;
    char *end = NULL;
    errno = 0;
    long port = strtol (port_text, &end, 10);
    if (!*port_text || *end || errno || port < 0 || port > 65535 || *port_text == '+' ||
        *port_text == '-') {
        snprintf (error, error_size, "'%s' is not a port (0 to 65535; 0 picks a free one)",
                  port_text);
        return zqi_fail (EINVAL);
    }
    struct sockaddr_in *v4 = (struct sockaddr_in *)address;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)address;
    if (streq (host, "localhost"))
        snprintf (host, sizeof host, "127.0.0.1");
    if (inet_pton (AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons ((uint16_t)port);
    } else if (inet_pton (AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons ((uint16_t)port);
    } else {
        snprintf (error, error_size,
                  "'%s' is not an IP address (an IPv4 address, [IPv6] or localhost)", host);
        return zqi_fail (EINVAL);
    }
    return 0;
}

int
zqi_http_address_check (const char *address, char *error, size_t error_size)
{
    struct sockaddr_storage parsed;
    return s_parse (address, &parsed, error, error_size);
}

#ifdef ZQ_HAVE_MICROHTTPD
#include <microhttpd.h>

#if MHD_VERSION >= 0x00097002
typedef enum MHD_Result s_result_t;
#else
typedef int s_result_t;
#endif

//  The status page: src/device/zq_device_page.html as a C string, made at build
//  time.
static const char s_page[] =
#include "zq_device_page.h"
    ;

struct _zqi_http_t {
    struct MHD_Daemon *daemon;
    zqi_metrics_t *metrics;
    char *address;
    bool loopback;             //  bound to loopback: only loopback Host names served
    pthread_mutex_t log_mutex; //  the logger runs on the server's thread and
    zqi_log_limit_t log_limit; //  on the device's (start, stop)
};

//  libmicrohttpd's logger (format and args are a vprintf's).
static void s_mhd_log (void *arg, const char *format, va_list args)
    __attribute__ ((format (printf, 2, 0)));

static void
s_mhd_log (void *arg, const char *format, va_list args)
{
    zqi_http_t *self = (zqi_http_t *)arg;
    uint64_t skipped = 0;
    pthread_mutex_lock (&self->log_mutex);
    bool due = zqi_log_limit_due (&self->log_limit, zclock_mono (), S_LOG_IVL_MS, &skipped);
    pthread_mutex_unlock (&self->log_mutex);
    if (!due)
        return;
    char line[512];
    vsnprintf (line, sizeof line, format, args);
    size_t length = strlen (line);
    while (length && line[length - 1] == '\n')
        line[--length] = '\0';
    zqi_log (ZQ_LOG_WARNING, "zq_device: http: %s (%" PRIu64 " more since the last line)", line,
             skipped);
}

//  Queues a response of text (taken: freed by libmicrohttpd) with status
//  and content type.
static s_result_t
s_respond (struct MHD_Connection *connection, unsigned int status, const char *type, char *text,
           bool take)
{
    if (!text)
        return MHD_NO; //  out of memory: the connection is closed
    struct MHD_Response *response = MHD_create_response_from_buffer (
        strlen (text), text, take ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!response) {
        if (take)
            free (text);
        return MHD_NO;
    }
    MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header (response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header (response, "X-Content-Type-Options", "nosniff");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header (response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    if (streq (type, "text/html; charset=utf-8"))
        MHD_add_response_header (response, "Content-Security-Policy",
                                 "default-src 'none'; script-src 'unsafe-inline'; style-src "
                                 "'unsafe-inline'; connect-src 'self'; img-src data:");
    s_result_t rc = MHD_queue_response (connection, status, response);
    MHD_destroy_response (response);
    return rc;
}

static char *
s_text (const char *format, const char *argument)
{
    return zsys_sprintf (format, argument);
}

//  True if a request's Host header (HOST or HOST:PORT) names loopback:
//  localhost, an IPv4 address in 127.0.0.0/8 or [::1]. A page served from
//  a name that an attacker points at 127.0.0.1 (DNS rebinding) sends its
//  own name, and is answered 421 instead of the metrics.
static bool
s_host_local (const char *host)
{
    char name[64];
    size_t length;
    const char *port;
    if (host[0] == '[') {
        const char *close = strchr (host, ']');
        if (!close)
            return false;
        length = (size_t)(close - host - 1);
        host++;
        port = close + 1;
    } else {
        const char *colon = strchr (host, ':');
        length = colon ? (size_t)(colon - host) : strlen (host);
        port = host + length;
    }
    if (length == 0 || length >= sizeof name)
        return false;
    if (*port && (*port != ':' || strspn (port + 1, "0123456789") != strlen (port + 1)))
        return false;
    memcpy (name, host, length);
    name[length] = '\0';
    struct in_addr v4;
    struct in6_addr v6;
    if (strcasecmp (name, "localhost") == 0)
        return true;
    if (inet_pton (AF_INET, name, &v4) == 1)
        return (ntohl (v4.s_addr) >> 24) == 127;
    return inet_pton (AF_INET6, name, &v6) == 1 && IN6_IS_ADDR_LOOPBACK (&v6);
}

static s_result_t
s_handle (void *arg, struct MHD_Connection *connection, const char *url, const char *method,
          const char *version, const char *upload_data, size_t *upload_data_size, void **state_p)
{
    zqi_http_t *self = (zqi_http_t *)arg;
    const char *plain = "text/plain; charset=utf-8";
    const char *host = MHD_lookup_connection_value (connection, MHD_HEADER_KIND, "Host");
    if (self->loopback && host && !s_host_local (host)) {
        size_t length = strlen (host);
        char *text = zsys_sprintf ("Host '%.*s%s': this server answers loopback names only "
                                   "(localhost, 127.0.0.1, [::1])\n",
                                   length > 64 ? 64 : (int)length, host, length > 64 ? "..." : "");
        return s_respond (connection, 421, plain, text, true);
    }
    if (!streq (method, "GET") && !streq (method, "HEAD"))
        return s_respond (connection, MHD_HTTP_METHOD_NOT_ALLOWED, plain,
                          s_text ("%s: only GET and HEAD are served\n", method), true);
    if (streq (url, "/metrics"))
        return s_respond (connection, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                          zqi_metrics_text (self->metrics), true);
    if (streq (url, "/api/queues")) {
        const char *history =
            MHD_lookup_connection_value (connection, MHD_GET_ARGUMENT_KIND, "history");
        unsigned long seconds = 0;
        if (history) {
            char *end = NULL;
            errno = 0;
            seconds = strtoul (history, &end, 10);
            if (!*history || *end || errno || *history == '-' || *history == '+' ||
                seconds > ZQI_METRICS_HISTORY) {
                char *text =
                    zsys_sprintf ("history: seconds of samples, 0 to %d\n", ZQI_METRICS_HISTORY);
                return s_respond (connection, MHD_HTTP_BAD_REQUEST, plain, text, true);
            }
        }
        return s_respond (connection, MHD_HTTP_OK, "application/json",
                          zqi_metrics_json (self->metrics, seconds), true);
    }
    if (streq (url, "/"))
        return s_respond (connection, MHD_HTTP_OK, "text/html; charset=utf-8", (char *)s_page,
                          false);
    return s_respond (connection, MHD_HTTP_NOT_FOUND, plain,
                      s_text ("%s: not found (/, /metrics, /api/queues)\n", url), true);
}

zqi_http_t *
zqi_http_new (const char *address, zqi_metrics_t *metrics, char *error, size_t error_size)
{
    struct sockaddr_storage parsed;
    if (s_parse (address, &parsed, error, error_size))
        return NULL;
    zqi_http_t *self = (zqi_http_t *)calloc (1, sizeof *self);
    if (!self) {
        snprintf (error, error_size, "out of memory");
        errno = ENOMEM;
        return NULL;
    }
    self->metrics = metrics;
    if (parsed.ss_family == AF_INET6)
        self->loopback = IN6_IS_ADDR_LOOPBACK (&((struct sockaddr_in6 *)&parsed)->sin6_addr);
    else
        self->loopback = (ntohl (((struct sockaddr_in *)&parsed)->sin_addr.s_addr) >> 24) == 127;
    pthread_mutex_init (&self->log_mutex, NULL);
    unsigned int flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
    if (parsed.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    self->daemon = MHD_start_daemon (
        flags, 0, NULL, NULL, s_handle, self, MHD_OPTION_EXTERNAL_LOGGER, s_mhd_log, self,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&parsed, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)S_MEMORY_LIMIT, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)S_CONNECTION_LIMIT,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)S_CONNECTION_IDLE_S, MHD_OPTION_END);
    if (!self->daemon) {
        int saved = errno ? errno : EADDRINUSE;
        snprintf (error, error_size, "cannot listen on %s: %s", address, strerror (saved));
        pthread_mutex_destroy (&self->log_mutex);
        free (self);
        errno = saved;
        return NULL;
    }
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info (self->daemon, MHD_DAEMON_INFO_BIND_PORT);
    unsigned int port = info ? info->port : 0;
    char host[INET6_ADDRSTRLEN] = "";
    if (parsed.ss_family == AF_INET6) {
        inet_ntop (AF_INET6, &((struct sockaddr_in6 *)&parsed)->sin6_addr, host, sizeof host);
        self->address = zsys_sprintf ("[%s]:%u", host, port);
    } else {
        inet_ntop (AF_INET, &((struct sockaddr_in *)&parsed)->sin_addr, host, sizeof host);
        self->address = zsys_sprintf ("%s:%u", host, port);
    }
    if (!self->address) {
        zqi_http_destroy (&self);
        snprintf (error, error_size, "out of memory");
        errno = ENOMEM;
        return NULL;
    }
    return self;
}

void
zqi_http_destroy (zqi_http_t **self_p)
{
    if (self_p && *self_p) {
        zqi_http_t *self = *self_p;
        if (self->daemon)
            MHD_stop_daemon (self->daemon);
        pthread_mutex_destroy (&self->log_mutex);
        zstr_free (&self->address);
        free (self);
        *self_p = NULL;
    }
}

const char *
zqi_http_address (zqi_http_t *self)
{
    return self->address;
}

#else //  without libmicrohttpd

struct _zqi_http_t {
    int unused;
};

zqi_http_t *
zqi_http_new (const char *address, zqi_metrics_t *metrics, char *error, size_t error_size)
{
    snprintf (error, error_size,
              "this zq was built without libmicrohttpd: no HTTP server (install "
              "libmicrohttpd-dev and configure again)");
    errno = ENOTSUP;
    return NULL;
}

void
zqi_http_destroy (zqi_http_t **self_p)
{
    if (self_p)
        *self_p = NULL;
}

const char *
zqi_http_address (zqi_http_t *self)
{
    return "";
}

#endif
