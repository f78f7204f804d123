"""Topic names and partition directory names.

A partition lives in `<data_dir>/<topic>-<partition>/`. Topic names may contain '-', so a
directory name is split at its last '-'. A directory being deleted is renamed
`<topic>-<partition>.<hex uuid>-delete` first (as Kafka does); such names never parse as a
partition because their suffix is not a number.
"""

from __future__ import annotations

from ..errors import InvalidTopicError
from ..topic_names import MAX_TOPIC_LENGTH, validate_topic_name  # noqa: F401 - the rule is shared

DELETE_SUFFIX = "-delete"


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
