"""Grad-CAM in one run (issue 26): the pointing game on composites we build, and the speed of
`predict --explain` against plain `predict` on the same photos.

Pointing game: a frozen EfficientNet-Lite0 run trained on CATS_DOGS train; each composite is a
2 x 2 grid of one test cat, one test dog and two CIFAR-10 test vehicles (airplane, automobile,
ship, truck: pictures of neither class), 112 px tiles in a seeded random order. A hit is the
peak of the map for CAT in the cat's tile (and for DOG in the dog's); chance is 25 %.

    python benchmarks/bench_explain.py [--run RUN] [--composites 200] [--speed-images 200]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from common import CATS_DOGS, CIFAR_ZIP, machine

VEHICLES = ("airplane", "automobile", "ship", "truck")


def train_run() -> Path:
    run = Path(tempfile.mkdtemp(prefix="imgclf-explain-")) / "run"
    exe = Path(sys.executable).parent / "imgclf"
    cmd = [str(exe), "train", str(CATS_DOGS), "--model", "efficientnet_lite0", "--freeze"]
    cmd += ["--augment", "none", "--epochs", "3", "--out", str(run)]
    subprocess.run(cmd, check=True, capture_output=True)
    return run


def tiles(n: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """n cats, n dogs (CATS_DOGS test, never trained on) and 2n vehicles, 112 px squares."""
    from imgclf.data.images import decode_square

    cats = sorted((CATS_DOGS / "test" / "CAT").iterdir())[:n]
    dogs = sorted((CATS_DOGS / "test" / "DOG").iterdir())[:n]
    with zipfile.ZipFile(CIFAR_ZIP) as z:
        names = [m for m in z.namelist() if m.startswith("test/") and m.split("/")[1] in VEHICLES]
        pick = np.random.default_rng(seed).choice(len(names), 2 * n, replace=False)
        vehicles = [
            np.asarray(Image.open(io.BytesIO(z.read(names[i]))).convert("RGB").resize((112, 112)))
            for i in pick
        ]
    return (
        [decode_square(str(p), 112) for p in cats],
        [decode_square(str(p), 112) for p in dogs],
        vehicles,
    )


def pointing_game(run: Path, n: int, seed: int = 0) -> dict:
    from imgclf.explain import peak
    from imgclf.predictor import load_predictor

    predictor = load_predictor(run, "cpu", tta=False, calibrated=False)
    names = predictor.class_names
    cats, dogs, vehicles = tiles(n, seed)
    rng = np.random.default_rng(seed)
    canvases, where = [], []
    for i in range(n):
        order = rng.permutation(4)  # tile slot of cat, dog, vehicle, vehicle
        pics = [cats[i], dogs[i], vehicles[2 * i], vehicles[2 * i + 1]]
        canvas = np.zeros((224, 224, 3), np.uint8)
        for pic, slot in zip(pics, order, strict=True):
            r, c = divmod(int(slot), 2)
            canvas[r * 112 : (r + 1) * 112, c * 112 : (c + 1) * 112] = pic
        canvases.append(canvas)
        where.append((int(order[0]), int(order[1])))
    hits = {"CAT": 0, "DOG": 0}
    for cls, k in (("CAT", 0), ("DOG", 1)):
        idx = names.index(cls)
        for s in range(0, n, 32):
            batch = np.stack(canvases[s : s + 32])
            cams, _ = predictor.explain(batch, [idx] * len(batch))
            for j, cam in enumerate(cams):
                x, y = peak(cam)
                hits[cls] += (y >= 112) * 2 + (x >= 112) == where[s + j][k]
    return {
        "composites": n,
        "cat_hits": hits["CAT"] / n,
        "dog_hits": hits["DOG"] / n,
        "both": (hits["CAT"] + hits["DOG"]) / (2 * n),
    }


def speed(run: Path, n: int) -> dict:
    """Images/s of predict_paths and explain_paths (overlay PNGs written) on the same photos,
    after a warm-up of each, in this process."""
    from imgclf.explain import explain_paths
    from imgclf.predictor import load_predictor, predict_paths

    photos = [str(p) for p in sorted((CATS_DOGS / "test" / "CAT").iterdir())[:n]]
    predictor = load_predictor(run, "cpu")
    out = tempfile.mkdtemp(prefix="imgclf-explain-png-")
    predict_paths(predictor, photos[:32], batch_size=32)
    explain_paths(predictor, photos[:32], out, batch_size=32)
    t0 = time.perf_counter()
    predict_paths(predictor, photos, batch_size=32)
    t1 = time.perf_counter()
    explain_paths(predictor, photos, out, batch_size=32)
    t2 = time.perf_counter()
    return {"images": n, "predict_per_s": n / (t1 - t0), "explain_per_s": n / (t2 - t1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="")
    ap.add_argument("--composites", type=int, default=200)
    ap.add_argument("--speed-images", type=int, default=200)
    a = ap.parse_args()
    print(machine(), flush=True)
    t0 = time.perf_counter()
    run = Path(a.run) if a.run else train_run()
    print(json.dumps({"run": str(run), "train_s": time.perf_counter() - t0}), flush=True)
    print(json.dumps(pointing_game(run, a.composites)), flush=True)
    s = speed(run, a.speed_images)
    s["ratio"] = s["explain_per_s"] / s["predict_per_s"]
    print(json.dumps(s), flush=True)


if __name__ == "__main__":
    main()
