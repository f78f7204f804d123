"""`logship consume TOPIC -g GROUP`: consume as a group member, committing what was written.

The loop keeps `written`: (topic, partition) -> the offset after the last record that
reached standard output. That, and only that, is committed: every second, and once more
when the command ends for any reason (end of -e, -c reached, SIGTERM, Ctrl-C, a closed
pipe). A rebalance inside poll commits the revoked partitions' positions itself (what poll
returned, all of which was written before the next poll), so partitions move to another
member exactly where this one stopped writing.

Into a pipe, "written" means accepted by the pipe: records a reader such as `head` never
read from the pipe's buffer count as consumed (as with kcat -G).
"""

from __future__ import annotations

import os
import signal
import threading
import time

import click

from . import ExitStatus
from .output import IDLE_CHECK_S
from .signals import handle_on_thread

COMMIT_INTERVAL_S = 1.0


def _report(group: str):
    def on_assign(assignment: dict[str, list[int]]) -> None:
        owned = "; ".join(f"{topic} partitions {','.join(map(str, parts))}" for topic, parts in assignment.items())
        click.echo(f"logship: group {group}: assigned {owned or 'nothing'}", err=True)

    return on_assign


def _cut_position(sink, chunk, before: int) -> int | None:
    """The offset after the last record of `chunk` that the sink wrote before its limit."""
    count = sink.written - before
    kept = sink.keep(list(chunk))[:count]
    return kept[-1].offset + 1 if kept else None


def consume_group(cluster, topic: str, group: str, start, exit_at_end: bool, session_timeout_ms: int, sink):
    from ..client.group_consumer import GroupConsumer

    cluster.client_id = f"logship-consume-{os.getpid()}"  # tells members apart in `groups describe`
    terminated = threading.Event()  # SIGTERM: stop at the next poll, commit, leave the group, exit 0
    restore = handle_on_thread({signal.SIGTERM: lambda signum: terminated.set()})
    consumer = None
    written: dict[tuple[str, int], int] = {}
    try:
        consumer = GroupConsumer(cluster, group, topic, start=start, stop_at_end=exit_at_end,
                                 session_timeout_ms=session_timeout_ms, on_assign=_report(group))
        last_commit = time.monotonic()
        while not consumer.finished and not terminated.is_set():
            chunks = consumer.poll_chunks(IDLE_CHECK_S)
            if not chunks:
                sink.check_reader()
            for chunk in chunks:
                before = sink.written
                if not sink.write_chunk(chunk):
                    cut = _cut_position(sink, chunk, before)
                    if cut is not None:
                        written[(chunk.topic, chunk.partition)] = cut
                    return ExitStatus.OK
                written[(chunk.topic, chunk.partition)] = chunk.next_offset
            if time.monotonic() - last_commit >= COMMIT_INTERVAL_S:
                consumer.commit(written)
                last_commit = time.monotonic()
        return ExitStatus.OK
    finally:
        try:
            if consumer is not None:
                try:
                    consumer.commit(written)
                except Exception as exc:  # noqa: BLE001 - report, then still leave the group
                    click.echo(f"logship: group {group}: the last offsets were not committed: {exc}", err=True)
                consumer.close()
        finally:
            restore()
