"""FastAPI app: POST /predict (serve/endpoint.py), GET /health, /ready, /metrics (Prometheus),
GET / (drop-a-photo page), OpenAPI docs at /docs, and the Open Inference Protocol under /v2
(serve/v2.py: what KServe, Triton and Seldon clients speak).

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
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware

from imgclf import __version__
from imgclf.messages import UsageError
from imgclf.predictor import load_predictor, thresholds_of
from imgclf.serve.classify import Classifier
from imgclf.serve.config import LOCAL_HOSTS, ServeConfig
from imgclf.serve.endpoint import PredictEndpoint, document_predict
from imgclf.serve.metrics import MetricsMiddleware, ServeMetrics
from imgclf.serve.oip import ModelIO
from imgclf.serve.runtime import max_batch_for, precision, serving_predictor
from imgclf.serve.uploads import decode_upload
from imgclf.serve.v2 import PROBES, Served, add_v2_routes

ALWAYS_ANSWERED = ("/health", "/ready", "/metrics", *PROBES)


class RequestLimit:
    """ASGI middleware: at most `limit` requests in flight, then 503 at once. /health, /ready
    and /metrics are always answered (probes must not fail because the server is busy)."""

    def __init__(self, app: Any, limit: int, on_reject: Any = None):
        self.app, self.limit, self.active, self.on_reject = app, limit, 0, on_reject

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in ALWAYS_ANSWERED:
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


def health_info(predictor: Any, cfg: ServeConfig, runtime: str) -> dict[str, Any]:
    """/health: the model served, how, and the limits uploads meet."""
    return {
        "status": "ok",
        "model": predictor.meta.get("model"),
        "backend": predictor.meta.get("backend"),
        "classes": predictor.class_names,
        "image_size": predictor.pre.size,
        "temperature": getattr(predictor, "temperature", None),  # None: uncalibrated
        **multi_label_info(predictor),
        "abstain": cfg.abstain or None,  # None: every answer is given as sure
        "max_upload_bytes": cfg.max_bytes,
        "max_pixels": cfg.max_pixels,
        "runtime": runtime,
        "precision": precision(runtime),
        "model_name": cfg.served_name,  # under /v2/models/
        "max_batch": cfg.max_batch,
        "max_wait_ms": cfg.max_wait_ms,
        "max_queue": cfg.max_queue,
        "workers": cfg.workers,
    }


def multi_label_info(predictor: Any) -> dict[str, Any]:
    """A multi-label run's thresholds per class (each answer lists every class at or above its
    own); nothing for a single-label run."""
    t = thresholds_of(predictor)
    if t is None:
        return {}
    per_class = dict(zip(predictor.class_names, map(float, t), strict=True))
    return {"multi_label": True, "thresholds": per_class}


def served(predictor: Any, cfg: ServeConfig, info: dict[str, Any]) -> Served:
    """The model as the Open Inference Protocol names and describes it."""
    from imgclf import backends

    layout = backends.get(predictor.meta["backend"]).INPUT_LAYOUT
    t = thresholds_of(predictor)
    thresholds = None if t is None else tuple(map(float, t))
    io = ModelIO(predictor.pre.size, layout, tuple(predictor.class_names), thresholds)
    keys = ("model", "backend", "classes", "runtime", "precision", "temperature", "image_size")
    keys += ("multi_label", "thresholds") if thresholds is not None else ()
    return Served(cfg.served_name, io, f"imgclf_{info['runtime']}", {k: info[k] for k in keys})


def create_app(cfg: ServeConfig) -> FastAPI:
    """The app serving cfg.run with cfg's limits (serve/config.py)."""
    t0 = time.perf_counter()
    run, device, tta, calibrated = cfg.run, cfg.device, cfg.tta, cfg.calibration
    workers = cfg.workers
    predictor, runs_on = serving_predictor(run, cfg.runtime, device, tta, calibrated, workers)
    if cfg.abstain and thresholds_of(predictor) is not None:
        raise UsageError(
            "--abstain is for single-label runs: a multi-label run answers every class above "
            "its own threshold, and may answer none"
        )
    # a lone request runs on every core (1.17x the requests/s of one client, measured)
    onnx = runs_on.startswith("onnx")
    solo = onnx and workers > 1 and (os.cpu_count() or 1) > 1
    # what the defaults resolve to here: the batch for the device, the worker count
    cfg = cfg.replace(
        max_batch=cfg.max_batch or max_batch_for(runs_on, device), max_decodes=workers
    )
    holder: dict[str, Classifier] = {}
    metrics = ServeMetrics(lambda: holder["c"].batcher.depth(), time.perf_counter() - t0)
    classifier = holder["c"] = Classifier(
        predictor,
        cfg,
        decode_upload,
        # an onnxruntime session runs in every worker at once (its own share of the cores
        # each); a framework model takes turns: explanations use it too
        onnx,
        (metrics.on_batch, lambda: metrics.rejected.labels("queue_full").inc()),
        # Grad-CAM needs the PyTorch model: beside an onnxruntime session, loaded when asked
        (lambda: load_predictor(run, device, tta, calibrated)) if onnx else None,
        serving_predictor(run, runs_on, device, tta, calibrated, 1)[0] if solo else None,
    )
    hosts = list(cfg.allowed_hosts or LOCAL_HOSTS)
    app = _guarded_app(predictor, hosts, cfg.max_connections, metrics, classifier)
    info = health_info(predictor, cfg, runs_on)
    limits = (cfg.max_bytes, cfg.upload_timeout)
    _routes(app, classifier, metrics, info, limits)
    add_v2_routes(app, classifier, served(predictor, cfg, info), limits, cfg.max_request_images)
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
