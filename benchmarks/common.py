"""Benchmark helpers: run a phase in a fresh process and collect its time and peak RSS."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CATS_DOGS = SHARED / "CATS_DOGS"
CIFAR_ZIP = SHARED / "cifar10_jpeg" / "cifar10_jpeg.zip"


def peak_rss_mb() -> float:
    """Peak RSS of this process and of its (waited-for) children, in MiB (Linux reports KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024


def run_phase(script: str, phase: str, *args: str, env: dict | None = None) -> dict:
    """Run `script --phase phase` in a new process; it prints one JSON line last."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, script, "--phase", phase, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if out.returncode != 0:
        raise RuntimeError(f"{phase} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["wall_s"] = time.perf_counter() - t0
    return res


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo")
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = cpu
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{os.cpu_count()} cores ({model}), {gpu}, Python {platform.python_version()}, "
        f"torch {torch.__version__}, "
        f"GLIBC_TUNABLES={'set' if os.environ.get('GLIBC_TUNABLES') else 'unset'}"
    )
