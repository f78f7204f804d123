"""`logship produce` by worker processes: plain records split, encoded and compressed in parallel.

Splitting lines and encoding records is Python work, and one process does it on one core
at a time. For plain records (no key delimiter, headers or --json), forked workers
(pool.OrderedWorkers) split, encode and compress the input into whole record
batches (records.build_batch_values); this process hands them to the producer
(Producer.send_batch) in input order. Two kinds of input:

Regular files (a FILE argument, or standard input redirected from one) are cut into byte
ranges that the workers read themselves. A record belongs to the range its first byte lies
in: a range [start, end) holds the records that start in it, the last one running past
`end` to its separator (or to the end of the file, where a last record without a separator
is still a record). So ranges can be cut anywhere, and every record is in exactly one. When
the ranges planned reach the size the file had, its size is read again and, if it grew,
producing goes on: the file is read to its end, as `cat` would.

Pipes (`app | logship produce`) are read here, into memory the workers share (pipe_blocks),
in blocks of whole records that go to the workers. A block ends when it is big enough, or
the linger time after its first bytes came, so a slow pipe's lines still go within it; a block smaller than SMALLEST_BLOCK, or half a batch (a slow pipe's few lines),
is sent from here with Producer.send_values, after everything before it. Before waiting for more input, what
the workers finished is sent.

Ranges and blocks are sized so that one fills about one batch (`batch_limit` estimated
bytes, as Producer.send_values counts them). A request is a range (b"R", source index,
start, end) or a block (b"B", offset and length in the shared memory); the answer's status
is the record count and the answer is the batches, one after another. A request a worker could not do (status -1),
or any after the workers are gone, is done in this process, so an error (the file cannot
be read, say) is raised here as the serial path raises it.
"""

from __future__ import annotations

import os
import stat
import struct
import time
from typing import NamedTuple

from ..client.batches import RECORD_OVERHEAD, runs_that_fit
from ..records import build_batch_values, parse_header
from .pipe_blocks import PipeBlocks, readable, widen_pipe
from .pool import OrderedWorkers

__all__ = ["FileProducer", "lines_starting_in", "parallel_kind", "PARALLEL_FROM", "SMALLEST_BLOCK"]

PARALLEL_FROM = 4 << 20  # bytes left in a file: smaller files are read by the serial path
SMALLEST_BLOCK = 64 << 10  # bytes of records read from a pipe: fewer are sent from here
MOST_SHARED = 16 << 20  # bytes of a slot of shared memory, however big batches may be
_READ_AHEAD = 4096  # bytes read past a range's end to find its last record's separator
_RANGE = struct.Struct(">c?qqq")  # b"R", whether start is a record start, source index, start, end
_BLOCK = struct.Struct(">cqq")  # b"B", offset and length in PipeBlocks' region


class Range(NamedTuple):
    """Records of source `index` that start in [start, end) (at `start` itself if `first`)."""

    first: bool
    index: int
    start: int
    end: int


class Block(NamedTuple):
    """A block of whole records at `offset` in PipeBlocks' region."""

    offset: int
    length: int


def lines_starting_in(fd: int, start: int, end: int, separator: bytes,
                      record_start: bool = False) -> tuple[list[bytes], int]:
    """The records (without their separator) whose first byte lies in [start, end) of the
    file open as `fd`: one at `start` if it is 0, follows a separator or is `record_start`
    (where reading began), one after each separator before `end - 1`, each ending at its
    separator or at the end of the file; and the sum of their lengths."""
    lead = 1 if start and not record_start else 0  # the byte before start: does a record start there?
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


def parallel_kind(source: str | int) -> str | None:
    """How FileProducer takes `source` (a path, or an open file descriptor from its current
    position): "range" for a regular file with at least PARALLEL_FROM bytes to read,
    "stream" for a pipe or socket, None for what the serial path reads (smaller files,
    terminals, devices, what cannot be opened: the serial path reports that)."""
    try:
        info = os.fstat(source) if isinstance(source, int) else os.stat(source)
        if stat.S_ISFIFO(info.st_mode) or stat.S_ISSOCK(info.st_mode):
            return "stream"
        if stat.S_ISREG(info.st_mode):
            left = info.st_size - (os.lseek(source, 0, os.SEEK_CUR) if isinstance(source, int) else 0)
            return "range" if left >= PARALLEL_FROM else None
    except OSError:
        pass
    return None


