#!/usr/bin/env bash
# Ship an nginx access log and ask questions of it: requests per status code, and the
# last few server errors.
# Run: examples/with-broker.sh examples/nginx-access-log.sh [ACCESS_LOG]
set -euo pipefail
logship="${LOGSHIP:-logship}"
log="${1:-$(dirname "$0")/data/access.log}"

$logship produce web-logs "$log"
echo "requests by status:"
$logship consume web-logs -e | awk '{print $9}' | sort | uniq -c | sort -rn
echo "last server errors:"
$logship consume web-logs -e --grep '" 5[0-9][0-9] ' | tail -n 3
