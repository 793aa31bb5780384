"""Flip test-time augmentation for evaluate and predict: an image and its mirror image get the
same answer, and evaluate says it used TTA."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageOps

from conftest import run_cli

TRAIN = ["--image-size", "32", "--batch-size", "8", "--epochs", "1", "--device", "cpu"]


def _probabilities(run: Path, images: list[Path], *extra: str) -> list[float]:
    out = run_cli("predict", str(run), *map(str, images), "--device", "cpu", *extra).stdout
    return [float(line.split()[-1]) for line in out.splitlines()]


def test_flip_tta_makes_mirror_images_agree_and_evaluate_records_it(
    tiny_folder: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    run_cli("train", str(tiny_folder), *TRAIN, "--out", str(run))
    photos = tmp_path / "mine"
    photos.mkdir()
    pairs = []
    for i, src in enumerate(sorted((tiny_folder / "test").rglob("*.png"))[:3]):
        a, b = photos / f"{i}.png", photos / f"{i}_mirror.png"
        img = Image.open(src).convert("RGB")
        img.save(a)
        ImageOps.mirror(img).save(b)
        pairs += [a, b]
    plain = _probabilities(run, pairs)
    tta = _probabilities(run, pairs, "--tta")
    # without TTA the off-centre shapes and their mirrors score differently; with it, identically
    assert any(abs(plain[i] - plain[i + 1]) > 1e-4 for i in range(0, len(pairs), 2))
    for i in range(0, len(pairs), 2):
        assert abs(tta[i] - tta[i + 1]) < 1e-5

    res = run_cli("evaluate", str(run), "--device", "cpu", "--tta")
    assert "with flip TTA" in res.stdout
    assert json.loads((run / "metrics.json").read_text())["tta"] == "flip"
    run_cli("evaluate", str(run), "--device", "cpu")
    assert json.loads((run / "metrics.json").read_text())["tta"] == "none"
