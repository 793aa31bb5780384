"""Find pretrained weights: a file the user names, torch's hub cache, or a download when online."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from imgclf.backends.torch.checkpoint import safe_load


class WeightsUnavailable(RuntimeError):
    """Pretrained weights were asked for and cannot be found; the message says how to get them."""


def load_state_file(path: str | Path) -> dict:
    """A state dict from a weights file (or a checkpoint holding one under 'state_dict')."""
    obj = safe_load(path, "weights file", WeightsUnavailable)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    return obj


def _offline() -> bool:
    return os.environ.get("IMGCLF_OFFLINE", "") not in ("", "0")


def load_torchvision_weights(model: nn.Module, arch: str, weights_file: str = "") -> None:
    """Load torchvision's ImageNet weights for `arch` into `model` (strict)."""
    from torchvision.models import get_model_weights

    if weights_file:
        model.load_state_dict(load_state_file(weights_file))
        return
    w = get_model_weights(arch).DEFAULT
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    cached = cache / os.path.basename(w.url)
    if cached.is_file():
        model.load_state_dict(load_state_file(cached))
        return
    how = (
        f"ImageNet weights for {arch} are not available: download {w.url} into {cache}/ "
        f"(torch's cache; TORCH_HOME moves it) or pass --weights FILE"
    )
    if _offline():
        raise WeightsUnavailable(how + " (IMGCLF_OFFLINE is set, so no download was tried)")
    try:
        model.load_state_dict(w.get_state_dict(progress=True, check_hash=True))
    except Exception as e:  # URLError, socket errors, hash mismatch: all mean "not here"
        raise WeightsUnavailable(f"{how} (download failed: {type(e).__name__})") from None
