# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin cohort.rollout.report: record a phase in the rollout report, on the controller.

Documentation: plugins/modules/report.py. The file is written by module_utils/report.py
(the one writer); the order rule and durations live in module_utils/phase_record.py.
"""

from __future__ import annotations

import os
import time

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.cohort.rollout.plugins.module_utils import phase_record, report_html, times
from ansible_collections.cohort.rollout.plugins.module_utils.arguments import ArgumentError, validate_args
from ansible_collections.cohort.rollout.plugins.module_utils.report import (
    ReportError, adopt_newest, read_copies, read_report, unusable, update_phase,
)

ARGUMENT_SPEC = phase_record.REPORT_ARGUMENT_SPEC
# At a phase's end (and the rollback's), wait this long at most for the HTML report to catch up, so that
# the page is complete when the play ends (a CI or AWX job's container may stop right after).
HTML_WAIT_SECONDS = 10.0
TERMINAL = ('passed', 'failed', 'inconclusive', 'rolled_back')


class ActionModule(ActionBase):
    """Record a phase in the rollout report (see the module documentation)."""

    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        try:
            params = validate_args('report', self._task.args, ARGUMENT_SPEC)
        except ArgumentError as exc:
            raise AnsibleActionFail(str(exc))
        path, phase = params['path'], params['phase']
        now = time.time()
        try:
            if params['copies']:
                self._adopt(path, params['copies'], now, result)
            report = read_report(path)
            result['previous_report'] = None
            if params['phases'] is not None:
                ok, message, previous = phase_record.order_check(report, params['phases'], phase)
                result.update(order_ok=ok, order_message=message, previous_phase=previous)
                if not ok and not params['force']:
                    result.update(failed=True, changed=False,
                                  msg='refused: %s. Nothing was changed. Override with -e force_phase=true '
                                      '(it is recorded).' % message)
                    return result
                result['forced'] = not ok
            data = dict(params['data'])
            for key in params['stamp']:
                data[key] = times.iso(now, millis=True)
                data[key.replace('_at', '') + '_epoch'] = round(now, 3)
            if result.get('forced'):
                data['forced'] = dict(by=task_vars.get('ansible_user_id') or os.environ.get('USER', ''),
                                      at=times.iso(now, millis=True), overridden=result['order_message'])
            if params['timing']:
                trip = params['timing']['trip']
                trip = now if trip == 'now' else trip
                data['trip_at'] = times.iso(phase_record.parse_time(trip), millis=True)
                data['durations'] = phase_record.durations(trip, params['timing']['marks'], now=now)
            if self._task.check_mode:
                result.update(changed=bool(data), phase_data=data)
                return result
            new_run = params['new_run'] and os.path.exists(path) and report
            if new_run:
                target = phase_record.archive_path(path, now)
                os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
                os.rename(path, target)
                result['archived_to'] = target
                report_html.schedule(target)  # the archived report keeps its own page
            if not data and not new_run:
                result.update(changed=False, phase_data=report.get(phase, {}))
                return result
            doc = update_phase(path, phase, data)
        except (ReportError, phase_record.RecordError, OSError) as exc:
            raise AnsibleActionFail('report: %s' % exc)
        result.update(changed=True, phase_data=doc.get(phase, {}), written=data, path=path)
        if data.get('status') in TERMINAL:
            # Bounded, never a failure: the page is a view of the report, the report is what counts.
            result['html'] = dict(path=report_html.html_path(path),
                                  current=report_html.wait_current(path, HTML_WAIT_SECONDS))
        return result

    def _adopt(self, path, copies, now, result):
        """Take the newest of the fleet's copies when it is newer than the controller's report."""
        parsed, states = read_copies(copies)
        for host, state in unusable(states).items():
            self._display.warning('report: the copy on %s is not used (%s)' % (host, state))
        result['copies'] = states
        if self._task.check_mode:
            result['adopted_from'] = None
            return
        # Named apart from a new run's archive (the same task may start one at the same instant).
        archive = phase_record.archive_path(path, now)[:-len('.json')] + '-replaced.json'
        source, unused, archived = adopt_newest(path, parsed, archive)
        result['adopted_from'] = source
        if archived:
            result['archived_to'] = archived
