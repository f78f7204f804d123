"""A batch the broker refuses as too large is split, and the journal keeps every line once:
the pieces are journaled together in the batch's place (a kill -9 between two pieces loses
nothing), each piece's acknowledgement is journaled as it comes, and the next sequence of the
partition never moves back behind batches journaled before the split. The broker here keeps
Kafka's producer-state rules (storage/producer_state.py), so a resend is answered as a
duplicate exactly when Kafka would answer it so."""

from __future__ import annotations

import os
import shutil
import time

from fake_broker import ScriptedServer
from test_agent_shipper import wait_done

from logship import records
from logship.agent import journal as J
from logship.agent.batches import OutgoingBatch
from logship.agent.checkpoint import FileState
from logship.agent.identity import FileId, Fingerprint
from logship.agent.linerecords import RecordTemplate, encode
from logship.agent.shipper import Shipper
from logship.client import Cluster
from logship.errors import OutOfOrderSequenceError
from logship.protocol import ApiKey, encode_response
from logship.storage.producer_state import ProducerStates

TEMPLATE = RecordTemplate(None, [("host", b"h")])
TOO_LARGE, OUT_OF_ORDER = 10, 45


class IdempotentBroker(ScriptedServer):
    """Topic "t" (one partition): a batch of more than `max_records` is refused as too large,
    the others are checked and stored like Kafka does. `on_request(values)` runs first; while
    `dead`, requests go unanswered and nothing is stored."""

    def __init__(self, max_records: int = 5, on_request=None):
        super().__init__({"t": 1})
        self.max_records, self.on_request = max_records, on_request
        self.states = ProducerStates()
        self.log: list[bytes] = []
        self.dead = False

    def answer_other(self, request):
        data = bytes(request.body["topic_data"][0]["partition_data"][0]["records"])
        values = [r.value for r in records.iter_records(data)]
        if self.on_request is not None:
            self.on_request(values)
        if self.dead:
            return None
        code = 0
        if len(values) > self.max_records:
            code = TOO_LARGE
        else:
            h = records.parse_header(data)
            try:
                duplicate = self.states.check([(h.producer_id, h.producer_epoch, h.base_sequence, len(values))])
            except OutOfOrderSequenceError:
                code = OUT_OF_ORDER
            else:
                if duplicate is None:
                    self.states.apply(h.producer_id, h.producer_epoch, h.base_sequence, len(values),
                                      len(self.log), len(self.log) + len(values) - 1, 0)
                    self.log += values
        return encode_response(ApiKey.PRODUCE, request.api_version, request.correlation_id, {"responses": [
            {"name": "t", "partition_responses": [{"index": 0, "error_code": code, "base_offset": -1}]}],
            "throttle_time_ms": 0})


def batch(state: FileState, values: list[bytes]) -> OutgoingBatch:
    """A batch of `values`, completing `state`'s step at 4 bytes a line."""
    b = OutgoingBatch("t", 0)
    b.add(encode(values, list(range(len(values))), [], 0, TEMPLATE), len(values), sum(map(len, values)))
    b.steps.append(state.add(state.resume_point[0] + 4 * len(values)))
    return b


def shipper_for(broker, state_dir) -> tuple[Shipper, J.Journal, J.Recovery]:
    rec = J.load(state_dir)
    journal = J.Journal(state_dir, rec)
    shipper = Shipper(Cluster(broker.address), compression=0, backoff_max=0.05, journal=journal, recovery=rec)
    shipper.start()
    return shipper, journal, rec


def acknowledge(done) -> None:
    """What the agent does with acknowledged batches: their steps complete."""
    for b, _ in done:
        for step in b.steps:
            step.acked = True
            step.state.advance()


def new_state() -> FileState:
    return FileState(FileId(1, 1), Fingerprint(0, ""), 0, "/nonexistent")


def test_a_kill_after_the_first_piece_of_a_split_batch_loses_nothing(tmp_path):
    live, killed = tmp_path / "live", tmp_path / "killed"
    live.mkdir()
    values = [b"v%02d" % i for i in range(10)]
    broker = IdempotentBroker()

    def kill_at_the_first_piece(vals):
        if vals == values[:5] and not killed.exists():
            shutil.copytree(live, killed)  # the agent is killed now: its journal is what is durable
            broker.dead = True

    broker.on_request = kill_at_the_first_piece
    shipper, journal, _ = shipper_for(broker, live)
    shipper.submit([batch(new_state(), values)])
    wait_done(shipper, 1, timeout=1)
    shipper.close(0.2)
    journal.close()
    assert killed.exists() and broker.log == []

    broker.dead = False  # the agent restarts from its journal
    state = new_state()
    shipper, journal, rec = shipper_for(broker, killed)
    assert [e.count for e in rec.unacked] == [5, 5], "the pieces are journaled together"
    plan = J.restore_steps([state], rec)
    again = shipper.resend(plan)
    done = wait_done(shipper, len(again))
    acknowledge(done)
    shipper.close(2)
    journal.close()
    assert broker.log == values
    assert state.offset == 40 and not state.pending  # the batch's step, once its last piece is in


def test_pieces_acknowledged_are_journaled_as_they_come(tmp_path):
    values = [b"v%02d" % i for i in range(16)]
    broker = IdempotentBroker(max_records=2)  # split down to 8 pieces of 2
    shipper, journal, _ = shipper_for(broker, tmp_path)
    pending = []
    broker.on_request = lambda vals: pending.append(
        sum(not e.acked for e in journal.live.values()) if len(vals) <= 2 else None)
    shipper.submit([batch(new_state(), values)])
    assert len(wait_done(shipper, 1)) == 1
    shipper.close(2)
    journal.close()
    assert broker.log == values
    # when each piece was sent, the pieces acknowledged before it were journaled as such
    assert max(n for n in pending if n is not None) <= 5
    assert not J.load(tmp_path).unacked


