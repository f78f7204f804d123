"""`AgentMetrics`: the agent's figures for Prometheus (`logship agent --metrics`), in a
registry of its own, served by metrics_endpoint.MetricsEndpoint.

Counted by the agent's loop once per chunk of lines read and once per batch acknowledged,
never per line (`input` is the input's first path glob, `topic` its topic):

    logship_agent_lines_read_total{input,topic}, logship_agent_bytes_read_total{input,topic}
    logship_agent_lines_shipped_total{input,topic}, logship_agent_bytes_shipped_total{input,topic}
        (acknowledged by the broker with acks=all; bytes are the lines' bytes)

Read when Prometheus scrapes, from what the loop hands over (`publish`, at most once a
second: the HTTP thread never touches the loop's state):

    logship_agent_bytes_behind{path}     file size minus the acknowledged offset, per file tailed
    logship_agent_files                  files tailed
    logship_agent_pending_batches        batches sent and not acknowledged yet
    logship_agent_retries_total, logship_agent_records_rejected_total,
    logship_agent_lines_truncated_total, logship_agent_bytes_skipped_total   (the Counters)
    logship_agent_checkpoint_age_seconds  since the checkpoints were last written durably (0 while
                                         nothing acknowledged waits to be written: an idle agent)
    process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds...
"""

from __future__ import annotations

import threading
import time

from prometheus_client import CollectorRegistry, Counter, ProcessCollector, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

__all__ = ["AgentMetrics"]


class AgentMetrics:
    def __init__(self) -> None:
        disable_created_metrics()
        self.registry = CollectorRegistry()
        r = self.registry
        labels = ["input", "topic"]
        self.lines_read = Counter("logship_agent_lines_read", "Lines read from files.", labels, registry=r)
        self.bytes_read = Counter("logship_agent_bytes_read", "Bytes of the lines read from files.", labels,
                                  registry=r)
        self.lines_shipped = Counter("logship_agent_lines_shipped", "Lines acknowledged by the broker.", labels,
                                     registry=r)
        self.bytes_shipped = Counter("logship_agent_bytes_shipped", "Bytes of the lines acknowledged by the broker.",
                                     labels, registry=r)
        ProcessCollector(registry=r)
        r.register(_Published(self))
        self._lock = threading.Lock()
        self._view: dict = {"files": [], "pending": 0, "counters": {}, "checkpoint_at": time.time()}
        self._children: dict[tuple[str, str], tuple] = {}
        self.published_at = 0.0

    def _of(self, label: str, topic: str) -> tuple:
        children = self._children.get((label, topic))
        if children is None:
            children = self._children[(label, topic)] = tuple(
                c.labels(label, topic) for c in (self.lines_read, self.bytes_read, self.lines_shipped,
                                                 self.bytes_shipped))
        return children

    def read(self, label: str, topic: str, lines: int, nbytes: int) -> None:
        children = self._of(label, topic)
        children[0].inc(lines)
        children[1].inc(nbytes)

    def shipped(self, origins: dict, topic: str) -> None:
        """A batch acknowledged: `origins` maps input label -> [lines, bytes] it holds."""
        for label, (lines, nbytes) in origins.items():
            children = self._of(label, topic)
            children[2].inc(lines)
            children[3].inc(nbytes)

    def publish(self, files: list[tuple[str, int]], pending: int, counters: dict, checkpoint_at: float) -> None:
        """The loop's view for the next scrapes: (path, bytes behind) per file, batches pending,
        the agent's Counters as a dict, when checkpoints were last written (time.time())."""
        with self._lock:
            self._view = {"files": files, "pending": pending, "counters": counters, "checkpoint_at": checkpoint_at}
        self.published_at = time.monotonic()


class _Published:
    def __init__(self, metrics: AgentMetrics):
        self.metrics = metrics

    def collect(self):
        with self.metrics._lock:
            view = self.metrics._view
        behind = GaugeMetricFamily("logship_agent_bytes_behind", "Bytes of a tailed file not acknowledged yet.",
                                   labels=["path"])
        for path, nbytes in view["files"]:
            behind.add_metric([path], nbytes)
        yield behind
        yield GaugeMetricFamily("logship_agent_files", "Files tailed.", value=len(view["files"]))
        yield GaugeMetricFamily("logship_agent_pending_batches", "Batches sent and not acknowledged yet.",
                                value=view["pending"])
        counters = view["counters"]
        for name, doc in (("retries", "Batches sent again after a failure."),
                          ("records_rejected", "Records the broker refused for good (dropped)."),
                          ("lines_truncated", "Lines cut at max_line_bytes."),
                          ("bytes_skipped", "Bytes that were never read (a file truncated or deleted first).")):
            yield CounterMetricFamily(f"logship_agent_{name}", doc, value=counters.get(name, 0))
        yield GaugeMetricFamily("logship_agent_checkpoint_age_seconds", "Seconds since the checkpoints were "
                                "last written.", value=max(time.time() - view["checkpoint_at"], 0.0))
