"""Log compaction: latest record per key, offsets kept, segments merged, crash-safe swaps."""

from __future__ import annotations

import os
import shutil
import threading

import pytest
from kafka.record.default_records import DefaultRecordBatch

from logship import records
from logship.storage import LogConfig, Store
from logship.storage.compaction import compact, needs_compaction
from logship.storage.store import CLEAN_SHUTDOWN_FILE
from storage_batches import read_all

COMPACT = LogConfig(segment_bytes=2048, retention_ms=-1, cleanup_policy="compact", delete_retention_ms=60_000)
NOW_MS = 10_000_000


def open_store(path, config=COMPACT) -> Store:
    store = Store(path)
    store.set_topic_config("c", config)
    if "c" not in store.topics():
        store.create_topic("c", 1)
    return store


def append_round(partition, keys, round_no, timestamp=NOW_MS, value=None):
    batch = records.build_batch([(timestamp, b"key-%03d" % k, value if value is not None else b"v-%03d-%05d" % (k, round_no),
                                  ()) for k in keys])
    return partition.append_batches(bytearray(batch))


def all_records(partition):
    return list(records.iter_records(read_all(partition)))


def latest_by_key(recs):
    table = {}
    for r in recs:
        if r.value is None:
            table.pop(r.key, None)
        else:
            table[r.key] = (r.offset, r.value)
    return table


def check_contiguous(partition):
    segments = partition.segments
    for before, after in zip(segments, segments[1:]):
        assert before.next_offset == after.base_offset, segments
    assert segments[-1].next_offset == partition.log_end_offset


@pytest.fixture
def store(tmp_path):
    store = open_store(tmp_path / "data")
    yield store
    store.close()


def test_keeps_the_latest_record_of_every_key_at_its_offset(store):
    partition = store.partition("c", 0)
    for r in range(60):
        append_round(partition, range(10), r)
    before = all_records(partition)
    active_bytes = (partition.segments[-1].path.read_bytes())
    end = partition.log_end_offset
    result = compact(partition, NOW_MS)
    after = all_records(partition)
    assert result.bytes_after < result.bytes_before / 10
    assert partition.log_end_offset == end and partition.log_start_offset == 0
    check_contiguous(partition)
    assert partition.segments[-1].path.read_bytes() == active_bytes  # the active segment is not touched
    assert latest_by_key(after) == latest_by_key(before)
    sealed_end = partition.segments[-1].base_offset
    sealed = [r for r in after if r.offset < sealed_end]
    assert len({r.key for r in sealed}) == len(sealed)  # one record per key below the active segment
    by_offset = {r.offset: r for r in before}
    assert all(r == by_offset[r.offset] for r in after)  # offsets, timestamps, keys, values kept


def test_compacted_segments_are_valid_batches_for_an_independent_decoder(store):
    partition = store.partition("c", 0)
    for r in range(30):
        append_round(partition, range(8), r)
    compact(partition, NOW_MS)
    data = partition.segments[0].path.read_bytes()
    pos, seen = 0, []
    while pos < len(data):
        size = records.peek_offset_and_size(data, pos)[1]
        batch = DefaultRecordBatch(data[pos:pos + size])
        assert batch.validate_crc()
        seen += [(rec.offset, rec.key) for rec in batch]
        pos += size
    assert seen and [offset for offset, _ in seen] == sorted(offset for offset, _ in seen)
    assert len({key for _, key in seen}) == len(seen)


