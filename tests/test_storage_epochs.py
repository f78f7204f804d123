"""Leader epochs in the store: the current epoch stamped on every batch, the leader-epoch
checkpoint, and both kept consistent across restart, recovery, truncation, retention and
compaction (KIP-101)."""

from __future__ import annotations

from pathlib import Path

import pytest

from logship import records
from logship.storage import LogConfig, Partition, Store
from logship.storage.compaction import compact
from logship.storage.epochs import CURRENT_FILE_NAME, FILE_NAME, LeaderEpochCache
from storage_batches import copy_unclean, make_batch, read_all, with_offset

SMALL = LogConfig(segment_bytes=600, index_interval_bytes=100, retention_ms=-1)


def checkpoint(directory: Path) -> str:
    return (directory / FILE_NAME).read_text()


def stored_epochs(directory: Path) -> list[tuple[int, int]]:
    """(base offset, partitionLeaderEpoch) of every batch in the segment files, in order."""
    out = []
    for path in sorted(directory.glob("*.log")):
        out += [(h.base_offset, h.partition_leader_epoch) for _, h in records.iter_batches(path.read_bytes())]
    return out


def test_a_new_partition_has_epoch_zero_and_an_empty_checkpoint(tmp_path):
    p = Partition("t", 0, tmp_path / "t-0")
    try:
        assert p.leader_epoch == 0 and checkpoint(p.directory) == "0\n0\n"
        assert not (p.directory / CURRENT_FILE_NAME).exists()  # 0 needs no file
        for epoch in (-1, 0, 12345):  # whatever producers put there, the leader's epoch is stored
            p.append_batches(make_batch(2, epoch=epoch))
        assert stored_epochs(p.directory) == [(0, 0), (2, 0), (4, 0)]
        assert checkpoint(p.directory) == "0\n1\n0 0\n"
        for _, header in records.iter_batches(read_all(p)):
            assert records.crc_is_valid(read_all(p), 0, header.size)  # the CRC does not cover the epoch
    finally:
        p.close()


def test_the_current_epoch_and_checkpoint_survive_a_restart(tmp_path):
    with Store(tmp_path / "d", SMALL) as store:
        store.create_topic("t", 1)
        p = store.partition("t", 0)
        p.append_batches(make_batch(3))
        p.set_leader_epoch(4)
        assert (p.directory / CURRENT_FILE_NAME).read_text() == "0\n1\n4\n"
    with Store(tmp_path / "d", SMALL) as store:  # epoch 4 had no batch yet: it comes from its file
        p = store.partition("t", 0)
        assert p.leader_epoch == 4 and checkpoint(p.directory) == "0\n1\n0 0\n"
        p.append_batches(make_batch(2))
    with Store(tmp_path / "d", SMALL) as store:
        p = store.partition("t", 0)
        assert p.leader_epoch == 4 and p.epochs.entries == [(0, 0), (4, 3)]
        assert stored_epochs(p.directory) == [(0, 0), (3, 4)]


def test_a_torn_tail_takes_its_epoch_entry_but_not_the_current_epoch(tmp_path):
    src = tmp_path / "live"
    with Store(src, SMALL) as store:
        store.create_topic("t", 1)
        p = store.partition("t", 0)
        p.append_batches(make_batch(2))
        store.checkpoint()
        p.set_leader_epoch(2)
        p.append_batches(make_batch(2))
        p.append_batches(make_batch(2))
        assert p.epochs.entries == [(0, 0), (2, 2)]
        crashed = copy_unclean(src, tmp_path / "crashed")
    last = sorted((crashed / "t-0").glob("*.log"))[-1]
    batches = list(records.iter_batches(last.read_bytes()))
    first_of_epoch_2 = next(pos for pos, h in batches if h.partition_leader_epoch == 2)
    with open(last, "r+b") as f:
        f.truncate(first_of_epoch_2 + 30)  # torn inside the first batch of epoch 2
    with Store(crashed, SMALL) as store:
        assert store.recovered
        p = store.partition("t", 0)
        assert p.log_end_offset == 2
        assert p.epochs.entries == [(0, 0)] and checkpoint(p.directory) == "0\n1\n0 0\n"
        assert p.leader_epoch == 2
        p.append_batches(make_batch(1))
        assert checkpoint(p.directory) == "0\n2\n0 0\n2 2\n"
        assert stored_epochs(p.directory) == [(0, 0), (2, 2)]


def test_an_entry_written_before_its_batch_is_dropped_by_recovery(tmp_path):
    """The checkpoint is written before the batch: a crash between the two leaves an entry
    at the log end, which loading drops."""
    src = tmp_path / "live"
    with Store(src, SMALL) as store:
        store.create_topic("t", 1)
        p = store.partition("t", 0)
        p.append_batches(make_batch(2))
        crashed = copy_unclean(src, tmp_path / "crashed")
    (crashed / "t-0" / FILE_NAME).write_text("0\n2\n0 0\n7 2\n")
    with Store(crashed, SMALL) as store:
        p = store.partition("t", 0)
        assert p.epochs.entries == [(0, 0)] and p.leader_epoch == 0


