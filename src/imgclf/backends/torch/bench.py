"""`imgclf bench` for PyTorch: each stage of the training and inference path timed on its own,
through the same functions `imgclf train` and `imgclf predict` use, so a slow stage shows where
the time goes. Every stage warms up first and synchronises the device before reading the clock.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torchvision
from torchvision.io import decode_jpeg, read_file
from torchvision.transforms.v2 import functional as TF

from imgclf.backends import check_refusals
from imgclf.backends.common import start_run
from imgclf.backends.torch.device import autocast_dtype, seed_everything
from imgclf.backends.torch.distributed import process_group
from imgclf.backends.torch.loaders import BatchPlan, batches
from imgclf.backends.torch.refusals import REFUSED
from imgclf.backends.torch.steps import evaluate_epoch, train_one_epoch
from imgclf.backends.torch.train import build_trainer
from imgclf.backends.torch.trainer import Trainer
from imgclf.backends.torch.transforms import normalize_batch
from imgclf.config import RunConfig
from imgclf.data.cache import DecodedCache
from imgclf.data.images import decode_square

Stage = dict[str, Any]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(device: torch.device, fn: Callable[[], Any]) -> float:
    """Seconds fn takes, with the device idle before and after (queued GPU work counted)."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def stage(name: str, images: int, seconds: float, batch: int = 0, note: str = "") -> Stage:
    row: Stage = {"stage": name, "images": images, "seconds": round(seconds, 4)}
    row["images_per_s"] = round(images / seconds, 1) if seconds > 0 else float("nan")
    if batch:
        row["ms_per_batch"] = round(1000 * seconds * batch / max(images, 1), 3)
    return row | ({"note": note} if note else {})


def decode_stages(paths: list[str], size: int, device: torch.device, batch: int) -> list[Stage]:
    """File to a uint8 size x size square, one thread: PIL (the cache's and the predictor's
    decoder, with JPEG draft scaling), then, on the JPEGs among them, torchvision.io on the CPU
    and nvJPEG on CUDA in batches."""
    decode_square(paths[0], size)  # warm-up
    out = [stage("decode PIL (1 thread)", len(paths), clock(device, lambda: _pil(paths, size)))]
    jpegs = [p for p in paths if _is_jpeg(p)]

    def tvio(dev: str) -> None:
        data = [read_file(p) for p in jpegs]
        for i in range(0, len(data), batch):
            for img in decode_jpeg(data[i : i + batch], device=dev, mode=_RGB):
                TF.center_crop(TF.resize(img, size, antialias=True), size)

    for dev, name in (("cpu", "decode torchvision.io CPU"), ("cuda", "decode nvJPEG (GPU)")):
        if dev == "cuda" and device.type != "cuda":
            out.append(skipped(name, "needs --device cuda"))
            continue
        if not jpegs:
            out.append(skipped(name, "no JPEG files in the sample"))
            continue
        _warm(tvio, dev, jpegs)
        out.append(stage(name, len(jpegs), clock(device, lambda d=dev: tvio(d)), batch))
    return out


def skipped(name: str, why: str) -> Stage:
    return {"stage": name, "images": 0, "seconds": 0.0, "images_per_s": None, "note": why}


