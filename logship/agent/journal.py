"""The agent's journal of batches in flight: what makes "every line exactly once" survive kill -9.

The broker de-duplicates a resent batch only if it is one of the last five it appended for that
producer and partition, and checkpoints.json is written lazily, so the journal keeps, durably,
each batch *before* it is sent and its acknowledgement after. Storage only: no network here.

Format (version 1). The state directory holds one live segment, `journal-<n>.log` (n: 20 digits,
growing); older numbers and `*.tmp` files are leftovers of an interrupted rotation and are deleted.
A segment is an 8-byte header, b"LSJOURN" + bytes([VERSION]), then entries:

    length u32 | crc32c(body) u32 | body         (big-endian; length = len(body) >= 5)
    body = kind u8 | meta_len u32 | meta (JSON, UTF-8) | payload

- SENT (1): meta {"t": topic, "p": partition, "pid", "epoch", "seq": base sequence, "n": records,
  "steps": [checkpoint entries (checkpoint.FileState.to_json) whose "offset" is the end the batch
  completes, one per file generation it holds lines of], "acked": bool}; payload: the batch's bytes
  exactly as sent (compressed, pid/epoch/seq in its header); empty when "acked" (a rewritten copy).
- ACKED (2): meta {"keys": [[t, p, pid, epoch, seq], ...]}: those SENT batches were acknowledged.
- SUPERSEDED (4): meta {"keys": [key], "by": n (default 1)}: that SENT batch was stamped again
  under a new producer id or epoch, or split as too large; the n SENT entries right after it, in
  the same write, take its place in order (the pieces of a split: the first under the same key,
  the last holding its steps, the others none). It is dropped, its steps NOT applied (they moved).
- PRODUCER (3): meta {"pid", "epoch", "next": [[t, p, seq], ...]}: the producer id in use and
  the next sequence of each partition; it ends a segment's rewritten part (after the copies of
  the live entries, which leave the sequences alone) and is written again on each new id or epoch.
  A SENT entry under that id and epoch moves its partition's next sequence forward, never back
  (a split's pieces are journaled after later batches, and are followed by them).

Invariants. A SENT entry is durable (written, fdatasynced) before its batch is sent; ACKED
entries share fdatasyncs (group commit: `append_acked` blocks until durable); the producer frees
an in-flight slot only once the ack is durable, so at most the last 5 batches per partition are
sent but not durably acked: exactly those the broker can still de-duplicate. Each segment is a
complete state: rotation (`checkpoint_durable`) writes the live entries (unacked SENT with their
bytes, acked ones not yet in a durable checkpoints.json without them) to `journal-<n+1>.log.tmp`,
fsyncs, renames, fsyncs the directory, then deletes the older segment; so the journal holds the
batches in flight plus at most one checkpoint interval of acked steps. Loading reads the newest
segment; a torn tail (an entry running past the end, or the last entry failing its CRC, or zeros
to the end) is cut off (and a SUPERSEDED whose n entries did not all survive it is undone); any other damage moves the segment aside (`.corrupt-<time>`) with one
warning, and the agent starts with a new producer id from checkpoints.json alone: lines may then
be shipped twice, never lost.

Wiring (shipper.py, agent.py): the producer's `on_stamped` journals each batch, with the
checkpoint steps it completes, before its first send (`append_stamped`: one write and one
fdatasync for the batches of a request, the pieces of a split batch together); its
`on_reported` journals the acknowledgements (`append_acked`, pieces' too) before the next batch
is picked. At a start, `load` and `restore_steps` give the batches to send again and the steps
they complete; files are read on from where those end. `mark_applied` / `checkpoint_taken` /
`checkpoint_durable` let the journal forget what a durable checkpoint covers.
Costs: unacked batches' bytes stay in memory (they do in the producer anyway) and are copied
at each rotation; acked entries keep only their steps.
What still allows a duplicate: the broker forgot the producer (the agent down longer than
producer.id.expiration.ms, or the partition's producer state lost): the resend gets
UNKNOWN_PRODUCER_ID, a new id, and is stored again; the journal lost with its disk, or moved
aside as corrupt (then lines read since the last checkpoint are shipped again); a batch still
unacked when the journal's fdatasync fails (the agent must stop: nothing more is journaled);
idempotence off (config idempotence = false).
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..client.sender import SEQUENCES
from ..crc import crc32c
from .checkpoint import FileState
from .identity import head_matches

__all__ = ["Journal", "Recovery", "SentEntry", "load", "remove", "restore_steps", "VERSION", "SENT", "ACKED", "PRODUCER", "SUPERSEDED"]

log = logging.getLogger("logship.agent")
VERSION = 1
HEADER = b"LSJOURN" + bytes([VERSION])
SENT, ACKED, PRODUCER, SUPERSEDED = 1, 2, 3, 4
_FRAME = struct.Struct(">II")
_META = struct.Struct(">BI")
_PREFIX, _SUFFIX = "journal-", ".log"


@dataclass(eq=False)
class SentEntry:
    """One batch: its key (topic, partition, pid, epoch, seq), records, steps and bytes."""

    topic: str
    partition: int
    pid: int
    epoch: int
    seq: int
    count: int
    steps: list[dict]
    data: bytes | None = None  # dropped once acked
    acked: bool = False

    @property
    def key(self) -> tuple:
        return self.topic, self.partition, self.pid, self.epoch, self.seq


@dataclass
class Recovery:
    """What a journal held: the producer ((pid, epoch) or None), next sequence per (topic,
    partition), and its live entries in journal order (per partition: sequence order)."""

    producer: tuple[int, int] | None = None
    next_sequences: dict = field(default_factory=dict)
    entries: list[SentEntry] = field(default_factory=list)
    segment: int = -1

    @property
    def acked(self) -> list[SentEntry]:
        return [e for e in self.entries if e.acked]

    @property
    def unacked(self) -> list[SentEntry]:
        return [e for e in self.entries if not e.acked]


def encode_entry(kind: int, meta: dict, payload: bytes = b"") -> bytes:
    raw = json.dumps(meta, separators=(",", ":")).encode()
    body = _META.pack(kind, len(raw)) + raw + payload
    return _FRAME.pack(len(body), crc32c(body)) + body


def _sent_meta(e: SentEntry) -> dict:
    return {"t": e.topic, "p": e.partition, "pid": e.pid, "epoch": e.epoch, "seq": e.seq, "n": e.count,
            "steps": e.steps, "acked": e.acked}


class _Corrupt(ValueError):
    pass


def _parse(data: bytes) -> tuple[list[tuple[int, dict, bytes]], int]:
    """(entries, length of the valid part); _Corrupt for damage that is not a torn tail."""
    if data[:len(HEADER)] != HEADER:
        if len(data) < len(HEADER) and HEADER.startswith(data):
            return [], 0
        raise _Corrupt(f"not a version {VERSION} journal segment")
    pos, out = len(HEADER), []
    while pos < len(data):
        if len(data) - pos < _FRAME.size or not data[pos:].strip(b"\0"):
            break  # torn header, or zeros to the end
        length, crc = _FRAME.unpack_from(data, pos)
        end = pos + _FRAME.size + length
        if end > len(data):
            break  # runs past the end: torn
        body = data[pos + _FRAME.size:end]
        if length < _META.size or crc32c(body) != crc:
            if end == len(data):
                break  # the last entry, torn
            raise _Corrupt(f"entry at byte {pos} fails its CRC")
        kind, meta_len = _META.unpack_from(body)
        try:
            meta = json.loads(body[_META.size:_META.size + meta_len])
        except ValueError as exc:
            raise _Corrupt(f"entry at byte {pos}: {exc}") from None
        out.append((kind, meta, body[_META.size + meta_len:]))
        pos = end
    return out, pos


def _segments(state_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for path in state_dir.glob(_PREFIX + "*" + _SUFFIX):
        number = path.name[len(_PREFIX):-len(_SUFFIX)]
        if number.isdigit():
            found.append((int(number), path))
    return sorted(found)


def load(state_dir: Path) -> Recovery:
    """The newest segment's state (older segments and temp files removed, a torn tail cut off);
    an empty Recovery if there is none or it is corrupt (then moved aside with a warning)."""
    for stray in state_dir.glob(_PREFIX + "*.tmp"):
        stray.unlink(missing_ok=True)
    segments = _segments(state_dir)
    for _, old in segments[:-1]:
        old.unlink(missing_ok=True)
    if not segments:
        return Recovery()
    number, path = segments[-1]
    data = path.read_bytes()
    rec = Recovery(segment=number)
    try:
        entries, valid = _parse(data)
        by_key: dict[tuple, SentEntry] = {}
        slot, by = None, 0  # where the entry a SUPERSEDED removed stood, and how many take it
        removed, placed = [], []  # that entry, and those that took its place so far
        for kind, meta, payload in entries:
            if kind == PRODUCER:
                pid = int(meta["pid"])
                rec.producer = (pid, int(meta["epoch"])) if pid >= 0 else None  # -1: no id yet
                rec.next_sequences = {(t, int(p)): int(s) for t, p, s in meta["next"]}
            elif kind == SENT:
                e = SentEntry(meta["t"], int(meta["p"]), int(meta["pid"]), int(meta["epoch"]), int(meta["seq"]),
                              int(meta["n"]), list(meta["steps"]), None if meta.get("acked") else payload,
                              bool(meta.get("acked")))
                by_key[e.key] = e
                if slot is not None and by:  # it replaces the batch superseded just before: in its place
                    rec.entries.insert(slot, e)
                    placed.append(e)
                    slot, by = slot + 1, by - 1
                else:
                    rec.entries.append(e)
                _move_next(rec.next_sequences, rec.producer, e)
            elif kind == ACKED:
                for key in meta["keys"]:
                    e = by_key.get(tuple(key))
                    if e is not None:
                        e.acked, e.data = True, None
            elif kind == SUPERSEDED:
                gone = {id(by_key.pop(tuple(key), None)) for key in meta["keys"]}
                at = [i for i, e in enumerate(rec.entries) if id(e) in gone]
                removed = [rec.entries[i] for i in at]
                rec.entries = [e for e in rec.entries if id(e) not in gone]
                slot, by, placed = (at[0] if at else None), int(meta.get("by", 1)), []
            else:
                raise _Corrupt(f"unknown entry kind {kind}")
        if slot is not None and by:  # a write torn by the kill: the batch goes on as it was
            rec.entries = [e for e in rec.entries if e not in placed]
            rec.entries[slot - len(placed):slot - len(placed)] = removed
    except (_Corrupt, KeyError, TypeError, ValueError) as exc:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        os.replace(path, aside)
        log.warning("journal %s is damaged (%s); moved it to %s: batches in flight are forgotten, so lines "
                    "may be shipped twice (never lost)", path, exc, aside.name)
        return Recovery(segment=number)
    if valid < len(data):
        with open(path, "r+b") as f:
            f.truncate(valid)
            os.fsync(f.fileno())
        log.info("journal %s: cut a torn tail of %d bytes", path.name, len(data) - valid)
    return rec


def _move_next(next_sequences: dict, producer: tuple | None, e: SentEntry) -> None:
    """The partition's next sequence after `e` (if under `producer`), never moved back."""
    if (e.pid, e.epoch) != producer:
        return
    key, after = (e.topic, e.partition), (e.seq + e.count) % SEQUENCES
    current = next_sequences.get(key)
    if current is None or (after - current) % SEQUENCES < SEQUENCES // 2:
        next_sequences[key] = after


