"""The Keras 3 backend: what `imgclf.backends.get("keras")` offers. The only place that imports
keras; importing `models` registers its builders under the same names as the PyTorch ones."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# TensorFlow loaded before PyTorch makes a later `import torchvision.models` crash the process
# (segmentation fault, seen with tensorflow-cpu 2.21 and torch 2.14.1): load PyTorch's side first.
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402, F401
import torchvision.models  # noqa: E402, F401

from imgclf.backends import UnsupportedOption, launched_by_torchrun  # noqa: E402
from imgclf.config import RunConfig  # noqa: E402
from imgclf.recipes import recipe_settings  # noqa: E402
from imgclf.runs import RunResult  # noqa: E402

NAME = "keras"
CHECKPOINT_SUFFIX = ".keras"
EXPORT_FORMATS = {"keras": "model.keras", "savedmodel": "saved_model"}  # -> file or folder
INPUT_LAYOUT = "NHWC"

# Options this backend refuses, with the reason: each is checked before anything is written.
REFUSED: dict[str, tuple[Callable[[RunConfig], bool], str]] = {
    "pipeline": (
        lambda c: c.pipeline != "cache",
        "feeds Keras from the decoded cache only (--pipeline cache)",
    ),
    "channels_last": (
        lambda c: not c.channels_last,
        "always computes in NHWC (channels_last), Keras' own layout",
    ),
    "device": (
        lambda c: not (c.device in ("auto", "cpu") or c.device.startswith(("cuda", "gpu"))),
        "runs on auto, cpu or cuda[:N] (TensorFlow's devices)",
    ),
    "compile": (
        lambda c: c.compile,
        "leaves compilation to Keras (XLA jit_compile='auto'); --compile is torch.compile",
    ),
    "optimizer": (
        lambda c: c.optimizer == "lbfgs",
        "trains with Keras' first-order optimizers; lbfgs is the PyTorch head-on-features fit",
    ),
    "ema": (
        lambda c: c.ema > 0,
        "keeps no weight average yet (Keras' use_ema swaps it in only when fit ends, after our "
        "per-epoch validation and checkpoints)",
    ),
    "lookahead": (
        lambda c: c.lookahead,
        "has no lookahead (the PyTorch trainer's airbench weight averaging)",
    ),
    "cpu_bf16": (
        lambda c: c.cpu_bf16,
        "computes in float32 on the CPU; --cpu-bf16 is PyTorch's CPU autocast",
    ),
    "sync_bn": (
        lambda c: c.sync_bn,
        "is for torchrun processes; MirroredStrategy replicas keep Keras' per-replica BatchNorm",
    ),
}


def check_config(cfg: RunConfig) -> None:
    for name, (bad, why) in REFUSED.items():
        if bad(cfg):
            value, option = getattr(cfg, name), name.replace("_", "-")
            flag = f"--{option} {value}" if not isinstance(value, bool) else f"--no-{option}"
            flag = f"--{option}" if value is True else flag
            origin = ""
            if name in recipe_settings(cfg.recipe):
                origin = f" (--recipe {cfg.recipe} chose it; the recipes are tuned on torch)"
            raise UnsupportedOption(
                f"{flag} is not supported by the keras backend: it {why}{origin}"
            )


def launch(cfg: RunConfig, argv: list[str]) -> int | None:
    """One process drives every device (MirroredStrategy, see `distributed`): never torchrun's."""
    if launched_by_torchrun():
        raise UnsupportedOption(
            "torchrun starts PyTorch processes: use --backend torch, or --replicas N with keras"
        )
    return None


def fit(
    cfg: RunConfig,
    resume: bool = False,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> RunResult:
    check_config(cfg)
    from imgclf.backends.keras.train import fit as fit_keras

    return fit_keras(cfg, resume, progress, on_step)


def load_predictor(meta: dict[str, Any], weights: Path, device: str) -> Any:
    from imgclf.backends.keras.predict import KerasPredictor

    return KerasPredictor(meta, weights)


def export_model(predictor: Any, fmt: str, out: Path, images: np.ndarray) -> tuple[Path, float]:
    from imgclf.backends.keras.export import export_model

    return export_model(predictor, fmt, out / EXPORT_FORMATS[fmt], images)


def count_params(model: Any) -> tuple[int, int]:
    from imgclf.backends.keras.models import count_params as count

    return count(model)
