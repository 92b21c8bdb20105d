"""Unit tests of the phase order rule, durations and escalation levels."""
from __future__ import annotations

import pytest

from ansible_collections.cohort.rollout.plugins.module_utils import phase_record as pr

PHASES = {'canary': {'order': 1}, 'ramp': {'order': 2}, 'rollout': {'order': 3}}


def test_previous_phase_by_order():
    assert pr.previous_phase(PHASES, 'canary') is None
    assert pr.previous_phase(PHASES, 'ramp') == 'canary'
    assert pr.previous_phase(PHASES, 'rollout') == 'ramp'
    with pytest.raises(pr.RecordError):
        pr.previous_phase(PHASES, 'nope')


@pytest.mark.parametrize('report,ok', [
    ({}, False),
    ({'canary': {'status': 'running'}}, False),
    ({'canary': {'status': 'failed'}}, False),
    ({'canary': {'status': 'inconclusive'}}, False),
    ({'canary': {'status': 'passed', 'started_at': '2026-11-26T10:00:00Z'}}, True),
    # A rollback after the canary passed: the candidate is gone, the ramp must not start.
    ({'canary': {'status': 'passed', 'started_at': '2026-11-26T10:00:00Z'},
      'rollback': {'started_at': '2026-11-26T10:30:00Z'}}, False),
    # A rollback before the canary (an earlier attempt) does not matter.
    ({'canary': {'status': 'passed', 'started_at': '2026-11-26T10:00:00Z'},
      'rollback': {'started_at': '2026-11-26T09:30:00Z'}}, True),
])
def test_order_check_for_ramp(report, ok):
    allowed, message, prev = pr.order_check(report, PHASES, 'ramp')
    assert allowed is ok and prev == 'canary'
    assert 'canary' in message


def test_first_phase_always_allowed():
    assert pr.order_check({}, PHASES, 'canary')[0]


def test_parse_time_and_durations():
    assert pr.parse_time('2026-11-26T14:02:05Z') == pr.parse_time(1795701725)
    assert pr.parse_time('1795701725.5') == 1795701725.5
    assert pr.parse_time(None) is None
    for bad in ('yesterday', True, float('nan'), -1):
        with pytest.raises(pr.RecordError):
            pr.parse_time(bad)
    out = pr.durations('2026-11-26T14:02:05Z', {'shares_reverted': 1795701725.8}, now=1795701735.0)
    assert out == {'trip_to_shares_reverted_s': 0.8, 'trip_to_complete_s': 10.0}
    with pytest.raises(pr.RecordError):
        pr.durations(None, {})


@pytest.mark.parametrize('event,rate,level', [
    ('rollback', 0.05, 'critical'),
    ('rollback', 0.011, 'critical'),
    ('rollback', 0.01, 'high'),      # "> 1%" is critical; exactly 1% is in the 0.5-1% band
    ('failed', 0.007, 'high'),
    ('rollback', 0.0, 'high'),       # a rollback is never below high (e.g. tripped on latency)
    ('investigate', 0.002, 'high'),
    ('start', None, 'info'),
    ('passed', 0.001, 'normal'),     # errors below 0.5%: log them
    ('passed', 0.006, 'high'),
])
def test_escalation_levels(event, rate, level):
    assert pr.escalation(event, rate)[0] == level


def test_escalation_bad_input():
    with pytest.raises(pr.RecordError):
        pr.escalation('exploded')
    with pytest.raises(pr.RecordError):
        pr.escalation('failed', float('nan'))
    with pytest.raises(pr.RecordError):
        pr.escalation('failed', level='apocalyptic')
    assert pr.escalation('start', level='critical') == ('critical', 'level given')


def test_archive_path(tmp_path):
    target = pr.archive_path(str(tmp_path / 'report.json'), now=1795701725.25)
    assert target.startswith(str(tmp_path / 'reports' / 'report-20261126T')) and target.endswith('Z.json')


def test_durations_count_from_a_revert_that_came_before_the_gate_trip():
    """The guard reverted on a firing alert before the gate tripped: no negative duration."""
    out = pr.durations(100.0, {'shares_reverted': 99.134}, now=110.0)
    assert out == {'reverted_before_trip_s': 0.866, 'trip_to_shares_reverted_s': 0.0, 'trip_to_complete_s': 10.866}
    normal = pr.durations(100.0, {'shares_reverted': 100.05}, now=110.0)
    assert normal == {'trip_to_shares_reverted_s': 0.05, 'trip_to_complete_s': 10.0}
