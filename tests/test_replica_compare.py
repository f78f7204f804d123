"""The replica comparer (tests/replica_compare.py) finds each kind of difference between
replicas' segment files, and none where there is none."""

from __future__ import annotations

from pathlib import Path

from logship import records
from logship.storage.partition_state import PartitionState, write_state
from logship.storage.segment import segment_name
from replica_compare import compare, log_bounds, partition_dirs, walk


def _batch(base: int, count: int = 3, epoch: int = 0, tag: bytes = b"v") -> bytes:
    return records.build_batch([(1_700_000_000_000 + base + i, None, b"%s-%06d" % (tag, base + i), ())
                                for i in range(count)], base_offset=base, partition_leader_epoch=epoch)


def _log(batches: int, epoch_from: dict[int, int] | None = None) -> list[bytes]:
    """`batches` batches of 3 records; epoch e from batch index i onwards per `epoch_from` {i: e}."""
    epoch, out = 0, []
    for i in range(batches):
        epoch = (epoch_from or {}).get(i, epoch)
        out.append(_batch(3 * i, epoch=epoch))
    return out


def _write(directory: Path, batches: list[bytes], roll_every: int = 1000, tail: bytes = b"") -> Path:
    """Segments of `roll_every` batches each (named by their base offset), then `tail` bytes."""
    directory.mkdir(parents=True)
    for first in range(0, max(len(batches), 1), roll_every):
        chunk = batches[first:first + roll_every]
        base = records.parse_header(chunk[0]).base_offset if chunk else 0
        (directory / f"{segment_name(base)}.log").write_bytes(b"".join(chunk))
    last = sorted(directory.glob("*.log"))[-1]
    with open(last, "ab") as f:
        f.write(tail)
    return directory


def _replicas(tmp_path, logs: dict[int, list[bytes]], options: dict[int, dict] | None = None) -> dict[int, Path]:
    data_dirs = {broker: tmp_path / f"broker-{broker}" for broker in logs}
    dirs = partition_dirs(data_dirs, "logs", 4)
    for broker, batches in logs.items():
        _write(dirs[broker], batches, **(options or {}).get(broker, {}))
    return dirs


def test_identical_replicas_with_other_segment_boundaries_are_equal(tmp_path):
    log = _log(50, {20: 1, 40: 3})
    data_dirs = {b: tmp_path / f"d{b}" for b in (1, 2, 3)}
    dirs = partition_dirs(data_dirs, "logs", 4)
    assert dirs[2] == tmp_path / "d2" / "logs-4"
    for broker, roll in ((1, 1000), (2, 7), (3, 1)):
        _write(dirs[broker], log, roll_every=roll)
    assert len(list(dirs[3].glob("*.log"))) == 50
    result = compare(dirs)
    assert result.equal, result.report()
    assert (result.start, result.upto, result.batches) == (0, 150, 50)
    assert result.log_ends == {1: 150, 2: 150, 3: 150}
    assert "identical" in result.report()


def test_a_batch_with_another_epoch_is_named_with_the_field(tmp_path):
    log = _log(10)
    other = list(log)
    changed = bytearray(other[6])
    records.set_leader_epoch(changed, 0, 7)  # outside the CRC: still a valid batch
    other[6] = bytes(changed)
    result = compare(_replicas(tmp_path, {1: log, 2: log, 3: other}))
    assert not result.equal and list(result.differences) == [3]
    assert "offsets 18-20 epoch 7 at 00000000000000000000.log byte" in result.differences[3]
    assert "partition_leader_epoch 7 != 0" in result.differences[3]


def test_other_records_in_a_batch_are_found(tmp_path):
    log = _log(10)
    other = log[:4] + [_batch(12, tag=b"w")] + log[5:]
    result = compare(_replicas(tmp_path, {1: log, 2: other}))
    assert list(result.differences) == [2] and "crc" in result.differences[2]
    # a flipped byte in the records: the batch's CRC no longer holds
    forged = bytearray(log[4])
    forged[-1] ^= 1
    result = compare(_replicas(tmp_path / "forged", {1: log, 2: log[:4] + [bytes(forged)] + log[5:]}))
    assert "CRC mismatch in offsets 12-14" in result.differences[2]


def test_a_replica_that_ends_below_the_limit_is_reported(tmp_path):
    log = _log(10)
    dirs = _replicas(tmp_path, {1: log, 2: log[:6], 3: log})
    result = compare(dirs, upto=30)
    assert list(result.differences) == [2]
    assert result.differences[2] == "log ends before offsets 18-20, below 30"
    # the reference too: another replica holds what it lacks
    result = compare({2: dirs[2], 1: dirs[1]}, upto=30)
    assert result.differences[2] == "log ends at 18, below 30"
    assert "broker 2" in result.differences[1] and "lacks below 30" in result.differences[1]


def test_the_high_watermark_is_the_lowest_log_end_of_the_in_sync_replicas(tmp_path):
    log = _log(10)
    dirs = _replicas(tmp_path, {1: log, 2: log[:8], 3: log[:3]})
    assert compare(dirs).upto == 9  # no partition-state: every replica is in sync
    state = PartitionState(leader=1, leader_epoch=0, replicas=(1, 2, 3), isr=(1, 2), version=4)
    write_state(dirs[1], state)
    write_state(dirs[3], PartitionState(leader=1, leader_epoch=0, replicas=(1, 2, 3), isr=(1, 2, 3), version=2))
    result = compare(dirs)
    assert result.upto == 24  # the newest state wins: broker 3 is out of sync
    assert list(result.differences) == [3] and "log ends before offsets 9-11" in result.differences[3]
    result = compare({1: dirs[1], 2: dirs[2]})
    assert result.equal and result.upto == 24
    assert compare(dirs, isr=[1]).upto == 30


def test_a_divergent_tail_counts_below_the_limit_only(tmp_path):
    """A zombie leader's tail (other batches, an older epoch) above what the others hold."""
    leader = _log(10, {6: 2})
    zombie = _log(6) + [_batch(18, count=5, epoch=1, tag=b"z")]
    dirs = _replicas(tmp_path, {1: leader, 2: leader, 3: zombie})
    assert compare(dirs, upto=18).equal
    result = compare(dirs, upto=30)
    assert "batch boundaries differ: offsets 18-22 epoch 1" in result.differences[3]
    assert "reference has offsets 18-20 epoch 2" in result.differences[3]


def test_damage_below_the_limit_is_reported(tmp_path):
    log = _log(10)
    torn = log[7][:40]
    dirs = _replicas(tmp_path, {1: log, 2: log[:7]}, {2: {"tail": torn}})
    assert [b.header is None for b in walk(dirs[2])][-1] is True
    assert log_bounds(dirs[2]) == (0, 21)
    result = compare(dirs, upto=30)
    assert "unreadable tail at 00000000000000000000.log byte" in result.differences[2]
    assert compare(dirs, upto=21).equal


def test_log_start_is_the_highest_among_replicas(tmp_path):
    log = _log(10)
    dirs = _replicas(tmp_path, {1: log, 2: log[4:]})
    assert log_bounds(dirs[2]) == (12, 30)
    result = compare(dirs)
    assert result.equal and (result.start, result.batches) == (12, 6)


def test_empty_replicas_are_equal(tmp_path):
    dirs = _replicas(tmp_path, {1: [], 2: []})
    assert log_bounds(dirs[1]) == (0, 0)
    assert compare(dirs).equal
