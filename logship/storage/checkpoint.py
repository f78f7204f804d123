"""Small text files replaced atomically, in Apache Kafka's checkpoint formats.

Atomic replace: write `<name>.tmp`, fsync it, rename it over `<name>`, fsync the directory.
A reader therefore sees the old file or the new one, never a mix, even after a power cut. A
write that fails (a full disk) removes its `.tmp` and leaves the old file as it was.

Offset checkpoints (`recovery-point-offset-checkpoint`, `log-start-offset-checkpoint`):

    0                      version
    2                      number of entries
    orders 0 1042          topic partition offset
    orders 1 977

Leader-epoch checkpoint (`leader-epoch-checkpoint`, one per partition directory):

    0                      version
    2                      number of entries
    0 0                    epoch startOffset
    3 1520
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

VERSION = 0


class MalformedCheckpoint(ValueError):
    """A checkpoint file that does not follow its format."""


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory, making creations, renames and deletions inside it durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, text: str, durable: bool = True) -> None:
    """Replace `path` with `text` atomically and durably (temp file, fsync, rename, fsync dir);
    with durable=False without the two fsyncs (atomic, but a crash may lose it or empty it)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            data = text.encode()
            while data:
                data = data[os.write(fd, data):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk gets its space back; the old file stays as it was
        raise
    if durable:
        fsync_dir(path.parent)


def _read_lines(path: Path, fields: int) -> list[list[str]]:
    lines = path.read_text().splitlines()
    if len(lines) < 2 or lines[0].strip() != str(VERSION):
        raise MalformedCheckpoint(f"{path}: expected version {VERSION} and an entry count")
    try:
        count = int(lines[1])
    except ValueError:
        raise MalformedCheckpoint(f"{path}: bad entry count {lines[1]!r}") from None
    rows = [line.split() for line in lines[2:] if line.strip()]
    if count != len(rows) or any(len(row) != fields for row in rows):
        raise MalformedCheckpoint(f"{path}: {count} entries announced, {len(rows)} well-formed lines found")
    return rows


def read_offsets(path: str | os.PathLike) -> dict[tuple[str, int], int]:
    """{(topic, partition): offset}; {} when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        return {(t, int(p)): int(o) for t, p, o in _read_lines(path, 3)}
    except ValueError as exc:
        raise MalformedCheckpoint(f"{path}: {exc}") from None


def write_offsets(path: str | os.PathLike, offsets: Mapping[tuple[str, int], int]) -> None:
    rows = [f"{topic} {partition} {offset}" for (topic, partition), offset in sorted(offsets.items())]
    write_atomic(path, "\n".join([str(VERSION), str(len(rows)), *rows]) + "\n")


def read_epochs(path: str | os.PathLike) -> list[tuple[int, int]]:
    """[(epoch, start_offset)] in file order; [] when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        return [(int(e), int(o)) for e, o in _read_lines(path, 2)]
    except ValueError as exc:
        raise MalformedCheckpoint(f"{path}: {exc}") from None


def write_epochs(path: str | os.PathLike, entries: Iterable[tuple[int, int]], durable: bool = True) -> None:
    rows = [f"{epoch} {offset}" for epoch, offset in entries]
    write_atomic(path, "\n".join([str(VERSION), str(len(rows)), *rows]) + "\n", durable)
