"""The one deep merge of the collection (report records and rollout spec overrides)."""
from __future__ import annotations

from ansible_collections.cohort.rollout.plugins.module_utils.merge import deep_merge


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


def collection_imports(path, seen=None):
    """The collection's module_utils a plugin file imports, directly or through each other."""
    import ast
    import os
    seen = set() if seen is None else seen
    prefix = 'ansible_collections.cohort.rollout.plugins.module_utils'
    root = os.path.dirname(path) if path.endswith(os.path.join('module_utils', os.path.basename(path))) else None
    utils = root or os.path.join(os.path.dirname(os.path.dirname(path)), 'module_utils')
    with open(path, encoding='utf-8') as handle:
        tree = ast.parse(handle.read())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(prefix):
            if node.module == prefix:
                names = [alias.name for alias in node.names]
            else:
                names = [node.module[len(prefix) + 1:].split('.')[0]]
        for name in names:
            if name not in seen:
                seen.add(name)
                collection_imports(os.path.join(utils, name + '.py'), seen)
    return seen


def test_the_filters_do_not_import_the_report_writer():
    """The spec filter merged overrides with the report writer's deep_merge, pulling in the writer (and its page)."""
    import os
    filters = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))), 'plugins', 'filter')
    names = [n for n in os.listdir(filters) if n.endswith('.py')]
    assert names
    for name in names:
        used = collection_imports(os.path.join(filters, name))
        assert 'report' not in used and 'report_html' not in used, (name, sorted(used))
    assert 'merge' in collection_imports(os.path.join(filters, 'rollout.py'))
