/*  =========================================================================
    zq_cli_reliable - zq put and zq get: the reliable pattern from the
    command line, against an embedded server or zqd alike.

    put waits for the server's confirms: with one BODY it exits 0 once the
    message is stored; with BODY "-" it posts one message per stdin line
    (a window of max_in_flight unconfirmed) and prints each line's 1-based
    number as its confirm comes. get prints each delivery's body and acks
    it after printing, or leaves it unacked with --no-ack.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_cli.h"

//  The deadline of a wait with no progress, from --timeout (or the
//  send_timeout_ms option).
static int
s_put_timeout_ms (zq_cli_t *cli)
{
    if (cli->timeout_ms != ZQ_TIMEOUT_DEFAULT)
        return cli->timeout_ms;
    int64_t value = 5000;
    zq_options_get_int (cli->options, "send_timeout_ms", &value);
    return (int)value;
}

//  One message, confirmed before the exit.
static int
s_put_one (zq_cli_t *cli, zq_queue_t *queue, zq_msg_t *msg)
{
    if (zq_queue_send (queue, &msg, s_put_timeout_ms (cli)) == 0)
        return ZQ_EXIT_OK;
    int errnum = errno;
    zq_msg_destroy (&msg);
    if (errnum == ZQ_EFULL || errnum == EINVAL || errnum == ZQ_ELIMIT || errnum == EBUSY ||
        errnum == ENOSPC || errnum == EEXIST) {
        zq_cli_error (cli, "the server refused the message: %s",
                      errnum == ZQ_EFULL ? "its storage is full"
                      : errnum == ENOSPC ? "its disk is under its min_free_bytes watermark"
                      : errnum == ZQ_ELIMIT
                          ? "it holds max_queues (or max_auto_queues) queues already"
                      : errnum == EBUSY  ? "it has no file descriptor to open the queue now"
                      : errnum == EEXIST ? "it holds another message under this id"
                                         : "it can never store it (queue name, size or envelope)");
        return ZQ_EXIT_REMOTE;
    }
    if (errnum == EAGAIN && !zq_cli_interrupted) {
        zq_cli_error (cli,
                      "no confirm from %s within %d ms: is zqd (or another reliable server) "
                      "running there, on its bind endpoint? The message may still be stored",
                      cli->args[0], s_put_timeout_ms (cli));
        return ZQ_EXIT_TIMEOUT;
    }
    return zq_cli_failure (cli, "put", errnum);
}

//  Line numbers of the messages awaiting their confirm, by id.
static uint64_t
s_take_line (zhashx_t *lines, const uint8_t *id)
{
    char key[ZQ_MSG_ID_SIZE * 2 + 1];
    for (int i = 0; i < ZQ_MSG_ID_SIZE; i++)
        snprintf (key + 2 * i, 3, "%02x", id[i]);
    uint64_t line = (uint64_t)(uintptr_t)zhashx_lookup (lines, key);
    if (line)
        zhashx_delete (lines, key);
    return line;
}

static int
s_keep_line (zhashx_t *lines, const uint8_t *id, uint64_t line)
{
    char key[ZQ_MSG_ID_SIZE * 2 + 1];
    for (int i = 0; i < ZQ_MSG_ID_SIZE; i++)
        snprintf (key + 2 * i, 3, "%02x", id[i]);
    return zhashx_insert (lines, key, (void *)(uintptr_t)line);
}

//  Takes every confirm report waiting, printing line numbers. Returns 0,
//  or an exit code for a refusal that will never be stored.
static int
s_take_reports (zq_cli_t *cli, zq_queue_t *queue, zhashx_t *lines, bool *progress)
{
    zq_cli_progress_t *counter = cli->progress;
    uint8_t id[ZQ_MSG_ID_SIZE];
    while (true) {
        int rc = zq_queue_confirmed (queue, id);
        if (rc && errno == EAGAIN)
            return 0;
        //  Refused for now (storage full, failed or out of space, the
        //  server busy: zq_queue_confirmed's contract): kept in the outbox
        //  and sent again. Only a refusal for good ends the run.
        if (rc && errno != EINVAL && errno != EEXIST && errno != ZQ_ELIMIT && errno != EACCES)
            continue;
        uint64_t line = s_take_line (lines, id);
        if (rc) {
            zq_cli_error (cli, "line %llu: the server refused it: %s", (unsigned long long)line,
                          zq_strerror (errno));
            return ZQ_EXIT_REMOTE;
        }
        if (line) {
            printf ("%llu\n", (unsigned long long)line);
            fflush (stdout);
            zq_cli_progress_add (counter, 1);
        }
        *progress = true;
    }
}

//  Waits for something to happen on the producer for up to wait_ms.
static void
s_wait (zq_queue_t *queue, int wait_ms)
{
    //  The fd rule: reports already taken in need no wait.
    int events = zq_queue_events (queue);
    if (events > 0 && (events & ZQ_POLLIN))
        return;
    int64_t timer = zq_queue_next_timer_ms (queue);
    if (timer >= 0 && (wait_ms < 0 || timer < wait_ms))
        wait_ms = (int)timer;
    zmq_pollitem_t item = {NULL, zq_queue_fd (queue), ZMQ_POLLIN, 0};
    zmq_poll (&item, 1, wait_ms < 0 || wait_ms > 100 ? 100 : wait_ms);
}

//  Every line of stdin, posted; line numbers printed as confirms come.
static int
s_put_lines (zq_cli_t *cli, zq_queue_t *queue, zq_cli_source_t *source, const char *subject)
{
    zhashx_t *lines = zhashx_new ();
    if (!lines)
        return ZQ_EXIT_TRANSPORT;
    int timeout_ms = s_put_timeout_ms (cli);
    int64_t last_progress = zclock_mono ();
    int rc = 0;
    int bad_input = 0;
    bool reading = true;
    while (rc == 0 && !zq_cli_interrupted) {
        bool progress = false;
        rc = s_take_reports (cli, queue, lines, &progress);
        if (rc)
            break;
        if (reading) {
            zq_msg_t *msg = NULL;
            int input_rc = zq_cli_source_next (source, subject, &msg);
            if (input_rc) {
                //  Bad input ends the reading; what was posted before it
                //  is still seen confirmed.
                bad_input = input_rc;
                msg = NULL;
            }
            if (!msg)
                reading = false;
            else {
                uint8_t id[ZQ_MSG_ID_SIZE];
                memcpy (id, zq_msg_id (msg), ZQ_MSG_ID_SIZE);
                //  Waits while the window is full, taking confirms meanwhile.
                while (zq_queue_post (queue, &msg, 0) && errno == EAGAIN && !zq_cli_interrupted) {
                    rc = s_take_reports (cli, queue, lines, &progress);
                    if (rc)
                        break;
                    if (progress)
                        last_progress = zclock_mono ();
                    else if (timeout_ms >= 0 && zclock_mono () - last_progress > timeout_ms)
                        break;
                    s_wait (queue, timeout_ms);
                }
                if (msg) {
                    int errnum = errno;
                    zq_msg_destroy (&msg);
                    if (!rc)
                        rc = zq_cli_failure (cli, "no confirm", errnum == 0 ? EAGAIN : errnum);
                    break;
                }
                s_keep_line (lines, id, source->line_number);
                last_progress = zclock_mono ();
                continue;
            }
        }
        if (!reading && zhashx_size (lines) == 0)
            break;
        if (progress)
            last_progress = zclock_mono ();
        else if (timeout_ms >= 0 && zclock_mono () - last_progress > timeout_ms) {
            zq_cli_error (cli,
                          "no confirm for %zu message%s from %s within %d ms: is zqd (or another "
                          "reliable server) running there, on its bind endpoint?",
                          zhashx_size (lines), zhashx_size (lines) == 1 ? "" : "s", cli->args[0],
                          timeout_ms);
            rc = ZQ_EXIT_TIMEOUT;
            break;
        }
        if (!reading)
            s_wait (queue, timeout_ms);
    }
    if (rc == 0 && zq_cli_interrupted)
        rc = zq_cli_interrupt_exit ();
    zhashx_destroy (&lines);
    return rc ? rc : bad_input;
}

int
zq_cli_put (zq_cli_t *cli)
{
    const char *endpoints = cli->args[0];
    const char *subject = cli->args[1];
    if (zq_queue_name_check (subject) != 0) {
        //  Refused as the server would (exit 5), before anything is sent.
        zq_cli_error (cli, "'%s' is not a queue name a producer may put to (zq(1))", subject);
        return ZQ_EXIT_REMOTE;
    }
    zq_cli_source_t source;
    int rc = zq_cli_source_open (&source, cli, cli->args[2]);
    if (rc)
        return rc;
    zq_queue_t *queue = zq_cli_queue_open (cli, "reliable", ZQ_PRODUCER, endpoints);
    if (!queue) {
        zq_cli_source_close (&source);
        return ZQ_EXIT_TRANSPORT;
    }
    if (source.from_stdin) {
        zq_cli_progress_t progress;
        zq_cli_progress_start (&progress, "stored");
        cli->progress = &progress;
        rc = s_put_lines (cli, queue, &source, subject);
        cli->progress = NULL;
        zq_cli_progress_end (cli, &progress);
    } else {
        //  One BODY, sent COUNT times (default once), each confirmed.
        uint64_t sent = 0;
        while (rc == 0) {
            zq_msg_t *msg = NULL;
            rc = zq_cli_source_next (&source, subject, &msg);
            if (rc || !msg)
                break;
            rc = s_put_one (cli, queue, msg);
            sent++;
        }
    }
    zq_queue_destroy (&queue);
    zq_cli_source_close (&source);
    return rc;
}

int
zq_cli_get (zq_cli_t *cli)
{
    //  Default: one message. "-n all": until the queue stays empty for
    //  --timeout (default 1000 ms).
    uint64_t count = cli->given[ZQ_OPT_COUNT] ? cli->count : 1;
    int timeout_ms = cli->timeout_ms;
    if (timeout_ms == ZQ_TIMEOUT_DEFAULT)
        timeout_ms = count == 0 ? 1000 : -1;
    //  Deliveries for no more than get will take: the consumer's window
    //  shrinks as it acks, so the server never sends more than COUNT.
    //  (With --no-ack nothing is settled and the window stays at COUNT.)
    if (count && !zq_options_is_set (cli->options, "max_deliveries"))
        zq_options_set_int (cli->options, "max_deliveries", (int64_t)count);
    zq_queue_t *queue = zq_cli_queue_open (cli, "reliable", ZQ_CONSUMER, cli->args[0]);
    if (!queue)
        return ZQ_EXIT_TRANSPORT;
    if (zq_queue_name_check (cli->args[1]) < 0) {
        zq_queue_destroy (&queue);
        return zq_cli_usage_error (cli, "'%s' is not a queue name (zq(1))", cli->args[1]);
    }
    if (zq_queue_subscribe (queue, cli->args[1])) {
        zq_cli_error (cli, "subscribe: %s", zq_strerror (errno));
        zq_queue_destroy (&queue);
        return ZQ_EXIT_USAGE;
    }
    //  "-n all": a summary at the end, and a live count on a terminal.
    zq_cli_progress_t progress;
    if (count == 0) {
        zq_cli_progress_start (&progress, "received");
        cli->progress = &progress;
    }
    int rc = zq_cli_receive_all (cli, queue, count, timeout_ms, !cli->given[ZQ_OPT_NO_ACK]);
    if (count == 0) {
        cli->progress = NULL;
        zq_cli_progress_end (cli, &progress);
    }
    zq_queue_destroy (&queue);
    return rc;
}
