"""The Open Inference Protocol's tensors (KServe v2, Triton's HTTP/REST): an infer request read
into images for the batcher, and the probabilities written back, as JSON or with Triton's binary
tensor data extension (a JSON header of `Inference-Header-Content-Length` bytes, then each
tensor's raw bytes in order, sized by its `binary_data_size`), which tritonclient sends by default.

The model's inputs (a request brings exactly one of them, a batch of n):
- `image`, BYTES [n] (or [n, 1]): encoded images (JPEG, PNG, ...), decoded and bounded exactly
  as a /predict upload is; raw bytes in binary data, base64 strings in JSON (which holds only
  UTF-8: tritonclient and the kserve client both refuse raw bytes there);
- `pixels`, UINT8 [n, size, size, 3]: images already resized and centre-cropped, RGB;
- `input`, FP32 in the layout of the run's ONNX export: the tensor preprocess.json describes
  (normalised), which a client of the exported model already builds.
Its output: `probabilities`, FP32 [n, classes] (calibrated, as /predict's); with Triton's
classification extension (`parameters.classification: k`) BYTES [n, k] of "score:index:label".
A multi-label run gives `labels` too, BOOL [n, classes]: each class's probability at or above the
threshold fitted on validation (the metadata's parameters list them), so a client need not
re-implement the decision.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from imgclf.data.presets import Preprocess

HEADER = "Inference-Header-Content-Length"
OUTPUT = "probabilities"
LABELS = "labels"
NUMPY = {"UINT8": np.uint8, "FP32": np.float32}


class TensorError(ValueError):
    """A request the protocol cannot read: answered with 400 and this one line."""


@dataclass(frozen=True)
class ModelIO:
    """What the served model takes and gives, as the metadata endpoint states it."""

    size: int
    layout: str  # of the FP32 `input`: NCHW (a PyTorch export) or NHWC (Keras)
    class_names: tuple[str, ...]
    thresholds: tuple[float, ...] | None = None  # a multi-label run's, per class

    def inputs(self) -> list[dict[str, Any]]:
        s = self.size
        chw = [-1, 3, s, s] if self.layout == "NCHW" else [-1, s, s, 3]
        return [
            {"name": "image", "datatype": "BYTES", "shape": [-1]},
            {"name": "pixels", "datatype": "UINT8", "shape": [-1, s, s, 3]},
            {"name": "input", "datatype": "FP32", "shape": chw},
        ]

    def outputs(self) -> list[dict[str, Any]]:
        shape = [-1, len(self.class_names)]
        out = [{"name": OUTPUT, "datatype": "FP32", "shape": shape}]
        if self.thresholds is not None:
            out.append({"name": LABELS, "datatype": "BOOL", "shape": shape})
        return out


@dataclass(frozen=True)
class Requested:
    """One output a request asks for: binary or JSON, and top-k strings (0: probabilities)."""

    binary: bool
    classification: int = 0
    name: str = OUTPUT


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    items: list[Any]  # per image: (encoded bytes, "") to decode, or a callable -> uint8/float HWC
    outputs: list[Requested]


def split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """(the JSON header, the binary data after it)."""
    head, binary = body, b""
    if header_length is not None:
        if not header_length.strip().isdigit():
            raise TensorError(f"{HEADER} must be a number of bytes, got {header_length!r}")
        n = int(header_length)
        if n > len(body):
            raise TensorError(f"{HEADER} is {n:,} bytes, past the body's {len(body):,}")
        head, binary = body[:n], body[n:]
    try:
        request = json.loads(head)
    except (ValueError, UnicodeDecodeError) as e:
        raise TensorError(f"the inference request is not JSON: {e}") from None
    if not isinstance(request, dict):
        raise TensorError("the inference request must be a JSON object")
    return request, binary


def parse_request(
    body: bytes, header_length: str | None, io: ModelIO, pre: Preprocess, max_images: int
) -> InferRequest:
    request, binary = split_body(body, header_length)
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        names = ", ".join(t["name"] for t in io.inputs())
        raise TensorError(f"send exactly one input tensor (one of {names})")
    items, used = _items(inputs[0], binary, io, pre, max_images)
    if used != len(binary):
        raise TensorError(f"{len(binary) - used:,} bytes of binary data follow the input tensors")
    rid = request.get("id")
    return InferRequest(None if rid is None else str(rid), items, _outputs(request, io))


def _items(
    t: dict[str, Any], binary: bytes, io: ModelIO, pre: Preprocess, max_images: int
) -> tuple[list[Any], int]:
    """The batcher's items for one input tensor, and the binary bytes it took."""
    declared = {d["name"]: d for d in io.inputs()}
    name = t.get("name")
    if name not in declared:
        raise TensorError(f"unknown input {name!r}; this model takes {', '.join(declared)}")
    want = declared[name]
    if t.get("datatype") != want["datatype"]:
        raise TensorError(f"input {name!r} is {want['datatype']}, got {t.get('datatype')!r}")
    shape = _shape(name, t.get("shape"), want["shape"])
    if shape[0] > max_images:
        raise TensorError(f"input {name!r} holds {shape[0]} images; at most {max_images} a request")
    size = (t.get("parameters") or {}).get("binary_data_size")
    raw = _binary(name, binary, size) if size is not None else None
    if name == "image":
        images = _bytes_elements(name, raw) if raw is not None else _base64_elements(t)
        if len(images) != shape[0]:
            raise TensorError(f"input {name!r}: shape {shape} but {len(images)} images")
        return [(b, "") for b in images], len(raw or b"")
    array = _numeric(name, t, raw, shape, NUMPY[want["datatype"]])
    if name == "pixels":
        return [_const(row) for row in array], len(raw or b"")
    return [_denormalised(row, pre, io.layout) for row in array], len(raw or b"")


