"""Kafka's rule for topic names, shared by the broker's storage and the client side.

A topic name is 1..249 characters of [a-zA-Z0-9._-], and not "." or "..". storage/ checks
it before creating anything on disk; the CLI and the agent check it before they talk to a
broker, so a bad name is a usage error at once rather than a broker's refusal (or, for a
shipper that retries, a refusal for ever). Imports nothing but errors.
"""

from __future__ import annotations

import re

from .errors import InvalidTopicError

__all__ = ["MAX_TOPIC_LENGTH", "validate_topic_name"]

MAX_TOPIC_LENGTH = 249
_LEGAL = re.compile(r"[a-zA-Z0-9._-]+")


def validate_topic_name(name: str) -> None:
    """Raise InvalidTopicError unless `name` follows Kafka's rules (see the module docstring)."""
    if not isinstance(name, str) or not name:
        raise InvalidTopicError("topic name must not be empty")
    if name in (".", ".."):
        raise InvalidTopicError(f"topic name cannot be {name!r}")
    if len(name) > MAX_TOPIC_LENGTH:
        raise InvalidTopicError(f"topic name is {len(name)} characters long; the limit is {MAX_TOPIC_LENGTH}")
    if not _LEGAL.fullmatch(name):
        raise InvalidTopicError(f"topic name {name!r} may only contain ASCII letters, digits, '.', '_' and '-'")
