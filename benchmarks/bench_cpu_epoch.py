"""The CPU training path against its limits (issue 28), every side in one run, interleaved:

1. end to end, process start to exit, cold (fresh cache and run folder): the first tutorial's
   pipeline (benchmarks/tutorial_way.py: as written, num_workers=12, with glibc's malloc as it
   comes and with imgclf's malloc settings; and with 2 workers) vs
   `imgclf train CATS_DOGS --model cnn --epochs 3` (its default carved validation, and
   `--validate-on test`, which does the tutorial's work: 3,000 train images, 1,000 test images
   scored after each epoch);
2. `imgclf bench CATS_DOGS --device cpu`: the real epoch over the train step on a resident batch;
3. exec to the first optimizer step of `imgclf train`, cold and warm cache.

With --before SRC (the src/ folder of another checkout, e.g. a `git worktree` of an older
commit), the imgclf sides run that code too, from the same virtual environment, in the same
rounds. Medians of --repeats rounds; every round printed. Needs ../shared/data/CATS_DOGS.

    python benchmarks/bench_cpu_epoch.py [--repeats 3] [--before /tmp/old/src] [--only ...]
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import CATS_DOGS, machine

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
# exec -> first step: a sitecustomize (so it survives the re-exec imgclf < 0.5 did) that patches
# the optimizer, once PyTorch loads it, to print when it first clears gradients (after the
# first forward pass, before the first backward)
FIRST_STEP = """
import importlib.util, os, sys, time
class Hook:
    def find_spec(self, name, path=None, target=None):
        if name != "torch.optim.optimizer":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module
        def exec_module(module):
            run(module)
            clear, seen = module.Optimizer.zero_grad, []
            def first(self, *a, **k):
                if not seen:
                    seen.append(1)
                    t = time.time() - float(os.environ["T0"])
                    print(f"FIRST_STEP {t:.3f}", file=sys.stderr, flush=True)
                return clear(self, *a, **k)
            module.Optimizer.zero_grad = first
        spec.loader.exec_module = exec_module
        return spec
sys.meta_path.insert(0, Hook())
"""


def run(
    cmd: list[str], src: Path | None = None, path: tuple[str, ...] = (), **env: str
) -> tuple[float, str]:
    """Wall seconds from exec to exit, and stderr."""
    full = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    full.update(env)  # imgclf sets its malloc settings itself (before 0.5: by re-executing)
    if src is not None:
        full["PYTHONPATH"] = os.pathsep.join([*path, str(src)])
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=full)
    seconds = time.perf_counter() - t0
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return seconds, out.stderr


def imgclf(src: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "imgclf", *args]


TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295"


def tutorial(workers: int, tuned: bool = True) -> tuple[float, str]:
    """tuned: with imgclf's malloc settings given to it too (they help it a lot: 107.7 -> 70.9 s
    measured as written), so the comparison is about the pipelines, not malloc."""
    cmd = [sys.executable, str(HERE / "bench_cpu_epoch.py"), "--tutorial", str(workers)]
    return run(cmd, **({"GLIBC_TUNABLES": TUNABLES} if tuned else {}))


def scratch(prefix: str) -> Path:
    """A temporary folder removed when the process ends: each cold run writes a 450 MB cache,
    and a disk busy writing the last ones back slowed the next cold run (seen: 27 vs 23 s)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, tmp, True)
    return tmp


def settle() -> None:
    os.sync()  # the previous case's writes reach the disk before the next case's clock starts


def train_cold(src: Path, *extra: str) -> tuple[float, str]:
    tmp = scratch("imgclf-e2e-")
    args = ["train", str(CATS_DOGS), "--model", "cnn", "--epochs", "3", *extra]
    args += ["--out", str(tmp / "run"), "--cache-dir", str(tmp / "cache")]
    settle()
    try:
        return run(imgclf(src, *args), src)
    finally:
        shutil.rmtree(tmp, True)


