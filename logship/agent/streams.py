"""Content streams no open file carries, and how a file found by a scan is recognised as one.

A file's content stream is a checkpoint.FileState. A stream that no open file carries is
`Detached`: checkpointed but not found (yet), *retired* because its file was truncated
or rewritten in place, or let go (closed). A file a scan finds may be one of them going
on; the functions here only look (pread and compare), fileset.py acts on the answer:

* `resumes_in`: the file is the checkpointed stream's very inode (same device, inode and
  generation), still beginning with its fingerprinted bytes, still as long as the resume
  point (the checkpointed offset, or the end of the journal's batches sent again), and with
  the marker of that point: reading resumes there.
* `continued_in`: the file is a copy of a detached stream (a copytruncate copy, a file
  moved or copied while the agent was stopped): its *complete* fingerprint and the marker
  of the stream's resume point both match. A short fingerprint never recognises a file by
  content alone (identity.py says why). For a retired stream this is logrotate's
  copytruncate (copy, then truncate): reading continues in the copy exactly where it
  stopped in the original, so the lines written between the agent's last read and the
  truncate are shipped from the copy and nothing is shipped twice.
* `copy_within`: the file is a copytruncate copy *shorter* than what was read of the
  stream (the application wrote on between logrotate's copy and its truncate, and the agent
  read those lines from the original first): a stream whose file was found truncated or
  rewritten within `copytruncate_wait` (while the agent ran, or at its start), with the same
  complete fingerprint and more bytes read than the file holds. Everything in it was read
  already: once the stream's acknowledged offset reaches the copy's end (the copy is held
  back until then), it is tailed from its end.
* `copy_of`, `copy_begun`: the file is probably the copy half of a copytruncate that has
  not happened yet, or is still being written: a copy of a tailed file seen before the
  truncate (its head and content match a file being tailed), or a file too short to
  fingerprint whose bytes begin a tailed file, or that appears while a truncated stream
  waits for its copy. The agent holds such a file back (does not open it as new) until
  the truncate happens or `copytruncate_wait` ends.

A retired stream waits `copytruncate_wait` (`expires`) for its copy; with no copy, what
the original held beyond the last read is counted in `bytes_skipped`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .checkpoint import FileState
from .identity import MARKER_BYTES, FileId, Fingerprint, digest, head_matches, read_marker
from .route import Route
from .tailer import LineReader

__all__ = ["Detached", "resumes_in", "continued_in", "copy_within", "copy_of", "copy_begun"]


@dataclass(eq=False)
class Detached:
    """A content stream no open file carries (see the module docstring)."""

    state: FileState
    resume: int                     # where reading goes on in a file that takes it over
    marker: str | None              # marker of `resume`
    since: float
    expires: float | None = None    # retired: give up on a copy then
    reader: LineReader | None = None
    route: Route | None = None
    seen_size: int = 0
    tail: bytes = b""
    idle: bool = False              # closed while inactive: reopened when its size changes
    copied: bool = False            # a shorter copy of it was found (copy_within): it matches no other


def resumes_in(d: Detached, fd: int, fid: FileId, st: os.stat_result, fp: Fingerprint) -> bool:
    """Whether the open file is the checkpointed (not retired) stream `d`, unchanged up to
    its offset."""
    state = d.state
    if d.reader is not None or not state.id.same_inode(fid) or fp.length < state.fingerprint.length \
            or not head_matches(fd, state.fingerprint):
        return False
    return d.resume <= st.st_size and (not d.resume or d.marker is None or read_marker(fd, d.resume) == d.marker)


def continued_in(detached: list[Detached], fd: int, st: os.stat_result, fp: Fingerprint) -> Detached | None:
    """The detached stream the open file is a copy of (complete fingerprint and the marker
    at the resume point both match), if any."""
    if not fp.complete:
        return None
    for d in detached:
        if d.state.fingerprint != fp or not d.resume or d.resume > st.st_size:
            continue
        if d.marker is None or read_marker(fd, d.resume) != d.marker:
            continue
        return d
    return None


def copy_within(detached: list[Detached], fid: FileId, st: os.stat_result, fp: Fingerprint) -> Detached | None:
    """The retired stream the open file is a copy of, shorter than what was read of it (see
    the module docstring), if any. Only a stream whose file was just found truncated or
    rewritten (waiting for its copy: `expires` set, while the agent ran or at its start) is
    looked at: another file with the same first KiB is then very unlikely to appear, while
    every line of a copytruncate's copy would otherwise be shipped again."""
    if not fp.complete:
        return None
    for d in detached:
        if d.expires is not None and not d.copied and d.state.fingerprint == fp and st.st_size < d.resume \
                and not d.state.id.same_inode(fid):  # a copy is another file: the same one was refilled
            return d
    return None


def copy_of(tailers, fd: int, st: os.stat_result, fp: Fingerprint) -> str | None:
    """The path of the tailed file (of `tailers`, tailer.Tailer objects) whose content the
    open file's is a prefix of, if any."""
    for tailer in tailers:
        if tailer.state.fingerprint != fp:
            continue
        position = tailer.position
        if st.st_size >= position:  # the copy holds what was read: compare the bytes before it
            tail = tailer.tail
            if os.pread(fd, len(tail), position - len(tail)) != tail:
                continue
        else:  # a copy still being written, or an older one: compare with the original
            start = max(0, st.st_size - MARKER_BYTES)
            original = os.pread(tailer.fd, st.st_size - start, start)
            # An original shorter than the copy was truncated since this scan looked at
            # it: the copy was just finished. Hold it; the next scan sees the truncation.
            if len(original) == st.st_size - start and os.pread(fd, st.st_size - start, start) != original:
                continue
        return tailer.path
    return None


def copy_begun(tailers, detached: list[Detached], fd: int, fp: Fingerprint) -> str | None:
    """For a file too short to fingerprint (under 1 KiB: logrotate may have only begun
    to copy): a tailed file it is the beginning of, or a truncated stream still waiting
    for its copy."""
    for tailer in tailers:
        if digest(os.pread(tailer.fd, fp.length, 0)) == fp.digest:
            return tailer.path
    for d in detached:
        if d.reader is not None and d.route is not None:
            return d.route.path
    return None
