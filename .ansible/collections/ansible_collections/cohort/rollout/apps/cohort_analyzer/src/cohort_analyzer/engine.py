"""Cohort discovery, two ways, one result.

``discover_original``: the straightforward version: one query per learner, per-learner Python objects,
a dict of cohort accumulators. ``discover_ultra_fast``: one query per batch of ids, rows turned into
NumPy arrays, cohort keys computed vectorised and reduced with ``np.unique``/``np.bincount``.

Both reduce to the same exact integer aggregates per cohort (size, progress sum, active-7d count,
completed count) and share :func:`finalize`, so their outputs are identical, not merely close.
"""
from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

from cohort_analyzer import dataset
from cohort_analyzer.repository import Repository

# (course_id, months since 1970-01, segment index) -> [size, progress_sum, active_7d, completed]
Aggregates = dict[tuple[int, int, int], list[int]]
_SEGMENT_INDEX = {name: i for i, name in enumerate(dataset.SEGMENTS)}
_MONTH_SLOTS = 1 << 14  # months since 1970 fit easily (year 3335)


class UnknownLearners(LookupError):
    """Some requested learner ids are not in the database."""

    def __init__(self, missing: Sequence[int]):
        self.missing = sorted(missing)
        super().__init__(f"{len(self.missing)} unknown learner id(s), e.g. {self.missing[:10]}")


def _round4(numerator: int, denominator: int) -> float:
    """numerator/denominator rounded half up to 4 decimals, in exact integer arithmetic."""
    return (numerator * 20_000 + denominator) // (2 * denominator) / 10_000


def finalize(aggregates: Aggregates) -> list[dict]:
    """Cohorts sorted by (course, signup_month, segment index); shares rounded half up to 4 decimals."""
    cohorts = []
    for (course_id, month, seg), (size, progress_sum, active, completed) in sorted(aggregates.items()):
        cohorts.append({
            "course": dataset.course_code(course_id),
            "signup_month": f"{1970 + month // 12:04d}-{month % 12 + 1:02d}",
            "segment": dataset.SEGMENTS[seg],
            "size": size,
            "mean_progress": _round4(progress_sum, size * dataset.PROGRESS_COMPLETE),
            "active_7d_share": _round4(active, size),
            "completion_share": _round4(completed, size),
        })
    return cohorts


def unique_ids(learner_ids: Sequence[int]) -> list[int]:
    """The distinct ids, ascending (discovery is over a set of learners)."""
    return sorted(set(learner_ids))


# --------------------------------------------------------------------------------------------- original
@dataclass
class Learner:
    learner_id: int
    course_id: int
    signup_day: int
    progress_permille: int
    minutes_7d: int
    minutes_30d: int

    @property
    def signup_date(self) -> _dt.date:
        return dataset.EPOCH + _dt.timedelta(days=self.signup_day)

    @property
    def segment(self) -> str:
        return dataset.segment_of(self.minutes_7d, self.minutes_30d)

    @property
    def active_7d(self) -> bool:
        return self.minutes_7d > 0

    @property
    def completed(self) -> bool:
        return self.progress_permille >= dataset.PROGRESS_COMPLETE


def discover_original(repo: Repository, learner_ids: Sequence[int]) -> list[dict]:
    """Per-learner Python: fetch each learner with its own query, accumulate it into its cohort."""
    aggregates: Aggregates = {}
    missing = []
    with repo.connection() as conn:
        for learner_id in unique_ids(learner_ids):
            row = repo.fetch_learner(conn, learner_id)
            if row is None:
                missing.append(learner_id)
                continue
            learner = Learner(*row)
            date = learner.signup_date
            key = (learner.course_id, (date.year - 1970) * 12 + date.month - 1, _SEGMENT_INDEX[learner.segment])
            acc = aggregates.setdefault(key, [0, 0, 0, 0])
            acc[0] += 1
            acc[1] += learner.progress_permille
            acc[2] += 1 if learner.active_7d else 0
            acc[3] += 1 if learner.completed else 0
    if missing:
        raise UnknownLearners(missing)
    return finalize(aggregates)


