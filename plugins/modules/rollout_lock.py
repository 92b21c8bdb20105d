#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: rollout_lock
short_description: One rollout at a time per load balancer (a lock file on the load balancer host)
version_added: "0.1.0"
description:
  - Takes, keeps or releases the rollout lock of one load balancer. The lock is a JSON file on the load balancer
    host (not on the controller), so two controllers that share nothing still exclude each other.
  - The action plugin of the same name runs on the controller. It describes the holder (controller host name,
    C(ansible-playbook) pid and its start time, user), runs this module on the load balancer host and, when
    the lock is held by a run of the same controller host, checks whether that run's process still exists. A lock
    whose holder process is gone, or whose O(ttl) has expired, is reported as stale.
  - A held lock, stale or not, is only replaced when O(break_lock=true); the previous holder is returned so that
    the caller can record it.
  - A task passes O(path), O(state), O(ttl), O(break_lock) and O(phase) only; the action plugin validates them with
    the argument spec this module declares and refuses anything else before the lock is touched.
  - Acquiring a lock already held by the same run keeps it and refreshes its expiry (O(ttl) from now) and its
    phase, so that the lock C(deploy.yml) carries from one phase into the next never looks stale while it runs.
author:
  - cohort.rollout contributors (!UNKNOWN)
options:
  path:
    description:
      - Path of the lock file on the load balancer host. Its directory is made (mode 0700) when missing.
    type: path
    required: true
  state:
    description:
      - V(present) takes the lock (or keeps it when this run holds it); V(absent) releases it when this run holds it.
      - V(query) only reads the lock and says who holds it, whether it expired and whether it is stale; it writes
        nothing (not even the C(.guard) file), so it is safe in check mode and when the lock directory is missing.
    type: str
    choices: [present, absent, query]
    default: present
  ttl:
    description:
      - Seconds after which a lock counts as stale even when its holder cannot be checked (another controller).
      - Must be positive. Use more than the longest phase.
    type: int
    default: 86400
  break_lock:
    description:
      - Replace a lock held by another run (stale or not). Explicit only; the previous holder is returned.
      - A boolean; the string V(false) (as a Jinja2 expression may render it) does not break the lock.
    type: bool
    default: false
  phase:
    description:
      - Which phase takes the lock, shown to whoever finds it held and recorded when the lock is broken.
      - Taking a lock this run already holds moves it to this phase.
    type: str
    default: ''
  holder:
    description:
      - Set by the action plugin, never by a task (a task that sets it fails and nothing is changed).
      - Who takes or releases the lock, as only the controller knows it (controller host name, C(ansible-playbook)
        pid and its start time, user); C(id) identifies the run.
    type: dict
  expected_holder:
    description:
      - Set by the action plugin, never by a task (a task that sets it fails and nothing is changed).
      - With O(break_lock), only break the lock if it is still held by the run with this C(id) (compare and swap,
        so a lock taken in between by a live run is not broken by accident).
    type: str
  stale_holder:
    description:
      - Set by the action plugin, never by a task (a task that sets it fails and nothing is changed).
      - C(id) of a holder that the controller found dead (its process is gone). Reported back as C(stale).
    type: str
attributes:
  check_mode:
    description: Can run in check mode and return what would happen without changing anything.
    support: full
    details: Reports whether the lock would be taken, kept, broken or released; writes nothing.
  diff_mode:
    description: Does not return a diff.
    support: none
notes:
  - Concurrent runs on the same host are serialised with C(fcntl.flock) on C(<path>.guard); the lock file itself
    is created with C(O_EXCL) semantics (written to a temporary file, then hard-linked into place).
"""

EXAMPLES = r"""
- name: Take the rollout lock of the load balancer
  cohort.rollout.rollout_lock:
    path: /var/lib/cohort-rollout/rollout.lock
    ttl: 28800
    phase: canary
  delegate_to: "{{ groups['loadbalancers'][0] }}"

- name: Break a stale lock left by a killed run (explicit)
  cohort.rollout.rollout_lock:
    path: /var/lib/cohort-rollout/rollout.lock
    break_lock: true
  delegate_to: "{{ groups['loadbalancers'][0] }}"
"""

RETURN = r"""
acquired:
  description: Whether this run holds the lock after the task.
  returned: always
  type: bool
holder:
  description: The holder of the lock after the task (this run, or the other run that holds it).
  returned: when a lock exists
  type: dict
  sample: {"id": "ctl-1:4242:1234567", "controller": "ctl-1", "pid": 4242, "user": "deploy", "phase": "canary",
           "acquired_at": "2026-11-26T14:02:05Z", "expires_at": "2026-11-27T14:02:05Z"}
broken:
  description: The previous holder whose lock was broken (O(break_lock)).
  returned: when a lock was broken
  type: dict
held:
  description: With O(state=query), whether a lock file exists (held by anyone, stale or not).
  returned: when O(state=query)
  type: bool
expired:
  description: The lock found is older than its TTL.
  returned: when held by another run
  type: bool
stale:
  description: The lock found is stale (expired, or its holder process is gone according to the controller).
  returned: when held by another run
  type: bool
refreshed:
  description: The lock was already held by this run; its expiry was moved to O(ttl) from now.
  returned: when this run already held the lock
  type: bool
"""

import fcntl
import json
import os
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cohort.rollout.plugins.module_utils.rollout_lock import MODULE_ARGUMENT_SPEC
from ansible_collections.cohort.rollout.plugins.module_utils.times import iso


def read_lock(path):
    """The lock document, {} when absent, or a dict with 'corrupt' when unreadable."""
    try:
        with open(path, 'r', encoding='utf-8') as handle:
            text = handle.read()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or not doc.get('id'):
            raise ValueError('not a lock document')
        return doc
    except ValueError:
        return {'id': 'corrupt', 'corrupt': True, 'acquired_epoch': 0, 'expires_epoch': 0}


def write_lock(path, doc, exclusive):
    """Write atomically; with exclusive, fail (False) if the file appeared meanwhile."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix='.rollout-lock.', dir=directory)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            os.fchmod(handle.fileno(), 0o644)
            json.dump(doc, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
        else:
            os.rename(tmp, path)
            tmp = None
        return True
    finally:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)


