"""Replica assignment: which brokers hold each partition of a new topic, Kafka's way.

Kafka's rack-unaware assignment (AdminUtils.assignReplicasToBrokersRackUnaware): with the
brokers sorted by id as `b[0..n)`, partition p's first replica (its preferred leader) is
`b[(start + p) mod n]`, so leaders spread evenly (6 partitions on 3 brokers: two each);
its j-th further replica is `b[(first + 1 + (shift + j) mod (n - 1)) mod n]`, where `shift`
grows by one each time p passes a multiple of n, so followers spread too. `start` and
`shift` are random for a new topic (so that many small topics do not all lead on the
lowest id) unless given; CreatePartitions continues a topic from its partition count with
`start` = the position of partition 0's first replica, as Kafka does.

Invariants: every replica list has `replication_factor` distinct brokers, its first the
preferred leader; 1 <= replication_factor <= number of brokers (InvalidReplicationFactorError
otherwise, saying how many brokers there are).
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from ..errors import InvalidReplicationFactorError

__all__ = ["assign_replicas"]


def assign_replicas(brokers: Iterable[int], partitions: int, replication_factor: int, *,
                    first_partition: int = 0, start: int | None = None,
                    shift: int | None = None) -> dict[int, tuple[int, ...]]:
    """Partition index -> replica broker ids (preferred leader first) for partitions
    `first_partition .. first_partition + partitions - 1`."""
    ids = sorted(set(brokers))
    count = len(ids)
    if not 1 <= replication_factor <= count:
        raise InvalidReplicationFactorError(
            f"replication factor {replication_factor} is not possible with {count} broker{'s' if count != 1 else ''}"
            f" (it must be from 1 to {count})")
    start = random.randrange(count) if start is None else start % count
    shift = random.randrange(count) if shift is None else shift
    shift += first_partition // count  # the shift a fresh topic would have reached at first_partition
    result = {}
    for p in range(first_partition, first_partition + partitions):
        if p > first_partition and p % count == 0:
            shift += 1
        first = (p + start) % count
        replicas = [ids[first]]
        for j in range(replication_factor - 1):
            replicas.append(ids[(first + 1 + (shift + j) % (count - 1)) % count])
        result[p] = tuple(replicas)
    return result
