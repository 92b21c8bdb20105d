"""metric_gate's judge end to end: fake Prometheus transport (range queries), fake clock, real scipy."""
import json
import os

import numpy as np
from scipy import stats

from test_metric_gate_action import BAD_DATA, base, run  # pylint: disable=import-error

RNG = np.random.default_rng(7)
BASELINE = [float(v) for v in RNG.normal(5.0, 0.5, 200)]
SLOW = [v + 40 for v in BASELINE]  # the drill: +40 ms


def judge_args(**over):
    judge = dict(baseline='original', canary='ultra_fast', step='2s', interval='20s', min_points=5,
                 metrics=[dict(name='latency_p50_ms', query='lat{variant="$variant"}', effect=0.1, effect_abs=2,
                               critical=True, weight=20),
                          dict(name='cache_hit_rate', query='hit{variant="$variant"}', direction='decrease',
                               effect=0.05, weight=10)])
    judge.update(over)
    return judge


def matrix(values, start):
    """One series, a point every 2 s from ``start``."""
    return {'status': 'success', 'data': {'resultType': 'matrix', 'result': [
        {'metric': {}, 'values': [[start + 2 * i, str(v)] for i, v in enumerate(values)]}]}}


def ranged(values):
    def answer(form):
        start, end = float(form['start'][0]), float(form['end'][0])
        count = int((end - start) // 2) + 1
        return matrix(values[:count], start)
    return answer


def script(canary_latency, hit_canary=None, two_series=False):
    vector_one = [1.0]
    sc = {'err': [0.001],
          'lat{variant="original"}': [[1.0, 2.0]] if two_series else [vector_one],
          'lat{variant="ultra_fast"}': [vector_one],
          'hit{variant="original"}': [vector_one], 'hit{variant="ultra_fast"}': [vector_one],
          ('range', 'lat{variant="original"}'): ranged(BASELINE),
          ('range', 'lat{variant="ultra_fast"}'): ranged(canary_latency),
          ('range', 'hit{variant="original"}'): ranged([0.95] * 200),
          ('range', 'hit{variant="ultra_fast"}'): ranged(hit_canary or [0.95] * 200)}
    return sc


def test_identical_candidate_passes_and_the_report_holds_each_judgement(tmp_path):
    path = str(tmp_path / 'report.json')
    result, lines, _fake, _clock = run(base(report_path=path, judge=judge_args()), script(BASELINE))
    assert result['verdict'] == 'passed', result.get('msg')
    judge_lines = [line for line in lines if ' judge' in line and line.startswith('[canary judge')]
    assert len(judge_lines) == 3 and 'score 100 -> PASS' in judge_lines[-1]
    doc = json.loads(open(path).read())['canary']['judge']
    assert doc['verdict'] == 'pass' and doc['final'] is True and len(doc['judgements']) == 3
    lat = doc['metrics']['latency_p50_ms']
    assert lat['points'] == {'baseline': 31, 'canary': 31}  # 60 s at 2 s steps, both sides the same window
    assert lat['p_value'] == 1.0 or lat['p_value'] > 0.02
    for key in ('median', 'mean', 'effect', 'u', 'p_value', 'classification', 'allowed_effect'):
        assert key in lat


def test_slower_candidate_trips_the_bake_early_and_reverts():
    result, lines, _fake, _clock = run(base(judge=judge_args()), script(SLOW))
    assert result['verdict'] == 'failed'
    assert result['msg'].startswith('judge fail in phase canary: score 33.33')
    assert 'critical metric(s) failed: latency_p50_ms' in result['msg']
    first = result['judge']['judgements'][0]
    assert len(result['judge']['judgements']) == 1 and first['final'] is False
    lat = first['metrics']['latency_p50_ms']
    expected = stats.mannwhitneyu(SLOW[:11], BASELINE[:11], alternative='two-sided')
    assert lat['p_value'] == expected.pvalue and lat['u'] == expected.statistic == 121.0
    assert any(line.startswith('[canary judge 20s] score 33.33 -> FAIL') for line in lines)


def test_lower_cache_hit_rate_fails_only_that_metric():
    result, _lines, _fake, _clock = run(base(judge=judge_args()), script(BASELINE, hit_canary=[0.6] * 200))
    # 20 of 30 weight passed: 66.7 < marginal 75 -> fail, although nothing critical failed.
    assert result['verdict'] == 'failed' and result['judge']['metrics']['cache_hit_rate']['classification'] == 'low'


def test_a_query_selecting_two_series_is_refused_before_the_bake(tmp_path):
    path = str(tmp_path / 'report.json')
    result, _lines, fake, clock = run(base(report_path=path, judge=judge_args(), initial_delay='1h'),
                                      script(BASELINE, two_series=True))
    assert result['failed'] and 'judge metric latency_p50_ms (baseline) selects 2 series' in result['msg']
    assert clock.now == 1800000000.0 and not os.path.exists(path)
    assert not any('query_range' in url for url in fake.urls)


def test_invalid_promql_in_a_judge_metric_is_refused():
    sc = script(BASELINE)
    sc['lat{variant="original"}'] = [(400, {'status': 'error', 'errorType': 'bad_data', 'error': BAD_DATA})]
    result, _lines, _fake, _clock = run(base(judge=judge_args(), validate_only=True), sc)
    assert result['failed'] and BAD_DATA in result['msg'] and 'judge metric latency_p50_ms' in result['msg']


def test_validate_only_checks_and_returns_without_baking():
    result, _lines, fake, clock = run(base(judge=judge_args(), validate_only=True), script(BASELINE))
    assert not result['failed'] and 'are valid' in result['msg'] and clock.now == 1800000000.0
    assert not any('query_range' in url for url in fake.urls)


def test_bad_judge_arguments_fail_before_anything():
    import pytest
    from ansible.errors import AnsibleActionFail
    with pytest.raises(AnsibleActionFail) as err:
        run(base(judge=judge_args(confidence=2)), script(BASELINE))
    assert 'judge.confidence must be within (0, 1)' in str(err.value)


def test_rehearsal_judges_the_past_window():
    sc = script(SLOW)
    sc[('range', 'err')] = lambda form: matrix([0.001] * 31, float(form['start'][0]))
    result, lines, _fake, _clock = run(base(judge=judge_args()), sc, check_mode=True)
    assert not result['failed'] and result['rehearsal']['would'] == 'failed'
    assert result['rehearsal']['judge']['verdict'] == 'fail'
    assert any(line.startswith('[canary rehearsal judge final 60s]') for line in lines)


def test_report_summary_shows_each_judgement(tmp_path):
    import importlib.util
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
    spec = importlib.util.spec_from_file_location('report_summary', os.path.join(root, 'scripts', 'report_summary.py'))
    summary = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summary)
    path = str(tmp_path / 'report.json')
    run(base(report_path=path, judge=judge_args()), script(SLOW))
    lines = summary.summary(json.loads(open(path).read()))
    text = '\n'.join(lines)
    assert '    judge (ultra_fast vs original, pass >= 95, marginal >= 75): FAIL' in text
    assert len([ln for ln in lines if ' s: score ' in ln]) == 1
    assert [ln for ln in lines if ln.strip().startswith('latency_p50_ms   high  !')], text
