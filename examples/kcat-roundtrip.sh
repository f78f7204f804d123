#!/usr/bin/env bash
# kcat and logship side by side: produce five lines with kcat, read them back with kcat,
# then look at the segment file they landed in.
# Run: examples/with-broker.sh examples/kcat-roundtrip.sh   (needs kcat)
set -euo pipefail
logship="${LOGSHIP:-logship}"
seq 1 5 | kcat -P -b "$LOGSHIP_BROKERS" -t demo -z zstd
kcat -C -b "$LOGSHIP_BROKERS" -t demo -e -q
$logship dump "$LOGSHIP_DATA_DIR/demo-0/00000000000000000000.log" --records
