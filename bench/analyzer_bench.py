"""Benchmark of the reference cohort analyzer: original vs ultra_fast, same data, same run.

Measures, on the default data set (200,000 learners, seed 42) unless told otherwise:
  1. data set creation time and service start time (to /readyz 200) on a fresh SQLite file;
  2. ms per 1,000 learners of each engine on identical random learner sets (cache off: every call reads the DB),
     alternating variants so both see the same machine load; results checked identical;
  3. learners/minute of one ultra_fast process over HTTP (cache off, every request a DB read);
  4. RSS of each variant's process after serving load.

  5. with --pg: the same per-1,000 comparison on a throwaway local PostgreSQL (port 28192, Debian binaries), where
     each of original's per-learner queries is a real TCP round trip.

Usage: .venv/bin/python bench/analyzer_bench.py [--learners 200000] [--sets 20] [--http-seconds 10] [--pg]
Keep it short: the machine is shared.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import numpy as np
import psutil

from cohort_analyzer import engine
from cohort_analyzer.repository import Repository, ensure_database

PORTS = {"original": 28190, "ultra_fast": 28191}


def engine_per_1000(repo: Repository, n_learners: int, n_sets: int, size: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    sets = [(rng.choice(n_learners, size, replace=False) + 1).tolist() for dummy in range(n_sets)]
    for ids in sets[:2]:  # warm the page cache for both
        engine.discover_original(repo, ids)
        engine.discover_ultra_fast(repo, ids)
    times: dict[str, list[float]] = {"original": [], "ultra_fast": []}
    for ids in sets:
        t = time.perf_counter()
        a = engine.discover_original(repo, ids)
        times["original"].append(time.perf_counter() - t)
        t = time.perf_counter()
        b = engine.discover_ultra_fast(repo, ids)
        times["ultra_fast"].append(time.perf_counter() - t)
        if a != b:
            raise SystemExit("variants disagree: benchmark invalid")
    out = {v: {"median_ms_per_1000": round(statistics.median(ts) * 1000 * 1000 / size, 3),
               "mean_ms_per_1000": round(statistics.fmean(ts) * 1000 * 1000 / size, 3)} for v, ts in times.items()}
    out["speedup_median"] = round(out["original"]["median_ms_per_1000"] / out["ultra_fast"]["median_ms_per_1000"], 2)
    out["set_size"] = size
    out["sets"] = n_sets
    return out


def start_server(variant: str, db: str) -> tuple[subprocess.Popen, float]:
    port = PORTS[variant]
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "cohort_analyzer", "serve", "--variant", variant, "--port", str(port),
                             "--db", db, "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return proc, time.perf_counter() - start
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"{variant} server exited with {proc.returncode}")
            time.sleep(0.05)
    proc.terminate()
    raise SystemExit(f"{variant} server not ready within 120 s")


def http_throughput(variant: str, n_learners: int, seconds: float, size: int, threads: int = 2) -> dict:
    url = f"http://127.0.0.1:{PORTS[variant]}/v1/cohorts/discover"
    rng = np.random.default_rng(99)
    bodies = [json.dumps({"learner_ids": (rng.choice(n_learners, size, replace=False) + 1).tolist()}).encode()
              for dummy in range(50)]
    counts = {"learners": 0, "requests": 0, "errors": 0}
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def worker(offset: int) -> None:
        i = offset
        while time.perf_counter() < stop_at:
            req = urllib.request.Request(url, data=bodies[i % len(bodies)], method="POST")
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    learners = json.loads(resp.read())["learners"]
                with lock:
                    counts["learners"] += learners
                    counts["requests"] += 1
            except OSError:
                with lock:
                    counts["errors"] += 1
            i += threads

    start = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    return {"learners_per_minute": int(counts["learners"] / elapsed * 60), "requests": counts["requests"],
            "errors": counts["errors"], "seconds": round(elapsed, 1), "learners_per_request": size,
            "client_threads": threads}


@contextlib.contextmanager
def throwaway_postgres(port: int = 28192):
    """initdb + postgres in a temp dir (as nobody when root), yield a DSN, stop it by its Popen handle."""
    workdir = tempfile.mkdtemp(prefix="analyzer-bench-pg-")
    prefix: list[str] = []
    if os.geteuid() == 0:
        os.chown(workdir, 65534, 65534)
        prefix = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    binaries = {b: shutil.which(b) or f"/usr/local/bin/{b}" for b in ("initdb", "postgres")}
    data = os.path.join(workdir, "data")
    subprocess.run([*prefix, binaries["initdb"], "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"],
                   check=True, capture_output=True, cwd=workdir)
    proc = subprocess.Popen([*prefix, binaries["postgres"], "-D", data, "-p", str(port), "-k", workdir,
                             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
    dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        import psycopg
        for dummy in range(100):
            try:
                psycopg.connect(dsn, connect_timeout=1).close()
                break
            except psycopg.OperationalError:
                if proc.poll() is not None:
                    raise SystemExit("postgres exited at start")
                time.sleep(0.2)
        yield dsn
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--learners", type=int, default=200_000)
    parser.add_argument("--sets", type=int, default=20, help="learner sets per engine measurement")
    parser.add_argument("--http-seconds", type=float, default=10.0)
    parser.add_argument("--db", default=None, help="existing database (SQLite path or DSN); default: fresh temp SQLite")
    parser.add_argument("--pg", action="store_true", help="also compare the engines on a throwaway local PostgreSQL")
    args = parser.parse_args()
    report: dict = {"learners": args.learners, "cpu_count": os.cpu_count(),
                    "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="analyzer-bench-") as tmp:
        db = args.db or os.path.join(tmp, "learners.db")
        t = time.perf_counter()
        ensure_database(db, args.learners)
        report["db_create_s"] = round(time.perf_counter() - t, 2)
        repo = Repository(db, pool_size=1)
        report["engine_1000"] = engine_per_1000(repo, args.learners, args.sets, 1000, seed=1)
        report["engine_10000"] = engine_per_1000(repo, args.learners, max(3, args.sets // 4), 10_000, seed=2)
        repo.close()
        # Service start including data set creation on a fresh file (SQLite only).
        if not args.db:
            fresh = os.path.join(tmp, "fresh.db")
            proc, startup = start_server("ultra_fast", fresh)
            report["startup_with_db_creation_s"] = round(startup, 2)
            proc.terminate()
            proc.wait(timeout=15)
        report["http"] = {}
        for variant in ("ultra_fast", "original"):
            proc, startup = start_server(variant, db)
            try:
                seconds = args.http_seconds if variant == "ultra_fast" else max(3.0, args.http_seconds / 2)
                report["http"][variant] = http_throughput(variant, args.learners, seconds, 5000)
                report["http"][variant]["startup_existing_db_s"] = round(startup, 2)
                report["http"][variant]["rss_mib_after_load"] = round(psutil.Process(proc.pid).memory_info().rss / 2**20, 1)
            finally:
                proc.terminate()
                proc.wait(timeout=15)
    if args.pg:
        with throwaway_postgres() as dsn:
            t = time.perf_counter()
            ensure_database(dsn, args.learners)
            report["pg_db_create_s"] = round(time.perf_counter() - t, 2)
            repo = Repository(dsn, pool_size=1)
            report["engine_1000_postgresql"] = engine_per_1000(repo, args.learners, max(5, args.sets // 2), 1000, seed=1)
            repo.close()
    report["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
