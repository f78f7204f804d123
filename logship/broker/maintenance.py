"""The broker's periodic jobs: retention, checkpoints (recovery points and log start offsets)
and log compaction, each on its own interval.

The jobs are independent: each runs in a worker thread (the store is thread-safe; compaction
holds a partition's lock only to swap segments), and one that raises (a full disk, a bug)
does not stop the others. A failure is one log line with its reason (the traceback only at
debug level), at most once per job and LOG_EVERY_S unless the reason changes; the job runs
again at its next interval, and when it succeeds again one line says so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import LogshipError
from ..storage import Store
from .config import BrokerConfig

log = logging.getLogger("logship.broker")

#: A job that keeps failing for the same reason says so at most this often (or once per its
#: interval, if that is longer).
LOG_EVERY_S = 10.0


class FailureLog:
    """Logs the failures of something that runs again and again (a job, a timer): one line
    when the reason changes, else at most once per `every_s`; one line when it works again."""

    def __init__(self, name: str, retry: str, every_s: float = LOG_EVERY_S):
        self.name, self.retry, self.every_s = name, retry, every_s
        self.failures = 0  # in a row
        self._logged_reason = ""
        self._logged_at = float("-inf")

    def failed(self, exc: BaseException, now: float) -> None:
        self.failures += 1
        why = reason(exc)
        if why != self._logged_reason or now - self._logged_at >= self.every_s:
            again = f" ({self.failures} times in a row)" if self.failures > 1 else ""
            log.error("%s failed%s: %s; %s", self.name, again, why, self.retry)
            self._logged_reason, self._logged_at = why, now
        log.debug("%s failed", self.name, exc_info=exc)

    def succeeded(self) -> None:
        if self.failures:
            log.info("%s works again, after %d failed attempt(s)", self.name, self.failures)
        self.failures = 0
        self._logged_reason = ""


@dataclass
class Job:
    """One periodic job: `run` is blocking and called in a worker thread every `interval_s`."""

    name: str
    interval_s: float
    run: Callable[[], None]
    next_at: float = 0.0

    def __post_init__(self) -> None:
        self.failures = FailureLog(self.name, f"retrying every {self.interval_s:g} s",
                                   max(LOG_EVERY_S, self.interval_s))

    async def run_once(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            await loop.run_in_executor(None, self.run)
        except Exception as exc:  # noqa: BLE001 - a job must survive anything; the reason is logged
            self.failures.failed(exc, loop.time())
        else:
            self.failures.succeeded()
        finally:
            self.next_at = loop.time() + self.interval_s


def reason(exc: BaseException) -> str:
    """One line saying why `exc` happened, for people (no traceback)."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    if isinstance(exc, LogshipError) and str(exc):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def jobs(store: Store, config: BrokerConfig, now: float) -> list[Job]:
    """The broker's jobs; retention first runs at once, the others one interval from `now`."""
    return [Job("retention", config.retention_check_interval_s, lambda: _retention(store), now),
            Job("checkpoint", config.checkpoint_interval_s, store.checkpoint, now + config.checkpoint_interval_s),
            Job("log compaction", config.compaction_check_interval_s, lambda: _compaction(store),
                now + config.compaction_check_interval_s),
            Job("producer expiry", config.retention_check_interval_s,
                lambda: _expire_producers(store, config.producer_id_expiration_ms), now)]


async def maintain(store: Store, config: BrokerConfig) -> None:
    """Run the periodic jobs until cancelled."""
    loop = asyncio.get_running_loop()
    pending = jobs(store, config, loop.time())
    while True:
        for job in pending:
            if loop.time() >= job.next_at:
                await job.run_once(loop)
        await asyncio.sleep(max(0.0, min(job.next_at for job in pending) - loop.time()))


def _retention(store: Store) -> None:
    deleted = store.enforce_retention()
    if deleted:
        log.info("retention deleted %d segment(s)", deleted)


def _expire_producers(store: Store, expiration_ms: int) -> None:
    forgotten = store.expire_producers(expiration_ms)
    if forgotten:
        log.info("forgot %d idempotent producer(s) silent for %d ms (producer.id.expiration.ms)",
                 forgotten, expiration_ms)


def _compaction(store: Store) -> None:
    for result in store.compact():
        log.info("compacted %d segment(s) of %d bytes into %d of %d bytes", result.segments_before,
                 result.bytes_before, result.segments_after, result.bytes_after)
