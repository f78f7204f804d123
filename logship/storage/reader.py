"""Finding bytes and offsets in a partition's segments. Pure functions; the Partition locks.

A read is bounded by a committed position (bound_base, bound_pos): the segment holding the
bound, and the byte where the batch containing the bound offset starts there. Segments
before it are readable to their end, segments after it not at all.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence

from .. import records
from ..errors import LogshipError
from .fileslice import FileSlice
from .segment import Segment


def segment_at(bases: Sequence[int], offset: int) -> int:
    """Index of the segment that would hold `offset` (the last one starting at or before it)."""
    return max(0, bisect.bisect_right(bases, offset) - 1)


def position_of(segments: Sequence[Segment], bases: Sequence[int], offset: int) -> tuple[int, int]:
    """(segment base offset, byte position) where the batch containing `offset` starts.

    At or past the log end: the end of the active segment.
    """
    active = segments[-1]
    if offset >= active.next_offset:
        return active.base_offset, active.size
    segment = segments[segment_at(bases, offset)]
    batch = segment.find_batch(offset)
    return segment.base_offset, segment.size if batch is None else batch.position


def read_slice(segments: Sequence[Segment], bases: Sequence[int], offset: int, max_bytes: int,
               bound: tuple[int, int]) -> FileSlice | None:
    """A FileSlice of one segment from the batch containing `offset` up to `bound` and
    max_bytes (the last batch may be cut; a first batch bigger than max_bytes comes whole,
    KIP-74), or None when no committed batch holds `offset`. Moves on to later segments
    when one holds nothing at or after `offset`.
    """
    bound_base, bound_pos = bound
    for segment in segments[segment_at(bases, offset):]:
        if segment.base_offset > bound_base:
            break
        end = bound_pos if segment.base_offset == bound_base else segment.size
        batch = segment.find_batch(offset, end)
        if batch is None:
            continue
        length = end - batch.position
        if length > max_bytes:
            length = max(max_bytes, batch.size)
        return FileSlice(os.dup(segment.fd), batch.position, length)
    return None


def offset_for_timestamp(segments: Sequence[Segment], timestamp: int, bound: int, log_start: int) -> int | None:
    """Base offset (at least log_start) of the first batch below `bound` whose max timestamp
    is >= `timestamp`, or None. Skips segments whose largest timestamp is too small, then
    uses the time index and the offset index to start the header scan close to the answer.
    """
    for segment in segments:
        if segment.base_offset >= bound:
            return None
        if segment.max_timestamp < timestamp:
            continue
        below = segment.time_index.last_below(timestamp)
        start = max(below[1] + 1 if below else segment.base_offset, log_start)
        _, position = segment.offset_index.lookup(start)
        for batch in segment.scan(position):
            if batch.base_offset >= bound:
                return None
            if batch.last_offset >= log_start and batch.max_timestamp >= timestamp:
                return max(batch.base_offset, log_start)
    return None


def max_timestamp(segments: Sequence[Segment], bound: int, log_start: int) -> tuple[int, int] | None:
    """(largest timestamp, last offset of the first batch carrying it) among the records at
    offsets in [log_start, bound), or None when none carries a timestamp.

    Each segment keeps its own largest timestamp and where it is (segment.py); only a segment
    whose largest timestamp lies outside the range (cut by the log start or the bound), or
    that holds the log start inside a batch, has its batch headers scanned. A batch holding
    the log start inside it (after DeleteRecords) is decoded: its maxTimestamp may belong
    to a record below the log start, which is gone.
    """
    best: tuple[int, int] | None = None
    for segment in segments:
        if segment.next_offset <= log_start or segment.base_offset >= bound or segment.max_timestamp < 0:
            continue
        cut = segment.base_offset < log_start and _holds_log_start_inside(segment, log_start)
        if not cut and log_start <= segment.offset_of_max_timestamp < bound:
            found = (segment.max_timestamp, segment.offset_of_max_timestamp)
        else:
            found = None
            for batch in segment.scan():
                if batch.base_offset >= bound:
                    break
                if batch.last_offset < log_start or batch.last_offset >= bound or batch.max_timestamp < 0:
                    continue
                timestamp = batch.max_timestamp
                if batch.base_offset < log_start:
                    timestamp = _max_timestamp_from(segment, batch, log_start)
                if timestamp >= 0 and (found is None or timestamp > found[0]):
                    found = (timestamp, batch.last_offset)
        if found is not None and (best is None or found[0] > best[0]):
            best = found
    return best


def _holds_log_start_inside(segment: Segment, log_start: int) -> bool:
    batch = segment.find_batch(log_start)
    return batch is not None and batch.base_offset < log_start


def _max_timestamp_from(segment: Segment, batch, log_start: int) -> int:
    """The largest timestamp of `batch`'s records at or after log_start (-1 when none); the
    batch header's when the records cannot be decoded."""
    try:
        data = os.pread(segment.fd, batch.size, batch.position)
        found = [r.timestamp for r in records.decode_records(data) if r.offset >= log_start]
    except (LogshipError, OSError):
        return batch.max_timestamp
    return max(found, default=-1)
