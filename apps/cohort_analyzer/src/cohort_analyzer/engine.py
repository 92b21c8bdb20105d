"""Cohort discovery, two ways, one result.

``discover_original``: the straightforward version: one query per learner, per-learner Python objects,
a dict of cohort accumulators. ``discover_ultra_fast``: one query per batch of ids; on SQLite the database packs
each learner into one integer and returns the batch as one string (``Repository.fetch_packed``), on PostgreSQL
rows come back as columns; either way they become NumPy arrays, cohort keys are computed vectorised and reduced
with one sort + ``np.add.reduceat`` (packed) or ``np.bincount`` (columns).

Both reduce to the same exact integer aggregates per cohort (size, progress sum, active-7d count,
completed count) and share :func:`finalize`, so their outputs are identical, not merely close.
"""
from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

from cohort_analyzer import dataset, repository
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
_DENSE_MIN_BINS = 4096


def _aggregate(course: np.ndarray, signup_day: np.ndarray, seg: np.ndarray, progress: np.ndarray,
               active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, sums): distinct cohort codes ascending, per cohort size, progress sum, active-7d, completed."""
    month = signup_day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    c_lo, m_lo = int(course.min()), int(month.min())
    c_span, m_span = int(course.max()) - c_lo + 1, int(month.max()) - m_lo + 1
    bins = c_span * m_span * 4
    if bins <= max(_DENSE_MIN_BINS, 8 * len(course)):
        # Few possible cohorts (the usual case): one dense bin per (course, month, segment) in key order, no sort.
        dense = ((course - c_lo) * m_span + (month - m_lo)) * 4 + seg
        size = np.bincount(dense, minlength=bins)
        nz = np.flatnonzero(size)
        key = nz // 4
        uniq = ((key // m_span + c_lo) * _MONTH_SLOTS + key % m_span + m_lo) * 4 + nz % 4
        sums = np.empty((len(nz), 4), dtype=np.int64)
        sums[:, 0] = size[nz]
        sums[:, 1] = np.bincount(dense, weights=progress, minlength=bins)[nz]  # exact: < 2**53
        sums[:, 2] = np.bincount(dense, weights=active, minlength=bins)[nz]
        sums[:, 3] = np.bincount(dense, weights=(progress >= dataset.PROGRESS_COMPLETE), minlength=bins)[nz]
        return uniq, sums
    codes = (course * _MONTH_SLOTS + month) * 4 + seg
    uniq, inverse = np.unique(codes, return_inverse=True)
    k = len(uniq)
    sums = np.empty((k, 4), dtype=np.int64)
    sums[:, 0] = np.bincount(inverse, minlength=k)
    sums[:, 1] = np.bincount(inverse, weights=progress, minlength=k).astype(np.int64)  # exact: < 2**53
    sums[:, 2] = np.bincount(inverse, weights=active, minlength=k).astype(np.int64)
    sums[:, 3] = np.bincount(inverse, weights=(progress >= dataset.PROGRESS_COMPLETE), minlength=k).astype(np.int64)
    return uniq, sums


def aggregate_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised reduction of an (n, 6) int64 array in DISCOVERY_COLUMNS order.

    Returns (codes, sums) where codes are the distinct cohort codes and sums[:, k] the per-cohort
    size, progress sum, active-7d count and completed count.
    """
    m7 = rows[:, 4]
    m30 = rows[:, 5]
    # segment index: dormant 0, casual 1, engaged 2, intense 3 (same thresholds as dataset.segment_of)
    seg = np.where(m30 == 0, 0,
                   np.where(m7 < dataset.CASUAL_MAX_7D, 1, np.where(m7 < dataset.ENGAGED_MAX_7D, 2, 3)))
    return _aggregate(rows[:, 1], rows[:, 2], seg, rows[:, 3], m7 > 0)


# Lookup tables for packed learners (built on first use; no learner data, only calendar and bit arithmetic):
# signup day -> month code (months since 1970-01, times 4), and the low 11 bits (progress | active << 10) -> one
# integer holding progress + active << 25 + completed << 44, so ONE np.add.reduceat gives the three sums.
_PACK_LUTS: tuple[np.ndarray, np.ndarray] | None = None
_PACKED_SUM_MAX = 1 << 15  # learners per reduceat: progress sum < 2**25, counts < 2**19 (no carry between fields)


def _pack_luts() -> tuple[np.ndarray, np.ndarray]:
    global _PACK_LUTS
    if _PACK_LUTS is None:
        days = np.arange(repository.PACK_MAX_DAY + 1).astype("datetime64[D]")
        month4 = days.astype("datetime64[M]").astype(np.int32) * 4  # 512 KiB
        low = np.arange(1 << 11, dtype=np.int64)
        progress = low & 1023
        weights = progress + ((low >> 10) << 25) + ((progress >= dataset.PROGRESS_COMPLETE).astype(np.int64) << 44)
        _PACK_LUTS = (month4, weights)
    return _PACK_LUTS


