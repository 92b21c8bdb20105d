"""One piece of code per idea (issue 17, item 12): each helper below is defined once in plugins/ and roles/.

Left out on purpose: report_html.py runs as a script by path and imports nothing from the collection;
roles/loadbalancer/files/rollout_guard.py runs on the load balancer host with only the module_utils the
role ships beside it (loadbalancer_api_files: guard_state, haproxy, traffic).
"""
from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STANDALONE = {os.path.join('plugins', 'module_utils', 'report_html.py'),
              os.path.join('roles', 'loadbalancer', 'files', 'rollout_guard.py')}
ONE_PLACE = {
    'redact_url': 'plugins/module_utils/prometheus.py',
    'deep_merge': 'plugins/module_utils/merge.py',
    'iso': 'plugins/module_utils/times.py',
    'epoch_or_none': 'plugins/module_utils/times.py',
    'validate_args': 'plugins/module_utils/arguments.py',
    'parse_duration': 'plugins/module_utils/durations.py',
}
# Thin wrappers that turn the one helper's error into their caller's (they call it, they do not repeat it).
WRAPPERS = {('parse_duration', 'plugins/module_utils/gates.py')}


def definitions():
    found = {}
    for top in ('plugins', 'roles'):
        for folder, unused, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                path = os.path.relpath(os.path.join(folder, name), ROOT)
                if not name.endswith('.py') or path in STANDALONE:
                    continue
                with open(os.path.join(ROOT, path), encoding='utf-8') as handle:
                    tree = ast.parse(handle.read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.FunctionDef) and node.name in ONE_PLACE:
                        found.setdefault(node.name, []).append(path.replace(os.sep, '/'))
    return found


@pytest.mark.parametrize('name', sorted(ONE_PLACE))
def test_defined_once(name):
    places = [p for p in definitions().get(name, []) if (name, p) not in WRAPPERS]
    assert places == [ONE_PLACE[name]]
