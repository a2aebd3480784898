/*  =========================================================================
    reliable_server_store - the reliable server's queues kept in a store
    behind the seam (patterns/reliable_store.h) instead of local spools:
    the JetStream store, when the server's options name jetstream_servers.

    The wire does not change. A PUT goes to the store's put and is
    answered from put_results: CONFIRM once the store has it (JetStream's
    PubAck), REFUSE when it has not: code 2 (never storable) when it is
    too large for the store, else storage failed or busy (retry). A
    CONSUME adds its prefetch to the credit the server wants of the queue;
    each delivery the store hands out goes to a consumer of that queue with
    room as a DELIVER (attempt: the store's count of deliveries, less one),
    and is held here, by id, until the consumer settles it: ACK, NACK (with
    a delay) and TOUCH go to the store's settle. Past the visibility
    timeout the consumer's credit comes back; the store delivers the
    message again on its own (AckWait), and a late ACK still reaches it.
    Dead letters, dedupe (the id as Nats-Msg-Id) and redelivery belong to
    the store; what differs from the local spools is in doc/DEVICE.md.

    patterns/reliable_server.h holds what the server's files share,
    patterns/reliable_server_store.h what this file and
    reliable_server_store_admin.c (the admin calls) share.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable_server_store.h"

#define S_SWEEP_MS      100 //  deliveries past their visibility looked for once per this
#define S_RESUME_MS     10  //  a delivery held for a consumer with room is tried again after
#define S_WAIT_FACTOR   4   //  a put without a result is forgotten after this many request waits
#define S_REPLICAS_AUTO 3   //  replicas when not set and three or more servers are named

void
zqi_rss_hex (const uint8_t *id, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < ZQ_MSG_ID_SIZE; i++) {
        hex[2 * i] = digits[id[i] >> 4];
        hex[2 * i + 1] = digits[id[i] & 15];
    }
    hex[2 * ZQ_MSG_ID_SIZE] = '\0';
}

static void
s_queue_destroy (void **item)
{
    zqi_rss_queue_t *queue = (zqi_rss_queue_t *)*item;
    if (!queue)
        return;
    zlistx_destroy (&queue->held);
    free (queue->consumers);
    free (queue->name);
    free (queue);
    *item = NULL;
}

static void
s_free (void **item)
{
    free (*item);
    *item = NULL;
}

static const zqi_store_ops_t *s_ops = ZQI_RSS_OPS;

static void
s_held_destroy (void **item)
{
    zqi_store_delivery_t *delivery = (zqi_store_delivery_t *)*item;
    if (delivery && s_ops)
        s_ops->delivery_destroy (&delivery);
    *item = NULL;
}

static void
s_flight_destroy (void **item)
{
    zqi_rss_flight_t *flight = (zqi_rss_flight_t *)*item;
    if (!flight)
        return;
    if (flight->delivery && s_ops)
        s_ops->delivery_destroy (&flight->delivery);
    free (flight);
    *item = NULL;
}

int
zqi_rs_store_open (zqi_r_server_t *self, const zq_options_t *options)
{
    const char *servers = zq_options_get_str (options, "jetstream_servers");
    if (!servers || !*servers)
        return 0;
    if (!s_ops) {
        zqi_log (ZQ_LOG_ERROR, "reliable: jetstream_servers: this libzq was built without libnats "
                               "(configure --with-nats)");
        return zqi_fail (ENOTSUP);
    }
    zqi_store_config_t config;
    memset (&config, 0, sizeof config);
    config.servers = servers;
#define S_STR(field_, name_)                                                                       \
    do {                                                                                           \
        const char *value_ = zq_options_get_str (options, name_);                                  \
        config.field_ = value_ && *value_ ? value_ : NULL;                                         \
    } while (0)
    S_STR (credentials, "jetstream_credentials");
    S_STR (tls_ca, "jetstream_tls_ca");
    S_STR (tls_cert, "jetstream_tls_cert");
    S_STR (tls_key, "jetstream_tls_key");
    S_STR (prefix, "jetstream_prefix");
#undef S_STR
    config.replicas = (uint32_t)zqi_r_option (options, "jetstream_replicas");
    if (config.replicas == 0) {
        uint32_t named = 1;
        for (const char *c = servers; *c; c++)
            named += *c == ',';
        config.replicas = named >= S_REPLICAS_AUTO ? S_REPLICAS_AUTO : 1;
    }
    config.visibility_ms = self->visibility_ms;
    config.max_attempts = self->max_attempts;
    config.clock = self->common.ctx->clock;
    zqi_rs_store_t *state = (zqi_rs_store_t *)calloc (1, sizeof *state);
    if (!state)
        return zqi_fail (ENOMEM);
    state->queues = zhashx_new ();
    state->waiters = zhashx_new ();
    state->flights = zhashx_new ();
    state->names = zlistx_new ();
    if (!state->queues || !state->waiters || !state->flights || !state->names) {
        self->store = state;
        zqi_rs_store_close (self);
        return zqi_fail (ENOMEM);
    }
    zhashx_set_destructor (state->queues, s_queue_destroy);
    zhashx_set_destructor (state->waiters, s_free);
    zhashx_set_destructor (state->flights, s_flight_destroy);
    zlistx_set_destructor (state->names, (zlistx_destructor_fn *)zstr_free);
    state->request_wait_ms = 5000;
    state->store = s_ops->open (&config);
    if (!state->store) {
        int saved = errno;
        zqi_log (ZQ_LOG_ERROR, "reliable: JetStream at %s: %s", servers, zq_strerror (saved));
        self->store = state;
        zqi_rs_store_close (self);
        return zqi_fail (saved);
    }
    self->store = state;
    return 0;
}

void
zqi_rs_store_close (zqi_r_server_t *self)
{
    zqi_rs_store_t *state = self->store;
    if (!state)
        return;
    //  Deliveries not settled go again after their visibility timeout;
    //  puts without a result are not confirmed (their producers resend).
    zhashx_destroy (&state->flights);
    zhashx_destroy (&state->queues);
    zhashx_destroy (&state->waiters);
    zlistx_destroy (&state->names);
    if (state->store)
        s_ops->destroy (&state->store);
    free (state);
    self->store = NULL;
}

int
zqi_rs_store_fd (zqi_r_server_t *self)
{
    return self->store ? s_ops->signal_fd (self->store->store) : zqi_rs_committer_fd (self);
}

//  The queue of name (a valid name), made when create; NULL and errno
//  (ZQ_ENOTFOUND, ZQ_ELIMIT past max_queues, ENOMEM).
zqi_rss_queue_t *
zqi_rss_queue (zqi_r_server_t *self, const char *name, bool create)
{
    zqi_rs_store_t *state = self->store;
    zqi_rss_queue_t *queue = (zqi_rss_queue_t *)zhashx_lookup (state->queues, name);
    if (queue || !create) {
        if (!queue)
            errno = ZQ_ENOTFOUND;
        return queue;
    }
    if (zhashx_size (state->queues) >= self->max_queues) {
        zqi_rs_limit_log (self, ZQI_RS_LIMIT_QUEUES, name);
        errno = ZQ_ELIMIT;
        return NULL;
    }
    queue = (zqi_rss_queue_t *)calloc (1, sizeof *queue);
    if (queue) {
        queue->name = strdup (name);
        queue->held = zlistx_new ();
    }
    if (!queue || !queue->name || !queue->held) {
        s_queue_destroy ((void **)&queue);
        errno = ENOMEM;
        return NULL;
    }
    zlistx_set_destructor (queue->held, s_held_destroy);
    zhashx_insert (state->queues, name, queue);
    zqi_rs_event (self, ZQI_RS_EVENT_QUEUE, "queue %s met (JetStream)", name);
    return queue;
}

//  ---- Puts ---------------------------------------------------------------

//  Logs a put to queue name that the store did not take (errnum why):
//  its producer is refused and sends it again, or, when EMSGSIZE (larger
//  than the NATS servers or the queue's stream take), refused for good.
//  One line per ZQI_RSS_FAILED_LOG_MS at most, the others counted in the
//  next.
static void
s_log_failed (zqi_r_server_t *self, const char *name, int errnum)
{
    uint64_t skipped;
    if (zqi_log_limit_due (&self->store->failed_log, zqi_r_now (&self->common),
                           ZQI_RSS_FAILED_LOG_MS, &skipped))
        zqi_log (ZQ_LOG_WARNING,
                 "reliable: JetStream did not store a put to queue %s: %s (%s); %" PRIu64
                 " more since the last line",
                 name, zq_strerror (errnum),
                 errnum == EMSGSIZE ? "larger than the NATS servers' max_payload or the "
                                      "stream's max_msg_size: refused for good"
                                    : "its producer is refused and sends it again",
                 skipped);
}

//  The answer to a put the store did not take (errnum why): never
//  storable when it is too large for the store, else retry later.
static zqi_r_code_t
s_failed_code (int errnum)
{
    return errnum == EMSGSIZE ? ZQI_R_CODE_INVALID : ZQI_R_CODE_FAILED;
}

zqi_r_code_t
zqi_rs_store_put (zqi_r_server_t *self, uint32_t peer, const char *name, const uint8_t *id,
                  const uint8_t *data, size_t size)
{
    zqi_rs_store_t *state = self->store;
    zqi_rss_queue_t *queue = zqi_rss_queue (self, name, true);
    if (!queue)
        return errno == ZQ_ELIMIT ? ZQI_R_CODE_LIMIT : ZQI_R_CODE_FAILED;
    char key[2 * ZQ_MSG_ID_SIZE + 2 + ZQ_QUEUE_NAME_MAX + sizeof ZQ_QUEUE_DEAD_SUFFIX];
    zqi_rss_hex (id, key);
    snprintf (key + 2 * ZQ_MSG_ID_SIZE, sizeof key - 2 * ZQ_MSG_ID_SIZE, "/%s", name);
    const zqi_rs_peer_t *from = &self->puts.peers[peer];
    zqi_rss_waiter_t *waiter = (zqi_rss_waiter_t *)zhashx_lookup (state->waiters, key);
    if (waiter) {
        //  The same put again (a resend) before the first was answered:
        //  both are answered by the one result.
        for (uint32_t i = 0; i < waiter->count; i++)
            if (waiter->routes[i].size == from->route_size &&
                memcmp (waiter->routes[i].route, from->route, from->route_size) == 0)
                return 0;
        if (waiter->count < ZQI_RSS_ROUTES) {
            waiter->routes[waiter->count].size = from->route_size;
            memcpy (waiter->routes[waiter->count].route, from->route, from->route_size);
            waiter->count++;
        }
        //  Else that producer resends after its confirm timeout.
        return 0;
    }
    if (s_ops->put (state->store, name, id, data, size)) {
        int saved = errno;
        queue->counters.refused++;
        if (saved == EAGAIN)
            return ZQI_R_CODE_BUSY;
        if (saved == ENAMETOOLONG || saved == EINVAL)
            return ZQI_R_CODE_INVALID; //  the client's: never storable
        s_log_failed (self, name, saved);
        return s_failed_code (saved);
    }
    waiter = (zqi_rss_waiter_t *)calloc (1, sizeof *waiter);
    if (waiter) {
        waiter->routes[0].size = from->route_size;
        memcpy (waiter->routes[0].route, from->route, from->route_size);
        waiter->count = 1;
        waiter->since = self->now;
        if (zhashx_insert (state->waiters, key, waiter))
            free (waiter);
    }
    //  Without memory to remember it, the result is not answered: the
    //  producer sends it again.
    return 0;
}

//  Sends the ids in ids (count of them) to route: CONFIRM (code 0) or
//  REFUSE with code.
static void
s_answer (zqi_r_server_t *self, const zqi_rss_route_t *route, const uint8_t *ids, size_t count,
          zqi_r_code_t code)
{
    if (code && code < ZQI_R_CODE_COUNT)
        self->refusals[code] += count;
    int rc = code ? zqi_r_put_command (&self->buf, 5, ZQI_R_REFUSE)
                  : zqi_r_put_command (&self->buf, 3, ZQI_R_CONFIRM);
    if (rc || zqi_mp_put_bin (&self->buf, ids, count * ZQ_MSG_ID_SIZE))
        return;
    if (code) {
        const char *reason =
            code == ZQI_R_CODE_BUSY ? "the JetStream store has too many puts waiting: retry later"
            : code == ZQI_R_CODE_FAILED ? "the JetStream store did not take it: retry later"
                                        : zqi_rs_code_reason (code);
        if (zqi_mp_put_uint (&self->buf, code) ||
            zqi_mp_put_str (&self->buf, reason, strlen (reason)))
            return;
    }
    zqi_rs_send_command (self, route->route, route->size, false);
}

//  The key of a put waiting for its result: hex id '/' queue.
static void
s_waiter_key (const zqi_store_result_t *result, char *key, size_t size)
{
    zqi_rss_hex (result->id, key);
    snprintf (key + 2 * ZQ_MSG_ID_SIZE, size - 2 * ZQ_MSG_ID_SIZE, "/%s", result->queue);
}

//  The answer to one result: 0 (CONFIRM) or the REFUSE code.
static zqi_r_code_t
s_result_code (const zqi_store_result_t *result)
{
    return result->errnum ? s_failed_code (result->errnum) : 0;
}

//  Answers the results collected: per producer, one CONFIRM for its ids
//  stored and one REFUSE for each code of the others.
static void
s_collect_results (zqi_r_server_t *self)
{
    zqi_rs_store_t *state = self->store;
    for (int round = 0; round < 64; round++) {
        size_t count = s_ops->put_results (state->store, state->results, ZQI_RSS_BATCH);
        if (!count)
            return;
        //  Each result's waiter, and which of its producers are answered.
        zqi_rss_waiter_t *waiters[ZQI_RSS_BATCH];
        uint8_t done[ZQI_RSS_BATCH];
        for (size_t i = 0; i < count; i++) {
            zqi_store_result_t *result = &state->results[i];
            char key[2 * ZQ_MSG_ID_SIZE + 2 + ZQI_STORE_NAME_MAX + 1];
            s_waiter_key (result, key, sizeof key);
            waiters[i] = (zqi_rss_waiter_t *)zhashx_lookup (state->waiters, key);
            done[i] = 0;
            zqi_rss_queue_t *queue =
                (zqi_rss_queue_t *)zhashx_lookup (state->queues, result->queue);
            if (queue && result->errnum == 0 && !result->duplicate)
                queue->counters.put++;
            else if (queue && result->errnum == 0)
                queue->counters.duplicates++;
            else if (queue)
                queue->counters.refused++;
            if (result->errnum)
                s_log_failed (self, result->queue, result->errnum);
        }
        //  The first producer not yet answered, with all its ids of the
        //  same outcome; again until every one is answered.
        for (size_t first = 0; first < count; first++) {
            for (uint32_t r = 0; waiters[first] && r < waiters[first]->count; r++) {
                if (done[first] & (1u << r))
                    continue;
                const zqi_rss_route_t *route = &waiters[first]->routes[r];
                zqi_r_code_t code = s_result_code (&state->results[first]);
                zqi_buf_reset (&self->bytes);
                for (size_t i = first; i < count; i++) {
                    if (s_result_code (&state->results[i]) != code || !waiters[i])
                        continue;
                    for (uint32_t k = 0; k < waiters[i]->count; k++)
                        if (!(done[i] & (1u << k)) && waiters[i]->routes[k].size == route->size &&
                            memcmp (waiters[i]->routes[k].route, route->route, route->size) == 0) {
                            done[i] |= (uint8_t)(1u << k);
                            zqi_buf_append (&self->bytes, state->results[i].id, ZQ_MSG_ID_SIZE);
                        }
                }
                if (self->bytes.size)
                    s_answer (self, route, self->bytes.data, self->bytes.size / ZQ_MSG_ID_SIZE,
                              code);
            }
        }
        for (size_t i = 0; i < count; i++) {
            char key[2 * ZQ_MSG_ID_SIZE + 2 + ZQI_STORE_NAME_MAX + 1];
            s_waiter_key (&state->results[i], key, sizeof key);
            zhashx_delete (state->waiters, key);
        }
    }
}

//  ---- Consumers ----------------------------------------------------------

//  The credit queue asks of the store: what its consumers have room for,
//  less what is held for them already.
static void
s_want (zqi_r_server_t *self, zqi_rss_queue_t *queue)
{
    uint64_t room = 0;
    for (uint32_t i = 0; i < queue->consumer_count; i++) {
        zqi_rs_consumer_t *consumer = &self->consumers[queue->consumers[i]];
        if (consumer->prefetch > consumer->in_flight)
            room += consumer->prefetch - consumer->in_flight;
    }
    size_t held = zlistx_size (queue->held);
    uint32_t credit =
        room > held ? (room - held > UINT32_MAX ? UINT32_MAX : (uint32_t)(room - held)) : 0;
    //  Given again each round while not 0: the store spends it on what it
    //  takes, which this side may have settled already in the same round.
    if ((credit || credit != queue->wanted) &&
        s_ops->want (self->store->store, queue->name, credit) == 0)
        queue->wanted = credit;
}

//  Gives a delivery back to the store at once (it goes again).
static void
s_give_back (zqi_r_server_t *self, zqi_store_delivery_t **delivery_p)
{
    s_ops->settle (self->store->store, *delivery_p, ZQI_STORE_NACK, 0);
    s_ops->delivery_destroy (delivery_p);
}

int
zqi_rs_store_consume (zqi_r_server_t *self, uint32_t *consumer_p, const uint8_t *route,
                      size_t route_size, const char *name, uint32_t prefetch)
{
    uint32_t index = *consumer_p;
    zqi_rss_queue_t *known = (zqi_rss_queue_t *)zhashx_lookup (self->store->queues, name);
    bool renewal = false;
    if (index != ZQI_R_NONE) {
        uint32_t count = 0;
        for (zqi_rss_queue_t *queue = (zqi_rss_queue_t *)zhashx_first (self->store->queues); queue;
             queue = (zqi_rss_queue_t *)zhashx_next (self->store->queues))
            for (uint32_t i = 0; i < queue->consumer_count; i++)
                if (queue->consumers[i] == index) {
                    count++;
                    renewal |= queue == known;
                }
        if (count >= self->max_consumer_queues && !renewal) {
            zqi_rs_limit_log (self, ZQI_RS_LIMIT_CONSUMER, name);
            return zqi_fail (ZQ_ELIMIT);
        }
    }
    zqi_rss_queue_t *queue = known ? known : zqi_rss_queue (self, name, true);
    if (!queue)
        return -1;
    if (index == ZQI_R_NONE) {
        index = zqi_rs_consumer_new (self, route, route_size);
        if (index == ZQI_R_NONE)
            return zqi_fail (ENOMEM);
        *consumer_p = index;
    }
    if (!renewal) {
        if (queue->consumer_count == queue->consumer_capacity) {
            uint32_t capacity = queue->consumer_capacity ? queue->consumer_capacity * 2 : 4;
            uint32_t *grown = (uint32_t *)realloc (queue->consumers, capacity * sizeof (uint32_t));
            if (!grown)
                return zqi_fail (ENOMEM);
            queue->consumers = grown;
            queue->consumer_capacity = capacity;
        }
        queue->consumers[queue->consumer_count++] = index;
    }
    self->consumers[index].prefetch = prefetch;
    s_want (self, queue);
    return 0;
}

void
zqi_rs_store_cancel (zqi_r_server_t *self, uint32_t consumer, const char *name)
{
    zqi_rss_queue_t *queue = (zqi_rss_queue_t *)zhashx_lookup (self->store->queues, name);
    if (!queue || consumer == ZQI_R_NONE)
        return;
    for (uint32_t i = 0; i < queue->consumer_count; i++)
        if (queue->consumers[i] == consumer) {
            queue->consumers[i] = queue->consumers[--queue->consumer_count];
            break;
        }
    if (!queue->consumer_count) {
        //  No one left to take what is held: it goes back now.
        zqi_store_delivery_t *delivery;
        while ((delivery = (zqi_store_delivery_t *)zlistx_detach (queue->held, NULL)))
            s_give_back (self, &delivery);
    }
    s_want (self, queue);
}

//  The flight of id, if any.
static zqi_rss_flight_t *
s_flight (zqi_r_server_t *self, const uint8_t *id, char *hex)
{
    zqi_rss_hex (id, hex);
    return (zqi_rss_flight_t *)zhashx_lookup (self->store->flights, hex);
}

//  Ends a flight: the consumer's credit comes back; the delivery goes.
void
zqi_rss_land (zqi_r_server_t *self, zqi_rss_flight_t *flight, const char *hex)
{
    if (flight->owner != ZQI_R_NONE) {
        zqi_rs_consumer_t *consumer = &self->consumers[flight->owner];
        if (consumer->in_use && consumer->in_flight)
            consumer->in_flight--;
        if (flight->queue->in_flight)
            flight->queue->in_flight--;
    }
    zhashx_delete (self->store->flights, hex);
}

void
zqi_rs_store_consumer_gone (zqi_r_server_t *self, uint32_t index)
{
    if (!self->store)
        return;
    zqi_rs_store_t *state = self->store;
    //  What it held goes back to the store at once.
    zlistx_t *keys = zhashx_keys (state->flights);
    for (const char *hex = keys ? (const char *)zlistx_first (keys) : NULL; hex;
         hex = (const char *)zlistx_next (keys)) {
        zqi_rss_flight_t *flight = (zqi_rss_flight_t *)zhashx_lookup (state->flights, hex);
        if (flight && flight->owner == index) {
            s_ops->settle (state->store, flight->delivery, ZQI_STORE_NACK, 0);
            zqi_rss_land (self, flight, hex);
        }
    }
    zlistx_destroy (&keys);
    for (zqi_rss_queue_t *queue = (zqi_rss_queue_t *)zhashx_first (state->queues); queue;
         queue = (zqi_rss_queue_t *)zhashx_next (state->queues))
        for (uint32_t i = 0; i < queue->consumer_count; i++)
            if (queue->consumers[i] == index) {
                queue->consumers[i] = queue->consumers[--queue->consumer_count];
                break;
            }
    //  The wants are set again at the end of the round (the consumer's
    //  slot is cleared after this).
}

size_t
zqi_rs_store_settle (zqi_r_server_t *self, uint32_t consumer, const zqi_r_command_t *command,
                     size_t *failed_p, int *errnum_p)
{
    size_t not_held = 0;
    uint32_t session = consumer == ZQI_R_NONE ? 0 : self->consumers[consumer].session;
    for (size_t i = 0; i < command->id_count; i++) {
        char hex[2 * ZQ_MSG_ID_SIZE + 1];
        zqi_rss_flight_t *flight = s_flight (self, command->ids + i * ZQ_MSG_ID_SIZE, hex);
        //  A delivery past its visibility timeout may still be acked by
        //  the consumer that had it (the store takes it until it has
        //  delivered it again); nothing else.
        bool owned = flight && session && flight->session == session;
        bool live = owned && flight->owner == consumer;
        if (!owned || (!live && command->kind != ZQI_R_ACK)) {
            not_held++;
            continue;
        }
        if (command->kind == ZQI_R_ACK) {
            if (s_ops->settle (self->store->store, flight->delivery, ZQI_STORE_ACK, 0)) {
                (*failed_p)++;
                *errnum_p = errno;
                continue;
            }
            flight->queue->counters.acked++;
            zqi_rss_land (self, flight, hex);
        } else if (command->kind == ZQI_R_NACK) {
            uint32_t attempt = flight->delivery->attempt ? flight->delivery->attempt - 1 : 0;
            int64_t delay = zqi_rs_nack_delay (self, command->number, attempt);
            if (delay > ZQI_STORE_DELAY_MAX_MS)
                delay = ZQI_STORE_DELAY_MAX_MS;
            flight->queue->counters.nacked++;
            //  Not passed on: the store delivers it again after AckWait.
            s_ops->settle (self->store->store, flight->delivery, ZQI_STORE_NACK, delay);
            zqi_rss_land (self, flight, hex);
        } else {
            //  JetStream restarts the whole AckWait (the visibility
            //  timeout), whatever extension was asked.
            if (s_ops->settle (self->store->store, flight->delivery, ZQI_STORE_TOUCH, 0) == 0) {
                int64_t now = zqi_r_now (&self->common);
                flight->due = now + self->visibility_ms;
                flight->forget = flight->due + self->visibility_ms;
            }
        }
    }
    return not_held;
}

void
zqi_rs_store_leave (zqi_r_server_t *self, uint32_t consumer)
{
    //  Every delivery it held goes back at once (the store counts each
    //  one delivered: JetStream 2.9 cannot take a delivery back unseen).
    zqi_rs_consumer_drop (self, consumer);
}

//  ---- Deliveries ---------------------------------------------------------

//  The next consumer of queue with room, round-robin; ZQI_R_NONE if none.
static uint32_t
s_chosen (zqi_r_server_t *self, zqi_rss_queue_t *queue)
{
    for (uint32_t tried = 0; tried < queue->consumer_count; tried++) {
        uint32_t position = (queue->rr + tried) % queue->consumer_count;
        uint32_t index = queue->consumers[position];
        zqi_rs_consumer_t *consumer = &self->consumers[index];
        if (consumer->in_use && !consumer->stalled && consumer->in_flight < consumer->prefetch) {
            queue->rr = (position + 1) % queue->consumer_count;
            return index;
        }
    }
    return ZQI_R_NONE;
}

//  Sends delivery to a consumer of queue, or holds it. Takes it.
static void
s_deliver (zqi_r_server_t *self, zqi_rss_queue_t *queue, zqi_store_delivery_t *delivery)
{
    zqi_envelope_t envelope;
    if (zqi_envelope_parse (delivery->data, delivery->size, NULL, 0, false, &envelope)) {
        //  Not a zq message: it would come back forever.
        zqi_log (ZQ_LOG_ERROR, "reliable: queue %s: a stored message is not a zq message; dropped",
                 queue->name);
        s_ops->settle (self->store->store, delivery, ZQI_STORE_ACK, 0);
        s_ops->delivery_destroy (&delivery);
        queue->counters.dropped++;
        return;
    }
    int64_t ttl_ms, not_before_ms;
    zqi_r_envelope_times (&envelope, &ttl_ms, &not_before_ms);
    int64_t wall =
        (ttl_ms >= 0 || not_before_ms >= 0) ? zqi_clock_wall (self->common.ctx->clock) : 0;
    if (ttl_ms >= 0 && zqi_r_add_ms ((int64_t)envelope.created_ms, ttl_ms) <= wall) {
        if (s_ops->settle (self->store->store, delivery, ZQI_STORE_ACK, 0) == 0)
            queue->counters.expired++;
        s_ops->delivery_destroy (&delivery);
        return;
    }
    if (not_before_ms > wall) {
        //  Back to the store until its time (this counts as one delivery).
        int64_t delay = not_before_ms - wall;
        s_ops->settle (self->store->store, delivery, ZQI_STORE_NACK,
                       delay > ZQI_STORE_DELAY_MAX_MS ? ZQI_STORE_DELAY_MAX_MS : delay);
        s_ops->delivery_destroy (&delivery);
        return;
    }
    uint32_t chosen = s_chosen (self, queue);
    if (chosen == ZQI_R_NONE) {
        if (queue->consumer_count)
            zlistx_add_end (queue->held, delivery);
        else
            s_give_back (self, &delivery);
        return;
    }
    zqi_rs_consumer_t *consumer = &self->consumers[chosen];
    uint32_t attempt = delivery->attempt ? delivery->attempt - 1 : 0;
    const void *data = delivery->data;
    size_t size = delivery->size;
    int rc = 0;
    if (attempt != envelope.attempt) {
        zq_spool_record_t record = {0, delivery->data, delivery->size};
        rc = zqi_rs_rewrite_attempt (self, &record, &envelope, attempt);
        data = self->bytes.data;
        size = self->bytes.size;
    }
    if (rc == 0)
        rc = zqi_r_put_command (&self->buf, 3, ZQI_R_DELIVER) ||
                     zqi_mp_put_uint (&self->buf, (uint64_t)self->visibility_ms) ||
                     zqi_rs_send_command (self, consumer->route, consumer->route_size, true) ||
                     zmq_send (self->common.handle, data, size, ZMQ_DONTWAIT) == -1
                 ? -1
                 : 0;
    if (rc) {
        int failure = errno;
        zlistx_add_start (queue->held, delivery);
        if (failure == EHOSTUNREACH)
            zqi_rs_consumer_drop (self, chosen);
        else
            consumer->stalled = true;
        return;
    }
    char hex[2 * ZQ_MSG_ID_SIZE + 1];
    zqi_rss_flight_t *old = s_flight (self, delivery->id, hex);
    if (old)
        zqi_rss_land (self, old, hex); //  delivered again meanwhile: this one counts
    zqi_rss_flight_t *flight = (zqi_rss_flight_t *)calloc (1, sizeof *flight);
    if (!flight || zhashx_insert (self->store->flights, hex, flight)) {
        //  Sent, but not remembered: the store delivers it again after
        //  the visibility timeout.
        free (flight);
        s_ops->delivery_destroy (&delivery);
        return;
    }
    flight->delivery = delivery;
    flight->queue = queue;
    flight->owner = chosen;
    flight->session = consumer->session;
    flight->due = self->now + self->visibility_ms;
    flight->forget = flight->due + self->visibility_ms;
    consumer->in_flight++;
    consumer->sent++;
    queue->in_flight++;
    queue->counters.delivered++;
    if (attempt)
        queue->counters.redelivered++;
}

//  Deliveries past their visibility timeout give their consumer's credit
//  back; long past it they are forgotten.
static void
s_sweep (zqi_r_server_t *self, int64_t now)
{
    zqi_rs_store_t *state = self->store;
    zlistx_t *keys = zhashx_keys (state->flights);
    for (const char *hex = keys ? (const char *)zlistx_first (keys) : NULL; hex;
         hex = (const char *)zlistx_next (keys)) {
        zqi_rss_flight_t *flight = (zqi_rss_flight_t *)zhashx_lookup (state->flights, hex);
        if (!flight)
            continue;
        if (flight->forget <= now) {
            zqi_rss_land (self, flight, hex);
            continue;
        }
        if (flight->owner != ZQI_R_NONE && flight->due <= now) {
            flight->queue->counters.timeouts++;
            zqi_rs_event (self, ZQI_RS_EVENT_REDELIVERY,
                          "queue %s: a delivery (attempt %u) passed its visibility timeout: "
                          "JetStream delivers it again",
                          flight->queue->name, flight->delivery->attempt);
            zqi_rs_consumer_t *consumer = &self->consumers[flight->owner];
            if (consumer->in_use && consumer->in_flight)
                consumer->in_flight--;
            if (flight->queue->in_flight)
                flight->queue->in_flight--;
            flight->owner = ZQI_R_NONE;
        }
    }
    zlistx_destroy (&keys);
    //  Puts the store never answered (it always should, within its
    //  request wait) are forgotten: their producers resend.
    keys = zhashx_keys (state->waiters);
    for (const char *key = keys ? (const char *)zlistx_first (keys) : NULL; key;
         key = (const char *)zlistx_next (keys)) {
        zqi_rss_waiter_t *waiter = (zqi_rss_waiter_t *)zhashx_lookup (state->waiters, key);
        if (waiter && now - waiter->since > S_WAIT_FACTOR * state->request_wait_ms)
            zhashx_delete (state->waiters, key);
    }
    zlistx_destroy (&keys);
}

void
zqi_rs_store_work (zqi_r_server_t *self)
{
    zqi_rs_store_t *state = self->store;
    s_collect_results (self);
    for (uint32_t index = 1; index < self->consumer_capacity; index++)
        self->consumers[index].stalled = false;
    //  What was held first, then what the store has brought.
    for (zqi_rss_queue_t *queue = (zqi_rss_queue_t *)zhashx_first (state->queues); queue;
         queue = (zqi_rss_queue_t *)zhashx_next (state->queues)) {
        if (!queue->consumer_count) {
            //  Its consumers left (or were dropped) meanwhile.
            zqi_store_delivery_t *delivery;
            while ((delivery = (zqi_store_delivery_t *)zlistx_detach (queue->held, NULL)))
                s_give_back (self, &delivery);
            continue;
        }
        size_t count = zlistx_size (queue->held);
        for (size_t i = 0; i < count; i++) {
            if (s_chosen (self, queue) == ZQI_R_NONE)
                break;
            zqi_store_delivery_t *delivery =
                (zqi_store_delivery_t *)zlistx_detach (queue->held, NULL);
            s_deliver (self, queue, delivery);
        }
    }
    for (int round = 0; round < 64; round++) {
        size_t count = s_ops->deliveries (state->store, state->batch, ZQI_RSS_BATCH);
        for (size_t i = 0; i < count; i++) {
            zqi_rss_queue_t *queue =
                (zqi_rss_queue_t *)zhashx_lookup (state->queues, state->batch[i]->queue);
            if (queue)
                s_deliver (self, queue, state->batch[i]);
            else
                s_give_back (self, &state->batch[i]);
        }
        if (count < ZQI_RSS_BATCH)
            break;
    }
    int64_t now = zqi_r_now (&self->common);
    if (now >= state->next_sweep) {
        state->next_sweep = now + S_SWEEP_MS;
        s_sweep (self, now);
    }
    for (zqi_rss_queue_t *queue = (zqi_rss_queue_t *)zhashx_first (state->queues); queue;
         queue = (zqi_rss_queue_t *)zhashx_next (state->queues))
        s_want (self, queue);
}

int64_t
zqi_rs_store_next_due (zqi_r_server_t *self)
{
    zqi_rs_store_t *state = self->store;
    int64_t due = state->next_sweep;
    int64_t now = zqi_r_now (&self->common);
    for (zqi_rss_queue_t *queue = (zqi_rss_queue_t *)zhashx_first (state->queues); queue;
         queue = (zqi_rss_queue_t *)zhashx_next (state->queues))
        if (zlistx_size (queue->held) && now + S_RESUME_MS < due)
            due = now + S_RESUME_MS;
    return due;
}
