"""Weight math of cohort.rollout.traffic_weights (plugins/module_utils/traffic.py)."""
from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.cohort.rollout.plugins.module_utils import traffic


def servers(n_orig, n_fast):
    return ['original-%d' % i for i in range(n_orig)] + ['ultra_fast-%d' % i for i in range(n_fast)]


def realised(weights):
    total = sum(weights.values())
    fast = sum(w for s, w in weights.items() if s.startswith('ultra_fast-'))
    return Fraction(fast, total)


def test_one_percent_one_fast_three_original_is_exact():
    weights = traffic.compute_weights({'original': 0.99, 'ultra_fast': 0.01}, servers(3, 1))
    assert weights == {'original-0': 33, 'original-1': 33, 'original-2': 33, 'ultra_fast-0': 1}
    assert realised(weights) == Fraction(1, 100)


@pytest.mark.parametrize('share', [0.01, 0.10, 0.5, 0.9, 0.99])
@pytest.mark.parametrize('n_orig,n_fast', [(1, 1), (3, 1), (2, 2), (5, 3), (10, 1), (1, 10), (7, 7), (99, 1)])
def test_runbook_shares_are_exact_where_integers_allow(share, n_orig, n_fast):
    target = Fraction(share).limit_denominator(10 ** 6)
    # exact is possible iff some original total T_o in [n, 256 n] gives an integer ultra_fast total in range
    ratio = target / (1 - target)
    possible = any((t * ratio).denominator == 1 and n_fast <= t * ratio <= 256 * n_fast
                   for t in range(n_orig, 256 * n_orig + 1))
    weights = traffic.compute_weights({'original': 1 - share, 'ultra_fast': share}, servers(n_orig, n_fast))
    assert (realised(weights) == target) == possible
    assert all(0 <= w <= 256 for w in weights.values())


@pytest.mark.parametrize('n_orig,n_fast', [(1, 1), (4, 2), (3, 5)])
def test_all_or_nothing(n_orig, n_fast):
    full = traffic.compute_weights({'original': 0, 'ultra_fast': 1}, servers(n_orig, n_fast))
    assert all(w == 0 for s, w in full.items() if s.startswith('original-'))
    assert all(w >= 1 for s, w in full.items() if s.startswith('ultra_fast-'))
    back = traffic.compute_weights({'original': 1, 'ultra_fast': 0}, servers(n_orig, n_fast))
    assert all(w == 0 for s, w in back.items() if s.startswith('ultra_fast-'))
    assert all(w >= 1 for s, w in back.items() if s.startswith('original-'))


def brute_force_error(target, n_orig, n_fast):
    """Best error over every pool-total pair (what pool_totals claims to reach)."""
    a, den = target.numerator, target.denominator
    best_num, best_grand = None, 1
    for t_o in range(n_orig, 256 * n_orig + 1):
        for t_f in range(n_fast, 256 * n_fast + 1):
            grand = t_o + t_f
            num = abs(t_f * den - a * grand)
            if best_num is None or num * best_grand < best_num * grand:
                best_num, best_grand = num, grand
    return Fraction(best_num, best_grand * den)


@pytest.mark.parametrize('share', [0.001, 0.0137, 1 / 3, 0.9991])
@pytest.mark.parametrize('n_orig,n_fast', [(1, 1), (2, 1), (1, 2)])
def test_search_is_as_good_as_brute_force(share, n_orig, n_fast):
    target = Fraction(share).limit_denominator(10 ** 6)
    weights = traffic.compute_weights({'original': 1 - share, 'ultra_fast': share}, servers(n_orig, n_fast))
    assert abs(realised(weights) - target) == brute_force_error(target, n_orig, n_fast)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.floats(0, 1, allow_nan=False))
def test_any_pool_sizes_within_documented_resolution(n_orig, n_fast, share):
    weights = traffic.compute_weights({'original': 1 - share, 'ultra_fast': share}, servers(n_orig, n_fast))
    assert all(0 <= w <= 256 for w in weights.values())
    target = Fraction(share).limit_denominator(10 ** 6)
    err = abs(realised(weights) - target)
    pools = {'original': [w for s, w in weights.items() if s.startswith('original-')],
             'ultra_fast': [w for s, w in weights.items() if s.startswith('ultra_fast-')]}
    for pool, values in pools.items():
        assert max(values) - min(values) <= 1  # even inside a pool
        pool_share = share if pool == 'ultra_fast' else 1 - share
        if pool_share > 1e-6:
            assert min(values) >= 1  # a positive share never rounds to nothing
    if 0 < target < 1:
        # documented bound: n_q / (512 n_r) for the searched (smaller) pool r, or the smallest
        # positive share n_q / (n_q + 256 n_r) when the target is below it.
        n_r, n_q = sorted((n_orig, n_fast))
        bound = max(Fraction(n_q, 512 * n_r), Fraction(n_q, n_q + 256 * n_r), Fraction(n_r, n_r + 256 * n_q))
        assert err <= bound
    else:
        assert err == 0