@pytest.mark.parametrize("damage", ["missing", "malformed"])
def test_a_lost_checkpoint_is_rebuilt_from_the_batches(tmp_path, damage):
    directory = tmp_path / "t-0"
    p = Partition("t", 0, directory, SMALL)
    p.append_batches(make_batch(2))
    p.set_leader_epoch(3)
    p.append_batches(make_batch(2))
    p.append_batches(make_batch(2))
    p.set_leader_epoch(5)
    p.append_batches(make_batch(1))
    p.close()
    assert len(list(directory.glob("*.log"))) > 1
    if damage == "missing":
        (directory / FILE_NAME).unlink()
    else:
        (directory / FILE_NAME).write_text("0\n9\n1 x\n")
    p = Partition("t", 0, directory, SMALL)
    try:
        assert p.epochs.entries == [(0, 0), (3, 2), (5, 6)]
        assert checkpoint(directory) == "0\n3\n0 0\n3 2\n5 6\n"
        assert p.leader_epoch == 5
    finally:
        p.close()


def test_truncate_to_keeps_the_checkpoint_consistent(tmp_path):
    p = Partition("t", 0, tmp_path / "t-0", SMALL)
    try:
        for epoch in (0, 1, 2):
            p.set_leader_epoch(epoch)
            for _ in range(3):
                p.append_batches(make_batch(2))  # epoch e starts at 6e
        assert p.epochs.entries == [(0, 0), (1, 6), (2, 12)]
        p.truncate_to(13)  # inside epoch 2's first batch
        assert p.epochs.entries == [(0, 0), (1, 6)] and checkpoint(p.directory) == "0\n2\n0 0\n1 6\n"
        p.truncate_to(6)
        assert checkpoint(p.directory) == "0\n1\n0 0\n"
        p.delete_before(4)
        assert checkpoint(p.directory) == "0\n1\n0 4\n"
        p.truncate_to(2)  # below the log start: the log is emptied
        assert p.log_start_offset == 2 and checkpoint(p.directory) == "0\n0\n"
        p.append_batches(make_batch(1))
        assert checkpoint(p.directory) == "0\n1\n2 2\n" and stored_epochs(p.directory) == [(2, 2)]
    finally:
        p.close()


def test_retention_trims_the_checkpoint_from_the_front(tmp_path):
    p = Partition("t", 0, tmp_path / "t-0", LogConfig(segment_bytes=600, retention_ms=-1, retention_bytes=-1))
    try:
        for epoch in (0, 1, 2):
            p.set_leader_epoch(epoch)
            for _ in range(4):
                p.append_batches(make_batch(2))  # epoch e starts at 8e
        assert p.epochs.entries == [(0, 0), (1, 8), (2, 16)]
        p.delete_before(5)  # inside epoch 0: it now starts at the log start
        assert checkpoint(p.directory) == "0\n3\n0 5\n1 8\n2 16\n"
        p.delete_before(10)
        assert p.epochs.entries == [(1, 10), (2, 16)]
        assert p.epoch_for_offset(10) == 1 and p.epoch_for_offset(17) == 2
        p.config = LogConfig(segment_bytes=600, retention_ms=-1, retention_bytes=1)
        p.enforce_retention()  # every sealed segment goes
        assert p.log_start_offset == p.segments[0].base_offset > 16
        assert p.epochs.entries == [(2, p.log_start_offset)]
    finally:
        p.close()
    p = Partition("t", 0, tmp_path / "t-0", log_start_offset=p.log_start_offset)
    try:
        assert p.epochs.entries[0] == (2, p.log_start_offset) and p.leader_epoch == 2
    finally:
        p.close()


def test_compaction_keeps_every_batch_epoch(tmp_path):
    config = LogConfig(segment_bytes=800, retention_ms=-1, cleanup_policy="compact", delete_retention_ms=0)
    p = Partition("c", 0, tmp_path / "c-0", config)
    try:
        for epoch in (0, 3):
            p.set_leader_epoch(epoch)
            for round_no in range(6):
                keys = [b"a", b"b"] if round_no % 2 else [b"a", b"b", b"x%d%d" % (epoch, round_no)]
                batch = records.build_batch([(1_000, k, b"v%d" % round_no, ()) for k in keys])
                p.append_batches(bytearray(batch))
        before = {o: e for o, e in stored_epochs(p.directory)}
        entries = list(p.epochs.entries)
        result = compact(p, now_ms=10_000)
        assert result.bytes_after < result.bytes_before
        after = stored_epochs(p.directory)
        assert after and all(before[o] == e for o, e in after)  # rebuilt batches keep their epoch
        assert {e for _, e in after} == {0, 3}
        assert p.epochs.entries == entries
    finally:
        p.close()
    (tmp_path / "c-0" / FILE_NAME).unlink()  # and a rebuild from the compacted log agrees
    p = Partition("c", 0, tmp_path / "c-0", config)
    try:
        assert [e for e, _ in p.epochs.entries] == [0, 3] and p.leader_epoch == 3
    finally:
        p.close()


