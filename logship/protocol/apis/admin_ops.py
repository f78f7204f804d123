"""DeleteRecords (21), CreatePartitions (37), DeleteGroups (42), OffsetDelete (47): from Kafka's
message JSON schemas of the same names.

Only fields that exist in the implemented versions are listed; version strings are Kafka's.
DeleteRecords, CreatePartitions and DeleteGroups are flexible (compact encodings, tagged fields)
from v2; OffsetDelete v0 is not.
"""

from __future__ import annotations

from ..api_keys import ApiKey
from ..schema import Api, Field as F

DELETE_RECORDS = Api(ApiKey.DELETE_RECORDS, "DeleteRecords", (0, 2), 2, request=(
    F("topics", "[]DeleteRecordsTopic", fields=(
        F("name", "string"),
        F("partitions", "[]DeleteRecordsPartition", fields=(
            F("partition_index", "int32"),
            F("offset", "int64"),
        )),
    )),
    F("timeout_ms", "int32"),
), response=(
    F("throttle_time_ms", "int32"),
    F("topics", "[]DeleteRecordsTopicResult", fields=(
        F("name", "string"),
        F("partitions", "[]DeleteRecordsPartitionResult", fields=(
            F("partition_index", "int32"),
            F("low_watermark", "int64"),
            F("error_code", "int16"),
        )),
    )),
))

CREATE_PARTITIONS = Api(ApiKey.CREATE_PARTITIONS, "CreatePartitions", (0, 3), 2, request=(
    F("topics", "[]CreatePartitionsTopic", fields=(
        F("name", "string"),
        F("count", "int32"),
        F("assignments", "[]CreatePartitionsAssignment", nullable="0+", fields=(
            F("broker_ids", "[]int32"),
        )),
    )),
    F("timeout_ms", "int32"),
    F("validate_only", "bool"),
), response=(
    F("throttle_time_ms", "int32"),
    F("results", "[]CreatePartitionsTopicResult", fields=(
        F("name", "string"),
        F("error_code", "int16"),
        F("error_message", "string", nullable="0+", default="null"),
    )),
))

DELETE_GROUPS = Api(ApiKey.DELETE_GROUPS, "DeleteGroups", (0, 2), 2, request=(
    F("groups_names", "[]string"),
), response=(
    F("throttle_time_ms", "int32"),
    F("results", "[]DeletableGroupResult", fields=(
        F("group_id", "string"),
        F("error_code", "int16"),
    )),
))

OFFSET_DELETE = Api(ApiKey.OFFSET_DELETE, "OffsetDelete", (0, 0), None, request=(
    F("group_id", "string"),
    F("topics", "[]OffsetDeleteRequestTopic", fields=(
        F("name", "string"),
        F("partitions", "[]OffsetDeleteRequestPartition", fields=(
            F("partition_index", "int32"),
        )),
    )),
), response=(
    F("error_code", "int16"),
    F("throttle_time_ms", "int32"),
    F("topics", "[]OffsetDeleteResponseTopic", fields=(
        F("name", "string"),
        F("partitions", "[]OffsetDeleteResponsePartition", fields=(
            F("partition_index", "int32"),
            F("error_code", "int16"),
        )),
    )),
))

APIS = (DELETE_RECORDS, CREATE_PARTITIONS, DELETE_GROUPS, OFFSET_DELETE)
