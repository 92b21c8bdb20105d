"""Issue 7's "done when", on the sandbox: a freshly provisioned ultra_fast analyzer, with a cold cache
before provisioning, serves the sandbox's load pattern with a cache hit rate above the rollout gate
(0.85) within its first minute, because provisioning warmed the cache.

Needs the sandbox up (`make integration` brings it up); fails, not skips, when it is not. The background
load is paused for the test: the original analyzer shares the cache (same keys, same values) and would
refill it from the load, so the hit rate would not show the warm-up's work. Leaves the sandbox as
provisioned (ultra_fast running and warm) and the load as it found it.
"""

import json
import os
import re
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
import redis

from sandbox_support import BIN, ENV, ROOT, inventory, pid_alive

KEY_PATTERN = 'cohort-analyzer:v1:discover:*'
ROLLOUT_GATE = 0.85  # playbooks/group_vars/all/rollout_spec.yml: rollout, cache_hit_rate > 0.85
FIRST_MINUTE = 60


def provision(*extra):
    proc = subprocess.run([os.path.join(BIN, 'ansible-playbook'), 'playbooks/provision.yml', '--limit',
                           'analyzers_ultra_fast'] + list(extra), cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc


def counters(port):
    body = urllib.request.urlopen('http://127.0.0.1:%d/metrics' % port, timeout=10).read().decode()
    values = {}
    for name in ('cache_hits_total', 'cache_misses_total'):
        match = re.search(r'^%s\{[^}]*variant="ultra_fast"[^}]*\} ([0-9.e+]+)$' % name, body, re.M)
        assert match, 'no %s for ultra_fast in its /metrics' % name
        values[name] = float(match.group(1))
    return values


def prometheus(url, query):
    answer = json.load(urllib.request.urlopen(
        '%s/api/v1/query?%s' % (url, urllib.parse.urlencode({'query': query})), timeout=10))
    assert answer['status'] == 'success', answer
    return [float(sample['value'][1]) for sample in answer['data']['result']]


@pytest.fixture
def quiet_sandbox():
    """The sandbox without its background load; the load is started again afterwards if it ran."""
    had_load = bool(pid_alive(os.path.join(ROOT, '.sandbox', 'load', 'load.pid'), 'loadgen'))
    subprocess.run([os.path.join(ROOT, 'scripts', 'load.sh'), 'stop'], cwd=ROOT, env=ENV, check=True)
    time.sleep(1)  # requests in flight finish
    try:
        yield
    finally:
        if had_load:
            subprocess.run([os.path.join(ROOT, 'scripts', 'load.sh'), 'start'], cwd=ROOT, env=ENV, check=True)


def test_ultra_fast_hit_rate_above_the_rollout_gate_in_its_first_minute(tmp_path, quiet_sandbox):
    analyzer = inventory('analyzer-ultra-fast-1')
    port = analyzer['analyzer_port']
    cache = redis.Redis.from_url(analyzer['redis_url'], password=analyzer['redis_password'], socket_timeout=10)

    # A cold start: ultra_fast stopped and not one analyzer key left in Redis.
    provision('-e', json.dumps({'analyzer_state': 'stopped'}))
    for key in cache.scan_iter(match=KEY_PATTERN, count=1000):
        cache.delete(key)
    assert not list(cache.scan_iter(match=KEY_PATTERN, count=1000))

    run = provision()
    assert 'Preload the cohorts the load will ask for' in run.stdout
    warmed = sum(1 for _key in cache.scan_iter(match=KEY_PATTERN, count=1000))
    assert warmed > 0, 'provisioning wrote no cache key'
    before = counters(port)

    # The sandbox's load pattern (scripts/load.sh: popular sets, 5% one-off sets that must miss),
    # straight at the new analyzer for its first minute.
    summary = tmp_path / 'load.json'
    subprocess.run([os.path.join(BIN, 'cohort-analyzer'), 'loadgen', '--url', 'http://127.0.0.1:%d' % port,
                    '--rate', '50', '--duration', str(FIRST_MINUTE), '--fresh-share', '0.05',
                    '--json-out', str(summary)], cwd=ROOT, env=ENV, capture_output=True, text=True,
                   timeout=FIRST_MINUTE + 60, check=True)
    load = json.loads(summary.read_text())

    after = counters(port)
    hits = after['cache_hits_total'] - before['cache_hits_total']
    misses = after['cache_misses_total'] - before['cache_misses_total']
    assert hits + misses >= 0.9 * 50 * FIRST_MINUTE, (hits, misses, load)
    assert hits / (hits + misses) > ROLLOUT_GATE, (hits, misses)

    # And the number the rollout gate reads: the recording rule in the sandbox's Prometheus.
    prometheus_url = inventory('monitoring-1')['prometheus_url']
    time.sleep(5)  # one scrape and one rule evaluation after the last request
    rates = prometheus(prometheus_url, 'cache_hit_rate{variant="ultra_fast"}')
    assert rates, 'Prometheus has no cache_hit_rate for ultra_fast'
    assert min(rates) > ROLLOUT_GATE, rates
