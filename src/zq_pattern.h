/*  =========================================================================
    zq_pattern - the table of operations a messaging pattern implements, and
    the registry that finds a pattern by name. Internal, never installed.

    zq_queue.c owns the socket (made and attached through zq_socket.c), the
    options, the counters, every timeout and every wait; a pattern owns
    only what travels on its socket. The core:
      1. looks the pattern up by name and checks it has the role;
      2. creates the role's socket type, applies the common options
         (high-water marks, linger, reconnect, heartbeats, size limit,
         identity), allocates state_size zeroed bytes and calls open;
      3. attaches the endpoints (after open, so options a pattern sets, like
         ZMQ_IMMEDIATE, apply to every connection);
      4. on zq_queue_send / zq_queue_recv, calls send / recv for ONE
         non-blocking attempt (a receive of a pattern whose input is
         seldom ready starts waiting at once: recv_seldom_ready); on
         EAGAIN it waits until the caller's
         deadline (never longer than next_timer_ms at a time): through
         send_blocking / recv_blocking when the pattern has them (libzmq
         waits inside its own send or receive, with ZMQ_SNDTIMEO or
         ZMQ_RCVTIMEO set by the core), else on the socket (zmq_poll,
         ZMQ_POLLOUT or ZMQ_POLLIN, or the wait hook) and tries again;
      5. on close, calls close, destroys the socket, frees the state.
    A hook a pattern leaves NULL makes the matching call fail with ENOTSUP.
    The hooks are generic: a verb only one pattern has (rpc's reply,
    reliable's post and ack, pubsub's subscriber count) is no hook but a
    public function in that pattern's own header and file, which reaches
    its state through zqi_queue_pattern_state. Each patterns/<name>.c
    exports one `const zq_pattern_t zqi_pattern_<name>` and its public
    verbs, and keeps everything else static.
    =========================================================================
*/
#ifndef ZQ_PATTERN_H_INCLUDED
#define ZQ_PATTERN_H_INCLUDED

#include "zq_internal.h"
#include "zq_clock.h"
#include "zq_queue.h"
#include <limits.h>
#include <pthread.h>

//  What the core gives a pattern at open; it stays valid, unchanged, until
//  after close returns. Patterns keep the pointer in their state.
typedef struct {
    zsock_t *sock; //  the queue's socket
    void *handle;  //  its libzmq socket (zsock_resolve (sock))
    zq_role_t role;
    const zq_options_t *options; //  the queue's own copy
    size_t max_message_bytes;    //  for zq_msg_recv
    zq_queue_stats_t *stats;     //  patterns count dropped, gaps, ...; the
                                 //  core counts sent, received and errors
    zqi_clock_t *clock;          //  where every timer of the pattern reads
                                 //  the time (zq_clock.h); NULL: the real one
    int wake_fd;                 //  readable when a fake clock moves; -1
    //  Set by a pattern whose own thread also uses the socket (open sets
    //  it, close clears it; NULL: none): the core holds it through every
    //  call on the queue but new and close, waits included, and the
    //  pattern's thread uses the socket only while holding it. A pattern's
    //  own verbs take it too. close is called without it: the pattern
    //  stops its thread there first.
    pthread_mutex_t *lock;
    //  The application took the socket or its fd to poll them itself
    //  (zq_queue_sock, zq_queue_fd): no thread but the application's may
    //  use the socket any more.
    bool polled;
} zq_pattern_ctx_t;

//  For a role that pings by default and connects into a pipe that outlives
//  its connections: unless ctx's options set rcvhwm, sets ZMQ_RCVHWM 0 on
//  ctx->handle when the socket pings (ZMTP heartbeats), so that its
//  connects keep the rule of src/zq_socket.c (s_connect_check). What a
//  well-behaved peer sends stays bounded by the role's own window; a
//  hostile peer's flood costs memory instead of the process. Returns 0,
//  or -1 with errno.
int zqi_pattern_rcvhwm_for_pings (const zq_pattern_ctx_t *ctx);

