# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout guard's state file and its fence, shared by the guard and the weights API.

The guard (roles/loadbalancer/files/rollout_guard.py) keeps its state in one JSON file (0600) on the load
balancer host. Every arm carries a **generation**, strictly increasing; ``fence`` is the lowest generation
still allowed to change the traffic or renew the lease. Arming generation G sets ``fence = G`` (every older
arm is fenced off); a revert by the guard, a rollback and a disarm after a rollback set ``fence = G + 1``
(nothing written by the run that armed G can undo the revert). The weights API refuses a request whose
``X-Rollout-Generation`` header is below the fence, under the same file lock as the guard's own changes, so a
check and the change it guards are atomic.

This file is shipped next to the guard and the weights API on the LB host: standard library only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time

STATE_VERSION = 1


class GuardStateError(RuntimeError):
    """The state file cannot be read or written."""


class Fenced(ValueError):
    """A request from a generation older than the fence (an orphaned worker, a superseded controller)."""


def empty_state():
    return dict(version=STATE_VERSION, generation=0, fence=0, armed=None, last_revert=None, revert_pending=None,
                updated_epoch=None)


def load(path):
    """The state in ``path``; a fresh state when the file does not exist. GuardStateError when unreadable."""
    try:
        with open(path, 'r', encoding='utf-8') as handle:
            text = handle.read()
    except FileNotFoundError:
        return empty_state()
    except OSError as exc:
        raise GuardStateError('cannot read guard state %s: %s' % (path, exc)) from exc
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise GuardStateError('guard state %s is not JSON: %s' % (path, exc)) from exc
    if not isinstance(doc, dict) or doc.get('version') != STATE_VERSION:
        raise GuardStateError('guard state %s has no version %d' % (path, STATE_VERSION))
    state = empty_state()
    state.update(doc)
    return state


def save(path, state):
    """Write atomically (temporary file, fsync, rename), mode 0600."""
    state = dict(state, updated_epoch=round(time.time(), 3))
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix='.guard-state.', dir=directory)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            os.fchmod(handle.fileno(), 0o600)
            json.dump(state, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, path)
        tmp = None
    finally:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
    return state


@contextlib.contextmanager
def locked(path):
    """Hold the state's lock file (``<path>.lock``, 0600) for a read-check-change sequence."""
    fd = os.open(path + '.lock', os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def parse_generation(value):
    """An arm generation from a header or a JSON body: a positive integer, or None when absent."""
    if value is None or value == '':
        return None
    if isinstance(value, bool):
        raise ValueError('generation must be a positive integer, got %r' % (value,))
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError('generation must be a positive integer, got %r' % (value,)) from None
    if number < 1:
        raise ValueError('generation must be a positive integer, got %r' % (value,))
    return number


def check_generation(state, generation):
    """Raise Fenced when ``generation`` (not None) is below the state's fence."""
    if generation is not None and generation < int(state.get('fence') or 0):
        raise Fenced('generation %d is fenced off (the guard accepts generation %d and later): the phase that '
                     'armed it was superseded or rolled back, nothing it sends may move the traffic'
                     % (generation, int(state['fence'])))
