"""The class-balance rules both backends share: weights, the sampler's draws, the warning."""

from __future__ import annotations

import numpy as np

from imgclf.data.balance import auto_weights, imbalance_warning, sample_weights
from imgclf.data.batching import epoch_order, shares


def test_auto_weights_are_inverse_frequency_clipped_to_ten() -> None:
    assert np.allclose(auto_weights(np.array([300, 100])), [400 / 600, 400 / 200])
    w = auto_weights(np.array([30_000, 3]))  # unclipped: 0.5 and 5000
    assert np.allclose(w, [0.5, 10.0], rtol=1e-3)


def test_the_balanced_sampler_draws_each_class_alike_and_every_rank_the_same() -> None:
    labels = np.array([0] * 950 + [1] * 50)
    order = epoch_order(len(labels), True, 7, sample_weights(labels, 2))
    share = np.bincount(labels[order], minlength=2) / len(order)
    assert len(order) == 1000 and abs(share[1] - 0.5) < 0.05  # 5 % of the data, half the draws
    assert (order == epoch_order(1000, True, 7, sample_weights(labels, 2))).all()
    draw = sample_weights(labels, 2)
    two = [p for r in (0, 1) for p, _, _ in shares(1000, 64, True, 7, r, 2, draw)]
    one = [p for p, _, _ in shares(1000, 64, True, 7, 0, 1, draw)]
    two, one = np.concatenate(two), np.concatenate(one)
    assert sorted(two.tolist()) == sorted(one.tolist())
    assert (epoch_order(5, False, 7, sample_weights(np.arange(5), 5)) == np.arange(5)).all()


def test_the_warning_starts_above_ten_to_one_and_ignores_empty_classes() -> None:
    assert imbalance_warning(["a", "b"], [100, 10]) == ""
    told = imbalance_warning(["a", "b", "c"], [110, 10, 0], "val")
    assert told.startswith("val is imbalanced 11:1 (a 110, b 10)")
