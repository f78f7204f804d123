"""Metadata (3), FindCoordinator (10), ApiVersions (18), CreateTopics (19), DeleteTopics (20),
InitProducerId (22), DescribeLogDirs (35), DescribeQuorum (55): from Kafka's message JSON schemas
of the same names.

DescribeQuorum is KRaft's (v0-1 here: v1 adds LastFetchTimestamp and LastCaughtUpTimestamp,
KIP-836; v2's directory ids and nodes are left out); logship's leaders answer it for any
partition they lead (broker/describe_quorum.py says how).

Only fields that exist in the implemented versions are listed; version strings are Kafka's.
"""

from __future__ import annotations

from ..api_keys import ApiKey
from ..schema import Api, Field as F

_NO_OPERATIONS = -2147483648  # INT32_MIN: "authorized operations not requested"

METADATA = Api(ApiKey.METADATA, "Metadata", (0, 9), 9, request=(
    F("topics", "[]MetadataRequestTopic", nullable="1+", fields=(
        F("name", "string"),
    )),
    F("allow_auto_topic_creation", "bool", "4+", default="true"),
    F("include_cluster_authorized_operations", "bool", "8-10"),
    F("include_topic_authorized_operations", "bool", "8+"),
), response=(
    F("throttle_time_ms", "int32", "3+"),
    F("brokers", "[]MetadataResponseBroker", fields=(
        F("node_id", "int32"),
        F("host", "string"),
        F("port", "int32"),
        F("rack", "string", "1+", nullable="1+", default="null"),
    )),
    F("cluster_id", "string", "2+", nullable="2+", default="null"),
    F("controller_id", "int32", "1+", default=-1),
    F("topics", "[]MetadataResponseTopic", fields=(
        F("error_code", "int16"),
        F("name", "string"),
        F("is_internal", "bool", "1+", default="false"),
        F("partitions", "[]MetadataResponsePartition", fields=(
            F("error_code", "int16"),
            F("partition_index", "int32"),
            F("leader_id", "int32"),
            F("leader_epoch", "int32", "7+", default=-1),
            F("replica_nodes", "[]int32"),
            F("isr_nodes", "[]int32"),
            F("offline_replicas", "[]int32", "5+"),
        )),
        F("topic_authorized_operations", "int32", "8+", default=_NO_OPERATIONS),
    )),
    F("cluster_authorized_operations", "int32", "8-10", default=_NO_OPERATIONS),
))

FIND_COORDINATOR = Api(ApiKey.FIND_COORDINATOR, "FindCoordinator", (0, 3), 3, request=(
    F("key", "string", "0-3"),
    F("key_type", "int8", "1+", default=0),
), response=(
    F("throttle_time_ms", "int32", "1+"),
    F("error_code", "int16", "0-3"),
    F("error_message", "string", "1-3", nullable="1-3"),
    F("node_id", "int32", "0-3"),
    F("host", "string", "0-3"),
    F("port", "int32", "0-3"),
))

API_VERSIONS = Api(ApiKey.API_VERSIONS, "ApiVersions", (0, 4), 3, request=(
    F("client_software_name", "string", "3+"),
    F("client_software_version", "string", "3+"),
), response=(
    F("error_code", "int16"),
    F("api_keys", "[]ApiVersion", fields=(
        F("api_key", "int16"),
        F("min_version", "int16"),
        F("max_version", "int16"),
    )),
    F("throttle_time_ms", "int32", "1+"),
    F("supported_features", "[]SupportedFeatureKey", "3+", tag=0, tagged="3+", fields=(
        F("name", "string", "3+"),
        F("min_version", "int16", "3+"),
        F("max_version", "int16", "3+"),
    )),
    F("finalized_features_epoch", "int64", "3+", tag=1, tagged="3+", default=-1),
    F("finalized_features", "[]FinalizedFeatureKey", "3+", tag=2, tagged="3+", fields=(
        F("name", "string", "3+"),
        F("max_version_level", "int16", "3+"),
        F("min_version_level", "int16", "3+"),
    )),
    F("zk_migration_ready", "bool", "3+", tag=3, tagged="3+", default="false"),
))

