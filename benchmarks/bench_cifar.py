"""AlexNet from scratch on a CIFAR-10 subset (../shared/data/cifar10_jpeg), PyTorch and Keras side
by side in one run: accuracy, the second tutorial's per-class table, training images/s.

    python benchmarks/bench_cifar.py [--per-class 200] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import CIFAR_ZIP, machine


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", default="1e-4")
    ap.add_argument("--backends", default="torch,keras")
    a = ap.parse_args()
    exe = str(Path(sys.executable).parent / "imgclf")
    out = Path(tempfile.mkdtemp(prefix="imgclf-cifar-"))
    print(machine(), flush=True)
    for backend in a.backends.split(","):
        run = out / backend
        subprocess.run(
            [
                exe,
                "train",
                str(CIFAR_ZIP),
                "--model",
                "alexnet",
                "--backend",
                backend,
                "--max-per-class",
                str(a.per_class),
                "--epochs",
                str(a.epochs),
                "--batch-size",
                "64",
                "--optimizer",
                "adam",
                "--lr",
                a.lr,
                "--out",
                str(run),
            ],
            check=True,
            capture_output=True,
        )
        ev = subprocess.run(
            [exe, "evaluate", str(run)], check=True, capture_output=True, text=True
        ).stdout
        hist = json.loads((run / "history.json").read_text())
        ips = sum(h["images_per_s"] for h in hist) / len(hist)
        print(
            f"\n## {backend}: {a.per_class}/class train and test, {a.epochs} epochs, "
            f"Adam {a.lr}, batch 64: {ips:.1f} train img/s"
        )
        print(ev, flush=True)


if __name__ == "__main__":
    main()
