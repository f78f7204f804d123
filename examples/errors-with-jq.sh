#!/usr/bin/env bash
# JSON logs through jq: keep the error events of one topic and produce them, keys, headers
# and timestamps intact, into another.
# Run: examples/with-broker.sh examples/errors-with-jq.sh   (needs jq)
set -euo pipefail
logship="${LOGSHIP:-logship}"

for i in $(seq 1 20); do
    level=info; [ $((i % 5)) -eq 0 ] && level=error
    printf 'svc-%d:{"level":"%s","msg":"request %d"}\n' $((i % 3)) "$level" "$i"
done | $logship produce app-events -k :
printf 'svc-0:not JSON at all\n' | $logship produce app-events -k :   # skipped, not fatal

$logship consume app-events -e --json \
    | jq --unbuffered -c 'select(.value | objects | .level == "error")' \
    | $logship produce app-errors --json
$logship consume app-errors -e -f '%k %v\n'
