"""The PyTorch backend: what `imgclf.backends.get("torch")` offers (see `Backend` there)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.backends import check_refusals
from imgclf.config import RunConfig
from imgclf.runs import RunResult
from imgclf.settings import launched_by_torchrun

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


# Torch-only helpers the backend-neutral packages reach through `backends.get("torch")`, so that
# torch is imported under backends/torch/ alone (the audit's network pass, preview, bench).


def lite_embedder(variant: int = 0) -> Any:
    """(cache, positions) -> unit Lite<variant> features, batch by batch; None without weights."""
    from imgclf.backends.torch.embed import lite_embedder as embedder

    return embedder(variant)


def object_group() -> Any:
    """A context manager: torchrun's group on gloo for the sharded audit, or None outside one."""
    from imgclf.backends.torch.distributed import object_group as group

    return group()


def lite_weights_missing(variant: int) -> str | None:
    from imgclf.backends.torch.embed import lite_weights_missing as missing

    return missing(variant)


def aligned_scores(thumbs: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    from imgclf.backends.torch.aligned_match import aligned_scores as scores

    return scores(thumbs, i, j)


def augment_preview(data: str, out_dir: Path, **options: Any) -> list[Path]:
    """`imgclf preview`: the batch grid and augmentations (backends/torch/preview.py)."""
    from imgclf.backends.torch.preview import preview

    return preview(data, out_dir, **options)


def bench_stages(cfg: RunConfig, decode_images: int, steps: int) -> tuple[list, dict]:
    """`imgclf bench`'s stages (backends/torch/bench.py)."""
    from imgclf.backends.torch.bench import run_stages

    return run_stages(cfg, decode_images, steps)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def fetch_cifar10(root: Path) -> None:
    """torchvision's CIFAR-10 downloader (needs internet) into root."""
    from torchvision.datasets import CIFAR10

    CIFAR10(str(root), train=True, download=True)


def load_before_tensorflow() -> None:
    """Import torch and torchvision's models now: with TensorFlow loaded first, a later
    `import torchvision.models` crashes the process (the Keras backend calls this first)."""
    import torch  # noqa: F401
    import torchvision.models  # noqa: F401


def fit_streamed_head(
    feats: Any, fit_rows: np.ndarray, held: np.ndarray, target: np.ndarray, seed: int = 0
) -> np.ndarray:
    """The audit's cross-fitted head over features read batch by batch (audit/heads.py)."""
    from imgclf.backends.torch.streamed_head import streamed_head as fit

    return fit(feats, fit_rows, held, target, seed)
