# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure helpers of the phase playbooks: phase order, times and durations, escalation levels.

Used by the controller-side action plugins ``cohort.rollout.report`` and
``cohort.rollout.notify``; the report file itself is written by report.py only.
"""

from __future__ import annotations

import datetime
import math
import os
import time

from ansible_collections.cohort.rollout.plugins.module_utils import times

# Escalation levels of the runbook, lowest first. "info" is a routine event (phase start, pass).
# Arguments of cohort.rollout.report: the action plugin validates with it, and the
# documentation module declares it, so ansible-test checks the docs against the same spec.
REPORT_ARGUMENT_SPEC = dict(
    path=dict(type='path', required=True),
    phase=dict(type='str', required=True),
    data=dict(type='dict', default={}),
    new_run=dict(type='bool', default=False),
    phases=dict(type='dict'),
    force=dict(type='bool', default=False),
    timing=dict(type='dict', options=dict(
        trip=dict(type='raw', required=True),
        marks=dict(type='dict', default={}),
    )),
    stamp=dict(type='list', elements='str', default=[]),
    copies=dict(type='list', elements='dict', default=[]),
)

LEVELS = ('info', 'normal', 'high', 'critical')
# The runbook's Escalation Path: error rate > 1% critical, 0.5-1% high, below normal.
CRITICAL_ERROR_RATE = 0.01
HIGH_ERROR_RATE = 0.005
# The least level of each event, whatever the error rate.
EVENT_LEVELS = {
    'start': 'info', 'passed': 'info', 'complete': 'info', 'refused': 'normal',
    'investigate': 'high', 'failed': 'high', 'rollback': 'high', 'inconclusive': 'high',
    'rollback_failed': 'critical',
}

# Arguments of cohort.rollout.notify: the action plugin validates with it, and the documentation
# module declares it (as REPORT_ARGUMENT_SPEC above).
NOTIFY_ARGUMENT_SPEC = dict(
    url=dict(type='str', default='', no_log=True),  # a webhook URL is a credential
    token=dict(type='str', no_log=True),
    event=dict(type='str', required=True, choices=sorted(EVENT_LEVELS)),
    phase=dict(type='str', required=True),
    text=dict(type='str', required=True),
    error_rate=dict(type='raw'),
    level=dict(type='str', choices=list(LEVELS)),
    details=dict(type='dict', default={}),
    validate_certs=dict(type='bool', default=True),
    timeout=dict(type='float', default=5.0),
)


class RecordError(Exception):
    """Bad input for a phase record."""


def parse_time(value):
    """Epoch seconds of a time (module_utils/times.py); RecordError when it is not one."""
    try:
        return times.parse_time(value)
    except times.TimeError as exc:
        raise RecordError(str(exc))


def previous_phase(phases, phase):
    """The phase before ``phase`` in spec order (by ``order``), or None for the first one."""
    if phase not in phases:
        raise RecordError('unknown phase %r (phases: %s)' % (phase, ', '.join(sorted(phases))))
    mine = phases[phase].get('order')
    earlier = [(p.get('order'), name) for name, p in phases.items() if p.get('order') is not None and mine is not None
               and p.get('order') < mine]
    return max(earlier)[1] if earlier else None


def order_check(report, phases, phase):
    """(ok, message, previous) -- may ``phase`` start, given the report?

    It may when it is the first phase, or when the previous phase's status is
    ``passed`` and no rollback was recorded since that phase started (a rollback
    stops the candidate, so the next phase would send traffic to nothing).
    """
    prev = previous_phase(phases, phase)
    if prev is None:
        return True, 'phase %s is the first phase' % phase, None
    record = report.get(prev) if isinstance(report, dict) else None
    if not isinstance(record, dict) or not record:
        return False, 'phase %s needs phase %s passed first, but the report has no %s' % (phase, prev, prev), prev
    status = record.get('status')
    if status != 'passed':
        return False, 'phase %s needs phase %s passed first, but %s is %r in the report' % (
            phase, prev, prev, status), prev
    rollback = report.get('rollback')
    if isinstance(rollback, dict) and rollback.get('started_at'):
        try:
            rolled = parse_time(rollback['started_at'])
            started = parse_time(record.get('started_at')) or 0.0
        except RecordError:
            rolled, started = 1.0, 0.0
        if rolled >= started:
            return False, ('phase %s needs phase %s passed first; %s passed, but a rollback at %s came after it: '
                           'start again with the first phase' % (phase, prev, prev, rollback['started_at'])), prev
    return True, 'phase %s passed at %s' % (prev, record.get('ended_at')), prev


def durations(trip, marks, now=None):
    """Seconds from the trip to each mark, and to now ('complete')."""
    now = time.time() if now is None else now
    trip_epoch = parse_time(trip)
    if trip_epoch is None:
        raise RecordError('timing.trip is required')
    epochs = {}
    for name, mark in sorted((marks or {}).items()):
        epoch = parse_time(mark)
        if epoch is not None:
            epochs[name] = epoch
    out = {}
    if epochs and min(epochs.values()) < trip_epoch:
        # The traffic was reverted before the gate tripped (the rollout guard acted on a firing
        # alert first): the rollback was decided then, so its durations count from there.
        out['reverted_before_trip_s'] = round(trip_epoch - min(epochs.values()), 3)
        trip_epoch = min(epochs.values())
    for name, epoch in epochs.items():
        out['trip_to_%s_s' % name] = round(epoch - trip_epoch, 3)
    out['trip_to_complete_s'] = round(now - trip_epoch, 3)
    return out


def archive_path(path, now=None):
    """Where a finished report goes when a new run starts: <dir>/reports/report-<UTC time>.json."""
    now = time.time() if now is None else now
    stamp = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime('%Y%m%dT%H%M%S%fZ')
    base = os.path.splitext(os.path.basename(path))[0]
    return os.path.join(os.path.dirname(os.path.abspath(path)), 'reports', '%s-%s.json' % (base, stamp))


def escalation(event, error_rate=None, level=None):
    """The runbook's escalation level of an event: (level, why)."""
    if level:
        if level not in LEVELS:
            raise RecordError('unknown level %r (levels: %s)' % (level, ', '.join(LEVELS)))
        return level, 'level given'
    if event not in EVENT_LEVELS:
        raise RecordError('unknown event %r (events: %s)' % (event, ', '.join(sorted(EVENT_LEVELS))))
    base = EVENT_LEVELS[event]
    by_rate, why = 'info', 'no error rate'
    if error_rate is not None:
        rate = float(error_rate)
        if math.isnan(rate) or math.isinf(rate) or rate < 0:
            raise RecordError('error_rate must be a finite number >= 0, got %r' % (error_rate,))
        if rate > CRITICAL_ERROR_RATE:
            by_rate, why = 'critical', 'error rate %.4g > 1%%: roll back, page the incident commander, SEV-1' % rate
        elif rate >= HIGH_ERROR_RATE:
            by_rate, why = 'high', 'error rate %.4g in 0.5-1%%: platform team investigates' % rate
        else:
            by_rate, why = 'normal', 'error rate %.4g < 0.5%%: log, assign, monitor the trend' % rate
    chosen = max(base, by_rate, key=LEVELS.index)
    if chosen == base and by_rate != base:
        why = '%s event%s' % (event, ('; ' + why) if error_rate is not None else '')
    return chosen, why
