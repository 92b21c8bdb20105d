"""The monitoring role against a real Prometheus and Alertmanager (Debian binaries, loopback, ports 2859x).

Runs the role with ansible-playbook on a throw-away inventory (its own ports and state
directory, no sandbox needed), then:

* the three runbook alerts are listed by Prometheus's /api/v1/rules with their severities;
* Alertmanager is ready although its webhook receiver is unreachable;
* changing ONE threshold in the rollout spec and re-running the role changes the gate
  check, the alert rule loaded by the running Prometheus (reloaded, not restarted) and
  the dashboard threshold, together, and nothing else;
* monitoring_state=stopped stops both servers.
"""
import json
import os
import subprocess
import time

import pytest
import requests
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROM_PORT, AM_PORT = 28591, 28592
PROM = 'http://127.0.0.1:%d' % PROM_PORT
AM = 'http://127.0.0.1:%d' % AM_PORT

PLAYBOOK = """
- name: Monitoring under test
  hosts: monitoring
  gather_facts: true
  gather_subset: [min]
  vars_files:
    - {root}/playbooks/group_vars/all/rollout_spec.yml
  roles:
    - role: cohort.rollout.monitoring
  post_tasks:
    - name: Record the canary gate checks as the phase playbooks would get them
      ansible.builtin.copy:
        content: "{{{{ rollout_spec | cohort.rollout.gate_checks('canary') | to_json }}}}"
        dest: "{{{{ rollout_state_dir }}}}/canary_checks.json"
        mode: "0644"
      when: monitoring_state | default('started') == 'started'
"""


def _inventory(state_dir):
    return {'all': {
        'vars': {'ansible_connection': 'local', 'ansible_host': '127.0.0.1',
                 'ansible_python_interpreter': '{{ ansible_playbook_python }}',
                 'rollout_state_dir': state_dir, 'rollout_listen_address': '127.0.0.1',
                 'rollout_manage_users': False, 'prometheus_port': PROM_PORT, 'alertmanager_port': AM_PORT,
                 'loadbalancer_exporter_port': 28594, 'monitoring_scrape_interval': '1s',
                 'monitoring_alertmanager_webhook_url': 'http://127.0.0.1:28599/unreachable'},
        'children': {
            'monitoring': {'hosts': {'mon-test': None}},
            'analyzers_original': {'hosts': {'ana-o': {'analyzer_port': 28596}}},
            'analyzers_ultra_fast': {'hosts': {'ana-u': {'analyzer_port': 28597}}},
            'loadbalancers': {'hosts': {'lb-test': None}},
        }}}


class Env(object):
    def __init__(self, tmp):
        self.state = os.path.join(tmp, 'state')
        self.inventory = os.path.join(tmp, 'hosts.yml')
        self.playbook = os.path.join(tmp, 'site.yml')
        with open(self.inventory, 'w') as f:
            yaml.safe_dump(_inventory(self.state), f)
        with open(self.playbook, 'w') as f:
            f.write(PLAYBOOK.format(root=ROOT))

    def run(self, *extra):
        env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_NOCOLOR='1',
                   PATH=os.path.join(ROOT, '.venv', 'bin') + os.pathsep + os.environ.get('PATH', ''))
        res = subprocess.run(['ansible-playbook', '-i', self.inventory, self.playbook] + list(extra),
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-3000:]
        return res.stdout

    def path(self, *parts):
        return os.path.join(self.state, 'monitoring', *parts)


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    e = Env(str(tmp_path_factory.mktemp('monitoring-role')))
    try:
        e.run()
        yield e
    finally:
        try:
            if os.path.exists(e.path('run', 'prometheus.pid')) or os.path.exists(e.path('run', 'alertmanager.pid')):
                e.run('-e', 'monitoring_state=stopped')
        finally:
            # If the role could not stop them, stop our own processes by their pidfiles.
            for name in ('prometheus', 'alertmanager'):
                pidfile = e.path('run', name + '.pid')
                if os.path.exists(pidfile):
                    with open(pidfile) as f:
                        pid = int(f.read().strip())
                    with open('/proc/%d/cmdline' % pid, 'rb') as f:
                        if b'prometheus' in f.read():
                            os.kill(pid, 15)


def _rules():
    groups = requests.get(PROM + '/api/v1/rules', timeout=5).json()['data']['groups']
    return {r['name']: r for g in groups for r in g['rules']}


def test_runbook_alerts_listed_with_severities(env):
    rules = _rules()
    expected = {'HighErrorRate': ('warning', 'cohort_discovery_error_rate', 0.005),
                'HighLatency': ('critical', 'cohort_discovery_latency_p99', 200),
                'MemorySpiking': ('warning', 'process_memory_usage_bytes', 2 << 30)}
    for name, (severity, metric, threshold) in expected.items():
        assert rules[name]['type'] == 'alerting'
        assert rules[name]['labels']['severity'] == severity
        # Prometheus prints numbers its own way (2.147483648e+09).
        left, right = rules[name]['query'].split(' > ')
        assert left == metric and float(right) == threshold
        assert rules[name]['health'] != 'err'
    assert rules['cohort_discovery_latency_p99']['type'] == 'recording'


