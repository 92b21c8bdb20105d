"""The one deep merge of the collection (report records and rollout spec overrides)."""
from __future__ import annotations

from ansible_collections.cohort.rollout.plugins.module_utils.report import deep_merge


def test_none_is_stored_in_reports_and_deletes_in_spec_overrides():
    base = {'a': {'b': 1, 'c': 2}, 'd': [1]}
    assert deep_merge(base, {'a': {'b': None}}) == {'a': {'b': None, 'c': 2}, 'd': [1]}
    assert deep_merge(base, {'a': {'b': None}}, none_deletes=True) == {'a': {'c': 2}, 'd': [1]}
    assert base == {'a': {'b': 1, 'c': 2}, 'd': [1]}


def test_dicts_recurse_and_anything_else_replaces_as_a_copy():
    update = {'a': {'x': [1, 2]}, 'd': {'e': 1}}
    merged = deep_merge({'a': {'y': 0}, 'd': [1]}, update)
    assert merged == {'a': {'y': 0, 'x': [1, 2]}, 'd': {'e': 1}}
    merged['a']['x'].append(3)
    assert update['a']['x'] == [1, 2]
    assert deep_merge(None, {'k': 1}) == {'k': 1}
