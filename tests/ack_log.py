"""Producers' acknowledgement logs, checked against what a consumer reads back.

The replication tests' promise is Kafka's: a record the cluster acknowledged (acks=all) is
there afterwards, once, where the acknowledgement said. Producers write one line per
acknowledged record to an acknowledgement log (`AckWriter`), a text file:

    TOPIC PARTITION OFFSET PAYLOAD

PARTITION and OFFSET are `-` when the producer is not told them (kcat only knows that
everything it sent was delivered); PAYLOAD is the record's identity, a token without blanks that the test
makes unique per record produced (e.g. `c3-000123`). A consumer's records are read back as
`Position`s with the same fields, and `check(acks, consumed)` sorts every difference into:

* lost: acknowledged, never read back;
* misplaced: acknowledged at one offset, read back at another (or in another partition), or
  an acknowledged offset that holds another payload;
* duplicated: one payload read back at more than one position (a producer's retry of a
  batch whose acknowledgement was lost; not a loss, but counted);
* unacknowledged: read back but never acknowledged (a batch whose acknowledgement was lost;
  harmless, reported as a count).

Invariants of the input: payloads are unique per record produced; a producer writes a line
only after its delivery report said success.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple


class Position(NamedTuple):
    """One record: where it is (partition, offset None = not known) and which payload it carries."""

    topic: str
    partition: int | None
    offset: int | None
    payload: str

    @property
    def place(self) -> tuple[str, int | None, int | None]:
        return self.topic, self.partition, self.offset


class AckWriter:
    """Appends acknowledged records to an acknowledgement log (one line each, as above)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = open(self.path, "a", encoding="ascii")
        self.count = 0

    def ack(self, topic: str, partition: int | None, offset: int | None, payload: str) -> None:
        self._file.write(f"{topic} {_field(partition)} {_field(offset)} {payload}\n")
        self.count += 1

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "AckWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _field(number: int | None) -> str:
    return "-" if number is None else str(number)


def _number(text: str) -> int | None:
    return None if text == "-" else int(text)


def read_acks(*paths: str | Path) -> Iterator[Position]:
    """Every acknowledgement in these logs; a line that is not four fields raises ValueError
    (a torn log is a bug in the test, not something to skip)."""
    for path in paths:
        with open(path, encoding="ascii") as f:
            for number, line in enumerate(f, 1):
                fields = line.split()
                if len(fields) != 4:
                    raise ValueError(f"{path}:{number}: not 'TOPIC PARTITION OFFSET PAYLOAD': {line!r}")
                topic, partition, offset, payload = fields
                yield Position(topic, _number(partition), _number(offset), payload)


@dataclass
class Verdict:
    """The differences `check` found; `clean` when nothing was lost, misplaced or duplicated."""

    acked: int = 0
    consumed: int = 0
    lost: list[Position] = field(default_factory=list)
    misplaced: list[tuple[Position, str]] = field(default_factory=list)  # (ack, what was found)
    duplicated: dict[str, list[tuple]] = field(default_factory=dict)
    unacknowledged: int = 0

    @property
    def clean(self) -> bool:
        return not (self.lost or self.misplaced or self.duplicated)

    def summary(self, examples: int = 5) -> str:
        """One paragraph: the counts, then the first few cases of each kind."""
        parts = [f"{self.acked} acknowledged, {self.consumed} consumed: {len(self.lost)} lost, "
                 f"{len(self.misplaced)} misplaced, {len(self.duplicated)} duplicated, "
                 f"{self.unacknowledged} consumed without acknowledgement"]
        if self.lost:
            parts.append("lost: " + ", ".join(_show(p) for p in self.lost[:examples]))
        if self.misplaced:
            parts.append("misplaced: " + ", ".join(f"{_show(a)} but {found}" for a, found in self.misplaced[:examples]))
        if self.duplicated:
            parts.append("duplicated: " + ", ".join(f"{payload} at {places}" for payload, places
                                                    in list(self.duplicated.items())[:examples]))
        return "; ".join(parts)


def _show(position: Position) -> str:
    return f"{position.payload} acked at {_where(position.place)}"


def _where(place: tuple) -> str:
    topic, partition, offset = place
    return f"{topic}/{'?' if partition is None else partition}@{'?' if offset is None else offset}"


def check(acks: Iterable[Position], consumed: Iterable[Position]) -> Verdict:
    """Compare acknowledged records with the records read back (see the module docstring).
    Consumed records must carry their partition and offset."""
    verdict = Verdict()
    where: dict[str, tuple] = {}  # payload -> its first position read back
    at: dict[tuple, str] = {}  # position -> the payload read there
    for record in consumed:
        verdict.consumed += 1
        if record.payload in where:
            verdict.duplicated.setdefault(record.payload, [where[record.payload]]).append(record.place)
        else:
            where[record.payload] = record.place
        at[record.place] = record.payload
    acked: set[str] = set()
    for ack in acks:
        verdict.acked += 1
        acked.add(ack.payload)
        found = where.get(ack.payload)
        if ack.offset is not None and ack.partition is not None:
            holder = at.get(ack.place)
            if holder == ack.payload:
                continue
            if holder is not None:
                verdict.misplaced.append((ack, f"that offset holds {holder}"))
                continue
        if found is None:
            verdict.lost.append(ack)
        elif found[0] != ack.topic or ack.partition not in (None, found[1]) or None not in ack.place:
            verdict.misplaced.append((ack, f"read back at {_where(found)}"))
    verdict.unacknowledged = sum(1 for payload in where if payload not in acked)
    return verdict
