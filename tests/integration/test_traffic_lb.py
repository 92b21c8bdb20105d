"""Standalone: real HAProxy + real analyzers + the weights API and module, on ports 28300-28399.

Runs without the sandbox: `pytest tests/integration/test_traffic_lb.py`.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile

import pytest
import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'bench'))
from traffic_support import ROOT, TOKEN, VENV_BIN, Lb, start_analyzer, stop  # noqa: E402  pylint: disable=wrong-import-position

FE_PORT, API_PORT = 28300, 28301
ORIG_PORTS, FAST_PORT = (28311, 28312, 28313), 28314
AUTH = {'Authorization': 'Bearer ' + TOKEN}


@pytest.fixture(scope='module')
def lb():
    workdir = tempfile.mkdtemp(prefix='traffic-lb-')
    procs = []
    balancer = None
    try:
        for port in ORIG_PORTS:
            procs.append(start_analyzer(workdir, 'original', port))
        procs.append(start_analyzer(workdir, 'ultra_fast', FAST_PORT))
        servers = [('original-o%d' % i, p, 1) for i, p in enumerate(ORIG_PORTS, 1)] + [('ultra_fast-f1', FAST_PORT, 0)]
        balancer = Lb(workdir, FE_PORT, API_PORT, servers).start()
        balancer.wait_healthy()
        yield balancer
    finally:
        if balancer:
            balancer.close()
        for proc in procs:
            stop(proc)


def weights(lb):
    return lb.client().get_weights('analyzers')


def post(lb, body, headers=None, query=''):
    # like the runbook's curl -d: form content type, JSON text as the body
    hdrs = {'Content-Type': 'application/x-www-form-urlencoded'}
    hdrs.update(AUTH if headers is None else headers)
    return requests.post(lb.api_url + '/config/traffic-weights' + query, data=body, headers=hdrs, timeout=10)


def test_runbook_curl_changes_live_split_exactly(lb):
    before = weights(lb)
    resp = post(lb, '{"original": 0.99, "ultra_fast": 0.01}')
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body['changed'] is True
    # live on return: HAProxy's own answer, read independently of the API
    live = weights(lb)
    assert live == {'original-o1': 33, 'original-o2': 33, 'original-o3': 33, 'ultra_fast-f1': 1}
    assert body['after']['weights'] == live
    assert body['before']['weights'] == before
    assert body['after']['shares'] == pytest.approx({'original': 0.99, 'ultra_fast': 0.01})
    # same request again: nothing to do
    again = post(lb, '{"original": 0.99, "ultra_fast": 0.01}')
    assert again.status_code == 200 and again.json()['changed'] is False
    got = requests.get(lb.api_url + '/config/traffic-weights', headers=AUTH, timeout=10).json()
    assert got['weights'] == live and got['shares'] == pytest.approx({'original': 0.99, 'ultra_fast': 0.01})
    # the state file was written, so a restart would keep them too
    with open(lb.state) as handle:
        assert 'ultra_fast-f1' in handle.read()


BAD_BODIES = [
    ('{"original": 0.9, "ultra_fast": 0.2}', 400, 'sum to 1'),
    ('{"original": 1.1, "ultra_fast": -0.1}', 400, 'above 1'),
    ('{"ultra_fast": -0.1, "original": 1.1}', 400, 'negative'),
    ('{"original": NaN, "ultra_fast": 0.5}', 400, 'not valid JSON'),
    ('{"original": 0.99, "turbo": 0.01}', 400, 'unknown pool'),
    ('{"original": 1}', 400, 'missing share'),
    ('{"original": 0.99, "ultra_fast": 0.01', 400, 'not valid JSON'),
    ('original=0.99&ultra_fast=0.01', 400, 'not valid JSON'),
    ('[0.99, 0.01]', 400, 'mapping'),
    ('{"original": "x", "ultra_fast": 1}', 400, 'number'),
]


@pytest.mark.parametrize('body,code,message', BAD_BODIES)
def test_bad_input_changes_nothing(lb, body, code, message):
    before = weights(lb)
    resp = post(lb, body)
    assert resp.status_code == code, resp.text
    assert message in resp.json()['error']
    assert weights(lb) == before


@pytest.mark.parametrize('headers', [{}, {'Authorization': 'Bearer wrong'}, {'Authorization': TOKEN}])
def test_token_is_required(lb, headers):
    before = weights(lb)
    assert post(lb, '{"original": 0.5, "ultra_fast": 0.5}', headers=headers).status_code == 401
    assert requests.get(lb.api_url + '/metrics', headers=headers, timeout=10).status_code == 401
    assert requests.get(lb.api_url + '/config/traffic-weights', headers=headers, timeout=10).status_code == 401
    assert weights(lb) == before
    assert requests.get(lb.api_url + '/healthz', timeout=10).status_code == 200


def test_check_mode_plans_without_applying(lb):
    before = weights(lb)
    resp = post(lb, '{"original": 0.5, "ultra_fast": 0.5}', query='?check=true')
    assert resp.status_code == 200 and resp.json()['changed'] is True and resp.json()['check'] is True
    assert weights(lb) == before


def test_positive_share_for_empty_pool(lb, tmp_path):
    """A backend without ultra_fast servers: a canary share is refused, nothing changes."""
    solo = Lb(str(tmp_path), FE_PORT + 2, API_PORT + 2, [('original-o1', ORIG_PORTS[0], 1)]).start()
    try:
        before = solo.client().get_weights('analyzers')
        resp = post(solo, '{"original": 0.99, "ultra_fast": 0.01}')
        assert resp.status_code == 400 and 'has no servers' in resp.json()['error']
        assert post(solo, '{"original": 1}').status_code == 400  # ultra_fast is a known pool: its share is missing
        assert solo.client().get_weights('analyzers') == before
        ok = post(solo, '{"original": 1, "ultra_fast": 0}')
        assert ok.status_code == 200 and ok.json()['changed'] is False
    finally:
        solo.close()


def test_weights_survive_reload_and_metrics_count_by_pool(lb):
    assert post(lb, '{"original": 0.9, "ultra_fast": 0.1}').status_code == 200
    set_weights = weights(lb)
    assert set_weights == {'original-o1': 3, 'original-o2': 3, 'original-o3': 3, 'ultra_fast-f1': 1}
    lb.reload()
    assert weights(lb) == set_weights
    lb.wait_healthy()
    before = lb.server_responses()
    session = requests.Session()
    n = 400
    for _request in range(n):
        assert session.get(lb.fe_url + '/healthz', timeout=10).status_code == 200
    after = lb.server_responses()
    fast = after['ultra_fast-f1'] - before['ultra_fast-f1']
    total = sum(after[s] - before[s] for s in after)
    assert total == n
    assert abs(fast - n * 0.1) <= 4 * math.sqrt(n * 0.1 * 0.9)
    metrics = requests.get(lb.api_url + '/metrics', headers=AUTH, timeout=10).json()
    assert metrics['pools']['ultra_fast']['requests'] >= fast
    assert metrics['requests'] >= n
    assert metrics['errorRate'] == 0
    assert metrics['latency']['samples'] >= n
    assert metrics['latency']['p50'] is not None and metrics['latency']['p50'] <= metrics['latency']['p99'] <= metrics['latency']['p999']
    assert metrics['pools']['ultra_fast']['latency']['samples'] >= fast
    assert metrics['shares'] == pytest.approx({'original': 0.9, 'ultra_fast': 0.1})


def run_playbook(lb, tmp_path, tasks_yaml, check=False):
    playbook = tmp_path / 'play.yml'
    playbook.write_text('---\n- name: Traffic weights\n  hosts: localhost\n  gather_facts: false\n  tasks:\n' + tasks_yaml)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_STDOUT_CALLBACK='ansible.builtin.json',
               PATH=VENV_BIN + os.pathsep + os.environ['PATH'])
    cmd = [os.path.join(VENV_BIN, 'ansible-playbook'), '-i', 'localhost,', '-c', 'local', str(playbook),
           '-e', json.dumps({'sock': lb.sock, 'api': lb.api_url, 'token': TOKEN, 'ansible_python_interpreter': os.path.join(VENV_BIN, 'python')})]
    if check:
        cmd.append('--check')
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    out = json.loads(proc.stdout)
    return proc.returncode, [t['hosts']['localhost'] for t in out['plays'][0]['tasks']]


def test_module_both_drivers(lb, tmp_path):
    start = weights(lb)
    tasks = '''
    - name: Haproxy driver, check mode
      cohort.rollout.traffic_weights:
        shares: {original: 0.75, ultra_fast: 0.25}
        socket: "{{ sock }}"
      check_mode: true
      diff: true
    - name: Haproxy driver, apply
      cohort.rollout.traffic_weights:
        shares: {original: 0.75, ultra_fast: 0.25}
        socket: "{{ sock }}"
    - name: Haproxy driver, again
      cohort.rollout.traffic_weights:
        shares: {original: 0.75, ultra_fast: 0.25}
        socket: "{{ sock }}"
    - name: Http driver, apply
      cohort.rollout.traffic_weights:
        driver: http
        api_url: "{{ api }}"
        api_token: "{{ token }}"
        shares: {original: 1, ultra_fast: 0}
    - name: Http driver, again
      cohort.rollout.traffic_weights:
        driver: http
        api_url: "{{ api }}"
        api_token: "{{ token }}"
        shares: {original: 1, ultra_fast: 0}
    - name: Bad input, haproxy driver
      cohort.rollout.traffic_weights:
        shares: {original: 0.5, ultra_fast: 0.6}
        socket: "{{ sock }}"
      ignore_errors: true
    - name: Bad input, http driver, wrong token
      cohort.rollout.traffic_weights:
        driver: http
        api_url: "{{ api }}"
        api_token: nope
        shares: {original: 0.5, ultra_fast: 0.5}
      ignore_errors: true
    - name: Unknown pool, haproxy driver
      cohort.rollout.traffic_weights:
        shares: {original: 0.5, turbo: 0.5}
        socket: "{{ sock }}"
      ignore_errors: true
'''
    rc, results = run_playbook(lb, tmp_path, tasks)
    assert rc == 0, results
    check, apply, again, http, http_again, bad, bad_token, unknown = results
    assert check['changed'] is True and check['before']['weights'] == start
    assert check['diff']['after']['shares'] == pytest.approx({'original': 0.75, 'ultra_fast': 0.25})
    assert apply['changed'] is True
    assert apply['weights'] == {'original-o1': 1, 'original-o2': 1, 'original-o3': 1, 'ultra_fast-f1': 1}
    assert again['changed'] is False
    assert http['changed'] is True and http['weights']['ultra_fast-f1'] == 0 and http['shares']['ultra_fast'] == 0
    assert http_again['changed'] is False
    assert bad['failed'] is True and 'sum to 1' in bad['msg']
    assert bad_token['failed'] is True and '401' in bad_token['msg']
    assert unknown['failed'] is True and 'unknown pool' in unknown['msg']
    assert 'nope' not in json.dumps(bad_token)  # api_token is no_log
    assert weights(lb) == {'original-o1': 1, 'original-o2': 1, 'original-o3': 1, 'ultra_fast-f1': 0}
