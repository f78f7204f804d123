"""Where records go: Kafka's default partitioner.

Keyed records go to `(murmur2(key) & 0x7fffffff) % partitions`, with murmur2 exactly as
Kafka's Java client computes it (org.apache.kafka.common.utils.Utils.murmur2, seed
0x9747b28c), so a key lands on the partition a Java producer (or librdkafka with
`partitioner=murmur2_random`) would pick. librdkafka's own default (`consistent_random`,
CRC-32) differs; that is librdkafka's choice, not Kafka's.

Keyless records are spread by the sticky partitioner (KIP-480): every keyless record of a
topic goes to the same partition until the batch being filled for it is closed, then the
next batch goes to the next partition (round robin), so batches stay large.
"""

from __future__ import annotations

import random
import struct

__all__ = ["murmur2", "partition_for_key", "StickyPartitioner"]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_CACHE_LIMIT = 1 << 16
_cache: dict[tuple[bytes, int], int] = {}


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of `data`, as an unsigned 32-bit int (Java's int & 0xffffffff)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    words = length // 4
    if words:
        for k in struct.unpack_from(f"<{words}I", data):
            k = (k * _M) & _MASK
            k ^= k >> 24
            k = (k * _M) & _MASK
            h = ((h * _M) & _MASK) ^ k
    tail = length & 3
    if tail:
        base = length & ~3
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h ^= data[base]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives `key` in a topic of `partitions`."""
    if type(key) is not bytes:
        key = bytes(key)
    cache_key = (key, partitions)
    partition = _cache.get(cache_key)
    if partition is None:
        partition = (murmur2(key) & 0x7FFFFFFF) % partitions
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        _cache[cache_key] = partition
    return partition


class StickyPartitioner:
    """Keyless placement: one partition per topic until `next_batch(topic)` moves it on."""

    def __init__(self):
        self._current: dict[str, int] = {}

    def partition(self, topic: str, partitions: int) -> int:
        current = self._current.get(topic)
        if current is None or current >= partitions:
            current = self._current[topic] = _start(topic, partitions)
        return current

    def next_batch(self, topic: str, partitions: int, closed: int) -> None:
        """The batch of partition `closed` was closed: keyless records move to the next one."""
        if self._current.get(topic) == closed:
            self._current[topic] = (closed + 1) % partitions


def _start(topic: str, partitions: int) -> int:
    """A random first partition, so that many short-lived producers spread their records."""
    return random.randrange(partitions)
