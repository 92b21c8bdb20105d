"""The cohort definition, the data set, and the equivalence of the two variants."""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cohort_analyzer import dataset, engine, repository
from cohort_analyzer.repository import Repository

from conftest import SMALL_LEARNERS


def day(text: str) -> int:
    import datetime as dt
    return (dt.date.fromisoformat(text) - dataset.EPOCH).days


@pytest.fixture(scope="module")
def hand_db(tmp_path_factory) -> str:
    """Five learners whose cohorts are worked out by hand below."""
    path = str(tmp_path_factory.mktemp("hand") / "hand.db")
    conn = sqlite3.connect(path)
    for stmt in repository._SCHEMA:
        conn.execute(stmt)
    rows = [
        # id, course, signup, region, progress, m7, m30, last_active
        (1, 3, day("2025-04-02"), 0, 1000, 200, 500, day("2026-01-04")),  # course-03 2025-04 engaged, done
        (2, 3, day("2025-04-30"), 1, 500, 300, 300, day("2026-01-05")),   # course-03 2025-04 engaged
        (3, 3, day("2025-05-01"), 2, 250, 0, 40, day("2025-12-20")),      # course-03 2025-05 casual (m7=0)
        (4, 1, day("2025-12-31"), 3, 0, 0, 0, day("2025-12-31")),         # course-01 2025-12 dormant
        (5, 3, day("2025-04-15"), 4, 1, 420, 420, day("2026-01-05")),     # course-03 2025-04 intense
    ]
    conn.executemany("INSERT INTO learners VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.executemany("INSERT INTO metadata VALUES (?, ?)", [("schema_version", 1), ("learners", 5), ("seed", 0)])
    conn.commit()
    conn.close()
    return path


EXPECTED_HAND = [
    {"course": "course-01", "signup_month": "2025-12", "segment": "dormant", "size": 1, "mean_progress": 0.0,
     "active_7d_share": 0.0, "completion_share": 0.0},
    {"course": "course-03", "signup_month": "2025-04", "segment": "engaged", "size": 2, "mean_progress": 0.75,
     "active_7d_share": 1.0, "completion_share": 0.5},
    {"course": "course-03", "signup_month": "2025-04", "segment": "intense", "size": 1, "mean_progress": 0.001,
     "active_7d_share": 1.0, "completion_share": 0.0},
    {"course": "course-03", "signup_month": "2025-05", "segment": "casual", "size": 1, "mean_progress": 0.25,
     "active_7d_share": 0.0, "completion_share": 0.0},
]


@pytest.mark.parametrize("variant", ["original", "ultra_fast"])
def test_hand_computed_cohorts(hand_db, variant):
    repo = Repository(hand_db)
    try:
        # order and duplicates do not matter
        assert engine.ENGINES[variant](repo, [5, 4, 3, 2, 1, 2]) == EXPECTED_HAND
    finally:
        repo.close()


def test_rounding_is_half_up_to_four_decimals():
    assert engine._round4(1, 3) == 0.3333
    assert engine._round4(2, 3) == 0.6667
    assert engine._round4(1, 8) == 0.125
    assert engine._round4(1, 20_000) == 0.0001  # exactly half of 0.0001 rounds up
    assert engine._round4_arrays(np.array([1, 2, 1, 1]), np.array([3, 3, 8, 20_000])) == [0.3333, 0.6667, 0.125, 0.0001]


@pytest.mark.parametrize("m7,m30,segment", [(0, 0, "dormant"), (0, 1, "casual"), (119, 500, "casual"),
                                            (120, 500, "engaged"), (419, 419, "engaged"), (420, 420, "intense")])
def test_segment_thresholds(m7, m30, segment):
    assert dataset.segment_of(m7, m30) == segment


def test_dataset_is_deterministic_and_consistent():
    a, b, c = dataset.generate(2000, 5), dataset.generate(2000, 5), dataset.generate(2000, 6)
    assert all(np.array_equal(a[k], b[k]) for k in dataset.COLUMNS)
    assert not all(np.array_equal(a[k], c[k]) for k in dataset.COLUMNS)
    assert a["learner_id"].tolist() == list(range(1, 2001))
    assert a["course_id"].min() >= 1 and a["course_id"].max() <= dataset.N_COURSES
    assert (a["progress_permille"] >= 0).all() and (a["progress_permille"] <= 1000).all()
    assert (a["minutes_30d"] >= a["minutes_7d"]).all()
    idle = dataset.AS_OF_DAY - a["last_active_day"]
    assert ((a["minutes_7d"] > 0) == (idle < 7)).all()
    assert ((a["minutes_30d"] > 0) == (idle < 30)).all()
    assert (a["last_active_day"] >= a["signup_day"]).all()
    # every segment and completion state occurs, so the definition is exercised
    segments = {dataset.segment_of(m7, m30) for m7, m30 in zip(a["minutes_7d"].tolist(), a["minutes_30d"].tolist())}
    assert segments == set(dataset.SEGMENTS)
    assert 0.05 < (a["progress_permille"] == 1000).mean() < 0.3
    with pytest.raises(ValueError):
        dataset.generate(0)


@pytest.fixture(scope="module")
def small_repo(small_db):
    repo = Repository(small_db)
    yield repo
    repo.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(st.integers(min_value=1, max_value=SMALL_LEARNERS), min_size=1, max_size=400),
       batch=st.integers(min_value=1, max_value=64))
def test_variants_are_identical(small_repo, ids, batch):
    expected = engine.discover_original(small_repo, ids)
    assert engine.discover_ultra_fast(small_repo, ids) == expected
    assert engine.discover_ultra_fast(small_repo, ids, batch_size=batch) == expected  # batched merge is exact
    assert sum(c["size"] for c in expected) == len(set(ids))


def test_variants_identical_on_the_whole_small_data_set(small_repo):
    ids = list(range(1, SMALL_LEARNERS + 1))
    result = engine.discover_ultra_fast(small_repo, ids, batch_size=700)
    assert result == engine.discover_original(small_repo, ids)
    keys = [(c["course"], c["signup_month"], dataset.SEGMENTS.index(c["segment"])) for c in result]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


@pytest.mark.parametrize("variant", ["original", "ultra_fast"])
def test_unknown_ids_raise(small_repo, variant):
    with pytest.raises(engine.UnknownLearners) as err:
        engine.ENGINES[variant](small_repo, [1, SMALL_LEARNERS + 7, SMALL_LEARNERS + 3])
    assert err.value.missing == [SMALL_LEARNERS + 3, SMALL_LEARNERS + 7]


def test_both_variants_read_the_database(small_db):
    """Misses cost database queries in both variants: per learner (original), per batch (ultra_fast)."""
    calls = []
    repo = Repository(small_db, on_query=calls.append)
    try:
        engine.discover_original(repo, list(range(1, 101)))
        assert len(calls) == 100
        calls.clear()
        engine.discover_ultra_fast(repo, list(range(1, 101)), batch_size=30)
        assert len(calls) == 4
    finally:
        repo.close()
