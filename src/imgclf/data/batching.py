"""Batches in a seeded order, shared out across ranks, and a background-thread prefetcher."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def epoch_order(n: int, shuffle: bool, seed: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Positions 0..n-1 as one epoch visits them: as stored, a seeded permutation, or (weights:
    --sampler balanced's per-image probabilities) n seeded draws with replacement."""
    if not shuffle:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return rng.permutation(n) if weights is None else rng.choice(n, size=n, p=weights)


def global_batches(
    n: int, batch_size: int, shuffle: bool, seed: int, weights: np.ndarray | None = None
) -> Iterator[np.ndarray]:
    """Positions in batches of batch_size, in a seeded order: the same on every rank."""
    order = epoch_order(n, shuffle, seed, weights)
    for i in range(0, n, batch_size):
        yield order[i : i + batch_size]


def rank_share(batch: np.ndarray, rank: int = 0, world: int = 1) -> tuple[np.ndarray, int]:
    """A rank's contiguous share of a global batch (np.array_split's blocks) and its offset, so N
    ranks together see exactly the batch one process would, whatever its length."""
    base, extra = divmod(len(batch), world)
    lo = rank * base + min(rank, extra)
    return batch[lo : lo + base + (rank < extra)], lo


def shares(
    n: int,
    batch_size: int,
    shuffle: bool,
    seed: int,
    rank: int = 0,
    world: int = 1,
    weights: np.ndarray | None = None,
) -> Iterator[tuple[np.ndarray, int, int]]:
    """(positions, offset, global length): this rank's share of each seeded global batch of
    batch_size (batch_size is the global batch)."""
    for b in global_batches(n, batch_size, shuffle, seed, weights):
        part, lo = rank_share(b, rank, world)
        yield part, lo, len(b)


def prefetch(items: Iterator[T], depth: int = 3) -> Iterator[T]:
    """Run a generator in a background thread, `depth` items ahead, so that reading (and the
    tensor ops on the batches, which release the GIL) overlap with the training step."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put(item)
        except BaseException as e:  # surface the producer's error in the consumer
            q.put(_Failure(e))
        q.put(done)

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        while t.is_alive():  # drain so the producer is not stuck on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.05)


@dataclass
class _Failure:
    error: BaseException
