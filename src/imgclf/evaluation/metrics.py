"""Metrics from (labels, probabilities) arrays, whichever backend produced them."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support


def compute_metrics(
    y_true: np.ndarray, probs: np.ndarray, class_names: list[str]
) -> dict[str, Any]:
    y_true = np.asarray(y_true)
    y_pred = probs.argmax(1)
    labels = list(range(len(class_names)))
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    p, r, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    eps = 1e-12
    nll = (
        float(-np.log(np.clip(probs[np.arange(len(y_true)), y_true], eps, 1)).mean())
        if len(y_true)
        else float("nan")
    )
    per_class = [
        {
            "class": c,
            "accuracy": float(cm[i, i] / support[i]) if support[i] else None,
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, c in enumerate(class_names)
    ]
    present = support > 0  # scikit-learn's balanced accuracy: the mean recall of classes scored
    return {
        "accuracy": float((y_pred == y_true).mean()) if len(y_true) else float("nan"),
        "balanced_accuracy": float(r[present].mean()) if present.any() else float("nan"),
        "loss": nll,
        "images": int(len(y_true)),
        "macro_f1": float(f1.mean()),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "class_names": class_names,
    }


def format_per_class(metrics: dict[str, Any]) -> str:
    """The second tutorial's table: 'Accuracy of cat   : 69.10 %'."""
    width = max(len(c["class"]) for c in metrics["per_class"])
    lines = []
    for c in metrics["per_class"]:
        acc = "  n/a" if c["accuracy"] is None else f"{100 * c['accuracy']:5.2f} %"
        lines.append(
            f"Accuracy of {c['class']:<{width}} : {acc}   "
            f"(precision {c['precision']:.3f}, recall {c['recall']:.3f}, "
            f"F1 {c['f1']:.3f}, n={c['support']})"
        )
    return "\n".join(lines)


def top_losses(y_true: np.ndarray, probs: np.ndarray, k: int = 16) -> np.ndarray:
    """Indices of the most confidently wrong predictions (fastai's top losses)."""
    wrong = np.flatnonzero(probs.argmax(1) != y_true)
    conf = probs[wrong].max(1)
    return wrong[np.argsort(-conf)][:k]


COVERAGES = (1.0, 0.99, 0.98, 0.95, 0.9, 0.8)
TARGETS = (0.99, 0.995, 0.999)


def coverage(y_true: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Accuracy against coverage when the least confident images are handed to a person
    (`predict --abstain P` answers only where the top probability is >= P): the accuracy at
    fixed coverages, the P and coverage that reach each accuracy target, and the curve."""
    n = len(y_true)
    if not n:
        return {"points": [], "targets": [], "curve": []}
    conf = probs.max(1)
    order = np.argsort(-conf, kind="stable")
    correct = np.cumsum(probs.argmax(1)[order] == np.asarray(y_true)[order])
    acc = correct / np.arange(1, n + 1)  # accuracy of the m most confident, m = 1..n

    def point(m: int) -> dict[str, float]:
        p = float(conf[order[m - 1]])
        kept = int((conf >= p).sum())  # ties at P are answered too
        return {"threshold": p, "coverage": kept / n, "accuracy": float(acc[kept - 1])}

    points = [point(max(1, int(np.ceil(c * n - 1e-9)))) for c in COVERAGES]
    # a cut can fall only where the confidence changes: ties at P are all answered
    s = conf[order]
    cuts = np.flatnonzero(np.append(s[1:] < s[:-1], True))
    targets = []
    for t in TARGETS:
        ok = cuts[acc[cuts] >= t]
        targets.append({"target": t, **(point(int(ok[-1]) + 1) if len(ok) else {})})
    step = max(1, n // 200)
    curve = [[(m + 1) / n, float(acc[m])] for m in range(step - 1, n, step)]
    return {"points": points, "targets": targets, "curve": curve}


def format_coverage(cov: dict[str, Any]) -> str:
    """evaluate's lines: what abstaining on the least sure images buys."""
    lines = ["answering only above P (predict --abstain P):"]
    for p in cov["points"]:
        lines.append(
            f"  P {threshold_text(p['threshold'])}: {p['coverage']:7.2%} answered, "
            f"accuracy {p['accuracy']:.2%}"
        )
    for t in cov["targets"]:
        if "threshold" in t:
            lines.append(
                f"  for {t['target']:.1%} accuracy: --abstain {threshold_text(t['threshold'])} "
                f"answers {t['coverage']:.2%}"
            )
        else:
            lines.append(f"  {t['target']:.1%} accuracy: not reached at any coverage")
    return "\n".join(lines)


def threshold_text(p: float) -> str:
    """A threshold with the digits that tell it from 1: 0.504, 0.983, 0.99962."""
    digits = 3
    while digits < 8 and round(p, digits) >= 1 and p < 1:
        digits += 1
    return f"{p:.{digits}f}"
