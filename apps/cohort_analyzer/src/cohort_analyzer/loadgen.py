"""Open-loop load generator: a constant request rate, latency measured from the intended send time.

Request i is due at t0 + i/rate whatever happened to earlier requests (open loop). If every connection is
busy the request waits, and that wait counts in its latency (no coordinated omission). Concurrency is
bounded by ``concurrency`` keep-alive connections. Bodies are learner sets drawn with Zipf popularity from
the pool of :mod:`cohort_analyzer.loadpattern`. Latencies go into a log-bucketed histogram (1 % resolution)
so memory stays flat during hours-long bakes. SIGTERM/SIGINT stop sending and print the summary.
"""
from __future__ import annotations

import asyncio
import json
import math
import signal
import ssl
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np

from cohort_analyzer import loadpattern

DISCOVER_PATH = "/v1/cohorts/discover"


class LatencyHistogram:
    """Log-spaced buckets from 0.01 ms to ~1000 s, ratio 1.01 (percentiles within 1 %)."""

    RATIO = 1.01
    LOW_MS = 0.01

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        self.total = 0
        self.max_ms = 0.0

    def add(self, ms: float) -> None:
        index = 0 if ms <= self.LOW_MS else int(math.log(ms / self.LOW_MS, self.RATIO)) + 1
        self.counts[index] += 1
        self.total += 1
        self.max_ms = max(self.max_ms, ms)

    def percentile(self, q: float) -> float | None:
        if not self.total:
            return None
        rank = max(1, math.ceil(q / 100.0 * self.total))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                upper = self.LOW_MS * self.RATIO ** index
                return min(upper, self.max_ms)
        return self.max_ms  # pragma: no cover - rank <= total


@dataclass
class Result:
    scheduled: int = 0
    completed: int = 0
    statuses: Counter = field(default_factory=Counter)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    started: float = 0.0
    finished: float = 0.0
    interrupted: bool = False

    def summary(self, rate: float, duration: float) -> dict:
        elapsed = max(self.finished - self.started, 1e-9)
        ok = sum(n for code, n in self.statuses.items() if str(code).startswith("2"))
        server_errors = sum(n for code, n in self.statuses.items() if str(code).startswith("5"))
        failed = sum(n for code, n in self.statuses.items() if not str(code)[:1].isdigit())

        def pct(q: float) -> float | None:
            value = self.latency.percentile(q)
            return None if value is None else round(value, 2)

        return {
            "target_rate": rate, "duration_s": duration, "elapsed_s": round(elapsed, 3),
            "scheduled": self.scheduled, "completed": self.completed,
            "achieved_rate": round(self.completed / elapsed, 2),
            "status_counts": {str(k): v for k, v in sorted(self.statuses.items(), key=lambda kv: str(kv[0]))},
            "ok": ok, "server_errors": server_errors, "failed": failed,
            "error_share": round((server_errors + failed) / self.completed, 5) if self.completed else None,
            "latency_ms": {"p50": pct(50), "p90": pct(90), "p99": pct(99), "max": round(self.latency.max_ms, 2)
                           if self.latency.total else None},
            "interrupted": self.interrupted,
        }


def format_summary(s: dict) -> str:
    lat = s["latency_ms"]
    return (f"loadgen: {s['completed']}/{s['scheduled']} requests in {s['elapsed_s']}s, achieved "
            f"{s['achieved_rate']}/s (target {s['target_rate']}/s); status {json.dumps(s['status_counts'])}; "
            f"latency ms p50={lat['p50']} p90={lat['p90']} p99={lat['p99']} max={lat['max']}"
            + (" (interrupted)" if s["interrupted"] else ""))


class StaleConnection(ConnectionError):
    """The server closed the connection before sending any response byte."""


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    def close(self) -> None:
        self.writer.close()


