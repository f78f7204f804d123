"""Run one job per broker, each in its own thread, and collect what each gave.

`for_each_broker(specs, job)` calls `job(spec)` for every broker concurrently and returns
`Outcome`s in the cluster file's order: the job's value, or the LogshipError (or any other
exception) it raised. A job is expected to bound its own time (every SSH call has a
deadline), so joining the threads cannot hang longer than the slowest job.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

from ..cluster_file import BrokerSpec

__all__ = ["Outcome", "for_each_broker"]


@dataclass
class Outcome:
    spec: BrokerSpec
    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def for_each_broker(specs, job: Callable[[BrokerSpec], Any]) -> list[Outcome]:
    outcomes = [Outcome(spec) for spec in specs]

    def run(outcome: Outcome) -> None:
        try:
            outcome.value = job(outcome.spec)
        except BaseException as exc:  # noqa: BLE001 - reported per broker by the caller
            outcome.error = exc

    threads = [threading.Thread(target=run, args=(o,), name=f"broker {o.spec.id}", daemon=True) for o in outcomes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes
