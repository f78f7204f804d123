"""Caps on the partitions a client may make this broker create (BrokerConfig, `logship serve`).

Every new partition is a directory and, once used, a loaded log; nothing a client sends may
ask for more than the broker was configured to hold. Checked before anything is created:

* per request: the new partitions of one CreateTopics, CreatePartitions or Metadata request
  (auto-creation), summed over its topics (`--max-partitions-per-request`);
* per topic: the partition count a topic may reach (`--max-partitions-per-topic`);
* per broker: all partitions of the store (`--max-broker-partitions`, KIP-578's name).

A refusal is PolicyViolationError (POLICY_VIOLATION) naming the limit and the option that
sets it; the topics of the request that fit are still created.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import PolicyViolationError

if TYPE_CHECKING:
    from .broker import Broker


class PartitionBudget:
    """The partitions one request may still create; `take` checks all three caps."""

    def __init__(self, broker: Broker):
        self.broker = broker
        self.left = broker.config.max_partitions_per_request

    def take(self, topic: str, current: int, total: int) -> None:
        """Allow growing `topic` from `current` to `total` partitions (0 -> n: a new topic),
        or raise PolicyViolationError; what is allowed is deducted from this request's budget."""
        config, added = self.broker.config, total - current
        if total > config.max_partitions_per_topic:
            raise PolicyViolationError(
                f"topic {topic!r} would have {total} partitions; this broker allows at most "
                f"{config.max_partitions_per_topic} per topic (logship serve --max-partitions-per-topic)")
        if added > self.left:
            asked = config.max_partitions_per_request - self.left + added
            raise PolicyViolationError(
                f"this request asks for {asked} new partitions; this broker creates at most "
                f"{config.max_partitions_per_request} per request (logship serve --max-partitions-per-request): "
                f"create them in several requests")
        held = self.broker.store.total_partitions()
        if held + added > config.max_broker_partitions:
            raise PolicyViolationError(
                f"this broker holds {held} partitions and allows at most {config.max_broker_partitions} "
                f"(logship serve --max-broker-partitions); {added} more do not fit")
        self.left -= added
