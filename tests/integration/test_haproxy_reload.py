"""How the real HAProxy re-executes itself on a reload, and why the loadbalancer role runs it under a supervisor.

cohort.rollout.daemon recognises its process by the recorded argv (plugins/module_utils/process.py). HAProxy's
master, reloaded with USR2, re-executes itself with ``-sf <old workers> -x <socket>`` inserted right after
argv[0], so a master managed directly stops being recognised. These tests pin that behaviour on the HAProxy
this machine runs (Debian's, as the roles install), and show the supervisor
(roles/loadbalancer/files/haproxy_supervisor.py) keeps the pid and command line the module recorded while the
reload really happens. Everything binds to a free port on 127.0.0.1 and is stopped by pid at the end.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from ansible_collections.cohort.rollout.plugins.module_utils import process

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SUPERVISOR = os.path.join(REPO, 'roles', 'loadbalancer', 'files', 'haproxy_supervisor.py')
HAPROXY = shutil.which('haproxy') or '/usr/sbin/haproxy'


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture()
def config(tmp_path):
    assert os.access(HAPROXY, os.X_OK), 'haproxy is not installed (make setup installs it)'
    path = tmp_path / 'haproxy.cfg'
    path.write_text('\n'.join([
        'defaults', '  mode http', '  timeout connect 1s', '  timeout client 1s', '  timeout server 1s',
        'frontend probe', '  bind 127.0.0.1:%d' % _free_port(), '  http-request return status 200', '']))
    return str(path)


def _wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.001)
    pytest.fail('timed out after %.0f s waiting for %s' % (timeout, what))


def _log_count(path, text):
    with open(path, encoding='utf-8', errors='replace') as handle:
        return handle.read().count(text)


def _reload(send, done, what):
    """Send the reload signal until it takes. HAProxy 2.6's master, right after a load, re-executes itself
    once more (into its "wait mode"); a USR2 that arrives during that exec is lost (seen here about 0.1 s
    after "Loading success"), so one signal is not enough for a test that reloads right after a start."""
    for _attempt in range(5):
        send()
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            found = done()
            if found:
                return found
            time.sleep(0.001)
    pytest.fail('%s: no reload after 5 signals' % what)


def test_haproxy_master_inserts_its_reload_options_right_after_argv0(config, tmp_path):
    argv = [HAPROXY, '-W', '-db', '-f', config]
    log = tmp_path / 'haproxy.log'
    with open(log, 'wb') as out:
        master = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for(lambda: _log_count(log, 'Loading success') >= 1, 10, 'HAProxy to start')
        # (right after a load the master re-executes itself once more: its command line is briefly empty)
        _wait_for(lambda: process.read_cmdline(master.pid) == argv, 10, 'the master to settle')
        meta = dict(argv=argv)
        assert process.cmdline_matches(process.read_cmdline(master.pid), meta)
        seen = _reload(lambda: os.kill(master.pid, signal.SIGUSR2),
                       lambda: [c for c in [process.read_cmdline(master.pid)] if c and c != argv],
                       'the master re-executing itself')[0]
        # Inserted after argv[0], the original arguments after them: argv is not a prefix of it.
        assert seen[0] == argv[0] and seen[1] in ('-sf', '-st', '-x'), seen
        assert seen[-(len(argv) - 1):] == argv[1:], seen
        assert seen[:len(argv)] != argv
        assert not process.cmdline_matches(seen, meta)
    finally:
        os.killpg(master.pid, signal.SIGTERM)
        master.wait(timeout=10)


def test_supervised_haproxy_keeps_pid_and_command_line_across_reloads(config, tmp_path):
    pidfile = str(tmp_path / 'run' / 'haproxy.pid')
    log = str(tmp_path / 'log' / 'haproxy.log')
    os.makedirs(os.path.dirname(pidfile))
    os.makedirs(os.path.dirname(log))
    argv = [sys.executable, SUPERVISOR, HAPROXY, '-W', '-db', '-f', config]
    meta = process.start('haproxy', argv, pidfile, log, chdir=str(tmp_path), start_wait=0.5)
    pid = meta['pid']
    try:
        _wait_for(lambda: _log_count(log, 'Loading success') >= 1, 10, 'HAProxy to start')
        for reloads in (1, 2):
            # what cohort.rollout.daemon does for state=reloaded, reload_signal=USR2
            _reload(lambda: process.send_signal(pid, meta, process.parse_signal('USR2')),
                    lambda: _log_count(log, 'Loading success') >= 1 + reloads, 'reload %d' % reloads)
            assert process.identify(pid, meta) is None
            assert process.status(pidfile).running and process.status(pidfile).pid == pid
            assert process.read_cmdline(pid) == argv
    finally:
        st = process.status(pidfile)
        if st.running:
            process.stop(st.pid, st.meta, stop_timeout=10)
        process.remove_state(pidfile)
    assert not process.is_alive(pid, meta['start_time'])
