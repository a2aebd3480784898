/*  =========================================================================
    zq - the command line: send, receive, serve and measure zq messages.

        zq COMMAND [OPTIONS] ARGUMENTS       (zq help COMMAND for each)

    This file holds main, the command table, option parsing, help and
    version; each command group lives in its own src/tools/zq/zq_cli_*.c or
    src/tools/zq/bench/zq_bench*.c file (see zq_cli.h). doc/zq.1 is the manual.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "config.h"
#include "zq_cli.h"
#include <stdarg.h>

//  ---- Options -------------------------------------------------------------

typedef struct {
    zq_cli_opt_t key;
    char short_name;       //  0 = none
    const char *long_name; //  without "--"
    const char *arg_name;  //  NULL for a flag
    const char *help;
} s_option_t;

static const s_option_t s_options[] = {
    {ZQ_OPT_HELP, 'h', "help", NULL, "show this help and exit"},
    {ZQ_OPT_COUNT, 'n', "count", "COUNT", "stop after COUNT messages (\"all\": no limit)"},
    {ZQ_OPT_TIMEOUT, 't', "timeout", "MS", "milliseconds to wait (see above; -1: forever)"},
    {ZQ_OPT_OPTION, 'o', "option", "NAME=VALUE", "set a queue option (zq options lists them)"},
    {ZQ_OPT_HEADER, 'H', "header", "NAME=VALUE", "set a header on every message sent"},
    {ZQ_OPT_PRINT_ENDPOINT, 'p', "print-endpoint", NULL,
     "print the bound endpoint(s) as the first line of stdout"},
    {ZQ_OPT_ENVELOPE, 'e', "envelope", NULL,
     "print {\"id\",\"subject\",\"created_ms\",\"attempt\",\"headers\",\"body\"}"},
    {ZQ_OPT_NO_ACK, 0, "no-ack", NULL, "get: leave messages unacked, for redelivery"},
    {ZQ_OPT_FORCE, 0, "force", NULL, "delete: drop the messages the queue holds"},
    {ZQ_OPT_WAIT_SUBSCRIBERS, 'w', "wait-subscribers", "N",
     "publish only once N subscriptions are in force (bounded by --timeout)"},
    {ZQ_OPT_EXEC, 'x', "exec", "CMD",
     "run CMD (with /bin/sh) per request: request on stdin, reply on stdout"},
    {ZQ_OPT_SIZE, 's', "size", "BYTES", "payload bytes per message (default 100)"},
    {ZQ_OPT_TRANSPORT, 0, "transport", "NAME", "tcp (default), ipc or inproc"},
    {ZQ_OPT_ROUNDS, 0, "rounds", "N", "rounds of raw and zq, median reported (default 3)"},
    {ZQ_OPT_PRODUCERS, 0, "producers", "N",
     "concurrent producers (spool: threads; device: processes)"},
    {ZQ_OPT_DIR, 0, "dir", "DIR",
     "where spools and test files go (default $TMPDIR, else /var/tmp)"},
    {ZQ_OPT_BACKLOG, 0, "backlog", "N", "also measure memory and restart with N messages stored"},
    {ZQ_OPT_PIN, 0, "pin", NULL,
     "pipeline, rpc: the binder's process on one CPU, the connector's on another"},
    {ZQ_OPT_JSON, 'j', "json", NULL, "print JSON (stat: one array of every queue's counters)"},
    {ZQ_OPT_WATCH, 'w', "watch", "SEC",
     "print again every SEC seconds (rates between samples) until Ctrl-C or -n samples"},
};
#define S_OPTION_COUNT (sizeof s_options / sizeof s_options[0])

#define S_BIT(opt) (1u << (opt))
#define S_COMMON   (S_BIT (ZQ_OPT_HELP) | S_BIT (ZQ_OPT_TIMEOUT) | S_BIT (ZQ_OPT_OPTION))
//  The admin commands: -o takes the CURVE options only (zq_cli_admin.c).
#define S_ADMIN S_COMMON
#define S_SENDER                                                                                   \
    (S_COMMON | S_BIT (ZQ_OPT_COUNT) | S_BIT (ZQ_OPT_HEADER) | S_BIT (ZQ_OPT_PRINT_ENDPOINT))
#define S_RECEIVER                                                                                 \
    (S_COMMON | S_BIT (ZQ_OPT_COUNT) | S_BIT (ZQ_OPT_PRINT_ENDPOINT) | S_BIT (ZQ_OPT_ENVELOPE))

//  ---- Commands ------------------------------------------------------------

static int s_options_command (zq_cli_t *cli);

typedef struct {
    const char *name;
    int (*run) (zq_cli_t *cli);
    uint32_t options; //  S_BIT of each accepted option
    size_t min_args;
    size_t max_args;
    const char *synopsis; //  arguments after the command
    const char *summary;  //  one line for "zq --help"
    const char *details;  //  what "zq COMMAND --help" adds
} s_command_t;

static const s_command_t s_commands[] = {
    {"push", zq_cli_push, S_SENDER, 2, 3, "ENDPOINTS [SUBJECT] BODY|-",
     "send messages to one consumer each (pipeline producer; connects by default)",
     "Sends BODY (one JSON document) COUNT times (default once), or with BODY \"-\"\n"
     "one message per line of stdin (at most COUNT). Blank lines are skipped.\n"
     "Each send waits up to --timeout MS (default: the send_timeout_ms option,\n"
     "5000) for a connected consumer with room; then exits 2.\n"},
    {"pull", zq_cli_pull, S_RECEIVER, 1, 1, "ENDPOINTS",
     "print messages as they arrive, one JSON line each (pipeline consumer; binds)",
     "Prints each message's body as one line of JSON. Stops after COUNT messages,\n"
     "or when nothing arrives for --timeout MS (default: wait forever). Exits 0\n"
     "if it stopped after COUNT messages (or, without -n, received any), else 2.\n"},
    {"pub", zq_cli_pub, S_SENDER | S_BIT (ZQ_OPT_WAIT_SUBSCRIBERS), 2, 3,
     "ENDPOINTS [SUBJECT] BODY|-",
     "publish messages on SUBJECT to matching subscribers (pubsub; binds by default)",
     "Publishes BODY (or stdin lines, as push does) on SUBJECT (default \"\").\n"
     "Subscribers that are not yet connected miss what is published: use\n"
     "--wait-subscribers N to wait (up to --timeout MS, default forever) until N\n"
     "subscriptions are in force (one per prefix per subscriber); exits 2 if not.\n"},
    {"sub", zq_cli_sub, S_RECEIVER, 1, ZQ_CLI_MAX_ARGS, "ENDPOINTS [PREFIX...]",
     "print published messages whose subject starts with a PREFIX (connects)",
     "Subscribes to each PREFIX (none: every subject) and prints bodies as pull\n"
     "does, with the same COUNT, --timeout and exit status rules. Use --envelope\n"
     "to see each message's subject.\n"},
    {"req", zq_cli_req, (S_SENDER & ~S_BIT (ZQ_OPT_PRINT_ENDPOINT)) | S_BIT (ZQ_OPT_ENVELOPE), 2, 3,
     "ENDPOINTS [SUBJECT] BODY|-",
     "send requests and print each reply (rpc client; connects by default)",
     "Sends BODY (or each stdin line) as a request and prints the reply's body as\n"
     "one JSON line, one request at a time. --timeout MS bounds each request\n"
     "(default: the request_timeout_ms and retries options); no reply: exits 2.\n"
     "An error reply is printed to stderr and makes the exit status 5.\n"},
    {"rep", zq_cli_rep,
     S_COMMON | S_BIT (ZQ_OPT_COUNT) | S_BIT (ZQ_OPT_PRINT_ENDPOINT) | S_BIT (ZQ_OPT_EXEC) |
         S_BIT (ZQ_OPT_HEADER),
     1, 1, "ENDPOINTS",
     "answer requests: echo them, or run --exec CMD for each (rpc server; binds)",
     "Replies to each request with its own body, or with --exec CMD runs CMD per\n"
     "request: the request body as one JSON line on CMD's stdin, the environment\n"
     "holding ZQ_SUBJECT and ZQ_ID, and CMD's stdout (one JSON document) as the\n"
     "reply. If CMD fails (exit status not 0, or output not JSON) the client gets\n"
     "an error reply and the server goes on. Stops after COUNT requests, or when\n"
     "none arrives for --timeout MS (default: serve forever).\n"},
    {"bench", zq_cli_bench,
     S_BIT (ZQ_OPT_HELP) | S_BIT (ZQ_OPT_COUNT) | S_BIT (ZQ_OPT_SIZE) | S_BIT (ZQ_OPT_TRANSPORT) |
         S_BIT (ZQ_OPT_ROUNDS) | S_BIT (ZQ_OPT_OPTION) | S_BIT (ZQ_OPT_PRODUCERS) |
         S_BIT (ZQ_OPT_DIR) | S_BIT (ZQ_OPT_BACKLOG) | S_BIT (ZQ_OPT_PIN),
     1, 1, "pipeline|rpc|spool|reliable|device|jetstream",
     "measure zq (against plain libzmq, or the disk's own fsync); prints key=value pairs",
     "pipeline: PUSH/PULL throughput, sender and receiver in separate processes\n"
     "  (threads over inproc), timed from the first send to the last receive,\n"
     "  after an untimed warm-up.\n"
     "  Prints: pipeline TRANSPORT size= count= zq_msgs_per_s= raw_msgs_per_s= ratio=\n"
     "  (ratio = zq / raw throughput). Default count 1000000.\n"
     "rpc: DEALER/ROUTER round trips one at a time against an echo server in\n"
     "  another process (thread over inproc), after an untimed warm-up. Raw and\n"
     "  zq run side by side: one process holds both servers, another both\n"
     "  clients (each pair in its own context), which times blocks of raw and\n"
     "  zq round trips in turn (a fortieth of the count each, at most 500).\n"
     "  Prints: rpc TRANSPORT size= count= zq_p50_us= zq_p99_us= raw_p50_us=\n"
     "  raw_p99_us= ratio= (ratio = zq p50 / raw p50). Default count 20000.\n"
     "pipeline's raw and zq runs alternate (raw, zq, raw, zq, ...) for --rounds\n"
     "N; each rpc round runs both. Each figure is the median over the rounds.\n"
     "Both sides use the same high-water marks (sndhwm, rcvhwm: -o changes them\n"
     "for both), body size and transport.\n"
     "--pin (pipeline and rpc over tcp or ipc): the binder's process runs on the\n"
     "first CPU this one may use, the connector's on the second, so that raw and\n"
     "zq meet the same placement of their threads (unpinned, on a machine of\n"
     "two CPUs, where the scheduler puts them moves an rpc round trip by a fifth).\n"
     "The raw side sends SIZE-byte frames; zq sends SIZE payload bytes as a\n"
     "msgpack bin body in its envelope. Progress goes to stderr.\n"
     "\n"
     "Durability (fsync always, spools in a new directory under --dir, removed\n"
     "after; --rounds rounds, median reported, each round's figures on stderr).\n"
     "reliable e2e and device also run their raw libzmq baseline in each round,\n"
     "before zq: the same processes (threads over inproc), transport, high-water\n"
     "marks and SIZE-byte frames, with a relay of plain ROUTER sockets where the\n"
     "server or zqd stands and no storage, confirms or acks: producers (DEALER)\n"
     "-> relay (put: until it read them all), relay -> a consumer that just\n"
     "connected (drain), producers -> relay -> consumer (e2e); timed as zq is.\n"
     "raw_msgs_per_s= is its median, ratio= is zq / raw.\n"
     "spool: P producer threads (--producers, default 4) append batches of 1000\n"
     "  and wait for each to be durable; one producer appends one message at a\n"
     "  time and waits (confirm); the disk's own write + fdatasync of SIZE bytes\n"
     "  in the same directory, alternating with it. Prints:\n"
     "  spool append size= producers= fsync=always count= msgs_per_s= fsyncs_per_s=\n"
     "    records_per_fsync=\n"
     "  spool confirm size= count= p50_us= p99_us= fsync_p50_us= fsync_p99_us=\n"
     "    over_fsync_us= ratio=   (ratio = confirm p50 / fsync p50)\n"
     "  --backlog N: spool backlog size= messages= append_msgs_per_s= max_rss_kib=\n"
     "    reopen_ms= reopen_rss_kib= disk_mib=\n"
     "  Default count 1000000 (confirm: at most 10000).\n"
     "reliable: server, producer and consumer in three processes (over inproc,\n"
     "  threads of one process): end to end put -> deliver -> ack with a window\n"
     "  of max_in_flight posts; then one producer sending one message at a time\n"
     "  (zq_queue_send waits for the confirm); beside each confirm, in turn, one\n"
     "  write + fdatasync of the bytes the server writes per message, in the same\n"
     "  directory, and one raw round trip (bench rpc's raw side) to an echo in\n"
     "  the server's process, so all three see the same load. Prints:\n"
     "  reliable e2e TRANSPORT size= count= fsync=always window= put_msgs_per_s=\n"
     "    e2e_msgs_per_s= raw_msgs_per_s= ratio=   (ratio = e2e / raw)\n"
     "  reliable confirm TRANSPORT size= count= p50_us= p99_us= fsync_p50_us=\n"
     "    fsync_p99_us= over_fsync_us= ratio=\n"
     "  reliable rtt TRANSPORT size= raw_rtt_p50_us= fsync_p50_us= confirm_p50_us=\n"
     "    over_fsync_and_rtt_us= fsync_plus_rtt_p50_us= over_paired_us=\n"
     "    (raw_rtt: the raw round trip between the producer's and the server's\n"
     "    processes over the same transport; fsync_plus_rtt: the p50 of the sum\n"
     "    of the fsync and the round trip timed beside the same confirm)\n"
     "  Default count 200000 (confirm: at most 10000).\n"
     "device: starts zqd (beside zq, or $ZQ_ZQD) on loopback with a new spool;\n"
     "  P producer processes (default 2) put while no consumer runs, one\n"
     "  consumer drains the backlog, then producers and a consumer run at once\n"
     "  (the consumer's prefetch is its rcvhwm, as the raw consumer's receive\n"
     "  queue, unless -o prefetch is given):\n"
     "  device put TRANSPORT size= producers= count= fsync=always msgs_per_s=\n"
     "    raw_msgs_per_s= ratio= cpu_ns_per_msg= raw_cpu_ns_per_msg=\n"
     "  device drain TRANSPORT size= count= prefetch= msgs_per_s= raw_msgs_per_s=\n"
     "    ratio= cpu_ns_per_msg= raw_cpu_ns_per_msg=\n"
     "  device e2e TRANSPORT size= producers= count= prefetch= msgs_per_s=\n"
     "    raw_msgs_per_s= ratio= cpu_ns_per_msg= raw_cpu_ns_per_msg=\n"
     "  (cpu_ns_per_msg: the CPU time, user and system, of every process of the\n"
     "  phase per message it moved, warm-up included: zqd's from the phase's\n"
     "  start to its end, the clients' from start to exit; raw: the relay's\n"
     "  processes, whose start and exit raw's includes; -1 if one could not\n"
     "  be read)\n"
     "  --backlog N: puts N, stops zqd with SIGTERM, starts it again and times\n"
     "  it until it answers an admin STAT; the same after kill -9; then one\n"
     "  consumer drains it (memory: zqd's VmRSS/VmHWM, clients' peak RSS):\n"
     "  device restart size= backlog= put_msgs_per_s= stop_s= restart_s= rss_kib=\n"
     "    hwm_kib= restart_rss_kib= restart_hwm_kib= kill_restart_s=\n"
     "    kill_restart_rss_kib= drain_msgs_per_s= drain_hwm_kib=\n"
     "    producer_max_rss_kib= consumer_max_rss_kib=\n"
     "  Default count 200000.\n"
     "jetstream: needs -o jetstream_servers=URL[,URL...] (a running JetStream\n"
     "  cluster; replicas: -o jetstream_replicas, default 3 with 3 or more URLs).\n"
     "  Per round, with one and then two reliable servers in this process on\n"
     "  that cluster (as zqd --jetstream): libnats' own async publish of count\n"
     "  messages to a stream of the same replicas (direct), a producer on every\n"
     "  server putting count (put), then a consumer on every server taking\n"
     "  count while the producer puts (e2e). Prints, medians over --rounds:\n"
     "  jetstream put|e2e gateways= size= count= msgs_per_s= min= max=\n"
     "    direct_msgs_per_s= ratio=   (ratio = msgs_per_s / direct)\n"
     "  Default count 20000.\n"
     "Every run is bounded (30 minutes in all; a stalled side gives up after 10 s).\n"},
    {"put", zq_cli_put, S_SENDER & ~S_BIT (ZQ_OPT_PRINT_ENDPOINT), 3, 3, "ENDPOINTS QUEUE BODY|-",
     "put messages into QUEUE and wait until stored (reliable producer; connects)",
     "Puts BODY (one JSON document; COUNT times with -n) into QUEUE at a reliable\n"
     "server (zqd, or a service's own) and exits 0 once the server confirmed it is\n"
     "stored. With BODY \"-\" it puts one message per line of stdin (at most\n"
     "COUNT; blank lines skipped), max_in_flight unconfirmed at a time, and prints\n"
     "each line's 1-based number as its confirm comes, then exits 0 once all are\n"
     "confirmed. Exits 2 when --timeout MS (default: the send_timeout_ms option,\n"
     "5000) pass without a confirm (what was not confirmed may still be stored),\n"
     "5 when the server refuses (storage full, invalid queue name). With BODY \"-\"\n"
     "it ends with a summary on stderr (\"N stored in T s, R/s\"; a live count\n"
     "while stderr is a terminal). ENDPOINTS defaults to $ZQ_URL.\n"},
    {"get", zq_cli_get,
     S_COMMON | S_BIT (ZQ_OPT_COUNT) | S_BIT (ZQ_OPT_ENVELOPE) | S_BIT (ZQ_OPT_NO_ACK), 2, 2,
     "ENDPOINTS QUEUE", "print messages from QUEUE, acking each after printing (reliable consumer)",
     "Takes COUNT messages (default 1; \"all\": until QUEUE stays empty for\n"
     "--timeout MS, default 1000) from QUEUE and prints each body as one line of\n"
     "JSON, acking each once printed; with --no-ack they stay unacked and the\n"
     "server delivers them again (attempt + 1) once get has gone. Waits up to\n"
     "--timeout MS per message with a COUNT (default: forever); exits 2 if fewer\n"
     "came (with \"all\": if none came). With \"all\" it ends with a summary on\n"
     "stderr (\"N received in T s, R/s\"). ENDPOINTS defaults to $ZQ_URL.\n"},
    {"stat", zq_cli_stat,
     S_ADMIN | S_BIT (ZQ_OPT_JSON) | S_BIT (ZQ_OPT_WATCH) | S_BIT (ZQ_OPT_COUNT), 1, 2,
     "ADMIN [QUEUE]",
     "show a device's queues: depth, in flight, consumers, rates, oldest message, dead letters",
     "Asks the device (zqd) at its admin endpoint ADMIN (default $ZQ_ADMIN) for\n"
     "its queues' counters. Without QUEUE, prints a table, one queue per line, or\n"
     "with --json one JSON array of objects; with QUEUE, prints every counter of\n"
     "that queue as one JSON object (doc/DEVICE.md lists them).\n"
     "-w SEC prints again every SEC seconds (redrawn in place on a terminal) until\n"
     "Ctrl-C, or COUNT samples with -n; IN/S and OUT/S are then the rates between\n"
     "two samples (the first sample shows the device's own, over its last\n"
     "seconds). With --json each sample is one line.\n"
     "--timeout MS bounds the wait for the device (default 5000); exits 2 if it\n"
     "does not answer, 5 if it answers with an error (e.g. no such queue).\n"
     "Every admin command (stat, info, ping, ls, peek, purge, redrive) reaches a\n"
     "device with CURVE through the options zq put takes: -o curve_server_key=KEY\n"
     "(or -o curve_server_cert=FILE) and -o curve_cert=FILE, the client's key pair.\n"},
    {"ping", zq_cli_ping, S_ADMIN, 1, 1, "ADMIN",
     "check that a device answers on its admin endpoint, and how fast",
     "Prints \"ADMIN answered in T ms\"; exits 2 if the device does not answer in\n"
     "--timeout MS (default 5000).\n"},
    {"info", zq_cli_info, S_ADMIN | S_BIT (ZQ_OPT_JSON), 1, 1, "ADMIN",
     "show a device's version, uptime, store and limits",
     "Prints one \"NAME VALUE\" line each, or one JSON object with --json.\n"},
    {"ls", zq_cli_ls, S_ADMIN, 1, 1, "ADMIN", "list a device's queues, one \"NAME KIND\" line each",
     ""},
    {"peek", zq_cli_peek, S_ADMIN | S_BIT (ZQ_OPT_COUNT) | S_BIT (ZQ_OPT_ENVELOPE), 2, 2,
     "ADMIN QUEUE", "print the next messages of a device's queue without taking them",
     "Prints up to COUNT (default 10) of the oldest ready messages of QUEUE, as get\n"
     "does, but leaves them in the queue.\n"},
    {"purge", zq_cli_purge, S_ADMIN, 2, 2, "ADMIN QUEUE",
     "drop every message waiting in a device's queue",
     "Prints \"purged N messages\". Deliveries in flight are left to settle.\n"},
    {"redrive", zq_cli_redrive, S_ADMIN, 2, 2, "ADMIN QUEUE",
     "move a device queue's dead letters (QUEUE.dead) back to QUEUE",
     "Prints \"redrove N messages\"; they start again with attempt 0.\n"},
    {"delete", zq_cli_delete, S_ADMIN | S_BIT (ZQ_OPT_FORCE), 2, 2, "ADMIN QUEUE",
     "delete a device queue that clients made, with its QUEUE.dead",
     "Prints \"deleted N messages\". A queue holding messages (or whose QUEUE.dead\n"
     "does) is refused unless --force, which drops them, deliveries in flight\n"
     "included; a queue declared in zqd's configuration is always refused. Its\n"
     "consumers get an error; the name is free afterwards.\n"},
    {"options", s_options_command, S_BIT (ZQ_OPT_HELP), 0, 0, "",
     "list the queue options -o can set, with defaults", ""},
};
#define S_COMMAND_COUNT (sizeof s_commands / sizeof s_commands[0])

static const s_command_t *
s_command_lookup (const char *name)
{
    for (size_t i = 0; i < S_COMMAND_COUNT; i++)
        if (streq (s_commands[i].name, name))
            return &s_commands[i];
    return NULL;
}

//  ---- Messages and signals --------------------------------------------------

volatile sig_atomic_t zq_cli_interrupted = 0;

static void
s_on_signal (int signum)
{
    zq_cli_interrupted = signum;
}

int
zq_cli_interrupt_exit (void)
{
    return 128 + (zq_cli_interrupted ? zq_cli_interrupted : SIGINT);
}

void
zq_cli_error (zq_cli_t *cli, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    if (cli && cli->command)
        fprintf (stderr, "%s %s: ", cli->program, cli->command);
    else
        fprintf (stderr, "%s: ", cli ? cli->program : "zq");
    vfprintf (stderr, format, args);
    fputc ('\n', stderr);
    va_end (args);
}

int
zq_cli_usage_error (zq_cli_t *cli, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    if (cli->command)
        fprintf (stderr, "%s %s: ", cli->program, cli->command);
    else
        fprintf (stderr, "%s: ", cli->program);
    vfprintf (stderr, format, args);
    fputc ('\n', stderr);
    va_end (args);
    if (cli->command)
        fprintf (stderr, "Try '%s %s --help'.\n", cli->program, cli->command);
    else
        fprintf (stderr, "Try '%s --help'.\n", cli->program);
    return ZQ_EXIT_USAGE;
}

//  ---- Help --------------------------------------------------------------------

static const char *s_exit_status_text =
    "Exit status:\n"
    "  0  success\n"
    "  1  usage error (unknown command or option, missing or extra argument)\n"
    "  2  timeout: nothing, or fewer than COUNT messages, arrived in time; or no\n"
    "     peer took a message in time\n"
    "  3  bad input: invalid JSON (argument or stdin line), or a message that\n"
    "     has no JSON form or is over the limits\n"
    "  4  transport error: cannot bind or connect, or a send/receive failed\n"
    "  5  the server answered with an error: an rpc error reply (req), a\n"
    "     refusal (put: storage full, invalid queue name), an admin error\n"
    "  128+N  stopped by signal N (SIGINT, SIGTERM)\n";

static void
s_print_main_help (FILE *out)
{
    fprintf (out, "Usage: zq COMMAND [OPTIONS] ARGUMENTS\n"
                  "       zq --version | --help | help COMMAND\n\n"
                  "Sends and receives zq messages: JSON on the command line and stdout,\n"
                  "msgpack on the wire. ENDPOINTS is a comma-separated list of tcp://, ipc://\n"
                  "or inproc:// endpoints, each prefixed '@' to bind or '>' to connect\n"
                  "(without a prefix the command's default applies).\n\n"
                  "Commands:\n");
    for (size_t i = 0; i < S_COMMAND_COUNT; i++)
        fprintf (out, "  %-8s %s\n", s_commands[i].name, s_commands[i].summary);
    fprintf (out, "\nEnvironment: ZQ_ADMIN stands for ADMIN, and ZQ_URL for the ENDPOINTS of put\n"
                  "and get, when the command's first argument is not an endpoint.\n");
    fprintf (out, "\n%s\nData goes to stdout, errors to stderr. See zq(1).\n", s_exit_status_text);
}

static void
s_print_command_help (const s_command_t *command, FILE *out)
{
    fprintf (out, "Usage: zq %s [OPTIONS] %s\n%s\n\n%s", command->name, command->synopsis,
             command->summary, command->details);
    fprintf (out, "\nOptions:\n");
    for (size_t i = 0; i < S_OPTION_COUNT; i++) {
        const s_option_t *option = &s_options[i];
        if (!(command->options & S_BIT (option->key)))
            continue;
        char left[64];
        snprintf (left, sizeof left, "%s%c%s--%s%s%s", option->short_name ? "-" : "",
                  option->short_name ? option->short_name : ' ', option->short_name ? ", " : "  ",
                  option->long_name, option->arg_name ? " " : "",
                  option->arg_name ? option->arg_name : "");
        fprintf (out, "  %-28s %s\n", left, option->help);
    }
    fprintf (out, "\n%s", s_exit_status_text);
}

static int
s_options_command (zq_cli_t *cli)
{
    (void)cli;
    const zq_option_info_t *info;
    for (size_t i = 0; (info = zq_options_info (i)); i++) {
        char value[64];
        if (info->type == ZQ_OPTION_STR)
            snprintf (value, sizeof value, "\"%s\"", info->default_str);
        else
            snprintf (value, sizeof value, "%lld", (long long)info->default_int);
        printf ("%-22s %-10s %s\n", info->name, value, info->help);
    }
    return ZQ_EXIT_OK;
}

//  ---- Parsing -------------------------------------------------------------------

static int
s_parse_uint (const char *text, uint64_t min, uint64_t max, uint64_t *value_p)
{
    if (!text || !*text || *text == '-' || *text == '+')
        return -1;
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull (text, &end, 10);
    if (errno || *end || value < min || value > max)
        return -1;
    *value_p = value;
    return 0;
}

//  Splits "name=value" into a new copy whose '=' became NUL; NULL if malformed.
static char *
s_split_pair (const char *text, const char **value_p)
{
    const char *equals = strchr (text, '=');
    if (!equals || equals == text)
        return NULL;
    char *copy = strdup (text);
    if (!copy)
        return NULL;
    copy[equals - text] = '\0';
    *value_p = copy + (equals - text) + 1;
    return copy;
}

static int
s_apply_option (zq_cli_t *cli, const s_option_t *option, const char *value)
{
    uint64_t number = 0;
    cli->given[option->key] = true;
    switch (option->key) {
        case ZQ_OPT_HELP:
        case ZQ_OPT_PRINT_ENDPOINT:
        case ZQ_OPT_ENVELOPE:
        case ZQ_OPT_NO_ACK:
        case ZQ_OPT_FORCE:
        case ZQ_OPT_PIN:
            return 0;
        case ZQ_OPT_COUNT:
            if (streq (value, "all")) {
                cli->count = 0;
                return 0;
            }
            if (s_parse_uint (value, 1, UINT64_MAX, &number))
                return zq_cli_usage_error (cli, "-n wants a positive number or \"all\", not '%s'",
                                           value);
            cli->count = number;
            return 0;
        case ZQ_OPT_TIMEOUT:
            if (streq (value, "-1")) {
                cli->timeout_ms = -1;
                return 0;
            }
            if (s_parse_uint (value, 0, INT32_MAX, &number))
                return zq_cli_usage_error (
                    cli, "--timeout wants milliseconds (0 or more, or -1), not '%s'", value);
            cli->timeout_ms = (int)number;
            return 0;
        case ZQ_OPT_OPTION: {
            const char *option_value = NULL;
            char *name = s_split_pair (value, &option_value);
            if (!name)
                return zq_cli_usage_error (cli, "-o wants NAME=VALUE, not '%s'", value);
            int rc = zq_options_set (cli->options, name, option_value);
            if (rc)
                zq_cli_usage_error (cli, "-o %s: %s", value,
                                    zq_options_lookup (name)
                                        ? "value out of range or malformed"
                                        : "no such option (zq options lists them)");
            free (name);
            return rc ? ZQ_EXIT_USAGE : 0;
        }
        case ZQ_OPT_HEADER: {
            if (cli->header_count == ZQ_CLI_MAX_HEADERS)
                return zq_cli_usage_error (cli, "too many -H headers");
            const char *header_value = NULL;
            char *name = s_split_pair (value, &header_value);
            if (!name)
                return zq_cli_usage_error (cli, "-H wants NAME=VALUE, not '%s'", value);
            cli->header_storage[cli->header_count] = name;
            cli->header_names[cli->header_count] = name;
            cli->header_values[cli->header_count] = header_value;
            cli->header_count++;
            return 0;
        }
        case ZQ_OPT_WAIT_SUBSCRIBERS:
            if (s_parse_uint (value, 1, INT32_MAX, &number))
                return zq_cli_usage_error (cli, "--wait-subscribers wants a positive number");
            cli->wait_subscribers = (size_t)number;
            return 0;
        case ZQ_OPT_EXEC:
            cli->exec = value;
            return 0;
        case ZQ_OPT_SIZE:
            if (s_parse_uint (value, 0, 256 * 1024 * 1024, &number))
                return zq_cli_usage_error (cli, "--size wants bytes (0 to 268435456)");
            cli->size = (size_t)number;
            return 0;
        case ZQ_OPT_TRANSPORT:
            if (!streq (value, "tcp") && !streq (value, "ipc") && !streq (value, "inproc"))
                return zq_cli_usage_error (cli, "--transport is tcp, ipc or inproc, not '%s'",
                                           value);
            cli->transport = value;
            return 0;
        case ZQ_OPT_ROUNDS:
            if (s_parse_uint (value, 1, 1000, &number))
                return zq_cli_usage_error (cli, "--rounds wants 1 to 1000");
            cli->rounds = (int)number;
            return 0;
        case ZQ_OPT_PRODUCERS:
            if (s_parse_uint (value, 1, 64, &number))
                return zq_cli_usage_error (cli, "--producers wants 1 to 64");
            cli->producers = (int)number;
            return 0;
        case ZQ_OPT_DIR:
            if (!*value)
                return zq_cli_usage_error (cli, "--dir wants a directory");
            cli->dir = value;
            return 0;
        case ZQ_OPT_BACKLOG:
            if (s_parse_uint (value, 1, UINT64_C (1000000000), &number))
                return zq_cli_usage_error (cli, "--backlog wants 1 to 1000000000 messages");
            cli->backlog = number;
            return 0;
        case ZQ_OPT_JSON:
            return 0;
        case ZQ_OPT_WATCH: {
            char *end = NULL;
            errno = 0;
            double seconds = strtod (value, &end);
            if (errno || end == value || *end || !(seconds >= 0.1 && seconds <= 86400))
                return zq_cli_usage_error (cli, "-w wants seconds (0.1 to 86400), not '%s'", value);
            cli->watch_ms = (int64_t)(seconds * 1000 + 0.5);
            return 0;
        }
        case ZQ_OPT_MAX:
            break;
    }
    return zq_cli_usage_error (cli, "internal: unhandled option");
}

//  The environment variable that stands for a command's first argument
//  when it is left out: ZQ_ADMIN for the admin verbs (synopsis "ADMIN
//  ..."), ZQ_URL for those that take a device's queue endpoint
//  ("ENDPOINTS QUEUE ..."); NULL for the others.
static const char *
s_endpoint_variable (const s_command_t *command)
{
    if (strncmp (command->synopsis, "ADMIN", 5) == 0)
        return "ZQ_ADMIN";
    if (strncmp (command->synopsis, "ENDPOINTS QUEUE", 15) == 0)
        return "ZQ_URL";
    return NULL;
}

//  Edits (insert, delete, substitute) that turn a into b, giving up past
//  S_GUESS_MAX (returned then) so long inputs cost little.
#define S_GUESS_MAX 3
static size_t
s_distance (const char *a, const char *b)
{
    size_t a_size = strlen (a), b_size = strlen (b);
    if (a_size > 64 || b_size > 64)
        return S_GUESS_MAX + 1;
    size_t row[65];
    for (size_t j = 0; j <= b_size; j++)
        row[j] = j;
    for (size_t i = 1; i <= a_size; i++) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b_size; j++) {
            size_t above = row[j];
            size_t best = diagonal + (a[i - 1] != b[j - 1]);
            if (above + 1 < best)
                best = above + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diagonal = above;
        }
    }
    return row[b_size];
}

//  The closest name within a third of its length (at least 1, at most
//  S_GUESS_MAX edits), or NULL.
static const char *
s_closest (const char *word, const char *const *names, size_t count)
{
    const char *best = NULL;
    size_t best_distance = S_GUESS_MAX + 1;
    for (size_t i = 0; i < count; i++) {
        size_t distance = s_distance (word, names[i]);
        size_t allowed = strlen (names[i]) / 3;
        if (allowed < 1)
            allowed = 1;
        if (distance <= allowed && distance < best_distance) {
            best = names[i];
            best_distance = distance;
        }
    }
    return best;
}

static const char *
s_command_guess (const char *name)
{
    const char *names[S_COMMAND_COUNT + 1];
    for (size_t i = 0; i < S_COMMAND_COUNT; i++)
        names[i] = s_commands[i].name;
    names[S_COMMAND_COUNT] = "help";
    return s_closest (name, names, S_COMMAND_COUNT + 1);
}

//  "--NAME" the command takes that is closest to the unknown arg, or NULL.
static const char *
s_option_guess (const s_command_t *command, const char *arg)
{
    static char guess[64];
    if (arg[1] != '-')
        return NULL;
    const char *word = arg + 2;
    const char *equals = strchr (word, '=');
    char name[65];
    size_t length = equals ? (size_t)(equals - word) : strlen (word);
    if (length > 64)
        return NULL;
    memcpy (name, word, length);
    name[length] = '\0';
    const char *names[S_OPTION_COUNT];
    size_t count = 0;
    for (size_t i = 0; i < S_OPTION_COUNT; i++)
        if (command->options & S_BIT (s_options[i].key))
            names[count++] = s_options[i].long_name;
    const char *found = s_closest (name, names, count);
    if (!found)
        return NULL;
    snprintf (guess, sizeof guess, "--%s", found);
    return guess;
}

//  Parses argv[first..] for command: options anywhere (GNU style), "--"
//  ends them, "-" alone is an argument. Returns 0 or an exit code.
static int
s_parse (zq_cli_t *cli, const s_command_t *command, int argc, char **argv, int first)
{
    bool options_done = false;
    for (int index = first; index < argc; index++) {
        const char *arg = argv[index];
        if (options_done || arg[0] != '-' || arg[1] == '\0') {
            if (cli->arg_count == ZQ_CLI_MAX_ARGS)
                return zq_cli_usage_error (cli, "too many arguments");
            cli->args[cli->arg_count++] = arg;
            continue;
        }
        if (streq (arg, "--")) {
            options_done = true;
            continue;
        }
        const s_option_t *option = NULL;
        const char *value = NULL;
        if (arg[1] == '-') {
            const char *name = arg + 2;
            const char *equals = strchr (name, '=');
            size_t length = equals ? (size_t)(equals - name) : strlen (name);
            for (size_t i = 0; i < S_OPTION_COUNT && !option; i++)
                if (strlen (s_options[i].long_name) == length &&
                    memcmp (s_options[i].long_name, name, length) == 0)
                    option = &s_options[i];
            if (option && equals) {
                if (!option->arg_name)
                    return zq_cli_usage_error (cli, "--%s takes no value", option->long_name);
                value = equals + 1;
            }
        } else {
            //  A letter may stand for different options in different
            //  commands (-w): the one this command takes wins.
            for (size_t i = 0; i < S_OPTION_COUNT; i++)
                if (s_options[i].short_name == arg[1] &&
                    (!option || (command->options & S_BIT (s_options[i].key))))
                    option = &s_options[i];
            if (option && arg[2]) {
                if (!option->arg_name)
                    return zq_cli_usage_error (cli, "unknown option '%s'", arg);
                value = arg + 2;
            }
        }
        if (!option || !(command->options & S_BIT (option->key))) {
            const char *guess = s_option_guess (command, arg);
            if (guess)
                return zq_cli_usage_error (cli, "unknown option '%s' (did you mean '%s'?)", arg,
                                           guess);
            return zq_cli_usage_error (cli, "unknown option '%s'", arg);
        }
        if (option->arg_name && !value) {
            if (index + 1 >= argc)
                return zq_cli_usage_error (cli, "%s needs a value (%s)", arg, option->arg_name);
            value = argv[++index];
        }
        if (option->key == ZQ_OPT_HELP) {
            s_print_command_help (command, stdout);
            cli->given[ZQ_OPT_HELP] = true;
            return 0;
        }
        int rc = s_apply_option (cli, option, value);
        if (rc)
            return rc;
    }
    const char *variable = s_endpoint_variable (command);
    const char *fallback = variable ? getenv (variable) : NULL;
    if (fallback && *fallback && cli->arg_count < command->max_args &&
        (cli->arg_count == 0 || !strstr (cli->args[0], "://"))) {
        //  The endpoint comes from the environment: arguments move up one.
        memmove (cli->args + 1, cli->args, cli->arg_count * sizeof cli->args[0]);
        cli->args[0] = fallback;
        cli->arg_count++;
    }
    if (cli->arg_count < command->min_args) {
        if (variable && (cli->arg_count == 0 || !strstr (cli->args[0], "://")))
            return zq_cli_usage_error (
                cli, "missing argument: %s (or set %s to the %s endpoint)", command->synopsis,
                variable, streq (variable, "ZQ_ADMIN") ? "device's admin" : "device's queue");
        return zq_cli_usage_error (cli, "missing argument: %s", command->synopsis);
    }
    if (cli->arg_count > command->max_args)
        return zq_cli_usage_error (cli, "too many arguments: %s", command->synopsis);
    return 0;
}

static void
s_install_signals (void)
{
    struct sigaction action;
    memset (&action, 0, sizeof action);
    action.sa_handler = s_on_signal;
    sigemptyset (&action.sa_mask);
    //  No SA_RESTART: blocking waits return EINTR so commands can stop.
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);
}

//  The library's errors go to stderr (zq req shows its notices too), so
//  that a refusal says why, not only "Invalid argument".
static void
s_log_errors (zq_log_level_t level, const char *line, void *arg)
{
    (void)level;
    zq_cli_error ((zq_cli_t *)arg, "%s", line);
}

int
main (int argc, char *argv[])
{
    zq_cli_t cli;
    memset (&cli, 0, sizeof cli);
    cli.program = "zq";
    cli.timeout_ms = ZQ_TIMEOUT_DEFAULT;
    cli.size = 100;
    cli.transport = "tcp";
    cli.rounds = 3;

    if (argc < 2)
        return zq_cli_usage_error (&cli, "missing command");
    const char *name = argv[1];
    if (streq (name, "--help") || streq (name, "-h")) {
        s_print_main_help (stdout);
        return ZQ_EXIT_OK;
    }
    if (streq (name, "--version") || streq (name, "-V")) {
        int major, minor, patch;
        zmq_version (&major, &minor, &patch);
        int version = zq_version ();
        printf ("zq %s (libzq %d.%d.%d, libzmq %d.%d.%d, czmq %d.%d.%d)\n", PACKAGE_VERSION,
                version / 10000, version / 100 % 100, version % 100, major, minor, patch,
                CZMQ_VERSION_MAJOR, CZMQ_VERSION_MINOR, CZMQ_VERSION_PATCH);
        return ZQ_EXIT_OK;
    }
    if (streq (name, "help")) {
        if (argc == 2) {
            s_print_main_help (stdout);
            return ZQ_EXIT_OK;
        }
        const s_command_t *command = s_command_lookup (argv[2]);
        if (!command)
            return zq_cli_usage_error (&cli, "no such command '%s'", argv[2]);
        s_print_command_help (command, stdout);
        return ZQ_EXIT_OK;
    }
    if (name[0] == '-')
        return zq_cli_usage_error (&cli, "unknown option '%s' (options follow the command)", name);
    const s_command_t *command = s_command_lookup (name);
    if (!command) {
        const char *guess = s_command_guess (name);
        if (guess)
            return zq_cli_usage_error (&cli, "no such command '%s' (did you mean '%s'?)", name,
                                       guess);
        return zq_cli_usage_error (&cli, "no such command '%s'", name);
    }
    cli.command = command->name;
    cli.options = zq_options_new ();
    if (!cli.options) {
        zq_cli_error (&cli, "%s", zq_strerror (errno));
        return ZQ_EXIT_TRANSPORT;
    }
    int rc = s_parse (&cli, command, argc, argv, 2);
    if (rc == 0 && !cli.given[ZQ_OPT_HELP]) {
        s_install_signals ();
        zq_set_log_handler (s_log_errors, &cli, ZQ_LOG_ERROR);
        rc = command->run (&cli);
        zq_set_log_handler (NULL, NULL, ZQ_LOG_ERROR);
    }
    zq_options_destroy (&cli.options);
    for (size_t i = 0; i < cli.header_count; i++)
        free (cli.header_storage[i]);
    if (fflush (stdout) != 0 && rc == ZQ_EXIT_OK) {
        zq_cli_error (&cli, "writing stdout: %s", strerror (errno));
        rc = ZQ_EXIT_TRANSPORT;
    }
    return rc;
}
