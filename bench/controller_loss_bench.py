"""When the controller cannot act: how fast the traffic goes back to original (issue 14), on the sandbox.

  .venv/bin/python bench/controller_loss_bench.py [--runs N]

With the sandbox up and its load running (scripts/load.sh start 150):
1. killed: canary.yml baking, SIGKILL to its process group and its (detached) workers -> seconds until the
   load balancer sends ultra_fast nothing (the rollout guard's lease expired). Bound: lease + 1 interval.
2. alert: canary.yml with 5% errors while its gates cannot query Prometheus (a wrong path, HTTP 404) ->
   seconds from the guard's arm to its revert on the rollback alert (Alertmanager -> guard), from its journal.
3. hung: canary.yml baking, Prometheus SIGSTOPped (SIGCONT after) -> seconds until reverted by the gate.
   Bound: (inconclusive_limit + 1) intervals + 1 timeout.
Each case ends with rollback.yml (no flags). Prints one JSON document; docs/performance.md quotes it.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, '.venv', 'bin')
STATE = os.path.join(ROOT, '.sandbox')
ENV = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get('PATH', ''),
           ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_NOCOLOR='1')
API, GUARD, TOKEN = 'http://127.0.0.1:18090', 'http://127.0.0.1:18091', 'sandbox-token-not-secret'


def get(url):
    req = urllib.request.Request(url, headers={'Authorization': 'Bearer ' + TOKEN})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


def ultra_share():
    return get(API + '/config/traffic-weights')['shares']['ultra_fast']


def report():
    with open(os.path.join(STATE, 'report.json'), encoding='utf-8') as handle:
        return json.load(handle)


def play(name, *args):
    return subprocess.run([os.path.join(BIN, 'ansible-playbook'), 'playbooks/' + name] + list(args), cwd=ROOT,
                          env=ENV, capture_output=True, text=True, check=False)


def start(*args):
    since = time.time()
    proc = subprocess.Popen([os.path.join(BIN, 'ansible-playbook'), 'playbooks/canary.yml'] + list(args), cwd=ROOT,
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    while True:
        try:
            canary = report().get('canary', {})
        except (OSError, ValueError):
            canary = {}
        if canary.get('phase_started_epoch', 0) >= since and canary.get('samples') and 'guard' in canary:
            return proc, canary
        if proc.poll() is not None or time.time() - since > 600:
            raise SystemExit('the canary did not start baking')
        time.sleep(0.5)


def children(pid):
    out = []
    for entry in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open('/proc/%s/stat' % entry, encoding='utf-8') as handle:
                stat = handle.read()
        except OSError:
            continue
        if int(stat[stat.rindex(')') + 2:].split()[1]) == pid:
            out.append(int(entry))
    return out


def until_reverted(since, limit=120):
    while ultra_share() > 0:
        if time.time() - since > limit:
            return None
        time.sleep(0.1)
    return round(time.time() - since, 2)


def killed():
    proc, canary = start()
    workers = children(proc.pid)
    at = time.time()
    os.killpg(proc.pid, signal.SIGKILL)
    for pid in workers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    took = until_reverted(at)
    return dict(kill_to_reverted_s=took, lease_s=canary['guard']['lease_seconds'],
                bound_s=canary['guard']['lease_seconds'] + canary['gate_config']['interval'],
                by=get(GUARD + '/state')['last_revert']['reason'])


def alert():
    overrides = json.loads(subprocess.run([os.path.join(BIN, 'ansible-inventory'), '--host', 'analyzer-original-1'],
                                          cwd=ROOT, env=ENV, capture_output=True, text=True,
                                          check=True).stdout)['rollout_spec_overrides']
    overrides['phases']['canary']['inconclusive_limit'] = 8
    since = time.time()
    play('canary.yml', '-e', json.dumps(dict(analyzer_fault_error_rate=0.05, rollout_spec_overrides=overrides,
                                             phase_prometheus_url='http://127.0.0.1:19090/not-prometheus')))
    journal = get(GUARD + '/journal?since=%f' % since)['entries']
    armed = [e for e in journal if e['event'] == 'armed']
    reverted = [e for e in journal if e['event'] == 'reverted']
    if not armed or not reverted:
        return dict(error='no arm or no revert in the journal', events=[e['event'] for e in journal])
    return dict(arm_to_reverted_s=round(reverted[0]['epoch'] - armed[0]['epoch'], 2), by=reverted[0]['reason'],
                alert=reverted[0].get('detail', {}).get('alert'))


def hung():
    proc, canary = start()
    with open(os.path.join(STATE, 'monitoring', 'run', 'prometheus.pid'), encoding='utf-8') as handle:
        pid = int(handle.read().strip())
    at = time.time()
    os.kill(pid, signal.SIGSTOP)
    try:
        took = until_reverted(at)
    finally:
        os.kill(pid, signal.SIGCONT)
    proc.wait(timeout=600)
    config = canary['gate_config']
    return dict(stop_to_reverted_s=took, bound_s=(config['inconclusive_limit'] + 1) * config['interval'] + 10,
                verdict=report()['canary']['verdict']['result'])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', type=int, default=1)
    args = parser.parse_args()
    out = dict(killed=[], alert=[], hung=[])
    for name, case in (('killed', killed), ('alert', alert), ('hung', hung)) * args.runs:
        out[name].append(case())
        play('rollback.yml', '-e', 'rollback_reason=bench ' + name)
    out['load_average'] = os.getloadavg()
    print(json.dumps(out, indent=2))


if __name__ == '__main__':
    main()
