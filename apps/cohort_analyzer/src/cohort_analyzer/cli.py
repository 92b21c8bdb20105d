"""Command line: ``cohort-analyzer serve | init-db | loadgen``.

Every option can also come from the environment as COHORT_ANALYZER_<OPTION> (dashes as underscores, upper
case), e.g. COHORT_ANALYZER_FAULT_ERROR_RATE=0.05; the command line wins. The Redis password is read only
from COHORT_REDIS_PASSWORD, never from argv.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import sys
import time

from cohort_analyzer import VARIANTS, __version__, dataset, loadpattern

ENV_PREFIX = "COHORT_ANALYZER_"
LOG = logging.getLogger("cohort_analyzer")


class EnvDefaultsParser(argparse.ArgumentParser):
    """Options default to COHORT_ANALYZER_<DEST> when that variable is set (converted by the option's type)."""

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        if action.option_strings and action.dest not in ("help", "version"):
            env = ENV_PREFIX + action.dest.upper()
            if env in os.environ:
                raw = os.environ[env]
                try:
                    action.default = action.type(raw) if action.type else raw
                except (TypeError, ValueError) as exc:
                    self.error(f"environment variable {env}={raw!r} is invalid: {exc}")
                if action.choices is not None and action.default not in action.choices:
                    self.error(f"environment variable {env}={raw!r} is not one of {list(action.choices)}")
                action.required = False
            action.help = (action.help or "") + f" [env {env}]"
        return action


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if math.isnan(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within [0, 1], got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = EnvDefaultsParser(prog="cohort-analyzer", description="Reference cohort analyzer (cohort.rollout).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=EnvDefaultsParser)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--variant", choices=VARIANTS, required=True, help="which implementation answers")
    serve.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="listen port")
    serve.add_argument("--db", required=True, help="SQLite file path (created if missing) or postgresql:// DSN")
    serve.add_argument("--learners", type=_positive_int, default=None,
                       help=f"data set size (default: what the database holds, {dataset.DEFAULT_LEARNERS} when creating)")
    serve.add_argument("--seed", type=int, default=None,
                       help=f"data set seed (default: what the database holds, {dataset.DEFAULT_SEED} when creating)")
    serve.add_argument("--redis-url", default="", help="redis://host:port/db for the result cache; empty = no cache")
    serve.add_argument("--cache-ttl", type=_positive_int, default=3600, help="TTL of every cache key, seconds")
    serve.add_argument("--db-pool-size", type=_positive_int, default=4, help="database connection pool size")
    serve.add_argument("--fault-error-rate", type=_rate, default=0.0, help="fraction of discover requests answered 500")
    serve.add_argument("--fault-latency-ms", type=_non_negative_float, default=0.0,
                       help="latency added to every discover request")
    serve.add_argument("--fault-memory-mb", type=int, default=0, help="resident memory ballast to allocate at start")
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))

    init = sub.add_parser("init-db", help="create the data set (SQLite path or PostgreSQL DSN)")
    init.add_argument("--db", required=True)
    init.add_argument("--learners", type=_positive_int, default=None)
    init.add_argument("--seed", type=int, default=None)

    load = sub.add_parser("loadgen", help="open-loop constant-rate load against an analyzer or the load balancer")
    load.add_argument("--url", default="http://127.0.0.1:18080", help="base URL (the discover path is appended)")
    load.add_argument("--rate", type=float, default=50.0, help="requests per second")
    load.add_argument("--duration", type=float, default=60.0, help="seconds")
    load.add_argument("--pool-size", type=_positive_int, default=loadpattern.DEFAULT_POOL_SIZE,
                      help="distinct learner sets requests are drawn from")
    load.add_argument("--zipf-s", type=float, default=loadpattern.DEFAULT_ZIPF_S, help="Zipf exponent of set popularity")
    load.add_argument("--seed", type=int, default=loadpattern.DEFAULT_SEED, help="seed of the learner-set pool")
    load.add_argument("--set-size", default=f"{loadpattern.DEFAULT_MIN_SIZE}..{loadpattern.DEFAULT_MAX_SIZE}",
                      help="learners per request, MIN..MAX")
    load.add_argument("--learners", type=_positive_int, default=dataset.DEFAULT_LEARNERS,
                      help="ids are drawn from 1..learners")
    load.add_argument("--fresh-share", type=float, default=0.0,
                      help="fraction of requests with a never-seen learner set (cache misses that read the DB)")
    load.add_argument("--concurrency", type=_positive_int, default=64, help="maximum requests in flight")
    load.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, seconds")
    load.add_argument("--report-every", type=float, default=0.0, help="print progress every N seconds (0 = never)")
    load.add_argument("--json-out", default=None, help="also write the summary as JSON to this file")
    load.add_argument("--insecure", action="store_true", help="do not verify TLS certificates (https URLs)")
    return parser


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from cohort_analyzer.repository import RepositoryError, ensure_database
    from cohort_analyzer.service import Settings, create_app

    start = time.perf_counter()
    try:
        meta = ensure_database(args.db, args.learners, args.seed)
        settings = Settings(variant=args.variant, db=args.db, n_learners=meta["learners"], redis_url=args.redis_url,
                            cache_ttl=args.cache_ttl, db_pool_size=args.db_pool_size,
                            fault_error_rate=args.fault_error_rate, fault_latency_ms=args.fault_latency_ms,
                            fault_memory_mb=args.fault_memory_mb)
        app = create_app(settings)
    except (RepositoryError, ValueError) as exc:
        LOG.error("cannot start: %s", exc)
        return 2
    LOG.info("data set ready in %.2fs (%d learners, seed %d)", time.perf_counter() - start, meta["learners"], meta["seed"])
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False,
                            lifespan="on", timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1


def _init_db(args: argparse.Namespace) -> int:
    from cohort_analyzer.repository import RepositoryError, ensure_database

    try:
        meta = ensure_database(args.db, args.learners, args.seed)
    except RepositoryError as exc:
        LOG.error("%s", exc)
        return 2
    print(json.dumps(meta, sort_keys=True))
    return 0


def _loadgen(args: argparse.Namespace) -> int:
    from cohort_analyzer import loadgen

    try:
        set_size = loadpattern.parse_size_range(args.set_size)
        summary = asyncio.run(loadgen.run(
            args.url, args.rate, args.duration, pool_size=args.pool_size, zipf_s=args.zipf_s, seed=args.seed,
            set_size=set_size, n_learners=args.learners, concurrency=args.concurrency, timeout=args.timeout,
            report_every=args.report_every, verify_tls=not args.insecure, fresh_share=args.fresh_share))
    except ValueError as exc:
        LOG.error("%s", exc)
        return 2
    print(loadgen.format_summary(summary), flush=True)
    if args.json_out:
        tmp = f"{args.json_out}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2, sort_keys=True)
        os.replace(tmp, args.json_out)
    return 0 if summary["ok"] else 1  # no successful request at all is a failure


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(getattr(args, "log_level", "info")).upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return {"serve": _serve, "init-db": _init_db, "loadgen": _loadgen}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
