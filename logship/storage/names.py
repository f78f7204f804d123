"""Topic names and partition directory names.

A partition lives in `<data_dir>/<topic>-<partition>/`. Topic names may contain '-', so a
directory name is split at its last '-'. A directory being deleted is renamed
`<topic>-<partition>.<hex uuid>-delete` first (as Kafka does), the topic cut short so that the
name fits NAME_MAX whatever the topic's length; such names never parse as a partition because
their suffix is not a number, and every name ending in `-delete` is a leftover to remove.
A 249-character topic leaves room for partition numbers of up to 5 digits (249 + 1 + 5 = 255);
`check_partition_count` refuses more.
"""

from __future__ import annotations

from ..errors import InvalidPartitionsError, InvalidTopicError
from ..topic_names import MAX_TOPIC_LENGTH, validate_topic_name  # noqa: F401 - the rule is shared

NAME_MAX = 255  # bytes in one file name (Linux, and most file systems)
DELETE_SUFFIX = "-delete"


def partition_dir_name(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


def check_partition_count(topic: str, count: int) -> None:
    """InvalidPartitionsError when partition `count - 1` of `topic` would need a directory
    name longer than NAME_MAX (only topics near the 249-character limit meet it)."""
    if count > 0 and len(partition_dir_name(topic, count - 1)) > NAME_MAX:
        most = 10 ** (NAME_MAX - len(topic) - 1)
        raise InvalidPartitionsError(f"a topic with a {len(topic)}-character name can have at most {most} "
                                     f"partitions (its directory names must fit {NAME_MAX} characters)")


def delete_dir_name(topic: str, partition: int, unique: str) -> str:
    """`<topic, cut to fit>-<partition>.<unique>-delete`: what a partition directory is renamed
    to when its topic is deleted; at most NAME_MAX characters."""
    suffix = f"-{partition}.{unique}{DELETE_SUFFIX}"
    return topic[:NAME_MAX - len(suffix)] + suffix


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
