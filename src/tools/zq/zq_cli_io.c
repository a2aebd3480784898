/*  =========================================================================
    zq_cli_io - what every zq command shares: making messages from JSON
    (an argument or stdin lines), printing messages as JSON lines, opening
    a queue, and turning failures into exit codes.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_cli.h"
#include <msgpack.h>
#include <jansson.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

//  Linger the CLI uses unless -o linger_ms says otherwise: messages still
//  queued when a command ends get this long to reach their peer.
#define S_CLI_LINGER_MS 5000

//  Why text is not JSON, as jansson says it: "line L, column C: REASON".
//  Falls back to zq_strerror (errnum) when jansson parses it (zq refused
//  it for another reason, e.g. nesting deeper than zq allows).
static const char *
s_json_reason (const char *text, int errnum, char *reason, size_t size)
{
    json_error_t error;
    json_t *parsed = json_loads (text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &error);
    if (parsed) {
        json_decref (parsed);
        snprintf (reason, size, "%s", zq_strerror (errnum));
    } else
        snprintf (reason, size, "invalid JSON at line %d, column %d: %s", error.line, error.column,
                  error.text);
    return reason;
}

//  Refuses (before sending) a message over the max_message_bytes limit:
//  no receiver would take it. The size counted is what the envelope
//  carries: body, subject and headers, plus the fixed fields.
static int
s_size_check (zq_cli_source_t *source, zq_msg_t *msg)
{
    zq_cli_t *cli = source->cli;
    int64_t limit = ZQ_MSG_MAX_SIZE_DEFAULT;
    zq_options_get_int (cli->options, "max_message_bytes", &limit);
    size_t size = 0;
    zq_msg_body (msg, &size);
    size += strlen (zq_msg_subject (msg)) + 64;
    for (size_t i = 0; i < zq_msg_header_count (msg); i++) {
        const char *value = NULL;
        const char *name = zq_msg_header_at (msg, i, &value);
        size += strlen (name) + (value ? strlen (value) : 0) + 2;
    }
    if ((int64_t)size <= limit)
        return 0;
    zq_cli_error (cli,
                  "message %llu is %zu bytes, over the limit of %lld bytes: not sent (the option "
                  "max_message_bytes sets the limit: -o max_message_bytes=BYTES here, and the "
                  "same on the receiving side)",
                  (unsigned long long)source->produced + 1, size, (long long)limit);
    return ZQ_EXIT_BAD_INPUT;
}

int
zq_cli_source_open (zq_cli_source_t *source, zq_cli_t *cli, const char *body_arg)
{
    memset (source, 0, sizeof *source);
    source->cli = cli;
    if (streq (body_arg, "-")) {
        source->from_stdin = true;
        return 0;
    }
    if (zq_json_to_msgpack (body_arg, &source->body, &source->body_size)) {
        char reason[256];
        zq_cli_error (cli, "BODY is not valid: %s",
                      s_json_reason (body_arg, errno, reason, sizeof reason));
        return ZQ_EXIT_BAD_INPUT;
    }
    return 0;
}

//  Reads the next line that is not blank into source->line; returns its
//  length, or -1 at the end of input (or a read error, reported).
static ssize_t
s_next_line (zq_cli_source_t *source)
{
    while (true) {
        errno = 0;
        ssize_t length = getline (&source->line, &source->line_capacity, stdin);
        if (length < 0) {
            if (errno && errno != EINTR)
                zq_cli_error (source->cli, "reading stdin: %s", strerror (errno));
            return -1;
        }
        source->line_number++;
        while (length > 0 && (source->line[length - 1] == '\n' || source->line[length - 1] == '\r'))
            source->line[--length] = '\0';
        //  A NUL byte inside the line cannot be JSON text: never skip it.
        source->line_has_nul = strlen (source->line) != (size_t)length;
        if (source->line_has_nul || strspn (source->line, " \t\r\n") < (size_t)length)
            return length;
    }
}

int
zq_cli_source_next (zq_cli_source_t *source, const char *subject, zq_msg_t **msg_p)
{
    zq_cli_t *cli = source->cli;
    *msg_p = NULL;
    if (zq_cli_interrupted)
        return zq_cli_interrupt_exit ();
    if (source->from_stdin) {
        if (cli->count && source->produced >= cli->count)
            return 0;
        ssize_t length = s_next_line (source);
        if (zq_cli_interrupted)
            return zq_cli_interrupt_exit ();
        if (length < 0)
            return ferror (stdin) ? ZQ_EXIT_BAD_INPUT : 0;
    } else {
        uint64_t wanted = cli->count ? cli->count : 1;
        if (source->produced >= wanted)
            return 0;
    }
    zq_msg_t *msg = zq_msg_new (subject);
    if (!msg) {
        zq_cli_error (cli, "SUBJECT: %s", zq_strerror (errno));
        return errno == ZQ_ETOOBIG ? ZQ_EXIT_BAD_INPUT : ZQ_EXIT_TRANSPORT;
    }
    for (size_t i = 0; i < cli->header_count; i++)
        if (zq_msg_set_header (msg, cli->header_names[i], cli->header_values[i])) {
            zq_cli_error (cli, "-H %s: %s", cli->header_names[i], zq_strerror (errno));
            zq_msg_destroy (&msg);
            return ZQ_EXIT_BAD_INPUT;
        }
    int rc;
    if (source->from_stdin) {
        if (source->line_has_nul) {
            errno = ZQ_EJSON;
            rc = -1;
        } else
            rc = zq_msg_set_body_json (msg, source->line);
    } else
        rc = zq_msg_set_body (msg, source->body, source->body_size);
    if (rc) {
        int errnum = errno;
        char reason[256];
        if (source->line_has_nul)
            snprintf (reason, sizeof reason, "a NUL byte is not JSON text");
        else if (source->from_stdin && errnum == ZQ_EJSON)
            s_json_reason (source->line, errnum, reason, sizeof reason);
        else
            snprintf (reason, sizeof reason, "%s", zq_strerror (errnum));
        if (source->from_stdin)
            zq_cli_error (cli, "stdin line %llu: %s; %llu message%s before it %s sent",
                          (unsigned long long)source->line_number, reason,
                          (unsigned long long)source->produced, source->produced == 1 ? "" : "s",
                          source->produced == 1 ? "was" : "were");
        else
            zq_cli_error (cli, "BODY: %s", zq_strerror (errnum));
        zq_msg_destroy (&msg);
        return errnum == ENOMEM ? ZQ_EXIT_TRANSPORT : ZQ_EXIT_BAD_INPUT;
    }
    rc = s_size_check (source, msg);
    if (rc) {
        zq_msg_destroy (&msg);
        return rc;
    }
    source->produced++;
    *msg_p = msg;
    return 0;
}

void
zq_cli_source_close (zq_cli_source_t *source)
{
    free (source->body);
    free (source->line);
    memset (source, 0, sizeof *source);
}

//  Packs a str (msgpack) so the library's JSON conversion decides how it
//  prints: a string, or {"$bin": ...} when it is not valid UTF-8.
static void
s_pack_text (msgpack_packer *packer, const char *text)
{
    size_t length = strlen (text);
    msgpack_pack_str (packer, length);
    msgpack_pack_str_body (packer, text, length);
}

//  Returns the envelope fields of msg as a JSON object's text without its
//  closing brace, or NULL with errno.
static char *
s_envelope_json (const zq_msg_t *msg)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    char id_hex[ZQ_MSG_ID_HEX_SIZE + 1];
    msgpack_pack_map (&packer, 5);
    s_pack_text (&packer, "id");
    s_pack_text (&packer, zq_msg_id_hex (msg, id_hex));
    s_pack_text (&packer, "subject");
    s_pack_text (&packer, zq_msg_subject (msg));
    s_pack_text (&packer, "created_ms");
    msgpack_pack_int64 (&packer, zq_msg_created_ms (msg));
    s_pack_text (&packer, "attempt");
    msgpack_pack_uint32 (&packer, zq_msg_attempt (msg));
    s_pack_text (&packer, "headers");
    size_t count = zq_msg_header_count (msg);
    msgpack_pack_map (&packer, count);
    for (size_t i = 0; i < count; i++) {
        const char *value = NULL;
        const char *name = zq_msg_header_at (msg, i, &value);
        s_pack_text (&packer, name);
        s_pack_text (&packer, value);
    }
    char *json = zq_msgpack_to_json (buffer.data, buffer.size);
    msgpack_sbuffer_destroy (&buffer);
    if (json) {
        size_t length = strlen (json);
        if (length && json[length - 1] == '}')
            json[length - 1] = '\0';
    }
    return json;
}

int
zq_cli_print_msg (zq_cli_t *cli, const zq_msg_t *msg)
{
    char *body = zq_msg_body_json (msg);
    if (!body) {
        char id_hex[ZQ_MSG_ID_HEX_SIZE + 1];
        zq_cli_error (cli, "message %s has no JSON form (%s); skipped", zq_msg_id_hex (msg, id_hex),
                      zq_strerror (errno));
        return ZQ_EXIT_BAD_INPUT;
    }
    if (cli->given[ZQ_OPT_ENVELOPE]) {
        char *envelope = s_envelope_json (msg);
        if (!envelope) {
            zq_cli_error (cli, "envelope: %s", zq_strerror (errno));
            free (body);
            return ZQ_EXIT_BAD_INPUT;
        }
        printf ("%s,\"body\":%s}\n", envelope, body);
        free (envelope);
    } else
        printf ("%s\n", body);
    free (body);
    fflush (stdout);
    return 0;
}

//  Checks one endpoint of length bytes at text (prefix already removed).
static int
s_endpoint_check_one (zq_cli_t *cli, const char *text, size_t length, bool binding)
{
    const char *shape = "tcp://HOST:PORT, ipc://PATH or inproc://NAME";
    if (length > 1024) {
        zq_cli_error (cli, "endpoint '%.40s...' is over 1024 bytes", text);
        return -1;
    }
    char endpoint[1025];
    memcpy (endpoint, text, length);
    endpoint[length] = '\0';
    const char *scheme_end = strstr (endpoint, "://");
    if (!scheme_end) {
        zq_cli_error (cli, "'%s' is not an endpoint: write %s (e.g. tcp://localhost:5670)",
                      endpoint, shape);
        return -1;
    }
    size_t scheme_size = (size_t)(scheme_end - endpoint);
    const char *address = scheme_end + 3;
    if ((scheme_size == 3 && memcmp (endpoint, "ipc", 3) == 0) ||
        (scheme_size == 6 && memcmp (endpoint, "inproc", 6) == 0)) {
        if (!*address) {
            zq_cli_error (cli, "'%s' names nothing: write %s", endpoint, shape);
            return -1;
        }
        return 0;
    }
    if (!(scheme_size == 3 && memcmp (endpoint, "tcp", 3) == 0)) {
        zq_cli_error (cli, "'%s': zq speaks tcp, ipc and inproc: write %s", endpoint, shape);
        return -1;
    }
    //  tcp://[SOURCE;]HOST:PORT, HOST a name, an address or [IPv6].
    const char *semicolon = strrchr (address, ';');
    if (semicolon)
        address = semicolon + 1;
    const char *colon = strrchr (address, ':');
    if (!colon || colon == address || !colon[1]) {
        zq_cli_error (cli, "'%s' lacks a %s: write tcp://HOST:PORT (e.g. tcp://localhost:5670)",
                      endpoint, !colon || !colon[1] ? "port" : "host");
        return -1;
    }
    const char *port = colon + 1;
    if (!(streq (port, "*") && binding)) {
        char *end = NULL;
        errno = 0;
        unsigned long number = strtoul (port, &end, 10);
        if (*port < '0' || *port > '9' || *end) {
            zq_cli_error (cli, "'%s': port '%s' is not a number: write tcp://HOST:PORT%s", endpoint,
                          port, binding ? " (PORT '*': one the system picks)" : "");
            return -1;
        }
        if (errno || number < 1 || number > 65535) {
            zq_cli_error (cli, "'%s': port %s is outside 1-65535", endpoint, port);
            return -1;
        }
    }
    if (binding)
        return 0; //  a bind may name an interface, or '*'
    char host[1025];
    size_t host_size = (size_t)(colon - address);
    if (*address == '[' && host_size >= 2 && address[host_size - 1] == ']') {
        address++;
        host_size -= 2;
    }
    memcpy (host, address, host_size);
    host[host_size] = '\0';
    struct addrinfo hints, *found = NULL;
    memset (&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo (host, NULL, &hints, &found);
    if (rc) {
        zq_cli_error (cli, "'%s': cannot resolve host '%s' (%s): check the name, or use an address",
                      endpoint, host, gai_strerror (rc));
        return -1;
    }
    freeaddrinfo (found);
    return 0;
}

//  "94 k/s", "3.2 M/s", "850/s".
static void
s_rate_text (char *text, size_t size, double per_s)
{
    if (per_s >= 1e6)
        snprintf (text, size, "%.1f M/s", per_s / 1e6);
    else if (per_s >= 1e4)
        snprintf (text, size, "%.0f k/s", per_s / 1e3);
    else if (per_s >= 1e3)
        snprintf (text, size, "%.1f k/s", per_s / 1e3);
    else
        snprintf (text, size, "%.0f/s", per_s);
}

void
zq_cli_progress_start (zq_cli_progress_t *progress, const char *verb)
{
    memset (progress, 0, sizeof *progress);
    progress->verb = verb;
    progress->start_us = zclock_usecs ();
    progress->last_us = progress->start_us;
    progress->shown_us = progress->start_us;
    progress->live = isatty (STDERR_FILENO);
}

void
zq_cli_progress_add (zq_cli_progress_t *progress, uint64_t messages)
{
    if (!progress || !messages)
        return;
    progress->count += messages;
    progress->last_us = zclock_usecs ();
    if (progress->live && progress->last_us - progress->shown_us >= 200000) {
        char rate[32];
        double seconds = (double)(progress->last_us - progress->start_us) / 1e6;
        s_rate_text (rate, sizeof rate, (double)progress->count / seconds);
        fprintf (stderr, "\r%llu %s, %s\033[K", (unsigned long long)progress->count, progress->verb,
                 rate);
        fflush (stderr);
        progress->shown_us = progress->last_us;
    }
}

void
zq_cli_progress_end (zq_cli_t *cli, zq_cli_progress_t *progress)
{
    if (progress->live)
        fprintf (stderr, "\r\033[K");
    double seconds = (double)(progress->last_us - progress->start_us) / 1e6;
    char rate[32] = "";
    if (seconds > 0 && progress->count)
        s_rate_text (rate, sizeof rate, (double)progress->count / seconds);
    zq_cli_error (cli, "%llu %s in %.1f s%s%s", (unsigned long long)progress->count, progress->verb,
                  seconds, *rate ? ", " : "", rate);
}

int
zq_cli_endpoint_check (zq_cli_t *cli, const char *endpoints, bool binding)
{
    const char *item = endpoints;
    while (true) {
        const char *comma = strchr (item, ',');
        size_t length = comma ? (size_t)(comma - item) : strlen (item);
        bool bind_here = binding;
        if (length && (*item == '@' || *item == '>')) {
            bind_here = *item == '@';
            item++;
            length--;
        }
        if (length == 0) {
            zq_cli_error (cli,
                          "empty endpoint in '%s': write tcp://HOST:PORT, ipc://PATH or "
                          "inproc://NAME, several separated by ','",
                          endpoints);
            return -1;
        }
        if (s_endpoint_check_one (cli, item, length, bind_here))
            return -1;
        if (!comma)
            return 0;
        item = comma + 1;
    }
}

zq_queue_t *
zq_cli_queue_open (zq_cli_t *cli, const char *pattern, zq_role_t role, const char *endpoints)
{
    //  Without a prefix, the endpoint binds or connects as the pattern's
    //  role does; a connect must resolve, a bind may name an interface.
    bool binds = streq (pattern, "reliable")
                     ? role == ZQ_SERVER
                     : role == ZQ_CONSUMER || role == ZQ_PUBLISHER || role == ZQ_SERVER;
    if (zq_cli_endpoint_check (cli, endpoints, binds)) {
        errno = EINVAL;
        return NULL;
    }
    if (!zq_options_is_set (cli->options, "linger_ms"))
        zq_options_set_int (cli->options, "linger_ms", S_CLI_LINGER_MS);
    zq_queue_t *queue = zq_queue_new (pattern, role, endpoints, cli->options);
    if (!queue) {
        zq_cli_error (cli, "cannot open %s: %s", endpoints, zq_strerror (errno));
        return NULL;
    }
    if (cli->given[ZQ_OPT_PRINT_ENDPOINT]) {
        printf ("%s\n", zq_queue_endpoint (queue));
        fflush (stdout);
    }
    return queue;
}

int
zq_cli_failure (zq_cli_t *cli, const char *what, int errnum)
{
    if (errnum == EINTR || zq_cli_interrupted)
        return zq_cli_interrupt_exit ();
    if (errnum == EAGAIN || errnum == ZQ_ETIMEDOUT) {
        zq_cli_error (cli, "%s: timed out", what);
        return ZQ_EXIT_TIMEOUT;
    }
    zq_cli_error (cli, "%s: %s", what, zq_strerror (errnum));
    if (errnum == ZQ_EPROTO || errnum == ZQ_ETOOBIG || errnum == ZQ_EDEPTH || errnum == ZQ_EJSON ||
        errnum == ZQ_EVERSION)
        return ZQ_EXIT_BAD_INPUT;
    return ZQ_EXIT_TRANSPORT;
}
