"""Unit tests of the rollout spec filters: merge, validation with paths, gate checks, rules, dashboard."""
import copy
import os

import pytest
import yaml

from ansible_collections.cohort.rollout.plugins.filter import rollout
from ansible_collections.cohort.rollout.plugins.filter.rollout import SpecError
from ansible_collections.cohort.rollout.plugins.module_utils import gates
from ansible_collections.cohort.rollout.plugins.module_utils import dashboard, prometheus_rules
from ansible_collections.cohort.rollout.plugins.module_utils.durations import parse_duration, prometheus_duration

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _load(*parts):
    with open(os.path.join(ROOT, *parts)) as f:
        return yaml.safe_load(f)


DEFAULTS = _load('playbooks', 'group_vars', 'all', 'rollout_spec.yml')['rollout_spec_defaults']
SANDBOX = _load('inventories', 'local', 'group_vars', 'all', 'rollout.yml')['rollout_spec_overrides']


def spec(overrides=None):
    return rollout.rollout_spec(copy.deepcopy(DEFAULTS), overrides)


def error_of(overrides):
    with pytest.raises(SpecError) as exc:
        spec(overrides)
    return str(exc.value)


# --- the defaults are the runbook's numbers ------------------------------------------------

def test_defaults_are_the_runbook():
    s = spec()
    assert s['phase_order'] == ['canary', 'ramp', 'rollout']
    assert [s['phases'][p]['weight'] for p in s['phase_order']] == [0.01, 0.10, 1.0]
    assert [s['phases'][p]['bake_seconds'] for p in s['phase_order']] == [7200, 14400, 7 * 86400]
    canary = {c['name']: c['threshold'] for c in rollout.gate_checks(s, 'canary')}
    assert canary == {'error_rate': 0.01, 'latency_p99_ms': 200, 'memory_bytes': 1 << 30, 'user_error_rate': 0}
    ramp = {c['name']: c['threshold'] for c in rollout.gate_checks(s, 'ramp')}
    assert ramp == {'error_rate': 0.005, 'latency_p99_ms': 200, 'memory_bytes': 1.5 * (1 << 30),
                    'db_query_p99_ms': 50, 'cache_hit_rate': 0.70}
    alerts = {n: (a['threshold'], a['severity']) for n, a in s['alerts'].items()}
    assert alerts == {'HighErrorRate': (0.005, 'warning'), 'HighLatency': (200, 'critical'),
                      'MemorySpiking': (2 << 30, 'warning')}


# --- merge -----------------------------------------------------------------------------------

def test_sandbox_override_changes_durations_only():
    base, sandbox = spec(), spec(SANDBOX)
    assert sandbox['rate_window'] == '30s'
    assert sandbox['phases']['canary']['bake_seconds'] == 20
    assert sandbox['phases']['ramp']['interval_seconds'] == 5

    def thresholds(s):
        return {(p, g): c['threshold'] for p in s['phase_order']
                for g, c in s['phases'][p]['gates'].items()}, {p: s['phases'][p]['weight'] for p in s['phase_order']}
    assert thresholds(base) == thresholds(sandbox)
    assert {n: a['threshold'] for n, a in base['alerts'].items()} == {n: a['threshold'] for n, a in sandbox['alerts'].items()}


def test_deep_merge_keeps_siblings_and_null_removes():
    s = spec({'phases': {'ramp': {'gates': {'cache_hit_rate': None, 'error_rate': {'threshold': 0.004}}}}})
    gates = s['phases']['ramp']['gates']
    assert 'cache_hit_rate' not in gates
    assert gates['error_rate']['threshold'] == 0.004
    assert gates['latency_p99_ms']['threshold'] == 200
    assert s['phases']['ramp']['weight'] == 0.10


def test_merge_does_not_modify_its_inputs():
    defaults, overrides = copy.deepcopy(DEFAULTS), {'phases': {'canary': {'bake': '1m'}}}
    rollout.rollout_spec(defaults, overrides)
    assert defaults == DEFAULTS and overrides == {'phases': {'canary': {'bake': '1m'}}}


def test_no_overrides_variants():
    assert spec(None) == spec({}) == spec('')


# --- validation names the path -----------------------------------------------------------------

def test_threshold_wrong_type_names_the_path():
    msg = error_of({'phases': {'ramp': {'gates': {'error_rate': {'threshold': 'abc'}}}}})
    assert "rollout_spec.phases.ramp.gates.error_rate.threshold: expected a number, got 'abc'" in msg


