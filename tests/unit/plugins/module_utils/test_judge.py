"""The judge's statistics (module_utils/judge.py) against scipy's own results on known distributions."""
import math

import numpy as np
import pytest
from scipy import stats

from ansible_collections.cohort.rollout.plugins.module_utils import judge

RNG = np.random.default_rng(20261201)
BASE = list(RNG.normal(10.0, 1.0, 60))


def config(**over):
    metrics = over.pop('metrics') if 'metrics' in over else [
        dict(name='latency', query='lat{variant="$variant"}', direction='increase', effect=0.1, effect_abs=0, weight=2,
             critical=True),
        dict(name='cache', query='hit{variant="$variant"}', direction='decrease', effect=0.05, weight=1),
        dict(name='db', query='db{variant="$variant"}', weight=1),
    ]
    raw = dict(baseline='original', canary='ultra_fast', step='2s', metrics=metrics)
    raw.update(over)
    return judge.normalize_judge(raw)


def test_identical_samples_pass_with_scipys_p_value():
    res = judge.compare(BASE, list(BASE))
    expected = stats.mannwhitneyu(BASE, BASE, alternative='two-sided')
    assert res['classification'] == 'pass' and not res['failed']
    assert res['p_value'] == pytest.approx(expected.pvalue) and res['u'] == pytest.approx(expected.statistic)
    assert res['points'] == {'baseline': 60, 'canary': 60} and res['effect'] == 0


def test_same_distribution_different_draws_pass():
    canary = list(RNG.normal(10.0, 1.0, 60))
    res = judge.compare(BASE, canary)
    expected = stats.mannwhitneyu(canary, BASE, alternative='two-sided')
    assert res['p_value'] == pytest.approx(expected.pvalue)
    assert res['u'] == pytest.approx(expected.statistic)
    assert res['classification'] == 'pass'


def test_shift_up_beyond_the_effect_is_high():
    canary = [v + 4.0 for v in BASE]  # +40% of the median
    res = judge.compare(BASE, canary, effect=0.1)
    expected = stats.mannwhitneyu(canary, BASE, alternative='two-sided')
    assert res['p_value'] == pytest.approx(expected.pvalue) and res['p_value'] < 0.02
    assert res['classification'] == 'high' and res['failed']
    assert res['effect'] == pytest.approx(np.median(canary) - np.median(BASE))
    assert res['effect_relative'] == pytest.approx(res['effect'] / np.median(BASE))
    assert res['median'] == {'baseline': pytest.approx(np.median(BASE)), 'canary': pytest.approx(np.median(canary))}


def test_significant_but_within_the_allowed_effect_passes():
    canary = [v + 0.6 for v in BASE]  # +6%: significant at n=60, within 10%
    res = judge.compare(BASE, canary, effect=0.1)
    assert res['p_value'] < 0.02 and res['classification'] == 'pass'
    # The absolute allowance wins when larger: 2 ms allowed on a +4 ms shift is still high.
    assert judge.compare(BASE, [v + 4 for v in BASE], effect=0, effect_abs=2)['classification'] == 'high'
    assert judge.compare(BASE, [v + 4 for v in BASE], effect=0, effect_abs=5)['classification'] == 'pass'


def test_direction_decides_what_fails():
    lower = [v - 4.0 for v in BASE]
    assert judge.compare(BASE, lower, direction='increase')['classification'] == 'low'
    assert not judge.compare(BASE, lower, direction='increase')['failed']
    assert judge.compare(BASE, lower, direction='decrease')['failed']
    assert judge.compare(BASE, lower, direction='either')['failed']
    assert not judge.compare(BASE, [v + 4 for v in BASE], direction='decrease')['failed']


def test_noisy_small_shift_is_not_significant():
    noisy_base = list(RNG.normal(10, 5, 15))
    noisy_canary = list(RNG.normal(11, 5, 15))
    res = judge.compare(noisy_base, noisy_canary)
    expected = stats.mannwhitneyu(noisy_canary, noisy_base, alternative='two-sided')
    assert res['p_value'] == pytest.approx(expected.pvalue)
    assert (res['classification'] == 'pass') == (expected.pvalue >= 0.02 or abs(res['effect']) <= 0.1 * abs(np.median(noisy_base)))


def test_too_few_points_is_nodata_never_pass():
    res = judge.compare(BASE[:4], BASE[:30], min_points=5)
    assert res['classification'] == 'nodata' and not res['failed'] and res['p_value'] is None
    assert 'baseline 4, canary 30' in res['note']


