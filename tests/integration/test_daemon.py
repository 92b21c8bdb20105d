"""cohort.rollout.daemon through ansible-playbook, against real processes on this host.

One playbook drives a small TCP daemon (port 28201 on 127.0.0.1) through its life:
check, start, start again, reload, argv change, port conflict, stop, stop again and bad
input.  Check mode of stop/restart, TERM->KILL escalation and recycled pids are
covered by tests/unit.  The tests below read the task results (json callback) and look at /proc.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from ansible_collections.cohort.rollout.plugins.module_utils import process

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PORT = 28201
SECRET = 's3cr3t-integration-value'
HANG_GUARD = 120  # seconds: the daemon lives this long; a task waiting for it would exceed the timeout

FAKE_DAEMON = '''\
import os, signal, socket, sys, time
port, marker = int(sys.argv[1]), sys.argv[2]
sock = socket.socket()
sock.bind(("127.0.0.1", port))  # fails if taken: the second instance must exit at once
sock.listen(5)
signal.signal(signal.SIGHUP, lambda *a: open(marker, "a").write("hup\\n"))
print("listening on %d as pid %d, FOO=%s, token length %d, args %s" % (
    port, os.getpid(), os.environ.get("FOO"), len(os.environ.get("TOKEN", "")), sys.argv[3:]), flush=True)
deadline = time.time() + {guard}
while time.time() < deadline:
    time.sleep(0.2)
'''.format(guard=HANG_GUARD)

PLAYBOOK = '''\
---
- name: Daemon module lifecycle
  hosts: localhost
  gather_facts: false
  module_defaults:
    cohort.rollout.daemon:
      name: fake-daemon
      command: ["{python}", "{d}/fake_daemon.py", "{port}", "{d}/hup.marker"]
      pidfile: "{d}/run/fake.pid"
      logfile: "{d}/log/fake.log"
      chdir: "{d}"
      environment:
        FOO: bar
      secret_environment:
        TOKEN: "{secret}"
      start_wait: 0.5
      stop_timeout: 5
  tasks:
    - name: check_start
      cohort.rollout.daemon:
        pidfile: "{d}/checkonly/run/fake.pid"
        logfile: "{d}/checkonly/log/fake.log"
      check_mode: true
    - name: start
      cohort.rollout.daemon:
    - name: start_again
      cohort.rollout.daemon:
    - name: reload
      cohort.rollout.daemon:
        state: reloaded
        reload_signal: HUP
    - name: argv_change
      cohort.rollout.daemon:
        command: ["{python}", "{d}/fake_daemon.py", "{port}", "{d}/hup.marker", "--v2"]
    - name: port_conflict
      cohort.rollout.daemon:
        pidfile: "{d}/run/second.pid"
      ignore_errors: true
    - name: stop
      cohort.rollout.daemon:
        state: stopped
    - name: stop_again
      cohort.rollout.daemon:
        state: stopped
    - name: missing_executable
      cohort.rollout.daemon:
        command: ["{d}/bin/no-such-daemon", serve]
        pidfile: "{d}/missing/run/x.pid"
        logfile: "{d}/missing/log/x.log"
      ignore_errors: true
    - name: unwritable_pidfile
      cohort.rollout.daemon:
        pidfile: "{d}/a-file/run/x.pid"
      ignore_errors: true
'''


def alive(pid):
    return pid is not None and process.is_alive(pid)


@pytest.fixture(scope='module')
def lifecycle(tmp_path_factory):
    d = tmp_path_factory.mktemp('daemon')
    (d / 'fake_daemon.py').write_text(FAKE_DAEMON)
    (d / 'a-file').write_text('a file where a directory should be\n')
    playbook = d / 'lifecycle.yml'
    playbook.write_text(PLAYBOOK.format(python=os.path.join(REPO, '.venv', 'bin', 'python'), d=d, port=PORT,
                                        secret=SECRET))
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK='ansible.posix.json', ANSIBLE_CONFIG=os.path.join(REPO, 'ansible.cfg'))
    env['PATH'] = os.path.join(REPO, '.venv', 'bin') + os.pathsep + env.get('PATH', '')
    pidfiles = [d / 'run' / 'fake.pid', d / 'run' / 'second.pid', d / 'checkonly' / 'run' / 'fake.pid']
    try:
        # A task that waited on a pipe held by the daemon would block until the daemon exits
        # (HANG_GUARD seconds): the timeout turns such a hang into a failure.
        proc = subprocess.run([os.path.join(REPO, '.venv', 'bin', 'ansible-playbook'), '--diff', str(playbook)],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=HANG_GUARD - 30, check=False)
        output = json.loads(proc.stdout)
        results = {}
        for task in output['plays'][0]['tasks']:
            results[task['task']['name']] = task['hosts']['localhost']
        yield dict(dir=d, results=results, stdout=proc.stdout, stderr=proc.stderr, rc=proc.returncode)
    finally:
        for pidfile in pidfiles:
            st = process.status(str(pidfile))
            if st.running:
                os.killpg(st.pid, signal.SIGKILL)


def test_playbook_ran_every_step(lifecycle):
    assert lifecycle['rc'] == 0, lifecycle['stderr']
    assert list(lifecycle['results']) == [
        'check_start', 'start', 'start_again', 'reload', 'argv_change', 'port_conflict', 'stop', 'stop_again',
        'missing_executable', 'unwritable_pidfile']


def test_check_mode_changes_nothing(lifecycle):
    r = lifecycle['results']
    assert r['check_start']['changed'] is True and r['check_start']['pid'] is None
    assert r['check_start']['operation'] == 'started'
    assert not (lifecycle['dir'] / 'checkonly').exists()


def test_start_then_idempotent(lifecycle):
    r = lifecycle['results']
    assert r['start']['changed'] is True and r['start']['running'] is True and isinstance(r['start']['pid'], int)
    assert r['start_again']['changed'] is False and r['start_again']['pid'] == r['start']['pid']


def test_task_returns_while_daemon_keeps_running(lifecycle):
    # start_again found the very process start had launched, still running: the start task
    # returned while its daemon lived on (no inherited pipe), and the run stayed under the timeout.
    r = lifecycle['results']
    assert r['start_again']['running'] is True and r['start_again']['pid'] == r['start']['pid']
    log = (lifecycle['dir'] / 'log' / 'fake.log').read_text()
    assert 'listening on %d as pid %d, FOO=bar, token length %d' % (PORT, r['start']['pid'], len(SECRET)) in log


def test_reload_sends_the_signal(lifecycle):
    r = lifecycle['results']
    assert r['reload']['changed'] is True and r['reload']['pid'] == r['start']['pid']
    assert (lifecycle['dir'] / 'hup.marker').read_text() == 'hup\n'


def test_argv_change_restarts(lifecycle):
    r = lifecycle['results']
    change = r['argv_change']
    assert change['changed'] is True and change['operation'] == 'restarted' and change['reason'] == 'argv changed'
    assert change['stopped_pid'] == r['start']['pid'] and change['pid'] != r['start']['pid']
    assert change['command'][-1] == '--v2'
    assert "--v2" in json.dumps(change['diff']['after']) and "--v2" not in json.dumps(change['diff']['before'])


def test_port_conflict_fails_with_exit_code_and_log(lifecycle):
    conflict = lifecycle['results']['port_conflict']
    assert conflict['failed'] is True and conflict['rc'] == 1
    assert 'exited during start' in conflict['msg']
    assert any('Address already in use' in line for line in conflict['log_tail'])
    assert not (lifecycle['dir'] / 'run' / 'second.pid').exists()


def test_stop_leaves_no_process_and_keeps_log(lifecycle):
    r = lifecycle['results']
    assert r['stop']['changed'] is True and r['stop']['stop_signal'] == 'TERM'
    assert r['stop']['pid'] == r['argv_change']['pid']
    for pid in (r['start']['pid'], r['argv_change']['pid']):
        assert not alive(pid)
    assert not (lifecycle['dir'] / 'run' / 'fake.pid').exists()
    assert not (lifecycle['dir'] / 'run' / 'fake.pid.json').exists()
    assert (lifecycle['dir'] / 'log' / 'fake.log').read_text().count('listening on') == 2
    assert r['stop_again']['changed'] is False and r['stop_again']['running'] is False


def test_missing_executable_fails_and_starts_nothing(lifecycle):
    missing = lifecycle['results']['missing_executable']
    assert missing['failed'] is True
    assert missing['msg'] == 'executable %s does not exist' % (lifecycle['dir'] / 'bin' / 'no-such-daemon')
    assert not (lifecycle['dir'] / 'missing').exists()


def test_unwritable_pidfile_fails_cleanly(lifecycle):
    bad = lifecycle['results']['unwritable_pidfile']
    assert bad['failed'] is True and 'pidfile directory' in bad['msg'] and 'not a directory' in bad['msg'].lower()
    # Failures are the module's own answers, never a crash (MODULE FAILURE) or an unexpected error.
    for name, result in lifecycle['results'].items():
        assert 'module_stderr' not in result, name
        assert 'MODULE FAILURE' not in result.get('msg', '') and 'unexpected error' not in result.get('msg', ''), name


def test_secret_never_shown(lifecycle):
    assert SECRET not in lifecycle['stdout'] and SECRET not in lifecycle['stderr']
    diff = lifecycle['results']['start']['diff']
    assert diff['after']['environment'] == {'FOO': 'bar'}


def test_diff_mode_shows_before_and_after(lifecycle):
    diff = lifecycle['results']['stop']['diff']
    assert diff['before']['running'] is True and diff['after'] == {'running': False, 'pid': None}
