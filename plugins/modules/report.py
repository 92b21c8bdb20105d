#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: report
short_description: Record a phase of the rollout in the JSON report (controller side)
version_added: "0.1.0"
description:
  - Merges O(data) into the key O(phase) of the rollout report on the controller (the report the runbook reads with
    C(jq .canary)), through the collection's one report writer (atomic, merging, mode 0600, every other phase kept).
  - With O(phases), first checks the phase order; a phase may start only when the phase before it (by C(order)) has
    status C(passed) in the report and no rollback was recorded since that phase started. Otherwise the task fails
    and nothing is written, unless O(force) is set, in which case the override is recorded under C(forced).
  - With O(new_run), the existing report is moved to C(reports/<name>-<UTC time>.json) beside it first (kept), so
    that a new canary starts a new report.
  - With O(timing), records C(trip_at) and C(durations) (seconds from the trip to each mark, and to now).
  - With O(copies) (the fleet's copies of the report, read with M(ansible.builtin.slurp) on each load balancer host),
    first takes the newest copy in place of the controller's report when it is newer (the latest C(*_epoch) stamp of
    any record); the controller's older report, if any, is archived like O(new_run) does. The next phase may run
    from another controller (an AWX job's fresh container) and still sees the last one's verdict.
  - This is an action plugin; it runs on the controller whatever the task's host.
author:
  - cohort.rollout contributors (!UNKNOWN)
options:
  path:
    description: Path of the report on the controller. Its directory must exist.
    type: path
    required: true
  phase:
    description: Key of the phase in the report (V(canary), V(ramp), V(rollout), V(rollback)).
    type: str
    required: true
  data:
    description: What to merge into the phase (dicts merge, other values replace).
    type: dict
    default: {}
  new_run:
    description: Archive the existing report before writing (a new rollout starts).
    type: bool
    default: false
  phases:
    description:
      - The phases of the rollout spec (C(rollout_spec.phases)); when given, the phase order is checked first.
    type: dict
  force:
    description: Start even though the order check fails; recorded under C(forced) in the phase.
    type: bool
    default: false
  timing:
    description: Durations to record, from the trip of a gate (or a manual decision) to each mark and to now.
    type: dict
    suboptions:
      trip:
        description: Time of the trip, epoch seconds or ISO-8601 UTC, or V(now).
        type: raw
        required: true
      marks:
        description: Named times (epoch seconds or ISO-8601), recorded as C(durations.trip_to_<name>_s).
        type: dict
        default: {}
  stamp:
    description: Keys to set to the current time (for example V(started_at)); C(<key without _at>_epoch) is set too.
    type: list
    elements: str
    default: []
  copies:
    description:
      - Results of M(ansible.builtin.slurp) of the report's copies (a registered loop's C(results)), each with C(item)
        (the host) and C(content), or C(failed) and C(msg). A missing copy is normal (no rollout yet); one that cannot
        be read or parsed is a warning and is not used.
    type: list
    elements: dict
    default: []
attributes:
  check_mode:
    description: Can run in check mode and return what would happen without changing anything.
    support: full
    details: Checks the order and returns what would be written; writes nothing.
  diff_mode:
    description: Does not return a diff.
    support: none
"""

EXAMPLES = r"""
- name: Refuse the ramp unless the canary passed, then record its start
  cohort.rollout.report:
    path: "{{ rollout_report_path }}"
    phase: ramp
    phases: "{{ rollout_spec.phases }}"
    force: "{{ force_phase | default(false) }}"
    stamp: [started_at]
    data:
      status: running
  delegate_to: localhost

- name: Record a rollback with its durations
  cohort.rollout.report:
    path: "{{ rollout_report_path }}"
    phase: rollback
    timing:
      trip: "2026-11-26T14:02:05Z"
      marks:
        shares_reverted: 1795615326.4
    data:
      status: rolled_back
      reason: "gate error_rate tripped"
"""

RETURN = r"""
phase_data:
  description: The phase's record after the update (what would be written, in check mode).
  returned: always
  type: dict
order_ok:
  description: Whether the phase order allows this phase.
  returned: when O(phases) is given
  type: bool
order_message:
  description: Why the order check passed or failed.
  returned: when O(phases) is given
  type: str
forced:
  description: The order check failed and O(force) overrode it.
  returned: when O(phases) is given
  type: bool
archived_to:
  description: Where the previous report was moved.
  returned: when O(new_run) archived a report, or a newer copy from O(copies) replaced it
  type: str
adopted_from:
  description: The host whose copy of the report replaced the controller's (null when the controller's was newest).
  returned: when O(copies) is given
  type: str
copies:
  description: What was found on each host of O(copies) (V(read), V(absent), or why it could not be used).
  returned: when O(copies) is given
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cohort.rollout.plugins.module_utils.phase_record import REPORT_ARGUMENT_SPEC


def main():
    module = AnsibleModule(argument_spec=REPORT_ARGUMENT_SPEC, supports_check_mode=True)
    module.fail_json(msg='cohort.rollout.report runs on the controller as an action plugin; '
                         'this module file holds its documentation only.')


if __name__ == '__main__':
    main()
