"""The store's bounded cache of open segment files (storage/filecache.py): descriptors stay
below the capacity however many partitions are used, an evicted file stays valid for the
slices still reading it, the active segment is evicted and appended to again, and retention
deletes evicted segments."""

from __future__ import annotations

import os

import pytest

from logship.storage import LogConfig, Partition
from logship.storage.filecache import FileCache
from logship.storage.fileslice import FileSlice

from storage_batches import make_batch, read_all


def open_fds() -> set[int]:
    """This process's open descriptors (without the one listing them)."""
    return {fd for fd in map(int, os.listdir("/proc/self/fd")) if fd_target(fd)}


def fd_target(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except FileNotFoundError:
        return ""


def make_partitions(tmp_path, files, count, config=None):
    return [Partition("t", i, tmp_path / f"t-{i}", config, files=files) for i in range(count)]


def test_descriptors_stay_within_the_capacity_over_many_partitions(tmp_path):
    files = FileCache(8)
    before = open_fds()
    partitions = make_partitions(tmp_path, files, 40)
    for _ in range(2):
        for partition in partitions:
            partition.append_batches(make_batch(2))
            partition.flush()
            assert len(open_fds() - before) <= 8
    for partition in partitions:
        assert read_all(partition).count(b"A" * 50) == 2
        assert len(open_fds() - before) <= 8
    assert len(files) <= 8 and files.evictions > 0
    for partition in partitions:
        partition.close()
    assert open_fds() - before == set() and len(files) == 0


def test_an_evicted_file_stays_valid_for_the_slice_reading_it(tmp_path):
    files = FileCache(2)
    first, *others = make_partitions(tmp_path, files, 4)
    first.append_batches(make_batch(3, value=b"first"))
    piece = first.read(0, 1 << 20, inline_bytes=0)
    shared_fd = piece.fd
    log_path = fd_target(shared_fd)
    assert log_path.endswith("t-0/00000000000000000000.log")
    for partition in others:  # evicts every file of `first`
        partition.append_batches(make_batch(1, value=b"other"))
    assert not first.segments[0].log_file.is_open
    assert fd_target(shared_fd) == log_path  # still open, still the same file
    assert piece.read_bytes().count(b"first") == 3
    again = first.read(0, 1 << 20, inline_bytes=0)  # reopened through the cache: a new descriptor
    assert again.read_bytes() == piece.read_bytes()
    before = open_fds()
    piece.close()
    assert shared_fd not in open_fds() or fd_target(shared_fd) != log_path
    assert open_fds() <= before
    again.close()
    for partition in (first, *others):
        partition.close()


def test_slices_of_one_file_share_one_descriptor(tmp_path):
    files = FileCache(4)
    (partition,) = make_partitions(tmp_path, files, 1)
    partition.append_batches(make_batch(1))
    before = open_fds()
    pieces = [partition.read(0, 1 << 20, inline_bytes=0) for _ in range(500)]
    assert len(open_fds() - before) <= 1 and len({piece.fd for piece in pieces}) == 1
    partition.close()  # the segment leaves the cache; the slices keep reading
    assert all(piece.read_bytes() == pieces[0].read_bytes() for piece in pieces[:3])
    for piece in pieces:
        piece.close()
    assert open_fds() - before == set()


def test_the_active_segment_is_evicted_and_appended_to_again(tmp_path):
    files = FileCache(1)
    active, other = make_partitions(tmp_path, files, 2)
    written = []
    for i in range(20):
        value = b"v%03d" % i
        active.append_batches(make_batch(1, value=value))
        written.append(value)
        other.append_batches(make_batch(1, value=b"noise"))  # evicts `active`'s files
        other.read(0, 100).close()
    assert files.evictions >= 20
    active.flush()
    data = read_all(active)
    assert [data.count(value) for value in written] == [1] * 20
    end = active.log_end_offset
    active.close()
    other.close()
    reopened = Partition("t", 0, tmp_path / "t-0", files=files)
    assert reopened.log_end_offset == end == 20 and read_all(reopened) == data
    reopened.close()


def test_retention_deletes_evicted_segments(tmp_path):
    files = FileCache(2)
    config = LogConfig(segment_bytes=300, retention_bytes=1000, retention_ms=-1)
    partition, other = make_partitions(tmp_path, files, 2, config)
    for _ in range(12):
        partition.append_batches(make_batch(1, value_size=150))
    reader = partition.read(partition.log_start_offset, 1 << 20, inline_bytes=0)  # the oldest segment
    oldest = fd_target(reader.fd)
    for _ in range(3):
        other.append_batches(make_batch(1))
    before = len(list((tmp_path / "t-0").glob("*.log")))
    assert partition.enforce_retention() > 0
    after = sorted((tmp_path / "t-0").glob("*.log"))
    assert len(after) < before and not os.path.exists(oldest)
    assert reader.read_bytes() and fd_target(reader.fd).startswith(oldest)  # "... (deleted)"
    reader.close()
    assert read_all(partition)  # what retention kept still reads
    partition.close()
    other.close()


def test_a_closed_file_is_not_reopened(tmp_path):
    files = FileCache(2)
    (partition,) = make_partitions(tmp_path, files, 1)
    segment = partition.segments[0]
    partition.close()
    with pytest.raises(OSError):
        segment.acquire()


def test_plain_descriptors_are_still_owned_by_their_slice(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    fd = os.open(path, os.O_RDONLY)
    with FileSlice(fd, 2, 3) as piece:
        assert piece.read_bytes() == b"234"
    assert fd not in open_fds() or fd_target(fd) != str(path)


def test_small_slices_hold_no_descriptor(tmp_path):
    files = FileCache(4)
    (partition,) = make_partitions(tmp_path, files, 1)
    partition.append_batches(make_batch(3, value=b"small"))
    partition.close()
    reopened = Partition("t", 0, tmp_path / "t-0", files=files)
    before = open_fds()
    pieces = [reopened.read(0, 1 << 20) for _ in range(100)]
    files.close_all()
    assert open_fds() - before == set()
    assert all(piece.fd == -1 and piece.read_bytes().count(b"small") == 3 for piece in pieces)
    assert pieces[0].position == 0 and pieces[0].length == reopened.segments[0].size
    reopened.close()


def test_descriptors_used_up_during_a_sync_do_not_take_the_partition_offline(tmp_path):
    """Reopening an evicted segment inside a sync fails while every descriptor is taken (EMFILE):
    that sync fails (KafkaStorageError, retriable), nothing is lost, and once descriptors are
    free again the partition appends and syncs as before; only a failed fdatasync is for good."""
    import os
    import time

    from logship.errors import KafkaStorageError
    from logship.records import build_batch_values
    from logship.storage import Store

    with Store(tmp_path, max_open_files=16) as store:
        store.create_topic("a", 1)
        store.create_topic("b", 8)
        first = store.partition("a", 0)
        first.append_batches(build_batch_values([b"x"], int(time.time() * 1000)))  # not synced yet
        for p in range(8):  # evicts a's files from the cache
            store.partition("b", p).append_batches(build_batch_values([b"y"], int(time.time() * 1000)))
        hog = []
        try:
            while True:
                hog.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        try:
            with pytest.raises(KafkaStorageError):
                first.flush()
        finally:
            for fd in hog:
                os.close(fd)
        assert not first.offline
        first.append_batches(build_batch_values([b"z"], int(time.time() * 1000)))
        first.flush()
        assert first.recovery_point == first.log_end_offset == 2
