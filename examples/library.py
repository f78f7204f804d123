#!/usr/bin/env python3
"""logship as a library: produce keyed records, then read them back from the beginning.

Run: examples/with-broker.sh examples/library.py   (uses $LOGSHIP_BROKERS)
"""

from logship.client import Admin, Cluster, Consumer, Producer

with Cluster() as cluster:  # bootstraps from $LOGSHIP_BROKERS, else 127.0.0.1:9092
    Admin(cluster).create_topic("orders", partitions=2)

    with Producer(cluster, acks="all", compression="zstd") as producer:
        for number in range(10):
            producer.send("orders", b"order %d" % number, key=b"customer-%d" % (number % 3),
                          headers=[("source", b"example")])
    # leaving the block flushed: every record was acknowledged, or DeliveryError was raised

    with Consumer(cluster, "orders", start="beginning", stop_at_end=True) as consumer:
        for record in sorted(consumer, key=lambda r: int(r.value.split()[1])):
            print(record.partition, record.key.decode(), record.value.decode())
