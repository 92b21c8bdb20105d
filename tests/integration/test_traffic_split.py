"""The traffic split through the sandbox's real HAProxy and real analyzers (`make sandbox` first).

For 1% and 10% to ultra_fast, >= 10,000 discover requests enter at lb_frontend_url;
the share that reached ultra_fast, counted from HAProxy's own counters (its
Prometheus exporter) and from the analyzers' own cohort_discovery_requests_total,
must lie within 4 binomial standard deviations of the share asked for. A reload
of HAProxy through the role's handler keeps the weights. The weights found before
the test are put back at the end.
"""
from __future__ import annotations

import concurrent.futures
import json
import math
import os
import re
import subprocess
import sys
import time

import pytest
import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'bench'))
from traffic_support import ROOT, VENV_BIN  # noqa: E402  pylint: disable=wrong-import-position

REQUESTS_PER_SHARE = 10000
WORKERS = 8


def sandbox_vars():
    """The contract's variables, rendered by Ansible itself (ansible-inventory does not template)."""
    expr = ('{{ {"frontend": lb_frontend_url, "api": lb_api_url, "token": lb_api_token,'
            ' "exporter": "http://" ~ loadbalancer_exporter_address | default("127.0.0.1") ~ ":" ~ loadbalancer_exporter_port,'
            ' "ports": dict(groups["analyzers"] | zip(groups["analyzers"] | map("extract", hostvars, "analyzer_port") | list)),'
            ' "hosts": dict(groups["analyzers"] | zip(groups["analyzers"] | map("extract", hostvars, "ansible_host") | list))} | to_json }}')
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_STDOUT_CALLBACK='ansible.builtin.json',
               ANSIBLE_LOAD_CALLBACK_PLUGINS='1')
    proc = subprocess.run([os.path.join(VENV_BIN, 'ansible'), 'lb-1', '-m', 'ansible.builtin.debug', '-a', 'msg=' + expr],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    msg = out['plays'][0]['tasks'][0]['hosts']['lb-1']['msg']
    return json.loads(msg) if isinstance(msg, str) else msg


@pytest.fixture(scope='module')
def sandbox():
    try:
        conf = sandbox_vars()
    except (AssertionError, ValueError, KeyError) as exc:
        pytest.fail('cannot read the sandbox inventory: %s' % exc)
    try:
        requests.get(conf['api'] + '/healthz', timeout=3).raise_for_status()
    except requests.RequestException as exc:
        # After `make sandbox` the load balancer must be up: a dead one is a failure, never a skip.
        pytest.fail('the sandbox load balancer is not up (make sandbox first): %s' % exc)
    conf['auth'] = {'Authorization': 'Bearer ' + conf['token']}
    ensure_analyzers_up(conf)
    before = requests.get(conf['api'] + '/config/traffic-weights', headers=conf['auth'], timeout=10).json()
    yield conf
    # put back the split found before the test
    requests.post(conf['api'] + '/config/traffic-weights', headers=conf['auth'], timeout=10,
                  data=json.dumps({p: (s if s is not None else 0) for p, s in before['shares'].items()}))


def server_states(conf):
    text = requests.get(conf['exporter'] + '/metrics', timeout=10).text
    states = {}
    for m in re.finditer(r'haproxy_server_status\{([^}]*)\} (\S+)', text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get('proxy') == 'analyzers' and float(m.group(2)) == 1:
            states[labels['server']] = labels.get('state')
    return states


def ensure_analyzers_up(conf):
    """Other tests (rollback drills) stop ultra_fast: start the analyzers again as the sandbox does."""
    def down():
        out = []
        for host, port in conf['ports'].items():
            try:
                requests.get('http://%s:%s/healthz' % (conf['hosts'][host], port), timeout=3).raise_for_status()
            except requests.RequestException:
                out.append(host)
        return out
    if down():
        env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), PATH=VENV_BIN + os.pathsep + os.environ['PATH'])
        run = subprocess.run([os.path.join(VENV_BIN, 'ansible-playbook'), 'playbooks/provision.yml', '--limit', 'analyzers'],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
        assert run.returncode == 0 and not down(), 'analyzers %s down and provision failed: %s' % (down(), run.stdout[-2000:])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = server_states(conf)
        if states and all(state == 'UP' for state in states.values()):
            return
        time.sleep(1)
    pytest.fail('HAProxy does not see every analyzer UP: %r' % server_states(conf))


def haproxy_counts(conf):
    """Responses per pool from HAProxy's own exporter (haproxy_server_http_responses_total)."""
    text = requests.get(conf['exporter'] + '/metrics', timeout=10).text
    counts = {}
    for line in text.splitlines():
        m = re.match(r'haproxy_server_http_responses_total\{([^}]*)\} (\S+)', line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get('proxy') != 'analyzers':
            continue
        pool = labels['server'].split('-', 1)[0]
        counts[pool] = counts.get(pool, 0) + float(m.group(2))
    return counts


def analyzer_counts(conf):
    """cohort_discovery_requests_total{variant} summed over every analyzer of the sandbox."""
    counts = {}
    for host, port in conf['ports'].items():
        text = requests.get('http://%s:%s/metrics' % (conf['hosts'][host], port), timeout=10).text
        for line in text.splitlines():
            m = re.match(r'cohort_discovery_requests_total\{[^}]*variant="(\w+)"[^}]*\} (\S+)', line)
            if m:
                counts[m.group(1)] = counts.get(m.group(1), 0) + float(m.group(2))
    return counts


def send(conf, n):
    url = conf['frontend'] + '/v1/cohorts/discover'

    def worker(count):
        ok = 0
        with requests.Session() as session:
            for i in range(count):
                resp = session.post(url, json={'learner_ids': [1 + i % 50]}, timeout=30)
                ok += resp.status_code == 200
        return ok

    per = [n // WORKERS + (1 if i < n % WORKERS else 0) for i in range(WORKERS)]
    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        return sum(pool.map(worker, per))


def delta(after, before, pool):
    return after.get(pool, 0) - before.get(pool, 0)


@pytest.mark.parametrize('share', [0.01, 0.10])
def test_observed_share_matches_requested(sandbox, share):
    resp = requests.post(sandbox['api'] + '/config/traffic-weights', headers=sandbox['auth'], timeout=10,
                         data=json.dumps({'original': round(1 - share, 10), 'ultra_fast': share}))
    assert resp.status_code == 200, resp.text
    assert resp.json()['after']['shares']['ultra_fast'] == pytest.approx(share, abs=1e-12)
    set_weights = resp.json()['after']['weights']
    hap0, ana0 = haproxy_counts(sandbox), analyzer_counts(sandbox)
    ok = send(sandbox, REQUESTS_PER_SHARE)
    hap1, ana1 = haproxy_counts(sandbox), analyzer_counts(sandbox)
    assert ok == REQUESTS_PER_SHARE
    # the sandbox is shared: a phase or rollback run elsewhere during the burst invalidates the count
    log = requests.get(sandbox['api'] + '/config/traffic-weights', headers=sandbox['auth'], timeout=10).json()
    assert log['weights'] == set_weights, 'weights changed by someone else during the test: %r -> %r' % (set_weights, log['weights'])
    for source, before, after in (('haproxy', hap0, hap1), ('analyzers', ana0, ana1)):
        fast = delta(after, before, 'ultra_fast')
        total = fast + delta(after, before, 'original')
        assert total >= REQUESTS_PER_SHARE, (source, total)  # the sandbox's load generator may add some
        sd = math.sqrt(total * share * (1 - share))
        print('%s: %d of %d to ultra_fast (%.4f%%), asked %.2f%%, 4 sd = %.1f' % (source, fast, total, 100 * fast / total, 100 * share, 4 * sd))
        assert abs(fast - total * share) <= 4 * sd, (source, fast, total, share)


def test_weights_unchanged_after_reload_by_the_role(sandbox):
    resp = requests.post(sandbox['api'] + '/config/traffic-weights', headers=sandbox['auth'], timeout=10,
                         data='{"original": 0.9, "ultra_fast": 0.1}')
    assert resp.status_code == 200
    set_weights = resp.json()['after']['weights']
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), PATH=VENV_BIN + os.pathsep + os.environ['PATH'])
    playbook = [os.path.join(VENV_BIN, 'ansible-playbook'), 'playbooks/provision.yml', '--limit', 'loadbalancers']
    try:
        # a config change (maxconn) makes the role save the state and reload HAProxy (USR2), not restart it
        run = subprocess.run(playbook + ['-e', 'loadbalancer_maxconn=4097'], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
        assert run.returncode == 0, run.stdout[-3000:]
        assert 'RUNNING HANDLER [cohort.rollout.loadbalancer : Reload HAProxy (daemon)]' in run.stdout or \
            'RUNNING HANDLER [cohort.rollout.loadbalancer : Reload HAProxy (systemd)]' in run.stdout
        got = requests.get(sandbox['api'] + '/config/traffic-weights', headers=sandbox['auth'], timeout=10).json()
        assert got['weights'] == set_weights
    finally:
        subprocess.run(playbook, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    got = requests.get(sandbox['api'] + '/config/traffic-weights', headers=sandbox['auth'], timeout=10).json()
    assert got['weights'] == set_weights
