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

//  Linger the CLI uses unless -o linger_ms says otherwise: messages still
//  queued when a command ends get this long to reach their peer.
#define S_CLI_LINGER_MS 5000

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
        zq_cli_error (cli, "BODY is not valid: %s", zq_strerror (errno));
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
        if (source->from_stdin)
            zq_cli_error (cli, "stdin line %llu: %s; %llu message%s before it %s sent",
                          (unsigned long long)source->line_number, zq_strerror (errnum),
                          (unsigned long long)source->produced, source->produced == 1 ? "" : "s",
                          source->produced == 1 ? "was" : "were");
        else
            zq_cli_error (cli, "BODY: %s", zq_strerror (errnum));
        zq_msg_destroy (&msg);
        return errnum == ENOMEM ? ZQ_EXIT_TRANSPORT : ZQ_EXIT_BAD_INPUT;
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

zq_queue_t *
zq_cli_queue_open (zq_cli_t *cli, const char *pattern, zq_role_t role, const char *endpoints)
{
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
