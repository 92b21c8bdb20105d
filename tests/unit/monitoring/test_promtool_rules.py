"""Run the promtool unit tests (tests/promtool/*.yml) against rules rendered from the default rollout spec.

The rule files are produced exactly as the monitoring role produces them: the runbook's
spec (playbooks/group_vars/all/rollout_spec.yml) through cohort.rollout.rollout_spec and
the prometheus_*_rules filters, dumped as YAML.
"""
import os
import shutil
import subprocess

import pytest
import yaml

from ansible_collections.cohort.rollout.plugins.filter import rollout

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PROMTOOL_DIR = os.path.join(ROOT, 'tests', 'promtool')
SPEC_FILE = os.path.join(ROOT, 'playbooks', 'group_vars', 'all', 'rollout_spec.yml')
PROMTOOL = shutil.which('promtool') or '/usr/bin/promtool'
TEST_FILES = sorted(f for f in os.listdir(PROMTOOL_DIR) if f.endswith('.yml'))


def default_spec():
    with open(SPEC_FILE) as f:
        return rollout.rollout_spec(yaml.safe_load(f)['rollout_spec_defaults'])


def render_rules(directory, spec):
    paths = {}
    for name, data in (('recording.yml', rollout.prometheus_recording_rules(spec)),
                       ('alerts.yml', rollout.prometheus_alert_rules(spec))):
        paths[name] = os.path.join(directory, name)
        with open(paths[name], 'w') as f:
            yaml.safe_dump(data, f, sort_keys=False, width=1000)
    return paths


def test_there_are_promtool_tests():
    assert TEST_FILES, 'no tests/promtool/*.yml'


def test_rendered_rules_pass_promtool_check(tmp_path):
    paths = render_rules(str(tmp_path), default_spec())
    res = subprocess.run([PROMTOOL, 'check', 'rules'] + list(paths.values()), capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize('test_file', TEST_FILES)
def test_promtool_unit_tests(tmp_path, test_file):
    render_rules(str(tmp_path), default_spec())
    shutil.copy(os.path.join(PROMTOOL_DIR, test_file), str(tmp_path))
    res = subprocess.run([PROMTOOL, 'test', 'rules', test_file], cwd=str(tmp_path), capture_output=True, text=True,
                         check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert 'SUCCESS' in res.stdout + res.stderr


def test_promtool_detects_a_wrong_expectation(tmp_path):
    """The harness can fail: a test expecting a canary alert that the rules do not raise must fail."""
    render_rules(str(tmp_path), default_spec())
    bogus = {
        'rule_files': ['recording.yml', 'alerts.yml'],
        'evaluation_interval': '1m',
        'tests': [{
            'interval': '1m',
            'input_series': [
                {'series': 'cohort_lb_traffic_weight_share{variant="ultra_fast"}', 'values': '0.01x10'},
                {'series': 'cohort_discovery_error_rate{variant="ultra_fast"}', 'values': '0.001x10'},
            ],
            'alert_rule_test': [{'eval_time': '5m', 'alertname': 'CanaryGateErrorRate', 'exp_alerts': [
                {'exp_labels': {'variant': 'ultra_fast', 'severity': 'critical', 'phase': 'canary',
                                'gate': 'error_rate', 'action': 'rollback', 'source': 'rollout_spec'}}]}],
        }],
    }
    with open(os.path.join(str(tmp_path), 'bogus.yml'), 'w') as f:
        yaml.safe_dump(bogus, f)
    res = subprocess.run([PROMTOOL, 'test', 'rules', 'bogus.yml'], cwd=str(tmp_path), capture_output=True, text=True,
                         check=False)
    assert res.returncode != 0
