"""Forked worker processes that answer requests in the order they were put.

One Python process runs Python code on one core at a time. `OrderedWorkers` forks worker
processes that each run `handle(request) -> (status, answer)`, and hands requests to them
in turn (round-robin, at most `depth` outstanding each). Since every worker answers its
requests in order, the oldest outstanding request's answer is always the next one to read
from its worker: `take()` returns answers in exactly the order requests were put.

Protocol, per worker, on a socket pair: a request is an 8-byte big-endian length and that
many bytes; the answer is 24 bytes, a status (big-endian signed, the handler's), the
answer's length and where it is: -1, then the answer follows on the socket and is read
into one buffer that this process reuses (fresh megabyte buffers cost more in page faults
than the copy); or, with `answer_slot_bytes`, the number of the shared slot the worker
wrote it into. Each worker has `depth` slots in a shared anonymous mapping and uses them in
turn; it writes slot k again at least `depth` requests later, which this process puts only
once it has taken the answer in slot k. So an answer in a slot is copied once (into
the slot) instead of twice through the socket. A handler that raises answers status -1
with nothing. A worker that dies, or workers that cannot be started, stop the pool:
`take()` then returns status None for every request outstanding, which the caller handles
itself, and `put()` refuses more (returns False).

A worker keeps the memory it frees (malloc_tuning) and runs `prepare` once, before its
first request. Fork before starting threads: a forked child inherits only the thread that
forked, and locks other threads held stay held in it.
"""

from __future__ import annotations

import mmap
import os
import select
import signal
import socket
import struct
import sys
from collections import deque
from typing import Any, Callable

from .malloc_tuning import keep_freed_memory

__all__ = ["OrderedWorkers", "workers_from_env"]

_LENGTH = struct.Struct(">q")
_ANSWER = struct.Struct(">qqq")  # status, answer length, its slot (-1: on the socket)


def workers_from_env(variable: str, most: int = 4) -> int:
    """$variable if set (a whole number), else as many as usable CPUs up to `most`, and none
    on one CPU. ValueError if the variable is set to anything but a whole number >= 0."""
    configured = os.environ.get(variable, "").strip()
    if configured:
        if not configured.isdigit():
            raise ValueError(f"{variable}={configured!r} is not a whole number of workers (0: none)")
        return int(configured)
    cpus = len(os.sched_getaffinity(0))
    return 0 if cpus < 2 else min(cpus, most)


class OrderedWorkers:
    """Runs handle(request: bytearray) -> (status: int, answer: bytes-like) in `workers` forked
    processes (started at the first put), answers in order; see the module docstring."""

    def __init__(self, handle: Callable[[bytes], tuple[int, Any]], workers: int, depth: int = 1,
                 answer_slot_bytes: int = 0, prepare: Callable[[], None] | None = None):
        self.handle = handle
        self.prepare = prepare  # run by each worker once forked: tables its handler needs, say
        self.wanted = workers
        self.depth = depth
        self.slot_bytes = answer_slot_bytes
        self._slots: mmap.mmap | None = None
        self._workers: list[tuple[int, socket.socket]] = []  # (pid, our end of its socket pair)
        self._buffer = bytearray(1 << 20)  # answers are read into this, grown as needed
        self._pending: deque = deque()  # (worker index, token), oldest first
        self._next = 0

    @property
    def usable(self) -> bool:
        """Whether put() may still take requests (False once the workers stopped or failed)."""
        return self.wanted > 0

    @property
    def pids(self) -> list[int]:
        """The running workers' process ids."""
        return [pid for pid, _ in self._workers]

    @property
    def pending(self) -> int:
        """Requests put and not taken yet."""
        return len(self._pending)

    def can_put(self) -> bool:
        """Whether the next worker has room for a request (else take() first)."""
        return sum(index == self._next for index, _ in self._pending) < self.depth

    def put(self, token: Any, *request: bytes) -> bool:
        """Send a request (the bytes given, one after another) to the next worker, unless the
        pool is not usable (False). `token` comes back with its answer. Call only when
        can_put()."""
        if not self.wanted:
            return False
        if not self._workers:
            self.start()
            if not self._workers:
                return False
        sock = self._workers[self._next][1]
        try:
            sock.sendall(_LENGTH.pack(sum(map(len, request))))
            for part in request:
                sock.sendall(part)
        except OSError:
            self._stop_workers()
            return False
        self._pending.append((self._next, token))
        self._next = (self._next + 1) % len(self._workers)
        return True

    def take(self) -> tuple[Any, int | None, memoryview | None]:
        """(token, status, answer) of the oldest request, waiting for it; the answer is valid
        until the next take() or put(). Status None: the workers are gone, the request
        unanswered."""
        index, token = self._pending.popleft()
        try:
            sock = self._workers[index][1]
            status, size, slot = _ANSWER.unpack(_receive(sock, bytearray(_ANSWER.size)))
            if slot >= 0:
                return token, status, memoryview(self._slots)[slot * self.slot_bytes:slot * self.slot_bytes + size]
            if size > len(self._buffer):
                self._buffer = bytearray(size)
            return token, status, _receive(sock, memoryview(self._buffer)[:size])
        except (EOFError, OSError, IndexError):
            self._stop_workers()
            return token, None, None

    def oldest_ready(self, fds: list, timeout: float) -> bool:
        """Whether the oldest answer comes before any of `fds` is readable or `timeout` passes."""
        index = self._pending[0][0]
        if index >= len(self._workers):
            return True  # the workers are gone: take() says so at once
        sock = self._workers[index][1]
        return sock in select.select([sock, *fds], [], [], timeout)[0]

    def close(self) -> None:
        """Stop the workers, dropping what is outstanding."""
        self._pending.clear()
        self._stop_workers()
        if self._slots is not None:
            try:
                self._slots.close()
            except BufferError:  # an answer taken last is still looked at: the mapping goes with it
                pass
            self._slots = None

    def __enter__(self) -> "OrderedWorkers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        """Fork the workers now (put() does at first use); the pool is unusable if none starts."""
        if self._workers or not self.wanted:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        if self.slot_bytes and self._slots is None:
            try:
                self._slots = mmap.mmap(-1, self.wanted * self.depth * self.slot_bytes)  # shared with the workers
            except OSError:
                self.slot_bytes = 0  # answers go by socket
        for index in range(self.wanted):
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
                    slots = range(index * self.depth, (index + 1) * self.depth) if self._slots else ()
                    _serve(theirs, self.handle, self._slots, slots, self.slot_bytes, self.prepare)
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


def _serve(sock: socket.socket, handle, region, slots: range, slot_bytes: int, prepare) -> None:
    """A worker's loop: answer each request until the socket closes; answers that fit go in
    `slots` of `region`, in turn."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    keep_freed_memory()
    if prepare is not None:
        prepare()
    turn = 0
    while True:
        try:
            (length,) = _LENGTH.unpack(_receive(sock, bytearray(_LENGTH.size)))
            request = _receive(sock, bytearray(length))
        except (EOFError, OSError):
            return
        try:
            status, answer = handle(request)
        except Exception:  # noqa: BLE001 - the parent does it again itself and reports the error
            status, answer = -1, b""
        if slots and len(answer) <= slot_bytes:
            slot = slots[turn % len(slots)]
            turn += 1
            region[slot * slot_bytes:slot * slot_bytes + len(answer)] = answer
            sock.sendall(_ANSWER.pack(status, len(answer), slot))
        else:
            sock.sendall(_ANSWER.pack(status, len(answer), -1))
            if answer:
                sock.sendall(answer)
