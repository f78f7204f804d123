"""Where the lines of one file go: topic, partition, key, and the bytes every record shares.

A `Route` is made when the agent opens a file and stays with the file's content stream
(a retired generation and the copytruncate copy that continues it share one), so:

* the `path` header is the path the file had when the agent opened it: a file renamed by
  rotation keeps it, so its last lines still say where they were written;
* a file's lines always go to one partition (`partition`: by the input's key, or by the
  path when it has none), chosen once the topic's partition count is known (`assign()`),
  so they stay in order. Until then `partition` is None and nothing is read from it.
"""

from __future__ import annotations

import os

from ..client import partition_for_key
from .config import InputConfig
from .linerecords import RecordTemplate

__all__ = ["Route"]


class Route:
    """See the module docstring."""

    __slots__ = ("input", "topic", "path", "key", "template", "partition", "label")

    def __init__(self, inp: InputConfig, path: str, host: str):
        self.input = inp
        self.topic = inp.topic
        self.label = inp.paths[0] if inp.paths else ""  # names the input in the metrics
        self.path = path
        self.key = inp.render_key(host, path)
        headers = [("host", host.encode()), ("path", os.fsencode(path))]
        headers += [(name, value.encode()) for name, value in inp.fields]
        self.template = RecordTemplate(self.key, headers)
        self.partition: int | None = None

    def assign(self, count: int) -> None:
        """Pick the partition, out of the topic's `count`."""
        self.partition = partition_for_key(self.key if self.key is not None else os.fsencode(self.path), count)
