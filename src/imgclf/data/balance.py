"""Class balance, written once for both backends and the audit: the counts and their imbalance
warning, the loss weights (--class-weights auto or FILE.json) and the per-image weights of
--sampler balanced. NumPy only."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgclf.messages import UsageError

if TYPE_CHECKING:
    from imgclf.config import RunConfig

IMBALANCE_WARN = 10.0  # largest : smallest class above this gets a warning with the remedies
# auto weights are clipped to [1/CLIP, CLIP]: a class of 3 images among 30,000 would otherwise
# weigh 5,000x and its few images (and their label noise) would steer every step
WEIGHT_CLIP = 10.0
REMEDY = "--class-weights auto or --sampler balanced (and read evaluate's balanced accuracy)"


def imbalance(counts: list[int] | np.ndarray) -> float:
    """Largest : smallest class among those with images (1.0 for one class or none)."""
    present = [int(n) for n in counts if n > 0]
    return max(present) / min(present) if present else 1.0


def balance_line(names: list[str], counts: list[int] | np.ndarray, split: str = "train") -> str:
    """'class counts (train): cat 1200, dog 150 (8.0:1)' for the train log."""
    shown = ", ".join(f"{c} {int(n)}" for c, n in zip(names, counts, strict=True))
    return f"class counts ({split}): {shown} ({imbalance(counts):.1f}:1)"


def imbalance_warning(
    names: list[str], counts: list[int] | np.ndarray, split: str = "train"
) -> str:
    """The warning above IMBALANCE_WARN naming the largest and smallest class, or ''."""
    ratio = imbalance(counts)
    if ratio <= IMBALANCE_WARN:
        return ""
    present = [(int(n), c) for c, n in zip(names, counts, strict=True) if n > 0]
    (most, big), (least, small) = max(present), min(present)
    return (
        f"{split} is imbalanced {ratio:.0f}:1 ({big} {most}, {small} {least}); accuracy will "
        f"favour {big!r}: consider {REMEDY}"
    )


def auto_weights(counts: np.ndarray) -> np.ndarray:
    """Inverse frequency (scikit-learn's 'balanced': N / (classes * count)), clipped."""
    n = np.maximum(np.asarray(counts, dtype=np.float64), 1)
    return np.clip(n.sum() / (len(n) * n), 1 / WEIGHT_CLIP, WEIGHT_CLIP)


def loss_weights(spec: str, counts: np.ndarray, names: list[str]) -> np.ndarray | None:
    """--class-weights: none -> None, auto -> auto_weights, else a JSON file of class -> weight."""
    if spec == "none":
        return None
    if spec == "auto":
        return auto_weights(counts)
    return read_weights_file(spec, names)


def read_weights_file(path: str, names: list[str]) -> np.ndarray:
    """{"cat": 1, "dog": 4.5}: one positive weight for every class, by name; one-line errors."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{p}: --class-weights file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{p}: not a JSON object of class -> weight ({e})") from None
    if not isinstance(data, dict):
        raise UsageError(f'{p}: expected a JSON object such as {{"cat": 1, "dog": 4}}')
    unknown = sorted(set(data) - set(names))
    missing = [c for c in names if c not in data]
    if unknown or missing:
        said = [f"unknown class(es) {', '.join(unknown)}"] if unknown else []
        said += [f"no weight for {', '.join(missing)}"] if missing else []
        raise UsageError(f"{p}: {'; '.join(said)} (the classes: {', '.join(names)})")
    out = []
    for c in names:
        w = data[c]
        ok = isinstance(w, int | float) and not isinstance(w, bool)
        if not ok or not math.isfinite(w) or w <= 0:
            raise UsageError(f"{p}: the weight of {c!r} must be a positive number, got {w!r}")
        out.append(float(w))
    return np.asarray(out)


def sample_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """--sampler balanced: each image drawn with probability 1/(its class's count), so every class
    fills the same share of an epoch in expectation (torch's WeightedRandomSampler recipe)."""
    counts = np.maximum(np.bincount(labels, minlength=num_classes), 1).astype(np.float64)
    w = 1.0 / counts[labels]
    return w / w.sum()


def label_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Images per class: of class indices, or (multi-label 0/1 rows) those showing the class."""
    if labels.ndim == 2:
        return labels.sum(0).round().astype(np.int64)
    return np.bincount(labels, minlength=num_classes)


def pos_weights(counts: np.ndarray, images: int) -> np.ndarray:
    """Multi-label --class-weights auto: each class's negatives / positives (the pos_weight of
    binary cross-entropy, which torch's docs suggest), clipped like auto_weights."""
    pos = np.maximum(np.asarray(counts, dtype=np.float64), 1)
    return np.clip((images - pos) / pos, 1 / WEIGHT_CLIP, WEIGHT_CLIP)


def class_weights(cfg: RunConfig, labels: np.ndarray, names: list[str]) -> np.ndarray | None:
    """--class-weights per class (multi-label: per class's positives), counted over the images
    that really train (unreadable files already dropped); None for none."""
    counts = label_counts(labels, len(names))
    if labels.ndim == 2 and cfg.class_weights == "auto":
        return pos_weights(counts, len(labels))
    return loss_weights(cfg.class_weights, counts, names)


def sampling(cfg: RunConfig, labels: np.ndarray, names: list[str]) -> np.ndarray | None:
    """--sampler balanced's per-image draw probabilities over `labels` (None: a permutation)."""
    return sample_weights(labels, len(names)) if cfg.sampler == "balanced" else None


def describe_balance(
    cfg: RunConfig, labels: np.ndarray, names: list[str]
) -> tuple[dict[str, Any], list[str]]:
    """What config.json records of the training class counts and weights, and the log lines
    saying them."""
    counts = label_counts(labels, len(names))
    record: dict[str, Any] = {"class_counts": dict(zip(names, counts.tolist(), strict=True))}
    lines = [balance_line(names, counts)]
    w = class_weights(cfg, labels, names)
    if w is not None:
        record["class_weights_used"] = dict(zip(names, np.round(w, 6).tolist(), strict=True))
        shown = ", ".join(f"{c} {x:.3g}" for c, x in zip(names, w, strict=True))
        lines.append(f"class weights: {shown}")
    if cfg.sampler == "balanced":
        lines.append("sampler: balanced (each class an equal share of every epoch's draws)")
    return record, lines
