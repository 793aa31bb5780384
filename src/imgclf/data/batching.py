"""Batches from the decoded cache in a seeded order, and a background-thread prefetcher."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from imgclf.data.cache import DecodedCache

T = TypeVar("T")


def iterate_batches(
    cache: DecodedCache,
    rows: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    shuffle: bool,
    seed: int,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(uint8 NHWC images, int64 labels) batches in a seeded order."""
    order = np.random.default_rng(seed).permutation(len(rows)) if shuffle else np.arange(len(rows))
    for i in range(0, len(order), batch_size):
        b = order[i : i + batch_size]
        yield cache.read_rows(rows[b]), labels[b]


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
