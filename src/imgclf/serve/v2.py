"""The Open Inference Protocol's routes (KServe v2 / Triton HTTP) beside /predict: health, server
and model metadata, and POST /v2/models/{name}[/versions/{v}]/infer, whose images go through
the same dynamic batcher, limits and decoding as uploads (serve/oip.py reads the tensors).

Errors are `{"error": "..."}`, as the protocol has them: 400 for a request the model cannot take
(a bad tensor, an image that does not decode or has too many pixels), 404 for another model's
name; the transport's own limits keep their codes (413 body too large, 408 too slow, 503 busy).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from imgclf import __version__
from imgclf.serve.classify import Classifier
from imgclf.serve.oip import HEADER, ModelIO, TensorError, encode_response, parse_request
from imgclf.serve.uploads import read_limited

EXTENSIONS = ["binary_tensor_data", "classification"]
PROBES = ("/v2/health/live", "/v2/health/ready")
TRANSPORT = (408, 413, 503)  # the server's limits, not the request's content


class Served:
    """The one model this server serves under the protocol: its name, tensors and metadata."""

    def __init__(self, name: str, io: ModelIO, platform: str, parameters: dict[str, Any]):
        self.name, self.io, self.platform, self.parameters = name, io, platform, parameters

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": ["1"],
            "platform": self.platform,
            "inputs": self.io.inputs(),
            "outputs": self.io.outputs(),
            "parameters": self.parameters,
        }

    def check(self, name: str, version: str | None) -> None:
        if name != self.name:
            raise HTTPException(404, f"unknown model {name!r}; this server serves {self.name!r}")
        if version not in (None, "", "1"):
            raise HTTPException(404, f"model {name!r} has version 1 only, not {version!r}")


def error(e: HTTPException) -> JSONResponse:
    status = e.status_code if e.status_code in TRANSPORT or e.status_code == 404 else 400
    return JSONResponse({"error": str(e.detail)}, status, headers=e.headers)


class InferEndpoint:
    """POST .../infer as a plain ASGI endpoint (as /predict is: the event loop's time is the
    server's ceiling on a small CPU)."""

    def __init__(self, c: Classifier, served: Served, limits: tuple[int, float], max_images: int):
        self.classifier, self.served, self.limits = c, served, limits
        self.max_images = max_images

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        try:
            params = request.path_params
            self.served.check(params["name"], params.get("version"))
            with self.classifier.reading():
                body = await read_limited(request, *self.limits)
            response = await self._infer(body, request.headers.get(HEADER))
        except HTTPException as e:
            response = error(e)
        await response(scope, receive, send)

    async def _infer(self, body: bytes, header_length: str | None) -> Response:
        pre = self.classifier.predictor.pre
        try:
            req = parse_request(body, header_length, self.served.io, pre, self.max_images)
        except TensorError as e:
            raise HTTPException(400, str(e)) from None
        try:
            probs = await self.classifier.probabilities(req.items)
        except HTTPException as e:
            if e.status_code == 503:  # the queue is full: the request may come back
                raise
            raise HTTPException(400, f"an input image: {e.detail}") from None
        content, headers = encode_response(probs, req, self.served.name, self.served.io)
        return Response(content, 200, headers=headers)


def add_v2_routes(
    app: FastAPI, c: Classifier, served: Served, limits: tuple[int, float], max_images: int
) -> None:
    """limits: (bytes a request, seconds to send it); max_images: images in one request."""

    @app.get("/v2")
    def server_metadata() -> dict[str, Any]:
        return {"name": "imgclf", "version": __version__, "extensions": EXTENSIONS}

    @app.get("/v2/health/live")
    def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    def ready() -> JSONResponse:
        full = c.batcher.full()  # as /ready: a full queue takes no more work
        return JSONResponse({"ready": not full}, 503 if full else 200)

    def metadata(name: str, version: str | None = None) -> JSONResponse:
        try:
            served.check(name, version)
        except HTTPException as e:
            return error(e)
        return JSONResponse(served.metadata())

    def model_ready(name: str, version: str | None = None) -> JSONResponse:
        try:
            served.check(name, version)
        except HTTPException as e:
            return error(e)
        return JSONResponse({"name": name, "ready": True})

    for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        app.add_api_route(base, metadata, methods=["GET"], summary="Model metadata")
        app.add_api_route(base + "/ready", model_ready, methods=["GET"], summary="Model ready")
        infer = InferEndpoint(c, served, limits, max_images)
        app.router.add_route(base + "/infer", infer, methods=["POST"])
