"""`Wakeup`: lets any thread wake a thread that waits in select() on its connections.

A non-blocking socket pair: `wake()` writes a byte (never blocks; a full pair is already
awake), and `wait(waiting, timeout)` selects on the pair and on the given connections,
empties the pair if it was woken, and returns the nodes whose connections are readable.
"""

from __future__ import annotations

import select
import socket


class Wakeup:
    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)

    def wake(self) -> None:
        try:
            self._w.send(b"\0")
        except OSError:
            pass

    def wait(self, waiting: dict[int, int], timeout: float) -> list[int]:
        """The nodes (values of `waiting`, keyed by socket fd) with something to read, after
        waiting up to `timeout` seconds for any of them or for a wake()."""
        try:
            readable = select.select([self._r, *waiting], [], [], max(timeout, 0.0))[0]
        except (OSError, ValueError):
            return []
        nodes = []
        for item in readable:
            if item is self._r:
                try:
                    while self._r.recv(4096):
                        pass
                except OSError:
                    pass
            else:
                nodes.append(waiting[item])
        return nodes

    def close(self) -> None:
        self._r.close()
        self._w.close()
