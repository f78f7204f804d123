"""LeaderAndIsr (4, v2) and StopReplica (5, v1): a controller (or `logship promote`) telling
this broker which replicas it hosts and in which role.

Both are answered only on a connection authenticated with the cluster secret (peer_auth.py),
else CLUSTER_AUTHORIZATION_FAILED; a request from a controller epoch older than one already
heard from answers STALE_CONTROLLER_EPOCH. Each partition of LeaderAndIsr becomes a
`PartitionState` (zk_version is its version; in static mode the replicas not in the ISR are
the removed ones) given to `ReplicaManager.apply`, whose error code is the partition's. A state
taken is also merged into this broker's metadata image (cluster_metadata.take_states) for the
partitions the image knows, so its Metadata answers never name a leader older than the one it
follows: a deposed leader woken from SIGSTOP learns of the promote by the LeaderAndIsr, and must
not send clients back to itself until an UpdateMetadata arrives.
StopReplica calls `ReplicaManager.stop`. Registered in cluster mode only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ClusterAuthorizationError, ConfigError, InvalidRequestError, LogshipError
from ..protocol import ApiKey
from ..storage.partition_state import PartitionState
from .cluster_metadata import take_states
from .reply import ClientInfo, Reply, error_code

if TYPE_CHECKING:
    from .broker import Broker


def _refusal(broker: Broker, body: dict, client: ClientInfo) -> int:
    """The top-level error code for an inter-broker request, 0 when it may go ahead."""
    if client.principal is None:
        return ClusterAuthorizationError.code
    try:
        broker.replicas.check_controller_epoch(body["controller_epoch"])
    except LogshipError as exc:
        return error_code(exc)
    return 0


def leader_and_isr(broker: Broker, version: int, body: dict, client: ClientInfo) -> Reply:
    refused = _refusal(broker, body, client)
    errors, taken = [], {}
    for topic in body["topic_states"]:
        name = topic["topic_name"]
        for entry in topic["partition_states"]:
            code = refused
            if not refused:
                try:
                    state = PartitionState(
                        leader=entry["leader"], leader_epoch=entry["leader_epoch"],
                        replicas=tuple(entry["replicas"]), isr=tuple(entry["isr"]), version=entry["zk_version"],
                        removed=tuple(r for r in entry["replicas"] if r not in entry["isr"]))
                    code = broker.replicas.apply(name, entry["partition_index"], state)
                except ConfigError:  # a leader outside the replicas, an ISR outside them
                    code = InvalidRequestError.code
                if code == 0:
                    taken.setdefault(name, {})[entry["partition_index"]] = state
            errors.append({"topic_name": name, "partition_index": entry["partition_index"], "error_code": code})
    image = broker.cluster_metadata
    known = {name: {index: state for index, state in parts.items() if index in (image.partitions(name) or {})}
             for name, parts in taken.items()} if image is not None else {}
    if any(known.values()):
        take_states(broker, {name: parts for name, parts in known.items() if parts}, client.principal)
    return Reply({"error_code": refused, "partition_errors": errors})


def stop_replica(broker: Broker, version: int, body: dict, client: ClientInfo) -> Reply:
    refused = _refusal(broker, body, client)
    errors = []
    for topic in body["topics"]:
        for index in topic["partition_indexes"]:
            if not refused:
                broker.replicas.stop(topic["name"], index, delete=body["delete_partitions"])
            errors.append({"topic_name": topic["name"], "partition_index": index, "error_code": refused})
    return Reply({"error_code": refused, "partition_errors": errors})


CLIENT_HANDLERS = {ApiKey.LEADER_AND_ISR: leader_and_isr, ApiKey.STOP_REPLICA: stop_replica}
