"""Wall time of `ansible-playbook playbooks/status.yml` on the sandbox (issue 16: "a few seconds").

  .venv/bin/python bench/status_bench.py [--runs N]   (the sandbox is up: make sandbox)

Each run is a whole ansible-playbook process (start-up, inventory, the rollout spec, the candidate's
/readyz probe on its host, the lock query on the load balancer host, the weights API, the report),
in text and in check mode. Also the share of that time spent in each task (profile_tasks callback).
Prints one JSON document; docs/performance.md "## status.yml" quotes it.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, '.venv', 'bin')
ENV = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get('PATH', ''),
           ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_NOCOLOR='1')


def once(*args):
    start = time.monotonic()
    proc = subprocess.run([os.path.join(BIN, 'ansible-playbook'), 'playbooks/status.yml'] + list(args), cwd=ROOT,
                          env=ENV, capture_output=True, text=True, check=False)
    took = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit('status.yml failed:\n' + proc.stdout[-3000:])
    return took, proc.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', type=int, default=5)
    args = parser.parse_args()
    text = [once()[0] for _run in range(args.runs)]
    check = [once('--check')[0] for _run in range(args.runs)]
    profiled = subprocess.run([os.path.join(BIN, 'ansible-playbook'), 'playbooks/status.yml'], cwd=ROOT,
                              env=dict(ENV, ANSIBLE_CALLBACKS_ENABLED='ansible.posix.profile_tasks'),
                              capture_output=True, text=True, check=False).stdout
    tasks = dict((name.strip(), float(sec)) for name, sec in
                 re.findall(r'^(.+?) -+ (\d+\.\d+)s$', profiled, re.M))
    out = dict(runs=args.runs,
               text_s=dict(median=round(statistics.median(text), 2), max=round(max(text), 2)),
               check_s=dict(median=round(statistics.median(check), 2), max=round(max(check), 2)),
               tasks_s=tasks)
    print(json.dumps(out, indent=2, sort_keys=True))


if __name__ == '__main__':
    main()
