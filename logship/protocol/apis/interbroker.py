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
