"""Benchmark of the cache warm-up write path against redis-benchmark, on one throwaway Redis.

    .venv/bin/python bench/cache_warm_bench.py [--keys 1000000] [--port 28650]

What is measured: the warm-up core of cohort.rollout.cache_warm (plugins/module_utils/redis_warm.py,
the same code the module runs) writing N keys into an empty Redis through redis-py, in a child
process whose peak RSS is reported. The keys are real analyzer keys (cohort_analyzer.cache.cache_key
of N distinct one-learner sets, sha256 included in the timing); the value of every key is ONE real
ultra_fast result (iter_entries on a small generated data set), computed once and reused, because
computing 1,000,000 cohort results would measure the engine, not the cache writes. Everything else is
the module's path: freshness check (pipelined TTL per batch), RESP packing, SET key value EX ttl in
pipelined batches, reply accounting.

In the same run, on the same Redis: `redis-benchmark -P 64 -t set -n N -q` (the issue's reference:
one key overwritten with a 3-byte value), and the like-for-like `redis-benchmark -P 64 -r ... SET
key:__rand_int__ <value of the same size> EX ttl` (distinct keys, same value size, with a TTL).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'collections'))
PASSWORD = 'bench-redis-not-secret'


def child(args):
    import redis
    from cohort_analyzer.cache import cache_key
    from cohort_analyzer.repository import ensure_database
    from cohort_analyzer.warm import iter_entries

    from ansible_collections.cohort.rollout.plugins.module_utils.redis_warm import Warmer, connect

    ensure_database(args.db, 2000)
    _key, value = next(iter_entries([[1, 2, 3]], args.db))
    url = 'redis://127.0.0.1:%d/0' % args.port
    client = connect(redis, url, PASSWORD)
    sets = ([i] for i in range(1, args.keys + 1))
    warmer = Warmer(client, redis, url, ttl=3600, batch_size=args.batch_size, force=args.force)
    stats = warmer.write((cache_key(ids), value) for ids in warmer.stale_sets(sets, cache_key))
    stats['value_bytes'] = len(value)
    stats['peak_rss_mib'] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    print(json.dumps(stats))


def run_child(port, keys, db, force=False, batch_size=500):
    cmd = [sys.executable, os.path.abspath(__file__), '--child', '--port', str(port), '--keys', str(keys),
           '--db', db, '--batch-size', str(batch_size)] + (['--force'] if force else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=900).stdout
    return json.loads(out.strip().splitlines()[-1])


def redis_benchmark(port, keys, *command):
    cmd = ['redis-benchmark', '-h', '127.0.0.1', '-p', str(port), '-a', PASSWORD, '-P', '64', '-n', str(keys), '-q']
    out = subprocess.run(cmd + list(command), check=True, capture_output=True, text=True, timeout=900).stdout
    rates = re.findall(r'([0-9.]+) requests per second', out.replace('\r', '\n'))
    return float(rates[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--keys', type=int, default=1_000_000)
    parser.add_argument('--port', type=int, default=28650)
    parser.add_argument('--batch-size', type=int, default=500)
    parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--force', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--db', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    import redis
    tmp = tempfile.mkdtemp(prefix='cache-warm-bench-')
    conf = os.path.join(tmp, 'redis.conf')
    with open(conf, 'w') as handle:
        handle.write('port %d\nbind 127.0.0.1\nsave ""\nappendonly no\ndir %s\nrequirepass "%s"\n'
                     'maxmemory 4gb\nmaxmemory-policy allkeys-lru\n' % (args.port, tmp, PASSWORD))
    os.chmod(conf, 0o600)
    server = subprocess.Popen([shutil.which('redis-server'), conf], stdout=subprocess.DEVNULL)
    try:
        for _attempt in range(100):
            try:
                socket.create_connection(('127.0.0.1', args.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        client = redis.Redis(host='127.0.0.1', port=args.port, password=PASSWORD)
        db = os.path.join(tmp, 'learners.db')
        results = {}

        client.flushall()
        results['warm_cold'] = run_child(args.port, args.keys, db, batch_size=args.batch_size)
        assert client.dbsize() == args.keys, client.dbsize()
        sample = client.randomkey()
        assert 0 < client.ttl(sample) <= 3600
        results['warm_again_all_fresh'] = run_child(args.port, args.keys, db, batch_size=args.batch_size)
        client.flushall()
        results['warm_cold_force'] = run_child(args.port, args.keys, db, force=True, batch_size=args.batch_size)
        client.flushall()
        results['warm_100k_rss_check'] = run_child(args.port, args.keys // 10, db, batch_size=args.batch_size)

        client.flushall()
        results['redis_benchmark_set'] = redis_benchmark(args.port, args.keys, '-t', 'set')
        client.flushall()
        value = 'v' * results['warm_cold']['value_bytes']
        results['redis_benchmark_distinct_keys_ex'] = redis_benchmark(
            args.port, args.keys, '-r', '1000000000', 'SET', 'key:__rand_int__', value, 'EX', '3600')
        client.flushall()
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)

    cold = results['warm_cold']['keys_per_second']
    results['ratio_vs_set'] = round(cold / results['redis_benchmark_set'], 3)
    results['ratio_vs_distinct_keys_ex'] = round(cold / results['redis_benchmark_distinct_keys_ex'], 3)
    results['ratio_force_vs_set'] = round(results['warm_cold_force']['keys_per_second'] / results['redis_benchmark_set'], 3)
    print(json.dumps(results, indent=2, sort_keys=True))


if __name__ == '__main__':
    main()
