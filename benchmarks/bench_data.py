"""Data pipeline, side by side in one run on CATS_DOGS/train (3,000 JPEGs) at 224 px:
the tutorial's torchvision ImageFolder + DataLoader pass vs building imgclf's decoded cache vs a
pass over the cache (with the same flip + rotation augmentation). Images/s and peak RSS.
Optional --rss25k: a 25,000-image pass (CIFAR-10 JPEGs resized to 224) to check peak RSS < 2 GB.

    python benchmarks/bench_data.py [--rss25k]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from common import CATS_DOGS, CIFAR_ZIP, machine, peak_rss_mb, run_phase


def phase(name: str, cache_dir: str, workers: int) -> dict:
    import torch

    from imgclf.backends.torch.loaders import BatchPlan, batches, prepare_split
    from imgclf.data.presets import Preprocess
    from imgclf.data.splits import load_splits

    pre = Preprocess()
    plan = BatchPlan(100, torch.device("cpu"), "tutorial", shuffle=True, workers=workers)
    if name == "rss25k":
        from imgclf.data.sources import resolve_data

        idx = load_splits(resolve_data(str(CIFAR_ZIP), cache_dir), max_per_class=2500)["train"]
    else:
        idx = load_splits(CATS_DOGS)["train"]
    t0 = time.perf_counter()
    n = 0
    if name == "plain":
        data = prepare_split(idx, pre, "plain")
        for x, _ in batches(data, plan):
            n += len(x)
    elif name in ("build", "rss25k"):
        data = prepare_split(idx, pre, "cache", cache_dir, workers, progress=False)
        n = len(data)
        if name == "rss25k":
            for _batch in batches(data, plan):
                pass
    elif name == "cached":
        data = prepare_split(idx, pre, "cache", cache_dir, workers, progress=False)
        t0 = time.perf_counter()  # the cache is warm: time the pass only
        for x, _ in batches(data, plan):
            n += len(x)
    dt = time.perf_counter() - t0
    return {
        "phase": name,
        "images": n,
        "seconds": dt,
        "images_per_s": n / dt,
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase", default="")
    ap.add_argument("--cache-dir", default="")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rss25k", action="store_true")
    a = ap.parse_args()
    if a.phase:
        print(json.dumps(phase(a.phase, a.cache_dir, a.workers)))
        return
    cache = tempfile.mkdtemp(prefix="imgclf-bench-")
    print(machine())
    phases = ["plain", "build", "cached"] + (["rss25k"] if a.rss25k else [])
    rows = [
        run_phase(__file__, p, "--cache-dir", cache, "--workers", str(a.workers)) for p in phases
    ]
    print(f"{'phase':8} {'images':>7} {'seconds':>8} {'img/s':>8} {'peak RSS MiB':>13}")
    for r in rows:
        print(
            f"{r['phase']:8} {r['images']:7d} {r['seconds']:8.1f} {r['images_per_s']:8.0f} "
            f"{r['peak_rss_mb']:13.0f}"
        )
    base = rows[0]["images_per_s"]
    print(f"cached pass vs plain pass: {rows[2]['images_per_s'] / base:.1f}x")


if __name__ == "__main__":
    main()
