"""Partition: appends, offsets, rolling, reads at every boundary, lookups, truncation, disk full."""

from __future__ import annotations

import errno
import os
import struct
import subprocess
import tracemalloc

import pytest

from logship import records
from logship.errors import (CorruptRecordError, InvalidRecordError, KafkaStorageError, MessageTooLargeError,
                            OffsetOutOfRangeError, RecordListTooLargeError)
from logship.storage import LogConfig, Partition
from logship.storage.segment import Segment
from storage_batches import make_batch, read_all, with_offset


class Clock:
    def __init__(self, seconds: float = 1_000_000.0):
        self.now = seconds

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def open_partition(tmp_path):
    opened = []

    def open_(clock=None, directory=None, **config) -> Partition:
        p = Partition("t", 0, directory or tmp_path / "t-0", LogConfig(**config), clock=clock or Clock())
        opened.append(p)
        return p

    yield open_
    for p in opened:
        p.close()


def fill(p: Partition, sizes) -> list[tuple[int, bytes]]:
    """Append one batch per entry of `sizes` (record counts); [(base offset, bytes as stored)]."""
    out = []
    for i, count in enumerate(sizes):
        batch = make_batch(count, value_size=20 + i % 7, timestamp=1_000 + i)
        result = p.append_batches(batch)
        out.append((result.base_offset, with_offset(batch, result.base_offset)))
    return out


def test_offsets_are_assigned_in_place_and_contiguous(open_partition):
    p = open_partition()
    a, b = make_batch(3), make_batch(1)
    r1 = p.append_batches(a)
    r2 = p.append_batches(bytearray(b))
    r3 = p.append_batches(memoryview(a + b))  # two batches in one call
    assert (r1.base_offset, r1.last_offset, r2.base_offset, r3.base_offset, r3.last_offset) == (0, 2, 3, 4, 7)
    assert r3.record_count == 4 and r3.log_end_offset == 8 == p.log_end_offset == p.high_watermark
    expected = with_offset(a, 0) + with_offset(b, 3) + with_offset(a, 4) + with_offset(b, 7)
    assert (p.directory / "00000000000000000000.log").read_bytes() == expected
    assert read_all(p) == expected
    for _, header in records.iter_batches(expected):  # offsets and epochs rewritten, CRCs still valid
        assert header.partition_leader_epoch == 0
        assert records.crc_is_valid(expected, _, header.size)


def test_a_bytearray_is_stamped_in_place(open_partition):
    p = open_partition()
    p.append_batches(make_batch(2))
    buf = bytearray(make_batch(1, epoch=3))
    p.set_leader_epoch(7)
    p.append_batches(buf)
    header = records.parse_header(buf)
    assert (header.base_offset, header.partition_leader_epoch) == (2, 7)


def _recrc(buf: bytearray) -> bytes:
    struct.pack_into(">I", buf, 17, records.crc32c(memoryview(buf)[21:]))
    return bytes(buf)


@pytest.mark.parametrize("damage, error", [
    (lambda b: b[:-1], CorruptRecordError),                                   # cut short
    (lambda b: b[:-1] + bytes([b[-1] ^ 1]), CorruptRecordError),              # CRC mismatch
    (lambda b: b[:16] + b"\x01" + b[17:], CorruptRecordError),                # magic 1
    (lambda b: b[:30], CorruptRecordError),                                   # half a header
    (lambda b: b + b"\x00" * 30, CorruptRecordError),                         # trailing junk
    (lambda b: _recrc(bytearray(b[:57]) + struct.pack(">i", 0) + b[61:]), InvalidRecordError),   # 0 records
    (lambda b: _recrc(bytearray(b[:23]) + struct.pack(">i", 5) + b[27:]), InvalidRecordError),   # delta != count-1
])
def test_bad_batches_are_refused_before_anything_is_written(open_partition, damage, error):
    p = open_partition()
    p.append_batches(make_batch(2))
    before = (p.directory / "00000000000000000000.log").read_bytes()
    good = make_batch(3)
    with pytest.raises(error):
        p.append_batches(good + damage(good))  # a good batch first: still nothing written
    assert (p.directory / "00000000000000000000.log").read_bytes() == before
    assert p.log_end_offset == 2
    assert p.append_batches(good).base_offset == 2


