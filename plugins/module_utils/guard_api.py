# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Client of the rollout guard on a load balancer host (roles/loadbalancer/files/rollout_guard.py).

One definition, used by the ``rollout_guard`` module (arm, disarm, fence, query, reconciled) and by the
``metric_gate`` action plugin, which renews the lease at every sample.
"""

from __future__ import annotations

from ansible_collections.cohort.rollout.plugins.module_utils import http_json


class GuardError(RuntimeError):
    """The guard could not be reached or answered something that is not its JSON."""


class GuardRefused(ValueError):
    """The guard refused the request (nothing changed). ``status`` 409 with ``fenced`` means superseded."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def fenced(self):
        return self.status == 409 and 'fenced' in self.message


def call(url, path, body=None, token=None, validate_certs=True, timeout=5.0):
    """POST ``body`` (or GET when None) to ``url + path``; the guard's JSON answer."""
    full = url.rstrip('/') + path
    try:
        answer = http_json.request(full, body, token=token, validate_certs=validate_certs, timeout=timeout)
    except http_json.Refused as exc:
        raise GuardRefused(exc.status, 'guard %s answered %s: %s' % (full, exc.status, exc.detail)) from exc
    except http_json.Unreachable as exc:
        raise GuardError('cannot reach the rollout guard at %s: %s' % (full, exc)) from exc
    except http_json.NotJSON as exc:
        raise GuardError('the guard at %s returned something other than JSON: %r' % (full, exc.raw)) from exc
    if not isinstance(answer, dict):
        raise GuardError('the guard at %s returned %r, not a JSON object' % (full, answer))
    return answer


def renew(url, generation, token=None, lease_seconds=None, validate_certs=True, timeout=5.0):
    body = {'generation': int(generation)}
    if lease_seconds:
        body['lease_seconds'] = float(lease_seconds)
    return call(url, '/renew', body, token=token, validate_certs=validate_certs, timeout=timeout)


def unreconciled(state):
    """The guard's last revert when the controller has not completed its rollback yet, else None."""
    last = state.get('last_revert') if isinstance(state, dict) else None
    return last if last and not last.get('reconciled') else None


def describe_revert(last):
    """One line naming why and when the guard reverted (its state's ``last_revert``), or None."""
    if not isinstance(last, dict) or not last.get('reason'):
        return None
    reason = last['reason']
    detail = last.get('detail') or {}
    if reason == 'alert':
        why = 'the rollback alert %s fired' % (detail.get('alert') or '?')
    elif reason == 'lease_expired':
        late = None
        if last.get('epoch') is not None and last.get('lease_expires_epoch') is not None:
            late = float(last['epoch']) - float(last['lease_expires_epoch'])
        why = 'its lease expired (no renewal in time%s)' % (', reverted %.1f s after expiry' % late if late is not None else '')
    else:
        why = reason
    return 'the guard reverted generation %s of phase %s at %s: %s' % (
        last.get('generation', '?'), last.get('phase', '?'), last.get('at', '?'), why)


def fence_cause(url, generation, token=None, validate_certs=True, timeout=5.0):
    """Who fenced ``generation`` off at the guard at ``url``, from its state (never raises): ``(by, why)``.

    ``by`` is ``guard`` (the guard reverted that generation: a lease ran out or a rollback alert fired),
    ``superseded`` (a later run armed a newer generation), ``rollback`` (a rollback, or a disarm after one,
    fenced it off) or ``unknown`` (the guard's state could not be read); ``why`` is one line for people.
    """
    try:
        state = call(url, '/state', token=token, validate_certs=validate_certs, timeout=timeout)
    except (GuardError, GuardRefused) as exc:
        return 'unknown', 'the guard could not say why: %s' % exc
    armed = state.get('armed') or {}
    if isinstance(armed, dict) and int(armed.get('generation') or 0) > int(generation):
        return 'superseded', 'a later run armed generation %s (phase %s)' % (armed['generation'], armed.get('phase', '?'))
    last = state.get('last_revert')
    if isinstance(last, dict) and int(last.get('generation') or 0) == int(generation):
        return 'guard', describe_revert(last)
    return 'rollback', ('the guard did not revert it: a rollback or a disarm fenced it off (fence %s)'
                        % state.get('fence', '?'))
