"""Rollback and phase timings on the sandbox (issue 8), with the sandbox's load running.

  .venv/bin/python bench/rollback_bench.py [--runs N] [--skip-deploy]

1. Failing canary (-e analyzer_fault_error_rate=0.05): detection (bake start -> gate
   trip, and samples taken) and the rollback's own durations from the report
   (trip -> shares reverted, trip -> complete).
2. Manual rollback.yml after a 1% split: trip ("now" at the start of the role) ->
   shares reverted / complete, and the wall time of the whole ansible-playbook run.
3. deploy.yml with the inventory's own bakes (it must pass every phase): wall time, and the
   wall time minus the gates' waiting (each phase's waited_s in the report: the initial delay
   and the sleeps between samples), i.e. "deploy.yml with zero bake time, all work but waiting".
   A literal zero-bake deploy cannot pass: a gate with no candidate data is inconclusive and
   rolls back (fail closed), so the work is timed inside a real, passing deploy instead.
Prints one JSON document; docs/performance.md "## Rollback and phases" quotes it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, '.venv', 'bin')
REPORT = os.path.join(ROOT, '.sandbox', 'report.json')
ENV = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get('PATH', ''),
           ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_NOCOLOR='1')
PHASES = ('canary', 'ramp', 'rollout')


def play(name, *args):
    start = time.monotonic()
    proc = subprocess.run([os.path.join(BIN, 'ansible-playbook'), 'playbooks/' + name] + list(args), cwd=ROOT,
                          env=ENV, capture_output=True, text=True, check=False)
    return proc.returncode, time.monotonic() - start, proc.stdout


def report():
    with open(REPORT, encoding='utf-8') as handle:
        return json.load(handle)


def epoch(text):
    import datetime
    return datetime.datetime.fromisoformat(text.replace('Z', '+00:00')).timestamp()


def set_split(api, token, ultra):
    body = json.dumps({'original': 1 - ultra, 'ultra_fast': ultra}).encode()
    req = urllib.request.Request(api + '/config/traffic-weights', data=body, method='POST',
                                 headers={'Authorization': 'Bearer ' + token, 'Content-Type': 'application/json'})
    urllib.request.urlopen(req, timeout=10).read()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', type=int, default=1)
    parser.add_argument('--skip-deploy', action='store_true')
    args = parser.parse_args()
    inv = json.loads(subprocess.run([os.path.join(BIN, 'ansible-inventory'), '--host', 'lb-1'], cwd=ROOT, env=ENV,
                                    capture_output=True, text=True, check=True).stdout)
    out = {'failing_canary': [], 'manual_rollback': [], 'deploy': []}
    play('rollback.yml', '-e', 'rollback_reason=bench setup')
    for _run in range(args.runs):
        rc, wall, _tail = play('canary.yml', '-e', 'analyzer_fault_error_rate=0.05')
        rep = report()
        canary, rollback = rep.get('canary', {}), rep.get('rollback', {})
        entry = dict(rc=rc, wall_s=round(wall, 1), verdict=canary.get('verdict'), samples=len(canary.get('samples', [])))
        if canary.get('started_at') and canary.get('ended_at'):
            entry['bake_start_to_trip_s'] = epoch(canary['ended_at']) - epoch(canary['started_at'])
        entry.update(rollback.get('durations', {}))
        out['failing_canary'].append(entry)
    for _run in range(args.runs):
        set_split(inv['lb_api_url'], inv['lb_api_token'], 0.01)
        rc, wall, _tail = play('rollback.yml', '-e', 'rollback_reason=bench manual')
        entry = dict(rc=rc, wall_s=round(wall, 1))
        entry.update(report().get('rollback', {}).get('durations', {}))
        out['manual_rollback'].append(entry)
    if not args.skip_deploy:
        for _run in range(args.runs):
            play('rollback.yml', '-e', 'rollback_reason=bench before deploy')
            rc, wall, tail = play('deploy.yml')
            rep = report()
            waited = sum(float(rep.get(p, {}).get('waited_s') or 0) for p in PHASES)
            out['deploy'].append(dict(rc=rc, wall_s=round(wall, 1), gates_waited_s=round(waited, 1),
                                      wall_minus_waiting_s=round(wall - waited, 1),
                                      statuses={p: rep.get(p, {}).get('status') for p in PHASES},
                                      tail=None if rc == 0 else tail[-1500:]))
        play('rollback.yml', '-e', 'rollback_reason=bench teardown')
    out['load_average'] = os.getloadavg()
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write('\n')


if __name__ == '__main__':
    main()
