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
    return {
        "accuracy": float((y_pred == y_true).mean()) if len(y_true) else float("nan"),
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
