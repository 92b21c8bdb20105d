"""Gate logic (module_utils/gates.py) with a fake clock and scripted samplers: no real time, no HTTP."""

import json
import math

import pytest

from ansible_collections.cohort.rollout.plugins.module_utils import gates

NAN = float('nan')
INF = float('inf')


class FakeClock(object):
    def __init__(self, start=1800000000.0):
        self.now = start
        self.slept = []

    def wall(self):
        return self.now

    def mono(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def spec(**over):
    params = dict(
        prometheus_url='http://127.0.0.1:9', phase='canary', interval=10, duration=60, initial_delay=0,
        inconclusive_limit=0, timeout=5,
        checks=[dict(name='error_rate', query='err', op='lt', threshold=0.01)],
    )
    params.update(over)
    return gates.normalize_spec(params)


def scripted(per_check):
    """A sampler giving, per check name, the next scripted value each call ((value, note) or a float/None)."""
    calls = dict((name, 0) for name in per_check)

    def sampler(check):
        seq = per_check[check['name']]
        item = seq[min(calls[check['name']], len(seq) - 1)]
        calls[check['name']] += 1
        if isinstance(item, tuple):
            return item
        return item, ''
    sampler.calls = calls
    return sampler


def result_of(s, sampler, requests=None):
    """Only the task result of a bake."""
    return run(s, sampler, requests=requests)[0]


def gate_spec(**check):
    base = dict(name='error_rate', query='e', op='lt', threshold=0.01)
    base.update(check)
    return spec(checks=[base])


def run(s, sampler, clock=None, requests=None):
    lines = []
    records = []
    clock = clock or FakeClock()
    result = gates.Bake(s, sampler, emit=lines.append, clock=clock, requests_sampler=requests,
                        on_update=records.append).run()
    return result, lines, records, clock


# -- durations and argument errors -------------------------------------------------

@pytest.mark.parametrize('value,seconds', [
    (30, 30), (2.5, 2.5), ('30', 30), ('30s', 30), ('5m', 300), ('2h', 7200), ('7d', 604800),
    ('1h30m', 5400), ('250ms', 0.25), (' 1w ', 604800),
])
def test_parse_duration(value, seconds):
    assert gates.parse_duration(value, 'x') == seconds


@pytest.mark.parametrize('value', ['5 minutes', 'm5', '', 'abc', True, None, [1], 'nan', 'inf'])
def test_parse_duration_rejects(value):
    with pytest.raises(gates.GateSpecError):
        gates.parse_duration(value, 'interval')


@pytest.mark.parametrize('over,needle', [
    (dict(checks=[dict(name='x', query='q', op='eq', threshold=1)]), 'op must be one of'),
    (dict(interval=0), 'interval must be greater than zero'),
    (dict(interval=-5), 'interval must be greater than zero'),
    (dict(interval='-5s'), 'interval must be'),
    (dict(interval='2m', duration='1m'), 'interval (120s) must not be longer than duration (60s)'),
    (dict(checks=[]), 'checks must list at least one check'),
    (dict(checks=[dict(name='a', query='q', op='lt', threshold=1), dict(name='a', query='q', op='lt', threshold=1)]),
     'duplicate check name'),
    (dict(checks=[dict(name='a', op='lt', threshold=1)]), 'needs a query'),
    (dict(checks=[dict(name='a', source='json', url='ftp://x', path='a', op='lt', threshold=1)]), 'http(s) url'),
    (dict(checks=[dict(name='a', query='q', op='lt', threshold=NAN)]), 'finite number'),
    (dict(checks=[dict(name='a', query='q', op='lt', threshold=1, failure_limit=-1)]), 'failure_limit'),
    (dict(inconclusive_limit=-1), 'inconclusive_limit'),
    (dict(prometheus_url=None), 'prometheus_url is required'),
    (dict(initial_delay='soon'), 'initial_delay must be'),
    (dict(max_runtime=0), 'max_runtime must be greater than zero'),
    (dict(phase=' '), 'phase must not be empty'),
])
def test_argument_errors(over, needle):
    with pytest.raises(gates.GateSpecError) as err:
        spec(**over)
    assert needle in str(err.value)


def test_json_only_gate_needs_no_prometheus():
    s = spec(prometheus_url=None, checks=[dict(name='lb', source='json', url='http://127.0.0.1:1/metrics',
                                               path='latency.p99', op='lt', threshold=200)])
    assert s['checks'][0]['source'] == 'json'


@pytest.mark.parametrize('seconds,text', [(7560, '2h6m'), (90, '1m30s'), (2.5, '2.5s'), (0, '0s'), (300, '5m'),
                                          (172800, '2d')])
def test_format_duration(seconds, text):
    assert gates.format_duration(seconds) == text


def test_sample_count_and_default_max_runtime():
    s = spec(interval='5m', duration='2h', initial_delay='1m')
    assert s['sample_count'] == 25
    assert s['max_runtime'] == 60 + 7200 + 300


# -- classification -----------------------------------------------------------------

@pytest.mark.parametrize('value,op,thr,status', [
    (0.005, 'lt', 0.01, 'pass'), (0.01, 'lt', 0.01, 'fail'), (0.01, 'le', 0.01, 'pass'),
    (0.8, 'gt', 0.7, 'pass'), (0.7, 'gt', 0.7, 'fail'), (0.7, 'ge', 0.7, 'pass'),
    (None, 'lt', 1, 'inconclusive'), (NAN, 'lt', 1, 'inconclusive'), (INF, 'lt', 1, 'inconclusive'),
    (-INF, 'gt', 1, 'inconclusive'), (-INF, 'lt', 1, 'inconclusive'),
])
def test_classify(value, op, thr, status):
    assert gates.classify(value, op, thr)[0] == status


def test_json_path_value():
    doc = {'errorRate': 0.002, 'latency': {'p99': '183.5'}, 'pools': [{'rate': 3}], 'flag': True, 'nothing': None}
    assert gates.json_path_value(doc, 'errorRate') == (0.002, '')
    assert gates.json_path_value(doc, 'latency.p99') == (183.5, '')
    assert gates.json_path_value(doc, 'pools.0.rate') == (3.0, '')
    assert gates.json_path_value(doc, 'latency.p50') == (None, 'no data')
    assert gates.json_path_value(doc, 'pools.4.rate') == (None, 'no data')
    assert gates.json_path_value(doc, 'flag')[0] is None
    assert gates.json_path_value(doc, 'nothing') == (None, 'no data')


# -- the bake -----------------------------------------------------------------------

def test_pass_all_samples_prints_a_line_per_sample():
    result, lines, records, clock = run(spec(), scripted({'error_rate': [0.001, 0.002, 0.003]}))
    assert result['verdict'] == 'passed' and result['failed'] is False
    assert len(result['samples']) == 7
    sample_lines = [ln for ln in lines if ln.startswith('[canary ') and '/7]' in ln]
    assert len(sample_lines) == 7
    assert 'error_rate=0.001 <0.01 ok' in sample_lines[0]
    assert '1/7]' in sample_lines[0] and '7/7]' in sample_lines[-1]
    assert result['checks']['error_rate']['worst'] == 0.003
    assert clock.now == 1800000000.0 + 60  # samples at 0, 10, ..., 60
    assert records[0]['status'] == 'running' and records[-1]['status'] == 'passed'
    assert records[-1]['verdict'] == {'result': 'passed', 'reasons': []}


def test_no_data_is_never_a_pass():
    result, lines, unused_records, clock = run(spec(), scripted({'error_rate': [(None, 'no data')]}))
    assert result['verdict'] == 'inconclusive' and result['failed'] is True
    assert 'no data' in result['msg']
    assert len(result['samples']) == 1  # stops at once with inconclusive_limit 0
    assert 'error_rate=none <0.01 no data' in lines[1]


def test_no_data_within_limit_still_inconclusive_at_end():
    result = result_of(spec(inconclusive_limit=100), scripted({'error_rate': [(None, 'no data')]}))
    assert result['verdict'] == 'inconclusive'
    assert any('never returned data' in r for r in result['reasons'])
    assert len(result['samples']) == 7


@pytest.mark.parametrize('value,note', [(NAN, 'NaN'), (INF, '+Inf'), (-INF, '-Inf')])
def test_nan_and_inf_are_inconclusive(value, note):
    result, lines = run(spec(), scripted({'error_rate': [value]}))[:2]
    assert result['verdict'] == 'inconclusive'
    assert result['samples'][0]['values']['error_rate'] == {'value': None, 'status': 'inconclusive', 'note': note}
    json.dumps(result['samples'], allow_nan=False)  # strict JSON


def test_errors_and_ambiguity_are_inconclusive_with_their_note():
    for note in ('timeout: timed out after 5s', 'connection: refused', 'HTTP 503', 'ambiguous: 2 series'):
        result, lines = run(spec(), scripted({'error_rate': [(None, note)]}))[:2]
        assert result['verdict'] == 'inconclusive'
        assert note in result['msg'] and note in lines[1]


def test_inconclusive_limit_counts_per_check():
    seq = [0.001, (None, 'timeout'), 0.001, (None, 'no data'), 0.001, (None, 'no data'), 0.001]
    result = result_of(spec(inconclusive_limit=2), scripted({'error_rate': seq}))
    assert result['verdict'] == 'inconclusive'
    assert len(result['samples']) == 6  # the third inconclusive sample ends the bake
    assert '3 inconclusive sample(s) > inconclusive_limit 2' in result['msg']
    result = result_of(spec(inconclusive_limit=3), scripted({'error_rate': seq}))
    assert result['verdict'] == 'passed'


def test_early_trip_returns_at_once_and_names_gate_value_threshold_time():
    clock = FakeClock()
    result, lines, records, clock = run(spec(duration=3600), scripted({'error_rate': [0.001, 0.001, 0.05]}), clock)
    assert result['verdict'] == 'failed' and result['failed'] is True
    assert len(result['samples']) == 3
    assert clock.now == 1800000000.0 + 20  # did not wait out the hour
    msg = result['msg']
    assert 'error_rate' in msg and '0.05' in msg and '< 0.01' in msg
    assert result['samples'][2]['at'] in msg
    assert 'error_rate=0.05 >=0.01 FAIL' in lines[3]
    assert records[-1]['verdict']['result'] == 'failed'


def test_failure_limit_tolerates_that_many_failures():
    seq = [0.05, 0.001, 0.05, 0.001, 0.001, 0.001, 0.001]
    result = result_of(gate_spec(failure_limit=2), scripted({'error_rate': seq}))
    assert result['verdict'] == 'passed'
    assert result['checks']['error_rate']['failures'] == 2
    assert result['checks']['error_rate']['worst'] == 0.05
    result = result_of(gate_spec(failure_limit=1), scripted({'error_rate': seq}))
    assert result['verdict'] == 'failed' and len(result['samples']) == 3


def test_flapping_values_count_failures_not_consecutive_runs():
    flap = [0.05, 0.001] * 4
    result = result_of(gate_spec(failure_limit=3), scripted({'error_rate': flap}))
    assert result['verdict'] == 'failed'
    assert len(result['samples']) == 7  # 4th failure at the 7th sample
    assert result['checks']['error_rate']['failures'] == 4


def test_initial_delay_waits_before_first_sample():
    clock = FakeClock()
    taken = []

    def sampler(check):
        taken.append(clock.now)
        return 0.001, ''
    run(spec(initial_delay='30s'), sampler, clock)
    assert taken[0] == 1800000000.0 + 30
    assert taken[1] - taken[0] == 10


def test_schedule_does_not_drift_with_slow_queries():
    clock = FakeClock()
    taken = []

    def sampler(check):
        taken.append(clock.now)
        clock.now += 3  # a slow query
        return 0.001, ''
    run(spec(), sampler, clock)
    assert [t - taken[0] for t in taken] == [0, 10, 20, 30, 40, 50, 60]


def test_min_requests_not_met_is_inconclusive():
    s = spec(min_requests=dict(query='sum(req)', threshold=100))
    result, lines = run(s, scripted({'error_rate': [0.001]}), requests=lambda: (12.0, ''))[:2]
    assert result['verdict'] == 'inconclusive' and result['failed'] is True
    assert 'only 12 requests, fewer than 100' in result['msg']
    assert result['min_requests'] == {'value': 12.0, 'threshold': 100.0, 'status': 'fail'}
    result = result_of(s, scripted({'error_rate': [0.001]}), requests=lambda: (None, 'no data'))
    assert result['verdict'] == 'inconclusive'
    result = result_of(s, scripted({'error_rate': [0.001]}), requests=lambda: (250.0, ''))
    assert result['verdict'] == 'passed'


def test_max_runtime_caps_wall_time():
    clock = FakeClock()

    def slow(check):
        clock.now += 25  # every query takes 25 s
        return 0.001, ''
    outcome = run(spec(max_runtime=45), slow, clock)
    result, clock = outcome[0], outcome[3]
    assert result['verdict'] == 'inconclusive' and result['failed'] is True
    assert 'max_runtime 45s reached' in result['msg']
    assert clock.now - 1800000000.0 <= 45 + 25


def test_max_runtime_shorter_than_schedule():
    outcome = run(spec(max_runtime=25), scripted({'error_rate': [0.001]}))
    result, clock = outcome[0], outcome[3]
    assert result['verdict'] == 'inconclusive'
    assert 'after 3 of 7 samples' in result['msg']
    assert clock.now - 1800000000.0 <= 25


def test_several_checks_one_line_and_worst_value():
    s = spec(checks=[dict(name='error_rate', query='e', op='lt', threshold=0.01),
                     dict(name='cache_hit', query='c', op='gt', threshold=0.7),
                     dict(name='p99', query='p', op='lt', threshold=200)], inconclusive_limit=1)
    sampler = scripted({'error_rate': [0.001], 'cache_hit': [0.9, 0.75, 0.8], 'p99': [150.0, (None, 'no data'), 120.0]})
    result, lines = run(s, sampler)[:2]
    assert result['verdict'] == 'passed'
    assert result['checks']['cache_hit']['worst'] == 0.75
    assert result['checks']['p99']['worst'] == 150.0
    assert result['checks']['p99']['inconclusive'] == 1
    assert ' | ' in lines[2] and 'p99=none <200 no data' in lines[2]


def test_trip_wins_over_inconclusive_in_same_sample():
    s = spec(checks=[dict(name='a', query='a', op='lt', threshold=1), dict(name='b', query='b', op='lt', threshold=1)])
    result = result_of(s, scripted({'a': [(None, 'no data')], 'b': [5.0]}))
    assert result['verdict'] == 'failed'
    assert 'gate b tripped' in result['msg']


# -- rehearsal ------------------------------------------------------------------------

def test_rehearsal_timestamps_cover_the_window():
    stamps = gates.rehearsal_timestamps(1000.7, 60, 10)
    assert stamps == [940, 950, 960, 970, 980, 990, 1000]


def test_rehearse_check_counts():
    check = spec(checks=[dict(name='e', query='e', op='lt', threshold=0.01, failure_limit=1)])['checks'][0]
    points = [(100, 0.001, ''), (110, 0.02, ''), (120, None, 'no data'), (130, 0.03, ''), (140, NAN, '')]
    out = gates.rehearse_check(check, points)
    assert out['samples'] == 5 and out['passed'] == 1 and out['failed'] == 2 and out['no_data'] == 2
    assert out['would'] == 'failed'
    assert out['would_trip_at'] == '1970-01-01T00:02:10Z'
    assert out['no_data_reasons'] == {'no data': 1, 'NaN': 1}
    assert out['worst'] == 0.03
    assert gates.rehearse_check(check, [(100, None, 'no data')])['would'] == 'inconclusive'


def test_ensure_json_safe():
    assert gates.ensure_json_safe({'a': [NAN, 1.0, {'b': -INF}]}) == {'a': [None, 1.0, {'b': None}]}
    assert not math.isnan(gates.ensure_json_safe(2.0))


# -- sustain: consecutive failing samples covering the window (the alert's for:) ------------------


def sustain_spec(**over):
    check = dict(name='error_rate', query='err', op='lt', threshold=0.001, sustain='1h')
    params = dict(interval=300, duration=7 * 86400, checks=[check])
    params.update(over)
    return spec(**params)


def test_sustain_isolated_blips_over_a_week_never_trip():
    """13 separate 5-minute blips over the bake: the old count rule rolled back; a sustain window does not."""
    s = sustain_spec(duration=14 * 3600)
    blips = [0.01, 0.0001, 0.0001] * 13   # one failing sample, then two good ones, 13 times
    result = result_of(s, scripted({'error_rate': blips + [0.0001]}))
    assert result['verdict'] == 'passed', result['reasons']
    assert result['checks']['error_rate']['failures'] == 13
    assert result['checks']['error_rate']['longest_failing_run'] == 1


def test_sustain_trips_when_failing_samples_in_a_row_cover_the_window():
    s = sustain_spec(duration=4 * 3600)
    assert s['checks'][0]['sustain_samples'] == 12
    # 12 in a row (55 minutes from the first to the last) is not yet an hour: no trip; a pass resets.
    values = [0.01] * 12 + [0.0001] + [0.01] * 13 + [0.0001] * 40
    result = result_of(s, scripted({'error_rate': values}))
    assert result['verdict'] == 'failed'
    assert len(result['samples']) == 12 + 1 + 13   # tripped at the 13th failing sample in a row: 60 minutes
    assert '13 failing samples in a row cover the sustain window 1h' in result['reasons'][0]


def test_sustain_run_is_broken_by_an_inconclusive_sample_like_an_alert_for():
    s = sustain_spec(duration=4 * 3600, inconclusive_limit=5)
    values = [0.01] * 12 + [None] + [0.01] * 12 + [0.0001] * 30
    result = result_of(s, scripted({'error_rate': values}))
    assert result['verdict'] == 'passed', result['reasons']


def test_sustain_and_failure_limit_together_are_refused():
    with pytest.raises(gates.GateSpecError, match='either sustain'):
        spec(checks=[dict(name='e', query='q', op='lt', threshold=1, sustain='1h', failure_limit=3)])
    with pytest.raises(gates.GateSpecError, match='sustain'):
        spec(checks=[dict(name='e', query='q', op='lt', threshold=1, sustain='soon')])


def test_rehearsal_uses_the_same_sustain_rule():
    check = sustain_spec()['checks'][0]
    points = [(1800000000 + 300 * i, 0.01 if i % 2 else 0.0001, '') for i in range(40)]
    assert gates.rehearse_check(check, points)['would'] == 'passed'
    points = [(1800000000 + 300 * i, 0.01, '') for i in range(13)]
    assert gates.rehearse_check(check, points)['would'] == 'failed'