@pytest.mark.parametrize('value', [True, None, [1], float('nan'), float('inf')])
def test_threshold_not_a_finite_number(value):
    overrides = {'phases': {'ramp': {'gates': {'error_rate': {'threshold': value}}}}}
    if value is None:  # null removes the key: the threshold is then missing
        assert 'rollout_spec.phases.ramp.gates.error_rate.threshold: is required' in error_of(overrides)
    else:
        assert 'rollout_spec.phases.ramp.gates.error_rate.threshold: expected a number' in error_of(overrides)


def test_unknown_gate_name():
    msg = error_of({'phases': {'canary': {'gates': {'eror_rate': {'threshold': 0.01}}}}})
    assert "rollout_spec.phases.canary.gates.eror_rate: unknown gate 'eror_rate'" in msg
    assert 'error_rate' in msg  # the catalog is listed


def test_phase_without_gates():
    assert 'rollout_spec.phases.canary.gates: a phase needs at least one gate' in error_of(
        {'phases': {'canary': {'gates': {'error_rate': None, 'latency_p99_ms': None,
                                         'memory_bytes': None, 'user_error_rate': None}}}})
    assert 'rollout_spec.phases.hotfix.gates: is required' in error_of(
        {'phases': {'hotfix': {'order': 9, 'weight': 0.5, 'bake': '1h', 'interval': '5m'}}})


@pytest.mark.parametrize('weight', [-0.1, 1.5, '0.5'])
def test_weight_outside_unit_interval(weight):
    assert 'rollout_spec.phases.ramp.weight: expected a number' in error_of({'phases': {'ramp': {'weight': weight}}})


@pytest.mark.parametrize('path,value', [
    (('phases', 'canary', 'bake'), '2 hours'),
    (('phases', 'canary', 'bake'), '0s'),
    (('phases', 'ramp', 'interval'), -5),
    (('phases', 'ramp', 'initial_delay'), 'soon'),
    (('rate_window',), '1 minute'),
    (('alerts', 'HighLatency', 'for'), '5 min'),
    (('phases', 'rollout', 'gates', 'error_rate', 'sustain'), 'an hour'),
])
def test_bad_durations(path, value):
    overrides = value
    for key in reversed(path):
        overrides = {key: overrides}
    assert 'rollout_spec.%s: expected a' % '.'.join(path) in error_of(overrides)


def test_unknown_keys_are_typos():
    msg = error_of({'phases': {'ramp': {'gates': {'error_rate': {'treshold': 0.1}}}}})
    assert 'rollout_spec.phases.ramp.gates.error_rate.treshold: unknown key' in msg


def test_bad_op_unit_action_severity_and_alert_gate():
    msg = error_of({
        'gates': {'error_rate': {'op': 'below', 'unit': 'furlongs'}},
        'phases': {'rollout': {'gates': {'error_rate': {'action': 'panic'}}}},
        'alerts': {'HighLatency': {'severity': 'page'}, 'Nope': {'gate': 'nope', 'op': 'gt', 'threshold': 1,
                                                                 'severity': 'warning'}},
    })
    for needle in ("rollout_spec.gates.error_rate.op: expected one of lt, le, gt, ge, got 'below'",
                   'rollout_spec.gates.error_rate.unit: expected one of',
                   "rollout_spec.phases.rollout.gates.error_rate.action: expected one of rollback, investigate",
                   "rollout_spec.alerts.HighLatency.severity: expected one of",
                   "rollout_spec.alerts.Nope.gate: unknown gate 'nope'"):
        assert needle in msg


def test_duplicate_order_and_same_variants():
    msg = error_of({'phases': {'ramp': {'order': 1}}, 'candidate': 'original'})
    assert 'rollout_spec.phases.ramp.order: order 1 is also used by phase canary' in msg
    assert 'rollout_spec.candidate: must differ from baseline' in msg


def test_every_error_is_reported_at_once():
    msg = error_of({'phases': {'ramp': {'weight': 2, 'gates': {'error_rate': {'threshold': 'x'}}}}})
    assert 'phases.ramp.weight' in msg and 'phases.ramp.gates.error_rate.threshold' in msg


def test_overrides_must_be_a_mapping():
    with pytest.raises(SpecError, match='rollout_spec_overrides: expected a mapping'):
        rollout.rollout_spec(copy.deepcopy(DEFAULTS), ['phases'])


# --- gate_checks --------------------------------------------------------------------------------

