"""The fleet's copies of the report (cohort.rollout.report option copies; module_utils/report.adopt_newest).

The next phase may run from another controller than the last one (every AWX job is a fresh container):
the controller takes the fleet's copy when it is newer, keeps its own when it is newer, archives what it
replaces, and never uses a copy it cannot parse.
"""
from __future__ import annotations

import base64
import json
import os
from unittest import mock

import pytest
from ansible_collections.cohort.rollout.plugins.action import report as action_mod
from ansible_collections.cohort.rollout.plugins.module_utils import report as rp
from ansible_collections.cohort.rollout.tests.unit.action_support import action_under_test

PHASES = {'canary': {'order': 1}, 'ramp': {'order': 2}, 'rollout': {'order': 3}}
CANARY_PASSED = {'canary': {'status': 'passed', 'started_at': '2026-12-01T10:00:00Z', 'started_epoch': 1796119200.0,
                            'ended_epoch': 1796119500.0}}


def slurped(host, doc=None, text=None):
    raw = (json.dumps(doc) if text is None else text).encode('utf-8')
    return {'item': host, 'content': base64.b64encode(raw).decode('ascii'), 'encoding': 'base64', 'failed': False}


def absent(host):
    return {'item': host, 'failed': True, 'msg': 'file not found: /var/lib/cohort-rollout/rollout-report.json'}


def run(args, check_mode=False):
    action = action_under_test(action_mod, 'report', args, check_mode)
    warnings = []
    action._display = mock.MagicMock()
    action._display.warning.side_effect = warnings.append
    return action.run(task_vars={}), warnings


def read(path):
    with open(path, encoding='utf-8') as handle:
        return json.load(handle)


def test_last_activity_is_the_latest_epoch_stamp_of_any_record():
    assert rp.last_activity({}) == 0.0
    assert rp.last_activity(CANARY_PASSED) == 1796119500.0
    odd = {'canary': {'ended_epoch': True, 'x_epoch': 'soon'}, 'rollback': {'started_epoch': 5.0}, 'note': 'text'}
    assert rp.last_activity(odd) == 5.0


def test_a_controller_without_a_report_takes_the_fleets_and_the_ramp_may_start(tmp_path):
    path = str(tmp_path / 'report.json')
    result, warnings = run(dict(path=path, phase='ramp', phases=PHASES, copies=[slurped('lb-1', CANARY_PASSED)]))
    assert not result.get('failed'), result
    assert result['adopted_from'] == 'lb-1' and result['order_ok'] is True
    assert result['copies'] == {'lb-1': 'read'} and 'archived_to' not in result
    assert read(path) == CANARY_PASSED and not warnings


def test_without_the_copy_the_ramp_is_refused(tmp_path):
    path = str(tmp_path / 'report.json')
    result, unused = run(dict(path=path, phase='ramp', phases=PHASES, copies=[absent('lb-1')]))
    assert result['failed'] and 'the report has no canary' in result['msg']
    assert result['copies'] == {'lb-1': 'absent'} and result['adopted_from'] is None
    assert not os.path.exists(path)


def test_an_older_controller_report_is_archived_and_replaced(tmp_path):
    path = str(tmp_path / 'report.json')
    older = {'canary': {'status': 'failed', 'started_epoch': 1796000000.0}}
    rp.update_report(path, older, html=False)
    result, unused = run(dict(path=path, phase='rollback', copies=[slurped('lb-1', CANARY_PASSED)]))
    assert result['adopted_from'] == 'lb-1'
    assert read(path) == CANARY_PASSED
    assert result['archived_to'].endswith('-replaced.json') and read(result['archived_to']) == older
    assert 'rollback' not in read(path)  # a pull with no data writes no record


def test_a_newer_controller_report_is_kept(tmp_path):
    """A run that died before its copy reached the fleet: the controller's own report is the newer one."""
    path = str(tmp_path / 'report.json')
    newer = {'canary': {'status': 'running', 'started_epoch': 1796119600.0}}
    rp.update_report(path, newer, html=False)
    result, unused = run(dict(path=path, phase='canary', copies=[slurped('lb-1', CANARY_PASSED)]))
    assert result['adopted_from'] is None and read(path) == newer
    assert not os.path.exists(os.path.join(str(tmp_path), 'reports'))


def test_the_newest_of_several_copies_wins(tmp_path):
    path = str(tmp_path / 'report.json')
    later = {'canary': dict(CANARY_PASSED['canary']), 'ramp': {'status': 'passed', 'ended_epoch': 1796119900.0}}
    result, unused = run(dict(path=path, phase='rollout', phases=PHASES,
                              copies=[slurped('lb-1', CANARY_PASSED), slurped('lb-2', later)]))
    assert result['adopted_from'] == 'lb-2' and result['order_ok'] is True and read(path) == later


@pytest.mark.parametrize('entry, state', [
    (slurped('lb-1', text='{"canary": '), 'unreadable: not a JSON report'),
    (slurped('lb-1', text='[1, 2]'), 'unreadable: not a JSON object'),
    ({'item': 'lb-1', 'content': '%%%', 'failed': False}, 'unreadable: not a JSON report'),
    ({'item': 'lb-1', 'failed': True, 'msg': 'Permission denied'}, 'unreadable: Permission denied'),
    ({'item': 'lb-1', 'unreachable': True, 'msg': 'ssh: connect to host'}, 'unreachable: ssh: connect to host'),
])
def test_a_copy_that_cannot_be_used_is_a_warning_and_changes_nothing(tmp_path, entry, state):
    path = str(tmp_path / 'report.json')
    rp.update_report(path, {'canary': {'status': 'failed', 'started_epoch': 1.0}}, html=False)
    before = read(path)
    result, warnings = run(dict(path=path, phase='canary', copies=[entry]))
    assert result['copies']['lb-1'].startswith(state) and result['adopted_from'] is None
    assert read(path) == before
    assert len(warnings) == 1 and 'lb-1' in warnings[0]


def test_check_mode_takes_nothing(tmp_path):
    path = str(tmp_path / 'report.json')
    result, unused = run(dict(path=path, phase='ramp', copies=[slurped('lb-1', CANARY_PASSED)]), check_mode=True)
    assert result['adopted_from'] is None and not os.path.exists(path)
