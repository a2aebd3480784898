/*  =========================================================================
    zq_cli - what the files of the zq command line share: exit codes, the
    parsed command line, and helpers for reading and printing messages.
    Part of the program, not of the library: never installed.

    One file per command group: src/zq.c (main, dispatch, option parsing,
    help), src/zq_cli_queue.c (push, pull, pub, sub), src/zq_cli_rpc.c
    (req, rep), src/zq_cli_io.c (JSON in and out, shared by all), and
    src/zq_bench*.c (zq bench). A new command adds a row to the command
    table in src/zq.c and a run function declared here.

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
    //  Positional arguments after the command.
    const char *args[ZQ_CLI_MAX_ARGS];
    size_t arg_count;
    //  Storage for -H splits.
    char *header_storage[ZQ_CLI_MAX_HEADERS];
} zq_cli_t;

//  ---- src/zq.c ----------------------------------------------------------

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

//  ---- src/zq_cli_io.c ---------------------------------------------------

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

//  Opens a queue with the command line's options, printing the bound
//  endpoint if --print-endpoint was given. Returns the queue, or NULL
//  after printing why (the caller exits with ZQ_EXIT_TRANSPORT).
zq_queue_t *zq_cli_queue_open (zq_cli_t *cli, const char *pattern, zq_role_t role,
                               const char *endpoints);

//  Maps a failed send or receive (errno) to an exit code, printing what
//  happened with the message number; EAGAIN is a timeout.
int zq_cli_failure (zq_cli_t *cli, const char *what, int errnum);

//  ---- src/zq_bench.c: what the benchmarks share -------------------------

//  A monotonic clock in nanoseconds (comparable across threads).
int64_t zq_bench_now_ns (void);

//  Writes into buffer an endpoint to bind for one run over the command
//  line's transport: "tcp://127.0.0.1:*", a fresh ipc:// path under a
//  private directory, or a fresh inproc:// name. Returns 0, or -1.
int zq_bench_bind_endpoint (zq_cli_t *cli, char *buffer, size_t size);

//  Returns the median of count values (reorders them).
double zq_bench_median (double *values, int count);

//  The libzmq context the raw baseline uses (one I/O thread, as CZMQ's).
void *zq_bench_raw_context (void);

//  Applies to a raw socket what zq applies to its own: the sndhwm,
//  rcvhwm and linger_ms of the command line's options. Returns 0 or -1.
int zq_bench_raw_options (zq_cli_t *cli, void *socket);

//  The msgpack body zq sends for a payload of size bytes (a bin), built
//  once; *body_size_p gets its size. NULL on ENOMEM.
void *zq_bench_body (size_t size, size_t *body_size_p);

//  Prints one progress line to stderr ("zq bench KIND: ...").
void zq_bench_progress (zq_cli_t *cli, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

int zq_bench_pipeline (zq_cli_t *cli);
int zq_bench_rpc (zq_cli_t *cli);

//  ---- Commands (each returns an exit code) -------------------------------

int zq_cli_push (zq_cli_t *cli);
int zq_cli_pull (zq_cli_t *cli);
int zq_cli_pub (zq_cli_t *cli);
int zq_cli_sub (zq_cli_t *cli);
int zq_cli_req (zq_cli_t *cli);
int zq_cli_rep (zq_cli_t *cli);
int zq_cli_bench (zq_cli_t *cli);

//  src/zq_cli_admin.c: the device's admin socket (doc/DEVICE.md).
int zq_cli_stat (zq_cli_t *cli);
int zq_cli_ls (zq_cli_t *cli);
int zq_cli_peek (zq_cli_t *cli);
int zq_cli_purge (zq_cli_t *cli);
int zq_cli_redrive (zq_cli_t *cli);

#endif