def test_gate_checks_shape_and_queries():
    checks = rollout.gate_checks(spec(), 'canary')
    assert [c['name'] for c in checks] == ['error_rate', 'latency_p99_ms', 'memory_bytes', 'user_error_rate']
    for c in checks:
        assert set(c) == {'name', 'query', 'op', 'threshold', 'failure_limit'}
        assert c['query'].endswith('{variant="ultra_fast"}')
    by_name = {c['name']: c for c in checks}
    assert by_name['error_rate']['query'] == 'cohort_discovery_error_rate{variant="ultra_fast"}'
    assert by_name['user_error_rate']['query'] == 'cohort_lb_user_error_rate{variant="ultra_fast"}'
    assert by_name['user_error_rate']['op'] == 'le'


def test_sustain_is_a_window_of_consecutive_samples_not_a_count():
    """docs/rollout-spec.md: "rollback only if sustained > 1 h" is the alert's for:, consecutive samples."""
    runbook = {c['name']: c for c in rollout.gate_checks(spec(), 'rollout')}
    assert runbook['error_rate']['sustain'] == 3600 and runbook['error_rate']['failure_limit'] == 0
    assert 'sustain' not in runbook['cache_hit_rate'] and runbook['cache_hit_rate']['failure_limit'] == 0
    sandbox = {c['name']: c for c in rollout.gate_checks(spec(SANDBOX), 'rollout')}
    assert sandbox['error_rate']['sustain'] == 15
    # The alert's for: is the same window.
    alert = [r for r in prometheus_rules.alert_rules(spec()) if r['alert'] == 'RolloutGateErrorRate'][0]
    assert alert['for'] == '1h'


def test_gate_checks_details_and_unknown_phase():
    detailed = rollout.gate_checks(spec(), 'rollout', details=True)
    err = [c for c in detailed if c['name'] == 'error_rate'][0]
    assert err['action'] == 'investigate' and err['sustain'] == '1h' and err['unit'] == 'ratio'
    with pytest.raises(SpecError, match="unknown phase 'bogus'"):
        rollout.gate_checks(spec(), 'bogus')


def test_gate_checks_validates_a_raw_spec():
    raw = copy.deepcopy(DEFAULTS)
    raw['phases']['canary']['gates']['error_rate']['threshold'] = 'abc'
    with pytest.raises(SpecError, match=r'phases\.canary\.gates\.error_rate\.threshold'):
        rollout.gate_checks(raw, 'canary')


def test_gate_checks_are_accepted_by_metric_gate():
    """The checks and min_requests pass cohort.rollout.metric_gate's own argument validation."""
    gates = pytest.importorskip('ansible_collections.cohort.rollout.plugins.module_utils.gates')
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    s = spec(SANDBOX)
    for phase in s['phase_order']:
        p = s['phases'][phase]
        params = {'checks': rollout.gate_checks(s, phase), 'interval': p['interval'], 'duration': p['bake'],
                  'initial_delay': p['initial_delay'], 'phase': phase, 'prometheus_url': 'http://127.0.0.1:9',
                  'min_requests': rollout.gate_min_requests(s, phase)}
        result = ArgumentSpecValidator(gates.ARGUMENT_SPEC).validate(params)
        assert not result.error_messages, result.error_messages
        normalized = gates.normalize_spec(result.validated_parameters)
        assert [c['name'] for c in normalized['checks']] == [c['name'] for c in params['checks']]


def test_min_requests():
    mr = rollout.gate_min_requests(spec(), 'canary')
    assert mr == {'query': 'sum(increase(cohort_discovery_requests_total{variant="ultra_fast"}[5m]))', 'threshold': 20}
    sandbox = rollout.gate_min_requests(spec({'phases': {'canary': {'interval': '5s'}}}), 'canary')
    assert sandbox['query'].endswith('[5s]))')
    assert rollout.gate_min_requests(spec({'phases': {'ramp': {'min_requests': 0}}}), 'ramp') is None


# --- durations ----------------------------------------------------------------------------------

@pytest.mark.parametrize('text,seconds', [('30s', 30), ('5m', 300), ('1h30m', 5400), ('7d', 604800),
                                          ('250ms', 0.25), (45, 45), (1.5, 1.5)])
