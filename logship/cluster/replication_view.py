"""What the brokers say about their share of the cluster and about their followers.

`view_of(spec)` asks one broker at its advertised address, on one connection (logship's
client): a Metadata request for every topic, whose answer counts the partitions it leads and
those it follows (a replica, not the leader); then a DescribeQuorum request for the partitions
it leads (broker/describe_quorum.py), whose answer says, per follower, the offset of its last
fetch and when this leader last heard a fetch from it. From that answer, per follower of each
partition (`FollowerLag`):

    lag          = the leader's log end - the follower's last fetch offset (records behind)
    last_heard_s = (leader's now - the follower's last fetch time) / 1000, both on the
                   leader's clock (its own ReplicaState carries its now), so clock skew
                   between hosts does not enter

both None when the leader has heard no fetch from it in its current leader epoch.

A follower's figures come from its leaders, so `with_replication(views)` (after every
broker was asked) fills each broker's `lag` (the sum over the partitions it follows), its
`last_heard_s` (the worst, i.e. largest), `worst` (the partition furthest behind) and
`unheard` (how many of those leaders never heard from it). A broker whose leaders did not
answer (down, or no partitions followed) keeps None: the CLI shows '-'.

A broker that does not answer gives a view with `error` set, never an exception; one that
answers Metadata but not DescribeQuorum (an older logship) keeps its counts and says so in
`error`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..client.cluster import Cluster
from ..cluster_file import BrokerSpec
from ..errors import LogshipError
from ..protocol import ApiKey

__all__ = ["BrokerView", "FollowerLag", "view_of", "with_replication", "follower_lags"]


@dataclass(frozen=True)
class FollowerLag:
    """One follower of one partition, as the partition's leader saw it."""

    topic: str
    partition: int
    leader: int
    follower: int
    lag: int | None  # records behind the leader's log end; None: not heard from in this epoch
    last_heard_s: float | None  # since the leader last heard a fetch from it; None: likewise


@dataclass(frozen=True)
class BrokerView:
    led: int | None = None
    followed: int | None = None
    lag: int | None = None  # summed over the partitions it follows whose leader answered
    last_heard_s: float | None = None  # the worst over those partitions
    worst: FollowerLag | None = None  # the partition it is furthest behind in
    unheard: int = 0  # partitions whose leader has not heard a fetch from it in its epoch
    reported: tuple[FollowerLag, ...] = ()  # what this broker, as a leader, says of its followers
    error: str | None = None


def view_of(spec: BrokerSpec, timeout_s: float = 5.0) -> BrokerView:
    try:
        with Cluster(spec.address, client_id="logship-cluster-status", timeout=timeout_s,
                     connect_timeout=timeout_s) as client:
            topics = client.refresh(None)
            led: dict[str, list[int]] = {}
            followed = 0
            for topic in topics.values():
                for part in topic.partitions.values():
                    if part.leader == spec.id:
                        led.setdefault(topic.name, []).append(part.partition)
                    elif spec.id in part.replicas:
                        followed += 1
            counts = BrokerView(led=sum(map(len, led.values())), followed=followed)
            if not led:
                return counts
            try:
                answer = client.request(ApiKey.DESCRIBE_QUORUM, {"topics": [
                    {"topic_name": name, "partitions": [{"partition_index": p} for p in sorted(parts)]}
                    for name, parts in sorted(led.items())]}, node_id=spec.id)
            except LogshipError as exc:
                return replace(counts, error=f"no replication figures from it: {exc}")
    except LogshipError as exc:
        return BrokerView(error=str(exc))
    return replace(counts, reported=follower_lags(answer))


def follower_lags(answer: dict) -> tuple[FollowerLag, ...]:
    """Every follower of every partition led in a DescribeQuorum v1 response (partitions with
    an error, or not led by the broker that answered, are left out)."""
    found = []
    for topic in answer["topics"]:
        for part in topic["partitions"]:
            leader = part["leader_id"]
            states = [*part["current_voters"], *part["observers"]]
            own = next((s for s in states if s["replica_id"] == leader), None)
            if part["error_code"] or own is None:
                continue
            for state in states:
                if state["replica_id"] == leader:
                    continue
                heard = state.get("last_fetch_timestamp", -1)
                known = state["log_end_offset"] >= 0 and heard >= 0 and own.get("last_fetch_timestamp", -1) >= 0
                found.append(FollowerLag(
                    topic["topic_name"], part["partition_index"], leader, state["replica_id"],
                    max(own["log_end_offset"] - state["log_end_offset"], 0) if known else None,
                    max(own["last_fetch_timestamp"] - heard, 0) / 1000 if known else None))
    return tuple(found)


def _badness(entry: FollowerLag) -> tuple:
    return entry.lag is None, entry.lag or 0, entry.last_heard_s or 0.0


def with_replication(views: dict[int, BrokerView]) -> dict[int, BrokerView]:
    """`views` (broker id -> its view) with each broker's lag, last_heard_s, worst and unheard
    filled from what the others, as leaders, reported of it (see the module docstring)."""
    by_follower: dict[int, list[FollowerLag]] = {}
    for view in views.values():
        for entry in view.reported:
            by_follower.setdefault(entry.follower, []).append(entry)
    filled = {}
    for broker_id, view in views.items():
        entries = by_follower.get(broker_id, [])
        known = [e for e in entries if e.lag is not None]
        filled[broker_id] = replace(
            view, lag=sum(e.lag for e in known) if known else None,
            last_heard_s=max(e.last_heard_s for e in known) if known else None,
            worst=max(entries, key=_badness) if entries else None, unheard=len(entries) - len(known))
    return filled
