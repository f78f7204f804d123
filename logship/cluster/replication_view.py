"""What a broker says about its share of the cluster, from its own Metadata answer.

`view_of(spec)` asks the broker at its advertised address (logship's client, one Metadata
request for every topic) and counts the partitions it leads and those it follows (a
replica, not the leader). Replication lag and the time a follower was last heard from are
not in Metadata: they stay None until the brokers expose them. A broker that does not
answer gives a view with `error` set, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..client.cluster import Cluster
from ..cluster_file import BrokerSpec
from ..errors import LogshipError

__all__ = ["BrokerView", "view_of"]


@dataclass(frozen=True)
class BrokerView:
    led: int | None = None
    followed: int | None = None
    lag: int | None = None  # not exposed by the brokers yet
    last_heard_s: float | None = None  # not exposed by the brokers yet
    error: str | None = None


def view_of(spec: BrokerSpec, timeout_s: float = 5.0) -> BrokerView:
    try:
        with Cluster(spec.address, client_id="logship-cluster-status", timeout=timeout_s,
                     connect_timeout=timeout_s) as client:
            topics = client.refresh(None)
    except LogshipError as exc:
        return BrokerView(error=str(exc))
    led = followed = 0
    for topic in topics.values():
        for part in topic.partitions.values():
            if part.leader == spec.id:
                led += 1
            elif spec.id in part.replicas:
                followed += 1
    return BrokerView(led=led, followed=followed)
