"""Cache keys/values (the one definition shared with cache warming) and ResultCache against a real Redis."""
from __future__ import annotations

import time

import pytest
import redis

from cohort_analyzer import cache, engine, loadpattern, warm
from cohort_analyzer.repository import Repository

from conftest import SMALL_LEARNERS


def test_cache_key_is_order_insensitive_and_deduplicated():
    key = cache.cache_key([3, 1, 2])
    assert key == cache.cache_key([1, 2, 3, 3, 1]) == cache.cache_key(iter([2, 3, 1]))
    assert key.startswith(cache.KEY_PREFIX)
    assert len(key) == len(cache.KEY_PREFIX) + 64
    assert key != cache.cache_key([1, 2]) and key != cache.cache_key([1, 2, 4])
    assert len(cache.cache_key(range(1, 100_001))) == len(key)  # compact whatever the size


def test_encode_decode_roundtrip():
    cohorts = [{"course": "course-01", "size": 2, "mean_progress": 0.3333}]
    raw = cache.encode_result(cohorts)
    assert isinstance(raw, bytes) and b" " not in raw
    assert cache.decode_result(raw) == cohorts
    with pytest.raises(ValueError):
        cache.decode_result(b'{"not": "a list"}')
    with pytest.raises(ValueError):
        cache.decode_result(b"garbage")


def test_result_cache_sets_ttl_and_hits(redis_url):
    events = []
    rc = cache.ResultCache(redis_url, ttl=120, on_event=events.append)
    key = cache.cache_key([10_000_001, 10_000_002])  # ids no other test uses
    rc.client.delete(key)
    assert rc.get(key) is None
    assert rc.set(key, [{"size": 1}])
    assert 0 < rc.client.ttl(key) <= 120
    assert rc.get(key) == [{"size": 1}]
    assert events == ["miss", "hit"]
    rc.client.set(key, b"not json", ex=60)
    assert rc.get(key) is None and events[-2:] == ["error", "miss"]
    rc.close()
    with pytest.raises(ValueError):
        cache.ResultCache(redis_url, ttl=0)


def test_result_cache_keeps_answering_when_redis_is_down():
    events = []
    rc = cache.ResultCache("redis://127.0.0.1:28109/0", ttl=60, on_event=events.append, backoff=5)
    start = time.monotonic()
    for dummy in range(20):
        assert rc.get("k") is None
        rc.set("k", [])
    assert time.monotonic() - start < 2  # one failed connect, then skipped during the backoff
    assert events.count("miss") == 20 and events.count("error") == 1


def test_loadpattern_is_deterministic_and_valid():
    sets = loadpattern.learner_sets(40, 3, 1000, 5, 30)
    assert sets == loadpattern.learner_sets(40, 3, 1000, 5, 30)
    assert sets != loadpattern.learner_sets(40, 4, 1000, 5, 30)
    for ids in sets:
        assert 5 <= len(ids) <= 30 and ids == sorted(set(ids)) and 1 <= ids[0] and ids[-1] <= 1000
    p = loadpattern.zipf_probabilities(40, 1.1)
    assert abs(p.sum() - 1) < 1e-12 and all(p[i] > p[i + 1] for i in range(39))
    assert loadpattern.parse_size_range("50..500") == (50, 500)
    assert loadpattern.parse_size_range("200") == (200, 200)
    for bad in ("x", "500..50", "0..3"):
        with pytest.raises(ValueError):
            loadpattern.parse_size_range(bad)


def test_warm_entries_match_the_service_definition(small_db):
    sets = loadpattern.learner_sets(5, 9, SMALL_LEARNERS, 1, 700)
    entries = list(warm.iter_entries(sets, small_db, batch_size=50))
    repo = Repository(small_db)
    try:
        assert [k for k, dummy in entries] == [cache.cache_key(ids) for ids in sets]
        for (key, value), ids in zip(entries, sets):
            assert cache.decode_result(value) == engine.discover_original(repo, ids)
    finally:
        repo.close()


def test_warm_streams_and_rejects_bad_input(small_db):
    def endless():
        while True:
            yield [1, 2, 3]
    stream = warm.iter_entries(endless(), small_db)
    assert len([next(stream) for dummy in range(3)]) == 3  # lazy: an endless input still yields
    stream.close()
    with pytest.raises(ValueError, match="empty"):
        list(warm.iter_entries([[1], []], small_db))
    with pytest.raises(ValueError, match="integers"):
        list(warm.iter_entries([[1, "2"]], small_db))
    with pytest.raises(engine.UnknownLearners):
        list(warm.iter_entries([[SMALL_LEARNERS + 1]], small_db))
    with pytest.raises(Exception, match="does not exist"):
        list(warm.iter_entries([[1]], "/nonexistent/learners.db"))


def test_redis_password_comes_from_env(monkeypatch, redis_url):
    monkeypatch.setenv(cache.PASSWORD_ENV, "s3cret")
    rc = cache.ResultCache(redis_url, ttl=5)
    assert rc.client.connection_pool.connection_kwargs["password"] == "s3cret"
    rc.close()
    monkeypatch.delenv(cache.PASSWORD_ENV)
    rc = cache.ResultCache(redis_url, ttl=5)
    assert rc.client.connection_pool.connection_kwargs.get("password") is None
    assert rc.ping()
    rc.close()
    assert isinstance(redis.Redis, type)
