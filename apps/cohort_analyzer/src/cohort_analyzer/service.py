"""The HTTP service (Starlette on uvicorn): discover, health, readiness, metrics, fault injection."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from cohort_analyzer import VARIANTS, engine
from cohort_analyzer.cache import ResultCache, cache_key, encode_result
from cohort_analyzer.metrics import Metrics
from cohort_analyzer.repository import Repository

LOG = logging.getLogger("cohort_analyzer.service")
MAX_IDS = 100_000
MAX_BODY_BYTES = 4 * 1024 * 1024  # 100,000 ids of 1..N fit many times over
REJECT_REASONS = ("malformed_json", "invalid_body", "empty", "too_many_ids", "invalid_ids", "unknown_ids",
                  "body_too_large")


@dataclass
class Settings:
    variant: str
    db: str
    n_learners: int
    redis_url: str = ""
    cache_ttl: int = 3600
    db_pool_size: int = 4
    fault_error_rate: float = 0.0
    fault_latency_ms: float = 0.0
    fault_memory_mb: int = 0

    def validate(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if not 0.0 <= self.fault_error_rate <= 1.0:
            raise ValueError(f"fault error rate must be within [0, 1], got {self.fault_error_rate}")
        if self.fault_latency_ms < 0 or self.fault_memory_mb < 0:
            raise ValueError("fault latency and memory must be >= 0")
        if self.cache_ttl < 1:
            raise ValueError(f"cache TTL must be >= 1 second, got {self.cache_ttl}")
        if self.db_pool_size < 1:
            raise ValueError(f"db pool size must be >= 1, got {self.db_pool_size}")


class Rejected(Exception):
    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def parse_learner_ids(body: bytes, n_learners: int) -> list[int]:
    """Validate a discover body; return the distinct ids ascending, or raise Rejected (a 4xx)."""
    if len(body) > MAX_BODY_BYTES:
        raise Rejected(413, "body_too_large", f"request body larger than {MAX_BODY_BYTES} bytes")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Rejected(400, "malformed_json", f"body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict) or "learner_ids" not in payload:
        raise Rejected(400, "invalid_body", 'body must be a JSON object like {"learner_ids": [1, 2, 3]}')
    ids = payload["learner_ids"]
    if not isinstance(ids, list):
        raise Rejected(400, "invalid_body", "learner_ids must be a list of integers")
    if not ids:
        raise Rejected(422, "empty", "learner_ids is empty: nothing to discover")
    if len(ids) > MAX_IDS:
        raise Rejected(413, "too_many_ids", f"learner_ids has {len(ids)} entries; the limit is {MAX_IDS}")
    bad = [i for i in ids if not isinstance(i, int) or isinstance(i, bool)][:5]  # bool, float, str, null refused
    if bad:
        raise Rejected(422, "invalid_ids", f"learner_ids must be integers; got e.g. {bad!r}")
    unique = engine.unique_ids(ids)
    if unique[0] < 1 or unique[-1] > n_learners:
        unknown = [i for i in unique if i < 1 or i > n_learners][:10]
        raise Rejected(422, "unknown_ids", f"unknown learner ids (valid: 1..{n_learners}), e.g. {unknown}")
    return unique


class Analyzer:
    """The state of one analyzer process."""

    def __init__(self, settings: Settings):
        settings.validate()
        self.settings = settings
        self.variant = settings.variant
        self.metrics = Metrics(settings.variant)
        self.repo = Repository(settings.db, pool_size=settings.db_pool_size, on_query=self.metrics.observe_db_query)
        self.metrics.pool_size.set(settings.db_pool_size)
        self.metrics.pool_in_use.set_function(lambda: self.repo.pool.in_use)
        self.metrics.fault_error_rate.set(settings.fault_error_rate)
        self.metrics.fault_latency.set(settings.fault_latency_ms)
        for reason in REJECT_REASONS:  # every reason series exists from the start (rate() works at once)
            self.metrics._rejected.labels(self.variant, reason)
        self.cache = (ResultCache(settings.redis_url, settings.cache_ttl, on_event=self.metrics.cache_event)
                      if settings.redis_url else None)
        self.discover_fn = engine.ENGINES[settings.variant]
        # Injected errors are spread evenly, not drawn at random: exactly fault_error_rate of the requests
        # fail, the first one included, so that a drill's outcome does not depend on luck (at 1% of 150
        # req/s a canary sees ~45 requests per 30 s window; at random, 5% errors gave none in 10% of windows).
        self.fault_credit = 1.0 - settings.fault_error_rate
        self.ballast = None
        self.ready = False

    def start(self) -> None:
        s = self.settings
        if s.fault_memory_mb:
            # Touch every page so the ballast is resident, not just reserved.
            self.ballast = np.ones(s.fault_memory_mb * 1024 * 1024, dtype=np.uint8)
        if s.fault_error_rate or s.fault_latency_ms or s.fault_memory_mb:
            banner = "!" * 72
            LOG.warning(banner)
            LOG.warning("FAULT INJECTION ENABLED on variant %s: error_rate=%s latency_ms=%s memory_mb=%s",
                        self.variant, s.fault_error_rate, s.fault_latency_ms, s.fault_memory_mb)
            LOG.warning(banner)
        self.repo.ping()
        self.ready = True
        LOG.info("analyzer %s ready: %d learners from %s, cache %s", self.variant, s.n_learners,
                 self.repo.describe(), "redis" if self.cache else "disabled")

    def compute(self, ids: list[int]) -> tuple[bytes, str]:
        """Encoded cohorts of the (validated) ids, from Redis if there, else from the database (then cached).

        Works on the encoded form: a hit is served as stored, a miss is encoded once for Redis and the answer.
        """
        if self.cache is None:
            self.metrics.cache_misses.inc()
            return encode_result(self.discover_fn(self.repo, ids)), "miss"
        key = cache_key(ids)
        cached = self.cache.get_raw(key)
        if cached is not None:
            return cached, "hit"
        raw = encode_result(self.discover_fn(self.repo, ids))
        self.cache.set_raw(key, raw)
        return raw, "miss"

    def _inject_error(self) -> bool:
        """True for exactly fault_error_rate of the calls, evenly spaced (runs on the event loop: no race)."""
        self.fault_credit += self.settings.fault_error_rate
        if self.fault_credit >= 1.0 - 1e-9:
            self.fault_credit -= 1.0
            return True
        return False

    async def discover(self, request: Request) -> Response:
        start = time.perf_counter()
        status = 500
        try:
            try:
                declared = request.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
                    raise Rejected(413, "body_too_large", f"request body larger than {MAX_BODY_BYTES} bytes")
                ids = parse_learner_ids(await request.body(), self.settings.n_learners)
            except Rejected as rej:
                self.metrics.rejected(rej.reason)
                status = rej.status
                return JSONResponse({"error": rej.message, "reason": rej.reason}, status_code=rej.status)
            if self.settings.fault_latency_ms:
                await asyncio.sleep(self.settings.fault_latency_ms / 1000.0)
            if self.settings.fault_error_rate and self._inject_error():
                self.metrics.errors.inc()
                return JSONResponse({"error": "injected fault (fault_error_rate="
                                     f"{self.settings.fault_error_rate})", "reason": "injected_fault"},
                                    status_code=500)
            try:
                cohorts, cache_state = await run_in_threadpool(self.compute, ids)
            except engine.UnknownLearners as exc:  # ids in range but absent: a 4xx, not a server error
                self.metrics.rejected("unknown_ids")
                status = 422
                return JSONResponse({"error": str(exc), "reason": "unknown_ids"}, status_code=422)
            except Exception:
                LOG.exception("discover failed")
                self.metrics.errors.inc()
                return JSONResponse({"error": "internal error", "reason": "internal"}, status_code=500)
            status = 200
            self.metrics.learners.inc(len(ids))
            body = b'{"variant":"%s","learners":%d,"cache":"%s","cohorts":%s}' % (
                self.variant.encode(), len(ids), cache_state.encode(), cohorts)
            return Response(body, media_type="application/json")
        finally:
            self.metrics.requests.inc()
            if status < 400 or status >= 500:
                self.metrics.latency.observe((time.perf_counter() - start) * 1000.0)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "variant": self.variant})

    async def readyz(self, request: Request) -> Response:
        if not self.ready:
            return JSONResponse({"status": "not ready", "reason": "data not loaded"}, status_code=503)
        try:
            await run_in_threadpool(self.repo.ping)
        except Exception as exc:  # any database failure means not ready
            return JSONResponse({"status": "not ready", "reason": f"database unreachable: {exc}"}, status_code=503)
        return JSONResponse({"status": "ready", "variant": self.variant, "learners": self.settings.n_learners})

    async def metrics_endpoint(self, request: Request) -> Response:
        return PlainTextResponse(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def close(self) -> None:
        if self.cache:
            self.cache.close()
        self.repo.close()


def create_app(settings: Settings) -> Starlette:
    analyzer = Analyzer(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await run_in_threadpool(analyzer.start)
        yield
        analyzer.close()

    app = Starlette(routes=[
        Route("/v1/cohorts/discover", analyzer.discover, methods=["POST"]),
        Route("/healthz", analyzer.healthz, methods=["GET"]),
        Route("/readyz", analyzer.readyz, methods=["GET"]),
        Route("/metrics", analyzer.metrics_endpoint, methods=["GET"]),
    ], lifespan=lifespan)
    app.state.analyzer = analyzer
    return app
