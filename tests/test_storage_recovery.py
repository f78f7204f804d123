"""Crash recovery: torn tails at every byte, garbage, CRC damage, lost and broken indexes."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from logship import records
from logship.storage import LogConfig, Store
from storage_batches import copy_unclean, make_batch, read_all

CONFIG = LogConfig(segment_bytes=1_500, index_interval_bytes=200)


class Crashed:
    """A data dir as a crash left it (copied while the store was open), and what it held."""

    def __init__(self, root: Path):
        src = root / "live"
        rng = random.Random(7)
        with Store(src, CONFIG) as store:
            store.create_topic("t", 1)
            p = store.partition("t", 0)
            for i in range(45):
                p.append_batches(make_batch(rng.randint(1, 4), value_size=rng.randint(20, 90), timestamp=1_000 + i))
                if i == 20:
                    store.checkpoint()  # the recovery point lands in an early segment
            self.dir = copy_unclean(src, root / "crashed")
        self.part = self.dir / "t-0"
        self.logs = sorted(self.part.glob("*.log"))
        self.files = {path.name: path.read_bytes() for path in self.logs}
        self.batches = []  # (segment name, position, size, next offset)
        for path in self.logs:
            for pos, header in records.iter_batches(self.files[path.name]):
                self.batches.append((path.name, pos, header.size, header.next_offset))
        assert len(self.logs) >= 4

    def case(self, root: Path, name: str) -> Path:
        dst = root / name
        shutil.copytree(self.dir, dst)
        return dst

    def expected_at(self, log_name: str, size: int) -> tuple[int, int]:
        """(bytes kept, log end offset) when `log_name` is cut to `size` bytes."""
        kept, leo = 0, None
        for name, pos, length, next_offset in self.batches:
            if name < log_name or (name == log_name and pos + length <= size):
                leo = next_offset
                if name == log_name:
                    kept = pos + length
        return kept, leo

    def check(self, data_dir: Path, log_name: str, kept: int, leo: int, deep: bool = True) -> None:
        with Store(data_dir, CONFIG) as store:
            assert store.recovered
            p = store.partition("t", 0)
            assert p.log_end_offset == leo == p.high_watermark == p.recovery_point
            expected = b""
            for path in self.logs:
                if path.name < log_name:
                    expected += self.files[path.name]
                    assert (data_dir / "t-0" / path.name).read_bytes() == self.files[path.name]
                elif path.name == log_name:
                    expected += self.files[path.name][:kept]
                    assert (data_dir / "t-0" / path.name).read_bytes() == self.files[path.name][:kept]
            assert read_all(p) == expected
            if deep:
                for _, pos, _, next_offset in self.batches[:5] + self.batches[-6:]:
                    if next_offset <= leo:
                        with p.read(next_offset - 1, 1) as piece:
                            assert records.parse_header(piece.read_bytes()).next_offset == next_offset
            assert p.append_batches(make_batch(2)).base_offset == leo  # no offset repeated or skipped
        if deep:
            with Store(data_dir, CONFIG) as store:  # and a clean reopen finds the same log
                assert not store.recovered
                assert store.partition("t", 0).log_end_offset == leo + 2


@pytest.fixture
def no_sync(monkeypatch):
    """Skip fsyncs in the many-case tests: the crash is simulated by copying, not by power loss."""
    monkeypatch.setattr("os.fsync", lambda fd: None)
    monkeypatch.setattr("os.fdatasync", lambda fd: None)


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    return Crashed(tmp_path_factory.mktemp("recovery"))


def test_a_torn_tail_is_cut_at_the_last_whole_batch_for_every_byte(crashed, tmp_path, no_sync):
    last = crashed.logs[-1].name
    tail = [b for b in crashed.batches if b[0] == last][-2:]
    assert len(tail) == 2
    start, end = tail[0][1], len(crashed.files[last])
    for cut in range(start, end + 1):
        data_dir = crashed.case(tmp_path, f"cut{cut}")
        with open(data_dir / "t-0" / last, "r+b") as f:
            f.truncate(cut)
        kept, leo = crashed.expected_at(last, cut)
        crashed.check(data_dir, last, kept, leo, deep=cut % 25 == 0)
        shutil.rmtree(data_dir)


def test_garbage_after_whole_and_cut_batches_is_cut_off(crashed, tmp_path, no_sync):
    rng = random.Random(11)
    last = crashed.logs[-1].name
    tail = [b for b in crashed.batches if b[0] == last][-3:]
    points = [b[1] for b in tail] + [len(crashed.files[last])]
    points += [rng.randrange(tail[0][1], len(crashed.files[last])) for _ in range(40)]
    for i, cut in enumerate(points):
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 300)))
        for kind, extra in (("random", junk), ("zeros", bytes(len(junk))), ("ones", b"\xff" * len(junk))):
            data_dir = crashed.case(tmp_path, f"junk{i}{kind}")
            path = data_dir / "t-0" / last
            path.write_bytes(crashed.files[last][:cut] + extra)
            kept, leo = crashed.expected_at(last, cut)
            crashed.check(data_dir, last, kept, leo, deep=i % 10 == 0)
            shutil.rmtree(data_dir)


def test_a_replayed_old_batch_at_the_end_is_cut_off(crashed, tmp_path):
    last = crashed.logs[-1].name
    data_dir = crashed.case(tmp_path, "replay")
    first_batch = crashed.files[crashed.logs[0].name][: crashed.batches[0][2]]  # valid CRC, offset 0
    with open(data_dir / "t-0" / last, "ab") as f:
        f.write(first_batch)
    crashed.check(data_dir, last, len(crashed.files[last]), crashed.batches[-1][3])


def test_a_crc_error_drops_that_batch_and_every_later_segment(crashed, tmp_path):
    victim = crashed.logs[-3].name
    name, pos, size, _ = [b for b in crashed.batches if b[0] == victim][2]
    data_dir = crashed.case(tmp_path, "flip")
    with open(data_dir / "t-0" / victim, "r+b") as f:
        f.seek(pos + size - 5)
        byte = f.read(1)
        f.seek(pos + size - 5)
        f.write(bytes([byte[0] ^ 0x10]))
    kept, leo = crashed.expected_at(victim, pos)
    crashed.check(data_dir, victim, kept, leo)
    assert sorted(p.name for p in (data_dir / "t-0").glob("*.log"))[-1] == victim


def test_segments_below_the_recovery_point_are_trusted_not_rescanned(crashed, tmp_path):
    data_dir = crashed.case(tmp_path, "trusted")
    with Store(data_dir, CONFIG) as store:
        report = store.partition("t", 0).load_report
        assert 0 < report.recovered_segments < len(crashed.logs)
        assert report.truncated_bytes == 0 and report.deleted_segments == 0
    assert (data_dir / "recovery-point-offset-checkpoint").read_text() == f"0\n1\nt 0 {crashed.batches[-1][3]}\n"


def test_a_gap_between_segments_drops_the_later_ones(crashed, tmp_path):
    data_dir = crashed.case(tmp_path, "gap")
    victim = crashed.logs[-2].name
    last_batch = [b for b in crashed.batches if b[0] == victim][-1]
    with open(data_dir / "t-0" / victim, "r+b") as f:  # the segment lost its last batch whole
        f.truncate(last_batch[1])
    kept, leo = crashed.expected_at(victim, last_batch[1])
    crashed.check(data_dir, victim, kept, leo)


def test_missing_or_broken_indexes_are_rebuilt(crashed, tmp_path):
    data_dir = crashed.case(tmp_path, "indexes")
    with Store(data_dir, CONFIG):
        pass  # recover, then close cleanly
    part = data_dir / "t-0"
    good = {p.name: p.read_bytes() for p in part.glob("*.index")}
    assert any(good.values())
    names = sorted(good)
    (part / names[0]).unlink()
    (part / names[0].replace(".index", ".timeindex")).unlink()
    with open(part / names[1], "ab") as f:
        f.write(b"\x00" * 5)  # not a whole entry
    with open(part / names[2], "ab") as f:
        f.write(b"\x00" * 8)  # a whole entry pointing backwards
    with Store(data_dir, CONFIG) as store:
        assert not store.recovered
        p = store.partition("t", 0)
        for _, pos, _, next_offset in crashed.batches:
            with p.read(next_offset - 1, 1) as piece:
                assert records.parse_header(piece.read_bytes()).next_offset == next_offset
        assert p.offset_for_timestamp(1_030) is not None
    for name in names[:2]:
        assert (part / name).read_bytes() == good[name]
    assert (part / names[0].replace(".index", ".timeindex")).stat().st_size > 0


def test_an_unclean_stop_with_an_empty_active_segment_continues_offsets(tmp_path):
    src = tmp_path / "live"
    with Store(src, LogConfig(segment_bytes=1_000, retention_bytes=0)) as store:
        store.create_topic("t", 1)
        p = store.partition("t", 0)
        for _ in range(8):
            p.append_batches(make_batch(3, value_size=100))
        leo = p.log_end_offset
        p.delete_before(leo)  # everything gone: one empty segment named by the log end
        copy_unclean(src, tmp_path / "crashed")
    with Store(tmp_path / "crashed") as store:
        p = store.partition("t", 0)
        assert (p.log_start_offset, p.log_end_offset) == (leo, leo)
        assert p.append_batches(make_batch(1)).base_offset == leo
