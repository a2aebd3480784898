#!/usr/bin/python3
#   zqd as a stateless gateway to JetStream (zqd --jetstream): a 3-node
#   cluster (R3) and two zqd gateways on it serve the same queues.
#   - a message put through gateway A is delivered through gateway B;
#   - a NACK with a delay brings it again no sooner than that delay;
#   - TOUCHes keep a delivery past the visibility timeout;
#   - past max_attempts a message goes to NAME.dead;
#   - the same id put through both gateways is stored once;
#   - a put larger than the NATS servers or its stream take is refused
#     for good;
#   - STAT and PURGE answer through either gateway;
#   - PEEK through B shows what was put through A, in order, and takes
#     nothing (a later delivery carries the attempt it would have);
#   - a dead letter is redriven through the other gateway and delivered
#     again.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import atexit
import json
import os
import sys
import time

import msgpack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hostile
import natsserver
from hostile import check

VISIBILITY_MS = 2000
MAX_ATTEMPTS = 3
PREFIX = "T%d" % os.getpid()  # the gateways' jetstream_prefix: streams are PREFIX_NAME

_env = {}


def gateways():
    """The shared 3-node cluster and gateways A and B, started once."""
    if not _env:
        nats = natsserver.Nats(3)
        atexit.register(nats.stop)
        nats.start()
        started = {}
        for name in ("a", "b"):
            zqd = hostile.Zqd(args=["--jetstream", nats.urls(),
                                    "-o", "visibility_timeout_ms=%d" % VISIBILITY_MS,
                                    "-o", "max_attempts=%d" % MAX_ATTEMPTS,
                                    "-o", "jetstream_prefix=" + PREFIX])
            atexit.register(zqd.close)
            started[name] = zqd.start()
        _env.update(started)
        _env["nats"] = nats
    return _env["a"], _env["b"]


def queue_name(what):
    return "js-%s-%d" % (what, os.getpid())


def admin(zqd, *words):
    """One admin request; returns the reply frames (fails without one)."""
    reply = hostile.admin_request(zqd.admin, *words)
    check(reply is not None, "no answer to %r" % (words,))
    return reply


def stat(zqd, name):
    """The STAT row of name, or None while the gateway does not list it."""
    reply = admin(zqd, "STAT", name)
    return msgpack.unpackb(reply[1], raw=False) if reply[0] == b"OK" else None


def refused_line(name):
    """The gateway's line on a put to name too large for JetStream."""
    return ("JetStream did not store a put to queue %s: Message too long (larger than the NATS "
            "servers' max_payload or the stream's max_msg_size: refused for good)" % name)


def refused_for_good(producer, gateway, name, body):
    """Puts body to name through producer, which must be refused with code
    2 (too large for the store). True once gateway has logged its line on
    name (one line per 10 s at most over all queues: a test before may
    have just logged one, so callers try again until it comes)."""
    msg_id, frame = hostile.envelope(name, body)
    producer.put_frame(frame)
    answer = producer.answers([msg_id], timeout_s=10)[msg_id]
    check(answer[0] == "refuse" and answer[1] == 2 and "too large for the store" in answer[2],
          "a put too large for JetStream: %r" % (answer,))
    return refused_line(name) in gateway.stderr()


def stream_made_by_hand(name, **limits):
    """Makes the stream of queue name through the JetStream API, behind
    the gateways' backs, as an operator would, with limits (the stream
    configuration's fields) beside what the gateways would set."""
    check("." not in name and "_" not in name, "%s maps to another stream name" % name)
    stream = "%s_%s" % (PREFIX, name)
    config = {"name": stream, "subjects": ["zq.q." + stream], "retention": "workqueue",
              "storage": "file", "num_replicas": 1}
    config.update(limits)
    reply = json.loads(_env["nats"].request("$JS.API.STREAM.CREATE." + stream,
                                            json.dumps(config).encode()))
    check("error" not in reply, "the stream was not made: %r" % reply)


def large_and_small_together(producer, name, body):
    """Sends, through producer, a put to name too large for its stream
    (1024 octets, made by hand) and a put of body, together. Checks that
    the large one is refused with code 2; returns the other's answer."""
    large_id, large = hostile.envelope(name, b"x" * 1024)
    small_id, small = hostile.envelope(name, body)
    producer.put_frame(large)
    producer.put_frame(small)
    answers = producer.answers([large_id, small_id], timeout_s=10)
    check(answers[large_id][0] == "refuse" and answers[large_id][1] == 2,
          "the large one of two: %r" % (answers[large_id],))
    return answers[small_id]


