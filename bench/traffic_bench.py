"""Traffic benchmarks: one weight change via the admin socket and via the API; HAProxy's latency overhead.

Starts its own real HAProxy, weights API and two real analyzers on ports 28340-28349
(never the sandbox's), prints a JSON summary, stops everything it started.

    .venv/bin/python bench/traffic_bench.py [--changes 50] [--rate 80] [--seconds 30]

- weight change: median/p90 wall time of one change (1% <-> 10% to ultra_fast), from the call
  to its return; after every change the weights are read back independently over the admin
  socket and must already be the new ones ("live on return"), else the run fails.
- overhead: open-loop discover requests at --rate req/s (the sandbox load generator's default
  is 80), alternating through HAProxy and straight to the same original analyzer, so both
  paths see the same load; p50/p99 client-side latency of each path and the difference.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'collections'))

from traffic_support import TOKEN, Lb, start_analyzer, stop  # noqa: E402
from ansible_collections.cohort.rollout.plugins.module_utils import traffic  # noqa: E402
from ansible_collections.cohort.rollout.plugins.module_utils.haproxy import HAProxySocket  # noqa: E402

FE, API, ORIG, FAST = 28340, 28341, 28345, 28346
SPLITS = ({'original': 0.99, 'ultra_fast': 0.01}, {'original': 0.9, 'ultra_fast': 0.1})


def pct(values, q):
    values = sorted(values)
    return values[max(0, int(round(q * len(values))) - 1)]


def bench_changes(lb, n):
    client = HAProxySocket(lb.sock)
    out = {}
    for how in ('socket', 'api'):
        times = []
        for i in range(n):
            shares = SPLITS[i % 2]
            start = time.perf_counter()
            if how == 'socket':
                result = traffic.apply_shares(client, 'analyzers', shares, state_file=lb.state)
            else:
                resp = requests.post(lb.api_url + '/config/traffic-weights', data=json.dumps(shares),
                                     headers={'Authorization': 'Bearer ' + TOKEN}, timeout=10)
                resp.raise_for_status()
                result = resp.json()
            times.append(time.perf_counter() - start)
            live = client.get_weights('analyzers')
            if not result['changed'] or live != result['after']['weights']:
                raise SystemExit('weights not live on return: %r vs %r' % (live, result['after']['weights']))
        out[how] = {'changes': n, 'median_ms': round(1000 * statistics.median(times), 2), 'p90_ms': round(1000 * pct(times, 0.9), 2)}
    return out


def bench_overhead(lb, rate, seconds):
    client = HAProxySocket(lb.sock)
    traffic.apply_shares(client, 'analyzers', {'original': 1, 'ultra_fast': 0})
    targets = {'lb': lb.fe_url, 'direct': 'http://127.0.0.1:%d' % ORIG}
    lat = {'lb': [], 'direct': []}
    errors = []
    lock = threading.Lock()
    rng = random.Random(42)
    bodies = [json.dumps({'learner_ids': rng.sample(range(1, 2001), 100)}) for _body in range(64)]
    local = threading.local()

    def one(i):
        path = 'lb' if i % 2 == 0 else 'direct'
        session = getattr(local, 'session', None) or requests.Session()
        local.session = session
        start = time.perf_counter()
        try:
            resp = session.post(targets[path] + '/v1/cohorts/discover', data=bodies[i % len(bodies)],
                                headers={'Content-Type': 'application/json'}, timeout=10)
            ok = resp.status_code == 200
        except requests.RequestException:
            ok = False
        took = time.perf_counter() - start
        with lock:
            (lat[path] if ok else errors).append(1000 * took)

    total = int(rate * seconds)
    threads = []
    t0 = time.perf_counter()
    for i in range(total):  # open loop: one thread per request, started on schedule
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        th = threading.Thread(target=one, args=(i,))
        th.start()
        threads.append(th)
    for th in threads:
        th.join()
    res = {'rate_per_s': rate, 'seconds': seconds, 'errors': len(errors)}
    for path, values in lat.items():
        res[path] = {'n': len(values), 'p50_ms': round(pct(values, 0.5), 2), 'p99_ms': round(pct(values, 0.99), 2)}
    res['overhead_p50_ms'] = round(res['lb']['p50_ms'] - res['direct']['p50_ms'], 2)
    res['overhead_p99_ms'] = round(res['lb']['p99_ms'] - res['direct']['p99_ms'], 2)
    return res


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--changes', type=int, default=50)
    parser.add_argument('--rate', type=float, default=80)
    parser.add_argument('--seconds', type=float, default=30)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix='traffic-bench-')
    procs, lb = [], None
    try:
        procs.append(start_analyzer(workdir, 'original', ORIG))
        procs.append(start_analyzer(workdir, 'ultra_fast', FAST))
        lb = Lb(workdir, FE, API, [('original-o1', ORIG, 1), ('ultra_fast-f1', FAST, 0)]).start()
        lb.wait_healthy()
        with open('/proc/loadavg') as handle:
            load = handle.read().split()[:3]
        summary = {'loadavg_before': load, 'weight_change': bench_changes(lb, args.changes),
                   'haproxy_overhead': bench_overhead(lb, args.rate, args.seconds)}
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write('\n')
    finally:
        if lb:
            lb.close()
        for proc in procs:
            stop(proc)


if __name__ == '__main__':
    main()
