"""Data-parallel scaling: the same training as 1 process and as N torchrun processes
(`imgclf train --replicas N`), side by side on one machine (issue 8).

python benchmarks/bench_ddp.py [--replicas 2] [--model cnn] [--image-size 224] [--epochs 3]
                               [--device cpu|cuda] [--data PATH]

A first 1-epoch run builds the decoded cache, so both sides read the same warm store. Throughput
is the training images/s of epochs 2.. (history.json: all ranks' images over rank 0's epoch
time); scaling efficiency = images/s with N / (N x images/s with 1). Wall time is the whole
command (process start, torchrun, model, every epoch with its validation).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import CATS_DOGS, machine


def train(data: str, out: Path, replicas: int, a: argparse.Namespace, cache: str) -> dict:
    exe = Path(sys.executable).parent / "imgclf"
    cmd = [str(exe), "train", data, "--model", a.model, "--image-size", str(a.image_size)]
    cmd += ["--epochs", str(a.epochs), "--batch-size", str(a.batch_size), "--device", a.device]
    cmd += ["--replicas", str(replicas), "--cache-dir", cache, "--out", str(out)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    hist = json.loads((out / "history.json").read_text())
    steady = hist[1:] or hist
    return {
        "replicas": replicas,
        "wall_s": round(wall, 1),
        "train_images_per_s": round(sum(h["images_per_s"] for h in steady) / len(steady), 1),
        "val_acc": hist[-1]["val_acc"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(CATS_DOGS))
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = str(Path(tmp) / "cache")
        warm = argparse.Namespace(**{**vars(a), "epochs": 1})
        train(a.data, Path(tmp) / "warm", 1, warm, cache)  # builds the decoded cache
        one = train(a.data, Path(tmp) / "one", 1, a, cache)
        many = train(a.data, Path(tmp) / "many", a.replicas, a, cache)
    eff = many["train_images_per_s"] / (a.replicas * one["train_images_per_s"])
    print(f"machine: {machine()}")
    print(
        f"{a.model} {a.image_size} px, batch {a.batch_size} (global), {a.epochs} epochs, {a.device}"
    )
    print("| processes | wall s | train images/s | final val acc |")
    print("| ---: | ---: | ---: | ---: |")
    for r in (one, many):
        print(
            f"| {r['replicas']} | {r['wall_s']} | {r['train_images_per_s']} | {r['val_acc']:.1%} |"
        )
    print(f"scaling efficiency: {eff:.2f}")
    print(json.dumps({"one": one, "many": many, "efficiency": round(eff, 3)}))


if __name__ == "__main__":
    main()
