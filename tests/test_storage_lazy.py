"""Partitions load lazily (storage/store.py): opening a store of many partitions opens none of
their files, creating a partition makes only its directory, a partition is recovered before its
first use after an unclean stop, a clean close does not make a partition that was never
recovered trusted, and load_all (the broker's background loader) loads and recovers them all."""

from __future__ import annotations

import shutil
import time

from logship.storage import Store

from storage_batches import copy_unclean, make_batch, read_all


def _corrupt_last_batch(directory, batch_size: int) -> None:
    """Flip a byte inside the records of the last batch: its header stays valid, its CRC does not."""
    log = sorted(directory.glob("*.log"))[-1]
    data = bytearray(log.read_bytes())
    data[len(data) - batch_size // 2] ^= 0xFF
    log.write_bytes(bytes(data))


def _unclean_copy_with_a_bad_unflushed_tail(tmp_path):
    """t-0 and t-1 each hold one flushed batch (under the recovery point) and one batch after it
    whose CRC is wrong; returns a copy of the data directory as a crash would leave it."""
    batch = make_batch(2, value_size=40)
    with Store(tmp_path / "src") as store:
        store.create_topic("t", 2)
        for index in range(2):
            partition = store.partition("t", index)
            partition.append_batches(batch)
        store.checkpoint()  # recovery points after the first batch
        for index in range(2):
            store.partition("t", index).append_batches(batch)
        dst = tmp_path / "crashed"
        shutil.copytree(tmp_path / "src", dst)
    (dst / ".logship-clean-shutdown").unlink(missing_ok=True)
    for index in range(2):
        _corrupt_last_batch(dst / f"t-{index}", len(batch))
    return dst, batch


def test_opening_many_partitions_opens_no_file(tmp_path):
    with Store(tmp_path) as store:
        start = time.monotonic()
        store.create_topic("wide", 2000)
        assert time.monotonic() - start < 5
        assert not any((tmp_path / "wide-1999").iterdir())
        store.partition("wide", 7).append_batches(make_batch(1))
    start = time.monotonic()
    with Store(tmp_path) as store:
        assert time.monotonic() - start < 5
        assert store.topics() == {"wide": 2000} and store.files.opens == 0
        assert store.leader_epoch("wide", 1999) == 0 and store.files.opens == 0
        assert store.partition("wide", 7).log_end_offset == 1
        assert store.partition("wide", 8).log_end_offset == 0


def test_a_partition_is_recovered_before_its_first_use(tmp_path):
    crashed, batch = _unclean_copy_with_a_bad_unflushed_tail(tmp_path)
    with Store(crashed) as store:
        assert store.recovered
        partition = store.partition("t", 0)
        assert partition.load_report.truncated_bytes == len(batch)
        assert partition.log_end_offset == 2 and read_all(partition) == read_all(partition)[:len(batch)]
        partition.append_batches(make_batch(1))  # appends where the recovered log ends
        assert partition.log_end_offset == 3


def test_a_clean_close_keeps_an_unused_partition_unrecovered(tmp_path):
    crashed, batch = _unclean_copy_with_a_bad_unflushed_tail(tmp_path)
    with Store(crashed) as store:
        store.partition("t", 0)  # t-1 is never used while this store runs
    marker = (crashed / ".logship-clean-shutdown").read_text()
    assert "t 1" in marker and "t 0" not in marker
    with Store(crashed) as store:
        assert not store.recovered
        late = store.partition("t", 1)
        assert late.load_report.truncated_bytes == len(batch) and late.log_end_offset == 2
        assert store.partition("t", 0).load_report.recovered_segments == 0  # clean since its recovery
    assert (crashed / ".logship-clean-shutdown").read_text().splitlines()[1] == "0"


def test_load_all_recovers_every_partition(tmp_path):
    crashed, batch = _unclean_copy_with_a_bad_unflushed_tail(tmp_path)
    with Store(crashed) as store:
        assert store.load_all(threads=4) == 2
        assert [p.log_end_offset for p in store.partitions()] == [2, 2]
        assert store.load_all() == 0


def test_an_empty_marker_of_an_older_version_means_clean(tmp_path):
    with Store(tmp_path) as store:
        store.create_topic("t", 1)
        store.partition("t", 0).append_batches(make_batch(1))
    marker = tmp_path / ".logship-clean-shutdown"
    marker.write_bytes(b"")
    with Store(tmp_path) as store:
        assert not store.recovered and store.partition("t", 0).load_report.recovered_segments == 0


def test_a_deleted_topic_never_loads(tmp_path):
    with Store(tmp_path) as store:
        store.create_topic("t", 3)
        store.partition("t", 0)
        store.delete_topic("t")
        assert store.topics() == {} and store.load_all() == 0
        assert not [p for p in tmp_path.iterdir() if p.name.startswith("t-")]
        store.create_topic("t", 1)
        assert store.partition("t", 0).log_end_offset == 0


def test_an_unclean_copy_recovers_on_first_use(tmp_path):
    with Store(tmp_path / "a") as store:
        store.create_topic("t", 1)
        store.partition("t", 0).append_batches(make_batch(1))
        store.checkpoint()
        copy = copy_unclean(tmp_path / "a", tmp_path / "b")
    with Store(copy) as store:
        assert store.recovered and store.partition("t", 0).log_end_offset == 1


def test_a_new_epoch_entry_is_made_durable_by_the_next_sync(tmp_path):
    with Store(tmp_path) as store:
        store.create_topic("t", 1)
        partition = store.partition("t", 0)
        partition.append_batches(make_batch(1))
        checkpoint = tmp_path / "t-0" / "leader-epoch-checkpoint"
        assert checkpoint.read_text() == "0\n1\n0 0\n" and partition.epochs.dirty
        partition.flush()
        assert not partition.epochs.dirty and partition.recovery_point == 1


def test_size_and_lag_need_no_load(tmp_path):
    with Store(tmp_path) as store:
        store.create_topic("t", 2)
        store.partition("t", 0).append_batches(make_batch(2))
        size = store.partition("t", 0).size_bytes
    with Store(tmp_path) as store:
        assert store.size_and_lag("t", 0) == (size, 0) and store.size_and_lag("t", 1) == (0, 0)
        assert store.files.opens == 0
        assert store.size_and_lag("t", 0) == (store.partition("t", 0).size_bytes, 0)
