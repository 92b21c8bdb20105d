"""The real HTTP service (uvicorn subprocesses on 281xx ports) with a real Redis."""
from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import pytest
import redis

from cohort_analyzer import cache

from conftest import SMALL_LEARNERS

REQUIRED = ["cohort_discovery_requests_total", "cohort_discovery_errors_total", "cohort_discovery_rejected_total",
            "cohort_discovery_latency_ms_bucket", "cohort_discovery_latency_ms_count",
            "cohort_discovery_learners_total", "cache_hits_total", "cache_misses_total", "cache_errors_total",
            "db_query_latency_ms_bucket", "db_connection_pool_in_use", "db_connection_pool_size",
            "process_resident_memory_bytes", "process_cpu_seconds_total", "cohort_analyzer_info",
            "cohort_analyzer_fault_error_rate", "cohort_analyzer_fault_latency_ms"]


def post(url: str, body: bytes | str) -> tuple[int, dict]:
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url + "/v1/cohorts/discover", data=data, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def get(url: str, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url + path, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def metrics(url: str) -> dict[str, float]:
    status, text = get(url, "/metrics")
    assert status == 200
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def value(url: str, name: str, variant: str, **labels) -> float:
    """The value of the series `name` with exactly these labels (any label order)."""
    wanted = {"variant": variant, **labels}
    for key, number in metrics(url).items():
        series, dummy, rest = key.partition("{")
        if series == name and dict(re.findall(r'(\w+)="([^"]*)"', rest)) == wanted:
            return number
    raise AssertionError(f"no series {name}{wanted}")


def test_variants_answer_identically_and_cache(servers, redis_url):
    client = redis.Redis.from_url(redis_url)
    for ids in ([1, 2, 3], list(range(SMALL_LEARNERS, 0, -7)), [17] * 5 + [4, 99]):
        client.delete(cache.cache_key(ids))
        s1, original = post(servers["original"].url, json.dumps({"learner_ids": ids}))
        s2, fast = post(servers["ultra_fast"].url, json.dumps({"learner_ids": ids}))
        assert (s1, s2) == (200, 200)
        assert original["cohorts"] == fast["cohorts"] and original["cohorts"]
        assert original["learners"] == fast["learners"] == len(set(ids))
        assert (original["variant"], fast["variant"]) == ("original", "ultra_fast")
        assert original["cache"] == "miss" and fast["cache"] == "hit"  # the shared key was written by the first
        ttl = client.ttl(cache.cache_key(ids))
        assert 0 < ttl <= 600
    client.close()


def test_metrics_have_runbook_names_and_variant_labels(servers):
    for variant, server in servers.items():
        post(server.url, '{"learner_ids": [5, 6]}')
        status, text = get(server.url, "/metrics")
        assert status == 200
        names = {line.split("{")[0] for line in text.splitlines() if line and not line.startswith("#")}
        for name in REQUIRED:
            assert name in names, name
        for line in text.splitlines():
            if line and not line.startswith("#"):
                assert f'variant="{variant}"' in line, line
        assert value(server.url, "cohort_analyzer_info", variant, version="0.1.0") == 1
        assert value(server.url, "db_connection_pool_size", variant) == 4
        assert value(server.url, "process_resident_memory_bytes", variant) > 10_000_000
        assert re.search(r'cohort_discovery_latency_ms_bucket\{le="200.0",variant=', text)


BAD_BODIES = [
    ("not json", 400, "malformed_json"),
    ("[1, 2]", 400, "invalid_body"),
    ('{"ids": [1]}', 400, "invalid_body"),
    ('{"learner_ids": "1,2"}', 400, "invalid_body"),
    ('{"learner_ids": []}', 422, "empty"),
    ('{"learner_ids": [1, "2"]}', 422, "invalid_ids"),
    ('{"learner_ids": [1, 2.5]}', 422, "invalid_ids"),
    ('{"learner_ids": [true]}', 422, "invalid_ids"),
    ('{"learner_ids": [null]}', 422, "invalid_ids"),
    ('{"learner_ids": [0, 1]}', 422, "unknown_ids"),
    ('{"learner_ids": [-4]}', 422, "unknown_ids"),
    (f'{{"learner_ids": [1, {SMALL_LEARNERS + 1}]}}', 422, "unknown_ids"),
    (json.dumps({"learner_ids": [1] * 100_001}), 413, "too_many_ids"),
    (b"\xff\xfe", 400, "malformed_json"),
]


@pytest.mark.parametrize("body,status,reason", BAD_BODIES)
def test_bad_input_is_a_4xx_never_a_server_error(servers, body, status, reason):
    url = servers["ultra_fast"].url
    before = metrics(url)
    code, answer = post(url, body)
    assert (code, answer["reason"]) == (status, reason)
    assert answer["error"]
    after = metrics(url)
    v = 'variant="ultra_fast"'
    assert after[f"cohort_discovery_errors_total{{{v}}}"] == before[f"cohort_discovery_errors_total{{{v}}}"]
    rejected = f'cohort_discovery_rejected_total{{reason="{reason}",{v}}}'
    assert after[rejected] == before[rejected] + 1
    assert after[f"cohort_discovery_requests_total{{{v}}}"] == before[f"cohort_discovery_requests_total{{{v}}}"] + 1


def test_limit_of_100000_ids_is_accepted(servers):
    code, answer = post(servers["ultra_fast"].url, json.dumps({"learner_ids": [1, 2] * 50_000}))
    assert code == 200 and answer["learners"] == 2


def test_health_and_readiness(servers):
    for server in servers.values():
        assert get(server.url, "/healthz")[0] == 200
        status, body = get(server.url, "/readyz")
        assert status == 200 and json.loads(body)["learners"] == SMALL_LEARNERS
        assert get(server.url, "/nope")[0] == 404


def test_injected_error_rate_is_exact_and_starts_at_once(start_server, small_db):
    server = start_server("ultra_fast", small_db, env={"COHORT_ANALYZER_FAULT_ERROR_RATE": "0.05"})
    codes = [post(server.url, '{"learner_ids": [1, 2]}')[0] for dummy in range(100)]
    failed = [n for n, code in enumerate(codes) if code == 500]
    assert failed == [0, 20, 40, 60, 80], failed  # 5 of 100, evenly spaced, the first request included
    assert set(codes) == {200, 500}
    assert value(server.url, "cohort_discovery_errors_total", "ultra_fast") == 5


def test_keeps_answering_with_redis_down(start_server, small_db):
    server = start_server("original", small_db, ["--redis-url", "redis://127.0.0.1:28108/0"])
    for dummy in range(3):
        code, answer = post(server.url, '{"learner_ids": [1, 2, 3]}')
        assert code == 200 and answer["cache"] == "miss" and answer["cohorts"]
    assert value(server.url, "cache_misses_total", "original") == 3
    assert value(server.url, "cache_errors_total", "original") >= 1
    assert value(server.url, "cohort_discovery_errors_total", "original") == 0


def test_injected_faults_from_environment(start_server, small_db):
    server = start_server("ultra_fast", small_db, env={"COHORT_ANALYZER_FAULT_ERROR_RATE": "1",
                                                       "COHORT_ANALYZER_FAULT_LATENCY_MS": "30",
                                                       "COHORT_ANALYZER_FAULT_MEMORY_MB": "64"})
    for dummy in range(4):
        code, answer = post(server.url, '{"learner_ids": [1]}')
        assert code == 500 and answer["reason"] == "injected_fault"
    assert value(server.url, "cohort_discovery_errors_total", "ultra_fast") == 4
    assert value(server.url, "cohort_discovery_requests_total", "ultra_fast") == 4
    assert value(server.url, "cohort_analyzer_fault_error_rate", "ultra_fast") == 1
    assert value(server.url, "cohort_analyzer_fault_latency_ms", "ultra_fast") == 30
    series = metrics(server.url)
    assert series['cohort_discovery_latency_ms_bucket{le="25.0",variant="ultra_fast"}'] == 0  # latency injected
    assert series["process_resident_memory_bytes{variant=\"ultra_fast\"}"] > 64 * 1024 * 1024  # ballast resident
    assert "FAULT INJECTION ENABLED" in server.log()
    assert (code, answer["reason"]) == (500, "injected_fault")
    code, answer = post(server.url, "oops")  # bad input stays a 4xx even with faults on
    assert code == 400
