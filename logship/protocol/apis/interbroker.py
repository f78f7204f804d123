"""LeaderAndIsr (4), StopReplica (5) and UpdateMetadata (6): from Kafka's message JSON schemas
of the same names (the ZooKeeper-era versions, before topic ids).

logship's brokers send them to each other (and `logship promote` sends them to brokers) on
connections authenticated with the cluster secret (peer_auth.py); one version of each is
implemented, the one whose layout groups partitions by topic: LeaderAndIsr v2, StopReplica
v1, UpdateMetadata v5. `zk_version` carries the partition state's version (bumped by every
change of leader, epoch or replica set), as Kafka's partition epoch.
"""

from __future__ import annotations

from ..api_keys import ApiKey
from ..schema import Api, Field as F

_PARTITION_ERRORS = F("partition_errors", "[]PartitionError", fields=(
    F("topic_name", "string"),
    F("partition_index", "int32"),
    F("error_code", "int16"),
))

LEADER_AND_ISR = Api(ApiKey.LEADER_AND_ISR, "LeaderAndIsr", (2, 2), None, request=(
    F("controller_id", "int32"),
    F("controller_epoch", "int32"),
    F("broker_epoch", "int64", default=-1),
    F("topic_states", "[]LeaderAndIsrTopicState", fields=(
        F("topic_name", "string"),
        F("partition_states", "[]LeaderAndIsrPartitionState", fields=(
            F("partition_index", "int32"),
            F("controller_epoch", "int32"),
            F("leader", "int32"),
            F("leader_epoch", "int32"),
            F("isr", "[]int32"),
            F("zk_version", "int32"),
            F("replicas", "[]int32"),
            F("is_new", "bool", default="false"),
        )),
    )),
    F("live_leaders", "[]LeaderAndIsrLiveLeader", fields=(
        F("broker_id", "int32"),
        F("host_name", "string"),
        F("port", "int32"),
    )),
), response=(
    F("error_code", "int16"),
    _PARTITION_ERRORS,
))

STOP_REPLICA = Api(ApiKey.STOP_REPLICA, "StopReplica", (1, 1), None, request=(
    F("controller_id", "int32"),
    F("controller_epoch", "int32"),
    F("broker_epoch", "int64", default=-1),
    F("delete_partitions", "bool"),
    F("topics", "[]StopReplicaTopic", fields=(
        F("name", "string"),
        F("partition_indexes", "[]int32"),
    )),
), response=(
    F("error_code", "int16"),
    _PARTITION_ERRORS,
))

UPDATE_METADATA = Api(ApiKey.UPDATE_METADATA, "UpdateMetadata", (5, 5), None, request=(
    F("controller_id", "int32"),
    F("controller_epoch", "int32"),
    F("broker_epoch", "int64", default=-1),
    F("topic_states", "[]UpdateMetadataTopicState", fields=(
        F("topic_name", "string"),
        F("partition_states", "[]UpdateMetadataPartitionState", fields=(
            F("partition_index", "int32"),
            F("controller_epoch", "int32"),
            F("leader", "int32"),
            F("leader_epoch", "int32"),
            F("isr", "[]int32"),
            F("zk_version", "int32"),
            F("replicas", "[]int32"),
            F("offline_replicas", "[]int32"),
        )),
    )),
    F("live_brokers", "[]UpdateMetadataBroker", fields=(
        F("id", "int32"),
        F("endpoints", "[]UpdateMetadataEndpoint", fields=(
            F("port", "int32"),
            F("host", "string"),
            F("listener", "string"),
            F("security_protocol", "int16"),
        )),
        F("rack", "string", nullable="0+", default="null"),
    )),
), response=(
    F("error_code", "int16"),
))

APIS = (LEADER_AND_ISR, STOP_REPLICA, UPDATE_METADATA)

#: The controller never moves in the static mode, so its epoch is always this one.
CONTROLLER_EPOCH = 1


def leader_and_isr_body(sender_id: int, states: dict, live_leaders: list[tuple[int, str, int]]) -> dict:
    """A LeaderAndIsr v2 request: `states` maps (topic, partition) to a partition state (any
    object with leader, leader_epoch, isr, replicas, version); `live_leaders` lists the
    (id, host, port) of the leaders named. zk_version carries the state's version."""
    topics: dict[str, list[dict]] = {}
    for (topic, index), s in sorted(states.items()):
        topics.setdefault(topic, []).append(
            {"partition_index": index, "controller_epoch": CONTROLLER_EPOCH, "leader": s.leader,
             "leader_epoch": s.leader_epoch, "isr": list(s.isr), "zk_version": s.version,
             "replicas": list(s.replicas), "is_new": False})
    leaders = {s.leader for s in states.values()}
    return {"controller_id": sender_id, "controller_epoch": CONTROLLER_EPOCH, "broker_epoch": -1,
            "topic_states": [{"topic_name": name, "partition_states": parts} for name, parts in topics.items()],
            "live_leaders": [{"broker_id": b, "host_name": host, "port": port}
                             for b, host, port in live_leaders if b in leaders]}


def update_metadata_body(sender_id: int, version: int, topics: dict, live_brokers: list[tuple[int, str, int]]) -> dict:
    """An UpdateMetadata v5 request: `topics` maps topic -> partition -> state (as above, plus
    `removed`, sent as offline_replicas); `version` (the image's) travels in broker_epoch."""
    return {"controller_id": sender_id, "controller_epoch": CONTROLLER_EPOCH, "broker_epoch": version,
            "topic_states": [{"topic_name": name, "partition_states": [
                {"partition_index": index, "controller_epoch": CONTROLLER_EPOCH, "leader": s.leader,
                 "leader_epoch": s.leader_epoch, "isr": list(s.isr), "zk_version": s.version,
                 "replicas": list(s.replicas), "offline_replicas": list(s.removed)}
                for index, s in sorted(parts.items())]} for name, parts in sorted(topics.items())],
            "live_brokers": [{"id": b, "rack": None, "endpoints": [{"host": host, "port": port,
                                                                    "listener": "PLAINTEXT", "security_protocol": 0}]}
                             for b, host, port in live_brokers]}
