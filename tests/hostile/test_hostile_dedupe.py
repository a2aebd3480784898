#!/usr/bin/python3
#   Dedupe cannot be turned against another producer. A client that saw
#   one message of queue A puts decoys under the ids it expects the
#   producer to use next into its own queue B; the producer's later puts
#   to A must still be stored and delivered from A, not confirmed as
#   duplicates. zq's own ids must not be predictable from one seen id, and
#   a PUT that reuses a stored id with another body is refused, never
#   confirmed.
#
#   This Source Code Form is subject to the terms of the Mozilla Public
#   License, v. 2.0. If a copy of the MPL was not distributed with this
#   file, You can obtain one at http://mozilla.org/MPL/2.0/.
import os
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
from hostile import check  # noqa: E402

CLIENT = os.path.join(hostile.BUILDDIR, "tests", "zqd_client")
CODE_CONFLICT = hostile.CODE_CONFLICT

#   How far ahead the attacker guesses: milliseconds after the seen id and
#   sequence numbers within each millisecond (the layout of PROTOCOL.md
#   11.1 before ids carried fresh random octets).
GUESS_MS = 4000
GUESS_SEQ = 3


def old_style_ids(seen, count_ms, count_seq):
    """The ids a thread that made seen would make next if its random
    octets were fixed: every (ms, seq) after seen's, same octets 8-15."""
    ms = int.from_bytes(seen[0:6], "big")
    seq = int.from_bytes(seen[6:8], "big")
    tail = seen[8:16]
    out = []
    for step in range(count_ms):
        first = seq + 1 if step == 0 else 0
        for s in range(first, first + count_seq):
            if s <= 0xffff:
                out.append((ms + step).to_bytes(6, "big") + s.to_bytes(2, "big") + tail)
    return out


def put_all(client, queue, items):
    """Puts (id, body) pairs; returns {id: answer} (see Client.answers)."""
    for msg_id, body in items:
        _, frame = hostile.envelope(queue, body, msg_id=msg_id)
        client.put_frame(frame)
    return client.answers([msg_id for msg_id, _ in items])


def drain(client, queue, count):
    """Consumes queue until count deliveries came; acks them; checks that
    no more follow within a short wait. Returns [(id, body)]."""
    client.consume(queue, 1000)
    got = [(d[0], d[2]) for d in client.deliveries(count)]
    client.ack([msg_id for msg_id, _ in got])
    extra = client.recv_command(0.3)
    check(extra is None or extra[0][1] != hostile.DELIVER,
          "%s delivered more than %d" % (queue, count))
    return got


