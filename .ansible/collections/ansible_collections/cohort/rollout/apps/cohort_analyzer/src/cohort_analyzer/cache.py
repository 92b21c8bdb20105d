"""The Redis result cache: one definition of keys and values, used by the service and by cache warming.

Keys: ``KEY_PREFIX`` + sha256 of the sorted distinct learner ids (order-insensitive, de-duplicated,
fixed length whatever the set size). Values: compact JSON of the cohorts list. Every key is written with
a TTL (``SET ... EX``): the runbook names unbounded cache growth as a cause of memory leaks.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable

LOG = logging.getLogger("cohort_analyzer.cache")
# Bump the version when the cohort definition or the value format changes: old entries are then ignored.
KEY_PREFIX = "cohort-analyzer:v1:discover:"
PASSWORD_ENV = "COHORT_REDIS_PASSWORD"


def cache_key(learner_ids: Iterable[int]) -> str:
    """The cache key of a set of learners (order and duplicates do not matter)."""
    ids = sorted({int(i) for i in learner_ids})
    digest = hashlib.sha256(",".join(map(str, ids)).encode("ascii")).hexdigest()
    return KEY_PREFIX + digest


def encode_result(cohorts: list[dict]) -> bytes:
    return json.dumps(cohorts, separators=(",", ":")).encode("utf-8")


def decode_result(raw: bytes) -> list[dict]:
    value = json.loads(raw)
    if not isinstance(value, list):
        raise ValueError("cached value is not a list of cohorts")
    return value


class ResultCache:
    """Get/set cohorts in Redis; never raises: on any Redis failure it reports a miss and counts an error.

    After a failure, Redis is skipped for ``backoff`` seconds (each skipped lookup is a miss), so a dead
    Redis costs one failed round trip per backoff period, not one per request.
    """

    def __init__(self, url: str, ttl: int, on_event: Callable[[str], None] | None = None,
                 timeout: float = 0.25, backoff: float = 1.0):
        if ttl < 1:
            raise ValueError(f"cache TTL must be >= 1 second, got {ttl}")
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.ttl = ttl
        self.on_event = on_event or (lambda event: None)
        self._backoff = backoff
        self._down_until = 0.0
        self._lock = threading.Lock()
        self.client = redis.Redis.from_url(
            url, password=os.environ.get(PASSWORD_ENV) or None, socket_timeout=timeout,
            socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0), health_check_interval=0)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError, ValueError)

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, action: str, exc: BaseException) -> None:
        with self._lock:
            first = self._available()
            self._down_until = time.monotonic() + self._backoff
        self.on_event("error")
        if first:
            LOG.warning("redis %s failed (%s); answering without the cache for %.1fs", action, exc, self._backoff)

    def get_raw(self, key: str) -> bytes | None:
        """The cached encoded cohorts (a JSON list, served as is), or None for a miss."""
        if not self._available():
            self.on_event("miss")
            return None
        try:
            raw = self.client.get(key)
        except self._errors as exc:
            self._failed("GET", exc)
            self.on_event("miss")
            return None
        if raw is None:
            self.on_event("miss")
            return None
        if not (raw.startswith(b"[") and raw.endswith(b"]")):  # cheap shape check; not our value
            self.on_event("error")
            self.on_event("miss")
            return None
        self.on_event("hit")
        return raw

    def get(self, key: str) -> list[dict] | None:
        """Cached cohorts decoded, or None (a miss: absent, undecodable, or Redis unavailable)."""
        raw = self.get_raw(key)
        if raw is None:
            return None
        try:
            return decode_result(raw)
        except ValueError:
            self.on_event("error")
            return None

    def set_raw(self, key: str, raw: bytes) -> bool:
        if not self._available():
            return False
        try:
            self.client.set(key, raw, ex=self.ttl)
        except self._errors as exc:
            self._failed("SET", exc)
            return False
        return True

    def set(self, key: str, cohorts: list[dict]) -> bool:
        return self.set_raw(key, encode_result(cohorts))

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except self._errors:
            return False

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # pragma: no cover - best effort at shutdown
            pass
