"""Idempotent producers' state in one partition (the idempotent half of Kafka's ProducerStateManager).

For each producer id: its epoch, the sequence numbers and offsets of its last five batches
(`BATCHES_KEPT`, as Kafka: a client keeps at most five requests in flight), and when it last
wrote (wall clock, ms). A leader checks every producer batch against it before the append
(`check`, Kafka 3.x's rules):

* a batch equal to one of the five (same epoch, first and last sequence) is a *duplicate*:
  it is not appended, and is acknowledged with the offsets it got the first time;
* an epoch below the producer's: InvalidProducerEpochError (INVALID_PRODUCER_EPOCH);
* a newer epoch must start at sequence 0, else OutOfOrderSequenceError
  (OUT_OF_ORDER_SEQUENCE_NUMBER); the same epoch must continue at last sequence + 1 (after
  2^31-1 comes 0), else OutOfOrderSequenceError, which is also the answer to a retry of a
  batch older than the five;
* a producer with no state here (new, or expired, or its batches deleted) is accepted at any
  sequence, as Kafka does since KIP-360.

Replicas and recovery `apply` batches without checking, so a follower holds the state its
leader had and de-duplicates, once it leads, what the old leader accepted.

Snapshots: `<20-digit offset>.snapshot` in the partition directory holds the state as of that
offset (every batch below it applied). Format, big-endian:

    b"LSPS" | version u16 (1) | producers u32 |
      per producer: id i64 | epoch i16 | last write ms i64 | batches u8 |
        per batch: first seq i32 | last seq i32 | first offset i64 | last offset i64
    | crc32c u32 of everything before it

written to `.snapshot.tmp` and renamed over, without a sync (a snapshot only saves the next load
some reading); a snapshot that does not parse or fails its CRC is ignored (the state is then
rebuilt from an older snapshot and the log after it).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from ..crc import crc32c
from ..errors import InvalidProducerEpochError, KafkaStorageError, OutOfOrderSequenceError

__all__ = ["ProducerStates", "BatchEntry", "Duplicate", "SNAPSHOT_SUFFIX", "BATCHES_KEPT", "snapshot_offsets",
           "delete_snapshots"]

BATCHES_KEPT = 5
SNAPSHOT_SUFFIX = ".snapshot"
TMP_SUFFIX = ".tmp"
INT32_MAX = 2**31 - 1
_MAGIC, _VERSION = b"LSPS", 1
_HEAD = struct.Struct(">4sHI")
_PRODUCER = struct.Struct(">qhqB")
_BATCH = struct.Struct(">iiqq")
_CRC = struct.Struct(">I")


class BatchEntry(NamedTuple):
    first_seq: int
    last_seq: int
    first_offset: int
    last_offset: int


class Duplicate(NamedTuple):
    """A batch already in the log: the offsets it was given."""

    first_offset: int
    last_offset: int


class _Producer:
    __slots__ = ("epoch", "batches", "last_write_ms")

    def __init__(self, epoch: int, last_write_ms: int, batches: list[BatchEntry] | None = None):
        self.epoch, self.last_write_ms = epoch, last_write_ms
        self.batches = batches or []


def _in_sequence(last_seq: int, next_seq: int) -> bool:
    return next_seq == last_seq + 1 or (next_seq == 0 and last_seq == INT32_MAX)


def _last_seq(first_seq: int, count: int) -> int:
    return (first_seq + count - 1) % (INT32_MAX + 1)


class ProducerStates:
    """The producers of one partition. Not thread-safe: the Partition's lock guards it."""

    def __init__(self) -> None:
        self._producers: dict[int, _Producer] = {}

    def __len__(self) -> int:
        return len(self._producers)

    # --- the leader's checks ------------------------------------------------------------------

    def check(self, batches: Iterable[tuple[int, int, int, int]]) -> Duplicate | None:
        """Check producer batches (producer id, epoch, first sequence, record count), in the
        order they would be appended, each against the state as the earlier ones leave it.

        Returns the first duplicate's offsets (then nothing may be appended: Kafka answers the
        whole append with the duplicate), else None; raises OutOfOrderSequenceError or
        InvalidProducerEpochError. Changes nothing.
        """
        pending: dict[int, tuple[int, int]] = {}  # producer -> (epoch, last seq) after earlier batches
        for producer_id, epoch, first_seq, count in batches:
            last_seq = _last_seq(first_seq, count)
            entry = self._producers.get(producer_id)
            if entry is not None and epoch == entry.epoch:  # against the state before this append, as Kafka
                for batch in entry.batches:
                    if batch.first_seq == first_seq and batch.last_seq == last_seq:
                        return Duplicate(batch.first_offset, batch.last_offset)
            current_epoch = pending[producer_id][0] if producer_id in pending else \
                (entry.epoch if entry is not None else None)
            if current_epoch is not None and epoch < current_epoch:
                raise InvalidProducerEpochError(f"producer {producer_id}'s epoch {epoch} is older than its current "
                                                f"epoch {current_epoch}")
            if current_epoch is None:
                pass  # unknown producer: any sequence (KIP-360)
            elif epoch != current_epoch:
                if first_seq != 0:
                    raise OutOfOrderSequenceError(f"producer {producer_id} starts its new epoch {epoch} at sequence "
                                                  f"{first_seq}, not 0")
            else:
                if producer_id in pending:
                    previous = pending[producer_id][1]
                else:
                    previous = entry.batches[-1].last_seq if entry.batches else None
                if previous is not None and not _in_sequence(previous, first_seq):
                    expected = (previous + 1) % (INT32_MAX + 1)
                    raise OutOfOrderSequenceError(f"producer {producer_id} sent sequence {first_seq}; "
                                                  f"the next one expected is {expected}")
            pending[producer_id] = (epoch, last_seq)
        return None

    # --- updates (after an append, for replicas, in recovery) ---------------------------------

    def apply(self, producer_id: int, epoch: int, first_seq: int, count: int, first_offset: int,
              last_offset: int, now_ms: int) -> None:
        """Record an appended producer batch (producer id >= 0)."""
        entry = self._producers.get(producer_id)
        if entry is None:
            entry = self._producers[producer_id] = _Producer(epoch, now_ms)
        elif epoch > entry.epoch:
            entry.epoch, entry.batches = epoch, []
        elif epoch < entry.epoch:  # a replica copying a zombie's batch: keep the newer epoch's state
            entry.last_write_ms = max(entry.last_write_ms, now_ms)
            return
        entry.batches.append(BatchEntry(first_seq, _last_seq(first_seq, count), first_offset, last_offset))
        if len(entry.batches) > BATCHES_KEPT:
            del entry.batches[0]
        entry.last_write_ms = max(entry.last_write_ms, now_ms)

    def expire(self, now_ms: int, expiration_ms: int) -> int:
        """Forget producers that have not written for `expiration_ms`; returns how many."""
        gone = [pid for pid, entry in self._producers.items() if now_ms - entry.last_write_ms >= expiration_ms]
        for pid in gone:
            del self._producers[pid]
        return len(gone)

    def clear(self) -> None:
        self._producers.clear()

    # --- snapshots ------------------------------------------------------------------------------

    def encode(self) -> bytes:
        parts = [_HEAD.pack(_MAGIC, _VERSION, len(self._producers))]
        for pid, entry in sorted(self._producers.items()):
            parts.append(_PRODUCER.pack(pid, entry.epoch, entry.last_write_ms, len(entry.batches)))
            parts += [_BATCH.pack(*batch) for batch in entry.batches]
        body = b"".join(parts)
        return body + _CRC.pack(crc32c(body))

    @classmethod
    def decode(cls, data: bytes) -> "ProducerStates":
        """ValueError when `data` is not a whole, intact snapshot."""
        if len(data) < _HEAD.size + _CRC.size or crc32c(data[:-_CRC.size]) != _CRC.unpack_from(data, len(data) - 4)[0]:
            raise ValueError("truncated or damaged")
        magic, version, count = _HEAD.unpack_from(data, 0)
        if magic != _MAGIC or version != _VERSION:
            raise ValueError(f"not a version {_VERSION} producer snapshot")
        states, pos = cls(), _HEAD.size
        try:
            for _ in range(count):
                pid, epoch, last_write, nbatches = _PRODUCER.unpack_from(data, pos)
                pos += _PRODUCER.size
                batches = [BatchEntry(*_BATCH.unpack_from(data, pos + i * _BATCH.size)) for i in range(nbatches)]
                pos += nbatches * _BATCH.size
                states._producers[pid] = _Producer(epoch, last_write, batches)
        except struct.error as exc:
            raise ValueError(str(exc)) from None
        if pos != len(data) - _CRC.size:
            raise ValueError("trailing bytes")
        return states

    def write_snapshot(self, directory: Path, offset: int) -> Path:
        """Write the state as of `offset`, not synced: it is only a head start for the next load
        (a snapshot a crash left torn fails its CRC and an older one is used; one above the log
        a crash left is deleted by the load). KafkaStorageError if it cannot be written; no
        partial file is left behind."""
        path = directory / f"{offset:020d}{SNAPSHOT_SUFFIX}"
        tmp = path.with_name(path.name + TMP_SUFFIX)
        try:
            with open(tmp, "wb") as out:
                out.write(self.encode())
            os.replace(tmp, path)
        except OSError as exc:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise KafkaStorageError(f"cannot write {path}: {exc.strerror or exc}") from exc
        return path

    @classmethod
    def read_snapshot(cls, path: Path) -> "ProducerStates | None":
        """The snapshot at `path`, or None when it is unreadable or damaged."""
        try:
            return cls.decode(path.read_bytes())
        except (OSError, ValueError):
            return None


def snapshot_offsets(directory: Path) -> list[int]:
    """The offsets of the snapshots in `directory`, ascending."""
    found = []
    for path in directory.glob("*" + SNAPSHOT_SUFFIX):
        stem = path.name[:-len(SNAPSHOT_SUFFIX)]
        if stem.isdigit() and len(stem) == 20:
            found.append(int(stem))
    return sorted(found)


def delete_snapshots(directory: Path, keep) -> None:
    """Delete the snapshots whose offset `keep(offset)` refuses, and any temporary file an
    interrupted write left (best effort: a failure leaves a stale snapshot, which is never
    read past the log it describes)."""
    for stray in directory.glob("*" + SNAPSHOT_SUFFIX + TMP_SUFFIX):
        try:
            stray.unlink()
        except OSError:
            pass
    for offset in snapshot_offsets(directory):
        if not keep(offset):
            try:
                (directory / f"{offset:020d}{SNAPSHOT_SUFFIX}").unlink()
            except OSError:
                pass
