# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Traffic split math and the one routine that applies a split to a load balancer.

Shares of pools (``{"original": 0.99, "ultra_fast": 0.01}``) become integer
HAProxy server weights (0..256). All servers of one backend are split into
pools by the prefix of their name (``<pool>-<anything>``, see ``pool_of``).

Resolution: every server of a pool with a positive share keeps a weight >= 1
(no idle server), so a pool of ``n`` servers has a total weight ``T`` in
``[n, 256 n]`` spread as evenly as integers allow (weights differ by at most 1
inside a pool). The search below finds the pool totals whose realised shares
are closest to the requested ones (minimum of the largest absolute error,
then the smallest totals), so the split is exact whenever integers in those
ranges allow it (1% with 1 ultra_fast and 3 original servers: totals 1 and 99,
weights 1 and 33/33/33). Otherwise, for two pools ``q`` and ``r``, the error
is at most ``n_q / (512 n_r)`` for the pool ``r`` searched, and a positive
share never rounds to 0: the smallest positive share is ``n_q / (n_q + 256 n_r)``.
Requested shares are read to 1e-6 (``Fraction.limit_denominator``).

This file is shipped next to the load balancer API program on the LB host, so
it must only import the standard library.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

MAX_WEIGHT = 256
SHARE_TOLERANCE = 1e-9
SHARE_DENOMINATOR = 10 ** 6


class TrafficError(ValueError):
    """A request that cannot be turned into weights; nothing was changed."""


class ApplyError(RuntimeError):
    """Applying weights failed; the message says whether the old ones were restored."""


def pool_of(server):
    """Pool of a server named ``<pool>-<rest>`` (pool names contain no ``-``)."""
    return server.split('-', 1)[0]


def group_servers(servers, pools=()):
    """``{pool: sorted [server, ...]}`` for server names; ``pools`` are listed even when empty."""
    pools = {pool: [] for pool in pools}
    for server in sorted(servers):
        pools.setdefault(pool_of(server), []).append(server)
    return pools


def check_shares(shares):
    """Judge requested shares without a load balancer (a mapping, each within [0, 1], no NaN, sum 1).

    Raises TrafficError; returns ``{pool: Fraction}``. The pools themselves are checked when applied.
    """
    return validate_shares(shares, {pool: ['?'] for pool in shares} if isinstance(shares, dict) else {})


def validate_shares(shares, pools):
    """Check requested shares against the pools of a backend.

    ``pools`` maps every pool of the backend to its servers. Returns
    ``{pool: Fraction}`` summing exactly to 1. Raises TrafficError.
    """
    if not isinstance(shares, dict) or not shares:
        raise TrafficError('shares must be a non-empty mapping of pool name to share, e.g. {"original": 0.99, "ultra_fast": 0.01}')
    values = {}
    for pool, value in shares.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                if isinstance(value, bool) or not isinstance(value, str):
                    raise ValueError
                value = float(value)
            except ValueError:
                raise TrafficError('share of pool %r must be a number, got %r' % (pool, value)) from None
        value = float(value)
        if math.isnan(value) or math.isinf(value):
            raise TrafficError('share of pool %r must be a finite number, got %r' % (pool, value))
        if value < 0:
            raise TrafficError('share of pool %r is negative (%r)' % (pool, value))
        if value > 1:
            raise TrafficError('share of pool %r is above 1 (%r)' % (pool, value))
        values[str(pool)] = value
    unknown = sorted(set(values) - set(pools))
    if unknown:
        raise TrafficError('unknown pool(s) %s; the backend has pools %s' % (', '.join(unknown), ', '.join(sorted(pools)) or 'none'))
    missing = sorted(set(pools) - set(values))
    if missing:
        raise TrafficError('missing share for pool(s) %s: give every pool of the backend a share (0 is fine)' % ', '.join(missing))
    total = math.fsum(values.values())
    if abs(total - 1.0) > SHARE_TOLERANCE:
        raise TrafficError('shares must sum to 1 (within %g), they sum to %r' % (SHARE_TOLERANCE, total))
    for pool, value in values.items():
        if value > 0 and not pools[pool]:
            raise TrafficError('pool %r has no servers but was given share %r' % (pool, value))
    fractions = {pool: Fraction(value).limit_denominator(SHARE_DENOMINATOR) for pool, value in values.items()}
    norm = sum(fractions.values())
    return {pool: frac / norm for pool, frac in fractions.items()}


