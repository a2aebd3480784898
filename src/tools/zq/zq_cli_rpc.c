/*  =========================================================================
    zq_cli_rpc - zq req and rep: the rpc pattern from the command line.

    Error replies. The rpc pattern carries whatever reply a server chooses;
    the command line marks a reply that reports a failure with the header
    "error" (its text) and the body {"error": TEXT}. zq rep --exec sends one
    when the command fails; zq req prints the text to stderr, the body to
    stdout as usual, and exits 5.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#define _GNU_SOURCE //  asprintf
#include "zq_cli.h"
#include "zq_internal.h" //  zqi_text_escaped
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

//  The header that marks an error reply.
#define S_ERROR_HEADER "error"
//  Most bytes of output --exec takes from a command (beyond: error reply).
#define S_EXEC_OUTPUT_MAX (16 * 1024 * 1024)

//  ---- zq req ----------------------------------------------------------------

//  The library's notices while zq req runs (a retry and why) go to stderr.
static void
s_req_log (zq_log_level_t level, const char *line, void *arg)
{
    (void)level;
    zq_cli_error ((zq_cli_t *)arg, "%s", line);
}

int
zq_cli_req (zq_cli_t *cli)
{
    zq_set_log_handler (s_req_log, cli, ZQ_LOG_NOTICE);
    const char *endpoints = cli->args[0];
    const char *subject = cli->arg_count == 3 ? cli->args[1] : "";
    zq_cli_source_t source;
    int rc = zq_cli_source_open (&source, cli, cli->args[cli->arg_count - 1]);
    if (rc)
        return rc;
    zq_queue_t *queue = zq_cli_queue_open (cli, "rpc", ZQ_CLIENT, endpoints);
    if (!queue) {
        zq_cli_source_close (&source);
        return ZQ_EXIT_TRANSPORT;
    }
    uint64_t answered = 0;
    bool error_reply = false;
    while (rc == 0) {
        zq_msg_t *request = NULL;
        rc = zq_cli_source_next (&source, subject, &request);
        if (rc || !request)
            break;
        uint8_t id[ZQ_MSG_ID_SIZE];
        memcpy (id, zq_msg_id (request), ZQ_MSG_ID_SIZE);
        int64_t start = zclock_mono ();
        char what[64];
        snprintf (what, sizeof what, "request %llu", (unsigned long long)answered + 1);
        if (zq_queue_send (queue, &request, cli->timeout_ms)) {
            int errnum = errno;
            zq_msg_destroy (&request);
            rc = zq_cli_failure (cli, errnum == EAGAIN ? "no server took the request" : what,
                                 errnum);
            break;
        }
        //  --timeout bounds the whole request: the send's wait and the reply's.
        int wait_ms = cli->timeout_ms;
        if (wait_ms >= 0) {
            int64_t left = wait_ms - (zclock_mono () - start);
            wait_ms = left > 0 ? (int)left : 0;
        } else
            wait_ms = -1; //  the request's own deadlines (request_timeout_ms, retries) end it
        zq_msg_t *reply = NULL;
        while (!reply) {
            reply = zq_queue_recv (queue, wait_ms);
            if (!reply)
                break;
            if (memcmp (zq_msg_id (reply), id, ZQ_MSG_ID_SIZE) != 0)
                zq_msg_destroy (&reply); //  not ours (cannot happen one at a time)
        }
        if (!reply) {
            char reason[96];
            snprintf (reason, sizeof reason, "%s: no reply", what);
            rc = zq_cli_failure (cli, reason, errno);
            break;
        }
        answered++;
        const char *error = zq_msg_header (reply, S_ERROR_HEADER);
        if (error) {
            //  The server's text: shown escaped, as a log line.
            char *shown = zqi_text_escaped (error);
            zq_cli_error (cli, "%s: error reply: %s", what, shown ? shown : "?");
            free (shown);
            error_reply = true;
        }
        int print_rc = zq_cli_print_msg (cli, reply);
        zq_msg_destroy (&reply);
        if (print_rc)
            rc = print_rc;
    }
    zq_queue_destroy (&queue);
    zq_cli_source_close (&source);
    if (rc == 0 && error_reply)
        rc = ZQ_EXIT_REMOTE;
    return rc;
}

//  ---- zq rep ----------------------------------------------------------------

//  Makes an error reply with text.
static zq_msg_t *
s_error_reply (const zq_msg_t *request, const char *text)
{
    zq_msg_t *reply = zq_msg_new (zq_msg_subject (request));
    if (reply && (zq_msg_set_header (reply, S_ERROR_HEADER, text) ||
                  zq_msg_pack (reply, "{ss}", "error", text)))
        zq_msg_destroy (&reply);
    return reply;
}

//  Runs cli->exec for request and makes the reply from its output, or an
//  error reply if it fails. Returns NULL only on ENOMEM.
static zq_msg_t *
s_exec (zq_cli_t *cli, const zq_msg_t *request)
{
    char text[256];
    char *input = zq_msg_body_json (request);
    if (!input) {
        snprintf (text, sizeof text, "request body has no JSON form: %s", zq_strerror (errno));
        return s_error_reply (request, text);
    }
    //  The request goes through an unnamed temporary file, so the command
    //  may read it or not, in any order with its output.
    FILE *in = tmpfile ();
    int out[2] = {-1, -1};
    if (!in || fprintf (in, "%s\n", input) < 0 || fflush (in) || fseek (in, 0, SEEK_SET) ||
        pipe (out)) {
        snprintf (text, sizeof text, "cannot run the command: %s", strerror (errno));
        free (input);
        if (in)
            fclose (in);
        return s_error_reply (request, text);
    }
    free (input);
    //  The child gets the environment plus ZQ_SUBJECT and ZQ_ID, built
    //  here: between fork and exec only async-signal-safe calls are made.
    extern char **environ;
    size_t env_count = 0;
    while (environ[env_count])
        env_count++;
    char **env = (char **)calloc (env_count + 3, sizeof (char *));
    char id_hex[ZQ_MSG_ID_HEX_SIZE + 1];
    char *subject_var = NULL, *id_var = NULL;
    if (env && asprintf (&subject_var, "ZQ_SUBJECT=%s", zq_msg_subject (request)) >= 0 &&
        asprintf (&id_var, "ZQ_ID=%s", zq_msg_id_hex (request, id_hex)) >= 0) {
        size_t used = 0;
        for (size_t i = 0; i < env_count; i++)
            if (strncmp (environ[i], "ZQ_SUBJECT=", 11) && strncmp (environ[i], "ZQ_ID=", 6))
                env[used++] = environ[i];
        env[used++] = subject_var;
        env[used++] = id_var;
    } else {
        free (env);
        env = NULL;
    }
    fflush (stdout);
    fflush (stderr);
    pid_t child = env ? fork () : -1;
    if (child == 0) {
        signal (SIGINT, SIG_DFL);
        signal (SIGTERM, SIG_DFL);
        dup2 (fileno (in), STDIN_FILENO);
        dup2 (out[1], STDOUT_FILENO);
        close (out[0]);
        close (out[1]);
        char *argv[] = {(char *)"sh", (char *)"-c", (char *)cli->exec, NULL};
        execve ("/bin/sh", argv, env);
        _exit (127);
    }
    int fork_errno = env ? errno : ENOMEM;
    free (env);
    free (subject_var);
    free (id_var);
    fclose (in);
    close (out[1]);
    if (child < 0) {
        close (out[0]);
        snprintf (text, sizeof text, "cannot run the command: %s", strerror (fork_errno));
        return s_error_reply (request, text);
    }
    //  Read everything the command writes, keeping at most the limit.
    size_t size = 0, capacity = 4096;
    char *output = (char *)malloc (capacity);
    bool too_big = false;
    while (output) {
        if (size + 1 == capacity) {
            if (capacity >= S_EXEC_OUTPUT_MAX) {
                too_big = true;
                size = 0; //  keep draining, discard
            } else {
                char *bigger = (char *)realloc (output, capacity * 2);
                if (!bigger) {
                    free (output);
                    output = NULL;
                    break;
                }
                output = bigger;
                capacity *= 2;
            }
        }
        ssize_t got = read (out[0], output + size, capacity - 1 - size);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        size += (size_t)got;
    }
    close (out[0]);
    int status = 0;
    while (waitpid (child, &status, 0) < 0 && errno == EINTR)
        ;
    if (!output)
        return NULL;
    output[size] = '\0';
    zq_msg_t *reply = NULL;
    if (WIFSIGNALED (status))
        snprintf (text, sizeof text, "command killed by signal %d", WTERMSIG (status));
    else if (WEXITSTATUS (status) != 0)
        snprintf (text, sizeof text, "command failed with exit status %d", WEXITSTATUS (status));
    else if (too_big)
        snprintf (text, sizeof text, "command output is over %d bytes", S_EXEC_OUTPUT_MAX);
    else if (strlen (output) != size)
        snprintf (text, sizeof text, "command output is not JSON (NUL byte)");
    else {
        reply = zq_msg_new (zq_msg_subject (request));
        if (reply && zq_msg_set_body_json (reply, output)) {
            snprintf (text, sizeof text, "command output is not one JSON document: %s",
                      zq_strerror (errno));
            zq_msg_destroy (&reply);
        } else if (!reply)
            snprintf (text, sizeof text, "%s", zq_strerror (errno));
    }
    free (output);
    return reply ? reply : s_error_reply (request, text);
}

int
zq_cli_rep (zq_cli_t *cli)
{
    zq_queue_t *queue = zq_cli_queue_open (cli, "rpc", ZQ_SERVER, cli->args[0]);
    if (!queue)
        return ZQ_EXIT_TRANSPORT;
    int64_t send_timeout_ms = 5000;
    zq_options_get_int (cli->options, "send_timeout_ms", &send_timeout_ms);
    uint64_t served = 0;
    int rc = ZQ_EXIT_OK;
    while (cli->count == 0 || served < cli->count) {
        zq_msg_t *request = zq_queue_recv (queue, cli->timeout_ms);
        if (!request) {
            if (errno == EAGAIN) {
                if (cli->count || served == 0) {
                    zq_cli_error (cli, "timed out after %llu request%s", (unsigned long long)served,
                                  served == 1 ? "" : "s");
                    rc = ZQ_EXIT_TIMEOUT;
                }
            } else
                rc = zq_cli_failure (cli, "receive", errno);
            break;
        }
        zq_msg_t *reply;
        if (cli->exec)
            reply = s_exec (cli, request);
        else {
            //  Echo: a reply of its own with the request's subject and body.
            size_t size = 0;
            const void *body = zq_msg_body (request, &size);
            reply = zq_msg_new (zq_msg_subject (request));
            if (reply && zq_msg_set_body (reply, body, size))
                zq_msg_destroy (&reply);
        }
        for (size_t i = 0; reply && i < cli->header_count; i++)
            if (zq_msg_set_header (reply, cli->header_names[i], cli->header_values[i]))
                zq_msg_destroy (&reply);
        if (!reply) {
            zq_msg_destroy (&request);
            rc = zq_cli_failure (cli, "making the reply", errno);
            break;
        }
        served++;
        if (zq_queue_reply (queue, request, &reply, (int)send_timeout_ms)) {
            //  A client that left or a request already answered does not
            //  stop the server; anything else does.
            int errnum = errno;
            zq_msg_destroy (&reply);
            char what[64];
            char id_hex[ZQ_MSG_ID_HEX_SIZE + 1];
            snprintf (what, sizeof what, "reply to request %s", zq_msg_id_hex (request, id_hex));
            if (errnum == EHOSTUNREACH || errnum == ZQ_ENOTFOUND || errnum == EAGAIN)
                zq_cli_error (cli, "%s: %s", what, zq_strerror (errnum));
            else {
                zq_msg_destroy (&request);
                rc = zq_cli_failure (cli, what, errnum);
                break;
            }
        }
        zq_msg_destroy (&request);
        if (zq_cli_interrupted) {
            rc = zq_cli_interrupt_exit ();
            break;
        }
    }
    zq_queue_destroy (&queue);
    return rc;
}
