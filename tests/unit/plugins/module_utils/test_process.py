"""Unit tests of module_utils/process.py with real (short-lived) child processes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.cohort.rollout.plugins.module_utils import process

IGNORE_TERM = 'import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'


@pytest.fixture
def reaper():
    """Remember every pid a test starts; SIGKILL the ones still alive afterwards."""
    started = []
    yield started
    for pid, start_time in started:
        if process.is_alive(pid, start_time):
            os.kill(pid, signal.SIGKILL)
        process.reap(pid)


def spawn(reaper, argv):
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
    stat = process.read_stat(child.pid)
    reaper.append((child.pid, stat[1]))
    # Popen returns once exec has begun; the kernel fills in the new cmdline a moment later.
    deadline = time.monotonic() + 5
    while not process.read_cmdline(child.pid) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    return child


def meta_for(pid, argv, **extra):
    meta = dict(pid=pid, argv=list(argv), cmdline=process.read_cmdline(pid), start_time=process.read_stat(pid)[1],
                boot_id=process.read_boot_id())
    meta.update(extra)
    return meta


def start(tmp_path, reaper, argv, **kwargs):
    kwargs.setdefault('start_wait', 0.2)
    meta = process.start('t', argv, str(tmp_path / 'run' / 't.pid'), str(tmp_path / 't.log'), **kwargs)
    reaper.append((meta['pid'], meta['start_time']))
    return meta


@pytest.fixture
def run_dir(tmp_path):
    (tmp_path / 'run').mkdir()
    return tmp_path


# -- /proc parsing ---------------------------------------------------------

def test_read_stat_parses_comm_with_spaces_and_parens(tmp_path, monkeypatch):
    fields = ['S'] + [str(n) for n in range(4, 22)] + ['987654', '0', '0']
    (tmp_path / '42').mkdir()
    (tmp_path / '42' / 'stat').write_text('42 (evil) prog (x) %s\n' % ' '.join(fields))
    monkeypatch.setattr(process, 'PROC', str(tmp_path))
    assert process.read_stat(42) == ('S', 987654)
    assert process.read_stat(43) is None


def test_read_stat_and_cmdline_of_self():
    state, started = process.read_stat(os.getpid())
    assert state in 'RS'
    assert started > 0
    assert 'python' in process.read_cmdline(os.getpid())[0]


# -- identity --------------------------------------------------------------

def test_identify_accepts_our_live_process(reaper):
    argv = ['sleep', '30']
    child = spawn(reaper, argv)
    assert process.identify(child.pid, meta_for(child.pid, argv)) is None


def test_identify_rejects_recycled_pid_by_start_time(reaper):
    argv = ['sleep', '30']
    child = spawn(reaper, argv)
    meta = meta_for(child.pid, argv)
    meta['start_time'] -= 1  # the recorded process started earlier: this pid was reused
    assert 'recycled' in process.identify(child.pid, meta)


def test_identify_rejects_other_program_by_cmdline(reaper):
    child = spawn(reaper, ['sleep', '30'])
    meta = meta_for(child.pid, ['sleep', '31'], cmdline=['sleep', '31'])
    assert 'another program' in process.identify(child.pid, meta)


def test_identify_rejects_other_boot_and_missing_metadata(reaper):
    argv = ['sleep', '30']
    child = spawn(reaper, argv)
    assert 'another boot' in process.identify(child.pid, meta_for(child.pid, argv, boot_id='not-this-boot'))
    assert 'no metadata' in process.identify(child.pid, None)
    other = meta_for(child.pid, argv)
    other['pid'] = child.pid + 1
    assert 'metadata names pid' in process.identify(child.pid, other)


def test_identify_treats_zombie_as_gone(reaper):
    argv = ['true']
    child = subprocess.Popen(argv)  # not spawn(): its poll() would reap the zombie
    meta = dict(pid=child.pid, argv=argv, start_time=process.read_stat(child.pid)[1])
    deadline = time.monotonic() + 5
    while process.read_stat(child.pid)[0] != 'Z' and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.read_stat(child.pid)[0] == 'Z'  # exited, not reaped
    assert 'zombie' in process.identify(child.pid, meta)
    child.wait()
    assert 'not running' in process.identify(child.pid, meta)


def test_cmdline_matches_exact_argv_or_observed_title_only():
    meta = dict(argv=['haproxy', '-W', '-f', 'x.cfg'], cmdline=['redis-server 127.0.0.1:6379'])
    assert process.cmdline_matches(['haproxy', '-W', '-f', 'x.cfg'], meta)
    assert process.cmdline_matches(['redis-server 127.0.0.1:6379', '', ''], meta)
    # HAProxy's master after a reload: -sf/-x inserted right after argv[0] (tests/integration/
    # test_haproxy_reload.py watches the real one do it). Not ours: it runs under a supervisor instead.
    assert not process.cmdline_matches(['haproxy', '-sf', '123', '-x', 'sockpair@3', '-W', '-f', 'x.cfg'], meta)
    # Nor is a longer command line that merely starts with the argv.
    assert not process.cmdline_matches(['haproxy', '-W', '-f', 'x.cfg', '-sf', '123'], meta)
    assert not process.cmdline_matches(['haproxy', '-W'], meta)
    assert not process.cmdline_matches([], meta)


# -- pidfile and sidecar ---------------------------------------------------

def test_status_without_pidfile(run_dir):
    st = process.status(str(run_dir / 'run' / 'none.pid'))
    assert (st.running, st.pid, st.stale) == (False, None, False)


def test_status_stale_pidfile_of_dead_process(run_dir, reaper):
    pidfile = str(run_dir / 'run' / 't.pid')
    child = subprocess.Popen(['true'])
    meta = dict(pid=child.pid, argv=['true'], start_time=process.read_stat(child.pid)[1])  # zombie until waited
    child.wait()
    process.write_state(pidfile, meta)
    st = process.status(pidfile)
    assert st.stale and not st.running and st.pid == child.pid
    assert 'not running' in st.stale_reason


def test_status_garbage_pidfile_and_orphan_sidecar(run_dir):
    pidfile = run_dir / 'run' / 't.pid'
    pidfile.write_text('not a pid\n')
    assert process.status(str(pidfile)).stale_reason == 'pidfile holds no pid'
    pidfile.unlink()
    (run_dir / 'run' / 't.pid.json').write_text('{"pid": 1}')
    assert process.status(str(pidfile)).stale_reason == 'metadata sidecar without pidfile'


def test_write_atomic_replaces_whole_file_with_mode(run_dir):
    path = run_dir / 'run' / 'f'
    path.write_text('old content that is longer\n')
    process.write_atomic(str(path), b'123\n', 0o640)
    assert path.read_text() == '123\n'
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o640)
    assert sorted(os.listdir(run_dir / 'run')) == ['f']


def test_write_atomic_failure_keeps_old_file_and_no_temp(run_dir, monkeypatch):
    path = run_dir / 'run' / 'f'
    path.write_text('42\n')

    def broken_fsync(fd):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(process.os, 'fsync', broken_fsync)
    with pytest.raises(OSError):
        process.write_atomic(str(path), b'43\n')
    assert path.read_text() == '42\n'
    assert sorted(os.listdir(run_dir / 'run')) == ['f']


def test_write_state_writes_sidecar_private_and_pidfile(run_dir):
    pidfile = str(run_dir / 'run' / 't.pid')
    process.write_state(pidfile, dict(pid=4242, argv=['x']))
    assert open(pidfile).read() == '4242\n'
    assert process.read_metadata(pidfile)['argv'] == ['x']
    assert os.stat(pidfile + '.json').st_mode & 0o077 == 0
    assert process.remove_state(pidfile) is True
    assert not os.path.exists(pidfile) and not os.path.exists(pidfile + '.json')
    assert process.remove_state(pidfile) is False


# -- environment fingerprint -----------------------------------------------

def test_config_differences_sees_argv_env_and_secret_changes():
    salt = 'abc'
    meta = dict(argv=['a', 'b'], chdir='/', logfile='/l', umask=None, env_salt=salt,
                env_hash=process.env_hash({'A': '1'}, {'S': 'secret'}, salt))
    wanted = dict(argv=['a', 'b'], chdir='/', logfile='/l', umask=None,
                  environment={'A': '1'}, secret_environment={'S': 'secret'})
    assert process.config_differences(meta, wanted) == []
    assert process.config_differences(meta, dict(wanted, argv=['a', 'c'])) == ['argv']
    assert process.config_differences(meta, dict(wanted, environment={'A': '2'})) == ['environment']
    assert process.config_differences(meta, dict(wanted, secret_environment={'S': 'rotated'})) == ['environment']
    assert process.config_differences(meta, dict(wanted, chdir='/tmp', umask='0027')) == ['chdir', 'umask']


def test_env_hash_is_salted_and_does_not_contain_secret():
    one = process.env_hash({}, {'S': 'hunter2'}, 'salt1')
    assert one != process.env_hash({}, {'S': 'hunter2'}, 'salt2')
    assert 'hunter2' not in one


# -- preflight -------------------------------------------------------------

def test_resolve_executable(tmp_path):
    script = tmp_path / 'prog'
    script.write_text('#!/bin/sh\n')
    with pytest.raises(process.ProcessError, match='is not executable'):
        process.resolve_executable(str(script))
    script.chmod(0o755)
    assert process.resolve_executable(str(script)) == str(script)
    assert process.resolve_executable('./prog', chdir=str(tmp_path)) == str(script)
    assert process.resolve_executable('prog', path='/nonexistent:%s' % tmp_path) == str(script)
    with pytest.raises(process.ProcessError, match='does not exist'):
        process.resolve_executable(str(tmp_path / 'missing'))
    with pytest.raises(process.ProcessError, match='not found in PATH'):
        process.resolve_executable('cohort-no-such-program', path=str(tmp_path))
    with pytest.raises(process.ProcessError, match='not a regular file'):
        process.resolve_executable(str(tmp_path) + '/')


def test_check_directory(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('')
    with pytest.raises(process.ProcessError, match='cannot create pidfile directory .*Not a directory'):
        process.check_directory(str(blocker / 'run' / 'x.pid'), 'pidfile', True, False)
    with pytest.raises(process.ProcessError, match='does not exist'):
        process.check_directory(str(tmp_path / 'missing' / 'x.pid'), 'pidfile', False, False)
    assert process.check_directory(str(tmp_path / 'new' / 'x.pid'), 'pidfile', True, True) is True
    assert not (tmp_path / 'new').exists()  # check mode creates nothing
    assert process.check_directory(str(tmp_path / 'new' / 'x.pid'), 'pidfile', True, False) is True
    assert (tmp_path / 'new').is_dir()


def test_parse_signal():
    assert process.parse_signal('HUP') == signal.SIGHUP
    assert process.parse_signal('sigusr2') == signal.SIGUSR2
    assert process.parse_signal('10') == 10
    for bad in ('NOPE', 'SIG_IGN', '999'):
        with pytest.raises(process.ProcessError):
            process.parse_signal(bad)


# -- start -----------------------------------------------------------------

def test_start_detaches_and_records(run_dir, reaper):
    meta = start(run_dir, reaper, ['sleep', '30'], executable='/bin/sleep', umask=0o027)
    pid = meta['pid']
    assert process.status(str(run_dir / 'run' / 't.pid')).running
    assert os.getsid(pid) == pid and os.getpgid(pid) == pid  # own session and group
    assert os.readlink('/proc/%d/fd/0' % pid) == '/dev/null'
    assert os.readlink('/proc/%d/fd/1' % pid) == str(run_dir / 't.log')
    assert os.readlink('/proc/%d/fd/2' % pid) == str(run_dir / 't.log')
    assert sorted(os.listdir('/proc/%d/fd' % pid)) == ['0', '1', '2']  # nothing else inherited
    with open('/proc/%d/status' % pid) as f:
        assert 'Umask:\t0027' in f.read()
    assert meta['start_time'] == process.read_stat(pid)[1]


def test_start_failure_reports_exit_code_and_this_start_log_only(run_dir, reaper):
    log = run_dir / 't.log'
    log.write_text('old line from an earlier run\n')
    argv = [sys.executable, '-c', 'import sys; print("boom: port in use"); sys.exit(3)']
    with pytest.raises(process.ProcessError) as err:
        start(run_dir, reaper, argv, start_wait=5)
    assert err.value.details['rc'] == 3
    assert err.value.details['log_tail'] == ['boom: port in use']
    assert not os.path.exists(run_dir / 'run' / 't.pid')
    assert not os.path.exists(run_dir / 'run' / 't.pid.json')


# -- stop ------------------------------------------------------------------

def test_stop_with_term(run_dir, reaper):
    meta = start(run_dir, reaper, ['sleep', '30'])
    assert process.stop(meta['pid'], meta, stop_timeout=5) == 'term'
    assert not process.is_alive(meta['pid'], meta['start_time'])


def test_stop_escalates_to_kill_when_term_is_ignored(run_dir, reaper):
    meta = start(run_dir, reaper, [sys.executable, '-c', IGNORE_TERM], start_wait=0.5)
    begun = time.monotonic()
    assert process.stop(meta['pid'], meta, stop_timeout=1) == 'kill'
    assert time.monotonic() - begun >= 1  # it waited for TERM first
    assert not process.is_alive(meta['pid'], meta['start_time'])


def test_stop_reaches_workers_in_the_process_group(run_dir, reaper):
    worker_file = run_dir / 'worker.pid'
    script = 'sleep 30 & echo $! > %s; wait' % worker_file
    meta = start(run_dir, reaper, ['/bin/sh', '-c', script], start_wait=0.3)
    deadline = time.monotonic() + 5
    while not worker_file.exists() or not worker_file.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    worker = int(worker_file.read_text())
    worker_start = process.read_stat(worker)[1]
    reaper.append((worker, worker_start))
    process.stop(meta['pid'], meta, stop_timeout=5)
    assert not process.is_alive(worker, worker_start)


def test_send_signal_refuses_unverified_pid(reaper):
    argv = ['sleep', '30']
    child = spawn(reaper, argv)
    meta = meta_for(child.pid, argv)
    meta['start_time'] += 1
    with pytest.raises(process.ProcessError, match='no longer ours'):
        process.send_signal(child.pid, meta, signal.SIGTERM)
    assert process.is_alive(child.pid)


def test_log_tail_reads_from_offset(tmp_path):
    log = tmp_path / 'l'
    log.write_text('a\nb\n')
    offset = log.stat().st_size
    with open(log, 'a') as f:
        f.write(''.join('line %d\n' % i for i in range(30)))
    tail = process.log_tail(str(log), offset)
    assert tail[0] == 'line 10' and tail[-1] == 'line 29' and len(tail) == 20
    assert process.log_tail(str(tmp_path / 'missing')) == []
