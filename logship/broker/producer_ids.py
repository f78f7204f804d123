"""Producer ids that stay unique across restarts and across the brokers of a cluster.

An id is `(node_id % 2^14) << 48 | n`: brokers of one cluster (distinct node ids) never hand
out the same id, and `n` counts up durably: ids are reserved in blocks of BLOCK, the end of the
block being written to `DATA/producer-id-block` (one line, the next unreserved n; replaced
atomically and fsynced) before the first id of the block is handed out. A restart continues
after the reserved block, so an id is never given twice, whatever the stop (at most BLOCK - 1
ids are skipped). A missing or unreadable file starts at the wall clock in milliseconds, so a
data directory that lost it still does not go back to ids given before.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import KafkaStorageError
from ..storage.checkpoint import write_atomic

__all__ = ["ProducerIds", "BLOCK", "FILE_NAME"]

BLOCK = 1000
FILE_NAME = "producer-id-block"
_COUNTER_BITS = 48
_NODE_MASK = (1 << 14) - 1


class ProducerIds:
    def __init__(self, data_dir: str | Path, node_id: int, block: int = BLOCK):
        self._path = Path(data_dir) / FILE_NAME
        self._prefix = (node_id & _NODE_MASK) << _COUNTER_BITS
        self._block = block
        try:
            self._next = int(self._path.read_text().strip())
        except (OSError, ValueError):
            self._next = int(time.time() * 1000)
        self._reserved = self._next  # nothing of the current block is reserved yet

    def next(self) -> int:
        """A fresh producer id; KafkaStorageError when its block cannot be reserved."""
        if self._next >= self._reserved:
            end = self._next + self._block
            try:
                write_atomic(self._path, f"{end}\n")
            except OSError as exc:
                raise KafkaStorageError(f"cannot reserve producer ids in {self._path}: {exc.strerror or exc}") from exc
            self._reserved = end
        n, self._next = self._next, self._next + 1
        return self._prefix | (n & ((1 << _COUNTER_BITS) - 1))
