# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pidfile-managed background processes on Linux hosts without systemd.

The logic behind ``cohort.rollout.daemon``, kept free of AnsibleModule so it
can be unit tested and reused.  Linux only: identities come from ``/proc``.

A managed process is described by two files:

* ``<pidfile>``       the pid, one line (what other tools expect);
* ``<pidfile>.json``  the metadata sidecar: argv, working directory, log file,
  non-secret environment, a salted hash of the whole environment (secrets
  included, the secrets themselves never stored), the process start time
  (``/proc/<pid>/stat`` field 22, clock ticks since boot) and the boot id.

Before any signal the pid is verified: it must exist, not be a zombie, have the
recorded start time on the recorded boot, and a command line that is the
recorded argv (or starts with it, or equals the command line seen right after
start).  Anything else means the pidfile is stale and that pid is never
signalled.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import tempfile
import time

from ansible_collections.cohort.rollout.plugins.module_utils.times import iso

METADATA_VERSION = 1
PROC = '/proc'
BOOT_ID_PATH = '/proc/sys/kernel/random/boot_id'
POLL_INTERVAL = 0.05
KILL_WAIT = 5.0
LOG_TAIL_LINES = 20
LOG_TAIL_BYTES = 16384
# Configuration whose change needs a restart to take effect.
CONFIG_KEYS = ('argv', 'env_hash', 'chdir', 'logfile', 'umask')


class ProcessError(Exception):
    """A failure to report to the user as is (no traceback)."""

    def __init__(self, msg, **details):
        super(ProcessError, self).__init__(msg)
        self.msg = msg
        self.details = details


# --------------------------------------------------------------------------
# /proc readers
# --------------------------------------------------------------------------

def read_stat(pid):
    """Return (state, start_time) of a pid from /proc/<pid>/stat, or None."""
    try:
        with open('%s/%d/stat' % (PROC, pid), 'rb') as f:
            data = f.read().decode('utf-8', 'replace')
    except (IOError, OSError):
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(')') + 2:].split()
    if len(fields) < 20:
        return None
    # fields[0] is field 3 (state); field 22 (starttime) is fields[19].
    try:
        return fields[0], int(fields[19])
    except ValueError:
        return None


def read_cmdline(pid):
    """Return the argv of a pid as a list of strings, or None if it is gone."""
    try:
        with open('%s/%d/cmdline' % (PROC, pid), 'rb') as f:
            data = f.read()
    except (IOError, OSError):
        return None
    if data.endswith(b'\0'):
        data = data[:-1]
    if not data:
        return []
    return [part.decode('utf-8', 'surrogateescape') for part in data.split(b'\0')]


def read_boot_id():
    try:
        with open(BOOT_ID_PATH) as f:
            return f.read().strip()
    except (IOError, OSError):
        return None


def is_alive(pid, start_time=None):
    """True if the pid exists, is not a zombie and (if given) has that start time."""
    stat = read_stat(pid)
    if stat is None:
        return False
    state, started = stat
    if state in ('Z', 'X', 'x'):
        return False
    return start_time is None or started == start_time


def reap(pid):
    """Collect the exit status of pid if it is our child; ignore otherwise."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except OSError:
        pass


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------

def metadata_path(pidfile):
    return pidfile + '.json'


def write_atomic(path, data, mode=0o644):
    """Write bytes to path atomically: temporary file (``mode`` before any byte) in the same directory,
    fsync, rename, then fsync of the directory so that the rename is durable too (best effort)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), suffix='.tmp', dir=directory)
    try:
        with os.fdopen(fd, 'wb') as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def remove_quietly(path):
    try:
        os.unlink(path)
        return True
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise
        return False


def read_pidfile(pidfile):
    """Return the pid in a pidfile, or None if it is missing or unreadable as a pid."""
    try:
        with open(pidfile) as f:
            text = f.read().strip()
    except (IOError, OSError) as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise ProcessError('Cannot read pidfile %s: %s' % (pidfile, e.strerror))
    try:
        pid = int(text.split()[0]) if text else 0
    except ValueError:
        return None
    return pid if pid > 0 else None


