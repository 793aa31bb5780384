"""FastAPI app: POST /predict, GET /health, GET / (drop-a-photo page), OpenAPI docs at /docs.

Uploads are read into memory up to a byte limit and decoded from memory: nothing in a request
touches the file system. One model is loaded at start; a lock serialises inference, which keeps
concurrent requests safe for any backend.

Limits that keep one small upload from taking the machine: bytes per upload, pixels per image
(checked from the header, before decoding), decodes at a time (a semaphore: memory is bounded
by decodes x pixels), seconds to send an upload, and the Host header (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import os
import threading
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect

from imgclf import __version__
from imgclf.data.images import ImageDecodeError, open_image, resize_center_crop, to_rgb
from imgclf.messages import UsageError
from imgclf.predictor import answer, load_predictor

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
LOCAL_HOSTS = ["localhost", "127.0.0.1", "[::1]", "::1"]
UPLOAD_SCHEMA = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        },
        "required": True,
    }
}


async def read_limited(request: Request, max_bytes: int, timeout: float = 30.0) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise HTTPException(413, f"upload is {int(declared):,} bytes; the limit is {max_bytes:,}")
    body = bytearray()

    async def read() -> None:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > max_bytes:
                raise HTTPException(413, f"upload exceeds the limit of {max_bytes:,} bytes")

    try:
        await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        raise HTTPException(408, f"upload not received within {timeout:g} s") from None
    except ClientDisconnect:
        # the client left: nobody reads the answer, and it is not the server's error to log
        raise HTTPException(400, "client disconnected during the upload") from None
    return bytes(body)


def first_file_part(body: bytes, content_type: str) -> bytes:
    """The first part of a multipart/form-data body that carries a file, parsed in memory."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise HTTPException(400, "multipart upload without a boundary")
    parts: list[dict[str, Any]] = []
    state: dict[str, Any] = {}

    def on_part_begin() -> None:
        state["part"] = {"data": bytearray(), "headers": b""}

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["part"]["headers"] += data[start:end] + b";"

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["part"]["data"] += data[start:end]

    def on_part_end() -> None:
        parts.append(state.pop("part"))

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_value": on_header_value,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as e:
        raise HTTPException(400, f"malformed multipart upload: {e}") from None
    for p in parts:
        if b"filename=" in p["headers"] or b'name="file"' in p["headers"]:
            return bytes(p["data"])
    raise HTTPException(400, "multipart upload has no file part (send the image as 'file')")


def decode_upload(data: bytes, size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    try:
        img = to_rgb(open_image(data, draft=size, max_pixels=max_pixels))
    except ImageDecodeError as e:
        reason = str(e)
        status = (
            415
            if reason.startswith(("not an image", "zero bytes"))
            else 413
            if reason.startswith(("decompression bomb", "too many pixels"))
            else 422
        )
        raise HTTPException(status, f"cannot use this upload: {reason}") from None
    return np.asarray(resize_center_crop(img, size), dtype=np.uint8)


class RequestLimit:
    """ASGI middleware: at most `limit` requests in flight, then 503 at once. /health is always
    answered (a liveness probe must not fail because the server is busy)."""

    def __init__(self, app: Any, limit: int):
        self.app, self.limit, self.active = app, limit, 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] == "/health":
            return await self.app(scope, receive, send)
        if self.active >= self.limit:
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


def _guarded_app(predictor: Any, hosts: list[str], max_requests: int) -> FastAPI:
    """The FastAPI app with its guards: Host header check (outermost), requests in flight."""
    names = ", ".join(predictor.class_names)
    app = FastAPI(
        title="imgclf",
        version=__version__,
        description=f"{predictor.meta.get('model')} classifying {names}",
    )
    app.add_middleware(RequestLimit, limit=max_requests)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)
    return app