class FileProducer:
    """Produces the records of regular files (produce) and pipes (produce_stream, if made
    with `pipes`) through forked workers; see the module docstring.

    `sources[i]` is a path, or an open file descriptor (standard input), read from its
    position when its turn comes. Create this before any thread is started (the
    producer's): it forks."""

    DEPTH = 2  # requests outstanding per worker

    def __init__(self, sources: list, separator: bytes, compression: int, batch_limit: int, workers: int,
                 pipes: bool = False):
        self.sources = sources
        self.separator = separator
        self.compression = compression
        self.batch_limit = batch_limit
        self._fds: dict[int, int] = {}  # this process's: sources opened by path
        self._range = max(int(batch_limit * 0.9), 1 << 16)
        self._index: int | None = None  # the source begun; then where its ranges are planned up to,
        self._planned = self._whole = self._size = 0  # where its last whole record ends, its size
        self._first = False  # whether the next range starts where reading began
        self.pipe_blocks = self._pipe_blocks(workers, separator) if pipes else None
        answer_slot = min(2 * batch_limit, MOST_SHARED) + (64 << 10)  # a range's batches, or by socket
        self.pool = OrderedWorkers(self._encode, workers, depth=self.DEPTH, answer_slot_bytes=answer_slot)
        self.pool.start()

    def _pipe_blocks(self, workers: int, separator: bytes) -> PipeBlocks | None:
        """Slots for a block each of about a batch (at most MOST_SHARED), one for each request
        outstanding and two more (see PipeBlocks); None if they cannot be had: pipes are
        then read by the serial path."""
        try:
            return PipeBlocks(workers * self.DEPTH + 2, min(self.batch_limit, MOST_SHARED) + (64 << 10), separator)
        except OSError:
            return None

    def begun(self, index: int) -> bool:
        return self._index == index

    def begin(self, index: int) -> None:
        """Start on source `index`: hand its first ranges to the workers, who get on with
        them while this process does other things (imports, connecting). produce() begins
        the source itself if this was not called."""
        fd = self._fd(index)
        self._index = index
        self._planned = self._whole = self._size = os.lseek(fd, 0, os.SEEK_CUR)
        self._first = True
        self._grown(fd)
        self._hand_out()

    def produce(self, producer, topic: str, partition: int | None, index: int, progress) -> int:
        """Send the records of source `index` (a regular file) to `topic`, from its position
        (when begun) to its end, which becomes its position; returns how many. Ranges end
        where the last whole record does: a last record without its separator is sent only
        once the file has stopped growing (else it would be cut where a writer paused)."""
        if not self.begun(index):
            self.begin(index)
        fd = self._fd(index)
        sent = 0
        while True:
            self._hand_out()
            if self.pool.pending:
                sent += self._take(producer, topic, partition, progress)
            elif self._planned < self._whole:  # the workers are gone: a range here
                sent += self._deliver(producer, topic, partition, progress, self._next_range(), None, None)
            elif not self._grown(fd):
                break
        if self._size > self._whole:  # the last record, without its separator
            last = os.pread(fd, self._size - self._whole, self._whole)
            producer.send_values(topic, [last], partition)
            progress.add(1, len(last))
            sent += 1
        os.lseek(fd, self._size, os.SEEK_SET)
        self._index = None
        return sent

    def produce_stream(self, producer, topic: str, partition: int | None, fd: int, linger: float,
                       progress) -> int:
        """Send the records read from `fd` (a pipe or socket) to `topic` until it ends; a
        block goes at most `linger` seconds after its first bytes came; returns how many.
        Needs `pipes` at construction."""
        widen_pipe(fd)
        sent = 0
        while True:
            while self.pool.pending and self.pool.oldest_ready([], 0):
                sent += self._take(producer, topic, partition, progress)  # deliver what is done
            if self.pool.pending and not readable(fd):
                sent += self._drain(producer, topic, partition, progress)  # deliver before waiting
            where, length, ended = self.pipe_blocks.read(fd, self._range, linger)
            if length:
                sent += self._block(producer, topic, partition, where, length, progress)
            if ended:
                return sent + self._drain(producer, topic, partition, progress)

    def close(self) -> None:
        self.pool.close()
        if self.pipe_blocks is not None:
            self.pipe_blocks.close()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    # --- this process's side ---------------------------------------------------------------

    def _hand_out(self) -> None:
        """Give the workers ranges of the current source until each has `depth` of them."""
        while self._planned < self._whole and self.pool.usable and self.pool.can_put():
            token = self._next_range()
            if not self.pool.put(token, _RANGE.pack(b"R", *token)):
                self._planned, self._first = token.start, token.first  # not taken: planned again
                return

    def _next_range(self) -> Range:
        end = min(self._planned + self._range, self._whole)
        token = Range(self._first, self._index, self._planned, end)
        self._planned, self._first = end, False
        return token

    def _grown(self, fd: int) -> bool:
        """Read the size of the current source again; whether it grew. Moves `_whole` to the
        end of its last separator."""
        size = os.fstat(fd).st_size
        if size <= self._size:
            return False
        self._size = size
        position = size
        while position > self._whole:  # back from the end to the last separator
            chunk = min(1 << 16, position - self._whole)
            found = os.pread(fd, chunk, position - chunk).rfind(self.separator)
            if found >= 0:
                self._whole = position - chunk + found + len(self.separator)
                break
            position -= chunk
        return True

    def _block(self, producer, topic: str, partition: int | None, where: int | bytes, length: int,
               progress) -> int:
        """Send a block of whole records (at `where` in the shared region, or bytes): by a
        worker, or from here if it is small; returns how many records were delivered."""
        sent = 0
        if length >= min(SMALLEST_BLOCK, self._range // 2) and self.pool.usable and isinstance(where, int):
            while not self.pool.can_put():
                sent += self._take(producer, topic, partition, progress)
            if self.pool.put(Block(where, length), _BLOCK.pack(b"B", where, length)):
                return sent
        sent += self._drain(producer, topic, partition, progress)  # what came before goes first
        values = _split_block(self.pipe_blocks.data(where, length) if isinstance(where, int) else where,
                              self.separator)
        producer.send_values(topic, values, partition)
        progress.add(len(values), length)
        return sent + len(values)

    def _drain(self, producer, topic: str, partition: int | None, progress) -> int:
        sent = 0
        while self.pool.pending:
            sent += self._take(producer, topic, partition, progress)
        return sent

    def _take(self, producer, topic: str, partition: int | None, progress) -> int:
        return self._deliver(producer, topic, partition, progress, *self.pool.take())

    def _deliver(self, producer, topic: str, partition: int | None, progress, token, count, batches) -> int:
        """Send the batches of a request (a Range or a Block): a worker's answer, or made here
        if it has none (count None or -1)."""
        if count is None or count < 0:
            count, batches = self._frame_range(*token) if isinstance(token, Range) else self._frame_block(*token)
        position = 0
        while position < len(batches):
            header = parse_header(batches, position)
            size = header.batch_length + 12
            producer.send_batch(topic, bytes(batches[position:position + size]), header.records_count, partition)
            position += size
        nbytes = token.end - token.start if isinstance(token, Range) else token.length
        self._resize(count, nbytes)
        progress.add(count, nbytes)
        return count

    def _resize(self, count: int, nbytes: int) -> None:
        """Size the next ranges and blocks from this one's records so that one fills about a
        batch: a record takes its length + 1 bytes of input and its length + RECORD_OVERHEAD of
        batch."""
        if count:
            per_record = nbytes / count
            fill = per_record / (per_record - 1 + RECORD_OVERHEAD)
            self._range = max(int(self.batch_limit * min(fill, 1.0) * 0.95), 1 << 12)

    # --- the workers' side (or this process's, when they cannot) ----------------------------

    def _encode(self, request) -> tuple[int, bytes]:
        """A worker's handler: (record count, batches) of a request."""
        if request[:1] == b"B":
            return self._frame_block(*_BLOCK.unpack(request)[1:])
        return self._frame_range(*_RANGE.unpack(request)[1:])

    def _frame_range(self, first: bool, index: int, start: int, end: int) -> tuple[int, bytes]:
        values, value_bytes = lines_starting_in(self._fd(index), start, end, self.separator, first)
        return self._frame(values, value_bytes)

    def _frame_block(self, offset: int, length: int) -> tuple[int, bytes]:
        block = self.pipe_blocks.data(offset, length)
        values = _split_block(block, self.separator)
        return self._frame(values, len(block) - block.count(self.separator) * len(self.separator))

    def _frame(self, values: list, value_bytes: int) -> tuple[int, bytes]:
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


def _split_block(block: bytes, separator: bytes) -> list[bytes]:
    """The records of a block of whole records (the last one may lack its separator)."""
    values = block.split(separator)
    if values[-1] == b"" and len(values) > 1:
        values.pop()  # after the block's last separator
    return values
