#!/usr/bin/env bash
# Run every Molecule scenario under molecule/ (one per role); fail if any fails.
# Each scenario converges its role on its own fleet hosts (scripts/fleet.sh, fleet
# name mol-<scenario>): `molecule test` destroys them at the end, even after a
# failure, and the trap below removes them if this script is interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
scenarios=()
for dir in molecule/*/; do
  [ -f "$dir/molecule.yml" ] && scenarios+=("$(basename "$dir")")
done

destroy_all() {
  local s
  for s in "${scenarios[@]}"; do
    COHORT_FLEET_NAME=mol-$s COHORT_FLEET_DIR=$PWD/.fleet/molecule-$s scripts/fleet.sh down >/dev/null 2>&1 || true
  done
}
trap destroy_all EXIT

failed=()
times=()
for scenario in "${scenarios[@]}"; do
  echo "=== molecule test -s $scenario"
  t0=$SECONDS
  if ! molecule test -s "$scenario"; then
    failed+=("$scenario")
  fi
  times+=("$scenario $((SECONDS - t0)) s")
done
printf 'molecule: %s\n' "${times[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "molecule: failed scenarios: ${failed[*]}" >&2
  exit 1
fi
echo "molecule: all scenarios passed"
