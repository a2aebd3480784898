/*  =========================================================================
    zq_bench_relay - the raw libzmq baseline of zq bench device (put,
    drain, e2e) and of the e2e line of zq bench reliable: the same parts,
    message sizes, transport and high-water marks as the zq side, with
    plain libzmq sockets and no storage, no confirms and no acks.

    The relay stands where zqd or the reliable server stands: a ROUTER
    that producers (DEALER, ZMQ_IMMEDIATE as zq's producer sets) connect
    to, each sending SIZE-byte frames, and a second ROUTER that a consumer
    (DEALER) connects to and announces itself on with one frame; the
    relay sends the consumer each message by its routing id, with
    ZMQ_ROUTER_MANDATORY so that a full pipe makes it wait, never drop.
      - put: once the relay has read every producer's warm-up it lets
        them go; timed from the first producer's start until the relay
        has read count more;
      - drain: the relay sends count frames to a consumer that just
        connected; timed from the consumer's start to its last receive;
      - e2e: the consumer reads the warm-up through the relay and lets the
        producers go; timed from the first producer's start to the
        consumer's last receive.
    The last reader then tells every sender it has everything, and only
    then do they close their sockets, so nothing is left for linger to
    deliver. The last reader sends "go" and "done" even when it fails, so
    no part waits for one that has stopped. Over tcp and ipc each part is
    a forked process (zq_bench_spawn); over inproc they are threads of one
    forked process. Every wait is bounded by ZQ_BENCH_STALL_MS or by
    zq_bench_deadline_ns; a process that overruns is killed.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_cli.h"
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

//  The relay and the consumer, then at most 64 producers.
#define S_PARTS_MAX (2 + 64)
#define S_RELAY     0
#define S_CONSUMER  1

typedef struct {
    zq_bench_relay_mode_t mode;
    bool embedded; //  inproc: the parts are threads of one process
    int producers;
    uint64_t warmup; //  untimed messages per producer
    uint64_t count;  //  timed messages in all
    const void *frame;
    size_t size;
    char front_bind[1100]; //  the relay's ROUTER for producers
    char back_bind[1100];  //  the relay's ROUTER for the consumer
    char front[1100];      //  what they bound (resolved)
    char back[1100];
    int endpoint_pipe[2]; //  relay -> bench: front and back, a line each
    int go_pipe[2];       //  last reader -> producers: warm-up read, a byte each
    int done_pipe[2];     //  last reader -> senders: all read, a byte each
} s_relay_t;

typedef struct {
    zq_cli_t *cli;
    s_relay_t *relay;
    zq_bench_child_fn *fn;
    uint64_t count; //  a producer's share
    bool started;
    zq_bench_child_t child; //  over tcp and ipc
    pthread_t thread;       //  over inproc
    zq_bench_result_t result;
} s_part_t;

static const char *
s_mode_name (zq_bench_relay_mode_t mode)
{
    return mode == ZQ_BENCH_RELAY_PUT ? "put" : mode == ZQ_BENCH_RELAY_DRAIN ? "drain" : "e2e";
}

//  Writes count bytes to fd (a signal to count readers).
static void
s_signal (int fd, int count)
{
    char bytes[S_PARTS_MAX];
    memset (bytes, 's', sizeof bytes);
    if (count > S_PARTS_MAX)
        count = S_PARTS_MAX;
    while (count > 0 && write (fd, bytes, (size_t)count) < 0 && errno == EINTR)
        ;
}

//  Takes one byte from fd (non-blocking, shared with other readers) before
//  deadline_ns. Returns 0, or -1 with errno.
static int
s_wait_signal (int fd, int64_t deadline_ns)
{
    while (true) {
        char byte;
        ssize_t got = read (fd, &byte, 1);
        if (got == 1)
            return 0;
        if (got == 0) {
            errno = EPIPE;
            return -1;
        }
        if (errno != EAGAIN && errno != EINTR)
            return -1;
        int64_t left_ms = (deadline_ns - zq_bench_now_ns ()) / 1000000;
        if (zq_cli_interrupted || left_ms <= 0) {
            errno = zq_cli_interrupted ? EINTR : ETIMEDOUT;
            return -1;
        }
        struct pollfd item = {fd, POLLIN, 0};
        poll (&item, 1, left_ms > 1000 ? 1000 : (int)left_ms);
    }
}

//  Every 1024 messages: gives up past the deadline or on a signal.
static int
s_overdue (uint64_t i)
{
    if ((i & 1023) != 0)
        return 0;
    if (zq_cli_interrupted)
        return EINTR;
    return zq_bench_now_ns () > zq_bench_deadline_ns () ? ETIMEDOUT : 0;
}

//  Closes a socket whose setup failed (socket may be NULL); returns NULL
//  with errno kept.
static void *
s_socket_failed (void *socket)
{
    int saved = errno;
    if (socket)
        zmq_close (socket);
    errno = saved;
    return NULL;
}

//  A ROUTER bound on bind, its resolved endpoint in endpoint; NULL on error.
static void *
s_router (zq_cli_t *cli, const char *bind, char *endpoint, size_t size)
{
    void *socket = zmq_socket (zq_bench_raw_context (), ZMQ_ROUTER);
    int timeout = ZQ_BENCH_STALL_MS, mandatory = 1;
    if (!socket || zq_bench_raw_options (cli, socket) ||
        zmq_setsockopt (socket, ZMQ_RCVTIMEO, &timeout, sizeof timeout) ||
        zmq_setsockopt (socket, ZMQ_SNDTIMEO, &timeout, sizeof timeout) ||
        zmq_setsockopt (socket, ZMQ_ROUTER_MANDATORY, &mandatory, sizeof mandatory) ||
        zmq_bind (socket, bind) || zmq_getsockopt (socket, ZMQ_LAST_ENDPOINT, endpoint, &size))
        return s_socket_failed (socket);
    return socket;
}

//  Receives one message from a ROUTER: the routing id into id, then the
//  one frame that follows into frame. Returns 0 or -1 with errno.
static int
s_router_recv (void *socket, zmq_msg_t *id, zmq_msg_t *frame)
{
    if (zmq_msg_recv (id, socket, 0) < 0)
        return -1;
    if (!zmq_msg_more (id)) {
        errno = ZQ_EPROTO;
        return -1;
    }
    if (zmq_msg_recv (frame, socket, 0) < 0)
        return -1;
    if (zmq_msg_more (frame)) {
        errno = ZQ_EPROTO;
        return -1;
    }
    return 0;
}

static void
s_relay (zq_cli_t *cli, void *arg, zq_bench_result_t *result)
{
    s_relay_t *relay = ((s_part_t *)arg)->relay;
    void *front = NULL, *back = NULL;
    char front_endpoint[1100] = "", back_endpoint[1100] = "";
    if (relay->mode != ZQ_BENCH_RELAY_DRAIN &&
        !(front = s_router (cli, relay->front_bind, front_endpoint, sizeof front_endpoint)))
        result->errnum = errno;
    if (!result->errnum && relay->mode != ZQ_BENCH_RELAY_PUT &&
        !(back = s_router (cli, relay->back_bind, back_endpoint, sizeof back_endpoint)))
        result->errnum = errno;
    //  Two empty lines tell the bench the relay did not bind.
    char lines[2300];
    int length = snprintf (lines, sizeof lines, "%s\n%s\n", result->errnum ? "" : front_endpoint,
                           result->errnum ? "" : back_endpoint);
    if (write (relay->endpoint_pipe[1], lines, (size_t)length) != length && !result->errnum)
        result->errnum = EPIPE;
    zmq_msg_t id, frame;
    zmq_msg_init (&id);
    zmq_msg_init (&frame);
    //  The consumer announces itself with one frame: its routing id is
    //  where every message goes.
    uint8_t consumer[256];
    size_t consumer_size = 0;
    if (!result->errnum && back) {
        if (s_router_recv (back, &id, &frame) || zmq_msg_size (&id) > sizeof consumer)
            result->errnum = errno ? errno : ZQ_EPROTO;
        else {
            consumer_size = zmq_msg_size (&id);
            memcpy (consumer, zmq_msg_data (&id), consumer_size);
        }
    }
    uint64_t warmup = relay->warmup * (uint64_t)relay->producers;
    bool went = false;
    if (relay->mode == ZQ_BENCH_RELAY_DRAIN)
        for (uint64_t i = 0; i < relay->count && !result->errnum; i++) {
            if (zmq_send (back, consumer, consumer_size, ZMQ_SNDMORE) < 0 ||
                zmq_send (back, relay->frame, relay->size, 0) < 0)
                result->errnum = errno;
            else if ((result->errnum = s_overdue (i)) == 0)
                result->messages++;
        }
    else
        for (uint64_t i = 0; i < warmup + relay->count && !result->errnum; i++) {
            if (i == warmup && relay->mode == ZQ_BENCH_RELAY_PUT) {
                //  Every producer's warm-up read: go, all at once.
                s_signal (relay->go_pipe[1], relay->producers);
                went = true;
            }
            if (s_router_recv (front, &id, &frame))
                result->errnum = errno;
            else if (back && (zmq_send (back, consumer, consumer_size, ZMQ_SNDMORE) < 0 ||
                              zmq_msg_send (&frame, back, 0) < 0))
                result->errnum = errno;
            else if ((result->errnum = s_overdue (i)) == 0)
                result->messages++;
        }
    result->end_ns = zq_bench_now_ns ();
    if (relay->mode == ZQ_BENCH_RELAY_PUT) {
        //  The last reader: the producers may close (and go, if they
        //  have not, to find out it stopped).
        if (!went)
            s_signal (relay->go_pipe[1], relay->producers);
        s_signal (relay->done_pipe[1], relay->producers);
    } else if (!result->errnum && s_wait_signal (relay->done_pipe[0], zq_bench_deadline_ns ()))
        result->errnum = errno;
    zmq_msg_close (&id);
    zmq_msg_close (&frame);
    if (front)
        zmq_close (front);
    if (back)
        zmq_close (back);
}

static void
s_consumer (zq_cli_t *cli, void *arg, zq_bench_result_t *result)
{
    s_relay_t *relay = ((s_part_t *)arg)->relay;
    result->start_ns = zq_bench_now_ns ();
    void *socket = zq_bench_raw_dealer (cli, relay->back, false);
    if (!socket || zmq_send (socket, "c", 1, 0) < 0)
        result->errnum = errno;
    bool e2e = relay->mode == ZQ_BENCH_RELAY_E2E, went = false;
    uint64_t warmup = e2e ? relay->warmup * (uint64_t)relay->producers : 0;
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    for (uint64_t i = 0; i < warmup + relay->count && !result->errnum; i++) {
        if (i == warmup && e2e) {
            //  Every producer's warm-up came through: go.
            s_signal (relay->go_pipe[1], relay->producers);
            went = true;
        }
        if (zmq_msg_recv (&frame, socket, 0) < 0)
            result->errnum = errno;
        else if ((result->errnum = s_overdue (i)) == 0)
            result->messages++;
    }
    result->end_ns = zq_bench_now_ns ();
    //  The last reader: the producers and the relay may close.
    if (e2e && !went)
        s_signal (relay->go_pipe[1], relay->producers);
    s_signal (relay->done_pipe[1], e2e ? relay->producers + 1 : 1);
    zmq_msg_close (&frame);
    if (socket)
        zmq_close (socket);
}

static void
s_producer (zq_cli_t *cli, void *arg, zq_bench_result_t *result)
{
    s_part_t *part = (s_part_t *)arg;
    s_relay_t *relay = part->relay;
    void *socket = zq_bench_raw_dealer (cli, relay->front, true);
    if (!socket) {
        result->errnum = errno;
        return;
    }
    for (uint64_t i = 0; i < relay->warmup && !result->errnum; i++)
        if (zmq_send (socket, relay->frame, relay->size, 0) < 0)
            result->errnum = errno;
    if (!result->errnum && s_wait_signal (relay->go_pipe[0], zq_bench_deadline_ns ()))
        result->errnum = errno;
    result->start_ns = zq_bench_now_ns ();
    for (uint64_t i = 0; i < part->count && !result->errnum; i++) {
        if (zmq_send (socket, relay->frame, relay->size, 0) < 0)
            result->errnum = errno;
        else if ((result->errnum = s_overdue (i)) == 0)
            result->messages++;
    }
    result->end_ns = zq_bench_now_ns ();
    if (!result->errnum && s_wait_signal (relay->done_pipe[0], zq_bench_deadline_ns ()))
        result->errnum = errno;
    zmq_close (socket);
}

static void *
s_thread_main (void *arg)
{
    s_part_t *part = (s_part_t *)arg;
    part->fn (part->cli, part, &part->result);
    return NULL;
}

//  Starts parts first to last - 1 that have a function: threads over
//  inproc, processes otherwise. Returns 0 or -1 with errno.
static int
s_start_parts (s_part_t *parts, int first, int last)
{
    for (int i = first; i < last; i++) {
        if (!parts[i].fn)
            continue;
        if (parts[i].relay->embedded) {
            int rc = pthread_create (&parts[i].thread, NULL, s_thread_main, &parts[i]);
            if (rc) {
                errno = rc;
                return -1;
            }
        } else if (zq_bench_spawn (&parts[i].child, parts[i].fn, parts[i].cli, &parts[i]))
            return -1;
        parts[i].started = true;
    }
    return 0;
}

//  Reads the relay's endpoints. Returns 0 or -1.
static int
s_read_endpoints (s_relay_t *relay)
{
    int64_t deadline = zq_bench_now_ns () + (int64_t)ZQ_BENCH_STALL_MS * 1000000;
    if (zq_bench_read_line (relay->endpoint_pipe[0], deadline, relay->front, sizeof relay->front) ||
        zq_bench_read_line (relay->endpoint_pipe[0], deadline, relay->back, sizeof relay->back) ||
        (!*relay->front && !*relay->back))
        return -1;
    return 0;
}

//  The run's result from its parts': start_ns (the first producer's
//  start, or the consumer's for drain), end_ns (the last reader's end),
//  errnum (the first failure, relay first), value (that part's index
//  + 1, 0 if none failed) and cpu_ns (the sum of the parts').
static void
s_combine (s_part_t *parts, zq_bench_relay_mode_t mode, int last, zq_bench_result_t *result)
{
    memset (result, 0, sizeof *result);
    for (int i = 0; i < last && !result->errnum; i++)
        if (parts[i].fn && parts[i].result.errnum) {
            result->errnum = parts[i].result.errnum;
            result->value = i + 1;
        }
    if (mode == ZQ_BENCH_RELAY_DRAIN)
        result->start_ns = parts[S_CONSUMER].result.start_ns;
    else {
        result->start_ns = INT64_MAX;
        for (int i = S_CONSUMER + 1; i < last; i++)
            if (parts[i].result.start_ns < result->start_ns)
                result->start_ns = parts[i].result.start_ns;
    }
    result->end_ns = parts[mode == ZQ_BENCH_RELAY_PUT ? S_RELAY : S_CONSUMER].result.end_ns;
    //  Processes only: threads report 0, and the parent reads their one
    //  process's time.
    for (int i = 0; i < last && result->cpu_ns >= 0; i++)
        result->cpu_ns = parts[i].result.cpu_ns < 0 ? -1 : result->cpu_ns + parts[i].result.cpu_ns;
}

//  Over inproc: runs the parts as threads of this process (the relay
//  first, so that the others connect to what it bound) and reports the
//  combined result.
static void
s_embedded (zq_cli_t *cli, void *arg, zq_bench_result_t *result)
{
    (void)cli;
    s_part_t *parts = (s_part_t *)arg;
    s_relay_t *relay = parts[S_RELAY].relay;
    int last = S_CONSUMER + 1 + relay->producers;
    //  The threads share one context: make it before any runs.
    zq_bench_raw_context ();
    int rc = s_start_parts (parts, S_RELAY, S_RELAY + 1);
    if (rc == 0 && s_read_endpoints (relay)) {
        errno = EPIPE;
        rc = -1;
    }
    if (rc == 0)
        rc = s_start_parts (parts, S_CONSUMER, last);
    int errnum = rc ? errno : 0;
    if (rc) {
        //  Let every part that runs find out and stop.
        s_signal (relay->go_pipe[1], relay->producers);
        s_signal (relay->done_pipe[1], relay->producers + 1);
    }
    for (int i = 0; i < last; i++)
        if (parts[i].started)
            pthread_join (parts[i].thread, NULL);
    s_combine (parts, relay->mode, last, result);
    if (errnum && !result->errnum)
        result->errnum = errnum;
}

//  Over tcp and ipc: the parts as processes, the relay first. Stores the
//  combined result, or returns -1 with result->errnum and result->value
//  naming the part that failed (0: none in particular).
static int
s_processes (s_part_t *parts, int last, zq_bench_result_t *result)
{
    s_relay_t *relay = parts[S_RELAY].relay;
    memset (result, 0, sizeof *result);
    //  The bench keeps no write end of the endpoint pipe, so a relay that
    //  dies is seen at once.
    if (s_start_parts (parts, S_RELAY, S_RELAY + 1))
        result->errnum = errno;
    close (relay->endpoint_pipe[1]);
    relay->endpoint_pipe[1] = -1;
    if (!result->errnum && s_read_endpoints (relay)) {
        //  The relay's own report says why.
        int64_t deadline = zq_bench_now_ns () + (int64_t)ZQ_BENCH_STALL_MS * 1000000;
        if (zq_bench_collect (&parts[S_RELAY].child, deadline, &parts[S_RELAY].result) == 0 &&
            parts[S_RELAY].result.errnum) {
            result->errnum = parts[S_RELAY].result.errnum;
            result->value = S_RELAY + 1;
        } else
            result->errnum = EPIPE;
    }
    if (!result->errnum && s_start_parts (parts, S_CONSUMER, last))
        result->errnum = errno;
    //  The last reader first; once a part fails, the others are killed
    //  rather than waited for.
    int order[S_PARTS_MAX], ordered = 0;
    order[ordered++] = relay->mode == ZQ_BENCH_RELAY_PUT ? S_RELAY : S_CONSUMER;
    if (relay->mode != ZQ_BENCH_RELAY_PUT)
        order[ordered++] = S_RELAY;
    for (int i = S_CONSUMER + 1; i < last; i++)
        order[ordered++] = i;
    for (int k = 0; k < ordered; k++) {
        s_part_t *part = &parts[order[k]];
        if (!part->started || part->child.pid <= 0)
            continue;
        if (result->errnum)
            zq_bench_kill (&part->child);
        else if (zq_bench_collect (&part->child, zq_bench_deadline_ns (), &part->result) ||
                 part->result.errnum) {
            result->errnum = part->result.errnum ? part->result.errnum : EPIPE;
            result->value = order[k] + 1;
        }
    }
    if (result->errnum)
        return -1;
    s_combine (parts, relay->mode, last, result);
    return 0;
}

//  Names part index (value - 1) for an error message.
static void
s_part_name (s_relay_t *relay, int value, char *name, size_t size)
{
    if (value == S_RELAY + 1)
        snprintf (name, size, "relay: ");
    else if (value == S_CONSUMER + 1)
        snprintf (name, size, "consumer: ");
    else if (value > S_CONSUMER + 1 && value <= S_CONSUMER + 1 + relay->producers)
        snprintf (name, size, "producer %d: ", value - S_CONSUMER - 1);
    else
        *name = '\0';
}

int
zq_bench_relay (zq_cli_t *cli, zq_bench_relay_mode_t mode, int producers, uint64_t warmup,
                uint64_t count, double *rate_p, double *cpu_p)
{
    if (producers < 1 || producers > S_PARTS_MAX - 2) {
        zq_cli_error (cli, "raw %s run: %d producers", s_mode_name (mode), producers);
        return ZQ_EXIT_USAGE;
    }
    s_relay_t relay;
    memset (&relay, 0, sizeof relay);
    relay.mode = mode;
    relay.embedded = streq (cli->transport, "inproc");
    relay.producers = mode == ZQ_BENCH_RELAY_DRAIN ? 0 : producers;
    relay.warmup = warmup;
    relay.count = count;
    relay.size = cli->size;
    int *fds[] = {relay.endpoint_pipe, relay.go_pipe, relay.done_pipe};
    for (int i = 0; i < 3; i++)
        fds[i][0] = fds[i][1] = -1;
    char *frame = (char *)malloc (cli->size ? cli->size : 1);
    if (!frame) {
        zq_cli_error (cli, "%s", strerror (ENOMEM));
        return ZQ_EXIT_TRANSPORT;
    }
    memset (frame, 'a', cli->size);
    relay.frame = frame;
    char dir[1024] = "";
    if (streq (cli->transport, "ipc")) {
        const char *base = zq_bench_dir (cli);
        if (zq_bench_mkdtemp (base, "zq-bench-relay", dir, sizeof dir)) {
            zq_cli_error (cli, "cannot make a directory in %s: %s", base, strerror (errno));
            free (frame);
            return ZQ_EXIT_TRANSPORT;
        }
        snprintf (relay.front_bind, sizeof relay.front_bind, "ipc://%s/front", dir);
        snprintf (relay.back_bind, sizeof relay.back_bind, "ipc://%s/back", dir);
    } else if (relay.embedded) {
        snprintf (relay.front_bind, sizeof relay.front_bind, "inproc://zq-bench-relay-front");
        snprintf (relay.back_bind, sizeof relay.back_bind, "inproc://zq-bench-relay-back");
    } else {
        snprintf (relay.front_bind, sizeof relay.front_bind, "tcp://127.0.0.1:*");
        snprintf (relay.back_bind, sizeof relay.back_bind, "tcp://127.0.0.1:*");
    }
    zq_bench_result_t result;
    memset (&result, 0, sizeof result);
    for (int i = 0; i < 3 && !result.errnum; i++)
        if (pipe (fds[i]))
            result.errnum = errno;
    //  Several parts read the go and done pipes: a read finds a byte or
    //  EAGAIN, never blocks.
    if (!result.errnum && (fcntl (relay.go_pipe[0], F_SETFL, O_NONBLOCK) ||
                           fcntl (relay.done_pipe[0], F_SETFL, O_NONBLOCK)))
        result.errnum = errno;

    s_part_t parts[S_PARTS_MAX];
    memset (parts, 0, sizeof parts);
    int last = S_CONSUMER + 1 + relay.producers;
    for (int i = 0; i < last; i++) {
        parts[i].cli = cli;
        parts[i].relay = &relay;
        parts[i].child.pid = -1;
        parts[i].child.result_fd = -1;
    }
    parts[S_RELAY].fn = s_relay;
    if (mode != ZQ_BENCH_RELAY_PUT)
        parts[S_CONSUMER].fn = s_consumer;
    for (int p = 0; p < relay.producers; p++) {
        s_part_t *part = &parts[S_CONSUMER + 1 + p];
        part->fn = s_producer;
        part->count =
            count / (uint64_t)producers + ((uint64_t)p < count % (uint64_t)producers ? 1 : 0);
    }
    if (!result.errnum && relay.embedded) {
        zq_bench_child_t child;
        if (zq_bench_spawn (&child, s_embedded, cli, parts))
            result.errnum = errno;
        else
            zq_bench_collect (&child, zq_bench_deadline_ns (), &result);
    } else if (!result.errnum)
        s_processes (parts, last, &result);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++)
            if (fds[i][j] >= 0)
                close (fds[i][j]);
    if (*dir)
        zq_bench_rmtree (dir, 1);
    free (frame);
    if (result.errnum) {
        if (zq_cli_interrupted)
            return zq_cli_interrupt_exit ();
        char name[64];
        s_part_name (&relay, (int)result.value, name, sizeof name);
        zq_cli_error (cli, "raw %s run on %s failed: %s%s", s_mode_name (mode), cli->transport,
                      name, zq_strerror (result.errnum));
        return ZQ_EXIT_TRANSPORT;
    }
    if (result.end_ns <= result.start_ns) {
        zq_cli_error (cli, "raw %s run on %s took no time", s_mode_name (mode), cli->transport);
        return ZQ_EXIT_TRANSPORT;
    }
    *rate_p = (double)count * 1e9 / (double)(result.end_ns - result.start_ns);
    if (cpu_p)
        *cpu_p = result.cpu_ns < 0
                     ? -1
                     : (double)result.cpu_ns / (double)(count + warmup * (uint64_t)relay.producers);
    return 0;
}