//  What a wait hook calls instead of zmq_poll on its one socket: waits up
//  to timeout_ms (-1 = no limit) for events (ZMQ_POLLIN / ZMQ_POLLOUT) on
//  handle or, with a fake clock, for the clock to move, so the timers it
//  makes due run at once. Returns 0 (ready or not), or -1 with errno.
int zqi_pattern_poll (const zq_pattern_ctx_t *ctx, void *handle, short events, long timeout_ms);
//  As zqi_pattern_poll, and also until fd (-1: none) polls readable.
int zqi_pattern_poll_also (const zq_pattern_ctx_t *ctx, void *handle, short events, int fd,
                           long timeout_ms);

//  As zqi_pattern_poll, but waits for libzmq to signal handle at all (any
//  command to it: a message in, a peer's pipe with room again), then reads
//  its events into *events_p, which lets libzmq take those commands. For a
//  ROUTER or XPUB whose send to one peer found no room: their POLLOUT only
//  says that some peer has room, so waiting for it returns at once.
//  Returns 0 (signalled or not), or -1 with errno.
int zqi_pattern_poll_signal (const zq_pattern_ctx_t *ctx, void *handle, long timeout_ms,
                             int *events_p);

//  Test only (exported for the test programs, not part of the API): as
//  zq_queue_new, with the queue's pattern timers reading clock (NULL: the
//  real clock), which must outlive the queue. While the queue waits in
//  zq_queue_send / _recv / _post / _reply, advancing a fake clock wakes it
//  to run the pattern's timers at once; the caller's timeout_ms stays real
//  time.
ZQ_EXPORT zq_queue_t *zqi_queue_new_clocked (const char *pattern_name, zq_role_t role,
                                             const char *endpoints, const zq_options_t *options,
                                             zqi_clock_t *clock);

//  How one role is built: its socket type (0 = the pattern lacks the
//  role), whether endpoints without '@' or '>' bind, and the socket type
//  when the endpoints list has more than one item (0: socket_type).
typedef struct {
    int socket_type;
    bool binds_by_default;
    int several_socket_type;
} zq_pattern_role_t;

