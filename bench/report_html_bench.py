"""Cost of the HTML report (module_utils/report_html.py), issue 16.

1. Render: one page (read, all charts, write) for reports of the runbook's production size
   (canary 24 samples x 4 gates, ramp 48 x 5, rollout 7 days at 5 min = 2016 x 3, a rollback),
   and for the sandbox's size; the page's size in bytes. A fresh process each time (what the
   background renderer pays, matplotlib's import included).
2. The writer: update_phase() with the page scheduled (one fork/exec of a detached renderer) and
   without (COHORT_ROLLOUT_HTML=off), median / p95 / max over --writes writes of a canary record.
3. A gate's bake (module_utils/gates.Bake, the real clock, a sampler that answers at once, the real
   report writer as on_update) with --interval seconds between samples, with and without the page:
   how late each sample is against its schedule, and how long on_update blocks the bake.
Prints one JSON document; docs/performance.md "## HTML report" quotes it.
Run: .venv/bin/python bench/report_html_bench.py   (about a minute)
"""

import argparse
import datetime
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, 'collections'))

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator  # noqa: E402

from ansible_collections.cohort.rollout.plugins.module_utils import gates, report, report_html  # noqa: E402

GATES = {
    'canary': ['error_rate', 'latency_p99_ms', 'memory_bytes', 'user_error_rate'],
    'ramp': ['error_rate', 'latency_p99_ms', 'memory_bytes', 'db_query_p99_ms', 'cache_hit_rate'],
    'rollout': ['error_rate', 'latency_p99_ms', 'cache_hit_rate'],
}
THRESHOLDS = {'error_rate': ('lt', 0.01), 'latency_p99_ms': ('lt', 200.0), 'memory_bytes': ('lt', 1073741824.0),
              'user_error_rate': ('le', 0.0), 'db_query_p99_ms': ('lt', 50.0), 'cache_hit_rate': ('gt', 0.7)}


def iso(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def value(gate):
    return {'error_rate': random.uniform(0, 0.004), 'latency_p99_ms': random.uniform(5, 40),
            'memory_bytes': random.uniform(6e7, 9e7), 'user_error_rate': 0.0,
            'db_query_p99_ms': random.uniform(2, 8), 'cache_hit_rate': random.uniform(0.9, 0.99)}[gate]


def make_report(counts, interval):
    start = time.time() - 8 * 86400
    doc = {}
    for phase, count in counts.items():
        samples = []
        for i in range(count):
            values = {}
            for gate in GATES[phase]:
                if random.random() < 0.01:
                    values[gate] = dict(value=None, status='inconclusive', note='no data')
                else:
                    values[gate] = dict(value=value(gate), status='pass')
            samples.append(dict(n=i + 1, at=iso(start + i * interval), values=values))
        gates_rec = dict((g, dict(op=THRESHOLDS[g][0], threshold=THRESHOLDS[g][1])) for g in GATES[phase])
        doc[phase] = dict(status='passed', phase_started_at=iso(start), started_at=iso(start + 1),
                          ended_at=iso(start + count * interval), shares=dict(original=0.9, ultra_fast=0.1),
                          samples=samples, gates=gates_rec, verdict=dict(result='passed', reasons=[]))
        start += count * interval + 60
    doc['rollback'] = dict(status='rolled_back', trigger='manual', phase='', reason='bench', started_at=iso(start),
                           trip_at=iso(start), ended_at=iso(start + 20),
                           durations=dict(trip_to_shares_reverted_s=0.1, trip_to_complete_s=20.0),
                           shares=dict(original=1.0, ultra_fast=0.0))
    return doc


def stats(values):
    ordered = sorted(values)
    return dict(median=round(statistics.median(ordered), 4), p95=round(ordered[int(0.95 * (len(ordered) - 1))], 4),
                max=round(ordered[-1], 4), n=len(ordered))


def render_cost(directory, name, doc, runs):
    path = os.path.join(directory, name + '.json')
    with open(path, 'w', encoding='utf-8') as handle:
        json.dump(doc, handle)
    times = []
    for _run in range(runs):
        start = time.monotonic()
        subprocess.run([sys.executable, os.path.join(ROOT, 'plugins', 'module_utils', 'report_html.py'), path],
                       check=True, capture_output=True)
        times.append(time.monotonic() - start)
    return dict(seconds=stats(times), json_bytes=os.path.getsize(path),
                html_bytes=os.path.getsize(report_html.html_path(path)),
                samples=sum(len(doc[p]['samples']) for p in GATES if p in doc))


def writer_cost(directory, html_on, writes):
    os.environ['COHORT_ROLLOUT_HTML'] = 'on' if html_on else 'off'
    path = os.path.join(directory, 'writer-%s.json' % ('on' if html_on else 'off'))
    doc = make_report({'canary': 24}, 300)
    report.update_phase(path, 'canary', doc['canary'])
    times = []
    for i in range(writes):
        start = time.monotonic()
        report.update_phase(path, 'canary', dict(samples=doc['canary']['samples'][:1 + i % 24]))
        times.append(time.monotonic() - start)
        time.sleep(0.05)
    if html_on:
        report_html.wait_current(path, 120)
    return stats(times)


def bake(directory, html_on, interval, count):
    os.environ['COHORT_ROLLOUT_HTML'] = 'on' if html_on else 'off'
    path = os.path.join(directory, 'bake-%s.json' % ('on' if html_on else 'off'))
    checks = [dict(name=g, query='bench_%s' % g, op=THRESHOLDS[g][0], threshold=THRESHOLDS[g][1])
              for g in GATES['ramp']]
    validated = ArgumentSpecValidator(gates.ARGUMENT_SPEC).validate(dict(
        prometheus_url='http://127.0.0.1:9', checks=checks, interval=interval, duration=interval * count,
        phase='ramp', report_path=path))
    spec = gates.normalize_spec(validated.validated_parameters)
    taken, blocked = [], []

    def sampler(check):
        if check['name'] == checks[0]['name']:
            taken.append(time.monotonic())
        return value(check['name']), ''

    def on_update(record):
        start = time.monotonic()
        report.update_phase(path, 'ramp', gates.ensure_json_safe(dict(record)))
        blocked.append(time.monotonic() - start)

    runner = gates.Bake(spec, sampler, emit=lambda line: None, on_update=on_update)
    began = time.monotonic()
    runner.run()
    lags = [t - (began + i * interval) for i, t in enumerate(taken)]
    if html_on:
        report_html.wait_current(path, 120)
    return dict(sample_lag_s=stats(lags), on_update_s=stats(blocked))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--writes', type=int, default=100)
    parser.add_argument('--interval', type=float, default=1.0)
    parser.add_argument('--samples', type=int, default=20)
    args = parser.parse_args()
    random.seed(16)
    out = dict(python=sys.version.split()[0], cpus=os.cpu_count())
    with tempfile.TemporaryDirectory(prefix='report-html-bench-') as directory:
        out['render_production'] = render_cost(directory, 'production',
                                               make_report(dict(canary=24, ramp=48, rollout=2016), 300), args.runs)
        out['render_sandbox'] = render_cost(directory, 'sandbox', make_report(dict(canary=5, ramp=7, rollout=7), 5),
                                            args.runs)
        out['writer_html_off_s'] = writer_cost(directory, False, args.writes)
        out['writer_html_on_s'] = writer_cost(directory, True, args.writes)
        out['bake_html_off'] = bake(directory, False, args.interval, args.samples)
        out['bake_html_on'] = bake(directory, True, args.interval, args.samples)
    print(json.dumps(out, indent=2, sort_keys=True))


if __name__ == '__main__':
    main()
