"""Every role's meta/argument_specs.yml documents exactly the variables of its defaults/main.yml."""
import pathlib

import pytest
import yaml

ROLES = pathlib.Path(__file__).resolve().parents[2] / 'roles'
ROLE_DIRS = sorted(p for p in ROLES.iterdir() if (p / 'defaults' / 'main.yml').exists())


def test_roles_found():
    assert len(ROLE_DIRS) >= 1


@pytest.mark.parametrize('role', ROLE_DIRS, ids=lambda p: p.name)
def test_argument_specs_match_defaults(role):
    defaults = yaml.safe_load((role / 'defaults' / 'main.yml').read_text()) or {}
    spec_file = role / 'meta' / 'argument_specs.yml'
    assert spec_file.exists(), f'{role.name}: meta/argument_specs.yml is missing'
    spec = yaml.safe_load(spec_file.read_text())['argument_specs']['main']
    options = spec.get('options', {})
    missing = sorted(set(defaults) - set(options))
    extra = sorted(k for k in set(options) - set(defaults) if not options[k].get('required'))
    assert not missing, f'{role.name}: defaults without argument spec: {missing}'
    assert not extra, f'{role.name}: optional argument spec entries without a default: {extra}'
    for name, option in options.items():
        assert option.get('description'), f'{role.name}: {name} has no description'


@pytest.mark.parametrize('role', ROLE_DIRS, ids=lambda p: p.name)
def test_variables_are_prefixed_with_the_role_name(role):
    defaults = yaml.safe_load((role / 'defaults' / 'main.yml').read_text()) or {}
    bad = [k for k in defaults if not k.startswith(role.name + '_')]
    assert not bad, f'{role.name}: variables not prefixed with {role.name}_: {bad}'
