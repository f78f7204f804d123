"""Replication (issue #13, static mode): which partitions this broker hosts, as leader or
follower, and the data path between them.

manager.py holds `ReplicaManager` (`Broker.replicas`): the partition states a controller or
`logship promote` sent (LeaderAndIsr, persisted before acting), the leader's view of its
followers (high watermark, acks=all waits) and the follower fetchers. fetcher.py is one
follower fetcher per leader broker (Fetch v12 over a `PeerLink`). The handlers that take
requests for it are broker/replica_handlers.py (LeaderAndIsr, StopReplica), fetch.py (replica
fetches) and offsets.py (ListOffsets replica_id -2).
"""

from .manager import ReplicaManager

__all__ = ["ReplicaManager"]
