#!/usr/bin/env bash
# Run a command against a throw-away broker: with-broker.sh COMMAND [ARGS...]
# Starts `logship serve` on a free loopback port with a temporary data directory, exports
# LOGSHIP_BROKERS for the command, and removes everything when the command ends.
set -euo pipefail
logship="${LOGSHIP:-logship}"
work="$(mktemp -d)"
$logship serve --data-dir "$work/data" --listen 127.0.0.1:0 2>"$work/serve.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$work"' EXIT
until grep -q '^logship: listening on ' "$work/serve.log"; do
    kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
    sleep 0.1
done
export LOGSHIP_BROKERS="$(sed -n 's/^logship: listening on //p' "$work/serve.log")"
export LOGSHIP_DATA_DIR="$work/data"
"$@"
