#!/usr/bin/env bash
# Start a throw-away broker, produce five lines with kcat, read them back, and look at the
# segment file they landed in. Needs kcat (Debian: apt-get install kcat).
set -euo pipefail
logship="${LOGSHIP:-logship}"
data="$(mktemp -d)"
log="$data/serve.log"
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$data"' EXIT

$logship serve --data-dir "$data/store" --listen 127.0.0.1:0 2>"$log" &
pid=$!
until grep -q '^logship: listening on ' "$log"; do sleep 0.1; done
address="$(sed -n 's/^logship: listening on //p' "$log")"

seq 1 5 | kcat -P -b "$address" -t demo -z zstd
kcat -C -b "$address" -t demo -e -q
$logship dump "$data/store/demo-0/00000000000000000000.log" --records
