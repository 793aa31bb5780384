"""Load a run (either backend) as a Predictor: uint8 images in, class probabilities out."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from imgclf import backends
from imgclf.data.folder import is_image_name, walk_files
from imgclf.data.images import ImageDecodeError, decode_square
from imgclf.data.presets import Preprocess
from imgclf.runs import RunDir


class Predictor(Protocol):
    class_names: list[str]
    pre: Preprocess
    meta: dict[str, Any]

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, size, size, 3), already Resize+CenterCrop'd -> float (N, classes)."""
        ...


def load_predictor(run: str | Path, device: str = "auto") -> Predictor:
    """A run folder (its best checkpoint) or a checkpoint file inside one."""
    run = Path(run)
    run_dir = RunDir(run.parent if run.is_file() else run)
    meta = run_dir.read_meta()
    backend = backends.get(meta["backend"])
    weights = run if run.is_file() else run_dir.checkpoint("best", backend.CHECKPOINT_SUFFIX)
    if not weights.exists():  # a run killed before its first epoch ended has no best yet
        weights = run_dir.checkpoint("last", backend.CHECKPOINT_SUFFIX)
    if not weights.exists():
        raise FileNotFoundError(f"{run_dir}: the run has no checkpoint yet (no {weights.name})")
    return backend.load_predictor(meta, weights, device)


def expand_inputs(items: list[str]) -> list[str]:
    """Files, folders (recursively) and globs -> image paths, in the order given."""
    out: list[str] = []
    for item in items:
        if os.path.isdir(item):
            out += [
                os.path.join(d, f)
                for d, _, fs in sorted(walk_files(item))
                for f in fs
                if is_image_name(f)
            ]
        elif any(ch in item for ch in "*?["):
            out += sorted(glob.glob(item, recursive=True))
        else:
            out.append(item)  # a missing file is reported per image, not here
    return out


def predict_paths(
    predictor: Predictor, paths: list[str], batch_size: int = 64, top_k: int = 3
) -> list[dict[str, Any]]:
    """One row per path: predicted class and probability, or the reason it could not be read."""
    rows: list[dict[str, Any]] = [{"path": p} for p in paths]
    good, arrays = [], []
    for i, p in enumerate(paths):
        try:
            arrays.append(decode_square(p, predictor.pre.size))
            good.append(i)
        except (ImageDecodeError, OSError) as e:
            rows[i]["error"] = str(e) if isinstance(e, ImageDecodeError) else "cannot open"
    for s in range(0, len(good), batch_size):
        probs = predictor.predict_proba(np.stack(arrays[s : s + batch_size]))
        for j, pr in zip(good[s : s + batch_size], probs, strict=True):
            order = np.argsort(-pr)[:top_k]
            rows[j].update(
                {
                    "class": predictor.class_names[order[0]],
                    "probability": float(pr[order[0]]),
                    "top": [
                        {"class": predictor.class_names[k], "probability": float(pr[k])}
                        for k in order
                    ],
                }
            )
    return rows
