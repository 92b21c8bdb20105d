"""What the collection declares about itself matches what it uses and what is tested.

* galaxy.yml's dependencies are exactly the collections that roles/, playbooks/ and plugins/ use (other
  than ansible.builtin and cohort.rollout), each with a range that the tested version satisfies;
  collections/requirements.yml (what AWX installs) holds them too, plus what the AWX project's own
  playbooks (awx/) use, and nothing unused.
* meta/runtime.yml's requires_ansible starts at the ansible-core minor version that is tested
  (requirements.txt) and is satisfied by the installed one: no claim for a version nothing runs on.
"""
import importlib.metadata
import json
import pathlib
import re

import pytest
import yaml
from ansible.playbook.block import Block
from ansible.playbook.task import Task
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = pathlib.Path(__file__).resolve().parents[2]
FQCN = re.compile(r'^([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)\.[a-z_][a-z0-9_.]*$')
JINJA_FQCN = re.compile(r'(?:\|\s*|\bis\s+(?:not\s+)?)([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)\.[a-z_][a-z0-9_]*')
PY_IMPORT = re.compile(r'ansible_collections\.([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)\.')
OWN = {'ansible.builtin', 'ansible.legacy', 'cohort.rollout'}
KEYWORDS = set(Task.fattributes) | set(Block.fattributes) | {'local_action', 'action', 'args'}


class _Loader(yaml.SafeLoader):
    """Safe loading that accepts Ansible's tags (!unsafe, !vault) as plain scalars."""


_Loader.add_multi_constructor('!', lambda loader, suffix, node: loader.construct_scalar(node))


def _yaml_files(*dirs):
    for directory in dirs:
        yield from sorted((ROOT / directory).rglob('*.yml'))


def _collections_used(*dirs):
    """Collections named by FQCN in task keys, include/import_role names, Jinja filters/tests and imports."""
    used = {}

    def note(namespace, name, where):
        used.setdefault('%s.%s' % (namespace, name), set()).add(str(where.relative_to(ROOT)))

    def walk(node, where):
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, str) and key not in KEYWORDS and FQCN.match(key):
                    note(*FQCN.match(key).groups()[:2], where)
                if key == 'name' and isinstance(value, str) and FQCN.match(value) and \
                        any(k in node for k in ('tasks_from', 'public', 'apply')):
                    note(*FQCN.match(value).groups()[:2], where)
                walk(value, where)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    for path in _yaml_files(*dirs):
        text = path.read_text()
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)
        walk(data, path)
        for match in JINJA_FQCN.finditer(text):
            note(match.group(1), match.group(2), path)
        for match in re.finditer(r'(?:include_role|import_role):\s*\n\s+name:\s*([\w.]+)', text):
            if FQCN.match(match.group(1)):
                note(*FQCN.match(match.group(1)).groups()[:2], path)
    for directory in dirs:
        for path in sorted((ROOT / directory).rglob('*.py')):
            for match in PY_IMPORT.finditer(path.read_text()):
                note(match.group(1), match.group(2), path)
    return {name: places for name, places in used.items() if name not in OWN}


def _installed_version(collection):
    namespace, name = collection.split('.')
    import ansible_collections
    for base in ansible_collections.__path__:
        manifest = pathlib.Path(base) / namespace / name / 'MANIFEST.json'
        if manifest.exists():
            return Version(json.loads(manifest.read_text())['collection_info']['version'])
    pytest.fail('%s is not installed in the test environment' % collection)


def _range(text):
    return SpecifierSet(','.join(part.strip() for part in str(text).split(',')))


GALAXY = yaml.safe_load((ROOT / 'galaxy.yml').read_text())
REQUIREMENTS = {c['name']: c.get('version', '*') for c in
                yaml.safe_load((ROOT / 'collections' / 'requirements.yml').read_text())['collections']}


def test_the_scan_finds_what_is_known_to_be_used():
    used = _collections_used('roles', 'playbooks', 'plugins')
    assert 'roles/monitoring/tasks/grafana.yml' in used['community.grafana']
    assert 'awx.awx' in _collections_used('awx')


def test_galaxy_dependencies_are_exactly_what_the_collection_uses():
    used = _collections_used('roles', 'playbooks', 'plugins')
    declared = set(GALAXY.get('dependencies') or {})
    assert declared == set(used), 'used: %s; declared in galaxy.yml: %s' % (
        {k: sorted(v) for k, v in used.items()}, sorted(declared))


@pytest.mark.parametrize('collection', sorted(GALAXY.get('dependencies') or {}))
def test_each_dependency_range_holds_the_tested_version(collection):
    wanted = _range(GALAXY['dependencies'][collection])
    assert wanted.contains(_installed_version(collection)), (collection, str(wanted))


def test_awx_requirements_are_the_dependencies_plus_what_awx_playbooks_use():
    expected = set(GALAXY.get('dependencies') or {}) | set(_collections_used('awx'))
    assert set(REQUIREMENTS) == expected
    for name, version in (GALAXY.get('dependencies') or {}).items():
        assert REQUIREMENTS[name] == version, name
    for name, version in REQUIREMENTS.items():
        assert _range(version).contains(_installed_version(name)), (name, version)


def test_requires_ansible_claims_only_the_tested_ansible_core():
    claim = SpecifierSet(yaml.safe_load((ROOT / 'meta' / 'runtime.yml').read_text())['requires_ansible'])
    pins = dict(line.split('==') for line in (ROOT / 'requirements.txt').read_text().splitlines()
                if '==' in line and not line.startswith('#'))
    tested = Version(pins['ansible-core'])
    installed = Version(importlib.metadata.version('ansible-core'))
    assert installed == tested
    assert claim.contains(tested)
    lowest = [Version(s.version) for s in claim if s.operator == '>=']
    assert lowest == [Version('%d.%d.0' % (tested.major, tested.minor))], (
        'requires_ansible %s: its lowest version must be the tested minor %d.%d (or test the lower one too)'
        % (claim, tested.major, tested.minor))