class Client:
    """A minimal HTTP/1.1 keep-alive client (POST JSON, read status and body)."""

    def __init__(self, url: str, concurrency: int, timeout: float, verify_tls: bool = True):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be http(s)://host[:port][/path], got {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.path = parts.path if parts.path not in ("", "/") else DISCOVER_PATH
        self.host_header = parts.netloc.rsplit("@", 1)[-1]
        self.ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self.ssl = ssl.create_default_context()
            if not verify_tls:
                self.ssl.check_hostname = False
                self.ssl.verify_mode = ssl.CERT_NONE
        self.idle: list[Connection] = []
        self.slots = asyncio.Semaphore(concurrency)
        self.timeout = timeout

    async def _connect(self) -> Connection:
        reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self.ssl)
        return Connection(reader, writer)

    async def post(self, body: bytes) -> int:
        async with self.slots:
            return await asyncio.wait_for(self._post(body), self.timeout)

    async def _post(self, body: bytes) -> int:
        while True:
            reused = bool(self.idle)
            conn = self.idle.pop() if reused else await self._connect()
            try:
                status, keep = await self._exchange(conn, body)
            except StaleConnection:
                conn.close()
                if reused:
                    # An idle kept-alive connection the server closed (its keep-alive timeout) before we
                    # sent: not a server error, so try again on another connection.
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            if keep:
                self.idle.append(conn)
            else:
                conn.close()
            return status

    async def _exchange(self, conn: Connection, body: bytes) -> tuple[int, bool]:
        head = (f"POST {self.path} HTTP/1.1\r\nHost: {self.host_header}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nUser-Agent: cohort-analyzer-loadgen\r\n\r\n").encode("ascii")
        try:
            conn.writer.write(head + body)
            await conn.writer.drain()
            status_line = await conn.reader.readline()
        except (ConnectionError, OSError) as exc:
            raise StaleConnection(str(exc)) from exc
        if not status_line:
            raise StaleConnection("connection closed by server before answering")
        status = int(status_line.split()[1])
        headers = {}
        while True:
            line = await conn.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, dummy, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await conn.reader.readline()).split(b";")[0], 16)
                await conn.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif "content-length" in headers:
            await conn.reader.readexactly(int(headers["content-length"]))
        else:
            await conn.reader.read()
            return status, False
        return status, headers.get("connection", "").lower() != "close"

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


async def run(url: str, rate: float, duration: float, pool_size: int = loadpattern.DEFAULT_POOL_SIZE,
              zipf_s: float = loadpattern.DEFAULT_ZIPF_S, seed: int = loadpattern.DEFAULT_SEED,
              set_size: tuple[int, int] = (loadpattern.DEFAULT_MIN_SIZE, loadpattern.DEFAULT_MAX_SIZE),
              n_learners: int = 200_000, concurrency: int = 64, timeout: float = 10.0,
              report_every: float = 0.0, verify_tls: bool = True, fresh_share: float = 0.0,
              out=sys.stderr) -> dict:
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be > 0")
    if not 0.0 <= fresh_share <= 1.0:
        raise ValueError("fresh share must be within [0, 1]")
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    sets = loadpattern.learner_sets(pool_size, seed, n_learners, *set_size)
    bodies = [json.dumps({"learner_ids": ids}, separators=(",", ":")).encode() for ids in sets]
    # Zipf draws one at a time from the cumulative distribution: memory does not grow with the duration.
    cdf = np.cumsum(loadpattern.zipf_probabilities(len(bodies), zipf_s))
    draw = np.random.default_rng(seed + 1)

    # Real traffic has a long tail of one-off questions: a fresh_share of requests carries a learner set
    # never asked before, so it misses the cache and reads the database (the DB-latency gate needs data).
    # Seeded from the OS, not from `seed`: a restarted load generator must not repeat the "fresh" sets of
    # its previous run (they would be cached by then and never read the database).
    fresh = np.random.default_rng()
    low, high = set_size

    def pick() -> bytes:
        if fresh_share > 0 and fresh.random() < fresh_share:
            size = int(fresh.integers(low, high + 1))
            ids = fresh.choice(n_learners, size=min(size, n_learners), replace=False) + 1
            return json.dumps({"learner_ids": ids.tolist()}, separators=(",", ":")).encode()
        return bodies[min(int(np.searchsorted(cdf, draw.random(), side="right")), len(bodies) - 1)]

    client = Client(url, concurrency, timeout, verify_tls)
    result = Result()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-main thread / platform
            pass

    async def one(intended: float, body: bytes) -> None:
        try:
            status: int | str = await client.post(body)
        except asyncio.TimeoutError:
            status = "timeout"
        except asyncio.CancelledError:
            status = "cancelled"
        except (OSError, ValueError, asyncio.IncompleteReadError, ConnectionError):
            status = "connection_error"
        result.latency.add((time.perf_counter() - intended) * 1000.0)
        result.statuses[status] += 1
        result.completed += 1

    tasks: set[asyncio.Task] = set()
    result.started = time.perf_counter()
    deadline = result.started + duration
    next_report = result.started + report_every if report_every > 0 else math.inf
    i = 0
    while not stop.is_set():
        intended = result.started + i / rate
        if intended >= deadline:
            break
        delay = intended - time.perf_counter()
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), delay)
                break
            except asyncio.TimeoutError:
                pass
        task = asyncio.create_task(one(intended, pick()))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        result.scheduled += 1
        i += 1
        if time.perf_counter() >= next_report:
            partial = result.summary(rate, duration)
            print(f"loadgen progress: {partial['completed']} done, status {json.dumps(partial['status_counts'])}, "
                  f"p99={partial['latency_ms']['p99']} ms", file=out, flush=True)
            next_report += report_every
    result.interrupted = stop.is_set()
    send_end = time.perf_counter()
    if tasks:  # let in-flight requests finish (bounded by the request timeout)
        done, pending = await asyncio.wait(set(tasks), timeout=timeout + 1)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
    result.finished = max(time.perf_counter(), send_end)
    client.close()
    return result.summary(rate, duration)
