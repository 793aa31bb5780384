"""Frozen-backbone features computed once, so each epoch trains only the head on them. Under
torchrun each rank computes a contiguous block of the rows and all ranks gather the whole set."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from imgclf.backends.torch.distributed import Dist, block, gather_blocks
from imgclf.backends.torch.loaders import BatchPlan, SplitData, batches
from imgclf.config import RunConfig
from imgclf.data.batching import shares

Amp = Callable[[], contextlib.AbstractContextManager]  # a fresh autocast context per use


@torch.no_grad()
def compute_features(
    backbone: nn.Module,
    data: SplitData,
    batch_size: int,
    device: torch.device,
    amp: Amp,
    progress: bool = True,
    d: Dist = Dist(),
    mirror: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, labels) of every row of data; mirror: of the images flipped left-right."""
    backbone.eval()
    n = len(data)
    mine = dataclasses.replace(data, rows=data.rows[block(d, n)])
    feats, labels = [], []
    per_rank = -(-batch_size // d.world)
    stream = batches(mine, BatchPlan(per_rank, device))
    for x, y in tqdm(
        stream,
        total=-(-len(mine) // per_rank),
        desc="features (mirrored)" if mirror else "features",
        leave=False,
        disable=None if progress and d.main else True,
    ):
        if len(y):
            with amp():
                feats.append(backbone(x.flip(3) if mirror else x).float())
            labels.append(y)
    dim = _feature_dim(backbone, data, device, amp) if not feats else feats[0].shape[1]
    f = torch.cat(feats) if feats else torch.zeros(0, dim, device=device)
    empty = torch.from_numpy(data.labels[:0]).to(device)  # (0,) or multi-label (0, classes)
    y = torch.cat(labels) if labels else empty
    return gather_blocks(d, f, n), gather_blocks(d, y, n)


def _feature_dim(backbone: nn.Module, data: SplitData, device: torch.device, amp: Amp) -> int:
    """A rank with no rows still needs the width to take part in the gather."""
    side = data.pre.size
    with amp():
        return int(backbone(torch.zeros(1, 3, side, side, device=device)).shape[1])


def feature_batches(
    feats: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    share: tuple[int, int] = (0, 1),
    draw: np.ndarray | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's share of each seeded global batch, as the image batches are cut (draw:
    --sampler balanced's per-row probabilities)."""
    for pos, _, _ in shares(len(labels), batch_size, shuffle, seed, *share, draw):
        idx = torch.from_numpy(pos).to(feats.device)
        yield feats[idx], labels[idx]


def cached_features(
    backbone: nn.Module,
    splits: tuple[SplitData, SplitData],
    cfg: RunConfig,
    device: torch.device,
    amp: Amp,
    progress: bool,
    d: Dist,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """[train, val] features; with --augment flip the train rows twice, as seen and mirrored
    (the flip augmentation, every draw of it, computed once)."""
    train, val = splits
    views = (False, True) if cfg.augment == "flip" else (False,)
    parts = [
        compute_features(backbone, train, cfg.batch_size, device, amp, progress, d, m)
        for m in views
    ]
    train_set = (torch.cat([f for f, _ in parts]), torch.cat([y for _, y in parts]))
    val_set = compute_features(backbone, val, cfg.batch_size, device, amp, progress, d)
    return [train_set, val_set]
