/*  =========================================================================
    zq_pubsub - the "pubsub" pattern's own verbs: a publisher's count of
    its subscribers. Subscribers choose subjects with zq_queue_subscribe
    (zq_queue.h); the option slow_subscriber is described in zq_options.h.
    Included by zq.h.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_PUBSUB_H_INCLUDED
#define ZQ_PUBSUB_H_INCLUDED

#include "zq_queue.h"

#ifdef __cplusplus
extern "C" {
#endif

//  ---- pubsub -------------------------------------------------------------
//  Each message is published on its subject. Subscribers choose subjects by
//  prefix ("" = all, "orders." = every subject starting "orders."); a new
//  subscriber receives nothing until it subscribes. Sequence numbers per
//  publisher and subject let a subscriber count lost messages in
//  stats.gaps. The first message a subscriber gets from a publisher on a
//  subject starts the count (joining late or subscribing later is not a
//  gap); after zq_queue_unsubscribe the count starts afresh for every
//  subject. A publisher that restarts counts as a new publisher.
//  Subscribing is zq_queue_subscribe (zq_queue.h). Each function here
//  fails with ENOTSUP on a queue of another pattern.

//  A publisher bounds what each subscriber's connection makes it hold
//  (doc/PROTOCOL.md 16.4): a prefix of at most 256 bytes (a longer one
//  closes the connection) and at most 1024 subscriptions per connection
//  (more are refused without an error to the subscriber; a connection
//  that sends more than 1024 refused ones is closed). What its
//  subscriptions cost, applied or refused (each prefix's bytes once for
//  all connections, plus 8 for each connection that sent it; an empty
//  prefix nothing), stays within max_subscription_bytes
//  (ZQ_SUBSCRIPTION_BYTES_DEFAULT unless set) for all connections, and
//  each connection's (its prefixes in full, plus 8 each) within an eighth
//  of it: a subscription past either closes its connection, since libzmq
//  keeps a record of it even when refused. Nine connections can use it
//  all, after which new subscriptions close their connections until some
//  leave: a publisher open to untrusted peers needs CURVE. That
//  bounds what subscriptions keep held, about 20 MiB at the default (a
//  flood read at once can make libzmq take in about 10 MiB of each
//  connection sending it before the close). A subscriber closed so sees
//  no error and connects again, and is closed again while its
//  subscriptions do not fit. The publisher logs each refusal and close,
//  one line a second at most of each kind. Connections over inproc:// are
//  not capped. Each call on a publisher reads at most 256 (a send) or
//  1024 (any other call) subscription notices; a send reads them once a
//  millisecond has passed since a send last did, or every 256 sends. A
//  subscription is in force once read.

//  Publisher: returns the number of subscriptions its subscribers hold now
//  (one per prefix per connection: a subscriber with two prefixes counts
//  twice, one that subscribes to the same prefix twice once; a
//  connection's subscriptions end when it closes; over inproc://, where
//  connections cannot be told apart, each subscription counts until it is
//  withdrawn), after taking in at most 1024 waiting notices. Returns -1
//  with errno ENOTSUP (not a publisher) or ETERM.
ZQ_EXPORT int zq_queue_subscribers (zq_queue_t *self);

//  Bytes of prefix a publisher's subscribers may hold in all, unless the
//  option max_subscription_bytes says (zq_options.h).
#define ZQ_SUBSCRIPTION_BYTES_DEFAULT (256 * 1024)

//  Publisher: waits up to timeout_ms until zq_queue_subscribers would
//  return at least count. Once it returns 0, every one of those
//  subscriptions is in force: messages sent next reach those subscribers.
//  Returns 0, or -1 with errno ZQ_ETIMEDOUT, ENOTSUP, EINTR or ETERM.
ZQ_EXPORT int zq_queue_wait_subscribers (zq_queue_t *self, size_t count, int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif
