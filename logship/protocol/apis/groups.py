"""Consumer-group APIs: OffsetCommit (8), OffsetFetch (9), JoinGroup (11), Heartbeat (12),
LeaveGroup (13), SyncGroup (14), DescribeGroups (15), ListGroups (16): from Kafka's message JSON
schemas of the same names.

Only fields that exist in the implemented versions are listed; version strings are Kafka's.
"""

from __future__ import annotations

from ..api_keys import ApiKey
from ..schema import Api, Field as F

OFFSET_COMMIT = Api(ApiKey.OFFSET_COMMIT, "OffsetCommit", (2, 8), 8, request=(
    F("group_id", "string"),
    F("generation_id_or_member_epoch", "int32", "1+", default=-1),
    F("member_id", "string", "1+"),
    F("group_instance_id", "string", "7+", nullable="7+", default="null"),
    F("retention_time_ms", "int64", "2-4", default=-1),
    F("topics", "[]OffsetCommitRequestTopic", fields=(
        F("name", "string", "0-9"),
        F("partitions", "[]OffsetCommitRequestPartition", fields=(
            F("partition_index", "int32"),
            F("committed_offset", "int64"),
            F("committed_leader_epoch", "int32", "6+", default=-1),
            F("committed_metadata", "string", nullable="0+"),
        )),
    )),
), response=(
    F("throttle_time_ms", "int32", "3+"),
    F("topics", "[]OffsetCommitResponseTopic", fields=(
        F("name", "string", "0-9"),
        F("partitions", "[]OffsetCommitResponsePartition", fields=(
            F("partition_index", "int32"),
            F("error_code", "int16"),
        )),
    )),
))

OFFSET_FETCH = Api(ApiKey.OFFSET_FETCH, "OffsetFetch", (1, 6), 6, request=(
    F("group_id", "string", "0-7"),
    F("topics", "[]OffsetFetchRequestTopic", "0-7", nullable="2-7", fields=(
        F("name", "string", "0-7"),
        F("partition_indexes", "[]int32", "0-7"),
    )),
), response=(
    F("throttle_time_ms", "int32", "3+"),
    F("topics", "[]OffsetFetchResponseTopic", "0-7", fields=(
        F("name", "string", "0-7"),
        F("partitions", "[]OffsetFetchResponsePartition", "0-7", fields=(
            F("partition_index", "int32", "0-7"),
            F("committed_offset", "int64", "0-7"),
            F("committed_leader_epoch", "int32", "5-7", default=-1),
            F("metadata", "string", "0-7", nullable="0-7"),
            F("error_code", "int16", "0-7"),
        )),
    )),
    F("error_code", "int16", "2-7", default=0),
))

JOIN_GROUP = Api(ApiKey.JOIN_GROUP, "JoinGroup", (0, 6), 6, request=(
    F("group_id", "string"),
    F("session_timeout_ms", "int32"),
    F("rebalance_timeout_ms", "int32", "1+", default=-1),
    F("member_id", "string"),
    F("group_instance_id", "string", "5+", nullable="5+", default="null"),
    F("protocol_type", "string"),
    F("protocols", "[]JoinGroupRequestProtocol", fields=(
        F("name", "string"),
        F("metadata", "bytes"),
    )),
), response=(
    F("throttle_time_ms", "int32", "2+"),
    F("error_code", "int16"),
    F("generation_id", "int32", default=-1),
    F("protocol_name", "string", nullable="7+"),
    F("leader", "string"),
    F("member_id", "string"),
    F("members", "[]JoinGroupResponseMember", fields=(
        F("member_id", "string"),
        F("group_instance_id", "string", "5+", nullable="5+", default="null"),
        F("metadata", "bytes"),
    )),
))

HEARTBEAT = Api(ApiKey.HEARTBEAT, "Heartbeat", (0, 4), 4, request=(
    F("group_id", "string"),
    F("generation_id", "int32"),
    F("member_id", "string"),
    F("group_instance_id", "string", "3+", nullable="3+", default="null"),
), response=(
    F("throttle_time_ms", "int32", "1+"),
    F("error_code", "int16"),
))

LEAVE_GROUP = Api(ApiKey.LEAVE_GROUP, "LeaveGroup", (0, 4), 4, request=(
    F("group_id", "string"),
    F("member_id", "string", "0-2"),
    F("members", "[]MemberIdentity", "3+", fields=(
        F("member_id", "string", "3+"),
        F("group_instance_id", "string", "3+", nullable="3+", default="null"),
    )),
), response=(
    F("throttle_time_ms", "int32", "1+"),
    F("error_code", "int16"),
    F("members", "[]MemberResponse", "3+", fields=(
        F("member_id", "string", "3+"),
        F("group_instance_id", "string", "3+", nullable="3+"),
        F("error_code", "int16", "3+"),
    )),
))

SYNC_GROUP = Api(ApiKey.SYNC_GROUP, "SyncGroup", (0, 4), 4, request=(
    F("group_id", "string"),
    F("generation_id", "int32"),
    F("member_id", "string"),
    F("group_instance_id", "string", "3+", nullable="3+", default="null"),
    F("assignments", "[]SyncGroupRequestAssignment", fields=(
        F("member_id", "string"),
        F("assignment", "bytes"),
    )),
), response=(
    F("throttle_time_ms", "int32", "1+"),
    F("error_code", "int16"),
    F("assignment", "bytes"),
))

DESCRIBE_GROUPS = Api(ApiKey.DESCRIBE_GROUPS, "DescribeGroups", (0, 5), 5, request=(
    F("groups", "[]string"),
    F("include_authorized_operations", "bool", "3+"),
), response=(
    F("throttle_time_ms", "int32", "1+"),
    F("groups", "[]DescribedGroup", fields=(
        F("error_code", "int16"),
        F("group_id", "string"),
        F("group_state", "string"),
        F("protocol_type", "string"),
        F("protocol_data", "string"),
        F("members", "[]DescribedGroupMember", fields=(
            F("member_id", "string"),
            F("group_instance_id", "string", "4+", nullable="4+", default="null"),
            F("client_id", "string"),
            F("client_host", "string"),
            F("member_metadata", "bytes"),
            F("member_assignment", "bytes"),
        )),
        F("authorized_operations", "int32", "3+", default=-2147483648),
    )),
))

LIST_GROUPS = Api(ApiKey.LIST_GROUPS, "ListGroups", (0, 3), 3, request=(), response=(
    F("throttle_time_ms", "int32", "1+"),
    F("error_code", "int16"),
    F("groups", "[]ListedGroup", fields=(
        F("group_id", "string"),
        F("protocol_type", "string"),
    )),
))

APIS = (OFFSET_COMMIT, OFFSET_FETCH, JOIN_GROUP, HEARTBEAT, LEAVE_GROUP, SYNC_GROUP,
        DESCRIBE_GROUPS, LIST_GROUPS)
