"""Every role's meta/argument_specs.yml is a true description of its variables.

For every role of the collection (each directory of roles/ with tasks/main.yml, none left out):
its options are exactly the variables of defaults/main.yml (plus required ones without a default);
a ``default`` written in the spec is the one defaults/main.yml has; every literal default passes
Ansible's own validation against the spec (ArgumentSpecValidator, what ``validate_argument_spec``
runs at role entry), so a declared type cannot contradict the default; wrong values are refused by
that same validation; descriptions say something (not the variable's name again); variables carry
the role's prefix; a role README, where there is one, lists every variable.
"""
import pathlib

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLES = ROOT / 'roles'
ROLE_DIRS = sorted(p for p in ROLES.iterdir() if (p / 'tasks' / 'main.yml').exists())


def _defaults(role):
    path = role / 'defaults' / 'main.yml'
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def _spec(role):
    spec_file = role / 'meta' / 'argument_specs.yml'
    assert spec_file.exists(), f'{role.name}: meta/argument_specs.yml is missing'
    return yaml.safe_load(spec_file.read_text())['argument_specs']['main']


def _templated(value):
    return isinstance(value, str) and ('{{' in value or '{%' in value) or (
        isinstance(value, (list, dict)) and '{{' in yaml.safe_dump(value))


def _text(description):
    return ' '.join(description) if isinstance(description, list) else str(description or '')


def test_every_role_is_checked():
    # a role without defaults/main.yml is checked too (and must then have no optional options)
    assert {p.name for p in ROLE_DIRS} == {p.name for p in ROLES.iterdir() if p.is_dir()}
    assert {'analyzer', 'loadbalancer', 'monitoring', 'phase', 'preflight', 'redis_cache', 'rollback'} <= {
        p.name for p in ROLE_DIRS}


@pytest.mark.parametrize('role', ROLE_DIRS, ids=lambda p: p.name)
def test_argument_specs_match_defaults(role):
    defaults = _defaults(role)
    options = _spec(role).get('options', {})
    missing = sorted(set(defaults) - set(options))
    extra = sorted(k for k in set(options) - set(defaults) if not options[k].get('required'))
    assert not missing, f'{role.name}: defaults without argument spec: {missing}'
    assert not extra, f'{role.name}: optional argument spec entries without a default: {extra}'
    differ = {k: (o['default'], defaults[k]) for k, o in options.items() if 'default' in o and o['default'] != defaults[k]}
    assert not differ, f'{role.name}: spec default differs from defaults/main.yml (spec, defaults): {differ}'


@pytest.mark.parametrize('role', ROLE_DIRS, ids=lambda p: p.name)
def test_literal_defaults_pass_the_role_validation(role):
    options = _spec(role).get('options', {})
    literal = {k: v for k, v in _defaults(role).items() if not _templated(v)}
    spec = {k: dict(o, required=False) for k, o in options.items() if k in literal}
    spec = {k: {a: b for a, b in o.items() if a not in ('description', 'version_added')} for k, o in spec.items()}
    result = ArgumentSpecValidator(spec).validate(literal)
    assert not result.error_messages, f'{role.name}: {result.error_messages}'


@pytest.mark.parametrize('role', ROLE_DIRS, ids=lambda p: p.name)
def test_wrong_types_are_refused(role):
    """The spec really constrains: an int, bool or choices option refuses a value it cannot take."""
    options = _spec(role).get('options', {})
    spec = {k: {a: b for a, b in o.items() if a not in ('description', 'version_added', 'default')}
            for k, o in options.items()}
    probes = {}
    for name, option in options.items():
        if option.get('choices'):
            probes[name] = 'not-one-of-the-choices'
        elif option.get('type') in ('int', 'float', 'bool'):
            probes[name] = 'not-a-number-or-bool'
    if not probes:
        pytest.skip(f'{role.name} has no typed or enumerated option to probe')  # reported, not counted as a pass
    for name, value in probes.items():
        given = {k: v for k, v in _defaults(role).items() if not _templated(v)}
        given[name] = value
        relaxed = {k: dict(o, required=False) for k, o in spec.items()}
        errors = ArgumentSpecValidator(relaxed).validate(given).error_messages
        assert any(name in e for e in errors), f'{role.name}: {name}={value!r} was accepted'


@pytest.mark.parametrize('role', ROLE_DIRS, ids=lambda p: p.name)
def test_descriptions_say_something(role):
    options = _spec(role).get('options', {})
    assert _text(_spec(role).get('short_description')), f'{role.name}: no short_description'
    empty = [n for n, o in options.items() if len(_text(o.get('description')).split()) < 2
             or _text(o.get('description')).strip().rstrip('.') == n]
    assert not empty, f'{role.name}: descriptions that only repeat the name or say nothing: {empty}'


@pytest.mark.parametrize('role', ROLE_DIRS, ids=lambda p: p.name)
def test_variables_are_prefixed_with_the_role_name(role):
    bad = [k for k in set(_defaults(role)) | set(_spec(role).get('options', {})) if not k.startswith(role.name + '_')]
    assert not bad, f'{role.name}: variables not prefixed with {role.name}_: {bad}'


@pytest.mark.parametrize('role', [p for p in ROLE_DIRS if (p / 'README.md').exists()], ids=lambda p: p.name)
def test_role_readme_lists_every_variable(role):
    readme = (role / 'README.md').read_text()
    missing = [name for name in _defaults(role) if '`%s`' % name not in readme]
    assert not missing, f'{role.name}: README.md does not list {missing}'
