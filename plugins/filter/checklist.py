# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter cohort.rollout.checklist_lines: the preflight checklist as printable lines."""

from __future__ import annotations

DOCUMENTATION = r"""
name: checklist_lines
short_description: Render checklist items as lines with a mark
version_added: "0.1.0"
description:
  - Turns a list of C({item, ok, detail}) into lines C([x] item - detail) (passed) or C([ ] item - detail) (failed).
  - An item whose C(ok) is not a real boolean true (for example a string or nothing) is marked failed.
positional: _input
options:
  _input:
    description: The checklist items.
    type: list
    elements: dict
    required: true
author:
  - cohort.rollout contributors
"""

EXAMPLES = r"""
- name: Print the checklist
  ansible.builtin.debug:
    msg: "{{ [{'item': 'Alertmanager up', 'ok': true, 'detail': 200}] | cohort.rollout.checklist_lines }}"
"""

RETURN = r"""
_value:
  description: One line per item.
  type: list
  elements: str
"""

from ansible.errors import AnsibleFilterError


def is_ok(value):
    """Only a real true (or its text from a template) passes."""
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.strip().lower() == 'true'


def checklist_lines(items):
    if not isinstance(items, list):
        raise AnsibleFilterError('checklist_lines expects a list of {item, ok, detail}, got %r' % (items,))
    lines = []
    for entry in items:
        if not isinstance(entry, dict) or 'item' not in entry:
            raise AnsibleFilterError('checklist item without "item": %r' % (entry,))
        detail = entry.get('detail')
        detail = str(detail).strip() if detail not in (None, '') else ''
        lines.append('[%s] %s%s' % ('x' if is_ok(entry.get('ok')) else ' ', entry['item'],
                                    (' - ' + detail) if detail else ''))
    return lines


class FilterModule(object):
    """Preflight checklist filters."""

    def filters(self):
        return {'checklist_lines': checklist_lines}
