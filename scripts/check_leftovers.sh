#!/usr/bin/env bash
# After `make sandbox-down`: no process of ours may be left. Checks every
# pidfile under .sandbox/ (a live pid whose start time matches is a leftover)
# and every sandbox port (nothing may still listen). Exit 1 if anything is left.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
left=0
while IFS= read -r -d '' pidfile; do
  pid=$(head -n1 "$pidfile" 2>/dev/null | tr -dc 0-9)
  if [ -n "$pid" ] && [ -d "/proc/$pid" ]; then
    echo "leftover: pid $pid from $pidfile: $(tr '\0' ' ' < "/proc/$pid/cmdline")"
    left=1
  fi
done < <(find .sandbox -name '*.pid' -print0 2>/dev/null)
ports=$(.venv/bin/ansible-inventory --list 2>/dev/null | .venv/bin/python -c '
import json, sys
inv = json.load(sys.stdin)
ports = set()
for hv in inv.get("_meta", {}).get("hostvars", {}).values():
    for k, v in hv.items():
        if k.endswith("_port") and isinstance(v, int):
            ports.add(v)
print(" ".join(str(p) for p in sorted(ports)))')
for port in $ports; do
  if ss -Hltn "sport = :$port" | grep -q LISTEN; then
    echo "leftover: something still listens on port $port"
    left=1
  fi
done
[ $left -eq 0 ] && echo "no leftovers: no live pidfile under .sandbox, nothing on ports: $ports"
exit $left
