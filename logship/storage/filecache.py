"""`FileCache`: a bounded, least-recently-used set of open descriptors shared by a whole store.

Every segment's `.log`, `.index` and `.timeindex` is a `CachedFile`: a path and open flags,
opened on demand through the store's one FileCache, which keeps at most `capacity` files open
and closes the least recently used beyond that. A partition therefore holds no descriptor for
ever: 10,000 partitions cost `capacity` descriptors, not three per segment.

A descriptor is a `SharedFd` with a reference count. The cache holds one reference while the
file is cached; whoever uses it takes another for the time of the use (`with
cached.acquire() as fd:`), and a FileSlice one until it is closed. The descriptor is closed
when its last reference goes, so evicting a file never closes a descriptor under a pread, a
pwrite or a sendfile, and never lets its number be reused for another file while a slice still
names it. Many slices of one file share one descriptor. Open descriptors are therefore at most
`capacity` plus those evicted while still referenced (operations in progress, slices of
responses not yet sent).

Reopening uses the flags given to CachedFile, never O_TRUNC (the creator truncates before);
a closed CachedFile (its segment deleted or closed) cannot be acquired again (OSError EBADF).

Durability: fdatasync through any descriptor of a file flushes all of its dirty pages, so data
written through a descriptor that eviction closed is synced through the next one (Linux
reports a write-back error to a later descriptor as long as no other descriptor saw it).
"""

from __future__ import annotations

import errno
import os
import threading
from collections import OrderedDict

DEFAULT_CAPACITY = 1000


class SharedFd:
    """One open descriptor and its reference count; a context manager that releases one reference."""

    __slots__ = ("fd", "_refs", "_lock")

    def __init__(self, fd: int, refs: int, lock: threading.RLock):
        self.fd, self._refs, self._lock = fd, refs, lock

    def retain(self) -> "SharedFd":
        """One more reference (release it)."""
        with self._lock:
            if self._refs <= 0:
                raise OSError(errno.EBADF, "descriptor already closed")
            self._refs += 1
        return self

    def release(self) -> None:
        """Drop one reference; the last one closes the descriptor."""
        with self._lock:
            self._refs -= 1
            if self._refs > 0:
                return
            fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"SharedFd({self.fd}, refs={self._refs})"


class FileCache:
    """At most `capacity` cached open files, least recently used evicted first. Thread-safe."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY):
        if capacity < 1:
            raise ValueError("a file cache holds at least one file")
        self.capacity = capacity
        # reentrant: a FileSlice's __del__ (run by the garbage collector at any allocation) releases
        self._lock = threading.RLock()
        self._lru: OrderedDict[CachedFile, None] = OrderedDict()
        self.opens = 0       # descriptors opened (misses), for tests and stats
        self.evictions = 0

    def file(self, path: os.PathLike | str, flags: int = os.O_RDWR) -> "CachedFile":
        """A file of this cache, opened on first acquire()."""
        return CachedFile(self, path, flags)

    def __len__(self) -> int:
        """Files cached now (each holds one descriptor)."""
        return len(self._lru)

    def _install(self, file: "CachedFile", fd: int) -> SharedFd:
        """Cache `fd` for `file` (unless a racing thread did first) and return a reference for the caller."""
        victims, surplus = [], -1
        with self._lock:
            shared = file._shared
            if shared is not None:  # another thread opened it meanwhile: use that one
                shared._refs += 1
                self._lru.move_to_end(file)
                surplus = fd
            elif file.closed:
                surplus = fd
            else:
                shared = file._shared = SharedFd(fd, 2, self._lock)  # the cache's reference and the caller's
                self._lru[file] = None
                self.opens += 1
                while len(self._lru) > self.capacity:
                    victim, _ = self._lru.popitem(last=False)
                    victims.append(victim._shared)
                    victim._shared = None
                    self.evictions += 1
        if surplus >= 0:
            os.close(surplus)
        for victim in victims:
            victim.release()
        if shared is None:
            raise OSError(errno.EBADF, f"{file.path} is closed")
        return shared

    def close_all(self) -> None:
        """Drop every cached descriptor (files stay usable: they reopen on demand)."""
        with self._lock:
            victims = [file._shared for file in self._lru]
            for file in self._lru:
                file._shared = None
            self._lru.clear()
        for victim in victims:
            victim.release()


class CachedFile:
    """A file opened on demand through a FileCache; see the module docstring."""

    __slots__ = ("path", "_flags", "_cache", "_shared", "closed", "__weakref__")

    def __init__(self, cache: FileCache, path: os.PathLike | str, flags: int = os.O_RDWR):
        self.path, self._flags, self._cache = path, flags & ~os.O_TRUNC, cache
        self._shared: SharedFd | None = None
        self.closed = False

    def acquire(self) -> SharedFd:
        """A reference to an open descriptor of the file (release it, or use `with`)."""
        cache = self._cache
        with cache._lock:
            shared = self._shared
            if shared is not None:
                shared._refs += 1
                cache._lru.move_to_end(self)
                return shared
            if self.closed:
                raise OSError(errno.EBADF, f"{self.path} is closed")
        return cache._install(self, os.open(self.path, self._flags, 0o644))

    @property
    def is_open(self) -> bool:
        """Whether the cache holds a descriptor of this file now."""
        return self._shared is not None

    def close(self) -> None:
        """Leave the cache for good; the descriptor closes once nobody uses it any more."""
        cache = self._cache
        with cache._lock:
            self.closed = True
            shared, self._shared = self._shared, None
            cache._lru.pop(self, None)
        if shared is not None:
            shared.release()

    def __repr__(self) -> str:
        return f"CachedFile({self.path}, {'open' if self._shared is not None else 'closed' if self.closed else 'cached out'})"


#: The cache of segments made without one (tests, tools): one per process.
SHARED_FILES = FileCache()
