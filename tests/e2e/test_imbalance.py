"""Imbalanced classes through the real CLI: the train log's counts and warning, --class-weights
(auto, a file), --sampler balanced on both backends, evaluate's balanced accuracy and class-mix
note, the audit's warning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli

FAST = ("--model", "cnn", "--epochs", "4", "--image-size", "16", "--batch-size", "16")
FAST += ("--workers", "1", "--seed", "3")


def overlapping_folder(root: Path) -> Path:
    """Two classes of grey noise whose brightness ranges overlap, 20:1 in train and even in test:
    a model trained as if the classes were even answers 'common' in the overlap."""
    rng = np.random.default_rng(0)
    ranges = {"common": (0.30, 0.62), "rare": (0.48, 0.80)}
    for split, n in (("train", {"common": 240, "rare": 12}), ("test", {"common": 40, "rare": 40})):
        for c, k in n.items():
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(k):
                a = np.clip(rng.normal(rng.uniform(*ranges[c]), 0.08, (16, 16, 3)), 0, 1)
                Image.fromarray((a * 255).astype(np.uint8)).save(d / f"{c}_{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def skewed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return overlapping_folder(tmp_path_factory.mktemp("skewed"))


def rare_recall(run: Path) -> tuple[float, dict]:
    proc = run_cli("evaluate", str(run), "--no-explain")
    metrics = json.loads((run / "metrics.json").read_text())
    assert f"balanced accuracy {metrics['balanced_accuracy']:.2%}" in proc.stdout
    assert "class mix differs from train's (common 95% vs 50%, rare 5% vs 50%)" in proc.stdout
    rare = next(c for c in metrics["per_class"] if c["class"] == "rare")
    return rare["recall"], metrics


def test_class_weights_auto_raises_the_minority_recall_over_none(
    skewed: Path, tmp_path: Path
) -> None:
    plain = run_cli("train", str(skewed), *FAST, "--out", str(tmp_path / "none"))
    assert "class counts (train): common 192, rare 10 (19.2:1)" in plain.stdout
    assert "train is imbalanced 19:1" in plain.stderr and "--class-weights auto" in plain.stderr
    weighted = run_cli(
        "train", str(skewed), *FAST, "--class-weights", "auto", "--out", str(tmp_path / "auto")
    )
    assert "class weights: common 0.526, rare 10" in weighted.stdout  # clipped: 10.1 -> 10
    assert "imbalanced" not in weighted.stderr  # the remedy is in use: no nagging
    cfg = json.loads((tmp_path / "auto" / "config.json").read_text())
    assert cfg["class_weights_used"] == {"common": 0.526042, "rare": 10.0}
    assert cfg["class_counts"] == {"common": 192, "rare": 10}
    none_recall, none_m = rare_recall(tmp_path / "none")
    auto_recall, auto_m = rare_recall(tmp_path / "auto")
    assert auto_recall >= none_recall + 0.2, (none_recall, auto_recall)
    assert auto_m["balanced_accuracy"] > none_m["balanced_accuracy"]


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_sampler_balanced_on_both_backends_and_a_weights_file(
    backend: str, skewed: Path, tmp_path: Path
) -> None:
    if backend == "keras":
        pytest.importorskip("keras")
    args = (*FAST, "--backend", backend)
    run_cli("train", str(skewed), *args, "--out", str(tmp_path / "none"))
    sampled = run_cli(
        "train", str(skewed), *args, "--sampler", "balanced", "--out", str(tmp_path / "drawn")
    )
    assert "sampler: balanced" in sampled.stdout
    assert json.loads((tmp_path / "drawn" / "config.json").read_text())["sampler"] == "balanced"
    assert rare_recall(tmp_path / "drawn")[0] >= rare_recall(tmp_path / "none")[0] + 0.2
    if backend == "keras":
        return  # the weights reach Keras by the same class_weights() as --class-weights auto
    weights = tmp_path / "w.json"
    weights.write_text('{"rare": 3, "common": 0.5}')
    filed = run_cli(
        "train", str(skewed), *args, "--class-weights", str(weights), "--out", str(tmp_path / "f")
    )
    assert "class weights: common 0.5, rare 3" in filed.stdout
    cfg = json.loads((tmp_path / "f" / "config.json").read_text())
    assert cfg["class_weights_used"] == {"common": 0.5, "rare": 3.0}


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ('{"common": 1}', "no weight for rare (the classes: common, rare)"),
        ('{"common": 1, "rare": 2, "cow": 1}', "unknown class(es) cow"),
        ('{"common": 1, "rare": -2}', "the weight of 'rare' must be a positive number, got -2"),
        ('{"common": 1, "rare": true}', "the weight of 'rare' must be a positive number"),
        ("[1, 2]", "expected a JSON object"),
        ("{common: 1}", "not a JSON object of class -> weight"),
    ],
)
def test_a_bad_weights_file_is_one_line_and_no_run(
    content: str, said: str, skewed: Path, tmp_path: Path
) -> None:
    weights = tmp_path / "w.json"
    weights.write_text(content)
    out = tmp_path / "run"
    proc = run_cli(
        "train", str(skewed), *FAST, "--class-weights", str(weights), "--out", str(out), check=False
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and str(weights) in proc.stderr and said in proc.stderr
    assert not out.exists()


def test_other_class_weights_and_a_full_batch_sampler_are_refused(skewed: Path) -> None:
    proc = run_cli("train", str(skewed), "--class-weights", "balanced", check=False)
    assert proc.returncode == 2 and "none, auto or a FILE.json" in proc.stderr
    proc = run_cli(
        "train", str(skewed), "--recipe", "transfer", "--sampler", "balanced", check=False
    )
    assert proc.returncode == 2 and "--class-weights auto instead" in proc.stderr


def test_audit_warns_of_the_imbalance_without_failing(skewed: Path, tmp_path: Path) -> None:
    proc = run_cli("audit", str(skewed), "--out", str(tmp_path / "audit"))
    assert "warning: train is imbalanced 20:1 (common 240, rare 12)" in proc.stdout
    report = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert report["warnings"] and report["problems"] == []
