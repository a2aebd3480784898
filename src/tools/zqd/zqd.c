/*  =========================================================================
    zqd - the zq device daemon: reads a ZPL configuration, lets command-line
    flags override it, runs one zq_device in the foreground until SIGTERM or
    SIGINT, and logs to stderr or syslog. doc/zqd.8 is its manual.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "config.h"
#include "zqd_fatal.h"
#include <zq.h>
#include <zq_device.h>
#include <errno.h>
#include <getopt.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#ifdef HAVE_NATS
#include <nats/nats.h>
#endif

//  Exit status (doc/zqd.8).
#define S_EXIT_OK     0
#define S_EXIT_USAGE  1 //  bad command line
#define S_EXIT_CONFIG 2 //  bad configuration file or values
#define S_EXIT_START  3 //  could not start: an endpoint, a spool, ...

//  The longest wait at exit for libnats' threads to end.
#define S_NATS_CLOSE_WAIT_MS 5000

//  The file descriptors zqd asks for: one per client connection, plus
//  spool segments and libzmq's own.
#define S_WANTED_FDS 65536

//  The oldest libzmq zqd runs on: 4.3.3 has the fix for CVE-2020-15166
//  (CURVE and ZAP). configure asks for it too; this checks the library
//  actually loaded.
#define S_ZMQ_FLOOR_MAJOR 4
#define S_ZMQ_FLOOR_MINOR 3
#define S_ZMQ_FLOOR_PATCH 3

static const char *s_usage =
    "Usage: zqd [OPTIONS]\n"
    "Runs the zq device: reliable queues, streams and forwarders between services.\n"
    "\n"
    "  -c, --config FILE        read settings from FILE (ZPL; see zqd(8), doc/DEVICE.md)\n"
    "  -b, --bind ENDPOINTS     serve queues on ENDPOINTS (device/bind;\n"
    "                           default tcp://127.0.0.1:5670)\n"
    "  -a, --admin ENDPOINT     admin socket for zq stat, ls, peek, purge, redrive\n"
    "                           (device/admin; default ipc://SPOOL/admin)\n"
    "  -s, --spool DIR          keep messages in DIR (device/spool; default: memory)\n"
    "  -f, --fsync POLICY       always (default), interval or none (device/fsync)\n"
    "  -o, --option NAME=VALUE  a queue option (the queue section; zq options lists them)\n"
    "  -j, --jetstream URLS     keep every queue of kind queue in the JetStream cluster at\n"
    "                           URL[,URL...] instead of the spool (jetstream/servers)\n"
    "      --http HOST:PORT     serve /metrics, /api/queues and a status page on\n"
    "                           HOST:PORT (device/http; loopback unless --insecure)\n"
    "      --insecure           let endpoints bind beyond loopback without CURVE\n"
    "                           (device/insecure; never the admin endpoint)\n"
    "  -l, --log TARGET         stderr (default) or syslog\n"
    "  -v, --verbose            log debug lines too\n"
    "  -F, --foreground         run in the foreground (always; for service managers)\n"
    "  -C, --check              check the configuration and exit\n"
    "  -h, --help               show this help\n"
    "  -V, --version            show the version\n"
    "\n"
    "Flags override the file. Once serving, zqd prints each bound endpoint on\n"
    "stdout (\"zqd: listening on ENDPOINT\"). SIGTERM or SIGINT stops it cleanly.\n"
    "Exit status: 0 stopped cleanly, 1 bad command line, 2 bad configuration,\n"
    "3 could not start (an endpoint in use, a spool held by another zqd, ...).\n";

static bool s_syslog = false;

static void
s_log (zq_log_level_t level, const char *line, void *arg)
{
    (void)arg;
    static const char *names[] = {"error", "warning", "notice", "debug"};
    static const int priorities[] = {LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_DEBUG};
    int index = level <= ZQ_LOG_DEBUG ? (int)level : ZQ_LOG_DEBUG;
    if (s_syslog) {
        syslog (priorities[index], "%s", line);
        return;
    }
    //  stderr: a UTC timestamp (ISO 8601, milliseconds) and the level.
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    struct tm utc;
    char when[32] = "";
    if (gmtime_r (&now.tv_sec, &utc))
        strftime (when, sizeof when, "%Y-%m-%dT%H:%M:%S", &utc);
    fprintf (stderr, "%s.%03ldZ zqd: %s: %s\n", when, now.tv_nsec / 1000000L, names[index], line);
}

static void s_fail (const char *format, ...) __attribute__ ((format (printf, 1, 2)));

static void
s_fail (const char *format, ...)
{
    va_list args;
    va_start (args, format);
    char line[1024];
    vsnprintf (line, sizeof line, format, args);
    va_end (args);
    if (s_syslog)
        syslog (LOG_ERR, "%s", line);
    //  Always on stderr too: whoever started zqd sees why it stopped.
    fprintf (stderr, "zqd: %s\n", line);
}

//  Raises the soft limit on open files toward the hard limit.
static void
s_raise_fd_limit (void)
{
    struct rlimit limit;
    if (getrlimit (RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < S_WANTED_FDS) {
        rlim_t wanted = limit.rlim_max < S_WANTED_FDS ? limit.rlim_max : S_WANTED_FDS;
        if (wanted > limit.rlim_cur) {
            limit.rlim_cur = wanted;
            setrlimit (RLIMIT_NOFILE, &limit);
        }
    }
}

//  Prints where the device listens, one line per endpoint.
static void
s_print_endpoints (zactor_t *device)
{
    char *endpoint = zq_device_endpoint (device, "bind");
    if (endpoint && *endpoint)
        printf ("zqd: listening on %s\n", endpoint);
    zstr_free (&endpoint);
    endpoint = zq_device_endpoint (device, "admin");
    if (endpoint && *endpoint)
        printf ("zqd: admin on %s\n", endpoint);
    zstr_free (&endpoint);
    endpoint = zq_device_endpoint (device, "http");
    if (endpoint && *endpoint)
        printf ("zqd: http on %s\n", endpoint);
    zstr_free (&endpoint);
    zstr_send (device, "LS");
    zmsg_t *reply = zmsg_recv (device);
    char *status = reply ? zmsg_popstr (reply) : NULL;
    zframe_t *row;
    while (status && streq (status, "OK") && (row = zmsg_pop (reply))) {
        zq_msg_t *scratch = zq_msg_new (NULL);
        char *name = NULL, *kind = NULL;
        if (scratch && zq_msg_set_body (scratch, zframe_data (row), zframe_size (row)) == 0) {
            name = zq_msg_get_str (scratch, "name");
            kind = zq_msg_get_str (scratch, "kind");
        }
        if (name && kind && !streq (kind, "queue")) {
            char what[512];
            snprintf (what, sizeof what, "%s/in", name);
            char *in = zq_device_endpoint (device, what);
            snprintf (what, sizeof what, "%s/out", name);
            char *out = zq_device_endpoint (device, what);
            printf ("zqd: %s %s in %s out %s\n", kind, name, in ? in : "?", out ? out : "?");
            zstr_free (&in);
            zstr_free (&out);
        }
        free (name);
        free (kind);
        zq_msg_destroy (&scratch);
        zframe_destroy (&row);
    }
    zstr_free (&status);
    zmsg_destroy (&reply);
    fflush (stdout);
}

//  Frees what the command line parse holds; returns status.
static int
s_cleanup (zconfig_t **overrides_p, zlistx_t **options_p, int status)
{
    zconfig_destroy (overrides_p);
    zlistx_destroy (options_p);
    return status;
}

int
main (int argc, char *argv[])
{
#ifdef __GLIBC__
    //  glibc raises its mmap threshold each time a large block is freed,
    //  after which large messages come from heaps it keeps when they are
    //  freed: a burst of 1 MB messages that spilled or left would stay in
    //  zqd's resident memory. Fixed at glibc's starting value, blocks of
    //  128 KiB and more go back to the system when freed.
    mallopt (M_MMAP_THRESHOLD, 128 * 1024);
    //  That also fixes the trim threshold at 128 KiB: each thread's heap
    //  was cut back whenever that much lay free at its top, and PUT
    //  batches (64 KiB frames, read on libzmq's thread and freed on zqd's)
    //  then faulted the same pages in again, thousands to tens of
    //  thousands of times a second under a flood. Up to 4 MiB free at a
    //  heap's top is kept.
    mallopt (M_TRIM_THRESHOLD, 4 * 1024 * 1024);
#endif
    static const struct option long_options[] = {
        {"config", required_argument, NULL, 'c'},
        {"bind", required_argument, NULL, 'b'},
        {"admin", required_argument, NULL, 'a'},
        {"spool", required_argument, NULL, 's'},
        {"fsync", required_argument, NULL, 'f'},
        {"option", required_argument, NULL, 'o'},
        {"jetstream", required_argument, NULL, 'j'},
        {"insecure", no_argument, NULL, 'I'},
        {"log", required_argument, NULL, 'l'},
        {"verbose", no_argument, NULL, 'v'},
        {"foreground", no_argument, NULL, 'F'},
        {"check", no_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {"http", required_argument, NULL, 'H'},
        {NULL, 0, NULL, 0},
    };
    //  Files 0600 and directories 0700: spools, their segments, ipc sockets.
    umask (0077);
    const char *config_path = NULL;
    bool verbose = false, check_only = false;
    const char *jetstream = NULL; //  --jetstream: the servers of the jetstream section
    //  Overrides, applied on top of the file in the order given.
    zconfig_t *overrides = zconfig_new ("root", NULL);
    zlistx_t *options = zlistx_new ();
    int option;
    opterr = 0;
    while ((option = getopt_long (argc, argv, ":c:b:a:s:f:o:j:l:vFChV", long_options, NULL)) !=
           -1) {
        switch (option) {
            case 'c':
                config_path = optarg;
                break;
            case 'b':
                zconfig_put (overrides, "device/bind", optarg);
                break;
            case 'a':
                zconfig_put (overrides, "device/admin", optarg);
                break;
            case 's':
                zconfig_put (overrides, "device/spool", optarg);
                break;
            case 'f':
                zconfig_put (overrides, "device/fsync", optarg);
                break;
            case 'j':
                jetstream = optarg;
                break;
            case 'o':
                if (!strchr (optarg, '=') || *optarg == '=') {
                    fprintf (stderr, "zqd: -o wants NAME=VALUE, not '%s'\n", optarg);
                    return s_cleanup (&overrides, &options, S_EXIT_USAGE);
                }
                zlistx_add_end (options, optarg);
                break;
            case 'I':
                zconfig_put (overrides, "device/insecure", "true");
                break;
            case 'H':
                zconfig_put (overrides, "device/http", optarg);
                break;
            case 'l':
                if (streq (optarg, "syslog"))
                    s_syslog = true;
                else if (!streq (optarg, "stderr")) {
                    fprintf (stderr, "zqd: --log is stderr or syslog, not '%s'\n", optarg);
                    return s_cleanup (&overrides, &options, S_EXIT_USAGE);
                }
                break;
            case 'v':
                verbose = true;
                break;
            case 'F':
                break;
            case 'C':
                check_only = true;
                break;
            case 'h':
                fputs (s_usage, stdout);
                return s_cleanup (&overrides, &options, S_EXIT_OK);
            case 'V':
                printf ("zqd %s (libzq %d.%d.%d)\n", PACKAGE_VERSION, zq_version () / 10000,
                        zq_version () / 100 % 100, zq_version () % 100);
                return s_cleanup (&overrides, &options, S_EXIT_OK);
            case ':':
                fprintf (stderr, "zqd: %s needs a value\nTry 'zqd --help'.\n", argv[optind - 1]);
                return s_cleanup (&overrides, &options, S_EXIT_USAGE);
            default:
                fprintf (stderr, "zqd: unknown option '%s'\nTry 'zqd --help'.\n", argv[optind - 1]);
                return s_cleanup (&overrides, &options, S_EXIT_USAGE);
        }
    }
    if (optind < argc) {
        fprintf (stderr, "zqd: unexpected argument '%s'\nTry 'zqd --help'.\n", argv[optind]);
        return s_cleanup (&overrides, &options, S_EXIT_USAGE);
    }
    if (s_syslog) {
        openlog ("zqd", LOG_PID, LOG_DAEMON);
        zsys_set_logsystem (true);
        zsys_set_logident ("zqd");
    }
    zq_set_log_handler (s_log, NULL, verbose ? ZQ_LOG_DEBUG : ZQ_LOG_NOTICE);

    //  The libzmq this process loaded, not only the one it was built with.
    int major, minor, patch;
    zmq_version (&major, &minor, &patch);
    if (ZMQ_MAKE_VERSION (major, minor, patch) <
        ZMQ_MAKE_VERSION (S_ZMQ_FLOOR_MAJOR, S_ZMQ_FLOOR_MINOR, S_ZMQ_FLOOR_PATCH)) {
        s_fail ("libzmq %d.%d.%d is older than %d.%d.%d (the fix for CVE-2020-15166); "
                "install libzmq %d.%d.%d or later",
                major, minor, patch, S_ZMQ_FLOOR_MAJOR, S_ZMQ_FLOOR_MINOR, S_ZMQ_FLOOR_PATCH,
                S_ZMQ_FLOOR_MAJOR, S_ZMQ_FLOOR_MINOR, S_ZMQ_FLOOR_PATCH);
        return s_cleanup (&overrides, &options, S_EXIT_START);
    }

    //  The file, then the flags on top.
    zconfig_t *config = NULL;
    char error[1024];
    if (config_path) {
        config = zq_device_config_load (config_path, error, sizeof error);
        if (!config) {
            s_fail ("%s", error);
            return s_cleanup (&overrides, &options, S_EXIT_CONFIG);
        }
    } else
        config = zconfig_new ("root", NULL);
    for (zconfig_t *item = zconfig_locate (overrides, "device");
         item && (item = zconfig_child (item)); item = NULL)
        for (; item; item = zconfig_next (item)) {
            char path[64];
            snprintf (path, sizeof path, "device/%s", zconfig_name (item));
            zconfig_put (config, path, zconfig_value (item));
        }
    for (char *pair = (char *)zlistx_first (options); pair; pair = (char *)zlistx_next (options)) {
        char path[256];
        const char *equals = strchr (pair, '=');
        snprintf (path, sizeof path, "queue/%.*s", (int)(equals - pair), pair);
        zconfig_put (config, path, equals + 1);
    }
    if (jetstream)
        zconfig_put (config, "jetstream/servers", jetstream);
    zconfig_destroy (&overrides);
    zlistx_destroy (&options);

    if (zq_device_check (config, error, sizeof error)) {
        s_fail ("%s%s%s", config_path ? config_path : "", config_path ? ": " : "", error);
        zconfig_destroy (&config);
        return S_EXIT_CONFIG;
    }
    if (check_only) {
        printf ("zqd: configuration OK\n");
        zconfig_destroy (&config);
        return S_EXIT_OK;
    }
    //  A crash leaves its signal and stack in the log (stderr).
    if (zqd_fatal_report_install ())
        s_log (ZQ_LOG_WARNING, "fatal signals will not be reported with a stack", NULL);
    s_raise_fd_limit ();
    signal (SIGPIPE, SIG_IGN);
    //  Signals are taken by sigwait below; every thread inherits the mask.
    sigset_t signals;
    sigemptyset (&signals);
    sigaddset (&signals, SIGTERM);
    sigaddset (&signals, SIGINT);
    sigaddset (&signals, SIGHUP);
    pthread_sigmask (SIG_BLOCK, &signals, NULL);
#ifdef HAVE_NATS
    //  libnats starts here, on the thread that lives until exit, not on
    //  the device's: what it keeps per thread from its start (the crypto
    //  library's random state) then ends with the process, and is not left
    //  behind by a thread that has gone.
    if (zconfig_get (config, "jetstream/servers", NULL))
        nats_Open (-1);
#endif

    zactor_t *device = zq_device_new (config, error, sizeof error);
    zconfig_destroy (&config);
    if (!device) {
        s_fail ("%s", error);
        return errno == EINVAL ? S_EXIT_CONFIG : S_EXIT_START;
    }
    s_print_endpoints (device);
    int signum = 0;
    while (true) {
        if (sigwait (&signals, &signum))
            break;
        if (signum == SIGHUP)
            continue; //  nothing to reload yet: the configuration is read at start
        break;
    }
    char line[160];
    snprintf (line, sizeof line, "stopping on %s", strsignal (signum));
    s_log (ZQ_LOG_NOTICE, line, NULL);
    zactor_destroy (&device);
#ifdef HAVE_NATS
    //  A JetStream store started libnats' threads for the whole process
    //  (patterns/reliable_store.h): they end, and libnats lets go of what
    //  it holds, before zqd exits. A connection still closing (its server
    //  gone) can take a while: the wait is bounded, and said when it ends
    //  early.
    //  NATS_NOT_INITIALIZED: no store started libnats, nothing to end.
    natsStatus closed = nats_CloseAndWait (S_NATS_CLOSE_WAIT_MS);
    if (closed != NATS_OK && closed != NATS_NOT_INITIALIZED) {
        snprintf (line, sizeof line, "libnats did not end within %d ms: %s", S_NATS_CLOSE_WAIT_MS,
                  natsStatus_GetText (closed));
        s_log (ZQ_LOG_WARNING, line, NULL);
    }
#endif
    if (s_syslog)
        closelog ();
    return S_EXIT_OK;
}
