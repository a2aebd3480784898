/*  =========================================================================
    zq_cli_admin - zq stat, ls, peek, purge and redrive: the device's admin
    socket from the command line (doc/DEVICE.md, "Admin protocol").

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_cli.h"

//  How long a command waits for the device when --timeout is not given.
#define S_ADMIN_TIMEOUT_MS 5000

//  Sends the command (NULL-terminated strings) to the admin endpoint and
//  returns the reply's frames after "OK", or NULL after printing why, with
//  the exit code in *rc_p.
static zmsg_t *
s_request (zq_cli_t *cli, int *rc_p, const char *command, const char *name, const char *argument)
{
    const char *endpoint = cli->args[0];
    if (*endpoint == '>' || *endpoint == '@')
        endpoint++;
    //  The first CZMQ socket installs CZMQ's signal handlers: keep zq's.
    struct sigaction int_before, term_before;
    sigaction (SIGINT, NULL, &int_before);
    sigaction (SIGTERM, NULL, &term_before);
    zsock_t *sock = zsock_new (ZMQ_REQ);
    zsys_handler_set (NULL);
    sigaction (SIGINT, &int_before, NULL);
    sigaction (SIGTERM, &term_before, NULL);
    if (!sock) {
        zq_cli_error (cli, "cannot create a socket: %s", zq_strerror (errno));
        *rc_p = ZQ_EXIT_TRANSPORT;
        return NULL;
    }
    zsock_set_linger (sock, 0);
    zsock_set_maxmsgsize (sock, 256 * 1024 * 1024);
    if (zsock_connect (sock, "%s", endpoint)) {
        zq_cli_error (cli, "cannot connect to %s: %s", endpoint, zq_strerror (errno));
        zsock_destroy (&sock);
        *rc_p = ZQ_EXIT_TRANSPORT;
        return NULL;
    }
    zmsg_t *request = zmsg_new ();
    zmsg_addstr (request, command);
    if (name)
        zmsg_addstr (request, name);
    if (argument)
        zmsg_addstr (request, argument);
    zmsg_send (&request, sock);
    int timeout_ms = cli->timeout_ms == ZQ_TIMEOUT_DEFAULT ? S_ADMIN_TIMEOUT_MS : cli->timeout_ms;
    zmq_pollitem_t item = {zsock_resolve (sock), 0, ZMQ_POLLIN, 0};
    int ready = zmq_poll (&item, 1, timeout_ms);
    //  A reply without its empty delimiter frame wakes the poll, but the
    //  REQ socket drops it: the receive must not wait for ever either.
    zsock_set_rcvtimeo (sock, timeout_ms);
    zmsg_t *reply = ready > 0 ? zmsg_recv (sock) : NULL;
    zsock_destroy (&sock);
    if (!reply) {
        if (ready < 0 || zq_cli_interrupted)
            *rc_p = zq_cli_interrupt_exit ();
        else {
            zq_cli_error (cli,
                          "no answer from %s within %d ms (is zqd running, with its admin "
                          "socket there?)",
                          endpoint, timeout_ms);
            *rc_p = ZQ_EXIT_TIMEOUT;
        }
        return NULL;
    }
    char *status = zmsg_popstr (reply);
    if (!status || !streq (status, "OK")) {
        char *text = zmsg_popstr (reply);
        zq_cli_error (cli, "%s", text ? text : "the device answered with an error");
        zstr_free (&text);
        zstr_free (&status);
        zmsg_destroy (&reply);
        *rc_p = ZQ_EXIT_REMOTE;
        return NULL;
    }
    zstr_free (&status);
    *rc_p = ZQ_EXIT_OK;
    return reply;
}

//  Reads a reply frame (a msgpack map) into a scratch message, so its keys
//  read with zq_msg_get_*. NULL if the frame is not a map.
static zq_msg_t *
s_row (zframe_t *frame)
{
    zq_msg_t *row = zq_msg_new (NULL);
    if (row && zq_msg_set_body (row, zframe_data (frame), zframe_size (frame)))
        zq_msg_destroy (&row);
    return row;
}

static uint64_t
s_uint (zq_msg_t *row, const char *key)
{
    uint64_t value = 0;
    zq_msg_get_uint (row, key, &value);
    return value;
}

static double
s_double (zq_msg_t *row, const char *key)
{
    double value = 0;
    zq_msg_get_double (row, key, &value);
    return value;
}

//  Prints a duration in ms as the largest unit that fits ("850ms", "12s",
//  "3m", "5h", "2d").
static void
s_age (char *buffer, size_t size, uint64_t ms)
{
    if (ms < 1000)
        snprintf (buffer, size, "%llums", (unsigned long long)ms);
    else if (ms < 120 * 1000)
        snprintf (buffer, size, "%llus", (unsigned long long)(ms / 1000));
    else if (ms < 120 * 60 * 1000)
        snprintf (buffer, size, "%llum", (unsigned long long)(ms / 60000));
    else if (ms < 48ull * 3600 * 1000)
        snprintf (buffer, size, "%lluh", (unsigned long long)(ms / 3600000));
    else
        snprintf (buffer, size, "%llud", (unsigned long long)(ms / 86400000));
}

int
zq_cli_stat (zq_cli_t *cli)
{
    int rc;
    const char *name = cli->arg_count > 1 ? cli->args[1] : NULL;
    zmsg_t *reply = s_request (cli, &rc, "STAT", name, NULL);
    if (!reply)
        return rc;
    if (name) {
        //  One queue: every counter, as one JSON object.
        zframe_t *frame = zmsg_first (reply);
        char *json = frame ? zq_msgpack_to_json (zframe_data (frame), zframe_size (frame)) : NULL;
        if (json)
            printf ("%s\n", json);
        else {
            zq_cli_error (cli, "the device's answer is malformed");
            rc = ZQ_EXIT_BAD_INPUT;
        }
        free (json);
        zmsg_destroy (&reply);
        return rc;
    }
    printf ("%-24s %-7s %9s %9s %9s %7s %8s %9s %9s %9s %11s %7s %8s\n", "QUEUE", "KIND", "DEPTH",
            "READY", "IN_FLIGHT", "DELAYED", "OLDEST", "IN/S", "OUT/S", "ACKED", "REDELIVERED",
            "DEAD", "DROPPED");
    for (zframe_t *frame = zmsg_first (reply); frame; frame = zmsg_next (reply)) {
        zq_msg_t *row = s_row (frame);
        char *queue = row ? zq_msg_get_str (row, "name") : NULL;
        char *kind = row ? zq_msg_get_str (row, "kind") : NULL;
        if (queue && kind) {
            char age[32];
            s_age (age, sizeof age, s_uint (row, "oldest_age_ms"));
            printf ("%-24s %-7s %9llu %9llu %9llu %7llu %8s %9.1f %9.1f %9llu %11llu %7llu "
                    "%8llu\n",
                    queue, kind, (unsigned long long)s_uint (row, "depth"),
                    (unsigned long long)s_uint (row, "ready"),
                    (unsigned long long)s_uint (row, "in_flight"),
                    (unsigned long long)s_uint (row, "delayed"), age, s_double (row, "in_rate"),
                    s_double (row, "out_rate"), (unsigned long long)s_uint (row, "acked"),
                    (unsigned long long)s_uint (row, "redelivered"),
                    (unsigned long long)s_uint (row, "dead"),
                    (unsigned long long)s_uint (row, "dropped"));
        }
        free (queue);
        free (kind);
        zq_msg_destroy (&row);
    }
    zmsg_destroy (&reply);
    return ZQ_EXIT_OK;
}

int
zq_cli_ls (zq_cli_t *cli)
{
    int rc;
    zmsg_t *reply = s_request (cli, &rc, "LS", NULL, NULL);
    if (!reply)
        return rc;
    for (zframe_t *frame = zmsg_first (reply); frame; frame = zmsg_next (reply)) {
        zq_msg_t *row = s_row (frame);
        char *queue = row ? zq_msg_get_str (row, "name") : NULL;
        char *kind = row ? zq_msg_get_str (row, "kind") : NULL;
        if (queue && kind)
            printf ("%s %s\n", queue, kind);
        free (queue);
        free (kind);
        zq_msg_destroy (&row);
    }
    zmsg_destroy (&reply);
    return ZQ_EXIT_OK;
}

int
zq_cli_peek (zq_cli_t *cli)
{
    int rc;
    char count[32];
    snprintf (count, sizeof count, "%llu", (unsigned long long)(cli->count ? cli->count : 10));
    zmsg_t *reply = s_request (cli, &rc, "PEEK", cli->args[1], count);
    if (!reply)
        return rc;
    for (zframe_t *frame = zmsg_first (reply); frame; frame = zmsg_next (reply)) {
        const void *data = zframe_data (frame);
        size_t size = zframe_size (frame);
        zq_msg_t *msg = zq_msg_decode_buffers (&data, &size, 1, 0);
        if (!msg) {
            zq_cli_error (cli, "a peeked message does not decode: %s", zq_strerror (errno));
            rc = ZQ_EXIT_BAD_INPUT;
            continue;
        }
        int printed = zq_cli_print_msg (cli, msg);
        if (printed)
            rc = printed;
        zq_msg_destroy (&msg);
    }
    zmsg_destroy (&reply);
    return rc;
}

//  purge and redrive: one count back.
static int
s_count_command (zq_cli_t *cli, const char *command, const char *key, const char *verb)
{
    int rc;
    zmsg_t *reply = s_request (cli, &rc, command, cli->args[1], NULL);
    if (!reply)
        return rc;
    zframe_t *frame = zmsg_first (reply);
    zq_msg_t *row = frame ? s_row (frame) : NULL;
    printf ("%s %llu message%s\n", verb, (unsigned long long)(row ? s_uint (row, key) : 0),
            row && s_uint (row, key) == 1 ? "" : "s");
    zq_msg_destroy (&row);
    zmsg_destroy (&reply);
    return ZQ_EXIT_OK;
}

int
zq_cli_purge (zq_cli_t *cli)
{
    return s_count_command (cli, "PURGE", "purged", "purged");
}

int
zq_cli_redrive (zq_cli_t *cli)
{
    return s_count_command (cli, "REDRIVE", "redriven", "redrove");
}
