"""Unit tests of the rollout guard (roles/loadbalancer/files/rollout_guard.py) and the API's fence.

The guard runs for real (its HTTP server on a free loopback port, its state file and journal in tmp_path);
only HAProxy is an in-memory stand-in (the socket client is tested against real HAProxy in
tests/integration). Time is a fake clock where leases matter.
"""
from __future__ import annotations

import importlib.util
import json
import os
import stat
import threading
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer

import pytest

from ansible_collections.cohort.rollout.plugins.module_utils import guard_state

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, 'roles', 'loadbalancer', 'files', name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


guard_mod = load('rollout_guard')
api_mod = load('traffic_api')
TOKEN = 'guard-unit-token'


class FakeLB:
    def __init__(self, weights):
        self.weights = dict(weights)
        self.broken = False

    def get_weights(self, backend):
        if self.broken:
            raise OSError('admin socket: connection refused')
        return dict(self.weights)

    def set_weights(self, backend, updates):
        for server, weight in updates:
            self.weights[server] = weight

    def save_state(self, path):
        pass


class Clock:
    def __init__(self):
        self.now = 1800000000.0

    def __call__(self):
        return self.now


@pytest.fixture()
def setup(tmp_path):
    lb = FakeLB({'original-a': 99, 'ultra_fast-b': 1})
    clock = Clock()
    state = str(tmp_path / 'guard.json')
    journal = str(tmp_path / 'journal.jsonl')
    guard = guard_mod.Guard(state, journal, lb, 'analyzers', ['original', 'ultra_fast'], clock=clock)
    return guard, lb, clock, state, journal


def entries(journal):
    with open(journal, encoding='utf-8') as handle:
        return [json.loads(line) for line in handle]


ARM = dict(phase='canary', fallback={'original': 1, 'ultra_fast': 0}, lease_seconds=30,
           alerts=['CanaryGateErrorRate'], run={'id': 'ctl:1:2'})


def test_arm_renew_disarm_and_files_are_0600(setup):
    guard, lb, clock, state, journal = setup
    armed = guard.arm(dict(ARM))
    assert armed['generation'] == 1
    clock.now += 20
    guard.renew({'generation': 1})
    clock.now += 20
    assert guard.tick() is None  # renewed: 30 s from the renewal, not from the arm
    assert guard.disarm({'generation': 1, 'outcome': 'passed'})['changed']
    assert lb.weights == {'original-a': 99, 'ultra_fast-b': 1}  # never touched
    for path in (state, journal, state + '.lock'):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    assert [e['event'] for e in entries(journal)] == ['started', 'armed', 'renewed', 'disarmed']
    on_disk = guard_state.load(state)
    assert on_disk['armed'] is None and on_disk['generation'] == 1 and on_disk['fence'] == 1


def test_lease_expiry_reverts_through_the_traffic_code_and_fences(setup):
    guard, lb, clock, state, journal = setup
    guard.arm(dict(ARM))
    clock.now += 30.0
    result = guard.tick()
    assert result['reverted'] and lb.weights == {'original-a': 1, 'ultra_fast-b': 0}
    last = guard.snapshot()['last_revert']
    assert last['reason'] == 'lease_expired' and last['phase'] == 'canary' and last['reconciled'] is False
    assert last['shares'] == {'original': 1.0, 'ultra_fast': 0.0}
    assert last['shares_before'] == {'original': 0.99, 'ultra_fast': 0.01}
    # The orphan cannot renew or disarm any more; its generation is fenced off.
    with pytest.raises(guard_mod.Refused) as refused:
        guard.renew({'generation': 1})
    assert refused.value.status == 409 and 'fenced' in refused.value.message
    assert guard.snapshot()['fence'] == 2
    events = [e['event'] for e in entries(journal)]
    assert events[-2:] == ['reverted', 'refused']


def test_restart_comes_back_armed_or_reverts(setup, tmp_path):
    guard, lb, clock, state, journal = setup
    guard.arm(dict(ARM))
    # A new process reads the state: still armed, same generation and lease.
    again = guard_mod.Guard(state, journal, lb, 'analyzers', ['original', 'ultra_fast'], clock=clock)
    assert again.snapshot()['armed']['generation'] == 1 and again.tick() is None
    clock.now += 31
    third = guard_mod.Guard(state, journal, lb, 'analyzers', ['original', 'ultra_fast'], clock=clock)
    assert third.tick()['reverted'] and lb.weights['ultra_fast-b'] == 0


