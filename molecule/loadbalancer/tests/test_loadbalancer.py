"""Verify the loadbalancer role: HAProxy, its admin socket, state file, exporter and the weights API."""
import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request

import pytest

STATE = '/tmp/molecule-loadbalancer/loadbalancer'
SOCK = STATE + '/haproxy/admin.sock'
CFG = STATE + '/haproxy.cfg'
FRONTEND, API, EXPORTER = 28320, 28321, 28324
TOKEN = 'molecule-token-28321'
# The analyzer hosts of the scenario are only backends: test the load balancer host.
testinfra_hosts = ['molecule-lb']


@pytest.fixture()
def lb(host):
    assert host.backend.get_hostname() == 'molecule-lb'
    return host


def admin(command):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(SOCK)
        sock.sendall(command.encode() + b'\n')
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                return b''.join(chunks).decode()
            chunks.append(data)


def weights():
    lines = [ln.split() for ln in admin('show servers state analyzers').splitlines()[2:] if ln.strip()]
    return {cols[3]: int(cols[7]) for cols in lines}


def call(method, path, body=None, token=TOKEN, content_type='application/x-www-form-urlencoded'):
    req = urllib.request.Request('http://127.0.0.1:%d%s' % (API, path), data=body.encode() if body else None, method=method)
    if token:
        req.add_header('Authorization', 'Bearer ' + token)
    if body:
        req.add_header('Content-Type', content_type)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_config_valid_and_servers_from_inventory(lb):
    assert lb.run('haproxy -c -q -f %s' % CFG).rc == 0
    cfg = lb.file(CFG).content_string
    for name in ('original-molecule-lb-original-1', 'original-molecule-lb-original-2', 'ultra_fast-molecule-lb-ultra-fast-1'):
        assert 'server %s 127.0.0.1:' % name in cfg
    assert 'option httpchk GET /healthz' in cfg
    assert 'load-server-state-from-file global' in cfg


def test_admin_socket_is_private(lb):
    sock = lb.file(SOCK)
    assert sock.is_socket and sock.mode == 0o600
    assert lb.file(STATE + '/haproxy').mode == 0o700


def test_listens_on_loopback_only(lb):
    for port in (FRONTEND, API, EXPORTER):
        assert lb.socket('tcp://127.0.0.1:%d' % port).is_listening
        assert not lb.socket('tcp://0.0.0.0:%d' % port).is_listening


def test_exporter_serves_haproxy_metrics(lb):
    with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % EXPORTER, timeout=10) as resp:
        text = resp.read().decode()
    assert 'haproxy_server_http_responses_total' in text
    assert 'server="ultra_fast-molecule-lb-ultra-fast-1"' in text


def test_token_required(lb):
    before = weights()
    assert call('POST', '/config/traffic-weights', '{"original": 0.5, "ultra_fast": 0.5}', token=None)[0] == 401
    assert call('POST', '/config/traffic-weights', '{"original": 0.5, "ultra_fast": 0.5}', token='wrong-token')[0] == 401
    assert call('GET', '/metrics', token=None)[0] == 401
    assert weights() == before


def test_runbook_post_changes_live_split_and_survives_reload(lb):
    status, body = call('POST', '/config/traffic-weights', '{"original": 0.99, "ultra_fast": 0.01}')
    assert status == 200, body
    want = {'original-molecule-lb-original-1': 50, 'original-molecule-lb-original-2': 49, 'ultra_fast-molecule-lb-ultra-fast-1': 1}
    assert weights() == want  # live when the call returns
    assert body['after']['shares']['ultra_fast'] == pytest.approx(0.01)
    # what the role's reload handler does: save the state file, USR2 to the master
    assert lb.run('/usr/bin/python3 %s/api/traffic_api.py save-state --socket %s --state-file %s/haproxy/server-state'
                  % (STATE, SOCK, STATE)).rc == 0
    master = int(lb.file(STATE + '/run/haproxy.pid').content_string.strip())
    os.kill(master, signal.SIGUSR2)
    deadline = time.time() + 20
    while time.time() < deadline:
        time.sleep(0.5)
        try:
            if 'Loading success' in lb.file(STATE + '/logs/haproxy.log').content_string.split('Reloading HAProxy')[-1]:
                break
        except OSError:
            pass
    assert weights() == want
    status, metrics = call('GET', '/metrics')
    assert status == 200 and 'latency' in metrics and 'errorRate' in metrics
    assert metrics['shares']['ultra_fast'] == pytest.approx(0.01)
    # back to the all-original split the role starts from
    assert call('POST', '/config/traffic-weights', '{"original": 1, "ultra_fast": 0}')[0] == 200
    assert weights()['ultra_fast-molecule-lb-ultra-fast-1'] == 0


def test_bad_input_changes_nothing(lb):
    before = weights()
    for body in ('{"original": 0.9, "ultra_fast": 0.2}', '{"original": -1, "ultra_fast": 2}', '{"turbo": 1}', 'not json'):
        status, answer = call('POST', '/config/traffic-weights', body)
        assert status == 400 and answer['error']
    assert weights() == before
