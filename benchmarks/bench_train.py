"""Training on CATS_DOGS, side by side in one run: the first tutorial's way vs `imgclf train`.

- cnn, 3 epochs, Adam 1e-3, batch 100: end to end (data + train + eval each epoch).
- frozen transfer (EfficientNet-Lite0 ImageNet weights, new head), 3 epochs, no augmentation:
  the tutorial's way (forward through the frozen backbone every epoch) vs imgclf (features once).
- optionally --finetune: imgclf EfficientNet-Lite0 fine-tuned (frozen 1 epoch, then unfrozen).
End-to-end seconds include imgclf's cache build (fresh cache each run). Writes JSON lines.

    python benchmarks/bench_train.py [--only cnn|frozen|finetune] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import CATS_DOGS, machine, run_phase

ROOT = Path(__file__).resolve().parents[1]


def tutorial_phase(kind: str, epochs: int) -> dict:
    import torch

    from tutorial_way import train_tutorial

    torch.manual_seed(101)
    if kind == "cnn":
        from imgclf.backends.torch.models.small_cnn import TutorialCNN

        model = TutorialCNN(2)
        return train_tutorial(model, model.parameters(), str(CATS_DOGS), epochs)
    from imgclf.models import create_model

    model = create_model("efficientnet_lite0", 2, freeze_backbone=True)
    return train_tutorial(
        model,
        model.head.parameters(),
        str(CATS_DOGS),
        epochs,
        mean=[0.498] * 3,
        std=[0.502] * 3,
        augment=False,
    )


def imgclf_run(args: list[str]) -> dict:
    out = Path(tempfile.mkdtemp(prefix="imgclf-bench-run-")) / "run"
    cache = tempfile.mkdtemp(prefix="imgclf-bench-cache-")
    exe = Path(sys.executable).parent / "imgclf"
    t0 = time.perf_counter()
    subprocess.run(
        [str(exe), "train", str(CATS_DOGS), *args, "--out", str(out), "--cache-dir", cache],
        check=True,
        capture_output=True,
    )
    total = time.perf_counter() - t0
    hist = json.loads((out / "history.json").read_text())
    sizes = json.loads((out / "meta.json").read_text())["split_sizes"]
    # validation is carved from train (imgclf >= 0.4): the test split is scored once, after
    # training, by `imgclf evaluate` (not part of the end-to-end seconds)
    subprocess.run([str(exe), "evaluate", str(out)], check=True, capture_output=True)
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "seconds": total,
        "accuracy": metrics["accuracy"],
        "val_accuracy": max(h["val_acc"] for h in hist),
        "ece": [metrics["calibration"]["ece_before"], metrics["calibration"]["ece_after"]],
        "images_per_s": sizes["train"] * len(hist) / total,
        "epochs": len(hist),
        "split_sizes": sizes,
        "run": str(out),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase", default="")
    ap.add_argument("--only", default="")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--imgclf-only", action="store_true", help="skip the tutorial's sides")
    a = ap.parse_args()
    if a.phase:
        print(json.dumps(tutorial_phase(a.phase, a.epochs)))
        return
    print(machine(), flush=True)
    e = str(a.epochs)
    results = {}
    if a.only in ("", "cnn"):
        if not a.imgclf_only:
            results["cnn tutorial way"] = run_phase(__file__, "cnn", "--epochs", e)
        results["cnn imgclf"] = imgclf_run(["--model", "cnn", "--epochs", e])
    if a.only in ("", "frozen"):
        if not a.imgclf_only:
            results["lite0 frozen tutorial way"] = run_phase(__file__, "frozen", "--epochs", e)
        results["lite0 frozen imgclf"] = imgclf_run(
            ["--model", "efficientnet_lite0", "--freeze", "--augment", "none", "--epochs", e]
        )
    if a.only == "finetune":
        results["lite0 fine-tuned imgclf"] = imgclf_run(
            [
                "--model",
                "efficientnet_lite0",
                "--fine-tune-after",
                "1",
                "--epochs",
                e,
                "--batch-size",
                "50",
                "--lr",
                "1e-3",
            ]
        )
    for k, r in results.items():
        keys = ("seconds", "accuracy", "val_accuracy", "ece", "images_per_s", "split_sizes")
        print(json.dumps({"name": k, **{x: r[x] for x in keys if x in r}}), flush=True)
    pairs = [
        ("cnn imgclf", "cnn tutorial way"),
        ("lite0 frozen imgclf", "lite0 frozen tutorial way"),
    ]
    for ours, theirs in pairs:
        if ours in results and theirs in results:
            print(
                f"{ours}: {results[theirs]['seconds'] / results[ours]['seconds']:.2f}x faster "
                f"end to end; accuracy {results[ours]['accuracy']:.2%} vs "
                f"{results[theirs]['accuracy']:.2%}"
            )


if __name__ == "__main__":
    main()
