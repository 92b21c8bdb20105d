"""The judge's false-positive rate and detection limit in the sandbox (docs/performance.md).

    scripts/load.sh start 150 && .venv/bin/python bench/judge_fpr.py [--windows 20] [--shift-windows 6]
        [--shifts 2,5,10,20] [--json .sandbox/judge_fpr.json]

Needs `make sandbox` up and the load running. For each latency shift (0 ms = an identical build, then
each of --shifts), the ultra_fast analyzer is provisioned with `analyzer_fault_latency_ms=<shift>`, the
weights API puts 1% of the traffic on it (the canary's weight), and after a settle time of one rate
window the judge of the sandbox's canary (the rollout spec: judge_config(spec, 'canary')) is run the way
metric_gate runs it in a bake, over consecutive, non-overlapping windows of one bake each: a judgement at
its interval during the window (a `fail` trips) and a final one at its end. Each window's outcome is
what the phase would have been: passed, failed, or inconclusive (marginal / nodata).

At the end the analyzer is provisioned again without a fault and all traffic is back on original.
Prints one line per window and a table; --json writes the numbers.
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import os
import subprocess
import sys
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'collections'))

from ansible_collections.cohort.rollout.plugins.module_utils import judge as judge_utils  # noqa: E402
from ansible_collections.cohort.rollout.plugins.module_utils import rollout_spec as spec_utils  # noqa: E402
from ansible_collections.cohort.rollout.plugins.module_utils.prometheus import (  # noqa: E402
    PrometheusClient, PrometheusError, series_values,
)
from ansible_collections.cohort.rollout.plugins.module_utils.weights_api import post_shares  # noqa: E402

BIN = os.path.join(ROOT, '.venv', 'bin')
ENV = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get('PATH', ''), ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'),
           ANSIBLE_NOCOLOR='1')


def host_vars(host):
    out = subprocess.run([os.path.join(BIN, 'ansible-inventory'), '--host', host], cwd=ROOT, env=ENV,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def sandbox_spec():
    with open(os.path.join(ROOT, 'playbooks', 'group_vars', 'all', 'rollout_spec.yml'), encoding='utf-8') as handle:
        defaults = yaml.safe_load(handle)['rollout_spec_defaults']
    with open(os.path.join(ROOT, 'inventories', 'local', 'group_vars', 'all', 'rollout.yml'), encoding='utf-8') as handle:
        overrides = yaml.safe_load(handle)['rollout_spec_overrides']
    return spec_utils.rollout_spec(copy.deepcopy(defaults), overrides)


def provision_candidate(latency_ms):
    proc = subprocess.run([os.path.join(BIN, 'ansible-playbook'), 'playbooks/provision.yml', '--limit',
                           'analyzers_ultra_fast', '-e', json.dumps({'analyzer_fault_latency_ms': latency_ms})],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, check=False, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError('provision failed:\n' + proc.stdout[-3000:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--windows', type=int, default=20, help='judged windows of the identical build')
    parser.add_argument('--shift-windows', type=int, default=6, help='judged windows per latency shift')
    parser.add_argument('--shifts', default='2,5,10,20', help='latency shifts in ms (comma-separated)')
    parser.add_argument('--json', default=None, help='write the results here')
    args = parser.parse_args(argv)

    spec = sandbox_spec()
    phase = spec['phases']['canary']
    cfg = judge_utils.normalize_judge(spec_utils.judge_config(spec, 'canary'))
    window = phase['bake_seconds']
    lb = host_vars('lb-1')
    client = PrometheusClient(lb['prometheus_url'], timeout=10)
    baseline, candidate = spec['baseline'], spec['candidate']

    def range_series(query, start, end, step):
        try:
            return series_values(client.query_range(query, start, end, step))
        except PrometheusError as exc:
            return [], exc.short()

    def shares(weight):
        post_shares(lb['lb_api_url'], {baseline: 1 - weight, candidate: weight}, token=lb['lb_api_token'],
                    validate_certs=True, timeout=10)

    plan = [(0.0, args.windows)] + [(float(s), args.shift_windows) for s in args.shifts.split(',') if s.strip()]
    results = []
    try:
        for shift, count in plan:
            shares(0.0)
            provision_candidate(shift)
            shares(phase['weight'])
            settle = spec['rate_window_seconds'] + phase['initial_delay_seconds']
            time.sleep(settle)
            t0 = time.time()
            time.sleep(count * window + 4)  # + two evaluations for the last points to be recorded
            outcomes = collections.Counter()
            metric_failures = collections.Counter()
            scores = []
            for i in range(count):
                start = t0 + i * window
                outcome, final = None, None
                at = cfg['interval']
                while at < window:  # the bake's judgements during the window
                    judgement = judge_utils.judge_window(range_series, cfg, start, start + at)
                    if judgement['verdict'] == 'fail':
                        outcome, final = 'failed', judgement
                        break
                    at += cfg['interval']
                if outcome is None:
                    final = judge_utils.judge_window(range_series, cfg, start, start + window)
                    outcome = judge_utils.phase_outcome(final['verdict'])
                outcomes[outcome] += 1
                scores.append(final['score'])
                for name, res in final['metrics'].items():
                    if res['failed'] or res['classification'] == 'nodata':
                        metric_failures['%s:%s' % (name, res['classification'])] += 1
                line = judge_utils.summary_line('canary', final, final=True)
                print('shift %5.1f ms window %2d: %-12s %s' % (shift, i + 1, outcome, line), flush=True)
            results.append(dict(shift_ms=shift, windows=count, outcomes=dict(outcomes),
                                not_passed=count - outcomes['passed'], scores=scores,
                                metric_failures=dict(metric_failures)))
    finally:
        shares(0.0)
        provision_candidate(0)

    identical = results[0]
    detected = [r['shift_ms'] for r in results[1:] if r['outcomes'].get('failed', 0) == r['windows']]
    summary = dict(
        window_s=window, judge_interval_s=cfg['interval'], step_s=cfg['step'], weight=phase['weight'],
        load_rate=os.environ.get('LOAD_RATE', '150 (scripts/load.sh default)'), results=results,
        identical_false_positive_rate=round(identical['outcomes'].get('failed', 0) / identical['windows'], 3),
        identical_not_passed_rate=round(identical['not_passed'] / identical['windows'], 3),
        smallest_shift_always_detected_ms=min(detected) if detected else None,
    )
    print('\n%-9s %-8s %-7s %-7s %-13s %s' % ('shift ms', 'windows', 'passed', 'failed', 'inconclusive', 'why'))
    for r in results:
        why = ', '.join('%s x%d' % kv for kv in sorted(r['metric_failures'].items()))
        print('%-9g %-8d %-7d %-7d %-13d %s' % (r['shift_ms'], r['windows'], r['outcomes'].get('passed', 0),
                                                r['outcomes'].get('failed', 0), r['outcomes'].get('inconclusive', 0),
                                                why))
    print('identical builds: %d windows, failed %.1f%%, not passed (failed or inconclusive) %.1f%%; '
          'smallest latency shift failed in every window: %s ms'
          % (identical['windows'], 100 * summary['identical_false_positive_rate'],
             100 * summary['identical_not_passed_rate'], summary['smallest_shift_always_detected_ms']))
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as handle:
            json.dump(summary, handle, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
