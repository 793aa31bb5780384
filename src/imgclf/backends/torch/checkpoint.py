"""Checkpoints that load with torch.load(weights_only=True): tensors and plain data, never code."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from imgclf.files import atomic_write


class CheckpointError(RuntimeError):
    pass


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write atomically (temp file + rename): a kill leaves the previous checkpoint intact."""
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def safe_load(path: str | Path, what: str = "checkpoint", error: type = CheckpointError) -> Any:
    """torch.load(weights_only=True): tensors and plain containers only. A file that carries
    pickled code is refused with `error`, never executed."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else "unpickling refused"
        raise error(
            f"{path}: refused to load: it carries pickled code, not just weights ({first})"
        ) from None
    except (RuntimeError, EOFError, OSError) as e:
        raise error(f"{path}: not a readable {what} ({e})") from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    ckpt = safe_load(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"{path}: not an imgclf checkpoint (no 'model' entry)")
    return ckpt