# ------------------------------------------------------------------------------------------- ultra_fast
def aggregate_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised reduction of an (n, 6) int64 array in DISCOVERY_COLUMNS order.

    Returns (codes, sums) where codes are the distinct cohort codes and sums[:, k] the per-cohort
    size, progress sum, active-7d count and completed count.
    """
    course = rows[:, 1]
    signup = rows[:, 2].astype("datetime64[D]")
    month = (signup.astype("datetime64[M]").astype(np.int64))
    progress = rows[:, 3]
    m7 = rows[:, 4]
    m30 = rows[:, 5]
    # segment index: dormant 0, casual 1, engaged 2, intense 3 (same thresholds as dataset.segment_of)
    seg = np.where(m30 == 0, 0,
                   np.where(m7 < dataset.CASUAL_MAX_7D, 1, np.where(m7 < dataset.ENGAGED_MAX_7D, 2, 3)))
    codes = (course * _MONTH_SLOTS + month) * 4 + seg
    uniq, inverse = np.unique(codes, return_inverse=True)
    k = len(uniq)
    sums = np.empty((k, 4), dtype=np.int64)
    sums[:, 0] = np.bincount(inverse, minlength=k)
    sums[:, 1] = np.bincount(inverse, weights=progress, minlength=k).astype(np.int64)  # exact: < 2**53
    sums[:, 2] = np.bincount(inverse, weights=(m7 > 0), minlength=k).astype(np.int64)
    sums[:, 3] = np.bincount(inverse, weights=(progress >= dataset.PROGRESS_COMPLETE), minlength=k).astype(np.int64)
    return uniq, sums


def _round4_arrays(numerator: np.ndarray, denominator: np.ndarray) -> list[float]:
    """Vectorised _round4: the same integer rounding, then the same correctly rounded division."""
    return ((numerator * 20_000 + denominator) // (2 * denominator) / 10_000).tolist()


_COURSE_CODES = [dataset.course_code(i) for i in range(dataset.N_COURSES + 1)]


def finalize_arrays(codes: np.ndarray, sums: np.ndarray) -> list[dict]:
    """The vectorised twin of :func:`finalize` (codes ascending = the same sort order)."""
    seg = codes % 4
    month = codes // 4 % _MONTH_SLOTS
    course = codes // 4 // _MONTH_SLOTS
    months = {m: f"{1970 + m // 12:04d}-{m % 12 + 1:02d}" for m in np.unique(month).tolist()}
    size = sums[:, 0]
    columns = (
        [_COURSE_CODES[c] for c in course.tolist()],
        [months[m] for m in month.tolist()],
        [dataset.SEGMENTS[s] for s in seg.tolist()],
        size.tolist(),
        _round4_arrays(sums[:, 1], size * dataset.PROGRESS_COMPLETE),
        _round4_arrays(sums[:, 2], size),
        _round4_arrays(sums[:, 3], size),
    )
    return [{"course": c, "signup_month": m, "segment": g, "size": n, "mean_progress": p, "active_7d_share": a,
             "completion_share": d} for c, m, g, n, p, a, d in zip(*columns)]


def _reduce(codes: np.ndarray, sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-batch partial aggregates (same code -> add)."""
    uniq, inverse = np.unique(codes, return_inverse=True)
    merged = np.zeros((len(uniq), 4), dtype=np.int64)
    np.add.at(merged, inverse, sums)
    return uniq, merged


def discover_ultra_fast(repo: Repository, learner_ids: Sequence[int], batch_size: int = 20_000) -> list[dict]:
    """Batched reads (one query per ``batch_size`` ids) and a vectorised reduction per batch."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ids = np.unique(np.asarray(learner_ids, dtype=np.int64))
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    with repo.connection() as conn:
        for start in range(0, len(ids), batch_size):
            chunk = ids[start:start + batch_size]
            rows = repo.fetch_learners(conn, chunk.tolist())
            width = len(dataset.DISCOVERY_COLUMNS)
            found = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=len(rows) * width).reshape(-1, width)
            if len(found) != len(chunk):
                raise UnknownLearners(np.setdiff1d(chunk, found[:, 0]).tolist())
            parts.append(aggregate_rows(found))
            if len(parts) > 1:  # keep memory flat: fold partial results as we go
                parts = [_reduce(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))]
    if not parts:
        return []
    return finalize_arrays(*parts[0])


ENGINES = {"original": discover_original, "ultra_fast": discover_ultra_fast}
