"""Agent throughput: lines appended to files -> `logship agent` -> `logship serve`, side by
side in one run with `logship produce` and `kcat -P` sending the same lines.

    python bench/agent.py [--records 1000000] [--size 200] [--files 1]

Every run goes to its own topic of one throw-away broker, with acks=all and zstd:

* `logship produce TOPIC FILE` and `kcat -P -l FILE`: the file read in one go;
* the agent catching up on files written beforehand (pure agent throughput);
* the agent tailing files while a writer appends the lines as fast as it can, timed from
  the first append to the last line acknowledged (what `agent` costs a busy server);
* the catch-up again with `idempotence = false` (no journal: at-least-once) and with the
  default journal (exactly once), side by side: what the journal's writes and fdatasyncs cost.

An agent run is done when the broker holds every line (its end offset; the agent uses acks=all).
`logship produce` and kcat are timed as commands, their process start included.
Prints lines/s, MB/s (of line bytes) and the agent's CPU seconds. The lines look like web
server logs (bench/broker.py), so zstd works as it would in production.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from logship.cli.bench import log_lines  # noqa: E402
from logship.broker_process import BrokerProcess  # noqa: E402

from logship.client import Admin  # noqa: E402
from logship.errors import LogshipError  # noqa: E402

ENV = dict(os.environ, PYTHONPATH=str(ROOT))
_TICKS = os.sysconf("SC_CLK_TCK")


def report(label: str, lines: int, line_bytes: int, seconds: float, cpu: float | None = None) -> None:
    extra = f"   agent CPU {cpu:5.2f} s ({cpu / seconds:.0%} of one core)" if cpu is not None else ""
    print(f"{label:<46} {lines / seconds:>11,.0f} lines/s {line_bytes / seconds / 1e6:>7.1f} MB/s "
          f"{seconds:>6.2f} s{extra}", flush=True)


def timed(cmd: list[str], **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=ENV, **kwargs)
    return time.perf_counter() - start


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def records_in(admin, topic: str) -> int:
    """Records in `topic` on the broker (its end offsets), 0 before it exists."""
    try:
        return sum(admin.list_offsets(topic, "end").values())
    except LogshipError:
        return 0


def run_agent(tmp: Path, broker: str, topic: str, files: list[Path], data: list[bytes], append: bool,
              settings: str = "") -> tuple:
    """(seconds, agent CPU seconds) for the agent to get `data` into `files` acknowledged
    (`settings`: more lines of its config)."""
    logs = files[0].parent
    state = tmp / f"state-{topic}"
    config = tmp / f"{topic}.toml"
    config.write_text(f'brokers = "{broker}"\nstate_dir = "{state}"\n{settings}'
                      f'[[inputs]]\npaths = ["{logs}/*.log"]\ntopic = "{topic}"\n')
    lines = sum(chunk.count(b"\n") for chunk in data)
    admin = Admin(broker)
    staged = []
    if not append:  # written beforehand, outside the glob; moved in once the agent runs
        for path, chunk in zip(files, data):
            staged.append(path.with_suffix(".staged"))
            staged[-1].write_bytes(chunk)
    else:
        for path in files:
            path.touch()
    agent = subprocess.Popen([sys.executable, "-m", "logship", "agent", "--config", str(config),
                              "--log-level", "warning"], env=ENV)
    try:
        while not (state / "lock").exists():  # time the agent's work, not Python's start
            time.sleep(0.01)
        time.sleep(1.0)
        cpu_before = cpu_seconds(agent.pid)
        start = time.perf_counter()
        if append:  # the agent is tailing empty files; the writers start
            writers = [threading.Thread(target=_append, args=(path, chunk)) for path, chunk in zip(files, data)]
            for w in writers:
                w.start()
        else:
            for src, path in zip(staged, files):
                os.rename(src, path)
        while records_in(admin, topic) < lines:
            time.sleep(0.01)
        seconds = time.perf_counter() - start
        cpu = cpu_seconds(agent.pid) - cpu_before
    finally:
        agent.terminate()
        agent.wait(30)
        admin.close()
    for path in files:
        path.unlink()
    return seconds, cpu


def _append(path: Path, data: bytes, block: int = 64 * 1024) -> None:
    """Append like a busy application: many writes, each a run of whole lines."""
    with open(path, "ab", buffering=0) as f:
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            end = data.rfind(b"\n", pos, pos + block) + 1 or len(view)
            f.write(view[pos:end])
            pos = end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=200, help="bytes per line, newline excluded")
    parser.add_argument("--files", type=int, default=1, help="spread the lines over this many files")
    args = parser.parse_args()
    n, size, k = args.records, args.size, args.files
    text = log_lines(n, size)
    line_bytes = n * size
    per_file = -(-n // k)
    lines = text.splitlines(keepends=True)
    data = [b"".join(lines[i * per_file:(i + 1) * per_file]) for i in range(k)]

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = tmp / "lines.txt"
        source.write_bytes(text)
        logs = tmp / "logs"
        logs.mkdir()
        files = [logs / f"app-{i}.log" for i in range(k)]
        broker = BrokerProcess(tmp / "data").start()
        try:
            address = broker.address
            print(f"{n:,} lines of {size} bytes ({line_bytes / 1e6:.0f} MB of lines) in {k} file(s); "
                  f"acks=all, zstd, one broker, {os.cpu_count()} CPUs")
            seconds = timed([sys.executable, "-m", "logship", "produce", "-b", address, "bench-produce", str(source)])
            report("logship produce FILE", n, line_bytes, seconds)
            seconds = timed(["kcat", "-P", "-b", address, "-t", "bench-kcat", "-z", "zstd", "-X", "acks=all",
                             "-X", "linger.ms=5", "-X", "queue.buffering.max.messages=1000000", "-l", str(source)])
            report("kcat -P -l FILE", n, line_bytes, seconds)
            seconds, cpu = run_agent(tmp, address, "bench-agent-catchup", files, data, append=False)
            report("logship agent, files written beforehand", n, line_bytes, seconds, cpu)
            seconds, cpu = run_agent(tmp, address, "bench-agent-tail", files, data, append=True)
            report("logship agent, lines appended while tailing", n, line_bytes, seconds, cpu)
            # what exactly-once costs: the journal (idempotence on, the default) against none
            plain, plain_cpu = run_agent(tmp, address, "bench-agent-plain", files, data, append=False,
                                         settings="idempotence = false\n")
            report("logship agent, idempotence = false (no journal)", n, line_bytes, plain, plain_cpu)
            journaled, cpu = run_agent(tmp, address, "bench-agent-journal", files, data, append=False)
            report("logship agent, journal (exactly once), again", n, line_bytes, journaled, cpu)
            print(f"journal against none: {plain / journaled:.2f} (throughput ratio, >= 1 means no cost)")
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
