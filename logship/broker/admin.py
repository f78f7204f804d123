"""ApiVersions and InitProducerId."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import LogshipError
from .reply import Reply, error_code

if TYPE_CHECKING:
    from .broker import Broker


def api_versions(broker: Broker, version: int, body: dict) -> Reply:
    """The same answer every time (the server encodes it once: framing.encode_fixed_response)."""
    return Reply({"error_code": 0, "api_keys": broker.api_versions_entries, "throttle_time_ms": 0})


def init_producer_id(broker: Broker, version: int, body: dict) -> Reply:
    """Hands out a fresh producer id (producer_ids.py) at epoch 0; the partitions check its
    batches' sequences (storage/producer_state.py). KAFKA_STORAGE_ERROR when no id can be
    reserved."""
    try:
        producer_id = broker.next_producer_id()
    except LogshipError as exc:
        return Reply({"throttle_time_ms": 0, "error_code": error_code(exc), "producer_id": -1, "producer_epoch": -1})
    return Reply({"throttle_time_ms": 0, "error_code": 0, "producer_id": producer_id, "producer_epoch": 0})
