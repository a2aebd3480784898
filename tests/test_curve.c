/*  =========================================================================
    test_curve - CURVE on queues: servers and clients exchange messages
    (pipeline, pubsub, reliable), a wrong server key or a plaintext client gets
    nothing through, an allowed-clients directory refuses strangers, and
    bad keys or certificate files fail zq_queue_new cleanly.

    Refusals are observed, not waited out: a monitor on the server's socket
    reports the failed handshake, then the server is checked to hold
    nothing.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable_helpers.h"
#include <sys/stat.h>

static char s_dir[256];           //  certificates live here
static char s_server_cert[300];   //  server (PATH and PATH_secret)
static char s_client_cert[300];   //  an allowed client
static char s_stranger_cert[300]; //  a client nobody allowed
static char s_clients_dir[300];   //  public certificate of the allowed client
static char s_server_public[41];  //  Z85
static char s_stranger_public[41];

//  Log lines of the library, kept for the error tests.
static char s_last_log[1024];

static void
s_log (zq_log_level_t level, const char *line, void *arg)
{
    (void)level;
    (void)arg;
    snprintf (s_last_log, sizeof s_last_log, "%s", line);
}

static void
s_make_cert (const char *path, char *public_txt)
{
    zcert_t *cert = zcert_new ();
    assert_non_null (cert);
    assert_int_equal (zcert_save (cert, path), 0);
    if (public_txt)
        snprintf (public_txt, 41, "%s", zcert_public_txt (cert));
    zcert_destroy (&cert);
}

static int
setup (void **state)
{
    (void)state;
    snprintf (s_dir, sizeof s_dir, "/tmp/zq-curve-XXXXXX");
    assert_non_null (mkdtemp (s_dir));
    snprintf (s_server_cert, sizeof s_server_cert, "%s/server.cert", s_dir);
    snprintf (s_client_cert, sizeof s_client_cert, "%s/client.cert", s_dir);
    snprintf (s_stranger_cert, sizeof s_stranger_cert, "%s/stranger.cert", s_dir);
    snprintf (s_clients_dir, sizeof s_clients_dir, "%s/clients", s_dir);
    s_make_cert (s_server_cert, s_server_public);
    s_make_cert (s_stranger_cert, s_stranger_public);
    s_make_cert (s_client_cert, NULL);
    assert_int_equal (mkdir (s_clients_dir, 0700), 0);
    zcert_t *client = zcert_load (s_client_cert);
    assert_non_null (client);
    char path[400];
    snprintf (path, sizeof path, "%s/client.cert", s_clients_dir);
    assert_int_equal (zcert_save_public (client, path), 0);
    zcert_destroy (&client);
    zq_set_log_handler (s_log, NULL, ZQ_LOG_DEBUG);
    return 0;
}

static int
teardown (void **state)
{
    (void)state;
    zq_set_log_handler (NULL, NULL, ZQ_LOG_ERROR);
    remove_tree (s_dir);
    remove_ipc_dir ();
    return 0;
}

static zq_queue_t *
open_queue (const char *pattern, zq_role_t role, const char *spec, zq_options_t *options)
{
    zq_queue_t *queue = zq_queue_new (pattern, role, spec, options);
    assert_non_null (queue);
    zq_options_destroy (&options);
    return queue;
}

//  A queue of pattern in role on spec, a CURVE client holding cert that
//  knows the server's public key.
static zq_queue_t *
s_curve_client (const char *pattern, zq_role_t role, const char *spec, const char *cert)
{
    return open_queue (pattern, role, spec,
                       options_of ("curve_cert", cert, "curve_server_key", s_server_public, NULL));
}

//  A reliable server on tcp holding the server certificate, admitting the
//  clients whose certificates are in clients_dir (NULL: any CURVE client);
//  spec gets the endpoint its clients connect to.
static test_server_t *
s_curve_server (const char *clients_dir, char *spec, size_t spec_size)
{
    zq_options_t *options = options_of ("curve_cert", s_server_cert,
                                        clients_dir ? "curve_clients" : NULL, clients_dir, NULL);
    test_server_t *server = server_start ("@tcp://127.0.0.1:*", options);
    zq_options_destroy (&options);
    assert_non_null (server);
    snprintf (spec, spec_size, ">%s", server->endpoint);
    return server;
}

//  ---- A monitor on a server's socket -------------------------------------

#define S_HANDSHAKE_FAILED                                                                         \
    (ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |                  \
     ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)

static zsock_t *
monitor_start (zq_queue_t *queue)
{
    static int counter;
    char endpoint[100];
    snprintf (endpoint, sizeof endpoint, "inproc://zq-curve-monitor-%d", ++counter);
    assert_int_equal (zmq_socket_monitor (zsock_resolve (zq_queue_sock (queue)), endpoint,
                                          S_HANDSHAKE_FAILED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED),
                      0);
    zsock_t *monitor = zsock_new (ZMQ_PAIR);
    assert_non_null (monitor);
    assert_int_equal (zsock_connect (monitor, "%s", endpoint), 0);
    return monitor;
}

//  Waits for an event in mask; returns it (its status value in *value_p),
//  or fails the test at the deadline.
static int
monitor_wait (zsock_t *monitor, int mask, uint32_t *value_p)
{
    int64_t deadline = now_ms () + DEADLINE_MS;
    while (now_ms () < deadline) {
        zmq_pollitem_t item = {zsock_resolve (monitor), 0, ZMQ_POLLIN, 0};
        if (zmq_poll (&item, 1, (long)(deadline - now_ms ())) <= 0)
            continue;
        zmsg_t *event = zmsg_recv (monitor);
        assert_non_null (event);
        zframe_t *head = zmsg_first (event);
        assert_int_equal (zframe_size (head), 6);
        uint16_t id;
        uint32_t value;
        memcpy (&id, zframe_data (head), 2);
        memcpy (&value, zframe_data (head) + 2, 4);
        zmsg_destroy (&event);
        if (id & mask) {
            if (value_p)
                *value_p = value;
            return id;
        }
    }
    fail_msg ("no monitor event 0x%x within %d ms", mask, DEADLINE_MS);
    return 0;
}

static void
monitor_stop (zq_queue_t *queue, zsock_t **monitor_p)
{
    zmq_socket_monitor (zsock_resolve (zq_queue_sock (queue)), NULL, 0);
    zsock_destroy (monitor_p);
}

//  Asserts that queue has nothing to receive now.
static void
assert_nothing_received (zq_queue_t *queue)
{
    zq_msg_t *msg = zq_queue_recv (queue, 0);
    assert_null (msg);
    assert_int_equal (errno, EAGAIN);
    zq_queue_stats_t stats;
    zq_queue_stats (queue, &stats);
    assert_int_equal (stats.received, 0);
}

//  ---- Exchanges ------------------------------------------------------------

static void
pipeline_exchange (const char *transport, zq_options_t *producer_options)
{
    char spec[300];
    bind_spec (transport, spec, sizeof spec);
    zq_queue_t *consumer =
        open_queue ("pipeline", ZQ_CONSUMER, spec, options_of ("curve_cert", s_server_cert, NULL));
    connect_spec (consumer, spec, sizeof spec);
    zq_queue_t *producer = open_queue ("pipeline", ZQ_PRODUCER, spec, producer_options);
    assert_int_equal (zsock_mechanism (zq_queue_sock (consumer)), ZMQ_CURVE);
    assert_int_equal (zsock_curve_server (zq_queue_sock (consumer)), 1);
    assert_int_equal (zsock_mechanism (zq_queue_sock (producer)), ZMQ_CURVE);
    assert_int_equal (zsock_curve_server (zq_queue_sock (producer)), 0);
    for (int64_t n = 0; n < 100; n++)
        send_numbered (producer, "curve", n);
    recv_numbered (consumer, 0, 100);
    zq_queue_destroy (&producer);
    zq_queue_destroy (&consumer);
}

static void
test_pipeline_tcp (void **state)
{
    (void)state;
    pipeline_exchange (
        "tcp", options_of ("curve_cert", s_client_cert, "curve_server_key", s_server_public, NULL));
}

//  A publisher's socket reads frames of at most 512 bytes (doc/PROTOCOL.md,
//  "pubsub"): CURVE's handshake fits.
static void
test_pubsub_tcp (void **state)
{
    (void)state;
    char spec[300];
    bind_spec ("tcp", spec, sizeof spec);
    zq_queue_t *publisher =
        open_queue ("pubsub", ZQ_PUBLISHER, spec, options_of ("curve_cert", s_server_cert, NULL));
    connect_spec (publisher, spec, sizeof spec);
    zq_queue_t *subscriber = s_curve_client ("pubsub", ZQ_SUBSCRIBER, spec, s_client_cert);
    assert_int_equal (zsock_mechanism (zq_queue_sock (publisher)), ZMQ_CURVE);
    assert_int_equal (zq_queue_subscribe (subscriber, "curve"), 0);
    assert_int_equal (zq_queue_wait_subscribers (publisher, 1, DEADLINE_MS), 0);
    for (int64_t n = 0; n < 10; n++)
        send_numbered (publisher, "curve", n);
    recv_numbered (subscriber, 0, 10);
    zq_queue_destroy (&subscriber);
    zq_queue_destroy (&publisher);
}

static void
test_pipeline_ipc_server_cert_file (void **state)
{
    (void)state;
    //  The server's public certificate file, and no certificate of its own.
    pipeline_exchange ("ipc", options_of ("curve_server_cert", s_server_cert, NULL));
}

static void
test_reliable_tcp (void **state)
{
    (void)state;
    char spec[300];
    test_server_t *server = s_curve_server (NULL, spec, sizeof spec);
    zq_queue_t *producer = s_curve_client ("reliable", ZQ_PRODUCER, spec, s_client_cert);
    zq_queue_t *consumer = open_queue ("reliable", ZQ_CONSUMER, spec,
                                       options_of ("curve_server_key", s_server_public, NULL));
    assert_int_equal (zq_queue_subscribe (consumer, "orders"), 0);
    for (int64_t n = 0; n < 50; n++)
        send_numbered (producer, "orders", n); //  returns once confirmed
    for (int64_t n = 0; n < 50; n++) {
        zq_msg_t *msg = zq_queue_recv (consumer, DEADLINE_MS);
        assert_non_null (msg);
        assert_int_equal (number_of (msg), n);
        assert_int_equal (zq_queue_ack (consumer, msg), 0);
        zq_msg_destroy (&msg);
    }
    zq_queue_info_t info;
    WAIT_INFO (server, "orders", info, info.acked == 50 && info.depth == 0);
    zq_queue_destroy (&consumer);
    zq_queue_destroy (&producer);
    server_stop (&server);
}

//  Producers that the ZAP handler names by their CURVE keys are separate
//  dedupe scopes: the same id and body from another key is another
//  message, stored too, while a resend from the same key is still a
//  duplicate.
static void
test_reliable_dedupe_per_key (void **state)
{
    (void)state;
    //  A second allowed client, for this test only.
    char partner_cert[400];
    char partner_public[400];
    snprintf (partner_cert, sizeof partner_cert, "%s/partner.cert", s_dir);
    snprintf (partner_public, sizeof partner_public, "%s/partner.cert", s_clients_dir);
    s_make_cert (partner_cert, NULL);
    zcert_t *partner = zcert_load (partner_cert);
    assert_non_null (partner);
    assert_int_equal (zcert_save_public (partner, partner_public), 0);
    zcert_destroy (&partner);
    char spec[300];
    test_server_t *server = s_curve_server (s_clients_dir, spec, sizeof spec);
    zq_queue_t *first = s_curve_client ("reliable", ZQ_PRODUCER, spec, s_client_cert);
    zq_queue_t *second = s_curve_client ("reliable", ZQ_PRODUCER, spec, partner_cert);
    zq_msg_t *msg = numbered ("by-key", 1);
    zq_msg_t *copy = zq_msg_dup (msg);
    zq_msg_t *resend = zq_msg_dup (msg);
    assert_int_equal (zq_queue_send (first, &msg, DEADLINE_MS), 0);
    assert_int_equal (zq_queue_send (second, &copy, DEADLINE_MS), 0);
    assert_int_equal (zq_queue_send (first, &resend, DEADLINE_MS), 0);
    zq_queue_info_t info;
    assert_int_equal (server_info (server, "by-key", &info), 0);
    assert_int_equal (info.put, 2);
    assert_int_equal (info.duplicates, 1);
    zq_queue_destroy (&second);
    zq_queue_destroy (&first);
    server_stop (&server);
    assert_int_equal (unlink (partner_public), 0);
}

//  ---- Refusals -------------------------------------------------------------

//  A producer with options connects to a CURVE consumer (allowing clients
//  per clients, "" = no list); the handshake fails with expected_event and
//  the consumer receives nothing; then an allowed producer gets through.
static void
refused (zq_options_t *options, const char *clients, int expected_event)
{
    char spec[300];
    bind_spec ("tcp", spec, sizeof spec);
    zq_queue_t *consumer =
        open_queue ("pipeline", ZQ_CONSUMER, spec,
                    options_of ("curve_cert", s_server_cert, "curve_clients", clients, NULL));
    zsock_t *monitor = monitor_start (consumer);
    connect_spec (consumer, spec, sizeof spec);
    zq_queue_t *intruder = open_queue ("pipeline", ZQ_PRODUCER, spec, options);
    monitor_wait (monitor, expected_event, NULL);
    //  No connection completed: a send finds no consumer and times out.
    zq_msg_t *msg = numbered ("curve", -1);
    assert_int_equal (zq_queue_send (intruder, &msg, 200), -1);
    assert_int_equal (errno, EAGAIN);
    zq_msg_destroy (&msg);
    assert_nothing_received (consumer);
    //  The server still serves the clients it should.
    zq_queue_t *good = open_queue (
        "pipeline", ZQ_PRODUCER, spec,
        options_of ("curve_cert", s_client_cert, "curve_server_key", s_server_public, NULL));
    send_numbered (good, "curve", 7);
    msg = zq_queue_recv (consumer, DEADLINE_MS);
    assert_non_null (msg);
    assert_int_equal (number_of (msg), 7);
    zq_msg_destroy (&msg);
    msg = zq_queue_recv (consumer, 0);
    assert_null (msg);
    monitor_stop (consumer, &monitor);
    zq_queue_destroy (&good);
    zq_queue_destroy (&intruder);
    zq_queue_destroy (&consumer);
}

static void
test_wrong_server_key (void **state)
{
    (void)state;
    //  The server cannot open the client's HELLO: a protocol failure.
    refused (options_of ("curve_cert", s_client_cert, "curve_server_key", s_stranger_public, NULL),
             "", ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL);
}

static void
test_plaintext_client (void **state)
{
    (void)state;
    refused (zq_options_new (), "", ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL);
}

static void
test_unknown_client (void **state)
{
    (void)state;
    //  Knows the server's key but is not in the allowed directory.
    refused (options_of ("curve_cert", s_stranger_cert, "curve_server_key", s_server_public, NULL),
             s_clients_dir, ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
    //  A client with a key pair of the moment is refused too.
    refused (options_of ("curve_server_key", s_server_public, NULL), s_clients_dir,
             ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
}

static void
test_any_client (void **state)
{
    (void)state;
    char spec[300];
    bind_spec ("tcp", spec, sizeof spec);
    zq_queue_t *consumer =
        open_queue ("pipeline", ZQ_CONSUMER, spec,
                    options_of ("curve_cert", s_server_cert, "curve_clients", "*", NULL));
    connect_spec (consumer, spec, sizeof spec);
    zq_queue_t *producer = open_queue ("pipeline", ZQ_PRODUCER, spec,
                                       options_of ("curve_server_key", s_server_public, NULL));
    send_numbered (producer, "curve", 1);
    zq_msg_t *msg = zq_queue_recv (consumer, DEADLINE_MS);
    assert_non_null (msg);
    zq_msg_destroy (&msg);
    zq_queue_destroy (&producer);
    zq_queue_destroy (&consumer);
}

//  One ZAP handler per process: a second queue with curve_clients fails
//  with EADDRINUSE; once the first closes, its zauth is gone too.
static void
test_one_zap_handler (void **state)
{
    (void)state;
    zq_queue_t *holder = open_queue ("pipeline", ZQ_CONSUMER, "@tcp://127.0.0.1:*", NULL);
    zq_queue_t *first =
        open_queue ("pipeline", ZQ_CONSUMER, "@tcp://127.0.0.1:*",
                    options_of ("curve_cert", s_server_cert, "curve_clients", s_clients_dir, NULL));
    zq_options_t *options =
        options_of ("curve_cert", s_server_cert, "curve_clients", s_clients_dir, NULL);
    zq_queue_t *second = zq_queue_new ("pipeline", ZQ_CONSUMER, "@tcp://127.0.0.1:*", options);
    assert_null (second);
    assert_int_equal (errno, EADDRINUSE);
    assert_non_null (strstr (s_last_log, "ZAP handler"));
    //  A bind that fails after zauth started leaves no zauth behind.
    char taken[300];
    snprintf (taken, sizeof taken, "@%s", zq_queue_endpoint (holder));
    zq_queue_destroy (&first);
    second = zq_queue_new ("pipeline", ZQ_CONSUMER, taken, options);
    assert_null (second);
    assert_int_equal (errno, EADDRINUSE);
    second = zq_queue_new ("pipeline", ZQ_CONSUMER, "@tcp://127.0.0.1:*", options);
    assert_non_null (second);
    zq_queue_destroy (&second);
    zq_queue_destroy (&holder);
    zq_options_destroy (&options);
}

//  ---- The device with CURVE -------------------------------------------------

//  A device whose queue kind and stream take only allowed CURVE clients: a
//  CURVE client puts and gets through the queue kind and pushes and pulls
//  through the stream; a plaintext producer's message is never confirmed
//  nor delivered.
static void
test_device (void **state)
{
    (void)state;
    char *text = zsys_sprintf ("device\n"
                               "    bind = tcp://127.0.0.1:*\n"
                               "    curve\n"
                               "        secret_cert = \"%s\"\n"
                               "        clients = \"%s\"\n"
                               "queues\n"
                               "    feed\n"
                               "        kind = stream\n"
                               "        in = tcp://127.0.0.1:*\n"
                               "        out = tcp://127.0.0.1:*\n",
                               s_server_cert, s_clients_dir);
    zconfig_t *config = zconfig_str_load (text);
    zstr_free (&text);
    assert_non_null (config);
    char error[256] = "";
    zactor_t *device = zq_device_new (config, error, sizeof error);
    zconfig_destroy (&config);
    if (!device)
        fail_msg ("device: %s", error);
    char *bind = zq_device_endpoint (device, "bind");
    char *in = zq_device_endpoint (device, "feed/in");
    char *out = zq_device_endpoint (device, "feed/out");
    assert_non_null (bind);
    assert_non_null (in);
    assert_non_null (out);
    char spec[300];

    //  Plaintext producer: no confirm within its bounded wait.
    snprintf (spec, sizeof spec, ">%s", bind);
    zq_queue_t *plain = open_queue ("reliable", ZQ_PRODUCER, spec, NULL);
    zq_msg_t *msg = numbered ("orders", -1);
    assert_int_equal (zq_queue_send (plain, &msg, 300), -1);
    assert_int_equal (errno, EAGAIN);
    zq_msg_destroy (&msg);

    zq_queue_t *producer = s_curve_client ("reliable", ZQ_PRODUCER, spec, s_client_cert);
    zq_queue_t *consumer = s_curve_client ("reliable", ZQ_CONSUMER, spec, s_client_cert);
    send_numbered (producer, "orders", 1);
    assert_int_equal (zq_queue_subscribe (consumer, "orders"), 0);
    msg = zq_queue_recv (consumer, DEADLINE_MS);
    assert_non_null (msg);
    assert_int_equal (number_of (msg), 1);
    assert_int_equal (zq_queue_ack (consumer, msg), 0);
    zq_msg_destroy (&msg);
    //  The plaintext message was tried first and never got in.
    msg = zq_queue_recv (consumer, 300);
    assert_null (msg);

    //  The stream: CURVE on both of its sockets.
    snprintf (spec, sizeof spec, ">%s", in);
    zq_queue_t *pusher = open_queue (
        "pipeline", ZQ_PRODUCER, spec,
        options_of ("curve_cert", s_client_cert, "curve_server_key", s_server_public, NULL));
    snprintf (spec, sizeof spec, ">%s", out);
    zq_queue_t *plain_puller = open_queue ("pipeline", ZQ_CONSUMER, spec, NULL);
    zq_queue_t *puller = open_queue (
        "pipeline", ZQ_CONSUMER, spec,
        options_of ("curve_cert", s_client_cert, "curve_server_key", s_server_public, NULL));
    for (int64_t n = 0; n < 10; n++)
        send_numbered (pusher, "feed", n);
    recv_numbered (puller, 0, 10);
    assert_nothing_received (plain_puller);

    zq_queue_destroy (&puller);
    zq_queue_destroy (&plain_puller);
    zq_queue_destroy (&pusher);
    zq_queue_destroy (&consumer);
    zq_queue_destroy (&producer);
    zq_queue_destroy (&plain);
    zstr_free (&bind);
    zstr_free (&in);
    zstr_free (&out);
    zactor_destroy (&device);
}

//  A device refuses a certificate without a secret key, and a second
//  allowed-clients list in a process that runs one.
static void
test_device_refusals (void **state)
{
    (void)state;
    char path[400];
    snprintf (path, sizeof path, "%s/clients/client.cert", s_dir);
    char *text = zsys_sprintf ("device\n    bind = tcp://127.0.0.1:*\n    curve\n"
                               "        secret_cert = \"%s\"\n        clients = \"*\"\n",
                               path);
    zconfig_t *config = zconfig_str_load (text);
    zstr_free (&text);
    char error[256] = "";
    zactor_t *device = zq_device_new (config, error, sizeof error);
    zconfig_destroy (&config);
    assert_null (device);
    if (!strstr (error, "device/curve/secret_cert"))
        fail_msg ("unclear refusal: %s", error);

    zq_queue_t *holder =
        open_queue ("pipeline", ZQ_CONSUMER, "@tcp://127.0.0.1:*",
                    options_of ("curve_cert", s_server_cert, "curve_clients", "*", NULL));
    text = zsys_sprintf ("device\n    bind = tcp://127.0.0.1:*\n    curve\n"
                         "        secret_cert = \"%s\"\n        clients = \"*\"\n",
                         s_server_cert);
    config = zconfig_str_load (text);
    zstr_free (&text);
    device = zq_device_new (config, error, sizeof error);
    assert_null (device);
    assert_int_equal (errno, EADDRINUSE);
    zq_queue_destroy (&holder);
    device = zq_device_new (config, error, sizeof error);
    zconfig_destroy (&config);
    if (!device)
        fail_msg ("device: %s", error);
    zactor_destroy (&device);
}

//  ---- Bad settings ---------------------------------------------------------

//  zq_queue_new with name=value must fail with EINVAL, log a line that
//  contains expect, and leave nothing bound on its ipc endpoint.
static void
expect_einval (const char *expect, const char *first, ...)
{
    va_list args;
    va_start (args, first);
    zq_options_t *options = options_of_list (first, args);
    va_end (args);
    char spec[300];
    bind_spec ("ipc", spec, sizeof spec);
    *s_last_log = '\0';
    zq_queue_t *queue = zq_queue_new ("pipeline", ZQ_CONSUMER, spec, options);
    assert_null (queue);
    assert_int_equal (errno, EINVAL);
    if (!strstr (s_last_log, expect))
        fail_msg ("log line '%s' lacks '%s'", s_last_log, expect);
    //  Nothing was bound: the same endpoint binds at once.
    queue = zq_queue_new ("pipeline", ZQ_CONSUMER, spec, NULL);
    assert_non_null (queue);
    zq_queue_destroy (&queue);
    zq_options_destroy (&options);
}

static void
test_bad_settings (void **state)
{
    (void)state;
    char path[400];
    expect_einval ("curve_server_key", "curve_server_key",
                   "not a key, not a key, not a key, not a!", NULL);
    expect_einval ("curve_server_key", "curve_server_key", "short", NULL);
    expect_einval ("curve_cert", "curve_cert", "/nonexistent/zq.cert", NULL);
    expect_einval ("curve_cert", "curve_cert", s_dir, NULL); //  a directory
    //  A public certificate has no secret key to serve with.
    snprintf (path, sizeof path, "%s/clients/client.cert", s_dir);
    expect_einval ("secret-key", "curve_cert", path, NULL);
    //  Not ZPL, and ZPL without keys.
    snprintf (path, sizeof path, "%s/garbage.cert", s_dir);
    FILE *file = fopen (path, "w");
    assert_non_null (file);
    fputs ("curve\n    public-key = \"tooshort\"\n", file);
    fclose (file);
    expect_einval ("public-key", "curve_cert", path, NULL);
    //  Keys that do not belong together.
    snprintf (path, sizeof path, "%s/mixed.cert", s_dir);
    zcert_t *one = zcert_new ();
    zcert_t *two = zcert_new ();
    file = fopen (path, "w");
    assert_non_null (file);
    fprintf (file, "curve\n    public-key = \"%s\"\n    secret-key = \"%s\"\n",
             zcert_public_txt (one), zcert_secret_txt (two));
    fclose (file);
    zcert_destroy (&one);
    zcert_destroy (&two);
    expect_einval ("does not match", "curve_cert", path, NULL);
    expect_einval ("curve_server_cert", "curve_server_cert", "/nonexistent/server.cert", NULL);
    expect_einval ("not both", "curve_server_key", s_server_public, "curve_server_cert",
                   s_server_cert, NULL);
    expect_einval ("curve_clients", "curve_clients", s_clients_dir, NULL);
    expect_einval ("curve_clients", "curve_cert", s_server_cert, "curve_server_key",
                   s_server_public, "curve_clients", "*", NULL);
    expect_einval ("curve_clients", "curve_cert", s_server_cert, "curve_clients",
                   "/nonexistent/clients", NULL);
    //  Longer than a key: refused when set.
    zq_options_t *options = zq_options_new ();
    assert_int_equal (
        zq_options_set (options, "curve_server_key", "0123456789012345678901234567890123456789x"),
        -1);
    assert_int_equal (errno, EINVAL);
    zq_options_destroy (&options);
}

int
main (void)
{
    if (!zsys_has_curve ()) {
        fprintf (stderr, "libzmq without CURVE: skipped\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_pipeline_tcp),
        cmocka_unit_test (test_pipeline_ipc_server_cert_file),
        cmocka_unit_test (test_pubsub_tcp),
        cmocka_unit_test (test_reliable_tcp),
        cmocka_unit_test (test_reliable_dedupe_per_key),
        cmocka_unit_test (test_wrong_server_key),
        cmocka_unit_test (test_plaintext_client),
        cmocka_unit_test (test_unknown_client),
        cmocka_unit_test (test_any_client),
        cmocka_unit_test (test_one_zap_handler),
        cmocka_unit_test (test_bad_settings),
        cmocka_unit_test (test_device),
        cmocka_unit_test (test_device_refusals),
    };
    return cmocka_run_group_tests (tests, setup, teardown);
}
