/*  =========================================================================
    zq_cli - what the files of the zq command line share: exit codes, the
    parsed command line, and helpers for reading and printing messages.
    Part of the program, not of the library: never installed.

    One file per command group, all in src/tools/zq/:
        zq.c               main, the command table, option parsing, help
        zq_cli_io.c        JSON in and out, shared by all commands
        zq_cli_queue.c     push, pull, pub, sub
        zq_cli_rpc.c       req, rep
        zq_cli_reliable.c  put, get (the reliable pattern)
        zq_cli_admin.c     the device's admin verbs (stat, ls, peek, ...)
        bench/zq_bench*.c  zq bench: zq_bench.c the dispatch and what the
                           benchmarks share, zq_bench_relay.c the raw
                           baseline, one file per benchmark
    A new command adds a row to the command table in zq.c and a run
    function declared here.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_CLI_H_INCLUDED
#define ZQ_CLI_H_INCLUDED

#include <zq.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Exit codes: the contract with scripts (doc/zq.1, EXIT STATUS).
#define ZQ_EXIT_OK        0 //  success
#define ZQ_EXIT_USAGE     1 //  bad command line: unknown command or option, missing argument
#define ZQ_EXIT_TIMEOUT   2 //  nothing (or fewer than -n) arrived, or no peer took a message, in time
#define ZQ_EXIT_BAD_INPUT 3 //  invalid JSON (argument or stdin line), or a body over the limits
#define ZQ_EXIT_TRANSPORT 4 //  cannot bind or connect, or a send/receive failed otherwise
#define ZQ_EXIT_REMOTE    5 //  req: the server answered with an error reply

//  Every option any command takes; each command lists the ones it accepts.
typedef enum {
    ZQ_OPT_HELP = 0,
    ZQ_OPT_COUNT,
    ZQ_OPT_TIMEOUT,
    ZQ_OPT_OPTION,
    ZQ_OPT_HEADER,
    ZQ_OPT_PRINT_ENDPOINT,
    ZQ_OPT_ENVELOPE,
    ZQ_OPT_WAIT_SUBSCRIBERS,
    ZQ_OPT_EXEC,
    ZQ_OPT_SIZE,
    ZQ_OPT_TRANSPORT,
    ZQ_OPT_ROUNDS,
    ZQ_OPT_PRODUCERS,
    ZQ_OPT_DIR,
    ZQ_OPT_BACKLOG,
    ZQ_OPT_NO_ACK,
    ZQ_OPT_JSON,
    ZQ_OPT_WATCH,
    ZQ_OPT_FORCE,
    ZQ_OPT_PIN,
    ZQ_OPT_MAX
} zq_cli_opt_t;

//  Most positional arguments a command line may carry.
#define ZQ_CLI_MAX_ARGS    64
#define ZQ_CLI_MAX_HEADERS 64

//  The parsed command line.
typedef struct {
    const char *program;    //  "zq"
    const char *command;    //  "push", ...
    bool given[ZQ_OPT_MAX]; //  which options appeared
    //  -n COUNT: messages to send or receive; 0 = no limit.
    uint64_t count;
    //  --timeout MS, or ZQ_TIMEOUT_DEFAULT when not given.
    int timeout_ms;
    //  -o name=value, applied to the queue (defaults otherwise).
    zq_options_t *options;
    //  -H name=value, set on every message sent.
    const char *header_names[ZQ_CLI_MAX_HEADERS];
    const char *header_values[ZQ_CLI_MAX_HEADERS];
    size_t header_count;
    //  --wait-subscribers N (pub).
    size_t wait_subscribers;
    //  --exec CMD (rep).
    const char *exec;
    //  bench: --size BYTES, --transport NAME, --rounds N.
    size_t size;
    const char *transport;
    int rounds;
    //  bench spool, reliable, device: --producers N, --dir DIR (where the
    //  spools go), --backlog N (0: no backlog measurement).
    int producers;
    const char *dir;
    uint64_t backlog;
    //  stat: -w SEC, in ms.
    int64_t watch_ms;
    //  What zq_cli_receive_all counts in (NULL: nothing): get -n all.
    struct zq_cli_progress_t *progress;
    //  Positional arguments after the command.
    const char *args[ZQ_CLI_MAX_ARGS];
    size_t arg_count;
    //  Storage for -H splits.
    char *header_storage[ZQ_CLI_MAX_HEADERS];
} zq_cli_t;

//  ---- zq.c -----------------------------------------------------------------

//  Prints "zq COMMAND: " and the formatted text to stderr, with a newline.
void zq_cli_error (zq_cli_t *cli, const char *format, ...) __attribute__ ((format (printf, 2, 3)));

//  Prints the command's usage hint to stderr and returns ZQ_EXIT_USAGE.
int zq_cli_usage_error (zq_cli_t *cli, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

//  Set (to the signal's number) when SIGINT or SIGTERM arrives; blocking
//  calls then return EINTR and commands stop.
extern volatile sig_atomic_t zq_cli_interrupted;

//  Exit code for a stop by signal: 128 + its number.
int zq_cli_interrupt_exit (void);

//  ---- zq_cli_io.c ----------------------------------------------------------

//  Bodies to send: the BODY argument (repeated -n times, default once),
//  or, when BODY is "-", one JSON document per line of stdin (at most -n).
typedef struct {
    zq_cli_t *cli;
    bool from_stdin;
    void *body; //  the BODY argument as msgpack
    size_t body_size;
    uint64_t produced; //  messages made so far
    char *line;        //  getline buffer
    size_t line_capacity;
    uint64_t line_number;
    bool line_has_nul;
} zq_cli_source_t;

//  Prepares the source for body_arg. Returns 0, or an exit code after
//  printing why (ZQ_EXIT_BAD_INPUT for an invalid JSON BODY).
int zq_cli_source_open (zq_cli_source_t *source, zq_cli_t *cli, const char *body_arg);

//  Makes the next message for subject, with the -H headers, in *msg_p.
//  Returns 0 with a message, 0 with *msg_p NULL at the end, or an exit code
//  after printing why (invalid JSON on a stdin line names the line).
int zq_cli_source_next (zq_cli_source_t *source, const char *subject, zq_msg_t **msg_p);

//  Releases the source.
void zq_cli_source_close (zq_cli_source_t *source);

//  Prints the message to stdout as one line: its body as JSON, or with
//  --envelope an object {"id","subject","created_ms","attempt","headers",
//  "body"}; flushes. Returns 0, or ZQ_EXIT_BAD_INPUT after printing why
//  when the body has no JSON form (the message is then skipped).
int zq_cli_print_msg (zq_cli_t *cli, const zq_msg_t *msg);

//  Receives and prints messages (zq_cli_print_msg) until count of them
//  (0: no limit), timeout_ms without one, or an error; with ack, acks each
//  once it is printed. Returns an exit code: ZQ_EXIT_OK, ZQ_EXIT_TIMEOUT
//  (fewer than count, or none at all without a count), ZQ_EXIT_BAD_INPUT
//  (a body had no JSON form), or that of a receive or ack failure.
int zq_cli_receive_all (zq_cli_t *cli, zq_queue_t *queue, uint64_t count, int timeout_ms, bool ack);

//  Opens a queue with the command line's options, printing the bound
//  endpoint if --print-endpoint was given. Returns the queue, or NULL
//  after printing why (the caller exits with ZQ_EXIT_TRANSPORT).
zq_queue_t *zq_cli_queue_open (zq_cli_t *cli, const char *pattern, zq_role_t role,
                               const char *endpoints);

//  Checks one endpoint (no '@' or '>' prefix) before zq uses it, or with
//  several a comma-separated list: tcp://HOST:PORT (PORT 1 to 65535, or
//  '*' where binding), ipc://PATH or inproc://NAME; a tcp HOST to connect
//  to must resolve. Returns 0, or -1 after printing what is wrong and what
//  the endpoint must look like.
int zq_cli_endpoint_check (zq_cli_t *cli, const char *endpoint, bool binding);

//  A long job's progress on stderr: a live line ("12000 stored, 9.6 k/s")
//  redrawn at most every 200 ms while stderr is a terminal, and a summary
//  at the end ("1000000 stored in 10.6 s, 94 k/s"). The time runs from
//  start to the last message counted, so an idle wait at the end does not
//  lower the rate.
typedef struct zq_cli_progress_t {
    const char *verb; //  "stored", "received"
    uint64_t count;
    int64_t start_us;
    int64_t last_us;  //  when the last message was counted
    int64_t shown_us; //  when the live line was last drawn
    bool live;        //  stderr is a terminal
} zq_cli_progress_t;

void zq_cli_progress_start (zq_cli_progress_t *progress, const char *verb);
//  Counts messages more messages done.
void zq_cli_progress_add (zq_cli_progress_t *progress, uint64_t messages);
//  Clears the live line and prints the summary ("zq COMMAND: " first).
void zq_cli_progress_end (zq_cli_t *cli, zq_cli_progress_t *progress);

//  Maps a failed send or receive (errno) to an exit code, printing what
//  happened with the message number; EAGAIN is a timeout.
int zq_cli_failure (zq_cli_t *cli, const char *what, int errnum);

//  ---- bench/zq_bench.c: what the benchmarks share --------------------------
//  A run has two sides: the binder (receiver, server) and the connector
//  (sender, client). Over tcp and ipc each runs in a process of its own,
//  forked by zq bench, which never creates a ZeroMQ context itself; over
//  inproc both run in one forked process, the binder in a second thread.

//  A benchmark side waiting this long for a message, a reply, a confirm or
//  room gives up.
#define ZQ_BENCH_STALL_MS 10000
//  The queue bench reliable and bench device put to and take from.
#define ZQ_BENCH_QUEUE "bench"

typedef struct {
    zq_cli_t *cli;
    bool use_zq; //  zq queues, or raw libzmq sockets
    //  Both at once (bench rpc): each side holds a zq queue and a raw
    //  socket (each in its own context); payload is zq's.
    bool both;
    uint64_t warmup;     //  untimed messages or round trips first
    uint64_t count;      //  timed ones
    const void *payload; //  raw: the frame; zq: the msgpack body
    size_t payload_size;
    const void *raw_payload; //  the raw side's frame, whichever the side
    size_t raw_payload_size;
    char bind[512];     //  what the binder binds
    char endpoint[512]; //  what the connector connects to (resolved)
    //  With both: what the binder binds for its raw socket, and where the
    //  connector's raw socket connects; the endpoint and bind above are
    //  the zq queue's.
    char bind_raw[512];
    char endpoint_raw[512];
    int endpoint_fd; //  binder: write end for zq_bench_bound
    int go_read_fd;  //  zq_bench_go_wait reads here
    int go_write_fd; //  zq_bench_go writes here
} zq_bench_run_t;

//  What each side reports back.
typedef struct {
    int errnum;       //  0 if the side completed
    int64_t start_ns; //  connector: clock before its first timed send
    int64_t end_ns;   //  binder: clock after its last timed receive
    double p50_us;    //  rpc client: round trip percentiles (zq's, with both)
    double p99_us;
    double raw_p50_us; //  rpc client with both: the raw side's
    double raw_p99_us;
    //  rpc, where a round trip goes (medians; [0] raw's, [1] zq's): the
    //  servers' process measures to_server (the client's clock before its
    //  send to the server's after its receive) and server (from there to
    //  its clock before its reply), the client to_client (from that clock
    //  to its own after its receive). 0 when the body is too small to
    //  carry the clocks.
    double to_server_us[2];
    double server_us[2];
    double to_client_us[2];
    //  Durability benchmarks (spool, reliable, device): what a process
    //  measured besides its clock readings.
    uint64_t messages;   //  messages it handled
    uint64_t fsyncs;     //  fdatasyncs its spool made
    int64_t max_rss_kib; //  its peak resident set (getrusage)
    double value;        //  a benchmark's own figure (e.g. a size)
    //  bench reliable's confirm producer: the disk's write + fdatasync and
    //  a raw round trip to the server's process, sampled between confirms.
    double fsync_p50_us;
    double fsync_p99_us;
    double rtt_p50_us;
    double sum_p50_us; //  p50 of each confirm's fsync + round trip
    //  Not the process's own report: zq_bench_collect's reading of its CPU
    //  time, user and system over all its threads, from its start to its
    //  exit (wait4), -1 when unknown (it had to be killed, or was not
    //  reaped); a relay run's, the sum of its processes' (-1 if one is).
    int64_t cpu_ns;
} zq_bench_result_t;

typedef void (zq_bench_side_fn) (zq_bench_run_t *run, zq_bench_result_t *result);

//  Runs binder and connector as described above and stores each side's
//  result. Returns 0, or an exit code after printing why.
int zq_bench_run (zq_bench_run_t *run, zq_bench_side_fn *binder, zq_bench_side_fn *connector,
                  zq_bench_result_t *binder_result, zq_bench_result_t *connector_result);

//  Binder: reports the endpoint it bound (resolved) so the connector can
//  start. With both, it reports the zq queue's first, then the raw socket's.
void zq_bench_bound (zq_bench_run_t *run, const char *endpoint);

//  One side signals the other, which waits for it: in pipeline the
//  receiver tells the sender to start timing; in rpc the client tells the
//  server it has every reply, so the server may close.
void zq_bench_go (zq_bench_run_t *run);
int zq_bench_go_wait (zq_bench_run_t *run);

//  A monotonic clock in nanoseconds, comparable across threads and processes.
int64_t zq_bench_now_ns (void);

//  Returns the median of count values (reorders them).
double zq_bench_median (double *values, int count);

//  The libzmq context the raw side uses in its process (one I/O thread,
//  as CZMQ's default).
void *zq_bench_raw_context (void);

//  Applies to a raw socket what zq applies to its own from the command
//  line's options: sndhwm, rcvhwm, linger_ms. Returns 0 or -1.
int zq_bench_raw_options (zq_cli_t *cli, void *socket);

//  Sets up run for one side of a round of bench pipeline or rpc: zq sends
//  body (body_size bytes), raw sends frame (cli->size bytes).
void zq_bench_run_init (zq_bench_run_t *run, zq_cli_t *cli, bool use_zq, uint64_t warmup,
                        const void *body, size_t body_size, const void *frame);

//  Prepares bench pipeline or rpc: cli->count becomes default_count unless
//  --count gave one; *body_p gets zq's payload (zq_bench_body, its size in
//  *body_size_p) and *frame_p raw's (cli->size bytes of 'a'), both the
//  caller's to free; either is NULL on ENOMEM. Returns the warm-up: a tenth
//  of the count, within 1000 and warmup_max.
uint64_t zq_bench_payloads (zq_cli_t *cli, uint64_t default_count, uint64_t warmup_max,
                            void **body_p, size_t *body_size_p, void **frame_p);

//  The zq side's queue: pattern in role with the command line's options,
//  bound on run->bind (and reported with zq_bench_bound) or connected to
//  run->endpoint. NULL with result->errnum set if it cannot be opened.
zq_queue_t *zq_bench_queue_bind (zq_bench_run_t *run, const char *pattern, zq_role_t role,
                                 zq_bench_result_t *result);
zq_queue_t *zq_bench_queue_connect (zq_bench_run_t *run, const char *pattern, zq_role_t role,
                                    zq_bench_result_t *result);

//  The raw binder's socket: type, with zq_bench_raw_options and a receive
//  timeout of timeout_ms, bound on run->bind (run->bind_raw with both)
//  and reported with
//  zq_bench_bound. NULL with result->errnum set if any step fails.
void *zq_bench_raw_bind (zq_bench_run_t *run, int type, int timeout_ms, zq_bench_result_t *result);
//  A raw DEALER with zq_bench_raw_options and send and receive timeouts of
//  ZQ_BENCH_STALL_MS (and ZMQ_IMMEDIATE if immediate), connected to
//  endpoint. NULL with errno if any step fails.
void *zq_bench_raw_dealer (zq_cli_t *cli, const char *endpoint, bool immediate);

//  The msgpack body zq sends for a payload of size bytes (a bin), built
//  once; *body_size_p gets its size. NULL on ENOMEM.
void *zq_bench_body (size_t size, size_t *body_size_p);

//  Prints one progress line to stderr ("zq bench KIND: ...").
void zq_bench_progress (zq_cli_t *cli, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

//  ---- Processes of the durability benchmarks -------------------------------
//  bench spool, reliable and device run each part (producer, consumer,
//  server, a measured spool) in a forked process of its own, which reports
//  one zq_bench_result_t back through a pipe; this process never creates a
//  ZeroMQ context. Every wait has a deadline; a child that misses it is
//  killed.

typedef void (zq_bench_child_fn) (zq_cli_t *cli, void *arg, zq_bench_result_t *result);

typedef struct {
    pid_t pid;     //  -1 once reaped
    int result_fd; //  read end of the child's result pipe
} zq_bench_child_t;

//  Forks a process that runs fn (cli, arg, &result), reports the result
//  and exits. Returns 0, or -1 with errno (child->pid is then -1).
int zq_bench_spawn (zq_bench_child_t *child, zq_bench_child_fn *fn, zq_cli_t *cli, void *arg);

//  Reads the child's result before deadline_ns and reaps it, noting its
//  CPU time in result->cpu_ns; a child that does not report in time is
//  killed. Returns 0, or -1 (result->errnum is then ETIMEDOUT, or EPIPE if
//  the child ended without a report).
int zq_bench_collect (zq_bench_child_t *child, int64_t deadline_ns, zq_bench_result_t *result);

//  Kills (SIGKILL) and reaps a child that is still running.
void zq_bench_kill (zq_bench_child_t *child);

//  The deadline (zq_bench_now_ns clock) by which a whole durability
//  benchmark must be done; every wait is bounded by it.
int64_t zq_bench_deadline_ns (void);

//  Reads one line (a child's report, e.g. its endpoint) from fd into line,
//  without its newline, before deadline_ns (zq_bench_now_ns clock).
//  Returns 0, or -1 if no whole line came in time.
int zq_bench_read_line (int fd, int64_t deadline_ns, char *line, size_t size);

//  Producer of the reliable pattern: takes confirm reports until nothing
//  posted is unconfirmed, adding them to *confirmed_p (may be NULL).
//  Returns 0, or -1 with errno (ETIMEDOUT: no confirm for
//  ZQ_BENCH_STALL_MS).
int zq_bench_drain_confirms (zq_queue_t *queue, uint64_t *confirmed_p);

//  Consumer of the reliable pattern: connected to endpoint (">" is added)
//  with the command line's options, consuming ZQ_BENCH_QUEUE. Returns the
//  queue, or NULL with result->errnum set.
zq_queue_t *zq_bench_consumer_open (zq_cli_t *cli, const char *endpoint, zq_bench_result_t *result);

//  Takes one delivery of a consumer (waiting up to ZQ_BENCH_STALL_MS) and
//  acks it, adding one to result->messages. Returns 0, or -1 with
//  result->errnum set.
int zq_bench_take_one (zq_queue_t *queue, zq_bench_result_t *result);

//  Latency percentiles: sorts count samples (ns) and stores p50 and p99 in
//  microseconds.
void zq_bench_percentiles (int64_t *samples_ns, size_t count, double *p50_us, double *p99_us);

//  Prints to stdout the confirm line of bench spool and reliable: "LABEL
//  size=SIZE count=COUNT", the medians over rounds of the confirm and
//  fsync latencies (p50/p99, sorting the four arrays), the confirm's p50
//  over fsync's and their ratio (0 without an fsync figure).
void zq_bench_print_confirm (const char *label, size_t size, uint64_t count, double *confirm50,
                             double *confirm99, double *fsync50, double *fsync99, int rounds);

//  The disk's own cost: count times (after warmup untimed ones), writes
//  size bytes at the end of a new file in dir and fdatasyncs it; stores
//  p50 and p99 in microseconds. Removes the file. Returns 0 or -1 (errno).
int zq_bench_fsync_latency (const char *dir, size_t size, uint64_t warmup, uint64_t count,
                            double *p50_us, double *p99_us);

//  Makes a new empty directory under parent named PREFIX-XXXXXX into path.
//  Returns 0 or -1 with errno.
int zq_bench_mkdtemp (const char *parent, const char *prefix, char *path, size_t size);

//  Removes dir and everything in it, down to depth levels of directories.
void zq_bench_rmtree (const char *dir, int depth);

//  The directory the durability benchmarks write in: --dir, else TMPDIR,
//  else /var/tmp.
const char *zq_bench_dir (zq_cli_t *cli);

//  This process's peak resident set in KiB (getrusage ru_maxrss).
int64_t zq_bench_max_rss_kib (void);

//  The CPU time so far of the live process pid, user and system over all
//  its threads, ended ones included (its CPU-time clock), in ns; -1 if it
//  could not be read.
int64_t zq_bench_cpu_ns (pid_t pid);

//  ---- bench/zq_bench_relay.c: the raw baseline of bench device and reliable --
//  Plain libzmq in the layout of the zq side, with no storage, no confirms
//  and no acks: producers (DEALER, ZMQ_IMMEDIATE) -> a relay (ROUTER, where
//  zqd or the reliable server stands) -> one consumer (DEALER, served by a
//  second ROUTER of the relay). Over tcp and ipc each part is a process of
//  its own; over inproc they are threads of one process.

typedef enum {
    ZQ_BENCH_RELAY_PUT,   //  producers -> relay, timed until the relay read count
    ZQ_BENCH_RELAY_DRAIN, //  relay -> a consumer that just connected, from its start
    ZQ_BENCH_RELAY_E2E    //  producers -> relay -> consumer, until its last receive
} zq_bench_relay_mode_t;

//  Runs one raw run of mode over cli->transport with cli->size-byte frames
//  and the command line's sndhwm and rcvhwm: count timed messages in all;
//  for put and e2e, each of the producers (1 to 64) sends warmup untimed
//  messages first, then its share of count. Stores the throughput in
//  *rate_p (msgs/s) and, if cpu_p is not NULL, the CPU time of all its
//  processes (relay, producers, consumer, from start to exit) per message
//  they moved, warm-up included, in *cpu_p (ns). Returns 0, or an exit
//  code after printing why.
int zq_bench_relay (zq_cli_t *cli, zq_bench_relay_mode_t mode, int producers, uint64_t warmup,
                    uint64_t count, double *rate_p, double *cpu_p);

//  The benchmarks (bench/zq_bench_pipeline.c, zq_bench_rpc.c, zq_bench_spool.c,
//  zq_bench_reliable.c, zq_bench_device.c).
int zq_bench_pipeline (zq_cli_t *cli);
int zq_bench_rpc (zq_cli_t *cli);
int zq_bench_spool (zq_cli_t *cli);
int zq_bench_reliable (zq_cli_t *cli);
int zq_bench_device (zq_cli_t *cli);
int zq_bench_jetstream (zq_cli_t *cli);

//  ---- Commands (each returns an exit code) -------------------------------

int zq_cli_push (zq_cli_t *cli);
int zq_cli_pull (zq_cli_t *cli);
int zq_cli_pub (zq_cli_t *cli);
int zq_cli_sub (zq_cli_t *cli);
int zq_cli_req (zq_cli_t *cli);
int zq_cli_rep (zq_cli_t *cli);
int zq_cli_bench (zq_cli_t *cli);

//  zq_cli_reliable.c: the reliable pattern (put waits for confirms).
int zq_cli_put (zq_cli_t *cli);
int zq_cli_get (zq_cli_t *cli);

//  zq_cli_admin.c: the device's admin socket (doc/DEVICE.md).
int zq_cli_stat (zq_cli_t *cli);
int zq_cli_ls (zq_cli_t *cli);
int zq_cli_peek (zq_cli_t *cli);
int zq_cli_purge (zq_cli_t *cli);
int zq_cli_redrive (zq_cli_t *cli);
int zq_cli_ping (zq_cli_t *cli);
int zq_cli_info (zq_cli_t *cli);
int zq_cli_delete (zq_cli_t *cli);

#endif
