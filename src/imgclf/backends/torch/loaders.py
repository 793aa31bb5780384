"""Batches for PyTorch: the cached fast path (default) or the tutorial's ImageFolder DataLoader.

Both yield (normalised float NCHW on `device`, int64 labels on `device`) and count files that
could not be decoded instead of crashing on them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from imgclf.backends.torch.transforms import (
    augment_batch,
    eval_preset,
    normalize_batch,
    train_preset,
)
from imgclf.data.batching import global_batches, iterate_batches, prefetch, rank_share
from imgclf.data.cache import CacheUnavailable, DecodedCache
from imgclf.data.folder import ImageIndex, display_path
from imgclf.data.images import ImageDecodeError, load_rgb
from imgclf.data.presets import Preprocess
from imgclf.messages import warn


@dataclass
class SplitData:
    """One split ready to iterate; `skipped` maps unreadable paths to reasons."""

    index: ImageIndex
    pre: Preprocess
    pipeline: str
    cache: DecodedCache | None = None
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    skipped: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.index.labels, dtype=np.int64)[self.rows]


def prepare_split(
    index: ImageIndex,
    pre: Preprocess,
    pipeline: str = "cache",
    cache_dir: str = "",
    workers: int = 2,
    progress: bool = True,
) -> SplitData:
    """Decode into the cache (fast path) so that later epochs never touch JPEG again."""
    if pipeline == "plain" or len(index) == 0:
        return SplitData(
            index, pre, "plain" if pipeline == "plain" else "cache", rows=np.arange(len(index))
        )
    cache = DecodedCache(index, pre.size, cache_dir or None)
    try:
        stats = cache.build(workers=workers, progress=progress)
    except CacheUnavailable as e:
        warn(f"{e}; reading the image files directly (--pipeline plain) instead")
        return SplitData(index, pre, "plain", rows=np.arange(len(index)))
    skipped = {display_path(index.paths[r]): why for r, why in stats.failed.items()}
    return SplitData(index, pre, "cache", cache, cache.ok_rows, skipped)


def batches(
    data: SplitData,
    batch_size: int,
    device: torch.device,
    train: bool,
    augment: bool,
    seed: int,
    workers: int = 2,
    channels_last: bool = True,
    share: tuple[int, int] = (0, 1),
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of batches; with share=(rank, world) this rank's part of each global batch of
    batch_size. Shuffling and augmentation draw from `seed` only, so an epoch can be replayed
    exactly after a resume, and N ranks draw what one process would."""
    if data.pipeline == "plain":
        yield from _plain_batches(data, batch_size, device, train, augment, seed, workers, share)
        return

    def cached() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(seed)
        rows, labels = data.rows, data.labels
        pin = device.type == "cuda"
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        for xb, yb, part in iterate_batches(
            data.cache, rows, labels, batch_size, train, seed, *share
        ):
            x = torch.from_numpy(xb)
            x = normalize_batch(
                (x.pin_memory() if pin else x).to(device, non_blocking=True), data.pre
            )
            if train and augment:
                x = augment_batch(x, gen, part=part)
            yield x.contiguous(memory_format=fmt), torch.from_numpy(yb).to(device)

    # read, normalise and augment in a background thread, overlapping the training step
    yield from prefetch(cached())


class _FileDataset(Dataset):
    """ImageFolder over our index: never raises on a bad file, returns ok=False instead."""

    def __init__(self, index: ImageIndex, transform):  # noqa: ANN001
        self.index, self.transform = index, transform

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):  # noqa: ANN204
        try:
            img = self.transform(load_rgb(self.index.paths[i]))
            return img, self.index.labels[i], ""
        except ImageDecodeError as e:
            return torch.zeros(3, 1, 1), self.index.labels[i], f"{self.index.paths[i]}\0{e}"


def _collate(items):  # noqa: ANN001, ANN202
    good = [it for it in items if not it[2]]
    bad = [it[2] for it in items if it[2]]
    if not good:
        return None, None, bad
    return torch.stack([g[0] for g in good]), torch.tensor([g[1] for g in good]), bad


def _plain_batches(
    data: SplitData,
    batch_size: int,
    device: torch.device,
    train: bool,
    augment: bool,
    seed: int,
    workers: int,
    share: tuple[int, int],
) -> Iterator:
    tf = train_preset(data.pre) if train and augment else eval_preset(data.pre)
    torch.manual_seed(seed)  # torchvision's random transforms draw from the global generator
    # this rank's share of each seeded global batch, as index positions
    shares = [
        data.rows[rank_share(b, *share)[0]].tolist()
        for b in global_batches(len(data.rows), batch_size, train, seed)
    ]
    loader = DataLoader(
        _FileDataset(data.index, tf),
        batch_sampler=shares,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    for x, y, bad in loader:
        for b in bad:
            path, why = b.split("\0", 1)
            data.skipped[display_path(path)] = why
        if x is None:  # all unreadable: an empty batch keeps the ranks' steps in lockstep
            side = data.pre.size
            x, y = torch.zeros(0, 3, side, side), torch.zeros(0, dtype=torch.long)
        yield x.to(device, non_blocking=True), y.to(device)
