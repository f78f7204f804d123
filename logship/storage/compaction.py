"""Log compaction: keep only the latest record of every key in a partition's sealed segments.

Kafka's log cleaner, simplified for small keyed topics such as `__consumer_offsets`. A pass:

1. Takes the sealed segments (every one but the active) with duplicated descriptors
   (Partition.sealed_files), so it reads them without the partition's lock while appends go on.
2. Maps every key to the offset of its latest record in those segments (memory: one entry per
   distinct key, not per record).
3. Rewrites the segments in order, batch by batch. A record stays if it is the latest of its
   key, except a tombstone (null value) whose timestamp is older than delete_retention_ms;
   records without a key and control batches always stay. A batch that keeps every record is
   copied byte for byte; one that loses some is rebuilt by records.rebuild_batch (same base
   offset and offset span, each record's offset and timestamp kept, so offsets may have gaps);
   a batch that loses all is dropped, except a segment's last batch, kept empty
   (recordsCount 0) so that the segment still ends where the next one starts (segments stay
   contiguous, which Partition and recovery rely on).
4. Merges consecutive segments into one while the result stays within segment_bytes, so the
   number of segments stays bounded as well as their bytes. Each merged result is written to
   `<base>.log.cleaned`, fdatasynced and swapped in by Partition.replace_segments (atomic,
   crash-safe; indexes rebuilt). A segment that would come out unchanged is not rewritten.

The active segment is never touched: a record superseded only by records in the active
segment stays until that segment rolls. `Store.compact` runs passes over the partitions whose
LogConfig says cleanup_policy "compact", once `needs_compaction` holds: the sealed bytes the
last pass did not see (its `cleaned_to` onwards) are at least min_cleanable_dirty_ratio of all
sealed bytes.
"""

from __future__ import annotations

import mmap
import os
import time
from dataclasses import dataclass

from .. import records
from .config import INT32_MAX
from .partition import Partition
from .segment import LOG_SUFFIX, Segment, segment_name, write_all


@dataclass
class CompactionResult:
    """What one pass did. `cleaned_to`: every offset below it was in the segments it saw."""

    cleaned_to: int
    segments_before: int = 0
    segments_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    records_removed: int = 0


def needs_compaction(partition: Partition, cleaned_to: int) -> bool:
    """Whether enough sealed bytes at or after `cleaned_to` are waiting for a pass."""
    sealed = partition.segments[:-1]
    total = sum(segment.size for segment in sealed)
    dirty = sum(segment.size for segment in sealed if segment.base_offset >= cleaned_to)
    return dirty > 0 and dirty >= partition.config.min_cleanable_dirty_ratio * total


def compact(partition: Partition, now_ms: int | None = None) -> CompactionResult:
    """One compaction pass over `partition`'s sealed segments; see the module docstring."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    files = partition.sealed_files()
    try:
        if not files:
            return CompactionResult(cleaned_to=partition.segments[0].base_offset)
        result = CompactionResult(cleaned_to=files[-1][0].next_offset, segments_before=len(files),
                                  bytes_before=sum(segment.size for segment, _ in files))
        maps = [_map(fd, segment.size) for segment, fd in files]
        try:
            latest = _latest_offsets(maps)
            horizon = now_ms - partition.config.delete_retention_ms
            _rewrite(partition, files, maps, latest, horizon, result)
        finally:
            for mapped in maps:
                if mapped is not None:
                    try:
                        mapped.close()
                    except BufferError:  # a view still alive in a traceback; the GC will close it
                        pass
        return result
    finally:
        for _, fd in files:
            os.close(fd)


def _map(fd: int, size: int) -> mmap.mmap | None:
    return mmap.mmap(fd, size, access=mmap.ACCESS_READ) if size else None


def _batches(mapped: mmap.mmap | None):
    """(header, bytes) of each batch of a sealed segment's mapping."""
    if mapped is None:
        return
    view, pos = memoryview(mapped), 0
    try:
        while pos < len(view):
            header = records.parse_header(view, pos)
            yield header, view[pos:pos + header.size]
            pos += header.size
    finally:
        view.release()


def _latest_offsets(maps: list) -> dict[bytes, int]:
    latest: dict[bytes, int] = {}
    for mapped in maps:
        for header, batch in _batches(mapped):
            if header.is_control or not header.records_count:
                continue
            for record in records.decode_records(batch):
                if record.key is not None:
                    latest[record.key] = record.offset
    return latest


def _filter_segment(mapped, latest: dict[bytes, int], horizon: int, result: CompactionResult) -> tuple[list, bool]:
    """The batches to keep of one segment, and whether anything changed. The last batch is
    always kept (empty if need be), so the kept batches end where the segment does."""
    kept: list = []
    changed = False
    batches = list(_batches(mapped))
    for i, (header, batch) in enumerate(batches):
        if header.is_control or not header.records_count:
            if header.records_count or i == len(batches) - 1:
                kept.append(bytes(batch))
            else:
                changed = True
            continue
        decoded = records.decode_records(batch)
        survivors = [r for r in decoded if r.key is None
                     or (latest.get(r.key) == r.offset and (r.value is not None or r.timestamp >= horizon))]
        if len(survivors) == len(decoded):
            kept.append(bytes(batch))
            continue
        changed = True
        result.records_removed += len(decoded) - len(survivors)
        if survivors or i == len(batches) - 1:
            kept.append(records.rebuild_batch(header, survivors))
    return kept, changed


def _rewrite(partition: Partition, files: list, maps: list, latest: dict[bytes, int], horizon: int,
             result: CompactionResult) -> None:
    limit = partition.config.segment_bytes
    group: list[Segment] = []
    chunks: list = []
    size, changed = 0, False
    for (segment, _), mapped in zip(files, maps):
        kept, segment_changed = _filter_segment(mapped, latest, horizon, result)
        kept_size = sum(map(len, kept))
        if group and (size + kept_size > limit or segment.next_offset - 1 - group[0].base_offset > INT32_MAX):
            _swap(partition, group, chunks, changed or len(group) > 1, result)
            group, chunks, size, changed = [], [], 0, False
        if group and _is_empty_batch(chunks[-1]):  # only there to end the previous segment
            size -= len(chunks.pop())
        group.append(segment)
        chunks += kept
        size += kept_size
        changed = changed or segment_changed
    if group:
        _swap(partition, group, chunks, changed or len(group) > 1, result)


def _is_empty_batch(batch: bytes) -> bool:
    return records.parse_header(batch).records_count == 0


def _swap(partition: Partition, group: list[Segment], chunks: list, changed: bool, result: CompactionResult) -> None:
    """Write one merged segment and swap it in for `group` (unless nothing changed)."""
    size = sum(map(len, chunks))
    if not changed:
        result.segments_after += 1
        result.bytes_after += size
        return
    path = partition.directory / f"{segment_name(group[0].base_offset)}{LOG_SUFFIX}.cleaned"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        position = 0
        for chunk in chunks:
            write_all(fd, chunk, position)
            position += len(chunk)
        os.fdatasync(fd)
    except OSError:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    replaced = partition.replace_segments(group, path)
    if replaced is None:  # the log changed under us: keep what is there
        result.segments_after += len(group)
        result.bytes_after += sum(segment.size for segment in group)
    else:
        result.segments_after += 1
        result.bytes_after += replaced.size
