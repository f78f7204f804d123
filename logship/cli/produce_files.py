"""`logship produce` of regular files by worker processes: plain lines, framed in parallel.

Splitting lines and encoding records is Python work, and one process does it on one core
at a time. For plain records (no key delimiter, headers or --json) read from a regular
file (a FILE argument, or standard input redirected from one), the file is cut into byte
ranges and forked workers (worker_pool.OrderedWorkers) read, split, encode and compress
each range into whole record batches (records.build_batch_values); this process only
hands the batches to the producer (Producer.send_batch), in file order.

A record belongs to the range its first byte lies in: a range [start, end) holds the
records that start in it, the last one running past `end` to its separator (or to the end
of the file, where a last record without a separator is still a record). So ranges can
be cut anywhere, and every record is in exactly one. Ranges are sized so that one range
fills about one batch (`batch_limit` estimated bytes, as Producer.send_values counts
them). When the ranges planned reach the size the file had, its size is read again and,
if it grew, producing goes on: the file is read to its end, as `cat` would.

A request is (source index, start, end); the answer's status is the record count and the
answer is the range's batches, one after another. A range a worker could not do (status
-1), or any range after the workers are gone, is done in this process, so an error (the
file cannot be read, say) is raised here as the serial path raises it.
"""

from __future__ import annotations

import os
import stat
import struct
import time

from ..client.batches import RECORD_OVERHEAD, runs_that_fit
from ..records import build_batch_values, parse_header
from .worker_pool import OrderedWorkers

__all__ = ["FileProducer", "lines_starting_in", "worth_workers", "PARALLEL_FROM"]

PARALLEL_FROM = 4 << 20  # bytes left in a file: smaller files are read by the serial path
_READ_AHEAD = 4096  # bytes read past a range's end to find its last record's separator
_REQUEST = struct.Struct(">qqq")  # source index, start, end


def lines_starting_in(fd: int, start: int, end: int, separator: bytes) -> tuple[list[bytes], int]:
    """The records (without their separator) whose first byte lies in [start, end) of the
    file open as `fd`: one at `start` if it is 0 or follows a separator, one after each
    separator before `end - 1`, each ending at its separator or at the end of the file;
    and the sum of their lengths."""
    lead = 1 if start else 0  # read the byte before start, to see whether a record starts there
    base = start - lead
    stop = end - base  # the range's end, relative to base
    want = stop + _READ_AHEAD
    data = os.pread(fd, want, base)
    first = 0
    if lead:
        first = data.find(separator, 0, stop) + 1
        if first == 0 or first >= stop:
            return [], 0  # no record starts in the range
    if first >= len(data):
        return [], 0  # the file is shorter now than when the range was planned
    last = data.find(separator, stop - 1)
    while last < 0 and len(data) == want:  # the last record runs on: read until its separator
        searched = len(data)
        more = os.pread(fd, max(searched, 1 << 16), base + searched)
        data += more
        want = searched + max(searched, 1 << 16)
        last = data.find(separator, searched)
        if not more:
            break
    block = data[first:last if last >= 0 else len(data)]
    values = block.split(separator)
    return values, len(block) - (len(values) - 1) * len(separator)


def worth_workers(source: str | int) -> bool:
    """Whether `source` (a path, or an open file descriptor from its current position) is a
    regular file with at least PARALLEL_FROM bytes to read."""
    try:
        if isinstance(source, int):
            info = os.fstat(source)
            left = info.st_size - os.lseek(source, 0, os.SEEK_CUR) if stat.S_ISREG(info.st_mode) else 0
        else:
            info = os.stat(source)
            left = info.st_size if stat.S_ISREG(info.st_mode) else 0
    except OSError:
        return False  # reading it fails later, with the serial path's message
    return left >= PARALLEL_FROM


