"""Every option that can carry a secret is no_log: in modules, action plugins, role argument specs and tasks.

AWX keeps every task's ``invocation.module_args`` in its job events, and registered variables end up in
reports and logs: a password, a token, a DSN with credentials or a Redis URL with a password must never
be there. Secret-ness is decided by name (SECRET_NAME) plus an explicit list of options whose name does
not say so (EXPLICIT_SECRETS); a new option that matches either and lacks ``no_log`` fails this test.

* Modules: the argument spec each module really passes to AnsibleModule (captured by running its main()),
  and every argument spec defined in plugins/action and plugins/module_utils (dicts of option dicts, and
  ``argument_spec()`` functions), options nested under ``options`` included.
* Roles: every option of meta/argument_specs.yml.
* Tasks: a task of a role (tasks/, handlers/) or a playbook whose module arguments, environment or
  rendered template reference a secret variable is either ``no_log: true`` itself (or in a block that is),
  or hands the secret only to cohort.rollout options that are no_log.
"""
from __future__ import annotations

import importlib
import inspect
import pathlib
import re

import pytest
import yaml
from ansible.playbook.block import Block
from ansible.playbook.task import Task

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Option names that say "secret".
SECRET_NAME = re.compile(r'(password|passwd|passphrase|token|secret|dsn|credential|api_?key|private_key'
                         r'|headers|redis_url|notify_url|webhook_url)', re.I)
# Options that carry a secret although their name does not say so: (plugin or role, option path).
EXPLICIT_SECRETS = {
    ('cache_warm', 'db'),            # a PostgreSQL DSN with its password (inventories/example)
    ('notify', 'url'),               # an incoming-webhook URL is itself the credential
    ('analyzer', 'analyzer_db'),     # the same DSN, as a role variable
}
# Variables whose value is a secret, when a task or template references them (besides SECRET_NAME).
# (A path to a secret is not one: *_file, *_path, *_dir.)
SECRET_VARIABLES = re.compile(r'\b(?!\w*_(?:file|path|dir)\b)(\w*(password|passwd|token|secret|dsn|api_key|redis_url'
                              r'|notify_url|webhook_url)\w*|analyzer_db|vault_\w+)\b')
JINJA = re.compile(r'{{.*?}}|{%.*?%}', re.S)


# -- argument specs of the plugins --------------------------------------------

class _Captured(Exception):
    pass


def _is_spec(value):
    return (isinstance(value, dict) and value and
            all(isinstance(k, str) and isinstance(v, dict) and 'type' in v for k, v in value.items()))


def _module_spec(name, monkeypatch):
    """The argument spec a module passes to AnsibleModule, by running its main() up to that call."""
    module = importlib.import_module('ansible_collections.cohort.rollout.plugins.modules.%s' % name)
    captured = {}

    def record(*args, **kwargs):
        captured.update(kwargs.get('argument_spec') or args[0])
        raise _Captured()

    monkeypatch.setattr(module, 'AnsibleModule', record)
    with pytest.raises(_Captured):
        module.main()
    return captured


def _python_specs(kind):
    """Argument specs defined at module level in plugins/<kind>/*.py: {'file:NAME': spec}."""
    specs = {}
    for path in sorted((ROOT / 'plugins' / kind).glob('*.py')):
        if path.name == '__init__.py':
            continue
        module = importlib.import_module('ansible_collections.cohort.rollout.plugins.%s.%s' % (kind, path.stem))
        for attr, value in vars(module).items():
            if inspect.isfunction(value) and attr == 'argument_spec' and value.__module__ == module.__name__:
                value = value()
            if _is_spec(value) and getattr(module, attr, None) is not None:
                specs['%s:%s' % (path.stem, attr)] = value
    return specs


def _options(spec, prefix=''):
    """(path, option) for every option, nested ones as parent.child."""
    for name, option in spec.items():
        path = prefix + name
        yield path, option
        if option.get('options'):
            yield from _options(option['options'], path + '.')


def _secret(owner, path):
    return bool(SECRET_NAME.search(path.rsplit('.', 1)[-1])) or (owner, path) in EXPLICIT_SECRETS


