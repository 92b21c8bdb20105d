"""The PostgreSQL path of the repository layer, against a real throwaway postgres server."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cohort_analyzer import engine
from cohort_analyzer.repository import Repository, RepositoryError, ensure_database

from conftest import SMALL_LEARNERS, SMALL_SEED
from test_analyzer_service import post, value


@pytest.fixture(scope="module")
def repos(pg_dsn, small_db):
    pg, sqlite = Repository(pg_dsn), Repository(small_db)
    yield pg, sqlite
    pg.close()
    sqlite.close()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(st.integers(min_value=1, max_value=SMALL_LEARNERS), min_size=1, max_size=200))
def test_postgres_and_sqlite_give_the_same_cohorts(repos, ids):
    pg, sqlite = repos
    expected = engine.discover_ultra_fast(sqlite, ids)
    assert engine.discover_ultra_fast(pg, ids, batch_size=37) == expected
    assert engine.discover_original(pg, ids) == expected


def test_postgres_metadata_and_mismatch(pg_dsn, repos):
    pg = repos[0]
    assert pg.metadata() == {"schema_version": 1, "learners": SMALL_LEARNERS, "seed": SMALL_SEED}
    assert ensure_database(pg_dsn)["learners"] == SMALL_LEARNERS  # existing data set reused
    with pytest.raises(RepositoryError, match="seed"):
        ensure_database(pg_dsn, SMALL_LEARNERS, SMALL_SEED + 1)
    with pytest.raises(engine.UnknownLearners):
        engine.discover_ultra_fast(pg, [1, SMALL_LEARNERS + 1])


def test_service_on_postgres(start_server, pg_dsn, small_db):
    pg_server = start_server("original", pg_dsn)
    sqlite_server = start_server("ultra_fast", small_db)
    body = json.dumps({"learner_ids": list(range(1, SMALL_LEARNERS, 13))})
    code_pg, from_pg = post(pg_server.url, body)
    code_sq, from_sqlite = post(sqlite_server.url, body)
    assert (code_pg, code_sq) == (200, 200)
    assert from_pg["cohorts"] == from_sqlite["cohorts"]
    assert value(pg_server.url, "db_query_latency_ms_count", "original") >= len(range(1, SMALL_LEARNERS, 13))
    assert "postgresql://" not in pg_server.log()  # the DSN (may hold a password) is never logged