def test_no_batches_at_all_is_refused(open_partition):
    with pytest.raises(CorruptRecordError):
        open_partition().append_batches(b"")


def test_too_large_batches_are_refused(open_partition):
    p = open_partition(max_batch_bytes=500)
    with pytest.raises(MessageTooLargeError):
        p.append_batches(make_batch(10, value_size=100))
    assert p.log_end_offset == 0 and p.size_bytes == 0


def test_segments_roll_by_size_and_are_named_by_base_offset(open_partition):
    p = open_partition(segment_bytes=1_000)
    fill(p, [1, 2, 3, 4, 5] * 8)
    segments = p.segments
    assert len(segments) > 5
    names = sorted(f.name for f in p.directory.glob("*.log"))
    assert names == [f"{s.base_offset:020d}.log" for s in segments]
    for prev, seg in zip(segments, segments[1:]):
        assert seg.base_offset == prev.next_offset
        assert prev.size <= 1_000
    for seg in segments:
        assert (p.directory / f"{seg.base_offset:020d}.index").exists()
        assert (p.directory / f"{seg.base_offset:020d}.timeindex").exists()


def test_a_batch_bigger_than_a_segment_is_refused_as_kafka_does(open_partition):
    p = open_partition(segment_bytes=300)
    fill(p, [1])
    with pytest.raises(RecordListTooLargeError) as caught:
        fill(p, [20])
    assert caught.value.code == 18 and "segment.bytes" in str(caught.value)
    fill(p, [1])
    assert [s.base_offset for s in p.segments] == [0] and p.log_end_offset == 2


def test_segments_roll_by_age(open_partition):
    clock = Clock()
    p = open_partition(clock=clock, segment_ms=60_000)
    fill(p, [1, 1])
    clock.now += 59
    fill(p, [1])
    assert len(p.segments) == 1
    clock.now += 2
    fill(p, [1])
    assert [s.base_offset for s in p.segments] == [0, 3]


def test_reads_at_every_boundary(open_partition):
    p = open_partition(segment_bytes=700, index_interval_bytes=150)
    batches = fill(p, [1, 3, 2, 5, 1, 4, 2, 2, 3, 1] * 3)
    by_offset = {}
    for base, data in batches:
        for o in range(base, base + records.parse_header(data).last_offset_delta + 1):
            by_offset[o] = (base, data)
    segments = p.segments
    assert len(segments) >= 4
    ends = {s.base_offset: s for s in segments}
    for offset in range(p.log_end_offset):
        piece = p.read(offset, 1 << 20)
        with piece:
            data = piece.read_bytes()
        base, first = by_offset[offset]
        assert data.startswith(first), offset
        seg = ends[max(b for b in ends if b <= offset)]
        assert piece.position + piece.length == seg.size  # to the end of that one segment
        assert data == b"".join(d for b, d in batches if seg.base_offset <= b < seg.next_offset and b >= base)
    assert p.read(p.log_end_offset, 100) is None
    for bad in (-1, p.log_end_offset + 1):
        with pytest.raises(OffsetOutOfRangeError):
            p.read(bad, 100)


def test_reads_move_on_to_the_next_segment_for_offsets_it_holds(open_partition):
    p = open_partition(segment_bytes=500)
    fill(p, [2] * 12)
    for seg in p.segments[1:]:
        with p.read(seg.base_offset, 1 << 20) as piece:
            assert records.parse_header(piece.read_bytes()).base_offset == seg.base_offset
            assert piece.position == 0


