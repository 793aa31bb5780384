"""The Open Inference Protocol routes against the real app and a real (tiny) trained model: the
same probabilities as /predict from every kind of input tensor, JSON and binary, and one clear
400 for every malformed request (the real clients' tests are in tests/e2e/test_serve_clients.py).
"""

from __future__ import annotations

import base64
import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import draw_shape, tiny_run

INFER = "/v2/models/shapes/infer"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("v2"))


def _client(run_dir: Path, **limits: object) -> TestClient:
    from imgclf.serve.app import create_app
    from imgclf.serve.config import ServeConfig

    cfg = ServeConfig(str(run_dir), model_name="shapes", max_request_images=8, **limits)
    return TestClient(create_app(cfg), base_url="http://localhost")


@pytest.fixture(scope="module")
def client(run_dir: Path) -> TestClient:
    return _client(run_dir)


def _png(seed: int, colour: tuple[int, int, int] = (200, 60, 40)) -> bytes:
    buf = io.BytesIO()
    draw_shape(colour, seed, 48).save(buf, "PNG")
    return buf.getvalue()


def _predict(client: TestClient, png: bytes) -> np.ndarray:
    """/predict's probabilities in class order (its top 3 of 3 classes)."""
    names = client.get("/health").json()["classes"]
    top = client.post("/predict", content=png, headers={"content-type": "image/png"}).json()
    by = {t["class"]: t["probability"] for t in top["top"]}
    return np.array([by[n] for n in names])


def _pixels(png: bytes, size: int = 32) -> np.ndarray:
    from imgclf.serve.uploads import decode_upload

    return decode_upload(png, size)


def _tensor(name: str, datatype: str, array: np.ndarray | list) -> dict:
    a = np.asarray(array)
    return {"name": name, "datatype": datatype, "shape": list(a.shape), "data": a.ravel().tolist()}


def _infer(client: TestClient, body: dict | bytes, **headers: str):  # noqa: ANN202
    if isinstance(body, dict):
        return client.post(INFER, json=body)
    return client.post(INFER, content=body, headers=headers)


def _probs(response) -> np.ndarray:  # noqa: ANN001
    out = response.json()["outputs"][0]
    assert out["name"] == "probabilities" and out["datatype"] == "FP32"
    return np.array(out["data"], np.float32).reshape(out["shape"])


def test_health_server_and_model_metadata(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    server = client.get("/v2").json()
    assert server["name"] == "imgclf" and "binary_tensor_data" in server["extensions"]
    meta = client.get("/v2/models/shapes").json()
    assert meta == client.get("/v2/models/shapes/versions/1").json()
    assert {t["name"]: (t["datatype"], t["shape"]) for t in meta["inputs"]} == {
        "image": ("BYTES", [-1]),
        "pixels": ("UINT8", [-1, 32, 32, 3]),
        "input": ("FP32", [-1, 3, 32, 32]),  # the ONNX export's own input
    }
    assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]
    assert meta["parameters"]["precision"] == "float32"
    assert client.get("/v2/models/shapes/ready").json()["ready"] is True
    for path in ("/v2/models/other", "/v2/models/shapes/versions/2/ready"):
        r = client.get(path)
        assert r.status_code == 404 and "shapes" in r.json()["error"]


def test_every_input_kind_gives_predicts_probabilities(client: TestClient, run_dir: Path) -> None:
    pngs = [_png(1), _png(2, (40, 60, 200))]
    want = np.stack([_predict(client, p) for p in pngs])
    encoded = [base64.b64encode(p).decode() for p in pngs]
    by_bytes = _infer(client, {"inputs": [_tensor("image", "BYTES", encoded)], "id": "r1"})
    assert by_bytes.status_code == 200 and by_bytes.json()["id"] == "r1"
    pixels = np.stack([_pixels(p) for p in pngs])
    by_pixels = _infer(client, {"inputs": [_tensor("pixels", "UINT8", pixels)]})
    from imgclf.data.presets import Preprocess

    pre = Preprocess.from_dict(json.loads((run_dir / "meta.json").read_text())["preprocess"])
    normalised = pre.normalize(pixels, channels_first=True)
    by_input = _infer(client, {"inputs": [_tensor("input", "FP32", normalised)]})
    for r in (by_bytes, by_pixels, by_input):
        np.testing.assert_allclose(_probs(r), want, atol=1e-5)