def aggregate_packed(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same reduction of learners packed by SQLite (layout in repository, every value >= 0)."""
    n = len(packed)
    if n == 0:
        return np.empty(0, dtype=np.int64), np.empty((0, 4), dtype=np.int64)
    if n > _PACKED_SUM_MAX:
        parts = [aggregate_packed(packed[i:i + _PACKED_SUM_MAX]) for i in range(0, n, _PACKED_SUM_MAX)]
        return _reduce(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    month4, weights = _pack_luts()
    # cohort code = (course * _MONTH_SLOTS + month) * 4 + segment
    day = (packed >> repository.PACK_DAY_SHIFT) & repository.PACK_MAX_DAY
    codes = (packed >> repository.PACK_SEGMENT_SHIFT) + month4[day]
    order = np.argsort(codes)
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_codes[1:] != sorted_codes[:-1])))
    packed_sums = np.add.reduceat(weights[packed[order] & 2047], starts)
    sums = np.empty((len(starts), 4), dtype=np.int64)
    sums[:-1, 0] = starts[1:] - starts[:-1]
    sums[-1, 0] = n - starts[-1]
    sums[:, 1] = packed_sums & ((1 << 25) - 1)
    sums[:, 2] = (packed_sums >> 25) & ((1 << 19) - 1)
    sums[:, 3] = packed_sums >> 44
    return sorted_codes[starts], sums


def _round4_arrays(numerator: np.ndarray, denominator: np.ndarray) -> list[float]:
    """Vectorised _round4: the same integer rounding, then the same correctly rounded division."""
    return ((numerator * 20_000 + denominator) // (2 * denominator) / 10_000).tolist()


# Memoised labels per cohort code -> (course, signup_month, segment). Bounded: cleared when it reaches
# _LABELS_MAX (the default data set has at most 12 courses x 13 months x 4 segments = 624 codes).
_LABELS: dict[int, tuple[str, str, str]] = {}
_LABELS_MAX = 1 << 16


def _labels(code: int) -> tuple[str, str, str]:
    if len(_LABELS) >= _LABELS_MAX:
        _LABELS.clear()
    course, month = divmod(code // 4, _MONTH_SLOTS)
    labels = _LABELS[code] = (dataset.course_code(course), f"{1970 + month // 12:04d}-{month % 12 + 1:02d}",
                              dataset.SEGMENTS[code % 4])
    return labels


def finalize_arrays(codes: np.ndarray, sums: np.ndarray) -> list[dict]:
    """The vectorised twin of :func:`finalize` (codes ascending = the same sort order)."""
    size = sums[:, :1]
    denominator = np.empty((len(sums), 3), dtype=np.int64)
    denominator[:, :1] = size * dataset.PROGRESS_COMPLETE
    denominator[:, 1:] = size
    # _round4 on the (progress, active, completed) columns at once: same integer rounding, same division
    shares = ((sums[:, 1:] * 20_000 + denominator) // (2 * denominator) / 10_000).tolist()
    code_list = codes.tolist()
    try:
        labels = list(map(_LABELS.__getitem__, code_list))  # one C-level lookup per cohort
    except KeyError:
        labels = [_LABELS.get(code) or _labels(code) for code in code_list]
    return [{"course": c, "signup_month": m, "segment": g, "size": n, "mean_progress": p, "active_7d_share": a,
             "completion_share": d} for (c, m, g), n, (p, a, d) in zip(labels, sums[:, 0].tolist(), shares)]


def _reduce(codes: np.ndarray, sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-batch partial aggregates (same code -> add)."""
    uniq, inverse = np.unique(codes, return_inverse=True)
    merged = np.zeros((len(uniq), 4), dtype=np.int64)
    np.add.at(merged, inverse, sums)
    return uniq, merged


def _read_batch(repo: Repository, conn, chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch of distinct ids with one query and reduce it: (codes, sums)."""
    if repo.packs:
        packed = repo.fetch_packed(conn, chunk)
        if len(packed) == len(chunk) and packed.min() >= 0:
            return aggregate_packed(packed)
        # an unknown id (named below) or a value outside the packed ranges: read the columns instead
    rows = repo.fetch_learners(conn, chunk.tolist())
    width = len(dataset.DISCOVERY_COLUMNS)
    found = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=len(rows) * width).reshape(-1, width)
    if len(found) != len(chunk):
        raise UnknownLearners(np.setdiff1d(chunk, found[:, 0]).tolist())
    return aggregate_rows(found)


def discover_ultra_fast(repo: Repository, learner_ids: Sequence[int], batch_size: int = 20_000) -> list[dict]:
    """Batched reads (one query per ``batch_size`` ids) and a vectorised reduction per batch."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ids = np.sort(np.asarray(learner_ids, dtype=np.int64))
    if len(ids) > 1:
        ids = ids[np.concatenate(([True], ids[1:] != ids[:-1]))]  # distinct (np.unique, without its overhead)
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    with repo.connection() as conn:
        for start in range(0, len(ids), batch_size):
            parts.append(_read_batch(repo, conn, ids[start:start + batch_size]))
            if len(parts) > 1:  # keep memory flat: fold partial results as we go
                parts = [_reduce(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))]
    if not parts:
        return []
    return finalize_arrays(*parts[0])


ENGINES = {"original": discover_original, "ultra_fast": discover_ultra_fast}
