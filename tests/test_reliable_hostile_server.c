/*  =========================================================================
    test_reliable_hostile_server - what a broken or hostile reliable
    server (a ROUTER this test drives, over inproc) can do to a zq client
    embedded in someone's daemon: CONFIRM frames of tens of thousands of
    unknown ids hold no producer call past its timeout; a flood of ERRORs
    with control bytes in their text makes a few escaped log lines, not
    one raw line each.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "queue_helpers.h"
#include <msgpack.h>

#define S_WAIT_MS 10000

typedef struct {
    zsock_t *router;
    zq_queue_t *queue;
    zframe_t *route; //  the client's routing id
} fixture_t;

//  Receives one message from the client within S_WAIT_MS, skipping PINGs.
static zmsg_t *
s_server_recv (fixture_t *self)
{
    return raw_server_recv (self->router, S_WAIT_MS);
}

//  The command kind of msg (route, command frame, ...).
static uint64_t
s_kind (zmsg_t *msg)
{
    zframe_t *frame = zmsg_first (msg);
    frame = zmsg_next (msg);
    assert_non_null (frame);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    assert_int_equal (msgpack_unpack_next (&unpacked, (const char *)zframe_data (frame),
                                           zframe_size (frame), NULL),
                      MSGPACK_UNPACK_SUCCESS);
    assert_int_equal (unpacked.data.type, MSGPACK_OBJECT_ARRAY);
    assert_true (unpacked.data.via.array.size >= 2);
    uint64_t kind = unpacked.data.via.array.ptr[1].via.u64;
    msgpack_unpacked_destroy (&unpacked);
    return kind;
}

//  Opens a raw server on inproc and a queue of role on it with options
//  (taken); a producer posts one message, its id into put_id. Reads the
//  client's first command, which must be of kind, and keeps its routing
//  id.
static void
s_open (fixture_t *self, int role, zq_options_t *options, uint64_t kind, uint8_t *put_id)
{
    static int counter;
    memset (self, 0, sizeof *self);
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "inproc://hostile-server-%d-%d", (int)getpid (),
              ++counter);
    self->router = zsock_new (ZMQ_ROUTER);
    assert_non_null (self->router);
    zsock_set_sndhwm (self->router, 0);
    assert_int_equal (zsock_bind (self->router, "%s", endpoint), 0);
    char connect[80];
    snprintf (connect, sizeof connect, ">%s", endpoint);
    assert_int_equal (zq_options_set_int (options, "linger_ms", 0), 0);
    self->queue = zq_queue_new ("reliable", role, connect, options);
    zq_options_destroy (&options);
    assert_non_null (self->queue);
    if (role == ZQ_CONSUMER)
        assert_int_equal (zq_queue_subscribe (self->queue, "q"), 0);
    else {
        zq_msg_t *msg = zq_msg_new ("q");
        assert_int_equal (zq_msg_pack (msg, "{si}", "n", 1), 0);
        memcpy (put_id, zq_msg_id (msg), ZQ_MSG_ID_SIZE);
        assert_int_equal (zq_queue_post (self->queue, &msg, S_WAIT_MS), 0);
    }
    zmsg_t *msg = s_server_recv (self);
    assert_non_null (msg);
    assert_int_equal (s_kind (msg), kind);
    self->route = zframe_dup (zmsg_first (msg));
    zmsg_destroy (&msg);
}

static void
s_close (fixture_t *self)
{
    zq_queue_destroy (&self->queue);
    zframe_destroy (&self->route);
    zsock_destroy (&self->router);
}

//  Sends the bytes of frame (not taken: libzmq shares them) to the client.
static void
s_send_shared (fixture_t *self, zmq_msg_t *frame)
{
    void *handle = zsock_resolve (self->router);
    assert_int_equal (zmq_send (handle, zframe_data (self->route), zframe_size (self->route),
                                ZMQ_SNDMORE | ZMQ_DONTWAIT),
                      (int)zframe_size (self->route));
    zmq_msg_t copy;
    zmq_msg_init (&copy);
    assert_int_equal (zmq_msg_copy (&copy, frame), 0);
    assert_true (zmq_msg_send (&copy, handle, ZMQ_DONTWAIT) >= 0);
}

//  Packs a command [1, kind, ...] into buffer (to destroy).
static msgpack_packer
s_command_start (msgpack_sbuffer *buffer, uint32_t elements, uint64_t kind)
{
    msgpack_packer packer;
    msgpack_sbuffer_init (buffer);
    msgpack_packer_init (&packer, buffer, msgpack_sbuffer_write);
    msgpack_pack_array (&packer, elements);
    msgpack_pack_uint8 (&packer, 1);
    msgpack_pack_uint64 (&packer, kind);
    return packer;
}

static void
s_sbuffer_to_msg (msgpack_sbuffer *buffer, zmq_msg_t *frame)
{
    assert_int_equal (zmq_msg_init_size (frame, buffer->size), 0);
    memcpy (zmq_msg_data (frame), buffer->data, buffer->size);
    msgpack_sbuffer_destroy (buffer);
}

//  ---- Producer ---------------------------------------------------------------

#define S_FLOOD_FRAMES 1000
#define S_FLOOD_IDS    65000 //  1.04 MB a frame, under max_message_bytes

//  After the first PUT, S_FLOOD_FRAMES CONFIRMs of S_FLOOD_IDS unknown ids
//  each wait on the producer's socket, then the CONFIRM of its message.
//  Every zq_queue_confirmed returns within a fraction of a second (one
//  call looks up a bounded number of ids: before, the first call read all
//  of them, 65 million lookups, and took about a second), and the confirm comes
//  through once the flood is read.
static void
test_confirm_flood_bounded (void **state)
{
    (void)state;
    fixture_t self;
    zq_options_t *options = zq_options_new ();
    assert_int_equal (zq_options_set_int (options, "rcvhwm", 0), 0);
    assert_int_equal (zq_options_set_int (options, "confirm_timeout_ms", 60000), 0);
    uint8_t id[ZQ_MSG_ID_SIZE];
    s_open (&self, ZQ_PRODUCER, options, 1, id);
    msgpack_sbuffer buffer;
    msgpack_packer packer = s_command_start (&buffer, 3, 2);
    uint8_t *ids = (uint8_t *)malloc (S_FLOOD_IDS * ZQ_MSG_ID_SIZE);
    assert_non_null (ids);
    for (size_t i = 0; i < S_FLOOD_IDS * ZQ_MSG_ID_SIZE; i++)
        ids[i] = (uint8_t)random ();
    msgpack_pack_bin (&packer, S_FLOOD_IDS * ZQ_MSG_ID_SIZE);
    msgpack_pack_bin_body (&packer, ids, S_FLOOD_IDS * ZQ_MSG_ID_SIZE);
    free (ids);
    zmq_msg_t frame;
    s_sbuffer_to_msg (&buffer, &frame);
    for (int n = 0; n < S_FLOOD_FRAMES; n++)
        s_send_shared (&self, &frame);
    zmq_msg_close (&frame);
    //  Then the true answer, behind the flood.
    packer = s_command_start (&buffer, 3, 2);
    msgpack_pack_bin (&packer, ZQ_MSG_ID_SIZE);
    msgpack_pack_bin_body (&packer, id, ZQ_MSG_ID_SIZE);
    s_sbuffer_to_msg (&buffer, &frame);
    s_send_shared (&self, &frame);
    zmq_msg_close (&frame);
    //  (inproc: every frame is on the producer's socket now.)
    int64_t deadline = zclock_mono () + 3 * S_WAIT_MS;
    int64_t longest_ms = 0;
    int calls = 0, rc = -1;
    uint8_t confirmed[ZQ_MSG_ID_SIZE];
    while (rc && zclock_mono () < deadline) {
        int64_t before = zclock_mono ();
        rc = zq_queue_confirmed (self.queue, confirmed);
        int64_t took_ms = zclock_mono () - before;
        if (took_ms > longest_ms)
            longest_ms = took_ms;
        if (rc)
            assert_int_equal (errno, EAGAIN);
        calls++;
    }
    assert_int_equal (rc, 0);
    assert_memory_equal (confirmed, id, ZQ_MSG_ID_SIZE);
    //  Many calls, each short: the first could not read past the flood.
    assert_true (calls > 10);
    assert_true (longest_ms < 300);
    s_close (&self);
}

//  ---- Consumer ERROR log -----------------------------------------------------

typedef struct {
    int lines;
    int with_control; //  lines holding a byte below 0x20, 0x7f or a C1 control
    int escaped;      //  lines showing the reason's newline, ESC and CSI as \xHH
} log_count_t;

static void
s_log_count (zq_log_level_t level, const char *line, void *arg)
{
    (void)level;
    log_count_t *count = (log_count_t *)arg;
    if (!strstr (line, "reliable consumer"))
        return;
    count->lines++;
    for (const char *at = line; *at; at++)
        if ((unsigned char)*at < 0x20 || (unsigned char)*at == 0x7f ||
            ((unsigned char)at[0] == 0xc2 && (unsigned char)at[1] >= 0x80 &&
             (unsigned char)at[1] <= 0x9f)) {
            count->with_control++;
            break;
        }
    if (strstr (line, "busy\\x0aJan 01") && strstr (line, "root\\x1b[2J\\xc2\\x9b1m\\x9b"))
        count->escaped++;
}

#define S_ERROR_FRAMES 2000

//  S_ERROR_FRAMES ERRORs whose reason holds a newline, a forged log line
//  and terminal escapes (ESC, CSI as a UTF-8 C1 control, a lone byte not
//  UTF-8), then a delivery: the host's log handler gets one line per
//  second at most (it says how many were left out), with the control
//  bytes as \xHH, and the delivery comes through.
static void
test_error_flood_logged_escaped (void **state)
{
    (void)state;
    log_count_t count = {0, 0, 0};
    zq_set_log_handler (s_log_count, &count, ZQ_LOG_WARNING);
    fixture_t self;
    s_open (&self, ZQ_CONSUMER, zq_options_new (), 4, NULL);
    int64_t start = zclock_mono ();
    const char *reason = "queue busy\nJan 01 00:00:00 host sshd[1]: Accepted password for "
                         "root\x1b[2J\xc2\x9b"
                         "1m\x9b";
    msgpack_sbuffer buffer;
    msgpack_packer packer = s_command_start (&buffer, 4, 12);
    msgpack_pack_uint8 (&packer, 1);
    msgpack_pack_str (&packer, strlen (reason));
    msgpack_pack_str_body (&packer, reason, strlen (reason));
    zmq_msg_t error;
    s_sbuffer_to_msg (&buffer, &error);
    for (int n = 0; n < S_ERROR_FRAMES; n++)
        s_send_shared (&self, &error);
    zmq_msg_close (&error);
    //  Then one delivery: once it is received, every ERROR was read.
    zq_msg_t *msg = zq_msg_new ("q");
    assert_int_equal (zq_msg_pack (msg, "{si}", "n", 7), 0);
    uint8_t id[ZQ_MSG_ID_SIZE];
    memcpy (id, zq_msg_id (msg), ZQ_MSG_ID_SIZE);
    zmsg_t *frames = zmsg_new ();
    assert_int_equal (zq_msg_encode (&msg, frames), 0);
    static const uint8_t deliver[] = {0x93, 0x01, 0x06, 0xcd, 0x75, 0x30};
    zmsg_pushmem (frames, deliver, sizeof deliver);
    zmsg_push (frames, zframe_dup (self.route));
    assert_int_equal (zmsg_send (&frames, self.router), 0);
    int64_t deadline = zclock_mono () + S_WAIT_MS;
    zq_msg_t *got = NULL;
    while (!got && zclock_mono () < deadline)
        got = zq_queue_recv (self.queue, 100);
    assert_non_null (got);
    assert_memory_equal (zq_msg_id (got), id, ZQ_MSG_ID_SIZE);
    zq_msg_destroy (&got);
    int64_t seconds = (zclock_mono () - start) / 1000;
    zq_set_log_handler (NULL, NULL, ZQ_LOG_ERROR);
    assert_true (count.lines >= 1);
    assert_true (count.lines <= seconds + 2);
    assert_int_equal (count.with_control, 0);
    assert_true (count.escaped >= 1);
    s_close (&self);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_confirm_flood_bounded),
        cmocka_unit_test (test_error_flood_logged_escaped),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
