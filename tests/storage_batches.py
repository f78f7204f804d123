"""Record batches for the storage tests, built with kafka-python's independent builder.

Kept apart from logship.records on purpose: the storage tests should not trust the code
they test to make their input. Batches come out as producers send them: baseOffset 0 and
partitionLeaderEpoch -1.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from kafka.record.default_records import DefaultRecordBatchBuilder

from logship import records


def make_batch(count: int = 1, value_size: int = 50, timestamp: int = 1_000, value: bytes | None = None,
               epoch: int = -1) -> bytes:
    """One batch of `count` records, each `value` (or `value_size` bytes), all at `timestamp` ms."""
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0, producer_id=-1,
                                        producer_epoch=-1, base_sequence=-1, batch_size=1 << 30)
    for i in range(count):
        payload = value if value is not None else bytes([65 + i % 26]) * value_size
        builder.append(i, timestamp=timestamp, key=None, value=payload, headers=[])
    buf = builder.build()
    records.set_leader_epoch(buf, 0, epoch)
    return bytes(buf)


def with_offset(batch: bytes, base_offset: int, epoch: int | None = 0) -> bytes:
    """The batch as the store writes it: baseOffset and leader epoch (a single broker's 0) stamped."""
    buf = bytearray(batch)
    records.set_base_offset(buf, 0, base_offset)
    if epoch is not None:
        records.set_leader_epoch(buf, 0, epoch)
    return bytes(buf)


def read_all(partition, start: int | None = None) -> bytes:
    """Every committed byte from `start` (default log start) to the high watermark, via read()."""
    offset = partition.log_start_offset if start is None else start
    out = bytearray()
    while offset < partition.high_watermark:
        piece = partition.read(offset, 1 << 30)
        if piece is None:
            break
        with piece:
            data = piece.read_bytes()
        out += data
        last = None
        for _, header in records.iter_batches(data):
            last = header
        offset = last.next_offset
    return bytes(out)


def segment_files(directory: Path) -> dict[str, bytes]:
    """{file name: bytes} of every .log file in a partition directory."""
    return {p.name: p.read_bytes() for p in sorted(Path(directory).glob("*.log"))}


def copy_unclean(src: Path, dst: Path) -> Path:
    """Copy a data directory as a crash would leave it: no clean-shutdown marker, no lock held."""
    shutil.copytree(src, dst)
    marker = dst / ".logship-clean-shutdown"
    if marker.exists():
        os.unlink(marker)
    return dst
