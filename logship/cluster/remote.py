"""The command lines `logship cluster` runs on a broker's host, and how their output reads.

Everything runs as `sh -c SCRIPT sh ARG...` built with `shlex.join`: the scripts below are
fixed text, and every value (paths, ids, the remote logship command) travels as a
positional argument, never pasted into shell code. Secrets and file contents go on stdin.

Files in a broker's data directory DATA (what the scripts rely on):
    DATA/serve.pid        the pid of `logship serve`, written by `start`
    DATA/logs/serve.log   its stdout and stderr, appended to
    DATA/cluster.toml     the cluster file; DATA/cluster.secret the shared secret (0600)

A pid is believed only if /proc/PID/cmdline has a word containing "logship", the word
"serve" and "--broker-id" followed by the broker's id (a reused pid is not ours). Process
states follow Hadoop's daemon scripts: `up PID`, `dead PID` (a pid file, no such process:
stale) and `stopped` (no pid file).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

__all__ = ["PID_FILE", "LOG_FILE", "ProcessState", "sh", "version_command", "parse_version", "status_command",
           "parse_state", "stop_command", "start_command", "wait_command", "write_file_command",
           "read_file_command"]

PID_FILE = "serve.pid"
LOG_FILE = "logs/serve.log"

#: `ours PID`: exit 0 if PID is a live `logship serve --broker-id $ID` (not a zombie: its
#: cmdline would be empty).
_OURS = r"""
ours() {
    [ -r "/proc/$1/cmdline" ] || return 1
    tr '\000' '\n' < "/proc/$1/cmdline" | awk -v id="$ID" '
        /logship/ { l = 1 } $0 == "serve" { s = 1 } prev == "--broker-id" && $0 == id { b = 1 } { prev = $0 }
        END { exit !(l && s && b) }'
}
read_pid() {
    [ -f "$PIDFILE" ] || return 1
    PID=$(cat "$PIDFILE" 2>/dev/null)
    case "$PID" in ''|*[!0-9]*) PID=0 ;; esac
}
"""

_STATUS = _OURS + r"""
DATA=$1 ID=$2 PIDFILE=$1/serve.pid
if ! read_pid; then echo stopped; elif ours "$PID"; then echo "up $PID"; else echo "dead $PID"; fi
"""

_STOP = _OURS + r"""
DATA=$1 ID=$2 PIDFILE=$1/serve.pid TENTHS=$3
if ! read_pid; then echo stopped; exit 0; fi
if ! ours "$PID"; then rm -f "$PIDFILE"; echo "stale $PID"; exit 0; fi
kill -TERM "$PID" 2>/dev/null
i=0
while ours "$PID" && [ "$i" -lt "$TENTHS" ]; do sleep 0.1; i=$((i + 1)); done
if ours "$PID"; then
    kill -KILL "$PID" 2>/dev/null
    i=0
    while ours "$PID" && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    rm -f "$PIDFILE"
    echo "killed $PID"
else
    rm -f "$PIDFILE"
    echo "terminated $PID"
fi
"""

#: Start detached (new session, all three streams redirected, so the SSH channel closes at
#: once and the process outlives it); prints the log's size before starting and the pid.
_START = _OURS + r"""
DATA=$1 ID=$2 PIDFILE=$1/serve.pid LOG=$1/logs/serve.log
shift 2
if read_pid && ours "$PID"; then echo "running $PID"; exit 0; fi
mkdir -p "$DATA/logs" || exit 1
SIZE=$(stat -c %s "$LOG" 2>/dev/null || echo 0)
cd "$DATA" || exit 1
setsid nohup "$@" serve --cluster "$DATA/cluster.toml" --broker-id "$ID" >> "$LOG" 2>&1 < /dev/null &
PID=$!
echo "$PID" > "$PIDFILE.tmp" && mv -f "$PIDFILE.tmp" "$PIDFILE"
echo "started $PID $SIZE"
"""

#: Wait (up to $4 tenths of a second) for a `logship: listening on` line in the log after
#: byte $3; prints `ready LINE`, or `died`/`timeout` and the new part's last 20 lines.
_WAIT = _OURS + r"""
DATA=$1 ID=$2 PIDFILE=$1/serve.pid LOG=$1/logs/serve.log FROM=$(($3 + 1)) TENTHS=$4 PID=$5
i=0
while :; do
    LINE=$(tail -c "+$FROM" "$LOG" 2>/dev/null | grep -m 1 'logship: listening on')
    if [ -n "$LINE" ]; then echo "ready $LINE"; exit 0; fi
    if ! ours "$PID"; then
        LINE=$(tail -c "+$FROM" "$LOG" 2>/dev/null | grep -m 1 'logship: listening on')
        if [ -n "$LINE" ]; then echo "ready $LINE"; exit 0; fi
        echo died; break
    fi
    if [ "$i" -ge "$TENTHS" ]; then echo timeout; break; fi
    sleep 0.1; i=$((i + 1))
done
tail -c "+$FROM" "$LOG" 2>/dev/null | tail -n 20
"""

#: Write stdin to $1 atomically (a temporary file beside it, then mv), with umask $2.
_WRITE = r"""
umask "$2"
mkdir -p "$(dirname "$1")" && cat > "$1.tmp.$$" && mv -f "$1.tmp.$$" "$1"
"""

_READ = r"""
if [ -f "$1" ]; then echo present; cat "$1"; else echo absent; fi
"""


def sh(script: str, *args: str | int) -> str:
    """The command line that runs `script` with `args` as $1.. (all quoted)."""
    return shlex.join(["sh", "-c", script, "sh", *map(str, args)])


def version_command(logship: list[str]) -> str:
    return shlex.join([*logship, "--version"])


def parse_version(output: str) -> str | None:
    """The version in `logship, version 0.1.0` (click's --version line); None if absent."""
    for line in output.splitlines():
        if "version" in line and line.split():
            return line.split()[-1]
    return None


@dataclass(frozen=True)
class ProcessState:
    """A broker's process on its host: "up", "dead" (stale pid file) or "stopped"."""

    state: str
    pid: int | None = None


def status_command(data_dir: str, broker_id: int) -> str:
    return sh(_STATUS, data_dir, broker_id)


def parse_state(output: str) -> ProcessState:
    words = output.split()
    if words and words[0] in ("up", "dead") and len(words) == 2 and words[1].isdigit():
        return ProcessState(words[0], int(words[1]) or None)
    if words == ["stopped"]:
        return ProcessState("stopped")
    raise ValueError(f"unexpected status output {output.strip()[:200]!r}")


def stop_command(data_dir: str, broker_id: int, timeout_s: float) -> str:
    return sh(_STOP, data_dir, broker_id, max(1, round(timeout_s * 10)))


def start_command(data_dir: str, broker_id: int, logship: list[str]) -> str:
    return sh(_START, data_dir, broker_id, *logship)


def wait_command(data_dir: str, broker_id: int, log_offset: int, timeout_s: float, pid: int) -> str:
    return sh(_WAIT, data_dir, broker_id, log_offset, max(1, round(timeout_s * 10)), pid)


def write_file_command(path: str, umask: str = "022") -> str:
    return sh(_WRITE, path, umask)


def read_file_command(path: str) -> str:
    return sh(_READ, path)
