#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: daemon
short_description: Run a program as a pidfile-managed background process (hosts without systemd)
version_added: "0.1.0"
description:
  - Starts a program detached from Ansible (new session, stdin from C(/dev/null), stdout and stderr appended
    to O(logfile), every other file descriptor closed), records it in O(pidfile) plus a metadata sidecar
    C(<pidfile>.json), and watches it for O(start_wait) seconds so that a program that exits at once fails the task
    with its exit code and the end of its log.
  - Stops it with C(SIGTERM), then C(SIGKILL) after O(stop_timeout) seconds, and confirms it is gone. Restarts it
    and sends it a reload signal.
  - Before any signal the pid is verified against the sidecar, which records the argv, the start time
    (C(/proc/<pid>/stat) field 22) and the boot id. A pid that has exited, belongs to another boot, was recycled by
    another program (different start time) or runs another command line is never signalled; its pidfile is stale
    and is removed.
  - Idempotent. With O(state=started) a running process is left alone unless its argv, environment (secrets
    included, compared through a salted hash so the secrets are never stored), O(chdir), O(logfile) or O(umask)
    changed, in which case it is restarted.
  - Meant for hosts without systemd (containers, CI, the local sandbox). Where systemd runs, use a unit instead.
  - Linux only, it reads C(/proc). The program must stay in the foreground (no self-daemonising fork), because the pid
    started is the pid managed.
author:
  - cohort.rollout contributors (!UNKNOWN)
