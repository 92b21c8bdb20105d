#!/usr/bin/env bash
# After `make fleet-down`: no fleet container (any fleet name), no overlay mount
# of the fleet's rootfs, no SSH master socket or process of ours, nothing
# listening on a fleet address (127.0.0.2 and up). Exit 1 if anything is left.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export CONTAINERS_CONF=${COHORT_FLEET_DIR:-$PWD/.fleet}/containers.conf
left=0
if command -v podman >/dev/null 2>&1; then
  names=$(podman ps -a --filter label=cohort.rollout.fleet --format '{{.Names}}' 2>/dev/null)
  if [ -n "$names" ]; then echo "leftover: fleet containers: $names"; left=1; fi
fi
if grep -q 'cohort-rollout/rootfs' /proc/mounts; then
  echo "leftover: mounts of the fleet rootfs:"; grep 'cohort-rollout/rootfs' /proc/mounts
  left=1
fi
socks=$(find -L .fleet -type s 2>/dev/null)
if [ -n "$socks" ]; then echo "leftover: SSH control sockets: $socks"; left=1; fi
links=$(find .fleet -name cp -type l 2>/dev/null)
if [ -n "$links" ]; then echo "leftover: links to SSH socket directories: $links"; left=1; fi
listen=$(ss -Hltn | awk '{print $4}' | grep -E '^127\.0\.0\.([2-9]|[1-9][0-9]+):' || true)
if [ -n "$listen" ]; then echo "leftover: listening on fleet addresses: $listen"; left=1; fi
[ $left -eq 0 ] && echo "no fleet leftovers: no container, mount, SSH socket or listener on 127.0.0.2+"
exit $left