def test_duration_seconds(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize('seconds,text', [(0, '0s'), (30, '30s'), (5400, '1h30m'), (604800, '7d'), (0.25, '250ms')])
def test_prometheus_duration(seconds, text):
    assert prometheus_duration(seconds) == text


# --- rules and dashboard come from the same numbers -------------------------------------------------

def _alert(s, name):
    return [r for r in prometheus_rules.alert_rules(s) if r['alert'] == name][0]


def _panel(s, title):
    return [p for p in rollout.grafana_dashboard(s)['panels'] if p['title'] == title][0]


def test_one_threshold_changes_gate_alert_and_dashboard_together():
    before, after = spec(), spec({'phases': {'canary': {'gates': {'error_rate': {'threshold': 0.02}}}}})
    gate = {c['name']: c['threshold'] for c in rollout.gate_checks(after, 'canary')}
    assert gate['error_rate'] == 0.02
    assert _alert(before, 'CanaryGateErrorRate')['expr'].startswith('(cohort_discovery_error_rate{variant="ultra_fast"}) >= 0.01 ')
    assert _alert(after, 'CanaryGateErrorRate')['expr'].startswith('(cohort_discovery_error_rate{variant="ultra_fast"}) >= 0.02 ')

    def steps(s):
        return [st['value'] for st in _panel(s, 'Error Rate')['fieldConfig']['defaults']['thresholds']['steps']]
    assert 0.01 in steps(before) and 0.01 not in steps(after) and 0.02 in steps(after)
    # Nothing else moved.
    assert rollout.gate_checks(before, 'ramp') == rollout.gate_checks(after, 'ramp')
    assert _alert(before, 'HighErrorRate') == _alert(after, 'HighErrorRate')


def test_runbook_alert_thresholds_follow_the_spec():
    s = spec({'alerts': {'HighLatency': {'threshold': 180}}})
    assert _alert(s, 'HighLatency')['expr'] == 'cohort_discovery_latency_p99 > 180'
    assert _alert(s, 'HighLatency')['labels']['severity'] == 'critical'
    assert 180 in [st['value'] for st in _panel(s, 'P99 Latency')['fieldConfig']['defaults']['thresholds']['steps']]


def test_one_alert_per_phase_gate():
    s = spec()
    names = [r['alert'] for r in prometheus_rules.alert_rules(s)]
    assert names[:3] == ['HighErrorRate', 'HighLatency', 'MemorySpiking']
    expected = sum(len(s['phases'][p]['gates']) for p in s['phase_order'])
    assert len(names) == 3 + expected and len(set(names)) == len(names)
    rollout_err = _alert(s, 'RolloutGateErrorRate')
    assert rollout_err['for'] == '1h' and rollout_err['labels']['severity'] == 'warning'
    assert rollout_err['labels']['action'] == 'investigate'


def test_phase_bands_split_at_midpoints():
    s = spec()
    assert prometheus_rules.phase_active_expr(s, 'canary').endswith('> 0) <= 0.055')
    assert prometheus_rules.phase_active_expr(s, 'ramp').endswith('> 0.055) <= 0.55')
    assert prometheus_rules.phase_active_expr(s, 'rollout') == 'cohort_lb_traffic_weight_share{variant="ultra_fast"} > 0.55'


def test_recording_rules_use_the_rate_window():
    rules = rollout.prometheus_recording_rules(spec(SANDBOX))['groups'][0]['rules']
    names = [r['record'] for r in rules]
    for needed in ('cohort_discovery_latency_p99', 'cohort_discovery_latency_p999', 'cohort_discovery_requests_per_second',
                   'cohort_discovery_error_rate', 'cache_hit_rate', 'process_memory_usage_bytes', 'process_cpu_percent',
                   'db_connection_pool_utilization', 'db_query_latency_p99', 'cohort_discovery_learners_per_second'):
        assert needed in names
    assert all('[1m]' not in r['expr'] for r in rules)
    assert any('[30s]' in r['expr'] for r in rules)


def test_every_gate_metric_is_recorded():
    s = spec()
    recorded = {r for r, _expr in prometheus_rules.recording_rules(s)}
    assert {g['metric'] for g in s['gates'].values()} <= recorded
    panel_metrics = {m for _title, m, _unit, _description in dashboard.DASHBOARD_PANELS + dashboard.LB_PANELS}
    assert panel_metrics <= recorded


def test_plain_copies_templated_data_into_native_types():
    from ansible_collections.cohort.rollout.plugins.module_utils import rollout_spec as mod

    class TaggedStr(str):
        pass

    class LazyDict(dict):
        pass

    data = LazyDict(a=[TaggedStr('x'), (1, 2.5, True)], b=LazyDict(c=None))
    out = mod.plain(data)
    assert out == {'a': ['x', [1, 2.5, True]], 'b': {'c': None}}
    assert out.__class__ is dict and out['b'].__class__ is dict and out['a'][0].__class__ is str
    assert out['a'][1][2] is True and out['a'][1][0].__class__ is int
    out['a'].append('y')
    assert len(data['a']) == 2  # a copy, not a view


# --- the judge of a phase ----------------------------------------------------------------------

def test_default_judges_cover_the_runbook_metrics():
    for phase in ('canary', 'ramp'):
        cfg = rollout.judge_config(spec(), phase)
        names = {m['name'] for m in cfg['metrics']}
        assert names == {'latency_p99_ms', 'latency_p50_ms', 'error_rate', 'memory_bytes', 'cpu_percent',
                         'db_query_p99_ms', 'cache_hit_rate'}
        assert (cfg['baseline'], cfg['canary'], cfg['step']) == ('original', 'ultra_fast', '1m')
        by_name = {m['name']: m for m in cfg['metrics']}
        assert by_name['latency_p99_ms']['query'] == 'cohort_discovery_latency_p99{variant="$variant"}'
        assert by_name['cache_hit_rate']['direction'] == 'decrease'
        assert by_name['error_rate']['statistic'] == 'mean' and by_name['error_rate']['critical'] is True
        assert sum(m['weight'] for m in cfg['metrics']) == 100
    assert rollout.judge_config(spec(), 'rollout') is None


def test_judge_config_is_accepted_by_metric_gate():
    s = spec(SANDBOX)
    p = s['phases']['canary']
    params = {'checks': rollout.gate_checks(s, 'canary'), 'interval': p['interval'], 'duration': p['bake'],
              'initial_delay': p['initial_delay'], 'phase': 'canary', 'prometheus_url': 'http://127.0.0.1:9090',
              'judge': rollout.judge_config(s, 'canary')}
    norm = gates.normalize_spec(params)
    assert norm['judge']['interval'] == 10 and norm['judge']['step'] == 2 and norm['judge']['min_points'] == 5


def test_judge_follows_the_variant_label():
    s = spec({'metrics': {'variant_label': 'deployment'}})
    queries = {m['query'] for m in rollout.judge_config(s, 'canary')['metrics']}
    assert 'cohort_discovery_error_rate{deployment="$variant"}' in queries


@pytest.mark.parametrize('overrides,needle', [
    ({'judge_metrics': {'latency_p99_ms': {'direction': 'up'}}},
     "rollout_spec.phases.canary.judge.metrics.latency_p99_ms.direction must be one of increase, decrease, either"),
    ({'phases': {'canary': {'judge': {'metrics': {'error_rate': {'effect': -0.1}}}}}},
     'rollout_spec.phases.canary.judge.metrics.error_rate.effect must be a number >= 0'),
    ({'phases': {'ramp': {'judge': {'confidence': 1}}}}, 'rollout_spec.phases.ramp.judge.confidence must be within (0, 1)'),
    ({'phases': {'canary': {'judge': {'metrics': {'nope': {'weight': 1}}}}}},
     "rollout_spec.phases.canary.judge.metrics.nope: unknown judge metric 'nope'"),
    ({'phases': {'canary': {'judge': {'metrics': {m: {'weight': 0} for m in (
        'latency_p99_ms', 'latency_p50_ms', 'error_rate', 'memory_bytes', 'cpu_percent', 'db_query_p99_ms',
        'cache_hit_rate')}}}}}, 'rollout_spec.phases.canary.judge.metrics: the weights sum to 0'),
    ({'phases': {'canary': {'judge': {'stepp': '1m'}}}}, 'rollout_spec.phases.canary.judge.stepp: unknown key'),
    ({'judge_metrics': {'x': {'query': 'up'}}, 'phases': {'canary': {'judge': {'metrics': {'x': {}}}}}},
     'must contain $variant'),
])
def test_bad_judge_is_a_clear_error_naming_the_path(overrides, needle):
    assert needle in error_of(overrides)


def test_guard_alerts_are_the_rendered_rollback_alerts_of_the_phase():
    s = spec()
    names = set(r['alert'] for r in prometheus_rules.alert_rules(s))
    canary = rollout.guard_alerts(s, 'canary')
    assert canary == ['CanaryGateErrorRate', 'CanaryGateLatencyP99Ms', 'CanaryGateMemoryBytes', 'CanaryGateUserErrorRate']
    assert set(canary) <= names
    # The rollout's error rate is "investigate": not a trigger of the guard.
    assert 'RolloutGateErrorRate' not in rollout.guard_alerts(s, 'rollout')
    with pytest.raises(SpecError, match='unknown phase'):
        rollout.guard_alerts(s, 'bogus')


@pytest.mark.parametrize('name', ['gate_checks', 'gate_min_requests', 'judge_config'])
def test_every_per_phase_view_refuses_an_unknown_phase_the_same_way(name):
    from ansible_collections.cohort.rollout.plugins.module_utils import rollout_spec as spec_utils
    with pytest.raises(spec_utils.SpecError) as err:
        getattr(spec_utils, name)(spec(), 'bogus')
    assert str(err.value) == "rollout_spec.phases: unknown phase 'bogus' (phases: canary, ramp, rollout)"
