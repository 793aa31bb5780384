"""Prometheus metrics of `imgclf serve` (prometheus-client, one registry per app): requests by
path and status, latency, batch sizes and seconds, queue depth, requests shed, model load time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServeMetrics:
    def __init__(self, depth: Callable[[], int], load_seconds: float):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "imgclf_requests", "HTTP requests answered", ["path", "status"], registry=r
        )
        self.latency = Histogram(
            "imgclf_request_seconds",
            "time from request to response",
            ["path"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "imgclf_batch_size", "images per model call", buckets=BATCH_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "imgclf_batch_seconds", "model time per batch", buckets=LATENCY_BUCKETS, registry=r
        )
        self.rejected = Counter("imgclf_rejected", "requests shed with 503", ["reason"], registry=r)
        queue = Gauge("imgclf_queue_depth", "images waiting for the model", registry=r)
        queue.set_function(depth)
        load = Gauge("imgclf_model_load_seconds", "time to load the model", registry=r)
        load.set(load_seconds)

    def on_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)


class MetricsMiddleware:
    """ASGI: count every HTTP response by path and status, and time it."""

    def __init__(self, app: Any, metrics: ServeMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), {"code": 500}

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        # a fixed label set: unknown paths share one label, so a scan cannot grow the registry
        path = path_label(scope["path"])
        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.requests.labels(path, str(status["code"])).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - t0)


KNOWN_PATHS = {"/predict", "/health", "/ready", "/metrics", "/", "/docs", "/openapi.json", "/v2"}
KNOWN_PATHS |= {"/v2/health/live", "/v2/health/ready"}


def path_label(path: str) -> str:
    """The route a path took (the model's name and version folded), or "other"."""
    if path in KNOWN_PATHS:
        return path
    if path.startswith("/v2/models/"):
        last = path.rsplit("/", 1)[-1]
        return "/v2/models/{name}" + (f"/{last}" if last in ("infer", "ready") else "")
    return "other"