def nothing_delivered(client, timeout_s):
    """True if no DELIVER reaches client within timeout_s."""
    got = client.recv_command(timeout_s, skip=(hostile.PONG, hostile.PING, hostile.ERROR))
    return got is None


def test_the_start_line_says_queues_are_in_jetstream():
    a, _ = gateways()
    started = [line for line in a.stderr().splitlines() if "zq_device: started" in line]
    check(len(started) == 1, "no single start line: %r" % started)
    check(", queues kept in JetStream, spool " in started[0],
          "the start line does not say where queues are kept: %s" % started[0])
    connected = [line for line in a.stderr().splitlines() if "JetStream connected (" in line]
    check(len(connected) == 1, "no single connected line: %r" % connected)


def test_put_through_a_is_delivered_through_b():
    a, b = gateways()
    name = queue_name("ab")
    producer = hostile.Client(a.endpoint)
    consumer = hostile.Client(b.endpoint)
    try:
        ids = producer.put_confirmed(name, ["m%d" % i for i in range(20)])
        consumer.consume(name, 50)
        got = consumer.deliveries(20)
        check(sorted(d[0] for d in got) == sorted(ids), "other ids delivered")
        check(all(d[1][4] == 0 for d in got), "first deliveries carry attempt 0")
        consumer.ack([d[0] for d in got])
        check(nothing_delivered(consumer, 1.0), "an acked message came again")
    finally:
        producer.close()
        consumer.close()


def test_a_put_larger_than_jetstream_takes_is_refused_for_good():
    """A message within zq's max_message_bytes (1 MiB, the envelope) that
    the NATS servers' max_payload (1 MiB, with the message's headers) does
    not take is never storable there: REFUSE 2 (give up), not 3 (retry
    later, again and again), and the queue takes the next put."""
    a, _ = gateways()
    name = queue_name("large")
    producer = hostile.Client(a.endpoint)
    try:
        #  An envelope 8 octets under 1 MiB: zq takes it, the 32 hex digits
        #  of its Nats-Msg-Id header alone take it past max_payload.
        body_size = 1024 * 1024 - 8
        body_size -= len(hostile.envelope(name, b"x" * body_size)[1]) - (1024 * 1024 - 8)
        body = b"x" * body_size
        frame = hostile.envelope(name, body)[1]
        check(len(frame) == 1024 * 1024 - 8, "the envelope is %d octets" % len(frame))
        hostile.wait_until(lambda: refused_for_good(producer, a, name, body),
                           "the gateway's line on it", timeout_s=15, step_s=0.5)
        producer.put_confirmed(name, ["small"])
    finally:
        producer.close()


def test_a_put_larger_than_its_stream_takes_is_refused_for_good():
    """A queue whose stream an operator made with a max_msg_size smaller
    than zq's max_message_bytes: a put over it fails in its PubAck, and is
    refused with code 2 (give up), not 3; a put under it is confirmed."""
    a, _ = gateways()
    name = queue_name("small")
    stream_made_by_hand(name, max_msg_size=512)
    producer = hostile.Client(a.endpoint)
    try:
        hostile.wait_until(lambda: refused_for_good(producer, a, name, b"x" * 1024),
                           "the gateway's line on it", timeout_s=15, step_s=0.5)
        #  One too large and one that fits, sent together: answered apart.
        answer = large_and_small_together(producer, name, b"fits")
        check(answer[0] == "confirm", "the small one of two: %r" % (answer,))
        producer.put_confirmed(name, ["small"])
    finally:
        producer.close()


def test_refusals_of_two_codes_to_one_producer_are_answered_apart():
    """A queue whose stream an operator made to hold one message (discard
    new) of at most 512 octets: once it holds one, a put too large and a
    put that fits, sent together by one producer, fail for two reasons and
    are refused under their own codes: 2 (give up) and 3 (retry later)."""
    a, _ = gateways()
    name = queue_name("full")
    stream_made_by_hand(name, max_msg_size=512, max_msgs=1, discard="new")
    producer = hostile.Client(a.endpoint)
    try:
        producer.put_confirmed(name, ["the one it holds"])
        answer = large_and_small_together(producer, name, b"one too many")
        check(answer[0] == "refuse" and answer[1] == 3,
              "the one past the stream's limit: %r" % (answer,))
    finally:
        producer.close()


