"""The PyTorch backend: what `imgclf.backends.get("torch")` offers (see `Backend` there)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.backends import check_refusals, launched_by_torchrun
from imgclf.config import RunConfig
from imgclf.runs import RunResult

NAME = "torch"
CHECKPOINT_SUFFIX = ".pt"
EXPORT_FORMATS = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}  # -> file
INPUT_LAYOUT = "NCHW"


def check_config(cfg: RunConfig) -> None:
    """Every RunConfig field is honoured by this backend; some combinations are refused."""
    from imgclf.backends.torch.refusals import REFUSED

    check_refusals(NAME, REFUSED, cfg)


def launch(cfg: RunConfig, argv: list[str]) -> int | None:
    """`--replicas N` outside torchrun starts torchrun on this machine; under torchrun (ours or
    the user's), this process is one rank and trains."""
    from imgclf.backends.torch.distributed import launch_local

    if cfg.replicas <= 1 or launched_by_torchrun():
        return None
    # every rank, and a group torchrun restarts, must find the same run folder: name it for them
    return launch_local(cfg.replicas, [*argv, "--out", cfg.out_dir], cfg.device)


def fit(
    cfg: RunConfig,
    resume: bool = False,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> RunResult:
    from imgclf.backends.torch.train import fit as fit_torch

    return fit_torch(cfg, resume, progress, on_step)


def load_predictor(meta: dict[str, Any], weights: Path, device: str) -> Any:
    from imgclf.backends.torch.predict import TorchPredictor

    return TorchPredictor(meta, weights, device)


def export_model(predictor: Any, fmt: str, out: Path, images: np.ndarray) -> tuple[Path, float]:
    from imgclf.backends.torch.export import export_model

    return export_model(predictor, fmt, out / EXPORT_FORMATS[fmt], images)


def listing_device() -> Any:
    """`imgclf models` builds each model here to count its parameters: no memory, no init."""
    import torch

    return torch.device("meta")


def count_params(model: Any) -> tuple[int, int]:
    from imgclf.backends.torch.models.transfer import count_params as count

    return count(model), count(model, True)