def remove(state_dir: Path) -> int:
    """Delete the journal's files (idempotence turned off: the checkpoints alone say where
    to resume); how many there were."""
    found = [p for p in state_dir.glob(_PREFIX + "*") if p.is_file()]
    for path in found:
        path.unlink(missing_ok=True)
    return len(found)


def _fsync_dir(state_dir: Path) -> None:
    fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """The live journal. `append_sent` and `append_acked` may be called from any thread."""

    def __init__(self, state_dir: Path, recovery: Recovery | None = None, *,
                 fdatasync: Callable[[int], None] | None = None):
        rec = recovery or Recovery()
        self.state_dir = Path(state_dir)
        self.fdatasync = fdatasync or os.fdatasync
        self.producer = rec.producer
        self.next_sequences = dict(rec.next_sequences)
        self.live: dict[tuple, SentEntry] = {e.key: e for e in rec.entries}
        self.applied: set[tuple] = set()
        self._taken: dict[int, set] = {}  # checkpoint token -> keys its snapshot holds
        self._tokens = 0
        self.segment = rec.segment
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._written = self._synced = 0  # entries written / durable (counts)
        self._syncing = False
        self._fd = -1
        self._rotate()

    # --- appending ---------------------------------------------------------------------------

    def set_producer(self, pid: int, epoch: int, next_sequences: dict | None = None) -> None:
        """A new producer id or epoch (sequences restart unless `next_sequences`); durable on return."""
        with self._cond:
            self.producer = (pid, epoch)
            self.next_sequences = dict(next_sequences or {})
            self._write(self._producer_entry())
        self._wait_durable()

    def append_stamped(self, groups: list[tuple[tuple | None, list[SentEntry]]]) -> None:
        """Journal batches before they are sent, in one write, durable on return. Each group
        is (None, entries): new batches, after the others; or (old key, entries): the batch
        `old_key` goes again as `entries` in its place (a new producer id or epoch: one entry;
        split as too large: its pieces, the first under the same key)."""
        parts = []
        with self._cond:
            replace = {}
            for old_key, entries in groups:
                if old_key is not None and tuple(old_key) in self.live:
                    replace[tuple(old_key)] = entries
                    parts.append(encode_entry(SUPERSEDED, {"keys": [list(old_key)], "by": len(entries)}))
                else:  # new, or the old one is forgotten (then it was acked: nothing to take the place of)
                    for entry in entries:
                        self.live[entry.key] = entry
                parts += [encode_entry(SENT, _sent_meta(e), e.data or b"") for e in entries]
                for entry in entries:
                    _move_next(self.next_sequences, self.producer, entry)
            if replace:
                live = {}
                for k, e in self.live.items():
                    for new in replace.get(k, (e,)):
                        live[new.key] = new
                self.live = live
            self._write(b"".join(parts))
        self._wait_durable()

    def append_sent(self, *entries: SentEntry) -> None:
        """Journal new batches before they are sent: one write, durable on return."""
        self.append_stamped([(None, list(entries))])

    def append_restamped(self, old_key: tuple, *entries: SentEntry) -> None:
        """The batch `old_key` goes again as `entries`, in its place (see append_stamped)."""
        self.append_stamped([(old_key, list(entries))])

    def append_acked(self, keys: list[tuple]) -> None:
        """Journal acknowledgements; blocks until durable, sharing one fdatasync with the
        callers that wrote meanwhile (group commit)."""
        with self._cond:
            for key in keys:
                e = self.live.get(tuple(key))
                if e is not None:
                    e.acked, e.data = True, None
            self._write(encode_entry(ACKED, {"keys": [list(k) for k in keys]}))
        self._wait_durable()

    def _write(self, data: bytes) -> None:
        if self.error is not None:
            raise OSError(f"the journal failed earlier: {self.error}")
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:  # what was written may end mid-entry: nothing more may follow it
            self.error = exc
            raise
        self._written += 1

    def _wait_durable(self) -> None:
        with self._cond:
            target = self._written
            while self._synced < target:
                if self.error is not None:
                    raise OSError(f"the journal failed: {self.error}")
                if self._syncing:
                    self._cond.wait()
                    continue
                self._syncing, upto, fd = True, self._written, self._fd
                self._cond.release()
                try:
                    self.fdatasync(fd)
                except OSError as exc:
                    self.error = exc  # never retried: what was written may not be on disk
                finally:
                    self._cond.acquire()
                    self._syncing = False
                    if self.error is None:
                        self._synced = max(self._synced, upto)
                    self._cond.notify_all()

    # --- compaction ----------------------------------------------------------------------------

    def mark_applied(self, key: tuple) -> None:
        """The acked batch `key`'s steps are in the agent's checkpoint state (next snapshot)."""
        with self._cond:
            self.applied.add(tuple(key))

    def checkpoint_taken(self) -> int:
        """Call when a checkpoint snapshot is handed to the writer: a token for what it holds."""
        with self._cond:
            self._tokens += 1
            self._taken[self._tokens], self.applied = self.applied, set()
            return self._tokens

    def checkpoint_durable(self, token: int) -> None:
        """Snapshot `token` is durable, and with it every earlier one (the writer skips
        superseded snapshots): drop their entries and rotate into a compacted segment."""
        with self._cond:
            for n in [n for n in self._taken if n <= token]:
                for key in self._taken.pop(n):
                    e = self.live.get(key)
                    if e is not None and e.acked:
                        del self.live[key]
            while self._syncing:
                self._cond.wait()
            self._rotate()

    def _producer_entry(self) -> bytes:
        pid, epoch = self.producer or (-1, -1)
        return encode_entry(PRODUCER, {"pid": pid, "epoch": epoch,
                                       "next": [[t, p, s] for (t, p), s in sorted(self.next_sequences.items())]})

    def _rotate(self) -> None:
        """Write the live state to the next segment (temp file, fsync, rename, fsync the
        directory), switch to it and delete the older one. Caller holds the lock (or __init__)."""
        number = self.segment + 1
        path = self.state_dir / f"{_PREFIX}{number:020d}{_SUFFIX}"
        tmp = path.with_name(path.name + ".tmp")
        parts = [HEADER] + [encode_entry(SENT, _sent_meta(e), e.data or b"") for e in self.live.values()]
        parts.append(self._producer_entry())  # last: the copies before it leave the sequences alone
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(b"".join(parts))
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
            os.replace(tmp, path)
        except BaseException:
            os.close(fd)
            raise
        try:
            _fsync_dir(self.state_dir)
        except OSError as exc:  # the newer segment is in place, maybe not durably: write no more
            self.error = exc
            os.close(fd)
            raise
        old, self._fd, old_number, self.segment = self._fd, fd, self.segment, number
        self._synced = self._written
        if old >= 0:
            os.close(old)
        if old_number >= 0:
            (self.state_dir / f"{_PREFIX}{old_number:020d}{_SUFFIX}").unlink(missing_ok=True)

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def close(self) -> None:
        with self._cond:
            while self._syncing:
                self._cond.wait()
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _same_generation(a: FileState, b: FileState) -> bool:
    """Two checkpoint entries of the same file generation: same inode and the same fingerprint,
    or (fingerprints of different lengths, being progressive) a file at their paths still of
    that inode that begins with both."""
    if not a.id.same_inode(b.id):
        return False
    if a.fingerprint.length == b.fingerprint.length:
        return a.fingerprint == b.fingerprint
    for path in {a.path, b.path}:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == a.id.inode and head_matches(fd, a.fingerprint) \
                    and head_matches(fd, b.fingerprint):
                return True
        finally:
            os.close(fd)
    return False