def test_the_next_sequence_never_moves_back_behind_batches_sent_before_a_split(tmp_path):
    def slow_answer_to_the_big_one(vals):
        if vals[:1] == [b"w0"] and len(vals) > 5:
            time.sleep(0.3)  # the batches after it are sent meanwhile

    broker = IdempotentBroker(on_request=slow_answer_to_the_big_one)
    state = new_state()
    shipper, journal, _ = shipper_for(broker, tmp_path)
    shipper.submit([batch(state, [b"a0", b"a1"])])
    assert len(wait_done(shipper, 1)) == 1
    shipper.submit([batch(state, [b"w%d" % i for i in range(10)]), batch(state, [b"b0", b"b1", b"b2"]),
                    batch(state, [b"c0", b"c1", b"c2"])])
    assert len(wait_done(shipper, 3)) == 3
    assert journal.next_sequences == {("t", 0): 18}
    shipper.close(2)
    journal.close()

    shipper, journal, rec = shipper_for(broker, tmp_path)  # the next run
    assert rec.next_sequences == {("t", 0): 18}
    assert shipper.resend(J.restore_steps([], rec)) == []
    shipper.submit([batch(new_state(), [b"n0", b"n1", b"n2"])])
    assert wait_done(shipper, 1)[0][1] is None
    shipper.close(2)
    journal.close()
    assert broker.log[-3:] == [b"n0", b"n1", b"n2"], "a new batch was taken for a duplicate of an old one"


def _entry(seq, count, steps=()):
    return J.SentEntry("t", 0, 7, 0, seq, count, list(steps), b"x%d" % seq)


def journal_with_a_split(state_dir):
    """A journal holding batch `whole` (10 records) then `after`, whole split in two pieces:
    (journal, whole, after, first piece, second piece)."""
    journal = J.Journal(state_dir, J.load(state_dir))
    journal.set_producer(7, 0)
    whole, after = _entry(0, 10, [{"offset": 40}]), _entry(10, 3)
    journal.append_sent(whole, after)
    first, second = _entry(0, 5), _entry(5, 5, whole.steps)
    journal.append_restamped(whole.key, first, second)
    return journal, whole, after, first, second


def test_the_pieces_of_a_split_take_its_place_in_the_journal_and_after_a_rotation(tmp_path):
    journal, whole, _, _, _ = journal_with_a_split(tmp_path)
    assert journal.next_sequences == {("t", 0): 13}
    order = [(e.seq, e.count, e.steps) for e in journal.live.values()]
    assert order == [(0, 5, []), (5, 5, whole.steps), (10, 3, [])]
    journal.close()
    rec = J.load(tmp_path)
    assert [(e.seq, e.count, e.steps) for e in rec.entries] == order and rec.next_sequences == {("t", 0): 13}
    J.Journal(tmp_path, rec).close()  # rewritten into a new segment
    rec = J.load(tmp_path)
    assert [(e.seq, e.count, e.steps) for e in rec.entries] == order and rec.next_sequences == {("t", 0): 13}


def test_pieces_stamped_under_a_new_epoch_replace_the_batch(tmp_path):
    """The producer's epoch moved on between the refusal and the pieces' first send: the
    first piece still names the whole batch's stamp (ProducerBatch.replaces), so the whole
    batch leaves the journal and is not sent again after its pieces at a restart."""
    from types import SimpleNamespace

    journal = J.Journal(tmp_path, J.load(tmp_path))
    shipper = Shipper.__new__(Shipper)
    shipper.journal, shipper.producer = journal, SimpleNamespace(producer_id=7, producer_epoch=0)
    whole = OutgoingBatch("t", 0)
    whole.journal_keys, whole.journal_steps = [], [{"offset": 40}]

    def piece(stamp, count, ends):
        return SimpleNamespace(topic="t", partition=0, stamp=stamp, count=count, ends_batch=ends, data=b"x",
                               context=whole)

    shipper._journal_sent([(piece((7, 0, 100), 10, True), None)])
    shipper.producer.producer_epoch = 1
    shipper._journal_sent([(piece((7, 1, 0), 5, False), (7, 0, 100)), (piece((7, 1, 5), 5, True), None)])
    expected = [(("t", 0, 7, 1, 0), []), (("t", 0, 7, 1, 5), [{"offset": 40}])]
    assert [(k, e.steps) for k, e in journal.live.items()] == expected
    assert whole.journal_keys == [k for k, _ in expected]
    journal.close()
    assert [(e.key, e.steps) for e in J.load(tmp_path).unacked] == expected


def test_a_split_written_half_way_when_killed_loads_as_the_batch_it_replaced(tmp_path):
    """A kill -9 can cut a large write: the pieces of a split that did not all reach the
    journal are dropped, and the whole batch (never sent as pieces) goes on as it was."""
    journal, whole, after, _, second = journal_with_a_split(tmp_path)
    journal.close()
    (path,) = tmp_path.glob("journal-*.log")
    cut = len(J.encode_entry(J.SENT, J._sent_meta(second), second.data))
    os.truncate(path, path.stat().st_size - cut)
    rec = J.load(tmp_path)
    assert [(e.seq, e.count, e.steps, e.data) for e in rec.entries] == \
        [(0, 10, whole.steps, whole.data), (10, 3, [], after.data)]
