"""Topic names and partition directory names.

A partition lives in `<data_dir>/<topic>-<partition>/`. Topic names may contain '-', so a
directory name is split at its last '-'. A directory being deleted is renamed
`<topic>-<partition>.<hex uuid>-delete` first (as Kafka does); such names never parse as a
partition because their suffix is not a number.
"""

from __future__ import annotations

import re

from ..errors import InvalidTopicError

MAX_TOPIC_LENGTH = 249
DELETE_SUFFIX = "-delete"
_LEGAL = re.compile(r"[a-zA-Z0-9._-]+")


def validate_topic_name(name: str) -> None:
    """Raise InvalidTopicError unless `name` follows Kafka's rules.

    1..249 characters of [a-zA-Z0-9._-], and not "." or "..".
    """
    if not isinstance(name, str) or not name:
        raise InvalidTopicError("topic name must not be empty")
    if name in (".", ".."):
        raise InvalidTopicError(f"topic name cannot be {name!r}")
    if len(name) > MAX_TOPIC_LENGTH:
        raise InvalidTopicError(f"topic name is {len(name)} characters long; the limit is {MAX_TOPIC_LENGTH}")
    if not _LEGAL.fullmatch(name):
        raise InvalidTopicError(f"topic name {name!r} may only contain ASCII letters, digits, '.', '_' and '-'")


def partition_dir_name(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


def parse_partition_dir(name: str) -> tuple[str, int] | None:
    """(topic, partition) for a partition directory name, or None for anything else."""
    topic, sep, number = name.rpartition("-")
    if not sep or not number.isdigit() or (len(number) > 1 and number[0] == "0"):
        return None
    try:
        validate_topic_name(topic)
    except InvalidTopicError:
        return None
    return topic, int(number)
