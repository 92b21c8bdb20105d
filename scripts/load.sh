#!/usr/bin/env bash
# Background load through the load balancer, managed by pidfile.
#   scripts/load.sh start [rate] [duration]   scripts/load.sh stop
# The sandbox by default; the fleet with LOAD_INVENTORY=inventories/fleet LOAD_STATE_DIR=.fleet/load.
set -euo pipefail
cd "$(dirname "$0")/.."
state=${LOAD_STATE_DIR:-.sandbox/load}
inventory=${LOAD_INVENTORY:-inventories/local}
mkdir -p "$state"
# The URL as Ansible resolves it (production-shaped inventories template it).
url=$(ANSIBLE_LOAD_CALLBACK_PLUGINS=1 ANSIBLE_STDOUT_CALLBACK=ansible.posix.json \
  .venv/bin/ansible lb-1 -i "$inventory" -c local -m ansible.builtin.debug -a var=lb_frontend_url \
  | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["plays"][0]["tasks"][0]["hosts"]["lb-1"]["lb_frontend_url"])')
case "${1:-}" in
  start)
    rate=${2:-${LOAD_RATE:-150}}
    duration=${3:-${LOAD_DURATION:-5400}}
    scripts/load.sh stop
    # 150 req/s gives the 1% canary enough requests per sample; 5% of requests are
    # one-off learner sets (cache misses that read the database, like real traffic).
    .venv/bin/cohort-analyzer loadgen --url "$url" --rate "$rate" --duration "$duration" \
      --fresh-share "${LOAD_FRESH_SHARE:-0.05}" \
      --json-out "$state/summary.json" >"$state/load.log" 2>&1 &
    echo $! > "$state/load.pid"
    echo "load: $rate req/s to $url for up to ${duration}s (pid $(cat "$state/load.pid"), log $state/load.log)"
    ;;
  stop)
    if [ -f "$state/load.pid" ]; then
      pid=$(cat "$state/load.pid")
      # Only signal the pid if it is still our load generator.
      if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'cohort-analyzer loadgen'; then
        kill -TERM "$pid"
        for _ in $(seq 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
      fi
      rm -f "$state/load.pid"
    fi
    ;;
  *) echo "usage: $0 start [rate] [duration] | stop" >&2; exit 2 ;;
esac