options:
  name:
    description:
      - Label of the process, used in messages and in the sidecar.
    type: str
    required: true
  command:
    description:
      - The program and its arguments, as a list. No shell is involved.
      - The program (first element) is looked up in C(PATH) (from O(environment) if it sets C(PATH)) when it has no
        C(/), relative to O(chdir) when it is a relative path. It must exist and be executable, or nothing starts.
    type: list
    elements: str
    required: true
  pidfile:
    description:
      - Path of the pidfile. The metadata sidecar is C(<pidfile>.json) and a lock file C(<pidfile>.lock) serialises
        concurrent runs; both live beside it.
      - Written atomically (temporary file, then rename).
    type: path
    required: true
  logfile:
    description:
      - File that receives the program's stdout and stderr, appended. Kept when the process stops.
    type: path
    required: true
  chdir:
    description:
      - Working directory of the program.
    type: path
    default: /
  environment:
    description:
      - Variables added to the environment the program inherits from the module.
      - Values are shown in diff mode and stored in the sidecar; put secrets in O(secret_environment).
      - Booleans become C(true)/C(false), numbers their decimal text.
    type: dict
    default: {}
  secret_environment:
    description:
      - Like O(environment) but never logged, stored, returned or shown in a diff. A changed value still restarts
        the process (a salted hash of all variables is stored).
    type: dict
    default: {}
  state:
    description:
      - V(started) makes sure the process runs with this configuration (restarting it if the configuration changed).
      - V(stopped) stops it (TERM, then KILL after O(stop_timeout)) and removes the pidfile and sidecar; the log stays.
      - V(restarted) stops it if it runs, then starts it. Always changed.
      - V(reloaded) sends O(reload_signal) to the running process (changed); starts it if it is not running and
        restarts it if its configuration changed, since a signal cannot apply a new argv or environment.
    type: str
    choices: [started, stopped, restarted, reloaded]
    default: started
  reload_signal:
    description:
      - Signal sent for O(state=reloaded), by name with or without C(SIG) (V(HUP), V(SIGUSR2)) or number.
      - HAProxy in master-worker mode reloads on V(USR2), but its master then re-executes itself with
        C(-sf <pids> -x <socket>) inserted right after argv[0], so its command line is no longer the one recorded and
        the module stops recognising it. Run HAProxy under a supervisor that keeps one pid and command line and
        passes the signal on (the C(loadbalancer) role's C(haproxy_supervisor.py), see the examples).
    type: str
    default: HUP
  stop_timeout:
    description:
      - Seconds to wait after C(SIGTERM) before sending C(SIGKILL). Between 0 and 3600.
    type: float
    default: 10
  start_wait:
    description:
      - Seconds to watch a freshly started process for an immediate exit, and after a reload signal for a death.
        Between 0 and 300.
    type: float
    default: 1.0
  umask:
    description:
      - Umask of the program, as an octal string such as V("0027"). Unset means the module's umask.
    type: str
  create_dirs:
    description:
      - Create the directories of O(pidfile) and O(logfile) if they are missing (mode C(0755)).
      - A location that cannot be created or written fails the task before anything starts.
    type: bool
    default: true
attributes:
  check_mode:
    description: Reports what would change (start, stop, restart, reload) and touches nothing.
    support: full
  diff_mode:
    description: Shows before and after of running, pid, argv, working directory, log file, umask and non-secret environment.
    support: full
  platform:
    description: Linux hosts (reads C(/proc)); no systemd needed.
    support: full
    platforms: posix
notes:
  - Process start times come from C(/proc); on hosts whose init does not reap orphans, an exited daemon stays a
    zombie, which counts as not running.
  - Signals to stop go to the process group the module created for the program, so its worker processes stop
    too; the reload signal goes to the program alone.
  - Programs that rewrite their command line (process title) after O(start_wait) cannot be verified and are then
    treated as not running; keep O(start_wait) long enough for such programs.
seealso:
  - name: systemd_service
    description: Use a systemd unit where the host runs systemd.
    link: https://docs.ansible.com/ansible/latest/collections/ansible/builtin/systemd_service_module.html
"""

EXAMPLES = r"""
- name: Start the ultra_fast analyzer
  cohort.rollout.daemon:
    name: analyzer-ultra_fast
    command: [/srv/analyzer/venv/bin/cohort-analyzer, serve, --port, "18082"]
    pidfile: /srv/analyzer/run/analyzer.pid
    logfile: /srv/analyzer/log/analyzer.log
    chdir: /srv/analyzer
    environment:
      ANALYZER_VARIANT: ultra_fast
    secret_environment:
      REDIS_PASSWORD: "{{ redis_password }}"
    umask: "0027"

# HAProxy's master re-executes itself on a reload (new argv), so it runs under the
# loadbalancer role's supervisor, whose pid and command line stay; the supervisor
# passes USR2 (and HUP) on to the master as USR2.
- name: Reload HAProxy (master-worker, under its supervisor)
  cohort.rollout.daemon:
    name: haproxy
    command: [/usr/bin/python3, /srv/lb/api/haproxy_supervisor.py, /usr/sbin/haproxy, -W, -db, -f, /srv/lb/haproxy.cfg]
    pidfile: /srv/lb/run/haproxy.pid
    logfile: /srv/lb/log/haproxy.log
    state: reloaded
    reload_signal: USR2

- name: Stop the ultra_fast analyzer, keep its log
  cohort.rollout.daemon:
    name: analyzer-ultra_fast
    command: [/srv/analyzer/venv/bin/cohort-analyzer, serve, --port, "18082"]
    pidfile: /srv/analyzer/run/analyzer.pid
    logfile: /srv/analyzer/log/analyzer.log
    state: stopped
    stop_timeout: 15
  register: analyzer_stop
"""

RETURN = r"""
pid:
  description:
    - Pid of the running process; with O(state=stopped) the pid that was stopped.
    - Null when nothing runs, and in check mode when the process would be started.
  returned: always
  type: int
  sample: 12345
running:
  description: Whether the process runs after the task (in check mode, whether it would).
  returned: always
  type: bool
  sample: true
command:
  description: The argv of the process.
  returned: always
  type: list
  elements: str
  sample: [/srv/analyzer/venv/bin/cohort-analyzer, serve, --port, "18082"]
operation:
  description: What was done (or would be done in check mode).
  returned: success
  type: str
  sample: restarted
  choices: [none, started, restarted, stopped, reloaded, removed_stale_pidfile]
reason:
  description: Why, for example which settings changed or why the pidfile was stale.
  returned: success
  type: str
  sample: argv changed
stopped_pid:
  description: Pid that was stopped (by V(stopped), V(restarted) or a configuration change).
  returned: when a process was stopped
  type: int
  sample: 12300
stop_signal:
  description: Signal that ended the stopped process, C(TERM) or C(KILL) (after O(stop_timeout)).
  returned: when a process was stopped outside check mode
  type: str
  sample: TERM
rc:
  description: Exit code of a program that exited during O(start_wait); negative is a signal number.
  returned: when the program exited during start
  type: int
  sample: 1
log_tail:
  description: Last lines the program wrote to O(logfile) during this start (or since a reload signal).
  returned: on failure after the program was started
  type: list
  elements: str
  sample: ["Traceback (most recent call last):", "OSError: [Errno 98] Address already in use"]
"""

import fcntl
import os
import signal
import time
import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.cohort.rollout.plugins.module_utils import process as proc

STOP_TIMEOUT_MAX = 3600
START_WAIT_MAX = 300


def argument_spec():
    return dict(
        name=dict(type='str', required=True),
        command=dict(type='list', elements='str', required=True),
        pidfile=dict(type='path', required=True),
        logfile=dict(type='path', required=True),
        chdir=dict(type='path', default='/'),
        environment=dict(type='dict', default={}),
        secret_environment=dict(type='dict', default={}, no_log=True),
        state=dict(type='str', choices=['started', 'stopped', 'restarted', 'reloaded'], default='started'),
        reload_signal=dict(type='str', default='HUP'),
        stop_timeout=dict(type='float', default=10),
        start_wait=dict(type='float', default=1.0),
        umask=dict(type='str'),
        create_dirs=dict(type='bool', default=True),
    )


def env_value(key, value, option):
    if not isinstance(key, str) or not key or '=' in key or '\0' in key:
        raise proc.ProcessError('%s: invalid variable name %r' % (option, key))
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if value is None:
        return ''
    if isinstance(value, (int, float, str)):
        text = str(value)
        if '\0' in text:
            raise proc.ProcessError('%s: value of %s contains a NUL byte' % (option, key))
        return text
    # Never echo the value: it may be a secret.
    raise proc.ProcessError('%s: value of %s must be a string or number, not %s' % (option, key, type(value).__name__))


def normalise(params):
    """Validate the parameters that the argument spec cannot; return the wanted configuration."""
    argv = params['command']
    if not argv or not argv[0]:
        raise proc.ProcessError('command is empty: give the program and its arguments as a list')
    if not 0 <= params['stop_timeout'] <= STOP_TIMEOUT_MAX:
        raise proc.ProcessError('stop_timeout must be between 0 and %d seconds' % STOP_TIMEOUT_MAX)
    if not 0 <= params['start_wait'] <= START_WAIT_MAX:
        raise proc.ProcessError('start_wait must be between 0 and %d seconds' % START_WAIT_MAX)
    umask = params['umask']
    if umask is not None:
        try:
            value = int(umask, 8)
        except ValueError:
            value = -1
        if not 0 <= value <= 0o777:
            raise proc.ProcessError('umask must be an octal string such as "0027", got %r' % umask)
        umask = '%04o' % value
    if not params['chdir'] or not os.path.isabs(params['chdir']):
        raise proc.ProcessError('chdir must be an absolute path')
    pidfile, logfile = params['pidfile'], params['logfile']
    if pidfile == logfile:
        raise proc.ProcessError('pidfile and logfile must be different files')
    secrets = params['secret_environment'] or {}
    environment = params['environment'] or {}
    for key in secrets:
        if key in environment:
            raise proc.ProcessError('%s is set in both environment and secret_environment' % key)
    return dict(
        argv=list(argv),
        chdir=params['chdir'],
        logfile=logfile,
        umask=umask,
        environment=dict((k, env_value(k, v, 'environment')) for k, v in environment.items()),
        secret_environment=dict((k, env_value(k, v, 'secret_environment')) for k, v in secrets.items()),
    )


def describe(meta, pid, running):
    """The diff view of a process: never the secrets, never their hash."""
    if not running or not meta:
        return dict(running=False, pid=None)
    return dict(running=True, pid=pid, command=meta.get('argv'), environment=meta.get('environment') or {},
                chdir=meta.get('chdir'), logfile=meta.get('logfile'), umask=meta.get('umask'))


def wanted_view(wanted, pid):
    return dict(running=True, pid=pid, command=wanted['argv'], environment=wanted['environment'],
                chdir=wanted['chdir'], logfile=wanted['logfile'], umask=wanted['umask'])


class Daemon(object):
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.check = module.check_mode
        self.name = self.params['name']
        self.pidfile = self.params['pidfile']
        self.wanted = normalise(self.params)
        self.result = dict(changed=False, name=self.name, pidfile=self.pidfile, logfile=self.wanted['logfile'],
                           command=self.wanted['argv'], pid=None, running=False)
        self.executable = None

    # -- steps ---------------------------------------------------------------
    def preflight_start(self):
        """Everything a start needs, checked before anything is stopped or started."""
        env_path = self.wanted['environment'].get('PATH')
        self.executable = proc.resolve_executable(self.wanted['argv'][0], self.wanted['chdir'], env_path)
        if not os.path.isdir(self.wanted['chdir']):
            raise proc.ProcessError('chdir %s is not a directory' % self.wanted['chdir'])
        create = self.params['create_dirs']
        proc.check_directory(self.pidfile, 'pidfile', create, self.check)
        proc.check_target(self.pidfile, 'pidfile')
        proc.check_target(proc.metadata_path(self.pidfile), 'pidfile metadata')
        proc.check_directory(self.wanted['logfile'], 'logfile', create, self.check)
        proc.check_target(self.wanted['logfile'], 'logfile')

    def do_start(self):
        if self.check:
            return None
        meta = proc.start(self.name, self.wanted['argv'], self.pidfile, self.wanted['logfile'],
                          executable=self.executable, chdir=self.wanted['chdir'],
                          environment=self.wanted['environment'],
                          secret_environment=self.wanted['secret_environment'],
                          umask=int(self.wanted['umask'], 8) if self.wanted['umask'] else None,
                          start_wait=self.params['start_wait'])
        return meta['pid']

    def do_stop(self, st):
        self.result['stopped_pid'] = st.pid
        if self.check:
            return
        how = proc.stop(st.pid, st.meta, self.params['stop_timeout'])
        self.result['stop_signal'] = how.upper()
        proc.remove_state(self.pidfile)

    def drop_stale(self, st):
        if not self.check:
            proc.remove_state(self.pidfile)
        if st.pid:
            self.module.warn('%s: pidfile %s is stale (%s); %s, pid %d was not signalled'
                             % (self.name, self.pidfile, st.stale_reason,
                                'it would be removed' if self.check else 'removed it', st.pid))

    # -- states --------------------------------------------------------------
    def run(self):
        state = self.params['state']
        reload_sig = proc.parse_signal(self.params['reload_signal'])
        lock = None if self.check else self.lock()
        try:
            st = proc.status(self.pidfile)
            before = describe(st.meta, st.pid, st.running)
            if state == 'stopped':
                after = self.stopped(st)
            else:
                after = self.started(st, state, reload_sig)
        finally:
            if lock is not None:
                os.close(lock)
        if self.module._diff:
            self.result['diff'] = dict(before=before, after=after,
                                       before_header=self.pidfile, after_header=self.pidfile)
        return self.result

    def lock(self):
        """Serialise runs on one pidfile (two plays, two forks on one host)."""
        path = self.pidfile + '.lock'
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            return None  # nothing to protect yet; preflight creates the directory
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, 'O_CLOEXEC', 0), 0o600)
        except OSError as e:
            raise proc.ProcessError('cannot open lock file %s: %s' % (path, e.strerror))
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def stopped(self, st):
        r = self.result
        if st.running:
            self.do_stop(st)
            r.update(changed=True, operation='stopped', pid=st.pid, running=False,
                     reason='stopped pid %d' % st.pid)
        elif st.stale or st.meta is not None:
            self.drop_stale(st)
            r.update(changed=True, operation='removed_stale_pidfile', running=False,
                     reason=st.stale_reason or 'stale pidfile')
        else:
            r.update(operation='none', running=False, reason='not running')
        return dict(running=False, pid=None)

    def started(self, st, state, reload_sig):
        r = self.result
        diffs = proc.config_differences(st.meta, self.wanted) if st.running else []
        if st.running and not diffs and state == 'started':
            r.update(operation='none', pid=st.pid, running=True, reason='running with the same configuration')
            return describe(st.meta, st.pid, True)
        if st.running and not diffs and state == 'reloaded':
            if not self.check:
                self.reload(st, reload_sig)
            r.update(changed=True, operation='reloaded', pid=st.pid, running=True,
                     reason='sent %s' % self.signal_name(reload_sig))
            after = describe(st.meta, st.pid, True)
            after['reload_signal'] = self.signal_name(reload_sig)
            return after

        # Everything below starts a process: check all it needs before stopping anything.
        self.preflight_start()
        if st.running:
            reason = '%s changed' % ', '.join(diffs) if diffs else 'restart requested'
            self.do_stop(st)
            operation = 'restarted'
        else:
            if st.stale:
                self.drop_stale(st)
            reason = ('pidfile was stale: %s' % st.stale_reason) if st.stale else 'not running'
            operation = 'started'
        pid = self.do_start()
        r.update(changed=True, operation=operation, pid=pid, running=True, reason=reason)
        return wanted_view(self.wanted, pid)

    def reload(self, st, sig):
        offset = 0
        try:
            offset = os.path.getsize(st.meta.get('logfile') or self.wanted['logfile'])
        except OSError:
            pass
        proc.send_signal(st.pid, st.meta, sig)
        deadline = time.monotonic() + self.params['start_wait']
        while time.monotonic() < deadline:
            if proc.identify(st.pid, st.meta) is not None:
                break
            time.sleep(proc.POLL_INTERVAL)
        reason = proc.identify(st.pid, st.meta)
        if reason is not None:
            proc.remove_state(self.pidfile)
            raise proc.ProcessError('%s did not survive %s: %s' % (self.name, self.signal_name(sig), reason),
                                    log_tail=proc.log_tail(self.wanted['logfile'], offset))

    @staticmethod
    def signal_name(number):
        try:
            return signal.Signals(number).name
        except ValueError:
            return str(number)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    failure = dict(changed=False, name=module.params['name'], command=module.params['command'],
                   pidfile=module.params['pidfile'], pid=None, running=False)
    try:
        result = Daemon(module).run()
    except proc.ProcessError as e:
        failure.update(e.details)
        module.fail_json(msg=e.msg, **failure)
    except Exception as e:  # pylint: disable=broad-except
        # Never a bare traceback: say what failed, keep the trace for -vvv.
        module.fail_json(msg='%s: unexpected error: %s' % (module.params['name'], to_native(e)),
                         exception=traceback.format_exc(), **failure)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
