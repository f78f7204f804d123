"""ApiVersions and InitProducerId."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .reply import Reply

if TYPE_CHECKING:
    from .broker import Broker


def api_versions(broker: Broker, version: int, body: dict) -> Reply:
    """The same answer every time (the server encodes it once: framing.encode_fixed_response)."""
    return Reply({"error_code": 0, "api_keys": broker.api_versions_entries, "throttle_time_ms": 0})


def init_producer_id(broker: Broker, version: int, body: dict) -> Reply:
    """Hands out a fresh producer id; batches are stored as sent (no sequence de-duplication yet)."""
    return Reply({"throttle_time_ms": 0, "error_code": 0,
                  "producer_id": broker.next_producer_id(), "producer_epoch": 0})
