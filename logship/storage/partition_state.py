"""`PartitionState`: who leads a partition, in which leader epoch, with which replicas; and
its file `partition-state` in the partition's directory, this replica's durable view of it.

The controller (topic creation) and `logship promote` / `cluster remove` decide states and
send them in LeaderAndIsr requests; a replica applies a state only if it `supersedes` the one
it holds (a newer `version`, or the same state repeated), and writes it
here (atomically, fsynced) before it acts on it, so a restarted broker resumes the role it
had and never goes back to an older view. Format, one JSON object:

    {"leader": 2, "leader_epoch": 5, "replicas": [2, 3, 1], "isr": [2, 3, 1], "version": 7}

Invariants: leader is -1 (none) or one of `replicas`; `isr` is a subset of `replicas`, in the
static mode the replicas not removed; `version` only grows; `leader_epoch` only grows from
one version to the next. A partition with no file belongs to a single broker (node 0), as
before clusters existed. `removed` lists replicas taken out by `cluster remove`, so promotion
can refuse them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ConfigError
from .checkpoint import write_atomic

FILE_NAME = "partition-state"
NO_LEADER = -1


@dataclass(frozen=True)
class PartitionState:
    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    version: int = 0
    removed: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.leader != NO_LEADER and self.leader not in self.replicas:
            raise ConfigError(f"leader {self.leader} is not one of the replicas {list(self.replicas)}")
        if not set(self.isr) <= set(self.replicas):
            raise ConfigError(f"in-sync replicas {list(self.isr)} are not all replicas {list(self.replicas)}")
        if self.leader_epoch < 0 or self.version < 0:
            raise ConfigError("leader_epoch and version cannot be negative")

    def supersedes(self, held: "PartitionState | None") -> bool:
        """True if this state may replace `held`: none held, a higher version, or the same
        state again (a repeated request). An equal version with other content, or a lower
        one, does not: two deciders made different states of one version (a conflict)."""
        return held is None or self.version > held.version or self == held

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(", ", ": "))

    @classmethod
    def from_dict(cls, data: dict) -> "PartitionState":
        return cls(leader=int(data["leader"]), leader_epoch=int(data["leader_epoch"]),
                   replicas=tuple(int(r) for r in data["replicas"]), isr=tuple(int(r) for r in data["isr"]),
                   version=int(data.get("version", 0)), removed=tuple(int(r) for r in data.get("removed", ())))


def read_state(directory: str | os.PathLike) -> PartitionState | None:
    """The state saved in `directory`, None if there is none; ConfigError if it is unreadable
    (a replica must not guess its role)."""
    path = Path(directory) / FILE_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return PartitionState.from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is damaged ({exc}); restore it from another replica") from None


def write_state(directory: str | os.PathLike, state: PartitionState) -> None:
    """Replace the saved state atomically and durably (before the broker acts on it)."""
    write_atomic(Path(directory) / FILE_NAME, state.to_json() + "\n")
