"""Weight math benchmark: traffic.compute_weights for 1..12 servers per pool (docs/performance.md).

For every pool size pair (original 1..12, ultra_fast 1..12) and every share of the runbook
(1%, 10%, 100% to ultra_fast, and back to 0%) plus shares without an exact small fraction
(1/3, 0.37, 0.999), times ``compute_weights`` (the math of every weight change, in the module,
the weights API and the guard): the median (and the slowest) of --repeat runs per case. Prints a JSON summary:
the worst case, the median over all cases and the worst case per runbook share. Pure CPU, no
server needed.

    .venv/bin/python bench/weight_math_bench.py [--max-servers 12] [--repeat 5]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'collections'))

from ansible_collections.cohort.rollout.plugins.module_utils import traffic  # noqa: E402

RUNBOOK_SHARES = (0.01, 0.10, 1.0, 0.0)
HARD_SHARES = (1 / 3, 0.37, 0.999)


def servers(n_original, n_fast):
    return (['original-%d' % i for i in range(n_original)] + ['ultra_fast-%d' % i for i in range(n_fast)])


def time_case(n_original, n_fast, fast_share, repeat):
    names = servers(n_original, n_fast)
    shares = {'original': 1 - fast_share, 'ultra_fast': fast_share}
    runs = []
    for _run in range(repeat):
        start = time.perf_counter()
        traffic.compute_weights(shares, names)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs) * 1000, max(runs) * 1000


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--max-servers', type=int, default=12)
    parser.add_argument('--repeat', type=int, default=5)
    args = parser.parse_args(argv)
    cases = []
    for n_original in range(1, args.max_servers + 1):
        for n_fast in range(1, args.max_servers + 1):
            for share in RUNBOOK_SHARES + HARD_SHARES:
                median, slowest = time_case(n_original, n_fast, share, args.repeat)
                cases.append(dict(original=n_original, ultra_fast=n_fast, share=round(share, 4),
                                  ms=round(median, 3), max_ms=round(slowest, 3)))
    worst = max(cases, key=lambda c: c['ms'])
    per_share = {}
    for case in cases:
        key = str(case['share'])
        if key not in per_share or case['ms'] > per_share[key]['ms']:
            per_share[key] = case
    summary = dict(
        python=platform.python_version(), load_average=[round(x, 2) for x in os.getloadavg()],
        cases=len(cases), repeat=args.repeat,
        median_ms=round(statistics.median(c['ms'] for c in cases), 3),
        p90_ms=round(sorted(c['ms'] for c in cases)[int(len(cases) * 0.9)], 3),
        worst=worst,
        slowest_single_run_ms=max(c['max_ms'] for c in cases),
        worst_per_share=per_share,
        at_12_12={str(c['share']): c['ms'] for c in cases
                  if c['original'] == args.max_servers and c['ultra_fast'] == args.max_servers},
    )
    print(json.dumps(summary, indent=2))


if __name__ == '__main__':
    main()
