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


# A service whose metrics are named differently (and label the variant `deployment`): only the
# spec's `metrics` changes, and promtool proves the same gauges and gate alerts come out.
RENAMED = {'metrics': {
    'variant_label': 'deployment', 'requests_total': 'http_requests_total',
    'errors_total': 'http_requests_failed_total', 'latency_ms': 'http_request_duration_ms',
    'learners_total': 'jobs_done_total', 'cache_hits_total': 'lookup_cache_hits_total',
    'cache_misses_total': 'lookup_cache_misses_total', 'memory_bytes': 'app_rss_bytes',
    'cpu_seconds_total': 'app_cpu_seconds_total', 'db_pool_in_use': 'pg_pool_busy', 'db_pool_size': 'pg_pool_max',
    'db_query_latency_ms': 'pg_query_duration_ms', 'lb_responses_total': 'lb_responses_total',
    'lb_server_weight': 'lb_weight'}}

RENAMED_TEST = """
rule_files: [recording.yml, alerts.yml]
evaluation_interval: 15s
tests:
  - interval: 15s
    input_series:
      - series: 'http_requests_total{deployment="ultra_fast"}'
        values: '0+100x40'
      - series: 'http_requests_failed_total{deployment="ultra_fast"}'
        values: '0+5x40'
      - series: 'http_requests_total{deployment="original"}'
        values: '0+100x40'
      - series: 'http_requests_failed_total{deployment="original"}'
        values: '0+0x40'
      - series: 'lb_weight{deployment="original",server="original-1"}'
        values: '99x40'
      - series: 'lb_weight{deployment="ultra_fast",server="ultra_fast-1"}'
        values: '1x40'
    promql_expr_test:
      - expr: round(cohort_discovery_error_rate, 0.001)
        eval_time: 5m
        exp_samples:
          - labels: '{deployment="original"}'
            value: 0
          - labels: '{deployment="ultra_fast"}'
            value: 0.05
    alert_rule_test:
      - alertname: CanaryGateErrorRate
        eval_time: 5m
        exp_alerts:
          - exp_labels: {deployment: ultra_fast, severity: critical, phase: canary, gate: error_rate,
                         action: rollback, source: rollout_spec}
            exp_annotations:
              summary: 'canary gate error_rate failed: Error rate >= 1% (rollback)'
              description: 'Error rate of ultra_fast is 5%; the canary phase requires < 1%.'
"""


def renamed_spec():
    with open(SPEC_FILE) as f:
        return rollout.rollout_spec(yaml.safe_load(f)['rollout_spec_defaults'], RENAMED)


def test_renamed_metrics_need_only_a_spec_change(tmp_path):
    spec = renamed_spec()
    paths = render_rules(str(tmp_path), spec)
    text = open(paths['recording.yml']).read() + open(paths['alerts.yml']).read()
    for default_name in ('cohort_discovery_requests_total', 'cohort_discovery_errors_total', 'cohort_discovery_latency_ms',
                         'process_resident_memory_bytes', 'haproxy_server', 'variant'):
        assert default_name not in text, default_name
    assert rollout.gate_min_requests(spec, 'canary')['query'] == \
        'sum(increase(http_requests_total{deployment="ultra_fast"}[5m]))'
    assert {c['query'] for c in rollout.gate_checks(spec, 'canary')} >= {'cohort_discovery_error_rate{deployment="ultra_fast"}'}
    res = subprocess.run([PROMTOOL, 'check', 'rules'] + list(paths.values()), capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    test = yaml.safe_load(RENAMED_TEST)
    with open(os.path.join(str(tmp_path), 'renamed_test.yml'), 'w') as f:
        yaml.safe_dump(test, f, sort_keys=False)
    res = subprocess.run([PROMTOOL, 'test', 'rules', 'renamed_test.yml'], cwd=str(tmp_path), capture_output=True,
                         text=True, check=False)
    assert res.returncode == 0 and 'SUCCESS' in res.stdout + res.stderr, res.stdout + res.stderr
