"""Decoding and rendering fetched records in worker processes, written in fetch order.

A Python process decodes records on one core at a time, about a microsecond each, and that
is what bounds `logship consume` on a big read. `RenderWorkers` forks worker processes (at
the first large chunk) and hands each large Undecoded chunk to the next idle one, in turn;
the worker decodes it, applies the sink's --grep and format (it has the sink by fork) and
answers with the count and the output bytes, which this process writes. Chunks go to the
workers round-robin and a worker answers one request before it gets the next, so the
oldest outstanding chunk's answer is always the next one to read from its worker: output
comes in exactly the order chunks were put. A small chunk (following a live topic) is
decoded here, once the results before it are written.

Protocol, per worker, on a socket pair: a request is an 8-byte big-endian length and that
many bytes of a pickled Undecoded (its `data` as bytes); the answer is 16 bytes, the record
count and the output's length (big-endian signed), then the output, read into one buffer
that this process reuses (fresh 8 MB buffers cost more in page faults than the copy). A
count of -1 says the chunk did not decode: then this process decodes it itself, so the error
raised (CorruptRecordError) is the one the serial path raises. A worker that dies or cannot
be started makes this process decode the rest itself.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import socket
import struct
import sys
from collections import deque

import click

from .output import IDLE_CHECK_S

__all__ = ["RenderWorkers", "default_workers", "write_all"]

DIRECT_BELOW = 64 << 10  # bytes of fetched data: smaller chunks are decoded here
_LENGTH = struct.Struct(">q")
_ANSWER = struct.Struct(">qq")  # record count (-1: did not decode), output length


def default_workers() -> int:
    """$LOGSHIP_DECODE_WORKERS if set, else as many as usable CPUs (none on one CPU), up to 4."""
    configured = os.environ.get("LOGSHIP_DECODE_WORKERS", "").strip()
    if configured:
        try:
            return max(int(configured), 0)
        except ValueError:
            raise ValueError(f"LOGSHIP_DECODE_WORKERS={configured!r} is not a whole number") from None
    cpus = len(os.sched_getaffinity(0))
    return 0 if cpus < 2 else min(cpus, 4)


def write_all(consumer, sink) -> None:
    """Write everything `consumer` returns through `sink` (which has no limit), using
    default_workers() workers for large chunks; ends when the consumer is finished."""
    try:
        workers = default_workers()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    with RenderWorkers(sink, workers) as pool:
        while not consumer.finished:
            chunks = consumer.poll_undecoded(0.0 if pool.pending else IDLE_CHECK_S)
            for chunk in chunks:
                pool.put(chunk)
            if not chunks:
                if pool.pending:
                    pool.write_oldest_or_wait(consumer.waiting_fds())
                else:
                    sink.check_reader()
        pool.drain()


class RenderWorkers:
    """Writes Undecoded chunks through `sink` (a RecordSink without a limit), in order."""

    def __init__(self, sink, workers: int, direct_below: int = DIRECT_BELOW):
        self.sink = sink
        self.wanted = workers
        self.direct_below = direct_below
        self._workers: list[tuple[int, socket.socket]] = []  # (pid, our end of its socket pair)
        self._buffer = bytearray(1 << 20)  # answers are read into this, grown as needed
        self._pending: deque = deque()  # (worker index, Undecoded), oldest first: one per busy worker
        self._next = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def put(self, chunk) -> None:
        if self.wanted and len(chunk.data) >= self.direct_below:
            if not self._workers:
                self._start()
            if self._workers:
                while any(index == self._next for index, _ in self._pending):
                    self.write_oldest()
                if self._workers and self._submit(self._next, chunk):
                    return
        self.drain()
        self.sink.write_chunk(chunk.decode())

    def write_oldest(self) -> None:
        """Wait for the oldest outstanding chunk's result and write it."""
        index, chunk = self._pending.popleft()
        try:
            sock = self._workers[index][1]
            count, size = _ANSWER.unpack(_receive(sock, bytearray(_ANSWER.size)))
            if count >= 0:
                if size > len(self._buffer):
                    self._buffer = bytearray(size)
                output = _receive(sock, memoryview(self._buffer)[:size])
        except (EOFError, OSError, IndexError):
            self._stop_workers()
            count = -1
        if count < 0:
            self.sink.write_chunk(chunk.decode())  # raises what the serial path raises
        else:
            self.sink.write_rendered(output, count)

    def write_oldest_or_wait(self, fds: list[int], timeout: float = IDLE_CHECK_S) -> None:
        """Write the oldest result if it comes before any of `fds` (fetch responses, say) is
        readable or `timeout` passes; otherwise leave it, so an idle worker can be fed first."""
        index = self._pending[0][0]
        if index < len(self._workers):
            sock = self._workers[index][1]
            if sock not in select.select([sock, *fds], [], [], timeout)[0]:
                return
        self.write_oldest()

    def drain(self) -> None:
        while self._pending:
            self.write_oldest()

    def close(self) -> None:
        """Stop the workers (without writing what is outstanding: call drain() for that)."""
        self._pending.clear()
        self._stop_workers()

    def __enter__(self) -> "RenderWorkers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the workers -------------------------------------------------------------------------------

    def _submit(self, index: int, chunk) -> bool:
        request = pickle.dumps(chunk._replace(data=bytes(chunk.data)), pickle.HIGHEST_PROTOCOL)
        try:
            self._workers[index][1].sendall(_LENGTH.pack(len(request)) + request)
        except OSError:
            self.drain()  # the others' results first, then this one here
            self._stop_workers()
            return False
        self._pending.append((index, chunk))
        self._next = (index + 1) % len(self._workers)
        return True

    def _start(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        for _ in range(self.wanted):
            ours, theirs = socket.socketpair()
            try:
                pid = os.fork()
            except OSError:
                ours.close()
                theirs.close()
                break
            if pid == 0:  # the worker: never returns
                try:
                    ours.close()
                    for _, other in self._workers:
                        other.close()
                    _serve(theirs, self.sink)
                finally:
                    os._exit(0)
            theirs.close()
            self._workers.append((pid, ours))
        if not self._workers:
            self.wanted = 0

    def _stop_workers(self) -> None:
        workers, self._workers = self._workers, []
        self.wanted = 0
        for _, conn in workers:
            conn.close()  # the worker sees the end of its requests and exits
        for pid, _ in workers:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def _receive(sock: socket.socket, into):
    """Fill `into` (a bytearray or memoryview) from `sock`; EOFError if it ends first."""
    view = memoryview(into)
    got = 0
    while got < len(view):
        n = sock.recv_into(view[got:])
        if not n:
            raise EOFError("the other end closed the socket")
        got += n
    return into


def _serve(sock: socket.socket, sink) -> None:
    """A worker's loop: decode and render each request until the socket closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    while True:
        try:
            (length,) = _LENGTH.unpack(_receive(sock, bytearray(_LENGTH.size)))
            chunk = pickle.loads(_receive(sock, bytearray(length)))
        except (EOFError, OSError):
            return
        try:
            output, count = sink.render_chunk(chunk.decode())
        except Exception:  # noqa: BLE001 - the parent decodes it again and reports the error
            output, count = b"", -1
        sock.sendall(_ANSWER.pack(count, len(output)))
        if output:
            sock.sendall(output)
