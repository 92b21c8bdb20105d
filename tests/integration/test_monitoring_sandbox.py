"""Monitoring in the running sandbox under load (run by `make integration`, after `make sandbox` + load).

Every recording rule and every Grafana panel query must return a finite number for BOTH
variants from the sandbox's Prometheus. No data is a failure, and so is a missing sandbox:
this test fails (it does not skip) when the sandbox is not up.

While it runs, the traffic is split 50/50 through the runbook's weights API so that both
variants receive requests; the previous weights are restored afterwards.
"""
import copy
import math
import os
import time

import pytest
import requests
import yaml

from ansible_collections.cohort.rollout.plugins.filter import rollout
from ansible_collections.cohort.rollout.plugins.module_utils import prometheus_rules

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VARIANTS = ('original', 'ultra_fast')


def _yaml(*parts):
    with open(os.path.join(ROOT, *parts)) as f:
        return yaml.safe_load(f)


ENDPOINTS = _yaml('inventories', 'local', 'group_vars', 'all', 'endpoints.yml')
PROM = 'http://127.0.0.1:%d' % ENDPOINTS['prometheus_port']
LB_API = 'http://127.0.0.1:%d' % ENDPOINTS['loadbalancer_api_port']
LB_HEADERS = {'Authorization': 'Bearer %s' % ENDPOINTS['lb_api_token']}
SPEC = rollout.rollout_spec(copy.deepcopy(_yaml('playbooks', 'group_vars', 'all', 'rollout_spec.yml')['rollout_spec_defaults']),
                            _yaml('inventories', 'local', 'group_vars', 'all', 'rollout.yml')['rollout_spec_overrides'])


def _query(expr):
    resp = requests.get(PROM + '/api/v1/query', params={'query': expr}, timeout=10)
    body = resp.json()
    assert resp.status_code == 200 and body['status'] == 'success', (expr, body)
    return body['data']['result']


def _finite(expr):
    result = _query(expr)
    values = [float(r['value'][1]) for r in result]
    return bool(values) and all(math.isfinite(v) for v in values), values


@pytest.fixture(scope='module')
def sandbox():
    try:
        ready = requests.get(PROM + '/-/ready', timeout=5)
    except requests.RequestException as exc:
        pytest.fail('the sandbox Prometheus at %s is not running (%s): run `make integration`, '
                    'which brings the sandbox up with load' % (PROM, exc))
    assert ready.status_code == 200, 'sandbox Prometheus not ready: %s' % ready.text
    # Judge nothing (and move no traffic) unless both analyzers are scraped and up.
    up = {r['metric'].get('pool'): r['value'][1] for r in _query('up{job="cohort_analyzer"}')}
    assert up == {'original': '1', 'ultra_fast': '1'}, 'sandbox analyzers not both up: %r' % up
    before = requests.get(LB_API + '/config/traffic-weights', headers=LB_HEADERS, timeout=10)
    assert before.status_code == 200, 'the sandbox weights API at %s does not answer: %s' % (LB_API, before.text)
    resp = requests.post(LB_API + '/config/traffic-weights', json={'original': 0.5, 'ultra_fast': 0.5},
                         headers=LB_HEADERS, timeout=10)
    assert resp.status_code == 200, resp.text
    try:
        # Both variants serve traffic for a whole rate window before anything is judged.
        wanted = ['%s{variant="%s"}' % (rule, v) for rule, _expr in prometheus_rules.recording_rules(SPEC) for v in VARIANTS]
        deadline = time.monotonic() + SPEC['rate_window_seconds'] + 60
        time.sleep(SPEC['rate_window_seconds'])
        while time.monotonic() < deadline and not all(_finite(e)[0] for e in wanted):
            time.sleep(2)
        yield
    finally:
        shares = before.json()
        restore = {v: shares.get('shares', shares).get(v) for v in VARIANTS} if isinstance(shares, dict) else None
        if restore and all(isinstance(x, (int, float)) for x in restore.values()):
            requests.post(LB_API + '/config/traffic-weights', json=restore, headers=LB_HEADERS, timeout=10)


def test_all_scrape_targets_up(sandbox):
    down = [r['metric'] for r in _query('up == 0')]
    assert not down, down
    jobs = {r['metric']['job'] for r in _query('up == 1')}
    assert {'cohort_analyzer', 'haproxy', 'prometheus', 'alertmanager'} <= jobs


@pytest.mark.parametrize('record', [r for r, _expr in prometheus_rules.recording_rules(SPEC)])
@pytest.mark.parametrize('variant', VARIANTS)
def test_recording_rule_has_data_for_both_variants(sandbox, record, variant):
    ok, values = _finite('%s{variant="%s"}' % (record, variant))
    assert ok, '%s{variant="%s"} returned %r' % (record, variant, values)


@pytest.mark.parametrize('panel', rollout.grafana_dashboard(SPEC)['panels'], ids=lambda p: p['title'])
def test_every_panel_query_returns_data(sandbox, panel):
    for target in panel['targets']:
        ok, values = _finite(target['expr'])
        assert ok, '%s / %s: %s returned %r' % (panel['title'], target['legendFormat'], target['expr'], values)


def test_every_gate_query_returns_data(sandbox):
    for phase in SPEC['phase_order']:
        for check in rollout.gate_checks(SPEC, phase):
            ok, values = _finite(check['query'])
            assert ok, '%s/%s: %s returned %r' % (phase, check['name'], check['query'], values)


def test_traffic_share_follows_the_weights_api(sandbox):
    _ok, values = _finite('cohort_lb_traffic_weight_share{variant="ultra_fast"}')
    assert values and abs(values[0] - 0.5) < 0.02, values


def test_alert_rules_loaded_without_errors(sandbox):
    groups = requests.get(PROM + '/api/v1/rules', timeout=10).json()['data']['groups']
    rules = {r['name']: r for g in groups for r in g['rules']}
    expected = {r['alert'] for r in prometheus_rules.alert_rules(SPEC)} | {r for r, _expr in prometheus_rules.recording_rules(SPEC)}
    assert expected <= set(rules)
    assert [n for n, r in rules.items() if r['health'] == 'err'] == []
    assert {n: rules[n]['labels']['severity'] for n in ('HighErrorRate', 'HighLatency', 'MemorySpiking')} == \
        {'HighErrorRate': 'warning', 'HighLatency': 'critical', 'MemorySpiking': 'warning'}