def describe(doc):
    if doc.get('corrupt'):
        return 'an unreadable lock file'
    return 'run %s (controller %s, pid %s, user %s, phase %s) since %s' % (
        doc.get('id'), doc.get('controller'), doc.get('pid'), doc.get('user'), doc.get('phase'),
        doc.get('acquired_at'))


def public(doc):
    return dict((k, v) for k, v in doc.items() if not k.endswith('_epoch')) if doc else doc


def query(module, path, holder):
    """state=query: who holds the lock; reads the lock file only."""
    current = read_lock(path)
    result = dict(changed=False, path=path, held=current is not None, acquired=False)
    if current is None:
        result['msg'] = 'no lock held'
        return result
    expired = time.time() > float(current.get('expires_epoch') or 0)
    stale = expired or bool(current.get('corrupt')) or (
        module.params['stale_holder'] is not None and module.params['stale_holder'] == current.get('id'))
    mine = current.get('id') == holder.get('id')
    result.update(holder=public(current), expired=expired, stale=stale, acquired=mine,
                  msg='lock held by %s%s%s' % ('this run: ' if mine else '', describe(current),
                                               ' (STALE)' if stale else ''))
    return result


def run(module):
    params = module.params
    path = params['path']
    holder = params['holder'] or {}
    if not holder.get('id'):
        module.fail_json(msg='holder.id is required (the action plugin sets it)')
    if params['state'] == 'query':
        return query(module, path, holder)
    if params['ttl'] <= 0:
        module.fail_json(msg='ttl must be a positive number of seconds, got %s' % params['ttl'])
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        # A fresh load-balancer host: nothing has made the directory yet.
        if module.check_mode:
            taking = params['state'] == 'present'
            return dict(changed=taking, acquired=taking, path=path,
                        msg='no lock yet (directory %s does not exist)' % directory)
        os.makedirs(directory, 0o700, exist_ok=True)
    now = time.time()
    guard = os.open(path + '.guard', os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(guard, fcntl.LOCK_EX)
        current = read_lock(path)
        result = dict(changed=False, path=path)
        if params['state'] == 'absent':
            if current is None:
                result.update(acquired=False, msg='no lock held')
            elif current.get('id') == holder['id'] or params['break_lock']:
                if not module.check_mode:
                    os.unlink(path)
                result.update(changed=True, acquired=False, released=public(current), msg='lock released')
            else:
                result.update(acquired=False, holder=public(current),
                              msg='lock is held by another run, left alone: %s' % describe(current))
            return result

        mine = dict(holder, phase=params['phase'])
        mine.update(acquired_epoch=now, expires_epoch=now + params['ttl'], acquired_at=iso(now),
                    expires_at=iso(now + params['ttl']), lock_host=os.uname()[1])
        if current is None:
            if not module.check_mode and not write_lock(path, mine, exclusive=True):
                module.fail_json(msg='lock %s appeared while taking it; retry' % path)
            result.update(changed=True, acquired=True, holder=public(mine), msg='lock taken')
            return result
        if current.get('id') == holder['id']:
            # deploy.yml carries its lock from one phase into the next: the expiry (and the
            # phase shown to whoever finds it held) must follow, or the lock looks STALE.
            kept = dict(current)
            kept.update(phase=params['phase'] or current.get('phase'), expires_epoch=now + params['ttl'],
                        expires_at=iso(now + params['ttl']), refreshed_at=iso(now))
            if not module.check_mode:
                write_lock(path, kept, exclusive=False)
            result.update(acquired=True, refreshed=True, holder=public(kept),
                          msg='lock already held by this run; expiry refreshed to %s' % kept['expires_at'])
            return result
        expired = now > float(current.get('expires_epoch') or 0)
        stale = expired or bool(current.get('corrupt')) or (
            params['stale_holder'] is not None and params['stale_holder'] == current.get('id'))
        result.update(expired=expired, stale=stale)
        if params['break_lock']:
            if params['expected_holder'] and params['expected_holder'] != current.get('id'):
                module.fail_json(msg='lock %s changed hands meanwhile (now %s); not broken'
                                 % (path, describe(current)), holder=public(current), acquired=False, **result)
            mine['broke'] = public(current)
            if not module.check_mode:
                write_lock(path, mine, exclusive=False)
            result.update(changed=True, acquired=True, holder=public(mine), broken=public(current),
                          msg='lock broken (was %s%s) and taken' % (describe(current), ', stale' if stale else ''))
            return result
        reason = ''
        if expired:
            reason = ' It is STALE: older than its TTL (expired %s).' % current.get('expires_at')
        elif stale:
            reason = ' It is STALE: its holder process is gone.'
        module.fail_json(
            msg='rollout lock %s is held by %s.%s To roll back (never blocked by the lock, no flags needed): '
                'ansible-playbook rollback.yml. To start a phase anyway (only if no rollout runs): '
                '-e rollout_break_lock=true' % (path, describe(current), reason),
            acquired=False, holder=public(current), **result)
    finally:
        os.close(guard)
    return None


def main():
    module = AnsibleModule(argument_spec=MODULE_ARGUMENT_SPEC, supports_check_mode=True)
    try:
        result = run(module)
    except OSError as exc:
        module.fail_json(msg='rollout lock %s: %s' % (module.params['path'], exc))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
