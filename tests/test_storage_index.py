"""OffsetIndex and TimeIndex: Kafka's entry formats, lookups across buffered entries, damage."""

from __future__ import annotations

import errno
import os
import struct

import pytest

from logship.storage.checkpoint import MalformedCheckpoint, read_epochs, read_offsets, write_epochs, write_offsets
from logship.storage.index import OffsetIndex, TimeIndex


def test_offset_index_format_and_lookup(tmp_path):
    index = OffsetIndex(tmp_path / "00000000000000000100.index", 100)
    entries = [(100 + 10 * i + 9, 1000 * i + 500) for i in range(1, 600)]
    for entry in entries:  # more than the buffer holds: part on disk, part pending
        index.append_many([entry])
    assert index.entries == 599 and 0 < index.file_size < 599 * 8
    assert index.lookup(50) == (100, 0)  # below the first entry: the segment start
    assert index.lookup(118) == (100, 0)
    assert index.lookup(119) == (119, 1500)
    assert index.lookup(125) == (119, 1500)
    for offset, position in entries[::37] + entries[-3:]:
        assert index.lookup(offset) == (offset, position)
        assert index.lookup(offset + 5) == (offset, position)
    index.truncate_to(entries[300][0])
    assert index.entries == 300 and index.last_entry == entries[299]
    index.truncate_to(entries[10][0])
    assert index.entries == 10
    index.close()
    raw = (tmp_path / "00000000000000000100.index").read_bytes()
    assert list(struct.iter_unpack(">ii", raw)) == [(o - 100, p) for o, p in entries[:10]]
    again = OffsetIndex(tmp_path / "00000000000000000100.index", 100)
    assert again.last_entry == entries[9] and again.lookup(10_000) == entries[9]
    again.close()


def test_time_index_format_and_lookup(tmp_path):
    index = TimeIndex(tmp_path / "00000000000000000000.timeindex", 0)
    index.append_many([(1_000, 4), (2_000, 9), (5_000, 20)])
    assert index.last_below(1_000) is None
    assert index.last_below(1_001) == (1_000, 4)
    assert index.last_below(5_000) == (2_000, 9)
    assert index.last_below(9_999) == (5_000, 20)
    index.truncate_to(9)
    assert index.last_entry == (1_000, 4)
    index.close()
    assert (tmp_path / "00000000000000000000.timeindex").read_bytes() == struct.pack(">qi", 1_000, 4)


def test_index_problems_are_found(tmp_path):
    path = tmp_path / "00000000000000000000.index"
    path.write_bytes(struct.pack(">ii", 5, 100) + struct.pack(">ii", 9, 300))
    assert OffsetIndex(path, 0).problem(log_size=400, full=True) is None
    assert "outside the log" in OffsetIndex(path, 0).problem(log_size=300, full=False)
    path.write_bytes(struct.pack(">ii", 5, 100) + struct.pack(">ii", 9, 300) + b"\0" * 3)
    assert "multiple" in OffsetIndex(path, 0).problem(log_size=400, full=False)
    path.write_bytes(struct.pack(">ii", 5, 100) + struct.pack(">ii", 9, 300) + struct.pack(">ii", 7, 350))
    assert "increase" in OffsetIndex(path, 0).problem(log_size=400, full=True)


def test_a_failed_index_write_only_makes_the_index_sparser(tmp_path, monkeypatch):
    index = OffsetIndex(tmp_path / "00000000000000000000.index", 0)
    index.append_many([(i * 10, i * 100) for i in range(1, 11)])
    real = os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    index.flush()
    monkeypatch.setattr(os, "pwrite", real)
    assert index.entries == 0 and index.lookup(55) == (0, 0)  # correct, just less helpful
    index.append_many([(120, 1200)])
    index.close()
    assert (tmp_path / "00000000000000000000.index").read_bytes() == struct.pack(">ii", 120, 1200)


def test_checkpoint_formats(tmp_path):
    path = tmp_path / "recovery-point-offset-checkpoint"
    write_offsets(path, {("b", 1): 7, ("a-x", 0): 12})
    assert path.read_text() == "0\n2\na-x 0 12\nb 1 7\n"
    assert read_offsets(path) == {("a-x", 0): 12, ("b", 1): 7}
    assert not (tmp_path / "recovery-point-offset-checkpoint.tmp").exists()
    write_epochs(tmp_path / "leader-epoch-checkpoint", [(0, 0), (4, 120)])
    assert (tmp_path / "leader-epoch-checkpoint").read_text() == "0\n2\n0 0\n4 120\n"
    assert read_epochs(tmp_path / "leader-epoch-checkpoint") == [(0, 0), (4, 120)]
    assert read_offsets(tmp_path / "missing") == {}
    for bad in ("1\n0\n", "0\n2\na 0 1\n", "0\n1\na 0\n", "0\n1\na x 1\n", ""):
        path.write_text(bad)
        with pytest.raises(MalformedCheckpoint):
            read_offsets(path)