def _shape(name: str, shape: Any, want: list[int]) -> list[int]:
    ok = isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)
    if ok and name == "image" and len(shape) == 2 and shape[1] == 1:
        shape = shape[:1]  # [n, 1]: one image a row, as Triton's examples send them
    fits = ok and len(shape) == len(want)
    if not fits or any(w not in (-1, d) for d, w in zip(shape, want, strict=True)):
        raise TensorError(f"input {name!r} has shape {shape}; expected {want} (-1: the batch)")
    if shape[0] == 0:
        raise TensorError(f"input {name!r} holds no images")
    return shape


def _binary(name: str, binary: bytes, size: Any) -> bytes:
    if not isinstance(size, int) or size < 0:
        raise TensorError(f"input {name!r}: binary_data_size must be a byte count, got {size!r}")
    if size > len(binary):
        raise TensorError(
            f"input {name!r}: binary_data_size is {size:,} bytes but {len(binary):,} were sent"
        )
    return binary[:size]


def _bytes_elements(name: str, raw: bytes) -> list[bytes]:
    """Triton's BYTES serialisation: each element a 4-byte little-endian length, then its bytes."""
    out, at = [], 0
    while at < len(raw):
        if at + 4 > len(raw):
            raise TensorError(f"input {name!r}: a BYTES element's length is cut short")
        (n,) = struct.unpack_from("<I", raw, at)
        if at + 4 + n > len(raw):
            raise TensorError(f"input {name!r}: a BYTES element of {n:,} bytes is cut short")
        out.append(raw[at + 4 : at + 4 + n])
        at += 4 + n
    return out


def _base64_elements(t: dict[str, Any]) -> list[bytes]:
    data = t.get("data")
    flat = list(np.asarray(data, dtype=object).ravel()) if isinstance(data, list) else None
    if not flat or not all(isinstance(s, str) for s in flat):
        raise TensorError("input 'image' in JSON: data must be a list of base64 strings")
    try:
        return [base64.b64decode(s, validate=True) for s in flat]
    except (binascii.Error, ValueError):
        raise TensorError("input 'image' in JSON: an element is not base64") from None


def _numeric(
    name: str, t: dict[str, Any], raw: bytes | None, shape: list[int], dtype: type
) -> np.ndarray:
    count = int(np.prod(shape))
    if raw is not None:
        if len(raw) != count * np.dtype(dtype).itemsize:
            raise TensorError(
                f"input {name!r}: shape {shape} needs {count * np.dtype(dtype).itemsize:,} "
                f"bytes, binary_data_size gives {len(raw):,}"
            )
        return np.frombuffer(raw, dtype).reshape(shape)
    try:
        array = np.asarray(t.get("data"), dtype=dtype)
    except (TypeError, ValueError, OverflowError):
        raise TensorError(f"input {name!r}: data must be a list of numbers") from None
    if array.size != count:
        raise TensorError(f"input {name!r}: shape {shape} but {array.size:,} values")
    if dtype is np.float32 and not np.isfinite(array).all():
        raise TensorError(f"input {name!r}: values must be finite")
    return array.reshape(shape)


