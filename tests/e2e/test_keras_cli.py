"""A Keras run through the same CLI: train -> evaluate -> predict -> compare with a PyTorch run."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from conftest import run_cli, train_killed_at_step

pytest.importorskip("keras", reason="the [keras] extra is not installed")
pytestmark = pytest.mark.keras
TRAIN = ("--image-size", "32", "--batch-size", "8", "--workers", "1", "--model", "cnn")


def test_keras_run_works_with_evaluate_predict_compare(tiny_folder: Path, tmp_path: Path) -> None:
    k, t = tmp_path / "keras", tmp_path / "torch"
    smooth = ("--label-smoothing", "0.1", "--class-weights", "auto", "--schedule", "cosine")
    out = run_cli(
        "train",
        str(tiny_folder),
        "--backend",
        "keras",
        "--epochs",
        "2",
        *TRAIN,
        *smooth,
        "--out",
        str(k),
    ).stdout
    assert "epoch 2/2" in out
    for f in (
        "config.json",
        "history.json",
        "history.csv",
        "best.keras",
        "last.keras",
        "meta.json",
    ):
        assert (k / f).exists(), f
    assert json.loads((k / "config.json").read_text())["backend"] == "keras"
    ev = run_cli("evaluate", str(k)).stdout
    assert "Accuracy of red" in ev and (k / "report.html").exists()
    pr = run_cli(
        "predict", str(k), str(tiny_folder / "test" / "red"), "--json", str(tmp_path / "p.json")
    )
    rows = json.loads((tmp_path / "p.json").read_text())
    assert len(rows) == 4 and all(r["class"] in ("blue", "green", "red") for r in rows), pr.stdout
    # the same calibration as PyTorch runs; Grad-CAM is refused by name, before any work
    assert json.loads((k / "calibration.json").read_text())["fitted_on"] == "val"
    where = tmp_path / "explain"
    red = str(tiny_folder / "test" / "red")
    ex = run_cli("predict", str(k), red, "--explain", str(where), check=False)
    assert ex.returncode == 2 and "this is a keras run" in ex.stderr and not where.exists()
    run_cli("train", str(tiny_folder), "--epochs", "1", *TRAIN, "--out", str(t))
    run_cli("evaluate", str(t))
    table = run_cli("compare", str(t), str(k), "--plot", str(tmp_path / "c.png")).stdout
    lines = [ln for ln in table.splitlines() if ln.startswith(("torch", "keras"))]
    assert len(lines) == 2 and "keras" in lines[1] and "torch" in lines[0]
    # same model, same parameter count in both backends, shown side by side
    assert lines[0].split()[3] == lines[1].split()[3]
    # the fingerprint inside best.keras must match meta.json (issue 22)
    meta = json.loads((k / "meta.json").read_text())
    (k / "meta.json").write_text(json.dumps({**meta, "class_names": ["red", "green", "blue"]}))
    proc = run_cli("predict", str(k), str(tiny_folder / "test" / "red"), check=False)
    assert proc.returncode == 1 and "the checkpoint's class_names" in proc.stderr, proc.stderr


def test_a_diverging_keras_run_stops_before_saving(tiny_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "k"
    args = ("--backend", "keras", "--epochs", "2", "--lr", "1e30", "--out", str(out))
    proc = run_cli("train", str(tiny_folder), *TRAIN, *args, check=False)
    assert proc.returncode == 1 and "training diverged" in proc.stderr, proc.stderr
    assert not (out / "best.keras").exists() and not (out / "last.keras").exists()


def test_killed_keras_run_resumes_at_the_epoch_it_stopped(
    tiny_folder: Path, tmp_path: Path
) -> None:
    run = tmp_path / "k"
    # 24 images / batch 8 = 3 steps per epoch: step 5 is inside epoch 2
    killed = train_killed_at_step(
        5,
        data_dir=str(tiny_folder),
        backend="keras",
        model="cnn",
        epochs=3,
        image_size=32,
        batch_size=8,
        workers=1,
        out_dir=str(run),
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [1]
    out = run_cli("train", "--resume", str(run)).stdout
    assert "epoch 1/3" not in out and "epoch 2/3" in out and "epoch 3/3" in out
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [1, 2, 3]
    assert (run / "best.keras").exists() and (run / "last.keras").exists()


def test_keras_honours_weights_file_fine_tune_and_step_schedule(
    tiny_folder: Path, tmp_path: Path
) -> None:
    import keras
    import numpy as np

    # a local weights file for the backbone, as a user brings ImageNet's when offline
    base = keras.applications.MobileNetV3Small(
        include_top=False, pooling="avg", input_shape=(32, 32, 3), weights=None
    )
    weights = tmp_path / "backbone.weights.h5"
    base.save_weights(weights)
    run = tmp_path / "ft"
    out = run_cli(
        "train", str(tiny_folder), "--backend", "keras", "--model", "mobilenet_v3_small",
        "--weights", str(weights), "--fine-tune-after", "1", "--backbone-lr-scale", "0.5",
        "--epochs", "3", "--schedule", "step", "--step-epochs", "2", "--lr", "0.001",
        "--image-size", "32", "--batch-size", "8", "--workers", "1", "--out", str(run),
    ).stdout  # fmt: skip
    assert "epoch 2: backbone unfrozen, it now trains at lr x 0.5" in out
    lrs = [h["lr"] for h in json.loads((run / "history.json").read_text())]
    assert np.allclose(lrs, [1e-3, 1e-3, 1e-4])
    assert json.loads((run / "meta.json").read_text())["pretrained"] is True
    trained = keras.models.load_model(run / "last.keras", compile=False)
    backbone = next(layer for layer in trained.layers if isinstance(layer, keras.Model))
    moved = [
        float(np.abs(a - b).max())
        for a, b in zip(backbone.get_weights(), base.get_weights(), strict=True)
    ]
    assert max(moved) > 0  # the backbone learnt once unfrozen, from the file's weights
