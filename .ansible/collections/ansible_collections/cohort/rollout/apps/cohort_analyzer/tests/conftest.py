"""Fixtures: a small real data set, a real redis-server, real uvicorn analyzers (ports 28100-28199)."""
from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

from cohort_analyzer.repository import ensure_database

SMALL_LEARNERS = 3000
SMALL_SEED = 11
_next_port = [28110]


def free_port() -> int:
    """The next free port in this package's range (28110-28199; 28100-28109 are fixed below)."""
    while _next_port[0] < 28200:
        port = _next_port[0]
        _next_port[0] += 1
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port left in 28110-28199")


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def small_db(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("data") / "learners.db")
    ensure_database(path, SMALL_LEARNERS, SMALL_SEED)
    return path


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is required (apt-get install redis-server)")
    port = 28101
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                stop(proc)
                pytest.fail("redis-server did not start on 28101")
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    client.close()
    stop(proc)


class Server:
    def __init__(self, proc: subprocess.Popen, url: str, log_path: str):
        self.proc, self.url, self.log_path = proc, url, log_path

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8") as handle:
            return handle.read()


@pytest.fixture(scope="session")
def start_server(tmp_path_factory):
    """start_server(variant, db, extra_args=(), env={}) -> Server; all stopped at session end."""
    started: list[Server] = []

    def start(variant: str, db: str, extra_args=(), env=None, expect_ready: bool = True) -> Server:
        port = free_port()
        log_path = str(tmp_path_factory.mktemp("server") / f"{variant}-{port}.log")
        environ = {k: v for k, v in os.environ.items() if not k.startswith("COHORT_")}
        environ.update(env or {})
        with open(log_path, "w", encoding="utf-8") as log:
            proc = subprocess.Popen([sys.executable, "-m", "cohort_analyzer", "serve", "--variant", variant,
                                     "--port", str(port), "--db", db, *extra_args],
                                    stdout=log, stderr=subprocess.STDOUT, env=environ)
        server = Server(proc, f"http://127.0.0.1:{port}", log_path)
        started.append(server)
        if expect_ready:
            try:
                wait_http(server.url + "/readyz", proc=proc)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}\n{server.log()}") from None
        return server

    yield start
    for server in started:
        stop(server.proc)


@pytest.fixture(scope="session")
def servers(start_server, small_db, redis_url):
    """Both variants on the small data set, sharing the real Redis (TTL 600 s)."""
    return {variant: start_server(variant, small_db, ["--redis-url", redis_url, "--cache-ttl", "600"])
            for variant in ("original", "ultra_fast")}


@pytest.fixture(scope="session")
def pg_dsn(tmp_path_factory):
    """A throwaway PostgreSQL server on 127.0.0.1:28102 (Debian binaries), with the small data set loaded."""
    binaries = [shutil.which(b) or f"/usr/local/bin/{b}" for b in ("initdb", "postgres")]
    if not all(os.access(b, os.X_OK) for b in binaries):
        pytest.skip("PostgreSQL server binaries (initdb, postgres) not installed")
    pytest.importorskip("psycopg", reason="psycopg not installed (pip install 'cohort-analyzer[postgres]')")
    initdb, postgres = binaries
    port = 28102
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            pytest.fail(f"port {port} is taken: cannot start the test postgres")
    # Not under pytest's tmp dir: that is root-only (0700), and the server runs as nobody when we are root.
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="cohort-analyzer-pg-"))
    proc = None
    try:
        # PostgreSQL refuses to run as root: drop to nobody for the server (setpriv execs: Popen is postgres).
        prefix: list[str] = []
        if os.geteuid() == 0:
            os.chown(workdir, 65534, 65534)
            prefix = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
        data = str(workdir / "data")
        init = subprocess.run([*prefix, initdb, "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
                              capture_output=True, text=True, cwd=str(workdir), check=False)
        if init.returncode:
            pytest.fail(f"initdb failed: {init.stderr}")
        proc = subprocess.Popen([*prefix, postgres, "-D", data, "-p", str(port), "-k", str(workdir),
                                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(workdir))
        import psycopg

        dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + 20
        while True:
            try:
                psycopg.connect(dsn, connect_timeout=1).close()
            except psycopg.OperationalError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail(f"postgres did not start on {port}")
                time.sleep(0.2)
                continue
            if proc.poll() is not None:  # someone else's server answered
                pytest.fail(f"our postgres exited ({proc.returncode}) but {dsn} answers")
            break
        ensure_database(dsn, SMALL_LEARNERS, SMALL_SEED)
        yield dsn
    finally:
        if proc is not None:
            stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)
