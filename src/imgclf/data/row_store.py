"""Per-image arrays derived from a decoded cache's rows (ImageNet features, grey thumbnails),
kept beside those rows in the cache's folder as memory maps, so that an audit of a million
images costs disk, not memory, and a second audit (or a bigger one over the same folder) only
computes what is new.

Files, in the store's folder (DecodedCache.dir), for a derived array NAME of DIM float32 values:
  NAME-<data file>.f32  one row of DIM float32 per cached row, at the cached row's number
  NAME-<data file>.ok   one byte per cached row: 1 once its value is on disk
Why this shape: cached rows are only ever appended and never rewritten within one data file (a
changed image gets a new row; `imgclf cache prune` writes a new data file), so a value keyed by
(data file, row) can never go stale. Values are written and fsynced before their flag, so a killed
run resumes with every finished chunk kept. Several processes (torchrun ranks) fill disjoint rows
of the same files at once; growing the files takes a lock.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from filelock import FileLock
from tqdm import tqdm

from imgclf.data.cache import DecodedCache

CHUNK = 4096  # rows computed, written and flagged at a time: what a killed run can lose


class RowStore:
    def __init__(self, cache: DecodedCache, name: str, dim: int):
        if not cache.data_name:
            raise RuntimeError("DecodedCache.build() must run before a RowStore opens")
        self.cache, self.dim = cache, dim
        stem = f"{name}-{Path(cache.data_name).stem}"
        self.values_path = cache.dir / f"{stem}.f32"
        self.flags_path = cache.dir / f"{stem}.ok"
        self._lock = FileLock(str(cache.dir / f"{stem}.lock"))

    def _grow(self, rows: int) -> None:
        """Both files at least `rows` long (zeros past the old end); never shortened."""
        with self._lock:
            for path, width in ((self.values_path, self.dim * 4), (self.flags_path, 1)):
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                try:
                    if os.fstat(fd).st_size < rows * width:
                        os.ftruncate(fd, rows * width)
                finally:
                    os.close(fd)

    def _rows(self, positions: np.ndarray) -> np.ndarray:
        rows = self.cache.rows[np.asarray(positions, dtype=np.int64)]
        if (rows < 0).any():
            raise ValueError("a RowStore holds values of decoded rows only")
        return rows

    def missing(self, positions: np.ndarray) -> np.ndarray:
        """The positions whose value is not on disk yet."""
        rows = self._rows(positions)
        if not len(rows):
            return np.asarray(positions, dtype=np.int64)
        self._grow(int(rows.max()) + 1)
        flags = np.memmap(self.flags_path, np.uint8, "r")
        return np.asarray(positions, dtype=np.int64)[flags[rows] != 1]

    def fill(
        self,
        positions: np.ndarray,
        compute: Callable[[np.ndarray], Iterator[np.ndarray]],
        desc: str,
        progress: bool,
    ) -> None:
        """Compute the values of the positions not on disk yet. compute(positions) yields their
        values in order, in blocks of any size."""
        todo = self.missing(positions)
        if not len(todo):
            return
        bar = tqdm(total=len(todo), desc=desc, unit="img", disable=None if progress else True)
        fd = os.open(self.values_path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        ffd = os.open(self.flags_path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            for s in range(0, len(todo), CHUNK):
                chunk = todo[s : s + CHUNK]
                got = np.concatenate(list(compute(chunk))).astype(np.float32, copy=False)
                rows = self._rows(chunk)
                for r, value in zip(rows.tolist(), got, strict=True):
                    os.pwrite(fd, value.tobytes(), r * self.dim * 4)
                os.fsync(fd)  # the values reach the disk before the flags that vouch for them
                for r in rows.tolist():
                    os.pwrite(ffd, b"\x01", r)
                os.fsync(ffd)
                bar.update(len(chunk))
        finally:
            os.close(fd)
            os.close(ffd)
            bar.close()

    def view(self, positions: np.ndarray, item: tuple[int, ...] = ()) -> Rows:
        """The positions' values, read from the memory map as they are indexed; each of shape
        `item` (default: (dim,))."""
        rows = self._rows(positions)
        if len(rows):
            self._grow(int(rows.max()) + 1)
        values = np.memmap(self.values_path, np.float32, "r").reshape(-1, self.dim)
        return Rows(values, rows, item or (self.dim,))


class Rows:
    """An (n, *item) array-like over a memory map: r[i], r[a:b] and r[array] read those rows only
    (a copy), so a pass over a million of them holds one block at a time."""

    def __init__(self, values: np.ndarray, rows: np.ndarray, item: tuple[int, ...]):
        self.values, self.rows, self.item = values, rows, item
        self.shape = (len(rows), *item)
        self.dtype = values.dtype

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: int | slice | np.ndarray) -> np.ndarray:
        picked = self.rows[key]
        if np.ndim(picked) == 0:
            return np.array(self.values[int(picked)]).reshape(self.item)
        order = np.argsort(picked, kind="stable")  # sequential reads of the map
        out = np.empty((len(picked), self.values.shape[1]), self.dtype)
        out[order] = self.values[picked[order]]
        return out.reshape(len(picked), *self.item)

    def subset(self, idx: np.ndarray) -> Rows:
        """The rows idx of this view, as a view (nothing read)."""
        return Rows(self.values, self.rows[np.asarray(idx, dtype=np.int64)], self.item)

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        out = self[np.arange(len(self))]
        return out if dtype is None else out.astype(dtype)
