"""POST /predict as a plain ASGI endpoint (the other routes stay FastAPI's).

The event loop is one thread that parses every request and hands every upload to the batcher's
workers, beside them on the same cores. Measured on 2 cores (benchmarks/RESULTS.md), FastAPI's
per-request machinery (dependency solving, response validation and serialisation) cost the loop
as much as the rest of the request; here the request is read, answered and its errors turned
into the same `{"detail": ...}` JSON with a few calls. The OpenAPI page still describes it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from imgclf.serve.classify import Classifier
from imgclf.serve.uploads import read_limited

TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
BINARY = {"schema": {"type": "string", "format": "binary"}}
UPLOAD = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "properties": {"file": {"type": "string", "format": "binary"}},
            "required": ["file"],
        }
    },
    "application/octet-stream": BINARY,
    "image/jpeg": BINARY,
}


class PredictEndpoint:
    def __init__(self, classifier: Classifier, max_bytes: int, upload_timeout: float):
        self.classifier, self.max_bytes, self.upload_timeout = (
            classifier,
            max_bytes,
            upload_timeout,
        )

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        try:
            explain = flag(request.query_params.get("explain", "0"))
            with self.classifier.reading():
                body = await read_limited(request, self.max_bytes, self.upload_timeout)
            ctype = request.headers.get("content-type", "")
            out = await self.classifier.answer(body, ctype, explain)
            response = JSONResponse(out)
        except HTTPException as e:
            response = JSONResponse({"detail": e.detail}, e.status_code, headers=e.headers)
        await response(scope, receive, send)


def flag(value: str) -> bool:
    """A query flag as FastAPI reads a bool: 1/0, true/false, yes/no, on/off."""
    low = value.lower()
    if low not in TRUE + FALSE:
        raise HTTPException(422, f"explain: expected 1, 0, true or false, got {value!r}")
    return low in TRUE


def document_predict(app: FastAPI) -> None:
    """Describe POST /predict in the app's OpenAPI schema (FastAPI documents its own routes)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema["paths"]["/predict"] = {"post": PREDICT_DOC}
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


PREDICT_DOC = {
    "summary": "Classify an image",
    "description": "An image as multipart form field `file`, or as the raw request body; "
    "`?explain=1` adds its Grad-CAM overlay (PNG data URL), the class explained and the map's "
    "peak. 503 with Retry-After when the queue is full.",
    "parameters": [
        {"name": "explain", "in": "query", "required": False, "schema": {"type": "boolean"}}
    ],
    "requestBody": {"content": UPLOAD, "required": True},
    "responses": {
        "200": {"description": "the top classes and their probabilities"},
        "413": {"description": "too many bytes or pixels"},
        "415": {"description": "not an image"},
        "422": {"description": "an image that cannot be decoded"},
        "503": {"description": "busy: try again after Retry-After seconds"},
    },
}
