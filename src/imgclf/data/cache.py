"""Decode each image once into a uint8 file of fixed-size rows, reused by every later run.

Layout under <cache_dir>/decoded/<key>/ (key = image size + the index's paths):
  images.u8   N rows of size*size*3 bytes (Resize+CenterCrop applied), read with pread so that
              a pass over it stays in the OS page cache instead of this process's RSS
  state.npy   N x 3 int64: file size, mtime_ns, status (0 todo, 1 ok, 2 failed)
  failed.json row -> reason for files that could not be decoded
A changed file (size or mtime) is decoded again; a killed build resumes; a file lock makes two
runs that share the cache take turns building it. Torch-free: both backends read it.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import TypeVar

import numpy as np
from filelock import FileLock
from tqdm import tqdm

from imgclf.data.folder import ImageIndex
from imgclf.data.images import ImageDecodeError, decode_square
from imgclf.files import atomic_write, write_json

T = TypeVar("T")
TODO, OK, FAILED = 0, 1, 2
FORMAT_VERSION = "1"  # bump when the stored preprocessing changes


def default_cache_dir() -> Path:
    base = os.environ.get("IMGCLF_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "imgclf"
    )
    return Path(base)


def _stamp(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1


def _decode_rows(args: tuple[str, int, list[tuple[int, str]]]) -> list[tuple[int, str | None]]:
    """Worker: decode a chunk of (row, path) and pwrite each row into the data file."""
    data_path, size, chunk = args
    row_bytes = size * size * 3
    out: list[tuple[int, str | None]] = []
    fd = os.open(data_path, os.O_WRONLY)
    try:
        for row, path in chunk:
            try:
                arr = decode_square(path, size)
                os.pwrite(fd, arr.tobytes(), row * row_bytes)
                out.append((row, None))
            except ImageDecodeError as e:
                out.append((row, str(e)))
    finally:
        os.close(fd)
    return out


@dataclass
class CacheStats:
    decoded: int
    reused: int
    failed: dict[int, str]


class DecodedCache:
    def __init__(self, index: ImageIndex, size: int, cache_dir: str | Path | None = None):
        self.index, self.size = index, size
        key = hashlib.sha1(f"v{FORMAT_VERSION}|{size}|".encode())
        for p in index.paths:
            key.update(os.fsencode(p) + b"\n")
        self.dir = Path(cache_dir or default_cache_dir()) / "decoded" / key.hexdigest()[:20]
        self.data_path = self.dir / "images.u8"
        self.row_bytes = size * size * 3
        self.state = np.zeros((len(index), 3), dtype=np.int64)

    def _save_state(self, failed: dict[int, str]) -> None:
        atomic_write(self.dir / "state.npy", lambda t: np.save(open(t, "wb"), self.state))
        write_json(self.dir / "failed.json", {str(k): v for k, v in sorted(failed.items())})

    def build(self, workers: int = 2, progress: bool = True) -> CacheStats:
        """Decode what is missing or changed. Safe to call from several processes at once."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.dir / "lock")):
            n = len(self.index)
            if not self.data_path.exists() or self.data_path.stat().st_size != n * self.row_bytes:
                with open(self.data_path, "wb") as f:
                    f.truncate(n * self.row_bytes)  # sparse until rows are written
                self.state[:] = 0
            elif (self.dir / "state.npy").exists():
                self.state = np.load(self.dir / "state.npy")
            failed_path = self.dir / "failed.json"
            failed = (
                {int(k): v for k, v in json.loads(failed_path.read_text()).items()}
                if failed_path.exists()
                else {}
            )
            stamps = np.array([_stamp(p) for p in self.index.paths], dtype=np.int64).reshape(-1, 2)
            stale = (self.state[:, 2] == TODO) | np.any(self.state[:, :2] != stamps, axis=1)
            todo = np.flatnonzero(stale).tolist()
            for row in todo:
                failed.pop(row, None)
                self.state[row] = (stamps[row, 0], stamps[row, 1], TODO)
            self._run(todo, workers, progress, failed)
            return CacheStats(decoded=len(todo), reused=n - len(todo), failed=failed)

    def _run(self, todo: list[int], workers: int, progress: bool, failed: dict[int, str]) -> None:
        if not todo:
            return
        chunk = 64
        jobs = [
            (
                str(self.data_path),
                self.size,
                [(r, self.index.paths[r]) for r in todo[i : i + chunk]],
            )
            for i in range(0, len(todo), chunk)
        ]
        bar = tqdm(total=len(todo), desc="decode", unit="img", disable=None if progress else True)
        pool = get_context("fork").Pool(workers) if workers > 1 else None
        results = pool.imap_unordered(_decode_rows, jobs) if pool else map(_decode_rows, jobs)
        try:
            for done, res in enumerate(results):
                for row, err in res:
                    self.state[row, 2] = OK if err is None else FAILED
                    if err is not None:
                        failed[row] = err
                bar.update(len(res))
                if done % 16 == 15:  # checkpoint progress so a killed build resumes
                    self._save_state(failed)
        finally:
            if pool:
                pool.terminate()
            bar.close()
            self._save_state(failed)

    @property
    def ok_rows(self) -> np.ndarray:
        return np.flatnonzero(self.state[:, 2] == OK)

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        """rows -> uint8 (len(rows), size, size, 3), read with pread (no mmap, low RSS)."""
        out = np.empty((len(rows), self.size, self.size, 3), dtype=np.uint8)
        flat = out.reshape(len(rows), -1)
        fd = os.open(self.data_path, os.O_RDONLY)
        try:
            for j, r in enumerate(rows):
                os.preadv(fd, [flat[j]], int(r) * self.row_bytes)
        finally:
            os.close(fd)
        return out


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
