"""How the cost of a rollout grows with the fleet (issue 13, item 6).

For N analyzer hosts per pool (default 1 2 4 8), a fleet of 2N+3 hosts is started
(scripts/fleet.sh, its own name, directory and addresses from 127.0.0.100 up), then:
  provision  provision.yml on fresh hosts (apt, wheelhouse, units, readiness)
  reprov     provision.yml again (nothing to change: the per-task cost of checking)
  phase      canary.yml with the shortest bake (one 5 s sample), gates included
  rollback   rollback.yml right after the phase
each timed as wall seconds of ansible-playbook. With --variants, the largest size is
also run with forks=5 (ansible's default), without pipelining, and without SSH
ControlPersist, then with the defaults again (the order's share of a difference), to show
what each changes. A run that fails is shown with its rc (and why, on stderr).

Usage: .venv/bin/python bench/fleet_scale.py [--sizes 1 2 4 8] [--variants] [--json out.json]
Numbers go to docs/performance.md ("The fleet").
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, '.venv', 'bin')
FLEET_INVENTORY = os.path.join(ROOT, 'inventories', 'fleet')


def write_inventory(directory, per_pool, fleet_dir):
    """An inventory of the fleet's shape with per_pool analyzers in each pool."""
    os.makedirs(os.path.join(directory, 'group_vars', 'all'))
    address = iter('127.0.0.%d' % n for n in range(100, 200))
    lines = ['---', 'all:', '  vars:', '    ansible_user: deploy', '    ansible_python_interpreter: /usr/bin/python3',
             '  children:', '    analyzers:', '      vars: {analyzer_port: 8080}', '      children:']
    for pool in ('original', 'ultra_fast'):
        lines += ['        analyzers_%s:' % pool, '          hosts:']
        lines += ['            an-%s-%d: {ansible_host: %s}' % (pool.replace('_', ''), i, next(address))
                  for i in range(per_pool)]
    for group, host in (('loadbalancers', 'lb-1'), ('redis', 'redis-1'), ('monitoring', 'monitoring-1')):
        lines += ['    %s:' % group, '      hosts:', '        %s: {ansible_host: %s}' % (host, next(address))]
    with open(os.path.join(directory, 'hosts.yml'), 'w', encoding='utf-8') as handle:
        handle.write('\n'.join(lines) + '\n')
    src = os.path.join(FLEET_INVENTORY, 'group_vars', 'all')
    dst = os.path.join(directory, 'group_vars', 'all')
    shutil.copy(os.path.realpath(os.path.join(src, 'main.yml')), os.path.join(dst, 'main.yml'))
    shutil.copy(os.path.join(src, 'rollout.yml'), os.path.join(dst, 'rollout.yml'))
    with open(os.path.join(src, 'overrides.yml'), encoding='utf-8') as handle:
        text = handle.read().replace('{{ inventory_dir }}/../../.fleet', fleet_dir)
    with open(os.path.join(dst, 'overrides.yml'), 'w', encoding='utf-8') as handle:
        handle.write(text)


def run(argv, env, timeout=3600):
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return time.monotonic() - start, proc


def playbook(inventory, name, env, *extra):
    seconds, proc = run([os.path.join(BIN, 'ansible-playbook'), '-i', inventory, 'playbooks/' + name] + list(extra),
                        env)
    if proc.returncode:
        # A failed run's time is not the cost of the work: say why, so that the row is read for what it is.
        print('%s rc=%d after %.1f s: %s' % (name, proc.returncode, seconds, proc.stdout[-1500:]), file=sys.stderr)
    return round(seconds, 1), proc.returncode


def measure(per_pool, variants, workdir):
    fleet_dir = os.path.join(workdir, 'fleet-%d' % per_pool)
    inventory = os.path.join(workdir, 'inventory-%d' % per_pool)
    write_inventory(inventory, per_pool, fleet_dir)
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ['PATH'], ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'),
               COHORT_FLEET_NAME='bench', COHORT_FLEET_DIR=fleet_dir, COHORT_FLEET_INVENTORY=inventory)
    fleet = os.path.join(ROOT, 'scripts', 'fleet.sh')
    rows = []
    try:
        up_s, proc = run([fleet, 'up'], env)
        if proc.returncode:
            raise SystemExit('fleet up failed: %s' % proc.stderr[-2000:])
        row = {'per_pool': per_pool, 'hosts': 2 * per_pool + 3,
               'variant': 'default (forks 10, pipelining, ControlPersist 60s)', 'fleet_up_s': round(up_s, 1)}
        row['provision_s'], row['provision_rc'] = playbook(inventory, 'provision.yml', env)
        row['reprovision_s'], row['reprovision_rc'] = playbook(inventory, 'provision.yml', env)
        short = json.dumps({'rollout_spec_overrides': {'rate_window': '30s', 'phases': {
            # No judge: a 5 s bake has too few points to judge (it would be inconclusive by design).
            'canary': {'bake': '5s', 'interval': '5s', 'initial_delay': '0s', 'min_requests': 0, 'judge': None}}}})
        row['phase_s'], row['phase_rc'] = playbook(inventory, 'canary.yml', env, '-e', short)
        row['rollback_s'], row['rollback_rc'] = playbook(inventory, 'rollback.yml', env)
        rows.append(row)
        if variants:
            for label, extra_env in (('forks 5', {'ANSIBLE_FORKS': '5'}),
                                     ('no pipelining', {'ANSIBLE_PIPELINING': 'false'}),
                                     ('no ControlPersist', {'ANSIBLE_SSH_ARGS': '-o ControlMaster=no'}),
                                     # The default once more, last: how much of a difference is the order.
                                     ('default, again after the variants', {})):
                venv = dict(env, **extra_env)
                alt = {'per_pool': per_pool, 'hosts': 2 * per_pool + 3, 'variant': label}
                alt['reprovision_s'], alt['reprovision_rc'] = playbook(inventory, 'provision.yml', venv)
                alt['rollback_s'], alt['rollback_rc'] = playbook(inventory, 'rollback.yml', venv)
                rows.append(alt)
    finally:
        run([fleet, 'down'], env)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[1, 2, 4, 8])
    parser.add_argument('--variants', action='store_true', help='forks / pipelining / ControlPersist at the largest size')
    parser.add_argument('--json', help='also write the rows here')
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix='fleet-scale-')
    rows = []
    try:
        for size in args.sizes:
            rows += measure(size, args.variants and size == max(args.sizes), workdir)
            print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print('| analyzers per pool | hosts | variant | provision s | re-provision s | phase s | rollback s |')
    print('|---|---|---|---|---|---|---|')
    for r in rows:
        cells = [r['per_pool'], r['hosts'], r['variant']]
        for step in ('provision', 'reprovision', 'phase', 'rollback'):
            seconds, rc = r.get(step + '_s', ''), r.get(step + '_rc')
            cells.append('%s (rc %d)' % (seconds, rc) if rc else seconds)
        print('| %s | %s | %s | %s | %s | %s | %s |' % tuple(cells))
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as handle:
            json.dump(rows, handle, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
