"""Frozen-backbone features computed once, so each epoch trains only the head on them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from imgclf.backends.torch.loaders import SplitData, batches


@torch.no_grad()
def compute_features(
    backbone: nn.Module,
    data: SplitData,
    batch_size: int,
    device: torch.device,
    amp: Any,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    backbone.eval()
    feats, labels = [], []
    stream = batches(data, batch_size, device, train=False, augment=False, seed=0)
    for x, y in tqdm(
        stream,
        total=-(-len(data) // batch_size),
        desc="features",
        leave=False,
        disable=None if progress else True,
    ):
        with amp:
            feats.append(backbone(x).float())
        labels.append(y)
    if not feats:
        return torch.zeros(0, 1, device=device), torch.zeros(0, dtype=torch.long, device=device)
    return torch.cat(feats), torch.cat(labels)


def feature_batches(
    feats: torch.Tensor, labels: torch.Tensor, batch_size: int, shuffle: bool = False, seed: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    n = len(labels)
    order = (
        torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        if shuffle
        else torch.arange(n)
    )
    order = order.to(feats.device)
    for i in range(0, n, batch_size):
        idx = order[i : i + batch_size]
        yield feats[idx], labels[idx]
