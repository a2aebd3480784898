/*  =========================================================================
    interop_peer - the C side of zq's envelope interop test. It speaks
    ZQ/1 (doc/PROTOCOL.md) through the public zq_msg API on a PAIR socket
    that it connects to the Python peer (tests/interop/envelope_peer.py).

    interop_peer echo ENDPOINT COUNT
        Receives COUNT messages with zq_msg_recv. For each, sends back one
        report frame (JSON: the decoded fields, or the error's name) and,
        when the message was valid, after it a message rebuilt from those
        fields with zq_msg_set_id & co; its body goes through
        zq_msg_body_json / zq_msg_set_body_json, or is copied as is when
        the message has the header "x-interop-body: raw". Prints each
        report, without the body, as one line on stdout.

    interop_peer send ENDPOINT
        Sends a fixed set of messages (kept in step with send_expectations
        in envelope_peer.py), printing the id and subject of each on
        stdout, then waits for the peer's "done".

    Exits 0 on success, 1 on failure, 2 on bad usage.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/

#include "zq.h"
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEER_TIMEOUT_MS 20000
#define PEER_LINGER_MS  5000

static const char *
s_error_name (int errnum)
{
    switch (errnum) {
        case ZQ_EPROTO:
            return "ZQ_EPROTO";
        case ZQ_ETOOBIG:
            return "ZQ_ETOOBIG";
        case ZQ_EVERSION:
            return "ZQ_EVERSION";
        case ZQ_EDEPTH:
            return "ZQ_EDEPTH";
        case ZQ_EJSON:
            return "ZQ_EJSON";
        case ZQ_ETYPE:
            return "ZQ_ETYPE";
        default:
            return "other";
    }
}

//  A JSON string for text, or null when text is not valid UTF-8.
static json_t *
s_json_text (const char *text)
{
    json_t *value = json_string (text);
    return value ? value : json_null ();
}

//  Builds the report of one decoded message: its fields, and its body as
//  zq's JSON (parsed, so that the report stays one document).
static json_t *
s_report_message (const zq_msg_t *msg, char **body_json_p)
{
    char hex[ZQ_MSG_ID_HEX_SIZE + 1];
    json_t *report = json_object ();
    json_object_set_new (report, "id", json_string (zq_msg_id_hex (msg, hex)));
    json_object_set_new (report, "subject", s_json_text (zq_msg_subject (msg)));
    json_object_set_new (report, "created_ms", json_integer (zq_msg_created_ms (msg)));
    json_object_set_new (report, "attempt", json_integer (zq_msg_attempt (msg)));
    json_t *headers = json_array ();
    size_t index;
    for (index = 0; index < zq_msg_header_count (msg); index++) {
        const char *value = NULL;
        const char *name = zq_msg_header_at (msg, index, &value);
        json_array_append_new (
            headers, json_pack ("[oo]", s_json_text (name), s_json_text (value ? value : "")));
    }
    json_object_set_new (report, "headers", headers);

    *body_json_p = zq_msg_body_json (msg);
    if (*body_json_p) {
        json_error_t error;
        json_t *body = json_loads (*body_json_p, JSON_DECODE_ANY, &error);
        json_object_set_new (report, "body", body ? body : json_string ("(unparsable JSON)"));
    } else
        json_object_set_new (report, "body_error", json_string (s_error_name (errno)));
    return report;
}

//  Rebuilds a message from the fields of msg through the public API.
static zq_msg_t *
s_rebuild (const zq_msg_t *msg, const char *body_json)
{
    zq_msg_t *copy = zq_msg_new (zq_msg_subject (msg));
    if (!copy)
        return NULL;
    zq_msg_set_id (copy, zq_msg_id (msg));
    zq_msg_set_attempt (copy, zq_msg_attempt (msg));
    size_t index;
    for (index = 0; index < zq_msg_header_count (msg); index++) {
        const char *value = NULL;
        const char *name = zq_msg_header_at (msg, index, &value);
        if (zq_msg_set_header (copy, name, value) != 0) {
            zq_msg_destroy (&copy);
            return NULL;
        }
    }
    const char *route = zq_msg_header (msg, "x-interop-body");
    int rc;
    if ((route && strcmp (route, "raw") == 0) || !body_json) {
        size_t size;
        const void *body = zq_msg_body (msg, &size);
        rc = zq_msg_set_body (copy, body, size);
    } else
        rc = zq_msg_set_body_json (copy, body_json);
    if (rc != 0) {
        fprintf (stderr, "interop_peer: rebuilding the body failed: %s\n", zq_strerror (errno));
        zq_msg_destroy (&copy);
    }
    return copy;
}

static int
s_send_report (void *socket, json_t *report, int flags)
{
    char *text = json_dumps (report, JSON_COMPACT);
    if (!text)
        return -1;
    int rc = zmq_send (socket, text, strlen (text), flags);
    free (text);
    return rc < 0 ? -1 : 0;
}

static int
s_echo (void *socket, long count)
{
    long done, failures = 0;
    for (done = 0; done < count; done++) {
        zq_msg_t *msg = zq_msg_recv (socket, 0, 0);
        if (!msg) {
            int errnum = errno;
            if (errnum == EAGAIN || errnum == ETERM || errnum == EINTR) {
                fprintf (stderr, "interop_peer: message %ld: %s\n", done, zq_strerror (errnum));
                return -1;
            }
            json_t *report = json_pack ("{sssiss}", "error", s_error_name (errnum), "errno", errnum,
                                        "text", zq_strerror (errnum));
            char *line = json_dumps (report, JSON_COMPACT);
            printf ("%ld %s\n", done, line ? line : "?");
            free (line);
            int rc = s_send_report (socket, report, 0);
            json_decref (report);
            if (rc != 0)
                return -1;
            continue;
        }
        char *body_json = NULL;
        json_t *report = s_report_message (msg, &body_json);
        zq_msg_t *copy = s_rebuild (msg, body_json);
        free (body_json);
        zq_msg_destroy (&msg);

        json_t *body = json_object_get (report, "body");
        json_incref (body);
        json_object_del (report, "body");
        char *line = json_dumps (report, JSON_COMPACT);
        printf ("%ld %s\n", done, line ? line : "?");
        free (line);
        if (body)
            json_object_set_new (report, "body", body);

        if (!copy) {
            //  The peer sees the failure in the report and goes on.
            failures++;
            json_object_set_new (report, "error", json_string ("rebuild failed"));
            int rc = s_send_report (socket, report, 0);
            json_decref (report);
            if (rc != 0)
                return -1;
            continue;
        }
        int rc = s_send_report (socket, report, ZMQ_SNDMORE);
        json_decref (report);
        if (rc == 0)
            rc = zq_msg_send (&copy, socket, 0);
        zq_msg_destroy (&copy);
        if (rc != 0) {
            fprintf (stderr, "interop_peer: reply %ld: %s\n", done, zq_strerror (errno));
            return -1;
        }
    }
    fflush (stdout);
    return failures ? -1 : 0;
}

//  ---- send mode: keep in step with send_expectations in envelope_peer.py

static zq_msg_t *
s_new (const char *subject)
{
    zq_msg_t *msg = zq_msg_new (subject);
    if (!msg)
        fprintf (stderr, "interop_peer: zq_msg_new: %s\n", zq_strerror (errno));
    return msg;
}

static int
s_check (int rc, const char *what)
{
    if (rc != 0)
        fprintf (stderr, "interop_peer: %s: %s\n", what, zq_strerror (errno));
    return rc;
}

static int
s_send_one (void *socket, zq_msg_t **msg_p)
{
    if (!*msg_p)
        return -1;
    char hex[ZQ_MSG_ID_HEX_SIZE + 1];
    printf ("%s %.40s\n", zq_msg_id_hex (*msg_p, hex), zq_msg_subject (*msg_p));
    int rc = zq_msg_send (msg_p, socket, 0);
    if (rc != 0) {
        fprintf (stderr, "interop_peer: zq_msg_send: %s\n", zq_strerror (errno));
        zq_msg_destroy (msg_p);
    }
    return rc;
}

static int
s_send (void *socket)
{
    int rc = 0;
    zq_msg_t *msg;

    msg = s_new ("orders");
    if (msg)
        rc |= s_check (zq_msg_set_header (msg, "trace", "t-1"), "set_header") |
              s_check (zq_msg_set_header (msg, "tenant", "acme"), "set_header") |
              s_check (zq_msg_pack (msg, "{sssusbsn}", "order", "A-17", "cents", (uint64_t)1299,
                                    "paid", 1, "note"),
                       "pack");
    rc |= s_send_one (socket, &msg);

    msg = s_new ("café/注文/заказ");
    if (msg)
        rc |= s_check (zq_msg_set_header (msg, "note", "naïve ✓"), "set_header") |
              s_check (zq_msg_set_body_json (msg, "{\"text\": \"héllo wörld ✓ 日本\", "
                                                  "\"list\": [1, -2, 3.5, null, true, false, "
                                                  "\"x\"], \"nested\": {\"a\": {\"b\": [[]]}}}"),
                       "set_body_json");
    rc |= s_send_one (socket, &msg);

    uint8_t bytes[256];
    size_t index;
    for (index = 0; index < sizeof bytes; index++)
        bytes[index] = (uint8_t)index;
    msg = s_new ("bin");
    if (msg)
        rc |= s_check (zq_msg_pack (msg, "B", bytes, sizeof bytes), "pack");
    rc |= s_send_one (socket, &msg);

    msg = s_new ("empty");
    rc |= s_send_one (socket, &msg);

    size_t large_size = 100000;
    uint8_t *large = malloc (large_size);
    if (!large)
        return -1;
    for (index = 0; index < large_size; index++)
        large[index] = (uint8_t)((index * 7) % 251);
    msg = s_new ("large");
    if (msg)
        rc |= s_check (zq_msg_pack (msg, "{sBsi}", "blob", large, large_size, "n", (int64_t)42),
                       "pack");
    free (large);
    rc |= s_send_one (socket, &msg);

    uint8_t fixed_id[ZQ_MSG_ID_SIZE];
    for (index = 0; index < sizeof fixed_id; index++)
        fixed_id[index] = (uint8_t)index;
    msg = s_new ("attempt");
    if (msg) {
        zq_msg_set_id (msg, fixed_id);
        zq_msg_set_attempt (msg, 7);
        rc |= s_check (zq_msg_set_header (msg, "reason", "redelivery"), "set_header") |
              s_check (zq_msg_pack (msg, "s", "same id"), "pack");
    }
    rc |= s_send_one (socket, &msg);

    msg = s_new ("ints");
    if (msg)
        rc |= s_check (zq_msg_pack (msg, "[iiiiiiiiiiuuuuuuuu]", (int64_t)0, (int64_t)-1,
                                    (int64_t)-32, (int64_t)-33, (int64_t)-128, (int64_t)-129,
                                    (int64_t)-32768, (int64_t)-32769, (int64_t)INT32_MIN - 1,
                                    (int64_t)INT64_MIN, (uint64_t)127, (uint64_t)128, (uint64_t)255,
                                    (uint64_t)256, (uint64_t)65535, (uint64_t)65536,
                                    (uint64_t)1 << 32, (uint64_t)UINT64_MAX),
                       "pack");
    rc |= s_send_one (socket, &msg);

    char subject[ZQ_MSG_MAX_STRING + 1];
    memset (subject, 's', ZQ_MSG_MAX_STRING);
    subject[ZQ_MSG_MAX_STRING] = '\0';
    msg = s_new (subject);
    for (index = 0; msg && index < ZQ_MSG_MAX_HEADERS; index++) {
        char name[16], value[16];
        snprintf (name, sizeof name, "h%02zu", index);
        snprintf (value, sizeof value, "v%zu", index);
        rc |= s_check (zq_msg_set_header (msg, name, value), "set_header");
    }
    if (msg)
        rc |= s_check (zq_msg_set_body_json (msg, "[]"), "set_body_json");
    rc |= s_send_one (socket, &msg);

    for (index = 0; index < 10; index++) {
        char number[16];
        snprintf (number, sizeof number, "%zu", index);
        msg = s_new ("seq");
        if (msg)
            rc |= s_check (zq_msg_set_header (msg, "n", number), "set_header") |
                  s_check (zq_msg_pack (msg, "i", (int64_t)index), "pack");
        rc |= s_send_one (socket, &msg);
    }
    fflush (stdout);
    if (rc != 0)
        return -1;

    char done[16];
    int size = zmq_recv (socket, done, sizeof done, 0);
    if (size != 4 || memcmp (done, "done", 4) != 0) {
        fprintf (stderr, "interop_peer: no \"done\" from the peer: %s\n",
                 size < 0 ? zq_strerror (errno) : "unexpected reply");
        return -1;
    }
    return 0;
}

int
main (int argc, char *argv[])
{
    bool echo = argc == 4 && strcmp (argv[1], "echo") == 0;
    bool send = argc == 3 && strcmp (argv[1], "send") == 0;
    long count = echo ? strtol (argv[3], NULL, 10) : 0;
    if ((!echo && !send) || count < 0) {
        fprintf (stderr, "usage: interop_peer echo ENDPOINT COUNT | send ENDPOINT\n");
        return 2;
    }
    void *context = zmq_ctx_new ();
    void *socket = context ? zmq_socket (context, ZMQ_PAIR) : NULL;
    if (!socket) {
        fprintf (stderr, "interop_peer: cannot make a socket: %s\n", zmq_strerror (errno));
        return 1;
    }
    int timeout = PEER_TIMEOUT_MS, linger = PEER_LINGER_MS;
    zmq_setsockopt (socket, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt (socket, ZMQ_SNDTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt (socket, ZMQ_LINGER, &linger, sizeof linger);
    int rc = zmq_connect (socket, argv[2]);
    if (rc != 0)
        fprintf (stderr, "interop_peer: cannot connect to %s: %s\n", argv[2], zmq_strerror (errno));
    else
        rc = echo ? s_echo (socket, count) : s_send (socket);
    zmq_close (socket);
    zmq_ctx_term (context);
    return rc == 0 ? 0 : 1;
}
