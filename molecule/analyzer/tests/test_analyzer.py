"""The analyzer role on fleet hosts: a systemd unit under its own user, bound to the host's
address only, installed from the controller's wheelhouse, secrets only in its 0600 env file."""
import json

import pytest

testinfra_hosts = ['ansible://analyzer-original', 'ansible://analyzer-ultra-fast']

BASE = '/opt/cohort-analyzer'
USER = 'cohort-analyzer'
SECRET = 'molecule-analyzer-redis-secret'
PORT = 8080


@pytest.fixture()
def variant(host):
    return {'analyzer-original': 'original', 'analyzer-ultra-fast': 'ultra_fast'}[host.check_output('hostname')]


@pytest.fixture()
def unit_name(variant):
    return 'cohort-analyzer-' + variant.replace('_', '-')


def test_unit_active_enabled_as_service_user(unit, unit_name, uid_of, host):
    state = unit(unit_name)
    assert (state['ActiveState'], state['UnitFileState'], state['User']) == ('active', 'enabled', USER)
    status = host.file('/proc/%s/status' % state['MainPID']).content_string
    assert 'Uid:\t%d\t' % uid_of(USER) in status
    assert host.user(USER).shell == '/usr/sbin/nologin'


def test_only_the_other_variant_unit_is_absent(host, variant):
    other = 'cohort-analyzer-' + ('ultra-fast' if variant == 'original' else 'original')
    assert not host.file('/etc/systemd/system/%s.service' % other).exists


def test_listens_only_on_the_host_address(listeners, address, process_tree, unit_name):
    pids = process_tree(unit_name)
    mine = [s for s in listeners if s['pid'] in pids]
    assert [(s['address'], s['port']) for s in mine] == [(address, PORT)]
    # Nothing else on the host listens beyond its own address (sshd included).
    assert {s['address'] for s in listeners} == {address}, listeners


def test_installed_from_the_wheelhouse_in_its_venv(host):
    pip = host.run('%s/venv/bin/python -m pip list --format json --disable-pip-version-check', BASE)
    assert pip.rc == 0, pip.stderr
    versions = {p['name']: p['version'] for p in json.loads(pip.stdout)}
    assert versions['cohort-analyzer'] == '0.1.0'
    assert host.file(BASE + '/wheelhouse').is_directory
    assert host.file(BASE + '/venv').user == USER


def test_files_owned_and_private(host):
    env = host.file(BASE + '/analyzer.env')
    assert (env.user, env.mode) == (USER, 0o600)
    assert 'COHORT_REDIS_PASSWORD=' + SECRET in env.content_string
    for path in ('', '/data', '/log', '/run'):
        d = host.file(BASE + path)
        assert (d.user, d.group, d.mode) == (USER, USER, 0o750), path


def test_answers_with_its_variant(http, address, variant):
    assert http('http://%s:%d/readyz' % (address, PORT))[0] == 200
    status, body = http('http://%s:%d/v1/cohorts/discover' % (address, PORT), 'POST',
                        body=json.dumps({'learner_ids': [1, 2, 3, 4, 5]}), content_type='application/json')
    assert status == 200, body
    assert sum(c['size'] for c in json.loads(body)['cohorts']) == 5
    status, metrics = http('http://%s:%d/metrics' % (address, PORT))
    assert 'cohort_discovery_requests_total{' in metrics and 'variant="%s"' % variant in metrics


def test_secret_absent_from_journal_and_log(absent_from_logs):
    absent_from_logs([SECRET], [BASE + '/log/analyzer.log'])