def test_replica_batches_bring_their_epochs(tmp_path):
    leader = Partition("t", 0, tmp_path / "l-0")
    follower = Partition("t", 0, tmp_path / "f-0")
    try:
        leader.append_batches(make_batch(2))
        leader.set_leader_epoch(6)
        leader.append_batches(make_batch(1))
        follower.append_replica_batch(read_all(leader))
        assert follower.epochs.entries == [(0, 0), (6, 2)] and follower.leader_epoch == 6
        assert stored_epochs(follower.directory) == [(0, 0), (2, 6)]
    finally:
        leader.close()
        follower.close()


def test_cache_lookups():
    cache = LeaderEpochCache.__new__(LeaderEpochCache)
    cache.entries = [(1, 10), (4, 20)]
    assert [cache.epoch_for_offset(o) for o in (5, 10, 19, 20, 99)] == [-1, 1, 1, 4, 4]
    assert cache.end_offset_for(0, 30) == (-1, -1)
    assert cache.end_offset_for(3, 30) == (1, 20) and cache.end_offset_for(4, 30) == (4, 30)


def test_a_log_start_move_survives_a_failed_epoch_checkpoint_write(tmp_path, monkeypatch):
    from logship.storage import epochs
    p = Partition("t", 0, tmp_path / "t-0", SMALL)
    p.append_replica_batch(make_batch(3, epoch=3))
    p.append_replica_batch(with_offset(make_batch(3, epoch=5), 3, epoch=None))
    assert p.epochs.entries == [(3, 0), (5, 3)]

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(epochs, "write_epochs", full)
    assert p.delete_before(4) >= 0  # the log start is what counts: the epoch file is trimmed on open
    monkeypatch.undo()
    assert p.log_start_offset == 4 and p.epochs.entries == [(5, 4)]
    p.close()
    p = Partition("t", 0, tmp_path / "t-0", SMALL, log_start_offset=4)
    try:
        assert p.epochs.entries == [(5, 4)] and p.leader_epoch == 5
    finally:
        p.close()


def test_the_leader_epoch_never_moves_back_when_the_log_is_emptied(tmp_path):
    d = tmp_path / "t-0"
    p = Partition("t", 0, d)
    p.append_replica_batch(make_batch(3, epoch=7))
    assert p.leader_epoch == 7
    p.delete_before(p.high_watermark)  # the log is empty: its one entry sits at the log end
    assert p.leader_epoch == 7
    p.close()
    for _ in range(2):
        p = Partition("t", 0, d, log_start_offset=3)
        assert p.leader_epoch == 7  # loading drops the entry at the log end, not the epoch
        p.close()
    p = Partition("t", 0, d, log_start_offset=3)
    try:
        p.append_batches(make_batch(1))
        assert stored_epochs(d)[-1] == (3, 7) and p.epochs.entries == [(7, 3)]
        p.truncate_to(1)  # below the log start: emptied at once
        assert p.leader_epoch == 7
        p.append_replica_batch(with_offset(make_batch(1, epoch=9), 1, epoch=None))
        p.truncate_to(0)
        assert p.leader_epoch == 9
    finally:
        p.close()
    p = Partition("t", 0, d)
    try:
        assert p.leader_epoch == 9
    finally:
        p.close()



@pytest.mark.parametrize("cut", [2, 3])
def test_a_cut_in_the_batch_holding_the_log_start_empties_the_log_there(tmp_path, cut):
    d = tmp_path / "t-0"
    p = Partition("t", 0, d, SMALL)
    p.append_batches(make_batch(4))  # one batch, offsets 0-3
    p.delete_before(2)  # the log start falls inside it
    p.truncate_to(cut)  # the cut takes the whole batch: the log restarts empty at the cut
    assert p.log_start_offset == p.high_watermark == p.log_end_offset == cut
    assert p.read(cut, 1 << 20) is None
    assert p.append_batches(make_batch(1)).base_offset == cut
    p.close()
    p = Partition("t", 0, d, SMALL, log_start_offset=cut)
    try:
        assert (p.log_start_offset, p.log_end_offset) == (cut, cut + 1)
        assert p.leader_epoch == 0
    finally:
        p.close()