MODULES = sorted(p.stem for p in (ROOT / 'plugins' / 'modules').glob('*.py') if p.stem != '__init__')


@pytest.mark.parametrize('name', MODULES)
def test_module_secret_options_are_no_log(name, monkeypatch):
    spec = _module_spec(name, monkeypatch)
    assert spec, '%s: no argument spec captured' % name
    bad = [path for path, option in _options(spec) if _secret(name, path) and not option.get('no_log')]
    assert not bad, '%s: options that can carry a secret but are not no_log: %s' % (name, bad)


@pytest.mark.parametrize('kind', ['action', 'module_utils'])
def test_plugin_argument_specs_mark_secrets_no_log(kind):
    specs = _python_specs(kind)
    bad = []
    for where, spec in specs.items():
        owner = where.split(':')[0]
        bad += ['%s %s' % (where, path) for path, option in _options(spec)
                if _secret(owner, path) and not option.get('no_log')]
    assert not bad, bad


def test_the_specs_this_test_reads_are_found(monkeypatch):
    """The walk sees the specs it is meant to see (so an empty walk cannot pass)."""
    assert {'cache_warm', 'daemon', 'metric_gate', 'notify', 'report', 'rollout_lock', 'traffic_weights'} <= set(MODULES)
    assert 'gates:ARGUMENT_SPEC' in _python_specs('module_utils')
    assert 'notify:ARGUMENT_SPEC' in _python_specs('action')
    found = {(name, path) for name in MODULES for path, _o in _options(_module_spec(name, monkeypatch))}
    for owner, path in EXPLICIT_SECRETS:
        if owner in MODULES:
            assert (owner, path) in found, 'stale entry in EXPLICIT_SECRETS: %s.%s' % (owner, path)
    # nested options are walked: metric_gate's checks[].token and revert.api_token
    assert {('metric_gate', 'checks.token'), ('metric_gate', 'revert.api_token')} <= found


def test_secret_values_are_masked_in_the_module_result(capsys):
    """What no_log buys: the DSN and the Redis URL do not come back in the result (cache_warm, real main())."""
    import json

    from ansible.module_utils.testing import patch_module_args

    from ansible_collections.cohort.rollout.plugins.modules import cache_warm

    dsn = 'postgresql://analyzer:dsn-password-never-shown@db.example:5432/learners'
    url = 'redis://:url-password-never-shown@127.0.0.1:1/0'
    with patch_module_args(dict(redis_url=url, db=dsn, ttl=0)):
        with pytest.raises(SystemExit):
            cache_warm.main()
    out = capsys.readouterr().out
    result = json.loads(out)
    assert result['failed'] and 'ttl must be' in result['msg']
    assert 'dsn-password-never-shown' not in out and 'url-password-never-shown' not in out


# -- roles -----------------------------------------------------------------------

ROLE_SPECS = sorted(ROOT.glob('roles/*/meta/argument_specs.yml'))


@pytest.mark.parametrize('spec_file', ROLE_SPECS, ids=lambda p: p.parts[-3])
def test_role_secret_variables_are_no_log(spec_file):
    role = spec_file.parts[-3]
    bad = []
    for entry, spec in yaml.safe_load(spec_file.read_text())['argument_specs'].items():
        for path, option in _options(spec.get('options') or {}):
            if _secret(role, path) and not option.get('no_log'):
                bad.append('%s.%s' % (entry, path))
    assert not bad, '%s: secret variables without no_log: %s' % (role, bad)


KEYWORDS = set(Task.fattributes) | set(Block.fattributes) | {'local_action', 'action', 'args'}


def _task_files():
    files = sorted(ROOT.glob('roles/*/tasks/*.yml')) + sorted(ROOT.glob('roles/*/handlers/*.yml'))
    files += sorted(ROOT.glob('playbooks/*.yml'))
    return files