def test_max_bytes_cuts_the_last_batch_but_never_the_first(open_partition):
    p = open_partition()
    batches = fill(p, [4, 4, 4])
    size = len(batches[0][1])
    with p.read(0, size + 10) as piece:  # a whole batch and 10 bytes of the next
        assert piece.length == size + 10
        assert piece.read_bytes() == (batches[0][1] + batches[1][1])[: size + 10]
    with p.read(4, 5) as piece:  # KIP-74: the first batch comes whole
        assert piece.read_bytes() == batches[1][1]
    with p.read(5, 1) as piece:  # an offset inside a batch returns the batch containing it
        assert piece.read_bytes() == batches[1][1]


def test_reads_stop_below_the_high_watermark(open_partition):
    p = open_partition()
    batches = fill(p, [2, 2, 2])
    p.set_high_watermark(4)
    assert p.high_watermark == 4
    with p.read(0, 1 << 20) as piece:
        assert piece.read_bytes() == batches[0][1] + batches[1][1]
    assert p.read(4, 100) is None
    with p.read(0, 1 << 20, max_offset=2) as piece:
        assert piece.read_bytes() == batches[0][1]
    p.set_high_watermark(3)  # inside a batch: that batch is not committed yet
    with p.read(0, 1 << 20) as piece:
        assert piece.read_bytes() == batches[0][1]
    p.append_batches(make_batch(1))  # for now the high watermark follows appends
    assert p.high_watermark == 7


def test_slices_survive_deletion_of_their_segment(open_partition):
    p = open_partition(segment_bytes=400, retention_bytes=0)
    batches = fill(p, [2] * 6)
    piece = p.read(0, 1 << 20)
    assert p.enforce_retention() > 0
    assert not (p.directory / "00000000000000000000.log").exists()
    assert piece.read_bytes().startswith(batches[0][1])
    out = os.pipe()
    try:
        sent = os.sendfile(out[1], piece.fd, piece.position, piece.length)
        assert os.read(out[0], sent) == piece.read_bytes()[:sent]
    finally:
        os.close(out[0]), os.close(out[1]), piece.close()


def test_index_entries_are_written_every_interval_and_used(open_partition, monkeypatch):
    p = open_partition(index_interval_bytes=1_000)
    batches = fill(p, [3] * 60)
    p.segments[0].offset_index.flush()  # entries are buffered in memory a while
    p.segments[0].time_index.flush()
    raw = (p.directory / "00000000000000000000.index").read_bytes()
    entries = list(struct.iter_unpack(">ii", raw))
    positions, pos = {}, 0
    for base, data in batches:
        positions[pos] = records.parse_header(data).last_offset
        pos += len(data)
    assert len(entries) >= 6
    for rel, position in entries:
        assert positions[position] == rel  # (last offset of the batch, its position)
    gaps = [b[1] - a[1] for a, b in zip(entries, entries[1:])]
    assert all(1_000 < gap <= 1_000 + len(batches[0][1]) for gap in gaps)
    times = list(struct.iter_unpack(">qi", (p.directory / "00000000000000000000.timeindex").read_bytes()))
    assert times and all(a[0] < b[0] and a[1] < b[1] for a, b in zip(times, times[1:]))
    scanned = []
    real_scan = Segment.scan
    monkeypatch.setattr(Segment, "scan", lambda self, *a: (scanned.append(b) or b for b in real_scan(self, *a)))
    p.read(170, 10).close()
    assert len(scanned) <= 1_000 // len(batches[0][1]) + 2  # an index lookup, then a short scan


def test_offset_for_timestamp(open_partition):
    p = open_partition(segment_bytes=600, index_interval_bytes=100)
    stamps = [1_000, 1_000, 2_000, 1_500, 3_000, 3_000, 4_000, 5_000, 6_000, 7_000]
    bases = [p.append_batches(make_batch(2, timestamp=ts)).base_offset for ts in stamps]
    assert len(p.segments) > 2
    for target in range(0, 8_000, 250):
        expected = next((b for b, ts in zip(bases, stamps) if ts >= target), None)
        assert p.offset_for_timestamp(target) == expected, target
    p.set_high_watermark(bases[8])
    assert p.offset_for_timestamp(6_500) is None
    p.delete_before(bases[2] + 1)
    assert p.offset_for_timestamp(0) == bases[2] + 1


