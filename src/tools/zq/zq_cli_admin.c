/*  =========================================================================
    zq_cli_admin - zq stat, ls, peek, purge, redrive, delete, ping and
    info: the
    device's admin socket from the command line (doc/DEVICE.md, "Admin
    protocol"). Replies are read with the admin codec the device writes
    them with (src/device/zq_admin.h).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_cli.h"
#include "device/zq_admin.h"
#include <time.h>
#include <unistd.h>

//  How long a command waits for the device when --timeout is not given.
#define S_ADMIN_TIMEOUT_MS 5000
//  Most queues zq stat -w remembers between samples (for its rates).
#define S_WATCH_QUEUES_MAX 100000

//  Makes sock a CURVE client when -o curve_server_key or curve_server_cert
//  is given (the same options as zq put's), with curve_cert's key pair or
//  a fresh one. Any other -o is an error: an admin command has no queue.
//  Returns ZQ_EXIT_OK, or an exit code after printing why.
//  Prints why an admin command line is wrong; returns ZQ_EXIT_USAGE.
static int s_usage (zq_cli_t *cli, const char *text, ...) __attribute__ ((format (printf, 2, 3)));

static int
s_usage (zq_cli_t *cli, const char *text, ...)
{
    char line[256];
    va_list args;
    va_start (args, text);
    vsnprintf (line, sizeof line, text, args);
    va_end (args);
    zq_cli_error (cli, "%s", line);
    return ZQ_EXIT_USAGE;
}

static int
s_secure (zq_cli_t *cli, zsock_t *sock)
{
    const zq_option_info_t *info;
    for (size_t index = 0; (info = zq_options_info (index)); index++)
        if (zq_options_is_set (cli->options, info->name) &&
            !streq (info->name, "curve_server_key") && !streq (info->name, "curve_server_cert") &&
            !streq (info->name, "curve_cert"))
            return s_usage (cli,
                            "-o %s: admin commands take only curve_server_key, "
                            "curve_server_cert and curve_cert",
                            info->name);
    const char *server_key = zq_options_get_str (cli->options, "curve_server_key");
    const char *server_cert = zq_options_get_str (cli->options, "curve_server_cert");
    const char *cert_path = zq_options_get_str (cli->options, "curve_cert");
    bool by_key = server_key && *server_key;
    bool by_cert = server_cert && *server_cert;
    if (!by_key && !by_cert) {
        if (cert_path && *cert_path)
            return s_usage (cli, "-o curve_cert needs -o curve_server_key (or "
                                 "curve_server_cert)");
        return ZQ_EXIT_OK;
    }
    if (by_key && by_cert)
        return s_usage (cli, "-o curve_server_key or curve_server_cert, not both");
    uint8_t public_key[32];
    if (by_key && (strlen (server_key) != 40 || !zmq_z85_decode (public_key, server_key)))
        return s_usage (cli, "-o curve_server_key: not a Z85 public key (40 "
                             "characters)");
    if (by_cert) {
        zcert_t *server = zcert_load (server_cert);
        if (!server) {
            zq_cli_error (cli, "-o curve_server_cert: cannot read a certificate from %s",
                          server_cert);
            return ZQ_EXIT_USAGE;
        }
        memcpy (public_key, zcert_public_key (server), sizeof public_key);
        zcert_destroy (&server);
    }
    zcert_t *cert = cert_path && *cert_path ? zcert_load (cert_path) : zcert_new ();
    if (!cert) {
        zq_cli_error (cli, "-o curve_cert: cannot read a certificate from %s", cert_path);
        return ZQ_EXIT_USAGE;
    }
    zcert_apply (cert, sock);
    zcert_destroy (&cert);
    zmq_setsockopt (zsock_resolve (sock), ZMQ_CURVE_SERVERKEY, public_key, sizeof public_key);
    return ZQ_EXIT_OK;
}

//  Sends the command (NULL-terminated strings) to the admin endpoint and
//  returns the reply's frames after "OK", or NULL after printing why, with
//  the exit code in *rc_p. *elapsed_us_p (if not NULL) gets the round trip.
static zmsg_t *
s_request_timed (zq_cli_t *cli, int *rc_p, const char *command, const char *name,
                 const char *argument, int64_t *elapsed_us_p)
{
    const char *endpoint = cli->args[0];
    if (*endpoint == '>' || *endpoint == '@')
        endpoint++;
    if (zq_cli_endpoint_check (cli, endpoint, false)) {
        *rc_p = ZQ_EXIT_TRANSPORT;
        return NULL;
    }
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
    if ((*rc_p = s_secure (cli, sock)) != ZQ_EXIT_OK) {
        zsock_destroy (&sock);
        return NULL;
    }
    if (zsock_connect (sock, "%s", endpoint)) {
        zq_cli_error (cli, "cannot connect to %s: %s", endpoint, zq_strerror (errno));
        zsock_destroy (&sock);
        *rc_p = ZQ_EXIT_TRANSPORT;
        return NULL;
    }
    int64_t start_us = zclock_usecs ();
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
    if (elapsed_us_p)
        *elapsed_us_p = zclock_usecs () - start_us;
    zsock_destroy (&sock);
    if (!reply) {
        if (ready < 0 || zq_cli_interrupted)
            *rc_p = zq_cli_interrupt_exit ();
        else {
            zq_cli_error (cli,
                          "no answer from %s within %d ms: is zqd running there, with "
                          "device/admin (--admin) on that endpoint? (a firewall, or the "
                          "queue endpoint given instead of the admin one, look the same)",
                          endpoint, timeout_ms);
            *rc_p = ZQ_EXIT_TIMEOUT;
        }
        return NULL;
    }
    char *status = zmsg_popstr (reply);
    if (!status || !streq (status, "OK")) {
        //  The reason is the device's text: shown escaped, as a log line.
        char *text = zmsg_popstr (reply);
        char *shown = text ? zqi_text_escaped (text) : NULL;
        zq_cli_error (cli, "%s", shown ? shown : "the device answered with an error");
        free (shown);
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

static zmsg_t *
s_request (zq_cli_t *cli, int *rc_p, const char *command, const char *name, const char *argument)
{
    return s_request_timed (cli, rc_p, command, name, argument, NULL);
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

//  What zq stat -w remembers of a queue from the sample before.
typedef struct {
    uint64_t in;
    uint64_t out;
    int64_t sampled_us;
} s_seen_t;

static void
s_seen_destroy (void **item_p)
{
    free (*item_p);
    *item_p = NULL;
}

static void
s_print_header (void)
{
    printf ("%-24s %-7s %9s %9s %9s %9s %7s %8s %9s %9s %9s %11s %7s %8s\n", "QUEUE", "KIND",
            "DEPTH", "READY", "IN_FLIGHT", "CONSUMERS", "DELAYED", "OLDEST", "IN/S", "OUT/S",
            "ACKED", "REDELIVERED", "DEAD", "DROPPED");
}

//  Prints one row of the table. With seen (watch mode), the rates are
//  those between the previous sample of this queue and this one; the
//  first sample of a queue shows the device's own (over its last
//  seconds, live counters included).
static void
s_print_row (const zqi_admin_row_t *row, zhashx_t *seen, int64_t sampled_us)
{
    const zqi_row_t *c = &row->counters;
    double in_rate = c->in_rate;
    double out_rate = c->out_rate;
    s_seen_t *before = seen ? (s_seen_t *)zhashx_lookup (seen, row->name) : NULL;
    if (before && sampled_us > before->sampled_us && c->in >= before->in && c->out >= before->out) {
        double seconds = (double)(sampled_us - before->sampled_us) / 1e6;
        in_rate = (double)(c->in - before->in) / seconds;
        out_rate = (double)(c->out - before->out) / seconds;
    }
    if (seen && !before && zhashx_size (seen) < S_WATCH_QUEUES_MAX) {
        before = (s_seen_t *)calloc (1, sizeof *before);
        if (before && zhashx_insert (seen, row->name, before)) {
            free (before);
            before = NULL; //  not remembered: its rates stay the device's
        }
    }
    if (before) {
        before->in = c->in;
        before->out = c->out;
        before->sampled_us = sampled_us;
    }
    char age[32];
    s_age (age, sizeof age, c->oldest_age_ms);
    char name[4 * ZQI_ADMIN_NAME_MAX + 1], kind[4 * ZQI_ADMIN_KIND_MAX + 1];
    zqi_text_escape (name, sizeof name, row->name);
    zqi_text_escape (kind, sizeof kind, row->kind);
    printf ("%-24s %-7s %9llu %9llu %9llu %9llu %7llu %8s %9.1f %9.1f %9llu %11llu %7llu %8llu\n",
            name, kind, (unsigned long long)c->depth, (unsigned long long)c->ready,
            (unsigned long long)c->in_flight, (unsigned long long)c->consumers,
            (unsigned long long)c->delayed, age, in_rate, out_rate, (unsigned long long)c->acked,
            (unsigned long long)c->redelivered, (unsigned long long)c->dead,
            (unsigned long long)c->dropped);
}

//  One sample of zq stat: a table, or with --json a JSON array of every
//  row the device sent (one line). Returns an exit code.
static int
s_stat_once (zq_cli_t *cli, zhashx_t *seen)
{
    int rc;
    const char *name = cli->arg_count > 1 ? cli->args[1] : NULL;
    zmsg_t *reply = s_request (cli, &rc, "STAT", name, NULL);
    if (!reply)
        return rc;
    int64_t sampled_us = zclock_usecs ();
    bool json = cli->given[ZQ_OPT_JSON] || (name && !seen);
    if (json) {
        //  Without -w, one queue prints as one object (as before), all
        //  queues as an array.
        bool array = !name || seen;
        if (array)
            fputc ('[', stdout);
        size_t index = 0;
        for (zframe_t *frame = zmsg_first (reply); frame; frame = zmsg_next (reply), index++) {
            zqi_admin_row_t row;
            char *text = zqi_admin_row_decode (zframe_data (frame), zframe_size (frame), &row) == 0
                             ? zq_msgpack_to_json (zframe_data (frame), zframe_size (frame))
                             : NULL;
            if (!text) {
                zq_cli_error (cli, "the device's answer is malformed");
                rc = ZQ_EXIT_BAD_INPUT;
                continue;
            }
            printf ("%s%s", index && array ? "," : "", text);
            free (text);
        }
        printf ("%s\n", array ? "]" : "");
    } else {
        s_print_header ();
        for (zframe_t *frame = zmsg_first (reply); frame; frame = zmsg_next (reply)) {
            zqi_admin_row_t row;
            if (zqi_admin_row_decode (zframe_data (frame), zframe_size (frame), &row)) {
                zq_cli_error (cli, "the device's answer is malformed");
                rc = ZQ_EXIT_BAD_INPUT;
                continue;
            }
            s_print_row (&row, seen, sampled_us);
        }
    }
    zmsg_destroy (&reply);
    fflush (stdout);
    return rc;
}

int
zq_cli_stat (zq_cli_t *cli)
{
    if (!cli->given[ZQ_OPT_WATCH])
        return s_stat_once (cli, NULL);
    //  Watch: a sample every -w SEC until interrupted (or -n samples).
    zhashx_t *seen = zhashx_new ();
    if (!seen) {
        zq_cli_error (cli, "%s", strerror (ENOMEM));
        return ZQ_EXIT_TRANSPORT;
    }
    zhashx_set_destructor (seen, s_seen_destroy);
    bool terminal = isatty (STDOUT_FILENO);
    int rc = ZQ_EXIT_OK;
    for (uint64_t sample = 0; !cli->count || sample < cli->count; sample++) {
        if (sample) {
            struct timespec pause = {(time_t)(cli->watch_ms / 1000),
                                     (long)(cli->watch_ms % 1000) * 1000000L};
            if (nanosleep (&pause, NULL) || zq_cli_interrupted)
                break;
        }
        if (terminal && !cli->given[ZQ_OPT_JSON])
            printf ("\033[H\033[2J"); //  home, clear: the table redraws in place
        if (!cli->given[ZQ_OPT_JSON]) {
            time_t now = time (NULL);
            struct tm local;
            char when[64] = "";
            if (localtime_r (&now, &local))
                strftime (when, sizeof when, "%Y-%m-%d %H:%M:%S", &local);
            printf ("%s  %s  every %g s\n", when, cli->args[0], cli->watch_ms / 1000.0);
        }
        rc = s_stat_once (cli, seen);
        if (rc != ZQ_EXIT_OK && rc != ZQ_EXIT_BAD_INPUT)
            break;
    }
    zhashx_destroy (&seen);
    if (zq_cli_interrupted)
        return ZQ_EXIT_OK; //  Ctrl-C is how a watch ends
    return rc;
}

int
zq_cli_ls (zq_cli_t *cli)
{
    int rc;
    zmsg_t *reply = s_request (cli, &rc, "LS", NULL, NULL);
    if (!reply)
        return rc;
    for (zframe_t *frame = zmsg_first (reply); frame; frame = zmsg_next (reply)) {
        zqi_admin_row_t row;
        if (zqi_admin_row_decode (zframe_data (frame), zframe_size (frame), &row) == 0) {
            char name[4 * ZQI_ADMIN_NAME_MAX + 1], kind[4 * ZQI_ADMIN_KIND_MAX + 1];
            zqi_text_escape (name, sizeof name, row.name);
            zqi_text_escape (kind, sizeof kind, row.kind);
            printf ("%s %s\n", name, kind);
        } else {
            zq_cli_error (cli, "the device's answer is malformed");
            rc = ZQ_EXIT_BAD_INPUT;
        }
    }
    zmsg_destroy (&reply);
    return rc;
}

int
zq_cli_ping (zq_cli_t *cli)
{
    int rc;
    int64_t elapsed_us = 0;
    zmsg_t *reply = s_request_timed (cli, &rc, "PING", NULL, NULL, &elapsed_us);
    if (!reply)
        return rc;
    const char *endpoint = cli->args[0];
    if (*endpoint == '>' || *endpoint == '@')
        endpoint++;
    printf ("%s answered in %.2f ms\n", endpoint, (double)elapsed_us / 1000.0);
    zmsg_destroy (&reply);
    return ZQ_EXIT_OK;
}

int
zq_cli_info (zq_cli_t *cli)
{
    int rc;
    zmsg_t *reply = s_request (cli, &rc, "INFO", NULL, NULL);
    if (!reply)
        return rc;
    zframe_t *frame = zmsg_first (reply);
    zqi_admin_info_t info;
    if (!frame || zqi_admin_info_decode (zframe_data (frame), zframe_size (frame), &info)) {
        zq_cli_error (cli, "the device's answer is malformed (is it older than INFO?)");
        zmsg_destroy (&reply);
        return ZQ_EXIT_BAD_INPUT;
    }
    if (cli->given[ZQ_OPT_JSON]) {
        char *text = zq_msgpack_to_json (zframe_data (frame), zframe_size (frame));
        if (text)
            printf ("%s\n", text);
        free (text);
    } else {
        char uptime[32];
        s_age (uptime, sizeof uptime, info.uptime_ms);
        //  The texts are the device's: shown escaped (in place; a store or
        //  bind cut at its field's size is still shown, cut).
        char version[4 * sizeof info.version], fsync[4 * sizeof info.fsync];
        zqi_text_escape (version, sizeof version, info.version);
        zqi_text_escape (fsync, sizeof fsync, info.fsync);
        char *store = zqi_text_escaped (info.store);
        char *bind = zqi_text_escaped (info.bind);
        printf ("version            %s\n"
                "uptime             %s\n"
                "store              %s\n"
                "fsync              %s\n"
                "bind               %s\n"
                "queues             %llu\n"
                "max_queues         %llu\n"
                "max_message_bytes  %llu\n"
                "peek_max           %llu\n"
                "admin_request_max  %llu bytes\n",
                version, uptime, store ? store : "?", fsync, bind ? (*bind ? bind : "(none)") : "?",
                (unsigned long long)info.queues, (unsigned long long)info.max_queues,
                (unsigned long long)info.max_message_bytes, (unsigned long long)info.peek_max,
                (unsigned long long)info.admin_request_max_bytes);
        free (store);
        free (bind);
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

//  purge, redrive and delete: one count back.
static int
s_count_command (zq_cli_t *cli, const char *command, const char *key, const char *verb)
{
    int rc;
    zmsg_t *reply =
        s_request (cli, &rc, command, cli->args[1], cli->given[ZQ_OPT_FORCE] ? "FORCE" : NULL);
    if (!reply)
        return rc;
    zframe_t *frame = zmsg_first (reply);
    uint64_t count = 0;
    if (!frame || zqi_admin_count_decode (zframe_data (frame), zframe_size (frame), key, &count)) {
        zq_cli_error (cli, "the device's answer is malformed");
        zmsg_destroy (&reply);
        return ZQ_EXIT_BAD_INPUT;
    }
    printf ("%s %llu message%s\n", verb, (unsigned long long)count, count == 1 ? "" : "s");
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

int
zq_cli_delete (zq_cli_t *cli)
{
    return s_count_command (cli, "DELETE", "deleted", "deleted");
}
