"""Structural tests of the Grafana dashboard rendered from the rollout spec."""
import copy
import json
import os
import shutil
import subprocess

import pytest
import yaml

from ansible_collections.cohort.rollout.plugins.filter import rollout
from ansible_collections.cohort.rollout.plugins.module_utils import prometheus_rules

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
with open(os.path.join(ROOT, 'playbooks', 'group_vars', 'all', 'rollout_spec.yml')) as _f:
    DEFAULTS = yaml.safe_load(_f)['rollout_spec_defaults']
PROMTOOL = shutil.which('promtool') or '/usr/bin/promtool'
RUNBOOK_PANELS = ['Requests/sec', 'Error Rate', 'P99 Latency', 'Memory Usage', 'CPU', 'Cache Hit Rate',
                  'DB Latency', 'Throughput', 'Pool Utilization']


@pytest.fixture(scope='module')
def dashboard():
    spec = rollout.rollout_spec(copy.deepcopy(DEFAULTS))
    return rollout.grafana_dashboard(spec, uid='cohort-rollout', datasource_uid='ds-under-test')


def _rects_overlap(a, b):
    return not (a['x'] + a['w'] <= b['x'] or b['x'] + b['w'] <= a['x'] or
                a['y'] + a['h'] <= b['y'] or b['y'] + b['h'] <= a['y'])


def test_fixed_uid_and_the_same_dashboard_every_time(dashboard):
    # A fixed uid and a deterministic render: Grafana's push reports changed only when something changed.
    assert dashboard['uid'] == 'cohort-rollout'
    again = rollout.grafana_dashboard(rollout.rollout_spec(copy.deepcopy(DEFAULTS)), uid='cohort-rollout',
                                      datasource_uid='ds-under-test')
    assert json.dumps(again, sort_keys=True) == json.dumps(dashboard, sort_keys=True)


def _promtool_check(tmp_path, exprs):
    rules = {'groups': [{'name': 'dashboard', 'rules': [
        {'record': 'dashboard:panel_%d' % i, 'expr': expr} for i, expr in enumerate(exprs)]}]}
    path = tmp_path / 'dashboard_exprs.yml'
    path.write_text(yaml.safe_dump(rules, sort_keys=False, width=1000))
    return subprocess.run([PROMTOOL, 'check', 'rules', str(path)], capture_output=True, text=True, check=False)


def test_every_panel_query_is_valid_promql(dashboard, tmp_path):
    """promtool parses every target's expression (as a recording rule): a typo in a panel query fails here."""
    exprs = [t['expr'] for p in dashboard['panels'] for t in p['targets']]
    assert len(exprs) >= 18
    res = _promtool_check(tmp_path, exprs)
    assert res.returncode == 0, res.stdout + res.stderr
    assert _promtool_check(tmp_path, ['sum(rate(cohort_discovery_requests_total[1m])']).returncode != 0


def test_runbook_panels_in_runbook_order(dashboard):
    titles = [p['title'] for p in dashboard['panels']]
    assert titles[:9] == RUNBOOK_PANELS
    assert any('Traffic share' in t for t in titles[9:])


def test_unique_panel_ids(dashboard):
    ids = [p['id'] for p in dashboard['panels']]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids)


def test_no_overlapping_grid_positions(dashboard):
    panels = dashboard['panels']
    for p in panels:
        g = p['gridPos']
        assert g['w'] > 0 and g['h'] > 0 and g['x'] >= 0 and g['y'] >= 0 and g['x'] + g['w'] <= 24
    for i, a in enumerate(panels):
        for b in panels[i + 1:]:
            assert not _rects_overlap(a['gridPos'], b['gridPos']), (a['title'], b['title'])


def test_runbook_grid_is_three_by_three(dashboard):
    rows = {}
    for p in dashboard['panels'][:9]:
        rows.setdefault(p['gridPos']['y'], []).append(p['title'])
    assert list(rows.values()) == [RUNBOOK_PANELS[0:3], RUNBOOK_PANELS[3:6], RUNBOOK_PANELS[6:9]]


def test_every_datasource_reference_is_the_provisioned_one(dashboard):
    for p in dashboard['panels']:
        assert p['datasource'] == {'type': 'prometheus', 'uid': 'ds-under-test'}
        for t in p['targets']:
            assert t['datasource'] == p['datasource']


def test_original_and_candidate_side_by_side(dashboard):
    for p in dashboard['panels']:
        legends = [t['legendFormat'] for t in p['targets']]
        assert legends == ['original', 'ultra_fast'], p['title']
        assert len({t['refId'] for t in p['targets']}) == len(p['targets'])
        assert p['targets'][1]['expr'].endswith('{variant="ultra_fast"}')


def test_threshold_lines_from_the_spec(dashboard):
    by_title = {p['title']: p for p in dashboard['panels']}

    def steps(title):
        defaults = by_title[title]['fieldConfig']['defaults']
        return defaults['custom']['thresholdsStyle']['mode'], [s['value'] for s in defaults['thresholds']['steps']]

    # Error rate: canary 1%, ramp 0.5% (= HighErrorRate), rollout 0.1%.
    assert steps('Error Rate') == ('line', [None, 0.001, 0.005, 0.01])
    assert steps('P99 Latency') == ('line', [None, 200])
    assert steps('Memory Usage') == ('line', [None, 1 << 30, 1.5 * (1 << 30), 2 << 30])
    assert steps('Cache Hit Rate') == ('line', [None, 0.70, 0.85])
    assert steps('DB Latency') == ('line', [None, 50])
    assert steps('Requests/sec') == ('off', [None])
    # Higher is better: red below the lowest line, green above the highest.
    colors = [s['color'] for s in by_title['Cache Hit Rate']['fieldConfig']['defaults']['thresholds']['steps']]
    assert colors[0] == 'red' and colors[-1] == 'green'
    colors = [s['color'] for s in by_title['Error Rate']['fieldConfig']['defaults']['thresholds']['steps']]
    assert colors[0] == 'green' and colors[-1] == 'red'


def test_traffic_share_panel_reads_haproxy_weights(dashboard):
    panel = [p for p in dashboard['panels'] if p['title'] == 'Traffic share (weights)'][0]
    assert panel['targets'][1]['expr'] == 'cohort_lb_traffic_weight_share{variant="ultra_fast"}'
    recorded = dict(prometheus_rules.recording_rules(rollout.rollout_spec(copy.deepcopy(DEFAULTS))))
    assert 'haproxy_server_weight' in recorded['cohort_lb_traffic_weight_share']
