#!/usr/bin/env bash
# Run every Molecule scenario under molecule/ (one per role); fail if any fails.
# Each scenario converges its role on its own fleet hosts (scripts/fleet.sh, fleet
# name mol-<scenario>, its own addresses): `molecule test` destroys them at the
# end, even after a failure, and the trap below removes them if this script is
# interrupted. The scenarios share nothing, so they run at once (most of their
# time is apt and SSH round trips, not CPU); MOLECULE_SERIAL=1 runs them one by one.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
logs=.fleet/molecule-logs
mkdir -p "$logs"
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

run_one() {
  local s=$1 t0=$SECONDS rc=0
  molecule test -s "$s" >"$logs/$s.log" 2>&1 || rc=$?
  echo "$rc $((SECONDS - t0))" >"$logs/$s.result"
}

rm -f "$logs"/*.result
t0=$SECONDS
if [ "${MOLECULE_SERIAL:-0}" = 1 ]; then
  for s in "${scenarios[@]}"; do run_one "$s"; done
else
  for s in "${scenarios[@]}"; do run_one "$s" & done
  wait
fi

failed=()
summary=()
for s in "${scenarios[@]}"; do
  echo "=== molecule test -s $s"
  cat "$logs/$s.log"
  read -r rc secs <"$logs/$s.result" || { rc=1; secs='?'; }
  [ "$rc" = 0 ] || failed+=("$s")
  summary+=("molecule: $s: $([ "$rc" = 0 ] && echo passed || echo FAILED) in $secs s")
done
printf '%s\n' "${summary[@]}"
echo "molecule: all scenarios in $((SECONDS - t0)) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "molecule: failed scenarios: ${failed[*]}" >&2
  exit 1
fi
echo "molecule: all scenarios passed"
