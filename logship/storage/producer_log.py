"""The producer state of a partition's log: read from batches, rebuilt on load, snapshotted.

What Partition calls (under its lock), over producer_state.ProducerStates:

* `producer_fields(buf, checked)`: (producer id, epoch, base sequence, record count,
  attributes) of each batch validate_batches found in an append's bytes;
* `apply_batches(states, fields, first_offsets, now_ms)`: record the appended ones;
* `load(directory, segments, log_end, now_ms)`: the state of a log as it is on disk: the
  newest snapshot at or below the log end, then the batch headers after it (only headers are
  read). Without a usable snapshot the last two segments are scanned (as Kafka does for a log
  written before snapshots existed): older producers are then unknown, which only means any
  sequence is accepted from them. Snapshots above the log end (a log cut by recovery or
  truncation) are deleted first;
* `snapshot(states, directory, offset)`: best effort and without a sync (a failure is logged:
  the next load scans further back instead);
* `trim_snapshots(directory, log_start)`: snapshots below the log start go, except the newest;
  `forget_snapshots(directory)`: all go (a log emptied and restarted knows no producer).

Control batches (transaction markers, never written by producers here) are skipped.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from pathlib import Path

from ..errors import CorruptRecordError, KafkaStorageError
from .producer_state import SNAPSHOT_SUFFIX, ProducerStates, delete_snapshots, snapshot_offsets

__all__ = ["producer_fields", "apply_batches", "load", "snapshot", "trim_snapshots", "forget_snapshots"]

log = logging.getLogger("logship.storage")

_ATTRIBUTES = struct.Struct(">h")      # bytes 21-22
_PRODUCER = struct.Struct(">qhi")      # bytes 43-56: producer id, epoch, base sequence
_CONTROL = 0x20


def producer_fields(buf, checked: Sequence[tuple]) -> list[tuple[int, int, int, int]] | None:
    """(producer id, epoch, base sequence, count) per batch of `checked` (validate_batches'
    tuples), None for a batch without a producer id or a control batch; None overall when no
    batch has one (the common case costs one unpack per batch)."""
    fields, any_producer = [], False
    for pos, _size, delta, *_ in checked:
        producer_id, epoch, sequence = _PRODUCER.unpack_from(buf, pos + 43)
        if producer_id < 0 or _ATTRIBUTES.unpack_from(buf, pos + 21)[0] & _CONTROL:
            fields.append(None)
        else:
            fields.append((producer_id, epoch, sequence, delta + 1))
            any_producer = True
    return fields if any_producer else None


def apply_batches(states: ProducerStates, fields: list, first_offsets: Sequence[int], now_ms: int) -> None:
    for field, first in zip(fields, first_offsets):
        if field is not None:
            producer_id, epoch, sequence, count = field
            states.apply(producer_id, epoch, sequence, count, first, first + count - 1, now_ms)


def load(directory: Path, segments: Sequence, log_end: int, now_ms: int) -> ProducerStates:
    delete_snapshots(directory, lambda offset: offset <= log_end)
    states, start = None, None
    for offset in reversed(snapshot_offsets(directory)):
        states = ProducerStates.read_snapshot(directory / f"{offset:020d}{SNAPSHOT_SUFFIX}")
        if states is not None:
            start = offset
            break
        log.warning("%s: producer snapshot at offset %d is damaged; using an older one", directory, offset)
    if states is None:
        states = ProducerStates()
        first = max(len(segments) - 2, 0)
        start = segments[first].base_offset if segments else log_end
    for segment in segments:
        if segment.next_offset <= start or not segment.size:
            continue
        _, position = segment.offset_index.lookup(start)
        try:
            for base, last, attributes, producer_id, epoch, sequence in segment.producer_batches(position):
                if last < start or producer_id < 0 or attributes & _CONTROL:
                    continue
                states.apply(producer_id, epoch, sequence, last - base + 1, base, last, now_ms)
        except CorruptRecordError as exc:  # recovery keeps only whole batches: cannot happen but in a race
            log.warning("%s: producer state rebuilt up to a damaged batch: %s", directory, exc)
            break
    return states


def snapshot(states: ProducerStates, directory: Path, offset: int) -> None:
    """Snapshot `states` at `offset` (also when empty: then the next load reads no batch before
    it, whatever the log holds)."""
    try:
        states.write_snapshot(directory, offset)
    except KafkaStorageError as exc:
        log.warning("%s (the producer state will be rebuilt from the log instead)", exc)


def forget_snapshots(directory: Path) -> None:
    """Every snapshot goes (a log emptied and restarted knows no producer)."""
    delete_snapshots(directory, lambda offset: False)


def trim_snapshots(directory: Path, log_start: int) -> None:
    offsets = snapshot_offsets(directory)
    newest = offsets[-1] if offsets else None
    delete_snapshots(directory, lambda offset: offset >= log_start or offset == newest)