typedef struct {
    const char *name;
    //  Bytes of state the core allocates (zeroed) for each queue.
    size_t state_size;
    //  Indexed by zq_role_t; entry 0 unused.
    zq_pattern_role_t roles[ZQ_ROLE_MAX + 1];

    //  Required. Sets pattern socket options, initialises state. Returns 0,
    //  or -1 with errno (the core then destroys the socket; close is not
    //  called, so open frees what it allocated before failing).
    int (*open) (void *state, zq_pattern_ctx_t *ctx);

    //  Optional. Called for each endpoint (one item of the list, its '@'
    //  or '>' removed) just before the core binds (bind true) or connects
    //  it, after open: to refuse it (-1 with errno, which zq_queue_new
    //  returns) or to set options for that one connection (e.g.
    //  ZMQ_CONNECT_ROUTING_ID). Returns 0 to go on.
    int (*attaching) (void *state, const char *endpoint, bool bind);

    //  Optional. Releases state resources; returns how many messages the
    //  pattern still held (accepted by send, never handed to libzmq) and
    //  discards them. The socket is still open during the call.
    size_t (*close) (void *state);

    //  One non-blocking attempt to send: on success takes *msg_p (sets it
    //  to NULL) and returns 0; else returns -1 with errno, the caller
    //  keeping the message: EAGAIN means "no room now, wait for POLLOUT and
    //  try again"; anything else is returned to the user as is. NULL: no
    //  role of the pattern sends; for a role that does not send, return
    //  -1 with ENOTSUP.
    int (*send) (void *state, zq_msg_t **msg_p);

    //  One non-blocking attempt to receive: returns a message, or NULL with
    //  errno EAGAIN (nothing ready: the core waits for POLLIN), a malformed-
    //  input code (ZQ_EPROTO, ZQ_ETOOBIG, ZQ_EVERSION, ZQ_EDEPTH: the core
    //  counts stats.errors and tries again; every frame of the bad message
    //  must have been read), or anything else (returned to the user).
    //  NULL: no role receives; for a role that does not, return ENOTSUP.
    zq_msg_t *(*recv) (void *state);

    //  Optional. As send and recv, except that the first frame is sent or
    //  received without ZMQ_DONTWAIT: libzmq waits for it up to the
    //  socket's ZMQ_SNDTIMEO or ZMQ_RCVTIMEO (EAGAIN when that passes),
    //  which only the core sets. The core calls them, instead of polling
    //  and trying again, once send or recv found nothing to do (send_
    //  blocking only when send_wait asks for ZMQ_POLLOUT): waiting inside
    //  libzmq costs less than zmq_poll and another attempt.
    int (*send_blocking) (void *state, zq_msg_t **msg_p);
    zq_msg_t *(*recv_blocking) (void *state);

    //  Optional, with recv_blocking: true for a pattern whose messages come
    //  one at a time (a reply to each request, the next request once the
    //  last is answered), so that a receive seldom finds one already
    //  there. A zq_queue_recv allowed to wait then starts with
    //  recv_blocking, skipping the non-blocking attempt (which costs a
    //  system call in libzmq when it finds nothing). recv_blocking must
    //  then itself not wait while the pattern has anything to do or to
    //  report before the socket has input (it receives with ZMQ_DONTWAIT
    //  then, as recv would).
    bool recv_seldom_ready;

    //  Optional. Given ZMQ_EVENTS (ZMQ_POLLIN / ZMQ_POLLOUT bits), handles
    //  input that is the pattern's own (e.g. subscription notices) without
    //  blocking and returns the bits to report; -1 with errno on error.
    int (*events) (void *state, int zmq_events);

    //  Optional. Waits up to timeout_ms (-1 = no limit) until the socket
    //  may be ready for what (ZMQ_POLLIN or ZMQ_POLLOUT), for patterns whose
    //  readiness zmq_poll cannot see (an XPUB always polls writable). A
    //  pattern with timers waits through zqi_pattern_poll, which a fake
    //  clock's advance wakes. Returns 0 (ready or not: the core tries
    //  again), or -1 with errno.
    int (*wait) (void *state, short what, long timeout_ms);

    //  Optional. One non-blocking attempt to hand libzmq what send took
    //  but still holds (a batch gathered while there was no room): 0 when
    //  nothing is held any more, else -1 with errno (EAGAIN: wait for
    //  ZMQ_POLLOUT and try again). NULL: the pattern never holds any.
    int (*flush) (void *state);

    //  Optional. Milliseconds until the pattern needs send or recv to be
    //  called again for its own timers (retries, heartbeats), or -1 for
    //  none; the core never waits longer than this.
    int64_t (*next_timer_ms) (void *state);

    //  Optional. Chooses what a receiving role gets: a subject prefix
    //  (pubsub subscriber), a queue to consume (reliable consumer, or a
    //  server consuming locally). prefix is never NULL and at most
    //  ZQ_MSG_MAX_STRING bytes. Return 0 or -1 with errno.
    int (*subscribe) (void *state, const char *prefix);
    int (*unsubscribe) (void *state, const char *prefix);
    //  Optional. After send (or a verb sent through zqi_queue_send_with)
    //  failed with EAGAIN: the socket event to wait for before trying
    //  again (ZMQ_POLLOUT or ZMQ_POLLIN), or 0 when no wait can make room
    //  (the call then fails with EAGAIN at once). NULL means ZMQ_POLLOUT.
    int (*send_wait) (void *state);

    //  The pattern's own settings, ended by a row whose name is NULL (NULL:
    //  none). Names are unique across the generic options and every
    //  pattern's; zq_options reads them through zqi_pattern_options.
    const zq_option_info_t *options;
} zq_pattern_t;

