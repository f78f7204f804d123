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

from __future__ import annotations

import importlib

#: Each public name and the module that defines it; imported at first use (PEP 562), so
#: that `import logship.client.producer` does not load the consumer, groups and admin too.
_EXPORTS = {
    "Admin": "admin", "PartitionInfo": "admin",
    "DEFAULT_BROKERS": "cluster", "Cluster": "cluster", "PartitionMetadata": "cluster",
    "TopicMetadata": "cluster", "default_brokers": "cluster", "parse_brokers": "cluster",
    "Connection": "connection",
    "ConsumedRecord": "consumer", "Consumer": "consumer", "PartitionRecords": "consumer",
    "GroupConsumer": "group_consumer",
    "OffsetSpec": "offsets", "parse_offset": "offsets", "parse_time": "offsets",
    "murmur2": "partitioner", "partition_for_key": "partitioner",
    "Producer": "producer", "parse_acks": "producer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
