"""A Keras run through the same CLI: train -> evaluate -> predict -> compare with a PyTorch run."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from conftest import run_cli

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
    run_cli("train", str(tiny_folder), "--epochs", "1", *TRAIN, "--out", str(t))
    run_cli("evaluate", str(t))
    table = run_cli("compare", str(t), str(k), "--plot", str(tmp_path / "c.png")).stdout
    lines = [ln for ln in table.splitlines() if ln.startswith(("torch", "keras"))]
    assert len(lines) == 2 and "keras" in lines[1] and "torch" in lines[0]
    # same model, same parameter count in both backends, shown side by side
    assert lines[0].split()[3] == lines[1].split()[3]


def test_killed_keras_run_resumes_at_the_epoch_it_stopped(
    tiny_folder: Path, tmp_path: Path
) -> None:
    run = tmp_path / "k"
    # 24 images / batch 8 = 3 steps per epoch: step 5 is inside epoch 2
    killed = run_cli(
        "train",
        str(tiny_folder),
        "--backend",
        "keras",
        "--epochs",
        "3",
        *TRAIN,
        "--out",
        str(run),
        check=False,
        env={"IMGCLF_TEST_KILL_AT_STEP": "5"},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [1]
    out = run_cli("train", "--resume", str(run)).stdout
    assert "epoch 1/3" not in out and "epoch 2/3" in out and "epoch 3/3" in out
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [1, 2, 3]
    assert (run / "best.keras").exists() and (run / "last.keras").exists()