CREATE_TOPICS = Api(ApiKey.CREATE_TOPICS, "CreateTopics", (2, 5), 5, request=(
    F("topics", "[]CreatableTopic", fields=(
        F("name", "string"),
        F("num_partitions", "int32"),
        F("replication_factor", "int16"),
        F("assignments", "[]CreatableReplicaAssignment", fields=(
            F("partition_index", "int32"),
            F("broker_ids", "[]int32"),
        )),
        F("configs", "[]CreatableTopicConfig", fields=(
            F("name", "string"),
            F("value", "string", nullable="0+"),
        )),
    )),
    F("timeout_ms", "int32", default=60000),
    F("validate_only", "bool", "1+", default="false"),
), response=(
    F("throttle_time_ms", "int32", "2+"),
    F("topics", "[]CreatableTopicResult", fields=(
        F("name", "string"),
        F("error_code", "int16"),
        F("error_message", "string", "1+", nullable="0+"),
        F("topic_config_error_code", "int16", "5+", tag=0, tagged="5+"),
        F("num_partitions", "int32", "5+", default=-1),
        F("replication_factor", "int16", "5+", default=-1),
        F("configs", "[]CreatableTopicConfigs", "5+", nullable="5+", fields=(
            F("name", "string", "5+"),
            F("value", "string", "5+", nullable="5+"),
            F("read_only", "bool", "5+"),
            F("config_source", "int8", "5+", default=-1),
            F("is_sensitive", "bool", "5+"),
        )),
    )),
))

DELETE_TOPICS = Api(ApiKey.DELETE_TOPICS, "DeleteTopics", (1, 4), 4, request=(
    F("topic_names", "[]string", "0-5"),
    F("timeout_ms", "int32"),
), response=(
    F("throttle_time_ms", "int32", "1+"),
    F("responses", "[]DeletableTopicResult", fields=(
        F("name", "string"),
        F("error_code", "int16"),
    )),
))

INIT_PRODUCER_ID = Api(ApiKey.INIT_PRODUCER_ID, "InitProducerId", (0, 2), 2, request=(
    F("transactional_id", "string", nullable="0+"),
    F("transaction_timeout_ms", "int32"),
), response=(
    F("throttle_time_ms", "int32"),
    F("error_code", "int16"),
    F("producer_id", "int64", default=-1),
    F("producer_epoch", "int16"),
))

DESCRIBE_LOG_DIRS = Api(ApiKey.DESCRIBE_LOG_DIRS, "DescribeLogDirs", (1, 4), 2, request=(
    F("topics", "[]DescribableLogDirTopic", nullable="0+", fields=(
        F("topic", "string"),
        F("partitions", "[]int32"),
    )),
), response=(
    F("throttle_time_ms", "int32"),
    F("error_code", "int16", "3+"),
    F("results", "[]DescribeLogDirsResult", fields=(
        F("error_code", "int16"),
        F("log_dir", "string"),
        F("topics", "[]DescribeLogDirsTopic", fields=(
            F("name", "string"),
            F("partitions", "[]DescribeLogDirsPartition", fields=(
                F("partition_index", "int32"),
                F("partition_size", "int64"),
                F("offset_lag", "int64"),
                F("is_future_key", "bool"),
            )),
        )),
        F("total_bytes", "int64", "4+", default=-1),   # KIP-827: the log dir's volume
        F("usable_bytes", "int64", "4+", default=-1),
    )),
))

_REPLICA_STATE = (
    F("replica_id", "int32"),
    F("log_end_offset", "int64"),
    F("last_fetch_timestamp", "int64", "1+", default=-1),
    F("last_caught_up_timestamp", "int64", "1+", default=-1),
)

DESCRIBE_QUORUM = Api(ApiKey.DESCRIBE_QUORUM, "DescribeQuorum", (0, 1), 0, request=(
    F("topics", "[]TopicData", fields=(
        F("topic_name", "string"),
        F("partitions", "[]PartitionData", fields=(
            F("partition_index", "int32"),
        )),
    )),
), response=(
    F("error_code", "int16"),
    F("topics", "[]TopicData", fields=(
        F("topic_name", "string"),
        F("partitions", "[]PartitionData", fields=(
            F("partition_index", "int32"),
            F("error_code", "int16"),
            F("leader_id", "int32"),
            F("leader_epoch", "int32"),
            F("high_watermark", "int64"),
            F("current_voters", "[]ReplicaState", fields=_REPLICA_STATE),
            F("observers", "[]ReplicaState", fields=_REPLICA_STATE),
        )),
    )),
))

APIS = (METADATA, FIND_COORDINATOR, API_VERSIONS, CREATE_TOPICS, DELETE_TOPICS, INIT_PRODUCER_ID,
        DESCRIBE_LOG_DIRS, DESCRIBE_QUORUM)