def read_metadata(pidfile):
    try:
        with open(metadata_path(pidfile)) as f:
            meta = json.load(f)
    except (IOError, OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def write_state(pidfile, meta):
    """Sidecar first, then the pidfile: a pidfile never exists without its metadata."""
    write_atomic(metadata_path(pidfile), (json.dumps(meta, indent=2, sort_keys=True) + '\n').encode('utf-8'), 0o600)
    write_atomic(pidfile, ('%d\n' % meta['pid']).encode('ascii'), 0o644)


def remove_state(pidfile):
    removed = remove_quietly(pidfile)
    return remove_quietly(metadata_path(pidfile)) or removed


def log_tail(logfile, offset=0, lines=LOG_TAIL_LINES):
    """Last lines of the log written after byte offset (this start's output only)."""
    try:
        with open(logfile, 'rb') as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            start = max(offset, size - LOG_TAIL_BYTES, 0)
            f.seek(start)
            data = f.read()
    except (IOError, OSError):
        return []
    text = data.decode('utf-8', 'replace').splitlines()
    if start > offset and text:
        text = text[1:]  # first line is probably cut in the middle
    return text[-lines:]


# --------------------------------------------------------------------------
# Environment fingerprint
# --------------------------------------------------------------------------

def env_hash(environment, secret_environment, salt):
    """Salted SHA-256 of the whole explicit environment; a changed secret changes it."""
    merged = dict(environment or {})
    merged.update(secret_environment or {})
    payload = json.dumps(sorted(merged.items()), separators=(',', ':'))
    return hashlib.sha256((salt + '\0' + payload).encode('utf-8', 'surrogateescape')).hexdigest()


def new_salt():
    return hashlib.sha256(os.urandom(32)).hexdigest()[:32]


# --------------------------------------------------------------------------
# Identity
# --------------------------------------------------------------------------

class Status(object):
    """What a pidfile says and whether it names our live process."""

    def __init__(self, pidfile, pid=None, meta=None, running=False, stale_reason=None):
        self.pidfile = pidfile
        self.pid = pid
        self.meta = meta
        self.running = running
        self.stale_reason = stale_reason

    @property
    def stale(self):
        return self.stale_reason is not None


def cmdline_matches(cmdline, meta):
    """The live command line is ours: exactly the recorded argv, or the command
    line observed right after start (programs that rewrite their title,
    interpreters run through a shebang).

    A program that re-executes itself with another argv is not recognised:
    HAProxy's master, on a reload, inserts ``-sf <pids> -x <socket>`` right
    after argv[0]. Run such a program under a supervisor that keeps one pid and
    command line (the loadbalancer role's haproxy_supervisor.py)."""
    if not cmdline:
        return False
    argv = meta.get('argv') or []
    if argv and cmdline == argv:
        return True
    observed = _strip_padding(meta.get('cmdline') or [])
    return bool(observed) and _strip_padding(cmdline) == observed


def _strip_padding(cmdline):
    # A rewritten title is often padded with NULs up to the old argv's length.
    end = len(cmdline)
    while end and cmdline[end - 1] == '':
        end -= 1
    return list(cmdline[:end])


def identify(pid, meta):
    """Return None if pid is our live process described by meta, else why not."""
    if not meta:
        return 'no metadata sidecar %s: cannot verify pid %d' % ('(<pidfile>.json)', pid)
    if meta.get('pid') != pid:
        return 'metadata names pid %s, pidfile names pid %d' % (meta.get('pid'), pid)
    boot_id = read_boot_id()
    if meta.get('boot_id') and boot_id and meta['boot_id'] != boot_id:
        return 'recorded on another boot'
    stat = read_stat(pid)
    if stat is None:
        return 'pid %d is not running' % pid
    state, started = stat
    if state in ('Z', 'X', 'x'):
        return 'pid %d has exited (zombie)' % pid
    if started != meta.get('start_time'):
        return 'pid %d was recycled: start time %d, recorded %s' % (pid, started, meta.get('start_time'))
    cmdline = read_cmdline(pid)
    if cmdline is None:
        return 'pid %d is not running' % pid
    if not cmdline_matches(cmdline, meta):
        return 'pid %d runs another program: %r' % (pid, cmdline)
    return None


def status(pidfile):
    """Read pidfile and sidecar and verify the pid. Touches nothing."""
    pid = read_pidfile(pidfile)
    meta = read_metadata(pidfile)
    if pid is None:
        if os.path.exists(pidfile):
            return Status(pidfile, None, meta, False, 'pidfile holds no pid')
        if meta is not None:
            return Status(pidfile, None, meta, False, 'metadata sidecar without pidfile')
        return Status(pidfile)
    reason = identify(pid, meta)
    if reason is None:
        return Status(pidfile, pid, meta, True)
    return Status(pidfile, pid, meta, False, reason)


def config_differences(meta, wanted):
    """Names of restart-relevant settings that differ between a running process and wanted."""
    meta = meta or {}
    diffs = []
    for key in CONFIG_KEYS:
        if key == 'env_hash':
            have = meta.get('env_hash')
            want = env_hash(wanted.get('environment'), wanted.get('secret_environment'), meta.get('env_salt', ''))
            if have != want:
                diffs.append('environment')
        elif meta.get(key) != wanted.get(key):
            diffs.append(key)
    return diffs


# --------------------------------------------------------------------------
# Preflight
# --------------------------------------------------------------------------

def resolve_executable(argv0, chdir=None, path=None):
    """Absolute path of the program argv[0] names, searched in PATH if it has no '/'."""
    if not argv0:
        raise ProcessError('command is empty: give the program and its arguments as a list')
    if '/' in argv0:
        candidate = argv0 if os.path.isabs(argv0) else os.path.join(chdir or os.getcwd(), argv0)
        candidates = [candidate]
    else:
        search = path if path is not None else os.environ.get('PATH', os.defpath)
        candidates = [os.path.join(d or '.', argv0) for d in search.split(os.pathsep)]
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.path.abspath(candidate)
    if '/' in argv0:
        if not os.path.exists(candidates[0]):
            raise ProcessError('executable %s does not exist' % candidates[0])
        if not os.path.isfile(candidates[0]):
            raise ProcessError('executable %s is not a regular file' % candidates[0])
        raise ProcessError('executable %s is not executable' % candidates[0])
    raise ProcessError('executable %s not found in PATH (%s)' % (argv0, search))


def check_directory(path, what, create, check_mode):
    """Make sure the directory for a file exists and is writable (create it if allowed)."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(directory):
        if check_mode:
            if not os.access(directory, os.W_OK | os.X_OK):
                raise ProcessError('%s directory %s is not writable' % (what, directory))
            return False
        probe_writable(directory, what)
        return False
    if os.path.exists(directory):
        raise ProcessError('%s directory %s exists but is not a directory' % (what, directory))
    if not create:
        raise ProcessError('%s directory %s does not exist (create_dirs is false)' % (what, directory))
    if check_mode:
        return True
    try:
        os.makedirs(directory, 0o755)
    except OSError as e:
        raise ProcessError('cannot create %s directory %s: %s' % (what, directory, e.strerror))
    probe_writable(directory, what)
    return True


def probe_writable(directory, what):
    # os.access() says yes to root on read-only file systems: really create a file.
    try:
        fd, probe = tempfile.mkstemp(prefix='.probe.', dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ProcessError('%s directory %s is not writable: %s' % (what, directory, e.strerror))


def check_target(path, what):
    if os.path.isdir(path):
        raise ProcessError('%s %s is a directory' % (what, path))
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise ProcessError('%s %s is not writable' % (what, path))


def open_log(logfile):
    try:
        return os.open(logfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, 'O_CLOEXEC', 0), 0o644)
    except OSError as e:
        raise ProcessError('cannot open logfile %s: %s' % (logfile, e.strerror))


# --------------------------------------------------------------------------
# Start / stop / signal
# --------------------------------------------------------------------------


def _default_signals():
    """In the child: the signal dispositions a service manager gives a service.

    Ansible may itself run with SIGHUP or SIGINT ignored (nohup, CI runners); an ignored
    disposition survives exec, and a daemon started from there would ignore its reload signal.
    """
    for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, signal.SIG_DFL)


def start(name, argv, pidfile, logfile, executable=None, chdir='/', environment=None,
          secret_environment=None, umask=None, start_wait=1.0):
    """Start argv detached, record it, watch it for start_wait seconds.

    Returns the metadata written.  Raises ProcessError (with exit code and log
    tail) if the program exits during start_wait; its pidfile is removed then.
    """
    import subprocess  # only the starting path needs it

    env = dict(os.environ)
    env.update(environment or {})
    env.update(secret_environment or {})
    salt = new_salt()
    log_fd = open_log(logfile)
    offset = os.lseek(log_fd, 0, os.SEEK_END)
    devnull = os.open(os.devnull, os.O_RDONLY)
    old_umask = os.umask(umask) if umask is not None else None
    try:
        # A new session: no controlling terminal, its own process group (so a
        # stop reaches its workers too), not hit by signals meant for Ansible.
        # stdin/stdout/stderr are /dev/null and the log, every other fd is
        # closed, so the task never waits on a pipe the daemon still holds.
        proc = subprocess.Popen(argv, executable=executable, stdin=devnull, stdout=log_fd,
                                stderr=subprocess.STDOUT, cwd=chdir, env=env, close_fds=True,
                                start_new_session=True, preexec_fn=_default_signals)
    except OSError as e:
        raise ProcessError('%s: cannot execute %s: %s' % (name, argv[0], e.strerror))
    finally:
        if old_umask is not None:
            os.umask(old_umask)
        os.close(devnull)
        os.close(log_fd)

    stat = read_stat(proc.pid)
    meta = {
        'version': METADATA_VERSION,
        'name': name,
        'pid': proc.pid,
        'argv': list(argv),
        # Popen returns once exec has begun; for a moment the kernel shows an empty cmdline.
        'cmdline': read_cmdline(proc.pid) or list(argv),
        'executable': executable,
        'chdir': chdir,
        'logfile': logfile,
        'umask': umask,
        'environment': dict(environment or {}),
        'env_salt': salt,
        'env_hash': env_hash(environment, secret_environment, salt),
        'start_time': stat[1] if stat else None,
        'boot_id': read_boot_id(),
        'started_at': iso(),
    }
    write_state(pidfile, meta)

    deadline = time.monotonic() + max(start_wait, 0)
    while True:
        code = proc.poll()
        if code is not None:
            remove_state(pidfile)
            how = ('killed by signal %d' % -code) if code < 0 else ('exit code %d' % code)
            raise ProcessError('%s exited during start (%s); see log_tail or %s' % (name, how, logfile),
                               rc=code, log_tail=log_tail(logfile, offset))
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_INTERVAL)

    # Programs that rewrite their title do so early: record what /proc shows now.
    cmdline = read_cmdline(proc.pid)
    if cmdline and cmdline != meta['cmdline']:
        meta['cmdline'] = cmdline
        write_state(pidfile, meta)
    # Popen would warn about a still-running child when collected; it is detached on purpose.
    proc.returncode = 0
    return meta


def _group_of(pid):
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _send(pid, sig, group):
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except OSError as e:
        if e.errno != errno.ESRCH:
            raise ProcessError('cannot send signal %d to pid %d: %s' % (sig, pid, e.strerror))


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    # killpg succeeds on zombies too: look for a live member.
    for entry in os.listdir(PROC):
        if entry.isdigit():
            try:
                with open('%s/%s/stat' % (PROC, entry), 'rb') as f:
                    data = f.read().decode('utf-8', 'replace')
            except (IOError, OSError):
                continue
            fields = data[data.rfind(')') + 2:].split()
            if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ('Z', 'X', 'x'):
                return True
    return False


def _wait_gone(pid, start_time, timeout, pgid=None):
    deadline = time.monotonic() + timeout
    while True:
        reap(pid)
        gone = not is_alive(pid, start_time) and (pgid is None or not _group_alive(pgid))
        if gone:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL)


def stop(pid, meta, stop_timeout=10.0, kill_wait=KILL_WAIT):
    """Stop a verified pid: TERM, wait up to stop_timeout, then KILL, confirm gone.

    Signals go to the process group when the process leads its own group (as
    start() arranges), so its workers stop too.  Returns 'term' or 'kill':
    which signal ended it.  The caller must have verified pid with identify().
    """
    start_time = meta.get('start_time')
    group = _group_of(pid) == pid
    pgid = pid if group else None
    _send(pid, signal.SIGTERM, group)
    if _wait_gone(pid, start_time, stop_timeout, pgid):
        return 'term'
    # Re-verify before escalating: the pid may have exited and been recycled meanwhile.
    if is_alive(pid, start_time):
        _send(pid, signal.SIGKILL, group)
    elif group:
        _send(pid, signal.SIGKILL, True)  # leader gone, workers left: the group id cannot be reused while they live
    if _wait_gone(pid, start_time, kill_wait, pgid):
        return 'kill'
    raise ProcessError('pid %d is still running %.0f s after SIGKILL' % (pid, kill_wait))


def send_signal(pid, meta, sig):
    """Signal a verified pid (the process itself, not its group)."""
    if identify(pid, meta) is not None:
        raise ProcessError('pid %d is no longer ours; not signalling it' % pid)
    _send(pid, sig, False)


def parse_signal(name):
    """'HUP', 'SIGHUP', 'hup' or '1' -> signal number; ProcessError if unknown."""
    text = str(name).strip().upper()
    if text.isdigit():
        number = int(text)
        valid = set(int(s) for s in signal.Signals)
        if number in valid:
            return number
        raise ProcessError('unknown signal number %s' % name)
    if not text.startswith('SIG'):
        text = 'SIG' + text
    if text.startswith('SIG_') or not hasattr(signal, text):
        raise ProcessError('unknown signal %s' % name)
    return int(getattr(signal, text))
