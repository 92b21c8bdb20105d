"""The command line: init-db (atomic, validated), env options, loadgen against a real server."""
from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np

from cohort_analyzer.loadgen import LatencyHistogram
from cohort_analyzer.repository import Repository

CLI = [sys.executable, "-m", "cohort_analyzer"]


def run(*args, env=None, timeout=60):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("COHORT_")}
    environ.update(env or {})
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=environ, timeout=timeout, check=False)


def test_init_db_concurrent_starts_do_not_corrupt(tmp_path):
    path = str(tmp_path / "sub" / "learners.db")
    procs = [subprocess.Popen([*CLI, "init-db", "--db", path, "--learners", "20000", "--seed", "3"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for dummy in range(3)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert all(json.loads(out)["learners"] == 20000 for out, dummy in outs)
    assert os.listdir(tmp_path / "sub") == ["learners.db"]  # no temp files left behind
    repo = Repository(path)
    try:
        assert repo.metadata() == {"schema_version": 1, "learners": 20000, "seed": 3}
    finally:
        repo.close()


def test_init_db_refuses_a_different_data_set(tmp_path):
    path = str(tmp_path / "learners.db")
    assert run("init-db", "--db", path, "--learners", "500").returncode == 0
    again = run("init-db", "--db", path)  # no size given: whatever the file holds
    assert again.returncode == 0 and json.loads(again.stdout)["learners"] == 500
    clash = run("init-db", "--db", path, "--learners", "600")
    assert clash.returncode == 2 and "learners=500" in clash.stderr
    (tmp_path / "junk.db").write_text("not a database")
    junk = run("init-db", "--db", str(tmp_path / "junk.db"))
    assert junk.returncode == 2 and "not a cohort-analyzer database" in junk.stderr


def test_bad_options_fail_clearly(tmp_path):
    db = str(tmp_path / "x.db")
    bad_env = run("serve", "--db", db, env={"COHORT_ANALYZER_VARIANT": "turbo"})
    assert bad_env.returncode == 2 and "COHORT_ANALYZER_VARIANT" in bad_env.stderr
    bad_rate = run("serve", "--variant", "original", "--db", db, "--fault-error-rate", "1.5")
    assert bad_rate.returncode == 2 and "within [0, 1]" in bad_rate.stderr
    assert not os.path.exists(db)  # nothing created on bad input
    pg = run("serve", "--variant", "original", "--db", "postgresql://127.0.0.1:28107/none")
    assert pg.returncode == 2 and ("psycopg" in pg.stderr or "connect" in pg.stderr.lower())


def test_latency_histogram_percentiles_within_one_percent():
    rng = random.Random(5)
    values = [rng.lognormvariate(3, 1) for dummy in range(20000)]
    hist = LatencyHistogram()
    for v in values:
        hist.add(v)
    for q in (50, 90, 99):
        exact = float(np.percentile(values, q, method="inverted_cdf"))
        assert math.isclose(hist.percentile(q), exact, rel_tol=0.011)
    assert hist.percentile(100) == max(values)
    assert LatencyHistogram().percentile(50) is None


def test_loadgen_open_loop_against_a_real_server(start_server, small_db, tmp_path):
    server = start_server("ultra_fast", small_db)
    out = tmp_path / "summary.json"
    res = run("loadgen", "--url", server.url, "--rate", "25", "--duration", "2", "--pool-size", "20",
              "--set-size", "5..50", "--learners", "3000", "--json-out", str(out))
    assert res.returncode == 0, res.stderr
    summary = json.loads(out.read_text())
    assert summary["scheduled"] == 50 and summary["completed"] == 50
    assert summary["status_counts"] == {"200": 50}
    assert 15 < summary["achieved_rate"] <= 30
    assert 0 < summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"] <= summary["latency_ms"]["max"]
    assert "achieved" in res.stdout and "p99=" in res.stdout
    from test_analyzer_service import value
    assert value(server.url, "cohort_discovery_requests_total", "ultra_fast") == 50


def test_loadgen_counts_errors_and_stops_on_sigterm(tmp_path):
    out = tmp_path / "summary.json"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("COHORT_")}
    proc = subprocess.Popen([*CLI, "loadgen", "--url", "http://127.0.0.1:28106", "--rate", "20", "--duration", "60",
                             "--pool-size", "5", "--json-out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=environ)
    time.sleep(2.5)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 1, stderr  # nothing succeeded: no server listens there
    summary = json.loads(out.read_text())
    assert summary["interrupted"] is True
    assert summary["failed"] == summary["completed"] > 10
    assert summary["status_counts"] == {"connection_error": summary["completed"]}
    assert "(interrupted)" in stdout


def test_loadgen_refuses_a_fresh_share_outside_0_1():
    import asyncio

    import pytest

    from cohort_analyzer import loadgen

    with pytest.raises(ValueError, match="fresh share"):
        asyncio.run(loadgen.run("http://127.0.0.1:9", 1.0, 1.0, fresh_share=1.5))
