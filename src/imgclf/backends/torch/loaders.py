"""Batches for PyTorch: the cached fast path (default) or the tutorial's ImageFolder DataLoader.

Both yield (normalised float NCHW on `device`, int64 labels on `device`) and count files that
could not be decoded instead of crashing on them.
"""

from __future__ import annotations

import dataclasses
import functools
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
from imgclf.backends.torch.transforms import augment_batch, eval_preset, train_preset
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

    @functools.cached_property
    def labels(self) -> np.ndarray:
        """What the model learns per row: class indices, or multi-label 0/1 rows (computed
        once: every batch reads it)."""
        return self.index.targets()[self.rows]


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


@dataclass(frozen=True)
class BatchPlan:
    """One pass over a split: how it is cut into batches, ordered, augmented and laid out."""

    batch_size: int  # the global batch: each rank takes its share of it
    device: torch.device
    augment: str = "none"  # the --augment kind these batches get ("none": as decoded)
    shuffle: bool = False  # a seeded order (training) or the split's own (evaluation)
    seed: int = 0  # the order's and the augmentation's draws: an epoch replays exactly
    workers: int = 2  # --pipeline plain's DataLoader processes
    channels_last: bool = True
    share: tuple[int, int] = (0, 1)  # (rank, world) under torchrun
    draw: np.ndarray | None = None  # --sampler balanced: per-row probabilities, with replacement


def place_on_device(data: SplitData, device: torch.device) -> SplitData:
    """The split with its decoded rows held on the device when they fit there (CUDA only, see
    resident.py): every batch is then a gather on the device. A new SplitData; data is kept."""
    if data.pipeline != "cache" or not fits_on_device(len(data), data.pre.size, device):
        return data
    labels = torch.from_numpy(data.labels).to(device)
    return dataclasses.replace(data, on_device=(load_rows(data.cache, data.rows, device), labels))


def batches(data: SplitData, plan: BatchPlan) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One pass: (normalised float NCHW on plan.device, int64 labels there) per batch, this
    rank's share of each global batch. Shuffling and augmentation draw from plan.seed only, so
    an epoch can be replayed exactly after a resume, and N ranks draw what one process would."""
    fmt = torch.channels_last if plan.channels_last else torch.contiguous_format
    if data.pipeline == "plain":
        for x, y in _plain_batches(data, plan):
            yield x.contiguous(memory_format=fmt), y
        return

    def ready(images: Iterator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(plan.seed)
        for x, y, part in images:
            x = augment_batch(x, data.pre, gen, plan.augment, part)
            yield x.contiguous(memory_format=fmt), y  # a view already when channels_last

    parts = shares(len(data), plan.batch_size, plan.shuffle, plan.seed, *plan.share, plan.draw)
    if data.on_device is not None:  # placed on the run's device by place_on_device
        # batches are gathers on the device: the GPU queues them ahead by itself
        yield from ready(resident_batches(*data.on_device, parts))
        return
    rows = _host_batches(data, parts, plan.device)
    if plan.device.type == "cuda":
        # read, copy, normalise and augment in a background thread, on a side stream, so the
        # host work and the copies overlap the step's kernels
        yield from wait_for(prefetch(on_side_stream(ready(rows), plan.device)), plan.device)
    else:
        # on the CPU every batch is made here, between steps: the tensor work competes with the
        # step for the same cores anyway, and from a background thread it cost more (224 px,
        # batch 100, 2 cores: 28 ms a batch for read + augment + normalise there, 24 with only
        # the reads there, 18 here; the reads come from the page cache at 1.2 ms a batch)
        yield from ready(rows)


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
        self.index, self.transform, self.targets = index, transform, index.targets()

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):  # noqa: ANN204
        try:
            img = self.transform(load_rgb(self.index.paths[i]))
            return img, self.targets[i], ""
        except ImageDecodeError as e:
            return torch.zeros(3, 1, 1), self.targets[i], f"{self.index.paths[i]}\0{e}"


def _collate(items):  # noqa: ANN001, ANN202
    good = [it for it in items if not it[2]]
    bad = [it[2] for it in items if it[2]]
    if not good:
        return None, None, bad
    return torch.stack([g[0] for g in good]), torch.from_numpy(np.stack([g[1] for g in good])), bad


def _plain_batches(data: SplitData, plan: BatchPlan) -> Iterator:
    kind = plan.augment
    tf = train_preset(data.pre, kind) if kind != "none" else eval_preset(data.pre)
    torch.manual_seed(plan.seed)  # torchvision's random transforms draw from the global generator
    # this rank's share of each seeded global batch, as index positions
    parts = [
        data.rows[pos].tolist()
        for pos, _, _ in shares(
            len(data), plan.batch_size, plan.shuffle, plan.seed, *plan.share, plan.draw
        )
    ]
    loader = DataLoader(
        _FileDataset(data.index, tf),
        batch_sampler=parts,
        num_workers=plan.workers,
        collate_fn=_collate,
        pin_memory=plan.device.type == "cuda",
        persistent_workers=False,
    )
    for x, y, bad in loader:
        for b in bad:
            path, why = b.split("\0", 1)
            data.skipped[display_path(path)] = why
        if x is None:  # all unreadable: an empty batch keeps the ranks' steps in lockstep
            side = data.pre.size
            x, y = torch.zeros(0, 3, side, side), torch.zeros(0, dtype=torch.long)
        yield x.to(plan.device, non_blocking=True), y.to(plan.device)
