"""Verify the monitoring role: Prometheus and Alertmanager run from their pidfiles on loopback,
the rendered files are valid, the rules API lists the runbook alerts with their severities."""
import json
import urllib.request

STATE = '/tmp/molecule-monitoring/monitoring'
PROM = 'http://127.0.0.1:28590'
AM = 'http://127.0.0.1:28593'


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, json.loads(resp.read().decode() or 'null') if 'api' in url else resp.read().decode()


def test_processes_from_pidfiles(host):
    for name, program in (('prometheus', '/usr/bin/prometheus'), ('alertmanager', '/usr/bin/prometheus-alertmanager')):
        pid = host.file(f'{STATE}/run/{name}.pid').content_string.strip()
        cmdline = host.file(f'/proc/{int(pid)}/cmdline').content_string.split('\0')
        assert cmdline[0] == program


def test_loopback_only(host):
    for port in (28590, 28593):
        assert host.socket(f'tcp://127.0.0.1:{port}').is_listening
        assert not host.socket(f'tcp://0.0.0.0:{port}').is_listening


def test_no_alertmanager_cluster_port(host):
    pid = host.file(f'{STATE}/run/alertmanager.pid').content_string.strip()
    assert '--cluster.listen-address=' in host.file(f'/proc/{int(pid)}/cmdline').content_string.split('\0')
    assert not host.socket('tcp://0.0.0.0:9094').is_listening


def test_rendered_files_are_valid(host):
    assert host.run(f'promtool check rules {STATE}/prometheus/rules/recording.yml {STATE}/prometheus/rules/alerts.yml').rc == 0
    assert host.run(f'promtool check config {STATE}/prometheus/prometheus.yml').rc == 0
    assert host.run(f'amtool check-config {STATE}/alertmanager/alertmanager.yml').rc == 0
    dashboard = json.loads(host.file(f'{STATE}/grafana/dashboards/cohort-rollout.json').content_string)
    assert dashboard['uid'] == 'cohort-rollout' and len(dashboard['panels']) >= 10
    assert 'uid: cohort-prometheus' in host.file(f'{STATE}/grafana/provisioning/datasources/cohort-prometheus.yml').content_string
    assert f'path: {STATE}/grafana/dashboards' in host.file(f'{STATE}/grafana/provisioning/dashboards/cohort-rollout.yml').content_string


def test_runbook_alerts_listed_with_severities():
    _status, body = _get(PROM + '/api/v1/rules')
    rules = {r['name']: r for g in body['data']['groups'] for r in g['rules']}
    assert {n: rules[n]['labels']['severity'] for n in ('HighErrorRate', 'HighLatency', 'MemorySpiking')} == \
        {'HighErrorRate': 'warning', 'HighLatency': 'critical', 'MemorySpiking': 'warning'}
    assert rules['HighErrorRate']['duration'] == 10  # the sandbox's for: 10s


def test_scrape_targets_from_inventory():
    _status, body = _get(PROM + '/api/v1/targets')
    instances = sorted((t['labels']['job'], t['labels']['instance']) for t in body['data']['activeTargets'])
    assert instances == [('alertmanager', '127.0.0.1:28593'), ('cohort_analyzer', '127.0.0.1:28581'),
                         ('cohort_analyzer', '127.0.0.1:28582'), ('haproxy', '127.0.0.1:28584'),
                         ('prometheus', '127.0.0.1:28590')]


def test_alertmanager_ready_with_unreachable_webhook():
    status, _body = _get(AM + '/-/ready')
    assert status == 200
    _status, body = _get(AM + '/api/v2/status')
    assert 'http://127.0.0.1:28595/alertmanager' in body['config']['original']
