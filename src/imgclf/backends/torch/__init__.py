"""The PyTorch backend: what `imgclf.backends.get("torch")` offers (see `Backend` there)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.config import RunConfig
from imgclf.runs import RunResult

NAME = "torch"
CHECKPOINT_SUFFIX = ".pt"
EXPORT_FORMATS = ("onnx", "torchscript")
INPUT_LAYOUT = "NCHW"


def check_config(cfg: RunConfig) -> None:
    """Every RunConfig field is honoured by this backend."""


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

    return export_model(predictor, fmt, out, images)


def count_params(model: Any) -> tuple[int, int]:
    from imgclf.backends.torch.models.transfer import count_params as count

    return count(model), count(model, True)
