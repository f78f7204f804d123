"""Read a segment file batch by batch for inspection, tolerating damage (like kafka-dump-log).

Unlike recovery, which stops at the first bad batch, this walks every batch whose header
is readable, reports each CRC as valid or not, and describes whatever unreadable tail is
left. It works on any magic-2 `.log` file, whoever wrote it (logship or Apache Kafka).
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .. import records
from ..compression import CODEC_NAMES
from ..errors import CorruptRecordError


@dataclass(frozen=True, slots=True)
class BatchReport:
    """One batch of a segment file, as found on disk."""

    position: int
    header: records.BatchHeader
    crc_valid: bool
    batch: memoryview

    @property
    def compression_name(self) -> str:
        return CODEC_NAMES.get(self.header.compression, f"unknown({self.header.compression})")


@dataclass(frozen=True, slots=True)
class TailReport:
    """Bytes at the end of the file that do not form a whole batch."""

    position: int
    length: int
    reason: str


@contextmanager
def mapped(path: str | os.PathLike) -> Iterator[memoryview]:
    """The file's bytes as a read-only memoryview (empty for an empty file).

    The mapping is left to the garbage collector rather than closed on exit, because
    reports handed out meanwhile may still hold slices of it.
    """
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            yield memoryview(b"")
            return
        yield memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))


def scan_segment(buf) -> Iterator[BatchReport | TailReport]:
    """Yield a BatchReport per batch of `buf`, then a TailReport if bytes are left over."""
    pos, end = 0, len(buf)
    while pos < end:
        try:
            header = records.parse_header(buf, pos)
        except CorruptRecordError as exc:
            yield TailReport(pos, end - pos, str(exc))
            return
        if pos + header.size > end:
            yield TailReport(pos, end - pos, f"batch cut short: {header.size} bytes declared, {end - pos} present")
            return
        crc_valid = records.crc_is_valid(buf, pos, header.size)
        yield BatchReport(pos, header, crc_valid, buf[pos : pos + header.size])
        pos += header.size
