"""The REST API against the real app and a real (tiny) trained model."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import tiny_run
from test_audit import _png_header_only


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def client(run_dir: Path) -> TestClient:
    from imgclf.serve.app import create_app
    from imgclf.serve.config import ServeConfig

    return TestClient(
        create_app(ServeConfig(str(run_dir), max_upload_mb=200_000 / 2**20)),
        base_url="http://localhost",
    )


def _png(colour: tuple[int, int, int], size: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, "PNG")
    return buf.getvalue()


def test_health_and_page_and_docs(client: TestClient) -> None:
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["classes"] == ["blue", "green", "red"]
    assert 0.05 <= h["temperature"] <= 20  # the run's calibration, applied to every answer
    page = client.get("/")
    assert page.status_code == 200 and 'type="file"' in page.text
    assert "/predict" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


def test_predict_multipart_and_raw_bytes(client: TestClient) -> None:
    img = _png((220, 50, 40))
    a = client.post("/predict", files={"file": ("red.png", img, "image/png")})
    b = client.post("/predict", content=img, headers={"content-type": "image/png"})
    assert a.status_code == b.status_code == 200
    assert a.json() == b.json()
    body = a.json()
    assert body["class"] in ("blue", "green", "red") and len(body["top"]) == 3
    assert abs(sum(t["probability"] for t in body["top"]) - 1) < 1e-4


def test_explain_adds_the_overlay_and_the_peak_in_upload_pixels(client: TestClient) -> None:
    import base64

    buf = io.BytesIO()
    Image.new("RGB", (120, 48), (40, 190, 60)).save(buf, "PNG")  # wide: cropped to the centre
    r = client.post(
        "/predict?explain=1", content=buf.getvalue(), headers={"content-type": "image/png"}
    )
    assert r.status_code == 200
    e = r.json()["explanation"]
    assert e["class"] in ("blue", "green", "red")
    png = base64.b64decode(e["png"].split(",", 1)[1])
    assert Image.open(io.BytesIO(png)).width >= 224
    x, y = e["peak_xy"]
    assert 36 - 1 <= x <= 84 and -0.5 <= y < 48  # inside the centre crop of the upload
    plain = client.post("/predict", content=buf.getvalue(), headers={"content-type": "image/png"})
    assert "explanation" not in plain.json()
    assert abs(plain.json()["probability"] - r.json()["probability"]) < 1e-5


def test_served_probabilities_are_the_calibrated_ones(run_dir: Path) -> None:
    from imgclf.calibration import read_temperature, with_temperature
    from imgclf.serve.app import create_app
    from imgclf.serve.config import ServeConfig

    raw = TestClient(
        create_app(ServeConfig(str(run_dir), calibration=False)), base_url="http://localhost"
    )
    img = _png((40, 190, 60))
    own = raw.post("/predict", content=img, headers={"content-type": "image/png"}).json()
    cal = TestClient(create_app(ServeConfig(str(run_dir))), base_url="http://localhost")
    got = cal.post("/predict", content=img, headers={"content-type": "image/png"}).json()
    assert raw.get("/health").json()["temperature"] is None
    p = np.array([[t["probability"] for t in own["top"]]])
    t = read_temperature(run_dir)
    assert t is not None
    assert abs(got["probability"] - with_temperature(p, t)[0, 0]) < 1e-5


@pytest.mark.parametrize(
    "payload,status,words",
    [
        (b"this is not an image", 415, "not an image"),
        (b"", 415, "zero bytes"),
        (_png((1, 2, 3))[:60], 422, "truncated"),
        (_png_header_only(30000, 30000), 413, "decompression bomb"),
        (b"\xff" * 300_000, 413, "limit"),
    ],
)
def test_hostile_uploads_get_4xx_and_the_server_keeps_serving(
    client: TestClient, payload: bytes, status: int, words: str
) -> None:
    r = client.post("/predict", files={"file": ("x.jpg", payload, "image/jpeg")})
    assert r.status_code == status and words in r.json()["detail"]
    assert client.post("/predict", content=_png((40, 190, 60))).status_code == 200


def _sixteen_bit_png(side: int) -> bytes:
    buf = io.BytesIO()
    Image.new("I;16", (side, side)).save(buf, "PNG")
    return buf.getvalue()


def test_a_small_upload_with_too_many_pixels_is_refused_before_decoding(client: TestClient) -> None:
    """The attack: a ~100 KB 16-bit PNG of 7000x7000 px decoded into gigabytes."""
    png = _sixteen_bit_png(7000)
    assert len(png) < 200_000
    r = client.post("/predict", content=png)
    assert r.status_code == 413 and "too many pixels: 7000x7000 = 49 Mpx" in r.json()["detail"]
    assert client.post("/predict", content=_sixteen_bit_png(500)).status_code == 200


def test_foreign_host_and_malformed_multipart_get_400(run_dir: Path, client: TestClient) -> None:
    from imgclf.serve.app import create_app
    from imgclf.serve.config import ServeConfig

    foreign = TestClient(
        create_app(ServeConfig(str(run_dir))), base_url="http://rebind.attacker.example"
    )
    assert foreign.get("/health").status_code == 400
    r = client.post(
        "/predict",
        content=b"--xyz\r\nbroken header\r\n\r\nabc\r\n--xyz--\r\n",
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert r.status_code == 400 and "malformed multipart" in r.json()["detail"]


def test_sixteen_bit_images_scale_like_before_without_a_float64_copy() -> None:
    from imgclf.data.images import to_rgb

    a = np.array([[0, 256, 257, 1000, 65535]], dtype=np.uint16)
    got = np.asarray(to_rgb(Image.fromarray(a)))[..., 0]
    assert got.tolist() == (a.astype(np.float64) / 65535 * 255).astype(np.uint8).tolist()


def test_concurrent_requests_agree(client: TestClient) -> None:
    imgs = [_png(c) for c in ((220, 50, 40), (40, 190, 60), (40, 60, 220))] * 8
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda im: client.post("/predict", content=im).json(), imgs))
    for i, r in enumerate(results):
        assert r == results[i % 3]


def test_export_onnx_and_torchscript_match(run_dir: Path, tmp_path: Path) -> None:
    from imgclf.exporter import export_run

    for fmt in ("onnx", "torchscript"):
        r = export_run(run_dir, fmt, tmp_path / fmt)
        assert r.max_abs_diff < 1e-4 and r.path.exists()
        assert (tmp_path / fmt / "preprocess.json").exists()
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    out = sess.run(None, {"input": np.zeros((7, 3, 32, 32), np.float32)})[0]
    assert out.shape == (7, 3)


def test_a_thin_upload_is_answered_within_bounded_memory(client: TestClient) -> None:
    """A ~4 KB PNG of 1 x 1,000,000 px: under the pixel limit, but resizing it whole to the
    short side took 5.9 GB; only the part that lands in the crop is resampled now."""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1_000_000), (220, 50, 40)).save(buf, "PNG")
    assert len(buf.getvalue()) < 10_000
    r = client.post("/predict", content=buf.getvalue())
    assert r.status_code == 200 and r.json()["class"] in ("blue", "green", "red")


def test_batched_answers_equal_lone_ones_and_metrics_parse(run_dir: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from prometheus_client.parser import text_string_to_metric_families

    from imgclf.serve.app import create_app
    from imgclf.serve.config import ServeConfig

    colours = [(220, 50, 40), (40, 190, 60), (40, 60, 220), (200, 200, 50)] * 4
    bodies = [_png(c, 40 + i) for i, c in enumerate(colours)]
    alone = TestClient(
        create_app(ServeConfig(str(run_dir), max_batch=1, max_wait_ms=0, max_queue=64)),
        base_url="http://localhost",
    )
    lone = [alone.post("/predict", content=b).json() for b in bodies]
    # 16 at once, a batch waits 200 ms for company: the model sees them together
    app = create_app(ServeConfig(str(run_dir), max_batch=16, max_wait_ms=200, max_queue=64))
    with TestClient(app, base_url="http://localhost") as batched:
        with ThreadPoolExecutor(16) as pool:
            together = list(pool.map(lambda b: batched.post("/predict", content=b).json(), bodies))
        text = batched.get("/metrics").text
        assert batched.get("/ready").json()["ready"] is True
    for a, b in zip(lone, together, strict=True):
        assert a["class"] == b["class"] and abs(a["probability"] - b["probability"]) < 1e-5
    families = {f.name: f for f in text_string_to_metric_families(text)}
    sizes = [s for s in families["imgclf_batch_size"].samples if s.name.endswith("_count")]
    total = [s for s in families["imgclf_batch_size"].samples if s.name.endswith("_sum")]
    assert total[0].value == 16 and sizes[0].value < 16  # fewer model calls than images
    ok = [
        s.value
        for s in families["imgclf_requests"].samples
        if s.labels.get("path") == "/predict" and s.labels.get("status") == "200"
    ]
    assert ok and ok[0] == 16
    assert {"imgclf_queue_depth", "imgclf_model_load_seconds", "imgclf_rejected"} <= set(families)


def test_a_bad_upload_in_a_batch_fails_alone(run_dir: Path) -> None:
    """The batcher's workers decode what they batch: a truncated photo among 8 uploads sent
    together gets its 422 and the 7 others their own answers, as when each came alone."""
    from imgclf.serve.app import create_app
    from imgclf.serve.config import ServeConfig

    colours = [(220, 50, 40), (40, 190, 60), (40, 60, 220), (200, 200, 50)] * 2
    bodies = [_png(c, 40 + i) for i, c in enumerate(colours)]
    bodies[3] = bodies[3][:60]
    alone = TestClient(
        create_app(ServeConfig(str(run_dir), max_batch=1, max_wait_ms=0, max_queue=64)),
        base_url="http://localhost",
    )
    lone = [alone.post("/predict", content=b) for b in bodies]
    with TestClient(
        create_app(ServeConfig(str(run_dir), max_batch=8, max_wait_ms=200, max_queue=64)),
        base_url="http://localhost",
    ) as c:
        with ThreadPoolExecutor(8) as pool:
            together = list(pool.map(lambda b: c.post("/predict", content=b), bodies))
        sizes = [line for line in c.get("/metrics").text.splitlines() if "batch_size_count" in line]
    assert [r.status_code for r in together] == [200] * 3 + [422] + [200] * 4
    assert "truncated" in together[3].json()["detail"]
    for a, b in zip(lone, together, strict=True):
        assert a.status_code == b.status_code
        if a.status_code == 200:
            assert a.json()["class"] == b.json()["class"]
            assert abs(a.json()["probability"] - b.json()["probability"]) < 1e-5
    assert float(sizes[0].split()[-1]) < 7  # the 7 good ones shared model calls


def test_predict_refuses_a_bad_explain_flag_in_one_line(client: TestClient) -> None:
    r = client.post("/predict?explain=maybe", content=_png((40, 190, 60)))
    assert r.status_code == 422 and r.json()["detail"].startswith("explain: expected")
    assert client.post("/predict?explain=0", content=_png((40, 190, 60))).status_code == 200
    assert client.get("/predict").status_code == 405


def test_health_says_how_it_serves(client: TestClient) -> None:
    """A PyTorch run on the CPU: its ONNX export in onnxruntime, a worker a core and one more,
    batches of 2 (the measured default, benchmarks/RESULTS.md)."""
    h = client.get("/health").json()
    assert (h["runtime"], h["max_batch"]) == ("onnx", 2) and h["workers"] >= 2


def test_abstain_marks_the_unsure_answers_and_health_says_p(run_dir: Path) -> None:
    from imgclf.serve.app import create_app
    from imgclf.serve.config import ServeConfig

    sure = TestClient(create_app(ServeConfig(str(run_dir))), base_url="http://localhost")
    picky = TestClient(
        create_app(ServeConfig(str(run_dir), abstain=0.999)), base_url="http://localhost"
    )
    img = _png((220, 50, 40))
    plain = sure.post("/predict", content=img, headers={"content-type": "image/png"}).json()
    marked = picky.post("/predict", content=img, headers={"content-type": "image/png"}).json()
    assert "abstained" not in plain and sure.get("/health").json()["abstain"] is None
    assert marked["abstained"] is (marked["probability"] < 0.999)
    assert marked["class"] == plain["class"]  # the guess stays, for the person it goes to
    assert picky.get("/health").json()["abstain"] == 0.999
