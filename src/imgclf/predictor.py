"""Load a run (either backend) as a Predictor: uint8 images in, class probabilities out."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from imgclf import backends
from imgclf.calibration import read_temperature, read_thresholds, with_temperature
from imgclf.data.batching import prefetch
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


class FlipTTA:
    """Test-time augmentation: each image's class probabilities averaged with its mirror image's
    (two forward passes: twice the model time, same decoding). Models trained with flips see
    both as the same class, so the average cancels part of their left/right noise."""

    def __init__(self, inner: Predictor):
        self.inner = inner
        self.class_names, self.pre, self.meta = inner.class_names, inner.pre, inner.meta

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        mirrored = np.ascontiguousarray(images[:, :, ::-1])  # NHWC: flip the width axis
        return (self.inner.predict_proba(images) + self.inner.predict_proba(mirrored)) / 2


class Calibrated:
    """The run's temperature on the probabilities (calibration.py): confidences that
    match accuracy on validation; the predicted class never changes."""

    def __init__(self, inner: Predictor, temperature: float):
        self.inner, self.temperature = inner, temperature
        self.class_names, self.pre, self.meta = inner.class_names, inner.pre, inner.meta

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return with_temperature(self.inner.predict_proba(images), self.temperature)


class MultiLabel:
    """A multi-label run: probabilities pass through (one sigmoid per class, no temperature);
    `thresholds` (per class, fitted on val: calibration.json) say which classes are answered."""

    def __init__(self, inner: Predictor, thresholds: np.ndarray):
        self.inner, self.thresholds = inner, thresholds
        self.class_names, self.pre, self.meta = inner.class_names, inner.pre, inner.meta

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return self.inner.predict_proba(images)


def thresholds_of(predictor: Predictor) -> np.ndarray | None:
    """A multi-label predictor's per-class thresholds, None for a single-label one."""
    return getattr(predictor, "thresholds", None)


def load_predictor(
    run: str | Path, device: str = "auto", tta: bool | None = None, calibrated: bool = True
) -> Predictor:
    """A run folder (its best checkpoint) or a checkpoint file inside one; tta: FlipTTA, None:
    as the run was trained to be used (its config's tta, which a recipe may set); calibrated:
    the run's fitted temperature applied, when it has one (calibration.json)."""
    run = Path(run)
    run_dir = RunDir(run.parent if run.is_file() else run)
    meta = run_dir.read_meta()
    if tta is None:
        tta = run_dir.read_config().tta if (run_dir / RunDir.CONFIG).exists() else False
    backend = backends.get(meta["backend"])
    weights = run if run.is_file() else run_dir.checkpoint("best", backend.CHECKPOINT_SUFFIX)
    if not weights.exists():  # a run killed before its first epoch ended has no best yet
        weights = run_dir.checkpoint("last", backend.CHECKPOINT_SUFFIX)
    if not weights.exists():
        raise FileNotFoundError(f"{run_dir}: the run has no checkpoint yet (no {weights.name})")
    return wrap(backend.load_predictor(meta, weights, device), run_dir, tta, calibrated)


def wrap(predictor: Predictor, run_dir: RunDir, tta: bool, calibrated: bool) -> Predictor:
    """Flip TTA (when asked), then the run's temperature (when asked and fitted), or a
    multi-label run's thresholds (fitted on val; 0.5 each before they are)."""
    predictor = FlipTTA(predictor) if tta else predictor
    if predictor.meta.get("multi_label") and calibrated:  # --no-calibration: the raw model
        t = read_thresholds(run_dir.path, predictor.class_names)
        return MultiLabel(predictor, np.full(len(predictor.class_names), 0.5) if t is None else t)
    temperature = read_temperature(run_dir.path) if calibrated else None
    return Calibrated(predictor, temperature) if temperature else predictor


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


def decoded_batches(
    paths: list[str], size: int, batch_size: int, workers: int = 0
) -> Iterator[tuple[list[int], np.ndarray, dict[int, str]]]:
    """(indices, uint8 batch, {index: why unreadable}) per batch of paths, decoded by a thread
    pool (PIL releases the GIL) one batch ahead of the caller, so decoding overlaps inference."""

    def one(p: str) -> np.ndarray | str:
        try:
            return decode_square(p, size)
        except ImageDecodeError as e:
            return str(e)
        except OSError:
            return "cannot open"

    def produce() -> Iterator[tuple[list[int], np.ndarray, dict[int, str]]]:
        with ThreadPoolExecutor(workers or os.cpu_count() or 2) as pool:
            for s in range(0, len(paths), batch_size):
                out = list(pool.map(one, paths[s : s + batch_size]))
                good = [s + j for j, o in enumerate(out) if not isinstance(o, str)]
                bad = {s + j: o for j, o in enumerate(out) if isinstance(o, str)}
                arrays = [o for o in out if not isinstance(o, str)]
                empty = np.zeros((0, size, size, 3), np.uint8)
                yield good, (np.stack(arrays) if arrays else empty), bad

    return prefetch(produce(), depth=1)


def predict_paths(
    predictor: Predictor, paths: list[str], batch_size: int = 64, top_k: int = 3
) -> list[dict[str, Any]]:
    """One row per path: predicted class and probability, or the reason it could not be read."""
    rows: list[dict[str, Any]] = [{"path": p} for p in paths]
    names = predictor.class_names
    for good, batch, bad in decoded_batches(paths, predictor.pre.size, batch_size):
        for i, why in bad.items():
            rows[i]["error"] = why
        if not good:
            continue
        for j, pr in zip(good, predictor.predict_proba(batch), strict=True):
            rows[j].update(answer(pr, names, top_k, thresholds_of(predictor)))
    return rows


def mark_unsure(rows: list[dict[str, Any]], below: float) -> int:
    """`predict --abstain P`: flag each answered row whose top probability is under P as not
    sure (its class stays: the model's best guess, for the person it is handed to). How many."""
    for r in rows:
        if "error" not in r:
            r["abstained"] = r["probability"] < below
    return sum(bool(r.get("abstained")) for r in rows)


def answer(
    probs: np.ndarray, names: list[str], top_k: int, thresholds: np.ndarray | None = None
) -> dict[str, Any]:
    """One image's row: the predicted class, its probability and the top k. Multi-label
    (thresholds): `labels`, every class at or above its threshold, likeliest first (maybe
    none), with `classes` their probabilities; `class` joins them with '; '."""
    order = np.argsort(-probs)
    top = [{"class": names[k], "probability": float(probs[k])} for k in order[:top_k]]
    if thresholds is None:
        return {"class": top[0]["class"], "probability": top[0]["probability"], "top": top}
    chosen = [
        {"class": names[k], "probability": float(probs[k])}
        for k in order
        if probs[k] >= thresholds[k]
    ]
    return {
        "labels": [c["class"] for c in chosen],
        "classes": chosen,
        "class": "; ".join(c["class"] for c in chosen),
        "probability": chosen[0]["probability"] if chosen else top[0]["probability"],
        "top": top,
    }
