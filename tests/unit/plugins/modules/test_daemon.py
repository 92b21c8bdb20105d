"""Unit tests of the daemon module: main() with real module args, real short-lived processes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.cohort.rollout.plugins.module_utils import process
from ansible_collections.cohort.rollout.plugins.modules import daemon

SECRET = 'hunter2-never-shown'


@pytest.fixture
def box(tmp_path):
    """Paths for one daemon, and a teardown that kills whatever the pidfile still names."""
    paths = dict(pidfile=str(tmp_path / 'run' / 'd.pid'), logfile=str(tmp_path / 'log' / 'd.log'), tmp=tmp_path)
    yield paths
    st = process.status(paths['pidfile'])
    if st.running:
        os.killpg(st.pid, signal.SIGKILL)
        process.reap(st.pid)


def run(args, capsys, check=False, diff=False):
    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            daemon.main()
    out = capsys.readouterr().out
    return json.loads(out)


def base(paths, argv=None, **kw):
    args = dict(name='unit', command=argv or ['sleep', '30'], pidfile=paths['pidfile'], logfile=paths['logfile'],
                start_wait=0.1, stop_timeout=5)
    args.update(kw)
    return args


def test_start_idempotent_then_stop(box, capsys):
    paths = box
    first = run(base(paths), capsys)
    assert first['changed'] and first['running'] and first['operation'] == 'started'
    assert process.is_alive(first['pid'])
    second = run(base(paths), capsys)
    assert not second['changed'] and second['pid'] == first['pid']
    stopped = run(base(paths, state='stopped'), capsys)
    assert stopped['changed'] and stopped['pid'] == first['pid'] and stopped['stop_signal'] == 'TERM'
    assert not process.is_alive(first['pid'])
    assert not os.path.exists(paths['pidfile']) and os.path.exists(paths['logfile'])
    again = run(base(paths, state='stopped'), capsys)
    assert not again['changed'] and again['operation'] == 'none'


def test_check_mode_touches_nothing(box, capsys):
    paths = box
    result = run(base(paths), capsys, check=True, diff=True)
    assert result['changed'] and result['pid'] is None and result['operation'] == 'started'
    assert not os.path.exists(paths['tmp'] / 'run') and not os.path.exists(paths['tmp'] / 'log')
    assert result['diff']['before'] == {'running': False, 'pid': None}
    assert result['diff']['after']['command'] == ['sleep', '30']
    started = run(base(paths), capsys)
    stop_check = run(base(paths, state='stopped'), capsys, check=True)
    assert stop_check['changed'] and process.is_alive(started['pid'])
    restart_check = run(base(paths, argv=['sleep', '31']), capsys, check=True)
    assert restart_check['changed'] and restart_check['reason'] == 'argv changed'
    assert process.status(paths['pidfile']).pid == started['pid']


def test_argv_env_and_secret_changes_restart(box, capsys):
    paths = box
    first = run(base(paths, environment={'A': 1}, secret_environment={'S': SECRET}), capsys)
    meta_text = open(paths['pidfile'] + '.json').read()
    assert SECRET not in meta_text and '"A": "1"' in meta_text
    same = run(base(paths, environment={'A': '1'}, secret_environment={'S': SECRET}), capsys)
    assert not same['changed']
    rotated = run(base(paths, environment={'A': '1'}, secret_environment={'S': 'rotated'}), capsys, diff=True)
    assert rotated['changed'] and rotated['reason'] == 'environment changed'
    assert rotated['stopped_pid'] == first['pid'] and not process.is_alive(first['pid'])
    assert 'rotated' not in json.dumps(rotated) and SECRET not in json.dumps(rotated)
    with open('/proc/%d/environ' % rotated['pid'], 'rb') as f:
        assert b'S=rotated\0' in f.read()
    moved = run(base(paths, argv=['sleep', '31'], environment={'A': '1'}, secret_environment={'S': 'rotated'}), capsys)
    assert moved['changed'] and moved['operation'] == 'restarted' and moved['reason'] == 'argv changed'


def test_recycled_pid_is_never_signalled(box, capsys, monkeypatch):
    paths = box
    warnings = []
    monkeypatch.setattr(daemon.AnsibleModule, 'warn', lambda self, msg: warnings.append(msg))
    first = run(base(paths), capsys)
    run(base(paths, state='stopped'), capsys)
    # Another program now holds a pid our stale pidfile names (simulated by pointing it there).
    other = subprocess.Popen(['sleep', '30'], start_new_session=True)
    try:
        meta = dict(pid=other.pid, argv=['sleep', '30'], start_time=process.read_stat(other.pid)[1] - 1,
                    boot_id=process.read_boot_id())
        process.write_state(paths['pidfile'], meta)
        result = run(base(paths, state='stopped'), capsys)
        assert result['operation'] == 'removed_stale_pidfile' and 'recycled' in result['reason']
        assert any('pid %d was not signalled' % other.pid in w for w in warnings)
        assert other.poll() is None  # still running: not signalled
        assert not os.path.exists(paths['pidfile'])
    finally:
        other.kill()
        other.wait()


def test_missing_executable_fails_and_keeps_running_process(box, capsys):
    paths = box
    first = run(base(paths), capsys)
    missing = str(paths['tmp'] / 'bin' / 'nope')
    result = run(base(paths, argv=[missing, 'serve']), capsys)
    assert result['failed'] and result['msg'] == 'executable %s does not exist' % missing
    assert process.status(paths['pidfile']).pid == first['pid']  # the old one was not stopped
    assert 'Traceback' not in json.dumps(result)


def test_missing_executable_starts_nothing(box, capsys):
    paths = box
    result = run(base(paths, argv=['cohort-no-such-program']), capsys)
    assert result['failed'] and 'not found in PATH' in result['msg']
    assert not os.path.exists(paths['tmp'] / 'run') and not os.path.exists(paths['logfile'])


def test_unwritable_locations_fail_cleanly(box, capsys):
    paths = box
    blocker = paths['tmp'] / 'file'
    blocker.write_text('')
    result = run(base(paths, pidfile=str(blocker / 'd.pid')), capsys)
    assert result['failed'] and 'exists but is not a directory' in result['msg']
    result = run(base(paths, logfile=str(paths['tmp'])), capsys)
    assert result['failed'] and 'is a directory' in result['msg']
    result = run(base(paths, create_dirs=False), capsys)
    assert result['failed'] and 'does not exist (create_dirs is false)' in result['msg']
    assert not os.path.exists(paths['pidfile'])


def test_start_failure_returns_log_tail(box, capsys):
    paths = box
    argv = [sys.executable, '-c', 'import sys; sys.stderr.write("bad config\\n"); sys.exit(2)']
    result = run(base(paths, argv=argv, start_wait=5), capsys)
    assert result['failed'] and result['rc'] == 2 and result['log_tail'] == ['bad config']
    assert 'exited during start (exit code 2)' in result['msg']
    assert not os.path.exists(paths['pidfile'])


def test_reloaded_starts_then_signals(box, capsys):
    paths = box
    marker = paths['tmp'] / 'hup'
    script = ('import signal,time\n'
              'signal.signal(signal.SIGHUP, lambda *a: open(%r, "a").write("x"))\n'
              'time.sleep(30)\n' % str(marker))
    args = base(paths, argv=[sys.executable, '-c', script], state='reloaded', reload_signal='SIGHUP', start_wait=0.3)
    first = run(args, capsys)
    assert first['operation'] == 'started' and not marker.exists()
    second = run(args, capsys)
    assert second['operation'] == 'reloaded' and second['pid'] == first['pid'] and second['reason'] == 'sent SIGHUP'
    assert marker.read_text() == 'x'


def test_reload_that_kills_the_process_fails(box, capsys):
    paths = box
    first = run(base(paths), capsys)  # sleep dies on SIGHUP
    result = run(base(paths, state='reloaded', start_wait=2), capsys)
    assert result['failed'] and 'did not survive SIGHUP' in result['msg']
    assert not process.is_alive(first['pid'])


@pytest.mark.parametrize('override, message', [
    (dict(umask='99'), 'umask must be an octal string'),
    (dict(stop_timeout=-1), 'stop_timeout must be between'),
    (dict(start_wait=1000), 'start_wait must be between'),
    (dict(environment={'A': '1'}, secret_environment={'A': '2'}), 'A is set in both'),
    (dict(environment={'A': {'nested': SECRET}}), 'value of A must be a string or number'),
    (dict(chdir='relative'), 'chdir must be an absolute path'),
    (dict(reload_signal='NOPE'), 'unknown signal NOPE'),
    (dict(command=[]), 'command is empty'),
])
def test_bad_input_is_refused(box, capsys, override, message):
    paths = box
    result = run(dict(base(paths), **override), capsys)
    assert result['failed'] and message in result['msg']
    assert SECRET not in result['msg']
    assert not os.path.exists(paths['tmp'] / 'run')
