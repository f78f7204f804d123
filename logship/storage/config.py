"""`LogConfig`: how a partition's log is rolled, retained, indexed and flushed.

Names and defaults follow Apache Kafka's topic configs (segment.bytes, segment.ms,
retention.ms, retention.bytes, index.interval.bytes, segment.index.bytes,
max.message.bytes, flush.messages, flush.ms, cleanup.policy, min.cleanable.dirty.ratio,
delete.retention.ms, message.timestamp.type); topic_config.py maps those names to these fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

DAY_MS = 24 * 60 * 60 * 1000
INT32_MAX = 0x7FFF_FFFF
CLEANUP_POLICIES = ("delete", "compact", "compact,delete")
TIMESTAMP_TYPES = ("CreateTime", "LogAppendTime")


@dataclass
class LogConfig:
    """How one partition's log behaves: the Store's default or a per-topic override
    (Store.set_topic_config).

    segment_bytes:        roll to a new segment before an append would push the active one past this.
    segment_ms:           roll when the active segment's first append (or, for a segment found on
                          open, the open) is older than this.
    retention_ms:         delete segments whose largest timestamp is older than this; -1 = forever.
    retention_bytes:      delete the oldest segments while the partition stays at least this big
                          without them; negative (-1) = unlimited, as Kafka (no validator).
    index_interval_bytes: bytes of batches between two sparse index entries.
    max_index_bytes:      an .index file never grows past this; the segment rolls instead (at least
                          4, as Kafka: below one entry every append rolls).
    max_batch_bytes:      largest record batch accepted (Kafka's message.max.bytes, 1 MiB + 12; 0
                          refuses every batch, as Kafka allows).
    flush_messages:       fdatasync after this many appended records; None = leave it to the OS
                          (and to explicit flush()/sync_to() calls, e.g. for acks=all).
    flush_ms:             fdatasync on append when the last sync is older than this (0: every
                          append, as Kafka's flush.ms=0); None = never.
    cleanup_policy:       "delete" (retention drops old segments), "compact" (compaction.py keeps
                          the latest record per key; retention leaves the log alone) or
                          "compact,delete" (both).
    min_cleanable_dirty_ratio: compact once the sealed bytes not yet compacted reach this share
                          of all sealed bytes.
    delete_retention_ms:  compaction drops a tombstone (null value) whose timestamp is older than this.
    message_timestamp_type: "CreateTime" (batches keep the producer's timestamps) or
                          "LogAppendTime" (the broker stamps each batch with the append time).
    """

    segment_bytes: int = 1 << 30
    segment_ms: int = 7 * DAY_MS
    retention_ms: int = 7 * DAY_MS
    retention_bytes: int = -1
    index_interval_bytes: int = 4096
    max_index_bytes: int = 10 << 20
    max_batch_bytes: int = (1 << 20) + 12
    flush_messages: int | None = None
    flush_ms: int | None = None
    cleanup_policy: str = "delete"
    min_cleanable_dirty_ratio: float = 0.5
    delete_retention_ms: int = DAY_MS
    message_timestamp_type: str = "CreateTime"

    @property
    def compacts(self) -> bool:
        """True when compaction applies ("compact" is in cleanup_policy)."""
        return "compact" in self.cleanup_policy.split(",")

    @property
    def deletes(self) -> bool:
        """True when retention applies ("delete" is in cleanup_policy)."""
        return "delete" in self.cleanup_policy.split(",")

    def __post_init__(self) -> None:
        if self.cleanup_policy not in CLEANUP_POLICIES:
            raise ConfigError(f"cleanup_policy must be 'delete', 'compact' or 'compact,delete', "
                              f"not {self.cleanup_policy!r}")
        if self.message_timestamp_type not in TIMESTAMP_TYPES:
            raise ConfigError(f"message_timestamp_type must be 'CreateTime' or 'LogAppendTime', "
                              f"not {self.message_timestamp_type!r}")
        if not 0.0 <= self.min_cleanable_dirty_ratio <= 1.0:
            raise ConfigError("min_cleanable_dirty_ratio must be within 0..1")
        if self.delete_retention_ms < 0:
            raise ConfigError("delete_retention_ms must be >= 0")
        if not 14 <= self.segment_bytes <= INT32_MAX:
            raise ConfigError(f"segment_bytes must be in 14..{INT32_MAX}, not {self.segment_bytes}")
        if self.segment_ms < 1:
            raise ConfigError(f"segment_ms must be positive, not {self.segment_ms}")
        if self.retention_ms < -1:
            raise ConfigError("retention_ms must be >= 0, or -1 to keep forever")
        if self.index_interval_bytes < 0:
            raise ConfigError("index_interval_bytes must be >= 0")
        if self.max_index_bytes < 4:
            raise ConfigError("max_index_bytes must be at least 4")
        if self.max_batch_bytes < 0:
            raise ConfigError("max_batch_bytes must be >= 0")
        if self.flush_messages is not None and self.flush_messages < 1:
            raise ConfigError("flush_messages must be positive or None")
        if self.flush_ms is not None and self.flush_ms < 0:
            raise ConfigError("flush_ms must be >= 0 (0: sync every append) or None")
