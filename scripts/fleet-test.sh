#!/usr/bin/env bash
# Fleet tests: bring the test fleet up (scripts/fleet.sh), run tests/fleet against
# it over SSH with load through its load balancer, and always tear everything
# down again: load, fleet containers, SSH masters; then check nothing is left.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export LOAD_INVENTORY=inventories/fleet LOAD_STATE_DIR=.fleet/load

cleanup() {
  rc=$?
  scripts/load.sh stop || true
  scripts/fleet.sh down || rc=1
  scripts/check_fleet_leftovers.sh || rc=1
  exit $rc
}
trap cleanup EXIT

scripts/fleet.sh down
rm -f .fleet/report.json .fleet/report.html
scripts/fleet.sh up
pytest -q -p no:cacheprovider --durations=20 tests/fleet "$@"
