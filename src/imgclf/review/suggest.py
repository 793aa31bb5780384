"""`imgclf suggest RUN UNLABELLED --budget N`: which unlabelled images to label next.

Uncertainty first: the images whose two likeliest calibrated classes are closest (margin; or the
entropy of all of them) are where a label moves the model most. Uncertainty alone fills the list
with near-copies of one confusing photo, so an image is passed over while it is a near-copy
(cosine similarity of EfficientNet-Lite0 features, the audit's own, cached, at or above
NEAR_COPY) of one already taken; only the more uncertain half is ever taken. Measured against
weighting every pick by its k-center distance to the others (Sener & Savarese's core-set, as
BADGE does it): the same labels for CATS_DOGS, and fewer for CIFAR-10, where the features'
distances say little about the classes (benchmarks/bench_active.py, RESULTS.md).
"""

from __future__ import annotations

import numpy as np

STRATEGIES = ("margin", "entropy")
NEAR_COPY = 0.9  # features this similar are the same scene (re-encoded, resized, shifted)


def uncertainty(
    probs: np.ndarray, strategy: str = "margin", thresholds: np.ndarray | None = None
) -> np.ndarray:
    """0 (sure) .. 1 (as unsure as the classes allow) per row. Multi-label (thresholds): each
    class is a yes/no answer; margin: how near the nearest class is to its threshold, entropy:
    the mean binary entropy over the classes."""
    if thresholds is not None:
        if strategy == "entropy":
            p = np.clip(probs, 1e-12, 1 - 1e-12)
            return (-(p * np.log2(p) + (1 - p) * np.log2(1 - p))).mean(1)
        room = np.where(probs >= thresholds, 1 - thresholds, thresholds)  # to the sure end
        return 1.0 - (np.abs(probs - thresholds) / np.maximum(room, 1e-12)).min(1)
    if strategy == "entropy":
        p = np.clip(probs, 1e-12, 1.0)
        return -(p * np.log(p)).sum(1) / np.log(probs.shape[1])
    top2 = np.sort(probs, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def select(
    probs: np.ndarray,
    feats: np.ndarray | None,
    budget: int,
    strategy: str = "margin",
    thresholds: np.ndarray | None = None,
) -> list[int]:
    """Row indices of the images to label, most uncertain first, no two near-copies (without
    features: by uncertainty alone). Only the more uncertain half is ever taken (diversity never
    buys a sure image); when its distinct images run out, its near-copies fill the budget."""
    u = uncertainty(probs, strategy, thresholds)
    order = [int(i) for i in np.argsort(-u, kind="stable")]
    budget = min(budget, len(order))
    if feats is None:
        return order[:budget]
    order = order[: max(budget, len(order) - len(order) // 2)]
    unit = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    taken: list[int] = []
    for i in order:
        if taken and float((unit[taken] @ unit[i]).max()) >= NEAR_COPY:
            continue
        taken.append(i)
        if len(taken) == budget:
            return taken
    chosen = set(taken)
    return taken + [i for i in order if i not in chosen][: budget - len(taken)]
