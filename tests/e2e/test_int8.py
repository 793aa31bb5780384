"""int8 models as a user gets them: `imgclf export --int8` quantizes and checks, refuses what
lost too much (leaving nothing behind), and serve/predict run it with `--runtime onnx-int8`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import make_folder, run_cli


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("int8")
    data = make_folder(tmp / "d", {"train": 10, "test": 4})
    run = tmp / "run"
    train = ["train", str(data), "--model", "cnn", "--image-size", "32", "--epochs", "4"]
    run_cli(*train, "--batch-size", "8", "--workers", "1", "--out", str(run))
    return run


def _ops(path: Path) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_export_int8_writes_a_checked_quantized_model(run_dir: Path) -> None:
    r = run_cli("export", str(run_dir), "--format", "onnx", "--int8", "--calibration-images", "20")
    assert r.returncode == 0, r.stderr
    assert "agrees with float32" in r.stdout and "validation images" in r.stdout
    export = run_dir / "export"
    report = json.loads((export / "int8.json").read_text())
    assert report["calibration_images"] == 20 and report["val_images"] > 0
    assert 0 <= report["agreement"] <= 1 and report["drop_points"] <= 0.5
    assert "QuantizeLinear" in _ops(export / "model.int8.onnx")  # int8 in the graph itself
    assert "QuantizeLinear" not in _ops(export / "model.onnx")
    assert not list(export.glob(".int8-*"))  # its scratch folder is gone
    assert (export / "model.int8.onnx").stat().st_size < (export / "model.onnx").stat().st_size


def test_int8_options_are_refused_where_they_mean_nothing(run_dir: Path) -> None:
    for args, words in (
        (["--format", "torchscript", "--int8"], "--int8 quantizes the ONNX model"),
        (["--format", "onnx", "--max-drop", "1"], "--max-drop applies to --int8 only"),
        (["--format", "onnx", "--int8", "--max-drop", "-1"], "0 or more"),
    ):
        out = ["--out", str(run_dir / "elsewhere")]
        r = run_cli("export", str(run_dir), *args, *out, check=False)
        assert r.returncode == 2 and words in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert not (run_dir / "elsewhere").exists()


def test_a_refused_int8_model_leaves_nothing_behind(run_dir: Path, tmp_path: Path) -> None:
    from imgclf.exporter import export_run
    from imgclf.quantize import Int8Refused, quantize_run

    out = tmp_path / "out"
    source = export_run(run_dir, "onnx", out).path
    before = sorted(p.name for p in out.iterdir())
    # a gain of 100 points asked for: no model can pass, so the refusal path runs for real
    with pytest.raises(Int8Refused, match="more than --max-drop -100; nothing written"):
        quantize_run(run_dir, source, out, calibration_images=10, max_drop=-100)
    assert sorted(p.name for p in out.iterdir()) == before  # no int8 model, report or scratch


def test_predict_and_serve_run_the_int8_model(run_dir: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from imgclf.serve.app import create_app
    from imgclf.serve.config import ServeConfig

    images = sorted((run_dir.parent / "d" / "test").rglob("*.png"))[:4]
    paths = [str(p) for p in images]
    rows = {}
    for runtime in ("eager", "onnx", "onnx-int8"):
        out = tmp_path / f"{runtime}.json"
        r = run_cli("predict", str(run_dir), *paths, "--runtime", runtime, "--json", str(out))
        assert r.returncode == 0, r.stderr
        rows[runtime] = json.loads(out.read_text())
    assert [r["class"] for r in rows["onnx"]] == [r["class"] for r in rows["eager"]]
    f32 = np.array([r["probability"] for r in rows["onnx"]])
    q8 = np.array([r["probability"] for r in rows["onnx-int8"]])
    assert np.abs(f32 - q8).max() < 0.1  # int8 answers close to float, not equal
    explain = ["--runtime", "onnx-int8", "--explain", str(tmp_path / "x")]
    r = run_cli("predict", str(run_dir), paths[0], *explain, check=False)
    assert r.returncode == 2 and "--runtime eager" in r.stderr
    app = create_app(ServeConfig(str(run_dir), runtime="onnx-int8", model_name="m"))
    client = TestClient(app, base_url="http://localhost")
    assert client.get("/health").json()["precision"] == "int8"
    assert client.get("/v2/models/m").json()["parameters"]["precision"] == "int8"
    body = images[0].read_bytes()
    answer = client.post("/predict", content=body, headers={"content-type": "image/png"})
    assert answer.status_code == 200 and answer.json()["class"] == rows["onnx-int8"][0]["class"]
