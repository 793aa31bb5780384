"""FastAPI app: POST /predict (serve/endpoint.py), GET /health, /ready, /metrics (Prometheus),
GET / (drop-a-photo page), OpenAPI docs at /docs.

Uploads are read into memory up to a byte limit and decoded from memory: nothing in a request
touches the file system. One model is loaded at start (PyTorch, Keras, or the run's ONNX export
in onnxruntime); uploads wait in one bounded queue, and the batcher's workers decode them and
run the model a batch at a time (serve/batching.py). Past the queue a request gets 503 at once.

Limits that keep one small upload from taking the machine: bytes per upload, pixels per image
(checked from the header, before decoding), decodes at a time (one a worker: memory is bounded
by workers x pixels), uploads queued, requests in flight, seconds to send an upload, and the
Host header (DNS rebinding).
"""

from __future__ import annotations

import contextlib
import os
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware

from imgclf import __version__
from imgclf.predictor import load_predictor
from imgclf.serve.classify import Classifier
from imgclf.serve.endpoint import PredictEndpoint, document_predict
from imgclf.serve.metrics import MetricsMiddleware, ServeMetrics
from imgclf.serve.runtime import max_batch_for, serving_predictor
from imgclf.serve.uploads import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, decode_upload

LOCAL_HOSTS = ["localhost", "127.0.0.1", "[::1]", "::1"]


class RequestLimit:
    """ASGI middleware: at most `limit` requests in flight, then 503 at once. /health, /ready
    and /metrics are always answered (probes must not fail because the server is busy)."""

    def __init__(self, app: Any, limit: int, on_reject: Any = None):
        self.app, self.limit, self.active, self.on_reject = app, limit, 0, on_reject

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in ("/health", "/ready", "/metrics"):
            return await self.app(scope, receive, send)
        if self.active >= self.limit:
            if self.on_reject:
                self.on_reject()
            return await JSONResponse(
                {"detail": f"busy: {self.limit} requests in flight; try again"},
                503,
                headers={"Retry-After": "1"},
            )(scope, receive, send)
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


def _guarded_app(
    predictor: Any, hosts: list[str], max_requests: int, metrics: ServeMetrics, c: Classifier
) -> FastAPI:
    """The FastAPI app with its guards: metrics (outermost: every answer counts), the Host
    header check, requests in flight. Shutting down answers what is queued."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):  # noqa: ANN202
        yield
        await run_in_threadpool(c.batcher.close)

    names = ", ".join(predictor.class_names)
    app = FastAPI(
        title="imgclf",
        version=__version__,
        description=f"{predictor.meta.get('model')} classifying {names}",
        lifespan=lifespan,
    )
    shed = metrics.rejected.labels("in_flight").inc
    app.add_middleware(RequestLimit, limit=max_requests, on_reject=shed)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def default_workers() -> int:
    """Batcher workers (decodes at a time): one a core and one more, so that a worker waiting
    for Python's lock (or a request's parsing) leaves no core idle (2 cores: 9 % -> 2 % idle,
    measured), at most 4: memory is decodes x pixels."""
    return min(4, (os.cpu_count() or 1) + 1)


def health_info(
    predictor: Any, limits: tuple[int, int], runtime: str, batching: tuple, workers: int
) -> dict[str, Any]:
    """/health: the model served, how, and the limits uploads meet."""
    max_bytes, max_pixels = limits
    return {
        "status": "ok",
        "model": predictor.meta.get("model"),
        "backend": predictor.meta.get("backend"),
        "classes": predictor.class_names,
        "image_size": predictor.pre.size,
        "temperature": getattr(predictor, "temperature", None),  # None: uncalibrated
        "max_upload_bytes": max_bytes,
        "max_pixels": max_pixels,
        "runtime": runtime,
        "max_batch": batching[0],
        "max_wait_ms": batching[1] * 1000,
        "max_queue": batching[2],
        "workers": workers,
    }


def create_app(
    run: str | Path,
    max_bytes: int = DEFAULT_MAX_BYTES,
    top_k: int = 3,
    device: str = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decodes: int = 0,
    allowed_hosts: list[str] | None = None,
    upload_timeout: float = 30.0,
    tta: bool | None = None,
    max_requests: int = 64,
    calibrated: bool = True,
    batching: tuple[int, float, int] = (0, 0.005, 256),
    runtime: str = "auto",
) -> FastAPI:
    """allowed_hosts: Host header values served (default: this machine's loopback names); tta:
    flip TTA (None: as the run was trained); max_requests: in flight, then 503; calibrated:
    the run's fitted temperature on the probabilities; batching: (max batch, max wait in
    seconds, max queue; max batch 0: the device's default); runtime: auto, eager (the run's
    framework) or onnx."""
    t0 = time.perf_counter()
    workers = max_decodes or default_workers()
    predictor, runs_on = serving_predictor(run, runtime, device, tta, calibrated, workers)
    # a lone request runs on every core (1.17x the requests/s of one client, measured)
    solo = runs_on == "onnx" and workers > 1 and (os.cpu_count() or 1) > 1
    batching = (batching[0] or max_batch_for(runs_on, device), *batching[1:])
    holder: dict[str, Classifier] = {}
    metrics = ServeMetrics(lambda: holder["c"].batcher.depth(), time.perf_counter() - t0)
    classifier = holder["c"] = Classifier(
        predictor,
        decode_upload,
        max_pixels,
        top_k,
        batching,
        # an onnxruntime session runs in every worker at once (its own share of the cores
        # each); a framework model takes turns: explanations use it too
        (workers, runs_on == "onnx"),
        (metrics.on_batch, lambda: metrics.rejected.labels("queue_full").inc()),
        # Grad-CAM needs the PyTorch model: beside an onnxruntime session, loaded when asked
        (lambda: load_predictor(run, device, tta, calibrated)) if runs_on == "onnx" else None,
        serving_predictor(run, "onnx", device, tta, calibrated, 1)[0] if solo else None,
    )
    app = _guarded_app(predictor, allowed_hosts or LOCAL_HOSTS, max_requests, metrics, classifier)
    info = health_info(predictor, (max_bytes, max_pixels), runs_on, batching, workers)
    _routes(app, classifier, metrics, info, (max_bytes, upload_timeout))
    app.state.info = info  # the command adds what it serves with (the HTTP parser)
    return app


def _routes(
    app: FastAPI,
    classifier: Classifier,
    metrics: ServeMetrics,
    info: dict[str, Any],
    limits: tuple[int, float],
) -> None:
    """The endpoints; limits: (bytes per upload, seconds to send it)."""
    page = files("imgclf.serve").joinpath("static/index.html").read_text()

    @app.get("/health")
    def health() -> dict[str, Any]:
        return info

    @app.get("/ready")
    def ready() -> JSONResponse:
        """200 when the model is loaded and its queue has room, else 503."""
        full = classifier.batcher.full()
        body = {"ready": not full, "queue_depth": classifier.batcher.depth()}
        return JSONResponse(body, 503 if full else 200)

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.router.add_route("/predict", PredictEndpoint(classifier, *limits), methods=["POST"])
    document_predict(app)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page
