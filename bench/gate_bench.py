"""Benchmark cohort.rollout.metric_gate against a real local Prometheus.

1. One sample of six gates (six instant queries through the real client + classification):
   median / p95 / max over --samples samples.
2. Trip latency: an ansible-playbook run bakes with --interval; once its first sample is printed the
   exporter's gauge goes above the threshold; latency = from the moment the failing value is visible
   in Prometheus (polled every 100 ms) to the task returning (its verdict line, and the process exit).

Ports 28420 (Prometheus) and 28421 (exporter), loopback only.
Run: .venv/bin/python bench/gate_bench.py   (about a minute)
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, 'collections'))
sys.path.insert(0, HERE)

from gate_prometheus import Exporter, Prometheus  # noqa: E402

from ansible_collections.cohort.rollout.plugins.action.metric_gate import Sampler  # noqa: E402
from ansible_collections.cohort.rollout.plugins.module_utils import gates  # noqa: E402

PROM_PORT, EXPORTER_PORT = 28420, 28421
SIX = [
    dict(name='error_rate', query='gate_itest_error_rate', op='lt', threshold=0.01),
    dict(name='latency_p99_ms', query='max_over_time(gate_itest_latency_p99_ms[30s])', op='lt', threshold=200),
    dict(name='memory_bytes', query='max(gate_itest_memory_bytes)', op='lt', threshold=1073741824),
    dict(name='cache_hit_rate', query='avg_over_time(gate_itest_cache_hit_rate[30s])', op='gt', threshold=0.7),
    dict(name='request_rate', query='sum(rate(gate_itest_requests_total[30s]))', op='ge', threshold=0),
    dict(name='multi_max', query='max(gate_itest_multi)', op='lt', threshold=10),
]


def bench_sample(prom, count):
    params = dict(prometheus_url=prom.url, phase='bench', interval=1, duration=1, checks=SIX, timeout=10,
                  validate_certs=True, inconclusive_limit=0)
    spec = gates.normalize_spec(params)
    sampler = Sampler(params)
    bake = gates.Bake(spec, sampler, emit=lambda line: None)
    times = []
    for number in range(1, count + 1):
        t0 = time.perf_counter()
        sample, trip, over = bake.take_sample(number)
        times.append((time.perf_counter() - t0) * 1000)
        statuses = set(v['status'] for v in sample['values'].values())
        assert statuses == {'pass'}, sample
    times.sort()
    return dict(samples=count, median_ms=statistics.median(times),
                p95_ms=times[int(0.95 * (len(times) - 1))], max_ms=times[-1])


def trip_once(prom, exporter, interval, tmp):
    exporter.error_rate.set(0.001)
    prom.wait_value('gate_itest_error_rate', lambda v: v == 0.001)
    args = dict(prometheus_url=prom.url, phase='bench', interval='%gs' % interval, duration='120s',
                checks=[dict(name='error_rate', query='gate_itest_error_rate', op='lt', threshold=0.01)])
    play = [{'name': 'Trip latency', 'hosts': 'localhost', 'gather_facts': False, 'tasks': [
        {'name': 'Bake', 'cohort.rollout.metric_gate': args, 'ignore_errors': True}]}]
    path = os.path.join(tmp, 'play.yml')
    with open(path, 'w') as handle:
        json.dump(play, handle)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_NOCOLOR='1',
               PATH=os.path.join(ROOT, '.venv', 'bin') + os.pathsep + os.environ.get('PATH', ''))
    proc = subprocess.Popen([os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), path], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    visible = {}

    def flip():
        # fail at a random point inside an interval, then note when Prometheus shows it
        time.sleep(random.uniform(0.2, interval * 0.9))
        exporter.error_rate.set(0.05)
        visible['value'], visible['at'] = prom.wait_value('gate_itest_error_rate', lambda v: v == 0.05, timeout=30)
    verdict_at = None
    flipper = None
    for line in proc.stdout:
        if flipper is None and line.startswith('[bench ') and 'ok' in line:
            flipper = threading.Thread(target=flip)
            flipper.start()
        if line.startswith('[bench] verdict: FAILED') and verdict_at is None:
            verdict_at = time.time()
    proc.wait(60)
    exit_at = time.time()
    flipper.join(30)
    exporter.error_rate.set(0.001)
    return dict(verdict_s=verdict_at - visible['at'], exit_s=exit_at - visible['at'])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--samples', type=int, default=50)
    parser.add_argument('--trips', type=int, default=3)
    parser.add_argument('--interval', type=float, default=5.0)
    opts = parser.parse_args()
    exporter = Exporter(EXPORTER_PORT)
    prom = Prometheus(PROM_PORT, EXPORTER_PORT)
    tmp = tempfile.mkdtemp(prefix='gate-bench-')
    try:
        prom.wait_value('gate_itest_error_rate', lambda v: v == 0.001)
        time.sleep(2)  # a few scrapes, so rate() and *_over_time have points
        sample = bench_sample(prom, opts.samples)
        print('one sample of six gates: median %.1f ms, p95 %.1f ms, max %.1f ms (%d samples)'
              % (sample['median_ms'], sample['p95_ms'], sample['max_ms'], sample['samples']))
        trips = [trip_once(prom, exporter, opts.interval, tmp) for unused in range(opts.trips)]
        for n, trip in enumerate(trips, 1):
            print('trip %d: visible in Prometheus -> verdict line %.2f s, -> ansible-playbook exit %.2f s (interval %gs)'
                  % (n, trip['verdict_s'], trip['exit_s'], opts.interval))
        print('trip latency to verdict: max %.2f s; to process exit: max %.2f s; interval %gs'
              % (max(t['verdict_s'] for t in trips), max(t['exit_s'] for t in trips), opts.interval))
    finally:
        prom.stop()
        exporter.stop()


if __name__ == '__main__':
    main()
