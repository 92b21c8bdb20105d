"""playbooks/status.yml against the sandbox (issue 16): it shows what the sandbox really is, changes nothing.

Every answer is checked against the sandbox itself: the weights API's own GET, the lock file on
the load balancer host, the ultra_fast analyzer's port, the report. Run: make integration (or,
with the sandbox up: pytest -q tests/integration/test_status.py).
"""

import json
import os
import socket
import subprocess
import urllib.request

import pytest

from sandbox_support import BIN, ENV, ROOT, inventory

STATE = os.path.join(ROOT, '.sandbox')
REPORT = os.path.join(STATE, 'report.json')
LOCK = os.path.join(STATE, 'rollout.lock')


def run(*args, playbook='status.yml'):
    return subprocess.run([os.path.join(BIN, 'ansible-playbook'), 'playbooks/' + playbook] + list(args), cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=900, check=False)


def ansible(host, module, args):
    return subprocess.run([os.path.join(BIN, 'ansible'), host, '-m', module, '-a', args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300, check=False)


def port_open(port):
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(('127.0.0.1', port)) == 0


@pytest.fixture(scope='module')
def lb():
    hostvars = inventory('lb-1')
    ultra = inventory('analyzer-ultra-fast-1')
    return dict(api=hostvars['lb_api_url'], token=hostvars['lb_api_token'], ultra_port=int(ultra['analyzer_port']))


def shares(lb):
    req = urllib.request.Request(lb['api'] + '/config/traffic-weights', headers={'Authorization': 'Bearer ' + lb['token']})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)['shares']


def status(tmp_path, *args):
    out = tmp_path / 'status.json'
    proc = run('-e', 'status_file=%s' % out, *args)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc.stdout, json.loads(out.read_text())


def snapshot():
    files = {}
    for path in (REPORT, LOCK):
        try:
            with open(path, 'rb') as handle:
                files[path] = handle.read()
        except OSError:
            files[path] = None
    return files


def test_status_tells_the_sandbox_as_it_is_and_changes_nothing(tmp_path, lb):
    before = snapshot()
    before_shares = shares(lb)
    text, doc = status(tmp_path)
    assert 'ROLLOUT STATUS' in text and 'changed=0' in text and 'failed=0' in text
    assert doc['shares']['ok'] and doc['shares']['shares'] == before_shares
    assert [lock['host'] for lock in doc['locks']] == ['lb-1'] and doc['locks'][0]['ok']
    assert doc['locks'][0]['held'] == os.path.exists(LOCK)
    ultra = doc['candidate']['hosts']
    assert [h['host'] for h in ultra] == ['analyzer-ultra-fast-1']
    assert ultra[0]['state'] == ('running' if port_open(lb['ultra_port']) else 'stopped'), ultra
    if os.path.exists(REPORT):
        with open(REPORT, encoding='utf-8') as handle:
            report = json.load(handle)
        assert [(p['phase'], p['status']) for p in doc['phases']] == [
            (p, report[p]['status']) for p in ('canary', 'ramp', 'rollout') if p in report]
    assert snapshot() == before and shares(lb) == before_shares
    # The same in check mode, and the JSON on stdout with status_format=json.
    checked, doc_check = status(tmp_path, '--check')
    assert 'changed=0' in checked and doc_check['shares'] == doc['shares']
    assert doc_check['candidate'] == doc['candidate'] and doc_check['phases'] == doc['phases']
    as_json = run('-e', 'status_format=json')
    assert as_json.returncode == 0 and '"headline":' in as_json.stdout and '"warnings":' in as_json.stdout
    assert snapshot() == before
    assert lb['token'] not in text and lb['token'] not in json.dumps(doc)


def test_status_names_the_lock_holder_and_a_stale_lock(tmp_path, lb):
    assert not os.path.exists(LOCK), 'a rollout holds the lock: cannot test the lock view now'
    # Taken by an ad-hoc run that has ended since: a lock held by a dead run of this controller.
    took = ansible('lb-1', 'cohort.rollout.rollout_lock', 'path=%s phase=status-test ttl=600' % LOCK)
    assert took.returncode == 0, took.stdout
    try:
        text, doc = status(tmp_path)
        lock = doc['locks'][0]
        assert lock['held'] and lock['holder']['phase'] == 'status-test' and lock['stale'] is True
        assert 'phase status-test' in text and 'STALE' in text
        assert any('STALE' in w for w in doc['warnings'])
        assert os.path.exists(LOCK)  # only read
    finally:
        freed = ansible('lb-1', 'cohort.rollout.rollout_lock', 'path=%s state=absent break_lock=true' % LOCK)
        assert freed.returncode == 0, freed.stdout
    _text, doc = status(tmp_path)
    assert doc['locks'][0]['held'] is False


def test_status_sees_the_candidate_stopped_after_a_rollback(tmp_path, lb):
    rolled = run('-e', json.dumps({'rollback_reason': 'status test', 'rollout_break_lock': True}), playbook='rollback.yml')
    assert rolled.returncode == 0, rolled.stdout[-4000:]
    try:
        assert not port_open(lb['ultra_port'])
        text, doc = status(tmp_path)
        assert doc['candidate']['hosts'][0]['state'] == 'stopped'
        assert 'candidate ultra_fast on analyzer-ultra-fast-1: STOPPED' in text
        assert doc['shares']['shares'] == {'original': 1.0, 'ultra_fast': 0.0}
        assert doc['headline'].startswith('ROLLED BACK') or doc['rollback'] is not None
    finally:
        restored = run('--limit', 'analyzers', playbook='provision.yml')
        assert restored.returncode == 0, restored.stdout[-3000:]
    _text, doc = status(tmp_path)
    assert doc['candidate']['hosts'][0]['state'] == 'running'
