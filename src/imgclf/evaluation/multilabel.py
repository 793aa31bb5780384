"""Multi-label runs: one threshold per class chosen on validation (the F1-maximising one, as the
temperature is for single-label runs), and the metrics (scikit-learn's) at those thresholds."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_fscore_support

from imgclf.tables import table

DEFAULT_THRESHOLD = 0.5  # a class with no positive (or no negative) in validation keeps it


def fit_thresholds(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per class, the cut on validation that maximises F1 (predict the class when p >= t),
    midway between the probabilities it separates; ties go to the cut nearest 0.5."""
    out = np.full(y.shape[1], DEFAULT_THRESHOLD)
    for c in range(y.shape[1]):
        pos = y[:, c] > 0.5
        if not pos.any() or pos.all():
            continue
        p = np.sort(np.unique(probs[:, c]))
        cuts = np.concatenate([(p[:-1] + p[1:]) / 2, [p[-1]]])
        best = (-1.0, 0.0)
        for t in cuts:
            pred = probs[:, c] >= t
            tp = float((pred & pos).sum())
            f1 = 2 * tp / max(pred.sum() + pos.sum(), 1)
            key = (f1, -abs(t - DEFAULT_THRESHOLD))
            if key > best:
                best, out[c] = key, t
    return out


def decide(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """0/1 per class: each class at or above its threshold."""
    return (probs >= thresholds[None, :]).astype(np.int64)


def multilabel_metrics(
    y: np.ndarray,
    probs: np.ndarray,
    thresholds: np.ndarray,
    names: list[str],
    prevalence: np.ndarray,
) -> dict[str, Any]:
    """mAP (macro and per class), micro/macro F1, precision and recall at the thresholds, the
    exact-match ratio, a per-class table, and the baseline of scoring every image with each
    class's train prevalence (its mAP is the test prevalence: what a ranking must beat)."""
    y = (np.asarray(y) > 0.5).astype(np.int64)
    pred = decide(probs, thresholds)
    n = len(y)
    ap = [
        float(average_precision_score(y[:, c], probs[:, c])) if y[:, c].any() else None
        for c in range(len(names))
    ]
    scored = [a for a in ap if a is not None]
    p, r, f1, support = precision_recall_fscore_support(y, pred, zero_division=0)
    micro = precision_recall_fscore_support(y, pred, average="micro", zero_division=0)
    columns = (ap, p.tolist(), r.tolist(), f1.tolist(), thresholds.tolist(), support.tolist())
    keys = ("average_precision", "precision", "recall", "f1", "threshold", "support")
    per_class = [
        {"class": c, **dict(zip(keys, row, strict=True))}
        for c, row in zip(names, zip(*columns, strict=True), strict=True)
    ]
    present = [float(y[:, c].mean()) for c in range(len(names)) if y[:, c].any()]
    one_each = bool(n) and bool((y.sum(1) == 1).all())  # single-label data in a multi-label run
    return {
        # the likeliest class is the image's one class: comparable with a single-label accuracy
        **({"top1_accuracy": float((probs.argmax(1) == y.argmax(1)).mean())} if one_each else {}),
        "multi_label": True,
        "images": int(n),
        "mAP": float(np.mean(scored)) if scored else float("nan"),
        "micro_f1": float(micro[2]),
        "macro_f1": float(np.mean(f1)),
        "micro_precision": float(micro[0]),
        "micro_recall": float(micro[1]),
        "exact_match": float((pred == y).all(1).mean()) if n else float("nan"),
        "per_class": per_class,
        "class_names": names,
        "baseline": {
            "prevalence_mAP": float(np.mean(present)) if present else float("nan"),
            "train_prevalence": dict(zip(names, map(float, prevalence), strict=True)),
        },
        "images_with_no_class": int((y.sum(1) == 0).sum()),
    }


def format_multilabel(m: dict[str, Any]) -> str:
    """evaluate's lines for a multi-label run: the summary, the baseline and the table."""
    lines = [
        f"mAP {m['mAP']:.3f}   micro F1 {m['micro_f1']:.3f}   macro F1 {m['macro_f1']:.3f}   "
        f"exact match {m['exact_match']:.2%}",
        f"micro precision {m['micro_precision']:.3f}   micro recall {m['micro_recall']:.3f}   "
        f"(at the thresholds fitted on val); {m['images_with_no_class']} image(s) with no class",
        f"baseline: every class scored with its train prevalence: mAP "
        f"{m['baseline']['prevalence_mAP']:.3f}",
    ]
    if "top1_accuracy" in m:
        lines.append(f"top-1 accuracy {m['top1_accuracy']:.2%} (every image has one class)")
    rows = [
        [c["class"], "n/a" if c["average_precision"] is None else f"{c['average_precision']:.3f}",
         f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}", f"{c['threshold']:.3f}",
         str(c["support"])]
        for c in m["per_class"]
    ]  # fmt: skip
    heads = ["class", "AP", "precision", "recall", "F1", "threshold", "images"]
    return "\n".join([*lines, table(rows, heads, right=range(1, 7))])