def test_nack_with_delay_comes_back_after_the_delay():
    a, b = gateways()
    name = queue_name("nack")
    producer = hostile.Client(a.endpoint)
    consumer = hostile.Client(b.endpoint)
    try:
        [msg_id] = producer.put_confirmed(name, ["later"])
        consumer.consume(name, 10)
        [(first, _, _)] = consumer.deliveries(1)
        check(first == msg_id, "another message delivered")
        nacked = time.monotonic()
        consumer.nack([msg_id], 1500)
        [(again, header, _)] = consumer.deliveries(1, timeout_s=10)
        waited = time.monotonic() - nacked
        check(again == msg_id, "another message came back")
        check(waited >= 1.4, "came back after %.2f s, before its 1.5 s delay" % waited)
        check(header[4] == 1, "the second delivery carries attempt %r, not 1" % header[4])
        consumer.ack([msg_id])
    finally:
        producer.close()
        consumer.close()


def test_touch_keeps_a_delivery_past_the_visibility_timeout():
    a, b = gateways()
    name = queue_name("touch")
    producer = hostile.Client(a.endpoint)
    holder = hostile.Client(b.endpoint)
    other = hostile.Client(a.endpoint)
    try:
        [msg_id] = producer.put_confirmed(name, ["long work"])
        holder.consume(name, 1)
        [(got, _, _)] = holder.deliveries(1)
        check(got == msg_id, "another message delivered")
        other.consume(name, 1)
        #  Touched every half visibility for twice the visibility timeout:
        #  never delivered again, to this consumer or another.
        until = time.monotonic() + 2 * VISIBILITY_MS / 1000.0
        while time.monotonic() < until:
            holder.touch([msg_id], VISIBILITY_MS)
            check(nothing_delivered(other, VISIBILITY_MS / 2000.0),
                  "delivered again while touched")
        holder.ack([msg_id])
        check(nothing_delivered(other, VISIBILITY_MS * 1.5 / 1000.0), "delivered again after ack")
        check(nothing_delivered(holder, 0.1), "delivered again to its holder")
    finally:
        for client in (producer, holder, other):
            client.close()


def nacked_to_dead_letter(producer, consumer, name, body):
    """Puts one message of body into name through producer; consumer takes
    it and nacks each of its MAX_ATTEMPTS deliveries (checking that each
    is that message and carries its attempt number), then it is delivered
    no more. Returns its id."""
    [msg_id] = producer.put_confirmed(name, [body])
    consumer.consume(name, 1)
    for attempt in range(MAX_ATTEMPTS):
        [(got, header, _)] = consumer.deliveries(1)
        check(got == msg_id and header[4] == attempt,
              "delivery %d carries attempt %r" % (attempt, header[4]))
        consumer.nack([msg_id], 0)
    check(nothing_delivered(consumer, 1.5), "delivered past max_attempts")
    return msg_id


def test_dead_letter_after_max_attempts():
    a, b = gateways()
    name = queue_name("dead")
    producer = hostile.Client(a.endpoint)
    consumer = hostile.Client(b.endpoint)
    dead = hostile.Client(a.endpoint)
    try:
        msg_id = nacked_to_dead_letter(producer, consumer, name, "poison")
        dead.consume(name + ".dead", 1)
        [(got, _, body)] = dead.deliveries(1)
        check(got == msg_id and body == "poison", "the dead letter is another message")
        dead.ack([msg_id])
    finally:
        for client in (producer, consumer, dead):
            client.close()


def test_the_same_id_through_both_gateways_is_stored_once():
    a, b = gateways()
    name = queue_name("dedupe")
    through_a = hostile.Client(a.endpoint)
    through_b = hostile.Client(b.endpoint)
    consumer = hostile.Client(b.endpoint)
    try:
        msg_id, frame = hostile.envelope(name, "once")
        through_a.put_frame(frame)
        check(through_a.answers([msg_id])[msg_id] == ("confirm",), "A did not confirm")
        through_b.put_frame(frame)
        check(through_b.answers([msg_id])[msg_id] == ("confirm",), "B did not confirm")
        consumer.consume(name, 10)
        [(got, _, _)] = consumer.deliveries(1)
        check(got == msg_id, "another message delivered")
        #  Acked at once. A second stored copy would come with attempt 0; the
        #  first coming again (an ack slower than the visibility timeout on a
        #  loaded machine) comes with attempt 1 or more, and is not one.
        consumer.ack([msg_id])
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            got = consumer.recv_command(deadline - time.monotonic(),
                                        skip=(hostile.PONG, hostile.PING, hostile.ERROR))
            if got is None:
                break
            command, rest = got
            if command[1] == hostile.DELIVER:
                header, _ = hostile.parse_envelope(rest[0])
                check(header[4] > 0, "the repeated put was stored twice")
                consumer.ack([header[1]])
    finally:
        for client in (through_a, through_b, consumer):
            client.close()


