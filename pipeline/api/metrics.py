"""Prometheus metrics of one app (its own registry, so several apps can share a process)."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.search import SearchTimings

# Searches without rerank take milliseconds; with rerank on a CPU, up to minutes.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
STAGES = ("embed", "recall", "fusion", "rerank")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "vlsearch_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "vlsearch_request_seconds",
            "Seconds from request to response, by route template.",
            ["route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.stage_latency = Histogram(
            "vlsearch_stage_seconds",
            "Seconds spent per search stage (embed, recall, fusion, rerank).",
            ["stage"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.rejected = Counter(
            "vlsearch_rejected_requests",
            "Requests refused by a model stage: saturated (503) or timed out (504).",
            ["stage", "reason"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "vlsearch_queue_depth",
            "Requests waiting for a model stage.",
            ["stage"],
            registry=self.registry,
        )
        self.in_stage = Gauge(
            "vlsearch_stage_requests",
            "Requests in a model stage, running or waiting.",
            ["stage"],
            registry=self.registry,
        )
        self.model_loaded = Gauge(
            "vlsearch_model_loaded",
            "1 while the model is in memory.",
            ["model"],
            registry=self.registry,
        )

    def watch_gate(
        self, stage: str, queued: Callable[[], int], in_stage: Callable[[], int]
    ) -> None:
        self.queue_depth.labels(stage).set_function(queued)
        self.in_stage.labels(stage).set_function(in_stage)

    def observe_search(self, timings: SearchTimings) -> None:
        for stage in STAGES:
            seconds = getattr(timings, f"{stage}_s")
            if seconds:
                self.stage_latency.labels(stage).observe(seconds)


class RequestMetrics:
    """ASGI middleware counting and timing every request by its route template (so
    ``/v1/indexes/{name}/search`` is one series, not one per index)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recorded(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recorded)
        finally:
            route = getattr(scope.get("route"), "path", None) or "<unmatched>"
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