def test_a_segment_whose_last_records_were_superseded_ends_with_an_empty_batch(store):
    partition = store.partition("c", 0)
    append_round(partition, [1], 0)
    append_round(partition, [2], 0)  # segment 0: keys 1 and 2 at offsets 0 and 1
    append_round(partition, [2], 1, value=b"y" * 1950)  # rolls: segment 1 holds key 2 again
    append_round(partition, [3], 0)  # rolls: the active segment
    store.set_topic_config("c", LogConfig(segment_bytes=64, retention_ms=-1, cleanup_policy="compact"))
    compact(partition, NOW_MS)  # segment_bytes 64: nothing merges
    first = partition.segments[0]
    headers = [h for _, h in records.iter_batches(first.path.read_bytes())]
    assert [h.records_count for h in headers] == [1, 0]
    assert headers[-1].last_offset == 1 and first.next_offset == 2
    check_contiguous(partition)
    with partition.read(1, 1 << 20) as piece:  # offset 1 is gone: a read there starts at the next batch
        assert records.parse_header(piece.read_bytes()).base_offset == 1


def test_small_segments_are_merged_so_the_log_stays_bounded(store):
    partition = store.partition("c", 0)
    sizes = []
    for r in range(200):
        append_round(partition, range(20), r)
        if r % 10 == 9:
            compact(partition, NOW_MS)
            sizes.append((partition.size_bytes, len(partition.segments)))
    assert max(size for size, _ in sizes[2:]) < 3 * 2048
    assert max(count for _, count in sizes[2:]) <= 3
    check_contiguous(partition)
    table = latest_by_key(all_records(partition))
    assert table[b"key-019"][1] == b"v-019-00199" and len(table) == 20


def test_tombstones_stay_until_the_horizon_then_go(store):
    partition = store.partition("c", 0)
    for r in range(10):
        append_round(partition, range(5), r)
    partition.append_batches(bytearray(records.build_batch([(NOW_MS, b"key-000", None, ())])))
    for r in range(10, 30):
        append_round(partition, range(1, 5), r)
    compact(partition, NOW_MS)
    keys = [r.key for r in all_records(partition)]
    assert keys.count(b"key-000") == 1  # the tombstone alone, within delete_retention_ms
    compact(partition, NOW_MS + COMPACT.delete_retention_ms + 1)
    assert b"key-000" not in [r.key for r in all_records(partition)]


def test_records_without_a_key_and_control_batches_are_kept(store):
    partition = store.partition("c", 0)
    partition.append_batches(bytearray(records.build_batch([(NOW_MS, None, b"keyless", ())])))
    control = records.build_batch([(NOW_MS, b"\x00\x00\x00\x00", b"\x00\x00\x00\x00\x00\x00", ())], control=True)
    partition.append_batches(bytearray(control))
    for r in range(40):
        append_round(partition, range(5), r)
    compact(partition, NOW_MS)
    data = read_all(partition)
    assert b"keyless" in [r.value for r in records.iter_records(data)]
    assert any(h.is_control for _, h in records.iter_batches(data))


def test_a_second_pass_rewrites_nothing(store):
    partition = store.partition("c", 0)
    for r in range(50):
        append_round(partition, range(10), r)
    compact(partition, NOW_MS)
    inodes = [os.stat(s.path).st_ino for s in partition.segments]
    result = compact(partition, NOW_MS)
    assert result.bytes_after == result.bytes_before and result.records_removed == 0
    assert [os.stat(s.path).st_ino for s in partition.segments] == inodes


def test_store_compacts_only_compact_topics_and_only_when_enough_is_dirty(store):
    store.create_topic("plain", 1)
    store.set_topic_config("plain", LogConfig(segment_bytes=2048))
    for r in range(50):
        append_round(store.partition("c", 0), range(10), r)
        append_round(store.partition("plain", 0), range(10), r)
    plain_size = store.partition("plain", 0).size_bytes
    results = store.compact(NOW_MS)
    assert len(results) == 1 and store.partition("plain", 0).size_bytes == plain_size
    assert store.compact(NOW_MS) == []  # nothing new was sealed
    partition = store.partition("c", 0)
    assert not needs_compaction(partition, results[0].cleaned_to)
    for r in range(50, 60):
        append_round(partition, range(10), r)
    assert needs_compaction(partition, results[0].cleaned_to)
    assert len(store.compact(NOW_MS)) == 1