def test_stat_and_purge_through_either_gateway():
    a, b = gateways()
    name = queue_name("admin")
    producer = hostile.Client(a.endpoint)
    try:
        producer.put_confirmed(name, ["x%d" % i for i in range(5)])
        #  B learns of the queue from the cluster (it lists streams each second).
        row = hostile.wait_until(lambda: stat(b, name), "B to list %s" % name)
        check(row["depth"] == 5, "STAT through B: depth %r, not 5" % row["depth"])
        reply = admin(b, "PURGE", name)
        check(reply[0] == b"OK", "PURGE through B answered %r" % reply)
        purged = msgpack.unpackb(reply[1], raw=False)
        check(purged.get("purged") == 5, "PURGE dropped %r, not 5" % purged)
        row = hostile.wait_until(lambda: stat(a, name), "A to list %s" % name)
        check(row["depth"] == 0, "STAT through A after the purge: depth %r" % row["depth"])
    finally:
        producer.close()


def peek(zqd, name, count):
    """PEEK's messages as (id, attempt, body) tuples, oldest first."""
    reply = admin(zqd, "PEEK", name, str(count))
    check(reply[0] == b"OK", "PEEK %s answered %r" % (name, reply))
    seen = []
    for frame in reply[1:]:
        header, body = hostile.parse_envelope(frame)
        seen.append((header[1], header[4], body))
    return seen


def test_peek_through_b_shows_what_a_put_and_takes_nothing():
    a, b = gateways()
    name = queue_name("peek")
    producer = hostile.Client(a.endpoint)
    consumer = hostile.Client(a.endpoint)
    try:
        ids = producer.put_confirmed(name, ["p%d" % i for i in range(4)])
        hostile.wait_until(lambda: stat(b, name), "B to list %s" % name)
        seen = peek(b, name, 3)
        check([s[0] for s in seen] == ids[:3], "PEEK 3 through B shows ids %r, not %r"
              % ([s[0] for s in seen], ids[:3]))
        check([s[2] for s in seen] == ["p0", "p1", "p2"], "PEEK bodies %r" % seen)
        check(all(s[1] == 0 for s in seen), "PEEK attempts %r, not 0" % seen)
        check([s[0] for s in peek(b, name, 10)] == ids, "PEEK 10 is not all four, in order")
        row = stat(a, name)
        check(row["depth"] == 4 and row["in_flight"] == 0,
              "STAT after PEEK: depth %r, in flight %r" % (row["depth"], row["in_flight"]))
        consumer.consume(name, 10)
        got = consumer.deliveries(4)
        check([g[0] for g in got] == ids, "delivered %r after PEEK" % [g[0] for g in got])
        check(all(g[1][4] == 0 for g in got), "a PEEK counted as a delivery: %r"
              % [g[1][4] for g in got])
        #  One acked in the middle leaves a gap in the stream: stepped over
        #  (those in flight are still in the stream and shown).
        consumer.ack([ids[1]])
        left = [ids[0], ids[2], ids[3]]
        hostile.wait_until(lambda: stat(a, name)["depth"] == 3, "the ack to reach the stream")
        check([s[0] for s in peek(b, name, 10)] == left, "PEEK over the gap is not %r" % left)
        consumer.ack(left)
    finally:
        for client in (producer, consumer):
            client.close()


def test_redrive_through_the_other_gateway_delivers_the_dead_letter_again():
    a, b = gateways()
    name = queue_name("redrive")
    producer = hostile.Client(a.endpoint)
    consumer = hostile.Client(a.endpoint)
    try:
        msg_id = nacked_to_dead_letter(producer, consumer, name, "again")
        hostile.wait_until(lambda: (stat(b, name) or {}).get("dead") == 1,
                           "B to count the dead letter")
        reply = admin(b, "REDRIVE", name)
        check(reply[0] == b"OK", "REDRIVE through B answered %r" % reply)
        counted = msgpack.unpackb(reply[1], raw=False)
        check(counted.get("redriven") == 1, "REDRIVE moved %r, not 1" % counted)
        [(got, header, body)] = consumer.deliveries(1)
        check(got == msg_id and body == "again", "the redriven message is another one")
        consumer.ack([msg_id])
        row = hostile.wait_until(lambda: stat(a, name), "A to stat %s" % name)
        check(row["dead"] == 0, "STAT after REDRIVE: %r dead" % row["dead"])
    finally:
        for client in (producer, consumer):
            client.close()


hostile.main(globals())
