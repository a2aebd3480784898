/*  =========================================================================
    zq_subscriptions - the bounds on what subscribers make an XPUB socket
    hold (src/zq_subscriptions.h states them).

    A record per open connection, keyed by its file descriptor, holds the
    hex of each topic it sent: held (applied) or refused, at most
    S_MAX_REMEMBERED of them. When libzmq ends a connection in manual mode
    it hands up a withdrawal for every topic the connection had sent, with
    no descriptor, exactly as withdrawals sent over inproc arrive. So when
    the monitor says a connection went, its topics become expected
    withdrawals: one arriving without a descriptor is taken as that echo
    first, and only otherwise as an inproc subscriber's. The monitor is
    read before each frame, and again before such a withdrawal: libzmq
    reports a connection gone before it ends its pipe.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_subscriptions.h"
#include <sys/random.h>
#include <sys/socket.h>

//  Topics a connection's record remembers, held or refused: one past the
//  refusals that close it.
#define S_MAX_REMEMBERED (2 * ZQI_SUBS_MAX_PER_CONNECTION + 1)
//  What a connection's record of a prefix costs besides the prefix (libzmq
//  keeps about 230 bytes for each, against about 40 for each byte of a
//  prefix that shares nothing with the others), in bytes of prefix.
#define S_PAIR_BYTES 8
//  Most expected withdrawals kept (each up to 513 bytes of key); past it
//  they are forgotten, and a stray echo could then end the count of an
//  inproc subscription of the same topic early.
#define S_MAX_EXPECTED 8192

#define S_HELD    ((void *)1)
#define S_REFUSED ((void *)2)

//  One connection over tcp or ipc.
typedef struct {
    int fd;
    zhashx_t *topics; //  hex of a topic it sent -> S_HELD or S_REFUSED
    size_t held;
    size_t refused;
    size_t bytes; //  what its records cost (each prefix + S_PAIR_BYTES)
    bool closing; //  closed by us; what it still sends is ignored
} s_peer_t;

struct _zqi_subs_t {
    void *xpub;
    zsock_t *monitor;
    zhashx_t *peers;    //  "fd" -> s_peer_t *
    zhashx_t *local;    //  hex -> subscriptions over inproc (a count)
    zhashx_t *expected; //  hex -> withdrawals libzmq will echo (a count)
    zhashx_t *recorded; //  hex -> connections that recorded it (a count)
    size_t count;       //  subscriptions in force
    size_t bytes;       //  what the records cost: each prefix once, + S_PAIR_BYTES each
    size_t max_bytes;   //  what bytes may reach; a connection's share is
                        //  max_bytes / ZQI_SUBS_SHARES
    bool in_foreign;    //  inside a message that is no subscription
};

static void
s_peer_destroy (s_peer_t **self_p)
{
    if (*self_p) {
        zhashx_destroy (&(*self_p)->topics);
        free (*self_p);
        *self_p = NULL;
    }
}

//  Adds one to key's count in tally. Returns 0 or -1 (ENOMEM).
static int
s_tally_add (zhashx_t *tally, const char *key)
{
    uintptr_t count = (uintptr_t)zhashx_lookup (tally, key);
    zhashx_update (tally, key, (void *)(count + 1));
    return (uintptr_t)zhashx_lookup (tally, key) == count + 1 ? 0 : zqi_fail (ENOMEM);
}

//  Takes one from key's count in tally. Returns true if it was above 0.
static bool
s_tally_take (zhashx_t *tally, const char *key)
{
    uintptr_t count = (uintptr_t)zhashx_lookup (tally, key);
    if (count == 0)
        return false;
    if (count == 1)
        zhashx_delete (tally, key);
    else
        zhashx_update (tally, key, (void *)(count - 1));
    return true;
}

static void
s_key (const uint8_t *topic, size_t size, char *key)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t index = 0; index < size; index++) {
        key[2 * index] = digits[topic[index] >> 4];
        key[2 * index + 1] = digits[topic[index] & 15];
    }
    key[2 * size] = '\0';
}

//  Writes the topic of key (at most ZQI_SUBS_MAX_TOPIC bytes) into topic.
//  Returns its size.
static size_t
s_unkey (const char *key, uint8_t *topic)
{
    size_t size = strlen (key) / 2;
    for (size_t index = 0; index < size; index++) {
        char pair[3] = {key[2 * index], key[2 * index + 1], '\0'};
        topic[index] = (uint8_t)strtoul (pair, NULL, 16);
    }
    return size;
}

static void
s_tell (zqi_subs_fn *fn, void *arg, zqi_subs_event_t event, const uint8_t *topic, size_t size)
{
    if (fn)
        fn (arg, event, topic, size);
}

zqi_subs_t *
zqi_subs_new (zsock_t *xpub, size_t max_bytes)
{
    zqi_subs_t *self = (zqi_subs_t *)calloc (1, sizeof *self);
    if (!self) {
        errno = ENOMEM;
        return NULL;
    }
    self->xpub = zsock_resolve (xpub);
    self->max_bytes = max_bytes;
    self->peers = zhashx_new ();
    self->local = zhashx_new ();
    self->expected = zhashx_new ();
    self->recorded = zhashx_new ();
    int on = 1;
    int64_t max_frame = ZQI_SUBS_MAX_FRAME;
    //  Unique while the last monitor at this address may still be bound
    //  (libzmq unbinds a monitor's endpoint after zmq_socket_monitor
    //  returns).
    uint64_t nonce = 0;
    if (getrandom (&nonce, sizeof nonce, GRND_NONBLOCK) != (ssize_t)sizeof nonce)
        nonce = (uint64_t)zclock_usecs ();
    char endpoint[80];
    snprintf (endpoint, sizeof endpoint, "inproc://zq-subscriptions-%p-%016llx", (void *)self,
              (unsigned long long)nonce);
    if (!self->peers || !self->local || !self->expected || !self->recorded) {
        zqi_subs_destroy (&self);
        errno = ENOMEM;
        return NULL;
    }
    zhashx_set_destructor (self->peers, (zhashx_destructor_fn *)s_peer_destroy);
    if (zmq_setsockopt (self->xpub, ZMQ_XPUB_MANUAL, &on, sizeof on) ||
        zmq_setsockopt (self->xpub, ZMQ_MAXMSGSIZE, &max_frame, sizeof max_frame) ||
        zmq_socket_monitor (self->xpub, endpoint,
                            ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED)) {
        int saved = errno;
        zqi_subs_destroy (&self);
        errno = saved;
        return NULL;
    }
    self->monitor = zsock_new (ZMQ_PAIR);
    if (self->monitor) {
        //  libzmq waits for room to report an event: never make it wait.
        zsock_set_rcvhwm (self->monitor, 0);
        if (zsock_connect (self->monitor, "%s", endpoint) == 0)
            return self;
    }
    int saved = errno ? errno : ENOMEM;
    zqi_subs_destroy (&self);
    errno = saved;
    return NULL;
}

void
zqi_subs_destroy (zqi_subs_t **self_p)
{
    zqi_subs_t *self = *self_p;
    if (!self)
        return;
    if (self->monitor)
        zmq_socket_monitor (self->xpub, NULL, 0);
    zsock_destroy (&self->monitor);
    zhashx_destroy (&self->peers);
    zhashx_destroy (&self->local);
    zhashx_destroy (&self->expected);
    zhashx_destroy (&self->recorded);
    free (self);
    *self_p = NULL;
}

#define S_STR_(x) #x
#define S_STR(x)  S_STR_ (x)

const char *
zqi_subs_event_text (zqi_subs_event_t event)
{
    switch (event) {
        case ZQI_SUBS_REFUSED:
            return "a subscription refused: its connection holds the most "
                   "(" S_STR (ZQI_SUBS_MAX_PER_CONNECTION) ")";
        case ZQI_SUBS_CLOSED_LONG:
            return "a subscriber's connection closed: a subscription over " S_STR (
                ZQI_SUBS_MAX_TOPIC) " bytes";
        case ZQI_SUBS_CLOSED_FLOODS:
            return "a subscriber's connection closed: too many subscriptions refused";
        case ZQI_SUBS_CLOSED_FULL:
            return "a subscriber's connection closed: its subscriptions would cost more than "
                   "max_subscription_bytes in all, or for one connection more than "
                   "1/" S_STR (ZQI_SUBS_SHARES) " of it";
        default:
            return NULL;
    }
}

size_t
zqi_subs_count (zqi_subs_t *self)
{
    return self->count;
}

zsock_t *
zqi_subs_monitor (zqi_subs_t *self)
{
    return self->monitor;
}

//  What a connection's record of a prefix of size bytes costs its share:
//  the prefix in full and S_PAIR_BYTES, nothing for an empty one.
static size_t
s_own_cost (size_t size)
{
    return size ? size + S_PAIR_BYTES : 0;
}

//  What recording a prefix (key, size bytes) new to a connection costs
//  all of them: its bytes once (nothing if another connection records it)
//  and S_PAIR_BYTES, nothing for an empty one.
static size_t
s_cost (zqi_subs_t *self, const char *key, size_t size)
{
    return s_own_cost (size) - (zhashx_lookup (self->recorded, key) ? size : 0);
}

//  True if peer may record the prefix (key, size bytes) without taking
//  all connections past max_bytes or itself past its share.
static bool
s_affordable (zqi_subs_t *self, s_peer_t *peer, const char *key, size_t size)
{
    return s_cost (self, key, size) <= self->max_bytes - self->bytes &&
           s_own_cost (size) <= self->max_bytes / ZQI_SUBS_SHARES - peer->bytes;
}

//  Records that peer sent the prefix (key, size bytes; state S_HELD or
//  S_REFUSED), charging it (s_cost). Returns 0, or -1 (ENOMEM).
static int
s_record (zqi_subs_t *self, s_peer_t *peer, const char *key, size_t size, void *state)
{
    size_t cost = s_cost (self, key, size);
    if (zhashx_insert (peer->topics, key, state))
        return zqi_fail (ENOMEM);
    if (s_tally_add (self->recorded, key)) {
        zhashx_delete (peer->topics, key);
        return -1;
    }
    self->bytes += cost;
    peer->bytes += s_own_cost (size);
    return 0;
}

//  Gives back what recording the prefix (key, size bytes) cost, peer's
//  record of it being deleted or about to be.
static void
s_refund (zqi_subs_t *self, s_peer_t *peer, const char *key, size_t size)
{
    s_tally_take (self->recorded, key);
    self->bytes -= s_cost (self, key, size);
    peer->bytes -= s_own_cost (size);
}

//  A connection has gone: what it held ends, and what it sent is expected
//  back from libzmq as withdrawals.
static void
s_peer_gone (zqi_subs_t *self, int fd, zqi_subs_fn *fn, void *arg)
{
    char name[16];
    snprintf (name, sizeof name, "%d", fd);
    s_peer_t *peer = (s_peer_t *)zhashx_lookup (self->peers, name);
    if (!peer)
        return;
    for (void *item = zhashx_first (peer->topics); item; item = zhashx_next (peer->topics)) {
        const char *key = (const char *)zhashx_cursor (peer->topics);
        if (zhashx_size (self->expected) >= S_MAX_EXPECTED)
            zhashx_purge (self->expected);
        s_tally_add (self->expected, key);
        s_refund (self, peer, key, strlen (key) / 2);
        if (item == S_HELD) {
            uint8_t topic[ZQI_SUBS_MAX_TOPIC];
            size_t size = s_unkey (key, topic);
            self->count--;
            s_tell (fn, arg, ZQI_SUBS_WITHDRAWN, topic, size);
        }
    }
    zhashx_delete (self->peers, name);
}

//  Takes in the monitor's events: a record per open connection.
static void
s_monitor_drain (zqi_subs_t *self, zqi_subs_fn *fn, void *arg)
{
    void *monitor = zsock_resolve (self->monitor);
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    while (zmq_msg_recv (&frame, monitor, ZMQ_DONTWAIT) >= 0) {
        bool head = zmq_msg_size (&frame) == 6;
        uint16_t kind = 0;
        uint32_t value = 0;
        if (head) {
            memcpy (&kind, zmq_msg_data (&frame), 2);
            memcpy (&value, (const uint8_t *)zmq_msg_data (&frame) + 2, 4);
        }
        while (zmq_msg_more (&frame) && zmq_msg_recv (&frame, monitor, ZMQ_DONTWAIT) >= 0)
            ; //  the endpoint
        if (!head)
            continue;
        int fd = (int)value;
        s_peer_gone (self, fd, fn, arg); //  gone, or its number used again
        if (kind == ZMQ_EVENT_ACCEPTED || kind == ZMQ_EVENT_CONNECTED) {
            char name[16];
            snprintf (name, sizeof name, "%d", fd);
            s_peer_t *peer = (s_peer_t *)calloc (1, sizeof *peer);
            if (peer) {
                peer->fd = fd;
                peer->topics = zhashx_new ();
            }
            if (!peer || !peer->topics || zhashx_insert (self->peers, name, peer))
                s_peer_destroy (&peer);
        }
    }
    zmq_msg_close (&frame);
}

//  Refuses a subscription of peer. ZQI_SUBS_REFUSED records it (libzmq
//  has), tells fn, and closes the connection once it sent more than
//  ZQI_SUBS_MAX_PER_CONNECTION refused ones; a closing event (_CLOSED_LONG,
//  _CLOSED_FULL) closes it at once.
static void
s_refuse (zqi_subs_t *self, s_peer_t *peer, const char *key, const uint8_t *topic, size_t size,
          zqi_subs_event_t event, zqi_subs_fn *fn, void *arg)
{
    bool close_now = event != ZQI_SUBS_REFUSED;
    if (!close_now) {
        if (!zhashx_lookup (peer->topics, key) && zhashx_size (peer->topics) < S_MAX_REMEMBERED &&
            s_record (self, peer, key, size, S_REFUSED) == 0)
            peer->refused++;
        s_tell (fn, arg, event, topic, size);
    }
    if ((close_now || peer->refused > ZQI_SUBS_MAX_PER_CONNECTION) && !peer->closing) {
        //  The fd is this socket's open connection: the monitor reported
        //  it and not yet gone. libzmq sees the connection end.
        peer->closing = true;
        shutdown (peer->fd, SHUT_RDWR);
        s_tell (fn, arg, close_now ? event : ZQI_SUBS_CLOSED_FLOODS, NULL, 0);
    }
}

//  Applies, refuses or drops one subscription (first byte 1) or
//  withdrawal (0) just read.
static void
s_subscription (zqi_subs_t *self, zmq_msg_t *msg, zqi_subs_fn *fn, void *arg)
{
    const uint8_t *data = (const uint8_t *)zmq_msg_data (msg);
    const uint8_t *topic = data + 1;
    size_t size = zmq_msg_size (msg) - 1;
    bool subscribe = data[0] == 1;
    int fd = zmq_msg_get (msg, ZMQ_SRCFD);
    s_peer_t *peer = NULL;
    if (fd >= 0) {
        char name[16];
        snprintf (name, sizeof name, "%d", fd);
        peer = (s_peer_t *)zhashx_lookup (self->peers, name);
        if (!peer || peer->closing)
            return; //  from a connection gone or being closed
    }
    if (size > ZQI_SUBS_MAX_TOPIC) {
        if (peer)
            s_refuse (self, peer, NULL, topic, size, ZQI_SUBS_CLOSED_LONG, fn, arg);
        else if (subscribe)
            s_tell (fn, arg, ZQI_SUBS_REFUSED, NULL, 0);
        return;
    }
    char key[2 * ZQI_SUBS_MAX_TOPIC + 1];
    s_key (topic, size, key);
    if (!peer) {
        //  Over inproc, or libzmq's echo of a connection gone.
        if (subscribe) {
            if (s_tally_add (self->local, key))
                return;
            zmq_setsockopt (self->xpub, ZMQ_SUBSCRIBE, topic, size);
            self->count++;
            s_tell (fn, arg, ZQI_SUBS_APPLIED, topic, size);
            return;
        }
        //  libzmq's echoes come with no connection to apply them to (their
        //  ZMQ_UNSUBSCRIBE does nothing); an inproc withdrawal ends the
        //  subscription of the connection it came on.
        zmq_setsockopt (self->xpub, ZMQ_UNSUBSCRIBE, topic, size);
        s_monitor_drain (self, fn, arg);
        if (s_tally_take (self->expected, key) || !s_tally_take (self->local, key))
            return;
        self->count--;
        s_tell (fn, arg, ZQI_SUBS_WITHDRAWN, topic, size);
        return;
    }
    //  ZMQ_SUBSCRIBE and _UNSUBSCRIBE act on the connection the frame came
    //  on, whatever its record says: a record found by a reused fd may
    //  hold what a connection gone subscribed (both are idempotent).
    void *held = zhashx_lookup (peer->topics, key);
    if (!subscribe) {
        zmq_setsockopt (self->xpub, ZMQ_UNSUBSCRIBE, topic, size);
        if (held == S_HELD) {
            peer->held--;
            self->count--;
            s_tell (fn, arg, ZQI_SUBS_WITHDRAWN, topic, size);
        } else if (held == S_REFUSED)
            peer->refused--;
        if (held) {
            zhashx_delete (peer->topics, key);
            s_refund (self, peer, key, size);
        }
        return;
    }
    if (held == S_HELD) {
        zmq_setsockopt (self->xpub, ZMQ_SUBSCRIBE, topic, size);
        return; //  counted already: libzmq holds it once
    }
    //  libzmq records a topic new to the connection, applied or not.
    if (!held && !s_affordable (self, peer, key, size)) {
        s_refuse (self, peer, key, topic, size, ZQI_SUBS_CLOSED_FULL, fn, arg);
        return;
    }
    if (peer->held >= ZQI_SUBS_MAX_PER_CONNECTION) {
        s_refuse (self, peer, key, topic, size, ZQI_SUBS_REFUSED, fn, arg);
        return;
    }
    if (held == S_REFUSED) {
        zhashx_update (peer->topics, key, S_HELD); //  paid for already
        peer->refused--;
    } else if (s_record (self, peer, key, size, S_HELD))
        return;
    //  Applies to the connection this subscription came on.
    zmq_setsockopt (self->xpub, ZMQ_SUBSCRIBE, topic, size);
    peer->held++;
    self->count++;
    s_tell (fn, arg, ZQI_SUBS_APPLIED, topic, size);
}

int
zqi_subs_take (zqi_subs_t *self, size_t max_frames, zqi_subs_fn *fn, void *arg)
{
    size_t taken = 0;
    zmq_msg_t msg;
    zmq_msg_init (&msg);
    for (; taken < max_frames; taken++) {
        //  A connection's events come before what it sends.
        s_monitor_drain (self, fn, arg);
        if (zmq_msg_recv (&msg, self->xpub, ZMQ_DONTWAIT) == -1) {
            int saved = errno;
            zmq_msg_close (&msg);
            return saved == EAGAIN ? (int)taken : zqi_fail (saved);
        }
        const uint8_t *data = (const uint8_t *)zmq_msg_data (&msg);
        bool more = zmq_msg_more (&msg);
        if (self->in_foreign)
            ; //  the rest of a message already counted
        else if (!more && zmq_msg_size (&msg) >= 1 && (data[0] == 0 || data[0] == 1))
            s_subscription (self, &msg, fn, arg);
        else
            s_tell (fn, arg, ZQI_SUBS_MALFORMED, NULL, 0);
        self->in_foreign = more;
    }
    zmq_msg_close (&msg);
    return (int)taken;
}
