"""Cache warming: (key, value) pairs for learner sets, computed with the ultra_fast engine.

Used by the cohort.rollout.cache_warm module. Streams: one set at a time, the database read in batches
of ``batch_size`` ids, so memory stays flat however long the input is.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from cohort_analyzer import engine
from cohort_analyzer.cache import cache_key, encode_result
from cohort_analyzer.repository import Repository


def iter_entries(learner_sets: Iterable[Sequence[int]], db: str, batch_size: int = 500) -> Iterator[tuple[str, bytes]]:
    """Yield (cache key, encoded cohorts) for each learner set, in input order.

    ``db`` is the analyzer's --db (SQLite path or PostgreSQL DSN); it must already exist. Raises
    ValueError for a set that is empty or holds non-integer ids, engine.UnknownLearners for ids that are
    not in the data set.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    repo = Repository(db, pool_size=1)
    try:
        for index, ids in enumerate(learner_sets):
            ids = list(ids)
            if not ids:
                raise ValueError(f"learner set #{index} is empty")
            if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
                raise ValueError(f"learner set #{index} holds ids that are not integers")
            cohorts = engine.discover_ultra_fast(repo, ids, batch_size=batch_size)
            yield cache_key(ids), encode_result(cohorts)
    finally:
        repo.close()
