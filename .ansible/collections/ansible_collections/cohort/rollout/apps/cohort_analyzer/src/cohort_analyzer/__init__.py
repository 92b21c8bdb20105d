"""Reference cohort analyzer: the payload that cohort.rollout deploys.

Two variants answer the same API with identical cohorts: ``original`` (per-learner
Python, one query per learner) and ``ultra_fast`` (batched reads, NumPy).
"""
from __future__ import annotations

__version__ = "0.1.0"
VARIANTS = ("original", "ultra_fast")
