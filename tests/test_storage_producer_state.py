"""Idempotent producers' state (issue #14): Kafka 3.x's rules in ProducerStates, and a real
Partition keeping them across a segment roll, a clean and an unclean restart, retention deleting
old segments and a follower's truncation. Batches are built with kafka-python's builder."""

from __future__ import annotations

import pytest
from kafka.record.default_records import DefaultRecordBatchBuilder

from logship.errors import InvalidProducerEpochError, OutOfOrderSequenceError
from logship.storage import LogConfig, Partition
from logship.storage.producer_state import BATCHES_KEPT, ProducerStates, snapshot_offsets

PID = 7_000_001


def batch(seq: int, count: int = 2, pid: int = PID, epoch: int = 0, value: bytes = b"v") -> bytearray:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0, producer_id=pid,
                                        producer_epoch=epoch, base_sequence=seq, batch_size=1 << 30)
    for i in range(count):
        builder.append(i, timestamp=1_000, key=None, value=value + b"%d" % (seq + i), headers=[])
    return builder.build()


# --- the rules ----------------------------------------------------------------------------------

def test_duplicates_of_the_last_five_batches_are_found_with_their_offsets():
    states = ProducerStates()
    for n in range(7):
        states.apply(PID, 0, n * 2, 2, 100 + n * 2, 101 + n * 2, 0)
    for n in range(7 - BATCHES_KEPT, 7):
        assert states.check([(PID, 0, n * 2, 2)]) == (100 + n * 2, 101 + n * 2)
    with pytest.raises(OutOfOrderSequenceError, match="next one expected is 14"):
        states.check([(PID, 0, 2, 2)])  # older than the five kept: Kafka's answer too
    assert states.check([(PID, 0, 14, 2)]) is None


def test_gaps_stale_epochs_and_new_epochs():
    states = ProducerStates()
    states.apply(PID, 3, 0, 5, 0, 4, 0)
    with pytest.raises(OutOfOrderSequenceError):
        states.check([(PID, 3, 6, 1)])  # a gap after sequence 4
    with pytest.raises(InvalidProducerEpochError, match="epoch 2 is older than its current epoch 3"):
        states.check([(PID, 2, 5, 1)])
    with pytest.raises(OutOfOrderSequenceError, match="new epoch 4 at sequence 5"):
        states.check([(PID, 4, 5, 1)])
    assert states.check([(PID, 4, 0, 1)]) is None
    assert states.check([(PID + 1, 0, 12345, 1)]) is None  # unknown producer: any sequence (KIP-360)
    # within one append, each batch follows the one before it
    assert states.check([(PID, 3, 5, 2), (PID, 3, 7, 1)]) is None
    with pytest.raises(OutOfOrderSequenceError):
        states.check([(PID, 3, 5, 2), (PID, 3, 8, 1)])


def test_sequences_wrap_after_int32_max():
    states = ProducerStates()
    states.apply(PID, 0, 2**31 - 2, 2, 0, 1, 0)  # sequences 2^31-2 and 2^31-1
    assert states.check([(PID, 0, 0, 3)]) is None


def test_expiry_and_snapshot_round_trip(tmp_path):
    states = ProducerStates()
    states.apply(PID, 1, 0, 3, 10, 12, now_ms=1_000)
    states.apply(PID + 1, 0, 0, 1, 13, 13, now_ms=5_000)
    path = states.write_snapshot(tmp_path, 14)
    again = ProducerStates.read_snapshot(path)
    assert again.encode() == states.encode() and again.check([(PID, 1, 0, 3)]) == (10, 12)
    damaged = bytearray(path.read_bytes())
    damaged[10] ^= 1
    path.write_bytes(bytes(damaged))
    assert ProducerStates.read_snapshot(path) is None
    assert states.expire(now_ms=7_000, expiration_ms=5_000) == 1 and len(states) == 1


# --- a real partition ---------------------------------------------------------------------------

def open_partition(tmp_path, clean: bool = True, segment_bytes: int = 1 << 20) -> Partition:
    return Partition("t", 0, tmp_path / "t-0", LogConfig(segment_bytes=segment_bytes), clean=clean,
                     recovery_point=0)