def test_nan_inf_and_missing_points_are_dropped_then_counted():
    canary = BASE[:3] + [math.nan, math.inf, None, -math.inf]
    res = judge.compare(BASE, canary, min_points=5)
    assert res['classification'] == 'nodata' and res['dropped'] == {'baseline': 0, 'canary': 4}
    all_nan = judge.compare([math.nan] * 20, [math.nan] * 20)
    assert all_nan['classification'] == 'nodata'


def test_all_equal_points_pass_even_when_scipy_says_nan():
    res = judge.compare([0.0] * 20, [0.0] * 20)
    assert res['classification'] == 'pass' and res['p_value'] == 1.0


def test_sparse_errors_need_the_mean():
    base = [0.0] * 30
    canary = [0.0] * 20 + [0.02] * 10  # a third of the windows saw an error
    assert judge.compare(base, canary, effect_abs=0.001, statistic='median')['classification'] == 'pass'
    res = judge.compare(base, canary, effect_abs=0.001, statistic='mean')
    assert res['classification'] == 'high' and res['p_value'] == pytest.approx(
        stats.mannwhitneyu(canary, base, alternative='two-sided').pvalue)


def test_score_and_verdicts():
    cfg = config()
    same = {m['name']: (BASE, BASE) for m in cfg['metrics']}
    assert judge.judge(same, cfg)['verdict'] == 'pass' and judge.judge(same, cfg)['score'] == 100
    # Critical failure: fail whatever the score.
    worse = dict(same, latency=(BASE, [v + 5 for v in BASE]))
    out = judge.judge(worse, cfg)
    assert out['verdict'] == 'fail' and out['score'] == 50 and 'critical metric(s) failed: latency' in out['reasons'][0]
    # A non-critical failure: 3 of 4 weights -> 75 = marginal (inconclusive).
    cache_low = dict(same, cache=(BASE, [v - 5 for v in BASE]))
    out = judge.judge(cache_low, cfg)
    assert (out['score'], out['verdict']) == (75, 'marginal')
    assert judge.phase_outcome(out['verdict']) == 'inconclusive'
    # No data on a non-critical metric: not a pass, even though nothing failed.
    db_none = dict(same, db=([], []))
    out = judge.judge(db_none, cfg)
    assert (out['score'], out['verdict']) == (75, 'nodata')
    # No data on a critical metric.
    assert judge.judge(dict(same, latency=([], [])), cfg)['verdict'] == 'nodata'
    # Hopeless even if the nodata metric passed: fail.
    two_bad = dict(same, cache=(BASE, [v - 5 for v in BASE]), db=(BASE, [v + 5 for v in BASE]))
    assert judge.judge(two_bad, config(metrics=[dict(m, critical=False) for m in cfg['metrics']]))['verdict'] == 'fail'


def test_score_with_weights_pass_threshold():
    cfg = config(pass_score=70, marginal_score=50)
    out = judge.judge({'latency': (BASE, BASE), 'cache': (BASE, BASE), 'db': (BASE, [v + 5 for v in BASE])}, cfg)
    assert (out['score'], out['verdict']) == (75, 'pass')


@pytest.mark.parametrize('over,needle', [
    (dict(metrics=[dict(name='a', query='x{v="$variant"}', direction='sideways')]), 'direction must be one of'),
    (dict(metrics=[dict(name='a', query='x{v="$variant"}', effect=-0.1)]), 'effect must be a number >= 0'),
    (dict(metrics=[dict(name='a', query='x{v="$variant"}', effect_abs=-1)]), 'effect_abs must be a number >= 0'),
    (dict(confidence=1.0), 'confidence must be within (0, 1)'),
    (dict(confidence=0), 'confidence must be within (0, 1)'),
    (dict(metrics=[dict(name='a', query='x{v="$variant"}', weight=0), dict(name='b', query='y{v="$variant"}', weight=0)]),
     'weights sum to 0'),
    (dict(metrics=[dict(name='a', query='x')]), 'must contain $variant'),
    (dict(metrics=[]), 'at least one metric'),
    (dict(step='soon'), 'judge.step must be'),
    (dict(marginal_score=99), 'must not be above pass_score'),
    (dict(min_points=1), 'min_points must be an integer >= 3'),
    (dict(canary='original'), 'must differ'),
    (dict(metrics=[dict(name='a', query='x{v="$variant"}', statistic='mode')]), 'statistic must be one of'),
])
def test_bad_input_is_a_clear_error(over, needle):
    with pytest.raises(judge.JudgeSpecError) as err:
        config(**over)
    assert needle in str(err.value)


def test_summary_line():
    cfg = config()
    out = judge.judge({m['name']: (BASE, BASE) for m in cfg['metrics']}, cfg)
    out['window'] = {'seconds': 20}
    line = judge.summary_line('canary', out, final=True)
    assert line.startswith('[canary judge final 20s] score 100 -> PASS | latency=pass (')