@pytest.mark.parametrize("clean", [True, False])
def test_a_compacted_log_reopens_with_the_same_records(tmp_path, clean):
    store = open_store(tmp_path / "data")
    partition = store.partition("c", 0)
    for r in range(80):
        append_round(partition, range(10), r)
    compact(partition, NOW_MS)
    expected = all_records(partition)
    store.close()
    if not clean:
        (tmp_path / "data" / CLEAN_SHUTDOWN_FILE).unlink()
        os.remove(tmp_path / "data" / "recovery-point-offset-checkpoint")
    store = open_store(tmp_path / "data")
    partition = store.partition("c", 0)
    assert store.recovered is not clean
    assert all_records(partition) == expected
    check_contiguous(partition)
    append_round(partition, [1], 999)
    assert latest_by_key(all_records(partition))[b"key-001"][1] == b"v-001-00999"
    store.close()


def test_an_interrupted_swap_is_finished_when_the_log_is_opened(tmp_path):
    data = tmp_path / "data"
    store = open_store(data)
    partition = store.partition("c", 0)
    for r in range(40):
        append_round(partition, range(10), r)
    directory = partition.directory
    store.close()
    before = tmp_path / "before"
    shutil.copytree(directory, before)
    store = open_store(data)
    partition = store.partition("c", 0)
    compact(partition, NOW_MS)
    expected = all_records(partition)
    merged = partition.segments[0]
    merged_name, merged_bytes, covered = merged.path.name, merged.path.read_bytes(), merged.next_offset
    store.close()
    # the state of a crash after the swap file was committed and one old segment deleted
    shutil.rmtree(directory)
    shutil.copytree(before, directory)
    (directory / (merged_name + ".swap")).write_bytes(merged_bytes)
    doomed = sorted(p for p in directory.glob("*.log") if int(p.stem) < covered)
    assert len(doomed) > 2
    doomed[1].unlink()
    (tmp_path / "data" / CLEAN_SHUTDOWN_FILE).unlink()
    store = open_store(data)
    partition = store.partition("c", 0)
    assert all_records(partition) == expected
    assert not list(directory.glob("*.swap"))
    assert partition.segments[0].path.read_bytes() == merged_bytes
    check_contiguous(partition)
    store.close()


def test_a_leftover_cleaned_file_is_removed(tmp_path):
    store = open_store(tmp_path / "data")
    partition = store.partition("c", 0)
    for r in range(20):
        append_round(partition, range(10), r)
    expected = all_records(partition)
    (partition.directory / "00000000000000000000.log.cleaned").write_bytes(b"half written")
    store.close()
    store = open_store(tmp_path / "data")
    assert all_records(store.partition("c", 0)) == expected
    assert not list(store.partition("c", 0).directory.glob("*.cleaned"))
    store.close()


def test_replacement_is_refused_when_the_segments_changed_meanwhile(store):
    partition = store.partition("c", 0)
    for r in range(20):
        append_round(partition, range(10), r)
    old = partition.segments[:2]
    cleaned = partition.directory / "stale.log.cleaned"
    cleaned.write_bytes(b"")
    partition.truncate_to(old[1].base_offset)
    assert partition.replace_segments(old, cleaned) is None
    assert not cleaned.exists()


def test_appends_go_on_while_a_pass_runs(store):
    partition = store.partition("c", 0)
    for r in range(100):
        append_round(partition, range(10), r)
    stop = threading.Event()
    errors = []

    def compact_repeatedly():
        try:
            while not stop.is_set():
                compact(partition, NOW_MS)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=compact_repeatedly)
    thread.start()
    try:
        for r in range(100, 400):
            append_round(partition, range(10), r)
    finally:
        stop.set()
        thread.join(30)
    assert not errors
    compact(partition, NOW_MS)
    check_contiguous(partition)
    table = latest_by_key(all_records(partition))
    assert {key: value for key, (_, value) in table.items()} == {b"key-%03d" % k: b"v-%03d-00399" % k
                                                                 for k in range(10)}
