#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: rollout_guard
short_description: Arm, disarm, fence or read the rollout guard of a load balancer host
version_added: "0.2.0"
description:
  - The rollout guard (part of the C(cohort.rollout.loadbalancer) role) runs on each load balancer host and puts
    the traffic back to the fallback shares by itself when the lease of the armed phase expires (the controller
    is gone) or when Alertmanager posts a firing alert that the phase declared as a rollback trigger.
  - This module talks to it over HTTP with the weights API's token. Run it on the controller (delegated to
    localhost); it needs nothing on the load balancer host but the guard's URL.
  - Every arm carries a generation, strictly increasing. Arming fences every older generation off; a revert by
    the guard or a rollback (O(state=fenced)) fences the armed one off too, so that nothing the run that armed
    it still sends (an orphaned worker, a second controller) can renew the lease or move the traffic.
author:
  - cohort.rollout contributors (!UNKNOWN)
options:
  url:
    description: Base URL of the guard (the inventory's C(rollout_guard_url) of the load balancer host).
    type: str
    required: true
  token:
    description: Bearer token of the guard (the weights API's, C(lb_api_token)).
    type: str
  validate_certs:
    description: Verify TLS certificates.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for the guard's answer.
    type: float
    default: 5.0
  state:
    description:
      - V(query) reads the state, and any revert the guard did that the controller has not completed
        (RV(unreconciled)); V(armed) arms it; V(disarmed) disarms the armed O(generation) after the phase passed
        or rolled back; V(fenced) disarms whatever is armed and fences its generation off (a rollback);
        V(reconciled) records that the controller completed the rollback of the guard's revert of O(generation).
    type: str
    choices: [query, armed, disarmed, fenced, reconciled]
    default: query
  phase:
    description: The phase that arms the guard (O(state=armed)).
    type: str
  fallback:
    description: The shares the guard reverts to, one per pool, summing to 1 (O(state=armed)).
    type: dict
  lease_seconds:
    description: The lease; the guard reverts when it is not renewed in time (O(state=armed)).
    type: float
  alerts:
    description: Names of the alerts that are rollback triggers of the phase (O(state=armed)).
    type: list
    elements: str
    default: []
  run:
    description: Who arms the guard (recorded in its journal and in its revert).
    type: dict
    default: {}
  generation:
    description:
      - With O(state=armed), the generation to arm (must be newer than the guard's; omitted, the next one).
      - With O(state=disarmed) and O(state=reconciled), the generation concerned.
    type: int
  outcome:
    description: Why the phase disarms (O(state=disarmed)); V(rolled_back) also fences the generation off.
    type: str
    choices: [passed, rolled_back]
  reason:
    description: Why a rollback fences the guard (O(state=fenced)), for its journal.
    type: str
    default: rollback
attributes:
  check_mode:
    description: Reads the guard and reports what would change; sends nothing else.
    support: full
  diff_mode:
    description: Does not return a diff.
    support: none
notes:
  - A guard that cannot be reached fails the task with the URL and the error. A refused request (bad input,
    fenced generation) fails with the guard's own message; nothing changed on the guard.
"""

EXAMPLES = r"""
- name: Arm the guard before moving traffic
  cohort.rollout.rollout_guard:
    url: "{{ hostvars[item].rollout_guard_url }}"
    token: "{{ lb_api_token }}"
    state: armed
    phase: canary
    fallback: {original: 1, ultra_fast: 0}
    lease_seconds: 420
    alerts: [CanaryGateErrorRate, CanaryGateLatencyP99Ms]
  loop: "{{ groups['loadbalancers'] }}"
  delegate_to: localhost

- name: Fence the guard (a rollback)
  cohort.rollout.rollout_guard:
    url: "{{ rollout_guard_url }}"
    token: "{{ lb_api_token }}"
    state: fenced
    reason: rollback.yml
  delegate_to: localhost
"""

RETURN = r"""
guard:
  description: The guard's state after the task (generation, fence, armed phase with its lease, last revert).
  returned: always
  type: dict
generation:
  description: The generation armed (O(state=armed)), or the guard's newest one.
  returned: always
  type: int
unreconciled:
  description: The guard's last revert when the controller has not completed its rollback yet (reason,
    detail, phase, generation, shares, at, epoch), else null.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cohort.rollout.plugins.module_utils.guard_api import (
    GuardError, GuardRefused, call, unreconciled,
)


def run(module):
    p = module.params
    conn = dict(token=p['token'], validate_certs=p['validate_certs'], timeout=p['timeout'])
    state = call(p['url'], '/state', **conn)
    result = dict(changed=False, guard=state, generation=state.get('generation'), unreconciled=unreconciled(state))
    if p['state'] == 'query':
        return result
    body = None
    if p['state'] == 'armed':
        missing = [name for name in ('phase', 'fallback', 'lease_seconds') if p[name] in (None, '', {})]
        if missing:
            module.fail_json(msg='state=armed needs %s' % ', '.join(missing), **result)
        body = dict(phase=p['phase'], fallback=p['fallback'], lease_seconds=p['lease_seconds'], alerts=p['alerts'],
                    run=p['run'])
        if p['generation'] is not None:
            body['generation'] = p['generation']
        path, changed = '/arm', True
    elif p['state'] == 'disarmed':
        if p['outcome'] is None or p['generation'] is None:
            module.fail_json(msg='state=disarmed needs generation and outcome', **result)
        body = dict(generation=p['generation'], outcome=p['outcome'])
        armed = state.get('armed') or {}
        path, changed = '/disarm', armed.get('generation') == p['generation']
    elif p['state'] == 'fenced':
        body = dict(reason=p['reason'])
        path, changed = '/fence', bool(state.get('armed')) or state.get('fence', 0) <= state.get('generation', 0)
    else:
        if p['generation'] is None:
            module.fail_json(msg='state=reconciled needs generation', **result)
        body = dict(generation=p['generation'], by=(p['run'] or {}).get('id') or 'controller')
        last = result['unreconciled'] or {}
        path, changed = '/reconciled', last.get('generation') == p['generation']
    if module.check_mode:
        result['changed'] = changed
        return result
    answer = call(p['url'], path, body, **conn)
    after = call(p['url'], '/state', **conn)
    result.update(changed=bool(answer.get('changed', True)), answer=answer, guard=after,
                  generation=answer.get('generation', after.get('generation')), unreconciled=unreconciled(after))
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type='str', required=True),
            token=dict(type='str', no_log=True),
            validate_certs=dict(type='bool', default=True),
            timeout=dict(type='float', default=5.0),
            state=dict(type='str', default='query', choices=['query', 'armed', 'disarmed', 'fenced', 'reconciled']),
            phase=dict(type='str'),
            fallback=dict(type='dict'),
            lease_seconds=dict(type='float'),
            alerts=dict(type='list', elements='str', default=[]),
            run=dict(type='dict', default={}),
            generation=dict(type='int'),
            outcome=dict(type='str', choices=['passed', 'rolled_back']),
            reason=dict(type='str', default='rollback'),
        ),
        supports_check_mode=True,
    )
    try:
        result = run(module)
    except GuardRefused as exc:
        module.fail_json(msg=exc.message, status=exc.status, fenced=exc.fenced)
    except GuardError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