def test_truncate_to(open_partition):
    p = open_partition(segment_bytes=500)
    batches = fill(p, [2] * 15)
    segs = p.segments
    third = segs[2]
    p.truncate_to(third.base_offset + 2)  # a batch boundary inside the third segment
    assert p.log_end_offset == third.base_offset + 2 == p.high_watermark
    assert [s.base_offset for s in p.segments] == [s.base_offset for s in segs[:3]]
    assert not (p.directory / f"{segs[3].base_offset:020d}.log").exists()
    assert p.append_batches(make_batch(1)).base_offset == third.base_offset + 2
    p.truncate_to(segs[1].base_offset)  # a segment's first offset: it stays, empty
    assert p.log_end_offset == segs[1].base_offset and p.segments[-1].size == 0
    p.truncate_to(3)  # inside a batch: the whole batch goes
    assert p.log_end_offset == 2
    assert read_all(p) == batches[0][1]
    p.truncate_to(100)  # beyond the end: nothing happens
    assert p.log_end_offset == 2
    assert p.append_batches(make_batch(1)).base_offset == 2


def test_truncate_below_log_start_restarts_the_log_there(open_partition):
    p = open_partition(segment_bytes=500)
    fill(p, [2] * 10)
    p.delete_before(12)
    p.truncate_to(5)
    assert (p.log_start_offset, p.log_end_offset) == (5, 5)
    assert [s.base_offset for s in p.segments] == [5]
    assert p.append_batches(make_batch(1)).base_offset == 5


def test_delete_before(open_partition):
    p = open_partition(segment_bytes=500)
    batches = fill(p, [2] * 12)
    segs = p.segments
    assert p.delete_before(segs[1].base_offset + 1) == 1  # only whole segments below go
    assert p.log_start_offset == segs[1].base_offset + 1
    assert [s.base_offset for s in p.segments] == [s.base_offset for s in segs[1:]]
    with pytest.raises(OffsetOutOfRangeError):
        p.read(segs[1].base_offset, 10)
    with p.read(segs[1].base_offset + 1, 1) as piece:  # the batch containing it
        assert records.parse_header(piece.read_bytes()).base_offset == segs[1].base_offset
    with pytest.raises(OffsetOutOfRangeError):
        p.delete_before(p.high_watermark + 1)
    assert p.delete_before(3) == 0  # going back does nothing
    leo = p.log_end_offset
    p.delete_before(leo)  # everything: an empty segment at the end remains
    assert (p.log_start_offset, p.log_end_offset) == (leo, leo)
    assert [s.base_offset for s in p.segments] == [leo]
    assert p.read(leo, 100) is None
    assert p.append_batches(make_batch(1)).base_offset == leo
    assert len(batches) == 12


def test_leader_epochs_are_stamped_and_checkpointed(open_partition):
    p = open_partition()
    assert p.leader_epoch == 0 and (p.directory / "leader-epoch-checkpoint").read_text() == "0\n0\n"
    p.append_batches(make_batch(2, epoch=9))  # what a producer put there does not count
    p.append_batches(make_batch(2))
    p.set_leader_epoch(3)
    assert (p.directory / "leader-epoch-checkpoint").read_text() == "0\n1\n0 0\n"  # not before a batch
    p.append_batches(make_batch(2))
    p.set_leader_epoch(5)
    p.append_batches(make_batch(1))
    assert p.leader_epoch == 5
    assert (p.directory / "leader-epoch-checkpoint").read_text() == "0\n3\n0 0\n3 4\n5 6\n"
    data = read_all(p)
    assert [h.partition_leader_epoch for _, h in records.iter_batches(data)] == [0, 0, 3, 5]
    assert [p.epoch_for_offset(o) for o in (0, 3, 4, 5, 6)] == [0, 0, 3, 3, 5]
    assert p.epochs.end_offset_for(3, p.log_end_offset) == (3, 6)
    assert p.epochs.end_offset_for(4, p.log_end_offset) == (3, 6)
    assert p.epochs.end_offset_for(9, p.log_end_offset) == (5, 7)
    p.truncate_to(6)
    assert (p.directory / "leader-epoch-checkpoint").read_text() == "0\n2\n0 0\n3 4\n"
    p.truncate_to(5)  # inside epoch 3's only batch: the batch and the epoch go
    assert (p.directory / "leader-epoch-checkpoint").read_text() == "0\n1\n0 0\n"
    assert p.leader_epoch == 5  # the current epoch is the coordinator's, not the log's
    p.append_batches(make_batch(1))
    assert (p.directory / "leader-epoch-checkpoint").read_text() == "0\n2\n0 0\n5 4\n"
    with pytest.raises(ValueError):
        p.set_leader_epoch(4)


