"""The monitoring role on a fleet host: the role's Prometheus and Alertmanager units as the
prometheus user, Debian's packaged units masked, the host's address only (no gossip port),
valid rendered files with tight modes, targets and alerts from the inventory and the spec."""
import json

import pytest

testinfra_hosts = ['ansible://monitoring-1']

STATE = '/var/lib/cohort-monitoring'
PROM, AM = 9090, 9093
WEBHOOK = 'http://127.0.0.60:19095/alertmanager/molecule-webhook-secret'
UNITS = ('cohort-prometheus', 'cohort-alertmanager')


@pytest.fixture()
def api(http, address):
    def get(port, path):
        status, text = http('http://%s:%d%s' % (address, port, path))
        assert status == 200, text
        return json.loads(text) if '/api/' in path else text
    return get


def test_units_active_enabled_as_prometheus(unit, uid_of, host):
    for name in UNITS:
        state = unit(name)
        assert (state['ActiveState'], state['UnitFileState'], state['User']) == ('active', 'enabled', 'prometheus'), name
        assert 'Uid:\t%d\t' % uid_of('prometheus') in host.file('/proc/%s/status' % state['MainPID']).content_string


@pytest.mark.parametrize('packaged', ['prometheus', 'prometheus-alertmanager', 'prometheus-node-exporter'])
def test_packaged_units_masked_and_inactive(unit, packaged):
    state = unit(packaged)
    assert (state['UnitFileState'], state['ActiveState']) == ('masked', 'inactive')


def test_listens_only_on_the_host_address(listeners, address, process_tree):
    prom, am = process_tree('cohort-prometheus'), process_tree('cohort-alertmanager')
    assert {(s['proto'], s['address'], s['port']) for s in listeners if s['pid'] in prom} == {('tcp', address, PROM)}
    # no cluster gossip (9094 tcp/udp on all interfaces by default)
    assert {(s['proto'], s['address'], s['port']) for s in listeners if s['pid'] in am} == {('tcp', address, AM)}
    assert {s['address'] for s in listeners} == {address}, listeners


def test_rendered_files_valid_and_private(host):
    for path in ('prometheus/prometheus.yml', 'prometheus/rules/recording.yml', 'prometheus/rules/alerts.yml',
                 'alertmanager/alertmanager.yml'):
        f = host.file('%s/%s' % (STATE, path))
        assert (f.user, f.mode) == ('prometheus', 0o640), path
    assert host.file(STATE).mode == 0o750
    assert host.run('promtool check config %s/prometheus/prometheus.yml', STATE).rc == 0
    assert host.run('amtool check-config %s/alertmanager/alertmanager.yml', STATE).rc == 0
    dashboard = json.loads(host.file(STATE + '/grafana/dashboards/cohort-rollout.json').content_string)
    assert dashboard['uid'] == 'cohort-rollout' and len(dashboard['panels']) >= 10


def test_runbook_alerts_from_the_spec(api):
    rules = {r['name']: r for g in api(PROM, '/api/v1/rules')['data']['groups'] for r in g['rules']}
    assert {n: rules[n]['labels']['severity'] for n in ('HighErrorRate', 'HighLatency', 'MemorySpiking')} == \
        {'HighErrorRate': 'warning', 'HighLatency': 'critical', 'MemorySpiking': 'warning'}
    assert rules['HighErrorRate']['duration'] == 10  # the fleet's for: 10s


def test_scrape_targets_from_the_inventory(api, address):
    targets = api(PROM, '/api/v1/targets')['data']['activeTargets']
    assert sorted((t['labels']['job'], t['labels']['instance']) for t in targets) == [
        ('alertmanager', '%s:%d' % (address, AM)), ('cohort_analyzer', '127.0.0.61:8080'),
        ('cohort_analyzer', '127.0.0.62:8080'), ('haproxy', '127.0.0.63:8404'), ('prometheus', '%s:%d' % (address, PROM))]
    # the pool label comes from the inventory group
    assert {t['labels']['instance']: t['labels']['pool'] for t in targets
            if t['labels']['job'] == 'cohort_analyzer'} == {'127.0.0.61:8080': 'original', '127.0.0.62:8080': 'ultra_fast'}


def test_alertmanager_ready_with_the_webhook(api, host):
    assert api(AM, '/-/ready') is not None
    assert WEBHOOK in host.file(STATE + '/alertmanager/alertmanager.yml').content_string


def test_webhook_absent_from_journal(absent_from_logs):
    absent_from_logs([WEBHOOK, 'molecule-webhook-secret'])
