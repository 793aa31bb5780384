"""`imgclf bench` runs every stage on CPU at tiny sizes (no timings are asserted: machines are
shared; the numbers live in benchmarks/RESULTS.md), and `--compile` trains a usable run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from conftest import run_cli

STAGES = [
    "decode PIL (1 thread)",
    "decode torchvision.io CPU",
    "decode nvJPEG (GPU)",
    "cache build (1 workers)",
    "cached batches + augmentation",
    "train step (resident batch)",
    "train epoch (end to end)",
    "eval pass (validation split)",
    "predict latency (batch 1, from file)",
    "predict throughput (resident batch)",
]
TINY = ["--device", "cpu", "--image-size", "32", "--batch-size", "4", "--workers", "1"]


def test_bench_on_its_own_jpegs_writes_every_stage(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["--images", "20", "--decode-images", "6", "--steps", "2", "--json", str(out)]
    res = run_cli("bench", *TINY, *args, cwd=tmp_path)
    report = json.loads(out.read_text())
    assert [s["stage"] for s in report["stages"]] == STAGES
    for s in report["stages"]:
        if s["stage"] == "decode nvJPEG (GPU)":  # this machine has no GPU: said, not faked
            assert s["images_per_s"] is None and s["note"] == "needs --device cuda"
            continue
        assert s["images_per_s"] > 0 and s["images"] > 0, s
    info = report["info"]
    assert info["data"] == "synthetic: 20 JPEGs" and info["dtype"] == "float32"
    assert info["device"].startswith("cpu") and info["torch"] and info["model"] == "cnn"
    assert info["epoch_vs_compute_limit"] > 0
    # train/ holds 16 of the 20 (4:1); 20 % of those validate, as `imgclf train` does
    assert report["stages"][4]["images"] == 12
    for name in STAGES:
        assert name in res.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"]  # nothing else left


def test_bench_on_a_folder_and_its_refusals(tiny_folder: Path, tmp_path: Path) -> None:
    res = run_cli("bench", str(tiny_folder), *TINY, "--decode-images", "4", "--steps", "1")
    assert f"data: {tiny_folder}" in res.stdout and "train epoch (end to end)" in res.stdout
    # PNGs: PIL decodes them; the JPEG decoders' stage says why it has no number
    assert "decode torchvision.io CPU" in res.stdout and "skipped: no JPEG files" in res.stdout
    bad = run_cli("bench", str(tiny_folder), "--images", "10", check=False)
    assert bad.returncode == 2  # a usage error
    assert bad.stderr.strip().splitlines() == [
        "imgclf bench: error: --images sizes the synthetic folder: give DATA or --images, not both"
    ]


def test_compiled_training_saves_a_checkpoint_predict_can_load(
    tiny_folder: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train = ["--image-size", "32", "--batch-size", "8", "--epochs", "1", "--device", "cpu"]
    run_cli("train", str(tiny_folder), *train, "--compile", "--out", str(run))
    assert json.loads((run / "config.json").read_text())["compile"] is True
    img = next(tiny_folder.rglob("*.png"))
    res = run_cli("predict", str(run), str(img), "--device", "cpu")
    assert img.name in res.stdout


def test_cpu_bf16_trains_in_bf16_or_is_refused_by_name(tiny_folder: Path, tmp_path: Path) -> None:
    """--cpu-bf16 changes what the CPU computes (the same seeded run ends with other losses), and
    `imgclf bench` reports its dtype; a CPU without native bf16 refuses it in one line."""
    from imgclf.backends.torch.device import native_cpu_bf16

    train = ["--image-size", "32", "--batch-size", "8", "--epochs", "2", "--device", "cpu"]
    if not native_cpu_bf16():
        run = tmp_path / "refused"
        args = [*train, "--cpu-bf16", "--out", str(run)]
        bad = run_cli("train", str(tiny_folder), *args, check=False)
        assert bad.returncode == 2 and "this CPU has no native bf16" in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and not run.exists()
        return
    losses = {}
    for flag in ("--no-cpu-bf16", "--cpu-bf16"):
        run = tmp_path / flag
        run_cli("train", str(tiny_folder), *train, flag, "--out", str(run))
        config = json.loads((run / "config.json").read_text())
        assert config["cpu_bf16"] is (flag == "--cpu-bf16")
        history = json.loads((run / "history.json").read_text())
        losses[flag] = [e["train_loss"] for e in history]
    assert losses["--cpu-bf16"] != losses["--no-cpu-bf16"]
    assert np.allclose(losses["--cpu-bf16"], losses["--no-cpu-bf16"], rtol=0.1)
    out = tmp_path / "bench.json"
    args = ["--images", "20", "--decode-images", "4", "--steps", "1", "--json", str(out)]
    run_cli("bench", *TINY, *args, "--cpu-bf16", cwd=tmp_path)
    assert json.loads(out.read_text())["info"]["dtype"] == "bfloat16 autocast"
