/*  =========================================================================
    fuzz_client - libFuzzer target for the reliable protocol's frames as
    zq's own clients receive them from a server (doc/PROTOCOL.md, section
    18): whatever a broken or hostile server sends, a producer and a
    consumer embedded in a host program must not crash it.

    A raw ROUTER stands where the server stands, bound on inproc; a zq
    reliable producer (identity "P" and a number) and consumer ("C" and
    the same number, subscribed to "q") are connected to it and kept
    across inputs. Before each input the producer posts messages whose
    ids the seeds know (16 octets: 0x01, 0x9a, 0xb0, three zeros, then the
    number 1 to 4 in 10 big-endian octets), so a CONFIRM or REFUSE of the
    input can name them.

    Input layout: frames, back to back; each is a 2-byte big-endian word
    (bit 15: the frame ends a message; bit 14: so does it, and the clients
    work until idle before the next one is sent; bit 13, read on a
    message's first frame: the message goes to the consumer, else to the
    producer; bits 0-12: its length, cut to what remains) and its bytes.
    The last frame always ends a message. Working, the producer takes its
    reports (zq_queue_confirmed) and the consumer receives what it can,
    acking, nacking or touching each message in turn; what the clients send
    (PUTs, CONSUME, ACK, NACK, TOUCH, PING, LEAVE) is read and dropped.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "fuzz_frames.h"

//  Inputs served by one server stand-in and its clients before all three
//  are made afresh.
#define S_RUNS_PER_SETUP 2000
//  Messages with known ids the producer posts before each input.
#define S_KNOWN_IDS 4

static zsock_t *s_server; //  the stand-in ROUTER
static zq_queue_t *s_producer;
static zq_queue_t *s_consumer;
static char s_producer_id[32];
static char s_consumer_id[32];
static int s_runs;
static int s_generation;
static unsigned s_settle_turn;

static void
s_teardown (void)
{
    zq_queue_destroy (&s_consumer);
    zq_queue_destroy (&s_producer);
    zsock_destroy (&s_server);
}

static zq_queue_t *
s_client (zq_role_t role, const char *endpoint, const char *identity)
{
    zq_options_t *options = zq_options_new ();
    if (!options)
        abort ();
    //  Small bounds: what the clients hold stays small across many inputs.
    if (zq_options_set (options, "identity", identity) ||
        zq_options_set_int (options, "linger_ms", 0) ||
        (role == ZQ_PRODUCER && zq_options_set_int (options, "max_in_flight", 64)) ||
        (role == ZQ_CONSUMER && zq_options_set_int (options, "prefetch", 64)))
        abort ();
    char spec[80];
    snprintf (spec, sizeof spec, ">%s", endpoint);
    zq_queue_t *queue = zq_queue_new ("reliable", role, spec, options);
    zq_options_destroy (&options);
    if (!queue)
        abort ();
    return queue;
}

static void
s_setup (void)
{
    static bool registered;
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "inproc://fuzz-client-%d", s_generation);
    snprintf (s_producer_id, sizeof s_producer_id, "P%d", s_generation);
    snprintf (s_consumer_id, sizeof s_consumer_id, "C%d", s_generation);
    s_generation++;
    s_server = zsock_new (ZMQ_ROUTER);
    if (!s_server || zsock_bind (s_server, "%s", endpoint))
        abort ();
    zsock_set_linger (s_server, 0);
    s_producer = s_client (ZQ_PRODUCER, endpoint, s_producer_id);
    s_consumer = s_client (ZQ_CONSUMER, endpoint, s_consumer_id);
    if (zq_queue_subscribe (s_consumer, "q"))
        abort ();
    //  After CZMQ's own exit handler, so it runs first and CZMQ finds no
    //  socket left open.
    if (!registered) {
        atexit (s_teardown);
        registered = true;
    }
}

//  Reads and drops every message the clients sent.
static void
s_drain (void)
{
    fuzz_drop_messages (zsock_resolve (s_server), NULL);
}

//  Posts the messages with known ids that are not in the outbox already
//  (EEXIST) and fit (EAGAIN): ids 01 9a b0 00 00 00 then n in 10 octets.
static void
s_post_known (void)
{
    for (uint8_t n = 1; n <= S_KNOWN_IDS; n++) {
        uint8_t id[ZQ_MSG_ID_SIZE] = {0x01, 0x9a, 0xb0};
        id[ZQ_MSG_ID_SIZE - 1] = n;
        zq_msg_t *msg = zq_msg_new ("q");
        if (!msg)
            abort ();
        zq_msg_set_id (msg, id);
        if (zq_msg_set_body (msg, "\xa5hello", 6))
            abort ();
        if (zq_queue_post (s_producer, &msg, 0))
            zq_msg_destroy (&msg);
    }
}

//  Lets the clients read what was sent and act on it, a bounded number of
//  rounds: the producer takes its reports, the consumer settles each
//  message it receives (ack, nack, touch then ack, in turn).
static void
s_work (void)
{
    for (int round = 0; round < 20; round++) {
        uint8_t id[ZQ_MSG_ID_SIZE];
        int reports = 0;
        while (reports < 1000 && zq_queue_confirmed (s_producer, id) != -1)
            reports++;
        int received = 0;
        zq_msg_t *msg;
        while (received < 1000 && (msg = zq_queue_recv (s_consumer, 0))) {
            received++;
            switch (s_settle_turn++ % 3) {
                case 0:
                    zq_queue_ack (s_consumer, msg);
                    break;
                case 1:
                    zq_queue_nack (s_consumer, msg, 0);
                    break;
                default:
                    zq_queue_touch (s_consumer, msg, 1000);
                    zq_queue_ack (s_consumer, msg);
                    break;
            }
            zq_msg_destroy (&msg);
        }
        s_drain ();
        if (!reports && !received)
            break;
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (!s_server)
        s_setup ();
    s_post_known ();
    s_drain ();

    void *server = zsock_resolve (s_server);
    bool message_start = true;
    fuzz_frame_t frame;
    for (size_t frames = 0; fuzz_next_frame (&data, &size, 13, frames, FUZZ_MAX_FRAMES, &frame);
         frames++) {
        if (message_start) {
            //  Bit 13 of a message's first word: to the consumer.
            const char *route = frame.bits & 1 ? s_consumer_id : s_producer_id;
            zmq_send (server, route, strlen (route), ZMQ_DONTWAIT | ZMQ_SNDMORE);
        }
        zmq_send (server, frame.data, frame.size, ZMQ_DONTWAIT | (frame.ends ? 0 : ZMQ_SNDMORE));
        message_start = frame.ends;
        if (frame.pause)
            s_work ();
    }
    s_work ();
    if (++s_runs % S_RUNS_PER_SETUP == 0)
        s_teardown ();
    return 0;
}
