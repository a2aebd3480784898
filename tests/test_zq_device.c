/*  =========================================================================
    test_zq_device - the device actor: configuration checks, its command
    protocol, the admin socket, streams (spill to the spool in order,
    survive a restart), forwards (drops and gaps counted), and service for
    good clients while others send garbage or connect and say nothing.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include "zq.h"
#include "zq_device.h"
#include "device/zq_device_internal.h" //  zqi_device_new_clocked

#define DEADLINE_MS 10000

static char s_dir[256];

static int
s_setup (void **state)
{
    (void)state;
    snprintf (s_dir, sizeof s_dir, "/tmp/zq-device-test-XXXXXX");
    assert_non_null (mkdtemp (s_dir));
    return 0;
}

static int
s_teardown (void **state)
{
    (void)state;
    char command[512];
    snprintf (command, sizeof command, "rm -rf '%s'", s_dir);
    assert_int_equal (system (command), 0);
    return 0;
}

//  Loads a ZPL text, formatted.
static zconfig_t *
s_config (const char *format, ...)
{
    va_list args;
    va_start (args, format);
    char *text = zsys_vprintf (format, args);
    va_end (args);
    assert_non_null (text);
    zconfig_t *config = zconfig_str_load (text);
    zstr_free (&text);
    assert_non_null (config);
    return config;
}

//  A device on clock (NULL: the system's) from a ZPL text, formatted.
static zactor_t *
s_device_va (const zqi_clock_t *clock, const char *format, va_list args)
{
    char *text = zsys_vprintf (format, args);
    zconfig_t *config = zconfig_str_load (text);
    assert_non_null (config);
    zstr_free (&text);
    char error[512] = "";
    zactor_t *device = zqi_device_new_clocked (config, clock, error, sizeof error);
    if (!device)
        fprintf (stderr, "device: %s\n", error);
    assert_non_null (device);
    zconfig_destroy (&config);
    return device;
}

static zactor_t *
s_device (const char *format, ...)
{
    va_list args;
    va_start (args, format);
    zactor_t *device = s_device_va (NULL, format, args);
    va_end (args);
    return device;
}

static zactor_t *
s_device_clocked (const zqi_clock_t *clock, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    zactor_t *device = s_device_va (clock, format, args);
    va_end (args);
    return device;
}

//  Sends a command (the strings in args, up to NULL) and returns the reply.
static zmsg_t *
s_command_va (zactor_t *device, const char *first, va_list args)
{
    zmsg_t *request = zmsg_new ();
    for (const char *part = first; part; part = va_arg (args, const char *))
        zmsg_addstr (request, part);
    assert_int_equal (zmsg_send (&request, device), 0);
    zmsg_t *reply = zmsg_recv (device);
    assert_non_null (reply);
    return reply;
}

//  Sends a command (strings, NULL-terminated) and returns the reply.
static zmsg_t *
s_command (zactor_t *device, const char *first, ...)
{
    va_list args;
    va_start (args, first);
    zmsg_t *reply = s_command_va (device, first, args);
    va_end (args);
    return reply;
}

//  Sends a command (strings, NULL-terminated), checks that the reply's
//  status is OK, and returns the rest of the reply.
static zmsg_t *
s_command_ok (zactor_t *device, const char *first, ...)
{
    va_list args;
    va_start (args, first);
    zmsg_t *reply = s_command_va (device, first, args);
    va_end (args);
    char *status = zmsg_popstr (reply);
    assert_string_equal (status, "OK");
    zstr_free (&status);
    return reply;
}

//  Reads counter key from a reply frame holding a msgpack map.
static uint64_t
s_frame_uint (zframe_t *frame, const char *key)
{
    zq_msg_t *row = zq_msg_new (NULL);
    assert_int_equal (zq_msg_set_body (row, zframe_data (frame), zframe_size (frame)), 0);
    uint64_t value = 0;
    assert_int_equal (zq_msg_get_uint (row, key, &value), 0);
    zq_msg_destroy (&row);
    return value;
}

//  Reads counter key of queue name through STAT.
static uint64_t
s_stat (zactor_t *device, const char *name, const char *key)
{
    zmsg_t *reply = s_command_ok (device, "STAT", name, NULL);
    zframe_t *frame = zmsg_first (reply);
    assert_non_null (frame);
    uint64_t value = s_frame_uint (frame, key);
    zmsg_destroy (&reply);
    return value;
}

//  Waits until counter key of name reaches at least value.
static void
s_wait_stat (zactor_t *device, const char *name, const char *key, uint64_t value)
{
    int64_t deadline = zclock_mono () + DEADLINE_MS;
    uint64_t now = 0;
    while ((now = s_stat (device, name, key)) < value && zclock_mono () < deadline)
        zclock_sleep (5); //  a poll interval, not a wait for an event
    if (now < value)
        fprintf (stderr, "%s %s: %llu, wanted %llu\n", name, key, (unsigned long long)now,
                 (unsigned long long)value);
    assert_true (now >= value);
}

static char *
s_endpoint (zactor_t *device, const char *what)
{
    char *endpoint = zq_device_endpoint (device, what);
    assert_non_null (endpoint);
    assert_true (*endpoint);
    return endpoint;
}

static zq_msg_t *
s_numbered (const char *subject, uint64_t number)
{
    zq_msg_t *msg = zq_msg_new (subject);
    assert_non_null (msg);
    assert_int_equal (zq_msg_pack (msg, "{su}", "n", number), 0);
    return msg;
}

static uint64_t
s_number (zq_msg_t *msg)
{
    uint64_t number = 0;
    assert_int_equal (zq_msg_get_uint (msg, "n", &number), 0);
    return number;
}

//  Opens a queue connecting to endpoint.
static zq_queue_t *
s_connect (const char *pattern, zq_role_t role, const char *endpoint)
{
    char spec[512];
    snprintf (spec, sizeof spec, ">%s", endpoint);
    zq_queue_t *queue = zq_queue_new (pattern, role, spec, NULL);
    assert_non_null (queue);
    return queue;
}

//  ---- Configuration ---------------------------------------------------------

static void
s_expect_bad (const char *text, const char *fragment)
{
    zconfig_t *config = s_config ("%s", text);
    char error[512] = "";
    errno = 0;
    assert_int_equal (zq_device_check (config, error, sizeof error), -1);
    assert_int_equal (errno, EINVAL);
    if (!strstr (error, fragment))
        fprintf (stderr, "error '%s' lacks '%s'\n", error, fragment);
    assert_non_null (strstr (error, fragment));
    //  Starting fails the same way, with nothing left open.
    zactor_t *device = zq_device_new (config, error, sizeof error);
    assert_null (device);
    assert_int_equal (errno, EINVAL);
    zconfig_destroy (&config);
}

static void
test_config_rejected (void **state)
{
    (void)state;
    s_expect_bad ("devcie\n    bind = tcp://127.0.0.1:*\n", "devcie: unknown section");
    s_expect_bad ("device\n    bnid = tcp://127.0.0.1:*\n", "device/bnid: unknown key");
    s_expect_bad ("device\n    fsync = sometimes\n", "device/fsync: 'sometimes'");
    s_expect_bad ("device\n    fsync_interval_ms = soon\n", "device/fsync_interval_ms");
    s_expect_bad ("device\n    bind = 127.0.0.1:5670\n", "is not an endpoint");
    s_expect_bad ("device\n    bind = >tcp://127.0.0.1:5670\n", "binds every endpoint");
    s_expect_bad ("queue\n    no_such_option = 1\n", "queue/no_such_option: unknown");
    s_expect_bad ("queue\n    sndhwm = lots\n", "queue/sndhwm: 'lots'");
    s_expect_bad ("queues\n    m\n        kind = strem\n", "queues/m/kind: 'strem'");
    s_expect_bad ("queues\n    m\n        kind = stream\n        in = tcp://127.0.0.1:*\n",
                  "needs both in and out");
    s_expect_bad ("queues\n    .hidden\n        kind = queue\n", "queues/.hidden");
    s_expect_bad ("queues\n    m\n        kind = stream\n        memory_messages = 0\n",
                  "memory_messages");
    s_expect_bad ("queues\n    m\n        kind = forward\n        color = blue\n",
                  "queues/m/color: unknown key");
    s_expect_bad ("stream\n    memory_messages = -5\n", "stream/memory_messages");
    s_expect_bad ("stream\n    memory_bytes = 0\n", "stream/memory_bytes");
    s_expect_bad ("stream\n    quota_bytes = -1\n", "stream/quota_bytes");
    s_expect_bad ("forward\n    max_subscription_bytes = -1\n", "forward/max_subscription_bytes");
    s_expect_bad ("queues\n    f\n        kind = forward\n        max_subscription_bytes = lots\n",
                  "queues/f/max_subscription_bytes: 'lots'");
    s_expect_bad ("stream\n    max_subscription_bytes = 1000\n",
                  "stream/max_subscription_bytes: unknown key");
    s_expect_bad ("device\n    curve\n        secret_cert = /nonexistent\n", "clients");
    //  Safe by default: nothing plaintext beyond loopback, admin never.
    s_expect_bad ("device\n    bind = tcp://0.0.0.0:5670\n",
                  "refusing to bind 'tcp://0.0.0.0:5670'");
    s_expect_bad ("queues\n    f\n        kind = forward\n        in = tcp://127.0.0.1:*\n"
                  "        out = tcp://*:6000\n",
                  "queues/f/out: refusing to bind 'tcp://*:6000' without CURVE");
    s_expect_bad ("device\n    insecure = true\n    admin = tcp://[::]:5671\n",
                  "device/admin: refusing to bind 'tcp://[::]:5671'");
    s_expect_bad ("device\n    insecure = maybe\n", "device/insecure: 'maybe'");
    zconfig_t *insecure = s_config ("device\n    bind = tcp://0.0.0.0:5670\n    insecure = true\n"
                                    "    admin = tcp://localhost:5671\n");
    char message[512] = "";
    assert_int_equal (zq_device_check (insecure, message, sizeof message), 0);
    zconfig_destroy (&insecure);

    zconfig_t *good = s_config ("device\n    bind = \"\"\n    spool = %s/good\n"
                                "stream\n    memory_messages = 7\n    memory_bytes = 65536\n"
                                "queues\n    m\n        kind = stream\n"
                                "        in = tcp://127.0.0.1:*\n"
                                "        out = tcp://127.0.0.1:*\n",
                                s_dir);
    char error[512] = "";
    assert_int_equal (zq_device_check (good, error, sizeof error), 0);
    zconfig_destroy (&good);
}

//  Sends an HTTP/1.0 GET of path to address (HOST:PORT, IPv4) and returns
//  the whole answer (new string), read until the server closes.
static char *
s_http_get (const char *address, const char *path)
{
    char host[64];
    const char *colon = strrchr (address, ':');
    assert_non_null (colon);
    snprintf (host, sizeof host, "%.*s", (int)(colon - address), address);
    struct sockaddr_in peer = {0};
    peer.sin_family = AF_INET;
    peer.sin_port = htons ((uint16_t)atoi (colon + 1));
    assert_int_equal (inet_pton (AF_INET, host, &peer.sin_addr), 1);
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    assert_true (fd >= 0);
    struct timeval timeout = {10, 0};
    setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    assert_int_equal (connect (fd, (struct sockaddr *)&peer, sizeof peer), 0);
    char request[256];
    int length = snprintf (request, sizeof request, "GET %s HTTP/1.0\r\n\r\n", path);
    assert_int_equal (send (fd, request, (size_t)length, 0), length);
    size_t size = 0, capacity = 65536;
    char *answer = (char *)malloc (capacity + 1);
    assert_non_null (answer);
    ssize_t got;
    while ((got = recv (fd, answer + size, capacity - size, 0)) > 0) {
        size += (size_t)got;
        if (size == capacity) {
            capacity *= 2;
            answer = (char *)realloc (answer, capacity + 1);
            assert_non_null (answer);
        }
    }
    close (fd);
    answer[size] = '\0';
    return answer;
}

static void
test_http (void **state)
{
    (void)state;
    //  Plain HTTP stays on loopback unless insecure; addresses are checked.
    s_expect_bad ("device\n    http = 0.0.0.0:9670\n", "device/http: refusing to serve");
    s_expect_bad ("device\n    http = [::]:9670\n", "device/http: refusing to serve");
    s_expect_bad ("device\n    http = 127.0.0.1:65536\n", "device/http: '65536' is not a port");
    s_expect_bad ("device\n    http = tcp://127.0.0.1:9670\n", "device/http:");
    s_expect_bad ("device\n    http = 9670\n", "device/http: '9670' is not an HTTP address");
    zconfig_t *insecure = s_config ("device\n    http = 0.0.0.0:9670\n    insecure = true\n");
    char message[512] = "";
    assert_int_equal (zq_device_check (insecure, message, sizeof message), 0);
    zconfig_destroy (&insecure);

    zactor_t *device = s_device ("device\n    bind = tcp://127.0.0.1:*\n    spool = %s/spool\n"
                                 "    http = 127.0.0.1:0\n",
                                 s_dir);
    char *address = s_endpoint (device, "http");
    assert_true (strncmp (address, "127.0.0.1:", 10) == 0);
    assert_true (atoi (address + 10) > 0);
    //  A queue a client makes, and its connection (counted from libzmq's
    //  monitor events, which come on their own time), show in /metrics
    //  within a tick or two.
    char *bind = s_endpoint (device, "bind");
    zq_queue_t *producer = s_connect ("reliable", ZQ_PRODUCER, bind);
    zq_msg_t *msg = s_numbered ("metered", 1);
    int sent = zq_queue_send (producer, &msg, DEADLINE_MS);
    if (sent)
        fprintf (stderr, "send: %s\n", zq_strerror (errno));
    assert_int_equal (sent, 0);
    char *answer = NULL;
    int64_t deadline = zclock_mono () + 10000;
    while (zclock_mono () < deadline) {
        zstr_free (&answer);
        answer = s_http_get (address, "/metrics");
        if (strstr (answer, "zq_queue_depth{queue=\"metered\",kind=\"queue\"} 1\n") &&
            strstr (answer, "zq_connections 1\n"))
            break;
        zclock_sleep (20);
    }
    assert_true (strncmp (answer, "HTTP/1.0 200", 12) == 0 ||
                 strncmp (answer, "HTTP/1.1 200", 12) == 0);
    assert_non_null (strstr (answer, "zq_queue_depth{queue=\"metered\",kind=\"queue\"} 1\n"));
    assert_non_null (strstr (answer, "zq_connections 1\n"));
    zstr_free (&answer);
    answer = s_http_get (address, "/nothing");
    assert_non_null (strstr (answer, " 404 "));
    zstr_free (&answer);
    zq_queue_destroy (&producer);
    zstr_free (&bind);
    zstr_free (&address);
    //  Destroying the device stops its HTTP thread.
    zactor_destroy (&device);
}

static void
test_start_failures (void **state)
{
    (void)state;
    //  An endpoint in use: a clear error, nothing left running.
    zactor_t *first = s_device ("device\n    bind = \"\"\n    admin = tcp://127.0.0.1:*\n");
    char *admin = s_endpoint (first, "admin");
    zconfig_t *config = s_config ("device\n    bind = \"\"\n    admin = %s\n", admin);
    char error[512] = "";
    zactor_t *second = zq_device_new (config, error, sizeof error);
    assert_null (second);
    assert_int_equal (errno, EADDRINUSE);
    assert_non_null (strstr (error, "device/admin"));
    zconfig_destroy (&config);
    zstr_free (&admin);
    zactor_destroy (&first);

    //  A spool directory another device holds.
    const char *stream = "device\n    bind = \"\"\n    spool = %s/held\n"
                         "queues\n    m\n        kind = stream\n"
                         "        in = tcp://127.0.0.1:*\n        out = tcp://127.0.0.1:*\n";
    first = s_device (stream, s_dir);
    config = s_config (stream, s_dir);
    second = zq_device_new (config, error, sizeof error);
    assert_null (second);
    assert_int_equal (errno, EBUSY);
    assert_non_null (strstr (error, "in use by another device"));
    zconfig_destroy (&config);
    zactor_destroy (&first);

    //  A missing file.
    assert_null (zq_device_start ("/nonexistent/zqd.cfg", error, sizeof error));
    assert_int_equal (errno, ENOENT);
    assert_non_null (strstr (error, "/nonexistent/zqd.cfg"));
}

//  ---- Commands --------------------------------------------------------------

static void
s_expect_reply (zmsg_t *reply, const char *status, const char *fragment)
{
    char *first = zmsg_popstr (reply);
    assert_non_null (first);
    assert_string_equal (first, status);
    if (fragment) {
        char *second = zmsg_popstr (reply);
        assert_non_null (second);
        if (!strstr (second, fragment))
            fprintf (stderr, "reply '%s' lacks '%s'\n", second, fragment);
        assert_non_null (strstr (second, fragment));
        zstr_free (&second);
    }
    zstr_free (&first);
    zmsg_destroy (&reply);
}

static void
test_commands (void **state)
{
    (void)state;
    zactor_t *device = s_device ("device\n    bind = \"\"\n");
    s_expect_reply (s_command (device, "PING", NULL), "OK", "PONG");
    s_expect_reply (s_command (device, "FROB", "x", NULL), "ERROR", "unknown command 'FROB'");
    s_expect_reply (s_command (device, "", NULL), "ERROR", "unknown command");
    s_expect_reply (s_command (device, "STAT", "nothing", NULL), "ERROR", "no queue 'nothing'");
    s_expect_reply (s_command (device, "PEEK", NULL), "ERROR", "which queue");
    s_expect_reply (s_command (device, "PURGE", "nothing", NULL), "ERROR", "no queue");
    s_expect_reply (s_command (device, "ENDPOINT", "nowhere", NULL), "ERROR", "no endpoint");
    s_expect_reply (s_command (device, "QUEUE", "a/b", "stream", NULL), "ERROR", "queue name");
    s_expect_reply (s_command (device, "QUEUE", "m", "pipe", NULL), "ERROR", "kind is");
    s_expect_reply (s_command (device, "QUEUE", "m", "stream", NULL), "ERROR", "needs IN and OUT");
    s_expect_reply (s_command (device, "QUEUE", "m", "queue", NULL), "ERROR", "no bind endpoint");
    //  A stream added at run time.
    s_expect_reply (
        s_command (device, "QUEUE", "m", "stream", "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", NULL),
        "OK", NULL);
    s_expect_reply (
        s_command (device, "QUEUE", "m", "forward", "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", NULL),
        "ERROR", "exists as a stream");
    char *in = s_endpoint (device, "m/in");
    char *out = s_endpoint (device, "m/out");
    assert_non_null (strstr (in, "tcp://127.0.0.1:"));
    zmsg_t *reply = s_command (device, "LS", NULL);
    s_expect_reply (reply, "OK", NULL);
    //  The device still answers after all that.
    s_expect_reply (s_command (device, "PING", NULL), "OK", "PONG");
    zstr_free (&in);
    zstr_free (&out);
    zactor_destroy (&device);
}

//  ---- Streams ---------------------------------------------------------------

static const char *s_stream_config = "device\n    bind = \"\"\n    admin = tcp://127.0.0.1:*\n"
                                     "    spool = %s/spool\n"
                                     "queues\n    metrics\n        kind = stream\n"
                                     "        in = tcp://127.0.0.1:*\n"
                                     "        out = tcp://127.0.0.1:*\n"
                                     "        memory_messages = %d\n"
                                     "        sndhwm = 10\n";

//  Sends the messages numbered first to first + count - 1 on subject.
static void
s_send_numbers (zq_queue_t *queue, const char *subject, uint64_t first, uint64_t count)
{
    for (uint64_t number = first; number < first + count; number++) {
        zq_msg_t *msg = s_numbered (subject, number);
        assert_int_equal (zq_queue_send (queue, &msg, DEADLINE_MS), 0);
    }
}

//  Receives the messages numbered first to first + count - 1, in order.
static void
s_recv_numbers (zq_queue_t *queue, uint64_t first, uint64_t count)
{
    for (uint64_t number = first; number < first + count; number++) {
        zq_msg_t *msg = zq_queue_recv (queue, DEADLINE_MS);
        assert_non_null (msg);
        assert_int_equal (s_number (msg), number);
        zq_msg_destroy (&msg);
    }
}

static void
s_put_numbers (const char *in, uint64_t first, uint64_t count)
{
    zq_queue_t *producer = s_connect ("pipeline", ZQ_PRODUCER, in);
    s_send_numbers (producer, "metrics", first, count);
    zq_queue_destroy (&producer);
}

static void
s_get_numbers (const char *out, uint64_t first, uint64_t count)
{
    zq_queue_t *consumer = s_connect ("pipeline", ZQ_CONSUMER, out);
    s_recv_numbers (consumer, first, count);
    zq_queue_destroy (&consumer);
}

static void
test_stream_spills_in_order (void **state)
{
    (void)state;
    zactor_t *device = s_device (s_stream_config, s_dir, 50);
    char *in = s_endpoint (device, "metrics/in");
    char *out = s_endpoint (device, "metrics/out");
    //  No consumer: 50 in memory, the rest spilled.
    s_put_numbers (in, 1, 2000);
    s_wait_stat (device, "metrics", "in", 2000);
    assert_int_equal (s_stat (device, "metrics", "depth"), 2000);
    assert_int_equal (s_stat (device, "metrics", "spilled"), 1950);
    assert_int_equal (s_stat (device, "metrics", "dropped"), 0);
    //  More while a consumer drains: every message, in order.
    zq_queue_t *consumer = s_connect ("pipeline", ZQ_CONSUMER, out);
    s_put_numbers (in, 2001, 1000);
    s_recv_numbers (consumer, 1, 3000);
    zq_queue_destroy (&consumer);
    s_wait_stat (device, "metrics", "out", 3000);
    assert_int_equal (s_stat (device, "metrics", "depth"), 0);
    zstr_free (&in);
    zstr_free (&out);
    zactor_destroy (&device);
}

//  The device's rates and uptime follow its clock: on a fake one, 100
//  messages over 4 s of the device's time are 25/s, and the uptime is 4 s,
//  however long the test really took.
static void
test_rates_follow_the_device_clock (void **state)
{
    (void)state;
    zqi_clock_t *clock = zqi_clock_fake_new ();
    assert_non_null (clock);
    zactor_t *device = s_device_clocked (clock, s_stream_config, s_dir, 1000);
    char *in = s_endpoint (device, "metrics/in");
    s_put_numbers (in, 1, 100);
    s_wait_stat (device, "metrics", "in", 100);
    zqi_clock_advance (clock, 4000);
    zmsg_t *reply = s_command_ok (device, "STAT", "metrics", NULL);
    zq_msg_t *row = zq_msg_new (NULL);
    zframe_t *frame = zmsg_first (reply);
    assert_non_null (frame);
    assert_int_equal (zq_msg_set_body (row, zframe_data (frame), zframe_size (frame)), 0);
    double in_rate = 0;
    assert_int_equal (zq_msg_get_double (row, "in_rate", &in_rate), 0);
    zq_msg_destroy (&row);
    zmsg_destroy (&reply);
    if (in_rate != 25.0)
        fprintf (stderr, "in_rate %g, wanted 25\n", in_rate);
    assert_true (in_rate == 25.0);
    reply = s_command_ok (device, "INFO", NULL);
    frame = zmsg_first (reply);
    assert_non_null (frame);
    uint64_t uptime_ms = s_frame_uint (frame, "uptime_ms");
    zmsg_destroy (&reply);
    if (uptime_ms != 4000)
        fprintf (stderr, "uptime_ms %llu, wanted 4000\n", (unsigned long long)uptime_ms);
    assert_int_equal (uptime_ms, 4000);
    zstr_free (&in);
    zactor_destroy (&device);
    zqi_clock_destroy (&clock);
}

static void
test_stream_spool_survives_restart (void **state)
{
    (void)state;
    zactor_t *device = s_device (s_stream_config, s_dir, 10);
    char *in = s_endpoint (device, "metrics/in");
    s_put_numbers (in, 1, 100);
    s_wait_stat (device, "metrics", "in", 100);
    zstr_free (&in);
    zactor_destroy (&device);
    //  The 90 spilled messages come back; the 10 in memory were lost.
    device = s_device (s_stream_config, s_dir, 10);
    assert_int_equal (s_stat (device, "metrics", "depth"), 90);
    char *out = s_endpoint (device, "metrics/out");
    s_get_numbers (out, 11, 90);
    zstr_free (&out);
    zactor_destroy (&device);
}

static void
test_stream_peek_and_purge (void **state)
{
    (void)state;
    zactor_t *device = s_device (s_stream_config, s_dir, 5);
    char *in = s_endpoint (device, "metrics/in");
    s_put_numbers (in, 1, 20);
    s_wait_stat (device, "metrics", "in", 20);
    //  PEEK reaches past memory into the spool, and takes nothing.
    for (int round = 0; round < 2; round++) {
        zmsg_t *reply = s_command_ok (device, "PEEK", "metrics", "8", NULL);
        assert_int_equal (zmsg_size (reply), 8);
        uint64_t number = 1;
        for (zframe_t *frame = zmsg_first (reply); frame; frame = zmsg_next (reply), number++) {
            const void *data = zframe_data (frame);
            size_t size = zframe_size (frame);
            zq_msg_t *msg = zq_msg_decode_buffers (&data, &size, 1, 0);
            assert_non_null (msg);
            assert_int_equal (s_number (msg), number);
            zq_msg_destroy (&msg);
        }
        zmsg_destroy (&reply);
    }
    s_expect_reply (s_command (device, "PEEK", "metrics", "0", NULL), "ERROR", "COUNT");
    zmsg_t *reply = s_command_ok (device, "PURGE", "metrics", NULL);
    assert_int_equal (s_frame_uint (zmsg_first (reply), "purged"), 20);
    zmsg_destroy (&reply);
    assert_int_equal (s_stat (device, "metrics", "depth"), 0);
    //  After a purge the stream carries on.
    s_put_numbers (in, 21, 5);
    char *out = s_endpoint (device, "metrics/out");
    s_get_numbers (out, 21, 5);
    zstr_free (&in);
    zstr_free (&out);
    zactor_destroy (&device);
}

//  ---- Garbage and half-open connections --------------------------------------

static int
s_raw_connect (const char *endpoint)
{
    const char *colon = strrchr (endpoint, ':');
    assert_non_null (colon);
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    assert_true (fd >= 0);
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_port = htons ((uint16_t)atoi (colon + 1));
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    assert_int_equal (connect (fd, (struct sockaddr *)&address, sizeof address), 0);
    return fd;
}

static void
test_garbage_and_half_open (void **state)
{
    (void)state;
    zactor_t *device = s_device (s_stream_config, s_dir, 1000);
    char *in = s_endpoint (device, "metrics/in");
    char *out = s_endpoint (device, "metrics/out");
    char *admin = s_endpoint (device, "admin");
    //  50 connections that say nothing, 50 that send junk, on every socket.
    //  Random bytes can pass for a ZMTP 1.0 peer, which libzmq accepts (a
    //  legacy consumer would then get its share of a PUSH's messages), so
    //  the consumer side gets a ZMTP 3 greeting with an unknown security
    //  mechanism instead, which libzmq refuses.
    int fds[300];
    size_t fd_count = 0;
    const char *targets[3] = {in, out, admin};
    for (int target = 0; target < 3; target++)
        for (int index = 0; index < 100; index++) {
            int fd = s_raw_connect (targets[target]);
            if (index % 2) {
                char junk[512];
                for (size_t byte = 0; byte < sizeof junk; byte++)
                    junk[byte] = (char)(rand () & 0xff);
                if (targets[target] == out) {
                    memset (junk, 0, 64);
                    junk[0] = (char)0xff;
                    junk[9] = 0x7f;
                    junk[10] = 3;
                    memcpy (junk + 12, "JUNK", 4);
                }
                assert_true (write (fd, junk, sizeof junk) > 0);
            }
            fds[fd_count++] = fd;
        }
    //  ZMTP-valid messages that are not zq messages: counted, skipped.
    zsock_t *raw = zsock_new_push (in);
    assert_non_null (raw);
    for (int index = 0; index < 10; index++)
        zstr_send (raw, "not a zq message");
    //  Good clients are served all along.
    s_put_numbers (in, 1, 100);
    s_get_numbers (out, 1, 100);
    s_wait_stat (device, "metrics", "errors", 10);
    s_expect_reply (s_command (device, "PING", NULL), "OK", "PONG");
    //  The admin socket too.
    zsock_t *request = zsock_new_req (admin);
    assert_non_null (request);
    zsock_set_rcvtimeo (request, DEADLINE_MS);
    zstr_send (request, "LS");
    zmsg_t *reply = zmsg_recv (request);
    assert_non_null (reply);
    s_expect_reply (reply, "OK", NULL);
    zstr_send (request, "HACK");
    reply = zmsg_recv (request);
    assert_non_null (reply);
    s_expect_reply (reply, "ERROR", "unknown command");
    zsock_destroy (&request);
    zsock_destroy (&raw);
    for (size_t index = 0; index < fd_count; index++)
        close (fds[index]);
    zstr_free (&in);
    zstr_free (&out);
    zstr_free (&admin);
    zactor_destroy (&device);
}

//  ---- Forwards ---------------------------------------------------------------

static const char *s_forward_config = "device\n    bind = \"\"\n"
                                      "queues\n    events\n        kind = forward\n"
                                      "        in = tcp://127.0.0.1:*\n"
                                      "        out = tcp://127.0.0.1:*\n"
                                      "        sndhwm = %d\n";

//  Sends, as a raw publisher would, the message numbered number on subject
//  events with the 16-byte sequence frame given.
static void
s_send_sequenced (zsock_t *raw, const uint8_t sequence[16], uint64_t number)
{
    zq_msg_t *msg = s_numbered ("events", number);
    zmsg_t *frames = zmsg_new ();
    zmsg_addstr (frames, "events");
    zmsg_addmem (frames, sequence, 16);
    assert_int_equal (zq_msg_encode (&msg, frames), 0);
    assert_int_equal (zmsg_send (&frames, raw), 0);
}

static void
test_forward_carries_and_counts (void **state)
{
    (void)state;
    zactor_t *device = s_device (s_forward_config, 100000);
    char *in = s_endpoint (device, "events/in");
    char *out = s_endpoint (device, "events/out");
    zq_queue_t *subscriber = s_connect ("pubsub", ZQ_SUBSCRIBER, out);
    assert_int_equal (zq_queue_subscribe (subscriber, "events"), 0);
    zq_queue_t *publisher = s_connect ("pubsub", ZQ_PUBLISHER, in);
    //  The subscription reaches the publisher through the device.
    assert_int_equal (zq_queue_wait_subscribers (publisher, 1, DEADLINE_MS), 0);
    s_send_numbers (publisher, "events", 1, 100);
    s_recv_numbers (subscriber, 1, 100);
    assert_int_equal (s_stat (device, "events", "out"), 100);
    assert_int_equal (s_stat (device, "events", "gaps"), 0);

    //  A raw publisher that skips sequence numbers: the device counts the
    //  messages lost before it.
    zsock_t *raw = zsock_new (ZMQ_PUB);
    assert_int_equal (zsock_connect (raw, "%s", in), 0);
    uint8_t sequence[16] = {7, 7, 7, 7, 7, 7, 7, 7, 0, 0, 0, 0, 0, 0, 0, 1};
    int64_t deadline = zclock_mono () + DEADLINE_MS;
    zq_msg_t *got = NULL;
    //  Until the connection carries messages, resend number 1 (the same
    //  number again is never a gap).
    while (!got && zclock_mono () < deadline) {
        s_send_sequenced (raw, sequence, 1);
        got = zq_queue_recv (subscriber, 10);
    }
    assert_non_null (got);
    zq_msg_destroy (&got);
    uint64_t gaps_before = s_stat (device, "events", "gaps");
    uint8_t numbers[] = {2, 5, 6};
    for (size_t index = 0; index < sizeof numbers; index++) {
        sequence[15] = numbers[index];
        s_send_sequenced (raw, sequence, numbers[index]);
    }
    //  Read until number 6 arrived.
    for (int index = 0; index < 1000; index++) {
        zq_msg_t *msg = zq_queue_recv (subscriber, DEADLINE_MS);
        assert_non_null (msg);
        uint64_t number = s_number (msg);
        zq_msg_destroy (&msg);
        if (number == 6)
            break;
    }
    assert_int_equal (s_stat (device, "events", "gaps") - gaps_before, 2);
    //  Not a pubsub message: counted as an error, not forwarded.
    zstr_send (raw, "events");
    s_wait_stat (device, "events", "errors", 1);
    zsock_destroy (&raw);
    zq_queue_destroy (&publisher);
    zq_queue_destroy (&subscriber);
    zstr_free (&in);
    zstr_free (&out);
    zactor_destroy (&device);
}

static void
test_forward_counts_drops (void **state)
{
    (void)state;
    zactor_t *device = s_device (s_forward_config, 10);
    char *in = s_endpoint (device, "events/in");
    char *out = s_endpoint (device, "events/out");
    zq_options_t *options = zq_options_new ();
    zq_options_set_int (options, "rcvhwm", 10);
    char spec[512];
    snprintf (spec, sizeof spec, ">%s", out);
    zq_queue_t *subscriber = zq_queue_new ("pubsub", ZQ_SUBSCRIBER, spec, options);
    zq_options_destroy (&options);
    assert_non_null (subscriber);
    assert_int_equal (zq_queue_subscribe (subscriber, ""), 0);
    //  The publisher waits for the device rather than drop: every message
    //  reaches it, and the only drops are the device's.
    options = zq_options_new ();
    zq_options_set (options, "slow_subscriber", "wait");
    snprintf (spec, sizeof spec, ">%s", in);
    zq_queue_t *publisher = zq_queue_new ("pubsub", ZQ_PUBLISHER, spec, options);
    zq_options_destroy (&options);
    assert_non_null (publisher);
    assert_int_equal (zq_queue_wait_subscribers (publisher, 1, DEADLINE_MS), 0);
    //  The subscriber reads nothing while 20000 messages go by.
    const uint64_t total = 20000;
    s_send_numbers (publisher, "events", 1, total);
    //  Everything that reached the device was either forwarded or counted.
    int64_t deadline = zclock_mono () + DEADLINE_MS;
    uint64_t in_count = 0, out_count = 0, dropped = 0;
    while (zclock_mono () < deadline) {
        in_count = s_stat (device, "events", "in");
        out_count = s_stat (device, "events", "out");
        dropped = s_stat (device, "events", "dropped");
        if (in_count == total)
            break;
        zclock_sleep (5);
    }
    assert_int_equal (in_count, total);
    assert_int_equal (out_count + dropped, total);
    assert_true (dropped > 0);
    //  The subscriber sees the drops as gaps once it reads on.
    uint64_t received = 0;
    zq_msg_t *msg;
    while ((msg = zq_queue_recv (subscriber, 200))) {
        received++;
        zq_msg_destroy (&msg);
    }
    zq_queue_stats_t stats;
    zq_queue_stats (subscriber, &stats);
    assert_int_equal (received, out_count);
    assert_true (stats.gaps > 0);
    zq_queue_destroy (&publisher);
    zq_queue_destroy (&subscriber);
    zstr_free (&in);
    zstr_free (&out);
    zactor_destroy (&device);
}

//  ---- The queue kind ----------------------------------------------------------

static void
test_queue_kind (void **state)
{
    (void)state;
    zactor_t *device = s_device ("device\n    bind = tcp://127.0.0.1:*\n    spool = %s/spool\n"
                                 "queue\n    max_attempts = 2\n"
                                 "queues\n    declared\n        kind = queue\n",
                                 s_dir);
    char *bind = s_endpoint (device, "bind");
    //  A declared queue exists before anyone uses it.
    assert_int_equal (s_stat (device, "declared", "depth"), 0);
    //  A name nobody configured is created by its first put.
    zq_queue_t *producer = s_connect ("reliable", ZQ_PRODUCER, bind);
    s_send_numbers (producer, "orders", 1, 3);
    assert_int_equal (s_stat (device, "orders", "depth"), 3);
    assert_int_equal (s_stat (device, "orders", "in"), 3);
    zmsg_t *reply = s_command (device, "LS", NULL);
    s_expect_reply (reply, "OK", NULL);
    //  PEEK shows the oldest, takes nothing.
    reply = s_command_ok (device, "PEEK", "orders", "2", NULL);
    assert_int_equal (zmsg_size (reply), 2);
    zmsg_destroy (&reply);
    assert_int_equal (s_stat (device, "orders", "ready"), 3);

    //  A consumer that nacks until the message is dead-lettered.
    zq_queue_t *consumer = s_connect ("reliable", ZQ_CONSUMER, bind);
    assert_int_equal (zq_queue_subscribe (consumer, "orders"), 0);
    uint64_t acked = 0;
    int64_t deadline = zclock_mono () + DEADLINE_MS;
    while (s_stat (device, "orders", "dead") < 1 && zclock_mono () < deadline) {
        zq_msg_t *msg = zq_queue_recv (consumer, 100);
        if (!msg)
            continue;
        if (s_number (msg) == 1)
            assert_int_equal (zq_queue_nack (consumer, msg, 0), 0);
        else {
            assert_int_equal (zq_queue_ack (consumer, msg), 0);
            acked++;
        }
        zq_msg_destroy (&msg);
    }
    assert_int_equal (s_stat (device, "orders", "dead"), 1);
    s_wait_stat (device, "orders", "acked", 2);
    assert_int_equal (s_stat (device, "orders", "depth"), 0);
    //  REDRIVE brings it back with attempt 0.
    reply = s_command_ok (device, "REDRIVE", "orders", NULL);
    zmsg_destroy (&reply);
    zq_msg_t *msg = zq_queue_recv (consumer, DEADLINE_MS);
    assert_non_null (msg);
    assert_int_equal (s_number (msg), 1);
    assert_int_equal (zq_msg_attempt (msg), 0);
    assert_int_equal (zq_queue_ack (consumer, msg), 0);
    zq_msg_destroy (&msg);
    s_wait_stat (device, "orders", "acked", 3);
    //  PURGE drops what waits.
    s_send_numbers (producer, "later", 4, 3);
    reply = s_command_ok (device, "PURGE", "later", NULL);
    zmsg_destroy (&reply);
    assert_int_equal (s_stat (device, "later", "depth"), 0);
    s_expect_reply (s_command (device, "REDRIVE", "nowhere", NULL), "ERROR", "no queue");
    zq_queue_destroy (&consumer);
    zq_queue_destroy (&producer);
    zstr_free (&bind);
    zactor_destroy (&device);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (test_config_rejected, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_start_failures, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_commands, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_stream_spills_in_order, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_rates_follow_the_device_clock, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_stream_spool_survives_restart, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_stream_peek_and_purge, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_garbage_and_half_open, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_forward_carries_and_counts, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_forward_counts_drops, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_queue_kind, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_http, s_setup, s_teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