@pytest.mark.parametrize('shares,message', [
    ({'original': 0.9, 'ultra_fast': 0.2}, 'sum to 1'),
    ({'ultra_fast': -0.1, 'original': 1.1}, 'negative'),
    ({'original': 1.5, 'ultra_fast': 0}, 'above 1'),
    ({'original': float('nan'), 'ultra_fast': 0.5}, 'finite'),
    ({'original': float('inf'), 'ultra_fast': 0}, 'finite'),
    ({'original': 0.99, 'ultra_fast': 0.01, 'turbo': 0}, 'unknown pool'),
    ({'original': 1}, 'missing share'),
    ({'original': 'lots', 'ultra_fast': 0}, 'must be a number'),
    ({'original': True, 'ultra_fast': 0}, 'must be a number'),
    ({}, 'non-empty'),
    ([0.5, 0.5], 'non-empty'),
])
def test_bad_input_is_refused(shares, message):
    with pytest.raises(traffic.TrafficError, match=message):
        traffic.compute_weights(shares, servers(2, 1))


def test_positive_share_for_empty_pool_is_refused():
    pools = {'original': ['original-a'], 'ultra_fast': []}
    with pytest.raises(traffic.TrafficError, match='has no servers'):
        traffic.validate_shares({'original': 0.99, 'ultra_fast': 0.01}, pools)
    assert traffic.validate_shares({'original': 1, 'ultra_fast': 0}, pools)['original'] == 1


def test_sum_tolerance_is_1e_9():
    traffic.compute_weights({'original': 0.9 + 5e-10, 'ultra_fast': 0.1}, servers(1, 1))
    with pytest.raises(traffic.TrafficError):
        traffic.compute_weights({'original': 0.9 + 5e-9, 'ultra_fast': 0.1}, servers(1, 1))


def test_plan_keeps_equivalent_weights_unchanged():
    current = {'original-0': 66, 'original-1': 66, 'original-2': 66, 'ultra_fast-0': 2}  # already 1%
    result = traffic.plan({'original': 0.99, 'ultra_fast': 0.01}, current)
    assert result['changed'] is False
    assert result['after']['weights'] == current
    assert result['error'] == 0


def test_plan_changes_unbalanced_or_different_weights():
    uneven = {'original-0': 98, 'original-1': 1, 'ultra_fast-0': 1}  # right total, uneven pool
    assert traffic.plan({'original': 0.99, 'ultra_fast': 0.01}, uneven)['changed'] is True
    result = traffic.plan({'original': 0.9, 'ultra_fast': 0.1}, {'original-0': 1, 'ultra_fast-0': 0})
    assert result['changed'] is True
    assert result['before']['shares'] == {'original': 1.0, 'ultra_fast': 0.0}
    assert result['after']['weights'] == {'original-0': 9, 'ultra_fast-0': 1}
    assert result['after']['shares'] == pytest.approx({'original': 0.9, 'ultra_fast': 0.1})


class FakeLB:
    """In-memory stand-in for HAProxySocket (the socket itself is tested against real HAProxy)."""

    def __init__(self, weights, fail_on=None):
        self.weights = dict(weights)
        self.fail_on = fail_on
        self.calls = []
        self.saved = []

    def get_weights(self, backend):
        return dict(self.weights)

    def set_weights(self, backend, updates):
        self.calls.append(list(updates))
        for server, weight in updates:
            if server == self.fail_on:
                self.fail_on = None  # fail once, let the restore go through
                raise RuntimeError('refused')
            self.weights[server] = weight

    def save_state(self, path):
        self.saved.append(path)


def test_apply_raises_before_lowering_and_saves_state():
    lb = FakeLB({'original-0': 1, 'ultra_fast-0': 0})
    result = traffic.apply_shares(lb, 'analyzers', {'original': 0, 'ultra_fast': 1}, state_file='/x')
    assert lb.calls == [[('ultra_fast-0', 1), ('original-0', 0)]]
    assert result['after']['weights'] == {'original-0': 0, 'ultra_fast-0': 1}
    assert lb.saved == ['/x']


def test_apply_check_mode_and_bad_input_change_nothing():
    lb = FakeLB({'original-0': 1, 'ultra_fast-0': 0})
    result = traffic.apply_shares(lb, 'analyzers', {'original': 0.5, 'ultra_fast': 0.5}, check_mode=True)
    assert result['changed'] is True and lb.calls == [] and lb.weights == {'original-0': 1, 'ultra_fast-0': 0}
    with pytest.raises(traffic.TrafficError):
        traffic.apply_shares(lb, 'analyzers', {'original': 0.5, 'ultra_fast': 0.6})
    assert lb.calls == []


def test_apply_failure_restores_previous_weights():
    lb = FakeLB({'original-0': 1, 'original-1': 1, 'ultra_fast-0': 0}, fail_on='original-1')
    with pytest.raises(traffic.ApplyError, match='restored'):
        traffic.apply_shares(lb, 'analyzers', {'original': 0.9, 'ultra_fast': 0.1})
    assert lb.weights == {'original-0': 1, 'original-1': 1, 'ultra_fast-0': 0}
