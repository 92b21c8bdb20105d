"""The rollout_lock action plugin: one argument spec with its documentation, validated before the lock is touched.

The plugin runs the real module (in this process, on real files) where it would run it on the load balancer.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import time

import pytest
import yaml
from ansible.errors import AnsibleActionFail
from ansible.module_utils.testing import patch_module_args

from ansible_collections.cohort.rollout.plugins.action import rollout_lock as action_mod
from ansible_collections.cohort.rollout.plugins.module_utils import rollout_lock as lock_spec
from ansible_collections.cohort.rollout.plugins.modules import rollout_lock as module_mod
from ansible_collections.cohort.rollout.tests.unit.action_support import action_under_test

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


def make_action(args, calls):
    action = action_under_test(action_mod, 'rollout_lock', args)

    def execute_module(module_name, module_args, task_vars):
        calls.append(dict(module_args))
        out = io.StringIO()
        with patch_module_args(dict(module_args)), contextlib.redirect_stdout(out):
            with pytest.raises(SystemExit):
                module_mod.main()
        return json.loads(out.getvalue())
    action._execute_module = execute_module
    return action


def run(args):
    calls = []
    result = make_action(args, calls).run(task_vars={})
    return result, calls


def held_by_another_controller(path):
    """A live lock of a run on another controller (its liveness cannot be told from here)."""
    now = time.time()
    doc = dict(id='elsewhere:99:1', controller='elsewhere', pid=99, pid_start='1', user='u', phase='canary',
               acquired_epoch=now, expires_epoch=now + 3600, acquired_at='x', expires_at='y')
    with open(path, 'w', encoding='utf-8') as handle:
        json.dump(doc, handle)
    return open(path, encoding='utf-8').read()


@pytest.mark.parametrize('value', ['false', 'False', 'no', '0', False, 0])
def test_a_false_break_lock_string_does_not_break_the_lock(tmp_path, value):
    """bool('false') is True: the plugin converted with bool() and broke a live lock on 'false'."""
    path = str(tmp_path / 'rollout.lock')
    before = held_by_another_controller(path)
    result, calls = run(dict(path=path, break_lock=value, phase='ramp'))
    assert calls[0]['break_lock'] is False
    assert result['failed'] and not result['acquired'] and 'broken' not in result
    assert open(path, encoding='utf-8').read() == before


@pytest.mark.parametrize('value', ['true', 'yes', True])
def test_a_true_break_lock_breaks_it(tmp_path, value):
    path = str(tmp_path / 'rollout.lock')
    held_by_another_controller(path)
    result, unused = run(dict(path=path, break_lock=value, phase='rollback'))
    assert result['acquired'] and result['broken']['id'] == 'elsewhere:99:1'
    assert result['taken_over']['holder_state'] == 'unknown'
    now = json.load(open(path, encoding='utf-8'))
    assert now['id'] == result['me']['id'] and now['phase'] == 'rollback'


@pytest.mark.parametrize('args, needle', [
    (dict(bogus=1), 'bogus'),
    # What only the controller knows is the plugin's to set, never a task's.
    (dict(holder=dict(id='forged:1:1')), 'holder'),
    (dict(expected_holder='elsewhere:99:1', break_lock=True), 'expected_holder'),
    (dict(stale_holder='elsewhere:99:1'), 'stale_holder'),
    (dict(break_lock='maybe'), 'break_lock'),
    (dict(ttl='a day'), 'ttl'),
    (dict(state='locked'), 'state'),
    (dict(path=''), 'path must not be empty'),
])
def test_bad_arguments_are_refused_and_nothing_changes(tmp_path, args, needle):
    path = str(tmp_path / 'rollout.lock')
    before = held_by_another_controller(path)
    with pytest.raises(AnsibleActionFail) as err:
        run(dict(dict(path=path), **args))
    assert needle in str(err.value) and 'rollout_lock' in str(err.value)
    assert open(path, encoding='utf-8').read() == before
    assert sorted(os.listdir(str(tmp_path))) == ['rollout.lock']  # not even the .guard file


def test_missing_path_is_refused():
    with pytest.raises(AnsibleActionFail, match='path'):
        run(dict(state='query'))


def test_phase_reaches_the_lock_and_defaults_are_the_documented_ones(tmp_path):
    path = str(tmp_path / 'rollout.lock')
    result, calls = run(dict(path=path, phase='canary', ttl='600'))
    assert result['acquired'] and json.load(open(path, encoding='utf-8'))['phase'] == 'canary'
    assert calls[0]['ttl'] == 600 and calls[0]['state'] == 'present' and calls[0]['break_lock'] is False
    assert calls[0]['holder']['id'] == result['me']['id']


def documented_options():
    return yaml.safe_load(module_mod.DOCUMENTATION)['options']


def test_the_documentation_is_the_argument_spec():
    """What ansible-doc shows is what the plugin accepts, plus what it sets and says so."""
    options = documented_options()
    assert set(options) == set(lock_spec.MODULE_ARGUMENT_SPEC)
    for name, spec in lock_spec.MODULE_ARGUMENT_SPEC.items():
        doc = options[name]
        assert doc['type'] == spec['type'], name
        assert doc.get('default') == spec.get('default'), name
        assert bool(doc.get('required')) == bool(spec.get('required')), name
        assert doc.get('choices') == spec.get('choices'), name
        set_by_plugin = doc['description'][0].startswith('Set by the action plugin, never by a task')
        assert set_by_plugin == (name in lock_spec.HOLDER_ARGUMENT_SPEC), name
    assert action_mod.ActionModule._VALID_ARGS == frozenset(lock_spec.LOCK_ARGUMENT_SPEC)


def lock_tasks():
    """Every task in roles/ and playbooks/ that calls the lock, with its file."""
    found = []

    def walk(node, where):
        if isinstance(node, list):
            for item in node:
                walk(item, where)
        elif isinstance(node, dict):
            for key in ('cohort.rollout.rollout_lock', 'rollout_lock'):
                if key in node:
                    found.append((where, node[key]))
            for key in ('block', 'rescue', 'always', 'tasks', 'pre_tasks', 'post_tasks', 'handlers'):
                walk(node.get(key), where)
    for top in ('roles', 'playbooks'):
        for folder, unused, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                if name.endswith(('.yml', '.yaml')):
                    path = os.path.join(folder, name)
                    with open(path, encoding='utf-8') as handle:
                        walk(yaml.safe_load(handle), os.path.relpath(path, ROOT))
    return found


def test_every_caller_passes_only_documented_task_options():
    tasks = lock_tasks()
    assert tasks, 'no caller of cohort.rollout.rollout_lock found'
    for where, args in tasks:
        assert isinstance(args, dict), where
        assert set(args) <= set(lock_spec.LOCK_ARGUMENT_SPEC), (where, sorted(args))
        assert 'path' in args, where
