#!/usr/bin/env bash
# Run every benchmark of bench/ (make bench; the sandbox is up). Each prints its
# numbers; docs/performance.md records them with the command. Not part of
# `make test`: timings belong in benchmarks, not in tests that flake.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
py=.venv/bin/python
rc=0
run() { echo "=== $*"; "$@" || { echo "benchmark failed: $*" >&2; rc=1; }; }
run $py bench/analyzer_bench.py
run $py bench/daemon_bench.py
run $py bench/gate_bench.py
run $py bench/cache_warm_bench.py
run $py bench/weight_math_bench.py --repeat 15
run $py bench/report_html_bench.py
scripts/load.sh start
run $py bench/traffic_bench.py
run bash bench/sandbox_load.sh
run $py bench/rollback_bench.py
run $py bench/status_bench.py
scripts/load.sh stop
exit $rc
