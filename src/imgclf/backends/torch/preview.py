"""`imgclf preview`: the tutorial's batch grid and one image under several random augmentations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from imgclf.backends.torch.loaders import BatchPlan, batches, prepare_split
from imgclf.backends.torch.transforms import augment_batch, normalize_batch
from imgclf.data.label_sources import LabelSource
from imgclf.data.presets import Preprocess
from imgclf.data.sources import resolve_data
from imgclf.data.splits import load_splits
from imgclf.viz import plot_image_grid


def denormalize(x: torch.Tensor, pre: Preprocess) -> np.ndarray:
    """Normalised NCHW -> uint8 NHWC for display (the tutorial's inv_normalize)."""
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    img = (x.cpu().float() * std + mean).clamp(0, 1) * 255
    return img.permute(0, 2, 3, 1).round().to(torch.uint8).numpy()


def preview(
    data: str,
    out_dir: str | Path,
    pre: Preprocess | None = None,
    n: int = 20,
    seed: int = 42,
    cache_dir: str = "",
    workers: int = 2,
    source: LabelSource | None = None,
) -> list[Path]:
    pre = pre or Preprocess()
    out_dir = Path(out_dir)
    splits = load_splits(resolve_data(data, cache_dir), seed=seed, source=source)
    train = prepare_split(splits["train"], pre, cache_dir=cache_dir, workers=workers)
    names = splits["train"].class_names
    plan = BatchPlan(n, torch.device("cpu"), "tutorial", shuffle=True, seed=seed, workers=workers)
    x, y = next(iter(batches(train, plan)))
    grid = plot_image_grid(
        list(denormalize(x, pre)),
        [names[i] for i in y.tolist()],
        out_dir / "batch_grid.png",
        ncols=5,
        suptitle="A training batch (augmented, inverse-normalised)",
    )
    one = (
        torch.from_numpy(train.cache.read_rows(train.rows[:1])) if train.cache is not None else None
    )
    if one is None:
        return [grid]
    gen = torch.Generator().manual_seed(seed)
    views = [normalize_batch(one, pre), *(augment_batch(one, pre, gen) for _ in range(7))]
    titles = ["original"] + [f"augmented {i}" for i in range(1, 8)]
    aug = plot_image_grid(
        list(denormalize(torch.cat(views), pre)),
        titles,
        out_dir / "augmentations.png",
        ncols=4,
        suptitle=f"{Path(splits['train'].paths[int(train.rows[0])]).name}"
        f" ({names[splits['train'].labels[int(train.rows[0])]]})",
    )
    return [grid, aug]
