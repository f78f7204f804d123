"""Loading a partition's segments from disk, and recovering them after an unclean stop.

`load_segments` follows Kafka's LogLoader:

1. Finish interrupted compaction swaps: a `<base>.log.swap` file is a whole, fdatasynced
   compacted segment (Partition.replace_segments); the segments it covers are deleted and it
   is renamed to `<base>.log`. Then remove leftovers of interrupted work (`*.tmp`,
   `*.deleted`, `*.cleaned`) and index files without a `.log`.
2. Trusted segments — all of them after a clean shutdown, else those wholly below the
   recovery point (data fdatasynced before the last checkpoint) — are only checked: their
   indexes must be sane (sizes a multiple of the entry size, last entries inside the log and
   pointing at their batch; after an unclean stop also every entry in order) and their tail
   whole batches. Bad indexes are rebuilt from the batch headers; a segment whose tail is not
   whole batches is recovered like an untrusted one.
3. Untrusted segments — from the one containing the recovery point to the end — are
   recovered: every batch is re-checked (header, length, CRC-32C, offsets increasing), the
   indexes are rebuilt, and the file is cut at the end of the last whole valid batch (a torn
   write, garbage, a CRC mismatch). If anything was cut, or a segment does not start exactly
   where the previous one ended, every later segment is deleted: the log stays a gap-free
   prefix of what was appended. Recovered segments are fdatasynced, so afterwards the whole
   log is durable and the recovery point is the log end.

Leader epochs met in recovered batches are returned for the partition's epoch cache.
"""

from __future__ import annotations

import bisect
import logging
import mmap
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import records
from ..errors import CorruptRecordError
from .checkpoint import fsync_dir
from .config import INT32_MAX
from .filecache import FileCache
from .segment import INDEX_SUFFIX, LOG_SUFFIX, TIMEINDEX_SUFFIX, BatchInfo, Segment

log = logging.getLogger("logship.storage")
SWAP_SUFFIX = ".swap"
LEFTOVER_SUFFIXES = (".tmp", ".deleted", ".cleaned", SWAP_SUFFIX)


@dataclass
class LoadedLog:
    segments: list[Segment]
    epochs: list[tuple[int, int]] = field(default_factory=list)  # (epoch, first offset) seen
    recovered_segments: int = 0
    truncated_bytes: int = 0
    deleted_segments: int = 0


@dataclass
class SegmentRecovery:
    valid_bytes: int
    truncated_bytes: int
    epochs: list[tuple[int, int]]
    reason: str | None


def load_segments(directory: Path, index_interval_bytes: int, *, recovery_point: int, clean: bool,
                  fdatasync: Callable[[int], None] | None = None, files: FileCache | None = None) -> LoadedLog:
    """Open every segment of `directory`, checking or recovering each; see the module docstring."""
    directory = Path(directory)
    fdatasync = fdatasync or os.fdatasync
    _finish_swaps(directory)
    _remove_leftovers(directory)
    bases = sorted(int(p.stem) for p in directory.glob("*" + LOG_SUFFIX) if _is_segment_stem(p.stem))
    segments = [Segment(directory, base, index_interval_bytes, files=files) for base in bases]
    loaded = LoadedLog(segments)
    first_untrusted = len(segments) if clean else max(0, bisect.bisect_right(bases, recovery_point) - 1)
    for i in range(first_untrusted):
        if not _load_trusted(segments[i], full=not clean):
            log.error("%s: segment below the recovery point is damaged; recovering it", segments[i].path)
            first_untrusted = i
            break
    if first_untrusted < len(segments):
        _recover_from(loaded, first_untrusted, fdatasync)
    return loaded


def recover_segment(segment: Segment) -> SegmentRecovery:
    """Re-check every batch of `segment`, rebuild its indexes, cut it after the last valid batch."""
    segment.reset_indexes()
    size, pos, reason, epochs = segment.size, 0, None, []
    if size:
        with segment.acquire() as fd, mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mm:
            buf = memoryview(mm)
            try:
                pos, reason, epochs = _validate(segment, buf)
            finally:
                buf.release()
    if pos < size:
        segment.truncate_file(pos)
    return SegmentRecovery(pos, size - pos, epochs, reason)