def health_info(predictor: Any, max_bytes: int, max_pixels: int) -> dict[str, Any]:
    """/health: the model served and the limits uploads meet."""
    return {
        "status": "ok",
        "model": predictor.meta.get("model"),
        "backend": predictor.meta.get("backend"),
        "classes": predictor.class_names,
        "image_size": predictor.pre.size,
        "temperature": getattr(predictor, "temperature", None),  # None: uncalibrated
        "max_upload_bytes": max_bytes,
        "max_pixels": max_pixels,
    }


class Classifier:
    """The served model: decodes at a time bounded by a semaphore (memory: decodes x pixels),
    inference serialised by a lock (safe for any backend)."""

    def __init__(self, predictor: Any, max_pixels: int, max_decodes: int, top_k: int):
        self.predictor, self.max_pixels, self.top_k = predictor, max_pixels, top_k
        self.lock = threading.Lock()
        self.decodes = threading.BoundedSemaphore(max_decodes or min(4, os.cpu_count() or 1))

    def answer(self, body: bytes, ctype: str, explain: bool = False) -> dict[str, Any]:
        """The top classes of one upload; explain: with its Grad-CAM overlay as a PNG data URL."""
        from imgclf.explain import explain_batch, explainer

        if explain:
            try:
                explainer(self.predictor)
            except UsageError as e:
                raise HTTPException(400, str(e)) from None
        # 177k tiny multipart parts took 1.7 s to parse: off the event loop like the decode
        data = first_file_part(body, ctype) if ctype.startswith("multipart/") else body
        size = self.predictor.pre.size
        with self.decodes:
            x = decode_upload(data, size, self.max_pixels)[None]
        with self.lock:
            e = explain_batch(self.predictor, x) if explain else None
            probs = e.probs[0] if e else self.predictor.predict_proba(x)[0]
        out = answer(probs, self.predictor.class_names, self.top_k)
        if e is not None:
            out["explanation"] = explanation_json(self.predictor, x[0], e, data)
        return out


def explanation_json(predictor: Any, image: np.ndarray, e: Any, data: bytes) -> dict[str, Any]:
    """The overlay as a data URL, the class explained and the peak in the upload's pixels."""
    import base64
    import io

    from imgclf.explain import original_size, overlay, peak, png_bytes, to_original

    names, c = predictor.class_names, e.classes[0]
    png = png_bytes(overlay(image, e.cams[0], f"{names[c]} {e.probs[0][c]:.2f}"))
    x, y = to_original(*peak(e.cams[0]), *original_size(io.BytesIO(data)), predictor.pre.size)
    return {
        "png": "data:image/png;base64," + base64.b64encode(png).decode(),
        "class": names[c],
        "peak_xy": [round(x, 1), round(y, 1)],
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
) -> FastAPI:
    """allowed_hosts: Host header values served (default: this machine's loopback names); tta:
    flip TTA (None: as the run was trained); max_requests: in flight, then 503; calibrated:
    the run's fitted temperature on the probabilities."""
    predictor = load_predictor(run, device, tta, calibrated)
    classifier = Classifier(predictor, max_pixels, max_decodes, top_k)
    app = _guarded_app(predictor, allowed_hosts or LOCAL_HOSTS, max_requests)
    page = files("imgclf.serve").joinpath("static/index.html").read_text()

    @app.get("/health")
    def health() -> dict[str, Any]:
        return health_info(predictor, max_bytes, max_pixels)

    @app.post("/predict", openapi_extra=UPLOAD_SCHEMA)
    async def predict(request: Request, explain: bool = False) -> dict[str, Any]:
        """An image as multipart form field `file`, or as the raw request body; `?explain=1`
        adds its Grad-CAM overlay (PNG data URL), the class explained and the map's peak."""
        body = await read_limited(request, max_bytes, upload_timeout)
        ctype = request.headers.get("content-type", "")
        # parsing, decoding and inference are CPU work: off the event loop, so uploads keep
        # streaming and /health answers
        return await run_in_threadpool(classifier.answer, body, ctype, explain)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    return app
