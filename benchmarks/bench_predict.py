"""Predict and evaluate throughput against the model's forward-only limit, same process, same
machine, side by side (issue 12, item 8).

python benchmarks/bench_predict.py [--model efficientnet_lite2] [--images 1000]

1. a run folder for the model (1 epoch on 16 images per class: weights do not change speed);
2. forward-only limit: predict_proba on already-decoded uint8 batches of 64, in memory;
3. predict: imgclf.predictor.predict_paths on N held-out JPEGs (decode + resize + inference);
4. the whole `imgclf predict` command (process start, model load, CSV) and `imgclf evaluate`
   (cold decoded cache, then warm).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch  # noqa: F401  (before anything imports TensorFlow)

from common import CATS_DOGS, machine


def timed(fn):  # noqa: ANN001, ANN201
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def cli(*args: str) -> float:
    exe = Path(sys.executable).parent / "imgclf"
    _, dt = timed(lambda: subprocess.run([str(exe), *args], check=True, capture_output=True))
    return dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="efficientnet_lite2")
    ap.add_argument("--images", type=int, default=1000)
    a = ap.parse_args()
    import imgclf
    from imgclf.data.folder import scan_class_folder
    from imgclf.predictor import decoded_batches, load_predictor, predict_paths

    tmp = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    os.environ["IMGCLF_CACHE"] = str(tmp / "cache")
    cfg = imgclf.build_config(
        data_dir=str(CATS_DOGS), model=a.model, epochs=1, max_per_class=16, out_dir=str(tmp / "run")
    )
    imgclf.train(cfg, progress=False)
    paths = scan_class_folder(CATS_DOGS / "test").paths[: a.images]
    pred = load_predictor(tmp / "run")
    size = pred.pre.size
    batches = [b for _, b, _ in decoded_batches(paths[:256], size, 64)]
    pred.predict_proba(batches[0])  # warm-up
    _, dt = timed(lambda: [pred.predict_proba(batches[i % 4]) for i in range(len(paths) // 64)])
    forward = (len(paths) // 64) * 64 / dt
    rows, dt = timed(lambda: predict_paths(pred, paths))
    assert sum("class" in r for r in rows) == len(paths)
    e2e = len(paths) / dt
    sub = tmp / "sub"
    sub.mkdir()
    for i, p in enumerate(paths):
        os.symlink(p, sub / f"{i:05d}_{os.path.basename(p)}")
    cmd = cli("predict", str(tmp / "run"), str(sub), "--csv", str(tmp / "p.csv"))
    ev_cold = cli("evaluate", str(tmp / "run"))
    ev_warm = cli("evaluate", str(tmp / "run"))
    res = {
        "machine": machine(),
        "model": a.model,
        "image_size": size,
        "images": len(paths),
        "forward_only_img_s": round(forward, 1),
        "predict_paths_img_s": round(e2e, 1),
        "ratio_forward_over_predict": round(forward / e2e, 2),
        "imgclf_predict_command_s": round(cmd, 1),
        "imgclf_evaluate_1000_cold_cache_s": round(ev_cold, 1),
        "imgclf_evaluate_1000_warm_cache_s": round(ev_warm, 1),
    }
    print(json.dumps(res, indent=1))
    np.savetxt(tmp / "done", [1])


if __name__ == "__main__":
    main()