def test_a_failed_write_leaves_the_segment_as_it_was(open_partition, monkeypatch):
    p = open_partition(index_interval_bytes=0)
    fill(p, [2, 2])
    log_path = p.directory / "00000000000000000000.log"
    before = log_path.read_bytes(), (p.directory / "00000000000000000000.index").read_bytes()
    real = os.pwrite

    def half_then_enospc(fd, data, pos):
        if len(data) > 40:
            real(fd, bytes(data[: len(data) // 2]), pos)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, pos)

    monkeypatch.setattr(os, "pwrite", half_then_enospc)
    with pytest.raises(KafkaStorageError, match="No space left"):
        p.append_batches(make_batch(3))
    monkeypatch.setattr(os, "pwrite", real)
    assert (log_path.read_bytes(), (p.directory / "00000000000000000000.index").read_bytes()) == before
    assert p.log_end_offset == 4
    assert p.append_batches(make_batch(1)).base_offset == 4
    assert len(list(records.iter_batches(log_path.read_bytes()))) == 3


def test_a_full_tmpfs_refuses_appends_and_corrupts_nothing(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    p = None
    try:
        p = Partition("t", 0, mnt / "t-0", LogConfig(segment_bytes=16_000))
        appended, refused = 0, 0
        while refused == 0:
            try:
                p.append_batches(make_batch(5, value_size=180))
                appended += 1
            except KafkaStorageError:
                refused += 1
        leo = p.log_end_offset
        assert leo == appended * 5 and appended > 20
        for seg in p.segments:  # every file is whole batches only
            data = seg.path.read_bytes()
            assert sum(h.size for _, h in records.iter_batches(data)) == len(data) == seg.size
        assert p.delete_before(p.segments[1].base_offset) == 1  # free space; appends work again, no restart
        assert p.append_batches(make_batch(5, value_size=180)).base_offset == leo
        p.close()
        p = Partition("t", 0, mnt / "t-0", LogConfig(segment_bytes=16_000), clean=False, recovery_point=0)
        assert p.log_end_offset == leo + 5 and p.load_report.truncated_bytes == 0
    finally:
        if p is not None:
            p.close()
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_memory_does_not_grow_with_messages(open_partition):
    p = open_partition(segment_bytes=50_000)
    batch = make_batch(10, value_size=100)
    for _ in range(200):
        p.append_batches(batch)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(3_000):
            p.append_batches(batch)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(p.segments) > 50
    assert grown < 3_000 * 100  # a few integers per segment, nothing per batch or record


def test_replica_batches_keep_their_offsets_and_epochs(open_partition, tmp_path):
    leader = open_partition()
    leader.set_leader_epoch(1)
    leader.append_batches(make_batch(2))
    leader.set_leader_epoch(2)
    leader.append_batches(make_batch(3))
    data = read_all(leader)
    follower = open_partition(directory=tmp_path / "f-0")
    with pytest.raises(InvalidRecordError):
        follower.append_replica_batch(with_offset(make_batch(2), 5))  # would leave a gap
    result = follower.append_replica_batch(data)
    assert (result.base_offset, result.last_offset, follower.leader_epoch) == (0, 4, 2)
    assert read_all(follower) == data
    with pytest.raises(InvalidRecordError):
        follower.append_replica_batch(data)  # offsets already there
    assert follower.log_end_offset == 5 and follower.epochs.entries == [(1, 0), (2, 2)]
