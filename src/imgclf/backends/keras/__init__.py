"""The Keras 3 backend: what `imgclf.backends.get("keras")` offers. The only place that imports
keras; importing `models` registers its builders under the same names as the PyTorch ones."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from imgclf.backends import check_refusals  # noqa: E402
from imgclf.backends.torch import load_before_tensorflow  # noqa: E402
from imgclf.files import quiet_stderr  # noqa: E402

# TensorFlow loaded before PyTorch makes a later `import torchvision.models` crash the process
# (segmentation fault, seen with tensorflow-cpu 2.21 and torch 2.14.1): PyTorch's side first.
load_before_tensorflow()

# tensorflow-cpu 2.21 writes absl's "log messages before InitializeLog" and a oneDNN notice to
# file descriptor 2 while it loads, whatever TF_CPP_MIN_LOG_LEVEL says: a one-line error must
# stay one line. Errors in the import itself are Python exceptions and still reach the user.
with quiet_stderr():
    import tensorflow  # noqa: E402, F401

from imgclf.backends.keras.refusals import REFUSED  # noqa: E402
from imgclf.config import RunConfig  # noqa: E402
from imgclf.runs import RunResult  # noqa: E402

NAME = "keras"
CHECKPOINT_SUFFIX = ".keras"
EXPORT_FORMATS = {"keras": "model.keras", "savedmodel": "saved_model"}  # -> file or folder
INPUT_LAYOUT = "NHWC"


def check_config(cfg: RunConfig) -> None:
    check_refusals(NAME, REFUSED, cfg)


def launch(cfg: RunConfig, argv: list[str]) -> int | None:
    """One process drives every device (MirroredStrategy, see `distributed`): never torchrun's
    (refusals.py refuses running under it)."""
    return None


def fit(
    cfg: RunConfig,
    resume: bool = False,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> RunResult:
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
