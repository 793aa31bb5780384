"""A recipe end to end as a user runs it: `imgclf train DATA --recipe NAME [options]` from a cold
decoded cache, then `imgclf evaluate RUN` (the recipe's TTA), timed and with peak RSS.

    python benchmarks/bench_recipes.py transfer                 # ../shared/data/CATS_DOGS
    python benchmarks/bench_recipes.py cifar-fast               # the CIFAR-10 zip
    python benchmarks/bench_recipes.py alexnet-cifar -- --max-per-class 200 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import CATS_DOGS, CIFAR_ZIP, machine

DATA = {"transfer": CATS_DOGS, "cifar-fast": CIFAR_ZIP, "alexnet-cifar": CIFAR_ZIP}


def timed(cmd: list[str], env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return time.perf_counter() - t0, out.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("recipe", choices=sorted(DATA))
    ap.add_argument("--data", default="", help="default: the recipe's data set under ../shared")
    ap.add_argument("--out", default="", help="run folder (default: a new temporary folder)")
    # more `imgclf train` options after `--` (parsed apart: argparse would take them for ours)
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    a = ap.parse_args(argv[:cut])
    a.extra = argv[cut + 1 :]
    exe = str(Path(sys.executable).parent / "imgclf")
    run = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="imgclf-recipe-")) / "run"
    # a cold cache: decoding the images is part of the end-to-end time
    env = {**os.environ, "IMGCLF_CACHE": tempfile.mkdtemp(prefix="imgclf-cold-cache-")}
    data = a.data or str(DATA[a.recipe])
    print(machine(), flush=True)
    train_s, train_out = timed(
        [exe, "train", data, "--recipe", a.recipe, *a.extra, "--out", str(run)], env
    )
    eval_s, eval_out = timed([exe, "evaluate", str(run)], env)
    metrics = json.loads((run / "metrics.json").read_text())
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(train_out.strip().splitlines()[0])  # the recipe's choices
    print(eval_out)
    result = {
        "recipe": a.recipe,
        "extra": a.extra,
        "run": str(run),
        "test_accuracy": metrics["accuracy"],
        "tta": metrics["tta"],
        "images": metrics["images"],
        "train_s": round(train_s, 1),
        "evaluate_s": round(eval_s, 1),
        "total_s": round(train_s + eval_s, 1),
        "peak_rss_mib": round(rss),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
