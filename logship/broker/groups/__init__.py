"""Consumer groups on the broker side: Kafka's classic group protocol and committed offsets.

member.py (Member) and group.py (Group, GroupState) hold the state; coordinator.py
(GroupCoordinator) is the state machine, sans-IO over a clock; offsets.py (OffsetStore)
keeps committed offsets as records of the compacted topic `__consumer_offsets`;
handlers.py turns requests into Replies.
"""

from .coordinator import GroupCoordinator
from .group import Group, GroupState
from .member import Member
from .offsets import OFFSETS_TOPIC, CommittedOffset, OffsetStore

__all__ = ["OFFSETS_TOPIC", "CommittedOffset", "Group", "GroupCoordinator", "GroupState", "Member", "OffsetStore"]
