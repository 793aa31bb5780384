"""Multi-label and imbalanced classes through the real CLI (issue 41).

Multi-label: 2x2 composites (256 px, 128 px cells) of CATS_DOGS photos (cat, dog) and CIFAR-10
vehicle images (airplane, automobile, ship, truck; 32 px upscaled), each cell filled with
probability 0.55 (else grey noise), labelled with the set of classes present (possibly none).
Train composites come from the train photos, test composites from the test photos only. Trains
`--recipe transfer` (Lite2 300 px, one-vs-rest logistic heads by L-BFGS) and a frozen Lite0 (the
same recipe at 224 px) with `imgclf train DATA --labels labels.csv`, then `imgclf evaluate`:
mAP, micro/macro F1, exact match and the time of each.

Imbalanced: CATS_DOGS with 90 % of the DOG train photos left out (a seeded --exclude-list: 1,500
cats, 150 dogs), frozen Lite0 with --class-weights none and auto, scored on the even test split:
accuracy, balanced accuracy, DOG recall.

    python benchmarks/bench_multilabel.py [--work /tmp/imgclf-bench-ml] [--train 800] [--test 300]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from common import CATS_DOGS, CIFAR_ZIP, machine

VEHICLES = ("airplane", "automobile", "ship", "truck")
CELL, FILL = 128, 0.55
IMGCLF = [sys.executable, "-m", "imgclf"]


def sources(split: str, cache: str) -> dict[str, list[str]]:
    """class -> image paths of that split: CATS_DOGS' cats and dogs, CIFAR-10's vehicles."""
    from imgclf.data.sources import resolve_data
    from imgclf.data.splits import load_splits

    out: dict[str, list[str]] = {}
    for root, wanted in (
        (CATS_DOGS, ("CAT", "DOG")),
        (resolve_data(str(CIFAR_ZIP), cache), VEHICLES),
    ):
        idx = load_splits(root, 0.0)[split]
        for p, y in zip(idx.paths, idx.labels, strict=True):
            name = idx.class_names[y]
            if name in wanted:
                out.setdefault(name.lower(), []).append(p)
    return out


def cell_image(path: str) -> Image.Image:
    img = Image.open(path).convert("RGB")
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    return img.crop((left, top, left + side, top + side)).resize((CELL, CELL), Image.BILINEAR)


def build(root: Path, n: int, split: str, pool: dict[str, list[str]], seed: int) -> list[tuple]:
    """n composites into root/split/; (relative path, label cell, split) rows."""
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    (root / split).mkdir(parents=True, exist_ok=True)
    classes, rows = sorted(pool), []
    for i in range(n):
        canvas = Image.new("RGB", (2 * CELL, 2 * CELL))
        present = set()
        for q in range(4):
            if rng.random() < FILL:
                c = rng.choice(classes)
                present.add(c)
                tile = cell_image(rng.choice(pool[c]))
            else:
                tile = Image.fromarray(noise.integers(90, 170, (CELL, CELL, 3), dtype=np.uint8))
            canvas.paste(tile, ((q % 2) * CELL, (q // 2) * CELL))
        name = f"{split}/{i:05d}.jpg"
        canvas.save(root / name, quality=90)
        rows.append((name, " ".join(sorted(present)), split))
    return rows


def cli(*args: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([*IMGCLF, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"imgclf {' '.join(args)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    return time.perf_counter() - t0


def train_and_score(name: str, data: Path, out: Path, *args: str) -> dict:
    run = out / name
    train_s = cli("train", str(data), *args, "--out", str(run))
    eval_s = cli("evaluate", str(run), "--no-explain")
    m = json.loads((run / "metrics.json").read_text())
    keys = ("mAP", "micro_f1", "macro_f1", "exact_match", "accuracy", "balanced_accuracy")
    row = {"run": name, **{k: round(m[k], 4) for k in keys if k in m}}
    if "baseline" in m and "prevalence_mAP" in m["baseline"]:
        row["prevalence_mAP"] = round(m["baseline"]["prevalence_mAP"], 4)
    if not m.get("multi_label"):
        row["recall"] = {c["class"]: round(c["recall"], 4) for c in m["per_class"]}
    row.update(train_s=round(train_s, 1), evaluate_s=round(eval_s, 1), images=m["images"])
    print(json.dumps(row), flush=True)
    return row


def multi_label(a: argparse.Namespace) -> None:
    data = Path(a.work) / "composites"
    if not (data / "labels.csv").is_file():
        rows = build(data, a.train, "train", sources("train", a.cache), 0)
        rows += build(data, a.test, "test", sources("test", a.cache), 1)
        with open(data / "labels.csv", "w", newline="") as f:
            csv.writer(f).writerows([("path", "label", "split"), *rows])
    labels = ("--labels", str(data / "labels.csv"))
    out = Path(a.work) / "runs"
    train_and_score("transfer", data, out, *labels, "--recipe", "transfer")
    train_and_score("lite0", data, out, *labels, "--recipe", "transfer",
                    "--model", "efficientnet_lite0", "--image-size", "224")  # fmt: skip


def imbalanced(a: argparse.Namespace) -> None:
    dogs = sorted(str(p) for p in (CATS_DOGS / "train" / "DOG").iterdir())
    left_out = random.Random(0).sample(dogs, round(0.9 * len(dogs)))
    exclude = Path(a.work) / "exclude_dogs.txt"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    exclude.write_text("\n".join(left_out) + "\n")
    out = Path(a.work) / "runs"
    base = ("--recipe", "transfer", "--model", "efficientnet_lite0", "--image-size", "224",
            "--exclude-list", str(exclude))  # fmt: skip
    for w in ("none", "auto"):
        train_and_score(f"dogs10-{w}", CATS_DOGS, out, *base, "--class-weights", w)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/imgclf-bench-ml")
    p.add_argument("--cache", default="")
    p.add_argument("--train", type=int, default=800)
    p.add_argument("--test", type=int, default=300)
    p.add_argument("--only", choices=("multi", "imbalanced"), default=None)
    a = p.parse_args()
    print(json.dumps({"machine": machine()}), flush=True)
    if a.only != "imbalanced":
        multi_label(a)
    if a.only != "multi":
        imbalanced(a)


if __name__ == "__main__":
    main()