def _const(row: np.ndarray) -> Callable[[], np.ndarray]:
    return lambda: row


def _denormalised(row: np.ndarray, pre: Preprocess, layout: str) -> Callable[[], np.ndarray]:
    """The export's normalised tensor back to float pixels (HWC, 0-255) for the batcher's
    models, which normalise again: one rule, and the same rows as a decoded upload's (round
    trip error ~1e-5 of a pixel). Done by the batcher's worker, off the event loop."""

    def pixels() -> np.ndarray:
        hwc = row.transpose(1, 2, 0) if layout == "NCHW" else row
        std, mean = np.asarray(pre.std, np.float32), np.asarray(pre.mean, np.float32)
        return (hwc * (std * 255) + mean * 255).astype(np.float32)

    return pixels


def _outputs(request: dict[str, Any], io: ModelIO) -> list[Requested]:
    """The outputs asked for; none named: all of the model's, binary if binary_data_output."""
    params = request.get("parameters") or {}
    asked = request.get("outputs")
    names = [t["name"] for t in io.outputs()]
    if asked is None:
        return [Requested(bool(params.get("binary_data_output", False)), 0, n) for n in names]
    if not isinstance(asked, list) or not asked:
        raise TensorError("outputs must be a list of {name, parameters}")
    out = []
    for o in asked:
        if not isinstance(o, dict) or o.get("name") not in names:
            name = o.get("name") if isinstance(o, dict) else o
            raise TensorError(f"unknown output {name!r}; this model gives {', '.join(names)}")
        p = o.get("parameters") or {}
        k = p.get("classification", 0)
        if not isinstance(k, int) or k < 0 or (k and o["name"] != OUTPUT):
            raise TensorError(f"classification must be a count of classes of {OUTPUT}, got {k!r}")
        out.append(Requested(bool(p.get("binary_data", False)), k, o["name"]))
    return out


def encode_response(
    probs: np.ndarray, request: InferRequest, model: str, io: ModelIO
) -> tuple[bytes, dict[str, str]]:
    """(body, headers): the JSON response, then binary tensors in output order when asked."""
    outputs, chunks = [], []
    for want in request.outputs:
        tensor: dict[str, Any] = {"name": want.name}
        if want.name == LABELS:  # BOOL: one byte per element in binary data, true/false in JSON
            values: Any = probs >= np.asarray(io.thresholds, np.float32)
            tensor.update(datatype="BOOL", shape=list(values.shape))
        elif want.classification:
            values = _classification(probs, list(io.class_names), want.classification)
            tensor.update(datatype="BYTES", shape=list(values.shape))
        else:
            values = probs.astype(np.float32)
            tensor.update(datatype="FP32", shape=list(values.shape))
        if want.binary:
            raw = _serialise(values)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = values.ravel().tolist()  # str for BYTES, float for FP32
        outputs.append(tensor)
    head: dict[str, Any] = {"model_name": model, "model_version": "1", "outputs": outputs}
    if request.id is not None:
        head["id"] = request.id
    text = json.dumps(head).encode()
    if not chunks:
        return text, {"content-type": "application/json"}
    headers = {"content-type": "application/octet-stream", HEADER: str(len(text))}
    return b"".join([text, *chunks]), headers


def _classification(probs: np.ndarray, names: list[str], k: int) -> np.ndarray:
    """Triton's classification extension: the top k of each row as "score:index:label"."""
    k = min(k, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    rows = [[f"{p[i]:f}:{i}:{names[i]}" for i in top] for p, top in zip(probs, order, strict=True)]
    return np.array(rows, dtype=object)


def _serialise(values: np.ndarray) -> bytes:
    if values.dtype != object:
        return np.ascontiguousarray(values).tobytes()
    parts = [s.encode() for s in values.ravel()]
    return b"".join(struct.pack("<I", len(p)) + p for p in parts)
