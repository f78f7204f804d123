"""Finding a group's coordinator, and the Kafka error codes group clients act on."""

from __future__ import annotations

import time

from ..errors import error_for_code
from ..protocol import ApiKey
from .cluster import Cluster

__all__ = ["find_coordinator", "COORDINATOR_CODES", "REBALANCE_IN_PROGRESS", "ILLEGAL_GENERATION",
           "UNKNOWN_MEMBER_ID", "MEMBER_ID_REQUIRED"]

#: COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR: look the
#: coordinator up again and retry.
COORDINATOR_CODES = frozenset({14, 15, 16})
REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, MEMBER_ID_REQUIRED = 27, 22, 25, 79
_BACKOFF = 0.2


def find_coordinator(cluster: Cluster, group_id: str, timeout: float = 30.0) -> tuple[int, str, int]:
    """(node id, host, port) of `group_id`'s coordinator: FindCoordinator (key type 0),
    retried while the broker answers one of COORDINATOR_CODES."""
    deadline = time.monotonic() + timeout
    while True:
        response = cluster.request(ApiKey.FIND_COORDINATOR, {"key": group_id, "key_type": 0})
        code = response["error_code"]
        if not code:
            return response["node_id"], response["host"], response["port"]
        if code not in COORDINATOR_CODES or time.monotonic() > deadline:
            raise error_for_code(code, f"finding the coordinator of group {group_id!r}: "
                                       f"{response.get('error_message') or f'Kafka error code {code}'}")
        time.sleep(_BACKOFF)