def test_scrape_targets_from_inventory(env):
    targets = requests.get(PROM + '/api/v1/targets', timeout=5).json()['data']['activeTargets']
    by_job = {}
    for t in targets:
        by_job.setdefault(t['labels']['job'], []).append(t['labels'])
    assert sorted(by_job) == ['alertmanager', 'cohort_analyzer', 'haproxy', 'prometheus']
    pools = sorted((l['pool'], l['instance']) for l in by_job['cohort_analyzer'])
    assert pools == [('original', '127.0.0.1:28596'), ('ultra_fast', '127.0.0.1:28597')]
    assert by_job['haproxy'][0]['instance'] == '127.0.0.1:28594'


def test_listens_on_loopback_and_alertmanager_ready_without_receiver(env):
    assert requests.get(AM + '/-/ready', timeout=5).status_code == 200
    status = requests.get(AM + '/api/v2/status', timeout=5).json()
    assert 'http://127.0.0.1:28599/unreachable' in status['config']['original']
    flags = requests.get(PROM + '/api/v1/status/flags', timeout=5).json()['data']
    assert flags['web.listen-address'] == '127.0.0.1:%d' % PROM_PORT
    assert flags['web.enable-lifecycle'] == 'true'
    assert flags['storage.tsdb.path'] == env.path('prometheus', 'data')


def test_one_threshold_changes_gate_alert_and_dashboard_together(env):
    def snapshot():
        with open(env.path('grafana', 'dashboards', 'cohort-rollout.json')) as f:
            dash = json.load(f)
        with open(os.path.join(env.state, 'canary_checks.json')) as f:
            checks = {c['name']: c for c in json.load(f)}
        steps = {p['title']: [s['value'] for s in p['fieldConfig']['defaults']['thresholds']['steps']]
                 for p in dash['panels']}
        pid = open(env.path('run', 'prometheus.pid')).read().strip()
        return checks, _rules(), steps, pid

    checks0, rules0, steps0, pid0 = snapshot()
    assert checks0['error_rate']['threshold'] == 0.01
    assert ' >= 0.01 ' in rules0['CanaryGateErrorRate']['query']
    assert 0.01 in steps0['Error Rate']

    override = {'rollout_spec_overrides': {'phases': {'canary': {'gates': {'error_rate': {'threshold': 0.02}}}}}}
    env.run('-e', json.dumps(override))
    deadline = time.monotonic() + 20
    while ' >= 0.02 ' not in _rules()['CanaryGateErrorRate']['query'] and time.monotonic() < deadline:
        time.sleep(0.5)
    checks1, rules1, steps1, pid1 = snapshot()

    assert checks1['error_rate']['threshold'] == 0.02                           # the gate
    assert ' >= 0.02 ' in rules1['CanaryGateErrorRate']['query']                # the loaded alert rule
    assert 0.02 in steps1['Error Rate'] and 0.01 not in steps1['Error Rate']    # the dashboard line
    assert pid1 == pid0                                                         # reloaded, not restarted
    # Nothing else moved.
    assert {k: v for k, v in checks1.items() if k != 'error_rate'} == {k: v for k, v in checks0.items() if k != 'error_rate'}
    assert {k: v['query'] for k, v in rules1.items() if k != 'CanaryGateErrorRate'} == \
        {k: v['query'] for k, v in rules0.items() if k != 'CanaryGateErrorRate'}
    assert {k: v for k, v in steps1.items() if k != 'Error Rate'} == {k: v for k, v in steps0.items() if k != 'Error Rate'}


def test_invalid_spec_fails_with_path_and_changes_nothing(env):
    before = open(env.path('prometheus', 'rules', 'alerts.yml')).read()
    override = {'rollout_spec_overrides': {'phases': {'ramp': {'gates': {'error_rate': {'threshold': 'abc'}}}}}}
    envv = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_NOCOLOR='1')
    res = subprocess.run(['ansible-playbook', '-i', env.inventory, env.playbook, '-e', json.dumps(override)],
                         cwd=ROOT, env=envv, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode != 0
    assert "rollout_spec.phases.ramp.gates.error_rate.threshold: expected a number, got 'abc'" in res.stdout + res.stderr
    assert open(env.path('prometheus', 'rules', 'alerts.yml')).read() == before


def test_stopped_state_stops_both(env):
    env.run('-e', 'monitoring_state=stopped')
    for url in (PROM, AM):
        with pytest.raises(requests.ConnectionError):
            requests.get(url + '/-/ready', timeout=2)
    assert not os.path.exists(env.path('run', 'prometheus.pid'))
