#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: rollout_status
short_description: Show the rollout's state on one screen (controller side, changes nothing)
version_added: "0.1.0"
description:
  - Gathers what C(playbooks/status.yml) shows and prints it as one screen of text, or as JSON with
    O(format=json). It shows the shares as the load balancer reports them (C(GET /config/traffic-weights) of the weights
    API), who holds the rollout lock (O(locks), the C(cohort.rollout.rollout_lock) C(state=query) results of each
    load balancer host), whether the candidate analyzer runs (O(candidates), each candidate host's own probe of its
    C(/readyz)), the state of each phase and the latest sample of each gate (the report), the rollback, and
    whether the HTML report is current.
  - Says what needs a human, for example a phase C(running) in the report while no run holds the lock (a dead
    controller), a stale lock, or a share of traffic to a candidate that does not answer.
  - Writes nothing but O(output), when given, and that in check mode too (it is output, not state).
  - This is an action plugin; it runs on the controller whatever the task's host. The logic is in
    C(module_utils/rollout_status.py).
author:
  - cohort.rollout contributors (!UNKNOWN)
options:
  report_path:
    description: The rollout report (JSON) on the controller. A missing or unreadable report is said, not fatal.
    type: path
    required: true
  lb_api_url:
    description: Base URL of the load balancer's weights API. Empty skips the shares (said in the output).
    type: str
    default: ""
  lb_api_token:
    description: Bearer token of the weights API.
    type: str
  validate_certs:
    description: Verify the TLS certificate of O(lb_api_url).
    type: bool
    default: true
  timeout:
    description: Seconds to wait for the weights API.
    type: float
    default: 5.0
  locks:
    description: The C(results) of a C(cohort.rollout.rollout_lock) C(state=query) loop over the load balancers.
    type: list
    elements: raw
    default: []
  candidates:
    description: Candidate host name to the result of its own C(ansible.builtin.uri) probe of the analyzer's C(/readyz).
    type: dict
    default: {}
  baseline:
    description: The baseline pool (the rollout spec's C(baseline)).
    type: str
    required: true
  candidate:
    description: The candidate pool (the rollout spec's C(candidate)).
    type: str
    required: true
  phases:
    description: The phases in order (rollout spec).
    type: list
    elements: str
    default: [canary, ramp, rollout]
  format:
    description: Print one screen of V(text), or the whole status as V(json).
    type: str
    choices: [text, json]
    default: text
  output:
    description: Also write the status as JSON to this file on the controller (atomically).
    type: path
  copies:
    description:
      - Results of M(ansible.builtin.slurp) of the fleet's copies of the report (a registered loop's C(results)). The
        newest copy is shown when it is newer than O(report_path) (the last phase ran from another controller);
        nothing is written. A copy that cannot be parsed is a warning.
    type: list
    elements: dict
    default: []
attributes:
  check_mode:
    description: Can run in check mode.
    support: full
    details: Reads only; the same output in check mode.
  diff_mode:
    description: Does not return a diff.
    support: none
"""

EXAMPLES = r"""
- name: Show the rollout's state
  cohort.rollout.rollout_status:
    report_path: "{{ rollout_report_path }}"
    lb_api_url: "{{ lb_api_url }}"
    lb_api_token: "{{ lb_api_token }}"
    locks: "{{ status_lock.results }}"
    candidates: {analyzer-4: "{{ hostvars['analyzer-4'].status_probe }}"}
    baseline: "{{ rollout_spec.baseline }}"
    candidate: "{{ rollout_spec.candidate }}"
    copies: "{{ rollback_report_copies.results | default([]) }}"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
status:
  description: The whole status (headline, shares, locks, candidate, phases with the latest sample of each gate,
    rollback, html, warnings).
  returned: always
  type: dict
text:
  description: The lines printed in text format.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cohort.rollout.plugins.module_utils.rollout_status import STATUS_ARGUMENT_SPEC


def main():
    module = AnsibleModule(argument_spec=STATUS_ARGUMENT_SPEC, supports_check_mode=True)
    module.fail_json(msg='cohort.rollout.rollout_status runs on the controller as an action plugin; '
                         'this module file holds its documentation only.')


if __name__ == '__main__':
    main()