//  Returns the pattern named name, or NULL.
const zq_pattern_t *zqi_pattern_lookup (const char *name);

//  ---- What a pattern's own verbs (include/zq_<pattern>.h) use ----------
//  A verb lives in its pattern's file and reaches the queue's state only
//  through the checked accessor, so a queue of another pattern can never
//  be taken for its own.

//  The checked accessor: returns queue's pattern state if queue was opened
//  for pattern, else NULL with errno EINVAL (queue NULL) or ENOTSUP (a
//  queue of another pattern). The state outlives zq_queue_close (it is
//  freed by zq_queue_destroy); see zqi_queue_is_open.
void *zqi_queue_pattern_state (zq_queue_t *queue, const zq_pattern_t *pattern);

//  True while queue's socket is open (false after zq_queue_close).
bool zqi_queue_is_open (zq_queue_t *queue);

//  One attempt of a verb that sends, as the send hook: takes *msg_p (sets
//  it to NULL) and returns 0, or returns -1 with errno, EAGAIN meaning
//  "wait for send_wait's event and try again". request is what the verb
//  was given besides the message (e.g. the request a reply answers).
typedef int (zqi_queue_attempt_fn) (void *state, const zq_msg_t *request, zq_msg_t **msg_p);

//  Sends *msg_p through attempt as zq_queue_send does with the send hook:
//  one attempt at once, then, while it fails with EAGAIN, waits for
//  send_wait's event (and the pattern's timers) up to timeout_ms (or
//  ZQ_TIMEOUT_DEFAULT: send_timeout_ms) and tries again. Counts
//  stats.sent on success. Returns 0, or -1 with errno, the caller keeping
//  the message. The queue must be open and of the caller's pattern.
int zqi_queue_send_with (zq_queue_t *queue, zqi_queue_attempt_fn *attempt, const zq_msg_t *request,
                         zq_msg_t **msg_p, int timeout_ms);

//  Waits until the socket may be ready for what (ZMQ_POLLIN or
//  ZMQ_POLLOUT), a pattern timer is due, or the deadline passes (set from
//  timeout_ms, -1 = none, at the first call, when *deadline_p is 0).
//  Returns 0 to look again, or -1 with errno EAGAIN (deadline passed),
//  EINTR or ETERM.
int zqi_queue_wait (zq_queue_t *queue, short what, int timeout_ms, int64_t *deadline_p);

//  Errors that mean "a peer sent malformed input".
static inline bool
zqi_is_bad_input (int errnum)
{
    return errnum == ZQ_EPROTO || errnum == ZQ_ETOOBIG || errnum == ZQ_EVERSION ||
           errnum == ZQ_EDEPTH;
}

//  Returns the integer option name, which zq_options_t always holds (every
//  option has a default), as an int.
static inline int
zqi_option_int (const zq_options_t *options, const char *name)
{
    int64_t value = 0;
    int rc = zq_options_get_int (options, name, &value);
    ZQ_ASSERT (rc == 0);
    return (int)value;
}

//  Reads and discards the rest of a multipart message.
static inline void
zqi_drain (void *handle)
{
    int more = 1;
    size_t size = sizeof more;
    while (zmq_getsockopt (handle, ZMQ_RCVMORE, &more, &size) == 0 && more) {
        zmq_msg_t frame;
        zmq_msg_init (&frame);
        int rc = zmq_msg_recv (&frame, handle, ZMQ_DONTWAIT);
        zmq_msg_close (&frame);
        if (rc < 0)
            break;
    }
}

//  The patterns zq is built with.
extern const zq_pattern_t zqi_pattern_pipeline;
extern const zq_pattern_t zqi_pattern_pubsub;
extern const zq_pattern_t zqi_pattern_rpc;
extern const zq_pattern_t zqi_pattern_reliable;

#endif
