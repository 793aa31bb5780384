"""Device choice, autocast and seeding: the helpers every entry point shares."""

from __future__ import annotations

import contextlib
import functools
import random
from typing import Any

import numpy as np
import torch


def pick_device(name: str = "auto") -> torch.device:
    """auto picks cuda, then mps, then cpu."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast_dtype(cfg: Any, device: torch.device) -> torch.dtype | None:
    """bf16 (no loss scaling needed) under --amp on CUDA and under --cpu-bf16 on the CPU; None
    where the run computes in float32."""
    if device.type == "cuda":
        return torch.bfloat16 if cfg.amp and torch.cuda.is_bf16_supported() else None
    if device.type == "cpu" and cfg.cpu_bf16:
        # without AVX512-BF16 or AMX oneDNN emulates bf16, slower than float32: refusals.py
        # refuses that at the command's entry
        assert native_cpu_bf16(), "--cpu-bf16 reached training on a CPU without native bf16"
        return torch.bfloat16
    return None


@functools.cache  # asked on every step (Trainer.amp): probe the CPU once
def native_cpu_bf16() -> bool:
    """AVX512-BF16 or AMX (torch's own probes; mkldnn's bf16 check only asks for AVX512BW)."""
    cpu = torch.cpu
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, p, lambda: False)() for p in probes)


def autocast(cfg: Any, device: torch.device) -> contextlib.AbstractContextManager:
    dtype = autocast_dtype(cfg, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
