#!/usr/bin/env bash
# Integration tests: bring the sandbox up, run a steady background load through
# the load balancer (as production would have), run tests/integration, and
# always bring everything down again.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
state=.sandbox
mkdir -p "$state"

cleanup() {
  rc=$?
  scripts/load.sh stop || true
  make --no-print-directory sandbox-down >"$state/sandbox-down.log" 2>&1 || {
    echo "sandbox-down failed, see $state/sandbox-down.log" >&2; rc=1; }
  scripts/check_leftovers.sh || rc=1
  exit $rc
}
trap cleanup EXIT

make --no-print-directory sandbox
scripts/load.sh start
pytest -q -p no:cacheprovider --durations=25 tests/integration "$@"
