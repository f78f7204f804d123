"""Records fetched for one partition and not decoded yet.

The consumer hands these out through `Consumer.poll_undecoded()` for callers that decode
elsewhere: in another process, say, since decoding is the consumer's CPU cost and one
process runs Python on one core at a time. `data` holds whole record batches exactly as
the broker sent them (a bytes-like object that stays valid: each response has a buffer of
its own); `decode()` gives what `poll_chunks()` would have.
"""

from __future__ import annotations

from typing import NamedTuple

from .fetched import PartitionRecords, decode

__all__ = ["Undecoded"]


class Undecoded(NamedTuple):
    topic: str
    partition: int
    data: object        # bytes-like: whole batches, the first one holding offset `start`
    start: int          # the first offset to return (earlier records of the first batch are skipped)
    stop: int | None    # the first offset not to return (None: no limit)
    next_offset: int    # where this partition's next records start
    check_crcs: bool = True
    aborted: list | None = None  # read_committed: (producer id, first offset) of aborted transactions

    def decode(self, partial: bool = False) -> PartitionRecords:
        """The records, as columns; raises DamagedBatchError (a CorruptRecordError) at a
        batch that cannot be read, or with `partial` returns the records before it, with
        `damaged` set to that error (fetched.decode) and `next_offset` at the damaged batch."""
        records = decode(self.data, self.topic, self.partition, self.start, self.stop,
                         check_crcs=self.check_crcs, aborted=self.aborted, partial=partial)
        records.next_offset = self.next_offset
        if records.damaged is not None:  # resume at the damaged batch, never past it
            records.next_offset = max(self.start, records.damaged.offset)
        return records
