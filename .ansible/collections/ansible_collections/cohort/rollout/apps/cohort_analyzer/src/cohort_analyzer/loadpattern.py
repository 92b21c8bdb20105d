"""The request pattern of the load generator, shared with cache warming.

The load draws learner sets from a fixed pool with Zipf-distributed popularity (rank k has weight
1/k**s), as real traffic repeats popular queries. Warming exactly :func:`learner_sets` makes the
load's requests hit the cache.
"""
from __future__ import annotations

import numpy as np

DEFAULT_POOL_SIZE = 500
DEFAULT_SEED = 7
DEFAULT_MIN_SIZE = 50
DEFAULT_MAX_SIZE = 500
DEFAULT_ZIPF_S = 1.1


def learner_sets(pool_size: int = DEFAULT_POOL_SIZE, seed: int = DEFAULT_SEED, n_learners: int = 200_000,
                 min_size: int = DEFAULT_MIN_SIZE, max_size: int = DEFAULT_MAX_SIZE) -> list[list[int]]:
    """The pool: ``pool_size`` sets of distinct ids in 1..n_learners, sorted, sizes in [min_size, max_size]."""
    if pool_size < 1:
        raise ValueError(f"pool_size must be >= 1, got {pool_size}")
    if n_learners < 1:
        raise ValueError(f"n_learners must be >= 1, got {n_learners}")
    if not 1 <= min_size <= max_size:
        raise ValueError(f"need 1 <= min_size <= max_size, got {min_size}..{max_size}")
    rng = np.random.default_rng(seed)
    sets = []
    for dummy in range(pool_size):
        size = min(int(rng.integers(min_size, max_size + 1)), n_learners)
        ids = rng.choice(n_learners, size=size, replace=False) + 1
        sets.append(sorted(ids.tolist()))
    return sets


def zipf_probabilities(pool_size: int, s: float = DEFAULT_ZIPF_S) -> np.ndarray:
    """P(rank k) proportional to 1/k**s over ranks 1..pool_size (rank 1 = the pool's first set)."""
    if s < 0:
        raise ValueError(f"zipf exponent must be >= 0, got {s}")
    weights = 1.0 / np.arange(1, pool_size + 1, dtype=np.float64) ** s
    return weights / weights.sum()


def parse_size_range(text: str) -> tuple[int, int]:
    """'50..500' (or '50-500', or '200') -> (min, max)."""
    for sep in ("..", "-", ":"):
        if sep in text:
            low, high = text.split(sep, 1)
            break
    else:
        low = high = text
    try:
        bounds = int(low), int(high)
    except ValueError:
        raise ValueError(f"set size must look like 50..500, got {text!r}") from None
    if not 1 <= bounds[0] <= bounds[1]:
        raise ValueError(f"set size range must satisfy 1 <= min <= max, got {text!r}")
    return bounds