def test_a_resent_batch_is_not_appended_again(tmp_path):
    partition = open_partition(tmp_path)
    first = partition.append_batches(batch(0), client=True)
    second = partition.append_batches(batch(2), client=True)
    again = partition.append_batches(batch(0), client=True)
    assert (again.duplicate, again.base_offset, again.last_offset) == (True, first.base_offset, first.last_offset)
    assert partition.log_end_offset == second.log_end_offset == 4
    with pytest.raises(OutOfOrderSequenceError):
        partition.append_batches(batch(7), client=True)
    assert partition.log_end_offset == 4
    partition.close()


def _appended(partition: Partition, batches: int, start_seq: int = 0) -> int:
    seq = start_seq
    for _ in range(batches):
        partition.append_batches(batch(seq, value=b"x" * 200), client=True)
        seq += 2
    return seq


@pytest.mark.parametrize("stop", ["clean", "unclean"])
def test_state_survives_a_roll_and_a_restart(tmp_path, stop):
    partition = open_partition(tmp_path, segment_bytes=4096)
    seq = _appended(partition, 40)  # several segments: a snapshot at each roll
    assert len(partition.segments) > 2 and snapshot_offsets(partition.directory)
    last = seq - 2
    if stop == "clean":
        partition.flush()
        partition.close()
        assert snapshot_offsets(partition.directory)[-1] == partition.log_end_offset
    else:
        partition.flush()
        for segment in partition.segments:  # as a kill -9 leaves them: no close, no final snapshot
            segment.close()
    reopened = open_partition(tmp_path, clean=stop == "clean", segment_bytes=4096)
    assert reopened.append_batches(batch(last, value=b"x" * 200), client=True).duplicate
    with pytest.raises(OutOfOrderSequenceError):
        reopened.append_batches(batch(last + 4), client=True)
    assert not reopened.append_batches(batch(seq), client=True).duplicate
    reopened.close()


def test_state_survives_retention_deleting_old_segments(tmp_path):
    partition = open_partition(tmp_path, segment_bytes=4096)
    seq = _appended(partition, 40)
    other = PID + 5
    partition.append_batches(batch(0, pid=other), client=True)  # the other producer's only batch
    seq2 = _appended(partition, 40, seq)
    partition.delete_before(partition.segments[-2].base_offset)  # its batch goes with the old segments
    assert min(snapshot_offsets(partition.directory)) >= partition.segments[0].base_offset
    partition.close()
    reopened = open_partition(tmp_path, segment_bytes=4096)
    assert reopened.append_batches(batch(0, pid=other), client=True).duplicate  # still known
    assert reopened.append_batches(batch(seq2 - 2, value=b"x" * 200), client=True).duplicate
    reopened.close()


def test_truncation_rebuilds_the_state_below_the_cut(tmp_path):
    partition = open_partition(tmp_path, segment_bytes=4096)
    _appended(partition, 20)
    cut = partition.log_end_offset
    partition.append_batches(batch(40), client=True)  # offsets cut.. cut+1, sequences 40-41
    partition.truncate_to(cut)
    assert not partition.append_batches(batch(40), client=True).duplicate  # no longer in the log: appended
    partition.truncate_fully_and_start_at(partition.log_end_offset + 10)
    assert not snapshot_offsets(partition.directory) or \
        min(snapshot_offsets(partition.directory)) >= partition.log_start_offset
    assert not partition.append_batches(batch(999), client=True).duplicate  # nothing known: any sequence
    partition.close()


def test_a_replica_learns_the_state_from_the_batches_it_copies(tmp_path):
    leader = open_partition(tmp_path / "leader")
    follower = open_partition(tmp_path / "follower")
    for seq in (0, 2, 4):
        result = leader.append_batches(batch(seq), client=True)
        copy = leader.read(result.base_offset, 1 << 20, max_offset=result.log_end_offset).read_bytes()
        follower.append_replica_batch(copy)
    assert follower.append_batches(batch(2), client=True).duplicate  # it leads now: the retry is found
    with pytest.raises(OutOfOrderSequenceError):
        follower.append_batches(batch(9), client=True)
    leader.close()
    follower.close()


def test_a_snapshot_write_interrupted_leaves_nothing_behind(tmp_path):
    partition = open_partition(tmp_path, segment_bytes=4096)
    _appended(partition, 10)
    partition.close()
    stray = partition.directory / "00000000000000000007.snapshot.tmp"
    stray.write_bytes(b"half a snapshot")  # as a crash in the middle of a write leaves it
    reopened = open_partition(tmp_path, segment_bytes=4096)
    assert not stray.exists()
    reopened.close()
