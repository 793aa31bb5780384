"""`imgclf suggest RUN UNLABELLED --budget N`: which unlabelled images to label next.

Uncertainty alone picks N near-copies of one confusing photo; diversity alone ignores what the
model already knows. Here (as in BADGE and Sener & Savarese's core-set, simplified): the pool is
the more uncertain half of the images (at most 10 N), scored by the margin between the run's two
likeliest calibrated classes (or their entropy); from it a greedy k-center pass takes, each time,
the image with the highest uncertainty x distance to those already taken (cosine distance on
EfficientNet-Lite features, the audit's own, cached), so the N are uncertain and unlike each other.
"""

from __future__ import annotations

import numpy as np

STRATEGIES = ("margin", "entropy")


def uncertainty(probs: np.ndarray, strategy: str = "margin") -> np.ndarray:
    """0 (sure) .. 1 (as unsure as the classes allow) per row."""
    if strategy == "entropy":
        p = np.clip(probs, 1e-12, 1.0)
        return -(p * np.log(p)).sum(1) / np.log(probs.shape[1])
    top2 = np.sort(probs, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def select(
    probs: np.ndarray, feats: np.ndarray | None, budget: int, strategy: str = "margin"
) -> list[int]:
    """Row indices of the images to label, best first (without features: by uncertainty)."""
    u = uncertainty(probs, strategy)
    order = np.argsort(-u, kind="stable")
    budget = min(budget, len(u))
    pool = order[: max(budget, min(len(u) - len(u) // 2, 10 * budget))]
    if feats is None:
        return [int(i) for i in pool[:budget]]
    unit = feats[pool] / np.maximum(np.linalg.norm(feats[pool], axis=1, keepdims=True), 1e-12)
    taken = [0]  # the most uncertain first
    far = 1.0 - unit @ unit[0]  # each pool image's distance to the nearest taken one
    while len(taken) < budget:
        gain = u[pool] * np.maximum(far, 0.0)
        gain[taken] = -1.0
        nxt = int(np.argmax(gain))
        taken.append(nxt)
        far = np.minimum(far, 1.0 - unit @ unit[nxt])
    return [int(pool[i]) for i in taken]