def bench_ratio(src: Path) -> tuple[float, str]:
    out = scratch("imgclf-bench-") / "bench.json"
    settle()
    run(imgclf(src, "bench", str(CATS_DOGS), "--device", "cpu", "--json", str(out)), src)
    info = json.loads(out.read_text())
    stages = {s["stage"]: s for s in info["stages"]}
    detail = {k: stages[k]["images_per_s"] for k in stages if k.startswith(("train", "cached"))}
    return info["info"]["epoch_vs_compute_limit"], json.dumps(detail)


def first_step(src: Path, cold: bool) -> tuple[float, str]:
    tmp = scratch("imgclf-first-")
    cache = tmp / "cache"
    args = ["train", str(CATS_DOGS), "--model", "cnn", "--epochs", "1", "--cache-dir", str(cache)]
    try:
        if not cold:  # build the cache first
            run(imgclf(src, *args, "--out", str(tmp / "warm-up")), src)
        (tmp / "hook").mkdir()
        (tmp / "hook" / "sitecustomize.py").write_text(FIRST_STEP)
        cmd = imgclf(src, *args, "--out", str(tmp / "run"))
        settle()
        _, err = run(cmd, src, (str(tmp / "hook"),), T0=repr(time.time()))
    finally:
        shutil.rmtree(tmp, True)
    line = next(x for x in err.splitlines() if x.startswith("FIRST_STEP"))
    return float(line.split()[1]), ""


def tutorial_phase(workers: int) -> None:
    """The tutorial's script as one process: its imports, loaders, 3 epochs and test passes."""
    import torch

    from imgclf.backends.torch.models.small_cnn import TutorialCNN
    from tutorial_way import train_tutorial

    torch.manual_seed(101)
    model = TutorialCNN(2)
    res = train_tutorial(model, model.parameters(), str(CATS_DOGS), 3, workers=workers)
    print(json.dumps(res), file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--before", type=Path, help="src/ of the code to compare against")
    ap.add_argument("--only", default="", help="pair, bench or first (default: all three)")
    ap.add_argument("--tutorial", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.tutorial:
        return tutorial_phase(a.tutorial)
    print(machine(), flush=True)
    sides = [("after", SRC)] + ([("before", a.before.resolve())] if a.before else [])
    cases: dict[str, object] = {}
    if a.only in ("", "pair"):
        cases["tutorial as written (12 workers, untuned malloc), s"] = lambda: tutorial(12, False)
        cases["tutorial as written (12 workers), s"] = lambda: tutorial(12)
        cases["tutorial with 2 workers, s"] = lambda: tutorial(2)
        for name, src in sides:
            cases[f"imgclf {name}: train cnn 3 epochs cold, s"] = lambda s=src: train_cold(s)
            cases[f"imgclf {name}: same, --validate-on test, s"] = lambda s=src: train_cold(
                s, "--validate-on", "test"
            )
    if a.only in ("", "bench"):
        for name, src in sides:
            cases[f"imgclf {name}: bench epoch / compute limit"] = lambda s=src: bench_ratio(s)
    if a.only in ("", "first"):
        for name, src in sides:
            for cold in (True, False):
                label = f"imgclf {name}: exec to first step, {'cold' if cold else 'warm'}, s"
                cases[label] = lambda s=src, c=cold: first_step(s, c)
    results: dict[str, list[float]] = {k: [] for k in cases}
    for r in range(a.repeats):
        for name, case in cases.items():
            value, note = case()  # type: ignore[operator]
            results[name].append(value)
            print(f"round {r + 1}  {name}: {value:.3f}  {note[-300:].strip()}", flush=True)
    print("\nmedians (min-max):")
    for name, values in results.items():
        print(f"  {name}: {statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})")
    report_ratios({k: statistics.median(v) for k, v in results.items()})


def report_ratios(med: dict[str, float]) -> None:
    for name in ("after", "before"):
        ours = med.get(f"imgclf {name}: train cnn 3 epochs cold, s")
        same = med.get(f"imgclf {name}: same, --validate-on test, s")
        if ours is None:
            continue
        tutorials = [k for k in med if k.startswith("tutorial")]
        for tut in tutorials:
            print(f"  {tut[:-3]} / imgclf {name}: {med[tut] / ours:.2f}x (--validate-on test: "
                  f"{med[tut] / same:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