def _validate(segment: Segment, buf: memoryview) -> tuple[int, str | None, list[tuple[int, int]]]:
    size, pos, expected = len(buf), 0, segment.base_offset
    chunk: list[BatchInfo] = []
    epochs: list[tuple[int, int]] = []
    reason = None
    while pos < size:
        try:
            header = records.parse_header(buf, pos)
        except CorruptRecordError as exc:
            reason = str(exc)
            break
        if pos + header.size > size:
            reason = f"batch at byte {pos} cut short ({header.size} bytes declared, {size - pos} present)"
            break
        if not records.crc_is_valid(buf, pos, header.size):
            reason = f"CRC mismatch in batch at byte {pos}"
            break
        if header.base_offset < expected or header.last_offset - segment.base_offset > INT32_MAX:
            reason = f"batch at byte {pos} has offset {header.base_offset}, expected {expected} or later"
            break
        epoch = header.partition_leader_epoch
        if epoch >= 0 and (not epochs or epochs[-1][0] != epoch):
            epochs.append((epoch, header.base_offset))
        chunk.append(BatchInfo(pos, header.base_offset, header.last_offset, header.max_timestamp,
                               header.size, epoch))
        if len(chunk) >= 4096:
            segment.add_to_indexes(chunk)
            chunk.clear()
        expected = header.next_offset
        pos += header.size
    segment.add_to_indexes(chunk)
    return pos, reason, epochs


def _recover_from(loaded: LoadedLog, start: int, fdatasync: Callable[[int], None]) -> None:
    segments = loaded.segments
    directory = segments[0].directory
    expected = segments[start - 1].next_offset if start else None
    i = start
    while i < len(segments):
        segment = segments[i]
        if expected is not None and segment.base_offset != expected:
            log.warning("%s: segment starts at %d but the log ends at %d; dropping it and later ones",
                        segment.path, segment.base_offset, expected)
            break
        result = recover_segment(segment)
        segment.sync(fdatasync)
        loaded.recovered_segments += 1
        loaded.epochs.extend(result.epochs)
        i += 1
        if result.truncated_bytes:
            log.warning("%s: cut %d byte(s) after byte %d: %s", segment.path, result.truncated_bytes,
                        result.valid_bytes, result.reason)
            loaded.truncated_bytes += result.truncated_bytes
            break
        expected = segment.next_offset
    for segment in segments[i:]:
        log.warning("%s: deleting segment after the recovered end of the log", segment.path)
        segment.delete()
        loaded.deleted_segments += 1
    del segments[i:]
    if loaded.deleted_segments:
        fsync_dir(directory)


def _load_trusted(segment: Segment, full: bool) -> bool:
    """Check a trusted segment; rebuild bad indexes. False when its tail is not whole batches."""
    try:
        segment.load_state()
        problem = segment.index_problem(full)
    except CorruptRecordError as exc:
        problem = str(exc)
    if problem is None:
        return True
    log.warning("%s: rebuilding indexes (%s)", segment.path, problem)
    try:
        segment.rebuild_indexes()
        segment.load_state()
    except CorruptRecordError:
        return False
    return True


def _is_segment_stem(stem: str) -> bool:
    return len(stem) == 20 and stem.isdigit()


def _finish_swaps(directory: Path) -> None:
    """Complete every compaction swap that a crash interrupted; see the module docstring."""
    swaps = sorted(p for p in directory.glob("*" + LOG_SUFFIX + SWAP_SUFFIX) if _is_segment_stem(p.stem[:-4]))
    for swap in swaps:
        base = int(swap.stem[:-4])
        end = _end_offset(swap)
        if end is None:
            log.error("%s: not whole batches; leaving the segments it would replace", swap)
            continue
        for path in directory.glob("*" + LOG_SUFFIX):
            if _is_segment_stem(path.stem) and base <= int(path.stem) < end:
                for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIMEINDEX_SUFFIX):
                    path.with_suffix(suffix).unlink(missing_ok=True)
        os.rename(swap, directory / swap.stem)
        log.info("finished swapping in compacted segment %s", swap.stem)
    if swaps:
        fsync_dir(directory)


def _end_offset(path: Path) -> int | None:
    """Next offset after the last batch of a segment file, or None unless it is whole batches."""
    data = path.read_bytes()
    pos, end = 0, None
    while pos < len(data):
        try:
            header = records.parse_header(data, pos)
        except CorruptRecordError:
            return None
        if pos + header.size > len(data):
            return None
        pos, end = pos + header.size, header.next_offset
    return end


def _remove_leftovers(directory: Path) -> None:
    logs = {p.stem for p in directory.glob("*" + LOG_SUFFIX)}
    for path in directory.iterdir():
        if path.suffix in LEFTOVER_SUFFIXES:
            log.info("removing leftover %s", path)
            path.unlink()
        elif path.suffix in (INDEX_SUFFIX, TIMEINDEX_SUFFIX) and path.stem not in logs:
            log.info("removing index without a log: %s", path)
            path.unlink()
