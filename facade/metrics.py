"""Prometheus metrics of one facade app, in its own ``CollectorRegistry`` (many apps per process are fine)."""

from __future__ import annotations

import time

import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

NS = "barcodeflow_facade"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        self.requests = Counter(
            f"{NS}_http_requests",
            "HTTP requests by route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            f"{NS}_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60),
            registry=r,
        )
        self.in_flight = Gauge(f"{NS}_http_requests_in_flight", "HTTP requests being served.", registry=r)
        self.batch_size = Histogram(
            f"{NS}_batch_size_items",
            "Items per accepted batch.",
            buckets=(1, 2, 5, 10, 20, 50, 75, 100, 250, 500, 1000),
            registry=r,
        )
        self.batches = Counter(
            f"{NS}_batches",
            "Submitted batches by outcome (completed, pending, rejected, unavailable, conflict).",
            ["outcome"],
            registry=r,
        )
        self.batch_wait = Histogram(
            f"{NS}_batch_wait_seconds",
            "Time from accepting a batch to answering it with its result.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30),
            registry=r,
        )
        self.cache = Counter(
            f"{NS}_image_cache",
            "Single-image cache lookups by result (hit, miss, error).",
            ["result"],
            registry=r,
        )
        self.item_errors = Counter(
            f"{NS}_item_errors",
            "Item errors by stable code (single-image route and returned batch results).",
            ["code"],
            registry=r,
        )
        self.renders = Histogram(
            f"{NS}_render_seconds",
            "Single-image render time (in the render executor).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.rate_limited = Counter(
            f"{NS}_rate_limited",
            "Requests refused by the rate limiter, by scope (ip, key).",
            ["scope"],
            registry=r,
        )
        self.ratelimit_errors = Counter(
            f"{NS}_ratelimit_storage_errors",
            "Rate-limit storage failures (then fail open/closed).",
            registry=r,
        )
        self.auth_failures = Counter(f"{NS}_auth_failures", "Requests refused for a missing or bad key.", registry=r)
        self.results_stored = Counter(
            f"{NS}_results_stored",
            "Batch results written to Redis by this replica.",
            registry=r,
        )
        self.results_dropped = Counter(
            f"{NS}_results_dropped",
            "Batch results not written to Redis (queue full or Redis down).",
            registry=r,
        )
        self.local_results_bytes = Gauge(
            f"{NS}_local_results_bytes",
            "Bytes of this replica's in-process copy of its own batches' results (FACADE_LOCAL_RESULTS_MAX_BYTES).",
            registry=r,
        )
        self.kafka_ready = Gauge(
            f"{NS}_kafka_component_ready",
            "1 when a Kafka client of this replica is running.",
            ["component"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def count_item_errors(self, result: bytes) -> None:
        """Count the item errors of a BatchResult (JSON bytes) answered to a client. Without an
        ``"error"`` key anywhere (the usual case) the document is not decoded at all."""
        if b'"error"' not in result:
            return
        try:
            doc = orjson.loads(result)
        except orjson.JSONDecodeError:
            return
        items = doc.get("results") if isinstance(doc, dict) else None
        for item in items if isinstance(items, list) else ():
            err = item.get("error") if isinstance(item, dict) else None
            if isinstance(err, dict) and err.get("code"):
                self.item_errors.labels(str(err["code"])[:64]).inc()


class MetricsMiddleware:
    """Pure ASGI middleware: counts and times requests, labelled by route *template* (bounded cardinality)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            method = method if method in _METHODS else "OTHER"
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - start)
