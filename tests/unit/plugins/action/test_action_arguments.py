"""Every action plugin validates its task arguments one way: module_utils/arguments.py, with its doc module's spec."""
from __future__ import annotations

import importlib
import os
from unittest import mock

import pytest
from ansible.errors import AnsibleActionFail

from ansible_collections.cohort.rollout.plugins.module_utils import arguments
from ansible_collections.cohort.rollout.plugins.module_utils.rollout_lock import HOLDER_ARGUMENT_SPEC
from ansible_collections.cohort.rollout.tests.unit.action_support import action_under_test

PLUGINS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))), 'plugins')
ACTIONS = sorted(name[:-3] for name in os.listdir(os.path.join(PLUGINS, 'action'))
                 if name.endswith('.py') and not name.startswith('_'))


class Captured(Exception):
    """Stops the code under test once it has shown what it validates with."""


def module_spec(name):
    """What the doc module hands AnsibleModule (what ansible-test checks the documentation against)."""
    module = importlib.import_module('ansible_collections.cohort.rollout.plugins.modules.%s' % name)
    seen = {}

    def fake(**kwargs):
        seen.update(kwargs)
        raise Captured()
    with mock.patch.object(module, 'AnsibleModule', side_effect=fake), pytest.raises(Captured):
        module.main()
    return seen


def action_spec(name):
    """What the action plugin validates the task's arguments with."""
    action = importlib.import_module('ansible_collections.cohort.rollout.plugins.action.%s' % name)
    plugin = action_under_test(action, name, {})
    seen = {}

    def fake(plugin_name, args, argument_spec, **constraints):
        seen.update(name=plugin_name, argument_spec=argument_spec, **constraints)
        raise arguments.ArgumentError('%s: captured' % plugin_name)
    with mock.patch.object(action, 'validate_args', side_effect=fake), pytest.raises(AnsibleActionFail):
        plugin.run(task_vars={})
    return seen, plugin


def test_there_are_action_plugins():
    assert set(ACTIONS) >= {'metric_gate', 'notify', 'report', 'rollout_lock', 'rollout_status'}


@pytest.mark.parametrize('name', ACTIONS)
def test_each_action_plugin_validates_with_its_doc_modules_spec(name):
    doc = module_spec(name)
    used, plugin = action_spec(name)
    assert used['name'] == name
    doc_spec = doc.pop('argument_spec')
    doc.pop('supports_check_mode', None)
    if name == 'rollout_lock':
        # The module also declares what only the controller sets; a task may pass the rest only.
        assert doc_spec == dict(used['argument_spec'], **HOLDER_ARGUMENT_SPEC)
    else:
        assert used['argument_spec'] is doc_spec  # one spec, not a copy that can drift
    assert {k: v for k, v in used.items() if k not in ('name', 'argument_spec')} == doc
    assert plugin._VALID_ARGS == frozenset(used['argument_spec'])


@pytest.mark.parametrize('name', ACTIONS)
def test_no_action_plugin_validates_another_way(name):
    with open(os.path.join(PLUGINS, 'action', name + '.py'), encoding='utf-8') as handle:
        text = handle.read()
    for other in ('ArgumentSpecValidator', 'validate_argument_spec', 'bool(args', "args.get('"):
        assert other not in text, (name, other)


SPEC = dict(flag=dict(type='bool', default=False), count=dict(type='int', required=True),
            user=dict(type='str'), password=dict(type='str', no_log=True))


@pytest.mark.parametrize('value, expected', [('false', False), ('no', False), ('0', False), (False, False),
                                             ('true', True), ('yes', True), (True, True)])
def test_booleans_are_converted_not_truth_tested(value, expected):
    assert arguments.validate_args('x', dict(flag=value, count=1), SPEC)['flag'] is expected


def test_every_problem_is_named_in_one_message():
    with pytest.raises(arguments.ArgumentError) as err:
        arguments.validate_args('x', dict(flag='maybe', bogus=1), SPEC)
    text = str(err.value)
    assert text.startswith('x: ')
    assert "'flag'" in text and 'count' in text and 'unsupported parameters: bogus' in text


def test_constraints_apply_and_defaults_fill_in():
    with pytest.raises(arguments.ArgumentError, match='user'):
        arguments.validate_args('x', dict(count=1, password='p'), SPEC, required_together=[['user', 'password']])
    assert arguments.validate_args('x', dict(count='3'), SPEC) == dict(count=3, flag=False, user=None, password=None)
