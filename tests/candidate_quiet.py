"""Wait until a stopped candidate's last requests have left Prometheus' rate windows (sandbox and fleet tests).

A canary started right after a previous run's rollback would otherwise be sampled, in its first rate
window, on the previous candidate's requests: the sandbox and the fleet sample 5 s after the shift, inside
their 30 s window (production waits 5 min, past its 1 min window; docs/rollout-spec.md). The guard would
also hear that candidate's alerts fire again after its arm.
"""

import os
import time

import requests
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def spec_overrides(inventory):
    """An inventory's rollout_spec_overrides (a fresh copy: change it and pass it with -e)."""
    with open(os.path.join(ROOT, 'inventories', inventory, 'group_vars', 'all', 'rollout.yml'), encoding='utf-8') as f:
        return yaml.safe_load(f)['rollout_spec_overrides']


def rate_window(inventory):
    """An inventory's rate window in seconds (its rollout_spec_overrides.rate_window, e.g. 30s)."""
    value = str(spec_overrides(inventory)['rate_window'])
    assert value.endswith('s') and value[:-1].isdigit(), 'rate_window %r: expected whole seconds' % value
    return int(value[:-1])


def wait_candidate_quiet(prometheus, window_s, pool='ultra_fast', timeout=120):
    """Return once the ``pool`` candidate runs (its data is its own build's) or its request counter has no
    sample in the last ``window_s`` + 5 s. Range selectors only: after a Prometheus restart (drill d) old
    series have no staleness marker and stay visible to instant queries for the 5 min lookback."""
    window = window_s + 5
    deadline = time.monotonic() + timeout
    left, error = None, None
    while time.monotonic() < deadline:
        try:
            up = _query(prometheus, 'max(up{pool="%s"})' % pool)
            if up and float(up[0]['value'][1]) == 1:
                return
            # No answer for the candidate's target yet (Prometheus just restarted, a drill stopped it): wait.
            if up:
                # The request counter every rate-based gate reads (one name: count_over_time drops it).
                left = _query(prometheus, 'count_over_time(cohort_discovery_requests_total{variant="%s"}[%ds])'
                              % (pool, window))
                if not left:
                    return
            error = None
        except (requests.RequestException, KeyError, ValueError) as exc:
            error = exc
        time.sleep(1)
    raise AssertionError('after %ss the stopped %s candidate still has samples within %d s in Prometheus: %s%s'
                         % (timeout, pool, window, left, ' (last query failed: %s)' % error if error else ''))


def wait_baseline_seen(prometheus, pool='original', timeout=180):
    """Return once Prometheus has a number for the ``pool`` baseline's database query p99: preflight's
    checklist reads it, and no data (NaN: no query in the rate window, the load not seen yet) fails it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = _query(prometheus, 'max(db_query_latency_p99{variant="%s"})' % pool)
            if any(item['value'][1] not in ('NaN', '+Inf', '-Inf') for item in last):
                return
        except (requests.RequestException, KeyError, ValueError) as exc:
            last = exc
        time.sleep(2)
    raise AssertionError('after %ss Prometheus has no database p99 of %s: %s' % (timeout, pool, last))


def wait_no_rollback_alert(alertmanager, timeout=120):
    """Return once Alertmanager holds no active rollback alert (``action="rollback"``, routed to the rollout
    guards): an earlier drill's alert would make the guard revert a canary that a drill needs live."""
    deadline = time.monotonic() + timeout
    active = None
    while time.monotonic() < deadline:
        resp = requests.get(alertmanager + '/api/v2/alerts', params={'active': 'true', 'filter': 'action="rollback"'},
                            timeout=10)
        resp.raise_for_status()
        active = sorted(alert['labels'].get('alertname', '?') for alert in resp.json())
        if not active:
            return
        time.sleep(2)
    raise AssertionError('after %ss Alertmanager still holds active rollback alerts: %s' % (timeout, active))


def _query(prometheus, expr):
    resp = requests.get(prometheus + '/api/v1/query', params={'query': expr}, timeout=10)
    resp.raise_for_status()
    return resp.json()['data']['result']