def _is_jpeg(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(3) == b"\xff\xd8\xff"


_RGB = torchvision.io.ImageReadMode.RGB


def _pil(paths: list[str], size: int) -> None:
    for p in paths:
        decode_square(p, size)


def _warm(fn: Callable[[str], None], dev: str, paths: list[str]) -> None:
    try:
        fn(dev)
    except RuntimeError as e:  # e.g. a JPEG flavour torchvision cannot read: say which stage
        raise RuntimeError(f"torchvision.io.decode_jpeg on {dev}, {paths[0]}...: {e}") from e


def cache_stage(cfg: RunConfig, s: Any, cache_dir: str) -> Stage:
    index = s.splits["train"]
    seconds = clock(
        torch.device("cpu"),
        lambda: DecodedCache(index, s.pre.size, cache_dir).build(cfg.workers, progress=False),
    )
    return stage(f"cache build ({cfg.workers} workers)", len(index), seconds)


def run_stages(cfg: RunConfig, decode_images: int = 200, steps: int = 20) -> tuple[list, dict]:
    """Every stage on cfg (model, device, batch size, image size, amp, channels_last, compile),
    with a fresh decoded cache (its build is a stage) and nothing written outside a temp folder."""
    check_refusals("torch", REFUSED, cfg)  # e.g. --cpu-bf16 where the CPU lacks it
    with tempfile.TemporaryDirectory(prefix="imgclf-bench-") as tmp:
        cfg = cfg.replace(out_dir=f"{tmp}/run", cache_dir=f"{tmp}/cache")
        s = start_run(cfg, "torch", resume=False)
        seed_everything(cfg.seed)
        rows = [cache_stage(cfg, s, cfg.cache_dir)]
        with process_group(cfg.device) as (d, device):
            t = build_trainer(s, None, False, d, device)
            paths = s.splits["train"].paths
            pick = np.random.default_rng(cfg.seed).permutation(len(paths))[:decode_images]
            decode_paths = [paths[i] for i in sorted(pick)]
            rows = decode_stages(decode_paths, s.pre.size, device, cfg.batch_size) + rows
            rows.append(augment_stage(t))
            limit = step_stage(t, steps)
            epoch = epoch_stage(t)
            rows += [limit, epoch, eval_stage(t), *predict_stages(t, decode_paths)]
        info = device_info(t)
        info["epoch_vs_compute_limit"] = round(epoch["images_per_s"] / limit["images_per_s"], 3)
        return rows, info


def augment_stage(t: Trainer) -> Stage:
    """The cached data path alone: read, copy, normalise, flip and rotate whole batches."""
    cfg = t.cfg

    plan = _tutorial_plan(t)

    def one_pass() -> int:
        return sum(len(x) for x, _ in batches(t.train_data, plan))

    one_pass()
    seconds = clock(t.device, one_pass)
    return stage("cached batches + augmentation", len(t.train_data), seconds, cfg.batch_size)


def _tutorial_plan(t: Trainer) -> BatchPlan:
    """The run's training batches with the tutorial's augmentation, whatever --augment says: the
    data path at its most expensive."""
    return dataclasses.replace(t.plan(True), augment="tutorial", seed=1)


def step_stage(t: Trainer, steps: int) -> Stage:
    """The train step on one batch already on the device: the compute limit of an epoch."""
    x, y = next(iter(batches(t.train_data, _tutorial_plan(t))))
    net = t.trainable(t.model)
    loop, hooks = t.loop(), t.hooks
    train_one_epoch(net, [(x, y)] * 3, loop, t.step, hooks)  # warm-up: cudnn autotune, compile
    # each step timed alone, the median kept: a step another process slowed is not the limit
    # (timed together, 20 steps on a shared 2-core machine put the limit below the real epoch)
    one = [
        clock(t.device, lambda: train_one_epoch(net, [(x, y)], loop, 0, hooks))
        for _ in range(steps)
    ]
    seconds = statistics.median(one) * steps
    return stage("train step (resident batch)", steps * len(y), seconds, len(y), "median step")


def epoch_stage(t: Trainer) -> Stage:
    """A real training epoch end to end (without its validation), as `imgclf train` runs it."""
    row = t.run_epoch(t.epoch, False, None)
    n = len(t.train_data)  # images/s there: the training pass alone, read to the last step
    return stage("train epoch (end to end)", n, n / row["images_per_s"], t.cfg.batch_size)


def eval_stage(t: Trainer) -> Stage:
    def one_pass() -> None:
        evaluate_epoch(t.model, batches(t.val_data, t.plan(False)), t.loop())

    one_pass()
    seconds = clock(t.device, one_pass)
    return stage("eval pass (validation split)", len(t.val_data), seconds, t.cfg.batch_size)


def predict_stages(t: Trainer, paths: list[str]) -> list[Stage]:
    """Batch 1 from a JPEG file to probabilities (what one request costs), and the model's
    throughput on resident batches (what a batch job can reach)."""
    model, pre, dev = t.model.eval(), t.train_data.pre, t.device

    @torch.no_grad()
    def one(p: str) -> None:
        img = np.require(decode_square(p, pre.size)[None], np.uint8, ["C", "W"])  # PIL's: read-only
        x = normalize_batch(torch.from_numpy(img).to(dev), pre)
        with t.amp:
            torch.softmax(model(x).float(), 1).cpu()

    one(paths[0])
    times = [clock(dev, lambda p=p: one(p)) for p in paths[:50]]
    latency = stage("predict latency (batch 1, from file)", 1, statistics.median(times), 1)
    latency["p90_ms"] = round(1000 * float(np.percentile(times, 90)), 3)
    x, _ = next(iter(batches(t.val_data, t.plan(False))))

    @torch.no_grad()
    def forward(k: int) -> None:
        for _ in range(k):
            with t.amp:
                model(x)

    forward(2)
    seconds = clock(dev, lambda: forward(10))
    return [latency, stage("predict throughput (resident batch)", 10 * len(x), seconds, len(x))]


def device_info(t: Trainer) -> dict[str, Any]:
    dev = t.device
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name()
    amp = autocast_dtype(t.cfg, dev) is not None
    return {
        "device": f"{dev.type}: {name}",
        "dtype": "bfloat16 autocast" if amp else "float32",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "threads": torch.get_num_threads(),
        "model": t.cfg.model,
        "image_size": t.train_data.pre.size,
        "batch_size": t.cfg.batch_size,
        "channels_last": t.cfg.channels_last,
        "compile": t.cfg.compile,
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()
