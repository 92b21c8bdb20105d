"""Cost of cohort.rollout.daemon's process handling (module_utils/process.py), no Ansible overhead.

Usage: .venv/bin/python bench/daemon_bench.py [--rounds 20]
Measures, over N rounds with `sleep 60` as the program and start_wait=0:
  start (Popen + pidfile/sidecar writes), status (pidfile read + /proc identity check),
  stop of a TERM-responsive program, and the pidfile+sidecar write alone.
Prints medians and maxima in milliseconds. Leaves nothing running.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'collections'))

from ansible_collections.cohort.rollout.plugins.module_utils import process  # noqa: E402


def ms(samples):
    return 'median %.2f ms, max %.2f ms' % (statistics.median(samples) * 1000, max(samples) * 1000)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=20)
    args = parser.parse_args()
    timings = dict(start=[], status=[], stop=[], write_state=[])
    with tempfile.TemporaryDirectory(prefix='daemon-bench-') as d:
        pidfile, logfile = os.path.join(d, 'b.pid'), os.path.join(d, 'b.log')
        for _round in range(args.rounds):
            t0 = time.perf_counter()
            meta = process.start('bench', ['sleep', '60'], pidfile, logfile, executable='/bin/sleep', start_wait=0)
            t1 = time.perf_counter()
            st = process.status(pidfile)
            t2 = time.perf_counter()
            if not st.running:
                raise SystemExit('bench: started process not recognised: %s' % st.stale_reason)
            process.stop(st.pid, st.meta, stop_timeout=5)
            t3 = time.perf_counter()
            process.write_state(pidfile, meta)
            t4 = time.perf_counter()
            process.remove_state(pidfile)
            timings['start'].append(t1 - t0)
            timings['status'].append(t2 - t1)
            timings['stop'].append(t3 - t2)
            timings['write_state'].append(t4 - t3)
    load = os.getloadavg()[0]
    print('rounds: %d, load average (1 min) at end: %.1f' % (args.rounds, load))
    for key, samples in timings.items():
        print('%-12s %s' % (key, ms(samples)))


if __name__ == '__main__':
    main()