class LineProducer:
    """A real zq producer (zqd_client produce-lines: one thread makes every
    id) whose pace the test sets message by message."""

    def __init__(self, endpoint, queue):
        self.process = subprocess.Popen(
            [CLIENT, "produce-lines", endpoint, queue], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.buffer = b""

    def put(self, number):
        """Puts {"n": number}; waits (bounded) for its confirm."""
        self.process.stdin.write(b"%d\n" % number)
        self.process.stdin.flush()
        deadline = time.monotonic() + hostile.DEADLINE_S
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            check(left > 0, "no confirm for %d" % number)
            ready, _, _ = select.select([self.process.stdout], [], [], left)
            if ready:
                chunk = os.read(self.process.stdout.fileno(), 4096)
                if not chunk:
                    raise hostile.Failure("producer exited: %r" % self.process.stderr.read())
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        check(line == b"%d" % number, "producer printed %r" % line)

    def close(self):
        self.process.stdin.close()
        try:
            status = self.process.wait(hostile.DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        if status != 0:
            raise hostile.Failure("producer exited %d: %r" % (status, self.process.stderr.read()))


def test_predicted_ids_do_not_capture_puts():
    """The attack as reported: see one id, guess the next ones, put decoys
    under them into another queue, then let the producer go on."""
    zqd = hostile.Zqd().start()
    producer = LineProducer(zqd.endpoint, "orders")
    try:
        attacker = hostile.Client(zqd.endpoint)
        producer.put(0)
        attacker.consume("orders", 1)
        seen, _, _ = attacker.deliveries(1)[0]
        attacker.command(hostile.CANCEL, "orders")
        attacker.ack([seen])
        guesses = old_style_ids(seen, GUESS_MS, GUESS_SEQ)
        answers = put_all(attacker, "decoys", [(g, b"decoy") for g in guesses])
        check(all(a == ("confirm",) for a in answers.values()), "decoys not all stored")
        for n in range(1, 21):
            producer.put(n)
        producer.close()
        reader = hostile.Client(zqd.endpoint)
        got = drain(reader, "orders", 20)
        bodies = sorted(body["n"] for _, body in got)
        check(bodies == list(range(1, 21)), "orders holds %r" % bodies)
        guessed = set(guesses) & set(msg_id for msg_id, _ in got)
        check(not guessed, "%d of the producer's ids were guessed" % len(guessed))
        attacker.close()
        reader.close()
        zqd.stop()
    finally:
        producer.process.kill()
        zqd.close()


def test_reused_ids_in_another_queue():
    """Decoys under the producer's exact future ids, in another queue and
    held in flight there, take nothing from the producer's queue."""
    zqd = hostile.Zqd().start()
    try:
        producer = hostile.Client(zqd.endpoint)
        attacker = hostile.Client(zqd.endpoint)
        tail = os.urandom(8)
        start = int(time.time() * 1000)
        ids = [start.to_bytes(6, "big") + n.to_bytes(2, "big") + tail for n in range(21)]
        first = put_all(producer, "orders", [(ids[0], {"n": 0})])
        check(first[ids[0]] == ("confirm",), "first put: %r" % first)
        decoys = put_all(attacker, "decoys", [(i, {"decoy": 1}) for i in ids[1:]])
        check(all(a == ("confirm",) for a in decoys.values()), "decoys: %r" % decoys)
        attacker.consume("decoys", 100)
        held = attacker.deliveries(20)
        check(sorted(d[0] for d in held) == sorted(ids[1:]), "decoys delivered other ids")
        answers = put_all(producer, "orders", [(ids[n], {"n": n}) for n in range(1, 21)])
        confirmed = [i for i in ids[1:] if answers[i] == ("confirm",)]
        check(len(confirmed) == 20, "%d of 20 confirmed: %r" % (len(confirmed), answers))
        reader = hostile.Client(zqd.endpoint)
        got = drain(reader, "orders", 21)
        check([msg_id for msg_id, _ in got] == ids, "orders delivered other ids")
        check([body["n"] for _, body in got] == list(range(21)), "orders delivered other bodies")
        attacker.ack([d[0] for d in held])
        for client in (producer, attacker, reader):
            client.close()
        zqd.stop()
    finally:
        zqd.close()


def test_same_id_other_body_refused():
    """A same-id PUT to the same queue is confirmed only if its body is the
    stored one; another body gets REFUSE code 8 naming the id."""
    zqd = hostile.Zqd().start()
    try:
        producer = hostile.Client(zqd.endpoint)
        attacker = hostile.Client(zqd.endpoint)
        msg_id = hostile.new_id()
        first = put_all(producer, "orders", [(msg_id, {"amount": 10})])
        check(first[msg_id] == ("confirm",), "first put: %r" % first)
        forged = put_all(attacker, "orders", [(msg_id, {"amount": 9999})])
        check(forged[msg_id][0] == "refuse" and forged[msg_id][1] == CODE_CONFLICT,
              "same id, other body got %r" % (forged[msg_id],))
        again = put_all(producer, "orders", [(msg_id, {"amount": 10})])
        check(again[msg_id] == ("confirm",), "a true resend got %r" % (again[msg_id],))
        reader = hostile.Client(zqd.endpoint)
        got = drain(reader, "orders", 1)
        check(got == [(msg_id, {"amount": 10})], "orders delivered %r" % got)
        for client in (producer, attacker, reader):
            client.close()
        zqd.stop()
        check("other content" in zqd.stderr(), "no log line: %r" % zqd.stderr())
    finally:
        zqd.close()


hostile.main(globals())
