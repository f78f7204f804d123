"""write_all: a bounded consumer's records written to the sink, large chunks decoded and rendered
by worker processes (workers/render.py) and written in fetch order."""

from __future__ import annotations

import click

from ..workers.render import RenderWorkers, default_workers
from .output import IDLE_CHECK_S

__all__ = ["write_all"]


def write_all(consumer, sink) -> None:
    """Write everything `consumer` returns through `sink` (which has no limit), using
    default_workers() workers for large chunks; ends when the consumer is finished."""
    try:
        workers = default_workers()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    with RenderWorkers(sink, workers) as pool:
        pool.workers.start()  # they get ready while the first records are fetched
        while not consumer.finished:
            chunks = consumer.poll_undecoded(0.0 if pool.pending else IDLE_CHECK_S)
            for chunk in chunks:
                pool.put(chunk)
            if not chunks:
                if pool.pending:
                    pool.write_oldest_or_wait(consumer.waiting_fds(), IDLE_CHECK_S)
                else:
                    sink.check_reader()
        pool.drain()
