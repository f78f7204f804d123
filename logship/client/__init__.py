"""logship's client library: connections, producer, consumer and admin over the shared codec.

The library never prints and never exits: failures are typed exceptions of logship.errors
(BrokerUnavailableError when no broker answers, UnknownTopicError, DeliveryError ...).
"""

from .admin import Admin, PartitionInfo
from .cluster import DEFAULT_BROKERS, Cluster, PartitionMetadata, TopicMetadata, default_brokers, parse_brokers
from .connection import Connection
from .consumer import ConsumedRecord, Consumer, PartitionRecords
from .offsets import OffsetSpec, parse_offset, parse_time
from .partitioner import murmur2, partition_for_key
from .producer import Producer, parse_acks

__all__ = [
    "Admin", "ConsumedRecord", "Consumer", "PartitionRecords", "PartitionInfo", "Cluster", "Connection", "DEFAULT_BROKERS", "OffsetSpec", "PartitionMetadata", "Producer",
    "TopicMetadata", "default_brokers", "murmur2", "parse_acks", "parse_brokers", "parse_offset",
    "parse_time", "partition_for_key",
]
