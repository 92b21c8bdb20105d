#!/usr/bin/env bash
# The main job on the sandbox: under a steady load through the load balancer,
# run every phase (deploy.yml), then a failing-canary drill that rolls back by
# itself, and print what the report says and where its HTML pages are.
# `make demo` calls this after `make sandbox`.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export PATH="$PWD/.venv/bin:$PATH"
# Rendered by Ansible itself: ansible-inventory would show the unrendered template.
report=$(ANSIBLE_LOAD_CALLBACK_PLUGINS=1 ANSIBLE_STDOUT_CALLBACK=ansible.builtin.json \
  ansible lb-1 -m ansible.builtin.debug -a 'msg={{ rollout_report_path }}' \
  | python -c 'import json,sys; print(json.load(sys.stdin)["plays"][0]["tasks"][0]["hosts"]["lb-1"]["msg"])')
drill_report="${report%.json}-drill.json"

scripts/load.sh start
trap 'scripts/load.sh stop' EXIT

echo "== 1. deploy.yml: preflight -> canary 1% -> ramp 10% -> rollout 100%"
rm -f "$report"
ansible-playbook playbooks/deploy.yml
deploy_rc=$?

echo "== 2. drill: canary with 5% injected errors on ultra_fast (must roll back)"
rm -f "$drill_report"
ansible-playbook playbooks/canary.yml -e analyzer_fault_error_rate=0.05 -e rollout_report_path="$drill_report"
drill_rc=$?

echo
echo "== deploy.yml report ($report)"
python scripts/report_summary.py "$report"
echo
echo "== drill report ($drill_report)"
python scripts/report_summary.py "$drill_report"
echo
# The pages are rewritten in the background after every report write: make sure both are current.
python scripts/report_html.py "$report" >/dev/null
python scripts/report_html.py "$drill_report" >/dev/null
echo "Look at: $report and $drill_report (JSON), .sandbox/notifications.jsonl (notifications),"
echo "Prometheus http://127.0.0.1:19090, the load balancer http://127.0.0.1:18080,"
echo "the Grafana dashboard JSON under .sandbox/monitoring/. After the drill the sandbox serves"
echo "100% original (the rollback's doing). Stop it all with: make sandbox-down"

echo "State now: ansible-playbook playbooks/status.yml (changes nothing)."
echo
echo "HTML report of the deploy: ${report%.json}.html"
echo "HTML report of the drill:  ${drill_report%.json}.html"
echo "(self-contained: open them in any browser, e.g. file://$(cd "$(dirname "$report")" && pwd)/$(basename "${report%.json}.html"))"

if [ $deploy_rc -ne 0 ]; then echo "demo: deploy.yml FAILED (rc=$deploy_rc)" >&2; exit 1; fi
if [ $drill_rc -eq 0 ]; then echo "demo: the faulty canary was NOT rolled back" >&2; exit 1; fi
echo "demo: deploy passed every phase; the faulty canary was rolled back, as it should be."
