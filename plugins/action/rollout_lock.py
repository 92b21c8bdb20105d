# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin cohort.rollout.rollout_lock: identify this run on the controller, lock on the LB host.

Documentation: plugins/modules/rollout_lock.py. The lock file lives on the load
balancer host (the module runs there); this plugin adds what only the controller
knows: who this run is, and whether a holder from this same controller is still alive.
"""

from __future__ import annotations

import getpass
import os
import socket

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.cohort.rollout.plugins.module_utils.arguments import ArgumentError, validate_args
from ansible_collections.cohort.rollout.plugins.module_utils.rollout_lock import LOCK_ARGUMENT_SPEC

MODULE = 'cohort.rollout.rollout_lock'


def process_start_ticks(pid):
    """Start time of a process (field 22 of /proc/<pid>/stat), or None when it does not exist."""
    try:
        with open('/proc/%d/stat' % int(pid), 'r', encoding='utf-8') as handle:
            stat = handle.read()
    except (OSError, ValueError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(')') + 2:].split()
    return fields[19]


def run_identity(pid=None, host=None):
    """Who this ansible-playbook run is: stable for the whole run, unique across runs."""
    pid = pid or os.getppid()  # workers are forked by the ansible-playbook process
    host = host or socket.gethostname()
    start = process_start_ticks(pid) or '0'
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return dict(id='%s:%d:%s' % (host, pid, start), controller=host, pid=pid, pid_start=start, user=user)


def holder_alive(holder, host=None):
    """True/False when the holder ran on this controller host; None when that cannot be told here."""
    host = host or socket.gethostname()
    if not isinstance(holder, dict) or holder.get('controller') != host or not holder.get('pid'):
        return None
    start = process_start_ticks(holder['pid'])
    return start is not None and str(start) == str(holder.get('pid_start'))


def taken_over(result):
    """The holder whose lock was broken, with what was known of it: ``holder_state`` stale, live or unknown.

    stale: expired, unreadable, or its process is gone (same controller); live: its process still runs
    (same controller); unknown: another controller's lock that has not expired (treated as live).
    """
    doc = dict(result['broken'])
    alive = result.get('broken_holder_alive', result.get('holder_alive'))
    if result.get('stale') or alive is False:
        state = 'stale'
    elif alive:
        state = 'live'
    else:
        state = 'unknown'
    doc.update(holder_state=state, expired=bool(result.get('expired')))
    return doc


class ActionModule(ActionBase):
    """Take or release the rollout lock (see the module documentation)."""

    TRANSFERS_FILES = False
    # What a task may pass; holder, expected_holder and stale_holder are this plugin's to set.
    _VALID_ARGS = frozenset(LOCK_ARGUMENT_SPEC)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        try:
            module_args = validate_args('rollout_lock', self._task.args, LOCK_ARGUMENT_SPEC)
        except ArgumentError as exc:
            raise AnsibleActionFail(str(exc))
        if not module_args['path']:
            raise AnsibleActionFail('rollout_lock: path must not be empty')
        holder = run_identity()
        module_args['holder'] = holder
        first = self._execute_module(module_name=MODULE, module_args=module_args, task_vars=task_vars)
        if module_args['state'] == 'query':
            found = first.get('holder')
            if found and not first.get('failed') and found.get('id') != holder['id']:
                alive = holder_alive(found)
                first['holder_alive'] = alive
                if alive is False and not first.get('stale'):
                    first.update(stale=True, msg=first.get('msg', '') + ' (STALE: its holder process is gone)')
            result.update(first)
            result['me'] = holder
            return result
        other = first.get('holder') if first.get('failed') and first.get('holder') else None
        if other and other.get('id') != holder['id']:
            alive = holder_alive(other)
            if alive is False:
                # Tell the module, so that its message and its return say "stale".
                module_args['stale_holder'] = other['id']
                if module_args['break_lock']:
                    module_args['expected_holder'] = other['id']
                first = self._execute_module(module_name=MODULE, module_args=module_args, task_vars=task_vars)
                if not first.get('failed'):
                    first.setdefault('stale', True)
            first['holder_alive'] = alive
        elif first.get('broken'):
            first['broken_holder_alive'] = holder_alive(first['broken'])
        if first.get('broken'):
            first['taken_over'] = taken_over(first)
        result.update(first)
        result['me'] = holder
        return result
