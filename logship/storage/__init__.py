"""Storage: segments, indexes, partitions and the store of topics on disk.

Knows nothing of the network. Layers, bottom up: index.py (OffsetIndex, TimeIndex),
segment.py (Segment), recovery.py (loading and crash recovery), partition.py (Partition,
the log of one partition; removal.py drops its tail, head and compacted segments), store.py
(Store: topics, retention, checkpoints; topics.py creates, deletes and configures topics). Small helpers:
config.py (LogConfig), topic_config.py (Kafka's topic config names, the per-topic overrides
file), append_time.py (LogAppendTime stamping), names.py, checkpoint.py, dirlock.py, epochs.py,
groupcommit.py, fileslice.py, reader.py, retention.py, validate.py; compaction.py keeps the latest record per key
of compacted topics; dump.py reads segment files for `logship dump`.
"""

from .config import LogConfig
from .fileslice import FileSlice
from .groupcommit import GroupCommit
from .names import validate_topic_name
from .partition import AppendResult, Partition
from .store import Store

__all__ = ["AppendResult", "FileSlice", "GroupCommit", "LogConfig", "Partition", "Store", "validate_topic_name"]
