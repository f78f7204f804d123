"""What a follower needs from a partition's log: where an epoch ended (KIP-101), the epoch of
the last batch, and emptying the log to restart at an offset (below the leader's log start)."""

from __future__ import annotations

from logship.storage import Partition

from storage_batches import make_batch, with_offset


def _replicate(partition: Partition, count: int, epoch: int) -> None:
    """Append `count` one-record batches of `epoch` as a leader sent them."""
    for _ in range(count):
        partition.append_replica_batch(with_offset(make_batch(), partition.log_end_offset, epoch))


def test_epoch_end_offsets_and_last_epoch(tmp_path):
    partition = Partition("t", 0, tmp_path / "t-0")
    assert partition.last_epoch == -1
    assert partition.epoch_end_offset(3) == (-1, -1)
    _replicate(partition, 3, epoch=1)
    _replicate(partition, 2, epoch=4)
    assert partition.last_epoch == 4
    assert partition.epoch_end_offset(1) == (1, 3)
    assert partition.epoch_end_offset(2) == (1, 3)  # the largest epoch <= 2 is 1, which ended at 3
    assert partition.epoch_end_offset(4) == (4, 5)
    assert partition.epoch_end_offset(9) == (4, 5)
    assert partition.epoch_end_offset(0) == (-1, -1)
    partition.truncate_to(3)
    assert partition.last_epoch == 1 and partition.epoch_end_offset(4) == (1, 3)
    partition.close()


def test_truncate_fully_and_start_at(tmp_path):
    partition = Partition("t", 0, tmp_path / "t-0")
    partition.hw_follows_log_end = False
    _replicate(partition, 5, epoch=1)
    partition.set_high_watermark(5)
    partition.truncate_fully_and_start_at(50)
    assert (partition.log_start_offset, partition.log_end_offset, partition.high_watermark) == (50, 50, 50)
    assert partition.last_epoch == -1
    assert [s.base_offset for s in partition.segments] == [50]
    _replicate(partition, 2, epoch=2)
    partition.flush()
    partition.close()
    reopened = Partition("t", 0, tmp_path / "t-0")
    assert (reopened.log_start_offset, reopened.log_end_offset, reopened.last_epoch) == (50, 52, 2)
    assert reopened.epoch_end_offset(2) == (2, 52)
    reopened.close()
