# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Arguments of cohort.rollout.rollout_lock, in one place.

``LOCK_ARGUMENT_SPEC`` is what a task may pass: the action plugin validates the task's
arguments with it (module_utils/arguments.py). ``HOLDER_ARGUMENT_SPEC`` is what only
the controller knows (who this run is, which holder it found dead): the action plugin
adds it, and refuses it from a task. The module on the load balancer host declares
both (``MODULE_ARGUMENT_SPEC``), so ansible-test checks its documentation against them.
"""

from __future__ import annotations

LOCK_ARGUMENT_SPEC = dict(
    path=dict(type='path', required=True),
    state=dict(type='str', default='present', choices=['present', 'absent', 'query']),
    ttl=dict(type='int', default=86400),
    break_lock=dict(type='bool', default=False),
    phase=dict(type='str', default=''),
)

HOLDER_ARGUMENT_SPEC = dict(
    holder=dict(type='dict'),
    expected_holder=dict(type='str'),
    stale_holder=dict(type='str'),
)

MODULE_ARGUMENT_SPEC = dict(LOCK_ARGUMENT_SPEC, **HOLDER_ARGUMENT_SPEC)
