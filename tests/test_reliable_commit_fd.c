/*  =========================================================================
    test_reliable_commit_fd - a reliable server of spools on disk may end a
    call with a commit still running in its committer thread (its host's
    loop is not held by a slow disk). Its host learns of the commit's end
    from zq_queue_store_fd, or from zq_queue_next_timer_ms; a host that
    watches neither is not called back until other input comes. A purge,
    peek or redrive the host calls meanwhile waits for that commit and the
    round gathered behind it, and counts every message in them.

    The disk is held here: this program defines zq_spool_commit, which the
    library reaches through the dynamic linker. While s_hold is set, a
    commit made by any thread but the host's waits (the committer's); the
    host's own commits (a lone PUT's) pass. It defines eventfd likewise,
    failing the library's calls while s_refuse_eventfd is set.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#define _GNU_SOURCE //  dladdr
#include "batch_frame_helpers.h"
#include "queue_helpers.h"
#include <dlfcn.h>
#include <sys/eventfd.h>
#include <poll.h>
#include <pthread.h>
#include <time.h>

//  PUTs the client sends at once, in PUT batches of S_BATCH: a round of
//  more than a lone PUT, which commits in the committer thread (a lone
//  PUT commits in the host's).
#define S_POSTED 2000
#define S_BATCH  500
//  How long a host that watches neither the descriptor nor the timer is
//  seen not to answer once the disk goes on: far more than the commits
//  take here, while a host that is not called back waits for ever.
#define S_ANSWER_MS 500

//  More than a test puts in all: a peek that returns fewer missed some.
#define S_PEEK_MAX (2 * S_POSTED + 2 * S_BATCH)

static bool s_hold;             //  set: commits outside the host's thread wait
static int s_held;              //  commits that waited
static pthread_t s_host_thread; //  written before the host signals it started
static int s_calls_started;     //  the host's calls of zq_queue_recv begun
static int s_calls_returned;    //  and ended
static bool s_host_closing;     //  set as the host destroys its server
static bool s_refuse_eventfd;   //  set: the library's eventfd calls fail (EMFILE)
static int s_warnings;          //  warnings logged that say there is no committer

int
zq_spool_commit (zq_spool_t *spool)
{
    static int (*library_commit) (zq_spool_t *);
    if (!library_commit)
        *(void **)&library_commit = dlsym (RTLD_NEXT, "zq_spool_commit");
    assert_non_null (library_commit);
    if (!pthread_equal (pthread_self (), s_host_thread) &&
        __atomic_load_n (&s_hold, __ATOMIC_SEQ_CST)) {
        __atomic_add_fetch (&s_held, 1, __ATOMIC_SEQ_CST);
        struct timespec step = {0, 1000000};
        for (int n = 0; n < 60000 && __atomic_load_n (&s_hold, __ATOMIC_SEQ_CST); n++)
            nanosleep (&step, NULL);
    }
    return library_commit (spool);
}

int
eventfd (unsigned int initval, int flags)
{
    static int (*library_eventfd) (unsigned int, int);
    if (!library_eventfd)
        *(void **)&library_eventfd = dlsym (RTLD_NEXT, "eventfd");
    assert_non_null (library_eventfd);
    //  Only the library's: libzmq makes its signals with eventfd too.
    Dl_info caller;
    if (__atomic_load_n (&s_refuse_eventfd, __ATOMIC_SEQ_CST) &&
        dladdr (__builtin_return_address (0), &caller) && caller.dli_fname &&
        strstr (caller.dli_fname, "libzq")) {
        errno = EMFILE;
        return -1;
    }
    return library_eventfd (initval, flags);
}

static void
s_count_no_committer (zq_log_level_t level, const char *line, void *arg)
{
    (void)arg;
    if (level == ZQ_LOG_WARNING && strstr (line, "no committer thread (eventfd: "))
        __atomic_add_fetch (&s_warnings, 1, __ATOMIC_SEQ_CST);
}

typedef enum {
    HOST_POLLS_STORE_FD,    //  the socket and zq_queue_store_fd, no timer
    HOST_KEEPS_TIMERS,      //  the socket, with zq_queue_next_timer_ms
    HOST_POLLS_SOCKET_ONLY, //  the socket alone, no timer
} host_mode_t;

typedef struct {
    host_mode_t mode;
    const char *spool_dir;
} host_args_t;

//  The host's admin commands on queue "held".
static const char *s_admin_commands[] = {"PURGE", "PEEK", "REDRIVE", "DEADLETTER", NULL};

//  Moves the one message of queue "held" to "held.dead": takes it as a
//  local consumer and nacks it (the host's server dead-letters at the
//  first nack, as it would deliver it again), then works the server until
//  "held.dead" holds it. Returns 0, or -1.
static int
s_dead_letter_one (zq_queue_t *server)
{
    if (zq_queue_subscribe (server, "held"))
        return -1;
    zq_msg_t *msg = zq_queue_recv (server, DEADLINE_MS);
    int rc = msg ? zq_queue_nack (server, msg, 0) : -1;
    zq_msg_destroy (&msg);
    int64_t deadline = now_ms () + DEADLINE_MS;
    zq_queue_info_t dead = {0};
    while (rc == 0 && (zq_queue_info (server, "held.dead", &dead) || dead.depth < 1)) {
        if (now_ms () >= deadline)
            rc = -1;
        msg = zq_queue_recv (server, 1); //  nothing else is in "held"
        if (msg)
            rc = -1;
        zq_msg_destroy (&msg);
    }
    return zq_queue_unsubscribe (server, "held") || rc ? -1 : 0;
}

//  Does command (one of s_admin_commands) on queue "held" of server;
//  returns the count (messages purged, peeked, redriven; 1 dead-lettered),
//  or -1 when the call failed.
static long long
s_host_admin (zq_queue_t *server, const char *command)
{
    uint64_t moved = 0;
    if (streq (command, "PURGE"))
        return zq_queue_purge (server, "held", &moved) ? -1 : (long long)moved;
    if (streq (command, "REDRIVE"))
        return zq_queue_redrive (server, "held", &moved) ? -1 : (long long)moved;
    if (streq (command, "DEADLETTER"))
        return s_dead_letter_one (server) ? -1 : 1;
    zq_msg_t *msgs[S_PEEK_MAX];
    size_t count = 0;
    if (zq_queue_peek (server, "held", msgs, S_PEEK_MAX, &count))
        return -1;
    for (size_t n = 0; n < count; n++)
        zq_msg_destroy (&msgs[n]);
    return (long long)count;
}

//  A host embedding a reliable server, polling as its mode says and
//  working the server after each wake; sends the server's endpoint first.
static void
s_host (zsock_t *pipe, void *arg)
{
    host_args_t *args = (host_args_t *)arg;
    s_host_thread = pthread_self ();
    //  No timer of the server's falls due while a test runs, but the one
    //  for a commit in flight: no probe of consumers, no sweep of queues.
    //  A nack dead-letters at once (max_attempts 1).
    zq_options_t *options = options_of ("spool_dir", args->spool_dir, "ping_ivl_ms", "600000",
                                        "auto_queue_idle_ms", "0", "max_attempts", "1", NULL);
    zq_queue_t *server = zq_queue_new ("reliable", ZQ_SERVER, "@tcp://127.0.0.1:*", options);
    zq_options_destroy (&options);
    zsock_signal (pipe, server ? 0 : 1);
    if (!server)
        return;
    zstr_send (pipe, zq_queue_endpoint (server));
    //  One of s_admin_commands on the pipe: the host does it and sends back
    //  the count (-1: failed). Any other message ("STOP" from a test,
    //  $TERM) ends the loop.
    int store_fd = args->mode == HOST_POLLS_STORE_FD ? zq_queue_store_fd (server) : -1;
    zmq_pollitem_t items[3] = {{zsock_resolve (pipe), 0, ZMQ_POLLIN, 0},
                               {zsock_resolve (zq_queue_sock (server)), 0, ZMQ_POLLIN, 0},
                               {NULL, store_fd, ZMQ_POLLIN, 0}};
    while (true) {
        long timeout = -1;
        if (args->mode == HOST_KEEPS_TIMERS)
            timeout = (long)zq_queue_next_timer_ms (server);
        if (zmq_poll (items, store_fd >= 0 ? 3 : 2, timeout) < 0)
            break; //  the context ends
        if (items[0].revents & ZMQ_POLLIN) {
            char *command = zstr_recv (pipe);
            bool admin = false;
            for (const char **known = s_admin_commands; command && *known && !admin; known++)
                admin = streq (command, *known);
            if (admin)
                zstr_sendf (pipe, "%lld", s_host_admin (server, command));
            zstr_free (&command);
            if (admin)
                continue;
            break;
        }
        __atomic_add_fetch (&s_calls_started, 1, __ATOMIC_SEQ_CST);
        zq_msg_t *msg = zq_queue_recv (server, 0);
        __atomic_add_fetch (&s_calls_returned, 1, __ATOMIC_SEQ_CST);
        zq_msg_destroy (&msg);
    }
    __atomic_store_n (&s_host_closing, true, __ATOMIC_SEQ_CST);
    zq_queue_destroy (&server);
}

//  A raw client of the reliable protocol: it sends PUTs and PINGs and
//  counts the ids confirmed and the PONGs that come back.
typedef struct {
    zsock_t *sock;
    int confirmed;
    int pongs;
} client_t;

static void
s_client_open (client_t *client, const char *endpoint)
{
    memset (client, 0, sizeof *client);
    client->sock = zsock_new (ZMQ_DEALER);
    assert_non_null (client->sock);
    zsock_set_sndhwm (client->sock, 0);
    zsock_set_rcvhwm (client->sock, 0);
    assert_int_equal (zsock_connect (client->sock, "%s", endpoint), 0);
}

//  Sends count PUTs to queue "held", S_BATCH to a PUT batch.
static void
s_client_put (client_t *client, int count)
{
    static const uint8_t put[] = {0x92, 0x01, 0x01}; //  [1, PUT]
    for (int sent = 0; sent < count; sent += S_BATCH) {
        int size = count - sent < S_BATCH ? count - sent : S_BATCH;
        batch_frame_t batch;
        batch_frame_start (&batch, (uint32_t)size);
        for (int n = 0; n < size; n++) {
            zq_msg_t *msg = zq_msg_new ("held");
            assert_non_null (msg);
            zmsg_t *frames = zmsg_new ();
            assert_int_equal (zq_msg_encode (&msg, frames), 0);
            assert_int_equal (zmsg_size (frames), 1);
            zframe_t *envelope = zmsg_first (frames);
            batch_frame_bin (&batch, zframe_data (envelope), zframe_size (envelope));
            zmsg_destroy (&frames);
        }
        assert_int_equal (zmq_send (zsock_resolve (client->sock), put, sizeof put, ZMQ_SNDMORE),
                          sizeof put);
        assert_int_equal (
            zmq_send (zsock_resolve (client->sock), batch.buffer.data, batch.buffer.size, 0),
            (int)batch.buffer.size);
        batch_frame_free (&batch);
    }
}

//  Sends count PINGs.
static void
s_client_ping (client_t *client, int count)
{
    static const uint8_t ping[] = {0x92, 0x01, 0x0a}; //  [1, PING]
    for (int n = 0; n < count; n++)
        assert_int_equal (zmq_send (zsock_resolve (client->sock), ping, sizeof ping, 0),
                          sizeof ping);
}

//  Reads what the server sent until *counter reaches count or wait_ms
//  passed: CONFIRMs add their ids to client->confirmed, PONGs to
//  client->pongs (nothing else comes). Returns *counter.
static int
s_client_take (client_t *client, int *counter, int count, int64_t wait_ms)
{
    int64_t deadline = now_ms () + wait_ms;
    while (*counter < count) {
        int64_t left = deadline - now_ms ();
        zmq_pollitem_t item = {zsock_resolve (client->sock), 0, ZMQ_POLLIN, 0};
        if (left <= 0 || zmq_poll (&item, 1, (long)left) <= 0)
            break;
        zframe_t *frame = zframe_recv (client->sock);
        assert_non_null (frame);
        msgpack_unpacked command;
        msgpack_unpacked_init (&command);
        assert_int_equal (msgpack_unpack_next (&command, (const char *)zframe_data (frame),
                                               zframe_size (frame), NULL),
                          MSGPACK_UNPACK_SUCCESS);
        msgpack_object_array *array = &command.data.via.array;
        assert_int_equal (command.data.type, MSGPACK_OBJECT_ARRAY);
        assert_true (array->size >= 2);
        if (array->ptr[1].via.u64 == 11) //  PONG
            client->pongs++;
        else {
            assert_int_equal (array->ptr[1].via.u64, 2); //  CONFIRM [1, 2, ids]
            assert_int_equal (array->ptr[2].type, MSGPACK_OBJECT_BIN);
            client->confirmed += (int)(array->ptr[2].via.bin.size / ZQ_MSG_ID_SIZE);
        }
        msgpack_unpacked_destroy (&command);
        zframe_destroy (&frame);
    }
    return *counter;
}

//  Works server in this thread until client has count confirms, within
//  the deadline.
static void
s_work_until_confirmed (zq_queue_t *server, client_t *client, int count)
{
    int64_t deadline = now_ms () + DEADLINE_MS;
    while (s_client_take (client, &client->confirmed, count, 1) < count) {
        assert_true (now_ms () < deadline);
        assert_null (zq_queue_recv (server, 1));
    }
}

//  A host in mode and a raw client, with what the test needs to stop them.
typedef struct {
    char dir[32];
    host_args_t args;
    zactor_t *host;
    client_t client;
} held_t;

//  True once done (arg) is true, looked at every 100 microseconds for
//  wait_ms at most.
static bool
s_within (bool (*done) (const void *), const void *arg, int64_t wait_ms)
{
    int64_t deadline = now_ms () + wait_ms;
    struct timespec step = {0, 100000};
    while (!done (arg)) {
        if (now_ms () >= deadline)
            return false;
        nanosleep (&step, NULL);
    }
    return true;
}

//  What s_host_returned looks for: a call of the host's returned since
//  returned were counted and, when idle, no other has begun (the host
//  waits in its own poll).
typedef struct {
    int returned;
    bool idle;
} host_return_t;

static bool
s_host_back (const void *arg)
{
    const host_return_t *wanted = (const host_return_t *)arg;
    int ended = __atomic_load_n (&s_calls_returned, __ATOMIC_SEQ_CST);
    return ended > wanted->returned &&
           (!wanted->idle || ended == __atomic_load_n (&s_calls_started, __ATOMIC_SEQ_CST));
}

static bool
s_host_returned (int returned, bool idle, int64_t wait_ms)
{
    host_return_t wanted = {returned, idle};
    return s_within (s_host_back, &wanted, wait_ms);
}

static bool
s_is_set (const void *flag)
{
    return __atomic_load_n ((const bool *)flag, __ATOMIC_SEQ_CST);
}

//  The test's host and client; s_teardown stops them whatever the outcome.
static held_t s_the_held;

//  Starts a host in mode and a client, which puts one message: confirmed
//  once the client is connected.
static void
s_start (host_mode_t mode)
{
    held_t *held = &s_the_held;
    snprintf (held->dir, sizeof held->dir, "/tmp/zq-commit-fd-XXXXXX");
    assert_non_null (mkdtemp (held->dir));
    held->args = (host_args_t){mode, held->dir};
    __atomic_store_n (&s_host_closing, false, __ATOMIC_SEQ_CST);
    held->host = zactor_new (s_host, &held->args);
    assert_non_null (held->host);
    char *endpoint = zstr_recv (held->host);
    assert_non_null (endpoint);
    client_t *client = &held->client;
    s_client_open (client, endpoint);
    zstr_free (&endpoint);
    //  One put confirmed: the client is connected.
    s_client_put (client, 1);
    assert_int_equal (s_client_take (client, &client->confirmed, 1, DEADLINE_MS), 1);
}

//  Holds the disk under the started client's PUTs past the first commit
//  behind, until the server's call has ended while the commit waits and
//  the host is back in its own poll: from then on only what the mode
//  watches brings it back.
static void
s_hold_a_commit (host_mode_t mode)
{
    client_t *client = &s_the_held.client;
    __atomic_store_n (&s_held, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n (&s_hold, true, __ATOMIC_SEQ_CST);
    s_client_put (client, S_POSTED);
    int64_t deadline = now_ms () + DEADLINE_MS;
    while (__atomic_load_n (&s_held, __ATOMIC_SEQ_CST) == 0) {
        assert_true (now_ms () < deadline);
        s_client_take (client, &client->confirmed, 1 + S_POSTED, 1);
    }
    //  The call that waits for the commit ends (ZQI_RS_AWAIT_MS). (A host
    //  that keeps the timers is called back at once, into a call that
    //  waits again: enough that one call ended.)
    int returned = __atomic_load_n (&s_calls_returned, __ATOMIC_SEQ_CST);
    if (!s_host_returned (returned, mode != HOST_KEEPS_TIMERS, DEADLINE_MS))
        fail_msg ("the server's call did not end while a commit waited");
    assert_true (client->confirmed < 1 + S_POSTED);
}

//  Starts a host in mode and a client, and holds a commit past a call.
static void
s_hold_past_a_call (host_mode_t mode)
{
    s_start (mode);
    s_hold_a_commit (mode);
}

//  Lets the disk go on; returns the confirms the client has after wait_ms
//  more, at most, for total PUTs.
static int
s_release (int total, int64_t wait_ms)
{
    __atomic_store_n (&s_hold, false, __ATOMIC_SEQ_CST);
    client_t *client = &s_the_held.client;
    return s_client_take (client, &client->confirmed, total, wait_ms);
}

//  Stops the host and the client, whatever the test's outcome.
static int
s_teardown (void **state)
{
    (void)state;
    __atomic_store_n (&s_hold, false, __ATOMIC_SEQ_CST);
    held_t *held = &s_the_held;
    zsock_destroy (&held->client.sock);
    zactor_destroy (&held->host);
    if (*held->dir)
        remove_tree (held->dir);
    memset (held, 0, sizeof *held);
    return 0;
}

//  A server of spools gives a descriptor for the queue's life; one in
//  memory has none (ENOENT), as before.
static void
test_a_spool_server_gives_a_descriptor (void **state)
{
    (void)state;
    zq_queue_t *memory = zq_queue_new ("reliable", ZQ_SERVER, "@tcp://127.0.0.1:*", NULL);
    assert_non_null (memory);
    assert_int_equal (zq_queue_store_fd (memory), -1);
    assert_int_equal (errno, ENOENT);
    zq_queue_destroy (&memory);
    char dir[] = "/tmp/zq-commit-fd-XXXXXX";
    assert_non_null (mkdtemp (dir));
    zq_options_t *options = options_of ("spool_dir", dir, NULL);
    zq_queue_t *spools = zq_queue_new ("reliable", ZQ_SERVER, "@tcp://127.0.0.1:*", options);
    assert_non_null (spools);
    int fd = zq_queue_store_fd (spools);
    assert_true (fd >= 0);
    struct pollfd item = {fd, POLLIN, 0};
    assert_int_equal (poll (&item, 1, 0), 0); //  nothing in flight
    client_t client;
    s_client_open (&client, zq_queue_endpoint (spools));
    s_client_put (&client, 1);
    s_work_until_confirmed (spools, &client, 1);
    assert_int_equal (zq_queue_store_fd (spools), fd);
    zsock_destroy (&client.sock);
    zq_queue_destroy (&spools);
    zq_options_destroy (&options);
    remove_tree (dir);
}

//  A host polling the socket and the descriptor, with no timer at all,
//  confirms every PUT once the commit its call left running ends. (The
//  rule is the socket, the descriptor and the timer: this host shows the
//  descriptor's part.)
static void
test_the_descriptor_wakes_its_host (void **state)
{
    (void)state;
    s_hold_past_a_call (HOST_POLLS_STORE_FD);
    assert_int_equal (s_release (1 + S_POSTED, DEADLINE_MS), 1 + S_POSTED);
}

//  A host that keeps the server's timers instead is called back too: the
//  server asks for a call within a millisecond while a commit is in
//  flight (its other timers are far off here).
static void
test_the_timer_calls_back_its_host (void **state)
{
    (void)state;
    s_hold_past_a_call (HOST_KEEPS_TIMERS);
    assert_int_equal (s_release (1 + S_POSTED, DEADLINE_MS), 1 + S_POSTED);
}

//  A host that watches neither is not called back: the PUTs wait (here
//  S_ANSWER_MS) until other input comes, a PING, and then are confirmed.
//  (What the two tests above rely on: the call did end with the commit
//  running.)
static void
test_a_host_watching_neither_waits_for_input (void **state)
{
    (void)state;
    s_hold_past_a_call (HOST_POLLS_SOCKET_ONLY);
    assert_true (s_release (1 + S_POSTED, S_ANSWER_MS) < 1 + S_POSTED);
    client_t *client = &s_the_held.client;
    s_client_ping (client, 1);
    assert_int_equal (s_client_take (client, &client->confirmed, 1 + S_POSTED, DEADLINE_MS),
                      1 + S_POSTED);
}

//  A server destroyed while a commit its call left runs, with more PUTs
//  read meanwhile (gathered for the next commit), commits and answers them
//  all before it closes.
static void
test_destroy_answers_what_is_in_flight (void **state)
{
    (void)state;
    s_hold_past_a_call (HOST_POLLS_STORE_FD);
    client_t *client = &s_the_held.client;
    s_client_put (client, S_BATCH);
    //  Its PONG comes once the batch before it was read.
    s_client_ping (client, 1);
    assert_int_equal (s_client_take (client, &client->pongs, 1, DEADLINE_MS), 1);
    zstr_send (s_the_held.host, "STOP");
    assert_true (s_within (s_is_set, &s_host_closing, DEADLINE_MS));
    assert_true (client->confirmed < 1 + S_POSTED);
    int total = 1 + S_POSTED + S_BATCH;
    assert_int_equal (s_release (total, DEADLINE_MS), total);
}

//  What the host sent back within wait_ms (the caller frees it), or NULL.
static char *
s_host_answer (int wait_ms)
{
    zsock_set_rcvtimeo (s_the_held.host, wait_ms);
    return zstr_recv (s_the_held.host);
}

//  The count the host sends back for command, within wait_ms.
static long long
s_host_says (const char *command, int wait_ms)
{
    char *answer = s_host_answer (wait_ms);
    if (!answer)
        fail_msg ("no answer to %s within %d ms", command, wait_ms);
    long long count = atoll (answer);
    zstr_free (&answer);
    return count;
}

//  Has the host do command (one of s_admin_commands) at once; its count.
static long long
s_host_does (const char *command)
{
    zstr_send (s_the_held.host, command);
    return s_host_says (command, DEADLINE_MS);
}

//  An admin call (purge, peek, redrive) on a server whose call left a commit
//  running, with more PUTs read meanwhile, first settles both: it waits
//  for the commit behind, commits the round gathered, and then sees every
//  message the client was confirmed, none missed for being in flight.
static void
s_admin_settles_what_is_in_flight (const char *command, long long expected)
{
    s_hold_a_commit (HOST_POLLS_STORE_FD);
    client_t *client = &s_the_held.client;
    s_client_put (client, S_BATCH);
    //  Its PONG comes once the batch before it was read (gathered).
    s_client_ping (client, 1);
    assert_int_equal (s_client_take (client, &client->pongs, 1, DEADLINE_MS), 1);
    zstr_send (s_the_held.host, command);
    //  The call waits for the commit held on the disk.
    int total = 1 + S_POSTED + S_BATCH;
    char *early = s_host_answer (S_ANSWER_MS);
    if (early)
        fail_msg ("%s answered %s while the commit behind it was held", command, early);
    assert_int_equal (s_release (total, DEADLINE_MS), total);
    assert_int_equal (s_host_says (command, DEADLINE_MS), expected);
}

static void
test_purge_settles_what_is_in_flight (void **state)
{
    (void)state;
    s_start (HOST_POLLS_STORE_FD);
    s_admin_settles_what_is_in_flight ("PURGE", 1 + S_POSTED + S_BATCH);
}

static void
test_peek_settles_what_is_in_flight (void **state)
{
    (void)state;
    s_start (HOST_POLLS_STORE_FD);
    s_admin_settles_what_is_in_flight ("PEEK", 1 + S_POSTED + S_BATCH);
}

//  A redrive, which writes to the queue whose commit is held, waits too:
//  it moves the one message dead-lettered before, and the queue then
//  holds every message put.
static void
test_redrive_settles_what_is_in_flight (void **state)
{
    (void)state;
    s_start (HOST_POLLS_STORE_FD);
    assert_int_equal (s_host_does ("DEADLETTER"), 1);
    s_admin_settles_what_is_in_flight ("REDRIVE", 1);
    assert_int_equal (s_host_does ("PEEK"), 1 + S_POSTED + S_BATCH);
}

//  A server of spools that cannot make the committer's eventfd says so once
//  (a warning), has no descriptor to give (ENOENT), and commits each round
//  in its own thread: a PUT batch is confirmed.
static void
test_no_eventfd_commits_in_place (void **state)
{
    (void)state;
    char dir[] = "/tmp/zq-commit-fd-XXXXXX";
    assert_non_null (mkdtemp (dir));
    __atomic_store_n (&s_warnings, 0, __ATOMIC_SEQ_CST);
    zq_set_log_handler (s_count_no_committer, NULL, ZQ_LOG_WARNING);
    zq_options_t *options = options_of ("spool_dir", dir, NULL);
    __atomic_store_n (&s_refuse_eventfd, true, __ATOMIC_SEQ_CST);
    zq_queue_t *server = zq_queue_new ("reliable", ZQ_SERVER, "@tcp://127.0.0.1:*", options);
    __atomic_store_n (&s_refuse_eventfd, false, __ATOMIC_SEQ_CST);
    assert_non_null (server);
    assert_int_equal (__atomic_load_n (&s_warnings, __ATOMIC_SEQ_CST), 1);
    assert_int_equal (zq_queue_store_fd (server), -1);
    assert_int_equal (errno, ENOENT);
    client_t client;
    s_client_open (&client, zq_queue_endpoint (server));
    s_client_put (&client, S_BATCH);
    s_work_until_confirmed (server, &client, S_BATCH);
    zq_set_log_handler (NULL, NULL, ZQ_LOG_ERROR);
    zsock_destroy (&client.sock);
    zq_queue_destroy (&server);
    zq_options_destroy (&options);
    remove_tree (dir);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_a_spool_server_gives_a_descriptor),
        cmocka_unit_test (test_no_eventfd_commits_in_place),
        cmocka_unit_test_teardown (test_the_descriptor_wakes_its_host, s_teardown),
        cmocka_unit_test_teardown (test_the_timer_calls_back_its_host, s_teardown),
        cmocka_unit_test_teardown (test_a_host_watching_neither_waits_for_input, s_teardown),
        cmocka_unit_test_teardown (test_destroy_answers_what_is_in_flight, s_teardown),
        cmocka_unit_test_teardown (test_purge_settles_what_is_in_flight, s_teardown),
        cmocka_unit_test_teardown (test_peek_settles_what_is_in_flight, s_teardown),
        cmocka_unit_test_teardown (test_redrive_settles_what_is_in_flight, s_teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
