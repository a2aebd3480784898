/*  =========================================================================
    zq_subscriptions - the bounds on what subscribers make an XPUB socket
    hold, in one place for every XPUB zq opens: the pubsub publisher
    (patterns/pubsub.c) and the device's forward (src/device/). Internal,
    never installed.

    The socket runs in ZMQ_XPUB_MANUAL mode with a largest frame of
    ZQI_SUBS_MAX_FRAME (ZMQ_MAXMSGSIZE): libzmq closes a connection that
    announces a longer frame before it stores it. Each subscription is read
    with the connection it came on (its file descriptor, ZMQ_SRCFD; a
    socket monitor says when a connection comes and goes) and applied only
    while that connection holds fewer than ZQI_SUBS_MAX_PER_CONNECTION; the
    rest are refused. A subscription longer than ZQI_SUBS_MAX_TOPIC closes
    its connection, and so do refused subscriptions past
    ZQI_SUBS_MAX_PER_CONNECTION, since libzmq keeps a record of every
    subscription a connection sent. That record is bounded across
    connections too, by a cost in bytes of topic: libzmq stores each topic
    byte by byte in a tree shared by all connections, about 40 bytes of
    memory a byte for topics that share no prefix (one 256-byte
    subscription about 10 KB, twice when applied), and about 230 bytes for
    each connection that sent it, so without that bound each connection
    could cost about 20 MB. A topic costs its bytes once, however many
    connections sent it, plus 8 for each connection (an empty one costs
    nothing); the cost of all connections' records, held or refused, stays
    within max_bytes, and each connection's own (its topics in full) within
    a share, max_bytes / ZQI_SUBS_SHARES, so that one connection cannot
    take it all. A subscription new to its connection that would pass
    either closes its connection, since a refusal would not free libzmq's
    record; the subscriber, which sees no error, connects again and sends
    its subscriptions again. This bounds what stays held once the
    subscriptions are read: while a flood of them is read, libzmq may take
    in about 10 MB of each connection sending at once before it is closed.
    When a connection goes, what it held ends. In-process (inproc://)
    connections have no descriptor: they are counted together, per topic,
    and not capped (they come from the process itself).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_SUBSCRIPTIONS_H_INCLUDED
#define ZQ_SUBSCRIPTIONS_H_INCLUDED

#include "zq_internal.h"
#include <czmq.h>

//  Longest subscription (topic prefix) a subscriber may send, in bytes.
#define ZQI_SUBS_MAX_TOPIC 256
//  Most subscriptions one connection holds at once.
#define ZQI_SUBS_MAX_PER_CONNECTION 1024
//  Longest frame read on the socket: a subscription, or a command of the
//  CURVE handshake with its metadata (about 300 bytes).
#define ZQI_SUBS_MAX_FRAME 512
//  A connection's share of max_bytes (zqi_subs_new) is this part of it.
#define ZQI_SUBS_SHARES 8

typedef enum {
    ZQI_SUBS_APPLIED,       //  a subscription now in force
    ZQI_SUBS_WITHDRAWN,     //  one ended: withdrawn, or its connection went
    ZQI_SUBS_REFUSED,       //  not applied: its connection holds the most
    ZQI_SUBS_CLOSED_LONG,   //  a connection closed: a topic over the bound
    ZQI_SUBS_CLOSED_FLOODS, //  a connection closed: too many refused
    ZQI_SUBS_CLOSED_FULL,   //  a connection closed: past max_bytes or its share
    ZQI_SUBS_MALFORMED,     //  a frame that is no subscription, dropped
} zqi_subs_event_t;

//  Told of each event as it happens; topic and size are the subscription's
//  for APPLIED, WITHDRAWN and REFUSED (NULL, 0 otherwise), valid during
//  the call only.
typedef void (zqi_subs_fn) (void *arg, zqi_subs_event_t event, const uint8_t *topic, size_t size);

typedef struct _zqi_subs_t zqi_subs_t;

//  Takes charge of the subscriptions of xpub (an XPUB socket not yet bound
//  or connected): sets its ZMQ_XPUB_MANUAL and ZMQ_MAXMSGSIZE and starts
//  watching its connections, whose subscriptions may cost max_bytes in
//  all and max_bytes / ZQI_SUBS_SHARES each (those over inproc aside).
//  Returns the object, or NULL with errno.
zqi_subs_t *zqi_subs_new (zsock_t *xpub, size_t max_bytes);

//  Stops watching and frees; call before destroying the socket. Safe
//  twice; sets *self_p to NULL.
void zqi_subs_destroy (zqi_subs_t **self_p);

//  Reads at most max_frames frames waiting on the socket and applies,
//  refuses or drops each, telling fn (if not NULL) of every event.
//  Returns the frames read (fewer than max_frames: none was left), or -1
//  with errno (ETERM).
int zqi_subs_take (zqi_subs_t *self, size_t max_frames, zqi_subs_fn *fn, void *arg);

//  What a log line says of a refusal or a close (ZQI_SUBS_REFUSED and the
//  ZQI_SUBS_CLOSED_ events), for every XPUB's log alike; NULL for the
//  other events.
const char *zqi_subs_event_text (zqi_subs_event_t event);

//  Returns the subscriptions in force: one per topic per connection, and
//  one per subscription sent over inproc not yet withdrawn.
size_t zqi_subs_count (zqi_subs_t *self);

//  The monitor socket, readable when a connection comes or goes (the next
//  zqi_subs_take reads it), for a caller's poll set.
zsock_t *zqi_subs_monitor (zqi_subs_t *self);

#endif