def _walk(items, inherited_no_log=False):
    for item in items or []:
        if not isinstance(item, dict):
            continue
        no_log = inherited_no_log or item.get('no_log') is True
        if 'tasks' in item or 'handlers' in item or 'pre_tasks' in item or 'post_tasks' in item:  # a play
            for key in ('pre_tasks', 'tasks', 'post_tasks', 'handlers'):
                yield from _walk(item.get(key), no_log)
            continue
        if any(key in item for key in ('block', 'rescue', 'always')):
            for key in ('block', 'rescue', 'always'):
                yield from _walk(item.get(key), no_log)
            continue
        yield item, no_log


def _module_of(task):
    names = [k for k in task if k not in KEYWORDS]
    return (names[0], task[names[0]]) if names else (None, None)


def _secrets_in(value, jinja_only=False):
    """Secret variables a value references (in a template file: inside its Jinja blocks only)."""
    if not value:
        return []
    text = value if isinstance(value, str) else yaml.safe_dump(value)
    if jinja_only:
        text = ' '.join(JINJA.findall(text))
    return sorted({m.group(1) for m in SECRET_VARIABLES.finditer(text)})


def _unmasked(args, spec, prefix=''):
    """Secrets handed to options of a cohort.rollout module that are not no_log (nested options followed)."""
    leaks = []
    for key, value in (args or {}).items():
        option = spec.get(key) or {}
        if option.get('no_log'):
            continue
        nested = option.get('options')
        if nested and isinstance(value, dict):
            leaks += _unmasked(value, nested, prefix + key + '.')
        elif nested and isinstance(value, list) and all(isinstance(v, dict) for v in value):
            for element in value:
                leaks += _unmasked(element, nested, prefix + key + '.')
        elif _secrets_in(value, jinja_only=True):
            leaks.append('%s%s (%s)' % (prefix, key, ', '.join(_secrets_in(value, jinja_only=True))))
    return leaks


@pytest.mark.parametrize('path', _task_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_tasks_that_handle_secrets_do_not_log_them(path, monkeypatch):
    role_dir = path.parents[1] if 'roles' in path.relative_to(ROOT).parts[:1] else None
    bad = []
    for task, no_log in _walk(yaml.safe_load(path.read_text())):
        if no_log:
            continue
        module, args = _module_of(task)
        if module is None:
            continue
        name = task.get('name', module)
        leaks = []
        if module.startswith('cohort.rollout.') and isinstance(args, dict):
            # a secret handed to a no_log option (or inside one) is masked by the module
            leaks += _unmasked(args, _module_spec(module.split('.')[-1], monkeypatch))
        elif module == 'ansible.builtin.assert' and isinstance(args, dict):
            # `that` is evaluated, never shown with its values; the messages are shown
            leaks += _secrets_in({k: v for k, v in args.items() if k != 'that'}, jinja_only=True)
        else:
            leaks += _secrets_in(args, jinja_only=True)
        leaks += _secrets_in(task.get('environment'), jinja_only=True)
        if module == 'ansible.builtin.template' and isinstance(args, dict) and role_dir is not None:
            source = role_dir / 'templates' / args['src']
            # --diff shows the rendered file
            found = _secrets_in(source.read_text(), jinja_only=True) if source.exists() else []
            if found:
                leaks.append('template %s renders %s' % (args['src'], ', '.join(found)))
        if leaks:
            bad.append('%r: %s' % (name, leaks))
    assert not bad, '%s: tasks that would log a secret (set no_log: true): %s' % (path.relative_to(ROOT), bad)


def test_the_task_walk_sees_secret_handling_tasks(monkeypatch):
    """The walk finds the tasks that are known to hand over secrets (so a broken walk cannot pass)."""
    seen = {}
    for path in _task_files():
        for task, no_log in _walk(yaml.safe_load(path.read_text())):
            module, args = _module_of(task)
            if module and (_secrets_in(args) or _secrets_in(task.get('environment'))):
                seen[(path.relative_to(ROOT).as_posix(), task.get('name'))] = no_log
    names = {name for (_p, name) in seen}
    assert 'Preload the cohorts the load will ask for' in names            # cache_warm (db, redis_url)
    assert 'Write the API token file (systemd reads it, never argv)' in names and seen[
        ('roles/loadbalancer/tasks/configure.yml', 'Write the API token file (systemd reads it, never argv)')]
    assert len(seen) >= 15
