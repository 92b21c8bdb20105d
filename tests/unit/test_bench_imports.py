"""bench/ measures the shipped code and its own harness; it imports nothing from tests/ (tests may use bench/)."""
from __future__ import annotations

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def modules_in_tests():
    names = set()
    for folder, unused, files in os.walk(os.path.join(ROOT, 'tests')):
        names.update(name[:-3] for name in files if name.endswith('.py') and name != '__init__.py')
    return names


def test_bench_imports_nothing_from_tests():
    from_tests = modules_in_tests() - {'conftest'}
    scripts = [n for n in os.listdir(os.path.join(ROOT, 'bench')) if n.endswith('.py')]
    assert scripts
    offenders = []
    for name in scripts:
        with open(os.path.join(ROOT, 'bench', name), encoding='utf-8') as handle:
            text = handle.read()
        for node in ast.walk(ast.parse(text)):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            for module in modules:
                top = module.split('.')[0]
                if top == 'tests' or (top in from_tests and not os.path.exists(os.path.join(ROOT, 'bench', top + '.py'))):
                    offenders.append((name, module))
            # A path into tests/ put on sys.path.
            if isinstance(node, ast.Constant) and node.value == 'tests':
                offenders.append((name, "'tests' path"))
    assert offenders == []
