"""The phase playbooks run the way AWX runs them: through ansible-runner, from a private
data directory whose env/extravars hold the job template's survey defaults plus what the
"cohort.rollout secrets" credential type injects, with the project and the inventory.

Needs the sandbox up with load running (make integration does both). Order matters:
a canary job, then a rollback job, which leaves the sandbox at 100% original.
"""
import json
import os
import re
import sys

import ansible_runner
import jinja2
import pytest
import requests
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'bench'))
from ee_support import survey_defaults  # noqa: E402  pylint: disable=wrong-import-position

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INVENTORY = os.path.join(ROOT, 'inventories', 'local')
VENV_BIN = os.path.dirname(sys.executable)
SAMPLE_LINE = re.compile(r'\[canary \d\d:\d\d:\d\d (\d+)/(\d+)\] ')


class _Loader(yaml.SafeLoader):
    """SafeLoader that accepts Ansible's !unsafe tag."""


_Loader.add_constructor('!unsafe', lambda loader, node: loader.construct_scalar(node))


def _load(*parts):
    with open(os.path.join(ROOT, *parts), encoding='utf-8') as handle:
        return yaml.load(handle, Loader=_Loader)  # SafeLoader subclass


AWX = {}
for _name in ('job_templates.yml', 'credential_type.yml'):
    AWX.update(_load('awx', 'vars', _name))
ENDPOINTS = _load('inventories', 'local', 'group_vars', 'all', 'endpoints.yml')


def _sandbox(value):
    """An endpoint of inventories/local (they reference the port variables)."""
    return jinja2.Template(value).render(**ENDPOINTS)


def injected_secrets():
    """The credential type's injectors rendered with the sandbox's secrets, as AWX does at launch."""
    inputs = {'lb_api_token': ENDPOINTS['lb_api_token'], 'redis_password': ENDPOINTS['redis_password']}
    env = jinja2.Environment()  # AWX renders missing optional inputs as empty strings
    return {name: env.from_string(template).render(**inputs)
            for name, template in AWX['awx_credential_type_injectors']['extra_vars'].items()}


def run_job(tmp_path, template):
    """Run a job template's playbook as AWX would and return (runner, stdout lines, events)."""
    pdd = tmp_path / ('job-' + template)
    (pdd / 'env').mkdir(parents=True)
    extravars = dict(survey_defaults(template))
    extravars.update(injected_secrets())
    (pdd / 'env' / 'extravars').write_text(yaml.safe_dump(extravars))
    (pdd / 'env' / 'envvars').write_text(yaml.safe_dump({
        'PATH': VENV_BIN + os.pathsep + os.environ.get('PATH', '/usr/bin:/bin'),
        'ANSIBLE_FORCE_COLOR': 'false',
    }))
    # AWX's defaults: no idle timeout shorter than a silent gate interval, a job timeout.
    (pdd / 'env' / 'settings').write_text(yaml.safe_dump({'idle_timeout': 600, 'job_timeout': 1200}))
    os.chmod(pdd / 'env' / 'extravars', 0o600)
    runner = ansible_runner.run(
        private_data_dir=str(pdd), project_dir=ROOT, inventory=INVENTORY,
        playbook=AWX['awx_job_templates'][template]['playbook'], quiet=True)
    events = list(runner.events)
    lines = [line for event in events for line in (event.get('stdout') or '').splitlines()]
    return runner, lines, events


def _weights():
    reply = requests.get(_sandbox(ENDPOINTS['lb_api_url']) + '/config/traffic-weights', timeout=10,
                         headers={'Authorization': 'Bearer ' + ENDPOINTS['lb_api_token']})
    reply.raise_for_status()
    return reply.json()['shares']


def _report():
    path = os.path.join(ROOT, '.sandbox', 'report.json')
    with open(path, encoding='utf-8') as handle:
        return json.load(handle)


def _assert_no_secret_in(events):
    dumped = json.dumps(events)
    for name in ('lb_api_token', 'redis_password'):
        assert ENDPOINTS[name] not in dumped, '%s appears in the job events (AWX would store it)' % name


@pytest.fixture(scope='module')
def jobs_dir(tmp_path_factory):
    return tmp_path_factory.mktemp('awx-runner')


def test_canary_job_succeeds_and_streams_every_gate_sample(jobs_dir):
    runner, lines, events = run_job(jobs_dir, 'canary')
    tail = '\n'.join(lines[-40:])
    assert runner.status == 'successful' and runner.rc == 0, tail
    samples = [SAMPLE_LINE.search(line) for line in lines]
    samples = [(int(m.group(1)), int(m.group(2))) for m in samples if m]
    assert samples, 'no per-sample gate line in the event stream:\n' + tail
    total = samples[-1][1]
    # One line per sample, in order, the last one being n/N.
    assert [n for n, _total in samples] == list(range(1, total + 1)), samples
    assert any('[canary] verdict: PASSED' in line for line in lines), tail
    assert _report()['canary']['status'] == 'passed'
    assert 0 < float(_weights()['ultra_fast']) < 0.5
    _assert_no_secret_in(events)


def test_rollback_job_succeeds_and_restores_the_original(jobs_dir):
    runner, lines, events = run_job(jobs_dir, 'rollback')
    assert runner.status == 'successful' and runner.rc == 0, '\n'.join(lines[-40:])
    weights = _weights()
    assert float(weights['original']) == 1.0 and float(weights.get('ultra_fast', 0)) == 0.0, weights
    rollback = _report()['rollback']
    assert rollback['reason'] == survey_defaults('rollback')['rollback_reason']
    _assert_no_secret_in(events)
