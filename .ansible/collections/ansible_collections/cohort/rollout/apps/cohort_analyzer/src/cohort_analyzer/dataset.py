"""The learner data set: deterministic generation and the cohort definition.

Everything here is the single definition both variants rely on (see README "Cohort discovery").
Days are integer day numbers since 1970-01-01 (UTC), the compact form stored in the database.
"""
from __future__ import annotations

import datetime as _dt

import numpy as np

DEFAULT_LEARNERS = 200_000
DEFAULT_SEED = 42
SCHEMA_VERSION = 1

# The data set is "as of" this day (a Monday): last_active_day <= AS_OF_DAY, signups in the year before it.
AS_OF_DATE = _dt.date(2026, 1, 5)
EPOCH = _dt.date(1970, 1, 1)
AS_OF_DAY = (AS_OF_DATE - EPOCH).days
SIGNUP_WINDOW_DAYS = 364

N_COURSES = 12
REGIONS = ("us-east", "us-west", "eu-west", "eu-central", "ap-south", "sa-east")

# Engagement segment, from minutes active in the last 30 and 7 days (documented in the README).
SEGMENTS = ("dormant", "casual", "engaged", "intense")
CASUAL_MAX_7D = 120  # minutes_7d < 120 (and active in the last 30 days) -> casual
ENGAGED_MAX_7D = 420  # 120 <= minutes_7d < 420 -> engaged; >= 420 -> intense
PROGRESS_COMPLETE = 1000  # progress is stored in per mille; 1000 means completed

# Column order used by both variants when reading learners.
COLUMNS = ("learner_id", "course_id", "signup_day", "region_id", "progress_permille",
           "minutes_7d", "minutes_30d", "last_active_day")
# The columns cohort discovery reads (both variants read exactly these).
DISCOVERY_COLUMNS = ("learner_id", "course_id", "signup_day", "progress_permille", "minutes_7d", "minutes_30d")


def course_code(course_id: int) -> str:
    """Course name shown in cohorts: course-01 .. course-12."""
    return f"course-{course_id:02d}"


def month_code(day: int) -> str:
    """'YYYY-MM' of a day number."""
    date = EPOCH + _dt.timedelta(days=day)
    return f"{date.year:04d}-{date.month:02d}"


def segment_of(minutes_7d: int, minutes_30d: int) -> str:
    """Engagement segment of one learner (the per-learner definition)."""
    if minutes_30d == 0:
        return "dormant"
    if minutes_7d < CASUAL_MAX_7D:
        return "casual"
    if minutes_7d < ENGAGED_MAX_7D:
        return "engaged"
    return "intense"


def generate(n_learners: int = DEFAULT_LEARNERS, seed: int = DEFAULT_SEED) -> dict[str, np.ndarray]:
    """Generate the data set as columns (int64 arrays, learner ids 1..n). Same (n, seed) -> same data."""
    if n_learners < 1:
        raise ValueError(f"n_learners must be >= 1, got {n_learners}")
    rng = np.random.default_rng(seed)
    n = n_learners
    learner_id = np.arange(1, n + 1, dtype=np.int64)
    # A few popular courses, a long tail (weights ~ 1/rank).
    weights = 1.0 / np.arange(1, N_COURSES + 1)
    course_id = rng.choice(np.arange(1, N_COURSES + 1), size=n, p=weights / weights.sum()).astype(np.int64)
    signup_day = AS_OF_DAY - rng.integers(0, SIGNUP_WINDOW_DAYS + 1, size=n)
    region_id = rng.integers(0, len(REGIONS), size=n)
    # Days since last activity: geometric (most learners recent), never before signup.
    idle = np.minimum(rng.geometric(1 / 12.0, size=n) - 1, AS_OF_DAY - signup_day)
    last_active_day = AS_OF_DAY - idle
    active_7 = idle < 7
    active_30 = idle < 30
    minutes_7d = np.where(active_7, rng.integers(1, 900, size=n), 0)
    minutes_30d = np.where(active_30, minutes_7d + rng.integers(1, 2400, size=n), 0)
    # Progress in per mille: 15 % completed, the rest spread over [0, 1000).
    completed = rng.random(size=n) < 0.15
    progress = np.where(completed, PROGRESS_COMPLETE, (rng.beta(1.6, 2.2, size=n) * 1000).astype(np.int64))
    progress = np.minimum(progress, PROGRESS_COMPLETE)
    return {
        "learner_id": learner_id,
        "course_id": course_id,
        "signup_day": signup_day.astype(np.int64),
        "region_id": region_id.astype(np.int64),
        "progress_permille": progress.astype(np.int64),
        "minutes_7d": minutes_7d.astype(np.int64),
        "minutes_30d": minutes_30d.astype(np.int64),
        "last_active_day": last_active_day.astype(np.int64),
    }
