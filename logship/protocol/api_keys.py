"""API keys and the version tables logship advertises."""

from __future__ import annotations

from enum import IntEnum
from types import MappingProxyType

__all__ = ["ApiKey", "ADVERTISED", "SUPPORTED_VERSIONS", "api_versions_entries"]


class ApiKey(IntEnum):
    PRODUCE = 0
    FETCH = 1
    LIST_OFFSETS = 2
    METADATA = 3
    LEADER_AND_ISR = 4
    STOP_REPLICA = 5
    UPDATE_METADATA = 6
    OFFSET_COMMIT = 8
    OFFSET_FETCH = 9
    FIND_COORDINATOR = 10
    JOIN_GROUP = 11
    HEARTBEAT = 12
    LEAVE_GROUP = 13
    SYNC_GROUP = 14
    DESCRIBE_GROUPS = 15
    LIST_GROUPS = 16
    SASL_HANDSHAKE = 17
    API_VERSIONS = 18
    CREATE_TOPICS = 19
    DELETE_TOPICS = 20
    DELETE_RECORDS = 21
    INIT_PRODUCER_ID = 22
    DESCRIBE_CONFIGS = 32
    ALTER_CONFIGS = 33
    DESCRIBE_LOG_DIRS = 35
    SASL_AUTHENTICATE = 36
    CREATE_PARTITIONS = 37
    DELETE_GROUPS = 42
    INCREMENTAL_ALTER_CONFIGS = 44
    OFFSET_DELETE = 47
    DESCRIBE_QUORUM = 55


#: Set "N" of reference/kafka-protocol.md §2.4 plus the optional tooling keys: what the broker
#: puts in its ApiVersions response. Set N is non-flexible; the admin APIs (DeleteRecords,
#: CreatePartitions, DeleteGroups from v2), the config APIs (DescribeConfigs from v4, AlterConfigs
#: from v2, IncrementalAlterConfigs from v1), CreateTopics 5, ListOffsets 6-8 and ApiVersions 3-4
#: are flexible, the versions current clients prefer. Metadata goes to v9 (beyond set N's v4) for
#: leader epochs (v7; librdkafka trusts them from v9): a client keeps the newest epoch it saw and
#: ignores an older answer, such as a deposed leader's until it hears of its successor (librdkafka
#: without them can go back to the old leader and stay there, refused with NOT_LEADER).
#: framing.py accepts the byte librdkafka's v9 request for all topics leaves over, as Kafka does.
#: DescribeQuorum 0-1 (flexible) carries the
#: leaders' view of their followers (`logship cluster status`). Produce 0-2 are advertised (librdkafka
#: < 2.11.1 needs them to enable compression) but not implemented: decoding them raises
#: UnsupportedRequestError, which the broker answers like Kafka 4.x does.
ADVERTISED = MappingProxyType({
    ApiKey.PRODUCE: (0, 8),
    ApiKey.FETCH: (4, 10),
    ApiKey.LIST_OFFSETS: (1, 8),
    ApiKey.METADATA: (1, 9),
    ApiKey.OFFSET_COMMIT: (2, 3),
    ApiKey.OFFSET_FETCH: (1, 3),
    ApiKey.FIND_COORDINATOR: (0, 1),
    ApiKey.JOIN_GROUP: (0, 2),
    ApiKey.HEARTBEAT: (0, 1),
    ApiKey.LEAVE_GROUP: (0, 1),
    ApiKey.SYNC_GROUP: (0, 1),
    ApiKey.DESCRIBE_GROUPS: (0, 4),
    ApiKey.LIST_GROUPS: (0, 2),
    ApiKey.API_VERSIONS: (0, 4),
    ApiKey.CREATE_TOPICS: (2, 5),
    ApiKey.DELETE_TOPICS: (1, 3),
    ApiKey.INIT_PRODUCER_ID: (0, 0),
    ApiKey.DESCRIBE_LOG_DIRS: (1, 4),
    ApiKey.DESCRIBE_CONFIGS: (0, 4),
    ApiKey.ALTER_CONFIGS: (0, 2),
    ApiKey.INCREMENTAL_ALTER_CONFIGS: (0, 1),
    ApiKey.DELETE_RECORDS: (0, 2),
    ApiKey.CREATE_PARTITIONS: (0, 3),
    ApiKey.DELETE_GROUPS: (0, 2),
    ApiKey.OFFSET_DELETE: (0, 0),
    ApiKey.DESCRIBE_QUORUM: (0, 1),
    # cluster mode only (broker.py registers their handlers only with a cluster file)
    ApiKey.SASL_HANDSHAKE: (1, 1),
    ApiKey.SASL_AUTHENTICATE: (0, 2),
    ApiKey.LEADER_AND_ISR: (2, 2),
    ApiKey.STOP_REPLICA: (1, 1),
    ApiKey.UPDATE_METADATA: (5, 5),
})

#: The same table under the name the broker's ApiVersions handler may prefer.
SUPPORTED_VERSIONS = ADVERTISED


def api_versions_entries(table=ADVERTISED) -> list[dict]:
    """`table` as the `api_keys` array of an ApiVersions response, sorted by key."""
    return [{"api_key": int(key), "min_version": low, "max_version": high}
            for key, (low, high) in sorted(table.items())]
