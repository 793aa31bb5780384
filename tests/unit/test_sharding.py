"""Global batches cut into rank shares: N ranks together see exactly one process's batches and
augmentation draws, whatever the batch length."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgclf.backends.torch.transforms import augment_batch
from imgclf.data.batching import global_batches, rank_share
from imgclf.data.presets import Preprocess


def test_rank_shares_rebuild_every_global_batch() -> None:
    for n, batch, world in ((30, 8, 2), (30, 7, 2), (10, 4, 3), (5, 8, 4), (3, 8, 4)):
        one = list(global_batches(n, batch, True, seed=5))
        for b in one:
            parts = [rank_share(b, r, world) for r in range(world)]
            assert np.array_equal(np.concatenate([p for p, _ in parts]), b)
            assert [lo for _, lo in parts] == list(np.cumsum([0] + [len(p) for p, _ in parts])[:-1])
            assert max(len(p) for p, _ in parts) - min(len(p) for p, _ in parts) <= 1
        assert sorted(np.concatenate(one).tolist()) == list(range(n))


@pytest.mark.parametrize("kind", ["tutorial", "flip", "flip-crop"])
def test_a_share_gets_the_augmentation_draws_of_its_images(kind: str) -> None:
    x = torch.randint(0, 256, (7, 16, 16, 3), dtype=torch.uint8)
    pre = Preprocess(size=16)
    whole = augment_batch(x, pre, torch.Generator().manual_seed(3), kind)
    for lo, hi in ((0, 3), (3, 7)):
        gen = torch.Generator().manual_seed(3)
        part = augment_batch(x[lo:hi], pre, gen, kind, part=(lo, 7))
        assert torch.equal(part, whole[lo:hi])