def _binary_request(tensor: dict, raw: bytes, outputs: list | None = None) -> tuple[bytes, str]:
    head = {"inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}]}
    head.update({"outputs": outputs} if outputs else {"parameters": {"binary_data_output": True}})
    text = json.dumps(head).encode()
    return text + raw, str(len(text))


def test_binary_tensors_in_and_out_and_classification(client: TestClient) -> None:
    png = _png(3)
    want = _predict(client, png)
    raw = struct.pack("<I", len(png)) + png
    body, n = _binary_request({"name": "image", "datatype": "BYTES", "shape": [1, 1]}, raw)
    r = _infer(client, body, **{"Inference-Header-Content-Length": n})
    assert r.status_code == 200
    head_len = int(r.headers["inference-header-content-length"])
    head = json.loads(r.content[:head_len])
    assert head["outputs"][0]["parameters"]["binary_data_size"] == 12
    np.testing.assert_allclose(np.frombuffer(r.content[head_len:], np.float32), want, atol=1e-5)
    ask = [{"name": "probabilities", "parameters": {"classification": 2}}]
    body, n = _binary_request({"name": "image", "datatype": "BYTES", "shape": [1]}, raw, ask)
    top = _infer(client, body, **{"Inference-Header-Content-Length": n}).json()["outputs"][0]
    names = client.get("/health").json()["classes"]
    best = int(np.argmax(want))
    assert top["shape"] == [1, 2] and top["data"][0].endswith(f":{best}:{names[best]}")
    assert float(top["data"][0].split(":")[0]) == pytest.approx(want[best], abs=1e-5)


MALFORMED = {
    "wrong shape": ({"inputs": [_tensor("pixels", "UINT8", np.zeros((1, 16, 16, 3)))]}, "shape"),
    "wrong datatype": ({"inputs": [_tensor("pixels", "FP32", np.zeros((1, 32, 32, 3)))]}, "UINT8"),
    "too few values": (
        {"inputs": [{"name": "pixels", "datatype": "UINT8", "shape": [1, 32, 32, 3], "data": [1]}]},
        "values",
    ),
    "unknown input": ({"inputs": [_tensor("photo", "BYTES", ["aGk="])]}, "unknown input"),
    "two inputs": ({"inputs": [_tensor("image", "BYTES", ["aGk="])] * 2}, "exactly one"),
    "not base64": ({"inputs": [_tensor("image", "BYTES", ["not base64!"])]}, "base64"),
    "not an image": ({"inputs": [_tensor("image", "BYTES", ["aGVsbG8="])]}, "not an image"),
    "over the batch limit": (
        {"inputs": [_tensor("pixels", "UINT8", np.zeros((9, 32, 32, 3), np.uint8))]},
        "at most 8",
    ),
    "unknown output": (
        {"inputs": [_tensor("image", "BYTES", ["aGk="])], "outputs": [{"name": "logits"}]},
        "unknown output",
    ),
    "not finite": (
        {"inputs": [_tensor("input", "FP32", np.full((1, 3, 32, 32), np.inf).tolist())]},
        "finite",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_json_requests_get_400_with_one_line(client: TestClient, case: str) -> None:
    body, words = MALFORMED[case]
    r = client.post(INFER, content=json.dumps(body).replace("Infinity", "1e999"))
    assert r.status_code == 400, r.text
    msg = r.json()["error"]
    assert words in msg and "\n" not in msg


def test_malformed_binary_requests_get_400_and_the_server_goes_on(client: TestClient) -> None:
    png = _png(4)
    raw = struct.pack("<I", len(png)) + png
    tensor = {"name": "image", "datatype": "BYTES", "shape": [1]}
    body, n = _binary_request(tensor, raw)
    cases = {
        "past the body": (body, str(len(body) + 1), "past the body"),
        "short buffer": (body[:-10], n, "were sent"),
        "element cut short": (
            _binary_request(tensor, struct.pack("<I", 10_000) + png)[0],
            n,
            "cut short",
        ),
        "bytes left over": (body + b"xx", n, "follow the input"),
        "not a number": (body, "12abc", "number of bytes"),
        "not JSON": (b"\xff" * 20, "10", "not JSON"),
    }
    for name, (content, length, words) in cases.items():
        r = _infer(client, content, **{"Inference-Header-Content-Length": length})
        assert r.status_code == 400 and words in r.json()["error"], (name, r.text)
    ok = _infer(client, body, **{"Inference-Header-Content-Length": n})
    assert ok.status_code == 200 and client.get("/v2/health/ready").status_code == 200


def test_the_upload_limits_hold_for_protocol_requests(run_dir: Path) -> None:
    small = _client(run_dir, max_upload_mb=2000 / 2**20, max_queue=2)
    big = {"inputs": [_tensor("image", "BYTES", [base64.b64encode(b"x" * 3000).decode()])]}
    r = small.post(INFER, json=big)
    assert r.status_code == 413 and "limit" in r.json()["error"]
    pixels = np.zeros((8, 32, 32, 3), np.uint8)
    queue = _client(run_dir, max_queue=2)
    r = queue.post(INFER, json={"inputs": [_tensor("pixels", "UINT8", pixels)]})
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    one = queue.post(INFER, json={"inputs": [_tensor("pixels", "UINT8", pixels[:1])]})
    assert one.status_code == 200  # what was queued of the refused request was withdrawn
    wide = Image.new("RGB", (3000, 3000))
    buf = io.BytesIO()
    wide.save(buf, "PNG")
    many = _client(run_dir, max_megapixels=1.0)
    r = many.post(
        INFER,
        json={"inputs": [_tensor("image", "BYTES", [base64.b64encode(buf.getvalue()).decode()])]},
    )
    assert r.status_code == 400 and "pixels" in r.json()["error"]


def test_protocol_routes_are_counted_by_route(client: TestClient) -> None:
    client.get("/v2/models/shapes")
    text = client.get("/metrics").text
    assert 'path="/v2/models/{name}"' in text and 'path="/v2/models/{name}/infer"' in text