def test_failed_revert_is_retried_until_it_works(setup):
    guard, lb, clock, state, journal = setup
    guard.arm(dict(ARM))
    lb.broken = True
    clock.now += 31
    assert guard.tick()['reverted'] is False
    assert guard.snapshot()['revert_pending']['reason'] == 'lease_expired'
    assert 'cohort_guard_revert_pending 1' in guard.metrics()
    lb.broken = False
    assert guard.tick()['reverted'] and lb.weights['ultra_fast-b'] == 0
    assert [e['event'] for e in entries(journal)][-2:] == ['revert_failed', 'reverted']


@pytest.mark.parametrize('body, message', [
    (dict(ARM, fallback={'original': 1, 'ultra_fast': 0, 'blue': 0}), 'unknown: blue'),
    (dict(ARM, fallback={'original': 0.5, 'ultra_fast': 0.2}), 'sum to 1'),
    (dict(ARM, fallback={'original': 1}), 'missing: ultra_fast'),
    (dict(ARM, lease_seconds=0), 'lease_seconds'),
    (dict(ARM, lease_seconds='30'), 'lease_seconds'),
    (dict(ARM, phase='Canary; rm'), 'phase must be'),
    (dict(ARM, alerts='CanaryGateErrorRate'), 'alerts must be a list'),
    (dict(ARM, generation=0), 'positive integer'),
])
def test_bad_arm_is_refused_nothing_changed_journaled(setup, body, message):
    guard, lb, clock, state, journal = setup
    with pytest.raises(guard_mod.Refused) as refused:
        guard.arm(body)
    assert refused.value.status == 400 and message in refused.value.message
    assert guard.snapshot()['armed'] is None and guard.snapshot()['generation'] == 0
    assert not os.path.exists(state)
    assert entries(journal)[-1]['event'] == 'refused' and message in entries(journal)[-1]['error']


def test_generations_only_go_up_and_a_new_arm_fences_the_old(setup):
    guard, lb, clock, state, journal = setup
    assert guard.arm(dict(ARM, generation=5))['generation'] == 5
    with pytest.raises(guard_mod.Refused) as refused:
        guard.arm(dict(ARM, generation=5))
    assert refused.value.status == 409
    assert guard.arm(dict(ARM, phase='ramp'))['generation'] == 6
    with pytest.raises(guard_mod.Refused):
        guard.renew({'generation': 5})


def alert_payload(name, phase='canary', status='firing'):
    return {'version': '4', 'status': status, 'receiver': 'rollout-guard',
            'alerts': [{'status': status, 'labels': {'alertname': name, 'phase': phase, 'action': 'rollback'}}]}


def test_firing_trigger_alert_reverts(setup):
    guard, lb, clock, state, journal = setup
    guard.arm(dict(ARM))
    result = guard.alert(alert_payload('CanaryGateErrorRate'))
    assert result['reverted'] and lb.weights['ultra_fast-b'] == 0
    assert guard.snapshot()['last_revert']['reason'] == 'alert'
    assert guard.snapshot()['last_revert']['detail']['alert'] == 'CanaryGateErrorRate'


@pytest.mark.parametrize('payload, status, message', [
    ({'alerts': 'x'}, 400, 'not an Alertmanager webhook payload'),
    ({'alerts': [{'status': 'firing', 'labels': {}}]}, 400, 'not an Alertmanager webhook payload'),
    (alert_payload('HighLatency'), 409, 'not rollback triggers of the armed phase canary'),
    (alert_payload('CanaryGateErrorRate', phase='ramp'), 409, 'not rollback triggers'),
])
def test_bad_or_foreign_alerts_change_nothing(setup, payload, status, message):
    guard, lb, clock, state, journal = setup
    guard.arm(dict(ARM))
    with pytest.raises(guard_mod.Refused) as refused:
        guard.alert(payload)
    assert refused.value.status == status and message in refused.value.message
    assert lb.weights['ultra_fast-b'] == 1 and guard.snapshot()['armed']
    assert entries(journal)[-1]['event'] == 'refused'


def test_alert_when_nothing_is_armed_is_refused(setup):
    guard, lb, clock, state, journal = setup
    with pytest.raises(guard_mod.Refused) as refused:
        guard.alert(alert_payload('CanaryGateErrorRate'))
    assert refused.value.status == 409 and 'no phase is armed' in refused.value.message
    assert guard.alert(alert_payload('CanaryGateErrorRate', status='resolved'))['reverted'] is False


