/*  =========================================================================
    fuzz_admin - libFuzzer target for both directions of the admin
    protocol (doc/DEVICE.md, "Admin protocol").

    Input layout: byte 0 picks the direction (bit 7) and, for replies, the
    command line verb (bits 0-2); the rest is frames, each a 2-byte
    big-endian length (cut to what remains) and its bytes, at most 16.
    - Requests (bit 7 clear): a device (in memory, with a queue holding
      messages and dead letters, a stream and a forward) is kept across
      inputs; a DEALER sends the empty delimiter and the frames to its
      admin socket. A request of at least one frame must get exactly one
      reply, "OK" or "ERROR" first; then a PING must get OK PONG.
    - Replies (bit 7 set): the frames are what a fake device answers to
      zq stat, stat NAME, ls, peek, purge or redrive (src/tools/zq/zq_cli_admin.c,
      the command line's own functions): each must return an exit code,
      never crash, and give up within its timeout on an empty answer.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_cli.h"
#include <fcntl.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define S_MAX_FRAMES       16
#define S_RUNS_PER_DEVICE  2000
#define S_REPLY_TIMEOUT_MS 10000
#define S_EMPTY_TIMEOUT_MS 50

//  What the command line's admin functions need from src/tools/zq/zq.c.
volatile sig_atomic_t zq_cli_interrupted;

void
zq_cli_error (zq_cli_t *cli, const char *format, ...)
{
}

int
zq_cli_interrupt_exit (void)
{
    return 128 + (int)zq_cli_interrupted;
}

static zactor_t *s_device;
static zsock_t *s_admin; //  DEALER on the device's admin socket
static zactor_t *s_fake; //  answers the command line with the input
static char s_fake_endpoint[64];
static int s_null_fd = -1; //  /dev/null, where the command line prints
static int s_runs;
static int s_generation;

static void
s_teardown (void)
{
    zsock_destroy (&s_admin);
    zactor_destroy (&s_device);
    zactor_destroy (&s_fake);
}

static void
s_register_teardown (void)
{
    //  After CZMQ's own exit handler, so it runs first and CZMQ finds no
    //  socket left open.
    static bool registered;
    if (!registered) {
        atexit (s_teardown);
        registered = true;
    }
}

//  ---- Requests: the device's side -----------------------------------------

//  Sends a command frame and an envelope to a reliable server (raw
//  protocol: PUT and the message's one frame).
static void
s_put (zsock_t *dealer, const char *queue, int number)
{
    zq_msg_t *msg = zq_msg_new (queue);
    if (!msg)
        abort ();
    char body[64];
    snprintf (body, sizeof body, "{\"n\": %d, \"text\": \"m\\u00e9ssage %d\"}", number, number);
    if (zq_msg_set_body_json (msg, body) || zq_msg_set_header (msg, "trace", "fuzz"))
        abort ();
    zmsg_t *frames = zmsg_new ();
    if (zq_msg_encode (&msg, frames))
        abort ();
    static const uint8_t put[] = {0x92, 0x01, 0x01};
    zmsg_pushmem (frames, put, sizeof put);
    zmsg_send (&frames, dealer);
}

//  Waits up to the deadline for a message on sock; NULL if none came.
static zmsg_t *
s_recv (zsock_t *sock, int timeout_ms)
{
    zpoller_t *poller = zpoller_new (sock, NULL);
    zmsg_t *msg = poller && zpoller_wait (poller, timeout_ms) ? zmsg_recv (sock) : NULL;
    zpoller_destroy (&poller);
    return msg;
}

//  Puts messages into "orders" and "jobs", then takes each of jobs' and
//  nacks it: with max_attempts 1 they become dead letters in jobs.dead.
static void
s_fill (const char *bind)
{
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    if (!dealer || zsock_connect (dealer, "%s", bind))
        abort ();
    for (int number = 0; number < 12; number++)
        s_put (dealer, number < 8 ? "orders" : "jobs", number);
    static const uint8_t consume_jobs[] = {0x94, 0x01, 0x04, 0xa4, 'j', 'o', 'b', 's', 0x0a};
    zsock_send (dealer, "b", consume_jobs, sizeof consume_jobs);
    for (int deliveries = 0; deliveries < 4;) {
        zmsg_t *msg = s_recv (dealer, S_REPLY_TIMEOUT_MS);
        if (!msg)
            break;
        zframe_t *command = zmsg_first (msg);
        zframe_t *envelope = zmsg_next (msg);
        if (envelope && zframe_size (command) >= 3 && zframe_data (command)[2] == 6) {
            //  DELIVER: NACK it at once, [1, 8, id, 0].
            const void *frame_data = zframe_data (envelope);
            size_t frame_size = zframe_size (envelope);
            zq_msg_t *delivered = zq_msg_decode_buffers (&frame_data, &frame_size, 1, 0);
            if (delivered) {
                uint8_t nack[24] = {0x94, 0x01, 0x08, 0xc4, 16};
                memcpy (nack + 5, zq_msg_id (delivered), ZQ_MSG_ID_SIZE);
                nack[21] = 0x00;
                zsock_send (dealer, "b", nack, (size_t)22);
                zq_msg_destroy (&delivered);
            }
            deliveries++;
        }
        zmsg_destroy (&msg);
    }
    zsock_destroy (&dealer);
}

static void
s_device_setup (void)
{
    int generation = s_generation++;
    char *text =
        zsys_sprintf ("device\n"
                      "    bind = inproc://fuzz-admin-bind-%d\n"
                      "    admin = inproc://fuzz-admin-%d\n"
                      "queue\n"
                      "    max_attempts = 1\n"
                      "    max_queues = 16\n"
                      "queues\n"
                      "    orders\n"
                      "        kind = queue\n"
                      "    metrics\n"
                      "        kind = stream\n"
                      "        in = inproc://fuzz-admin-metrics-in-%d\n"
                      "        out = inproc://fuzz-admin-metrics-out-%d\n"
                      "    news\n"
                      "        kind = forward\n"
                      "        in = inproc://fuzz-admin-news-in-%d\n"
                      "        out = inproc://fuzz-admin-news-out-%d\n",
                      generation, generation, generation, generation, generation, generation);
    zconfig_t *config = text ? zconfig_str_load (text) : NULL;
    char error[512] = "";
    s_device = config ? zq_device_new (config, error, sizeof error) : NULL;
    zconfig_destroy (&config);
    zstr_free (&text);
    if (!s_device) {
        fprintf (stderr, "fuzz_admin: the device did not start: %s\n", error);
        abort ();
    }
    char *bind = zq_device_endpoint (s_device, "bind");
    char *admin = zq_device_endpoint (s_device, "admin");
    char *metrics = zq_device_endpoint (s_device, "metrics/in");
    if (!bind || !admin || !metrics)
        abort ();
    s_fill (bind);
    zsock_t *push = zsock_new_push (metrics);
    for (int number = 0; push && number < 3; number++) {
        zmsg_t *frames = zmsg_new ();
        zq_msg_t *msg = zq_msg_new ("metrics");
        if (msg && zq_msg_set_body_json (msg, "[1, 2.5, null]") == 0 &&
            zq_msg_encode (&msg, frames) == 0)
            zmsg_send (&frames, push);
        zq_msg_destroy (&msg);
        zmsg_destroy (&frames);
    }
    zsock_destroy (&push);
    s_admin = zsock_new_dealer (admin);
    if (!s_admin)
        abort ();
    zsock_set_linger (s_admin, 0);
    zstr_free (&bind);
    zstr_free (&admin);
    zstr_free (&metrics);
    s_register_teardown ();
}

//  Appends the frames the input describes (each a 2-byte length and its
//  bytes, the last cut to what is left) to msg, at most S_MAX_FRAMES.
//  Returns how many.
static size_t
s_add_frames (zmsg_t *msg, const uint8_t *data, size_t size)
{
    size_t frames = 0;
    while (size >= 2 && frames < S_MAX_FRAMES) {
        size_t length = (size_t)data[0] << 8 | data[1];
        data += 2;
        size -= 2;
        if (length > size)
            length = size;
        zmsg_addmem (msg, data, length);
        data += length;
        size -= length;
        frames++;
    }
    return frames;
}

static void
s_request (const uint8_t *data, size_t size)
{
    if (!s_device)
        s_device_setup ();
    zmsg_t *request = zmsg_new ();
    zmsg_addmem (request, NULL, 0);
    size_t frames = s_add_frames (request, data, size);
    zmsg_send (&request, s_admin);
    if (frames > 0) {
        zmsg_t *reply = s_recv (s_admin, S_REPLY_TIMEOUT_MS);
        char *delimiter = reply ? zmsg_popstr (reply) : NULL;
        char *status = reply ? zmsg_popstr (reply) : NULL;
        if (!reply || !delimiter || *delimiter || !status ||
            (!streq (status, "OK") && !streq (status, "ERROR"))) {
            fprintf (stderr, "fuzz_admin: a request got no reply, or a malformed one\n");
            abort ();
        }
        zstr_free (&delimiter);
        zstr_free (&status);
        zmsg_destroy (&reply);
    }
    //  The device still answers.
    zsock_send (s_admin, "ss", "", "PING");
    zmsg_t *reply = s_recv (s_admin, S_REPLY_TIMEOUT_MS);
    char *delimiter = reply ? zmsg_popstr (reply) : NULL;
    char *status = reply ? zmsg_popstr (reply) : NULL;
    char *pong = reply ? zmsg_popstr (reply) : NULL;
    if (!status || !streq (status, "OK") || !pong || !streq (pong, "PONG")) {
        fprintf (stderr, "fuzz_admin: the device did not answer PING\n");
        abort ();
    }
    zstr_free (&delimiter);
    zstr_free (&status);
    zstr_free (&pong);
    zmsg_destroy (&reply);
    if (++s_runs % S_RUNS_PER_DEVICE == 0) {
        zsock_destroy (&s_admin);
        zactor_destroy (&s_device);
    }
}

//  ---- Replies: the command line's side ------------------------------------

//  The fake device: a ROUTER that answers each request with the frames
//  last sent on the actor's pipe.
static void
s_fake_actor (zsock_t *pipe, void *args)
{
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    if (!router || zsock_bind (router, "%s", (const char *)args) != 0) {
        zsock_destroy (&router);
        zsock_signal (pipe, 1);
        return;
    }
    zsock_signal (pipe, 0);
    zmsg_t *answer = NULL;
    zpoller_t *poller = zpoller_new (pipe, router, NULL);
    while (poller) {
        void *which = zpoller_wait (poller, -1);
        if (which == pipe) {
            zmsg_t *msg = zmsg_recv (pipe);
            char *command = msg ? zmsg_popstr (msg) : NULL;
            bool term = !command || streq (command, "$TERM");
            zstr_free (&command);
            if (term) {
                zmsg_destroy (&msg);
                break;
            }
            zmsg_destroy (&answer);
            answer = msg;
            zsock_signal (pipe, 0);
        } else if (which == router) {
            zmsg_t *request = zmsg_recv (router);
            if (!request)
                break;
            //  Keep the routing id and delimiter, answer with a copy.
            zframe_t *routing = zmsg_pop (request);
            zframe_t *delimiter = zmsg_pop (request);
            zmsg_t *reply = answer ? zmsg_dup (answer) : zmsg_new ();
            zmsg_push (reply, delimiter);
            zmsg_push (reply, routing);
            zmsg_send (&reply, router);
            zmsg_destroy (&request);
        } else
            break;
    }
    zpoller_destroy (&poller);
    zmsg_destroy (&answer);
    zsock_destroy (&router);
}

static void
s_reply (uint8_t verb, const uint8_t *data, size_t size)
{
    if (!s_fake) {
        s_null_fd = open ("/dev/null", O_WRONLY);
        if (s_null_fd < 0)
            abort ();
        snprintf (s_fake_endpoint, sizeof s_fake_endpoint, "inproc://fuzz-admin-fake");
        s_fake = zactor_new (s_fake_actor, s_fake_endpoint);
        if (!s_fake)
            abort ();
        s_register_teardown ();
    }
    zmsg_t *answer = zmsg_new ();
    zmsg_addstr (answer, "ANSWER");
    size_t frames = s_add_frames (answer, data, size);
    zmsg_send (&answer, s_fake);
    zsock_wait (s_fake);
    //  What the command line prints goes nowhere.
    fflush (stdout);
    int saved_stdout = dup (STDOUT_FILENO);
    if (saved_stdout < 0 || dup2 (s_null_fd, STDOUT_FILENO) < 0)
        abort ();

    zq_cli_t cli;
    memset (&cli, 0, sizeof cli);
    cli.program = "zq";
    //  An answer of no frames is no answer for a REQ socket (libzmq drops
    //  it): the command must then give up within its timeout.
    cli.timeout_ms = frames ? S_REPLY_TIMEOUT_MS : S_EMPTY_TIMEOUT_MS;
    cli.args[0] = s_fake_endpoint;
    cli.args[1] = "orders";
    cli.arg_count = 2;
    cli.count = 3;
    int rc;
    switch (verb % 6) {
        case 0:
            cli.command = "stat";
            cli.arg_count = 1;
            rc = zq_cli_stat (&cli);
            break;
        case 1:
            cli.command = "stat";
            rc = zq_cli_stat (&cli);
            break;
        case 2:
            cli.command = "ls";
            cli.arg_count = 1;
            rc = zq_cli_ls (&cli);
            break;
        case 3:
            cli.command = "peek";
            rc = zq_cli_peek (&cli);
            break;
        case 4:
            cli.command = "purge";
            rc = zq_cli_purge (&cli);
            break;
        default:
            cli.command = "redrive";
            rc = zq_cli_redrive (&cli);
            break;
    }
    fflush (stdout);
    if (dup2 (saved_stdout, STDOUT_FILENO) < 0)
        abort ();
    close (saved_stdout);
    //  The fake always answers: a timeout means the command line lost it.
    if (frames == 0 ? rc != ZQ_EXIT_TIMEOUT : (rc == ZQ_EXIT_TIMEOUT || rc == ZQ_EXIT_TRANSPORT)) {
        fprintf (stderr, "fuzz_admin: zq %s got no answer (exit %d)\n", cli.command, rc);
        abort ();
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 0x80)
        s_reply (data[0] & 0x07, data + 1, size - 1);
    else
        s_request (data + 1, size - 1);
    return 0;
}
