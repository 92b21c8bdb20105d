# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin cohort.rollout.notify: post a rollout event to a webhook (Slack-style JSON), on the controller.

Documentation: plugins/modules/notify.py. Escalation levels: module_utils/phase_record.py.
A notification that cannot be delivered is a warning, never a failure: it must not
stop a rollback.
"""

from __future__ import annotations

import json
import time

from ansible.errors import AnsibleActionFail
from ansible.module_utils.urls import open_url
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.cohort.rollout.plugins.module_utils import phase_record, times
from ansible_collections.cohort.rollout.plugins.module_utils.arguments import ArgumentError, validate_args

display = Display()

ARGUMENT_SPEC = phase_record.NOTIFY_ARGUMENT_SPEC

COLORS = {'info': '#2eb886', 'normal': '#439fe0', 'high': '#daa038', 'critical': '#a30200'}
ACTIONS = {
    'critical': 'Roll back, notify VP Engineering, page the incident commander, declare SEV-1.',
    'high': 'Platform team investigates and decides on a rollback; notify the product team.',
    'normal': 'Log the issue, assign an engineer, monitor the trend.',
    'info': 'No action needed.',
}


def build_payload(params, level, why, now=None):
    """The Slack-style message (text + one attachment) with a machine-readable copy of the event."""
    now = time.time() if now is None else now
    fields = [
        dict(title='Phase', value=params['phase'], short=True),
        dict(title='Event', value=params['event'], short=True),
        dict(title='Level', value=level, short=True),
    ]
    if params.get('error_rate') is not None:
        fields.append(dict(title='Error rate', value='%.4g' % float(params['error_rate']), short=True))
    fields.append(dict(title='Escalation', value='%s. %s' % (why, ACTIONS[level]), short=False))
    text = '[%s] cohort rollout %s: %s' % (level.upper(), params['phase'], params['text'])
    event = dict(event=params['event'], phase=params['phase'], level=level, escalation=why, action=ACTIONS[level],
                 message=params['text'], at=times.iso(now, millis=True), details=params.get('details') or {})
    if params.get('error_rate') is not None:
        event['error_rate'] = float(params['error_rate'])
    return dict(text=text, attachments=[dict(color=COLORS[level], title='cohort.rollout %s %s' % (
        params['phase'], params['event']), text=params['text'], fields=fields, ts=int(now))], cohort_rollout=event)


class ActionModule(ActionBase):
    """Notify a webhook of a rollout event (see the module documentation)."""

    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        try:
            params = validate_args('notify', self._task.args, ARGUMENT_SPEC)
        except ArgumentError as exc:
            raise AnsibleActionFail(str(exc))
        try:
            error_rate = params.get('error_rate')
            if error_rate in ('', None):
                params['error_rate'] = None
            else:
                params['error_rate'] = float(error_rate)
            level, why = phase_record.escalation(params['event'], params['error_rate'], params.get('level'))
        except (ValueError, TypeError, phase_record.RecordError) as exc:
            raise AnsibleActionFail('notify: %s' % exc)
        payload = build_payload(params, level, why)
        display.display('NOTIFY [%s] %s' % (level, payload['text']))
        result.update(changed=False, level=level, escalation=why, payload=payload, delivered=False)
        if not params['url']:
            result['msg'] = 'no webhook configured: logged only'
            return result
        if self._task.check_mode:
            result['msg'] = 'check mode: not sent'
            return result
        headers = {'Content-Type': 'application/json'}
        if params.get('token'):
            headers['Authorization'] = 'Bearer %s' % params['token']
        try:
            response = open_url(params['url'], data=json.dumps(payload).encode('utf-8'), headers=headers,
                                method='POST', validate_certs=params['validate_certs'], timeout=params['timeout'])
            status = response.getcode()
        except Exception as exc:  # pylint: disable=broad-except
            # Never fail the play (and never a rollback) because chat is down; say so loudly.
            warning = 'notify: webhook not reached (%s): %s' % (type(exc).__name__, str(exc)[:200])
            display.warning(warning)
            result.update(warnings=[warning], msg=warning)
            return result
        result.update(changed=True, delivered=True, status=status, msg='notified (%s)' % level)
        return result
