"""Helpers of the tests that run against the sandbox (`make sandbox`): paths, environment, inventory, pidfiles."""

import json
import os
import subprocess
import time

import requests
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, '.venv', 'bin')
PROMETHEUS = 'http://127.0.0.1:19090'
ENV = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get('PATH', ''),
           ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_FORCE_COLOR='0', ANSIBLE_NOCOLOR='1')


def inventory(host):
    """The host's variables as the sandbox inventory gives them."""
    out = subprocess.run([os.path.join(BIN, 'ansible-inventory'), '--host', host], cwd=ROOT, env=ENV,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def pid_alive(pidfile, needle):
    """The pid in pidfile runs and its command line contains needle."""
    try:
        with open(pidfile, encoding='utf-8') as handle:
            pid = int(handle.read().strip())
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            cmdline = handle.read().replace(b'\0', b' ').decode()
    except (OSError, ValueError):
        return None
    return pid if needle in cmdline else None


def sandbox_rate_window():
    """The sandbox's rate window in seconds (inventories/local rollout_spec_overrides.rate_window, e.g. 30s)."""
    with open(os.path.join(ROOT, 'inventories', 'local', 'group_vars', 'all', 'rollout.yml'), encoding='utf-8') as f:
        value = str(yaml.safe_load(f)['rollout_spec_overrides']['rate_window'])
    assert value.endswith('s') and value[:-1].isdigit(), 'rate_window %r: expected whole seconds' % value
    return int(value[:-1])


def wait_candidate_quiet(pool='ultra_fast', timeout=120):
    """Before a canary: wait until a stopped candidate's last samples have left Prometheus' rate windows.

    A canary started right after a previous run's rollback would otherwise be sampled, in its first
    rate window, on the previous candidate's requests (the sandbox's first sample comes 5 s after the
    shift, inside its 30 s window; production waits 5 min, past its 1 min window). A candidate still
    running is not waited for: its data is its own build's. Range selectors only (no 5 min lookback:
    after a Prometheus restart, drill d, the old series have no staleness marker and stay visible to
    instant queries, although no rate window reaches them).
    """
    window = sandbox_rate_window() + 5
    deadline = time.monotonic() + timeout
    left, error = None, None
    while time.monotonic() < deadline:
        try:
            up = _query('max(up{pool="%s"})' % pool)
            if up and float(up[0]['value'][1]) == 1:
                return
            # No answer for the candidate's target yet (Prometheus just restarted, a drill stopped it): wait.
            if up:
                # The request counter every rate-based gate reads (one name: count_over_time drops it).
                left = _query('count_over_time(cohort_discovery_requests_total{variant="%s"}[%ds])' % (pool, window))
                if not left:
                    return
            error = None
        except (requests.RequestException, KeyError, ValueError) as exc:
            error = exc
        time.sleep(1)
    raise AssertionError('after %ss the stopped %s candidate still has samples within %d s in Prometheus: %s%s'
                         % (timeout, pool, window, left, ' (last query failed: %s)' % error if error else ''))


def _query(expr):
    resp = requests.get(PROMETHEUS + '/api/v1/query', params={'query': expr}, timeout=10)
    resp.raise_for_status()
    return resp.json()['data']['result']
