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

from imgclf.backends.torch.resident import (
    fits_on_device,
    load_rows,
    on_side_stream,
    resident_batches,
    wait_for,
)
from imgclf.backends.torch.transforms import (
    augment_batch,
    eval_preset,
    normalize_batch,
    train_preset,
)
from imgclf.data.batching import prefetch, shares
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
    on_device: tuple[torch.Tensor, torch.Tensor] | None = None  # (images, labels) when resident

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
    augment: str,
    seed: int,
    workers: int = 2,
    channels_last: bool = True,
    share: tuple[int, int] = (0, 1),
    resident: bool | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of batches; with share=(rank, world) this rank's part of each global batch of
    batch_size. Shuffling and augmentation draw from `seed` only, so an epoch can be replayed
    exactly after a resume, and N ranks draw what one process would. augment: the --augment kind,
    for train batches only. resident: the split held on the device (see resident.py); None
    decides by whether it fits, on CUDA only."""
    kind = augment if train else "none"
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if data.pipeline == "plain":
        for x, y in _plain_batches(data, batch_size, device, train, kind, seed, workers, share):
            yield x.contiguous(memory_format=fmt), y
        return
    if resident is None:
        resident = data.on_device is not None or fits_on_device(len(data), data.pre.size, device)

    def ready(images: Iterator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(seed)
        for x, y, part in images:
            x = normalize_batch(x, data.pre)
            if kind != "none":
                x = augment_batch(x, gen, kind, part)
            yield x.contiguous(memory_format=fmt), y

    parts = shares(len(data), batch_size, train, seed, *share)
    if resident:  # batches are gathers on the device: the GPU queues them ahead by itself
        if data.on_device is None or data.on_device[0].device != device:
            labels = torch.from_numpy(data.labels).to(device)
            data.on_device = (load_rows(data.cache, data.rows, device), labels)
        yield from ready(resident_batches(*data.on_device, parts))
        return
    # read, copy, normalise and augment in a background thread, ahead of the training step
    streamed = ready(_host_batches(data, parts, device))
    if device.type == "cuda":  # and on a side stream, so the copies overlap the step's kernels
        yield from wait_for(prefetch(on_side_stream(streamed, device)), device)
    else:
        yield from prefetch(streamed)


def _host_batches(
    data: SplitData, parts: Iterator[tuple[np.ndarray, int, int]], device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor, tuple[int, int]]]:
    """Rows read from the cache on the host, sent to the device (from pinned memory on CUDA)."""
    assert data.cache is not None
    pin = device.type == "cuda"
    for pos, lo, total in parts:
        x = torch.from_numpy(data.cache.read_rows(data.rows[pos]))
        y = torch.from_numpy(data.labels[pos])
        if pin:
            x, y = x.pin_memory(), y.pin_memory()
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True), (lo, total)


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
    kind: str,
    seed: int,
    workers: int,
    share: tuple[int, int],
) -> Iterator:
    tf = train_preset(data.pre, kind) if kind != "none" else eval_preset(data.pre)
    torch.manual_seed(seed)  # torchvision's random transforms draw from the global generator
    # this rank's share of each seeded global batch, as index positions
    parts = [
        data.rows[pos].tolist() for pos, _, _ in shares(len(data), batch_size, train, seed, *share)
    ]
    loader = DataLoader(
        _FileDataset(data.index, tf),
        batch_sampler=parts,
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
