"""Keep freed memory in the process for reuse, rather than handing it back to the kernel.

glibc's malloc serves blocks of 128 KiB and more with mmap and returns them with munmap
when freed, and gives the top of the heap back once 128 KiB of it is free. A command that
reads, encodes and writes megabyte buffers in a loop then takes fresh pages from the
kernel for each one, zeroed page by page: measured here, page faults doubled the time of
encoding a batch of log lines. `keep_freed_memory()` raises both thresholds, so such
buffers are reused from the heap; the price is that up to TRIM_THRESHOLD bytes freed stay
with the process. Elsewhere than glibc (no mallopt) it does nothing.
"""

from __future__ import annotations

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # blocks this big still come from mmap (a 100 MB record, say)
TRIM_THRESHOLD = 128 << 20


def keep_freed_memory() -> None:
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (ImportError, OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
