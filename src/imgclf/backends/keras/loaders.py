"""Batches for Keras: the shared decoded cache through a PyDataset (same index, split, pixels)."""

from __future__ import annotations

import math

import keras
import numpy as np

from imgclf.backends.common import RunSetup
from imgclf.data.balance import sampling
from imgclf.data.batching import epoch_order
from imgclf.data.cache import DecodedCache, open_cache
from imgclf.data.folder import display_path
from imgclf.data.presets import Preprocess


class CachedImages(keras.utils.PyDataset):
    def __init__(
        self,
        cache: DecodedCache,
        rows: np.ndarray,
        labels: np.ndarray,
        pre: Preprocess,
        batch_size: int,
        shuffle: bool,
        seed: int,
        draw: np.ndarray | None = None,
    ):
        super().__init__(workers=1, use_multiprocessing=False)
        self.cache, self.rows, self.labels, self.pre = cache, rows, labels, pre
        self.batch_size, self.shuffle, self.seed, self.epoch = batch_size, shuffle, seed, 0
        self.num_classes = 0  # > 0: one-hot labels (for label smoothing)
        self.draw = draw  # --sampler balanced: per-row draw probabilities, with replacement
        self.order = self._order()

    def _order(self) -> np.ndarray:
        return epoch_order(len(self.rows), self.shuffle, self.seed + self.epoch, self.draw)

    def __len__(self) -> int:
        return math.ceil(len(self.rows) / self.batch_size)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        pick = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        y = self.labels[pick]
        if self.num_classes:
            y = np.eye(self.num_classes, dtype=np.float32)[y]
        return self.pre.normalize(self.cache.read_rows(self.rows[pick])), y

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()


def load_split(s: RunSetup, split: str, shuffle: bool) -> tuple[CachedImages, dict[str, str]]:
    """A split through the shared decoded cache; also its unreadable files with reasons."""
    cfg, idx = s.cfg, s.splits[split]
    cache, stats = open_cache(idx, s.pre.size, cfg.cache_dir or None, cfg.workers, True)
    rows = cache.ok_rows
    labels = idx.targets()[rows]  # class indices, or multi-label 0/1 rows
    draw = sampling(cfg, labels, s.names) if shuffle else None
    data = CachedImages(
        cache, rows, labels, s.pre, cfg.batch_size, shuffle, cfg.seed if shuffle else 0, draw
    )
    if cfg.label_smoothing and not idx.multi_label:
        data.num_classes = len(s.names)  # one-hot targets
    skipped = {display_path(idx.paths[r]): why for r, why in stats.failed.items()}
    return data, skipped
