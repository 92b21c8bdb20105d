"""Prometheus metrics, named as the runbook names them; every series carries ``variant``.

Own CollectorRegistry (no default process/platform collectors): process memory and CPU are exported
by :class:`ProcessCollector` below, with the variant label. Names are a contract (recording rules,
dashboards, gates) - do not rename.
"""
from __future__ import annotations

import os

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from cohort_analyzer import __version__

disable_created_metrics()  # no *_created series: less noise, nothing depends on them

LATENCY_BUCKETS_MS = (1, 2, 5, 10, 15, 20, 25, 30, 40, 50, 60, 75, 100, 125, 150, 175, 200, 250, 300, 400, 500,
                      750, 1000, 2500, 5000)
DB_BUCKETS_MS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 50, 75, 100, 250, 500, 1000)


class ProcessCollector:
    """process_resident_memory_bytes and process_cpu_seconds_total of this process, labelled by variant."""

    def __init__(self, variant: str):
        self.variant = variant
        self.process = psutil.Process(os.getpid())

    def collect(self):
        rss = GaugeMetricFamily("process_resident_memory_bytes", "Resident memory of the analyzer process.",
                                labels=["variant"])
        rss.add_metric([self.variant], float(self.process.memory_info().rss))
        yield rss
        times = self.process.cpu_times()
        cpu = CounterMetricFamily("process_cpu_seconds", "User and system CPU time of the analyzer process.",
                                  labels=["variant"])
        cpu.add_metric([self.variant], float(times.user + times.system))
        yield cpu


class Metrics:
    """All series of one analyzer process; attributes are label-bound children (variant=...)."""

    def __init__(self, variant: str):
        self.variant = variant
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        v = ["variant"]
        self.requests = Counter("cohort_discovery_requests", "Discover requests answered, any status.", v,
                                registry=r).labels(variant)
        self.errors = Counter("cohort_discovery_errors", "Discover requests answered 5xx (injected faults included).",
                              v, registry=r).labels(variant)
        self._rejected = Counter("cohort_discovery_rejected", "Discover requests rejected 4xx, by reason.",
                                 ["variant", "reason"], registry=r)
        self.latency = Histogram("cohort_discovery_latency_ms", "Discover latency in ms (2xx and 5xx answers).", v,
                                 buckets=LATENCY_BUCKETS_MS, registry=r).labels(variant)
        self.learners = Counter("cohort_discovery_learners", "Distinct learners in answered discover requests.", v,
                                registry=r).labels(variant)
        self.cache_hits = Counter("cache_hits", "Discover requests answered from Redis.", v, registry=r).labels(variant)
        self.cache_misses = Counter("cache_misses", "Discover requests computed (not in Redis, or Redis unavailable).",
                                    v, registry=r).labels(variant)
        self.cache_errors = Counter("cache_errors", "Failed Redis calls and undecodable cache values.", v,
                                    registry=r).labels(variant)
        self.db_latency = Histogram("db_query_latency_ms", "Database query latency in ms.", v, buckets=DB_BUCKETS_MS,
                                    registry=r).labels(variant)
        self.pool_in_use = Gauge("db_connection_pool_in_use", "Database connections checked out.", v,
                                 registry=r).labels(variant)
        self.pool_size = Gauge("db_connection_pool_size", "Maximum database connections.", v,
                               registry=r).labels(variant)
        Gauge("cohort_analyzer_info", "Analyzer build information (always 1).", ["variant", "version"],
              registry=r).labels(variant, __version__).set(1)
        self.fault_error_rate = Gauge("cohort_analyzer_fault_error_rate", "Injected fraction of 5xx answers.", v,
                                      registry=r).labels(variant)
        self.fault_latency = Gauge("cohort_analyzer_fault_latency_ms", "Injected latency per discover request (ms).",
                                   v, registry=r).labels(variant)
        r.register(ProcessCollector(variant))

    def rejected(self, reason: str) -> None:
        self._rejected.labels(self.variant, reason).inc()

    def observe_db_query(self, seconds: float) -> None:
        self.db_latency.observe(seconds * 1000.0)

    def cache_event(self, event: str) -> None:
        {"hit": self.cache_hits, "miss": self.cache_misses, "error": self.cache_errors}[event].inc()
