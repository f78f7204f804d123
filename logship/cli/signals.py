"""Signal handling on a thread of its own, where taking a lock is safe.

A Python signal handler runs in the main thread between two bytecodes, possibly while that
thread holds a lock: inside `threading.Event.clear()`, say. A handler that takes the same
lock (`Event.set()` does) deadlocks the process, rarely and for ever. So the Python-level
handlers installed here do nothing; the interpreter's C handler writes each signal's number
to a socket (`signal.set_wakeup_fd`), and a daemon thread reads the numbers and calls the
callbacks.
"""

from __future__ import annotations

import signal
import socket
import threading
from typing import Callable

__all__ = ["handle_on_thread"]


def _ignore(signum, frame) -> None:
    """Installed so the signal is caught (not its default action); the work is on the thread."""


def handle_on_thread(callbacks: dict[int, Callable[[int], None]]) -> Callable[[], None]:
    """Call `callbacks[signum](signum)` on a daemon thread whenever one of those signals
    arrives. Call from the main thread; returns a function that puts back the previous
    handlers and stops the thread."""
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    previous = {signum: signal.signal(signum, _ignore) for signum in callbacks}

    def pump() -> None:
        with reader:
            while data := reader.recv(64):
                for signum in data:
                    callback = callbacks.get(signum)
                    if callback is not None:
                        callback(signum)

    thread = threading.Thread(target=pump, name="logship-signals", daemon=True)
    thread.start()

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(previous_fd)
        writer.close()  # the reader sees the end and the thread returns
        thread.join(5)

    return restore
