"""Unit tests of the preflight checklist renderer."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.cohort.rollout.plugins.filter.checklist import checklist_lines


def test_marks():
    lines = checklist_lines([
        {'item': 'Alertmanager up', 'ok': True, 'detail': 200},
        {'item': 'Redis warm', 'ok': False, 'detail': 'keys_written 900'},
        {'item': 'Text true', 'ok': 'True'},
        {'item': 'Nothing', 'ok': None},
        {'item': 'String', 'ok': 'yes please'},
    ])
    assert lines == ['[x] Alertmanager up - 200', '[ ] Redis warm - keys_written 900', '[x] Text true',
                     '[ ] Nothing', '[ ] String']


def test_bad_input():
    with pytest.raises(AnsibleFilterError):
        checklist_lines('x')
    with pytest.raises(AnsibleFilterError):
        checklist_lines([{'ok': True}])
