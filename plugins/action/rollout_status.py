# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin cohort.rollout.rollout_status: the rollout's state on one screen, on the controller.

Documentation: plugins/modules/rollout_status.py. Judging and formatting: module_utils/rollout_status.py;
the weights API is read with the collection's one HTTP client (module_utils/prometheus.py).
"""

from __future__ import annotations

import json
import os
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.cohort.rollout.plugins.module_utils import report_html
from ansible_collections.cohort.rollout.plugins.module_utils.arguments import ArgumentError, validate_args
from ansible_collections.cohort.rollout.plugins.module_utils import rollout_status
from ansible_collections.cohort.rollout.plugins.module_utils.prometheus import HttpGetter, PrometheusError
from ansible_collections.cohort.rollout.plugins.module_utils.report import newest, read_copies, unusable

display = Display()
ARGUMENT_SPEC = rollout_status.STATUS_ARGUMENT_SPEC


def html_state(report_path):
    """Where the HTML report is, whether it matches the report, and its last error."""
    path = report_html.html_path(report_path)
    state = dict(path=path, exists=os.path.exists(path), current=False, note='not written yet')
    if state['exists']:
        state['current'] = report_html.is_current(report_path)
        state['note'] = 'current' if state['current'] else 'older than the report (being rewritten?)'
    try:
        with open(path + '.err', 'r', encoding='utf-8') as handle:
            state['error'] = handle.read().strip()[:500]
            state['note'] = 'last render failed: ' + state['error']
    except OSError:
        pass
    return state


class ActionModule(ActionBase):
    """Show the rollout's state (see the module documentation)."""

    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)
    transport = None  # tests substitute a fake HTTP transport

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        try:
            params = validate_args('rollout_status', self._task.args, ARGUMENT_SPEC)
        except ArgumentError as exc:
            raise AnsibleActionFail(str(exc))
        report, _raw, problems = report_html.read_source(params['report_path'])
        copies, states = read_copies(params['copies'])
        for host, state in unusable(states).items():
            display.warning('rollout_status: the copy of the report on %s is not used (%s)' % (host, state))
        source, report = newest(report, copies)
        if source:
            problems = []  # they were the controller's copy's, which is not shown
        answer, error = None, None
        if params['lb_api_url']:
            try:
                getter = HttpGetter(token=params.get('lb_api_token'), validate_certs=params['validate_certs'],
                                    timeout=params['timeout'], transport=self.transport)
                answer = getter.get_json(params['lb_api_url'].rstrip('/') + '/config/traffic-weights')
            except PrometheusError as exc:
                error = exc.message
        else:
            error = 'lb_api_url is not set'
        status = rollout_status.build_status(
            report, problems, rollout_status.shares_view(answer, error), rollout_status.lock_view(params['locks']),
            rollout_status.candidate_view(params['candidates']), params['baseline'], params['candidate'],
            params['phases'], params['report_path'], html=html_state(params['report_path']))
        if source:
            # The last phase ran from another controller: its record is the fleet's copy (nothing is written here).
            status['report_source'] = source
        text = rollout_status.render_text(status)
        if source:
            text.append('report: the copy kept on %s (newer than this controller\'s)' % source)
        if params['format'] == 'json':
            display.display(json.dumps(status, indent=2, sort_keys=True))
        else:
            display.display('\n'.join(text))
        if params.get('output'):
            self._write(params['output'], status)
            result['output'] = params['output']
        result.update(changed=False, status=status, text=text)
        return result

    @staticmethod
    def _write(path, status):
        directory = os.path.dirname(os.path.abspath(path))
        try:
            fd, tmp = tempfile.mkstemp(prefix='.status.', suffix='.tmp', dir=directory)
            with os.fdopen(fd, 'w', encoding='utf-8') as handle:
                json.dump(status, handle, indent=2, sort_keys=True)
                handle.write('\n')
            os.chmod(tmp, 0o644)
            os.rename(tmp, path)
        except OSError as exc:
            raise AnsibleActionFail('rollout_status: cannot write %s: %s' % (path, exc))
