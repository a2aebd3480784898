/*  =========================================================================
    fuzz_reliable - libFuzzer target for the reliable protocol's command
    frames, as a real server receives them (doc/PROTOCOL.md, section 18).

    A reliable server (in-memory spools, small bounds) is bound on inproc
    and kept across inputs; a raw DEALER sends what the input describes.
    Input layout: frames, back to back; each is a 2-byte big-endian word
    (bit 15: the frame ends a message; bit 14: so does it, and the server
    works until idle before the next one is sent; bits 0-13: its length,
    cut to what remains) and its bytes. The last frame always ends a
    message. So one input can carry PUT + envelope, batches of several
    messages read in one round, CONSUME, then ACK, NACK, TOUCH of what was
    delivered, LEAVE, PING and anything else.
    After the input the DEALER sends LEAVE (the server takes back what it
    delivered), the server is driven until it has read everything, and a
    second DEALER's PING must get a PONG within a deadline: a server that
    stops answering aborts the run, as a crash would.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "fuzz_frames.h"

//  Inputs served by one server before it is made afresh.
#define S_RUNS_PER_SERVER 5000
//  How long the server may take to answer the probe's PING.
#define S_PONG_DEADLINE_MS 10000

//  msgpack of [1, 10] (PING) and [1, 13] (LEAVE).
static const uint8_t s_ping[] = {0x92, 0x01, 0x0a};
static const uint8_t s_leave[] = {0x92, 0x01, 0x0d};

static zq_queue_t *s_server;
static zsock_t *s_client; //  sends the input
static zsock_t *s_probe;  //  asks for a PONG afterwards
static int s_runs;
static int s_generation;

static void
s_teardown (void)
{
    zsock_destroy (&s_client);
    zsock_destroy (&s_probe);
    zq_queue_destroy (&s_server);
}

static void
s_setup (void)
{
    static bool registered;
    zq_options_t *options = zq_options_new ();
    if (!options)
        abort ();
    //  Bounds that keep what the server holds small across many inputs.
    if (zq_options_set_int (options, "max_queues", 16) ||
        zq_options_set_int (options, "segment_bytes", 64 * 1024) ||
        zq_options_set_int (options, "quota_bytes", 4 * 1024 * 1024) ||
        zq_options_set_int (options, "dedupe_max", 1024) ||
        zq_options_set_int (options, "max_attempts", 3))
        abort ();
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "inproc://fuzz-reliable-%d", s_generation++);
    char spec[80];
    snprintf (spec, sizeof spec, "@%s", endpoint);
    s_server = zq_queue_new ("reliable", ZQ_SERVER, spec, options);
    zq_options_destroy (&options);
    snprintf (spec, sizeof spec, ">%s", endpoint);
    s_client = zsock_new_dealer (spec);
    s_probe = zsock_new_dealer (spec);
    if (!s_server || !s_client || !s_probe)
        abort ();
    zsock_set_linger (s_client, 0);
    zsock_set_linger (s_probe, 0);
    //  After CZMQ's own exit handler, so it runs first and CZMQ finds no
    //  socket left open.
    if (!registered) {
        atexit (s_teardown);
        registered = true;
    }
}

//  A PONG's command frame: [1, 11, instance, flags].
static bool
s_is_pong (const uint8_t *data, size_t size)
{
    return size >= 3 && data[0] == 0x94 && data[1] == 0x01 && data[2] == 0x0b;
}

//  Reads and drops every message waiting on sock; returns true if one of
//  them was a PONG.
static bool
s_drain (zsock_t *sock)
{
    return fuzz_drop_messages (zsock_resolve (sock), s_is_pong);
}

static bool
s_server_readable (void)
{
    zsock_t *sock = zq_queue_sock (s_server);
    return sock && (zsock_events (sock) & ZMQ_POLLIN);
}

//  Lets the server read what was sent and answer it (a bounded number of
//  rounds; what is left waits for the next).
static void
s_work_until_idle (void)
{
    for (int round = 0; round < 100; round++) {
        zq_msg_t *msg = zq_queue_recv (s_server, 0);
        zq_msg_destroy (&msg);
        s_drain (s_client);
        if (!s_server_readable ())
            break;
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (!s_server)
        s_setup ();

    void *client = zsock_resolve (s_client);
    fuzz_frame_t frame;
    for (size_t frames = 0; fuzz_next_frame (&data, &size, 14, frames, FUZZ_MAX_FRAMES, &frame);
         frames++) {
        zmq_send (client, frame.data, frame.size, ZMQ_DONTWAIT | (frame.ends ? 0 : ZMQ_SNDMORE));
        if (frame.pause)
            s_work_until_idle ();
    }
    zmq_send (client, s_leave, sizeof s_leave, ZMQ_DONTWAIT);
    zmq_send (zsock_resolve (s_probe), s_ping, sizeof s_ping, ZMQ_DONTWAIT);

    //  Drive the server until the probe has its PONG and nothing is left
    //  to read.
    int64_t deadline = zclock_mono () + S_PONG_DEADLINE_MS;
    bool pong = false;
    while (true) {
        zq_msg_t *msg = zq_queue_recv (s_server, 0);
        zq_msg_destroy (&msg);
        s_drain (s_client);
        if (s_drain (s_probe))
            pong = true;
        if (pong && !s_server_readable ())
            break;
        if (zclock_mono () > deadline) {
            fprintf (stderr, "fuzz_reliable: the server did not answer PING within %d ms\n",
                     S_PONG_DEADLINE_MS);
            abort ();
        }
    }
    if (++s_runs % S_RUNS_PER_SERVER == 0)
        s_teardown ();
    return 0;
}
