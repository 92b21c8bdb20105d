"""The pools are named in one place, the rollout spec (issue 17, item 12).

A spec whose baseline and candidate are ``blue`` and ``green`` must reach every role that
names pools: the load balancer's pools and first weights, the scrape targets and variant
patterns of monitoring, and the rollback (which reads the raw spec, without validating the
rest of it: an emergency rollback must not fail on a spec error elsewhere). Found because
rollback.yml sent the traffic to the role's own ``original`` whatever the spec said.
"""
from __future__ import annotations

import os
import re

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.cohort.rollout.plugins.module_utils.rollout_spec import rollout_spec

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
# The analyzer role deploys the reference payload, whose two code paths are named original and
# ultra_fast by the application itself: those names are the payload's, not the rollout's pools.
PAYLOAD_ROLES = {'analyzer'}


def load(*parts):
    with open(os.path.join(ROOT, *parts), encoding='utf-8') as handle:
        return yaml.safe_load(handle)


def trusted(value):
    """YAML read by the test, marked as templates the way Ansible marks its own vars files."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {key: trusted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [trusted(item) for item in value]
    return value


def render(role, name, overrides, validated=True):
    spec_defaults = load('playbooks', 'group_vars', 'all', 'rollout_spec.yml')['rollout_spec_defaults']
    variables = dict(trusted(load('roles', role, 'defaults', 'main.yml')),
                     rollout_spec_defaults=spec_defaults, rollout_spec_overrides=overrides)
    if validated:
        variables['rollout_spec'] = rollout_spec(spec_defaults, overrides)
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template('{{ %s }}' % name))


RENAMED = {'baseline': 'blue', 'candidate': 'green'}


@pytest.mark.parametrize('role, name, expected', [
    ('rollback', 'rollback_baseline', 'blue'),
    ('rollback', 'rollback_candidate', 'green'),
    ('loadbalancer', 'loadbalancer_pools', {'blue': 'analyzers_blue', 'green': 'analyzers_green'}),
    ('loadbalancer', 'loadbalancer_initial_weights', {'blue': 1, 'green': 0}),
    ('monitoring', 'monitoring_analyzer_groups', {'blue': 'analyzers_blue', 'green': 'analyzers_green'}),
    ('monitoring', 'monitoring_haproxy_variant_patterns', {'blue': 'blue', 'green': 'green'}),
])
def test_the_spec_names_the_pools_of_every_role(role, name, expected):
    assert render(role, name, RENAMED) == expected


def test_without_overrides_the_pools_are_the_spec_defaults():
    assert render('rollback', 'rollback_baseline', {}) == 'original'
    assert render('loadbalancer', 'loadbalancer_pools', {}) == {
        'original': 'analyzers_original', 'ultra_fast': 'analyzers_ultra_fast'}


def test_the_rollback_reads_its_pools_from_a_spec_that_does_not_validate():
    broken = dict(RENAMED, phases={'canary': {'share': 'abc'}})
    with pytest.raises(Exception, match='share'):
        rollout_spec(load('playbooks', 'group_vars', 'all', 'rollout_spec.yml')['rollout_spec_defaults'], broken)
    assert render('rollback', 'rollback_baseline', broken, validated=False) == 'blue'
    assert render('rollback', 'rollback_candidate', broken, validated=False) == 'green'


def test_no_role_default_names_a_pool_itself():
    literal = re.compile(r'\b(original|ultra_fast)\b')
    found = []
    for role in sorted(os.listdir(os.path.join(ROOT, 'roles'))):
        if role in PAYLOAD_ROLES:
            continue
        for parts in (('defaults', 'main.yml'), ('meta', 'argument_specs.yml')):
            path = os.path.join(ROOT, 'roles', role, *parts)
            if not os.path.exists(path):
                continue
            with open(path, encoding='utf-8') as handle:
                for number, line in enumerate(handle, 1):
                    code = line.split('#', 1)[0]
                    if literal.search(code):
                        found.append('%s:%d: %s' % (os.path.relpath(path, ROOT), number, line.strip()))
    assert not found, '\n'.join(found)
