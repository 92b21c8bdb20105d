#!/usr/bin/env bash
# The EE tier (issue 18): build or reuse the execution environment (make ee), bring up the EE
# tier's own fleet (name `ee`, .fleet/ee, 127.0.0.200-204, beside any other fleet), run tests/ee:
# jobs through ansible-runner in the EE as AWX runs them. Always tears its fleet down and checks
# nothing of it is left; never touches another fleet's containers.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export COHORT_FLEET_NAME=ee COHORT_FLEET_DIR=$PWD/.fleet/ee
export COHORT_FLEET_INVENTORY=$COHORT_FLEET_DIR/inventory

leftovers() {
  local left=0 names socks listen
  names=$(CONTAINERS_CONF=$COHORT_FLEET_DIR/containers.conf podman ps -a \
    --filter "label=cohort.rollout.fleet=$COHORT_FLEET_NAME" --format '{{.Names}}' 2>/dev/null || true)
  if [ -n "$names" ]; then echo "leftover: EE tier's fleet containers: $names"; left=1; fi
  socks=$(find -L "$COHORT_FLEET_DIR" -type s 2>/dev/null)
  if [ -n "$socks" ]; then echo "leftover: SSH control sockets: $socks"; left=1; fi
  listen=$(ss -Hltn | awk '{print $4}' | grep -E '^127\.0\.0\.(2[0-2][0-9]|230):' || true)
  if [ -n "$listen" ]; then echo "leftover: listening on the EE tier's addresses: $listen"; left=1; fi
  [ $left -eq 0 ] && echo "no EE tier leftovers: no container, SSH socket or listener on 127.0.0.200-230"
  return $left
}

cleanup() {
  rc=$?
  LOAD_INVENTORY=$COHORT_FLEET_INVENTORY LOAD_STATE_DIR=$COHORT_FLEET_DIR/load scripts/load.sh stop || true
  scripts/fleet.sh down || rc=1
  leftovers || rc=1
  exit $rc
}
trap cleanup EXIT

t0=$SECONDS
scripts/ee.sh build
echo "ee-test: EE ready in $((SECONDS - t0)) s"
mkdir -p "$COHORT_FLEET_DIR"
python bench/ee_support.py inventory >/dev/null
scripts/fleet.sh down
rm -f "$COHORT_FLEET_DIR/report.json"
scripts/fleet.sh up
pytest -q -p no:cacheprovider tests/ee "$@"
