"""The loadbalancer role on a fleet host: the role's HAProxy and weights-API units, Debian's
haproxy.service masked, every port on the host's address only, a private admin socket, the token
only in 0600/0640 files, and the runbook API changing the live split (bad input changes nothing)."""
import json

import pytest

testinfra_hosts = ['ansible://lb-1']

STATE = '/var/lib/cohort-loadbalancer'
SOCK = STATE + '/haproxy/admin.sock'
CFG = STATE + '/haproxy.cfg'
FRONTEND, EXPORTER, API = 80, 8404, 8080
TOKEN = 'molecule-lb-token-secret'
SERVERS = {'original-analyzer-o1': '127.0.0.51', 'original-analyzer-o2': '127.0.0.52',
           'ultra_fast-analyzer-u1': '127.0.0.53'}


@pytest.fixture()
def admin(host):
    def command(line):
        return host.check_output('/usr/bin/python3 -c %s %s %s',
                                 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]);'
                                 's.sendall(sys.argv[2].encode() + b"\\n"); print(s.makefile().read())', SOCK, line)
    return command


@pytest.fixture()
def weights(admin):
    def read():
        lines = [ln.split() for ln in admin('show servers state analyzers').splitlines()[2:] if ln.strip()]
        return {cols[3]: int(cols[7]) for cols in lines}
    return read


@pytest.fixture()
def api(http, address):
    def call(method, path, body='', token=TOKEN):
        status, text = http('http://%s:%d%s' % (address, API, path), method, token, body)
        return status, json.loads(text)
    return call


def test_units_active_enabled(unit, uid_of, host):
    haproxy = unit('cohort-haproxy')
    assert (haproxy['ActiveState'], haproxy['UnitFileState']) == ('active', 'enabled')
    api = unit('cohort-lb-api')
    assert (api['ActiveState'], api['UnitFileState'], api['User']) == ('active', 'enabled', 'haproxy')
    assert 'Uid:\t%d\t' % uid_of('haproxy') in host.file('/proc/%s/status' % api['MainPID']).content_string


def test_haproxy_workers_run_as_haproxy(host, process_tree, uid_of):
    uids = {}
    for pid in process_tree('cohort-haproxy'):
        status = host.file('/proc/%d/status' % pid).content_string
        uids[pid] = int(status.split('Uid:\t')[1].split()[0])
    assert uid_of('haproxy') in uids.values()
    # the master stays root (binds port 80, reloads); every other process is haproxy
    assert sorted(set(uids.values())) == sorted({0, uid_of('haproxy')})


def test_packaged_unit_masked_and_inactive(unit):
    state = unit('haproxy')
    assert (state['UnitFileState'], state['ActiveState']) == ('masked', 'inactive')


def test_listens_only_on_the_host_address(listeners, address, process_tree):
    haproxy = process_tree('cohort-haproxy')
    api = process_tree('cohort-lb-api')
    assert {s['port'] for s in listeners if s['pid'] in haproxy and s['proto'] == 'tcp'} == {FRONTEND, EXPORTER}
    assert {(s['address'], s['port']) for s in listeners if s['pid'] in api} == {(address, API)}
    assert {s['address'] for s in listeners} == {address}, listeners


def test_config_valid_with_servers_from_inventory(host):
    cfg = host.file(CFG)
    assert (cfg.user, cfg.group, cfg.mode) == ('root', 'haproxy', 0o640)
    assert host.run('haproxy -c -q -f %s', CFG).rc == 0
    for name, addr in SERVERS.items():
        assert 'server %s %s:8080' % (name, addr) in cfg.content_string
    assert 'load-server-state-from-file global' in cfg.content_string


def test_admin_socket_and_token_are_private(host):
    sock = host.file(SOCK)
    assert sock.is_socket and (sock.user, sock.mode) == ('haproxy', 0o600)
    for d in (STATE, STATE + '/haproxy', STATE + '/api'):
        assert host.file(d).mode == 0o700, d
    token = host.file(STATE + '/api.token')
    assert (token.user, token.mode) == ('haproxy', 0o600)
    assert token.content_string.strip() == TOKEN
    cmdline = host.file('/proc/%s/cmdline' % host.check_output('systemctl show cohort-lb-api -p MainPID --value')).content_string
    assert TOKEN not in cmdline


def test_exporter_serves_haproxy_metrics(http, address):
    status, text = http('http://%s:%d/metrics' % (address, EXPORTER))
    assert status == 200
    assert 'haproxy_server_http_responses_total' in text
    assert 'server="ultra_fast-analyzer-u1"' in text


def test_token_required(api, weights):
    before = weights()
    assert api('POST', '/config/traffic-weights', '{"original": 0.5, "ultra_fast": 0.5}', token='')[0] == 401
    assert api('POST', '/config/traffic-weights', '{"original": 0.5, "ultra_fast": 0.5}', token='wrong-token')[0] == 401
    assert api('GET', '/metrics', token='')[0] == 401
    assert weights() == before


def test_runbook_post_changes_live_split(api, weights):
    status, body = api('POST', '/config/traffic-weights', '{"original": 0.99, "ultra_fast": 0.01}')
    assert status == 200, body
    assert weights() == {'original-analyzer-o1': 50, 'original-analyzer-o2': 49, 'ultra_fast-analyzer-u1': 1}
    assert body['after']['shares']['ultra_fast'] == pytest.approx(0.01)
    assert api('POST', '/config/traffic-weights', '{"original": 1, "ultra_fast": 0}')[0] == 200
    assert weights()['ultra_fast-analyzer-u1'] == 0


def test_bad_input_changes_nothing(api, weights):
    before = weights()
    for body in ('{"original": 0.9, "ultra_fast": 0.2}', '{"original": -1, "ultra_fast": 2}', '{"turbo": 1}', 'not json'):
        status, answer = api('POST', '/config/traffic-weights', body)
        assert status == 400 and answer['error']
    assert weights() == before


def test_token_absent_from_journal(absent_from_logs):
    absent_from_logs([TOKEN])
