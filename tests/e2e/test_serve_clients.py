"""`imgclf serve` with the Open Inference Protocol's real clients: tritonclient (HTTP, binary and
JSON) and the kserve SDK's REST client, against a real server process, on real photos (the
CATS_DOGS test split when ../shared is there, else generated JPEGs)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import CATS_DOGS, make_folder, run_cli
from test_serve import start_server

MODEL = "shapes"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    tmp = tmp_path_factory.mktemp("clients")
    data = make_folder(tmp / "d", {"train": 8, "test": 4})
    run = tmp / "run"
    train = ["train", str(data), "--model", "cnn", "--image-size", "32", "--epochs", "3"]
    run_cli(*train, "--batch-size", "8", "--workers", "1", "--out", str(run))
    proc, url, log = start_server(run, tmp / "server.log", "--model-name", MODEL)
    yield url, run
    proc.terminate()
    proc.wait(10)
    log.close()


def _photos(n: int = 3) -> list[bytes]:
    if CATS_DOGS.is_dir():
        files = sorted((CATS_DOGS / "test" / "CAT").iterdir())[:2]
        files += sorted((CATS_DOGS / "test" / "DOG").iterdir())[: n - 2]
        return [f.read_bytes() for f in files]
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (375, 500, 3), np.uint8)).save(buf, "JPEG")
        out.append(buf.getvalue())
    return out


def _predict(url: str, photos: list[bytes]) -> np.ndarray:
    """/predict's probabilities, in class order (top 3 of the 3 classes)."""
    names = httpx.get(url + "/health").json()["classes"]
    rows = []
    for p in photos:
        top = httpx.post(url + "/predict", content=p, headers={"content-type": "image/jpeg"})
        by = {t["class"]: t["probability"] for t in top.json()["top"]}
        rows.append([by[n] for n in names])
    return np.array(rows)


def _hostport(url: str) -> str:
    return url.removeprefix("http://")


def test_tritonclient_binary_and_json_match_predict(server) -> None:  # noqa: ANN001
    import tritonclient.http as triton

    url, _ = server
    photos = _photos()
    want = _predict(url, photos)
    client = triton.InferenceServerClient(_hostport(url))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
    meta = client.get_model_metadata(MODEL)
    assert [i["name"] for i in meta["inputs"]] == ["image", "pixels", "input"]
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]

    binary = triton.InferInput("image", [len(photos)], "BYTES")
    binary.set_data_from_numpy(np.array(photos, dtype=object))  # binary: tritonclient's default
    got = client.infer(MODEL, [binary]).as_numpy("probabilities")
    np.testing.assert_allclose(got, want, atol=1e-5)

    as_json = triton.InferInput("image", [len(photos), 1], "BYTES")
    encoded = np.array([[base64.b64encode(p)] for p in photos], dtype=object)
    as_json.set_data_from_numpy(encoded, binary_data=False)
    outputs = [triton.InferRequestedOutput("probabilities", binary_data=False)]
    result = client.infer(MODEL, [as_json], outputs=outputs, request_id="7")
    np.testing.assert_allclose(result.as_numpy("probabilities"), want, atol=1e-5)
    assert result.get_response()["id"] == "7"

    top = [triton.InferRequestedOutput("probabilities", class_count=2)]
    labels = client.infer(MODEL, [binary], outputs=top).as_numpy("probabilities")
    names = httpx.get(url + "/health").json()["classes"]
    for row, probs in zip(labels, want, strict=True):
        score, index, label = row[0].decode().split(":")
        assert int(index) == probs.argmax() and label == names[int(index)]
        assert float(score) == pytest.approx(probs.max(), abs=1e-5)


def test_tritonclient_sends_pixels_and_the_exports_input(server) -> None:  # noqa: ANN001
    import tritonclient.http as triton

    from imgclf.data.presets import Preprocess
    from imgclf.serve.uploads import decode_upload

    url, run = server
    photos = _photos()
    want = _predict(url, photos)
    pixels = np.stack([decode_upload(p, 32) for p in photos])
    client = triton.InferenceServerClient(_hostport(url))
    t = triton.InferInput("pixels", list(pixels.shape), "UINT8")
    t.set_data_from_numpy(pixels)
    np.testing.assert_allclose(client.infer(MODEL, [t]).as_numpy("probabilities"), want, atol=1e-5)
    pre = Preprocess.from_dict(json.loads((run / "meta.json").read_text())["preprocess"])
    x = pre.normalize(pixels, channels_first=True)  # as preprocess.json tells a client
    t = triton.InferInput("input", list(x.shape), "FP32")
    t.set_data_from_numpy(x)
    np.testing.assert_allclose(client.infer(MODEL, [t]).as_numpy("probabilities"), want, atol=1e-5)


def test_the_kserve_rest_client_matches_predict(server) -> None:  # noqa: ANN001
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    from imgclf.serve.uploads import decode_upload

    url, _ = server
    photos = _photos()
    want = _predict(url, photos)
    pixels = np.stack([decode_upload(p, 32) for p in photos])

    async def talk() -> tuple[bool, bool, list[np.ndarray]]:
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        try:
            live = await client.is_server_live(url)
            ready = await client.is_model_ready(url, MODEL)
            as_json = InferInput("pixels", list(pixels.shape), "UINT8")
            as_json.set_data_from_numpy(pixels, binary_data=False)
            a = await client.infer(url, InferRequest(MODEL, [as_json]), model_name=MODEL)
            raw = InferInput("image", [len(photos)], "BYTES")
            raw.set_data_from_numpy(np.array(photos, dtype=object), binary_data=True)
            b = await client.infer(url, InferRequest(MODEL, [raw]), model_name=MODEL)
            encoded = np.array([base64.b64encode(p) for p in photos], dtype=object)
            text = InferInput("image", [len(photos)], "BYTES")
            text.set_data_from_numpy(encoded, binary_data=False)
            c = await client.infer(url, InferRequest(MODEL, [text]), model_name=MODEL)
            return live, ready, [r.outputs[0].as_numpy() for r in (a, b, c)]
        finally:
            await client.close()

    live, ready, answers = asyncio.run(talk())
    assert live and ready
    for got in answers:
        np.testing.assert_allclose(got, want, atol=1e-5)


def _raw(url: str, request: bytes) -> bytes:
    """Send bytes as they are (a client that lies about its lengths) and read the answer."""
    host, port = _hostport(url).split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_lying_lengths_get_400_and_never_stall_the_server(server) -> None:  # noqa: ANN001
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    url, _ = server
    photo = _photos(3)[0]
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "datatype": "BYTES",
                    "shape": [1],
                    "parameters": {"binary_data_size": len(photo) + 4},
                }
            ]
        }
    ).encode()
    lies = {
        "header length past the body": (str(len(head) + len(photo) + 99), head + photo),
        "short binary buffer": (str(len(head)), head + photo[:100]),
    }
    for name, (length, body) in lies.items():
        request = (
            f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            f"Inference-Header-Content-Length: {length}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        answer = _raw(url, request)
        assert answer.startswith(b"HTTP/1.1 400"), (name, answer[:200])
        assert b'"error"' in answer
    client = triton.InferenceServerClient(_hostport(url))
    bad = triton.InferInput("pixels", [1, 8, 8, 3], "UINT8")
    bad.set_data_from_numpy(np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(InferenceServerException, match="shape"):
        client.infer(MODEL, [bad])
    assert client.is_server_ready()
    good = triton.InferInput("image", [1], "BYTES")
    good.set_data_from_numpy(np.array([photo], dtype=object))
    assert client.infer(MODEL, [good]).as_numpy("probabilities").shape == (1, 3)