def restore_steps(states: list[FileState], recovery: Recovery) -> dict[tuple, list]:
    """Merge the journal's steps into the checkpointed `states` (in place; generations the
    checkpoint lacks are appended): the steps of acked entries are applied now, those of
    unacked ones are added pending, in journal order; a step at or before its state's offset
    is already checkpointed and skipped. Returns {unacked key: [checkpoint.Progress]}: mark
    them acked and `advance()` their states once the resent batch is acknowledged."""
    plan: dict[tuple, list] = {}
    for entry in recovery.entries:
        progress = plan.setdefault(entry.key, []) if not entry.acked else None
        for step in entry.steps:
            found = FileState.from_json(step)
            state = next((s for s in states if _same_generation(s, found)), None)
            if state is None and found.fingerprint.complete:
                # a copytruncate moved the stream to the copy's inode between the step and the
                # checkpoint (or back): a complete fingerprint names it when only one state has it
                same = [s for s in states if s.fingerprint == found.fingerprint]
                state = same[0] if len(same) == 1 else None
            if state is None:
                found.offset, found.marker, found.marker_at = 0, None, -1
                states.append(found)
                state = found
            elif found.fingerprint.length > state.fingerprint.length:
                # the same generation, fingerprinted further since the checkpoint (progressive):
                # a short fingerprint with an offset moved on would match the inode's next content
                state.fingerprint = found.fingerprint
            end = int(step["offset"])
            if end <= state.resume_point[0]:
                continue
            p = state.add(end, acked=entry.acked, marker=step.get("marker") or None)
            if progress is not None:
                progress.append(p)
    return plan
