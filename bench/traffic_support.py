"""Real processes for the traffic bench and tests: cohort analyzers, HAProxy, the LB weights API.

Lives in bench/ (as gate_prometheus.py does): bench/traffic_bench.py and tests/integration/test_traffic_*.py
both use it, and bench/ imports nothing from tests/.

Standalone tests use ports 28300-28399 (never the sandbox's). Every process
started here is stopped by its own Popen handle (never by pattern).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import requests
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.join(ROOT, '.venv', 'bin')
API_PROGRAM = os.path.join(ROOT, 'roles', 'loadbalancer', 'files', 'traffic_api.py')
TOKEN = 'test-token-28300'
ROLE_VARS = os.path.join(ROOT, 'roles', 'loadbalancer', 'vars', 'main.yml')


def role_api_files():
    """The files the loadbalancer role ships next to the API (its loadbalancer_api_files), as paths here."""
    with open(ROLE_VARS, encoding='utf-8') as handle:
        entries = yaml.safe_load(handle)['loadbalancer_api_files']
    role_path = os.path.join(ROOT, 'roles', 'loadbalancer')
    paths = [os.path.normpath(e['src'].replace('{{ role_path }}', role_path)) for e in entries]
    missing = [p for p in paths if not os.path.isfile(p)]
    assert not missing and API_PROGRAM in paths, (missing, paths)
    return paths


HAPROXY_CFG = """\
# Same shape as roles/loadbalancer/templates/haproxy.cfg.j2, on test ports.
global
    stats socket {sock} mode 600 level admin
    server-state-file {state}
    log {logsock} len 1024 format raw local0 info

defaults
    mode http
    log global
    log-format "cohort-lb %b %s %ST %Ta"
    option dontlognull
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    load-server-state-from-file global

frontend analyzers_in
    bind 127.0.0.1:{fe_port}
    default_backend analyzers

backend analyzers
    balance roundrobin
    option httpchk GET /healthz
{servers}
"""


def wait_for(predicate, timeout=20.0, what='condition'):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (OSError, requests.RequestException):
            pass
        time.sleep(0.1)
    raise AssertionError('timed out after %ss waiting for %s' % (timeout, what))


def stop(proc, timeout=10):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def start_analyzer(workdir, variant, port):
    log = open(os.path.join(workdir, 'analyzer-%s-%d.log' % (variant, port)), 'ab')
    proc = subprocess.Popen(
        [os.path.join(VENV_BIN, 'cohort-analyzer'), 'serve', '--variant', variant, '--host', '127.0.0.1',
         '--port', str(port), '--db', os.path.join(workdir, 'analyzer-%d.db' % port), '--learners', '2000',
         '--log-level', 'warning'],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    wait_for(lambda: requests.get('http://127.0.0.1:%d/healthz' % port, timeout=1).ok, 60, 'analyzer on %d' % port)
    return proc


class Lb:
    """HAProxy (master-worker, foreground) plus the weights API, as the role runs them."""

    def __init__(self, workdir, fe_port, api_port, servers):
        self.workdir = workdir
        self.fe_port = fe_port
        self.api_port = api_port
        self.sock = os.path.join(workdir, 'admin.sock')
        self.state = os.path.join(workdir, 'server-state')
        self.logsock = os.path.join(workdir, 'log.sock')
        self.cfg = os.path.join(workdir, 'haproxy.cfg')
        lines = ['    server %s 127.0.0.1:%d weight %d check inter 1s' % (name, port, w) for name, port, w in servers]
        with open(self.cfg, 'w') as handle:
            handle.write(HAPROXY_CFG.format(sock=self.sock, state=self.state, logsock=self.logsock,
                                            fe_port=fe_port, servers='\n'.join(lines)))
        subprocess.run(['haproxy', '-c', '-q', '-f', self.cfg], check=True)
        # the API runs from a directory holding the program and the module_utils, as on the LB host
        self.api_dir = os.path.join(workdir, 'api')
        os.makedirs(self.api_dir, exist_ok=True)
        for src in role_api_files():
            shutil.copy(src, self.api_dir)
        self.haproxy = None
        self.api = None

    @property
    def api_url(self):
        return 'http://127.0.0.1:%d' % self.api_port

    @property
    def fe_url(self):
        return 'http://127.0.0.1:%d' % self.fe_port

    def start(self):
        self.start_api()
        self.start_haproxy()
        return self

    def start_haproxy(self):
        log = open(os.path.join(self.workdir, 'haproxy.log'), 'ab')
        self.haproxy = subprocess.Popen(['haproxy', '-W', '-db', '-f', self.cfg], stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        wait_for(lambda: os.path.exists(self.sock) and self.client().get_weights('analyzers') is not None, 20, 'haproxy socket')

    def start_api(self):
        log = open(os.path.join(self.workdir, 'api.log'), 'ab')
        env = dict(os.environ, LB_API_TOKEN=TOKEN)
        env.pop('PYTHONPATH', None)
        self.api = subprocess.Popen(
            [sys.executable, os.path.join(self.api_dir, 'traffic_api.py'), 'serve', '--listen', '127.0.0.1',
             '--port', str(self.api_port), '--socket', self.sock, '--state-file', self.state,
             '--log-socket', self.logsock, '--window', '300', '--sample-interval', '1'],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=self.api_dir)
        wait_for(lambda: os.path.exists(self.logsock), 20, 'api log socket')

    def wait_healthy(self):
        def all_up():
            rows = [r for r in self.client().stat() if r['pxname'] == 'analyzers' and r['svname'] != 'BACKEND']
            return rows and all(r['status'] == 'UP' for r in rows)
        wait_for(all_up, 30, 'all servers UP')

    def reload(self):
        """What the role's handler does: save the state, then USR2 to the master."""
        self.client().save_state(self.state)
        old = self.worker_pids()
        self.haproxy.send_signal(signal.SIGUSR2)
        wait_for(lambda: self.worker_pids() and self.worker_pids() != old, 20, 'new haproxy worker')
        wait_for(lambda: self.client().get_weights('analyzers') is not None, 20, 'haproxy socket after reload')

    def worker_pids(self):
        out = subprocess.run(['ps', '-o', 'pid=', '--ppid', str(self.haproxy.pid)], capture_output=True, text=True, check=False).stdout
        return sorted(out.split())

    def client(self):
        sys.path.insert(0, os.path.join(ROOT, 'collections'))
        from ansible_collections.cohort.rollout.plugins.module_utils.haproxy import HAProxySocket
        return HAProxySocket(self.sock)

    def server_responses(self):
        """``{server: 2xx..5xx responses}`` from HAProxy's own counters."""
        out = {}
        for row in self.client().stat():
            if row['pxname'] == 'analyzers' and row['svname'] != 'BACKEND':
                out[row['svname']] = sum(int(row[k] or 0) for k in ('hrsp_1xx', 'hrsp_2xx', 'hrsp_3xx', 'hrsp_4xx', 'hrsp_5xx', 'hrsp_other'))
        return out

    def close(self):
        stop(self.haproxy)
        stop(self.api)
