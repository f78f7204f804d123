"""Decoding and rendering fetched records in worker processes, written in fetch order.

A Python process decodes records on one core at a time, about a microsecond each, and that
is what bounds `logship consume` on a big read. `RenderWorkers` hands each large Undecoded
chunk to forked worker processes (pool.OrderedWorkers, started at the first large
chunk); a worker decodes it, applies the sink's --grep and format (it has the sink by fork)
and answers with the record count and the output bytes, which this process writes, in the
order the chunks were put. A small chunk (following a live topic) is decoded here, once
the results before it are written. cli/output.write_all starts the workers at once, so that
they build their decoding tables while the first records are fetched.

A big chunk is handed out in pieces of whole batches (`pieces`). A request is a pickled
Undecoded (its `data` as bytes); the answer's status is the record count. A chunk that does not
decode in a worker (status -1), or whose worker is gone, is decoded here, so what happens is what
the serial path does: at a damaged batch the records before it are written, then
DamagedBatchError (a CorruptRecordError) is raised;
after a worker dies or cannot be started, this process decodes the rest itself.
"""

from __future__ import annotations

import pickle

from ..client.fetched import warm_up
from ..records import HEADER_SIZE, LOG_OVERHEAD, peek_offset_and_size
from .pool import OrderedWorkers, workers_from_env

__all__ = ["RenderWorkers", "default_workers", "pieces"]

DIRECT_BELOW = 64 << 10  # bytes of fetched data: smaller chunks are decoded here
ANSWER_SLOT = 32 << 20  # output bytes a worker hands over in shared memory (more: by socket)
PIECE_BYTES = 256 << 10  # a bigger chunk is handed out in pieces of whole batches about this big
WAIT_S = 0.5  # longest wait for an answer before the caller gets to check on its output


def default_workers() -> int:
    """$LOGSHIP_DECODE_WORKERS if set, else as many as usable CPUs (none on one CPU), up to 4."""
    return workers_from_env("LOGSHIP_DECODE_WORKERS")


class RenderWorkers:
    """Writes Undecoded chunks through `sink` (a RecordSink without a limit), in order."""

    def __init__(self, sink, workers: int, direct_below: int = DIRECT_BELOW, piece_bytes: int = PIECE_BYTES):
        self.sink = sink
        self.direct_below = direct_below
        self.piece_bytes = piece_bytes
        self.workers = OrderedWorkers(self._render, workers, answer_slot_bytes=ANSWER_SLOT, prepare=warm_up)

    @property
    def pending(self) -> int:
        return self.workers.pending

    def put(self, chunk) -> None:
        for piece in pieces(chunk, self.piece_bytes):
            self._put(piece)

    def _put(self, chunk) -> None:
        if self.workers.usable and len(chunk.data) >= self.direct_below:
            while self.workers.pending and not self.workers.can_put():
                self.write_oldest()
            request = pickle.dumps(chunk._replace(data=bytes(chunk.data)), pickle.HIGHEST_PROTOCOL)
            if self.workers.put(chunk, request):
                return
        self.drain()
        self._write_here(chunk)

    def write_oldest(self) -> None:
        """Wait for the oldest outstanding chunk's result and write it."""
        chunk, count, output = self.workers.take()
        if count is None or count < 0:
            self._write_here(chunk)  # raises what the serial path raises
        else:
            self.sink.write_rendered(output, count)

    def _write_here(self, chunk) -> None:
        """Decode and write `chunk` in this process; at a damaged batch, write the records
        before it, then raise DamagedBatchError."""
        records = chunk.decode(partial=True)
        self.sink.write_chunk(records)
        if records.damaged is not None:
            raise records.damaged

    def write_oldest_or_wait(self, fds: list[int], timeout: float = WAIT_S) -> None:
        """Write the oldest result if it comes before any of `fds` (fetch responses, say) is
        readable or `timeout` passes; otherwise leave it, so an idle worker can be fed first."""
        if self.workers.oldest_ready(fds, timeout):
            self.write_oldest()

    def drain(self) -> None:
        while self.workers.pending:
            self.write_oldest()

    def close(self) -> None:
        """Stop the workers (without writing what is outstanding: call drain() for that)."""
        self.workers.close()

    def __enter__(self) -> "RenderWorkers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _render(self, request) -> tuple[int, bytes]:
        """In a worker: the record count and output of a pickled chunk; -1 if it does not decode
        (a damaged batch too: the parent then writes the records before it and reports it)."""
        try:
            output, count = self.sink.render_chunk(pickle.loads(request).decode())
        except Exception:  # noqa: BLE001 - the parent decodes it again and reports the error
            return -1, b""
        return count, output


def pieces(chunk, size: int):
    """`chunk` cut at batch boundaries into pieces of about `size` bytes (at least one batch
    each; a last batch cut short by the fetch stays with the piece before), so that the
    workers share a big fetch evenly and the first output comes sooner. A chunk with aborted
    transactions stays whole: which producers are aborting carries from batch to batch."""
    data = chunk.data
    if len(data) <= 2 * size or chunk.aborted:
        yield chunk
        return
    start = position = 0
    while position + LOG_OVERHEAD <= len(data):
        batch = peek_offset_and_size(data, position)[1]
        if batch < HEADER_SIZE:
            break  # not a batch: the rest goes as one piece, whose decoding says what is wrong
        position += batch
        if position - start >= size and len(data) - position >= size:
            yield chunk._replace(data=data[start:position])
            start = position
    yield chunk._replace(data=data[start:])
