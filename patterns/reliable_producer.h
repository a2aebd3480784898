/*  =========================================================================
    reliable_producer - what the files of the reliable pattern's producer
    (ZQ_PRODUCER) share: its state and the functions one file calls in
    another. Internal, never installed.

    Why a memory outbox of its own beside zq_spool's memory mode: the
    ring keeps each message's wire bytes by table index and sends waiting
    records as PUT batches; a spool in memory would append, commit, read
    back and parse each record, and send PUTs one by one. Measured with
    zq bench reliable -n 100000 --rounds 1 --transport inproc -o
    fsync=none, four alternating runs each on a shared 2-core machine,
    the producer's outbox given zq_spool_new (NULL) for the spool runs:
    put_msgs_per_s median 66,500 (ring) vs 33,500 (spool in memory);
    e2e_msgs_per_s median 62,800 vs 29,000. The ring stays.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_RELIABLE_PRODUCER_H_INCLUDED
#define ZQ_RELIABLE_PRODUCER_H_INCLUDED

#include "reliable.h"

enum { ZQI_RP_SENT = 1, ZQI_RP_WAITING = 2, ZQI_RP_QUEUED = 3 };

//  What a memory outbox holds at most, in bytes, when quota_bytes is 0
//  (as a spool in memory).
#define ZQI_RP_MEMORY_QUOTA_DEFAULT (256 * 1024 * 1024)

//  The largest wire form a memory outbox keeps in a block of its own. A
//  block is its size rounded up to a multiple of ZQI_RP_SMALL_STEP, so a
//  window of small messages takes little more memory than their octets: a
//  100-octet body (about 145 on the wire) takes 192, where blocks of 512
//  for all made the window's records nearly three times larger (with those,
//  zq bench device's put cost about 10 % more CPU a message and ran about
//  10 % slower). The outbox keeps free blocks of each size for the next
//  messages, at most ZQI_RP_SMALL_SPARE octets of them in all beyond the
//  messages held.
#define ZQI_RP_SMALL_BYTES   512
#define ZQI_RP_SMALL_STEP    64
#define ZQI_RP_SMALL_CLASSES (ZQI_RP_SMALL_BYTES / ZQI_RP_SMALL_STEP)
#define ZQI_RP_SMALL_SPARE   (512 * 1024)

//  While more than this many PUTs of a memory outbox that batches are
//  sent and unconfirmed, and answers keep coming (one in the last
//  ZQI_RP_HOLD_FRESH_MS), fewer than this many small ones waiting (two
//  fit a batch) are held back: they go when this many have gathered, when
//  confirms bring those in flight down to it, when answers stop coming,
//  or at zq_queue_flush or close. The answers pace the sending: a message
//  with few or none in flight ahead of it goes at once. Without it, a
//  window larger than what one commit answers made many posts send a PUT
//  of their own, which zqd read, parsed and confirmed apart (with 65536,
//  put fell to about 1 M msgs/s: doc/DEVICE.md, the window).
#define ZQI_RP_HOLD 64
//  Answers older than this no longer hold PUTs back: a server that stopped
//  answering (a connection replaced, its answers lost) does not keep new
//  PUTs waiting for the confirm timeout.
#define ZQI_RP_HOLD_FRESH_MS 100

//  A message of the memory outbox: its one-frame wire form, written once.
//  A small one (at most ZQI_RP_SMALL_BYTES) is in a block the outbox
//  reuses, taken from its free blocks without malloc, and a send copies
//  it; a larger one is a libzmq frame, and each send passes a reference
//  to it (zmq_msg_copy shares the bytes), never a copy. size 0: a free
//  slot.
typedef struct {
    uint32_t size;
    union {
        uint8_t *small; //  size <= ZQI_RP_SMALL_BYTES
        zmq_msg_t *frame;
    };
} zqi_rp_record_t;

typedef struct {
    uint8_t id[ZQ_MSG_ID_SIZE];
    int errnum; //  0: confirmed
} zqi_rp_report_t;

struct _zqi_r_producer_t {
    zqi_r_common_t common;
    zq_spool_t *outbox; //  durable outbox, or NULL
    bool durable;
    //  Memory outbox: records by table index, and a ring of the indexes
    //  waiting to be sent (ZQI_RP_QUEUED), oldest first.
    zqi_rp_record_t *records;
    uint32_t records_capacity;
    uint32_t *ring;
    uint32_t ring_mask;
    uint32_t ring_head;
    uint32_t ring_count;
    //  The indexes of the entries sent, in the order they went (ring_mask
    //  + 1 of them, the oldest written over), each entry's number in that
    //  order in its sent field, and the number of the one whose answer
    //  comes next if answers keep that order, as a server's do: most
    //  answers find their entry there, without a hash lookup.
    uint32_t *sent_order;
    uint32_t sent_count;
    uint32_t answer_next;
    //  Free small blocks by size (ZQI_RP_SMALL_STEP, twice that, ...),
    //  each list chained through its blocks' first bytes.
    uint8_t *spare[ZQI_RP_SMALL_CLASSES];
    size_t spare_bytes;
    uint32_t held;         //  messages in the memory outbox
    uint64_t held_bytes;   //  their wire bytes
    uint64_t memory_quota; //  most wire bytes it holds (at least one message)
    size_t max_record_bytes;
    //  max_in_flight, or ZQ_PRODUCER_WINDOW_DEFAULT (include/zq_reliable.h).
    //  Under fsync "always" the window is what one fdatasync can cover:
    //  with 2 producers into zqd (zq bench device, 5 runs each on a 2-core
    //  machine), put went from 922 k msgs/s with 1000 to 1.17 M with 2000
    //  and 1.14 M with 4000, end to end from 629 k to 705 k and 729 k.
    uint32_t window;
    //  PUTs sent and unconfirmed at once: window (durable outbox), or half
    //  of it (memory outbox), so that while they wait for their confirms
    //  the other half gathers to go as PUT batches.
    uint32_t send_window;
    int64_t confirm_timeout_ms;
    int64_t connect_check_ms; //  records wait for a server: look this often
    zqi_r_table_t table;      //  PUTs sent, awaiting an answer (owner: the server sent to)
    zqi_r_peers_t peers;      //  the servers
    uint32_t sent;            //  entries in state ZQI_RP_SENT
    uint32_t returned;        //  durable: entries given back to the outbox to go again
    //  The message zq_queue_send waits for.
    bool sync_active;
    uint8_t sync_id[ZQ_MSG_ID_SIZE];
    int sync_result; //  1 waiting, 0 confirmed, else the errno
    //  Reports for zq_queue_confirmed: a ring of window entries.
    zqi_rp_report_t *reports;
    uint32_t report_head;
    uint32_t report_count;
    //  The server as its PONGs show it.
    uint8_t instance[ZQI_R_INSTANCE_SIZE];
    bool have_instance;
    int64_t last_ping;
    int64_t last_pong;
    bool server_lost; //  pings unanswered for 3 intervals
    //  When the socket was last read, whether that read emptied it, whether
    //  a post came since, and whether the last round skipped the read.
    int64_t input_tick; //  coarse clock (zqi_clock_mono_coarse)
    //  The coarse clock at the last round, at the last answer that settled
    //  a PUT sent (INT64_MIN: none yet), and whether the hold is off (a
    //  flush or close sends all that waits).
    int64_t tick;
    int64_t answer_tick;
    bool hold_off;
    bool input_drained;
    bool posted;
    bool input_skipped;
    //  PUT batches (doc/PROTOCOL.md 19.5): largest batch frame (0: none;
    //  a server that answers one with ERROR 4, 5 or 6 turns them off for
    //  the queue's life), and whether one was sent.
    size_t batch_max_bytes;
    bool batch_sent;
    //  The last batch found no room in the socket (EAGAIN): the next one
    //  is built only once libzmq says there is room (ZMQ_EVENTS).
    bool batch_blocked;
    zqi_buf_t buf;
};

//  Unconfirmed messages in the outbox (sent or not).
uint64_t zqi_rp_outbox_depth (zqi_r_producer_t *self);
//  Sends PUTs from the outbox while the window has room and a server can
//  take them. Returns 0, or -1 with errno for a socket failure.
int zqi_rp_pump (zqi_r_producer_t *self);
//  Gives a tracked record back to the outbox, to be sent again soon.
void zqi_rp_resend (zqi_r_producer_t *self, uint32_t index);
//  Gives back every record sent and not yet answered.
void zqi_rp_resend_all (zqi_r_producer_t *self);
//  True if records wait to be sent.
bool zqi_rp_unsent (zqi_r_producer_t *self);
//  True while the memory outbox holds back the PUTs waiting (ZQI_RP_HOLD).
bool zqi_rp_holding (const zqi_r_producer_t *self);
//  True if records wait to be sent and zqi_rp_pump would send some now:
//  not while the memory outbox holds them back.
bool zqi_rp_sendable (zqi_r_producer_t *self);
//  Drops a message from the outbox (confirmed, or never storable).
void zqi_rp_drop (zqi_r_producer_t *self, uint32_t index);

//  The entry an answer for id is about (the one whose answer was
//  expected next, else found by id), or ZQI_R_NONE.
uint32_t zqi_rp_answered (zqi_r_producer_t *self, const uint8_t *id);
//  Frees a record of the memory outbox (a free slot stays free); a small
//  block goes to the free blocks of its size, or to free when
//  ZQI_RP_SMALL_SPARE bytes of free blocks wait already.
void zqi_rp_record_free (zqi_r_producer_t *self, zqi_rp_record_t *record);
//  Frees the outbox's free small blocks (when the producer closes).
void zqi_rp_spare_free (zqi_r_producer_t *self);
//  Memory outbox: takes the message's wire form in, queued to be sent.
//  Returns 0, or -1 with errno ZQ_ETOOBIG or ENOMEM.
int zqi_rp_hold_msg (zqi_r_producer_t *self, const zq_msg_t *msg);
//  True if the memory outbox has room for a message of size wire bytes:
//  fewer than window messages, and its quota not passed (an empty outbox
//  takes any message max_record_bytes allows).
bool zqi_rp_memory_room (const zqi_r_producer_t *self, size_t size);
//  A server of several stopped answering: every PUT it has not confirmed
//  goes back to the outbox, to be sent to another.
void zqi_rp_peer_gone (zqi_r_producer_t *self, uint32_t peer);
//  Reads what the server sent. Returns 0, or -1 with errno for a socket
//  failure.
int zqi_rp_input (zqi_r_producer_t *self);
//  Runs due timers: deadlines of PUTs, ends of refusal backoffs, pings.
void zqi_rp_timers (zqi_r_producer_t *self, int64_t now);

#endif
