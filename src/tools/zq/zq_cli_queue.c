/*  =========================================================================
    zq_cli_queue - zq push, pull, pub and sub: the pipeline and pubsub
    patterns from the command line.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_cli.h"

//  Sends every message of the source; args are ENDPOINTS [SUBJECT] BODY.
static int
s_send_all (zq_cli_t *cli, const char *pattern, zq_role_t role)
{
    const char *endpoints = cli->args[0];
    const char *subject = cli->arg_count == 3 ? cli->args[1] : "";
    const char *body_arg = cli->args[cli->arg_count - 1];
    zq_cli_source_t source;
    //  Check BODY before touching the network.
    int rc = zq_cli_source_open (&source, cli, body_arg);
    if (rc)
        return rc;
    zq_queue_t *queue = zq_cli_queue_open (cli, pattern, role, endpoints);
    if (!queue) {
        zq_cli_source_close (&source);
        return ZQ_EXIT_TRANSPORT;
    }
    if (cli->wait_subscribers) {
        int wait_ms = cli->timeout_ms == ZQ_TIMEOUT_DEFAULT ? -1 : cli->timeout_ms;
        if (zq_queue_wait_subscribers (queue, cli->wait_subscribers, wait_ms))
            rc = zq_cli_failure (cli, "waiting for subscribers", errno);
    }
    uint64_t sent = 0;
    while (rc == 0) {
        zq_msg_t *msg = NULL;
        rc = zq_cli_source_next (&source, subject, &msg);
        if (rc || !msg)
            break;
        if (zq_queue_send (queue, &msg, cli->timeout_ms)) {
            int errnum = errno;
            zq_msg_destroy (&msg);
            char what[96];
            snprintf (what, sizeof what, "message %llu (%s)", (unsigned long long)sent + 1,
                      errnum == EAGAIN ? "no peer took it" : "send");
            rc = zq_cli_failure (cli, what, errnum);
            if (source.from_stdin)
                zq_cli_error (cli, "%llu message%s before it %s sent", (unsigned long long)sent,
                              sent == 1 ? "" : "s", sent == 1 ? "was" : "were");
            break;
        }
        sent++;
    }
    zq_queue_destroy (&queue);
    zq_cli_source_close (&source);
    return rc;
}

int
zq_cli_receive_all (zq_cli_t *cli, zq_queue_t *queue, uint64_t count, int timeout_ms, bool ack)
{
    uint64_t received = 0;
    int rc = ZQ_EXIT_OK;
    int bad_output = 0;
    while (count == 0 || received < count) {
        zq_msg_t *msg = zq_queue_recv (queue, timeout_ms);
        if (!msg) {
            int errnum = errno;
            if (errnum == EAGAIN) {
                //  The stream went quiet: a normal end without -n.
                if (count || received == 0) {
                    zq_cli_error (cli, "timed out after %llu message%s",
                                  (unsigned long long)received, received == 1 ? "" : "s");
                    rc = ZQ_EXIT_TIMEOUT;
                }
            } else
                rc = zq_cli_failure (cli, "receive", errnum);
            break;
        }
        received++;
        zq_cli_progress_add (cli->progress, 1);
        if (zq_cli_print_msg (cli, msg))
            bad_output = ZQ_EXIT_BAD_INPUT;
        //  Printed (and flushed): now it may go. A body with no JSON form
        //  is acked too: it was reported, and would only come back.
        if (ack && zq_queue_ack (queue, msg))
            rc = zq_cli_failure (cli, "ack", errno);
        zq_msg_destroy (&msg);
        if (rc)
            break;
    }
    return rc ? rc : bad_output;
}

int
zq_cli_push (zq_cli_t *cli)
{
    return s_send_all (cli, "pipeline", ZQ_PRODUCER);
}

int
zq_cli_pub (zq_cli_t *cli)
{
    return s_send_all (cli, "pubsub", ZQ_PUBLISHER);
}

int
zq_cli_pull (zq_cli_t *cli)
{
    zq_queue_t *queue = zq_cli_queue_open (cli, "pipeline", ZQ_CONSUMER, cli->args[0]);
    if (!queue)
        return ZQ_EXIT_TRANSPORT;
    int rc = zq_cli_receive_all (cli, queue, cli->count, cli->timeout_ms, false);
    zq_queue_destroy (&queue);
    return rc;
}

int
zq_cli_sub (zq_cli_t *cli)
{
    zq_queue_t *queue = zq_cli_queue_open (cli, "pubsub", ZQ_SUBSCRIBER, cli->args[0]);
    if (!queue)
        return ZQ_EXIT_TRANSPORT;
    int rc = 0;
    if (cli->arg_count == 1)
        rc = zq_queue_subscribe (queue, "");
    for (size_t i = 1; i < cli->arg_count && rc == 0; i++)
        rc = zq_queue_subscribe (queue, cli->args[i]);
    if (rc) {
        zq_cli_error (cli, "subscribe: %s", zq_strerror (errno));
        rc = errno == ZQ_ETOOBIG ? ZQ_EXIT_USAGE : ZQ_EXIT_TRANSPORT;
    } else
        rc = zq_cli_receive_all (cli, queue, cli->count, cli->timeout_ms, false);
    zq_queue_destroy (&queue);
    return rc;
}
