#!/usr/bin/env bash
# Open-loop load through the sandbox load balancer; prints the loadgen summary (rate, statuses, p50/p90/p99/max).
# Usage: bench/sandbox_load.sh [extra loadgen options]   (env: LB, RATE, DURATION, JSON_OUT)
# The sandbox must be up (make sandbox). Warm the cache first for hit-rate numbers (the cache_warm module).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${ROOT}/.venv/bin/python"
LB="${LB:-http://127.0.0.1:18080}"
RATE="${RATE:-50}"
DURATION="${DURATION:-60}"
JSON_OUT="${JSON_OUT:-${ROOT}/.sandbox/bench/sandbox_load.json}"
mkdir -p "$(dirname "${JSON_OUT}")"
echo "loadgen -> ${LB} at ${RATE}/s for ${DURATION}s (summary JSON: ${JSON_OUT})"
exec "${PY}" -m cohort_analyzer loadgen --url "${LB}" --rate "${RATE}" --duration "${DURATION}" \
  --report-every 10 --json-out "${JSON_OUT}" "$@"