class FileProducer:
    """Produces regular files' records through forked workers; see the module docstring.

    `sources[i]` is a path, or an open file descriptor (standard input), read from its
    position when its turn comes. Create this before any thread is started (the
    producer's): it forks."""

    def __init__(self, sources: list, separator: bytes, compression: int, batch_limit: int, workers: int):
        self.sources = sources
        self.separator = separator
        self.compression = compression
        self.batch_limit = batch_limit
        self._fds: dict[int, int] = {}  # this process's: sources opened by path
        self._range = max(int(batch_limit * 0.9), 1 << 16)
        self._index: int | None = None  # the source begun, and its ranges planned and size
        self._planned = self._size = 0
        self.pool = OrderedWorkers(self._encode, workers, depth=2)
        self.pool.start()

    def begun(self, index: int) -> bool:
        return self._index == index

    def begin(self, index: int) -> None:
        """Start on source `index`: hand its first ranges to the workers, who get on with
        them while this process does other things (imports, connecting). produce() begins
        the source itself if this was not called."""
        fd = self._fd(index)
        self._index = index
        self._planned = os.lseek(fd, 0, os.SEEK_CUR)
        self._size = os.fstat(fd).st_size
        self._hand_out()

    def produce(self, producer, topic: str, partition: int | None, index: int, progress) -> int:
        """Send the records of source `index` to `topic`, from its position (when begun) to
        its end, which becomes its position; returns how many."""
        if not self.begun(index):
            self.begin(index)
        fd = self._fd(index)
        sent = 0
        while True:
            self._hand_out()
            if self.pool.pending:
                request, count, answer = self.pool.take()
            elif self._planned < self._size:  # the workers are gone: one range here
                request = self._next_range()
                count = None
            else:
                grown = os.fstat(fd).st_size
                if grown <= self._size:
                    break
                self._size = grown
                continue
            if count is None or count < 0:
                count, answer = self._encode(request)  # raises what went wrong
            _, start, end = _REQUEST.unpack(request)
            self._send(producer, topic, partition, answer)
            self._resize(count, end - start)
            sent += count
            progress.add(count, end - start)
        os.lseek(fd, self._size, os.SEEK_SET)
        self._index = None
        return sent

    def close(self) -> None:
        self.pool.close()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def _hand_out(self) -> None:
        """Give the workers ranges of the current source until each has `depth` of them."""
        while self._planned < self._size and self.pool.usable and self.pool.can_put():
            request = self._next_range()
            if not self.pool.put(request, request):
                self._planned = _REQUEST.unpack(request)[1]  # not taken: planned again
                return

    def _next_range(self) -> bytes:
        end = min(self._planned + self._range, self._size)
        request = _REQUEST.pack(self._index, self._planned, end)
        self._planned = end
        return request

    @staticmethod
    def _send(producer, topic: str, partition: int | None, batches) -> None:
        position = 0
        while position < len(batches):
            header = parse_header(batches, position)
            size = header.batch_length + 12
            producer.send_batch(topic, bytes(batches[position:position + size]), header.records_count, partition)
            position += size

    def _resize(self, count: int, nbytes: int) -> None:
        """Size the next ranges from this one's records so that a range fills about one batch:
        a record takes its length + 1 bytes of file and its length + RECORD_OVERHEAD of batch."""
        if count:
            per_record = nbytes / count
            fill = per_record / (per_record - 1 + RECORD_OVERHEAD)
            self._range = max(int(self.batch_limit * min(fill, 1.0) * 0.95), 1 << 12)

    def _encode(self, request) -> tuple[int, bytes]:
        """(record count, the range's batches) of a request: in a worker, or here."""
        index, start, end = _REQUEST.unpack(request)
        values, value_bytes = lines_starting_in(self._fd(index), start, end, self.separator)
        now_ms = int(time.time() * 1000)
        batches = [build_batch_values(run, now_ms, self.compression)
                   for run in runs_that_fit(values, self.batch_limit, value_bytes)]
        return len(values), b"".join(batches)

    def _fd(self, index: int) -> int:
        source = self.sources[index]
        if isinstance(source, int):
            return source
        fd = self._fds.get(index)
        if fd is None:
            for old in self._fds.values():
                os.close(old)
            self._fds.clear()
            fd = self._fds[index] = os.open(source, os.O_RDONLY)
        return fd
