/*  =========================================================================
    zq_device - the buffering device: a CZMQ actor that holds named queues
    between services, with their spools, timers and an admin socket. It
    runs inside any process (one call, zq_device_start) or as zqd(8).

    Queue kinds (doc/DEVICE.md has the details):
        queue    reliable, spool-backed, competing consumers: the "reliable"
                 pattern's server role on the device's bind endpoint. Every
                 queue of this kind shares that endpoint; the queue name is
                 the message subject, and a name nobody configured is
                 created with the defaults the first time a client uses it.
        stream   PULL (in) -> memory buffer -> PUSH (out): at most once,
                 in order; when consumers lag, messages past the memory
                 bound spill to a spool and come back from it in order.
        forward  XSUB (in) -> XPUB (out): a pub/sub forwarder that counts
                 the messages it had to drop and the gaps in what arrived.
    Streams and forwards have endpoints of their own, so they exist only
    when configured.

    The configuration is a ZPL tree (CZMQ's zconfig; keys in doc/DEVICE.md):
        device
            bind = tcp://127.0.0.1:5670     queue kind endpoint(s)
            admin = ipc:///var/lib/zqd/admin
            spool = /var/lib/zqd            (absent or "": in memory)
            fsync = always                  always | interval | none
        queues
            orders
                kind = queue
            metrics
                kind = stream
                in = tcp://127.0.0.1:5680
                out = tcp://127.0.0.1:5681

    Threads: the device runs in its own thread (the actor's); the zactor_t
    it returns is used by one thread at a time, like any socket.

    Command protocol. The actor's pipe takes these commands, each a
    multipart message of strings; every command gets exactly one reply
    whose first frame is "OK" or "ERROR" (the second frame then says why).
    An unknown or malformed command gets "ERROR", never a crash.
        ENDPOINT WHAT     -> OK ENDPOINTS    WHAT is "bind", "admin",
                             "NAME/in" or "NAME/out": the endpoints bound
                             for it, resolved (tcp://127.0.0.1:51234),
                             comma-separated; "" if none
        QUEUE NAME KIND [IN OUT]
                          -> OK              creates a queue at run time
                             (KIND queue needs no endpoints; stream and
                             forward need both); ERROR if NAME exists
                             with another kind or an endpoint fails
        LS                -> OK ROW...       one msgpack map per queue,
                             {"name", "kind"}, sorted by name
        STAT [NAME]       -> OK ROW...       one msgpack map of counters per
                             queue (doc/DEVICE.md, "Counters")
        PEEK NAME [COUNT] -> OK MSG...       up to COUNT (default 10) ready
                             messages in their one-frame wire form, oldest
                             first, without delivering them
        PURGE NAME        -> OK MAP          drops every ready message;
                             MAP is {"purged": N}
        REDRIVE NAME      -> OK MAP          moves NAME's dead letters back
                             to NAME; MAP is {"redriven": N}
        INFO              -> OK MAP          version, uptime_ms, store,
                             fsync, bind, queues and limits
                             (doc/DEVICE.md, "Command protocol")
        PING              -> OK "PONG"
        $TERM                                stops the device (no reply;
                             zactor_destroy sends it): spools are synced
                             and closed before the actor ends
    The admin socket (device/admin, a ROUTER socket: REQ or DEALER clients,
    an empty delimiter frame before the command) takes the same commands
    but ENDPOINT, QUEUE and $TERM, with the same replies.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_DEVICE_H_INCLUDED
#define ZQ_DEVICE_H_INCLUDED

#include "zq_library.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Checks a configuration without opening anything: unknown sections or
//  keys, values that do not parse, queues of an unknown kind or missing
//  their endpoints. Returns 0, or -1 with errno EINVAL and, if error is not
//  NULL, one line saying what is wrong and where ("queues/metrics/kind:
//  'strem' is not queue, stream or forward") in error (error_size bytes).
//  Also refused: unless device/curve is configured, an admin endpoint that
//  is not ipc://, inproc:// or tcp on a loopback address (127.0.0.0/8,
//  ::1, localhost), and, unless device/insecure is true too, any other
//  endpoint that is not (wildcards such as * and 0.0.0.0 are not local);
//  an access section that does not parse (doc/DEVICE.md, "Access"), or
//  one beside device/curve/clients.
ZQ_EXPORT int zq_device_check (zconfig_t *config, char *error, size_t error_size);

//  Reads the ZPL file at path into a new config tree the caller destroys
//  (zconfig_destroy). Returns it, or NULL with errno (the system's errno
//  if the file cannot be read, EINVAL if it is not ZPL, ZQ_ETOOBIG past
//  1 MiB) and one line in error.
ZQ_EXPORT zconfig_t *zq_device_config_load (const char *path, char *error, size_t error_size);

//  Starts a device configured by config (read, not kept; the caller still
//  owns and destroys it; NULL means every default). Returns the actor once
//  every endpoint is bound and every spool recovered, or NULL with errno
//  (EINVAL for a bad configuration, EADDRINUSE and the like for an
//  endpoint, EBUSY for a spool another device holds, ZQ_ECORRUPT, ...)
//  and, if error is not NULL, one line saying why; a CURVE secret-key file
//  that group or others may access is refused (EINVAL). ipc socket files
//  it binds are made 0600. Nothing is left open
//  after a failure. Destroy the device with zactor_destroy; like a queue,
//  it must be destroyed before the process exits.
//  The first CZMQ object of a process installs CZMQ's SIGINT and SIGTERM
//  handlers; as for queues, if starting the device is what did it, zq puts
//  the host's handlers back (see zq_queue.h).
ZQ_EXPORT zactor_t *zq_device_new (zconfig_t *config, char *error, size_t error_size);

//  Loads the ZPL file at config_path and starts a device from it, as
//  zq_device_new. Returns the actor, or NULL with errno (ENOENT and the
//  like if the file cannot be read, EINVAL if it is not ZPL or not a valid
//  configuration) and the reason in error.
ZQ_EXPORT zactor_t *zq_device_start (const char *config_path, char *error, size_t error_size);

//  Asks the device for the endpoints bound for what (see ENDPOINT above).
//  Returns a new string the caller frees, or NULL with errno ZQ_ENOTFOUND
//  (no such queue or endpoint), EINTR or ETERM.
ZQ_EXPORT char *zq_device_endpoint (zactor_t *device, const char *what);

#ifdef __cplusplus
}
#endif

#endif
