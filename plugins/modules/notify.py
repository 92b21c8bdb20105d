#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: notify
short_description: Post a rollout event to a webhook (Slack-style JSON) with the runbook's escalation level
version_added: "0.1.0"
description:
  - Sends one JSON message (Slack incoming-webhook shape, C(text) and C(attachments), plus a machine-readable
    C(cohort_rollout) object) for a rollout event (phase start, pass, failure, rollback, investigate, complete).
  - Picks the runbook's escalation level from the error rate, never below the event's own level
    (error rate above 1% C(critical) - roll back and page; 0.5-1% C(high) - notify; below C(normal) - log;
    routine events C(info)).
  - Always prints the message on the controller. A webhook that cannot be reached is a warning, not a failure, so
    that a notification never stops a rollback. Without O(url) the event is only printed.
  - This is an action plugin; it runs on the controller.
author:
  - cohort.rollout contributors (!UNKNOWN)
options:
  url:
    description:
      - Webhook URL. Empty prints the event only.
      - Never logged (an incoming-webhook URL is itself the credential).
    type: str
    default: ""
  token:
    description: Bearer token sent to the webhook, if it needs one.
    type: str
  event:
    description: What happened.
    type: str
    required: true
    choices: [complete, failed, inconclusive, investigate, passed, refused, rollback, rollback_failed, start]
  phase:
    description: The phase concerned.
    type: str
    required: true
  text:
    description: One line for humans (sent as the message text; the payload's C(cohort_rollout.message) field).
    type: str
    required: true
  error_rate:
    description: Error rate of the candidate (a fraction), used for the escalation level.
    type: raw
  level:
    description: Force the level instead of deriving it.
    type: str
    choices: [info, normal, high, critical]
  details:
    description: Extra data copied into C(cohort_rollout.details).
    type: dict
    default: {}
  validate_certs:
    description: Verify the webhook's TLS certificate.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for the webhook.
    type: float
    default: 5.0
attributes:
  check_mode:
    description: Can run in check mode and return what would happen without changing anything.
    support: full
    details: Prints the message, sends nothing.
  diff_mode:
    description: Does not return a diff.
    support: none
"""

EXAMPLES = r"""
- name: Tell the team the canary rolled back
  cohort.rollout.notify:
    url: "{{ rollout_notify_url }}"
    event: rollback
    phase: canary
    text: "gate error_rate tripped: 0.05 >= 0.01"
    error_rate: 0.05
"""

RETURN = r"""
level:
  description: The escalation level chosen.
  returned: always
  type: str
  sample: critical
escalation:
  description: Why that level.
  returned: always
  type: str
payload:
  description: The JSON sent.
  returned: always
  type: dict
delivered:
  description: Whether the webhook accepted it.
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cohort.rollout.plugins.module_utils.phase_record import NOTIFY_ARGUMENT_SPEC


def main():
    module = AnsibleModule(argument_spec=NOTIFY_ARGUMENT_SPEC, supports_check_mode=True)
    module.fail_json(msg='cohort.rollout.notify runs on the controller as an action plugin; '
                         'this module file holds its documentation only.')


if __name__ == '__main__':
    main()
