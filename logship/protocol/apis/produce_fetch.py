"""Produce (0), Fetch (1), ListOffsets (2): from Kafka's ProduceRequest.json ... ListOffsetsResponse.json.

Only fields that exist in the implemented versions are listed; version strings are Kafka's.
"""

from __future__ import annotations

from ..api_keys import ApiKey
from ..schema import Api, Field as F

PRODUCE = Api(ApiKey.PRODUCE, "Produce", (3, 9), 9, request=(
    F("transactional_id", "string", "3+", nullable="3+", default="null"),
    F("acks", "int16"),
    F("timeout_ms", "int32"),
    F("topic_data", "[]TopicProduceData", fields=(
        F("name", "string", "0-12"),
        F("partition_data", "[]PartitionProduceData", fields=(
            F("index", "int32"),
            F("records", "records", nullable="0+"),
        )),
    )),
), response=(
    F("responses", "[]TopicProduceResponse", fields=(
        F("name", "string", "0-12"),
        F("partition_responses", "[]PartitionProduceResponse", fields=(
            F("index", "int32"),
            F("error_code", "int16"),
            F("base_offset", "int64"),
            F("log_append_time_ms", "int64", "2+", default=-1),
            F("log_start_offset", "int64", "5+", default=-1),
            F("record_errors", "[]BatchIndexAndErrorMessage", "8+", fields=(
                F("batch_index", "int32", "8+"),
                F("batch_index_error_message", "string", "8+", nullable="8+", default="null"),
            )),
            F("error_message", "string", "8+", nullable="8+", default="null"),
        )),
    )),
    F("throttle_time_ms", "int32", "1+", default=0),
))

FETCH = Api(ApiKey.FETCH, "Fetch", (4, 12), 12, request=(
    F("cluster_id", "string", "12+", nullable="12+", tag=0, tagged="12+", default="null"),
    F("replica_id", "int32", "0-14", default=-1),
    F("max_wait_ms", "int32"),
    F("min_bytes", "int32"),
    F("max_bytes", "int32", "3+", default="0x7fffffff"),
    F("isolation_level", "int8", "4+", default=0),
    F("session_id", "int32", "7+", default=0),
    F("session_epoch", "int32", "7+", default=-1),
    F("topics", "[]FetchTopic", fields=(
        F("topic", "string", "0-12"),
        F("partitions", "[]FetchPartition", fields=(
            F("partition", "int32"),
            F("current_leader_epoch", "int32", "9+", default=-1),
            F("fetch_offset", "int64"),
            F("last_fetched_epoch", "int32", "12+", default=-1),
            F("log_start_offset", "int64", "5+", default=-1),
            F("partition_max_bytes", "int32"),
        )),
    )),
    F("forgotten_topics_data", "[]ForgottenTopic", "7+", fields=(
        F("topic", "string", "7-12"),
        F("partitions", "[]int32", "7+"),
    )),
    F("rack_id", "string", "11+", default=""),
), response=(
    F("throttle_time_ms", "int32", "1+"),
    F("error_code", "int16", "7+"),
    F("session_id", "int32", "7+", default=0),
    F("responses", "[]FetchableTopicResponse", fields=(
        F("topic", "string", "0-12"),
        F("partitions", "[]PartitionData", fields=(
            F("partition_index", "int32"),
            F("error_code", "int16"),
            F("high_watermark", "int64"),
            F("last_stable_offset", "int64", "4+", default=-1),
            F("log_start_offset", "int64", "5+", default=-1),
            F("diverging_epoch", "EpochEndOffset", "12+", tag=0, tagged="12+", fields=(
                F("epoch", "int32", "12+", default=-1),
                F("end_offset", "int64", "12+", default=-1),
            )),
            F("current_leader", "LeaderIdAndEpoch", "12+", tag=1, tagged="12+", fields=(
                F("leader_id", "int32", "12+", default=-1),
                F("leader_epoch", "int32", "12+", default=-1),
            )),
            F("snapshot_id", "SnapshotId", "12+", tag=2, tagged="12+", fields=(
                F("end_offset", "int64", default=-1),
                F("epoch", "int32", default=-1),
            )),
            F("aborted_transactions", "[]AbortedTransaction", "4+", nullable="4+", fields=(
                F("producer_id", "int64", "4+"),
                F("first_offset", "int64", "4+"),
            )),
            F("preferred_read_replica", "int32", "11+", default=-1),
            F("records", "records", nullable="0+"),
        )),
    )),
))

# replica_id defaults to -1 (a consumer) as in kafka-python, not to Kafka's generated 0.
LIST_OFFSETS = Api(ApiKey.LIST_OFFSETS, "ListOffsets", (1, 10), 6, request=(
    F("replica_id", "int32", default=-1),
    F("isolation_level", "int8", "2+"),
    F("topics", "[]ListOffsetsTopic", fields=(
        F("name", "string"),
        F("partitions", "[]ListOffsetsPartition", fields=(
            F("partition_index", "int32"),
            F("current_leader_epoch", "int32", "4+", default=-1),
            F("timestamp", "int64"),
        )),
    )),
    F("timeout_ms", "int32", "10+"),
), response=(
    F("throttle_time_ms", "int32", "2+"),
    F("topics", "[]ListOffsetsTopicResponse", fields=(
        F("name", "string"),
        F("partitions", "[]ListOffsetsPartitionResponse", fields=(
            F("partition_index", "int32"),
            F("error_code", "int16"),
            F("timestamp", "int64", "1+", default=-1),
            F("offset", "int64", "1+", default=-1),
            F("leader_epoch", "int32", "4+", default=-1),
        )),
    )),
))

APIS = (PRODUCE, FETCH, LIST_OFFSETS)
