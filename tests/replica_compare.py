"""Compare the replicas of one partition byte for byte, from their segment files on disk.

Followers append the leader's batches unchanged (offsets, epochs, timestamps, CRC), so below
the high watermark every in-sync replica holds the same sequence of batches, byte for byte,
whatever its segment boundaries. `compare(dirs)` walks each replica's `.log` files in base
offset order, batch by batch (storage/dump.py's tolerant scanner), and compares every batch
whose base offset lies in [the highest log start, `upto`), where `upto` defaults to the
high watermark as the files tell it: the lowest log end offset among the in-sync replicas
(the `isr` given, else the one in the newest `partition-state` file found, else all).

    dirs = partition_dirs({1: data1, 2: data2, 3: data3}, "logs", 0)
    result = compare(dirs)
    assert result.equal, result.report()

Each replica is reported at its first difference only (what follows is noise): a batch
missing below `upto`, batch boundaries that differ, a damaged batch (bad CRC or an unreadable
tail below `upto`), or a batch whose bytes differ, with the header fields that differ (the CRC at
least, as both CRCs hold). Replica 0's log of the comparison is the first broker in `dirs` (pass
the leader first to read "the follower differs from the leader").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import NamedTuple

from logship import records
from logship.storage.dump import BatchReport, TailReport, mapped, scan_segment
from logship.storage.names import partition_dir_name
from logship.storage.partition_state import read_state
from logship.storage.segment import LOG_SUFFIX


class Batch(NamedTuple):
    """One batch as found on disk, or (header None) an unreadable tail and why."""

    segment: str
    position: int
    header: records.BatchHeader | None
    crc_valid: bool
    data: memoryview | str

    def where(self) -> str:
        return f"{self.segment} byte {self.position}"


def partition_dirs(data_dirs: Mapping[int, Path], topic: str, partition: int) -> dict[int, Path]:
    """broker id -> that broker's directory of `topic`/`partition`, in the order given."""
    return {broker: Path(data_dir) / partition_dir_name(topic, partition) for broker, data_dir in data_dirs.items()}


def _segments(directory: Path) -> list[Path]:
    return sorted((p for p in directory.glob("*" + LOG_SUFFIX) if p.stem.isdigit()), key=lambda p: int(p.stem))


def walk(directory: Path) -> Iterator[Batch]:
    """Every batch of the partition in `directory`, segment after segment, each segment's
    unreadable tail (if any) as a Batch with no header."""
    for segment in _segments(directory):
        with mapped(segment) as buf:
            for found in scan_segment(buf):
                if isinstance(found, TailReport):
                    yield Batch(segment.name, found.position, None, False, found.reason)
                else:
                    yield Batch(segment.name, found.position, found.header, found.crc_valid, found.batch)


def log_bounds(directory: Path) -> tuple[int, int]:
    """(log start offset, log end offset) of the partition in `directory`: the first batch of
    its first segment, the end of the last whole batch of its last segment (an empty
    segment's base offset where a segment holds no batch)."""
    segments = _segments(directory)
    if not segments:
        return 0, 0
    end = int(segments[-1].stem)
    with mapped(segments[0]) as buf:
        first = next((b for b in scan_segment(buf) if isinstance(b, BatchReport)), None)
        start = first.header.base_offset if first is not None else int(segments[0].stem)
    with mapped(segments[-1]) as buf:
        for found in scan_segment(buf):
            if isinstance(found, BatchReport):
                end = found.header.next_offset
    return start, end


@dataclass
class Comparison:
    """What `compare` found: the range compared, every replica's bounds, and the differences."""

    start: int
    upto: int
    bounds: dict[int, tuple[int, int]]  # broker -> (log start, log end)
    batches: int = 0  # batches of the reference replica compared
    differences: dict[int, str] = field(default_factory=dict)  # broker -> its first difference

    @property
    def equal(self) -> bool:
        return not self.differences

    @property
    def log_ends(self) -> dict[int, int]:
        return {broker: end for broker, (_, end) in self.bounds.items()}

    def report(self) -> str:
        ends = ", ".join(f"broker {b}: [{s}, {e})" for b, (s, e) in self.bounds.items())
        head = f"offsets [{self.start}, {self.upto}) over {self.batches} batches; logs {ends}"
        if self.equal:
            return head + "; identical"
        return head + "".join(f"\n  broker {b}: {text}" for b, text in self.differences.items())


