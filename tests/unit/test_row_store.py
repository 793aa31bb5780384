"""Per-image arrays on disk beside the decoded cache (data/row_store.py): computed once, resumed
after a kill, shared by subsets of one folder, dropped when `imgclf cache prune` rewrites rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.data import row_store
from imgclf.data.cache import DecodedCache, remove_orphan_rows
from imgclf.data.folder import ImageIndex
from imgclf.data.row_store import RowStore


def folder(tmp_path: Path, n: int = 12) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = tmp_path / "imgs" / f"{i:02d}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


def cache_of(paths: list[str], tmp_path: Path) -> DecodedCache:
    c = DecodedCache(ImageIndex(paths, [0] * len(paths), ["x"]), 16, tmp_path / "cache")
    c.build(1, False)
    return c


def means(cache: DecodedCache, calls: list[int]):  # noqa: ANN201
    def compute(positions: np.ndarray):  # noqa: ANN202
        calls.append(len(positions))
        yield cache.read_rows(positions).reshape(len(positions), -1, 3).mean(1)

    return compute


def test_values_are_computed_once_and_shared_by_a_subset(tmp_path: Path) -> None:
    paths = folder(tmp_path)
    cache, calls = cache_of(paths, tmp_path), []
    store = RowStore(cache, "mean", 3)
    store.fill(np.arange(6), means(cache, calls), "mean", False)
    store.fill(np.arange(12), means(cache, calls), "mean", False)
    assert calls == [6, 6]  # the second fill computed only the six it had not
    want = cache.read_rows(np.arange(12)).reshape(12, -1, 3).mean(1)
    np.testing.assert_allclose(store.view(np.arange(12))[np.arange(12)], want, rtol=1e-6)
    sub = cache_of(paths[3:9], tmp_path)  # another index over the same folder: the same rows
    again: list[int] = []
    RowStore(sub, "mean", 3).fill(np.arange(6), means(sub, again), "mean", False)
    assert again == []
    np.testing.assert_allclose(RowStore(sub, "mean", 3).view(np.arange(6))[:], want[3:9], rtol=1e-6)


def test_a_killed_fill_keeps_its_finished_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(row_store, "CHUNK", 4)
    cache = cache_of(folder(tmp_path), tmp_path)
    store, calls = RowStore(cache, "mean", 3), []
    good = means(cache, calls)

    def dies_on_the_third_chunk(positions: np.ndarray):  # noqa: ANN202
        if len(calls) == 2:
            raise KeyboardInterrupt
        yield from good(positions)

    with pytest.raises(KeyboardInterrupt):
        store.fill(np.arange(12), dies_on_the_third_chunk, "mean", False)
    assert list(store.missing(np.arange(12))) == [8, 9, 10, 11]
    store.fill(np.arange(12), good, "mean", False)
    assert calls == [4, 4, 4]


def test_rewritten_rows_drop_the_arrays_derived_from_the_old_ones(tmp_path: Path) -> None:
    cache = cache_of(folder(tmp_path), tmp_path)
    store = RowStore(cache, "mean", 3)
    store.fill(np.arange(12), means(cache, []), "mean", False)
    assert store.values_path.exists() and store.flags_path.exists()
    remove_orphan_rows(cache.dir, keep=cache.data_name)
    assert store.values_path.exists()  # still the live data file's
    remove_orphan_rows(cache.dir, keep="rows-00000000.u8")  # as after `imgclf cache prune`
    assert not store.values_path.exists() and not store.flags_path.exists()
