"""Which leading segments retention may delete. Pure functions over a partition's segments.

Only whole segments go, oldest first, and only segments whose every offset is below the
high watermark (never data consumers have not been allowed to see). Rules:

* time — a segment expires when now - its largest timestamp > retention_ms (the file's
  mtime stands in when no batch carries a timestamp); deletion stops at the first segment
  that has not expired. The active segment may expire too: the partition then rolls a new,
  empty active segment at the log end first, so the log is never without a segment and
  offsets continue (Kafka does the same).
* size — while the partition's total size minus the oldest segment's size is still
  >= retention_bytes, that segment goes. The active segment is never deleted for size.
* offset — `delete_before(offset)` deletes the segments lying entirely below `offset`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .segment import Segment


def _deletable(segment: Segment, high_watermark: int) -> bool:
    return segment.size > 0 and segment.next_offset <= high_watermark


def largest_timestamp(segment: Segment) -> int:
    if segment.max_timestamp >= 0:
        return segment.max_timestamp
    return int(os.stat(segment.path).st_mtime * 1000)


def expired_by_time(segments: Sequence[Segment], retention_ms: int, now_ms: int, high_watermark: int) -> int:
    """How many leading segments are older than retention_ms (-1: none ever)."""
    if retention_ms < 0:
        return 0
    count = 0
    for segment in segments:
        if not _deletable(segment, high_watermark) or now_ms - largest_timestamp(segment) <= retention_ms:
            break
        count += 1
    return count


def excess_by_size(segments: Sequence[Segment], retention_bytes: int, high_watermark: int) -> int:
    """How many leading sealed segments can go while keeping at least retention_bytes (-1: none)."""
    if retention_bytes < 0:
        return 0
    total = sum(segment.size for segment in segments)
    count = 0
    for segment in segments[:-1]:
        if not _deletable(segment, high_watermark) or total - segment.size < retention_bytes:
            break
        total -= segment.size
        count += 1
    return count


def below_offset(segments: Sequence[Segment], offset: int) -> int:
    """How many leading non-empty segments end at or below `offset`."""
    count = 0
    for segment in segments:
        if not _deletable(segment, offset):
            break
        count += 1
    return count