def test_fence_for_a_rollback_and_reconcile(setup):
    guard, lb, clock, state, journal = setup
    guard.arm(dict(ARM))
    clock.now += 31
    guard.tick()
    with pytest.raises(guard_mod.Refused):
        guard.reconciled({'generation': 7})
    assert guard.reconciled({'generation': 1, 'by': 'ctl:9:9'})['changed']
    assert guard.reconciled({'generation': 1})['changed'] is False
    assert guard.snapshot()['last_revert']['reconciled'] is True
    guard.arm(dict(ARM, phase='ramp'))
    fenced = guard.fence({'reason': 'rollback.yml'})
    assert fenced['changed'] and fenced['fence'] == 3 and guard.snapshot()['armed'] is None


# -- HTTP: token, JSON errors, metrics, and the weights API's fence ------------------------------------


@pytest.fixture()
def http_guard(setup):
    guard = setup[0]
    handler = type('H', (guard_mod.Handler,), {'guard': guard, 'token': TOKEN.encode()})
    server = ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield 'http://127.0.0.1:%d' % server.server_address[1], setup
    server.shutdown()
    server.server_close()


def call(url, path, body=None, token=TOKEN, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {'Content-Type': 'application/json'}
    if token:
        headers['Authorization'] = 'Bearer ' + token
    req = urllib.request.Request(url + path, data=data, headers=headers, method='POST' if data is not None else 'GET')
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_http_token_json_and_metrics(http_guard):
    url, (guard, lb, clock, state, journal) = http_guard
    assert call(url, '/arm', ARM, token='wrong')[0] == 401
    assert call(url, '/state', token=None)[0] == 401
    assert call(url, '/arm', raw=b'{not json')[0] == 400
    status, body = call(url, '/arm', ARM)
    assert status == 200 and json.loads(body)['generation'] == 1
    status, body = call(url, '/state')
    assert json.loads(body)['armed']['phase'] == 'canary'
    status, text = call(url, '/metrics', token=None)
    assert status == 200 and 'cohort_guard_armed{phase="canary"} 1' in text and 'cohort_guard_generation 1' in text
    assert 'cohort_guard_refused_total{request="auth"} 2' in text
    assert TOKEN not in open(journal).read()
    status, body = call(url, '/journal?since=0')
    assert [e['event'] for e in json.loads(body)['entries']][-1] == 'armed'


def test_weights_api_refuses_a_fenced_generation(tmp_path, setup):
    guard, lb, clock, state, journal = setup
    guard.arm(dict(ARM))
    args = type('Args', (), dict(guard_state=state, backend='analyzers', state_file=None,
                                 pools=['original', 'ultra_fast']))()
    api = api_mod.Api.__new__(api_mod.Api)
    api.args, api.client, api.apply_lock = args, lb, threading.Lock()
    shares = {'original': 0.9, 'ultra_fast': 0.1}
    assert api.set_weights(shares, False, generation=1)['changed']  # the armed generation may move traffic
    clock.now += 31
    guard.tick()  # the controller died: reverted, generation 1 fenced off
    with pytest.raises(guard_state.Fenced):
        api.set_weights(shares, False, generation=1)
    assert lb.weights['ultra_fast-b'] == 0
    # Without the header (an operator, a rollback) the API is not fenced.
    assert api.set_weights({'original': 1, 'ultra_fast': 0}, False)['changed'] is False


def test_an_alert_firing_since_before_the_arm_is_ignored_a_new_one_reverts(setup):
    """Alertmanager re-sends an alert until it resolves: one that began in an earlier run of the phase
    (startsAt before this arm, nanoseconds as Alertmanager writes them) changes nothing."""
    guard, lb, clock, state, journal = setup
    guard.arm(dict(ARM))
    old = alert_payload('CanaryGateErrorRate')
    old['alerts'][0]['startsAt'] = '2027-01-15T07:59:00.123456789Z'
    result = guard.alert(old)
    assert result['reverted'] is False and 'fired before this arm' in result['why']
    assert lb.weights['ultra_fast-b'] == 1 and guard.snapshot()['armed']
    assert entries(journal)[-1]['event'] == 'alert_ignored'
    same_instant_other_zone = alert_payload('CanaryGateErrorRate')
    same_instant_other_zone['alerts'][0]['startsAt'] = '2027-01-15T09:00:05+01:00'  # 08:00:05Z, after the arm
    assert guard.alert(same_instant_other_zone)['reverted'] and lb.weights['ultra_fast-b'] == 0