def _isr(dirs: Mapping[int, Path]) -> list[int]:
    states = [s for s in (read_state(d) for d in dirs.values() if d.is_dir()) if s is not None]
    if not states:
        return list(dirs)
    newest = max(states, key=lambda s: s.version)
    return [b for b in newest.isr if b in dirs] or list(dirs)


def compare(dirs: Mapping[int, Path], upto: int | None = None, isr: Iterable[int] | None = None) -> Comparison:
    """Compare the replicas' batches below `upto` (default: the high watermark, see above)."""
    bounds = {broker: log_bounds(directory) for broker, directory in dirs.items()}
    if upto is None:
        upto = min(bounds[b][1] for b in (list(isr) if isr is not None else _isr(dirs)))
    start = max(s for s, _ in bounds.values())
    result = Comparison(start, upto, bounds)
    reference, *others = dirs
    walkers = {broker: _below(walk(dirs[broker]), start, upto) for broker in dirs}
    live = list(others)
    for expected in walkers[reference]:
        result.batches += 1
        if expected.header is None or not expected.crc_valid:
            result.differences[reference] = _damaged(expected)
            break
        for broker in list(live):
            problem = _difference(expected, next(walkers[broker], None), upto)
            if problem:
                result.differences[broker] = problem
                live.remove(broker)
    if reference not in result.differences:
        if bounds[reference][1] < upto:
            result.differences[reference] = f"log ends at {bounds[reference][1]}, below {upto}"
        for broker in live:
            extra = next(walkers[broker], None)
            if extra is not None:
                result.differences[broker] = f"has a batch the reference (broker {reference}) lacks below {upto}: " \
                                             + _describe(extra)
    return result


def _below(batches: Iterator[Batch], start: int, upto: int) -> Iterator[Batch]:
    """The batches whose base offset is in [start, upto), and an unreadable tail met before
    the log reaches `upto` (a torn tail above it is what a crash leaves; recovery drops it)."""
    reached = -1
    for batch in batches:
        if batch.header is None:
            if reached < upto:
                yield batch
            return
        if batch.header.base_offset >= upto:
            return
        reached = batch.header.next_offset
        if batch.header.base_offset >= start:
            yield batch


def _describe(batch: Batch) -> str:
    if batch.header is None:
        return f"unreadable tail at {batch.where()} ({batch.data})"
    h = batch.header
    return f"offsets {h.base_offset}-{h.last_offset} epoch {h.partition_leader_epoch} at {batch.where()}"


def _damaged(batch: Batch) -> str:
    return ("CRC mismatch in " + _describe(batch)) if batch.header is not None else _describe(batch)


def _difference(expected: Batch, found: Batch | None, upto: int) -> str | None:
    """Why `found` is not `expected` (byte for byte), or None when it is."""
    want = expected.header
    if found is None:
        return f"log ends before offsets {want.base_offset}-{want.last_offset}, below {upto}"
    if found.header is None or not found.crc_valid:
        return _damaged(found)
    if found.header.base_offset != want.base_offset or found.header.size != want.size:
        return f"batch boundaries differ: {_describe(found)} where the reference has {_describe(expected)}"
    if found.data == expected.data:
        return None
    changed = [f"{f.name} {getattr(found.header, f.name)} != {getattr(want, f.name)}"
               for f in fields(records.BatchHeader) if getattr(found.header, f.name) != getattr(want, f.name)]
    return f"{_describe(found)} differs from the reference: " + (", ".join(changed) or "records differ")
