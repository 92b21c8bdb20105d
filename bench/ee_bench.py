"""What the execution environment costs (issue 18, item 4): build time, image size, job time.

  build   `scripts/ee.sh build` timed: with --cold, the base and the EE images are removed first
          (cold: mmdebstrap, podman import, ansible-builder with --no-cache); then again
          with a changed input key but podman's layer cache (cached layers); then up to date
  size    the base and the EE image sizes (podman image inspect)
  jobs    with --jobs: the EE tier's fleet (bench/ee_support.py) is brought up and provisioned,
          then preflight.yml runs --runs times in the EE (ansible-runner --process-isolation, as the
          test does) and as many times outside it (ansible-playbook from .venv), alternating; wall
          seconds of each, start to end

Usage: .venv/bin/python bench/ee_bench.py [--cold] [--jobs] [--no-build] [--runs 3] [--json out.json]
Numbers go to docs/performance.md ("The execution environment"). Run with nice -n 19 on a shared machine.
"""

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'bench'))
ee_support = importlib.import_module('ee_support')  # the EE tier's harness, beside this file

EE_SH = os.path.join(ROOT, 'scripts', 'ee.sh')


def timed(argv, env=None):
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env or ee_support.ENV, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit('%s failed:\n%s' % (' '.join(argv), (proc.stdout + proc.stderr)[-3000:]))
    return round(time.monotonic() - start, 1), proc


def podman(*args):
    return subprocess.run(['podman'] + list(args), env=ee_support.ENV, capture_output=True, text=True, check=False)


def size_mb(ref):
    out = podman('image', 'inspect', '--format', '{{.Size}}', ref).stdout.strip()
    return round(int(out) / 1e6) if out else None


def build(cold):
    row = {}
    if cold:
        for ref in (ee_support.ee_image(None), ee_support.ee_image('latest')):
            podman('rmi', '--force', ref)
        base = subprocess.run(['bash', '-c', 'podman images --format "{{.Repository}}:{{.Tag}}" '
                               'localhost/cohort-rollout-ee-base'], env=ee_support.ENV, capture_output=True,
                              text=True, check=False).stdout.split()
        for ref in base:
            podman('rmi', '--force', ref)
        # No layer of an earlier build reused (COHORT_EE_NO_CACHE: podman build --no-cache).
        row['cold_s'], proc = timed([EE_SH, 'build'], env=dict(ee_support.ENV, COHORT_EE_NO_CACHE='1'))
        row['cold_log'] = [line for line in proc.stderr.splitlines() if line.startswith('ee: ')]
    # Layers cached, inputs key changed: what a change to a comment of the definition costs.
    for ref in (ee_support.ee_image(None), ee_support.ee_image('latest')):
        podman('image', 'untag', ref)
    row['layers_cached_s'] = timed([EE_SH, 'build'])[0]
    row['up_to_date_s'] = timed([EE_SH, 'build'])[0]
    row['ee_image_mb'] = size_mb(ee_support.ee_image('latest'))
    bases = subprocess.run(['bash', '-c', 'podman images --format "{{.Repository}}:{{.Tag}}" '
                            'localhost/cohort-rollout-ee-base'], env=ee_support.ENV, capture_output=True,
                           text=True, check=False).stdout.split()
    row['base_image_mb'] = size_mb(bases[0]) if bases else None
    return row


def jobs(runs):
    os.makedirs(ee_support.FLEET_DIR, exist_ok=True)
    ee_support.write_inventory()
    workdir = tempfile.mkdtemp(prefix='ee-bench-')
    row = {'inside_s': [], 'outside_s': []}
    try:
        ee_support.fleet('down')
        proc = ee_support.fleet('up')
        if proc.returncode:
            raise SystemExit('fleet up failed: %s' % proc.stderr[-2000:])
        start = time.monotonic()
        proc = ee_support.playbook('provision.yml')
        if proc.returncode:
            raise SystemExit('provision failed: %s' % proc.stdout[-3000:])
        row['provision_outside_s'] = round(time.monotonic() - start, 1)
        ee_support.load('start')  # preflight reads the baseline's database p99: it needs traffic
        ee_support.wait_for_traffic()
        for _run in range(runs):
            job = ee_support.run_job(workdir, 'preflight')
            if job.status != 'successful':
                raise SystemExit(job.tail())
            row['inside_s'].append(round(job.seconds, 1))
            start = time.monotonic()
            proc = ee_support.playbook('preflight.yml')
            if proc.returncode:
                raise SystemExit(proc.stdout[-3000:])
            row['outside_s'].append(round(time.monotonic() - start, 1))
    finally:
        ee_support.load('stop')
        ee_support.fleet('down')
    row['inside_median_s'] = statistics.median(row['inside_s'])
    row['outside_median_s'] = statistics.median(row['outside_s'])
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--cold', action='store_true', help='remove the base and EE images first')
    parser.add_argument('--jobs', action='store_true', help='also time preflight.yml in and out of the EE')
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--no-build', action='store_true', help='time only the jobs')
    parser.add_argument('--json', help='also write the results here')
    args = parser.parse_args()
    result = {}
    if not args.no_build:
        result['build'] = build(args.cold)
        print(json.dumps(result['build']), flush=True)
    if args.jobs:
        result['jobs'] = jobs(args.runs)
        print(json.dumps(result['jobs']), flush=True)
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