def pool_totals(targets, sizes):
    """Best integer pool totals for exact share fractions.

    ``targets``: ``{pool: Fraction}`` summing to 1; ``sizes``: ``{pool: servers}``.
    Returns ``{pool: total}`` with total 0 for a zero share, else in
    ``[n, 256 n]``, minimising the largest share error, then the grand total.
    """
    positive = sorted(p for p in targets if targets[p] > 0)
    totals = {p: 0 for p in targets}
    if len(positive) == 1:
        totals[positive[0]] = sizes[positive[0]]
        return totals
    # Search the totals of the smallest pool; the others are the floor or the
    # ceiling of their ideal value, which is optimal because each pool's share
    # is monotonic in its own total.
    ref = min(positive, key=lambda p: (sizes[p], p))
    others = [p for p in positive if p != ref]
    # Integer arithmetic: share p = a[p] / den exactly; the error of totals T with
    # grand total S is max_p |T_p den - a_p S| / (S den), compared by cross-multiplying.
    den = 1
    for p in positive:
        den = den * targets[p].denominator // math.gcd(den, targets[p].denominator)
    a = {p: int(targets[p] * den) for p in positive}
    best = None  # (err_num, err_den, grand, totals)
    for t_ref in range(sizes[ref], MAX_WEIGHT * sizes[ref] + 1):
        choices = []
        for p in others:
            low, high = sizes[p], MAX_WEIGHT * sizes[p]
            floor = (t_ref * a[p]) // a[ref]
            ceil = -((-t_ref * a[p]) // a[ref])
            choices.append(sorted({min(max(floor, low), high), min(max(ceil, low), high)}))
        for combo in itertools.product(*choices):
            cand = dict(zip(others, combo))
            cand[ref] = t_ref
            grand = sum(cand.values())
            num = max(abs(cand[p] * den - a[p] * grand) for p in positive)
            if best is None or num * best[1] < best[0] * grand or (num * best[1] == best[0] * grand and grand < best[2]):
                best = (num, grand, grand, cand)
        if best[0] == 0:
            break
    totals.update(best[3])
    return totals


def spread(total, servers):
    """Spread a pool total over its (sorted) servers, weights differing by at most 1."""
    if not servers:
        return {}
    base, extra = divmod(total, len(servers))
    return {s: base + (1 if i < extra else 0) for i, s in enumerate(sorted(servers))}


def compute_weights(shares, servers, pools=()):
    """Validated shares + backend server names -> ``{server: weight}``.

    ``pools``: pool names that exist even without servers (so that a share for
    an empty pool is refused as such, not as an unknown pool).
    """
    pools = group_servers(servers, pools)
    targets = validate_shares(shares, pools)
    totals = pool_totals(targets, {p: len(s) for p, s in pools.items()})
    weights = {}
    for pool, members in pools.items():
        weights.update(spread(totals[pool], members))
    return weights


def shares_of(weights):
    """Realised pool shares of ``{server: weight}`` (floats; None when all weights are 0)."""
    pools = group_servers(weights)
    grand = sum(weights.values())
    if grand == 0:
        return {p: None for p in pools}
    return {p: sum(weights[s] for s in members) / grand for p, members in pools.items()}


def _exact_shares(weights):
    grand = sum(weights.values())
    pools = group_servers(weights)
    if grand == 0:
        return None
    return {p: Fraction(sum(weights[s] for s in m), grand) for p, m in pools.items()}


def _balanced(weights):
    for members in group_servers(weights).values():
        values = [weights[s] for s in members]
        if values and (max(values) - min(values) > 1 or (max(values) > 0 and min(values) == 0)):
            return False
    return True


def plan(shares, current, pools=()):
    """What to do for ``shares`` given the current ``{server: weight}``.

    Returns ``{"changed", "before", "after", "requested", "error"}``;
    ``before``/``after`` hold ``weights`` and ``shares``. When the current
    weights already realise exactly the best achievable split (balanced
    inside each pool) they are kept: ``changed`` is false.
    """
    if not current:
        raise TrafficError('the backend has no servers')
    desired = compute_weights(shares, list(current), pools)
    targets = validate_shares(shares, group_servers(current, pools))
    if _exact_shares(current) == _exact_shares(desired) and _balanced(current):
        desired = dict(current)
    exact = _exact_shares(desired)
    err = max(abs(exact.get(p, 0) - targets[p]) for p in targets)
    return {
        'changed': desired != current,
        'requested': {p: float(v) for p, v in sorted(shares.items())},
        'before': {'weights': dict(sorted(current.items())), 'shares': shares_of(current)},
        'after': {'weights': dict(sorted(desired.items())), 'shares': shares_of(desired)},
        'error': float(err),
    }


def apply_shares(client, backend, shares, check_mode=False, state_file=None, pools=()):
    """Read, plan, set, read back: the one implementation used by the module and the API.

    ``client`` provides ``get_weights(backend) -> {server: weight}``,
    ``set_weights(backend, [(server, weight), ...])`` and ``save_state(path)``.
    ``pools`` names the pools that exist even without servers (see compute_weights).
    On any failure while setting, the previous weights are restored and
    ApplyError raised. Returns the plan with ``after`` replaced by the
    weights read back from the load balancer.
    """
    current = client.get_weights(backend)
    result = plan(shares, current, pools)
    if not result['changed'] or check_mode:
        return result
    desired = result['after']['weights']
    # Raise weights first, lower them last, so the backend never has all weights at 0.
    order = sorted(desired, key=lambda s: (desired[s] <= current[s], s))
    updates = [(s, desired[s]) for s in order if desired[s] != current[s]]
    try:
        client.set_weights(backend, updates)
        observed = client.get_weights(backend)
        if observed != desired:
            raise ApplyError('weights read back %r differ from the weights set %r' % (observed, desired))
    except Exception as exc:
        try:
            client.set_weights(backend, sorted(current.items()))
            restored = client.get_weights(backend) == current
        except Exception:  # pylint: disable=broad-except
            restored = False
        raise ApplyError('applying weights to backend %s failed (%s); previous weights %s' % (
            backend, exc, 'restored' if restored else 'NOT restored, check the load balancer')) from exc
    if state_file:
        client.save_state(state_file)
    result['after'] = {'weights': dict(sorted(observed.items())), 'shares': shares_of(observed)}
    return result
