"""logship's client library: connections, producer, consumer and admin over the shared codec.

    from logship.client import Admin, Cluster, Consumer, Producer

    cluster = Cluster()                        # --brokers / $LOGSHIP_BROKERS / 127.0.0.1:9092
    with Producer(cluster) as producer:        # acks=all, zstd, linger 5 ms, batches of 1 MiB
        producer.send_values("logs", [b"line 1", b"line 2"])
    with Consumer(cluster, "logs", start="-10", stop_at_end=True) as consumer:
        for record in consumer:                # ConsumedRecord(topic, partition, offset, ...)
            print(record.offset, record.value)

Modules: connection (one socket, version negotiation, pipelining), cluster (bootstrap,
metadata, leaders, shared and private connections), producer + batches + sender
(accumulator, builder and sender threads, retries), partitioner (murmur2, sticky),
consumer + fetched (pipelined fetches, lean decoding), offsets (the offset/time grammar),
admin (topics, offsets lookups).

The library never prints and never exits: failures are typed exceptions of logship.errors
(BrokerUnavailableError when no broker answers, UnknownTopicError, DeliveryError ...).
"""

from .admin import Admin, PartitionInfo
from .cluster import DEFAULT_BROKERS, Cluster, PartitionMetadata, TopicMetadata, default_brokers, parse_brokers
from .connection import Connection
from .consumer import ConsumedRecord, Consumer, PartitionRecords
from .group_consumer import GroupConsumer
from .offsets import OffsetSpec, parse_offset, parse_time
from .partitioner import murmur2, partition_for_key
from .producer import Producer, parse_acks

__all__ = [
    "Admin", "Cluster", "ConsumedRecord", "Consumer", "Connection", "DEFAULT_BROKERS", "OffsetSpec",
    "PartitionInfo", "PartitionMetadata", "PartitionRecords", "Producer", "TopicMetadata",
    "default_brokers", "murmur2", "parse_acks", "parse_brokers", "parse_offset", "parse_time",
    "partition_for_key",
]
