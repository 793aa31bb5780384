"""suggest's rule: uncertain images first, but not near-copies of each other."""

from __future__ import annotations

import numpy as np

from imgclf.review.suggest import select, uncertainty


def test_uncertainty_orders_margin_and_entropy_alike() -> None:
    probs = np.array([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4]])
    for strategy in ("margin", "entropy"):
        u = uncertainty(probs, strategy)
        assert u[0] == max(u) and u[1] == min(u) and np.all((0 <= u) & (u <= 1 + 1e-9))


def test_near_copies_of_one_hard_image_do_not_fill_the_list() -> None:
    rng = np.random.default_rng(0)
    hard = rng.normal(size=16)
    copies = hard + rng.normal(scale=0.01, size=(8, 16))  # 8 near-copies, the most uncertain
    others = rng.normal(size=(40, 16))  # distinct images, a little less uncertain
    feats = np.vstack([copies, others])
    p = np.concatenate([np.full(8, 0.51), np.linspace(0.52, 0.95, 40)])
    probs = np.stack([p, 1 - p], 1)
    by_uncertainty = select(probs, None, 4)
    assert set(by_uncertainty) <= set(range(8))  # uncertainty alone: four copies
    chosen = select(probs, feats, 4)
    assert len(set(chosen)) == 4 and sum(i < 8 for i in chosen) == 1  # one copy, three others
    u = uncertainty(probs)
    assert all(u[i] >= np.median(u) for i in chosen)
